//! The kexec-tools loader with the real `kexec` binary, where it cannot load anything: on a kernel without a
//! crashkernel= reservation kexec-tools refuses, and its own words reach the error and the log. Needs kexec-tools
//! (`make deps` installs it; KDUMP_HOTPLUGD_TEST_KEXEC names another kexec binary, e.g. one unpacked with
//! `apt-get download kexec-tools && dpkg -x`) and a host where no crash kernel could really be loaded: where
//! either is missing the test skips, or fails under CI=true (tests/common/precondition.rs).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use kdump_hotplugd::core::decide::LoaderChoice;
use kdump_hotplugd::edge::kexec::{KernelPlan, KexecToolsLoader, KexecToolsMode, PlanOrigin};
use kdump_hotplugd::edge::{LoadRequest, Loader};

#[path = "common/precondition.rs"]
mod precondition;

const KEXEC_VARIABLE: &str = "KDUMP_HOTPLUGD_TEST_KEXEC";

/// The kexec binary: the one KDUMP_HOTPLUGD_TEST_KEXEC names (and only that one, when set), else the Debian
/// package's. `Err` says what is missing.
fn kexec_binary() -> Result<PathBuf, String> {
    if let Some(named) = std::env::var_os(KEXEC_VARIABLE) {
        let named = PathBuf::from(named);
        return if named.exists() {
            Ok(named)
        } else {
            Err(format!(
                "kexec-tools: {} (from {KEXEC_VARIABLE}) does not exist",
                named.display()
            ))
        };
    }
    ["/usr/sbin/kexec", "/sbin/kexec"]
        .map(PathBuf::from)
        .into_iter()
        .find(|p| p.exists())
        .ok_or_else(|| {
            "kexec-tools is not installed (no /usr/sbin/kexec or /sbin/kexec): apt-get install kexec-tools, \
             or make deps"
                .to_owned()
        })
}

fn reservation_exists() -> bool {
    [
        "/sys/kernel/kexec_crash_size",
        "/sys/kernel/kexec/crash_size",
    ]
    .iter()
    .any(|f| std::fs::read_to_string(f).is_ok_and(|t| t.trim() != "0"))
}

#[tokio::test]
async fn real_kexec_refusal_is_reported_with_its_output() {
    let kexec = match kexec_binary() {
        Ok(kexec) => kexec,
        Err(reason) => return precondition::missing(reason),
    };
    if reservation_exists() {
        return precondition::missing(
            "this host has a crashkernel= reservation: the test would really load a crash kernel; run it on a \
             host without one",
        );
    }
    let plan = KernelPlan {
        kernel: PathBuf::from("/proc/self/exe"),
        initrd: None,
        cmdline: "console=ttyS0".into(),
        options: Vec::new(),
        origin: PlanOrigin::default(),
    };
    for mode in [KexecToolsMode::FileLoad, KexecToolsMode::Load] {
        let loader =
            KexecToolsLoader::new(kexec.clone(), plan.clone(), mode, Duration::from_secs(60));
        let error = loader
            .load(LoadRequest {
                ranges: Arc::new(Vec::new()),
                cpus: Default::default(),
                method: match mode {
                    KexecToolsMode::FileLoad => LoaderChoice::Configured,
                    KexecToolsMode::Load => LoaderChoice::KexecLoad,
                },
                reason: "test".into(),
            })
            .await
            .unwrap_err();
        eprintln!("{}: {}", loader.name(), error.message);
        assert!(
            error.message.starts_with(&format!(
                "{} {}",
                kexec.display(),
                if mode == KexecToolsMode::FileLoad {
                    "-s -p"
                } else {
                    "-c -p"
                }
            )),
            "{}",
            error.message
        );
        assert!(
            error.message.contains("failed (exit status: "),
            "{}",
            error.message
        );
        // kexec-tools' own explanation, quoted.
        assert!(error.message.contains("crashkernel"), "{}", error.message);
        // No reservation does not go away by retrying.
        assert!(!error.retry, "{}", error.message);
    }
    assert!(Path::new(&kexec).is_absolute());
}

/// The precondition helper end to end: this crate's own test, run again as a child process with kexec-tools
/// "missing" (KDUMP_HOTPLUGD_TEST_KEXEC names a path that does not exist; nothing is uninstalled). Under
/// CI=true it fails and says why; without CI it passes and prints SKIP with the same reason.
#[test]
fn without_kexec_tools_ci_fails_and_a_local_run_skips() {
    let run = |ci: Option<&str>| {
        let mut command = std::process::Command::new(std::env::current_exe().unwrap());
        command
            .args([
                "--exact",
                "real_kexec_refusal_is_reported_with_its_output",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(KEXEC_VARIABLE, "/nonexistent/kdump-hotplugd-test/kexec");
        match ci {
            Some(value) => command.env(precondition::CI_VARIABLE, value),
            None => command.env_remove(precondition::CI_VARIABLE),
        };
        let output = command.output().unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        (output.status, text)
    };
    let reason = "kexec-tools: /nonexistent/kdump-hotplugd-test/kexec (from KDUMP_HOTPLUGD_TEST_KEXEC) does not exist";

    let (status, text) = run(Some("true"));
    assert!(
        !status.success(),
        "CI=true: the test passed without kexec-tools\n{text}"
    );
    assert!(
        text.contains("precondition not met under CI=true"),
        "{text}"
    );
    assert!(text.contains(reason), "{text}");
    assert!(text.contains("1 failed"), "{text}");

    let (status, text) = run(None);
    assert!(
        status.success(),
        "without CI the test must skip, not fail\n{text}"
    );
    assert!(text.contains(&format!("SKIP: {reason}")), "{text}");
    assert!(text.contains("1 passed"), "{text}");
}

/// The version read from the binary's bytes (what the plan and the loader choice use) is the one the binary
/// prints for `--version`.
#[test]
fn the_version_read_from_the_binary_is_what_it_prints() {
    let kexec = match kexec_binary() {
        Ok(kexec) => kexec,
        Err(reason) => return precondition::missing(reason),
    };
    let out = std::process::Command::new(&kexec)
        .arg("--version")
        .output()
        .expect("kexec --version runs");
    assert!(
        out.status.success(),
        "{}: --version: {out:?}",
        kexec.display()
    );
    let printed = String::from_utf8_lossy(&out.stdout);
    let printed = printed
        .trim()
        .strip_prefix("kexec-tools ")
        .unwrap_or_else(|| panic!("{}: --version printed {printed:?}", kexec.display()));
    assert_eq!(
        kdump_hotplugd::host::kexec_version::read(&kexec).as_deref(),
        Some(printed),
        "{}",
        kexec.display()
    );
}

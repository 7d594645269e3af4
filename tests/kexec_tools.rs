//! The kexec-tools loader with the real `kexec` binary, where it cannot load anything: on a kernel without a
//! crashkernel= reservation kexec-tools refuses, and its own words reach the error and the log. Skips where
//! kexec-tools is not installed (set KDUMP_HOTPLUGD_TEST_KEXEC to a kexec binary, e.g. one unpacked with
//! `apt-get download kexec-tools && dpkg -x`), and where a crash kernel could really be loaded.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use kdump_hotplugd::core::decide::LoaderChoice;
use kdump_hotplugd::edge::kexec::{KernelPlan, KexecToolsLoader, KexecToolsMode, PlanOrigin};
use kdump_hotplugd::edge::{LoadRequest, Loader};

fn kexec_binary() -> Option<PathBuf> {
    std::env::var_os("KDUMP_HOTPLUGD_TEST_KEXEC")
        .map(PathBuf::from)
        .into_iter()
        .chain(["/usr/sbin/kexec", "/sbin/kexec"].map(PathBuf::from))
        .find(|p| p.exists())
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
    let Some(kexec) = kexec_binary() else {
        eprintln!("SKIP: kexec-tools not installed (set KDUMP_HOTPLUGD_TEST_KEXEC)");
        return;
    };
    if reservation_exists() {
        eprintln!("SKIP: this host has a crashkernel= reservation; the test would really load");
        return;
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

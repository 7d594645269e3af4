//! `kdump-hotplugd plan` on fixture hosts: the distro's crash kernel, and the loader with the shortest window.

use std::path::Path;
use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_kdump-hotplugd");

fn fixture_copy(name: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    let from = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name);
    let status = Command::new("cp")
        .arg("-a")
        .arg(format!("{}/.", from.display()))
        .arg(dir.path())
        .status()
        .expect("cp runs");
    assert!(status.success());
    dir
}

fn write(root: &Path, path: &str, text: &str) {
    let full = root.join(path.trim_start_matches('/'));
    std::fs::create_dir_all(full.parent().unwrap()).unwrap();
    std::fs::write(full, text).unwrap();
}

fn plan(root: &Path) -> serde_json::Value {
    let out = Command::new(BIN)
        .args(["plan", "--json", "--sysroot"])
        .arg(root)
        .output()
        .expect("plan runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("JSON")
}

#[test]
fn debian_reloads_kdump_tools_own_kernel_with_prepared_kexec_load() {
    let host = fixture_copy("plan-debian");
    write(host.path(), "/sbin/kexec", "");
    let plan = plan(host.path());
    assert_eq!(plan["plan"]["service"], "kdump_tools");
    assert_eq!(plan["loader"]["choice"]["kind"], "prepared");
    assert_eq!(
        plan["loader"]["choice"]["hotplug"], false,
        "kexec-tools 2.0.25 has no --hotplug"
    );
    let cmdline = plan["plan"]["parts"]["cmdline"]["value"].as_str().unwrap();
    assert!(
        cmdline.ends_with("systemd.unit=kdump-tools-dump.service nr_cpus=1 irqpoll usbcore.nousb"),
        "{cmdline}"
    );
    assert_eq!(plan["overflow_loader"]["kind"], "prepared");
    let text = Command::new(BIN)
        .args(["plan", "--sysroot"])
        .arg(host.path())
        .output()
        .unwrap();
    let text = String::from_utf8(text.stdout).unwrap();
    assert!(
        text.contains("kdump service: Debian/Ubuntu kdump-tools"),
        "{text}"
    );
    assert!(
        text.contains("loader:   kexec_load (kexec -c -p)"),
        "{text}"
    );
}

#[test]
fn lockdown_takes_kexec_file_load_and_a_hotplug_kernel_gets_in_place_updates() {
    let host = fixture_copy("plan-debian");
    write(host.path(), "/sbin/kexec", "");
    write(
        host.path(),
        "/sys/kernel/security/lockdown",
        "none integrity [confidentiality]\n",
    );
    let plan = plan(host.path());
    assert_eq!(plan["loader"]["choice"]["kind"], "native");
    assert!(plan["loader"]["reason"]
        .as_str()
        .unwrap()
        .contains("locked down"));
    assert_eq!(plan["overflow_loader"]["kind"], "unavailable");
}

#[test]
fn a_configuration_the_daemon_cannot_follow_is_delegated_to_the_distro_tool() {
    let host = fixture_copy("plan-bad-shell");
    write(host.path(), "/sbin/kexec", "");
    let plan = plan(host.path());
    assert_eq!(plan["loader"]["choice"]["kind"], "delegate");
    assert_eq!(plan["loader"]["choice"]["command"], "kdump-config reload");
    assert!(plan["kernel_plan_error"]
        .as_str()
        .unwrap()
        .contains("/etc/default/kdump-tools:18"));
}

#[test]
fn config_overrides_are_shown_and_applied() {
    let host = fixture_copy("plan-debian");
    write(host.path(), "/sbin/kexec", "");
    write(
        host.path(),
        "/etc/kdump-hotplugd/config.toml",
        "[loader]\ncmdline = \"console=ttyS0 reset_devices\"\nkind = \"native\"\n",
    );
    let plan = plan(host.path());
    assert_eq!(
        plan["overrides"]["loader.cmdline"],
        "console=ttyS0 reset_devices"
    );
    assert_eq!(plan["loader"]["choice"]["kind"], "native");
}

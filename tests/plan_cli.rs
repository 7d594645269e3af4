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

/// The loader's facts come from the binary the daemon runs (`loader.kexec_path`, default /usr/sbin/kexec), the
/// plan's syscall from the one kdump-config runs (/sbin/kexec): on a host that is not merged-/usr they differ.
#[test]
fn the_version_is_read_from_each_kexec_binary_itself() {
    let host = fixture_copy("plan-debian");
    write(host.path(), "/sys/kernel/crash_elfcorehdr_size", "462448\n");
    // Only the fixture's /sbin/kexec (2.0.25, no --hotplug): a kexec_load header would go stale.
    let only_tools_kexec = plan(host.path());
    assert_eq!(only_tools_kexec["loader"]["choice"]["kind"], "native");
    assert!(only_tools_kexec["loader"]["reason"]
        .as_str()
        .unwrap()
        .contains("has no --hotplug"));
    // A 2.0.28 build at the daemon's default path knows --hotplug; kdump-config still runs the 2.0.25 one.
    write(
        host.path(),
        "/usr/sbin/kexec",
        "\u{7f}ELF\0usage: kexec\0kexec-tools 2.0.28\n\0",
    );
    let newer = plan(host.path());
    assert_eq!(newer["loader"]["choice"]["kind"], "prepared");
    assert_eq!(newer["loader"]["choice"]["hotplug"], true);
    assert_eq!(
        newer["plan"]["parts"]["syscall"]["from"][0]["fact"],
        "/sbin/kexec is kexec-tools 2.0.25 (before 2.0.27 the default is kexec_load)"
    );
    // A stand-in without a version string: installed, version unknown, so no --hotplug.
    write(host.path(), "/usr/sbin/kexec", "#!/bin/sh\n");
    let stand_in = plan(host.path());
    assert_eq!(stand_in["loader"]["choice"]["kind"], "native");
}

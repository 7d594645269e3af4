//! Issue 13 on fixture sysroots, through the real `ranges` command and the real readers: the kernel's header
//! capacity, crash CMA ranges, the reservation check, the architecture guard and kernel command-line words.

use std::path::PathBuf;
use std::process::{Command, Output};

use kdump_hotplugd::host::snapshot::SnapshotReader;
use kdump_hotplugd::host::sysroot::Sysroot;
use serde_json::Value;

const MIB: u64 = 1 << 20;

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

fn kdump_hotplugd(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_kdump-hotplugd"))
        .args(args)
        .env("RUST_LOG", "warn")
        .output()
        .expect("kdump-hotplugd runs")
}

fn ranges(name: &str) -> (String, Value) {
    let root = fixture(name);
    let root = root.to_str().expect("utf-8 path");
    let text = kdump_hotplugd(&["ranges", "--sysroot", root]);
    assert!(
        text.status.success(),
        "{}",
        String::from_utf8_lossy(&text.stderr)
    );
    let json = kdump_hotplugd(&["ranges", "--sysroot", root, "--json"]);
    assert!(json.status.success());
    (
        String::from_utf8_lossy(&text.stdout).into_owned(),
        serde_json::from_slice(&json.stdout).expect("ranges --json"),
    )
}

#[test]
fn a_6_1_host_past_8192_ranges_loads_with_plain_kexec_file_load() {
    let (text, json) = ranges("sparse-6.1");
    assert_eq!(json["capacity_kind"], "unbounded");
    assert_eq!(json["assessment"]["capacity"]["kind"], "unbounded");
    assert_eq!(json["assessment"]["needed"], 9_003);
    let decision = &json["assessment"]["decision"];
    assert_eq!(decision["action"], "reload");
    assert_eq!(decision["loader"], "configured", "{decision}");
    assert_eq!(
        decision["reasons"],
        serde_json::json!([{"kind": "not-loaded"}])
    );
    assert!(!text.contains("buffer too small"), "{text}");
    assert!(!text.contains("kexec_load"), "{text}");
    assert!(text.contains("kernel header capacity: unbounded"), "{text}");
}

#[test]
fn a_cma_host_on_the_new_kexec_layout_excludes_its_cma_ranges() {
    let (text, json) = ranges("cma-host");
    // Only /sys/kernel/kexec/ exists: the crash kernel is seen loaded, with its reservation.
    let crash = &json["snapshot"]["crash"];
    assert_eq!(crash["kexec_supported"], true);
    assert_eq!(crash["loaded"], true);
    assert_eq!(crash["reserved_bytes"], 256 * MIB);
    assert_eq!(
        json["cma_ranges_excluded"],
        serde_json::json!([{"start": 0x2_0000_0000u64, "end": 0x2_3fff_ffffu64}])
    );
    // The CMA gigabyte splits high RAM in two: four PT_LOADs, as the kernel counts them.
    let ranges: Vec<(u64, u64)> = json["snapshot"]["ranges"]
        .as_array()
        .expect("ranges")
        .iter()
        .map(|r| (r["start"].as_u64().unwrap(), r["end"].as_u64().unwrap()))
        .collect();
    assert_eq!(
        ranges,
        vec![
            (MIB, 0x6eff_ffff),
            (0x7f00_0000, 0x7ffd_bfff),
            (0x1_0000_0000, 0x1_ffff_ffff),
            (0x2_4000_0000, 0x2_7fff_ffff),
        ]
    );
    assert_eq!(json["capacity_kind"], "known");
    assert!(text.contains("crash CMA ranges excluded: 1"), "{text}");
    // crashkernel=256M is a fixed size (and 1G,cma a suffixed one): nothing to evaluate.
    assert_eq!(json["reservation"]["verdict"], "nothing-to-evaluate");
    assert_eq!(json["reservation_warning"], Value::Null);
}

#[test]
fn a_host_grown_far_past_its_tiered_crashkernel_is_warned_with_the_size() {
    let (text, json) = ranges("grown-host");
    let reservation = &json["reservation"];
    assert_eq!(reservation["verdict"], "too-small", "{reservation}");
    assert_eq!(
        reservation["expression"],
        "1G-4G:192M,4G-64G:256M,64G-:512M"
    );
    assert_eq!(reservation["selects"], 512 * MIB);
    assert_eq!(reservation["reserved"], 192 * MIB);
    assert_eq!(
        reservation["distro_recommendation"]["by"],
        "Fedora kdump-utils"
    );
    assert_eq!(reservation["distro_recommendation"]["selects"], 512 * MIB);
    let warning = json["reservation_warning"].as_str().expect("a warning");
    assert!(warning.contains("selects 512 MiB"), "{warning}");
    assert!(warning.contains("192 MiB is reserved"), "{warning}");
    assert!(warning.contains("reboot"), "{warning}");
    assert!(
        text.contains("WARNING: crash reservation too small: crashkernel=1G-4G:192M,4G-64G:256M,64G-:512M selects 512 MiB"),
        "{text}"
    );
    assert!(
        text.contains("Fedora kdump-utils recommends 512 MiB for this memory"),
        "{text}"
    );
}

#[test]
fn a_host_without_crashkernel_range_syntax_is_not_warned() {
    for name in ["small-vm", "no-kexec", "sparse-6.1"] {
        let (text, json) = ranges(name);
        assert_eq!(
            json["reservation"]["verdict"], "nothing-to-evaluate",
            "{name}"
        );
        assert_eq!(json["reservation_warning"], Value::Null, "{name}");
        assert!(!text.contains("reservation too small"), "{name}: {text}");
    }
}

#[test]
fn quoted_command_line_values_stay_whole_in_the_crash_kernels_line() {
    let sysroot = Sysroot::new(fixture("cma-host"));
    // No kdump service on this host: the daemon's own plan edits the running line word by word.
    let (_, plan) = kdump_hotplugd::host::plan_inputs::read_and_plan(&fixture("cma-host"));
    let plan = plan.parts.expect("a plan");
    assert_eq!(
        plan.cmdline.value,
        "root=/dev/vda1 ro dyndbg=\"file drivers/virtio/* +p\" quiet reset_devices irqpoll nr_cpus=1 cma=0 \
         hugetlb_cma=0"
    );
    // And the reservation check reads the same words from the running line.
    let snapshot = SnapshotReader::open(sysroot).unwrap().take().unwrap();
    assert!(snapshot
        .kernel_cmdline
        .as_deref()
        .is_some_and(|line| line.contains("dyndbg=\"file drivers/virtio/* +p\"")));
}

#[test]
fn another_architecture_is_refused_by_ranges_and_run() {
    let root = fixture("arm64-host");
    let root = root.to_str().expect("utf-8 path");
    for args in [
        vec!["ranges", "--sysroot", root],
        vec!["run", "--sysroot", root, "--dry-run", "--bus", "none"],
    ] {
        let out = kdump_hotplugd(&args);
        assert!(!out.status.success(), "{args:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains("architecture is aarch64") && stderr.contains("arm64 is planned"),
            "{args:?}: {stderr}"
        );
    }
}

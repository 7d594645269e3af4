//! Issue 13 on fixture sysroots, through the real `ranges` command and the real readers: the kernel's header
//! capacity, crash CMA ranges, the reservation check, the architecture guard and kernel command-line words.
//! Issue 16: the arm64 rules on arm64 fixtures (a QEMU `virt` guest, a board with RAM from address 0), x86_64's
//! output without any of the new keys, and the refusal of other architectures.

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

/// The bytes a list of `{start, end}` JSON ranges covers.
fn ranges_of(value: &Value) -> Vec<(u64, u64)> {
    value
        .as_array()
        .expect("a list of ranges")
        .iter()
        .map(|r| {
            (
                r["start"].as_u64().expect("start"),
                r["end"].as_u64().expect("end"),
            )
        })
        .collect()
}

#[test]
fn an_arm64_virt_guest_follows_the_arm64_rules_and_warns_about_driver_managed_memory() {
    let (text, json) = ranges("arm64-virt");
    let snapshot = &json["snapshot"];
    assert_eq!(snapshot["arch"], "arm64");
    // Exact "System RAM" only (boot memory and the hot-added DIMM), minus the "Crash kernel" resource; the nomap
    // "reserved" regions between them stay out; nothing is cut below 1 MiB (there is no rule for it on arm64).
    assert_eq!(
        ranges_of(&snapshot["ranges"]),
        vec![
            (0x4000_0000, 0xbdff_ffff),
            (0xbe06_0000, 0xbe3f_ffff),
            (0xbe46_0000, 0xdbff_ffff),
            (0xfc00_0000, 0x1_3fff_ffff),
            (0x1_4000_0000, 0x1_7fff_ffff),
        ]
    );
    let outside = snapshot["outside_header"]
        .as_array()
        .expect("outside_header");
    assert_eq!(outside.len(), 2, "{outside:?}");
    assert!(outside.iter().all(|o| o["driver"] == "virtio_mem"));
    assert_eq!(
        outside
            .iter()
            .map(|o| (o["range"]["start"].as_u64(), o["range"]["end"].as_u64()))
            .collect::<Vec<_>>(),
        vec![
            (Some(0x1_8000_0000), Some(0x1_ffff_ffff)),
            (Some(0x2_1000_0000), Some(0x2_17ff_ffff))
        ]
    );
    // No crash hotplug on arm64: every load rebuilds the header; D-Bus's vocabulary calls that unbounded.
    assert_eq!(json["capacity_kind"], "unbounded");
    assert_eq!(
        json["assessment"]["capacity"]["kind"],
        "rebuilt-on-every-load"
    );
    assert!(
        text.contains("kernel header capacity: the header is rebuilt on every load"),
        "{text}"
    );
    // A crash kernel is loaded and the header holds what the loaders would put in it: the virtio-mem memory
    // alone asks for no reload, and the decision says why the dump will still miss it.
    assert_eq!(json["assessment"]["decision"]["action"], "skip");
    let warning = &json["assessment"]["outside_header"];
    assert_eq!(warning["bytes"], 2 * 1024 * MIB + 128 * MIB);
    assert_eq!(warning["ranges"], 2);
    assert_eq!(warning["drivers"], serde_json::json!(["virtio_mem"]));
    let warning_text = json["outside_header_warning"]
        .as_str()
        .expect("outside_header_warning");
    assert!(
        warning_text.starts_with(
            "2281701376 bytes (2176 MiB) of driver-managed memory (virtio_mem) in 2 ranges that no arm64 loader \
             puts in the header"
        ),
        "{warning_text}"
    );
    assert!(text.contains(&format!("WARNING: {warning_text}")), "{text}");
    assert!(
        text.contains(&format!(
            "decision: skip: nothing the header holds changed; WARNING: {warning_text}"
        )),
        "{text}"
    );
    // crashkernel= is evaluated against all of memblock (nomap regions and hot-added memory included):
    // 4 GiB of boot memory + 1 GiB DIMM + 2176 MiB virtio-mem.
    assert_eq!(snapshot["system_ram_bytes"], 7296 * MIB);
    assert_eq!(json["reservation"]["memory"], 7296 * MIB);
    assert_eq!(json["reservation"]["selects"], 512 * MIB);
    assert_eq!(json["reservation"]["verdict"], "sufficient");
    assert!(json["reservation_warning"].is_null());
}

#[test]
fn an_arm64_board_with_ram_from_address_0_keeps_its_first_mebibyte() {
    let (text, json) = ranges("arm64-host");
    let snapshot = &json["snapshot"];
    assert_eq!(snapshot["arch"], "arm64");
    assert_eq!(
        ranges_of(&snapshot["ranges"]),
        vec![
            (0x0, 0x1dff_ffff),
            (0x2e00_0000, 0x3b3f_ffff),
            (0x4000_0000, 0xfbff_ffff),
            (0x1_0000_0000, 0x1_ffff_ffff),
        ]
    );
    // Nothing driver-managed: no warning anywhere.
    assert!(snapshot.get("outside_header").is_none(), "{snapshot}");
    assert!(json["assessment"].get("outside_header").is_none());
    assert!(json.get("outside_header_warning").is_none());
    assert!(!text.contains("WARNING"), "{text}");
    let decision = &json["assessment"]["decision"];
    assert_eq!(decision["action"], "reload");
    assert_eq!(decision["loader"], "configured");
    assert!(
        text.contains("decision: reload: no crash kernel loaded\n"),
        "{text}"
    );
}

#[test]
fn x86_64_output_has_no_architecture_keys() {
    for name in ["small-vm", "self-updating", "cma-host"] {
        let (text, json) = ranges(name);
        assert!(json["snapshot"].get("arch").is_none(), "{name}");
        assert!(json["snapshot"].get("outside_header").is_none(), "{name}");
        assert!(json["assessment"].get("outside_header").is_none(), "{name}");
        assert!(json.get("outside_header_warning").is_none(), "{name}");
        assert!(!text.contains("architecture:"), "{name}: {text}");
    }
}

/// A private, empty directory for the instance lock, so that `run` never writes into a fixture.
fn runtime_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "kdump-hotplugd-kernel-model-{}-{name}",
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("runtime dir");
    dir
}

#[test]
fn other_architectures_are_refused_by_ranges_and_run() {
    let root = fixture("ppc64le-host");
    let root = root.to_str().expect("utf-8 path");
    let runtime = runtime_dir("ppc64le");
    let runtime = runtime.to_str().expect("utf-8 path");
    for args in [
        vec!["ranges", "--sysroot", root],
        vec![
            "run",
            "--sysroot",
            root,
            "--dry-run",
            "--bus",
            "none",
            "--runtime-dir",
            runtime,
        ],
    ] {
        let out = kdump_hotplugd(&args);
        assert!(!out.status.success(), "{args:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains("architecture is ppc64le:") && stderr.contains("supports only those"),
            "{args:?}: {stderr}"
        );
    }
    let _ = std::fs::remove_dir_all(runtime);
}

#[test]
fn run_on_arm64_starts_with_the_arm64_rules_and_warns_at_startup() {
    use std::io::BufRead;
    use std::time::{Duration, Instant};
    let root = fixture("arm64-virt");
    let runtime = runtime_dir("arm64");
    let mut child = Command::new(env!("CARGO_BIN_EXE_kdump-hotplugd"))
        .args(["run", "--dry-run", "--bus", "none", "--sysroot"])
        .arg(&root)
        .arg("--runtime-dir")
        .arg(&runtime)
        .env("RUST_LOG", "info")
        .env("NO_COLOR", "1")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("kdump-hotplugd runs");
    let stderr = child.stderr.take().expect("stderr");
    let (lines, received) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
        {
            if lines.send(line).is_err() {
                break;
            }
        }
    });
    let deadline = Instant::now() + Duration::from_secs(60);
    let (mut arch_line, mut warned, mut seen) = (false, false, Vec::new());
    while !(arch_line && warned) {
        let left = deadline.saturating_duration_since(Instant::now());
        match received.recv_timeout(left) {
            Ok(line) => {
                arch_line |= line.contains("header rules") && line.contains("arch=arm64");
                warned |= line.contains("WARN")
                    && line.contains(
                        "of driver-managed memory (virtio_mem) in 2 ranges that no arm64 loader",
                    );
                seen.push(line);
            }
            // The daemon ended or the deadline passed without both lines.
            Err(_) => break,
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    let _ = std::fs::remove_dir_all(&runtime);
    assert!(arch_line && warned, "{}", seen.join("\n"));
    assert!(
        !seen.iter().any(|l| l.contains("architecture is")),
        "{}",
        seen.join("\n")
    );
}

fn copy_tree(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).expect("create dir");
    for entry in std::fs::read_dir(from).expect("read fixture dir") {
        let entry = entry.expect("dir entry");
        let target = to.join(entry.file_name());
        if entry.file_type().expect("file type").is_dir() {
            copy_tree(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).expect("copy fixture file");
        }
    }
}

/// On arm64 the daemon's reader and decision, step by step on a copy of the `virt` guest: more virtio-mem memory
/// changes nothing a reload could put in the header (a skip, with the larger warning), a second DIMM does.
#[test]
fn on_arm64_virtio_mem_growth_alone_asks_for_no_reload_and_a_dimm_does() {
    use kdump_hotplugd::core::decide::{
        decide, Decision, LoadedHeader, Policy, ReloadReason, SkipReason, Triggers,
    };
    let scratch = tempfile::tempdir().expect("temp dir");
    copy_tree(&fixture("arm64-virt"), scratch.path());
    let iomem_path = scratch.path().join("proc/iomem");
    let boot_iomem = std::fs::read_to_string(&iomem_path).expect("iomem");
    let mut reader = SnapshotReader::open(Sysroot::new(scratch.path())).expect("reader");
    let first = reader.take().expect("snapshot");
    let loaded = LoadedHeader::of(&first);
    let policy = Policy::default();

    // virtio-mem plugs 128 MiB more next to its second resource, which grows (MHP_MERGE_RESOURCE).
    let grown = boot_iomem.replace(
        "  210000000-217ffffff : System RAM (virtio_mem)",
        "  210000000-21fffffff : System RAM (virtio_mem)",
    );
    assert_ne!(grown, boot_iomem);
    std::fs::write(&iomem_path, &grown).expect("write iomem");
    let second = reader.take().expect("snapshot");
    assert_eq!(second.ranges, first.ranges);
    let assessment = decide(Some(&loaded), &second, &Triggers::default(), &policy);
    assert_eq!(
        assessment.decision,
        Decision::Skip {
            reason: SkipReason::NothingChanged
        }
    );
    let warning = assessment.outside_header.expect("a warning");
    assert_eq!(warning.bytes, (2048 + 256) * MIB);
    assert_eq!(warning.ranges, 2);

    // A second DIMM: a top-level "System RAM" (MEMBLOCK_NONE), in the next load's header.
    let with_dimm = grown.replace(
        "8000000000-ffffffffff : pcie@10000000",
        "280000000-2bfffffff : System RAM\n8000000000-ffffffffff : pcie@10000000",
    );
    std::fs::write(&iomem_path, &with_dimm).expect("write iomem");
    let third = reader.take().expect("snapshot");
    let assessment = decide(Some(&loaded), &third, &Triggers::default(), &policy);
    assert_eq!(
        assessment.decision,
        Decision::Reload {
            reasons: vec![ReloadReason::RangesChanged {
                added: 1,
                removed: 0
            }],
            loader: kdump_hotplugd::core::decide::LoaderChoice::Configured
        }
    );
    assert!(
        assessment
            .why()
            .starts_with("memory ranges changed (+1 -0); WARNING: 2415919104 bytes"),
        "{}",
        assessment.why()
    );
}

//! The QEMU guest tier: real Debian kernels, real hotplug, a real crash, and the crash kernel's own view of what
//! it would dump. Every test here is `#[ignore]`d so the fast `cargo test` skips it; run them with
//! `make test-guest` (see docs/README-guest.md). Each scenario prints what it checked and its figures.

mod guest {
    pub mod elf;
    pub mod harness;
    pub mod scenario;
}

use guest::harness::{Guest, GuestOptions, GIB};
use guest::scenario::*;

/// Debian's 6.1 has no CONFIG_CRASH_HOTPLUG: the header written at load time goes stale when memory is added.
/// Without anything reloading the crash kernel, the dump must miss exactly the hot-added ranges — the proof that
/// the dump check can fail.
#[test]
#[ignore = "QEMU guest tier: make test-guest"]
fn stale_kernel_without_daemon_dump_misses_hot_added_memory() {
    let mut guest = Guest::boot(&GuestOptions::new("6.1-without-daemon", "6.1"));
    start_watchers(&mut guest);
    load_crash_kernel_with_kexec(&mut guest);
    let before = read_iomem(&mut guest);
    assert!(
        virtio_mem_ranges(&before).is_empty(),
        "no memory is plugged at boot"
    );
    let since = plug(&mut guest, 4 * GIB, 3);
    let iomem = read_iomem(&mut guest);
    let hot_added = virtio_mem_ranges(&iomem);
    assert_eq!(
        bytes(&hot_added),
        4 * GIB,
        "virtio-mem added 4 GiB: {hot_added:?}"
    );
    let figures = figures(&mut guest, since);
    print_figures(&guest.name, "nothing reloads", &figures);
    assert_eq!(figures.loads, 0, "nothing reloaded the crash kernel");
    let dump = crash(&mut guest);
    let expected = kdump_hotplugd::ranges::crash_ranges(&iomem);
    let missing = guest::elf::uncovered(&expected, &dump.header.memory);
    assert_eq!(
        missing, hot_added,
        "the stale header must miss exactly the hot-added ranges (dump has {:?})",
        dump.header.memory
    );
    assert!(
        dump.vmcore_bytes < bytes(&expected) - 4 * GIB + GIB / 4,
        "/proc/vmcore ({} bytes) cannot hold the hot-added memory",
        dump.vmcore_bytes
    );
    println!(
        "[{}] checked: the dump misses exactly the {} hot-added ranges ({:.2} GiB of {:.2} GiB System RAM): the stale header is detected",
        guest.name,
        hot_added.len(),
        bytes(&missing) as f64 / GIB as f64,
        bytes(&expected) as f64 / GIB as f64
    );
}

/// The baseline the daemon is measured against: one full `kexec -s -p` per memory online event, one at a time,
/// as Debian's kdump-tools udev rule does. Its dump is complete, at the cost of many reloads.
#[test]
#[ignore = "QEMU guest tier: make test-guest"]
fn stale_kernel_reload_per_event_script_baseline() {
    let mut guest = Guest::boot(&GuestOptions::new("6.1-reload-per-event", "6.1"));
    start_watchers(&mut guest);
    load_crash_kernel_with_kexec(&mut guest);
    guest.run_ok(
        "guest-tools reload-per-event </dev/null >/dev/null 2>&1 &",
        guest.accel.scale(10),
    );
    let since = plug(&mut guest, 4 * GIB, 5);
    let iomem = read_iomem(&mut guest);
    let figures = figures(&mut guest, since);
    print_figures(&guest.name, "reload-per-event script", &figures);
    let reloads = guest.read_file("/run/baseline-reloads.log").len();
    assert_eq!(
        reloads, figures.loads,
        "each scripted reload shows as one load in the poller"
    );
    assert!(
        reloads > 1,
        "one reload per memory online event, got {reloads}"
    );
    let dump = crash(&mut guest);
    assert_dump_covers(&guest.name, &iomem, &dump);
}

/// The daemon on the stale-header kernel: it loads the crash kernel, hears the hot-add's uevents, coalesces the
/// burst into exactly one reload, and the dump then covers every System RAM range.
#[test]
#[ignore = "QEMU guest tier: make test-guest"]
fn stale_kernel_with_daemon_one_reload_dump_complete() {
    let mut guest = Guest::boot(&GuestOptions::new("6.1-with-daemon", "6.1"));
    start_watchers(&mut guest);
    let before = start_daemon(&mut guest, "--loader native");
    let since = plug(&mut guest, 4 * GIB, 3);
    let after = wait_daemon_idle_after(&mut guest, &before);
    let iomem = read_iomem(&mut guest);
    let figures = figures(&mut guest, since);
    print_figures(&guest.name, "daemon", &figures);
    println!("[{}] daemon: {}", guest.name, after.line);
    assert_eq!(
        after.reloads - before.reloads,
        1,
        "exactly one reload for the burst: {after:?}"
    );
    assert_eq!(after.failed, 0, "no failed reload: {after:?}");
    assert_eq!(after.lost, 0, "no uevent lost: {after:?}");
    assert_eq!(
        after.events - before.events,
        figures.memory_uevents as u64,
        "the daemon saw every memory uevent the guest's logger saw"
    );
    assert_eq!(figures.loads, 1, "the poller saw one load after the burst");
    let dump = crash(&mut guest);
    assert_dump_covers(&guest.name, &iomem, &dump);
}

/// Debian's 6.12 keeps the header current itself (crash_hotplug = 1 once a crash kernel is loaded with
/// kexec_file_load): the daemon must see that and not reload for memory events; the dump still covers all.
#[test]
#[ignore = "QEMU guest tier: make test-guest"]
fn self_updating_kernel_daemon_skips_dump_complete() {
    let mut guest = Guest::boot(&GuestOptions::new("6.12-with-daemon", "6.12"));
    start_watchers(&mut guest);
    let before = start_daemon(&mut guest, "--loader native");
    let hotplug = guest.run_ok(
        "echo \"@@ CRASH_HOTPLUG $(cat /sys/devices/system/memory/crash_hotplug)\"",
        guest.accel.scale(10),
    );
    assert!(
        hotplug.iter().any(|l| l.contains("@@ CRASH_HOTPLUG 1")),
        "6.12 reports crash_hotplug=1 with a kexec_file_load crash kernel: {hotplug:?}"
    );
    let since = plug(&mut guest, 4 * GIB, 3);
    let after = wait_daemon_idle_after(&mut guest, &before);
    let iomem = read_iomem(&mut guest);
    let figures = figures(&mut guest, since);
    print_figures(&guest.name, "daemon, self-updating kernel", &figures);
    println!("[{}] daemon: {}", guest.name, after.line);
    assert_eq!(
        after.reloads, before.reloads,
        "no reload for memory events: {after:?}"
    );
    assert!(
        after.skipped > before.skipped,
        "the burst was decided and skipped: {after:?}"
    );
    let log = daemon_log(&mut guest);
    assert!(
        log.iter()
            .any(|l| l.contains("the kernel updates the header itself for")),
        "the daemon says the kernel keeps the header current; its log:\n{}",
        log.join("\n")
    );
    assert_eq!(figures.loads, 0, "kexec_crash_loaded never dropped");
    assert_eq!(figures.unloaded_seconds, 0.0);
    let dump = crash(&mut guest);
    assert_dump_covers(&guest.name, &iomem, &dump);
}

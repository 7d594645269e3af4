//! Steps the scenarios share: watchers in the guest, plugging memory through QMP, reading /proc/iomem, crashing
//! into the crash kernel and reading its dump header back, and the figures from the guest's logs.

use std::time::{Duration, Instant};

use kdump_hotplugd::core::model::MemRange;
use kdump_hotplugd::core::parse::iomem::{self, Resource};
use kdump_hotplugd::core::ranges::crash_ranges;
use serde_json::json;

use super::elf::{self, DumpHeader};
use super::harness::{Guest, GIB};

/// Starts the guest-side loggers: every uevent, and every change of `kexec_crash_loaded`.
pub fn start_watchers(guest: &mut Guest) {
    guest.run_ok(
        "guest-tools log-uevents </dev/null >/dev/null 2>&1 & guest-tools watch-loaded </dev/null >/dev/null 2>&1 &",
        guest.accel.scale(10),
    );
    // The poller writes its first line at once: wait for it, so no transition is missed.
    guest.run_ok(
        "n=0; until [ -s /run/loaded.log ]; do usleep 20000; n=$((n+1)); [ $n -gt 500 ] && exit 1; done; true",
        guest.accel.scale(20),
    );
}

pub fn crash_kernel_loaded(guest: &mut Guest) -> bool {
    let lines = guest.run_ok(
        "echo \"@@ LOADED $(cat /sys/kernel/kexec_crash_loaded)\"",
        guest.accel.scale(10),
    );
    lines.iter().any(|l| l.contains("@@ LOADED 1"))
}

/// `kexec -s -p` from the guest's shell: the stand-in loader of the scenarios without the daemon.
pub fn load_crash_kernel_with_kexec(guest: &mut Guest) {
    let started = Instant::now();
    guest.run_ok("guest-tools load-crash", guest.accel.scale(60));
    assert!(
        crash_kernel_loaded(guest),
        "[{}] kexec -s -p left no crash kernel loaded",
        guest.name
    );
    println!(
        "[{}] crash kernel loaded by `kexec -s -p` (stand-in, not the daemon) in {:.1}s",
        guest.name,
        started.elapsed().as_secs_f64()
    );
}

pub fn read_iomem(guest: &mut Guest) -> Vec<Resource> {
    let lines = guest.run_between(
        "guest-tools iomem",
        "@@ IOMEM-BEGIN",
        "@@ IOMEM-END",
        guest.accel.scale(20),
    );
    iomem::parse("guest /proc/iomem", &(lines.join("\n") + "\n"))
        .unwrap_or_else(|e| panic!("[{}] {e}", guest.name))
}

/// The hot-added ranges: what virtio-mem added, as `/proc/iomem` names it.
pub fn virtio_mem_ranges(resources: &[Resource]) -> Vec<MemRange> {
    resources
        .iter()
        .filter(|r| r.name == "System RAM (virtio_mem)")
        .map(|r| MemRange::new(r.start, r.end))
        .collect()
}

/// Resizes the virtio-mem device to `bytes` and waits until QEMU reports that size and the guest is quiet:
/// no uevent and no change of `kexec_crash_loaded` for `quiet_seconds`. Returns the guest's uptime when the
/// request went out.
pub fn plug(guest: &mut Guest, bytes: u64, quiet_seconds: u32) -> f64 {
    let requested_at = guest.uptime();
    let started = Instant::now();
    guest
        .qmp()
        .execute(
            "qom-set",
            json!({"path": "/machine/peripheral/vm0", "property": "requested-size", "value": bytes}),
        )
        .unwrap_or_else(|e| panic!("[{}] {e}", guest.name));
    let deadline = Instant::now() + guest.accel.scale(60);
    loop {
        let size = guest
            .qmp()
            .execute(
                "qom-get",
                json!({"path": "/machine/peripheral/vm0", "property": "size"}),
            )
            .unwrap_or_else(|e| panic!("[{}] {e}", guest.name));
        if size.as_u64() == Some(bytes) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "[{}] virtio-mem size stuck at {size} (requested {bytes})",
            guest.name
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let plugged_in = started.elapsed().as_secs_f64();
    let limit = guest.accel.scale(60).as_secs();
    let lines = guest.run_ok(
        &format!("guest-tools settle {quiet_seconds} {limit}"),
        guest.accel.scale(70),
    );
    println!(
        "[{}] plugged {} GiB: QEMU reported the size after {plugged_in:.1}s, guest quiet after {:.1}s ({})",
        guest.name,
        bytes as f64 / GIB as f64,
        started.elapsed().as_secs_f64(),
        lines.iter().find(|l| l.contains("@@ SETTLED")).map_or("", |l| l.trim())
    );
    requested_at
}

/// What the crash kernel reported.
pub struct Dump {
    pub vmcore_bytes: u64,
    pub header: DumpHeader,
}

/// Panics the guest, waits for the crash kernel's report on `/proc/vmcore` and for QEMU to exit.
pub fn crash(guest: &mut Guest) -> Dump {
    let started = Instant::now();
    guest.send("echo c > /proc/sysrq-trigger");
    let (_, size_line) = guest.wait_for("@@ VMCORE-SIZE ", guest.accel.scale(60));
    let vmcore_bytes = size_line["@@ VMCORE-SIZE ".len()..]
        .trim()
        .parse()
        .unwrap_or_else(|e| panic!("[{}] {size_line:?}: {e}", guest.name));
    guest.wait_for("@@ VMCORE-HEADER-BEGIN", guest.accel.scale(10));
    let (lines, _) = guest.wait_for("@@ VMCORE-HEADER-END", guest.accel.scale(60));
    // Only whole base64 lines: a stray kernel message line is not part of the header.
    let text: String = lines
        .iter()
        .filter(|l| {
            !l.is_empty()
                && l.bytes()
                    .all(|c| c.is_ascii_alphanumeric() || b"+/=".contains(&c))
        })
        .map(|l| l.as_str())
        .collect::<Vec<_>>()
        .join("\n");
    let bytes = elf::base64_decode(&text).unwrap_or_else(|e| panic!("[{}] {e}", guest.name));
    let header =
        elf::parse(&bytes).unwrap_or_else(|e| panic!("[{}] /proc/vmcore: {e}", guest.name));
    guest.wait_exit(guest.accel.scale(30));
    println!(
        "[{}] crash kernel up and /proc/vmcore read {:.1}s after the panic: {:.2} GiB, {} PT_LOAD ranges (+{} kernel text), {} CPU notes",
        guest.name,
        started.elapsed().as_secs_f64(),
        vmcore_bytes as f64 / GIB as f64,
        header.memory.len(),
        header.kernel_text_loads,
        header.cpu_notes
    );
    Dump {
        vmcore_bytes,
        header,
    }
}

/// Why the dump does not hold exactly the ranges the kernel computes from the first kernel's `/proc/iomem`.
pub fn dump_coverage_problem(iomem: &[Resource], dump: &Dump) -> Option<String> {
    let expected = crash_ranges(iomem);
    let missing = elf::uncovered(&expected, &dump.header.memory);
    if !missing.is_empty() {
        return Some(format!(
            "the dump misses {} bytes of System RAM: {missing:?}\n expected {expected:?}\n dump has {:?}",
            bytes(&missing),
            dump.header.memory
        ));
    }
    if dump.header.memory != expected {
        return Some(format!(
            "the dump's PT_LOAD list {:?} differs from the System RAM ranges of /proc/iomem {expected:?}",
            dump.header.memory
        ));
    }
    if dump.vmcore_bytes < bytes(&expected) {
        return Some(format!(
            "/proc/vmcore holds {} bytes, less than the {} bytes of System RAM",
            dump.vmcore_bytes,
            bytes(&expected)
        ));
    }
    None
}

/// The dump must hold exactly the ranges the kernel computes from the first kernel's `/proc/iomem`.
pub fn assert_dump_covers(guest_name: &str, iomem: &[Resource], dump: &Dump) {
    if let Some(problem) = dump_coverage_problem(iomem, dump) {
        panic!("[{guest_name}] {problem}");
    }
    let expected = crash_ranges(iomem);
    println!(
        "[{guest_name}] checked: the dump's {} PT_LOAD ranges equal the {} System RAM ranges of the first kernel ({:.2} GiB)",
        dump.header.memory.len(),
        expected.len(),
        bytes(&expected) as f64 / GIB as f64
    );
}

/// For a header kexec-tools built (`kexec -c -p`, kexec_load): it must cover every System RAM range, but its
/// list is not the kernel's: it also describes low memory below 1 MiB (copied to its backup region), which
/// the kernel's own header leaves out. Anything else extra fails.
pub fn assert_dump_covers_userspace_header(guest_name: &str, iomem: &[Resource], dump: &Dump) {
    let expected = crash_ranges(iomem);
    let missing = elf::uncovered(&expected, &dump.header.memory);
    assert!(
        missing.is_empty(),
        "[{guest_name}] the dump misses {} bytes of System RAM: {missing:?}",
        bytes(&missing)
    );
    let extra = elf::uncovered(&dump.header.memory, &expected);
    assert!(
        extra.iter().all(|r| r.end < 1 << 20),
        "[{guest_name}] the dump has memory that is not System RAM above 1 MiB: {extra:?}"
    );
    println!(
        "[{guest_name}] checked: the dump's {} PT_LOAD ranges cover all {} System RAM ranges of the first kernel ({:.2} GiB); extra below 1 MiB: {extra:?}",
        dump.header.memory.len(),
        expected.len(),
        bytes(&expected) as f64 / GIB as f64
    );
}

pub fn bytes(ranges: &[MemRange]) -> u64 {
    ranges.iter().map(MemRange::size).sum()
}

/// Figures of one burst, from the guest's uevent log and its `kexec_crash_loaded` poller.
#[derive(Debug)]
pub struct Figures {
    pub uevents: usize,
    pub memory_uevents: usize,
    /// Transitions of `kexec_crash_loaded` to 1 after the burst began: crash kernel loads.
    pub loads: usize,
    /// From the last uevent to the last load (None if nothing was loaded after it).
    pub last_uevent_to_loaded: Option<f64>,
    /// Time `kexec_crash_loaded` read 0 between the request and the end of the burst's work.
    pub unloaded_seconds: f64,
}

fn stamped(line: &str) -> Option<(f64, &str)> {
    let (time, rest) = line.trim().split_once(' ')?;
    Some((time.parse().ok()?, rest))
}

pub fn figures(guest: &mut Guest, since: f64) -> Figures {
    let until = guest.uptime();
    let uevents: Vec<(f64, String)> = guest
        .read_file("/run/uevents.log")
        .iter()
        .filter_map(|l| stamped(l).map(|(t, rest)| (t, rest.to_string())))
        .filter(|(t, _)| *t >= since)
        .collect();
    let loaded: Vec<(f64, bool)> = guest
        .read_file("/run/loaded.log")
        .iter()
        .filter_map(|l| stamped(l).map(|(t, v)| (t, v.trim() == "1")))
        .collect();
    let mut state = loaded
        .iter()
        .take_while(|(t, _)| *t < since)
        .last()
        .is_some_and(|(_, v)| *v);
    let mut state_since = since;
    let (mut unloaded, mut loads, mut last_load) = (0.0, 0, None);
    for &(time, value) in loaded.iter().filter(|(t, _)| *t >= since) {
        if !state {
            unloaded += time - state_since;
        }
        if value && !state {
            loads += 1;
            last_load = Some(time);
        }
        state = value;
        state_since = time;
    }
    if !state {
        unloaded += until - state_since;
    }
    let last_uevent = uevents.last().map(|(t, _)| *t);
    Figures {
        uevents: uevents.len(),
        memory_uevents: uevents
            .iter()
            .filter(|(_, e)| e.contains(" memory "))
            .count(),
        loads,
        last_uevent_to_loaded: match (last_uevent, last_load) {
            (Some(event), Some(load)) if load >= event => Some(load - event),
            _ => None,
        },
        unloaded_seconds: unloaded,
    }
}

pub fn print_figures(name: &str, who: &str, figures: &Figures) {
    println!(
        "[{name}] FIGURES {who}: uevents per burst {} (memory {}), crash kernel loads {}, last uevent -> crash kernel loaded {}, no crash kernel loaded for {:.2}s",
        figures.uevents,
        figures.memory_uevents,
        figures.loads,
        figures
            .last_uevent_to_loaded
            .map_or("n/a".to_string(), |s| format!("{s:.2}s")),
        figures.unloaded_seconds
    );
}

/// The daemon's published status, parsed from its last `status:` log line (`Status::summary`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DaemonStatus {
    pub state: String,
    pub crash_kernel_loaded: bool,
    pub ranges: u64,
    pub events: u64,
    pub coalesced: u64,
    /// Times the uevent socket overflowed (ENOBUFS).
    pub overflows: u64,
    pub reloads: u64,
    pub failed: u64,
    pub skipped: u64,
    pub line: String,
}

pub fn parse_status(line: &str) -> Option<DaemonStatus> {
    let (state, rest) = line.split_once(": ")?;
    let numbers: Vec<u64> = rest
        .split(|c: char| !c.is_ascii_digit())
        .filter(|s| !s.is_empty())
        .take(8)
        .map(|s| s.parse().ok())
        .collect::<Option<_>>()?;
    let [ranges, events, coalesced, _malformed, overflows, reloads, failed, skipped] = numbers[..]
    else {
        return None;
    };
    Some(DaemonStatus {
        state: state.split_whitespace().next()?.to_string(),
        crash_kernel_loaded: rest.contains("crash kernel loaded"),
        ranges,
        events,
        coalesced,
        overflows,
        reloads,
        failed,
        skipped,
        line: line.to_string(),
    })
}

pub fn daemon_status(guest: &mut Guest) -> Option<DaemonStatus> {
    let lines = guest.run_ok("guest-tools daemon-status", guest.accel.scale(10));
    lines
        .iter()
        .find_map(|l| l.split("@@ STATUS ").nth(1))
        .and_then(parse_status)
}

/// Polls the daemon's status until `done` holds.
pub fn wait_daemon(
    guest: &mut Guest,
    what: &str,
    timeout: Duration,
    done: impl Fn(&DaemonStatus) -> bool,
) -> DaemonStatus {
    let deadline = Instant::now() + timeout;
    let mut last = None;
    while Instant::now() < deadline {
        last = daemon_status(guest);
        if let Some(status) = &last {
            if done(status) {
                return status.clone();
            }
        }
        std::thread::sleep(Duration::from_millis(300));
    }
    let log = guest.read_file("/run/daemon.log");
    panic!(
        "[{}] the daemon did not reach {what} within {timeout:?}; last status {last:?}; its log:\n{}",
        guest.name,
        log.join("\n")
    );
}

/// Starts the daemon (`kdump-hotplugd run`, real edges: kernel uevents, kexec loader) and waits until it has
/// loaded the crash kernel and is idle.
pub fn start_daemon(guest: &mut Guest, arguments: &str) -> DaemonStatus {
    let started = Instant::now();
    guest.run_ok(
        &format!("guest-tools start-daemon {arguments}"),
        guest.accel.scale(10),
    );
    let status = wait_daemon(
        guest,
        "idle with a crash kernel loaded",
        guest.accel.scale(60),
        |s| s.state == "idle" && s.crash_kernel_loaded,
    );
    assert!(
        crash_kernel_loaded(guest),
        "[{}] the daemon says loaded, the kernel does not",
        guest.name
    );
    println!(
        "[{}] daemon up, crash kernel loaded, after {:.1}s: {}",
        guest.name,
        started.elapsed().as_secs_f64(),
        status.line
    );
    status
}

/// Waits until the daemon has seen more events than `before` and is idle again.
pub fn wait_daemon_idle_after(guest: &mut Guest, before: &DaemonStatus) -> DaemonStatus {
    let events = before.events;
    wait_daemon(guest, "idle after the burst", guest.accel.scale(60), |s| {
        s.state == "idle" && s.events > events
    })
}

pub fn daemon_log(guest: &mut Guest) -> Vec<String> {
    guest.read_file("/run/daemon.log")
}

/// Every status the daemon published, in order.
pub fn status_history(log: &[String]) -> Vec<DaemonStatus> {
    log.iter()
        .filter_map(|l| l.split_once(" status: ").map(|(_, status)| status))
        .filter_map(parse_status)
        .collect()
}

/// Hot-adds a CPU through QMP (`device_add` of the first free slot `query-hotpluggable-cpus` lists). Returns
/// its QOM id.
pub fn hot_add_cpu(guest: &mut Guest, id: &str) {
    let slots = guest
        .qmp()
        .execute("query-hotpluggable-cpus", json!({}))
        .unwrap_or_else(|e| panic!("[{}] {e}", guest.name));
    let free = slots
        .as_array()
        .and_then(|slots| slots.iter().rfind(|s| s.get("qom-path").is_none()))
        .unwrap_or_else(|| panic!("[{}] no free CPU slot in {slots}", guest.name))
        .clone();
    let mut arguments = free["props"].clone();
    arguments["driver"] = free["type"].clone();
    arguments["id"] = json!(id);
    guest
        .qmp()
        .execute("device_add", arguments)
        .unwrap_or_else(|e| panic!("[{}] device_add {id}: {e}", guest.name));
}

/// Hot-adds a 128 MiB DIMM (`object-add` of a RAM backend, `device_add` of a `pc-dimm`): ACPI memory hotplug,
/// one System RAM resource per DIMM.
pub fn hot_add_dimm(guest: &mut Guest, index: usize) {
    let backend = format!("dimm-mem{index}");
    guest
        .qmp()
        .execute(
            "object-add",
            json!({"qom-type": "memory-backend-ram", "id": backend, "size": 128u64 << 20}),
        )
        .unwrap_or_else(|e| panic!("[{}] {e}", guest.name));
    guest
        .qmp()
        .execute(
            "device_add",
            json!({"driver": "pc-dimm", "id": format!("dimm{index}"), "memdev": backend}),
        )
        .unwrap_or_else(|e| panic!("[{}] {e}", guest.name));
}

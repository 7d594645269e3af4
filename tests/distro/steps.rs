//! Steps the scenarios share: the guest-side loggers, a virtio-mem burst, the daemon's counters over the real
//! system bus, the distro rule's journal lines, the crash and the figures.

use std::time::{Duration, Instant};

use kdump_hotplugd::core::model::MemRange;
use kdump_hotplugd::core::parse::iomem::{self, Resource};
use kdump_hotplugd::core::ranges::crash_ranges;

/// Crash CMA ranges (`crashkernel=,cma`) exist from Linux 6.17; Debian's 6.1 and 6.12 have none.
pub const NO_CRASH_CMA: &[MemRange] = &[];
use serde_json::{json, Value};

use super::dump::{self, SavedDump};
use super::system::{secs, work_dir, Distro};

pub const GIB: u64 = 1 << 30;
pub const UNIT: &str = "kdump-hotplugd";
pub const BUS_ARGS: &str = "org.kdump.Hotplug1 /org/kdump/Hotplug1 org.kdump.Hotplug1";

pub fn checked(d: &Distro, what: impl std::fmt::Display) {
    println!("[{}] checked: {what}", d.name);
}

/// udevadm monitor (kernel and processed events of the memory subsystem, stamped with the monotonic clock) and a
/// poller of `kexec_crash_loaded`: a shell loop without sleep, which writes each change with the uptime. Both are
/// started before the burst; the poller's first line is written at once, so no transition is missed after it.
pub fn start_watchers(d: &mut Distro) {
    d.sh_ok(
        "rm -f /run/uevents.log /run/loaded.log; \
         setsid stdbuf -oL udevadm monitor --kernel --udev --subsystem-match=memory >/run/uevents.log 2>&1 & \
         setsid bash -c 'p=x; while :; do read v </sys/kernel/kexec_crash_loaded; if [ \"$v\" != \"$p\" ]; then \
         read u _ </proc/uptime; echo \"$u $v\" >>/run/loaded.log; p=$v; fi; done' >/dev/null 2>&1 &",
        secs(30),
    );
    d.sh_ok(
        "for i in $(seq 300); do [ -s /run/loaded.log ] && grep -q 'monitor will print' /run/uevents.log && exit 0; \
         sleep 0.1; done; exit 1",
        secs(90),
    );
}

/// Stops the poller (it costs a vCPU), keeping its log.
pub fn stop_poller(d: &mut Distro) {
    d.sh_ok(
        "pkill -f 'read v </sys/kernel/kexec_crash_loaded' ; true",
        secs(30),
    );
}

pub fn read_iomem(d: &mut Distro) -> Vec<Resource> {
    let lines = d.sh_ok(
        "echo @@ IOMEM-BEGIN; cat /proc/iomem; echo @@ IOMEM-END",
        secs(60),
    );
    let start = lines
        .iter()
        .position(|l| l.contains("@@ IOMEM-BEGIN"))
        .unwrap();
    let end = lines
        .iter()
        .position(|l| l.contains("@@ IOMEM-END"))
        .unwrap();
    iomem::parse(
        "guest /proc/iomem",
        &(lines[start + 1..end].join("\n") + "\n"),
    )
    .unwrap_or_else(|e| panic!("[{}] {e}", d.name))
}

pub fn virtio_mem_ranges(resources: &[Resource]) -> Vec<MemRange> {
    resources
        .iter()
        .filter(|r| r.name == "System RAM (virtio_mem)")
        .map(|r| MemRange::new(r.start, r.end))
        .collect()
}

pub fn bytes(ranges: &[MemRange]) -> u64 {
    ranges.iter().map(MemRange::size).sum()
}

/// Online memory blocks and the block size.
fn memory_blocks(d: &mut Distro) -> (u64, u64) {
    let line = d.value(
        "echo $(cat /sys/devices/system/memory/block_size_bytes) $(cat /sys/devices/system/memory/memory*/state | grep -cx online)",
    );
    let (size, online) = line.split_once(' ').unwrap();
    (
        u64::from_str_radix(size, 16).unwrap(),
        online.parse().unwrap(),
    )
}

/// What a burst did, in guest uptime seconds.
#[derive(Debug, Clone)]
pub struct Burst {
    pub requested_at: f64,
    pub blocks_added: u64,
    pub block_size: u64,
    /// Seconds until every new block was online, seen from the host.
    pub online_after: f64,
}

/// A resize request in flight.
pub struct PlugRequest {
    pub size: u64,
    pub add: u64,
    pub block_size: u64,
    pub online_before: u64,
    pub requested_at: f64,
    started: Instant,
}

fn virtio_mem_size(d: &mut Distro) -> u64 {
    d.guest
        .qmp()
        .execute(
            "qom-get",
            json!({"path": "/machine/peripheral/vm0", "property": "size"}),
        )
        .unwrap_or_else(|e| panic!("[{}] {e}", d.name))
        .as_u64()
        .unwrap()
}

/// Probes the guest every `interval` until `probe` gives a value, for at most `timeout`; at the deadline, fails with
/// what the last probe said (its `Err`) of why it is not there yet.
pub fn poll_until<T>(
    d: &mut Distro,
    timeout: Duration,
    interval: Duration,
    mut probe: impl FnMut(&mut Distro) -> Result<T, String>,
) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        match probe(d) {
            Ok(value) => return value,
            Err(why) => assert!(Instant::now() < deadline, "[{}] {why}", d.name),
        }
        std::thread::sleep(interval);
    }
}

/// Asks QEMU to resize the virtio-mem device to `size` bytes, without waiting.
pub fn request_plug(d: &mut Distro, size: u64) -> PlugRequest {
    let (block_size, online_before) = memory_blocks(d);
    let current = virtio_mem_size(d);
    assert!(size > current, "[{}] a hot-add: {size} > {current}", d.name);
    let requested_at = d.uptime();
    let started = Instant::now();
    d.guest
        .qmp()
        .execute(
            "qom-set",
            json!({"path": "/machine/peripheral/vm0", "property": "requested-size", "value": size}),
        )
        .unwrap_or_else(|e| panic!("[{}] {e}", d.name));
    PlugRequest {
        size,
        add: size - current,
        block_size,
        online_before,
        requested_at,
        started,
    }
}

/// Waits until QEMU reports the size, every new memory block is online in the guest and udevd's queue is empty
/// (every uevent processed, the distro rule's included).
pub fn finish_plug(d: &mut Distro, request: &PlugRequest) -> Burst {
    let add = request.add;
    poll_until(d, secs(180), Duration::from_millis(200), |d| {
        let size = virtio_mem_size(d);
        if size == request.size {
            Ok(())
        } else {
            Err(format!(
                "virtio-mem size stuck at {size} (requested {})",
                request.size
            ))
        }
    });
    let want = request.online_before + add / request.block_size;
    d.sh_ok(
        &format!(
            "for i in $(seq 900); do [ $(cat /sys/devices/system/memory/memory*/state | grep -cx online) -ge {want} ] \
             && exit 0; sleep 0.2; done; exit 1"
        ),
        secs(240),
    );
    let online_after = request.started.elapsed().as_secs_f64();
    d.sh_ok("udevadm settle --timeout=300", secs(320));
    println!(
        "[{}] +{} GiB: {} blocks of {} MiB online after {online_after:.1}s, udev queue empty after {:.1}s",
        d.name,
        add / GIB,
        add / request.block_size,
        request.block_size >> 20,
        request.started.elapsed().as_secs_f64()
    );
    Burst {
        requested_at: request.requested_at,
        blocks_added: add / request.block_size,
        block_size: request.block_size,
        online_after,
    }
}

/// Resizes the virtio-mem device to `size` and waits for the whole burst to be processed.
pub fn plug(d: &mut Distro, size: u64) -> Burst {
    let request = request_plug(d, size);
    finish_plug(d, &request)
}

/// The uevent log: (kernel or udev, uptime, action, device).
#[derive(Debug, Clone)]
pub struct Uevent {
    pub from_udev: bool,
    pub at: f64,
    pub action: String,
    pub device: String,
}

pub fn uevents(d: &mut Distro, since: f64) -> Vec<Uevent> {
    d.sh_ok("cat /run/uevents.log", secs(60))
        .iter()
        .filter_map(|line| {
            // KERNEL[123.456789] add      /devices/system/memory/memory40 (memory)
            let (source, rest) = line.trim().split_once('[')?;
            let (at, rest) = rest.split_once(']')?;
            let mut words = rest.split_whitespace();
            Some(Uevent {
                from_udev: source.trim() == "UDEV",
                at: at.parse().ok()?,
                action: words.next()?.to_string(),
                device: words.next()?.to_string(),
            })
        })
        .filter(|u| u.at >= since)
        .collect()
}

/// The kernel→udevd delivery of each uevent: processed minus emitted, per device and action (seconds).
pub fn udev_delays(events: &[Uevent]) -> Vec<f64> {
    events
        .iter()
        .filter(|e| e.from_udev)
        .filter_map(|processed| {
            events
                .iter()
                .find(|k| {
                    !k.from_udev && k.action == processed.action && k.device == processed.device
                })
                .map(|k| processed.at - k.at)
        })
        .collect()
}

/// Changes of `kexec_crash_loaded` since `since`: (uptime, value).
pub fn loaded_log(d: &mut Distro) -> Vec<(f64, bool)> {
    d.sh_ok("cat /run/loaded.log", secs(60))
        .iter()
        .filter_map(|l| {
            let (at, value) = l.trim().split_once(' ')?;
            Some((at.parse().ok()?, value == "1"))
        })
        .collect()
}

/// Seconds `kexec_crash_loaded` read 0 after `since`, and the number of 0→1 transitions (loads).
pub fn unloaded_time(log: &[(f64, bool)], since: f64, until: f64) -> (f64, usize, Option<f64>) {
    let mut unloaded = 0.0;
    let mut loads = 0;
    let mut last_load = None;
    let mut down_since: Option<f64> = None;
    let mut state = true;
    for &(at, loaded) in log {
        if at < since {
            state = loaded;
            continue;
        }
        if !loaded && state {
            down_since = Some(at);
        }
        if loaded && !state {
            loads += 1;
            last_load = Some(at);
            if let Some(down) = down_since.take() {
                unloaded += at - down;
            }
        }
        state = loaded;
    }
    if let Some(down) = down_since {
        unloaded += until - down;
    }
    (unloaded, loads, last_load)
}

/// Journal messages since boot that are exactly `message`.
pub fn journal_count(d: &mut Distro, message: &str) -> usize {
    let value = d.value(&format!(
        "journalctl -b -o cat --no-pager | grep -cxF '{message}' ; true"
    ));
    value
        .parse()
        .unwrap_or_else(|e| panic!("[{}] count of {message:?}: {value:?}: {e}", d.name))
}

/// The distro rule's outcomes so far: (runs, failures). Each try-reload that finds a crash kernel loaded logs,
/// through logger(1), exactly one of "unloaded kdump kernel" and "failed to unload kdump kernel"
/// (kdump-config, kdump_unload(); its log_failure_msg twin is decorated and not counted).
pub fn distro_rule_runs(d: &mut Distro) -> (usize, usize) {
    let failed = journal_count(d, "failed to unload kdump kernel");
    let unloaded = journal_count(d, "unloaded kdump kernel");
    (unloaded + failed, failed)
}

/// The daemon's status as one D-Bus call on the system bus (`GetStatus`), by name.
#[derive(Debug, Clone)]
pub struct DaemonStatus {
    pub values: serde_json::Map<String, Value>,
}

impl DaemonStatus {
    pub fn u(&self, key: &str) -> u64 {
        self.values
            .get(key)
            .and_then(|v| v.get("data"))
            .and_then(Value::as_u64)
            .unwrap_or_else(|| panic!("GetStatus has no number {key}: {:?}", self.values))
    }
    pub fn s(&self, key: &str) -> String {
        self.values
            .get(key)
            .and_then(|v| v.get("data"))
            .and_then(Value::as_str)
            .unwrap_or_else(|| panic!("GetStatus has no string {key}: {:?}", self.values))
            .to_string()
    }
    pub fn decided(&self) -> u64 {
        self.u("Reloads") + self.u("ReloadsFailed") + self.u("ReloadsSkipped")
    }
}

pub fn daemon_status(d: &mut Distro) -> DaemonStatus {
    let lines = d.sh_ok(
        &format!("busctl --json=short call {BUS_ARGS} GetStatus"),
        secs(60),
    );
    let json: Value = lines
        .iter()
        .find_map(|l| serde_json::from_str(l.trim()).ok())
        .unwrap_or_else(|| panic!("[{}] no JSON from busctl: {lines:?}", d.name));
    let values = json["data"][0]
        .as_object()
        .unwrap_or_else(|| panic!("[{}] GetStatus: {json}", d.name))
        .clone();
    DaemonStatus { values }
}

/// Waits until the daemon has decided about the burst (a reload, a skip or a failure more than `before`) and is
/// idle with every memory uevent udevd processed counted.
pub fn wait_daemon_settled(d: &mut Distro, before: &DaemonStatus, uevents: u64) -> DaemonStatus {
    poll_until(d, secs(300), Duration::from_millis(500), |d| {
        let now = daemon_status(d);
        if now.s("State") == "idle"
            && now.decided() > before.decided()
            && now.u("EventsSeen") >= before.u("EventsSeen") + uevents
        {
            Ok(now)
        } else {
            Err(format!(
                "the daemon did not settle after the burst: {:?}",
                now.values
            ))
        }
    })
}

/// The daemon's main pid, CPU time (ms) and RSS (KiB, now and peak).
#[derive(Debug, Clone, Copy)]
pub struct Usage {
    pub pid: u32,
    pub cpu_ms: u64,
    pub rss_kib: u64,
    pub hwm_kib: u64,
}

pub fn daemon_usage(d: &mut Distro) -> Usage {
    let pid: u32 = d
        .value(&format!("systemctl show -p MainPID --value {UNIT}"))
        .parse()
        .unwrap();
    assert!(pid > 0, "[{}] {UNIT} has no main pid", d.name);
    let stat = d.value(&format!("cat /proc/{pid}/stat"));
    // Fields after the parenthesised name: state is field 3, utime 14, stime 15 (clock ticks, 100 Hz on Debian).
    let after = stat.rsplit_once(") ").unwrap().1;
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    let status = d.sh_ok(
        &format!("grep -E '^Vm(RSS|HWM):' /proc/{pid}/status"),
        secs(30),
    );
    let kib = |key: &str| -> u64 {
        status
            .iter()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("[{}] no {key} in {status:?}", d.name))
    };
    Usage {
        pid,
        cpu_ms: ticks * 10,
        rss_kib: kib("VmRSS:"),
        hwm_kib: kib("VmHWM:"),
    }
}

/// What the crash left: the crash kernel's `Command line:` from the console, the saved dump, timings.
pub struct Crash {
    pub cmdline: String,
    pub seconds: f64,
    pub dump: SavedDump,
}

/// The record kdump-tools keeps of its last load (`$KDUMP_COREDIR/kexec_cmd`, kdump_load()): its command line.
pub fn kdump_tools_cmdline(d: &mut Distro) -> String {
    let record = d.value("cat /var/crash/kexec_cmd");
    record
        .split_once("--command-line=\"")
        .and_then(|(_, rest)| rest.split_once('"'))
        .map(|(cmdline, _)| cmdline.trim().to_string())
        .unwrap_or_else(|| panic!("[{}] no --command-line in kexec_cmd: {record}", d.name))
}

/// Panics the guest; the crash kernel boots the Debian system with kdump-tools' initrd, which saves the dump and
/// reboots (QEMU exits: -no-reboot). Then the host reads the dump from the disk.
pub fn crash(d: &mut Distro) -> Crash {
    let started = Instant::now();
    d.sh_ok("sync", secs(60));
    d.guest.send("echo c > /proc/sysrq-trigger");
    let (_, line) = d.guest.wait_for("Command line:", secs(300));
    let cmdline = line["Command line:".len()..].trim().to_string();
    println!("[{}] crash kernel's Command line: {cmdline}", d.name);
    let exit = d.guest.wait_exit(secs(600));
    let seconds = started.elapsed().as_secs_f64();
    let transcript = std::fs::read_to_string(&d.guest.transcript).unwrap_or_default();
    let saved_line = transcript
        .lines()
        .rev()
        .find(|l| l.contains("saved vmcore in"))
        .map(|l| l.trim().to_string());
    if saved_line.is_none() {
        // Say how the crash boot ended before the dump check fails on a missing file.
        let qemu_log = std::fs::read_to_string(&d.qemu_log).unwrap_or_default();
        let resets = qemu_log.matches("CPU Reset").count();
        let triple = qemu_log
            .lines()
            .filter(|l| l.contains("Triple fault"))
            .count();
        let tail: Vec<&str> = transcript.lines().rev().take(15).collect();
        println!(
            "[{}] the crash boot ended without \"saved vmcore in\" after {seconds:.1}s: QEMU {exit}, {resets} CPU \
             resets and {triple} triple faults in {}; last console lines:\n{}",
            d.name,
            d.qemu_log.display(),
            tail.into_iter().rev().collect::<Vec<_>>().join("\n")
        );
    }
    let work = work_dir().join(&d.name);
    std::fs::create_dir_all(&work).unwrap();
    let dump = dump::read_saved_dump(&d.overlay, &work);
    println!(
        "[{}] crash to QEMU exit {seconds:.1}s; kdump-tools saved {} ({}; {:.1} MiB flattened); kdump header: Linux {}, \
         version {}, max_mapnr {} ({:.2} GiB), {} page frames in the first bitmap",
        d.name,
        dump.dir,
        dump.files.join(" "),
        dump.flattened_bytes as f64 / (1 << 20) as f64,
        dump.header.release,
        dump.header.header_version,
        dump.header.max_mapnr,
        (dump.header.max_mapnr * 4096) as f64 / GIB as f64,
        dump.covered_bytes() / 4096
    );
    println!(
        "[{}] kdump-tools on the crash kernel's console: {}; kdump-compressed copy: {}",
        d.name,
        saved_line
            .as_deref()
            .unwrap_or("(no \"saved vmcore in\" line)"),
        dump.kdump.display()
    );
    Crash {
        cmdline,
        seconds,
        dump,
    }
}

/// Why the dump does not hold every page of every System RAM range the first kernel had (None: it does).
pub fn coverage_problem(iomem: &[Resource], dump: &SavedDump) -> Option<String> {
    let expected = crash_ranges(iomem, NO_CRASH_CMA);
    let missing = dump::missing_pages(&expected, &dump.covered);
    if missing.is_empty() {
        None
    } else {
        Some(format!(
            "the saved dump misses {:.2} GiB of System RAM: {:x?} (max_mapnr {})",
            bytes(&missing) as f64 / GIB as f64,
            missing,
            dump.header.max_mapnr
        ))
    }
}

pub fn assert_dump_complete(d: &Distro, iomem: &[Resource], dump: &SavedDump) {
    if let Some(problem) = coverage_problem(iomem, dump) {
        panic!("[{}] {problem}", d.name);
    }
    let expected = crash_ranges(iomem, NO_CRASH_CMA);
    checked(
        d,
        format!(
            "the saved dump holds every page of the {} System RAM ranges the first kernel had ({:.2} GiB; max_mapnr {})",
            expected.len(),
            bytes(&expected) as f64 / GIB as f64,
            dump.header.max_mapnr
        ),
    );
}

/// Figures of one scenario, printed as one `FIGURES` line.
#[derive(Debug, Default)]
pub struct Figures {
    pub entries: Vec<(String, String)>,
}

impl Figures {
    pub fn add(&mut self, key: &str, value: impl std::fmt::Display) {
        self.entries.push((key.to_string(), value.to_string()));
    }
    pub fn print(&self, d: &Distro) {
        let line: Vec<String> = self
            .entries
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        println!("[{}] FIGURES {}", d.name, line.join(" "));
    }
}

/// The figures of a burst that every scenario measures the same way.
pub fn burst_figures(d: &mut Distro, figures: &mut Figures, burst: &Burst) -> Vec<Uevent> {
    let until = d.uptime();
    let events = uevents(d, burst.requested_at);
    let kernel: Vec<&Uevent> = events.iter().filter(|e| !e.from_udev).collect();
    let delays = udev_delays(&events);
    figures.add("uevents", kernel.len());
    figures.add(
        "uevents_online",
        kernel.iter().filter(|e| e.action == "online").count(),
    );
    figures.add("blocks", burst.blocks_added);
    figures.add("block_mib", burst.block_size >> 20);
    figures.add("online_s", format!("{:.1}", burst.online_after));
    if !delays.is_empty() {
        let mean = delays.iter().sum::<f64>() / delays.len() as f64;
        let max = delays.iter().cloned().fold(0.0, f64::max);
        figures.add("udev_delay_ms_mean", format!("{:.0}", mean * 1000.0));
        figures.add("udev_delay_ms_max", format!("{:.0}", max * 1000.0));
    }
    let log = loaded_log(d);
    let (unloaded, loads, last_load) = unloaded_time(&log, burst.requested_at, until);
    figures.add("crash_kernel_loads", loads);
    figures.add("no_crash_kernel_s", format!("{unloaded:.2}"));
    let last_uevent = events.iter().map(|e| e.at).fold(0.0, f64::max);
    figures.add(
        "last_uevent_to_reloaded_s",
        match last_load {
            Some(at) => format!("{:.2}", at - last_uevent),
            None => "none".into(),
        },
    );
    events
}

//! The report `make bench` prints: the cost of a hotplug storm, side by side with the udev-rule approach, in one
//! table of medians, minima, maxima and ratios measured in the same run, each against its target from the
//! benchmark issue (printed PASS/MISS, never asserted).
//!
//! It gathers:
//! - criterion's figures for `event_path` and `snapshot` (run those first: `make bench` does);
//! - instruction counts of the same work under callgrind, the figure that stays put on a shared machine;
//! - the whole daemon on the simulated 1 TiB and 8 TiB storms (`run --simulate=… --json`, release build): reloads
//!   from its report, CPU time and peak RSS from `wait4`'s rusage, over `BENCH_RUNS` runs;
//! - the approach users have today: `benches/udev-rule/reload-throttle.sh` run once per uevent of the same storm,
//!   one fork+exec of `/bin/sh` each, as udev's `RUN+=` does;
//! - idle wake-ups over `BENCH_IDLE_SECONDS`: the `idle` scenario after its storm, and the real `run --dry-run`
//!   on this host; context switches of every thread, and from `strace -f` the timers that fired (`epoll_wait`
//!   returning nothing) apart from wake-ups for input (on a shared host, other sessions' uevents and kernel log
//!   lines reach the real run).
//!
//! Settings (environment): `BENCH_RUNS` (5), `BENCH_UDEV_EVENTS` (16384), `BENCH_IDLE_SECONDS` (60),
//! `BENCH_IDLE_SETTLE_SECONDS` (3: the CLI's live summary line repaints up to a second after the last change).
//!
//! Modes, for running one part by hand:
//!
//!     storm-…                              everything, then the table
//!     storm-… udev-rule [--events N]       the script driver alone; prints JSON
//!     storm-… instructions event-path      the work callgrind counts (see `instruction_counts`)
//!     storm-… instructions snapshot N DIR
//!     storm-… fixture N                    writes the sparse host with N ranges for profiling, prints its path
//!     storm-… idle [SECONDS]               the real `run --dry-run` idle window alone (release binary)

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

mod common;
#[path = "../tests/common/precondition.rs"]
mod precondition;

use common::{handle_storm, new_debouncer, storm, SnapshotFixture, BLOCKS, SNAPSHOT_SIZES};

/// Runs of the measured work per callgrind process, so one-off costs (first allocation) weigh less.
const ROUNDS: u64 = 3;
/// Uevents in the 1 TiB storm, the size the targets are given for.
const STORM_UEVENTS: u64 = 2 * BLOCKS;

// --- Targets from the benchmark issue --------------------------------------------------------------------
const EVENT_TARGET_NS: f64 = 1000.0;
const SNAPSHOT_16K_TARGET_MS: f64 = 10.0;
const STORM_CPU_TARGET_MS: f64 = 50.0;
const STORM_RSS_TARGET_MIB: f64 = 16.0;

fn env_number(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(default)
}

/// Median, minimum and maximum of a sample.
#[derive(Clone, Copy, Debug)]
struct Spread {
    median: f64,
    min: f64,
    max: f64,
}

impl Spread {
    fn of(values: &[f64]) -> Option<Spread> {
        if values.is_empty() {
            return None;
        }
        let mut sorted = values.to_vec();
        sorted.sort_by(f64::total_cmp);
        let n = sorted.len();
        let median = if n % 2 == 1 {
            sorted[n / 2]
        } else {
            (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0
        };
        Some(Spread {
            median,
            min: sorted[0],
            max: sorted[n - 1],
        })
    }

    fn scaled(self, factor: f64) -> Spread {
        Spread {
            median: self.median * factor,
            min: self.min * factor,
            max: self.max * factor,
        }
    }
}

/// `target/`, from this binary's place in `target/release/deps/`.
fn target_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("the benchmark's own path");
    exe.ancestors()
        .nth(3)
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("target"))
}

fn daemon_binary() -> PathBuf {
    target_dir().join("release/kdump-hotplugd")
}

fn have(program: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {program}")])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|status| status.success())
}

// --- Criterion's figures -----------------------------------------------------------------------------------

/// Time per iteration of one criterion benchmark, in ns: criterion's median estimate, and the fastest and
/// slowest sample (each sample's mean per iteration).
fn criterion_result(id: &str) -> Option<Spread> {
    let dir = target_dir().join("criterion").join(id).join("new");
    let read = |name: &str| -> Option<serde_json::Value> {
        serde_json::from_str(&std::fs::read_to_string(dir.join(name)).ok()?).ok()
    };
    let estimates = read("estimates.json")?;
    let samples = read("sample.json")?;
    let median = estimates["median"]["point_estimate"].as_f64()?;
    let iters = samples["iters"].as_array()?;
    let times = samples["times"].as_array()?;
    let per_iteration: Vec<f64> = iters
        .iter()
        .zip(times)
        .filter_map(|(n, t)| Some(t.as_f64()? / n.as_f64()?))
        .collect();
    let spread = Spread::of(&per_iteration)?;
    Some(Spread { median, ..spread })
}

// --- Instruction counts (callgrind) ------------------------------------------------------------------------

#[inline(never)]
fn measured_event_path(messages: &[Vec<u8>], start: Instant) {
    std::hint::black_box(handle_storm(
        std::hint::black_box(messages),
        new_debouncer(),
        start,
    ));
}

#[inline(never)]
fn measured_snapshot(fixture: &mut SnapshotFixture) {
    std::hint::black_box(fixture.take_and_decide());
}

/// The `instructions` mode: the work alone, `ROUNDS` times, inside the `measured_*` functions callgrind counts.
fn instructions_mode(args: &[String]) {
    match args.first().map(String::as_str) {
        Some("event-path") => {
            let messages = storm(BLOCKS);
            let start = Instant::now();
            for _ in 0..ROUNDS {
                measured_event_path(&messages, start);
            }
        }
        Some("snapshot") => {
            let ranges: u64 = args.get(1).and_then(|n| n.parse().ok()).expect("RANGES");
            let root = args.get(2).expect("DIR");
            let mut fixture = SnapshotFixture::open(Path::new(root), ranges);
            for _ in 0..ROUNDS {
                measured_snapshot(&mut fixture);
            }
        }
        other => {
            eprintln!("unknown instructions mode {other:?}: event-path | snapshot RANGES DIR");
            std::process::exit(2);
        }
    }
}

/// Instructions executed inside `measured_*` for one `instructions` run, from callgrind's totals.
fn callgrind(args: &[&str]) -> Option<u64> {
    let out = tempfile::NamedTempFile::new().ok()?;
    let status = Command::new("valgrind")
        .args([
            "--tool=callgrind",
            "--collect-atstart=no",
            "--toggle-collect=*measured_*",
        ])
        .arg(format!("--callgrind-out-file={}", out.path().display()))
        .arg(std::env::current_exe().ok()?)
        .arg("instructions")
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .ok()?;
    if !status.success() {
        return None;
    }
    let text = std::fs::read_to_string(out.path()).ok()?;
    text.lines()
        .find_map(|line| line.strip_prefix("totals:"))
        .and_then(|total| total.trim().parse().ok())
}

struct InstructionCounts {
    per_uevent: Option<f64>,
    /// By snapshot size: instructions per range.
    per_range: BTreeMap<u64, f64>,
}

fn instruction_counts() -> InstructionCounts {
    let per_uevent =
        callgrind(&["event-path"]).map(|total| total as f64 / (ROUNDS * STORM_UEVENTS) as f64);
    let mut per_range = BTreeMap::new();
    for ranges in SNAPSHOT_SIZES {
        // Written natively: under valgrind, creating 64k directories takes minutes.
        let Some(tree) = SnapshotFixture::generate(ranges).into_tree() else {
            continue;
        };
        let root = tree.path().to_string_lossy().into_owned();
        if let Some(total) = callgrind(&["snapshot", &ranges.to_string(), &root]) {
            per_range.insert(ranges, total as f64 / (ROUNDS * ranges) as f64);
        }
    }
    InstructionCounts {
        per_uevent,
        per_range,
    }
}

// --- The whole daemon ---------------------------------------------------------------------------------------

/// One finished child: its stdout, CPU time (user + system) and peak RSS.
struct ChildCost {
    stdout: String,
    cpu: Duration,
    max_rss_kib: u64,
    success: bool,
}

fn timeval(t: libc::timeval) -> Duration {
    Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000)
}

/// Runs `command` to the end and reaps it with `wait4`, which reports that child's own rusage.
fn run_measured(command: &mut Command) -> std::io::Result<ChildCost> {
    let mut child = command.stdout(Stdio::piped()).spawn()?;
    let mut stdout = String::new();
    if let Some(mut pipe) = child.stdout.take() {
        pipe.read_to_string(&mut stdout)?;
    }
    let pid = child.id() as libc::pid_t;
    let mut status: libc::c_int = 0;
    // SAFETY: wait4 writes into the two locals; the child is ours and not reaped by anyone else (std's Child
    // only waits when asked to).
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    if unsafe { libc::wait4(pid, &mut status, 0, &mut usage) } != pid {
        return Err(std::io::Error::last_os_error());
    }
    Ok(ChildCost {
        stdout,
        cpu: timeval(usage.ru_utime) + timeval(usage.ru_stime),
        max_rss_kib: usage.ru_maxrss as u64,
        success: libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
    })
}

struct StormRuns {
    scenario: &'static str,
    uevents: u64,
    reloads: Vec<f64>,
    cpu_ms: Vec<f64>,
    rss_mib: Vec<f64>,
    failures: usize,
}

/// GNU time, when installed: the clean way to a child's peak RSS (see [`whole_process`]).
const GNU_TIME: &str = "/usr/bin/time";

/// Runs the daemon on a simulated storm `runs` times.
///
/// Peak RSS comes from GNU time's `%M` when it is installed: Linux carries the high-water mark of the mm a
/// process execs from into its `ru_maxrss`, and std spawns with vfork, so a child spawned straight from this
/// (larger) process would report this process's peak. GNU time forks from its own small mm. CPU time comes from
/// `wait4` on the child (with GNU time: its rusage includes the reaped daemon, plus time's own ~1 ms).
fn whole_process(scenario: &'static str, uevents: u64, runs: u64) -> StormRuns {
    let mut result = StormRuns {
        scenario,
        uevents,
        reloads: Vec::new(),
        cpu_ms: Vec::new(),
        rss_mib: Vec::new(),
        failures: 0,
    };
    let gnu_time = Path::new(GNU_TIME).exists();
    for _ in 0..runs {
        let rss_file = tempfile::NamedTempFile::new().expect("a temporary file");
        let mut command = if gnu_time {
            let mut command = Command::new(GNU_TIME);
            command
                .args(["-f", "%M", "-o"])
                .arg(rss_file.path())
                .arg(daemon_binary());
            command
        } else {
            Command::new(daemon_binary())
        };
        command
            .args(["run", &format!("--simulate={scenario}"), "--json"])
            .stderr(Stdio::null());
        let parsed = run_measured(&mut command)
            .ok()
            .filter(|c| c.success)
            .and_then(|cost| {
                let report: serde_json::Value = serde_json::from_str(&cost.stdout).ok()?;
                let reloads = report["report"]["Reloads"].as_u64()?;
                let rss_kib = if gnu_time {
                    std::fs::read_to_string(rss_file.path())
                        .ok()?
                        .lines()
                        .last()?
                        .trim()
                        .parse()
                        .ok()?
                } else {
                    cost.max_rss_kib
                };
                Some((cost.cpu, rss_kib, reloads))
            });
        match parsed {
            Some((cpu, rss_kib, reloads)) => {
                result.reloads.push(reloads as f64);
                result.cpu_ms.push(cpu.as_secs_f64() * 1e3);
                result.rss_mib.push(rss_kib as f64 / 1024.0);
            }
            None => result.failures += 1,
        }
    }
    result
}

// --- The udev rule and its shell script --------------------------------------------------------------------

/// The properties of a wire message (`ACTION@DEVPATH\0KEY=VALUE\0…`), as udev puts them in a program's
/// environment.
fn properties(message: &[u8]) -> Vec<(String, String)> {
    message
        .split(|&b| b == 0)
        .skip(1)
        .filter_map(|field| {
            let (key, value) = std::str::from_utf8(field).ok()?.split_once('=')?;
            Some((key.to_owned(), value.to_owned()))
        })
        .collect()
}

/// CPU time (user + system) of every child reaped so far.
fn children_cpu() -> Duration {
    // SAFETY: getrusage only writes into the struct it is given.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_CHILDREN, &mut usage) };
    timeval(usage.ru_utime) + timeval(usage.ru_stime)
}

#[derive(serde::Serialize)]
struct UdevRuleRun {
    events: usize,
    /// Per uevent, µs of wall time from fork to reaped exit.
    wall_us_median: f64,
    wall_us_min: f64,
    wall_us_max: f64,
    wall_s_total: f64,
    /// All the scripts' CPU time (and flock's), per uevent.
    cpu_us_per_event: f64,
    reloads_scheduled: usize,
}

fn script_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("benches/udev-rule/reload-throttle.sh")
}

/// Plays udev's part: one fork+exec of `/bin/sh script` per uevent, with the uevent's properties in the
/// environment, each waited for before the next (the script's lock serialises them anyway).
fn udev_rule(events: u64, script: &Path) -> UdevRuleRun {
    let messages = storm(events.div_ceil(2));
    let messages = &messages[..events as usize];
    let state = tempfile::Builder::new()
        .prefix("kdump-reload-throttle-")
        .tempdir()
        .expect("a temporary directory");
    let cpu_before = children_cpu();
    let started = Instant::now();
    let mut per_event = Vec::with_capacity(messages.len());
    for message in messages {
        let t0 = Instant::now();
        let status = Command::new("/bin/sh")
            .arg(script)
            .env_clear()
            .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
            .env("KDUMP_THROTTLE_DIR", state.path())
            .envs(properties(message))
            .status()
            .expect("/bin/sh runs");
        per_event.push(t0.elapsed().as_secs_f64() * 1e6);
        assert!(status.success(), "{} failed: {status}", script.display());
    }
    let wall = started.elapsed();
    let cpu = children_cpu() - cpu_before;
    let reloads_scheduled = std::fs::read_to_string(state.path().join("reloads-scheduled"))
        .map(|text| text.lines().count())
        .unwrap_or(0);
    let spread = Spread::of(&per_event).expect("at least one event");
    UdevRuleRun {
        events: per_event.len(),
        wall_us_median: spread.median,
        wall_us_min: spread.min,
        wall_us_max: spread.max,
        wall_s_total: wall.as_secs_f64(),
        cpu_us_per_event: cpu.as_secs_f64() * 1e6 / per_event.len() as f64,
        reloads_scheduled,
    }
}

fn udev_rule_mode(args: &[String]) {
    let mut events = env_number("BENCH_UDEV_EVENTS", STORM_UEVENTS);
    let mut script = script_path();
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--events" => {
                events = args
                    .next()
                    .and_then(|n| n.parse().ok())
                    .expect("--events N")
            }
            "--script" => script = args.next().expect("--script PATH").into(),
            other => panic!("unknown argument {other:?}"),
        }
    }
    let run = udev_rule(events, &script);
    println!("{}", serde_json::to_string(&run).unwrap_or_default());
}

// --- Idle ---------------------------------------------------------------------------------------------------

struct IdleRun {
    seconds: u64,
    /// Voluntary + involuntary context switches of every thread over the window: each is a wake-up.
    wakeups: u64,
    threads: usize,
    /// What strace saw over the window (None without strace).
    trace: Option<IdleTrace>,
}

/// Syscalls in a window, from `strace -f` output.
#[derive(Default)]
struct IdleTrace {
    syscalls: u64,
    /// `epoll_wait` returning 0: a timer expired with nothing to read.
    timer_expiries: u64,
    /// `epoll_wait` returning ready descriptors: input (uevents, kernel log lines, signals).
    input_wakeups: u64,
}

fn context_switches(pid: u32) -> (u64, usize) {
    let mut total = 0;
    let mut threads = 0;
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return (0, 0);
    };
    for task in tasks.flatten() {
        threads += 1;
        let status = std::fs::read_to_string(task.path().join("status")).unwrap_or_default();
        for line in status.lines() {
            if let Some(count) = line
                .strip_prefix("voluntary_ctxt_switches:")
                .or_else(|| line.strip_prefix("nonvoluntary_ctxt_switches:"))
            {
                total += count.trim().parse::<u64>().unwrap_or(0);
            }
        }
    }
    (total, threads)
}

/// Counts completed syscalls in `strace -f` output (`PID name(args) = result`, or `<... name resumed> …) =
/// result` for one that blocked while another thread ran).
fn parse_strace(text: &str) -> IdleTrace {
    let mut trace = IdleTrace::default();
    for line in text.lines() {
        let Some((call, result)) = line.rsplit_once(") = ") else {
            continue;
        };
        trace.syscalls += 1;
        if call.contains("epoll_wait(") || call.contains("epoll_wait resumed>") {
            let ready: i64 = result
                .split_whitespace()
                .next()
                .and_then(|n| n.parse().ok())
                .unwrap_or(-1);
            match ready {
                0 => trace.timer_expiries += 1,
                n if n > 0 => trace.input_wakeups += 1,
                _ => {}
            }
        }
    }
    trace
}

/// How long strace may take to attach to every thread of a process (it stops and resumes each).
const STRACE_ATTACH_DEADLINE: Duration = Duration::from_secs(20);

/// Thread ids of `pid` (`/proc/PID/task`).
fn thread_ids(pid: u32) -> BTreeSet<String> {
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .map(|dir| {
            dir.filter_map(Result::ok)
                .map(|task| task.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// Starts `strace -f -p PID -o OUTPUT` and returns once it has attached to every thread of `pid`, or an error
/// after `deadline`. Attached means: strace said `Process PID attached` and every thread has a line in OUTPUT
/// (`TID syscall(…`, the syscall it was blocked in, resumed after strace's attach stop), so the stop that
/// attaching costs each thread lies before the caller's window, not in it.
fn attach_strace(
    pid: u32,
    output: &Path,
    deadline: Duration,
) -> Result<std::process::Child, String> {
    let mut child = Command::new("strace")
        .args(["-f", "-p", &pid.to_string(), "-o"])
        .arg(output)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run strace: {e}"))?;
    // Drained for as long as strace runs (it also says "detached" at the end); kept for the error message.
    let said = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
    let stderr = child.stderr.take().ok_or("no stderr")?;
    let sink = std::sync::Arc::clone(&said);
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if let Ok(mut text) = sink.lock() {
                text.push_str(&line);
                text.push('\n');
            }
        }
    });
    let attached = format!("Process {pid} attached");
    let until = Instant::now() + deadline;
    loop {
        let threads = thread_ids(pid);
        let traced = std::fs::read_to_string(output).unwrap_or_default();
        let seen: BTreeSet<&str> = traced
            .lines()
            .filter_map(|line| line.split_whitespace().next())
            .collect();
        let announced = said.lock().is_ok_and(|text| text.contains(&attached));
        if announced && !threads.is_empty() && threads.iter().all(|t| seen.contains(t.as_str())) {
            return Ok(child);
        }
        let failure = match child.try_wait() {
            Ok(Some(status)) => Some(format!("strace exited ({status}) before attaching")),
            _ if Instant::now() >= until => Some(format!(
                "strace did not attach to every thread of {pid} within {deadline:?} (threads {threads:?}, in its \
                 output {seen:?})"
            )),
            _ => None,
        };
        if let Some(failure) = failure {
            let _ = child.kill();
            let _ = child.wait();
            let said = said.lock().map(|t| t.trim().to_owned()).unwrap_or_default();
            return Err(format!("{failure}; it said: {said:?}"));
        }
        // Polling a condition, with the deadline above: strace has no readiness signal of its own.
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Starts `args`, waits for `ready` in its log, lets it settle, then watches it for `seconds`.
fn idle(args: &[&str], ready: &str, seconds: u64, settle: u64) -> Result<IdleRun, String> {
    let mut daemon = Command::new(daemon_binary())
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot start the daemon: {e}"))?;
    let pid = daemon.id();
    let stderr = daemon.stderr.take().ok_or("no stderr")?;
    let (ready_tx, ready_rx) = mpsc::channel();
    let marker = ready.to_owned();
    // Keeps reading (and discarding) the log so the daemon never blocks on a full pipe.
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if line.contains(&marker) {
                let _ = ready_tx.send(());
            }
        }
    });
    let outcome = (|| {
        ready_rx
            .recv_timeout(Duration::from_secs(120))
            .map_err(|_| format!("never logged {ready:?}"))?;
        std::thread::sleep(Duration::from_secs(settle));
        let output = tempfile::NamedTempFile::new().map_err(|e| e.to_string())?;
        let strace = if have("strace") {
            // Attaching stops every thread once; the window starts after strace has let each go again.
            Some(attach_strace(pid, output.path(), STRACE_ATTACH_DEADLINE)?)
        } else {
            None
        };
        let (before, threads) = context_switches(pid);
        std::thread::sleep(Duration::from_secs(seconds));
        let (after, _) = context_switches(pid);
        let trace = strace.map(|mut child| {
            // SAFETY: signals our own child.
            unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGINT) };
            let _ = child.wait();
            parse_strace(&std::fs::read_to_string(output.path()).unwrap_or_default())
        });
        Ok(IdleRun {
            seconds,
            wakeups: after.saturating_sub(before),
            threads,
            trace,
        })
    })();
    // SAFETY: signals our own child.
    unsafe { libc::kill(pid as libc::pid_t, libc::SIGTERM) };
    let _ = daemon.wait();
    outcome
}

// --- The table ----------------------------------------------------------------------------------------------

struct Table {
    rows: Vec<[String; 6]>,
}

impl Table {
    fn row(
        &mut self,
        what: &str,
        spread: Option<Spread>,
        digits: usize,
        target: &str,
        verdict: &str,
    ) {
        let cell = |value: Option<f64>| value.map_or("-".to_owned(), |v| format!("{v:.digits$}"));
        self.rows.push([
            what.to_owned(),
            cell(spread.map(|s| s.median)),
            cell(spread.map(|s| s.min)),
            cell(spread.map(|s| s.max)),
            target.to_owned(),
            verdict.to_owned(),
        ]);
    }

    fn note(&mut self, what: &str) {
        self.row(what, None, 0, "", "");
    }

    fn print(&self) {
        let header = ["measure", "median", "min", "max", "target", ""];
        let mut widths = header.map(str::len);
        for row in &self.rows {
            for (width, cell) in widths.iter_mut().zip(row) {
                *width = (*width).max(cell.chars().count());
            }
        }
        let line = |cells: [&str; 6]| {
            let mut text = format!("{:<w$}", cells[0], w = widths[0]);
            for (i, cell) in cells.iter().enumerate().skip(1) {
                text.push_str(&format!("  {:>w$}", cell, w = widths[i]));
            }
            println!("{}", text.trim_end());
        };
        line(header);
        println!(
            "{}",
            "-".repeat(widths.iter().sum::<usize>() + 2 * (widths.len() - 1))
        );
        for row in &self.rows {
            line([&row[0], &row[1], &row[2], &row[3], &row[4], &row[5]]);
        }
    }
}

fn verdict(pass: Option<bool>) -> &'static str {
    match pass {
        Some(true) => "PASS",
        Some(false) => "MISS",
        None => "n/a",
    }
}

fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|text| {
            text.lines()
                .find_map(|l| l.strip_prefix("model name"))
                .map(|l| l.trim_start_matches([' ', '\t', ':']).to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let load: Vec<&str> = load.split_whitespace().take(3).collect();
    format!(
        "{cpus} CPUs ({cpu}), Linux {}, load average {}",
        kernel.trim(),
        load.join(" ")
    )
}

fn report() {
    let runs = env_number("BENCH_RUNS", 5).max(1);
    let udev_events = env_number("BENCH_UDEV_EVENTS", STORM_UEVENTS).max(1);
    let idle_seconds = env_number("BENCH_IDLE_SECONDS", 60);
    let idle_settle = env_number("BENCH_IDLE_SETTLE_SECONDS", 3);
    let started = Instant::now();

    eprintln!("storm: machine: {}", machine());
    let daemon_present = daemon_binary().exists();
    if !daemon_present {
        eprintln!(
            "storm: {} missing: build it with `cargo build --release --locked` (make bench does)",
            daemon_binary().display()
        );
    }
    // First, while this process is small (see `whole_process` on RSS).
    eprintln!("storm: whole process, {runs} runs per scenario");
    let storms: Vec<StormRuns> = if daemon_present {
        [
            ("virtio-mem-1t", STORM_UEVENTS),
            ("virtio-mem-8t", 8 * STORM_UEVENTS),
        ]
        .into_iter()
        .map(|(scenario, uevents)| whole_process(scenario, uevents, runs))
        .collect()
    } else {
        Vec::new()
    };
    eprintln!("storm: udev rule + shell script, {udev_events} uevents");
    let udev = udev_rule(udev_events, &script_path());
    eprintln!("storm: idle, {idle_seconds} s after a {idle_settle} s settle");
    let idle_runs: Vec<(&str, Result<IdleRun, String>)> = if daemon_present {
        vec![
            (
                "idle: run --simulate=idle after its storm",
                idle(
                    &["run", "--simulate=idle"],
                    "crash kernel reloaded",
                    idle_seconds,
                    idle_settle,
                ),
            ),
            (
                "idle: real run --dry-run on this host",
                idle(&["run", "--dry-run"], "READY", idle_seconds, idle_settle),
            ),
        ]
    } else {
        Vec::new()
    };
    let valgrind = have("valgrind");
    eprintln!(
        "storm: instruction counts (callgrind){}",
        if valgrind {
            ""
        } else {
            ": valgrind missing, skipped"
        }
    );
    let instructions = if valgrind {
        instruction_counts()
    } else {
        InstructionCounts {
            per_uevent: None,
            per_range: BTreeMap::new(),
        }
    };

    let mut table = Table { rows: Vec::new() };

    // 1. Event path.
    let event =
        criterion_result("event_path/uevents_16384").map(|s| s.scaled(1.0 / STORM_UEVENTS as f64));
    table.row(
        "event path: ns per uevent (16,384-uevent storm)",
        event,
        0,
        "<= 1000",
        verdict(event.map(|s| s.median <= EVENT_TARGET_NS)),
    );
    if let Some(per) = instructions.per_uevent {
        table.row(
            "  instructions per uevent (callgrind)",
            Spread::of(&[per]),
            0,
            "",
            "",
        );
    }

    // 2. Snapshot.
    let mut per_range_ns = BTreeMap::new();
    for ranges in SNAPSHOT_SIZES {
        let snapshot =
            criterion_result(&format!("snapshot/ranges/{ranges}")).map(|s| s.scaled(1e-6));
        let (target, pass) = if ranges == 16_384 {
            (
                "<= 10",
                snapshot.map(|s| s.median <= SNAPSHOT_16K_TARGET_MS),
            )
        } else {
            ("", None)
        };
        let verdict_text = if pass.is_some() { verdict(pass) } else { "" };
        table.row(
            &format!("snapshot + decision: ms at {ranges} ranges"),
            snapshot,
            2,
            target,
            verdict_text,
        );
        if let Some(snapshot) = snapshot {
            per_range_ns.insert(ranges, snapshot.median * 1e6 / ranges as f64);
            table.row(
                "  ns per range",
                Some(snapshot.scaled(1e6 / ranges as f64)),
                0,
                "",
                "",
            );
        }
        if let Some(per) = instructions.per_range.get(&ranges) {
            table.row(
                "  instructions per range (callgrind)",
                Spread::of(&[*per]),
                0,
                "",
                "",
            );
        }
    }
    let (smallest, largest) = (SNAPSHOT_SIZES[0], SNAPSHOT_SIZES[SNAPSHOT_SIZES.len() - 1]);
    if let (Some(small), Some(large)) = (per_range_ns.get(&smallest), per_range_ns.get(&largest)) {
        table.row(
            &format!("  growth: ns per range at {largest} / at {smallest}"),
            Spread::of(&[large / small]),
            2,
            "~1 (linear)",
            "",
        );
    }
    if let (Some(small), Some(large)) = (
        instructions.per_range.get(&smallest),
        instructions.per_range.get(&largest),
    ) {
        table.row(
            &format!("  growth: instructions per range at {largest} / at {smallest}"),
            Spread::of(&[large / small]),
            2,
            "~1 (linear)",
            "",
        );
    }

    // 3. The whole daemon.
    let mut storm_cpu_per_uevent_us = None;
    for runs in &storms {
        let name = runs.scenario;
        let targeted = runs.uevents == STORM_UEVENTS;
        let reloads = Spread::of(&runs.reloads);
        table.row(
            &format!("run --simulate={name} ({} uevents): reloads", runs.uevents),
            reloads,
            0,
            "1",
            verdict(reloads.map(|r| r.min == 1.0 && r.max == 1.0)),
        );
        let cpu = Spread::of(&runs.cpu_ms);
        table.row(
            "  CPU ms (user + sys, whole process)",
            cpu,
            1,
            if targeted { "<= 50" } else { "" },
            if targeted {
                verdict(cpu.map(|c| c.median <= STORM_CPU_TARGET_MS))
            } else {
                ""
            },
        );
        if let Some(cpu) = cpu {
            table.row(
                "  CPU µs per uevent",
                Some(cpu.scaled(1e3 / runs.uevents as f64)),
                2,
                "",
                "",
            );
            if targeted {
                storm_cpu_per_uevent_us = Some(cpu.median * 1e3 / runs.uevents as f64);
            }
        }
        let rss = Spread::of(&runs.rss_mib);
        table.row(
            "  peak RSS MiB",
            rss,
            1,
            if targeted { "<= 16" } else { "" },
            if targeted {
                verdict(rss.map(|r| r.median <= STORM_RSS_TARGET_MIB))
            } else {
                ""
            },
        );
        if runs.failures > 0 {
            table.note(&format!(
                "  {} of the runs failed (not counted)",
                runs.failures
            ));
        }
    }

    // 4. The udev rule.
    table.row(
        &format!(
            "hand-written udev rule + sh script ({} uevents): µs per uevent",
            udev.events
        ),
        Some(Spread {
            median: udev.wall_us_median,
            min: udev.wall_us_min,
            max: udev.wall_us_max,
        }),
        0,
        "",
        "",
    );
    table.row(
        "  CPU µs per uevent (sh + flock)",
        Spread::of(&[udev.cpu_us_per_event]),
        0,
        "",
        "",
    );
    table.row(
        "  reloads scheduled",
        Spread::of(&[udev.reloads_scheduled as f64]),
        0,
        "",
        "",
    );
    if let Some(event) = event {
        table.row(
            "  ratio: script wall / event path, per uevent",
            Spread::of(&[udev.wall_us_median * 1e3 / event.median]),
            0,
            "",
            "",
        );
    }
    if let Some(ours) = storm_cpu_per_uevent_us {
        table.row(
            "  ratio: script CPU / whole daemon CPU, per uevent",
            Spread::of(&[udev.cpu_us_per_event / ours]),
            0,
            "",
            "",
        );
    }

    // 5. Idle.
    for (what, run) in &idle_runs {
        match run {
            Ok(run) => {
                let trace = run.trace.as_ref();
                // Without strace, every wake-up counts against the target.
                let timers = trace.map_or(run.wakeups, |t| t.timer_expiries);
                // Input arms the debouncer, whose deadline then fires: idle means no input too.
                let quiet = trace.is_none_or(|t| t.input_wakeups == 0);
                table.row(
                    &format!("{what}: timers fired in {} s", run.seconds),
                    Spread::of(&[timers as f64]),
                    0,
                    "0",
                    if quiet {
                        verdict(Some(timers == 0))
                    } else {
                        "n/a: input"
                    },
                );
                table.row(
                    &format!(
                        "  wake-ups, all {} thread(s) (context switches)",
                        run.threads
                    ),
                    Spread::of(&[run.wakeups as f64]),
                    0,
                    "",
                    "",
                );
                if let Some(trace) = trace {
                    table.row(
                        "  of which input (uevents, kernel log, signals)",
                        Spread::of(&[trace.input_wakeups as f64]),
                        0,
                        "",
                        "",
                    );
                    table.row(
                        "  syscalls (strace -f)",
                        Spread::of(&[trace.syscalls as f64]),
                        0,
                        "",
                        "",
                    );
                }
            }
            Err(error) => table.note(&format!("{what}: not measured ({error})")),
        }
    }

    println!();
    println!("kdump-hotplugd benchmarks — {}", machine());
    println!(
        "One run; the machine may be shared, so times are noisy: compare the ratios and the instruction counts."
    );
    println!();
    table.print();
    println!(
        "The udev rule above is hand-written for this benchmark (benches/udev-rule/reload-throttle.sh). The real \
         one, Debian's 50-kdump-tools.rules under systemd-udevd, is measured by make test-distro (its FIGURES \
         lines: rule_runs, rule_failures, udev_delay_ms_mean; BENCHMARKS.md quotes them)."
    );
    println!();
    println!("(report took {:.0} s)", started.elapsed().as_secs_f64());
}

/// The idle window's strace attach, on a real process: it returns only once the tracee's thread shows in the
/// output, well before its deadline. strace is a precondition (`make deps` installs it; under CI=true its absence
/// fails).
fn strace_attach_smoke() {
    if !have("strace") {
        return precondition::missing(
            "strace is not installed (apt-get install strace, or make deps)",
        );
    }
    let mut tracee = Command::new("sleep")
        .arg("600")
        .spawn()
        .expect("sleep starts");
    let output = tempfile::NamedTempFile::new().unwrap();
    let started = Instant::now();
    let attached = attach_strace(tracee.id(), output.path(), STRACE_ATTACH_DEADLINE);
    let took = started.elapsed();
    let _ = tracee.kill();
    let _ = tracee.wait();
    let mut strace = attached.unwrap_or_else(|e| panic!("{e}"));
    let _ = strace.wait();
    let traced = std::fs::read_to_string(output.path()).unwrap();
    assert!(
        traced.starts_with(&format!("{} ", tracee.id())),
        "strace's output does not start with the tracee's thread: {traced:?}"
    );
    println!("storm: strace attached to a sleeping process in {took:?}");
}

/// `cargo test --benches`: a few seconds that show every part still works, for CI.
fn smoke() {
    let run = udev_rule(4, &script_path());
    assert_eq!(run.events, 4);
    assert_eq!(
        run.reloads_scheduled, 1,
        "the first uevent schedules the only reload"
    );
    measured_event_path(&storm(2), Instant::now());
    let trace = parse_strace(
        "7 epoll_wait(3, [], 1024, 940) = 0\n\
         7 epoll_wait(3, [{events=EPOLLIN, data={u32=0, u64=0}}], 1024, -1) = 1\n\
         8 read(12,  <unfinished ...>\n\
         8 <... read resumed>\"x\", 16384) = 1\n",
    );
    assert_eq!(
        (trace.syscalls, trace.timer_expiries, trace.input_wakeups),
        (3, 1, 1)
    );
    strace_attach_smoke();
    println!("storm: smoke test passed; `make bench` prints the figures");
}

fn main() {
    // `cargo bench` passes `--bench`, `cargo test --benches` does not; a mode is the first argument that is not
    // an option.
    let all: Vec<String> = std::env::args().skip(1).collect();
    let benching = all.iter().any(|a| a == "--bench");
    let args: Vec<String> = all.into_iter().filter(|a| a != "--bench").collect();
    match args.first().map(String::as_str) {
        Some("instructions") => instructions_mode(&args[1..]),
        Some("udev-rule") => udev_rule_mode(&args[1..]),
        Some("fixture") => {
            // For profiling by hand: writes the sparse host with N ranges, keeps it, prints where.
            let ranges = args.get(1).and_then(|n| n.parse().ok()).expect("fixture N");
            if let Some(tree) = SnapshotFixture::generate(ranges).into_tree() {
                println!("{}", tree.keep().display());
            }
        }
        Some("idle") => {
            let seconds = args.get(1).and_then(|n| n.parse().ok()).unwrap_or(10);
            match idle(&["run", "--dry-run"], "READY", seconds, 1) {
                Ok(run) => {
                    let trace = run.trace.unwrap_or_default();
                    println!(
                        "idle {} s: {} context switches over {} threads; strace: {} syscalls, {} timer expiries, {} input wake-ups",
                        run.seconds, run.wakeups, run.threads, trace.syscalls, trace.timer_expiries, trace.input_wakeups
                    );
                }
                Err(error) => {
                    eprintln!("idle: {error}");
                    std::process::exit(1);
                }
            }
        }
        Some(other) if !other.starts_with('-') => {
            eprintln!("unknown mode {other:?}: instructions | udev-rule | fixture | idle (or none for the report)");
            std::process::exit(2);
        }
        _ if benching => report(),
        _ => smoke(),
    }
}

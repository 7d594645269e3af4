//! The approach users have today: a udev rule that runs a shell script per uevent. This driver plays udev's
//! part for the same storm the daemon gets: for each uevent, one fork+exec of `/bin/sh` running
//! `benches/udev-rule/reload-throttle.sh` with the uevent's properties in the environment (as `RUN+=` does),
//! waiting for it before the next (udev serialises events of one device; a storm's devices differ, but the
//! script's lock serialises them anyway, and the machine has 2 cores).
//!
//! Prints one JSON line: per-event wall time (median/min/max), total wall and CPU time of the scripts, and how
//! many reloads the scripts scheduled.
//!
//!     cargo bench --bench udev_rule -- [--events N] [--script PATH]

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

mod common;

use common::storm;

/// The properties of a wire message (`ACTION@DEVPATH\0KEY=VALUE\0…`), as udev puts them in a program's environment.
fn properties(message: &[u8]) -> Vec<(String, String)> {
    message
        .split(|&b| b == 0)
        .skip(1)
        .filter_map(|field| {
            let field = std::str::from_utf8(field).ok()?;
            let (key, value) = field.split_once('=')?;
            Some((key.to_owned(), value.to_owned()))
        })
        .collect()
}

/// CPU time (user + system) of every child reaped so far.
fn children_cpu() -> Duration {
    // SAFETY: getrusage only writes into the struct it is given.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_CHILDREN, &mut usage) };
    let time = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    time(usage.ru_utime) + time(usage.ru_stime)
}

fn main() {
    let mut events: u64 = 16_384;
    let mut script =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("benches/udev-rule/reload-throttle.sh");
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--events" => {
                events = args
                    .next()
                    .and_then(|n| n.parse().ok())
                    .expect("--events N")
            }
            "--script" => script = args.next().expect("--script PATH").into(),
            _ => {} // `--bench` from cargo
        }
    }
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
            .arg(&script)
            .env_clear()
            .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
            .env("KDUMP_THROTTLE_DIR", state.path())
            .envs(properties(message))
            .status()
            .expect("/bin/sh runs");
        per_event.push(t0.elapsed());
        assert!(status.success(), "the script failed: {status}");
    }
    let wall = started.elapsed();
    let cpu = children_cpu() - cpu_before;

    let scheduled = std::fs::read_to_string(state.path().join("reloads-scheduled"))
        .map(|text| text.lines().count())
        .unwrap_or(0);
    per_event.sort_unstable();
    let micros = |d: Duration| d.as_secs_f64() * 1e6;
    println!(
        "{{\"events\":{},\"wall_us_median\":{:.1},\"wall_us_min\":{:.1},\"wall_us_max\":{:.1},\
\"wall_s_total\":{:.3},\"cpu_s_total\":{:.3},\"cpu_us_per_event\":{:.1},\"reloads_scheduled\":{}}}",
        per_event.len(),
        micros(per_event[per_event.len() / 2]),
        micros(per_event[0]),
        micros(per_event[per_event.len() - 1]),
        wall.as_secs_f64(),
        cpu.as_secs_f64(),
        micros(cpu) / per_event.len() as f64,
        scheduled,
    );
}

//! `kdump-hotplugd run` on this host (no --simulate): it reports READY over a real NOTIFY_SOCKET, stays idle
//! without periodic wake-ups, reacts to a real uevent, and stops cleanly on SIGTERM.
//!
//! Idle is checked by the kernel's own counter: the context switches of every thread of the daemon
//! (`/proc/PID/task/*/status`) must not grow over a window of idleness. A periodic timer (a tokio tick, a
//! watchdog without WATCHDOG_USEC, a polling loop) would grow it in every window; an unrelated uevent or kernel
//! log line on this shared machine can grow one window, so up to three windows are tried.

use std::os::unix::net::UnixDatagram;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const DEADLINE: Duration = Duration::from_secs(60);
const IDLE_WINDOW: Duration = Duration::from_secs(3);

struct Daemon {
    child: Child,
    stderr: std::path::PathBuf,
}

impl Daemon {
    fn log(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Datagrams until one satisfies `wanted`, or the deadline.
fn wait_for(socket: &UnixDatagram, daemon: &Daemon, wanted: impl Fn(&str) -> bool) -> String {
    let until = Instant::now() + DEADLINE;
    let mut buffer = [0u8; 8192];
    loop {
        let left = until.saturating_duration_since(Instant::now());
        assert!(
            !left.is_zero(),
            "no matching notification; daemon log:\n{}",
            daemon.log()
        );
        socket.set_read_timeout(Some(left)).unwrap();
        if let Ok(n) = socket.recv(&mut buffer) {
            let text = String::from_utf8_lossy(&buffer[..n]).into_owned();
            if wanted(&text) {
                return text;
            }
        }
    }
}

/// Voluntary + involuntary context switches over all threads, and the thread count.
fn context_switches(pid: u32) -> (u64, usize) {
    let mut total = 0;
    let mut threads = 0;
    for task in std::fs::read_dir(format!("/proc/{pid}/task")).unwrap() {
        let status =
            std::fs::read_to_string(task.unwrap().path().join("status")).unwrap_or_default();
        threads += 1;
        for line in status.lines() {
            if let Some(value) = line
                .strip_prefix("voluntary_ctxt_switches:")
                .or_else(|| line.strip_prefix("nonvoluntary_ctxt_switches:"))
            {
                total += value.trim().parse::<u64>().unwrap();
            }
        }
    }
    (total, threads)
}

#[test]
fn real_run_is_ready_idle_reacts_and_stops() {
    let dir = tempfile::tempdir().unwrap();
    let socket_path = dir.path().join("notify");
    let socket = UnixDatagram::bind(&socket_path).unwrap();
    let stderr = dir.path().join("stderr");
    let child = Command::new(env!("CARGO_BIN_EXE_kdump-hotplugd"))
        .args(["run", "--dry-run", "--events", "kernel"])
        .env("NOTIFY_SOCKET", &socket_path)
        .env_remove("WATCHDOG_USEC")
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&stderr).unwrap())
        .spawn()
        .unwrap();
    let pid = child.id();
    let daemon = Daemon { child, stderr };

    let ready = wait_for(&socket, &daemon, |t| t.contains("READY=1"));
    assert!(ready.contains("STATUS="), "{ready}");

    let mut windows = Vec::new();
    let idle = (0..3).any(|_| {
        let (before, threads) = context_switches(pid);
        std::thread::sleep(IDLE_WINDOW);
        let (after, _) = context_switches(pid);
        windows.push((after - before, threads));
        after == before
    });
    assert!(
        idle,
        "the daemon woke up in every {IDLE_WINDOW:?} idle window (switches, threads): {windows:?}\n{}",
        daemon.log()
    );
    eprintln!("idle windows (context switches, threads): {windows:?}");

    match std::fs::write("/sys/devices/system/cpu/cpu0/uevent", "change") {
        Ok(()) => {
            let status = wait_for(&socket, &daemon, |t| t.contains("STATUS=waiting"));
            assert!(status.contains("events"), "{status}");
        }
        Err(error) => eprintln!("SKIP (uevent part): cannot write a sysfs uevent file: {error}"),
    }

    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    wait_for(&socket, &daemon, |t| t.contains("STOPPING=1"));
    let mut daemon = daemon;
    let status = daemon.child.wait().unwrap();
    assert!(status.success(), "{status}\n{}", daemon.log());
    let log = daemon.log();
    assert!(log.contains("READY: "), "{log}");
}

//! `kdump-hotplugd run` on this host (no --simulate): it reports READY over a real NOTIFY_SOCKET, stays idle
//! without periodic wake-ups, reacts to a real uevent, re-reads its config on SIGHUP, and stops cleanly on
//! SIGTERM.
//!
//! Idle is checked by the kernel's own counter: the context switches of every thread of the daemon
//! (`/proc/PID/task/*/status`) must not grow over a window of idleness. A periodic timer (a tokio tick, a
//! watchdog without WATCHDOG_USEC, a polling loop) would grow it in every window; an unrelated uevent or kernel
//! log line on this shared machine can grow one window, so up to three windows are tried.

use std::os::unix::net::UnixDatagram;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

// Not every test crate that includes it uses every part.
#[allow(dead_code)]
#[path = "common/real_host_tools.rs"]
mod real_host_tools;

#[path = "common/precondition.rs"]
mod precondition;

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

/// Starts `command` with a NOTIFY_SOCKET bound in `dir` and its stderr in `dir/stderr`.
fn start(dir: &std::path::Path, mut command: Command) -> (UnixDatagram, Daemon) {
    let socket_path = dir.join("notify");
    let socket = UnixDatagram::bind(&socket_path).unwrap();
    let stderr = dir.join("stderr");
    let child = command
        .env("NOTIFY_SOCKET", &socket_path)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&stderr).unwrap())
        .spawn()
        .unwrap();
    (socket, Daemon { child, stderr })
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

/// Voluntary + involuntary context switches of each thread, by thread id.
fn context_switches(pid: u32) -> std::collections::BTreeMap<String, u64> {
    let mut threads = std::collections::BTreeMap::new();
    for task in std::fs::read_dir(format!("/proc/{pid}/task")).unwrap() {
        let task = task.unwrap();
        // A thread that just exited has no status left: it cannot have woken.
        let Ok(status) = std::fs::read_to_string(task.path().join("status")) else {
            continue;
        };
        let mut total = 0;
        for line in status.lines() {
            if let Some(value) = line
                .strip_prefix("voluntary_ctxt_switches:")
                .or_else(|| line.strip_prefix("nonvoluntary_ctxt_switches:"))
            {
                total += value.trim().parse::<u64>().unwrap();
            }
        }
        threads.insert(task.file_name().to_string_lossy().into_owned(), total);
    }
    threads
}

/// Context switches between two samples, over the threads alive in both, plus threads that appeared.
fn woke(
    before: &std::collections::BTreeMap<String, u64>,
    after: &std::collections::BTreeMap<String, u64>,
) -> u64 {
    after
        .iter()
        .map(|(tid, n)| match before.get(tid) {
            Some(m) => n.saturating_sub(*m),
            None => (*n).max(1),
        })
        .sum()
}

#[test]
fn real_run_is_ready_idle_reacts_and_stops() {
    let dir = tempfile::tempdir().unwrap();
    // Idle includes the D-Bus connection when a bus can be had: zbus must not tick either.
    let bus = real_host_tools::PrivateBus::start()
        .map_err(|reason| precondition::missing(format!("D-Bus part: {reason}")))
        .ok();
    let bus_arg = bus
        .as_ref()
        .map_or("none".to_owned(), |b| b.address.clone());
    let mut command = Command::new(env!("CARGO_BIN_EXE_kdump-hotplugd"));
    command
        .args(["run", "--dry-run", "--events", "kernel", "--bus", &bus_arg])
        // The host's own /run/kdump-hotplugd would make parallel tests (and a real service) refuse it.
        .arg("--runtime-dir")
        .arg(dir.path())
        .env_remove("WATCHDOG_USEC")
        .env("RUST_LOG", "info");
    let (socket, daemon) = start(dir.path(), command);
    let pid = daemon.child.id();

    let ready = wait_for(&socket, &daemon, |t| t.contains("READY=1"));
    assert!(ready.contains("STATUS="), "{ready}");
    if let Some(bus) = &bus {
        // The name appears after READY; poll until the object answers.
        let until = Instant::now() + DEADLINE;
        let state = loop {
            if let Some(state) = bus.property("State") {
                break state;
            }
            assert!(
                Instant::now() < until,
                "no org.kdump.Hotplug1 on the bus\n{}",
                daemon.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        };
        assert!(state.starts_with("s "), "{state}");
    }

    let mut windows = Vec::new();
    let idle = (0..3).any(|_| {
        let before = context_switches(pid);
        std::thread::sleep(IDLE_WINDOW);
        let after = context_switches(pid);
        let switches = woke(&before, &after);
        windows.push((switches, after.len()));
        switches == 0
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
        Err(error) => precondition::missing(format!(
            "uevent part: cannot write /sys/devices/system/cpu/cpu0/uevent (needs root and a writable sysfs): \
             {error}"
        )),
    }

    // SIGHUP: RELOADING=1 with MONOTONIC_USEC (systemd 253+ Type=notify-reload), then READY=1 again.
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid as i32),
        nix::sys::signal::Signal::SIGHUP,
    )
    .unwrap();
    let reloading = wait_for(&socket, &daemon, |t| t.contains("RELOADING=1"));
    assert!(reloading.contains("MONOTONIC_USEC="), "{reloading}");
    wait_for(&socket, &daemon, |t| t.contains("READY=1"));

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

/// The whole real path on a fixture host with no crash kernel loaded: startup decides to load, the kexec-tools
/// loader runs a real child process (a stand-in `kexec` that records its arguments) with the plan's kernel,
/// initrd and command line, and the status reports the reload.
#[test]
fn startup_loads_a_missing_crash_kernel_through_kexec_tools() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    real_host_tools::copy_tree(
        &std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/not-loaded"),
        &root,
    );
    std::fs::create_dir_all(root.join("boot")).unwrap();
    std::fs::write(root.join("boot/vmlinuz"), "kernel").unwrap();
    std::fs::write(root.join("boot/initrd.img"), "initrd").unwrap();
    let recorded = dir.path().join("kexec-args");
    std::fs::create_dir_all(root.join("usr/sbin")).unwrap();
    let kexec = root.join("usr/sbin/kexec");
    std::fs::write(
        &kexec,
        format!(
            "#!/bin/sh\nprintf '%s\\n' \"$@\" > {}\necho 'stand-in kexec: loaded'\n",
            recorded.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&kexec, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();

    let mut command = Command::new(env!("CARGO_BIN_EXE_kdump-hotplugd"));
    command.arg("run").arg("--sysroot").arg(&root).args([
        "--loader",
        "kexec-tools",
        "--kernel",
        "/boot/vmlinuz",
        "--initrd",
        "/boot/initrd.img",
        "--cmdline",
        "console=ttyS0 reset_devices",
        "--events",
        "kernel",
        "--bus",
        "none",
    ]);
    let (socket, daemon) = start(dir.path(), command);
    wait_for(&socket, &daemon, |t| t.contains("READY=1"));
    let status = wait_for(&socket, &daemon, |t| {
        t.contains("reloads ") && !t.contains("reloads 0 ")
    });
    assert!(
        status.contains("reloads 1 (0 failed"),
        "{status}\n{}",
        daemon.log()
    );
    let args = std::fs::read_to_string(&recorded).unwrap();
    assert_eq!(
        args.lines().collect::<Vec<_>>(),
        [
            "-s".to_owned(),
            "-p".to_owned(),
            root.join("boot/vmlinuz").display().to_string(),
            format!("--initrd={}", root.join("boot/initrd.img").display()),
            "--command-line=console=ttyS0 reset_devices".to_owned(),
        ]
    );
    assert!(
        daemon.log().contains("stand-in kexec: loaded"),
        "{}",
        daemon.log()
    );
}

/// `--dry-run` on a host with a kernel in /boot and a Debian kdump initrd: the log says what would be loaded
/// (kernel, initrd, command line, ranges), the startup load is decided and not done.
#[test]
fn dry_run_logs_what_it_would_load() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    real_host_tools::copy_tree(
        &std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/not-loaded"),
        &root,
    );
    for (path, text) in [
        ("proc/sys/kernel/osrelease", "6.12.0-demo\n"),
        (
            "proc/cmdline",
            "BOOT_IMAGE=/vmlinuz-6.12.0-demo root=/dev/vda ro crashkernel=256M quiet\n",
        ),
        ("boot/vmlinuz-6.12.0-demo", "kernel"),
        ("boot/initrd.img-6.12.0-demo", "boot initrd"),
        ("var/lib/kdump/initrd.img-6.12.0-demo", "kdump initrd"),
    ] {
        let file = root.join(path);
        std::fs::create_dir_all(file.parent().unwrap()).unwrap();
        std::fs::write(file, text).unwrap();
    }
    let mut command = Command::new(env!("CARGO_BIN_EXE_kdump-hotplugd"));
    command
        .arg("run")
        .arg("--dry-run")
        .arg("--sysroot")
        .arg(&root)
        .args(["--events", "kernel", "--bus", "none"])
        .env("RUST_LOG", "info");
    let (socket, daemon) = start(dir.path(), command);
    wait_for(&socket, &daemon, |t| {
        t.contains("STATUS=idle") && t.contains("1 skipped")
    });
    let log = daemon.log();
    let line = |needle: &str| {
        log.lines()
            .find(|l| l.contains(needle))
            .unwrap_or_else(|| panic!("no line with {needle:?} in:\n{log}"))
            .to_owned()
    };
    let plan = line("crash kernel to load");
    assert!(
        plan.contains(&format!(
            "kernel={}",
            root.join("boot/vmlinuz-6.12.0-demo").display()
        )),
        "{plan}"
    );
    assert!(
        plan.contains(&format!(
            "initrd={}",
            root.join("var/lib/kdump/initrd.img-6.12.0-demo").display()
        )),
        "{plan}"
    );
    assert!(
        plan.contains("cmdline=root=/dev/vda ro quiet reset_devices irqpoll nr_cpus=1"),
        "{plan}"
    );
    assert!(line("dry run: would load the crash kernel").contains("ranges=3"));
    assert!(!log.contains("crash kernel reloaded"), "{log}");
}

/// `/proc/iomem` read without CAP_SYS_ADMIN shows every address as 0: the daemon says so from its first
/// status on, and loads nothing (no empty header).
#[test]
fn hidden_addresses_are_an_error_not_empty_ranges() {
    let dir = tempfile::tempdir().unwrap();
    let mut command = Command::new(env!("CARGO_BIN_EXE_kdump-hotplugd"));
    command
        .arg("run")
        .arg("--sysroot")
        .arg(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("tests/fixtures/hidden-addresses"),
        )
        .args([
            "--kernel",
            "/proc/iomem",
            "--events",
            "kernel",
            "--bus",
            "none",
        ])
        // Not in the checked-in fixture's run/.
        .arg("--runtime-dir")
        .arg(dir.path());
    let (socket, daemon) = start(dir.path(), command);
    // The error is there from the start, and READY carries it: no STATUS= may come before READY=1.
    let ready = wait_for(&socket, &daemon, |_| true);
    assert!(ready.contains("READY=1"), "the first notification: {ready}");
    assert!(ready.contains("STATUS=error: "), "{ready}");
    assert!(ready.contains("every address as 0"), "{ready}");
    assert!(
        daemon.log().contains("without CAP_SYS_ADMIN"),
        "{}",
        daemon.log()
    );
    assert!(
        !daemon.log().contains("crash kernel reloaded"),
        "{}",
        daemon.log()
    );
}

/// With `WATCHDOG_USEC` for its own pid (as systemd sets it), the daemon pings `WATCHDOG=1` on and on; the
/// idle test above shows it does not wake at all without it.
#[test]
fn watchdog_pings_when_the_service_manager_asks() {
    let dir = tempfile::tempdir().unwrap();
    // WATCHDOG_PID must be the daemon's own pid: the shell's, which exec hands to the daemon.
    let mut command = Command::new("/bin/sh");
    command
        .args([
            "-c",
            "WATCHDOG_PID=$$ exec \"$0\" run --dry-run --events kernel --bus none --runtime-dir \"$1\"",
            env!("CARGO_BIN_EXE_kdump-hotplugd"),
        ])
        .arg(dir.path())
        .env("WATCHDOG_USEC", "200000");
    let (socket, daemon) = start(dir.path(), command);
    wait_for(&socket, &daemon, |t| t.contains("READY=1"));
    for _ in 0..3 {
        wait_for(&socket, &daemon, |t| t == "WATCHDOG=1\n");
    }
    assert!(
        daemon.log().contains("watchdog_usec=200000"),
        "{}",
        daemon.log()
    );
}

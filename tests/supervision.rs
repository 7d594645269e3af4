//! What keeps the daemon from running blind or twice: a source that ends stops a real host's daemon with an
//! error (and its last status says so), and a second instance on the same host is refused, with exit status
//! 75 and the first one's pid, by the lock under /run and by the bus name.
//!
//! The second-instance tests run the real binary twice; readiness is READY=1 on a real NOTIFY_SOCKET, never a
//! sleep.

use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use kdump_hotplugd::config::Settings;
use kdump_hotplugd::core::decide::LoaderChoice;
use kdump_hotplugd::daemon::{Daemon, Loaders, RunOptions};
use kdump_hotplugd::dbus::BusAddress;
use kdump_hotplugd::edge::{BoxFuture, EventSource, Notification};
use kdump_hotplugd::host::snapshot::SnapshotReader;
use kdump_hotplugd::host::sysroot::Sysroot;
use kdump_hotplugd::messages::UeventSender;
use kdump_hotplugd::real_host::{self, Host, Overrides, ServiceError, EXIT_ANOTHER_INSTANCE};
use kdump_hotplugd::sim::{LoaderBehaviour, RecordingNotifier, SimulatedLoader};

// Not every test crate that includes it uses every part.
#[allow(dead_code)]
#[path = "common/real_host_tools.rs"]
mod real_host_tools;

#[path = "common/precondition.rs"]
mod precondition;

const DEADLINE: Duration = Duration::from_secs(60);

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

/// A source whose socket breaks at once.
struct Broken;

const BROKEN: &str = "kernel: reading uevents: ENOTCONN: Transport endpoint is not connected";

impl EventSource for Broken {
    fn name(&self) -> String {
        "broken".into()
    }

    fn run(self: Box<Self>, events: UeventSender) -> BoxFuture<()> {
        Box::pin(async move { events.failed(BROKEN.to_owned()).await })
    }
}

/// The loop with a real host's options: the source's end stops it, the report says why, and the last status
/// before STOPPING=1 is an error naming the cause, never "idle".
#[tokio::test(start_paused = true)]
async fn a_source_that_ends_stops_the_loop_with_an_error_status() {
    let loader = Arc::new(SimulatedLoader::new(
        None,
        LoaderBehaviour::default(),
        LoaderChoice::Configured,
    ));
    let notifier = Arc::new(RecordingNotifier::default());
    let (daemon, _handle) = Daemon::new(
        Settings::default(),
        Box::new(|| Ok(Settings::default())),
        SnapshotReader::open(Sysroot::new(fixture("small-vm"))).unwrap(),
        Loaders {
            configured: Arc::new(loader.clone()),
            kexec_load: Arc::new(loader),
            description: "simulated".to_owned(),
        },
        Arc::new(notifier.clone()),
        RunOptions::default(),
    );
    let report = tokio::time::timeout(Duration::from_secs(3600), daemon.run(Box::new(Broken)))
        .await
        .expect("the loop stops by itself");
    let why = report
        .source_lost
        .expect("the report says the source was lost");
    assert!(
        why.starts_with(&format!("the event source ended (failed: {BROKEN})")),
        "{why}"
    );
    let notifications = notifier.notifications.lock().unwrap().clone();
    assert_eq!(notifications.last(), Some(&Notification::Stopping));
    let last_status = notifications
        .iter()
        .rev()
        .find_map(|n| match n {
            Notification::Status(status) => Some(status.clone()),
            _ => None,
        })
        .expect("a status after READY");
    assert!(last_status.starts_with("error: "), "{last_status}");
    assert!(last_status.contains(BROKEN), "{last_status}");
}

/// The composition root: `run` on a (fixture) host whose source breaks fails with an error that names the
/// cause and maps to exit status 1, so systemd's Restart=on-failure starts a fresh daemon.
#[tokio::test]
async fn run_on_a_real_host_fails_when_its_source_ends() {
    let runtime = tempfile::tempdir().unwrap();
    let host = Host {
        sysroot: fixture("small-vm"),
        runtime_dir: Some(runtime.path().to_owned()),
        bus: BusAddress::None,
    };
    let overrides = Overrides {
        dry_run: true,
        ..Overrides::default()
    };
    let result = tokio::time::timeout(
        DEADLINE,
        real_host::run_with(host, overrides, Box::new(|_, _| Ok(Box::new(Broken)))),
    )
    .await
    .expect("run returns");
    let error = result.expect_err("a blind daemon does not carry on");
    assert!(matches!(error, ServiceError::SourceEnded(_)), "{error:?}");
    assert!(error.to_string().contains(BROKEN), "{error}");
    assert_eq!(error.exit_status(), 1);
}

/// A running daemon, killed on drop.
struct Running {
    child: Child,
    stderr: PathBuf,
    _notify: UnixDatagram,
}

impl Running {
    fn log(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn daemon(args: &[&str], sysroot: &Path) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_kdump-hotplugd"));
    command
        .arg("run")
        .arg("--sysroot")
        .arg(sysroot)
        .args(["--dry-run", "--events", "kernel"])
        .args(args)
        .env_remove("WATCHDOG_USEC")
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::null());
    command
}

/// Starts `command` and waits for its READY=1.
fn start_ready(dir: &Path, name: &str, mut command: Command) -> Running {
    let socket_path = dir.join(format!("{name}.notify"));
    let socket = UnixDatagram::bind(&socket_path).unwrap();
    let stderr = dir.join(format!("{name}.stderr"));
    let child = command
        .env("NOTIFY_SOCKET", &socket_path)
        .stderr(std::fs::File::create(&stderr).unwrap())
        .spawn()
        .unwrap();
    let running = Running {
        child,
        stderr,
        _notify: socket,
    };
    let until = Instant::now() + DEADLINE;
    let mut buffer = [0u8; 8192];
    loop {
        let left = until.saturating_duration_since(Instant::now());
        assert!(!left.is_zero(), "no READY=1; log:\n{}", running.log());
        running._notify.set_read_timeout(Some(left)).unwrap();
        if let Ok(n) = running._notify.recv(&mut buffer) {
            if String::from_utf8_lossy(&buffer[..n]).contains("READY=1") {
                return running;
            }
        }
    }
}

/// Runs `command` to its end (within the deadline) and returns its status and stderr.
fn run_to_end(mut command: Command) -> (ExitStatus, String) {
    let mut child = command.stderr(Stdio::piped()).spawn().unwrap();
    let until = Instant::now() + DEADLINE;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > until {
            let _ = child.kill();
            panic!("the second instance did not exit");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
    (status, stderr)
}

/// Two daemons on one host without a bus: the second finds the lock, at /run/kdump-hotplugd/lock under the
/// sysroot, held, exits with 75 and names the first one's pid; nothing of the first is disturbed.
#[test]
fn a_second_instance_is_refused_by_the_lock_and_told_the_first_ones_pid() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    real_host_tools::copy_tree(&fixture("small-vm"), &root);
    let first = start_ready(dir.path(), "first", daemon(&["--bus", "none"], &root));
    let lock = root.join("run/kdump-hotplugd/lock");
    assert_eq!(
        std::fs::read_to_string(&lock).unwrap(),
        format!("{}\n", first.child.id())
    );

    let (status, stderr) = run_to_end(daemon(&["--bus", "none"], &root));
    assert_eq!(
        status.code(),
        Some(i32::from(EXIT_ANOTHER_INSTANCE)),
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!(
            "another kdump-hotplugd is running: pid {} holds {}",
            first.child.id(),
            lock.display()
        )),
        "{stderr}"
    );
    // Refused before reading anything: no snapshot, no READY.
    assert!(!stderr.contains("host snapshot"), "{stderr}");
    let mut first = first;
    assert!(first.child.try_wait().unwrap().is_none(), "{}", first.log());
}

/// Two daemons with different lock directories (two roots, as two containers might have) on one bus: the
/// second cannot own org.kdump.Hotplug1, exits with 75 and names the owner's unique name and pid, asked of
/// the bus (GetConnectionUnixProcessID).
#[test]
fn a_second_instance_is_refused_by_the_bus_name_and_told_the_owners_pid() {
    let bus = match real_host_tools::PrivateBus::start() {
        Ok(bus) => bus,
        Err(reason) => return precondition::missing(reason),
    };
    let dir = tempfile::tempdir().unwrap();
    let bus_arg = ["--bus", bus.address.as_str()];
    let first_runtime = dir.path().join("first-run");
    let second_runtime = dir.path().join("second-run");
    let first_runtime_arg = first_runtime.to_str().unwrap();
    let second_runtime_arg = second_runtime.to_str().unwrap();
    // READY comes after the name is owned.
    let first = start_ready(
        dir.path(),
        "first",
        daemon(
            &[bus_arg[0], bus_arg[1], "--runtime-dir", first_runtime_arg],
            &fixture("not-loaded"),
        ),
    );
    let (status, stderr) = run_to_end(daemon(
        &[bus_arg[0], bus_arg[1], "--runtime-dir", second_runtime_arg],
        &fixture("not-loaded"),
    ));
    assert_eq!(
        status.code(),
        Some(i32::from(EXIT_ANOTHER_INSTANCE)),
        "{stderr}"
    );
    let line = stderr
        .lines()
        .find(|l| l.contains("another kdump-hotplugd is running"))
        .unwrap_or_else(|| panic!("no refusal in:\n{stderr}"));
    assert!(
        line.contains(&format!(
            "(pid {}) owns org.kdump.Hotplug1",
            first.child.id()
        )),
        "{line}"
    );
    assert!(
        line.contains(" :1."),
        "names the owner's unique name: {line}"
    );
    // It never ran its loop: the startup load the first one decided on (no crash kernel is loaded in this
    // fixture) was not even decided by the second.
    let until = Instant::now() + DEADLINE;
    while !first.log().contains("dry run: would load the crash kernel") {
        assert!(
            Instant::now() < until,
            "the first never decided:\n{}",
            first.log()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(!stderr.contains("decided"), "{stderr}");
    assert!(!stderr.contains("READY"), "{stderr}");
}

//! org.kdump.Hotplug1 on a real, private `dbus-daemon`, driven with the real `busctl`.
//!
//! Each test starts its own bus from a config in tests/dbus/ (`system-like.conf` includes the project's own
//! policy file, packaging/dbus/org.kdump.Hotplug1.conf; `open.conf` allows everything), then the built daemon
//! on a simulated host (`run --simulate --bus ADDRESS --keep-running --hold-scenario`), and talks to it as
//! root and, through `setpriv`, as uid 65534. Every wait polls a condition against a deadline.
//!
//! Needs dbus-daemon, busctl (systemd) and setpriv (util-linux), and root: `make deps` installs the tools.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use kdump_hotplugd::daemon::{FieldKind, Status};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use serde_json::Value;

const NAME: &str = "org.kdump.Hotplug1";
const PATH: &str = "/org/kdump/Hotplug1";
const INTERFACE: &str = "org.kdump.Hotplug1";
const NOBODY: &str = "65534";
const STARTUP: Duration = Duration::from_secs(20);
/// A terabyte of simulated uevents, debounced and reloaded: seconds, unless the machine is very busy.
const BURST: Duration = Duration::from_secs(90);

/// Every property of the interface with its D-Bus signature, from the daemon's one list of what it publishes
/// (`with_status_fields!` in src/daemon/status.rs): this test checks the live object against that list.
fn properties() -> Vec<(&'static str, String)> {
    Status::FIELDS
        .iter()
        .filter(|field| field.kind.is_property())
        .map(|field| (field.name, field.signature.to_string()))
        .collect()
}

/// The properties that announce their changes with PropertiesChanged.
fn emitting(name: &str) -> bool {
    Status::FIELDS
        .iter()
        .any(|field| field.name == name && field.kind == FieldKind::Property)
}

fn manifest_dir() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// Polls `ready` until it returns something or the deadline passes.
fn wait_for<T>(what: &str, limit: Duration, mut ready: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(value) = ready() {
            return value;
        }
        assert!(
            Instant::now() < deadline,
            "gave up after {limit:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Lines of a child's pipe, read on a thread so that waiting for one can have a deadline.
struct Lines(mpsc::Receiver<String>);

impl Lines {
    fn of(pipe: impl std::io::Read + Send + 'static) -> Self {
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        Lines(rx)
    }

    /// The first line for which `wanted` gives something; the lines before it are dropped.
    fn find<T>(&self, what: &str, limit: Duration, mut wanted: impl FnMut(&str) -> Option<T>) -> T {
        let deadline = Instant::now() + limit;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.0.recv_timeout(left) {
                Ok(line) => {
                    if let Some(found) = wanted(&line) {
                        return found;
                    }
                }
                Err(error) => panic!("no {what} within {limit:?}: {error}"),
            }
        }
    }
}

/// A private dbus-daemon on a socket in its own directory, killed on drop.
struct Bus {
    child: Child,
    address: String,
    dir: tempfile::TempDir,
}

impl Bus {
    fn start(config: &str) -> Bus {
        assert!(
            nix::unistd::geteuid().is_root(),
            "tests/dbus.rs runs as root: the policy lets only root own {NAME}, and setpriv switches to uid {NOBODY}"
        );
        let dir = tempfile::Builder::new()
            .prefix("kdump-hotplugd-dbus-")
            .tempdir()
            .expect("temporary directory");
        // uid 65534 must reach the socket inside.
        std::fs::set_permissions(
            dir.path(),
            std::os::unix::fs::PermissionsExt::from_mode(0o755),
        )
        .expect("chmod");
        let config = manifest_dir().join("tests/dbus").join(config);
        let mut child = Command::new("dbus-daemon")
            .arg(format!("--config-file={}", config.display()))
            .arg(format!("--address=unix:path={}/bus", dir.path().display()))
            .args(["--nofork", "--nopidfile", "--print-address=1"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("dbus-daemon (apt-get install dbus-daemon, or make deps)");
        let lines = Lines::of(child.stdout.take().expect("stdout"));
        let address = lines.find("the bus address", STARTUP, |line| {
            line.starts_with("unix:").then(|| line.to_owned())
        });
        Bus {
            child,
            address,
            dir,
        }
    }

    fn busctl(&self, args: &[&str]) -> Output {
        Command::new("busctl")
            .arg(format!("--address={}", self.address))
            .args(args)
            .output()
            .expect("busctl")
    }

    /// busctl as uid/gid 65534 with no supplementary groups.
    fn busctl_as_nobody(&self, args: &[&str]) -> Output {
        Command::new("setpriv")
            .args([
                &format!("--reuid={NOBODY}"),
                &format!("--regid={NOBODY}"),
                "--clear-groups",
                "busctl",
            ])
            .arg(format!("--address={}", self.address))
            .args(args)
            .output()
            .expect("setpriv")
    }

    fn name_has_owner(&self) -> bool {
        let out = self.busctl(&[
            "call",
            "org.freedesktop.DBus",
            "/org/freedesktop/DBus",
            "org.freedesktop.DBus",
            "NameHasOwner",
            "s",
            NAME,
        ]);
        out.status.success() && String::from_utf8_lossy(&out.stdout).trim() == "b true"
    }

    /// The daemon's command line for a simulated host, on this bus.
    fn daemon_command(&self, scenario: &str) -> Command {
        let sysroot = self.dir.path().join("sysroot");
        std::fs::create_dir_all(&sysroot).expect("sysroot");
        let mut command = Command::new(env!("CARGO_BIN_EXE_kdump-hotplugd"));
        command
            .arg("run")
            .arg(format!("--sysroot={}", sysroot.display()))
            .arg(format!("--simulate={scenario}"))
            .arg(format!("--bus={}", self.address))
            .env("RUST_LOG", "info");
        command
    }
}

impl Drop for Bus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The daemon on a simulated host, holding its scenario until [`Daemon::play`], stopped with SIGTERM on drop.
struct Daemon {
    child: Child,
    log: PathBuf,
}

impl Daemon {
    fn start(bus: &Bus, scenario: &str) -> Daemon {
        let log = bus.dir.path().join("daemon.log");
        let child = bus
            .daemon_command(scenario)
            .args(["--keep-running", "--hold-scenario"])
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("log file"))
            .spawn()
            .expect("kdump-hotplugd");
        let mut daemon = Daemon { child, log };
        wait_for(&format!("{NAME} on the bus"), STARTUP, || {
            if let Ok(Some(status)) = daemon.child.try_wait() {
                panic!("the daemon exited ({status}):\n{}", daemon.log());
            }
            bus.name_has_owner().then_some(())
        });
        daemon
    }

    /// Plays the held scenario (SIGUSR1).
    fn play(&self) {
        kill(Pid::from_raw(self.child.id() as i32), Signal::SIGUSR1).expect("SIGUSR1");
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = kill(Pid::from_raw(self.child.id() as i32), Signal::SIGTERM);
        let deadline = Instant::now() + STARTUP;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `busctl monitor` of the object's signals (its own and PropertiesChanged), one JSON message a line.
struct Monitor {
    child: Child,
    signals: Lines,
}

impl Monitor {
    /// Returns once busctl says the bus made it a monitor: no signal sent after that is missed.
    fn start(bus: &Bus) -> Monitor {
        let mut child = Command::new("busctl")
            .arg(format!("--address={}", bus.address))
            .args(["monitor", "--json=short"])
            .arg(format!("--match=type='signal',path='{PATH}'"))
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("busctl monitor");
        let stderr = Lines::of(child.stderr.take().expect("stderr"));
        let signals = Lines::of(child.stdout.take().expect("stdout"));
        stderr.find("busctl monitoring", STARTUP, |line| {
            line.contains("Monitoring bus message stream").then_some(())
        });
        Monitor { child, signals }
    }

    /// The payload of the next signal named `member`.
    fn next(&self, member: &str, limit: Duration) -> Value {
        self.signals.find(member, limit, |line| {
            let message: Value = serde_json::from_str(line).ok()?;
            (message["member"] == member).then(|| message["payload"].clone())
        })
    }

    fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Monitor {
    fn drop(&mut self) {
        self.stop();
    }
}

/// `kdump-hotplugd COMMAND --address BUS …`, as root or as uid 65534.
fn client(bus: &Bus, as_nobody: bool, args: &[&str]) -> Output {
    let binary = env!("CARGO_BIN_EXE_kdump-hotplugd");
    let mut command = if as_nobody {
        let mut command = Command::new("setpriv");
        command.args([
            &format!("--reuid={NOBODY}"),
            &format!("--regid={NOBODY}"),
            "--clear-groups",
            binary,
        ]);
        command
    } else {
        Command::new(binary)
    };
    command
        .args(args)
        .args(["--address", &bus.address])
        .output()
        .expect("kdump-hotplugd client")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn json_lines(out: &Output) -> Vec<Value> {
    assert!(out.status.success(), "busctl failed: {}", text(&out.stderr));
    text(&out.stdout)
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}")))
        .collect()
}

/// Every property, read with one `busctl get-property`, by name: `{"type": …, "data": …}`.
fn read_properties(bus: &Bus) -> Vec<(String, Value)> {
    let properties = properties();
    let mut args = vec!["--json=short", "get-property", NAME, PATH, INTERFACE];
    args.extend(properties.iter().map(|(name, _)| *name));
    let values = json_lines(&bus.busctl(&args));
    assert_eq!(values.len(), properties.len(), "{values:?}");
    properties
        .iter()
        .map(|(name, _)| name.to_string())
        .zip(values)
        .collect()
}

/// A message from `busctl monitor --json=short`; a PropertiesChanged's values go into `announced`.
fn note_announcements(line: &str, announced: &mut BTreeMap<String, Value>) -> Option<Value> {
    let message: Value = serde_json::from_str(line).ok()?;
    if message["member"] == "PropertiesChanged" {
        if let Some(changed) = message["payload"]["data"][1].as_object() {
            for (name, value) in changed {
                announced.insert(name.clone(), value["data"].clone());
            }
        }
    }
    Some(message)
}

fn property(bus: &Bus, name: &str) -> Value {
    let out = bus.busctl(&["--json=short", "get-property", NAME, PATH, INTERFACE, name]);
    json_lines(&out).remove(0)["data"].clone()
}

fn call(bus: &Bus, method: &str, args: &[&str]) -> Output {
    let mut all = vec!["--json=short", "call", NAME, PATH, INTERFACE, method];
    all.extend_from_slice(args);
    bus.busctl(&all)
}

fn call_as_nobody(bus: &Bus, method: &str, args: &[&str]) -> Output {
    let mut all = vec!["call", NAME, PATH, INTERFACE, method];
    all.extend_from_slice(args);
    bus.busctl_as_nobody(&all)
}

fn assert_denied(out: &Output, what: &str) {
    assert!(
        !out.status.success(),
        "{what} was allowed: {}",
        text(&out.stdout)
    );
    assert!(
        text(&out.stderr).contains("Access denied"),
        "{what}: {}",
        text(&out.stderr)
    );
}

#[test]
fn every_property_ranges_and_the_reload_signal_after_a_burst() {
    let bus = Bus::start("system-like.conf");
    let daemon = Daemon::start(&bus, "virtio-mem-1t");

    let properties = read_properties(&bus);
    for ((name, value), (expected_name, signature)) in properties.iter().zip(self::properties()) {
        assert_eq!(name, expected_name);
        assert_eq!(value["type"], signature, "{name}: {value}");
    }
    let get = |name: &str| -> &Value {
        &properties.iter().find(|(n, _)| n == name).expect(name).1["data"]
    };
    assert_eq!(get("State"), "idle");
    assert_eq!(get("CrashKernelLoaded"), true);
    assert_eq!(get("KernelUpdatesMemory"), false);
    assert_eq!(get("RangeCount"), 3);
    assert_eq!(
        get("KernelRangeCapacity"),
        0,
        "a 6.1-like kernel does not say"
    );
    assert_eq!(get("EventsSeen"), 0);
    assert_eq!(get("Reloads"), 0);
    assert_eq!(get("Loader"), "simulated kexec_file_load");
    assert_eq!(get("Version"), env!("CARGO_PKG_VERSION"));

    let ranges = json_lines(&call(&bus, "GetRanges", &[])).remove(0);
    assert_eq!(ranges["type"], "a(tt)");
    let ranges = ranges["data"][0]
        .as_array()
        .expect("array of ranges")
        .clone();
    assert_eq!(ranges.len(), 3);
    assert_eq!(ranges[0], serde_json::json!([0x10_0000u64, 0x6aff_ffffu64]));

    let mut monitor = Monitor::start(&bus);
    daemon.play();

    // Both must come; the two are emitted by different tasks, so in either order. Every PropertiesChanged
    // is kept: the newest value announced for each property.
    let mut finished = None;
    let mut reloads_announced = None;
    let mut announced: BTreeMap<String, Value> = BTreeMap::new();
    monitor.signals.find(
        "ReloadFinished and PropertiesChanged(Reloads)",
        BURST,
        |line| {
            let message = note_announcements(line, &mut announced)?;
            if message["member"] == "PropertiesChanged" {
                let changed = &message["payload"]["data"][1];
                if let Some(reloads) = changed["Reloads"]["data"].as_u64() {
                    reloads_announced.get_or_insert(reloads);
                }
            }
            if message["member"] == "ReloadFinished" {
                finished.get_or_insert(message["payload"].clone());
            }
            (finished.is_some() && reloads_announced.is_some()).then_some(())
        },
    );
    let finished = finished.expect("ReloadFinished");

    // Every property that emits changes and ended the burst with another value announced that value.
    let after = read_properties(&bus);
    let changed: Vec<(String, Value)> = after
        .iter()
        .zip(&properties)
        .filter(|((name, new), (_, old))| emitting(name) && new["data"] != old["data"])
        .map(|((name, new), _)| (name.clone(), new["data"].clone()))
        .collect();
    assert!(
        changed.iter().any(|(name, _)| name == "EventsSeen"),
        "{changed:?}"
    );
    let unannounced = |announced: &BTreeMap<String, Value>| -> Vec<String> {
        changed
            .iter()
            .filter(|(name, value)| announced.get(name) != Some(value))
            .map(|(name, value)| format!("{name}={value}"))
            .collect()
    };
    if !unannounced(&announced).is_empty() {
        let what = format!("PropertiesChanged for {:?}", unannounced(&announced));
        monitor.signals.find(&what, STARTUP, |line| {
            note_announcements(line, &mut announced)?;
            unannounced(&announced).is_empty().then_some(())
        });
    }
    monitor.stop();
    assert_eq!(finished["type"], "bstu");
    let args = &finished["data"];
    assert_eq!(args[0], true, "{finished}");
    assert!(
        args[1]
            .as_str()
            .unwrap_or("")
            .contains("memory ranges changed"),
        "{finished}"
    );
    assert_eq!(args[3], 4, "three boot ranges and the terabyte");
    assert_eq!(reloads_announced, Some(1), "PropertiesChanged for Reloads");

    assert_eq!(property(&bus, "EventsSeen"), 16_384);
    assert_eq!(property(&bus, "EventsCoalesced"), 16_383);
    assert_eq!(property(&bus, "Reloads"), 1);
    assert_eq!(property(&bus, "RangeCount"), 4);
    assert!(property(&bus, "LastReloadUsec").as_u64().unwrap_or(0) > 0);

    let status = json_lines(&call(&bus, "GetStatus", &[])).remove(0);
    assert_eq!(status["type"], "a{sv}");
    let dict = status["data"][0].as_object().expect("a dictionary");
    assert_eq!(dict.len(), Status::FIELDS.len(), "{dict:?}");
    for field in Status::FIELDS {
        assert_eq!(
            dict[field.name]["type"],
            field.signature.to_string(),
            "GetStatus {}",
            field.name
        );
    }
    assert_eq!(dict["EventsSeen"]["data"], 16_384);
    let summary = dict["Summary"]["data"].as_str().unwrap_or("");
    assert!(
        summary.starts_with("idle: ranges 4, crash kernel loaded"),
        "{summary}"
    );

    // The status client, on the same bus.
    let client = Command::new(env!("CARGO_BIN_EXE_kdump-hotplugd"))
        .args(["status", "--address", &bus.address])
        .output()
        .expect("status");
    let summary = text(&client.stdout);
    assert!(client.status.success(), "{}", text(&client.stderr));
    for expected in [
        "crash kernel:  loaded;",
        "memory ranges: 4; the kernel sizes each load to the ranges (no crash hotplug buffer)",
        "events:        16384 seen, 16383 coalesced, 0 malformed, 0 socket overflows",
        "reloads:       1 (0 failed, 0 skipped, 0 timed out)",
        "memory ranges changed",
        "last error:    none",
    ] {
        assert!(
            summary.contains(expected),
            "{expected:?} not in:\n{summary}"
        );
    }
    let client = Command::new(env!("CARGO_BIN_EXE_kdump-hotplugd"))
        .args(["status", "--json", "--address", &bus.address])
        .output()
        .expect("status --json");
    let json: Value = serde_json::from_slice(&client.stdout).expect("JSON");
    assert_eq!(json["Reloads"], 1);
    assert_eq!(json["EventsSeen"], 16_384);
    assert_eq!(json["State"], "idle");
}

#[test]
fn the_policy_lets_root_reload_and_everyone_read_but_nobody_else_change_anything() {
    let bus = Bus::start("system-like.conf");

    // Only root may own the name: the daemon as uid 65534 is refused by the bus.
    let refused = Command::new("setpriv")
        .args([
            &format!("--reuid={NOBODY}"),
            &format!("--regid={NOBODY}"),
            "--clear-groups",
        ])
        .arg(env!("CARGO_BIN_EXE_kdump-hotplugd"))
        .args(bus.daemon_command("malformed").get_args())
        .output()
        .expect("daemon as nobody");
    assert!(!refused.status.success());
    assert!(
        text(&refused.stderr).contains("cannot own the name org.kdump.Hotplug1"),
        "{}",
        text(&refused.stderr)
    );
    assert!(!bus.name_has_owner());

    let absent = client(&bus, false, &["status"]);
    assert!(!absent.status.success());
    assert!(
        text(&absent.stderr).contains("is kdump-hotplugd running?"),
        "{}",
        text(&absent.stderr)
    );

    let daemon = Daemon::start(&bus, "virtio-mem-1t");
    let out = call(&bus, "Reload", &[]);
    let outcome = json_lines(&out).remove(0);
    assert_eq!(outcome["type"], "s");
    assert!(
        outcome["data"][0]
            .as_str()
            .unwrap_or("")
            .starts_with("reloaded"),
        "{outcome}"
    );
    assert_eq!(property(&bus, "Reloads"), 1);

    assert_denied(&call_as_nobody(&bus, "Reload", &[]), "Reload as uid 65534");
    assert_denied(
        &call_as_nobody(&bus, "SetPaused", &["b", "true"]),
        "SetPaused as uid 65534",
    );
    assert_denied(
        &call_as_nobody(&bus, "ReloadConfig", &[]),
        "ReloadConfig as uid 65534",
    );
    let set = bus.busctl_as_nobody(&["set-property", NAME, PATH, INTERFACE, "Paused", "b", "true"]);
    assert!(!set.status.success());
    assert!(
        text(&set.stderr).contains("Access denied"),
        "Properties.Set: {}",
        text(&set.stderr)
    );
    let refused = client(&bus, true, &["reload"]);
    assert!(!refused.status.success());
    assert!(
        text(&refused.stderr).contains("org.freedesktop.DBus.Error.AccessDenied"),
        "{}",
        text(&refused.stderr)
    );
    assert_eq!(property(&bus, "Reloads"), 1, "the denied calls did nothing");
    assert_eq!(property(&bus, "Paused"), false);

    let reloaded = client(&bus, false, &["reload"]);
    assert!(reloaded.status.success(), "{}", text(&reloaded.stderr));
    assert!(
        text(&reloaded.stdout).starts_with("reloaded"),
        "{}",
        text(&reloaded.stdout)
    );
    assert_eq!(property(&bus, "Reloads"), 2);
    let status = client(&bus, true, &["status"]);
    assert!(
        status.status.success(),
        "status as uid 65534: {}",
        text(&status.stderr)
    );
    assert!(
        text(&status.stdout).contains("reloads:       2 (0 failed"),
        "{}",
        text(&status.stdout)
    );

    // Reading stays open to everyone.
    for read in [
        vec!["get-property", NAME, PATH, INTERFACE, "State", "Reloads"],
        vec!["call", NAME, PATH, INTERFACE, "GetRanges"],
        vec!["call", NAME, PATH, INTERFACE, "GetStatus"],
        vec!["introspect", NAME, PATH],
    ] {
        let out = bus.busctl_as_nobody(&read);
        assert!(out.status.success(), "{read:?}: {}", text(&out.stderr));
    }
    // The bus refused them before they reached the daemon.
    assert!(
        !daemon.log().contains("refused a D-Bus call"),
        "{}",
        daemon.log()
    );
}

#[test]
fn with_a_loose_policy_the_daemon_itself_refuses_non_root_callers() {
    let bus = Bus::start("open.conf");
    let daemon = Daemon::start(&bus, "virtio-mem-1t");

    assert_denied(&call_as_nobody(&bus, "Reload", &[]), "Reload as uid 65534");
    assert_denied(
        &call_as_nobody(&bus, "SetPaused", &["b", "true"]),
        "SetPaused as uid 65534",
    );
    assert_denied(
        &call_as_nobody(&bus, "ReloadConfig", &[]),
        "ReloadConfig as uid 65534",
    );
    // The refusal names the daemon's own rule, which the bus would not.
    let refused = client(&bus, true, &["reload"]);
    assert!(!refused.status.success());
    assert!(
        text(&refused.stderr).contains("Reload is for root only (caller uid 65534)"),
        "{}",
        text(&refused.stderr)
    );
    assert_eq!(property(&bus, "Reloads"), 0);
    assert_eq!(property(&bus, "Paused"), false);
    let log = daemon.log();
    for method in ["Reload", "SetPaused", "ReloadConfig"] {
        assert!(
            log.lines().any(|line| line.contains("refused a D-Bus call")
                && line.contains("uid=65534")
                && line.contains(&format!("method=\"{method}\""))),
            "{method} not refused by the daemon:\n{log}"
        );
    }

    // Root still may: pausing shows in the property.
    let out = call(&bus, "SetPaused", &["b", "true"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(property(&bus, "Paused"), true);
}

#[test]
fn a_header_too_big_for_the_kernel_buffer_is_signalled_then_reloaded_another_way() {
    let bus = Bus::start("system-like.conf");
    let daemon = Daemon::start(&bus, "sparse-overflow");
    assert_eq!(property(&bus, "KernelUpdatesMemory"), true);
    let monitor = Monitor::start(&bus);
    daemon.play();
    let too_small = monitor.next("KernelBufferTooSmall", BURST);
    assert_eq!(too_small["type"], "uu");
    // Needed: 3 boot ranges and 10,240 sparse blocks. Capacity: the buffer sized for 2 + 64 + 8192 program
    // headers loads as 113 pages that hold 8,264; 2 are not memory and 8 go to the possible CPUs.
    assert_eq!(too_small["data"], serde_json::json!([10_243, 8_254]));
    let finished = monitor.next("ReloadFinished", BURST);
    assert_eq!(finished["data"][0], true, "{finished}");
    assert_eq!(finished["data"][3], 10_243);
    assert_eq!(property(&bus, "KernelRangeCapacity"), 8_254);
    assert_eq!(property(&bus, "RangeCount"), 10_243);
    assert_eq!(
        property(&bus, "KernelUpdatesMemory"),
        false,
        "loaded with kexec_load, the kernel no longer updates the header"
    );
}

#[test]
fn a_burst_while_paused_is_counted_and_reloaded_once_on_unpause() {
    let bus = Bus::start("system-like.conf");
    let daemon = Daemon::start(&bus, "virtio-mem-1t");
    let out = call(&bus, "SetPaused", &["b", "true"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let monitor = Monitor::start(&bus);
    daemon.play();
    wait_for("the burst counted while paused", BURST, || {
        (property(&bus, "EventsSeen") == 16_384).then_some(())
    });
    assert_eq!(property(&bus, "Reloads"), 0);
    assert_eq!(property(&bus, "State"), "idle");

    let out = call(&bus, "SetPaused", &["b", "false"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let finished = monitor.next("ReloadFinished", BURST);
    assert_eq!(finished["data"][0], true, "{finished}");
    assert_eq!(finished["data"][3], 4);
    assert_eq!(property(&bus, "Reloads"), 1);
}

#[test]
fn reload_config_keeps_the_old_configuration_when_the_new_one_is_invalid() {
    let bus = Bus::start("system-like.conf");
    let _daemon = Daemon::start(&bus, "virtio-mem-1t");
    let out = call(&bus, "ReloadConfig", &[]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(property(&bus, "LastError"), "");

    let config = bus
        .dir
        .path()
        .join("sysroot/etc/kdump-hotplugd/config.toml");
    std::fs::create_dir_all(config.parent().expect("parent")).expect("config dir");
    std::fs::write(&config, "[debounce]\nquiet_window_ms = \"soon\"\n").expect("config");
    let refused = client(&bus, false, &["reload-config"]);
    assert!(!refused.status.success());
    let message = text(&refused.stderr);
    assert!(
        message.contains("/etc/kdump-hotplugd/config.toml") && message.contains("quiet_window_ms"),
        "{message}"
    );
    let last_error = property(&bus, "LastError");
    assert!(
        last_error
            .as_str()
            .unwrap_or("")
            .contains("keeping the previous one"),
        "{last_error}"
    );
}

#[test]
fn sighup_rereads_the_configuration_keeps_the_old_on_error_and_applies_a_good_one() {
    let bus = Bus::start("system-like.conf");
    let daemon = Daemon::start(&bus, "virtio-mem-1t");
    let pid = Pid::from_raw(daemon.child.id() as i32);
    let config = bus
        .dir
        .path()
        .join("sysroot/etc/kdump-hotplugd/config.d/50-test.toml");
    std::fs::create_dir_all(config.parent().expect("parent")).expect("config dir");
    let configured_capacity = || {
        let out = client(&bus, false, &["status", "--json"]);
        assert!(out.status.success(), "{}", text(&out.stderr));
        let status: Value = serde_json::from_slice(&out.stdout).expect("status JSON");
        status["ConfiguredRangeCapacity"]
            .as_u64()
            .expect("ConfiguredRangeCapacity")
    };
    assert_eq!(configured_capacity(), 0, "no override by default");

    std::fs::write(&config, "[kernel]\nmax_memory_ranges = \"many\"\n").expect("config");
    kill(pid, Signal::SIGHUP).expect("SIGHUP");
    let last_error = wait_for("the refused configuration in LastError", STARTUP, || {
        let error = property(&bus, "LastError");
        let error = error.as_str().unwrap_or("").to_owned();
        (!error.is_empty()).then_some(error)
    });
    assert!(
        last_error.contains("keeping the previous one")
            && last_error.contains("config.d/50-test.toml:2")
            && last_error.contains("kernel.max_memory_ranges"),
        "{last_error}"
    );
    assert_eq!(configured_capacity(), 0, "the old configuration stays");

    std::fs::write(&config, "[kernel]\nmax_memory_ranges = 4096\n").expect("config");
    kill(pid, Signal::SIGHUP).expect("SIGHUP");
    wait_for("the new configuration applied", STARTUP, || {
        (configured_capacity() == 4096).then_some(())
    });
    assert_eq!(
        property(&bus, "LastError"),
        "",
        "a good reload clears the refusal"
    );

    kill(pid, Signal::SIGTERM).expect("SIGTERM");
    let mut daemon = daemon;
    let status = wait_for("the daemon to exit", STARTUP, || {
        daemon.child.try_wait().expect("try_wait")
    });
    assert!(status.success(), "{status}\n{}", daemon.log());
}

/// The interface element of an introspection document, comments dropped and whitespace normalised.
fn interface_element(xml: &str) -> String {
    let start = xml
        .find(&format!("<interface name=\"{INTERFACE}\">"))
        .unwrap_or_else(|| panic!("no {INTERFACE} in:\n{xml}"));
    let end = start + xml[start..].find("</interface>").expect("end of interface");
    let mut element = &xml[start..end];
    let mut out = String::new();
    while let Some(comment) = element.find("<!--") {
        out.push_str(&element[..comment]);
        let rest = &element[comment..];
        element = &rest[rest.find("-->").expect("end of comment") + 3..];
    }
    out.push_str(element);
    out.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[test]
fn live_introspection_matches_the_checked_in_xml() {
    let bus = Bus::start("system-like.conf");
    let _daemon = Daemon::start(&bus, "virtio-mem-1t");
    let out = bus.busctl(&["introspect", "--xml-interface", NAME, PATH]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let live = text(&out.stdout);
    let file = manifest_dir().join("packaging/dbus/org.kdump.Hotplug1.xml");
    let checked_in = std::fs::read_to_string(&file).expect("packaging/dbus/org.kdump.Hotplug1.xml");
    assert_eq!(
        interface_element(&live),
        interface_element(&checked_in),
        "the live interface differs from {}; the live document is:\n{live}",
        file.display()
    );
}

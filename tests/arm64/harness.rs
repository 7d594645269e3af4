//! Boots Debian's arm64 kernel in QEMU's `virt` machine (software emulation: no KVM for aarch64 on this x86
//! host) and drives it the way tests/guest/harness.rs drives the x86 guests: the serial console (marker lines,
//! a deadline on every wait) and QMP. Same API as that harness, so tests/guest/scenario.rs runs on top of it.

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

pub const GIB: u64 = 1 << 30;

/// Where every guest's console transcript and the built initramfs go.
pub fn work_dir() -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("arm64");
    std::fs::create_dir_all(&dir).expect("create the guest work folder");
    dir
}

fn setup_script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/arm64/setup.sh")
}

/// Kernel and initramfs of the arm64 guest.
#[derive(Clone, Debug)]
pub struct Images {
    pub kernel: PathBuf,
    /// The first kernel's initrd (holds the crash kernel's image and initrd under /boot).
    pub initrd: PathBuf,
    pub version: String,
}

/// The arm64 daemon built in the trixie chroot (`make build-arm64`), or `KDUMP_HOTPLUGD_ARM64_DAEMON`.
pub fn arm64_daemon() -> PathBuf {
    std::env::var_os("KDUMP_HOTPLUGD_ARM64_DAEMON")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("target/arm64/aarch64-unknown-linux-gnu/release/kdump-hotplugd")
        })
}

/// Fetches the arm64 parts (cached outside the repo) and builds the initramfs, once per run; with the arm64
/// daemon in it when `with_daemon` (the control scenario runs without one, so it needs no cross build).
pub fn images(with_daemon: bool) -> Images {
    static BUILT: OnceLock<Mutex<HashMap<bool, Images>>> = OnceLock::new();
    let mut built = BUILT.get_or_init(Default::default).lock().unwrap();
    if let Some(images) = built.get(&with_daemon) {
        return images.clone();
    }
    let (out, daemon) = if with_daemon {
        let daemon = arm64_daemon();
        assert!(
            daemon.is_file(),
            "{} is missing: build it with `make build-arm64`",
            daemon.display()
        );
        (work_dir().join("images-daemon"), daemon)
    } else {
        (work_dir().join("images-no-daemon"), PathBuf::from("none"))
    };
    let started = Instant::now();
    let status = Command::new("bash")
        .arg(setup_script())
        .arg("initramfs")
        .arg(&daemon)
        .arg(&out)
        .status()
        .expect("run tests/arm64/setup.sh");
    assert!(
        status.success(),
        "tests/arm64/setup.sh initramfs {} failed: {status}",
        daemon.display()
    );
    let images = Images {
        kernel: out.join("Image"),
        initrd: out.join("boot.cpio"),
        version: std::fs::read_to_string(out.join("version"))
            .expect("kernel version written by setup.sh")
            .trim()
            .to_string(),
    };
    println!(
        "setup: arm64 kernel {} and initramfs ready in {:.1}s",
        images.version,
        started.elapsed().as_secs_f64()
    );
    built.insert(with_daemon, images.clone());
    images
}

/// Always software emulation: an x86 host has no KVM for aarch64 guests.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Accel {
    Tcg,
}

impl Accel {
    /// How long a wait may take: aarch64 under TCG runs several times slower than the x86 guests' TCG, which
    /// tests/guest/scenario.rs's deadlines are written for. `KDUMP_HOTPLUGD_ARM64_SLOWDOWN` (default 6) scales
    /// every deadline.
    pub fn scale(self, seconds: u64) -> Duration {
        static FACTOR: OnceLock<u64> = OnceLock::new();
        let factor = *FACTOR.get_or_init(|| {
            std::env::var("KDUMP_HOTPLUGD_ARM64_SLOWDOWN")
                .ok()
                .and_then(|v| v.parse().ok())
                .unwrap_or(6)
        });
        Duration::from_secs(seconds * factor)
    }
}

pub fn accel() -> Accel {
    Accel::Tcg
}

/// The UEFI firmware (qemu-efi-aarch64): booting through it is what gives the guest ACPI tables, and with
/// them the `virt` machine's ACPI memory hotplug (GED); with `-kernel` alone the guest gets a device tree.
pub const FIRMWARE: &str = "/usr/share/qemu-efi-aarch64/QEMU_EFI.fd";

/// The machine to boot.
#[derive(Clone, Debug)]
pub struct GuestOptions {
    pub name: String,
    /// Whether the arm64 daemon is in the initramfs.
    pub with_daemon: bool,
    /// `-smp` argument.
    pub smp: String,
    /// Boot memory, and the virtio-mem device's backend size (0: no device).
    pub boot_memory: &'static str,
    pub virtio_mem_bytes: u64,
    /// Memory hotplug slots (`-m …,slots=`): one per `pc-dimm`.
    pub slots: u32,
    pub extra_cmdline: String,
}

impl GuestOptions {
    pub fn new(name: &str, with_daemon: bool) -> Self {
        Self {
            name: name.to_string(),
            with_daemon,
            smp: "1".into(),
            boot_memory: "2G",
            virtio_mem_bytes: 0,
            slots: 4,
            extra_cmdline: String::new(),
        }
    }
}

enum Output {
    Serial(String),
    Qemu(String),
    Closed,
}

/// A running QEMU guest. Killed on drop; its console transcript stays in [`work_dir`].
pub struct Guest {
    pub name: String,
    pub accel: Accel,
    child: Child,
    stdin: ChildStdin,
    output: Receiver<Output>,
    qmp: Option<Qmp>,
    pub transcript: PathBuf,
    qemu_messages: Vec<String>,
    closed: bool,
}

impl Guest {
    /// Boots and waits for the guest's `@@ READY` line.
    pub fn boot(options: &GuestOptions) -> Guest {
        let accel = accel();
        let started = Instant::now();
        let guest = Guest::try_boot(options, accel, accel.scale(60))
            .unwrap_or_else(|error| panic!("guest {} did not boot: {error}", options.name));
        println!(
            "[{}] booted arm64 Linux {} under {:?} in {:.1}s",
            options.name,
            images(options.with_daemon).version,
            accel,
            started.elapsed().as_secs_f64()
        );
        guest
    }

    fn try_boot(options: &GuestOptions, accel: Accel, deadline: Duration) -> Result<Guest, String> {
        let images = images(options.with_daemon);
        let dir = work_dir();
        let qmp_path = dir.join(format!("{}.qmp", options.name));
        let _ = std::fs::remove_file(&qmp_path);
        let transcript = dir.join(format!("{}.console.log", options.name));
        let cmdline = format!(
            "console=ttyAMA0 acpi=force loglevel=3 crashkernel=256M panic=-1 memhp_default_state=online_movable {}",
            options.extra_cmdline
        );
        let mut command = Command::new("qemu-system-aarch64");
        // cortex-a57 emulates faster than `max` (no pointer authentication or SVE to emulate), and Debian's
        // kernel needs nothing newer.
        command
            .args(["-machine", "virt", "-cpu", "cortex-a57"])
            .args(["-accel", "tcg,thread=multi", "-bios", FIRMWARE])
            .args([
                "-m",
                &format!("{},maxmem=16G,slots={}", options.boot_memory, options.slots),
            ])
            .args(["-smp", &options.smp]);
        if options.virtio_mem_bytes > 0 {
            command
                .args([
                    "-object",
                    &format!(
                        "memory-backend-ram,id=vmem0,size={}",
                        options.virtio_mem_bytes
                    ),
                ])
                .args([
                    "-device",
                    "virtio-mem-pci,id=vm0,memdev=vmem0,requested-size=0,block-size=2M",
                ]);
        }
        command
            .arg("-kernel")
            .arg(&images.kernel)
            .arg("-initrd")
            .arg(&images.initrd)
            .args(["-append", &cmdline])
            .args(["-display", "none", "-serial", "stdio", "-monitor", "none"])
            .args(["-no-reboot", "-qmp"])
            .arg(format!("unix:{},server=on,wait=off", qmp_path.display()))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = command
            .spawn()
            .map_err(|e| format!("cannot start qemu-system-aarch64: {e}"))?;
        let log = Arc::new(Mutex::new(
            File::create(&transcript).map_err(|e| format!("{}: {e}", transcript.display()))?,
        ));
        let (sender, output) = mpsc::channel();
        spawn_reader(
            child.stdout.take().unwrap(),
            sender.clone(),
            log.clone(),
            false,
        );
        spawn_reader(child.stderr.take().unwrap(), sender, log, true);
        let stdin = child.stdin.take().unwrap();
        let mut guest = Guest {
            name: options.name.clone(),
            accel,
            child,
            stdin,
            output,
            qmp: None,
            transcript,
            qemu_messages: Vec::new(),
            closed: false,
        };
        guest.qmp = Some(Qmp::connect(&qmp_path, Duration::from_secs(20))?);
        guest.try_wait_for("@@ READY", deadline)?;
        Ok(guest)
    }

    fn describe(&self) -> String {
        let qemu = if self.qemu_messages.is_empty() {
            String::new()
        } else {
            format!("; QEMU said: {}", self.qemu_messages.join(" | "))
        };
        format!("console transcript: {}{qemu}", self.transcript.display())
    }

    /// Reads console lines until one starts with `prefix`; returns the lines before it and the line itself.
    fn try_wait_for(
        &mut self,
        prefix: &str,
        timeout: Duration,
    ) -> Result<(Vec<String>, String), String> {
        let deadline = Instant::now() + timeout;
        let mut before = Vec::new();
        loop {
            if self.closed {
                return Err(format!(
                    "QEMU exited while waiting for {prefix:?}; {}",
                    self.describe()
                ));
            }
            let left = deadline.saturating_duration_since(Instant::now());
            match self.output.recv_timeout(left) {
                Ok(Output::Serial(line)) => {
                    // Kernel messages can share a line with ours: find the marker anywhere.
                    if let Some(at) = line.find(prefix) {
                        return Ok((before, line[at..].to_string()));
                    }
                    before.push(line);
                }
                Ok(Output::Qemu(line)) => {
                    self.qemu_messages.push(line);
                }
                Ok(Output::Closed) => self.closed = true,
                Err(RecvTimeoutError::Timeout) => {
                    return Err(format!(
                        "no {prefix:?} within {:.0}s; {}",
                        timeout.as_secs_f64(),
                        self.describe()
                    ))
                }
                Err(RecvTimeoutError::Disconnected) => self.closed = true,
            }
        }
    }

    pub fn wait_for(&mut self, prefix: &str, timeout: Duration) -> (Vec<String>, String) {
        self.try_wait_for(prefix, timeout)
            .unwrap_or_else(|error| panic!("[{}] {error}", self.name))
    }

    /// Types one line on the guest's console without waiting for it to finish.
    pub fn send(&mut self, line: &str) {
        writeln!(self.stdin, "{line}")
            .and_then(|_| self.stdin.flush())
            .unwrap_or_else(|e| panic!("[{}] cannot write to the console: {e}", self.name));
    }

    /// Runs a shell command in the guest; returns its exit status and output lines.
    pub fn run(&mut self, command: &str, timeout: Duration) -> (i32, Vec<String>) {
        self.send(command);
        let (lines, done) = self.wait_for("@@ DONE ", timeout);
        let status = done["@@ DONE ".len()..].trim().parse().unwrap_or(-1);
        (status, lines)
    }

    /// Runs a shell command that must succeed; returns its output lines.
    pub fn run_ok(&mut self, command: &str, timeout: Duration) -> Vec<String> {
        let (status, lines) = self.run(command, timeout);
        assert_eq!(
            status,
            0,
            "[{}] `{command}` failed with status {status}: {lines:?}; {}",
            self.name,
            self.describe()
        );
        lines
    }

    /// Lines a command prints between `@@ <begin>` and `@@ <end>` marker lines.
    pub fn run_between(
        &mut self,
        command: &str,
        begin: &str,
        end: &str,
        timeout: Duration,
    ) -> Vec<String> {
        let lines = self.run_ok(command, timeout);
        let start = lines
            .iter()
            .position(|l| l.contains(begin))
            .unwrap_or_else(|| panic!("[{}] no {begin:?} in the output of `{command}`", self.name));
        let stop = lines
            .iter()
            .position(|l| l.contains(end))
            .unwrap_or_else(|| panic!("[{}] no {end:?} in the output of `{command}`", self.name));
        lines[start + 1..stop].to_vec()
    }

    /// The content of a file in the guest, line by line.
    pub fn read_file(&mut self, path: &str) -> Vec<String> {
        self.run_between(
            &format!("guest-tools dump-log {path}"),
            "@@ LOG-BEGIN",
            "@@ LOG-END",
            self.accel.scale(30),
        )
    }

    /// Seconds since the guest booted (`/proc/uptime`), the clock every guest log uses.
    pub fn uptime(&mut self) -> f64 {
        let lines = self.run_ok(
            "echo \"@@ UPTIME $(cut -d' ' -f1 /proc/uptime)\"",
            self.accel.scale(20),
        );
        lines
            .iter()
            .find_map(|l| l.split("@@ UPTIME ").nth(1))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or_else(|| panic!("[{}] no uptime in {lines:?}", self.name))
    }

    pub fn qmp(&mut self) -> &mut Qmp {
        self.qmp.as_mut().expect("QMP connected at boot")
    }

    /// Waits for QEMU to exit (the crash kernel powers off).
    pub fn wait_exit(&mut self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!(
            "[{}] QEMU still running after {timeout:?}; {}",
            self.name,
            self.describe()
        );
    }

    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Guest {
    fn drop(&mut self) {
        self.kill();
    }
}

fn spawn_reader(
    stream: impl Read + Send + 'static,
    sender: Sender<Output>,
    log: Arc<Mutex<File>>,
    from_qemu: bool,
) {
    std::thread::spawn(move || {
        let mut reader = BufReader::new(stream);
        let mut raw = Vec::new();
        loop {
            raw.clear();
            match reader.read_until(b'\n', &mut raw) {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
            let line = String::from_utf8_lossy(&raw)
                .trim_end_matches(['\n', '\r'])
                .replace('\r', "");
            {
                let mut log = log.lock().unwrap();
                let _ = if from_qemu {
                    writeln!(log, "qemu: {line}")
                } else {
                    writeln!(log, "{line}")
                };
            }
            let message = if from_qemu {
                Output::Qemu(line)
            } else {
                Output::Serial(line)
            };
            if sender.send(message).is_err() {
                break;
            }
        }
        if !from_qemu {
            let _ = sender.send(Output::Closed);
        }
    });
}

/// QEMU's machine protocol: one JSON object per line each way.
pub struct Qmp {
    reader: BufReader<UnixStream>,
    writer: UnixStream,
    /// Asynchronous events QEMU sent so far (e.g. MEMORY_DEVICE_SIZE_CHANGE).
    pub events: Vec<Value>,
}

impl Qmp {
    fn connect(path: &Path, timeout: Duration) -> Result<Qmp, String> {
        let deadline = Instant::now() + timeout;
        let stream = loop {
            match UnixStream::connect(path) {
                Ok(stream) => break stream,
                Err(error) if Instant::now() >= deadline => {
                    return Err(format!("QMP socket {}: {error}", path.display()))
                }
                Err(_) => std::thread::sleep(Duration::from_millis(50)),
            }
        };
        stream
            .set_read_timeout(Some(Duration::from_secs(60)))
            .map_err(|e| e.to_string())?;
        let writer = stream.try_clone().map_err(|e| e.to_string())?;
        let mut qmp = Qmp {
            reader: BufReader::new(stream),
            writer,
            events: Vec::new(),
        };
        let greeting = qmp.read()?;
        if greeting.get("QMP").is_none() {
            return Err(format!("unexpected QMP greeting {greeting}"));
        }
        qmp.execute("qmp_capabilities", json!({}))?;
        Ok(qmp)
    }

    fn read(&mut self) -> Result<Value, String> {
        let mut line = String::new();
        let read = self
            .reader
            .read_line(&mut line)
            .map_err(|e| format!("QMP read: {e}"))?;
        if read == 0 {
            return Err("QMP socket closed".into());
        }
        serde_json::from_str(&line).map_err(|e| format!("QMP sent {line:?}: {e}"))
    }

    pub fn execute(&mut self, command: &str, arguments: Value) -> Result<Value, String> {
        let request = json!({ "execute": command, "arguments": arguments });
        writeln!(self.writer, "{request}").map_err(|e| format!("QMP write: {e}"))?;
        loop {
            let reply = self.read()?;
            if reply.get("event").is_some() {
                self.events.push(reply);
            } else if let Some(value) = reply.get("return") {
                return Ok(value.clone());
            } else if let Some(error) = reply.get("error") {
                return Err(format!("QMP {command}: {error}"));
            }
        }
    }
}

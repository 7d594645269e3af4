//! Boots Debian kernels in QEMU and drives them: setup (tests/guest/setup.sh), the serial console (marker lines,
//! a deadline on every wait) and QMP (a JSON line protocol on a unix socket).

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
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("guest");
    std::fs::create_dir_all(&dir).expect("create the guest work folder");
    dir
}

fn setup_script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/guest/setup.sh")
}

/// Kernel and initramfs for one kernel flavour ("6.1", "6.12").
#[derive(Clone, Debug)]
pub struct Images {
    pub kernel: PathBuf,
    /// The first kernel's initrd (holds the crash kernel's image and initrd under /boot).
    pub initrd: PathBuf,
    pub version: String,
}

/// Fetches the kernel (cached outside the repo) and builds the initramfs with this build's daemon, once per run.
pub fn images(flavour: &str) -> Images {
    static BUILT: OnceLock<Mutex<HashMap<String, Images>>> = OnceLock::new();
    let mut built = BUILT.get_or_init(Default::default).lock().unwrap();
    if let Some(images) = built.get(flavour) {
        return images.clone();
    }
    let out = work_dir().join(format!("images-{flavour}"));
    let daemon = env!("CARGO_BIN_EXE_kdump-hotplugd");
    let started = Instant::now();
    let status = Command::new("bash")
        .arg(setup_script())
        .args(["initramfs", flavour, daemon])
        .arg(&out)
        .status()
        .expect("run tests/guest/setup.sh");
    assert!(
        status.success(),
        "tests/guest/setup.sh initramfs {flavour} failed: {status}"
    );
    let images = Images {
        kernel: out.join("vmlinuz"),
        initrd: out.join("boot.cpio"),
        version: std::fs::read_to_string(out.join("version"))
            .expect("kernel version written by setup.sh")
            .trim()
            .to_string(),
    };
    println!(
        "setup: kernel {} and initramfs ready in {:.1}s",
        images.version,
        started.elapsed().as_secs_f64()
    );
    built.insert(flavour.to_string(), images.clone());
    images
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Accel {
    Kvm,
    Tcg,
}

impl Accel {
    /// `several_cpus`: the guest has (or may hot-add) more than one vCPU. Multi-threaded TCG then runs them
    /// in parallel, and a 6.12 guest booting 4 vCPUs that way died once here with "Oops: int3" in
    /// `sched_clock_cpu` (the kernel patching its own text while another vCPU runs it); one TCG thread for
    /// all vCPUs avoids that race.
    fn qemu_args(self, several_cpus: bool) -> [&'static str; 4] {
        match (self, several_cpus) {
            (Accel::Kvm, _) => ["-accel", "kvm", "-cpu", "host"],
            (Accel::Tcg, false) => ["-accel", "tcg,thread=multi", "-cpu", "qemu64"],
            (Accel::Tcg, true) => ["-accel", "tcg,thread=single", "-cpu", "qemu64"],
        }
    }

    /// How long a wait may take, scaled for software emulation.
    pub fn scale(self, seconds: u64) -> Duration {
        match self {
            Accel::Kvm => Duration::from_secs(seconds),
            Accel::Tcg => Duration::from_secs(seconds * 3),
        }
    }
}

/// KVM when a guest really boots with it, software emulation otherwise (nested virtualization often exposes
/// /dev/kvm whose guests hang or stop with "KVM internal error"). `KDUMP_HOTPLUGD_GUEST_ACCEL=kvm|tcg` skips
/// the probe.
pub fn accel() -> Accel {
    static CHOSEN: OnceLock<Accel> = OnceLock::new();
    *CHOSEN.get_or_init(|| {
        let (accel, why) = match std::env::var("KDUMP_HOTPLUGD_GUEST_ACCEL").as_deref() {
            Ok("kvm") => (Accel::Kvm, "KDUMP_HOTPLUGD_GUEST_ACCEL=kvm".to_string()),
            Ok("tcg") => (Accel::Tcg, "KDUMP_HOTPLUGD_GUEST_ACCEL=tcg".to_string()),
            _ => probe_kvm(),
        };
        println!("guest accelerator: {accel:?} ({why})");
        accel
    })
}

/// The probe's verdict is cached per host kernel and QEMU build: a failed probe costs its whole deadline.
fn probe_kvm() -> (Accel, String) {
    let cache = Path::new(
        &std::env::var("KDUMP_HOTPLUGD_GUEST_CACHE")
            .unwrap_or_else(|_| "/var/tmp/kdump-hotplugd-guest".into()),
    )
    .join("kvm-probe");
    let host = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let qemu = std::fs::metadata("/usr/bin/qemu-system-x86_64")
        .and_then(|m| m.modified())
        .map(|t| format!("{t:?}"))
        .unwrap_or_default();
    let key = format!("{} {qemu}", host.trim());
    if let Ok(cached) = std::fs::read_to_string(&cache) {
        if let Some((cached_key, verdict)) = cached.split_once('\n') {
            if cached_key == key {
                let accel = if verdict.starts_with("kvm") {
                    Accel::Kvm
                } else {
                    Accel::Tcg
                };
                return (
                    accel,
                    format!("cached in {}: {}", cache.display(), verdict.trim()),
                );
            }
        }
    }
    let (accel, why) = probe_kvm_uncached();
    let verdict = format!("{} {why}", if accel == Accel::Kvm { "kvm" } else { "tcg" });
    let _ = std::fs::write(&cache, format!("{key}\n{verdict}\n"));
    (accel, why)
}

fn probe_kvm_uncached() -> (Accel, String) {
    if std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/kvm")
        .is_err()
    {
        return (Accel::Tcg, "/dev/kvm cannot be opened".into());
    }
    let started = Instant::now();
    let options = GuestOptions::new("kvm-probe", "6.1");
    match Guest::try_boot(&options, Accel::Kvm, Duration::from_secs(40)) {
        Ok(mut guest) => {
            guest.kill();
            (
                Accel::Kvm,
                format!(
                    "a KVM guest booted in {:.1}s",
                    started.elapsed().as_secs_f64()
                ),
            )
        }
        Err(error) => (
            Accel::Tcg,
            format!("a probe guest under KVM did not boot within 40s: {error}"),
        ),
    }
}

/// The machine to boot.
#[derive(Clone, Debug)]
pub struct GuestOptions {
    pub name: String,
    pub flavour: String,
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
    pub fn new(name: &str, flavour: &str) -> Self {
        Self {
            name: name.to_string(),
            flavour: flavour.to_string(),
            smp: "1".into(),
            boot_memory: "2G",
            virtio_mem_bytes: 8 * GIB,
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
            "[{}] booted Linux {} under {:?} in {:.1}s",
            options.name,
            images(&options.flavour).version,
            accel,
            started.elapsed().as_secs_f64()
        );
        guest
    }

    fn try_boot(options: &GuestOptions, accel: Accel, deadline: Duration) -> Result<Guest, String> {
        let images = images(&options.flavour);
        let dir = work_dir();
        let qmp_path = dir.join(format!("{}.qmp", options.name));
        let _ = std::fs::remove_file(&qmp_path);
        let transcript = dir.join(format!("{}.console.log", options.name));
        let cmdline = format!(
            "console=ttyS0 loglevel=3 crashkernel=256M panic=-1 memhp_default_state=online_movable {}",
            options.extra_cmdline
        );
        let mut command = Command::new("qemu-system-x86_64");
        command
            .args(accel.qemu_args(options.smp != "1"))
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
            .args([
                "-display", "none", "-vga", "none", "-serial", "stdio", "-monitor", "none",
            ])
            .args(["-no-reboot", "-qmp"])
            .arg(format!("unix:{},server=on,wait=off", qmp_path.display()));
        let mut guest = Guest::spawn(&options.name, accel, command, &qmp_path, transcript)?;
        guest.try_wait_for("@@ READY", deadline)?;
        Ok(guest)
    }

    /// Starts a QEMU command line whose serial console is on stdio and whose QMP socket is `qmp_path`
    /// (`-qmp unix:…,server=on,wait=off`), connects QMP, and returns without waiting for the guest. The
    /// distribution tier (tests/distro.rs) builds its own command line and boots through this too.
    pub fn spawn(
        name: &str,
        accel: Accel,
        mut command: Command,
        qmp_path: &Path,
        transcript: PathBuf,
    ) -> Result<Guest, String> {
        command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = command
            .spawn()
            .map_err(|e| format!("cannot start qemu-system-x86_64: {e}"))?;
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
            name: name.to_string(),
            accel,
            child,
            stdin,
            output,
            qmp: None,
            transcript,
            qemu_messages: Vec::new(),
            closed: false,
        };
        guest.qmp = Some(Qmp::connect(qmp_path, Duration::from_secs(20))?);
        Ok(guest)
    }

    pub fn describe(&self) -> String {
        let qemu = if self.qemu_messages.is_empty() {
            String::new()
        } else {
            format!("; QEMU said: {}", self.qemu_messages.join(" | "))
        };
        format!("console transcript: {}{qemu}", self.transcript.display())
    }

    /// Reads console lines until one starts with `prefix`; returns the lines before it and the line itself.
    pub fn try_wait_for(
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
                    if line.contains("KVM internal error") {
                        return Err(format!("{line}; {}", self.describe()));
                    }
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

    /// Waits for QEMU to exit (the crash kernel powers off); returns how it ended.
    pub fn wait_exit(&mut self, timeout: Duration) -> std::process::ExitStatus {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status;
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

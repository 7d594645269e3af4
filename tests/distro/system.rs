//! The Debian 12 system in QEMU: the cached image (tests/distro/setup.sh), one copy-on-write overlay per boot, and
//! a root shell on the serial console (getty's autologin) that runs one command at a time, each ended by a marker
//! line of its own that carries the exit status.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use crate::harness::{Accel, Guest};

/// How long a step of the guest may take under software emulation on a shared two-core host. Generous: a
/// deadline that fires tells which step hung, it is not a performance target.
pub fn secs(seconds: u64) -> Duration {
    Duration::from_secs(seconds)
}

/// Console transcripts, overlays and extracted dumps.
pub fn work_dir() -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("distro");
    std::fs::create_dir_all(&dir).expect("create the distro work folder");
    dir
}

fn setup_script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/distro/setup.sh")
}

/// What setup.sh built: the disk after the first boot of each kernel, and the kernels and initrds to boot.
#[derive(Debug)]
pub struct Image {
    pub dir: PathBuf,
    pub disk: PathBuf,
    /// The unprivileged account in the image.
    pub user: String,
    /// sha256 of the .deb installed in the image.
    pub deb_sha256: String,
    pub deb: PathBuf,
}

impl Image {
    pub fn kernel(&self, flavour: &str) -> PathBuf {
        self.dir.join(format!("vmlinuz-{flavour}"))
    }
    pub fn initrd(&self, flavour: &str) -> PathBuf {
        self.dir.join(format!("initrd-{flavour}"))
    }
    pub fn version(&self, flavour: &str) -> String {
        let versions = std::fs::read_to_string(self.dir.join("versions")).expect("versions");
        versions
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{flavour} ")))
            .unwrap_or_else(|| panic!("no {flavour} kernel in {}", self.dir.display()))
            .to_string()
    }
}

/// The .deb under test: `KDUMP_HOTPLUGD_DEB`, or the one `make packages` left under target/debian.
pub fn deb_path() -> PathBuf {
    if let Ok(path) = std::env::var("KDUMP_HOTPLUGD_DEB") {
        return PathBuf::from(path);
    }
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/debian");
    let debs: Vec<PathBuf> = std::fs::read_dir(&dir)
        .map(|entries| {
            entries
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|x| x == "deb"))
                .collect()
        })
        .unwrap_or_default();
    match debs.as_slice() {
        [one] => one.clone(),
        [] => panic!(
            "no .deb under {}: run `make packages` first (make test-distro does)",
            dir.display()
        ),
        many => panic!("several .debs under {}: {many:?}", dir.display()),
    }
}

/// Builds or finds the cached image, once per test process.
pub fn image() -> &'static Image {
    static IMAGE: OnceLock<Image> = OnceLock::new();
    IMAGE.get_or_init(|| {
        let deb = deb_path();
        let started = Instant::now();
        let output = Command::new("bash")
            .arg(setup_script())
            .arg("image")
            .arg(&deb)
            .stderr(std::process::Stdio::inherit())
            .output()
            .expect("run tests/distro/setup.sh");
        assert!(
            output.status.success(),
            "tests/distro/setup.sh image {} failed: {}",
            deb.display(),
            output.status
        );
        // The folder is the last line: a tool the script runs may print on stdout before it.
        let stdout = String::from_utf8_lossy(&output.stdout);
        let dir = PathBuf::from(
            stdout
                .lines()
                .map(str::trim)
                .rfind(|l| !l.is_empty())
                .unwrap_or_default(),
        );
        let read = |name: &str| {
            std::fs::read_to_string(dir.join(name))
                .unwrap_or_else(|e| panic!("{}/{name}: {e}", dir.display()))
                .trim()
                .to_string()
        };
        let image = Image {
            disk: dir.join("disk.raw"),
            user: read("user"),
            deb_sha256: read("deb"),
            deb,
            dir,
        };
        println!(
            "setup: image {} ready in {:.1}s (.deb sha256 {})",
            image.dir.display(),
            started.elapsed().as_secs_f64(),
            &image.deb_sha256[..12]
        );
        image
    })
}

/// One boot of the system from a fresh overlay of the cached disk.
pub struct Distro {
    pub guest: Guest,
    pub name: String,
    pub flavour: String,
    pub overlay: PathBuf,
    /// QEMU's own log (`-d cpu_reset,guest_errors`).
    pub qemu_log: PathBuf,
    next_marker: u64,
    pub boot_seconds: f64,
}

/// The kernel command line (the same as tests/distro/setup.sh's first boots): what the recipe booted, the crash
/// kernel reservation kdump-tools needs for a full Debian initrd (36 MB) and systemd, hot-added memory onlined by
/// the kernel itself; `no_timer_check` because on a loaded host the emulated timer can fail the kernel's IO-APIC
/// check (a boot panic seen here). No `panic=`: kdump-tools passes this line on to the crash kernel (setup.sh says
/// why it matters).
pub const CMDLINE: &str =
    "root=/dev/vda rw console=ttyS0 crashkernel=384M memhp_default_state=online_movable \
     no_timer_check";

impl Distro {
    /// Boots `flavour` ("6.1", "6.12") with a virtio-mem device of 8 GiB (none of it plugged), waits for the root
    /// shell and prepares it for scripted use.
    pub fn boot(name: &str, flavour: &str) -> Distro {
        let image = image();
        let dir = work_dir();
        let overlay = dir.join(format!("{name}.qcow2"));
        let _ = std::fs::remove_file(&overlay);
        run_host(
            Command::new("qemu-img")
                .args(["create", "-q", "-f", "qcow2", "-F", "raw", "-b"])
                .arg(&image.disk)
                .arg(&overlay),
        );
        let qmp = dir.join(format!("{name}.qmp"));
        let _ = std::fs::remove_file(&qmp);
        let transcript = dir.join(format!("{name}.console.log"));
        let qemu_log = dir.join(format!("{name}.qemu.log"));
        let mut command = Command::new("qemu-system-x86_64");
        // Software emulation (KVM hangs on this host), as the recipe booted it.
        command
            .args([
                "-accel",
                "tcg,thread=multi",
                "-machine",
                "q35",
                "-cpu",
                "max",
                "-smp",
                "2",
            ])
            .args(["-m", "2G,maxmem=16G,slots=4"])
            .args(["-object", "memory-backend-ram,id=vmem0,size=8G"])
            .args([
                "-device",
                "virtio-mem-pci,id=vm0,memdev=vmem0,requested-size=0,block-size=2M",
            ])
            .arg("-drive")
            .arg(format!("file={},format=qcow2,if=virtio", overlay.display()))
            .arg("-kernel")
            .arg(image.kernel(flavour))
            .arg("-initrd")
            .arg(image.initrd(flavour))
            .args(["-append", CMDLINE])
            .args(["-display", "none", "-vga", "none", "-monitor", "none"])
            .args(["-serial", "stdio", "-no-reboot", "-qmp"])
            .arg(format!("unix:{},server=on,wait=off", qmp.display()))
            // Why a boot ended without a word on the console: QEMU logs each CPU reset, a triple fault too.
            .args(["-d", "cpu_reset,guest_errors", "-D"])
            .arg(&qemu_log);
        let started = Instant::now();
        let guest = Guest::spawn(name, Accel::Tcg, command, &qmp, transcript)
            .unwrap_or_else(|e| panic!("[{name}] {e}"));
        let mut distro = Distro {
            guest,
            name: name.to_string(),
            flavour: flavour.to_string(),
            overlay,
            qemu_log,
            next_marker: 0,
            boot_seconds: 0.0,
        };
        distro.wait_for_shell(secs(420));
        distro.boot_seconds = started.elapsed().as_secs_f64();
        println!(
            "[{name}] Debian 12 with Linux {} ({}) booted to a root shell in {:.1}s",
            image.version(flavour),
            distro.flavour,
            distro.boot_seconds
        );
        distro
    }

    /// agetty logs root in by itself; the shell then gets its input without echo or line editing, no prompt, no
    /// pager and wide lines, and the kernel's messages leave the console to us.
    fn wait_for_shell(&mut self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        self.guest
            .try_wait_for("login: root (automatic login)", timeout)
            .unwrap_or_else(|e| panic!("[{}] no autologin: {e}", self.name));
        // Typed input may arrive before bash reads the terminal: repeat until the shell answers.
        loop {
            self.guest.send(
                "stty -echo cols 500 2>/dev/null; set +o emacs +o vi; PS1= PS2=; export TERM=dumb \
                 SYSTEMD_PAGER=cat SYSTEMD_COLORS=0 COLUMNS=500 LC_ALL=C; dmesg -n 1; echo \"@@ SHELL\"-READY",
            );
            let left = deadline.saturating_duration_since(Instant::now());
            match self
                .guest
                .try_wait_for("@@ SHELL-READY", left.min(secs(20)))
            {
                Ok(_) => return,
                Err(e) if Instant::now() >= deadline => {
                    panic!("[{}] the console shell never answered: {e}", self.name)
                }
                Err(_) => {}
            }
        }
    }

    /// Runs one shell command (stdin from /dev/null, stderr with stdout); returns its exit status and output.
    pub fn sh(&mut self, command: &str, timeout: Duration) -> (i32, Vec<String>) {
        self.next_marker += 1;
        let marker = format!("@@ END-{} ", self.next_marker);
        assert!(
            command.len() < 3500,
            "console lines are limited by the tty: {command}"
        );
        // In a subshell, so that an `exit` ends the command, not the login shell. The marker is split in the
        // typed text, so only the shell's output can match it.
        self.guest.send(&format!(
            "( {command}\n) </dev/null 2>&1; echo \"@@ END\"-{} $?",
            self.next_marker
        ));
        let deadline = Instant::now() + timeout;
        let mut lines = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let (before, done) = self
                .guest
                .try_wait_for(&marker, left)
                .unwrap_or_else(|e| panic!("[{}] `{command}`: {e}", self.name));
            lines.extend(before);
            if let Ok(status) = done[marker.len()..].trim().parse() {
                return (status, lines);
            }
            lines.push(done);
        }
    }

    /// Runs a command that must succeed.
    pub fn sh_ok(&mut self, command: &str, timeout: Duration) -> Vec<String> {
        let (status, lines) = self.sh(command, timeout);
        assert_eq!(
            status,
            0,
            "[{}] `{command}` failed with status {status}:\n{}\n{}",
            self.name,
            lines.join("\n"),
            self.guest.describe()
        );
        lines
    }

    /// The one line a command prints (e.g. `cat` of a sysfs file), trimmed.
    pub fn value(&mut self, command: &str) -> String {
        let lines = self.sh_ok(command, secs(60));
        lines
            .iter()
            .map(|l| l.trim())
            .rfind(|l| !l.is_empty())
            .unwrap_or_default()
            .to_string()
    }

    /// Seconds since boot, the clock of udevadm monitor, the journal's monotonic stamps and the pollers.
    pub fn uptime(&mut self) -> f64 {
        let value = self.value("cut -d' ' -f1 /proc/uptime");
        value
            .parse()
            .unwrap_or_else(|e| panic!("[{}] uptime {value:?}: {e}", self.name))
    }
}

/// Runs a host command that must succeed; returns its stdout.
pub fn run_host(command: &mut Command) -> String {
    let output = command
        .output()
        .unwrap_or_else(|e| panic!("cannot run {command:?}: {e}"));
    assert!(
        output.status.success(),
        "{command:?} failed ({}): {}{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

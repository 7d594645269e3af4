//! The stand-in for the distribution's hotplug rule, as a process: `kdump-hotplugd run` on a fixture host with
//! Debian's rule masks it in `<sysroot>/run/udev/rules.d/` before READY and asks udevd (a stand-in listening on
//! `<sysroot>/run/udev/control`) to reload; SIGTERM gives the rule back; after SIGKILL the mask stays until
//! `kdump-hotplugd release-rules` (the unit's `ExecStopPost=`) removes it. An admin's file in
//! `/etc/udev/rules.d`, `mask_distro_rule = false` and `--dry-run` mask nothing.

use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::sys::socket::{self, sockopt, AddressFamily, MsgFlags, SockFlag, SockType, UnixAddr};
use nix::unistd::Pid;

const DEADLINE: Duration = Duration::from_secs(60);
const RULE: &str = "usr/lib/udev/rules.d/50-kdump-tools.rules";
const MASK: &str = "run/udev/rules.d/50-kdump-tools.rules";
const RULE_TEXT: &str =
    "SUBSYSTEM==\"memory\", ACTION==\"online\", RUN+=\"/usr/sbin/kdump-config try-reload\"\n";
/// `UDEV_CTRL_RELOAD` in systemd's src/udev/udev-ctrl.h.
const RELOAD: i32 = 4;

fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_tree(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

/// A Debian-like fixture host: the small VM's /proc and /sys, kdump-tools' rule, and a config that never loads
/// (the crash kernel is loaded and `initial_load = "never"`; any reload would run /bin/true).
fn fixture(dir: &Path, extra_config: &str) -> PathBuf {
    let root = dir.join("root");
    copy_tree(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/small-vm"),
        &root,
    );
    for (path, text) in [
        (RULE.to_owned(), RULE_TEXT.to_owned()),
        (
            "etc/kdump-hotplugd/config.toml".to_owned(),
            format!(
                "[loader]\nkind = \"command\"\ncommand = [\"/bin/true\"]\n\n[daemon]\ninitial_load = \"never\"\n\
                 {extra_config}"
            ),
        ),
    ] {
        let file = root.join(path);
        std::fs::create_dir_all(file.parent().unwrap()).unwrap();
        std::fs::write(file, text).unwrap();
    }
    root
}

struct Daemon {
    child: Child,
    socket: UnixDatagram,
    stderr: PathBuf,
}

impl Daemon {
    fn start(dir: &Path, root: &Path, extra: &[&str]) -> Daemon {
        let socket_path = dir.join("notify");
        let _ = std::fs::remove_file(&socket_path);
        let socket = UnixDatagram::bind(&socket_path).unwrap();
        let stderr = dir.join("stderr");
        let child = Command::new(env!("CARGO_BIN_EXE_kdump-hotplugd"))
            .arg("run")
            .arg("--sysroot")
            .arg(root)
            .args(["--events", "kernel", "--bus", "none"])
            .args(extra)
            .env("NOTIFY_SOCKET", &socket_path)
            .env("RUST_LOG", "info")
            .env_remove("WATCHDOG_USEC")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&stderr).unwrap())
            .spawn()
            .unwrap();
        Daemon {
            child,
            socket,
            stderr,
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }

    fn wait_ready(&self) {
        let until = Instant::now() + DEADLINE;
        let mut buffer = [0u8; 8192];
        loop {
            let left = until.saturating_duration_since(Instant::now());
            assert!(!left.is_zero(), "no READY=1; daemon log:\n{}", self.log());
            self.socket.set_read_timeout(Some(left)).unwrap();
            if let Ok(n) = self.socket.recv(&mut buffer) {
                if String::from_utf8_lossy(&buffer[..n]).contains("READY=1") {
                    return;
                }
            }
        }
    }

    fn signal(&self, signal: Signal) {
        kill(Pid::from_raw(self.child.id() as i32), signal).unwrap();
    }

    /// Waits for the exit (the child is reaped by `wait`, which returns once it has exited).
    fn exit_status(mut self) -> (std::process::ExitStatus, String) {
        let status = self.child.wait().unwrap();
        let log = self.log();
        (status, log)
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A stand-in for udevd's control socket (systemd src/udev/udev-ctrl.c): accepts clients one after another
/// and sends the type of every message with udevd's magic to the channel, closing each connection after the
/// end message the way udevd does.
fn stand_in_udevd(root: &Path) -> mpsc::Receiver<i32> {
    let path = root.join("run/udev/control");
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let listener = socket::socket(
        AddressFamily::Unix,
        SockType::SeqPacket,
        SockFlag::SOCK_CLOEXEC,
        None,
    )
    .unwrap();
    socket::bind(listener.as_raw_fd(), &UnixAddr::new(&path).unwrap()).unwrap();
    socket::listen(&listener, socket::Backlog::new(4).unwrap()).unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || loop {
        let Ok(raw) = socket::accept(listener.as_raw_fd()) else {
            return;
        };
        // SAFETY: accept returned a new descriptor that nothing else owns.
        let connection = unsafe { OwnedFd::from_raw_fd(raw) };
        let _ = socket::setsockopt(&connection.as_fd(), sockopt::PassCred, &true);
        loop {
            let mut buffer = [0u8; 280];
            match socket::recv(connection.as_raw_fd(), &mut buffer, MsgFlags::empty()) {
                Ok(280) => {}
                _ => break,
            }
            let magic = u32::from_ne_bytes(buffer[16..20].try_into().unwrap());
            let kind = i32::from_ne_bytes(buffer[20..24].try_into().unwrap());
            if magic != 0xdead1dea || kind == 0 {
                break;
            }
            if tx.send(kind).is_err() {
                return;
            }
        }
    });
    rx
}

fn mask_of(root: &Path) -> Option<String> {
    std::fs::read_to_string(root.join(MASK)).ok()
}

#[test]
fn the_rule_is_masked_while_running_and_given_back_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let root = fixture(dir.path(), "");
    let udevd = stand_in_udevd(&root);
    let daemon = Daemon::start(dir.path(), &root, &[]);
    daemon.wait_ready();
    // Written before READY.
    let mask = mask_of(&root).unwrap_or_else(|| panic!("no mask; log:\n{}", daemon.log()));
    assert!(
        mask.starts_with("# kdump-hotplugd runtime mask v1\n"),
        "{mask}"
    );
    assert!(
        mask.contains("# masks: /usr/lib/udev/rules.d/50-kdump-tools.rules\n"),
        "{mask}"
    );
    assert!(mask.lines().all(|line| line.starts_with('#')), "{mask}");
    assert_eq!(
        std::fs::read_to_string(root.join(RULE)).unwrap(),
        RULE_TEXT,
        "the distribution's file is never touched"
    );
    assert_eq!(udevd.recv_timeout(DEADLINE), Ok(RELOAD), "{}", daemon.log());

    daemon.signal(Signal::SIGTERM);
    let (status, log) = daemon.exit_status();
    assert!(status.success(), "{status}\n{log}");
    assert_eq!(mask_of(&root), None, "{log}");
    assert_eq!(udevd.recv_timeout(DEADLINE), Ok(RELOAD), "{log}");
    assert!(
        log.contains("50-kdump-tools.rules masked while the daemon runs"),
        "{log}"
    );
    assert!(log.contains("udevd read its rules again"), "{log}");
}

#[test]
fn after_sigkill_release_rules_gives_the_rule_back() {
    let dir = tempfile::tempdir().unwrap();
    let root = fixture(dir.path(), "");
    let daemon = Daemon::start(dir.path(), &root, &[]);
    daemon.wait_ready();
    assert!(mask_of(&root).is_some(), "{}", daemon.log());
    daemon.signal(Signal::SIGKILL);
    let (status, log) = daemon.exit_status();
    assert!(!status.success());
    assert!(mask_of(&root).is_some(), "SIGKILL leaves the mask\n{log}");

    // Someone else's runtime file of another rule is not touched by release-rules.
    let foreign = root.join("run/udev/rules.d/98-kexec.rules");
    std::fs::write(&foreign, "# an admin's runtime file\n").unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_kdump-hotplugd"))
        .arg("release-rules")
        .arg("--sysroot")
        .arg(&root)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    assert_eq!(mask_of(&root), None, "{stderr}");
    assert!(foreign.exists());
    assert!(stderr.contains("udevd is not running"), "{stderr}");
    // Once more: nothing left to give back, still a success.
    let again = Command::new(env!("CARGO_BIN_EXE_kdump-hotplugd"))
        .arg("release-rules")
        .arg("--sysroot")
        .arg(&root)
        .output()
        .unwrap();
    assert!(again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("nothing to give back"));
}

/// Starts the daemon on `root`, waits for READY, and returns its log after a SIGTERM.
fn run_until_ready(dir: &Path, root: &Path, extra: &[&str]) -> String {
    let daemon = Daemon::start(dir, root, extra);
    daemon.wait_ready();
    let masked = mask_of(root);
    daemon.signal(Signal::SIGTERM);
    let (status, log) = daemon.exit_status();
    assert!(status.success(), "{status}\n{log}");
    assert_eq!(masked, None, "masked, though it must not be:\n{log}");
    log
}

#[test]
fn an_admins_file_in_etc_is_left_in_charge() {
    let dir = tempfile::tempdir().unwrap();
    let root = fixture(dir.path(), "");
    let admin = root.join("etc/udev/rules.d/50-kdump-tools.rules");
    std::fs::create_dir_all(admin.parent().unwrap()).unwrap();
    std::os::unix::fs::symlink("/dev/null", &admin).unwrap();
    let log = run_until_ready(dir.path(), &root, &[]);
    assert!(
        log.contains("the administrator's /etc/udev/rules.d/50-kdump-tools.rules is in effect"),
        "{log}"
    );
}

#[test]
fn mask_distro_rule_false_keeps_the_rule() {
    let dir = tempfile::tempdir().unwrap();
    let root = fixture(dir.path(), "mask_distro_rule = false\n");
    let log = run_until_ready(dir.path(), &root, &[]);
    assert!(log.contains("mask_distro_rule = false"), "{log}");
    assert!(!root.join("run/udev/rules.d").exists(), "{log}");
}

#[test]
fn a_dry_run_masks_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let root = fixture(dir.path(), "");
    let log = run_until_ready(dir.path(), &root, &["--dry-run"]);
    assert!(
        log.contains("dry run: would mask 50-kdump-tools.rules"),
        "{log}"
    );
}

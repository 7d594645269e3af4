//! The udev rules directories of the host (under `--sysroot`): what exists of the distributions' kdump hotplug
//! rules, the daemon's masks in `/run/udev/rules.d`, and udevd's control socket to make it read them now.
//!
//! Why the reload: systemd-udevd does not watch its rules directories. It compares the rules files' stat data
//! with what it loaded (`udev_rules_should_reload()`, src/udev/udev-rules.c) only from `manager_reload()`,
//! which runs before it starts queued uevents (`event_queue_start()`) at most once every 3 seconds, and forced
//! on SIGHUP or a control-socket RELOAD (src/udev/udevd.c, systemd 252). So a new mask is used from the first
//! uevent that comes 3 s or more after udevd's previous check; the uevents of a burst already under way keep
//! the old rules. A RELOAD closes that gap, and udevd answers it only once the rules are read again.

use std::collections::BTreeSet;
use std::io::Write as _;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::time::Duration;

use nix::sys::socket::{self, sockopt, AddressFamily, MsgFlags, SockFlag, SockType, UnixAddr};
use nix::sys::time::{TimeVal, TimeValLike};

use super::{Applied, RuleFileError, RuleFiles, UdevReload};
use crate::core::rule_mask::{
    self, Action, Found, RuntimeFile, DISTRO_RULES, RUNTIME_DIR, VENDOR_DIRS,
};
use crate::host::sysroot::Sysroot;

/// udevd's control socket (src/udev/udev-ctrl.c, `udev_ctrl_new_from_fd()`).
pub const CONTROL_SOCKET: &str = "/run/udev/control";

/// The control protocol's message (`UdevCtrlMessageWire` in src/udev/udev-ctrl.c): a 16-byte version string
/// udevd does not check, the magic it does, the message type (an enum, so a C int), and a 256-byte value.
pub const CONTROL_MESSAGE_SIZE: usize = 16 + 4 + 4 + 256;
pub const CONTROL_MAGIC: u32 = 0xdead_1dea;
/// `_UDEV_CTRL_END_MESSAGES`: udevd closes the connection once it has handled every message before it.
pub const CONTROL_END: i32 = 0;
/// `UDEV_CTRL_RELOAD` (src/udev/udev-ctrl.h), handled by `manager_reload(manager, /* force = */ true)`.
pub const CONTROL_RELOAD: i32 = 4;

/// One control message, in the host's byte order (udevd reads it as a C struct).
pub fn control_message(kind: i32) -> [u8; CONTROL_MESSAGE_SIZE] {
    let mut message = [0u8; CONTROL_MESSAGE_SIZE];
    let version = b"kdump-hotplugd";
    message[..version.len()].copy_from_slice(version);
    message[16..20].copy_from_slice(&CONTROL_MAGIC.to_ne_bytes());
    message[20..24].copy_from_slice(&kind.to_ne_bytes());
    message
}

pub struct HostRuleFiles {
    sysroot: Sysroot,
    /// How long udevd may take to confirm a reload.
    udev_timeout: Duration,
}

impl HostRuleFiles {
    pub fn new(sysroot: Sysroot) -> Self {
        Self {
            sysroot,
            udev_timeout: Duration::from_secs(10),
        }
    }

    fn error(path: &str, error: impl std::fmt::Display) -> RuleFileError {
        RuleFileError {
            path: path.to_owned(),
            message: error.to_string(),
        }
    }

    fn runtime_file(&self, path: &str) -> Result<RuntimeFile, RuleFileError> {
        match std::fs::read(self.sysroot.path(path)) {
            Ok(bytes) => Ok(rule_mask::parse_header(&String::from_utf8_lossy(&bytes))
                .map_or(RuntimeFile::Foreign, RuntimeFile::Ours)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(RuntimeFile::Absent),
            Err(e) => Err(Self::error(path, e)),
        }
    }

    /// Replaces `path` in one step (a temporary file renamed over it), so udevd never reads half a file. The
    /// temporary name starts with a dot and does not end in `.rules`: udev skips it.
    fn replace(&self, path: &str, bytes: &[u8]) -> Result<(), RuleFileError> {
        let dir = self.sysroot.path(RUNTIME_DIR);
        if !dir.is_dir() {
            std::fs::create_dir_all(&dir).map_err(|e| Self::error(RUNTIME_DIR, e))?;
            // The unit's UMask=0077 would leave it 0700; udev's directories are 0755.
            std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755))
                .map_err(|e| Self::error(RUNTIME_DIR, e))?;
        }
        let target = self.sysroot.path(path);
        let name = target
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let temporary = dir.join(format!(".{name}.kdump-hotplugd"));
        let written = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o644)
            .open(&temporary)
            .and_then(|mut file| {
                file.write_all(bytes)?;
                // Readable to all like the rule it masks, whatever the umask.
                file.set_permissions(std::fs::Permissions::from_mode(0o644))
            })
            .and_then(|()| std::fs::rename(&temporary, &target));
        if let Err(e) = written {
            let _ = std::fs::remove_file(&temporary);
            return Err(Self::error(path, e));
        }
        Ok(())
    }
}

impl RuleFiles for HostRuleFiles {
    fn survey(&self) -> Result<Vec<Found>, RuleFileError> {
        let mut found = Vec::new();
        for rule in DISTRO_RULES {
            let admin = rule_mask::admin_path(rule);
            let admin_file = match std::fs::symlink_metadata(self.sysroot.path(&admin)) {
                Ok(_) => true,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => false,
                Err(e) => return Err(Self::error(&admin, e)),
            };
            let runtime = self.runtime_file(&rule_mask::runtime_path(rule))?;
            // /lib is /usr/lib on merged-/usr systems: one file, listed once.
            let mut seen = BTreeSet::new();
            let mut vendor = Vec::new();
            for dir in VENDOR_DIRS {
                let path = format!("{dir}/{}", rule.name);
                if let Ok(metadata) = std::fs::metadata(self.sysroot.path(&path)) {
                    if metadata.is_file() && seen.insert((metadata.dev(), metadata.ino())) {
                        vendor.push(path);
                    }
                }
            }
            let template = rule
                .template
                .is_some_and(|template| self.sysroot.path(template).is_file());
            found.push(Found {
                rule: *rule,
                admin_file,
                runtime,
                vendor,
                template,
            });
        }
        Ok(found)
    }

    fn apply(&self, action: &Action) -> Result<Applied, RuleFileError> {
        let path = action.path();
        if !matches!(action, Action::Write { .. })
            && !matches!(self.runtime_file(path)?, RuntimeFile::Ours(_))
        {
            // Changed since the survey (SUSE's load.sh copied its rule over it, say): not ours to touch.
            return Ok(Applied::NotOurs);
        }
        match action {
            Action::Write { text, .. } => self.replace(path, text.as_bytes())?,
            Action::Remove { .. } => match std::fs::remove_file(self.sysroot.path(path)) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(Self::error(path, e)),
            },
            Action::Restore { from, .. } => {
                let bytes =
                    std::fs::read(self.sysroot.path(from)).map_err(|e| Self::error(from, e))?;
                self.replace(path, &bytes)?;
            }
        }
        Ok(Applied::Done)
    }

    fn reload_udev(&self) -> Result<UdevReload, RuleFileError> {
        let path = self.sysroot.path(CONTROL_SOCKET);
        let fail = |e: nix::Error| Self::error(CONTROL_SOCKET, std::io::Error::from(e));
        let address = UnixAddr::new(&path).map_err(fail)?;
        let fd = socket::socket(
            AddressFamily::Unix,
            SockType::SeqPacket,
            SockFlag::SOCK_CLOEXEC,
            None,
        )
        .map_err(fail)?;
        let timeout = TimeVal::milliseconds(self.udev_timeout.as_millis() as i64);
        // A blocking connect waits for udevd's accept (it takes one client at a time) at most this long.
        socket::setsockopt(&fd, sockopt::SendTimeout, &timeout).map_err(fail)?;
        socket::setsockopt(&fd, sockopt::ReceiveTimeout, &timeout).map_err(fail)?;
        match socket::connect(fd.as_raw_fd(), &address) {
            Ok(()) => {}
            // No socket, or one nobody listens on: udevd is not running and reads all rules when it starts.
            Err(nix::Error::ENOENT | nix::Error::ECONNREFUSED) => {
                return Ok(UdevReload::NotRunning)
            }
            Err(e) => return Err(fail(e)),
        }
        for kind in [CONTROL_RELOAD, CONTROL_END] {
            socket::send(fd.as_raw_fd(), &control_message(kind), MsgFlags::empty())
                .map_err(fail)?;
        }
        // udevd sends nothing back; it closes the connection after the end message, once RELOAD is done.
        let mut buffer = [0u8; CONTROL_MESSAGE_SIZE];
        loop {
            match socket::recv(fd.as_raw_fd(), &mut buffer, MsgFlags::empty()) {
                Ok(0) | Err(nix::Error::ECONNRESET) => return Ok(UdevReload::Reloaded),
                Ok(_) => continue,
                Err(nix::Error::EAGAIN) => {
                    return Err(Self::error(
                        CONTROL_SOCKET,
                        format!(
                            "udevd did not confirm the reload within {} s",
                            self.udev_timeout.as_secs()
                        ),
                    ))
                }
                Err(nix::Error::EINTR) => continue,
                Err(e) => return Err(fail(e)),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::rule_mask::{MaskHeader, MARKER};

    fn write(root: &std::path::Path, path: &str, text: &str) {
        let file = root.join(path.trim_start_matches('/'));
        std::fs::create_dir_all(file.parent().unwrap()).unwrap();
        std::fs::write(file, text).unwrap();
    }

    #[test]
    fn the_control_message_has_udevds_layout() {
        let message = control_message(CONTROL_RELOAD);
        assert_eq!(message.len(), 280);
        assert_eq!(&message[..15], b"kdump-hotplugd\0");
        assert_eq!(
            u32::from_ne_bytes(message[16..20].try_into().unwrap()),
            0xdead1dea
        );
        assert_eq!(i32::from_ne_bytes(message[20..24].try_into().unwrap()), 4);
        assert!(message[24..].iter().all(|b| *b == 0));
    }

    #[test]
    fn survey_sees_vendor_admin_and_runtime_files_once_each() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        write(
            root,
            "/usr/lib/udev/rules.d/50-kdump-tools.rules",
            "RUN+=\"x\"\n",
        );
        // Merged /usr: /lib is a symlink to usr/lib, so the same file shows under both names.
        std::os::unix::fs::symlink("usr/lib", root.join("lib")).unwrap();
        write(root, "/etc/udev/rules.d/98-kexec.rules", "");
        write(root, "/usr/lib/udev/rules.d/98-kexec.rules", "RUN+=\"y\"\n");
        write(root, "/usr/lib/kdump/70-kdump.rules", "RUN+=\"z\"\n");
        write(root, "/run/udev/rules.d/70-kdump.rules", "RUN+=\"z\"\n");
        let found = HostRuleFiles::new(Sysroot::new(root)).survey().unwrap();
        assert_eq!(
            found[0],
            Found {
                vendor: vec!["/usr/lib/udev/rules.d/50-kdump-tools.rules".into()],
                ..Found::nothing(DISTRO_RULES[0])
            }
        );
        assert_eq!(
            found[1],
            Found {
                admin_file: true,
                vendor: vec!["/usr/lib/udev/rules.d/98-kexec.rules".into()],
                ..Found::nothing(DISTRO_RULES[1])
            }
        );
        assert_eq!(
            found[2],
            Found {
                runtime: RuntimeFile::Foreign,
                template: true,
                ..Found::nothing(DISTRO_RULES[2])
            }
        );
    }

    #[test]
    fn write_creates_the_directory_readable_and_remove_takes_only_ours() {
        let dir = tempfile::tempdir().unwrap();
        let files = HostRuleFiles::new(Sysroot::new(dir.path()));
        let path = "/run/udev/rules.d/50-kdump-tools.rules";
        let text = format!("{MARKER}\n# masks: /lib/udev/rules.d/50-kdump-tools.rules\n");
        let write = Action::Write {
            path: path.into(),
            text: text.clone(),
        };
        assert_eq!(files.apply(&write).unwrap(), Applied::Done);
        let on_disk = dir.path().join("run/udev/rules.d/50-kdump-tools.rules");
        assert_eq!(std::fs::read_to_string(&on_disk).unwrap(), text);
        let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&on_disk), 0o644);
        assert_eq!(mode(on_disk.parent().unwrap()), 0o755);
        // Nothing left over from the replacement.
        assert_eq!(
            std::fs::read_dir(on_disk.parent().unwrap())
                .unwrap()
                .count(),
            1
        );
        assert_eq!(
            files.survey().unwrap()[0].runtime,
            RuntimeFile::Ours(MaskHeader {
                masks: vec!["/lib/udev/rules.d/50-kdump-tools.rules".into()],
                restore_from: None,
            })
        );
        // Someone else's file at the path is never removed.
        std::fs::write(&on_disk, "SUBSYSTEM==\"memory\"\n").unwrap();
        let remove = Action::Remove { path: path.into() };
        assert_eq!(files.apply(&remove).unwrap(), Applied::NotOurs);
        assert!(on_disk.exists());
        std::fs::write(&on_disk, &text).unwrap();
        assert_eq!(files.apply(&remove).unwrap(), Applied::Done);
        assert!(!on_disk.exists());
    }

    #[test]
    fn restore_puts_the_packages_copy_back() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "/usr/lib/kdump/70-kdump.rules", "the rule\n");
        write(
            dir.path(),
            "/run/udev/rules.d/70-kdump.rules",
            &format!("{MARKER}\n"),
        );
        let files = HostRuleFiles::new(Sysroot::new(dir.path()));
        let restore = Action::Restore {
            path: "/run/udev/rules.d/70-kdump.rules".into(),
            from: "/usr/lib/kdump/70-kdump.rules".into(),
        };
        assert_eq!(files.apply(&restore).unwrap(), Applied::Done);
        assert_eq!(
            std::fs::read_to_string(dir.path().join("run/udev/rules.d/70-kdump.rules")).unwrap(),
            "the rule\n"
        );
        // Now it is the package's file again: a second restore leaves it alone.
        assert_eq!(files.apply(&restore).unwrap(), Applied::NotOurs);
    }

    #[test]
    fn no_control_socket_means_udevd_is_not_running() {
        let dir = tempfile::tempdir().unwrap();
        let files = HostRuleFiles::new(Sysroot::new(dir.path()));
        assert_eq!(files.reload_udev().unwrap(), UdevReload::NotRunning);
        // A socket file nobody listens on (udevd died): the same.
        std::fs::create_dir_all(dir.path().join("run/udev")).unwrap();
        drop(std::os::unix::net::UnixListener::bind(dir.path().join("run/udev/control")).unwrap());
        assert_eq!(files.reload_udev().unwrap(), UdevReload::NotRunning);
    }

    /// A stand-in for udevd's control socket (src/udev/udev-ctrl.c): accepts one client, asks for its
    /// credentials, and returns what it received, closing the connection after the end message.
    fn stand_in_udevd(path: &std::path::Path) -> std::thread::JoinHandle<Vec<(i32, u32, u32)>> {
        use std::os::fd::{AsFd, FromRawFd, OwnedFd};
        let listener = socket::socket(
            AddressFamily::Unix,
            SockType::SeqPacket,
            SockFlag::SOCK_CLOEXEC,
            None,
        )
        .unwrap();
        socket::bind(listener.as_raw_fd(), &UnixAddr::new(path).unwrap()).unwrap();
        socket::listen(&listener, socket::Backlog::new(1).unwrap()).unwrap();
        std::thread::spawn(move || {
            let raw = socket::accept(listener.as_raw_fd()).unwrap();
            // SAFETY: accept returned a new descriptor that nothing else owns.
            let connection = unsafe { OwnedFd::from_raw_fd(raw) };
            socket::setsockopt(&connection.as_fd(), sockopt::PassCred, &true).unwrap();
            let mut received = Vec::new();
            loop {
                let mut buffer = [0u8; CONTROL_MESSAGE_SIZE];
                let mut iov = [std::io::IoSliceMut::new(&mut buffer)];
                let mut space = nix::cmsg_space!(nix::sys::socket::UnixCredentials);
                let message = socket::recvmsg::<()>(
                    connection.as_raw_fd(),
                    &mut iov,
                    Some(&mut space),
                    MsgFlags::empty(),
                )
                .unwrap();
                assert_eq!(message.bytes, CONTROL_MESSAGE_SIZE);
                let uid = message
                    .cmsgs()
                    .unwrap()
                    .find_map(|c| match c {
                        socket::ControlMessageOwned::ScmCredentials(creds) => Some(creds.uid()),
                        _ => None,
                    })
                    .expect("sender credentials");
                let magic = u32::from_ne_bytes(buffer[16..20].try_into().unwrap());
                let kind = i32::from_ne_bytes(buffer[20..24].try_into().unwrap());
                received.push((kind, magic, uid));
                if kind == CONTROL_END {
                    return received;
                }
            }
        })
    }

    #[test]
    fn reload_speaks_udevds_control_protocol_and_waits_for_the_close() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("run/udev")).unwrap();
        let udevd = stand_in_udevd(&dir.path().join("run/udev/control"));
        let files = HostRuleFiles::new(Sysroot::new(dir.path()));
        assert_eq!(files.reload_udev().unwrap(), UdevReload::Reloaded);
        let uid = nix::unistd::getuid().as_raw();
        assert_eq!(
            udevd.join().unwrap(),
            [
                (CONTROL_RELOAD, CONTROL_MAGIC, uid),
                (CONTROL_END, CONTROL_MAGIC, uid)
            ]
        );
    }
}

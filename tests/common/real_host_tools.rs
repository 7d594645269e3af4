//! Parts of a real host that the process-level tests share: a private `dbus-daemon` with the project's policy,
//! and fixture trees copied where a test may write. Included with `#[path = "common/real_host_tools.rs"]`.

use std::process::{Child, Command, Stdio};

/// A private `dbus-daemon` with the project's system-like policy (tests/dbus), killed on drop; `Err` says why
/// there is none (dbus-daemon not installed).
pub struct PrivateBus {
    child: Child,
    pub address: String,
    _dir: tempfile::TempDir,
}

impl PrivateBus {
    pub fn start() -> Result<PrivateBus, String> {
        let dir = tempfile::tempdir().unwrap();
        let config =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/dbus/system-like.conf");
        let address = format!("unix:path={}/bus", dir.path().display());
        let mut child = Command::new("dbus-daemon")
            .arg(format!("--config-file={}", config.display()))
            .arg(format!("--address={address}"))
            .args(["--nofork", "--nopidfile", "--print-address=1"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| {
                format!("cannot run dbus-daemon (apt-get install dbus-daemon, or make deps): {e}")
            })?;
        // It prints its address once it listens.
        let mut line = String::new();
        std::io::BufRead::read_line(
            &mut std::io::BufReader::new(child.stdout.take().unwrap()),
            &mut line,
        )
        .unwrap();
        assert!(line.starts_with("unix:"), "dbus-daemon said {line:?}");
        Ok(PrivateBus {
            child,
            address,
            _dir: dir,
        })
    }

    pub fn property(&self, name: &str) -> Option<String> {
        let out = Command::new("busctl")
            .arg(format!("--address={}", self.address))
            .args([
                "get-property",
                "org.kdump.Hotplug1",
                "/org/kdump/Hotplug1",
                "org.kdump.Hotplug1",
                name,
            ])
            .output()
            .ok()?;
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
    }
}

impl Drop for PrivateBus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Copies the fixture tree `from` to `to`, so a test can let the daemon write (its lock, a mask) under it.
pub fn copy_tree(from: &std::path::Path, to: &std::path::Path) {
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

//! One daemon per host: an exclusive flock(2) on `<runtime dir>/lock`, taken before anything is loaded and held
//! for the life of the process, with the holder's pid written into it so that a refused second instance can
//! say who runs.
//!
//! flock rather than a pid file checked for liveness: the kernel drops the lock when the holder dies, however
//! it dies, so a stale file never blocks a restart and no pid can be mistaken for a recycled one. The file is
//! never removed: unlinking a lock file lets a newcomer lock a fresh inode while another still holds the old.

use std::fs::{DirBuilder, File, OpenOptions};
use std::io::{Read, Seek, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg};

/// The runtime directory (`RuntimeDirectory=kdump-hotplugd` in the unit), under `--sysroot`.
pub const RUNTIME_DIR: &str = "/run/kdump-hotplugd";

/// The lock file's name inside the runtime directory.
pub const LOCK_FILE: &str = "lock";

/// The held lock; dropping it (or the process ending) releases it.
#[derive(Debug)]
pub struct InstanceLock {
    _file: Flock<File>,
    path: PathBuf,
}

#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error("another kdump-hotplugd is running: {holder} holds {path}", holder = holder(*.pid))]
    Held { path: PathBuf, pid: Option<u32> },
    #[error(
        "cannot take the instance lock {path}: {source} (run as root, or point --runtime-dir at a writable \
         directory)"
    )]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

fn holder(pid: Option<u32>) -> String {
    match pid {
        Some(pid) => format!("pid {pid}"),
        // The holder truncates the file before it writes its pid: a reader can fall in between.
        None => "a process whose pid is not written yet".to_owned(),
    }
}

impl InstanceLock {
    /// Takes `dir/lock` (creating `dir` when missing), or says who holds it.
    pub fn acquire(dir: &Path) -> Result<Self, LockError> {
        let path = dir.join(LOCK_FILE);
        let io = |source| LockError::Io {
            path: path.clone(),
            source,
        };
        DirBuilder::new()
            .recursive(true)
            .mode(0o755)
            .create(dir)
            .map_err(io)?;
        // Readable by all (0644): whoever is refused may read the holder's pid.
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o644)
            .open(&path)
            .map_err(io)?;
        let lock = match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
            Ok(lock) => lock,
            Err((mut file, Errno::EWOULDBLOCK)) => {
                let mut text = String::new();
                let pid = file
                    .read_to_string(&mut text)
                    .ok()
                    .and_then(|_| text.trim().parse().ok());
                return Err(LockError::Held { path, pid });
            }
            Err((_, errno)) => return Err(io(std::io::Error::from(errno))),
        };
        let mut file: &File = &lock;
        file.set_len(0)
            .and_then(|()| file.rewind())
            .and_then(|()| writeln!(file, "{}", std::process::id()))
            .map_err(io)?;
        Ok(InstanceLock { _file: lock, path })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_holds_the_lock_and_a_second_is_told_its_pid() {
        let dir = tempfile::tempdir().unwrap();
        let runtime = dir.path().join("run/kdump-hotplugd");
        let first = InstanceLock::acquire(&runtime).unwrap();
        assert_eq!(first.path(), runtime.join("lock"));
        assert_eq!(
            std::fs::read_to_string(runtime.join("lock")).unwrap(),
            format!("{}\n", std::process::id())
        );
        // flock locks belong to the open file description: a second open in the same process conflicts,
        // as another process's would.
        let error = InstanceLock::acquire(&runtime).unwrap_err();
        assert!(
            matches!(&error, LockError::Held { pid: Some(pid), .. } if *pid == std::process::id()),
            "{error:?}"
        );
        assert_eq!(
            error.to_string(),
            format!(
                "another kdump-hotplugd is running: pid {} holds {}",
                std::process::id(),
                runtime.join("lock").display()
            )
        );
        drop(first);
        // Released with its holder; the stale pid left in the file is replaced.
        std::fs::write(runtime.join("lock"), "999999\n").unwrap();
        let again = InstanceLock::acquire(&runtime).unwrap();
        assert_eq!(
            std::fs::read_to_string(again.path()).unwrap(),
            format!("{}\n", std::process::id())
        );
    }

    #[test]
    fn an_unwritable_place_is_an_error_naming_the_path() {
        let dir = tempfile::tempdir().unwrap();
        let blocker = dir.path().join("file");
        std::fs::write(&blocker, "").unwrap();
        // A directory cannot be created under a regular file (ENOTDIR), even as root.
        let error = InstanceLock::acquire(&blocker.join("run")).unwrap_err();
        assert!(matches!(error, LockError::Io { .. }), "{error:?}");
        assert!(
            error.to_string().starts_with(&format!(
                "cannot take the instance lock {}/run/lock: ",
                blocker.display()
            )),
            "{error}"
        );
    }
}

//! Reads a [`HostSnapshot`] from a sysroot.
// STUB: owned by the parsers work.

use crate::model::HostSnapshot;
use crate::parse::ParseError;
use crate::sysroot::{Sysroot, SysrootError};

#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    #[error(transparent)]
    Read(#[from] SysrootError),
    #[error(transparent)]
    Parse(#[from] ParseError),
}

/// Keeps `/proc/iomem` open between snapshots: the kernel shows real addresses only to an opener that had
/// CAP_SYS_ADMIN (`kernel/resource.c` checks the file's credentials), so the daemon opens it once, at start.
pub struct SnapshotReader {
    sysroot: Sysroot,
}

impl SnapshotReader {
    pub fn open(sysroot: Sysroot) -> Result<Self, SnapshotError> {
        Ok(Self { sysroot })
    }

    pub fn sysroot(&self) -> &Sysroot {
        &self.sysroot
    }

    pub fn take(&mut self) -> Result<HostSnapshot, SnapshotError> {
        todo!()
    }
}

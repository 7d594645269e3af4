//! The kexec-tools version of a kexec binary, read from its bytes (`core::parse::kexec_version` says why the
//! binary and not a package database).

use std::io::Read;
use std::path::Path;

/// Far above any kexec build (Debian 12's is 192 KiB); a larger file is read only this far.
const MAX_BINARY: u64 = 64 << 20;

/// The version in the file at `path` (a host path, already inside the sysroot); `None` when it cannot be read
/// or holds none.
pub fn read(path: &Path) -> Option<String> {
    let mut bytes = Vec::new();
    std::fs::File::open(path)
        .ok()?
        .take(MAX_BINARY)
        .read_to_end(&mut bytes)
        .ok()?;
    crate::core::parse::kexec_version::kexec_tools_version(&bytes)
}

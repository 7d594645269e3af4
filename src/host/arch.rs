//! The machine architecture, as a plain value for [`crate::core::arch::check`].

use crate::host::sysroot::Sysroot;

/// The kernel's `utsname.machine` as a file: `kernel.arch` sysctl (kernel/utsname_sysctl.c, `uts_kern_table`,
/// added in 2022, present on 6.x kernels). Under a fixture sysroot it says which machine the fixture is.
pub const ARCH: &str = "/proc/sys/kernel/arch";

/// `/proc/sys/kernel/arch` under the sysroot, else `uname(2)`'s machine (older kernels lack the file).
pub fn machine(sysroot: &Sysroot) -> String {
    if let Ok(Some(text)) = sysroot.read_optional(ARCH) {
        return text.trim().to_owned();
    }
    nix::sys::utsname::uname()
        .map(|u| u.machine().to_string_lossy().into_owned())
        .unwrap_or_default()
}

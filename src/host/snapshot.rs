//! Reads a [`HostSnapshot`] from a sysroot.
//!
//! A snapshot is taken after every quiet window, so it reads only what the decision needs: `/proc/iomem`, the
//! three CPU lists, a handful of single-value kexec files, `block_size_bytes`, and the NAMES of the `memoryN`
//! directories (one `readdir`, never one open per block: a 2 TiB host has 16k blocks). Per-block detail is
//! [`memory_blocks`], for the CLI.

use std::io::{Read, Seek, SeekFrom};
use std::time::Duration;

use serde::Serialize;

use crate::core::arch::{Arch, UnsupportedArchitecture};
use crate::core::hotplug_flag::{needs_confirming, ZeroConfirmation};
use crate::core::model::{CpuSet, CrashState, HostSnapshot};
use crate::core::parse::sysfs::{
    parse_decimal, parse_flag, parse_hex, parse_memory_state, parse_range_list,
};
use crate::core::parse::{cpulist, iomem, os_release_ids, parse_decimal_u64, ParseError};
use crate::core::ranges::{addresses_hidden, for_arch, system_ram_bytes_for};
use crate::host::sysroot::{Sysroot, SysrootError};

pub use crate::core::parse::sysfs::MemoryBlockState;

pub const IOMEM: &str = "/proc/iomem";
pub const CPU_PRESENT: &str = "/sys/devices/system/cpu/present";
pub const CPU_ONLINE: &str = "/sys/devices/system/cpu/online";
pub const CPU_POSSIBLE: &str = "/sys/devices/system/cpu/possible";
pub const MEMORY_DIR: &str = "/sys/devices/system/memory";
pub const MEMORY_BLOCK_SIZE: &str = "/sys/devices/system/memory/block_size_bytes";
/// Exist only with `CONFIG_CRASH_HOTPLUG` (Linux 6.6+): `drivers/base/memory.c` and `drivers/base/cpu.c`,
/// `crash_hotplug_show`.
pub const MEMORY_CRASH_HOTPLUG: &str = "/sys/devices/system/memory/crash_hotplug";
pub const CPU_CRASH_HOTPLUG: &str = "/sys/devices/system/cpu/crash_hotplug";

/// The kexec files, newest layout first. A 2025 series moves them under `/sys/kernel/kexec/` and leaves
/// symlinks at the old names (`kernel/ksysfs.c` before it); reading the new name first works on both, and on a
/// kernel that someday drops the symlinks.
pub const CRASH_LOADED: [&str; 2] = [
    "/sys/kernel/kexec/crash_loaded",
    "/sys/kernel/kexec_crash_loaded",
];
/// Reads EBUSY while another task holds the kexec lock (`kernel/crash_core.c`, `crash_get_memory_size`).
pub const CRASH_SIZE: [&str; 2] = [
    "/sys/kernel/kexec/crash_size",
    "/sys/kernel/kexec_crash_size",
];
/// Crash CMA reservations, one `start-end` per line (6.17+; the 2025 layout moves it with the others).
pub const CRASH_CMA_RANGES: [&str; 2] = [
    "/sys/kernel/kexec/crash_cma_ranges",
    "/sys/kernel/kexec_crash_cma_ranges",
];
pub const CMDLINE: &str = "/proc/cmdline";
pub const OS_RELEASE: &str = "/etc/os-release";
/// Exists only with `CONFIG_CRASH_HOTPLUG` (`kernel/ksysfs.c`, `crash_elfcorehdr_size_show`).
pub const CRASH_ELFCOREHDR_SIZE: [&str; 2] = [
    "/sys/kernel/kexec/crash_elfcorehdr_size",
    "/sys/kernel/crash_elfcorehdr_size",
];

#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    #[error(transparent)]
    Read(#[from] SysrootError),
    #[error(transparent)]
    Parse(#[from] ParseError),
    #[error(transparent)]
    Architecture(#[from] UnsupportedArchitecture),
}

/// Keeps `/proc/iomem` open between snapshots: the kernel shows real addresses only to an opener that had
/// CAP_SYS_ADMIN (`kernel/resource.c` checks the file's credentials), so the daemon opens it once, at start.
pub struct SnapshotReader {
    sysroot: Sysroot,
    /// Whose header rules apply, read once: the running kernel's machine does not change.
    arch: Arch,
    iomem: std::fs::File,
    /// Reused across snapshots: `/proc/iomem` on a sparse host is ~1 MB.
    buffer: String,
    /// The `crash_hotplug` flags (memory, cpu) the last snapshot believed.
    last_flags: Option<(bool, bool)>,
    confirmation: ZeroConfirmation,
    /// Waits between re-reads of a `crash_hotplug` 0 (`std::thread::sleep`; tests pass their own).
    pause: Box<dyn FnMut(Duration) + Send>,
}

impl SnapshotReader {
    /// Opens `/proc/iomem` and reads the machine (`/proc/sys/kernel/arch`, else `uname`); an architecture
    /// whose rules are not known fails here.
    pub fn open(sysroot: Sysroot) -> Result<Self, SnapshotError> {
        let arch = Arch::from_machine(&crate::host::arch::machine(&sysroot))?;
        let iomem = sysroot.open(IOMEM)?;
        Ok(Self {
            sysroot,
            arch,
            iomem,
            buffer: String::new(),
            last_flags: None,
            confirmation: ZeroConfirmation::DEFAULT,
            pause: Box::new(std::thread::sleep),
        })
    }

    /// How a `crash_hotplug` 0 after a 1 is confirmed, and how the reader waits between re-reads.
    pub fn with_zero_confirmation(
        mut self,
        confirmation: ZeroConfirmation,
        pause: Box<dyn FnMut(Duration) + Send>,
    ) -> Self {
        self.confirmation = confirmation;
        self.pause = pause;
        self
    }

    /// Re-reads a `crash_hotplug` flag that dropped from 1 to 0 while a crash kernel stays loaded, as
    /// [`needs_confirming`] decides: the kernel reads 0 while the kexec lock is contended. A 1 on any re-read
    /// wins; a 0 on every one is believed.
    fn confirm_flags(&mut self, crash: &mut CrashState) -> Result<(), SnapshotError> {
        let Some((memory_before, cpu_before)) = self.last_flags else {
            return Ok(());
        };
        for _ in 0..self.confirmation.rereads {
            let memory = needs_confirming(
                Some(memory_before),
                crash.kernel_updates_memory,
                crash.loaded,
            );
            let cpu = needs_confirming(Some(cpu_before), crash.kernel_updates_cpu, crash.loaded);
            if !memory && !cpu {
                break;
            }
            (self.pause)(self.confirmation.interval);
            if memory {
                crash.kernel_updates_memory =
                    read_optional_flag(&self.sysroot, MEMORY_CRASH_HOTPLUG)?;
            }
            if cpu {
                crash.kernel_updates_cpu = read_optional_flag(&self.sysroot, CPU_CRASH_HOTPLUG)?;
            }
        }
        Ok(())
    }

    pub fn sysroot(&self) -> &Sysroot {
        &self.sysroot
    }

    pub fn arch(&self) -> Arch {
        self.arch
    }

    pub fn take(&mut self) -> Result<HostSnapshot, SnapshotError> {
        let resources = self.read_iomem()?;
        let mut crash = read_crash_state(&self.sysroot)?;
        self.confirm_flags(&mut crash)?;
        self.last_flags = Some((crash.kernel_updates_memory, crash.kernel_updates_cpu));
        let header = for_arch(self.arch, &resources, &crash.cma_ranges);
        Ok(HostSnapshot {
            arch: self.arch,
            ranges: header.ranges,
            outside_header: header.outside_header,
            addresses_hidden: addresses_hidden(&resources),
            present_cpus: read_cpus(&self.sysroot, CPU_PRESENT)?,
            online_cpus: read_cpus(&self.sysroot, CPU_ONLINE)?,
            possible_cpus: read_cpus(&self.sysroot, CPU_POSSIBLE)?,
            crash,
            memory_block_size: read_memory_block_size(&self.sysroot)?,
            memory_blocks: count_memory_blocks(&self.sysroot)?,
            // Hidden addresses sum to nothing meaningful.
            system_ram_bytes: if addresses_hidden(&resources) {
                0
            } else {
                system_ram_bytes_for(self.arch, &resources)
            },
            kernel_cmdline: self
                .sysroot
                .read_optional(CMDLINE)?
                .map(|text| text.trim_end_matches('\n').to_owned()),
            distro_ids: match self.sysroot.read_optional(OS_RELEASE)? {
                Some(text) => os_release_ids(&text),
                None => Vec::new(),
            },
        })
    }

    /// Re-reads the open file from the start: seq_file regenerates `/proc/iomem` on each read from offset 0.
    fn read_iomem(&mut self) -> Result<Vec<iomem::Resource>, SnapshotError> {
        let path = self.sysroot.path(IOMEM);
        self.buffer.clear();
        self.iomem
            .seek(SeekFrom::Start(0))
            .and_then(|_| self.iomem.read_to_string(&mut self.buffer))
            .map_err(|source| SysrootError { path, source })?;
        Ok(iomem::parse(IOMEM, &self.buffer)?)
    }
}

fn read_cpus(sysroot: &Sysroot, file: &str) -> Result<CpuSet, SnapshotError> {
    let text = sysroot.read_to_string(file)?;
    Ok(cpulist::parse(file, &text)?)
}

fn read_memory_block_size(sysroot: &Sysroot) -> Result<Option<u64>, SnapshotError> {
    match sysroot.read_optional(MEMORY_BLOCK_SIZE)? {
        Some(text) => Ok(Some(parse_hex(MEMORY_BLOCK_SIZE, &text)?)),
        None => Ok(None),
    }
}

/// What the kernel says about crash support, the loaded crash kernel and in-kernel header updates.
pub fn read_crash_state(sysroot: &Sysroot) -> Result<CrashState, SnapshotError> {
    let loaded_file = read_first(sysroot, &CRASH_LOADED)?;
    let loaded = match &loaded_file {
        Some((file, text)) => parse_flag(file, text)?,
        None => false,
    };
    let reserved_bytes = reserved_bytes(read_first(sysroot, &CRASH_SIZE))?;
    let elfcorehdr_size = match read_first(sysroot, &CRASH_ELFCOREHDR_SIZE)? {
        Some((file, text)) => Some(parse_decimal(file, &text)?),
        None => None,
    };
    let cma_ranges = match read_first(sysroot, &CRASH_CMA_RANGES)? {
        Some((file, text)) => parse_range_list(file, &text)?,
        None => Vec::new(),
    };
    Ok(CrashState {
        kexec_supported: loaded_file.is_some(),
        loaded,
        reserved_bytes,
        cma_ranges,
        elfcorehdr_size,
        crash_hotplug_support: sysroot.exists(MEMORY_CRASH_HOTPLUG)
            || sysroot.exists(CPU_CRASH_HOTPLUG),
        kernel_updates_memory: read_optional_flag(sysroot, MEMORY_CRASH_HOTPLUG)?,
        kernel_updates_cpu: read_optional_flag(sysroot, CPU_CRASH_HOTPLUG)?,
    })
}

/// `kexec_crash_size`: `None` when absent or busy (the kexec lock is held during a load or an in-kernel update;
/// the size is informational, so a snapshot must not fail for it).
fn reserved_bytes(
    read: Result<Option<(&'static str, String)>, SysrootError>,
) -> Result<Option<u64>, SnapshotError> {
    match read {
        Ok(Some((file, text))) => Ok(Some(parse_decimal(file, &text)?)),
        Ok(None) => Ok(None),
        Err(e) if e.source.raw_os_error() == Some(libc::EBUSY) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

fn read_optional_flag(sysroot: &Sysroot, file: &str) -> Result<bool, SnapshotError> {
    match sysroot.read_optional(file)? {
        Some(text) => Ok(parse_flag(file, &text)?),
        None => Ok(false),
    }
}

/// Reads the first of `files` that exists, returning its host path with the text.
fn read_first(
    sysroot: &Sysroot,
    files: &[&'static str],
) -> Result<Option<(&'static str, String)>, SysrootError> {
    for &file in files {
        if let Some(text) = sysroot.read_optional(file)? {
            return Ok(Some((file, text)));
        }
    }
    Ok(None)
}

/// `memoryN` → `N`; `None` for the other entries (`block_size_bytes`, `auto_online_blocks`, `power`, …).
fn memory_block_index(name: &std::ffi::OsStr) -> Option<u64> {
    name.to_str()?
        .strip_prefix("memory")
        .and_then(parse_decimal_u64)
}

fn memory_dir_entries(sysroot: &Sysroot) -> Result<Option<std::fs::ReadDir>, SysrootError> {
    let path = sysroot.path(MEMORY_DIR);
    match std::fs::read_dir(&path) {
        Ok(entries) => Ok(Some(entries)),
        // No memory hotplug support (`CONFIG_MEMORY_HOTPLUG=n`): no blocks.
        Err(source) if source.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(SysrootError { path, source }),
    }
}

/// The number of `memoryN` directories, from their names alone.
pub fn count_memory_blocks(sysroot: &Sysroot) -> Result<usize, SnapshotError> {
    let Some(entries) = memory_dir_entries(sysroot)? else {
        return Ok(0);
    };
    let path = sysroot.path(MEMORY_DIR);
    let mut count = 0;
    for entry in entries {
        let entry = entry.map_err(|source| SysrootError {
            path: path.clone(),
            source,
        })?;
        if memory_block_index(&entry.file_name()).is_some() {
            count += 1;
        }
    }
    Ok(count)
}

/// One `memoryN` directory (`Documentation/admin-guide/mm/memory-hotplug.rst`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct MemoryBlock {
    /// `N`: the block's first physical address divided by the block size.
    pub index: u64,
    pub state: MemoryBlockState,
    /// `online` (the driver core's generic attribute), when present.
    pub online: Option<bool>,
    /// `phys_index` (hex), when present; equals `index` on real hosts.
    pub phys_index: Option<u64>,
}

/// Every memory block with its state, sorted by index. Opens two or three files per block: for the CLI, not for
/// the per-event snapshot.
pub fn memory_blocks(sysroot: &Sysroot) -> Result<Vec<MemoryBlock>, SnapshotError> {
    let Some(entries) = memory_dir_entries(sysroot)? else {
        return Ok(Vec::new());
    };
    let dir = sysroot.path(MEMORY_DIR);
    let mut indices = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|source| SysrootError {
            path: dir.clone(),
            source,
        })?;
        if let Some(index) = memory_block_index(&entry.file_name()) {
            indices.push(index);
        }
    }
    indices.sort_unstable();
    indices
        .into_iter()
        .map(|index| {
            let file = |name: &str| format!("{MEMORY_DIR}/memory{index}/{name}");
            let state_file = file("state");
            let state = parse_memory_state(&state_file, &sysroot.read_to_string(&state_file)?)?;
            let online_file = file("online");
            let online = match sysroot.read_optional(&online_file)? {
                Some(text) => Some(parse_flag(&online_file, &text)?),
                None => None,
            };
            let phys_index_file = file("phys_index");
            let phys_index = match sysroot.read_optional(&phys_index_file)? {
                Some(text) => Some(parse_hex(&phys_index_file, &text)?),
                None => None,
            };
            Ok(MemoryBlock {
                index,
                state,
                online,
                phys_index,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn io_error(errno: i32) -> SysrootError {
        SysrootError {
            path: "/x/sys/kernel/kexec_crash_size".into(),
            source: std::io::Error::from_raw_os_error(errno),
        }
    }

    #[test]
    fn crash_size_busy_or_absent_is_none_and_other_errors_fail() {
        assert_eq!(reserved_bytes(Err(io_error(libc::EBUSY))).unwrap(), None);
        assert_eq!(reserved_bytes(Ok(None)).unwrap(), None);
        assert_eq!(
            reserved_bytes(Ok(Some((CRASH_SIZE[1], "268435456\n".into())))).unwrap(),
            Some(268_435_456)
        );
        assert!(matches!(
            reserved_bytes(Err(io_error(libc::EACCES))),
            Err(SnapshotError::Read(_))
        ));
        match reserved_bytes(Ok(Some((CRASH_SIZE[0], "-16\n".into())))) {
            Err(SnapshotError::Parse(e)) => {
                assert_eq!((e.file.as_str(), e.line), (CRASH_SIZE[0], 1))
            }
            other => panic!("expected a parse error, got {other:?}"),
        }
    }

    #[test]
    fn memory_block_names() {
        assert_eq!(memory_block_index("memory0".as_ref()), Some(0));
        assert_eq!(memory_block_index("memory16383".as_ref()), Some(16_383));
        for other in [
            "memory",
            "block_size_bytes",
            "auto_online_blocks",
            "memoryx",
            "memory-1",
            "power",
        ] {
            assert_eq!(memory_block_index(other.as_ref()), None, "{other}");
        }
    }
}

//! Domain types shared by the pure core and the edges. No I/O here.

use serde::Serialize;

use crate::core::arch::Arch;
use std::collections::BTreeSet;
use std::fmt;

/// An inclusive physical address range, as `/proc/iomem` prints it (`start-end`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct MemRange {
    pub start: u64,
    pub end: u64,
}

impl MemRange {
    pub fn new(start: u64, end: u64) -> Self {
        debug_assert!(start <= end);
        Self { start, end }
    }

    pub fn size(&self) -> u64 {
        self.end - self.start + 1
    }
}

impl fmt::Display for MemRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:#014x}-{:#014x}", self.start, self.end)
    }
}

/// A set of CPU ids, as the kernel's cpulist files (`0-3,8`) describe it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct CpuSet(pub BTreeSet<u32>);

impl CpuSet {
    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl FromIterator<u32> for CpuSet {
    fn from_iter<I: IntoIterator<Item = u32>>(iter: I) -> Self {
        CpuSet(iter.into_iter().collect())
    }
}

impl fmt::Display for CpuSet {
    /// Formats back into the kernel's cpulist syntax.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut first = true;
        let mut iter = self.0.iter().copied().peekable();
        while let Some(start) = iter.next() {
            let mut end = start;
            while iter.peek() == Some(&(end + 1)) {
                end = iter.next().unwrap_or(end);
            }
            if !first {
                f.write_str(",")?;
            }
            first = false;
            if start == end {
                write!(f, "{start}")?;
            } else {
                write!(f, "{start}-{end}")?;
            }
        }
        Ok(())
    }
}

/// What the kernel says about the loaded crash kernel and its ability to keep the header current.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct CrashState {
    /// `/sys/kernel/kexec_crash_loaded` exists: the kernel was built with kexec/crash support.
    pub kexec_supported: bool,
    /// A crash kernel is loaded (`kexec_crash_loaded` reads 1).
    pub loaded: bool,
    /// Bytes reserved by `crashkernel=` (`kexec_crash_size`); `None` when unreadable (EBUSY) or absent.
    pub reserved_bytes: Option<u64>,
    /// Crash CMA reservations (`crashkernel=size,cma`, 6.17+): `crash_cma_ranges` in sysfs. Not in
    /// `kexec_crash_size`, not in `/proc/iomem`; excluded from the header like the reservation.
    pub cma_ranges: Vec<MemRange>,
    /// `crash_elfcorehdr_size`, present only with `CONFIG_CRASH_HOTPLUG`.
    pub elfcorehdr_size: Option<u64>,
    /// The kernel has `CONFIG_CRASH_HOTPLUG`: `/sys/devices/system/{memory,cpu}/crash_hotplug` exist (whatever
    /// they read).
    pub crash_hotplug_support: bool,
    /// `/sys/devices/system/memory/crash_hotplug` reads 1.
    pub kernel_updates_memory: bool,
    /// `/sys/devices/system/cpu/crash_hotplug` reads 1.
    pub kernel_updates_cpu: bool,
}

/// Memory the host has that no loader on its architecture puts in the crash header, so no reload can bring it
/// into the dump (arm64's driver-managed memory: [`crate::core::arm64_ranges`]).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct OutsideHeader {
    pub range: MemRange,
    /// The driver that added it: the `<driver>` of a `System RAM (<driver>)` resource (`virtio_mem`, `kmem`).
    pub driver: String,
}

/// Everything the daemon needs to know about the host at one instant.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct HostSnapshot {
    /// Whose header rules computed `ranges` (left out of the JSON on x86_64, as before it was a parameter).
    #[serde(skip_serializing_if = "Arch::is_x86_64")]
    pub arch: Arch,
    /// The ranges the crash ELF header must hold, one per program header the kernel would emit.
    pub ranges: Vec<MemRange>,
    /// System RAM no loader on this architecture puts in the header (empty on x86_64, whose header holds all of
    /// it); `ranges` leaves it out, so a change in it alone asks for no reload.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub outside_header: Vec<OutsideHeader>,
    /// `/proc/iomem` showed every address as 0 (opened without CAP_SYS_ADMIN): `ranges` is meaningless.
    pub addresses_hidden: bool,
    pub present_cpus: CpuSet,
    pub online_cpus: CpuSet,
    pub possible_cpus: CpuSet,
    pub crash: CrashState,
    /// `block_size_bytes`, when the kernel has memory hotplug.
    pub memory_block_size: Option<u64>,
    /// Number of `memoryN` blocks in sysfs.
    pub memory_blocks: usize,
    /// Bytes of System RAM present now, before any exclusion ([`crate::core::ranges::system_ram_bytes`]).
    pub system_ram_bytes: u64,
    /// The running kernel's command line (`/proc/cmdline`), without the final newline; `None` when absent.
    pub kernel_cmdline: Option<String>,
    /// `/etc/os-release` `ID` and `ID_LIKE` words (for the distribution's recommended reservation); empty when
    /// absent.
    pub distro_ids: Vec<String>,
}

impl HostSnapshot {
    pub fn total_bytes(&self) -> u64 {
        self.ranges.iter().map(MemRange::size).sum()
    }

    /// Bytes of [`HostSnapshot::outside_header`].
    pub fn outside_header_bytes(&self) -> u64 {
        self.outside_header.iter().map(|o| o.range.size()).sum()
    }
}

/// What a uevent says happened to a device.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum HotplugAction {
    Add,
    Remove,
    Online,
    Offline,
    Change,
}

/// A uevent turned into the daemon's terms at the edge. Owned and `Send`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
pub enum DomainEvent {
    MemoryBlock { index: u64, action: HotplugAction },
    Cpu { id: u32, action: HotplugAction },
}

impl DomainEvent {
    pub fn is_memory(&self) -> bool {
        matches!(self, DomainEvent::MemoryBlock { .. })
    }
}

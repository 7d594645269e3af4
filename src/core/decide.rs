//! The decision: given what the crash kernel's header holds and what the host looks like now, skip, reload
//! (and with which loader), or say why a reload cannot help. A pure function of its inputs.

use std::fmt;

use serde::Serialize;

use crate::core::arch::Arch;
use crate::core::arm64_ranges;
use crate::core::model::{CpuSet, HostSnapshot, MemRange};

/// `sizeof(Elf64_Phdr)`: the header holds one per memory range, CPU note, vmcoreinfo and kernel text.
pub const ELF64_PHDR_SIZE: u64 = 56;

/// `sizeof(Elf64_Ehdr)`: the header starts with one.
pub const ELF64_EHDR_SIZE: u64 = 64;

/// The kernel places every kexec segment in whole pages (`kexec_add_buffer` aligns `memsz` to `PAGE_SIZE`,
/// kernel/kexec_file.c) and rounds the header it builds the same way (`ELF_CORE_HEADER_ALIGN`,
/// `crash_prepare_elf64_headers` in kernel/crash_core.c). x86 pages are 4 KiB.
pub const ELFCOREHDR_ALIGN: u64 = 4096;

/// Bytes the kernel's elfcorehdr takes with `phdrs` program headers, as both the load and the in-place update
/// size it: the ELF header, the program headers, rounded up to a page.
pub fn elfcorehdr_bytes(phdrs: u64) -> u64 {
    (ELF64_EHDR_SIZE + phdrs * ELF64_PHDR_SIZE).next_multiple_of(ELFCOREHDR_ALIGN)
}

/// Program headers in the kernel's x86 elfcorehdr that are not memory ranges or CPU notes: vmcoreinfo and the
/// kernel text mapping (`arch_crash_get_elfcorehdr_size()` in arch/x86/kernel/crash.c counts `2 +
/// CONFIG_NR_CPUS_DEFAULT + CONFIG_CRASH_MAX_MEMORY_RANGES`).
pub const NON_MEMORY_PHDRS: u64 = 2;

/// kexec-tools' x86 `kexec_load` path reads at most this many ranges from `/proc/iomem` and silently drops the
/// rest (`CRASH_MAX_MEMORY_RANGES` in kexec/arch/i386/crashdump-x86.h, 32k since kexec-tools 2.0.22; the loop in
/// `get_crash_memory_ranges` stops there). Its count includes the ACPI and reserved lines it also records, so
/// the real margin for RAM is a little smaller; it does not cut crash CMA ranges, so its RAM count is at most
/// ours. With `-s` (`kexec_file_load`) the kernel builds the header and this limit does not apply.
pub const KEXEC_TOOLS_MAX_RANGES: usize = 32768;

/// What the daemon knows the crash kernel's header holds.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct LoadedHeader {
    pub ranges: Vec<MemRange>,
    pub cpus: CpuSet,
}

impl LoadedHeader {
    /// The header the kernel would build for this snapshot.
    pub fn of(snapshot: &HostSnapshot) -> Self {
        Self {
            ranges: snapshot.ranges.clone(),
            cpus: snapshot.present_cpus.clone(),
        }
    }
}

/// Why the decision is being asked for, beyond "the debouncer fired".
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Triggers {
    /// An administrator asked for a reload (D-Bus `Reload()`).
    pub forced: bool,
    /// The kernel logged that its in-place header update failed (the kmsg line).
    pub kernel_update_failed: Option<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum CapacitySource {
    /// Derived from `/sys/kernel/crash_elfcorehdr_size`.
    ElfcorehdrSize,
    /// The config's `kernel.max_memory_ranges` override (the kernel updates the header but hides its size).
    Config,
}

/// How many memory ranges a crash kernel loaded now can hold: a property of the running kernel.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case", tag = "kind")]
pub enum Capacity {
    /// The kernel sizes the header buffer once, at load time, for later in-place updates
    /// (`CONFIG_CRASH_HOTPLUG`); this many memory ranges fit in it.
    Known { ranges: u64, source: CapacitySource },
    /// No fixed buffer: the kernel has no `CONFIG_CRASH_HOTPLUG` (or no memory hotplug), and
    /// `kexec_file_load` sizes the header to the ranges it counts, so a fresh load always fits.
    Unbounded,
    /// The kernel updates the header in place but does not say how large its buffer is, and the config
    /// sets no `kernel.max_memory_ranges`. Nothing proves an overflow; the kernel log still tells.
    Unknown,
    /// arm64: nothing updates the header after a load (no `CONFIG_CRASH_HOTPLUG` on arm64), and each load
    /// builds it to the ranges it counts, `kexec_file_load` (`prepare_elf_headers()` allocates for the
    /// memblock regions it counted) and kexec-tools alike: every change needs a reload, and any count fits.
    RebuiltOnEveryLoad,
}

impl Capacity {
    /// `known`, `unbounded` or `unknown`: the D-Bus `CapacityKind` and the JSON `kind`.
    pub fn kind(&self) -> &'static str {
        match self {
            Capacity::Known { .. } => "known",
            // The D-Bus `CapacityKind` vocabulary: no buffer to outgrow, as on x86 without crash hotplug.
            Capacity::Unbounded | Capacity::RebuiltOnEveryLoad => "unbounded",
            Capacity::Unknown => "unknown",
        }
    }

    /// The ranges that fit, when known.
    pub fn ranges(&self) -> Option<u64> {
        match self {
            Capacity::Known { ranges, .. } => Some(*ranges),
            Capacity::Unbounded | Capacity::Unknown | Capacity::RebuiltOnEveryLoad => None,
        }
    }

    /// Whether `needed` ranges are known not to fit. Unbounded never overflows; an unknown size proves
    /// nothing, so it is not treated as an overflow (the kmsg watch reports a real one).
    pub fn overflows(&self, needed: u64) -> bool {
        self.ranges().is_some_and(|ranges| needed > ranges)
    }
}

impl fmt::Display for Capacity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Capacity::Known { ranges, source } => write!(
                f,
                "{ranges} ranges (from {})",
                match source {
                    CapacitySource::ElfcorehdrSize => "crash_elfcorehdr_size",
                    CapacitySource::Config => "config kernel.max_memory_ranges",
                }
            ),
            Capacity::Unbounded => f.write_str(
                "unbounded (no crash hotplug buffer: kexec_file_load sizes the header to the ranges)",
            ),
            Capacity::Unknown => f.write_str(
                "unknown (the kernel updates the header but hides its buffer size; kernel.max_memory_ranges can \
                 say)",
            ),
            Capacity::RebuiltOnEveryLoad => f.write_str(
                "the header is rebuilt on every load (arm64: no crash hotplug, nothing updates it in place; each \
                 load sizes it to the ranges)",
            ),
        }
    }
}

/// The memory ranges a crash kernel loaded now can hold, from what the running kernel exposes.
///
/// - `crash_elfcorehdr_size` exists only with `CONFIG_CRASH_HOTPLUG` (kernel/ksysfs.c). It is
///   `arch_crash_get_elfcorehdr_size()`: the program headers only, `(2 + NR_CPUS_DEFAULT +
///   CRASH_MAX_MEMORY_RANGES) × sizeof(Elf64_Phdr)`. The segment the kernel loads is the ELF header plus that,
///   rounded up to a page ([`elfcorehdr_bytes`]; `crash_load_segments` in arch/x86/kernel/crash.c,
///   `kexec_add_buffer`). When the kernel rebuilds the header (`crash_prepare_elf64_headers` in
///   kernel/crash_core.c) it writes one PT_NOTE per possible CPU, one for vmcoreinfo, one PT_LOAD for the kernel
///   text, then one per memory range, also page-rounded; the update is refused when that exceeds the segment
///   (`arch_crash_handle_hotplug_event`: "elfsz > memsz"). So the ranges that fit are the program headers the
///   whole segment holds, minus the CPU notes and the two others: the page rounding gives up to 73 more than
///   the configured maximum, and possible CPUs below NR_CPUS_DEFAULT give theirs to memory.
/// - Without `CONFIG_MEMORY_HOTPLUG` (no `/sys/devices/system/memory`), `crash_load_segments` sizes the segment
///   to the ranges it counted plus the CPUs: memory cannot change, so nothing can outgrow it.
/// - Without `CONFIG_CRASH_HOTPLUG` (no `crash_elfcorehdr_size`, no `crash_hotplug` files: Debian's 6.1,
///   RHEL 9's 5.14), `prepare_elf_headers` counts the System RAM ranges (`fill_up_crash_elf_data`) and
///   `crash_prepare_elf64_headers` allocates the header for exactly those: there is no cap to run into.
/// - A kernel with `crash_hotplug` but no size file hides its buffer: the config's override, else unknown.
///
/// On arm64 none of that arithmetic applies: there is no `CONFIG_CRASH_HOTPLUG` (so no `crash_hotplug` and no
/// `crash_elfcorehdr_size`), and both loaders size the header to the ranges they count at each load
/// ([`Capacity::RebuiltOnEveryLoad`]). An arm64 kernel that does show `crash_hotplug` is newer than these rules
/// (the in-kernel update was posted, not merged): its buffer's layout is not known here, so it is the config's
/// override or unknown, never x86's figure.
pub fn capacity(snapshot: &HostSnapshot, policy: &Policy) -> Capacity {
    let crash = &snapshot.crash;
    if snapshot.arch == Arch::Arm64 {
        return if !crash.crash_hotplug_support {
            Capacity::RebuiltOnEveryLoad
        } else {
            match policy.max_memory_ranges_override {
                Some(ranges) => Capacity::Known {
                    ranges: u64::from(ranges),
                    source: CapacitySource::Config,
                },
                None => Capacity::Unknown,
            }
        };
    }
    match crash.elfcorehdr_size {
        Some(size) if snapshot.memory_block_size.is_some() => {
            let segment = (ELF64_EHDR_SIZE + size).next_multiple_of(ELFCOREHDR_ALIGN);
            let slots = (segment - ELF64_EHDR_SIZE) / ELF64_PHDR_SIZE;
            let cpu_notes = snapshot.possible_cpus.len() as u64;
            Capacity::Known {
                ranges: slots.saturating_sub(NON_MEMORY_PHDRS + cpu_notes),
                source: CapacitySource::ElfcorehdrSize,
            }
        }
        Some(_) => Capacity::Unbounded,
        None if !crash.crash_hotplug_support => Capacity::Unbounded,
        None => match policy.max_memory_ranges_override {
            Some(ranges) => Capacity::Known {
                ranges: u64::from(ranges),
                source: CapacitySource::Config,
            },
            None => Capacity::Unknown,
        },
    }
}

/// What the configuration contributes to the decision, as plain values.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Policy {
    /// `kernel.max_memory_ranges`: the header capacity of a kernel that updates the header in place but hides
    /// its buffer size (`crash_hotplug` present, `crash_elfcorehdr_size` absent). `None`: no override.
    pub max_memory_ranges_override: Option<u32>,
}

/// The loader a reload must use.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum LoaderChoice {
    /// The configured loader (native `kexec_file_load`, or the distro command).
    Configured,
    /// kexec-tools' `kexec_load` path (`kexec -c -p`), which builds the header in userspace at its real size:
    /// the kernel's `kexec_file_load` buffer cannot hold the ranges.
    KexecLoad,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case", tag = "kind")]
pub enum ReloadReason {
    NotLoaded,
    /// The daemon does not know what the loaded header holds (loaded by someone else, or not yet by it).
    HeaderUnknown,
    RangesChanged {
        added: usize,
        removed: usize,
    },
    CpusChanged {
        added: usize,
        removed: usize,
    },
    /// The kernel logged that its in-place update failed; its header is stale.
    KernelUpdateFailed {
        line: String,
    },
    /// The ranges exceed the kernel's header buffer: its in-place updates cannot keep the header current.
    BufferTooSmall {
        needed: u64,
        capacity: u64,
    },
    Forced,
}

impl fmt::Display for ReloadReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReloadReason::NotLoaded => f.write_str("no crash kernel loaded"),
            ReloadReason::HeaderUnknown => f.write_str("loaded header unknown"),
            ReloadReason::RangesChanged { added, removed } => {
                write!(f, "memory ranges changed (+{added} -{removed})")
            }
            ReloadReason::CpusChanged { added, removed } => write!(f, "CPUs changed (+{added} -{removed})"),
            ReloadReason::KernelUpdateFailed { line } => {
                write!(f, "kernel reported a failed in-place update: {line}")
            }
            ReloadReason::BufferTooSmall { needed, capacity } => write!(
                f,
                "kernel buffer too small: {needed} ranges needed, {capacity} fit; its in-place update left a \
                 stale header"
            ),
            ReloadReason::Forced => f.write_str("forced"),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case", tag = "kind")]
pub enum SkipReason {
    /// The header already holds what the host has.
    NothingChanged,
    /// The only changes are ones the kernel writes into the header itself (`crash_hotplug` reads 1).
    KernelUpdatesHeader { memory: bool, cpu: bool },
}

impl fmt::Display for SkipReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SkipReason::NothingChanged => f.write_str("nothing the header holds changed"),
            SkipReason::KernelUpdatesHeader { memory, cpu } => {
                let what = match (memory, cpu) {
                    (true, true) => "memory and CPU",
                    (true, false) => "memory",
                    (false, true) => "CPU",
                    (false, false) => "no",
                };
                write!(f, "the kernel updates the header itself for {what} changes")
            }
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case", tag = "kind")]
pub enum CannotReload {
    NoKexecSupport,
    /// `/proc/iomem` was opened without CAP_SYS_ADMIN: every address reads 0.
    AddressesHidden,
    NoMemoryRanges,
    /// The kernel's buffer is too small and the ranges are too many for kexec-tools too, which would
    /// silently drop the rest.
    TooManyRanges {
        needed: u64,
        limit: u64,
    },
}

impl fmt::Display for CannotReload {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CannotReload::NoKexecSupport => f.write_str("this kernel has no kexec crash support"),
            CannotReload::AddressesHidden => f.write_str(
                "/proc/iomem shows every address as 0: it was opened without CAP_SYS_ADMIN",
            ),
            CannotReload::NoMemoryRanges => f.write_str("no System RAM ranges found in /proc/iomem"),
            CannotReload::TooManyRanges { needed, limit } => write!(
                f,
                "{needed} memory ranges exceed the kernel's header buffer and kexec-tools' limit ({limit}): a \
                 reload would silently drop memory from the dump"
            ),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case", tag = "action")]
pub enum Decision {
    Skip {
        reason: SkipReason,
    },
    Reload {
        reasons: Vec<ReloadReason>,
        loader: LoaderChoice,
    },
    CannotReload {
        reason: CannotReload,
    },
}

impl Decision {
    pub fn is_reload(&self) -> bool {
        matches!(self, Decision::Reload { .. })
    }

    /// The kernel's buffer cannot hold the ranges (for the `KernelBufferTooSmall` signal).
    pub fn buffer_too_small(&self) -> Option<(u64, u64)> {
        let Decision::Reload { reasons, .. } = self else {
            return None;
        };
        reasons.iter().find_map(|r| match r {
            ReloadReason::BufferTooSmall { needed, capacity } => Some((*needed, *capacity)),
            _ => None,
        })
    }
}

impl Decision {
    /// Why: the reasons of a reload (with the loader when it is not the configured one), without the verdict.
    pub fn why(&self) -> String {
        match self {
            Decision::Skip { reason } => reason.to_string(),
            Decision::Reload { reasons, loader } => {
                let mut text = reasons
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join("; ");
                if *loader == LoaderChoice::KexecLoad {
                    text.push_str(" (via kexec_load: the header is built in userspace)");
                }
                text
            }
            Decision::CannotReload { reason } => reason.to_string(),
        }
    }
}

impl fmt::Display for Decision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Decision::Skip { reason } => write!(f, "skip: {reason}"),
            Decision::Reload { .. } => write!(f, "reload: {}", self.why()),
            Decision::CannotReload { reason } => write!(f, "cannot reload: {reason}"),
        }
    }
}

/// The decision with the figures it was made from.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Assessment {
    pub decision: Decision,
    pub needed: u64,
    pub capacity: Capacity,
    /// Memory that whatever is decided stays out of the dump (absent when there is none, always on x86_64).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub outside_header: Option<OutsideHeaderWarning>,
}

/// The host has System RAM that no loader on its architecture puts in the header: no reload can help, and the
/// daemon says so instead of reloading for it ([`HostSnapshot::outside_header`]).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct OutsideHeaderWarning {
    pub arch: Arch,
    pub bytes: u64,
    pub ranges: usize,
    /// The drivers that added it (`virtio_mem`, `kmem`), sorted, each once.
    pub drivers: Vec<String>,
}

impl OutsideHeaderWarning {
    pub fn of(snapshot: &HostSnapshot) -> Option<Self> {
        if snapshot.outside_header.is_empty() {
            return None;
        }
        let mut drivers: Vec<String> = snapshot
            .outside_header
            .iter()
            .map(|o| o.driver.clone())
            .collect();
        drivers.sort_unstable();
        drivers.dedup();
        Some(Self {
            arch: snapshot.arch,
            bytes: snapshot.outside_header_bytes(),
            ranges: snapshot.outside_header.len(),
            drivers,
        })
    }
}

impl fmt::Display for OutsideHeaderWarning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} bytes ({} MiB) of driver-managed memory ({}) in {} range{} that no {} loader puts in the header: \
             the dump will miss it, and no reload can change that (kexec_file_load skips MEMBLOCK_DRIVER_MANAGED \
             memory, kexec-tools takes only \"System RAM\")",
            self.bytes,
            self.bytes >> 20,
            self.drivers.join(", "),
            self.ranges,
            if self.ranges == 1 { "" } else { "s" },
            self.arch,
        )
    }
}

impl Assessment {
    /// The decision as text, with the warning about memory no reload can cover when there is some.
    pub fn describe(&self) -> String {
        self.with_warning(self.decision.to_string())
    }

    /// [`Decision::why`], with the same warning.
    pub fn why(&self) -> String {
        self.with_warning(self.decision.why())
    }

    /// `text` with the warning appended, when there is one.
    pub fn with_warning(&self, text: String) -> String {
        match &self.outside_header {
            Some(warning) => format!("{text}; WARNING: {warning}"),
            None => text,
        }
    }
}

/// Counts of sorted-set differences: (in `now` only, in `before` only).
fn difference<T: Ord>(before: &[T], now: &[T]) -> (usize, usize) {
    let (mut i, mut j, mut added, mut removed) = (0, 0, 0, 0);
    while i < before.len() && j < now.len() {
        match before[i].cmp(&now[j]) {
            std::cmp::Ordering::Less => {
                removed += 1;
                i += 1;
            }
            std::cmp::Ordering::Greater => {
                added += 1;
                j += 1;
            }
            std::cmp::Ordering::Equal => {
                i += 1;
                j += 1;
            }
        }
    }
    (added + now.len() - j, removed + before.len() - i)
}

/// Decides what to do. `loaded` is what the daemon knows the crash kernel's header holds (`None`: unknown).
pub fn decide(
    loaded: Option<&LoadedHeader>,
    now: &HostSnapshot,
    triggers: &Triggers,
    policy: &Policy,
) -> Assessment {
    let capacity = capacity(now, policy);
    let needed = now.ranges.len() as u64;
    let decision = decide_inner(loaded, now, triggers, capacity, needed);
    Assessment {
        decision,
        needed,
        capacity,
        outside_header: OutsideHeaderWarning::of(now),
    }
}

fn decide_inner(
    loaded: Option<&LoadedHeader>,
    now: &HostSnapshot,
    triggers: &Triggers,
    capacity: Capacity,
    needed: u64,
) -> Decision {
    let cannot = |reason| Decision::CannotReload { reason };
    if !now.crash.kexec_supported {
        return cannot(CannotReload::NoKexecSupport);
    }
    if now.addresses_hidden {
        return cannot(CannotReload::AddressesHidden);
    }
    if now.ranges.is_empty() {
        return cannot(CannotReload::NoMemoryRanges);
    }

    // The kernel's own fit first: only a header that overflows the kernel's buffer takes the kexec-tools path,
    // and only then does kexec-tools' own limit matter.
    let too_small = capacity.overflows(needed);
    if too_small && needed > KEXEC_TOOLS_MAX_RANGES as u64 {
        return cannot(CannotReload::TooManyRanges {
            needed,
            limit: KEXEC_TOOLS_MAX_RANGES as u64,
        });
    }
    // A fresh kexec_file_load with more ranges than its buffer holds fails with EINVAL after the kernel has
    // already freed the old crash image (kernel/kexec_file.c), so such a load must never be tried: the
    // kexec_load path sizes the header in userspace instead. The distro's command may well use
    // kexec_file_load too (kdumpctl defaults to `kexec -s`), so the same holds for it.
    let loader = if too_small {
        LoaderChoice::KexecLoad
    } else {
        LoaderChoice::Configured
    };
    let reload = |reasons: Vec<ReloadReason>| Decision::Reload { reasons, loader };

    let mut reasons = Vec::new();
    if triggers.forced {
        reasons.push(ReloadReason::Forced);
    }
    if !now.crash.loaded {
        reasons.push(ReloadReason::NotLoaded);
        return reload(reasons);
    }
    if let Some(line) = &triggers.kernel_update_failed {
        reasons.push(ReloadReason::KernelUpdateFailed { line: line.clone() });
    }
    // The kernel reads 1 in crash_hotplug while its in-place update is refused for lack of room
    // (arch_crash_handle_hotplug_event logs and keeps the old header): a header it "keeps current" is stale.
    if now.crash.kernel_updates_memory && too_small {
        reasons.push(ReloadReason::BufferTooSmall {
            needed,
            capacity: capacity.ranges().unwrap_or_default(),
        });
    }

    let Some(loaded) = loaded else {
        if now.crash.kernel_updates_memory && now.crash.kernel_updates_cpu && reasons.is_empty() {
            return Decision::Skip {
                reason: SkipReason::KernelUpdatesHeader {
                    memory: true,
                    cpu: true,
                },
            };
        }
        reasons.push(ReloadReason::HeaderUnknown);
        return reload(reasons);
    };

    let (ranges_added, ranges_removed) = difference(&loaded.ranges, &now.ranges);
    let before_cpus: Vec<u32> = loaded.cpus.0.iter().copied().collect();
    let now_cpus: Vec<u32> = now.present_cpus.0.iter().copied().collect();
    let (cpus_added, cpus_removed) = difference(&before_cpus, &now_cpus);
    let memory_changed = match now.arch {
        Arch::X86_64 => ranges_added + ranges_removed > 0,
        // The arm64 ranges are one per resource, the kernel's header one per memblock region: only the bytes
        // covered say whether the header is stale (arm64_ranges, "compared by union").
        Arch::Arm64 => !arm64_ranges::same_coverage(&loaded.ranges, &now.ranges),
    };
    let cpus_changed = cpus_added + cpus_removed > 0;

    let kernel_handles_memory = now.crash.kernel_updates_memory && !too_small;
    if memory_changed && !kernel_handles_memory {
        reasons.push(ReloadReason::RangesChanged {
            added: ranges_added,
            removed: ranges_removed,
        });
    }
    if cpus_changed && !now.crash.kernel_updates_cpu {
        reasons.push(ReloadReason::CpusChanged {
            added: cpus_added,
            removed: cpus_removed,
        });
    }
    if !reasons.is_empty() {
        return reload(reasons);
    }
    if memory_changed || cpus_changed {
        return Decision::Skip {
            reason: SkipReason::KernelUpdatesHeader {
                memory: memory_changed && kernel_handles_memory,
                cpu: cpus_changed && now.crash.kernel_updates_cpu,
            },
        };
    }
    Decision::Skip {
        reason: SkipReason::NothingChanged,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::model::CrashState;

    const MIB: u64 = 1 << 20;
    const GIB: u64 = 1 << 30;

    fn cpus(ids: &[u32]) -> CpuSet {
        ids.iter().copied().collect()
    }

    fn host(ranges: Vec<MemRange>, crash: CrashState) -> HostSnapshot {
        HostSnapshot {
            ranges,
            present_cpus: cpus(&[0, 1]),
            online_cpus: cpus(&[0, 1]),
            possible_cpus: cpus(&[0, 1, 2, 3]),
            crash,
            memory_block_size: Some(128 * MIB),
            ..HostSnapshot::default()
        }
    }

    fn loaded_crash() -> CrashState {
        CrashState {
            kexec_supported: true,
            loaded: true,
            ..CrashState::default()
        }
    }

    fn self_updating() -> CrashState {
        CrashState {
            kexec_supported: true,
            loaded: true,
            crash_hotplug_support: true,
            kernel_updates_memory: true,
            kernel_updates_cpu: true,
            // A kernel with NR_CPUS_DEFAULT=4 and 8 ranges says (2 + 4 + 8) × 56 = 784 bytes; loaded, that is one
            // page: (4096 - 64) / 56 = 72 program headers, 66 of them for memory with 4 possible CPUs.
            elfcorehdr_size: Some((2 + 4 + 8) * ELF64_PHDR_SIZE),
            ..CrashState::default()
        }
    }

    fn boot_ranges() -> Vec<MemRange> {
        vec![
            MemRange::new(MIB, 0x7fff_ffff),
            MemRange::new(0x1_0000_0000, 0x1_7fff_ffff),
        ]
    }

    fn sparse(n: u64) -> Vec<MemRange> {
        (0..n)
            .map(|i| {
                MemRange::new(
                    4 * GIB + i * 256 * MIB,
                    4 * GIB + i * 256 * MIB + 128 * MIB - 1,
                )
            })
            .collect()
    }

    fn settings() -> Policy {
        Policy::default()
    }

    fn decision(
        loaded: Option<&LoadedHeader>,
        now: &HostSnapshot,
        triggers: &Triggers,
    ) -> Decision {
        decide(loaded, now, triggers, &settings()).decision
    }

    #[test]
    fn unchanged_host_is_skipped() {
        let now = host(boot_ranges(), loaded_crash());
        let loaded = LoadedHeader::of(&now);
        assert_eq!(
            decision(Some(&loaded), &now, &Triggers::default()),
            Decision::Skip {
                reason: SkipReason::NothingChanged
            }
        );
    }

    #[test]
    fn added_memory_on_a_stale_header_kernel_reloads() {
        let before = host(boot_ranges(), loaded_crash());
        let mut ranges = boot_ranges();
        ranges.push(MemRange::new(0x2_0000_0000, 0x2_ffff_ffff));
        let now = host(ranges, loaded_crash());
        assert_eq!(
            decision(Some(&LoadedHeader::of(&before)), &now, &Triggers::default()),
            Decision::Reload {
                reasons: vec![ReloadReason::RangesChanged {
                    added: 1,
                    removed: 0
                }],
                loader: LoaderChoice::Configured
            }
        );
    }

    #[test]
    fn a_resized_range_counts_as_one_added_and_one_removed() {
        let before = host(boot_ranges(), loaded_crash());
        let mut ranges = boot_ranges();
        ranges[1].end += GIB;
        let now = host(ranges, loaded_crash());
        let d = decision(Some(&LoadedHeader::of(&before)), &now, &Triggers::default());
        assert_eq!(
            d,
            Decision::Reload {
                reasons: vec![ReloadReason::RangesChanged {
                    added: 1,
                    removed: 1
                }],
                loader: LoaderChoice::Configured
            }
        );
    }

    #[test]
    fn cpu_changes_reload_unless_the_kernel_updates_cpus() {
        let before = host(boot_ranges(), loaded_crash());
        let mut now = before.clone();
        now.present_cpus = cpus(&[0, 1, 2]);
        assert_eq!(
            decision(Some(&LoadedHeader::of(&before)), &now, &Triggers::default()),
            Decision::Reload {
                reasons: vec![ReloadReason::CpusChanged {
                    added: 1,
                    removed: 0
                }],
                loader: LoaderChoice::Configured
            }
        );
        now.crash.kernel_updates_cpu = true;
        assert_eq!(
            decision(Some(&LoadedHeader::of(&before)), &now, &Triggers::default()),
            Decision::Skip {
                reason: SkipReason::KernelUpdatesHeader {
                    memory: false,
                    cpu: true
                }
            }
        );
    }

    #[test]
    fn memory_and_cpu_flags_are_separate() {
        let before = host(boot_ranges(), loaded_crash());
        let mut now = host(
            sparse(2),
            CrashState {
                kernel_updates_memory: true,
                ..loaded_crash()
            },
        );
        now.present_cpus = cpus(&[0]);
        assert_eq!(
            decision(Some(&LoadedHeader::of(&before)), &now, &Triggers::default()),
            Decision::Reload {
                reasons: vec![ReloadReason::CpusChanged {
                    added: 0,
                    removed: 1
                }],
                loader: LoaderChoice::Configured
            }
        );
    }

    #[test]
    fn capacity_counts_the_whole_page_rounded_segment_and_only_possible_cpus() {
        let with = |size: u64, possible: &[u32]| {
            let mut snapshot = host(boot_ranges(), self_updating());
            snapshot.crash.elfcorehdr_size = Some(size);
            snapshot.possible_cpus = cpus(possible);
            capacity(&snapshot, &settings()).ranges().expect("known")
        };
        // Debian's 6.12: NR_CPUS_DEFAULT 8192 and 8192 ranges, 917,616 bytes; with the ELF header, 225 pages hold
        // 16,456 program headers, and a 4-CPU guest leaves 16,450 of them to memory.
        assert_eq!(
            with((2 + 8192 + 8192) * ELF64_PHDR_SIZE, &[0, 1, 2, 3]),
            16_450
        );
        // The sparse-host fixture: NR_CPUS_DEFAULT 64, 8 possible CPUs: 113 pages, 8,264 headers.
        assert_eq!(
            with((2 + 64 + 8192) * ELF64_PHDR_SIZE, &[0, 1, 2, 3, 4, 5, 6, 7]),
            8_254
        );
        // The guest tier's small kernel (NR_CPUS_DEFAULT 8, 4 ranges) fits in one page: 72 headers.
        assert_eq!(with((2 + 8 + 4) * ELF64_PHDR_SIZE, &[0]), 69);
        // The boundary: a header that exactly fills a page, and one more program header needing a second page.
        assert_eq!(elfcorehdr_bytes(72), 4096);
        assert_eq!(elfcorehdr_bytes(73), 8192);
    }

    #[test]
    fn self_updating_kernel_within_capacity_is_skipped() {
        let before = host(boot_ranges(), self_updating());
        let mut ranges = boot_ranges();
        ranges.extend(sparse(4));
        let now = host(ranges, self_updating());
        let a = decide(
            Some(&LoadedHeader::of(&before)),
            &now,
            &Triggers::default(),
            &settings(),
        );
        // One page of 72 program headers - 2 - 4 possible CPUs = 66 ranges.
        assert_eq!(
            a.capacity,
            Capacity::Known {
                ranges: 66,
                source: CapacitySource::ElfcorehdrSize
            }
        );
        assert_eq!(a.needed, 6);
        assert_eq!(
            a.decision,
            Decision::Skip {
                reason: SkipReason::KernelUpdatesHeader {
                    memory: true,
                    cpu: false
                }
            }
        );
    }

    #[test]
    fn overflowing_the_kernel_buffer_reloads_through_kexec_load_even_when_crash_hotplug_reads_1() {
        let before = host(boot_ranges(), self_updating());
        let mut ranges = boot_ranges();
        ranges.extend(sparse(65));
        let now = host(ranges, self_updating());
        let a = decide(
            Some(&LoadedHeader::of(&before)),
            &now,
            &Triggers::default(),
            &settings(),
        );
        assert_eq!(a.needed, 67);
        assert_eq!(
            a.decision,
            Decision::Reload {
                reasons: vec![
                    ReloadReason::BufferTooSmall {
                        needed: 67,
                        capacity: 66
                    },
                    ReloadReason::RangesChanged {
                        added: 65,
                        removed: 0
                    },
                ],
                loader: LoaderChoice::KexecLoad
            }
        );
        assert_eq!(a.decision.buffer_too_small(), Some((67, 66)));
    }

    #[test]
    fn a_kernel_without_crash_hotplug_is_unbounded_and_sparse_ranges_load_with_kexec_file_load() {
        // A 6.1-like host: no crash_hotplug, no crash_elfcorehdr_size, 9,003 sparse virtio-mem ranges, no crash
        // kernel loaded. kexec_file_load sizes its header to the ranges: no "buffer too small", no kexec_load.
        let crash = CrashState {
            kexec_supported: true,
            ..CrashState::default()
        };
        let mut ranges = boot_ranges();
        ranges.extend(sparse(9_001));
        let now = host(ranges, crash);
        let a = decide(None, &now, &Triggers::default(), &settings());
        assert_eq!(a.capacity, Capacity::Unbounded);
        assert_eq!(a.needed, 9_003);
        assert_eq!(
            a.decision,
            Decision::Reload {
                reasons: vec![ReloadReason::NotLoaded],
                loader: LoaderChoice::Configured
            }
        );
        assert_eq!(a.decision.buffer_too_small(), None);
        // An override is for kernels that hide their size; this one has no buffer at all.
        let policy = Policy {
            max_memory_ranges_override: Some(8192),
        };
        assert_eq!(capacity(&now, &policy), Capacity::Unbounded);
        // Past kexec-tools' limit too: the kexec-tools path is never taken, so its limit does not apply.
        let now = host(sparse(KEXEC_TOOLS_MAX_RANGES as u64 + 1), now.crash.clone());
        assert!(decide(None, &now, &Triggers::default(), &settings())
            .decision
            .is_reload());
    }

    #[test]
    fn a_kernel_that_hides_its_buffer_size_is_unknown_unless_the_config_says() {
        let crash = CrashState {
            crash_hotplug_support: true,
            kernel_updates_memory: true,
            elfcorehdr_size: None,
            ..loaded_crash()
        };
        let before = host(boot_ranges(), crash.clone());
        let now = host(sparse(10_000), crash);
        let a = decide(
            Some(&LoadedHeader::of(&before)),
            &now,
            &Triggers::default(),
            &settings(),
        );
        assert_eq!(a.capacity, Capacity::Unknown);
        // Nothing proves an overflow: the kernel keeps it current (and its log would say otherwise).
        assert_eq!(
            a.decision,
            Decision::Skip {
                reason: SkipReason::KernelUpdatesHeader {
                    memory: true,
                    cpu: false
                }
            }
        );
        let policy = Policy {
            max_memory_ranges_override: Some(8192),
        };
        let a = decide(
            Some(&LoadedHeader::of(&before)),
            &now,
            &Triggers::default(),
            &policy,
        );
        assert_eq!(
            a.capacity,
            Capacity::Known {
                ranges: 8192,
                source: CapacitySource::Config
            }
        );
        assert_eq!(
            a.decision,
            Decision::Reload {
                reasons: vec![
                    ReloadReason::BufferTooSmall {
                        needed: 10_000,
                        capacity: 8192
                    },
                    ReloadReason::RangesChanged {
                        added: 10_000,
                        removed: 2
                    },
                ],
                loader: LoaderChoice::KexecLoad
            }
        );
    }

    #[test]
    fn the_kernels_own_size_wins_over_the_override_and_no_memory_hotplug_is_unbounded() {
        let mut now = host(boot_ranges(), self_updating());
        let policy = Policy {
            max_memory_ranges_override: Some(5),
        };
        assert_eq!(capacity(&now, &policy).ranges(), Some(66));
        // CONFIG_MEMORY_HOTPLUG=n: crash_load_segments sizes the segment to the ranges it counted.
        now.memory_block_size = None;
        assert_eq!(capacity(&now, &policy), Capacity::Unbounded);
    }

    #[test]
    fn a_needed_reload_never_uses_kexec_file_load_beyond_its_buffer() {
        // A crash-hotplug kernel whose crash kernel was loaded without the hotplug flag (crash_hotplug reads 0):
        // the header is stale, and a kexec_file_load would not fit its 66-range buffer.
        let crash = CrashState {
            kernel_updates_memory: false,
            kernel_updates_cpu: false,
            ..self_updating()
        };
        let before = host(boot_ranges(), crash.clone());
        let now = host(sparse(100), crash);
        let d = decision(Some(&LoadedHeader::of(&before)), &now, &Triggers::default());
        assert!(
            matches!(
                d,
                Decision::Reload {
                    loader: LoaderChoice::KexecLoad,
                    ..
                }
            ),
            "{d:?}"
        );
    }

    #[test]
    fn beyond_the_kernels_buffer_and_kexec_tools_limit_nothing_can_reload() {
        let now = host(sparse(KEXEC_TOOLS_MAX_RANGES as u64 + 1), self_updating());
        assert_eq!(
            decision(None, &now, &Triggers::default()),
            Decision::CannotReload {
                reason: CannotReload::TooManyRanges {
                    needed: 32769,
                    limit: 32768
                }
            }
        );
        // At the limit, kexec_load still holds them all.
        let now = host(sparse(KEXEC_TOOLS_MAX_RANGES as u64), self_updating());
        assert!(matches!(
            decision(None, &now, &Triggers::default()),
            Decision::Reload {
                loader: LoaderChoice::KexecLoad,
                ..
            }
        ));
    }

    #[test]
    fn not_loaded_reloads_and_a_kernel_log_finding_forces_a_reload() {
        let mut now = host(boot_ranges(), self_updating());
        let loaded = LoadedHeader::of(&now);
        let triggers = Triggers {
            kernel_update_failed: Some("crash hp: kexec_trylock() failed".into()),
            ..Triggers::default()
        };
        assert_eq!(
            decision(Some(&loaded), &now, &triggers),
            Decision::Reload {
                reasons: vec![ReloadReason::KernelUpdateFailed {
                    line: "crash hp: kexec_trylock() failed".into()
                }],
                loader: LoaderChoice::Configured
            }
        );
        now.crash.loaded = false;
        assert_eq!(
            decision(Some(&loaded), &now, &Triggers::default()),
            Decision::Reload {
                reasons: vec![ReloadReason::NotLoaded],
                loader: LoaderChoice::Configured
            }
        );
    }

    #[test]
    fn forced_reload_happens_even_when_nothing_changed() {
        let now = host(boot_ranges(), loaded_crash());
        let triggers = Triggers {
            forced: true,
            ..Triggers::default()
        };
        assert_eq!(
            decision(Some(&LoadedHeader::of(&now)), &now, &triggers),
            Decision::Reload {
                reasons: vec![ReloadReason::Forced],
                loader: LoaderChoice::Configured
            }
        );
    }

    #[test]
    fn unknown_header_reloads_unless_the_kernel_keeps_it_current() {
        let now = host(boot_ranges(), loaded_crash());
        assert_eq!(
            decision(None, &now, &Triggers::default()),
            Decision::Reload {
                reasons: vec![ReloadReason::HeaderUnknown],
                loader: LoaderChoice::Configured
            }
        );
        let now = host(boot_ranges(), self_updating());
        assert_eq!(
            decision(None, &now, &Triggers::default()),
            Decision::Skip {
                reason: SkipReason::KernelUpdatesHeader {
                    memory: true,
                    cpu: true
                }
            }
        );
    }

    #[test]
    fn hosts_where_no_reload_can_help() {
        let now = host(boot_ranges(), CrashState::default());
        assert_eq!(
            decision(None, &now, &Triggers::default()),
            Decision::CannotReload {
                reason: CannotReload::NoKexecSupport
            }
        );
        let mut now = host(vec![], loaded_crash());
        assert_eq!(
            decision(None, &now, &Triggers::default()),
            Decision::CannotReload {
                reason: CannotReload::NoMemoryRanges
            }
        );
        now.addresses_hidden = true;
        assert_eq!(
            decision(None, &now, &Triggers::default()),
            Decision::CannotReload {
                reason: CannotReload::AddressesHidden
            }
        );
    }

    fn arm64(ranges: Vec<MemRange>, crash: CrashState) -> HostSnapshot {
        HostSnapshot {
            arch: Arch::Arm64,
            ..host(ranges, crash)
        }
    }

    fn arm64_boot() -> Vec<MemRange> {
        vec![
            MemRange::new(0x4000_0000, 0xdbff_ffff),
            MemRange::new(0xfc00_0000, 0x1_3fff_ffff),
        ]
    }

    fn virtio_mem(start: u64, end: u64) -> crate::core::model::OutsideHeader {
        crate::core::model::OutsideHeader {
            range: MemRange::new(start, end),
            driver: "virtio_mem".into(),
        }
    }

    #[test]
    fn arm64_rebuilds_the_header_on_every_load_whatever_the_sysfs_files_say() {
        let mut crash = loaded_crash();
        assert_eq!(
            capacity(&arm64(arm64_boot(), crash.clone()), &settings()),
            Capacity::RebuiltOnEveryLoad
        );
        // x86's arithmetic is never applied to an arm64 header, even with a size file present.
        crash.elfcorehdr_size = Some(462_448);
        let now = arm64(sparse(20_000), crash.clone());
        assert_eq!(capacity(&now, &settings()), Capacity::RebuiltOnEveryLoad);
        assert_eq!(Capacity::RebuiltOnEveryLoad.kind(), "unbounded");
        assert!(!Capacity::RebuiltOnEveryLoad.overflows(u64::MAX));
        assert!(Capacity::RebuiltOnEveryLoad
            .to_string()
            .starts_with("the header is rebuilt on every load"));
        // Any count loads with the configured loader: there is no buffer to outgrow.
        crash.loaded = false;
        assert_eq!(
            decision(None, &arm64(sparse(40_000), crash), &Triggers::default()),
            Decision::Reload {
                reasons: vec![ReloadReason::NotLoaded],
                loader: LoaderChoice::Configured
            }
        );
        // A future arm64 kernel with crash hotplug: its buffer is not known here.
        let future = CrashState {
            crash_hotplug_support: true,
            ..loaded_crash()
        };
        assert_eq!(
            capacity(&arm64(arm64_boot(), future.clone()), &settings()),
            Capacity::Unknown
        );
        let policy = Policy {
            max_memory_ranges_override: Some(100),
        };
        assert_eq!(
            capacity(&arm64(arm64_boot(), future), &policy),
            Capacity::Known {
                ranges: 100,
                source: CapacitySource::Config
            }
        );
    }

    #[test]
    fn arm64_compares_the_header_by_union_so_a_split_alone_is_no_change() {
        let before = arm64(arm64_boot(), loaded_crash());
        let loaded = LoadedHeader::of(&before);
        // The same bytes in three resources instead of two.
        let split = vec![
            MemRange::new(0x4000_0000, 0x7fff_ffff),
            MemRange::new(0x8000_0000, 0xdbff_ffff),
            MemRange::new(0xfc00_0000, 0x1_3fff_ffff),
        ];
        assert_eq!(
            decision(
                Some(&loaded),
                &arm64(split.clone(), loaded_crash()),
                &Triggers::default()
            ),
            Decision::Skip {
                reason: SkipReason::NothingChanged
            }
        );
        // x86 keeps comparing one range per resource.
        assert!(decision(
            Some(&LoadedHeader::of(&host(arm64_boot(), loaded_crash()))),
            &host(split, loaded_crash()),
            &Triggers::default()
        )
        .is_reload());
        // A hot-added DIMM ("System RAM", MEMBLOCK_NONE) is new coverage: one reload puts it in the header.
        let mut grown = arm64_boot();
        grown.push(MemRange::new(0x1_4000_0000, 0x1_7fff_ffff));
        assert_eq!(
            decision(
                Some(&loaded),
                &arm64(grown, loaded_crash()),
                &Triggers::default()
            ),
            Decision::Reload {
                reasons: vec![ReloadReason::RangesChanged {
                    added: 1,
                    removed: 0
                }],
                loader: LoaderChoice::Configured
            }
        );
    }

    #[test]
    fn arm64_driver_managed_memory_alone_asks_for_no_reload_and_is_warned_about() {
        let before = arm64(arm64_boot(), loaded_crash());
        let loaded = LoadedHeader::of(&before);
        let mut now = arm64(arm64_boot(), loaded_crash());
        now.outside_header = vec![
            virtio_mem(0x1_8000_0000, 0x1_ffff_ffff),
            virtio_mem(0x2_1000_0000, 0x2_17ff_ffff),
        ];
        let assessment = decide(Some(&loaded), &now, &Triggers::default(), &settings());
        assert_eq!(
            assessment.decision,
            Decision::Skip {
                reason: SkipReason::NothingChanged
            }
        );
        let warning = assessment.outside_header.clone().expect("a warning");
        assert_eq!(
            warning,
            OutsideHeaderWarning {
                arch: Arch::Arm64,
                bytes: 2 * GIB + 128 * MIB,
                ranges: 2,
                drivers: vec!["virtio_mem".into()],
            }
        );
        let text = assessment.describe();
        assert!(
            text.starts_with("skip: nothing the header holds changed; WARNING: 2281701376 bytes (2176 MiB) \
                              of driver-managed memory (virtio_mem) in 2 ranges that no arm64 loader puts in \
                              the header"),
            "{text}"
        );
        // A reload for another reason carries the same warning in its reason.
        let mut unloaded = now.clone();
        unloaded.crash.loaded = false;
        let assessment = decide(Some(&loaded), &unloaded, &Triggers::default(), &settings());
        assert!(assessment.decision.is_reload());
        assert!(assessment
            .why()
            .starts_with("no crash kernel loaded; WARNING: 2281701376 bytes"));
        // Without such memory, nothing is added to the text.
        let assessment = decide(Some(&loaded), &before, &Triggers::default(), &settings());
        assert_eq!(assessment.outside_header, None);
        assert_eq!(
            assessment.describe(),
            "skip: nothing the header holds changed"
        );
    }

    #[test]
    fn difference_counts_both_sides() {
        assert_eq!(difference(&[1, 2, 3], &[2, 3, 4, 5]), (2, 1));
        assert_eq!(difference::<u32>(&[], &[]), (0, 0));
        assert_eq!(difference(&[1], &[]), (0, 1));
    }
}

//! The memory ranges the crash ELF header must cover, computed as the kernel does for x86 `kexec_file_load`.
//!
//! The kernel builds the header in `arch/x86/kernel/crash.c`, `prepare_elf_headers`:
//! 1. `walk_system_ram_res(0, -1, …)` collects one range per busy System RAM resource
//!    (`prepare_elf64_ram_headers_callback`);
//! 2. `elf_header_exclude_ranges` cuts out the low 1 MiB, `crashk_res`, `crashk_low_res` (when reserved) and
//!    the crash CMA ranges, each with `crash_exclude_mem_range` (`kernel/crash_core.c`);
//! 3. `crash_prepare_elf64_headers` emits one PT_LOAD program header per remaining range.
//!
//! Ranges are never merged, so `crash_ranges(..).len()` is the number of PT_LOAD headers the kernel needs, the
//! number to compare with the header buffer's capacity.

use crate::core::arch::Arch;
use crate::core::arm64_ranges;
use crate::core::model::{MemRange, OutsideHeader};
use crate::core::parse::iomem::Resource;

/// The ranges a crash header holds under one architecture's rules, and the System RAM those rules leave out
/// that no reload can bring into the dump.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HeaderRanges {
    pub ranges: Vec<MemRange>,
    pub outside_header: Vec<OutsideHeader>,
}

/// [`crash_ranges`] on x86_64 (nothing left out), [`arm64_ranges::crash_ranges`] on arm64.
pub fn for_arch(arch: Arch, resources: &[Resource], cma: &[MemRange]) -> HeaderRanges {
    match arch {
        Arch::X86_64 => HeaderRanges {
            ranges: crash_ranges(resources, cma),
            outside_header: Vec::new(),
        },
        Arch::Arm64 => arm64_ranges::crash_ranges(resources, cma),
    }
}

/// [`system_ram_bytes`] on x86_64, [`arm64_ranges::system_ram_bytes`] on arm64.
pub fn system_ram_bytes_for(arch: Arch, resources: &[Resource]) -> u64 {
    match arch {
        Arch::X86_64 => system_ram_bytes(resources),
        Arch::Arm64 => arm64_ranges::system_ram_bytes(resources),
    }
}

/// `elf_header_exclude_ranges` cuts `[0, SZ_1M - 1]`: "the low 1M … is always reserved".
pub const LOW_MEMORY_END: u64 = (1 << 20) - 1;

/// The name `/proc/iomem` shows for `crashk_res` and `crashk_low_res` (`kernel/crash_reserve.c`; in older
/// kernels `kernel/kexec_core.c`).
pub const CRASH_KERNEL: &str = "Crash kernel";

/// Whether a resource counts as busy System RAM for `walk_system_ram_res`.
///
/// The kernel matches flags (`IORESOURCE_SYSTEM_RAM | IORESOURCE_BUSY`, any descriptor), which `/proc/iomem` does
/// not show; the names stand in for them. Boot memory is `System RAM`; hot-added driver-managed memory is
/// `System RAM (<driver>)` (`mm/memory_hotplug.c`, `add_memory_driver_managed` requires that form), e.g.
/// `System RAM (virtio_mem)` or `System RAM (kmem)`, nested under its device's resource. That device resource
/// (virtio-mem's `virtio0`, `drivers/virtio/virtio_mem.c`, `virtio_mem_create_resource`) carries
/// `IORESOURCE_SYSTEM_RAM` but has `IORESOURCE_BUSY` cleared, so the walk skips it and finds the children.
/// `Kernel code`, `Crash kernel` and the like also carry the System RAM flag, but sit inside a `System RAM`
/// resource, which the walk has already stepped past (see [`crash_ranges`]); they never match on their own.
pub fn is_system_ram(name: &str) -> bool {
    name == "System RAM" || name.starts_with("System RAM (")
}

/// Every busy `System RAM` resource at any depth, minus the low 1 MiB, minus the `Crash kernel` reservations,
/// minus the crash CMA ranges. One range per resource (split where an exclusion cuts one in two), never merged.
/// Sorted by start.
///
/// Crash CMA ranges (`crashkernel=size,cma`, Linux 6.17+) are `crashk_cma_ranges`: the kernel cuts each out with
/// `crash_exclude_mem_range` in `elf_header_exclude_ranges` like `crashk_res`, but they are not resources in
/// `/proc/iomem`; userspace reads them from `crash_cma_ranges` in sysfs, and passes them in as `cma`.
pub fn crash_ranges(resources: &[Resource], cma: &[MemRange]) -> Vec<MemRange> {
    let walked = walk_system_ram(resources);
    let exclusions = exclusions(resources, cma);
    let mut ranges = Vec::with_capacity(walked.len() + exclusions.len());
    for range in walked {
        subtract(range, &exclusions, &mut ranges);
    }
    ranges
}

/// Bytes of System RAM present now: every range the walk reports, before any exclusion (the crash reservation
/// and the low 1 MiB are memory too). The kernel's `parse_crashkernel_mem()` is evaluated at boot against
/// `memblock_phys_mem_size()` (`arch_reserve_crashkernel` in arch/x86/kernel/setup.c): the RAM firmware reported
/// in e820, which `/proc/iomem` shows as `System RAM`. This is the same sum for the memory present now,
/// hot-added memory included, which is the question the reservation check asks.
pub fn system_ram_bytes(resources: &[Resource]) -> u64 {
    walk_system_ram(resources).iter().map(MemRange::size).sum()
}

/// True when every address in the file read as 0 (opened without CAP_SYS_ADMIN).
pub fn addresses_hidden(resources: &[Resource]) -> bool {
    !resources.is_empty() && resources.iter().all(|r| r.start == 0 && r.end == 0)
}

/// What `walk_system_ram_res(0, -1, …)` reports.
///
/// `kernel/resource.c`, `__walk_iomem_res_desc` calls `find_next_iomem_res` in a loop: it walks the whole tree in
/// pre-order (children too, `for_each_resource(…, false)`) for the first matching resource that ends at or after
/// the cursor, reports it clamped to start at the cursor, and moves the cursor past its end. So nested matches
/// are found, but a match inside one already reported is skipped. For a well-formed tree, pre-order is the order
/// of (start, depth); sorting by that keeps the result right for input in any order.
fn walk_system_ram(resources: &[Resource]) -> Vec<MemRange> {
    let mut candidates: Vec<&Resource> = resources
        .iter()
        .filter(|r| is_system_ram(&r.name))
        .collect();
    candidates.sort_by_key(|r| (r.start, r.depth));
    let mut walked = Vec::with_capacity(candidates.len());
    let mut cursor: u64 = 0;
    for resource in candidates {
        if resource.end < cursor {
            continue;
        }
        walked.push(MemRange::new(resource.start.max(cursor), resource.end));
        match resource.end.checked_add(1) {
            Some(next) => cursor = next,
            // The walk stops once it has covered the top of the address space.
            None => break,
        }
    }
    walked
}

/// The low 1 MiB, every `Crash kernel` resource and every crash CMA range, sorted and merged where they overlap
/// or touch.
///
/// `crash_exclude_mem_range` applied once per exclusion leaves, of each range, exactly the pieces outside the
/// union of the exclusions (a piece fully covered is dropped, one cut in the middle is split in two, in order);
/// subtracting the merged union at once gives the same ranges without the kernel's quadratic shifting.
fn exclusions(resources: &[Resource], cma: &[MemRange]) -> Vec<MemRange> {
    let cuts: Vec<MemRange> = std::iter::once(MemRange::new(0, LOW_MEMORY_END))
        .chain(
            resources
                .iter()
                .filter(|r| r.name == CRASH_KERNEL)
                .map(|r| MemRange::new(r.start, r.end)),
        )
        .chain(cma.iter().copied())
        .collect();
    merge(cuts)
}

/// `cuts` sorted and merged where they overlap or touch: their union, as disjoint ranges in address order.
pub fn merge(mut cuts: Vec<MemRange>) -> Vec<MemRange> {
    cuts.sort_unstable();
    let mut merged: Vec<MemRange> = Vec::with_capacity(cuts.len());
    for cut in cuts {
        match merged.last_mut() {
            Some(last) if cut.start <= last.end.saturating_add(1) => {
                last.end = last.end.max(cut.end)
            }
            _ => merged.push(cut),
        }
    }
    merged
}

/// Appends the pieces of `range` outside the sorted, disjoint `exclusions` to `out`, in address order.
pub(crate) fn subtract(range: MemRange, exclusions: &[MemRange], out: &mut Vec<MemRange>) {
    // Exclusions ending before the range cannot touch it.
    let first = exclusions.partition_point(|cut| cut.end < range.start);
    let mut start = range.start;
    for cut in &exclusions[first..] {
        if cut.start > range.end {
            break;
        }
        if cut.start > start {
            out.push(MemRange::new(start, cut.start - 1));
        }
        match cut.end.checked_add(1) {
            Some(next) if next <= range.end => start = start.max(next),
            // The cut reaches the end of the range: nothing of it is left.
            _ => return,
        }
    }
    out.push(MemRange::new(start, range.end));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn res(start: u64, end: u64, depth: usize, name: &str) -> Resource {
        Resource {
            start,
            end,
            depth,
            name: name.to_owned(),
        }
    }

    fn range(start: u64, end: u64) -> MemRange {
        MemRange::new(start, end)
    }

    const MIB: u64 = 1 << 20;

    #[test]
    fn low_mebibyte_is_cut_and_ranges_below_it_vanish() {
        let resources = [
            res(0x1000, 0x9_fbff, 0, "System RAM"),
            res(0x8_0000, 0x17_ffff, 0, "System RAM"),
            res(0x100_0000, 0x1ff_ffff, 0, "System RAM"),
        ];
        assert_eq!(
            crash_ranges(&resources, &[]),
            vec![range(MIB, 0x17_ffff), range(0x100_0000, 0x1ff_ffff)]
        );
    }

    #[test]
    fn crash_kernel_in_the_middle_splits_its_range_and_at_the_edge_truncates() {
        let resources = [
            res(0x10_0000, 0x7ffd_bfff, 0, "System RAM"),
            res(0x6f00_0000, 0x7eff_ffff, 1, "Crash kernel"),
            res(0x1_0000_0000, 0x2_7fff_ffff, 0, "System RAM"),
            res(0x2_6000_0000, 0x2_7fff_ffff, 1, "Crash kernel"),
        ];
        assert_eq!(
            crash_ranges(&resources, &[]),
            vec![
                range(0x10_0000, 0x6eff_ffff),
                range(0x7f00_0000, 0x7ffd_bfff),
                range(0x1_0000_0000, 0x2_5fff_ffff),
            ]
        );
    }

    #[test]
    fn crash_kernel_covering_a_whole_range_removes_it() {
        let resources = [
            res(0x100_0000, 0x1ff_ffff, 0, "System RAM"),
            res(0x100_0000, 0x1ff_ffff, 1, "Crash kernel"),
            res(0x300_0000, 0x3ff_ffff, 0, "System RAM"),
        ];
        assert_eq!(
            crash_ranges(&resources, &[]),
            vec![range(0x300_0000, 0x3ff_ffff)]
        );
    }

    #[test]
    fn nested_driver_managed_ram_counts_and_parents_do_not() {
        let resources = [
            res(0x10_0000, 0x7fff_ffff, 0, "System RAM"),
            res(0x1_8000_0000, 0x1_ffff_ffff, 0, "virtio0"),
            res(0x1_8000_0000, 0x1_87ff_ffff, 1, "System RAM (virtio_mem)"),
            res(0x1_9000_0000, 0x1_97ff_ffff, 1, "System RAM (virtio_mem)"),
            res(0x2_4000_0000, 0x4_3fff_ffff, 0, "Persistent Memory"),
            res(0x2_4000_0000, 0x4_3fff_ffff, 1, "namespace0.0"),
            res(0x2_4000_0000, 0x4_3fff_ffff, 2, "dax0.0"),
            res(0x2_4000_0000, 0x4_3fff_ffff, 3, "System RAM (kmem)"),
        ];
        assert_eq!(
            crash_ranges(&resources, &[]),
            vec![
                range(0x10_0000, 0x7fff_ffff),
                range(0x1_8000_0000, 0x1_87ff_ffff),
                range(0x1_9000_0000, 0x1_97ff_ffff),
                range(0x2_4000_0000, 0x4_3fff_ffff),
            ]
        );
    }

    #[test]
    fn kernel_code_data_and_look_alike_names_are_ignored() {
        let resources = [
            res(0x10_0000, 0x7fff_ffff, 0, "System RAM"),
            res(0x200_0000, 0x2ff_ffff, 1, "Kernel code"),
            res(0x300_0000, 0x33f_ffff, 1, "Kernel rodata"),
            res(0x340_0000, 0x37f_ffff, 1, "Kernel data"),
            res(0x380_0000, 0x3ff_ffff, 1, "Kernel bss"),
            res(0x8000_0000, 0x8fff_ffff, 0, "System RAMBO"),
            res(0x9000_0000, 0x9fff_ffff, 0, "system ram"),
            res(0xa000_0000, 0xafff_ffff, 0, "Reserved"),
        ];
        assert_eq!(
            crash_ranges(&resources, &[]),
            vec![range(0x10_0000, 0x7fff_ffff)]
        );
    }

    #[test]
    fn system_ram_nested_in_system_ram_is_reported_once_like_the_walk() {
        let resources = [
            res(0x10_0000, 0x7fff_ffff, 0, "System RAM"),
            res(0x200_0000, 0x2ff_ffff, 1, "System RAM"),
        ];
        assert_eq!(
            crash_ranges(&resources, &[]),
            vec![range(0x10_0000, 0x7fff_ffff)]
        );
    }

    #[test]
    fn unsorted_input_gives_sorted_output() {
        let resources = [
            res(0x1_0000_0000, 0x1_7fff_ffff, 0, "System RAM"),
            res(0x6f00_0000, 0x7eff_ffff, 1, "Crash kernel"),
            res(0x1_9000_0000, 0x1_97ff_ffff, 1, "System RAM (virtio_mem)"),
            res(0x10_0000, 0x7ffd_bfff, 0, "System RAM"),
            res(0x1_8000_0000, 0x1_87ff_ffff, 1, "System RAM (virtio_mem)"),
        ];
        assert_eq!(
            crash_ranges(&resources, &[]),
            vec![
                range(0x10_0000, 0x6eff_ffff),
                range(0x7f00_0000, 0x7ffd_bfff),
                range(0x1_0000_0000, 0x1_7fff_ffff),
                range(0x1_8000_0000, 0x1_87ff_ffff),
                range(0x1_9000_0000, 0x1_97ff_ffff),
            ]
        );
    }

    #[test]
    fn two_crash_kernels_in_one_range_split_it_in_three() {
        let resources = [
            res(0x10_0000, 0xffff_ffff, 0, "System RAM"),
            res(0x1000_0000, 0x1fff_ffff, 1, "Crash kernel"),
            res(0x4000_0000, 0x4fff_ffff, 1, "Crash kernel"),
        ];
        assert_eq!(
            crash_ranges(&resources, &[]),
            vec![
                range(0x10_0000, 0xfff_ffff),
                range(0x2000_0000, 0x3fff_ffff),
                range(0x5000_0000, 0xffff_ffff),
            ]
        );
    }

    #[test]
    fn crash_cma_ranges_split_and_trim_like_the_other_reservations() {
        // Two CMA areas: one inside high RAM (a split), one over the end of another range (a trim), and one in a
        // hole between ranges (nothing to cut), as `elf_header_exclude_ranges` cuts `crashk_cma_ranges`.
        let resources = [
            res(0x10_0000, 0x7fff_ffff, 0, "System RAM"),
            res(0x6f00_0000, 0x7eff_ffff, 1, "Crash kernel"),
            res(0x1_0000_0000, 0x4_7fff_ffff, 0, "System RAM"),
        ];
        let cma = [
            range(0x2_0000_0000, 0x2_0c7f_ffff),
            range(0x4_4000_0000, 0x4_7fff_ffff),
            range(0x8000_0000, 0x8fff_ffff),
        ];
        assert_eq!(
            crash_ranges(&resources, &cma),
            vec![
                range(0x10_0000, 0x6eff_ffff),
                range(0x7f00_0000, 0x7fff_ffff),
                range(0x1_0000_0000, 0x1_ffff_ffff),
                range(0x2_0c80_0000, 0x4_3fff_ffff),
            ]
        );
        // The memory total is unchanged by any exclusion.
        assert_eq!(system_ram_bytes(&resources), 0x7ff0_0000 + 0x3_8000_0000);
    }

    #[test]
    fn hidden_addresses_give_no_ranges() {
        let resources = [
            res(0, 0, 0, "System RAM"),
            res(0, 0, 1, "Crash kernel"),
            res(0, 0, 0, "System RAM"),
        ];
        assert!(addresses_hidden(&resources));
        assert_eq!(crash_ranges(&resources, &[]), vec![]);
    }

    #[test]
    fn top_of_the_address_space_does_not_overflow() {
        let resources = [
            res(0xffff_ffff_0000_0000, u64::MAX, 0, "System RAM"),
            res(0xffff_ffff_8000_0000, u64::MAX, 1, "Crash kernel"),
            res(0xffff_ffff_f000_0000, u64::MAX, 1, "System RAM"),
        ];
        assert_eq!(
            crash_ranges(&resources, &[]),
            vec![range(0xffff_ffff_0000_0000, 0xffff_ffff_7fff_ffff)]
        );
    }
}

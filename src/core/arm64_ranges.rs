//! The memory ranges an arm64 crash header holds, and the memory no arm64 loader puts in it.
//!
//! Both arm64 loaders build the header once, at load time, and nothing updates it afterwards: arm64 has no
//! `CONFIG_CRASH_HOTPLUG` (in-kernel updates have been posted, not merged), so `crash_hotplug` does not exist and
//! every change needs a reload ([`crate::core::decide::capacity`] says "rebuilt on every load").
//!
//! - `kexec_file_load`: `prepare_elf_headers()` in arch/arm64/kernel/machine_kexec_file.c takes one range per
//!   `for_each_mem_range()` region (memblock.memory), cuts out `crashk_res` and, when reserved, `crashk_low_res`
//!   with `crash_exclude_mem_range()`, and hands the rest to `crash_prepare_elf64_headers()`. There is no low
//!   1 MiB cut as on x86. `for_each_mem_range()` asks for `MEMBLOCK_NONE`, so `should_skip_region()`
//!   (mm/memblock.c) skips `MEMBLOCK_NOMAP` regions and `MEMBLOCK_DRIVER_MANAGED` regions; `add_memory_resource()`
//!   (mm/memory_hotplug.c) adds hot-plugged memory to memblock with `MEMBLOCK_DRIVER_MANAGED` exactly when its
//!   resource is driver-managed (`add_memory_driver_managed()`: virtio-mem, dax/kmem), and with `MEMBLOCK_NONE`
//!   otherwise (ACPI memory hotplug, pc-dimm), so the latter is in the header of the next load.
//! - `kexec_load` (kexec-tools, kexec/arch/arm64/crashdump-arm64.c): `iomem_range_callback()` is called for
//!   every `/proc/iomem` line at any depth and compares the name with `strncmp` against `"System RAM\n"` and
//!   `"Crash kernel\n"` (kexec/arch/arm64/iomem.h): the newline makes both exact matches, so `System RAM
//!   (virtio_mem)` is not taken (x86's crashdump-x86.c matches by prefix and takes it). One range per `System
//!   RAM` line, the `Crash kernel` ones excluded (`mem_regions_alloc_and_exclude`), never merged, no count limit
//!   (the list grows with `realloc`).
//!
//! How `/proc/iomem` relates to memblock on arm64: `request_standard_resources()` (arch/arm64/kernel/setup.c)
//! makes one top-level resource per memblock.memory region, named `reserved` for a nomap region and `System
//! RAM` otherwise, rounded inward to whole pages; hot-added memory gets its own resources (`System RAM` at the
//! top for ACPI memory, `System RAM (<driver>)` under the device's resource for driver-managed memory).
//! memblock merges adjacent regions of the same node and flags (`memblock_add_range()` →
//! `memblock_merge_regions()`), so a hot-added DIMM next to boot memory is one memblock region but two
//! resources; the kernel's `kexec_file_load` count can therefore be smaller than the resource count, and its
//! bounds differ below a page where memblock regions are not page-aligned. The ranges here are one per
//! resource (kexec-tools' count); where they are compared with a header the kernel built, or with each other,
//! only their union is compared ([`covers`], [`same_coverage`]), never the count.
//!
//! Crash CMA ranges (`crashkernel=size,cma`) are cut out as on x86: the posted arm64 support hands them to the
//! crash core's exclusion; a kernel without it lists none in sysfs.

use crate::core::model::{MemRange, OutsideHeader};
use crate::core::parse::iomem::Resource;
use crate::core::ranges::{merge, subtract, CRASH_KERNEL};

/// The resource name both arm64 loaders take, matched exactly (kexec-tools compares `"System RAM\n"`).
pub const SYSTEM_RAM: &str = "System RAM";

/// The name `request_standard_resources()` gives a nomap memblock region at the top level of `/proc/iomem`.
pub const NOMAP: &str = "reserved";

/// The `<driver>` of a driver-managed `System RAM (<driver>)` resource (`add_memory_driver_managed()` insists on
/// that form), `None` for any other name.
pub fn driver_managed(name: &str) -> Option<&str> {
    name.strip_prefix("System RAM (")?.strip_suffix(')')
}

/// The arm64 header's ranges: every exact `System RAM` resource (a nested one inside one already taken is
/// skipped, as the union is all that matters), minus the `Crash kernel` resources and the crash CMA ranges,
/// split where a cut falls inside; sorted by start. And, apart, every driver-managed `System RAM (<driver>)`
/// resource: System RAM that neither loader puts in an arm64 header, so no reload brings it into the dump.
pub fn crash_ranges(resources: &[Resource], cma: &[MemRange]) -> crate::core::ranges::HeaderRanges {
    // Zeroed addresses (an opener without CAP_SYS_ADMIN) describe no memory; x86's low cut drops them, here
    // they must be dropped explicitly.
    if crate::core::ranges::addresses_hidden(resources) {
        return crate::core::ranges::HeaderRanges::default();
    }
    let mut candidates: Vec<&Resource> =
        resources.iter().filter(|r| r.name == SYSTEM_RAM).collect();
    candidates.sort_by_key(|r| (r.start, r.depth));
    let cuts = merge(
        resources
            .iter()
            .filter(|r| r.name == CRASH_KERNEL)
            .map(|r| MemRange::new(r.start, r.end))
            .chain(cma.iter().copied())
            .collect(),
    );
    let mut ranges = Vec::with_capacity(candidates.len() + cuts.len());
    let mut covered_to: Option<u64> = None;
    for resource in candidates {
        if covered_to.is_some_and(|end| resource.end <= end) {
            continue;
        }
        let start = match covered_to {
            Some(end) if resource.start <= end => end + 1,
            _ => resource.start,
        };
        subtract(MemRange::new(start, resource.end), &cuts, &mut ranges);
        covered_to = Some(resource.end);
    }
    let mut outside_header: Vec<OutsideHeader> = resources
        .iter()
        .filter_map(|r| {
            driver_managed(&r.name).map(|driver| OutsideHeader {
                range: MemRange::new(r.start, r.end),
                driver: driver.to_owned(),
            })
        })
        .collect();
    outside_header.sort_by_key(|o| o.range);
    crate::core::ranges::HeaderRanges {
        ranges,
        outside_header,
    }
}

/// Bytes of memory present now, as the reservation check needs them: `arch_reserve_crashkernel()`
/// (arch/arm64/mm/init.c) evaluates `crashkernel=` against `memblock_phys_mem_size()`, all of memblock.memory,
/// which holds the nomap regions (top-level `reserved`) as well as `System RAM`; memory hot-added later is
/// added to memblock too (driver-managed included), so it counts as it does on x86.
pub fn system_ram_bytes(resources: &[Resource]) -> u64 {
    let memory: Vec<MemRange> = resources
        .iter()
        .filter(|r| {
            r.name == SYSTEM_RAM
                || (r.depth == 0 && r.name == NOMAP)
                || driver_managed(&r.name).is_some()
        })
        .map(|r| MemRange::new(r.start, r.end))
        .collect();
    merge(memory).iter().map(MemRange::size).sum()
}

/// Whether `header` covers every byte of `ranges`: by union, since an arm64 header the kernel built may list
/// memblock regions that merge or split the resources differently.
pub fn covers(header: &[MemRange], ranges: &[MemRange]) -> bool {
    let header = merge(header.to_vec());
    merge(ranges.to_vec()).iter().all(|needed| {
        let at = header.partition_point(|h| h.end < needed.start);
        header
            .get(at)
            .is_some_and(|h| h.start <= needed.start && needed.end <= h.end)
    })
}

/// Whether two range lists cover the same bytes (their unions are equal), whatever their counts.
pub fn same_coverage(a: &[MemRange], b: &[MemRange]) -> bool {
    merge(a.to_vec()) == merge(b.to_vec())
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

    /// A QEMU `virt` guest's memory as arm64 shows it: boot RAM from 1 GiB with nomap holes, a crash
    /// reservation, a hot-added DIMM and virtio-mem memory.
    fn virt_guest() -> Vec<Resource> {
        vec![
            res(0x0900_0000, 0x0900_0fff, 0, "pl011@9000000"),
            res(0x4000_0000, 0xbdff_ffff, 0, "System RAM"),
            res(0x4021_0000, 0x4180_ffff, 1, "Kernel code"),
            res(0x4181_0000, 0x41f7_ffff, 1, "reserved"),
            res(0x41f8_0000, 0x4233_ffff, 1, "Kernel data"),
            res(0xbe00_0000, 0xbe05_ffff, 0, "reserved"),
            res(0xbe06_0000, 0xbe3f_ffff, 0, "System RAM"),
            res(0xbe40_0000, 0xbe45_ffff, 0, "reserved"),
            res(0xbe46_0000, 0x1_3fff_ffff, 0, "System RAM"),
            res(0xdc00_0000, 0xfbff_ffff, 1, "Crash kernel"),
            res(0x1_4000_0000, 0x1_7fff_ffff, 0, "System RAM"),
            res(0x1_8000_0000, 0x2_7fff_ffff, 0, "virtio0"),
            res(0x1_8000_0000, 0x1_ffff_ffff, 1, "System RAM (virtio_mem)"),
            res(0x2_1000_0000, 0x2_17ff_ffff, 1, "System RAM (virtio_mem)"),
        ]
    }

    #[test]
    fn memblock_memory_minus_the_reservation_without_a_low_cut_or_nomap_regions() {
        let header = crash_ranges(&virt_guest(), &[]);
        assert_eq!(
            header.ranges,
            vec![
                range(0x4000_0000, 0xbdff_ffff),
                range(0xbe06_0000, 0xbe3f_ffff),
                range(0xbe46_0000, 0xdbff_ffff),
                range(0xfc00_0000, 0x1_3fff_ffff),
                // The hot-added DIMM: MEMBLOCK_NONE, so in the next load's header.
                range(0x1_4000_0000, 0x1_7fff_ffff),
            ]
        );
    }

    #[test]
    fn driver_managed_memory_is_outside_every_arm64_header_with_its_driver() {
        let header = crash_ranges(&virt_guest(), &[]);
        assert_eq!(
            header.outside_header,
            vec![
                OutsideHeader {
                    range: range(0x1_8000_0000, 0x1_ffff_ffff),
                    driver: "virtio_mem".into()
                },
                OutsideHeader {
                    range: range(0x2_1000_0000, 0x2_17ff_ffff),
                    driver: "virtio_mem".into()
                },
            ]
        );
        for outside in &header.outside_header {
            assert!(!covers(&header.ranges, &[outside.range]));
        }
        let kmem = [
            res(0x4000_0000, 0x7fff_ffff, 0, "System RAM"),
            res(0x8_0000_0000, 0x8_3fff_ffff, 0, "dax0.0"),
            res(0x8_0000_0000, 0x8_3fff_ffff, 1, "System RAM (kmem)"),
        ];
        let header = crash_ranges(&kmem, &[]);
        assert_eq!(header.ranges, vec![range(0x4000_0000, 0x7fff_ffff)]);
        assert_eq!(header.outside_header[0].driver, "kmem");
    }

    #[test]
    fn only_the_exact_names_count_as_kexec_tools_compares_them() {
        assert_eq!(
            driver_managed("System RAM (virtio_mem)"),
            Some("virtio_mem")
        );
        assert_eq!(driver_managed("System RAM"), None);
        assert_eq!(driver_managed("System RAMBO"), None);
        let resources = [
            res(0x4000_0000, 0x7fff_ffff, 0, "System RAM"),
            res(0x8000_0000, 0x8fff_ffff, 0, "System RAMBO"),
            res(0x9000_0000, 0x9fff_ffff, 0, "system ram"),
            res(0xa000_0000, 0xafff_ffff, 0, "reserved"),
            res(0xb000_0000, 0xbfff_ffff, 0, "Crash kernel (low)"),
        ];
        let header = crash_ranges(&resources, &[]);
        assert_eq!(header.ranges, vec![range(0x4000_0000, 0x7fff_ffff)]);
        assert!(header.outside_header.is_empty());
    }

    #[test]
    fn low_and_high_reservations_and_cma_are_cut_and_memory_below_1_mib_stays() {
        let resources = [
            res(0x0, 0x7_ffff, 0, "System RAM"),
            res(0x4000_0000, 0xffff_ffff, 0, "System RAM"),
            res(0xf000_0000, 0xffff_ffff, 1, "Crash kernel"),
            res(0x1_0000_0000, 0x2_ffff_ffff, 0, "System RAM"),
            res(0x2_e000_0000, 0x2_ffff_ffff, 1, "Crash kernel"),
        ];
        let cma = [range(0x1_8000_0000, 0x1_8fff_ffff)];
        assert_eq!(
            crash_ranges(&resources, &cma).ranges,
            vec![
                range(0x0, 0x7_ffff),
                range(0x4000_0000, 0xefff_ffff),
                range(0x1_0000_0000, 0x1_7fff_ffff),
                range(0x1_9000_0000, 0x2_dfff_ffff),
            ]
        );
    }

    #[test]
    fn nested_system_ram_adds_nothing_to_the_union() {
        let resources = [
            res(0x4000_0000, 0x7fff_ffff, 0, "System RAM"),
            res(0x5000_0000, 0x5fff_ffff, 1, "System RAM"),
            res(0x6000_0000, 0x8fff_ffff, 0, "System RAM"),
        ];
        let header = crash_ranges(&resources, &[]);
        assert_eq!(
            header.ranges,
            vec![
                range(0x4000_0000, 0x7fff_ffff),
                range(0x8000_0000, 0x8fff_ffff)
            ]
        );
    }

    #[test]
    fn hidden_addresses_give_nothing() {
        let resources = [
            res(0, 0, 0, "System RAM"),
            res(0, 0, 0, "virtio0"),
            res(0, 0, 1, "System RAM (virtio_mem)"),
        ];
        assert_eq!(
            crash_ranges(&resources, &[]),
            crate::core::ranges::HeaderRanges::default()
        );
    }

    #[test]
    fn memory_for_the_reservation_check_counts_nomap_and_hot_added_memory() {
        let bytes = system_ram_bytes(&virt_guest());
        let boot = 0x1_4000_0000 - 0x4000_0000;
        let dimm = 0x4000_0000;
        let virtio_mem = 0x8000_0000 + 0x800_0000;
        assert_eq!(bytes, boot + dimm + virtio_mem);
    }

    #[test]
    fn coverage_is_compared_by_union_not_by_count() {
        // The kernel's memblock merges the DIMM with the boot region next to it: one range where iomem has two.
        let from_iomem = [
            range(0x4000_0000, 0xbfff_ffff),
            range(0xc000_0000, 0xffff_ffff),
        ];
        let from_memblock = [range(0x4000_0000, 0xffff_ffff)];
        assert!(covers(&from_memblock, &from_iomem));
        assert!(covers(&from_iomem, &from_memblock));
        assert!(same_coverage(&from_iomem, &from_memblock));
        let short = [range(0x4000_0000, 0xfffe_ffff)];
        assert!(!covers(&short, &from_iomem));
        assert!(!same_coverage(&short, &from_iomem));
        assert!(covers(&from_memblock, &[]));
        assert!(!covers(&[], &from_iomem));
    }
}

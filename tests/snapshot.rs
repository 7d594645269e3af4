//! Snapshots of every fixture tree under `tests/fixtures/`, asserted whole.

#[path = "fixtures/sparse_host.rs"]
mod sparse_host;

use std::path::PathBuf;

use kdump_hotplugd::core::arch::Arch;
use kdump_hotplugd::core::decide;
use kdump_hotplugd::core::model::{CpuSet, CrashState, HostSnapshot, MemRange, OutsideHeader};
use kdump_hotplugd::host::snapshot::{
    memory_blocks, MemoryBlock, MemoryBlockState, SnapshotError, SnapshotReader,
};
use kdump_hotplugd::host::sysroot::Sysroot;
use sparse_host::{Linux61SparseHost, SparseHost};

const MIB: u64 = 1 << 20;
const BLOCK: u64 = 128 * MIB;

fn fixture(name: &str) -> Sysroot {
    Sysroot::new(
        PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures")
            .join(name),
    )
}

fn snapshot(name: &str) -> HostSnapshot {
    SnapshotReader::open(fixture(name))
        .and_then(|mut reader| reader.take())
        .unwrap_or_else(|e| panic!("{name}: {e}"))
}

fn cpus(ids: std::ops::RangeInclusive<u32>) -> CpuSet {
    ids.collect()
}

fn range(start: u64, end: u64) -> MemRange {
    MemRange::new(start, end)
}

const SMALL_VM_CMDLINE: &str = "BOOT_IMAGE=/boot/vmlinuz-6.1.0-37-amd64 \
     root=UUID=2f7d1c9e-4b1a-4e0c-9d51-7a3c2b6e8f10 ro quiet crashkernel=256M";

/// Below 4 GiB, every q35 fixture has low RAM from 1 MiB to 0x7ffdbfff with the crash kernel cut out of it.
fn q35_low_ranges() -> Vec<MemRange> {
    vec![range(MIB, 0x6eff_ffff), range(0x7f00_0000, 0x7ffd_bfff)]
}

#[test]
fn small_vm() {
    assert_eq!(
        snapshot("small-vm"),
        HostSnapshot {
            arch: Arch::X86_64,
            outside_header: vec![],
            ranges: q35_low_ranges(),
            addresses_hidden: false,
            present_cpus: cpus(0..=1),
            online_cpus: cpus(0..=1),
            possible_cpus: cpus(0..=1),
            crash: CrashState {
                kexec_supported: true,
                loaded: true,
                reserved_bytes: Some(256 * MIB),
                elfcorehdr_size: None,
                kernel_updates_memory: false,
                kernel_updates_cpu: false,
                crash_hotplug_support: false,
                cma_ranges: vec![],
            },
            memory_block_size: Some(BLOCK),
            memory_blocks: 16,
            system_ram_bytes: 0x7ff7_ac00,
            kernel_cmdline: Some(SMALL_VM_CMDLINE.into()),
            distro_ids: vec![],
        }
    );
}

#[test]
fn hidden_addresses() {
    // The small VM as an opener without CAP_SYS_ADMIN sees it: every address zero, everything else the same.
    assert_eq!(
        snapshot("hidden-addresses"),
        HostSnapshot {
            arch: Arch::X86_64,
            outside_header: vec![],
            ranges: vec![],
            addresses_hidden: true,
            system_ram_bytes: 0,
            kernel_cmdline: None,
            distro_ids: vec![],
            ..snapshot("small-vm")
        }
    );
}

#[test]
fn self_updating() {
    let mut ranges = q35_low_ranges();
    ranges.extend([
        range(0x1_0000_0000, 0x1_3fff_ffff),
        range(0x1_4800_0000, 0x1_4fff_ffff),
        range(0x1_6000_0000, 0x1_7fff_ffff),
    ]);
    assert_eq!(
        snapshot("self-updating"),
        HostSnapshot {
            arch: Arch::X86_64,
            outside_header: vec![],
            ranges,
            addresses_hidden: false,
            present_cpus: cpus(0..=5),
            online_cpus: cpus(0..=5),
            possible_cpus: cpus(0..=7),
            crash: CrashState {
                kexec_supported: true,
                loaded: true,
                reserved_bytes: Some(256 * MIB),
                elfcorehdr_size: Some(SparseHost::ELFCOREHDR_SIZE),
                kernel_updates_memory: true,
                kernel_updates_cpu: true,
                crash_hotplug_support: true,
                cma_ranges: vec![],
            },
            memory_block_size: Some(BLOCK),
            memory_blocks: 16 + 8 + 1 + 4,
            system_ram_bytes: 0xe7f7_ac00,
            kernel_cmdline: None,
            distro_ids: vec![],
        }
    );
}

#[test]
fn not_loaded_reads_the_new_kexec_layout_and_cuts_both_crash_reservations() {
    let mut ranges = q35_low_ranges();
    // The high reservation sits at the top of RAM above 4 GiB: it truncates that range instead of splitting it.
    ranges.push(range(0x1_0000_0000, 0x2_5fff_ffff));
    assert_eq!(
        snapshot("not-loaded"),
        HostSnapshot {
            arch: Arch::X86_64,
            outside_header: vec![],
            ranges,
            addresses_hidden: false,
            present_cpus: cpus(0..=3),
            online_cpus: cpus(0..=3),
            possible_cpus: cpus(0..=3),
            crash: CrashState {
                kexec_supported: true,
                loaded: false,
                // High and low reservations together (`crash_get_memory_size`).
                reserved_bytes: Some(768 * MIB),
                elfcorehdr_size: Some(SparseHost::ELFCOREHDR_SIZE),
                kernel_updates_memory: false,
                kernel_updates_cpu: false,
                crash_hotplug_support: true,
                cma_ranges: vec![],
            },
            memory_block_size: Some(BLOCK),
            memory_blocks: 16 + 48,
            system_ram_bytes: 0x1_fff7_ac00,
            kernel_cmdline: None,
            distro_ids: vec![],
        }
    );
}

#[test]
fn no_kexec() {
    assert_eq!(
        snapshot("no-kexec"),
        HostSnapshot {
            arch: Arch::X86_64,
            outside_header: vec![],
            ranges: vec![
                range(MIB, 0x09d7_efff),
                range(0x0a00_0000, 0x0a1f_ffff),
                range(0x0a20_d000, 0xb8b3_dfff),
                range(0xbb1f_f000, 0xbdff_ffff),
                range(0x1_0000_0000, 0x4_3f37_ffff),
            ],
            addresses_hidden: false,
            present_cpus: cpus(0..=11),
            online_cpus: cpus(0..=11),
            possible_cpus: cpus(0..=11),
            crash: CrashState::default(),
            memory_block_size: None,
            memory_blocks: 0,
            system_ram_bytes: 0x3_fa9c_f000,
            kernel_cmdline: None,
            distro_ids: vec![],
        }
    );
}

#[test]
fn arm64_virt() {
    let virtio_mem = |start, end| OutsideHeader {
        range: range(start, end),
        driver: "virtio_mem".into(),
    };
    assert_eq!(
        snapshot("arm64-virt"),
        HostSnapshot {
            arch: Arch::Arm64,
            ranges: vec![
                range(0x4000_0000, 0xbdff_ffff),
                range(0xbe06_0000, 0xbe3f_ffff),
                range(0xbe46_0000, 0xdbff_ffff),
                range(0xfc00_0000, 0x1_3fff_ffff),
                range(0x1_4000_0000, 0x1_7fff_ffff),
            ],
            outside_header: vec![
                virtio_mem(0x1_8000_0000, 0x1_ffff_ffff),
                virtio_mem(0x2_1000_0000, 0x2_17ff_ffff),
            ],
            addresses_hidden: false,
            present_cpus: cpus(0..=3),
            online_cpus: cpus(0..=3),
            possible_cpus: cpus(0..=3),
            crash: CrashState {
                kexec_supported: true,
                loaded: true,
                reserved_bytes: Some(512 * MIB),
                elfcorehdr_size: None,
                kernel_updates_memory: false,
                kernel_updates_cpu: false,
                crash_hotplug_support: false,
                cma_ranges: vec![],
            },
            memory_block_size: Some(BLOCK),
            // 32 boot blocks, 8 of the DIMM, 17 of virtio-mem.
            memory_blocks: 57,
            // memblock's total: boot memory with its nomap regions, the DIMM, the virtio-mem memory.
            system_ram_bytes: (4096 + 1024 + 2176) * MIB,
            kernel_cmdline: Some(
                "BOOT_IMAGE=/boot/vmlinuz-6.12.48+deb13-arm64 root=/dev/vda2 ro console=ttyAMA0 \
                 crashkernel=1G-4G:384M,4G-:512M"
                    .into()
            ),
            distro_ids: vec!["debian".into()],
        }
    );
}

#[test]
fn sparse_host_needs_more_ranges_than_the_kernel_default() {
    let snapshot = snapshot("sparse-host");
    let mut ranges = q35_low_ranges();
    ranges.push(range(0x1_0000_0000, 0x1_7fff_ffff));
    // Every second 128 MiB block from 6 GiB up, 10,000 of them, written out independently of the generator.
    ranges.extend((0..10_000u64).map(|k| {
        let start = 6 * 1024 * MIB + 2 * k * BLOCK;
        range(start, start + BLOCK - 1)
    }));
    assert_eq!(
        snapshot,
        HostSnapshot {
            arch: Arch::X86_64,
            outside_header: vec![],
            ranges,
            addresses_hidden: false,
            present_cpus: cpus(0..=3),
            online_cpus: cpus(0..=3),
            possible_cpus: cpus(0..=7),
            crash: CrashState {
                kexec_supported: true,
                loaded: true,
                reserved_bytes: Some(256 * MIB),
                elfcorehdr_size: Some(462_448),
                kernel_updates_memory: true,
                kernel_updates_cpu: true,
                crash_hotplug_support: true,
                cma_ranges: vec![],
            },
            memory_block_size: Some(BLOCK),
            memory_blocks: 32 + 32,
            system_ram_bytes: 0x139_7ff7_ac00,
            kernel_cmdline: None,
            distro_ids: vec![],
        }
    );
    // What the decision computes from this snapshot: the kernel's header segment (the ELF header plus
    // crash_elfcorehdr_size, page-rounded: 113 pages) holds 8,264 program headers; 2 are not memory and 8 are the
    // possible CPUs' notes, so 8,254 memory ranges fit (tests/fixtures/README.md), fewer than the 10,003 here.
    let capacity = decide::capacity(
        &snapshot,
        &decide::Policy {
            max_memory_ranges_override: Some(1),
        },
    );
    // The kernel's own size wins over an override.
    assert_eq!(
        capacity,
        decide::Capacity::Known {
            ranges: 8_254,
            source: decide::CapacitySource::ElfcorehdrSize
        }
    );
    assert!(capacity.overflows(snapshot.ranges.len() as u64));
}

#[test]
fn sparse_host_fixture_matches_its_generator() {
    matches_generator("sparse-host", SparseHost::CHECKED_IN.files(), |root| {
        SparseHost::CHECKED_IN.write(root)
    });
}

#[test]
fn sparse_6_1_fixture_matches_its_generator() {
    matches_generator(
        "sparse-6.1",
        Linux61SparseHost::CHECKED_IN.files(),
        |root| Linux61SparseHost::CHECKED_IN.write(root),
    );
}

fn matches_generator(
    name: &str,
    generated: std::collections::BTreeMap<String, String>,
    write: impl Fn(&std::path::Path) -> std::io::Result<()>,
) {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name);
    if std::env::var_os("REGENERATE_FIXTURES").is_some() {
        if root.exists() {
            std::fs::remove_dir_all(&root).unwrap();
        }
        write(&root).unwrap();
    }
    let on_disk = sparse_host::read_tree(&root).unwrap();
    let paths = |files: &std::collections::BTreeMap<String, String>| {
        files.keys().cloned().collect::<Vec<_>>()
    };
    assert_eq!(
        paths(&on_disk),
        paths(&generated),
        "{name} files differ from the generator; run REGENERATE_FIXTURES=1 cargo test --test snapshot"
    );
    for (path, text) in &generated {
        assert!(
            on_disk[path] == *text,
            "{path} differs from the generator; run REGENERATE_FIXTURES=1 cargo test --test snapshot"
        );
    }
    let bytes: usize = on_disk.values().map(String::len).sum();
    assert!(bytes < 2_000_000, "{name} is {bytes} bytes");
}

#[test]
fn memory_blocks_lists_every_block_with_its_state() {
    let blocks = memory_blocks(&fixture("small-vm")).unwrap();
    let expected: Vec<MemoryBlock> = (0..16)
        .map(|index| MemoryBlock {
            index,
            state: MemoryBlockState::Online,
            online: Some(true),
            phys_index: Some(index),
        })
        .collect();
    assert_eq!(blocks, expected);

    let sparse = memory_blocks(&fixture("sparse-host")).unwrap();
    let indices: Vec<u64> = sparse.iter().map(|b| b.index).collect();
    let expected: Vec<u64> = SparseHost::boot_block_indices()
        .chain((0..32).map(SparseHost::plugged_block_index))
        .collect();
    assert_eq!(indices, expected, "sorted numerically, not by name");
    assert!(sparse
        .iter()
        .all(|b| b.online.is_none() && b.phys_index == Some(b.index)));

    assert_eq!(memory_blocks(&fixture("no-kexec")).unwrap(), vec![]);
}

#[test]
fn memory_blocks_reports_a_bad_state_file_by_host_path() {
    let dir = tempfile::tempdir().unwrap();
    let block = dir.path().join("sys/devices/system/memory/memory7");
    std::fs::create_dir_all(&block).unwrap();
    std::fs::write(block.join("state"), "sideways\n").unwrap();
    match memory_blocks(&Sysroot::new(dir.path())) {
        Err(SnapshotError::Parse(e)) => {
            assert_eq!(e.file, "/sys/devices/system/memory/memory7/state");
            assert_eq!(e.line, 1);
        }
        other => panic!("expected a parse error, got {other:?}"),
    }
}

/// A minimal writable sysroot: small-vm's files copied into a temporary directory.
fn scratch_copy_of_small_vm() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let source = fixture("small-vm");
    for file in [
        "proc/iomem",
        "sys/devices/system/cpu/present",
        "sys/devices/system/cpu/online",
        "sys/devices/system/cpu/possible",
        "sys/kernel/kexec_crash_loaded",
        "sys/kernel/kexec_crash_size",
    ] {
        let target = dir.path().join(file);
        std::fs::create_dir_all(target.parent().unwrap()).unwrap();
        std::fs::copy(source.root().join(file), target).unwrap();
    }
    dir
}

#[test]
fn reader_keeps_iomem_open_and_rereads_it_from_the_start() {
    let dir = scratch_copy_of_small_vm();
    let iomem = dir.path().join("proc/iomem");
    let mut reader = SnapshotReader::open(Sysroot::new(dir.path())).unwrap();
    assert_eq!(reader.take().unwrap().ranges, q35_low_ranges());

    // Rewrite the same inode: the next snapshot must see the new text, read from offset 0.
    let grown = std::fs::read_to_string(&iomem).unwrap() + "100000000-13fffffff : System RAM\n";
    std::fs::write(&iomem, grown).unwrap();
    let mut expected = q35_low_ranges();
    expected.push(range(0x1_0000_0000, 0x1_3fff_ffff));
    assert_eq!(reader.take().unwrap().ranges, expected);
    assert_eq!(
        reader.take().unwrap().ranges,
        expected,
        "a second read is the same"
    );

    // The handle from open() is what is read (as with the capability-checked /proc/iomem), not the path.
    std::fs::remove_file(&iomem).unwrap();
    assert_eq!(reader.take().unwrap().ranges, expected);
}

#[test]
fn new_kexec_paths_win_over_old_ones() {
    let dir = scratch_copy_of_small_vm();
    let kexec = dir.path().join("sys/kernel/kexec");
    std::fs::create_dir_all(&kexec).unwrap();
    std::fs::write(kexec.join("crash_loaded"), "0\n").unwrap();
    std::fs::write(kexec.join("crash_size"), "1024\n").unwrap();
    std::fs::write(kexec.join("crash_elfcorehdr_size"), "2048\n").unwrap();
    std::fs::write(
        dir.path().join("sys/kernel/crash_elfcorehdr_size"),
        "4096\n",
    )
    .unwrap();
    std::fs::write(kexec.join("crash_cma_ranges"), "40000000-40ffffff\n").unwrap();
    std::fs::write(
        dir.path().join("sys/kernel/kexec_crash_cma_ranges"),
        "50000000-50ffffff\n",
    )
    .unwrap();
    let crash = SnapshotReader::open(Sysroot::new(dir.path()))
        .unwrap()
        .take()
        .unwrap()
        .crash;
    assert_eq!(
        crash,
        CrashState {
            kexec_supported: true,
            loaded: false,
            reserved_bytes: Some(1024),
            elfcorehdr_size: Some(2048),
            kernel_updates_memory: false,
            kernel_updates_cpu: false,
            crash_hotplug_support: false,
            cma_ranges: vec![MemRange::new(0x4000_0000, 0x40ff_ffff)],
        }
    );
}

#[test]
fn errors_name_the_host_path_and_line() {
    let dir = scratch_copy_of_small_vm();
    let mut reader = SnapshotReader::open(Sysroot::new(dir.path())).unwrap();
    std::fs::write(
        dir.path().join("sys/devices/system/cpu/online"),
        "0-1\nsurprise\n",
    )
    .unwrap();
    match reader.take() {
        Err(SnapshotError::Parse(e)) => {
            assert_eq!(
                (e.file.as_str(), e.line),
                ("/sys/devices/system/cpu/online", 2)
            );
        }
        other => panic!("expected a parse error, got {other:?}"),
    }
    std::fs::remove_file(dir.path().join("sys/devices/system/cpu/online")).unwrap();
    match reader.take() {
        Err(SnapshotError::Read(e)) => assert!(e.path.ends_with("sys/devices/system/cpu/online")),
        other => panic!("expected a read error, got {other:?}"),
    }
    std::fs::write(dir.path().join("sys/devices/system/cpu/online"), "0-1\n").unwrap();
    std::fs::write(dir.path().join("sys/kernel/kexec_crash_loaded"), "yes\n").unwrap();
    match reader.take() {
        Err(SnapshotError::Parse(e)) => assert_eq!(e.file, "/sys/kernel/kexec_crash_loaded"),
        other => panic!("expected a parse error, got {other:?}"),
    }
}

#[test]
fn open_fails_without_iomem() {
    let dir = tempfile::tempdir().unwrap();
    assert!(matches!(
        SnapshotReader::open(Sysroot::new(dir.path())),
        Err(SnapshotError::Read(_))
    ));
}

#[test]
fn a_kept_reader_rereads_16k_ranges_and_16k_blocks_the_same() {
    // How long this takes is measured by the benchmarks (benches/), not asserted here.
    let dir = tempfile::tempdir().unwrap();
    let host = SparseHost {
        plugged_blocks: 16_384,
        virtio_memory_dirs: 16_384,
    };
    host.write(dir.path()).unwrap();
    let mut reader = SnapshotReader::open(Sysroot::new(dir.path())).unwrap();
    let first = reader.take().unwrap();
    assert_eq!(first.ranges.len(), 3 + 16_384);
    assert_eq!(first.memory_blocks, 32 + 16_384);
    assert_eq!(reader.take().unwrap(), first);
}

#[test]
fn a_crash_hotplug_zero_after_a_one_is_reread_before_it_is_believed() {
    use kdump_hotplugd::core::hotplug_flag::ZeroConfirmation;
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    let dir = tempfile::tempdir().unwrap();
    SparseHost {
        plugged_blocks: 4,
        virtio_memory_dirs: 0,
    }
    .write(dir.path())
    .unwrap();
    let flag = dir.path().join("sys/devices/system/memory/crash_hotplug");
    let pauses = Arc::new(Mutex::new(Vec::new()));
    let recorded = pauses.clone();
    let flag_during_pause = flag.clone();
    let mut reader = SnapshotReader::open(Sysroot::new(dir.path()))
        .unwrap()
        .with_zero_confirmation(
            ZeroConfirmation {
                rereads: 3,
                interval: Duration::from_millis(20),
            },
            Box::new(move |interval| {
                let mut pauses = recorded.lock().unwrap();
                pauses.push(interval);
                // The lock is free again by the second re-read.
                if pauses.len() == 2 {
                    std::fs::write(&flag_during_pause, "1\n").unwrap();
                }
            }),
        );
    assert!(reader.take().unwrap().crash.kernel_updates_memory);
    // A contended read: 0 once, 1 again on the second re-read.
    std::fs::write(&flag, "0\n").unwrap();
    assert!(reader.take().unwrap().crash.kernel_updates_memory);
    assert_eq!(pauses.lock().unwrap().len(), 2);
    // A lasting 0 is believed after the bounded re-reads, and then not re-read again.
    pauses.lock().unwrap().clear();
    let mut reader = SnapshotReader::open(Sysroot::new(dir.path()))
        .unwrap()
        .with_zero_confirmation(
            ZeroConfirmation {
                rereads: 3,
                interval: Duration::from_millis(20),
            },
            {
                let recorded = pauses.clone();
                Box::new(move |interval| recorded.lock().unwrap().push(interval))
            },
        );
    assert!(reader.take().unwrap().crash.kernel_updates_memory);
    std::fs::write(&flag, "0\n").unwrap();
    assert!(!reader.take().unwrap().crash.kernel_updates_memory);
    assert_eq!(*pauses.lock().unwrap(), vec![Duration::from_millis(20); 3]);
    assert!(!reader.take().unwrap().crash.kernel_updates_memory);
    assert_eq!(pauses.lock().unwrap().len(), 3, "0 after 0 is not re-read");
    // With no crash kernel loaded, 0 is the answer at once.
    std::fs::write(&flag, "1\n").unwrap();
    assert!(reader.take().unwrap().crash.kernel_updates_memory);
    std::fs::write(dir.path().join("sys/kernel/kexec_crash_loaded"), "0\n").unwrap();
    std::fs::write(&flag, "0\n").unwrap();
    assert!(!reader.take().unwrap().crash.kernel_updates_memory);
    assert_eq!(pauses.lock().unwrap().len(), 3);
}

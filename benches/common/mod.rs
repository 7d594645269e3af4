//! What every benchmark measures, shared so that criterion, the instruction counts and the udev-rule driver
//! work on the same input.
//!
//! The storm: a 1 TiB virtio-mem add in 128 MiB blocks, `add` then `online` per block, 16,384 uevents in the
//! kernel's wire format. The snapshot: the sparse fixture with N plugged blocks, each its own range.
#![allow(dead_code)] // Each benchmark uses a different part.

use std::path::Path;
use std::time::{Duration, Instant};

use kdump_hotplugd::config::{DebounceTimings, Settings};
use kdump_hotplugd::core::debounce::Debouncer;
use kdump_hotplugd::core::decide::{decide, Assessment, LoadedHeader, Triggers};
use kdump_hotplugd::core::model::{DomainEvent, HostSnapshot, HotplugAction};
use kdump_hotplugd::core::uevent_record::{
    encode_kernel_message, parse_kernel_message, UeventBatch, Watch,
};
use kdump_hotplugd::host::snapshot::SnapshotReader;
use kdump_hotplugd::host::sysroot::Sysroot;

#[path = "../../tests/fixtures/sparse_host.rs"]
mod sparse_host;

pub use sparse_host::SparseHost;

/// 1 TiB in 128 MiB blocks.
pub const BLOCKS: u64 = 8192;
/// The first block of the device region above 4 GiB of boot RAM (0x1_8000_0000 / 128 MiB).
pub const FIRST_BLOCK: u64 = 48;
/// Uevents per socket read, as the simulated host delivers them.
pub const BATCH: usize = 256;
/// The snapshot sizes: N ranges and N memory blocks.
pub const SNAPSHOT_SIZES: [u64; 4] = [1024, 4096, 16_384, 65_536];

/// The first `blocks` blocks of the storm, in the order the kernel sends their uevents.
pub fn storm(blocks: u64) -> Vec<Vec<u8>> {
    let mut messages = Vec::with_capacity(2 * blocks as usize);
    for index in FIRST_BLOCK..FIRST_BLOCK + blocks {
        for action in [HotplugAction::Add, HotplugAction::Online] {
            let seqnum = messages.len() as u64 + 1;
            messages.push(encode_kernel_message(
                &DomainEvent::MemoryBlock { index, action },
                seqnum,
            ));
        }
    }
    messages
}

/// What the edge and the owner loop do with a storm: parse each message into a batch per socket read, then hand
/// each batch to the debouncer at one clock reading.
pub fn handle_storm(messages: &[Vec<u8>], mut debouncer: Debouncer, start: Instant) -> Debouncer {
    let watch = Watch::default();
    for (i, chunk) in messages.chunks(BATCH).enumerate() {
        let mut batch = UeventBatch::default();
        for message in chunk {
            batch.push(parse_kernel_message(message, watch));
        }
        let now = start + Duration::from_millis(i as u64);
        debouncer.on_events(now, batch.events.len() as u64);
    }
    debouncer
}

pub fn new_debouncer() -> Debouncer {
    Debouncer::new(DebounceTimings::default())
}

/// Ranges of the fixture's boot memory, below the virtio-mem device.
const BOOT_RANGES: usize = 3;

/// A generated sparse host with its reader open, and the header loaded before the device plugged anything.
pub struct SnapshotFixture {
    /// Keeps a generated tree alive.
    tree: Option<tempfile::TempDir>,
    pub reader: SnapshotReader,
    pub loaded: LoadedHeader,
    pub triggers: Triggers,
    pub settings: Settings,
}

impl SnapshotFixture {
    /// Writes the tree to tmpfs when there is one: sysfs and procfs live in memory too, and 64k block
    /// directories on a shared disk take minutes to create.
    pub fn generate(ranges: u64) -> Self {
        let mut builder = tempfile::Builder::new();
        builder.prefix("kdump-hotplugd-bench-");
        let shm = Path::new("/dev/shm");
        let root = if shm.is_dir() {
            builder.tempdir_in(shm)
        } else {
            builder.tempdir()
        }
        .expect("a temporary directory");
        SparseHost {
            plugged_blocks: ranges,
            virtio_memory_dirs: ranges,
        }
        .write(root.path())
        .expect("the sparse fixture");
        let fixture = Self::open(root.path(), ranges);
        SnapshotFixture {
            tree: Some(root),
            ..fixture
        }
    }

    /// Opens a tree [`Self::generate`] wrote, kept alive elsewhere (another process's).
    pub fn open(root: &Path, ranges: u64) -> Self {
        let mut reader = SnapshotReader::open(Sysroot::new(root)).expect("the fixture opens");
        let first = reader.take().expect("the fixture reads");
        assert_eq!(first.ranges.len() as u64, ranges + BOOT_RANGES as u64);
        let boot_blocks = SparseHost::boot_block_indices().count() as u64;
        assert_eq!(first.memory_blocks as u64, ranges + boot_blocks);
        let loaded = LoadedHeader {
            ranges: first.ranges[..BOOT_RANGES].to_vec(),
            cpus: first.present_cpus.clone(),
        };
        SnapshotFixture {
            tree: None,
            reader,
            loaded,
            triggers: Triggers::default(),
            settings: Settings::default(),
        }
    }

    /// Hands over the generated tree, so that another process can open it; removed when dropped.
    pub fn into_tree(self) -> Option<tempfile::TempDir> {
        self.tree
    }

    /// What the owner loop does once per quiet burst: a snapshot, and the decision on it.
    pub fn take_and_decide(&mut self) -> (HostSnapshot, Assessment) {
        let snapshot = self.reader.take().expect("the fixture reads");
        let assessment = decide(
            Some(&self.loaded),
            &snapshot,
            &self.triggers,
            &self.settings.decision_policy(),
        );
        (snapshot, assessment)
    }
}

//! The simulated twins of the edges: a host whose sysroot changes the way a real kernel's `/proc` and `/sys` do
//! and which emits the matching uevents (in the kernel's wire format, parsed by the real parser), a loader that
//! records what it loads and can be slow or fail, and a notifier that records notifications.
//!
//! The simulated kernel follows the real one where the daemon depends on it: `/proc/iomem` changes when a
//! block is added (before its uevent), virtio-mem merges adjacent plugged blocks into one
//! `System RAM (virtio_mem)` resource, and a kernel with crash hotplug support rewrites the header in place on
//! each change unless it no longer fits the buffer sized at load time, which it only logs (kernel/crash_core.c,
//! arch/x86/kernel/crash.c).

pub mod rules;
pub mod run;

use std::collections::{BTreeSet, HashMap};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::core::decide::LoaderChoice;
use crate::core::kmsg_record;
use crate::core::model::{DomainEvent, HotplugAction, MemRange};
use crate::core::uevent_record::{self as uevent, UeventBatch, Watch};
use crate::edge::{
    BoxFuture, EventSource, LoadError, LoadReport, LoadRequest, Loader, Notification, Notifier,
};
use crate::messages::{KernelLogSender, UeventSender};

const MIB: u64 = 1 << 20;
const GIB: u64 = 1 << 30;
/// x86's memory block size below 64 GiB of boot memory (`probe_memory_block_size`).
pub const BLOCK_SIZE: u64 = 128 * MIB;
/// Where the simulated virtio-mem device's region starts: above 4 GiB of boot RAM and the PCI hole.
const DEVICE_BASE: u64 = 0x1_8000_0000;
const BOOT_CPUS: u32 = 2;

/// The header record kept in memory: what the runtime directory holds across a restart.
#[derive(Debug, Default)]
pub struct SimulatedHeaderRecords {
    pub text: Mutex<Option<String>>,
}

impl SimulatedHeaderRecords {
    pub fn holding(text: Option<String>) -> Arc<Self> {
        Arc::new(SimulatedHeaderRecords {
            text: Mutex::new(text),
        })
    }

    pub fn text(&self) -> Option<String> {
        self.text.lock().unwrap().clone()
    }
}

impl crate::edge::HeaderRecords for SimulatedHeaderRecords {
    fn location(&self) -> String {
        "simulated runtime directory/loaded-header".to_owned()
    }
    fn read(&self) -> std::io::Result<Option<String>> {
        Ok(self.text())
    }
    fn write(&self, text: &str) -> std::io::Result<()> {
        *self.text.lock().unwrap() = Some(text.to_owned());
        Ok(())
    }
}

/// The simulated kernel's crash hotplug support.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SimKernel {
    /// `CONFIG_CRASH_HOTPLUG`: the kernel rewrites the header itself when loaded with `kexec_file_load`.
    pub crash_hotplug: bool,
    pub nr_cpus_default: u32,
    pub max_memory_ranges: u32,
}

impl SimKernel {
    /// Debian 12's 6.1: no crash hotplug, the header goes stale.
    pub const STALE_HEADER: SimKernel = SimKernel {
        crash_hotplug: false,
        nr_cpus_default: 8192,
        max_memory_ranges: 8192,
    };
    /// 6.6 and later with the defaults (`CONFIG_CRASH_MAX_MEMORY_RANGES=8192`), here with NR_CPUS 64.
    pub const SELF_UPDATING: SimKernel = SimKernel {
        crash_hotplug: true,
        nr_cpus_default: 64,
        max_memory_ranges: 8192,
    };

    /// `crash_elfcorehdr_size`: `(2 + NR_CPUS_DEFAULT + CRASH_MAX_MEMORY_RANGES) × sizeof(Elf64_Phdr)`
    /// (`arch_crash_get_elfcorehdr_size`, arch/x86/kernel/crash.c).
    pub fn elfcorehdr_size(&self) -> u64 {
        kernel_rules::phdrs_bytes(
            2 + u64::from(self.nr_cpus_default) + u64::from(self.max_memory_ranges),
        )
    }

    /// The elfcorehdr segment a `kexec_file_load` reserves, in bytes: with crash hotplug, room for the maximum
    /// (`crash_load_segments`), else exactly the header built for `ranges` (the segment is `bufsz`).
    pub fn segment_memsz(&self, possible_cpus: u64, ranges: u64) -> u64 {
        if self.crash_hotplug {
            kernel_rules::page_align(kernel_rules::SIZEOF_ELF64_EHDR + self.elfcorehdr_size())
        } else {
            kernel_rules::header_elfsz(possible_cpus, ranges)
        }
    }
}

/// The simulated kernel's own arithmetic, written from the kernel's rules and deliberately not taken from the
/// decision (`core::decide`): a capacity mistake there must show up as a difference here, not be copied.
mod kernel_rules {
    /// `sizeof(Elf64_Ehdr)` and `sizeof(Elf64_Phdr)` for ELFCLASS64 (include/uapi/linux/elf.h).
    pub const SIZEOF_ELF64_EHDR: u64 = 64;
    pub const SIZEOF_ELF64_PHDR: u64 = 56;
    /// x86-64 `PAGE_SIZE`; also `ELF_CORE_HEADER_ALIGN` (include/linux/crash_core.h: 4096).
    pub const PAGE_SIZE: u64 = 4096;

    pub fn phdrs_bytes(phdrs: u64) -> u64 {
        phdrs * SIZEOF_ELF64_PHDR
    }

    /// `kexec_add_buffer` (kernel/kexec_file.c) rounds `memsz` up to whole pages; `ALIGN()`.
    pub fn page_align(bytes: u64) -> u64 {
        bytes.div_ceil(PAGE_SIZE) * PAGE_SIZE
    }

    /// `crash_prepare_elf64_headers` (kernel/crash_core.c): one PT_NOTE per possible CPU
    /// (`for_each_possible_cpu`), one for vmcoreinfo, one PT_LOAD for the kernel text map, one PT_LOAD per
    /// memory range; `elf_sz = sizeof(Elf64_Ehdr) + nr_phdr * sizeof(Elf64_Phdr)`, then
    /// `ALIGN(elf_sz, ELF_CORE_HEADER_ALIGN)`.
    pub fn header_elfsz(possible_cpus: u64, ranges: u64) -> u64 {
        let nr_phdr = possible_cpus + 1 + 1 + ranges;
        page_align(SIZEOF_ELF64_EHDR + phdrs_bytes(nr_phdr))
    }
}

/// One thing that happens to the simulated host.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Step {
    /// virtio-mem plugs `bytes` in 128 MiB blocks, each `add` then `online`; `sparse` plugs every second block.
    Plug {
        bytes: u64,
        sparse: bool,
    },
    /// virtio-mem unplugs `bytes` from the top: `offline` then `remove` per block.
    Unplug {
        bytes: u64,
    },
    AddCpus(u32),
    RemoveCpus(u32),
    /// Uevents for memory blocks that no parser can make sense of.
    Malformed(u32),
    /// Nothing happens for this long.
    Pause(Duration),
    /// Nothing happens again, and no timer is armed for it: the daemon idles until it is stopped (for counting
    /// idle wake-ups).
    StayQuiet,
}

/// How the simulated loader behaves.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LoaderBehaviour {
    pub delay: Duration,
    /// Fail this many loads (retryably) before succeeding.
    pub failures: u32,
    /// Panic in this many loads (after any failures) before succeeding: a loader bug, as the daemon sees it.
    pub panics: u32,
}

#[derive(Clone, Debug)]
pub struct Scenario {
    pub name: &'static str,
    pub description: &'static str,
    pub kernel: SimKernel,
    pub steps: Vec<Step>,
    pub loader: LoaderBehaviour,
    /// Uevents the simulated socket delivers per read, and the pause between reads: the simulator's own
    /// settings (a real socket's batches depend on its buffer and on how fast the daemon reads).
    pub batch_size: usize,
    pub batch_interval: Duration,
}

impl Scenario {
    fn new(
        name: &'static str,
        description: &'static str,
        kernel: SimKernel,
        steps: Vec<Step>,
    ) -> Self {
        Scenario {
            name,
            description,
            kernel,
            steps,
            loader: LoaderBehaviour {
                delay: Duration::from_millis(200),
                failures: 0,
                panics: 0,
            },
            batch_size: 256,
            batch_interval: Duration::from_millis(1),
        }
    }

    pub fn all() -> Vec<Scenario> {
        let plug = |gib: u64| Step::Plug {
            bytes: gib * GIB,
            sparse: false,
        };
        vec![
            Scenario::new(
                "virtio-mem-1t",
                "a 6.1-like kernel (stale header) gets 1 TiB from virtio-mem in 128 MiB blocks: 16,384 uevents",
                SimKernel::STALE_HEADER,
                vec![plug(1024)],
            ),
            Scenario::new(
                "virtio-mem-8t",
                "the same with 8 TiB: 131,072 uevents",
                SimKernel::STALE_HEADER,
                vec![plug(8192)],
            ),
            Scenario::new(
                "self-updating",
                "a 6.6+ kernel keeps the header current itself: 64 GiB plugged, no reload needed",
                SimKernel::SELF_UPDATING,
                vec![plug(64)],
            ),
            Scenario::new(
                "sparse-overflow",
                "a 6.6+ kernel gets 10,240 sparse virtio-mem blocks (every second one): more ranges than its \
                 header buffer holds (sized for 8192 ranges and 64 CPUs: 8,254 ranges fit with 8 CPUs), so its in-place \
                 update silently keeps a stale header",
                SimKernel::SELF_UPDATING,
                vec![Step::Plug { bytes: 1280 * GIB, sparse: true }],
            ),
            Scenario::new(
                "sparse-stale",
                "a 6.1-like kernel (no crash hotplug) gets 9,000 sparse virtio-mem blocks: 9,003 ranges, which \
                 kexec_file_load sizes its header to (no buffer to outgrow)",
                SimKernel::STALE_HEADER,
                vec![Step::Plug { bytes: 1125 * GIB, sparse: true }],
            ),
            Scenario::new(
                "cpu-hotplug",
                "two CPUs hot-added, then one removed, on a stale-header kernel",
                SimKernel::STALE_HEADER,
                vec![Step::AddCpus(2), Step::Pause(Duration::from_secs(3)), Step::RemoveCpus(1)],
            ),
            Scenario {
                loader: LoaderBehaviour { delay: Duration::from_secs(3), failures: 0, panics: 0 },
                ..Scenario::new(
                    "slow-loader",
                    "uevents keep arriving while a slow (3 s) reload is in flight: exactly one follow-up reload",
                    SimKernel::STALE_HEADER,
                    vec![plug(64), Step::Pause(Duration::from_millis(1500)), plug(64)],
                )
            },
            Scenario {
                loader: LoaderBehaviour { delay: Duration::from_millis(200), failures: 2, panics: 0 },
                ..Scenario::new(
                    "failing-loader",
                    "the loader fails twice: retried with backoff, the failures reported, then loaded",
                    SimKernel::STALE_HEADER,
                    vec![plug(16)],
                )
            },
            Scenario::new(
                "idle",
                "1 TiB plugged, then nothing until the daemon is stopped (SIGTERM): for counting idle wake-ups",
                SimKernel::STALE_HEADER,
                vec![plug(1024), Step::StayQuiet],
            ),
            Scenario::new(
                "malformed",
                "a burst with malformed uevents mixed in: counted and skipped",
                SimKernel::STALE_HEADER,
                vec![plug(4), Step::Malformed(5), plug(4)],
            ),
        ]
    }

    pub fn named(name: &str) -> Option<Scenario> {
        Scenario::all().into_iter().find(|s| s.name == name)
    }

    pub fn uevent_count(&self) -> u64 {
        self.steps
            .iter()
            .map(|step| match step {
                Step::Plug { bytes, .. } => 2 * (bytes / BLOCK_SIZE),
                Step::Unplug { bytes } => 2 * (bytes / BLOCK_SIZE),
                Step::AddCpus(n) | Step::RemoveCpus(n) => 2 * u64::from(*n),
                Step::Malformed(n) => u64::from(*n),
                Step::Pause(_) | Step::StayQuiet => 0,
            })
            .sum()
    }
}

/// The simulated kernel's state; rendered into the sysroot after every change.
struct HostModel {
    root: PathBuf,
    kernel: SimKernel,
    /// Plugged virtio-mem blocks, numbered from the device's base.
    plugged: BTreeSet<u64>,
    /// Next block a plug uses; a sparse plug leaves a hole after each block.
    next_block: u64,
    present_cpus: BTreeSet<u32>,
    possible_cpus: u32,
    crash_loaded: bool,
    /// Loaded with `kexec_file_load` on a kernel with crash hotplug: the kernel keeps the header current.
    kernel_updates_header: bool,
    /// What the loaded crash kernel's header holds: the ranges a crash would dump.
    header: Vec<MemRange>,
    /// Kernel log lines not yet read by the (simulated) kmsg watcher.
    kmsg: Vec<String>,
    /// Batches handed to the daemon: the simulated socket reads, `batch_size` uevents each (a setting of the
    /// simulator, not a property of any kernel).
    batches_delivered: u64,
    /// What each file was last rendered with: a storm re-renders after every socket read, and rewriting the
    /// files that did not change made the simulated kernel most of a simulated run's CPU time.
    rendered: HashMap<&'static str, String>,
}

/// Boot memory of a small q35 guest: 2 GiB below 4 GiB, 2 GiB above; 256 MiB reserved for the crash kernel.
const BOOT_IOMEM: &str = "\
00000000-00000fff : Reserved
00001000-0009fbff : System RAM
0009fc00-0009ffff : Reserved
000a0000-000bffff : PCI Bus 0000:00
000f0000-000fffff : Reserved
  000f0000-000fffff : System ROM
00100000-7ffdffff : System RAM
  01000000-01ffffff : Kernel code
  02000000-0267ffff : Kernel rodata
  02800000-02a3ffff : Kernel data
  02f00000-033fffff : Kernel bss
  6b000000-7affffff : Crash kernel
7ffe0000-7fffffff : Reserved
80000000-afffffff : PCI Bus 0000:00
b0000000-bfffffff : PCI MMCONFIG 0000 [bus 00-ff]
  b0000000-bfffffff : Reserved
c0000000-febfffff : PCI Bus 0000:00
fed1c000-fed1ffff : Reserved
feffc000-feffffff : Reserved
fffc0000-ffffffff : Reserved
100000000-17fffffff : System RAM
";

/// The crash ranges of [`BOOT_IOMEM`]: low 1 MiB dropped, the crash kernel cut out.
fn boot_ranges() -> Vec<MemRange> {
    vec![
        MemRange::new(0x0010_0000, 0x6aff_ffff),
        MemRange::new(0x7b00_0000, 0x7ffd_ffff),
        MemRange::new(0x1_0000_0000, 0x1_7fff_ffff),
    ]
}

impl HostModel {
    fn new(root: PathBuf, kernel: SimKernel) -> Self {
        let mut model = HostModel {
            root,
            kernel,
            plugged: BTreeSet::new(),
            next_block: 0,
            present_cpus: (0..BOOT_CPUS).collect(),
            possible_cpus: 8,
            // The distro's kdump service loaded it at boot, with kexec_file_load (`kexec -s -p`).
            crash_loaded: true,
            kernel_updates_header: kernel.crash_hotplug,
            header: Vec::new(),
            kmsg: Vec::new(),
            batches_delivered: 0,
            rendered: HashMap::new(),
        };
        model.header = model.ranges();
        model
    }

    /// Runs of adjacent plugged blocks: virtio-mem merges them into one resource.
    fn plugged_runs(&self) -> Vec<(u64, u64)> {
        let mut runs: Vec<(u64, u64)> = Vec::new();
        for &block in &self.plugged {
            match runs.last_mut() {
                Some((_, end)) if *end + 1 == block => *end = block,
                _ => runs.push((block, block)),
            }
        }
        runs
    }

    fn run_range((first, last): (u64, u64)) -> MemRange {
        MemRange::new(
            DEVICE_BASE + first * BLOCK_SIZE,
            DEVICE_BASE + (last + 1) * BLOCK_SIZE - 1,
        )
    }

    /// The ranges the kernel would put in the header now.
    fn ranges(&self) -> Vec<MemRange> {
        let mut ranges = boot_ranges();
        ranges.extend(self.plugged_runs().into_iter().map(Self::run_range));
        ranges
    }

    fn iomem(&self) -> String {
        let runs = self.plugged_runs();
        let mut text = String::with_capacity(BOOT_IOMEM.len() + runs.len() * 48);
        text.push_str(BOOT_IOMEM);
        if let Some(&(_, last)) = runs.last() {
            let device_end = DEVICE_BASE + (self.next_block.max(last + 1)) * BLOCK_SIZE - 1;
            let _ = writeln!(text, "{DEVICE_BASE:x}-{device_end:x} : virtio0");
            for run in runs {
                let range = Self::run_range(run);
                let _ = writeln!(
                    text,
                    "  {:x}-{:x} : System RAM (virtio_mem)",
                    range.start, range.end
                );
            }
        }
        text
    }

    fn cpu_list(cpus: impl IntoIterator<Item = u32>) -> String {
        let set: crate::core::model::CpuSet = cpus.into_iter().collect();
        format!("{set}\n")
    }

    /// The kernel's in-place update after a hotplug: refused, and only logged, when the header outgrows the
    /// buffer sized at load time (`arch_crash_handle_hotplug_event`).
    fn kernel_updates_after_hotplug(&mut self) {
        if !(self.crash_loaded && self.kernel_updates_header) {
            return;
        }
        let ranges = self.ranges();
        let possible = u64::from(self.possible_cpus);
        let elfsz = kernel_rules::header_elfsz(possible, ranges.len() as u64);
        let memsz = self.kernel.segment_memsz(possible, ranges.len() as u64);
        if elfsz > memsz {
            self.kmsg.push(format!(
                "crash hp: update elfcorehdr elfsz {elfsz} > memsz {memsz}"
            ));
        } else {
            self.header = ranges;
        }
    }

    fn write(&mut self, path: &'static str, contents: &str) -> std::io::Result<()> {
        if self.rendered.get(path).is_some_and(|last| last == contents) {
            return Ok(());
        }
        self.write_file(path, contents)?;
        self.rendered.insert(path, contents.to_owned());
        Ok(())
    }

    fn write_file(&self, path: &str, contents: &str) -> std::io::Result<()> {
        let target = self.root.join(path);
        if let Some(dir) = target.parent() {
            std::fs::create_dir_all(dir)?;
        }
        if path == "proc/iomem" {
            // Rewritten in place, like the kernel's file: the daemon keeps it open and re-reads it from offset
            // 0, so a renamed replacement would never be seen.
            return std::fs::write(&target, contents);
        }
        // Replace atomically: a reader never sees half a file.
        let temporary = target.with_extension("sim-tmp");
        std::fs::write(&temporary, contents)?;
        std::fs::rename(&temporary, &target)
    }

    fn render(&mut self) -> std::io::Result<()> {
        let flag = |on: bool| if on { "1\n" } else { "0\n" };
        let updates = self.crash_loaded && self.kernel_updates_header;
        self.write("proc/iomem", &self.iomem())?;
        self.write(
            "sys/devices/system/memory/block_size_bytes",
            &format!("{BLOCK_SIZE:x}\n"),
        )?;
        self.write(
            "sys/devices/system/cpu/possible",
            &Self::cpu_list(0..self.possible_cpus),
        )?;
        self.write(
            "sys/devices/system/cpu/present",
            &Self::cpu_list(self.present_cpus.iter().copied()),
        )?;
        self.write(
            "sys/devices/system/cpu/online",
            &Self::cpu_list(self.present_cpus.iter().copied()),
        )?;
        self.write("sys/kernel/kexec_crash_loaded", flag(self.crash_loaded))?;
        self.write("sys/kernel/kexec_crash_size", &format!("{}\n", 256 * MIB))?;
        if self.kernel.crash_hotplug {
            self.write("sys/devices/system/memory/crash_hotplug", flag(updates))?;
            self.write("sys/devices/system/cpu/crash_hotplug", flag(updates))?;
            self.write(
                "sys/kernel/crash_elfcorehdr_size",
                &format!("{}\n", self.kernel.elfcorehdr_size()),
            )?;
        }
        Ok(())
    }
}

/// One uevent of a step, put in the kernel's wire format only when it is sent: a storm's worth of encoded
/// messages made up most of an 8 TiB run's memory.
enum StepUevent {
    Event { event: DomainEvent, seqnum: u64 },
    Raw(Vec<u8>),
}

impl StepUevent {
    fn wire(&self) -> Vec<u8> {
        match self {
            StepUevent::Event { event, seqnum } => uevent::encode_kernel_message(event, *seqnum),
            StepUevent::Raw(message) => message.clone(),
        }
    }
}

/// A host in a temporary sysroot, changed by a [`Scenario`]'s steps.
#[derive(Clone)]
pub struct SimulatedHost {
    model: Arc<Mutex<HostModel>>,
    root: Arc<tempfile::TempDir>,
    scenario: Scenario,
    initial_ranges: Vec<MemRange>,
    /// The simulated `/dev/kmsg` watcher's way into the owner loop (the real one is a separate producer too).
    kernel_log: Option<KernelLogSender>,
}

/// What the simulated crash kernel would dump, compared with what the host has.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DumpCoverage {
    pub host_ranges: Vec<MemRange>,
    pub header_ranges: Vec<MemRange>,
    pub crash_loaded: bool,
}

impl DumpCoverage {
    /// Ranges the host has that a crash now would not dump.
    pub fn missing(&self) -> Vec<MemRange> {
        if !self.crash_loaded {
            return self.host_ranges.clone();
        }
        let header: BTreeSet<_> = self.header_ranges.iter().collect();
        self.host_ranges
            .iter()
            .filter(|r| !header.contains(r))
            .copied()
            .collect()
    }
}

impl SimulatedHost {
    pub fn new(scenario: Scenario) -> std::io::Result<Self> {
        let root = tempfile::Builder::new()
            .prefix("kdump-hotplugd-sim-")
            .tempdir()?;
        let mut model = HostModel::new(root.path().to_path_buf(), scenario.kernel);
        model.render()?;
        let initial_ranges = model.ranges();
        Ok(SimulatedHost {
            model: Arc::new(Mutex::new(model)),
            root: Arc::new(root),
            scenario,
            initial_ranges,
            kernel_log: None,
        })
    }

    /// Findings of the simulated kernel log go to `sender`; without one they are dropped.
    pub fn with_kernel_log(mut self, sender: KernelLogSender) -> Self {
        self.kernel_log = Some(sender);
        self
    }

    pub fn sysroot(&self) -> &Path {
        self.root.path()
    }

    pub fn scenario(&self) -> &Scenario {
        &self.scenario
    }

    fn model(&self) -> std::sync::MutexGuard<'_, HostModel> {
        // A panic while holding the lock only happens in a failing test; the data is still usable.
        self.model
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub fn coverage(&self) -> DumpCoverage {
        let model = self.model();
        DumpCoverage {
            host_ranges: model.ranges(),
            header_ranges: model.header.clone(),
            crash_loaded: model.crash_loaded,
        }
    }

    /// Uevent batches the simulated socket delivered so far (one per simulated read).
    pub fn batches_delivered(&self) -> u64 {
        self.model().batches_delivered
    }

    /// Ranges the host has now that it did not have at the start.
    pub fn new_ranges(&self) -> Vec<MemRange> {
        let initial: BTreeSet<_> = self.initial_ranges.iter().collect();
        self.model()
            .ranges()
            .into_iter()
            .filter(|r| !initial.contains(r))
            .collect()
    }

    /// The loader that goes with this host: loading changes the host's crash state as the kernel would.
    pub fn loader(&self, method: LoaderChoice) -> Arc<SimulatedLoader> {
        Arc::new(SimulatedLoader::new(
            Some(self.clone()),
            self.scenario.loader,
            method,
        ))
    }

    fn load_crash_kernel(&self, request: &LoadRequest) -> std::io::Result<()> {
        let mut model = self.model();
        if request.method == LoaderChoice::Configured && model.kernel.crash_hotplug {
            // kexec_file_load builds the header in the kernel; with crash hotplug its segment is sized for the
            // maximum, and a header larger than that fails `kexec_add_buffer` (EINVAL) after the old image is
            // already gone (kernel/kexec_file.c frees it first).
            let possible = u64::from(model.possible_cpus);
            let ranges = request.ranges.len() as u64;
            if kernel_rules::header_elfsz(possible, ranges)
                > model.kernel.segment_memsz(possible, ranges)
            {
                model.crash_loaded = false;
                model.header.clear();
                model.render()?;
                return Err(std::io::Error::from_raw_os_error(libc::EINVAL));
            }
        }
        model.crash_loaded = true;
        model.header = (*request.ranges).clone();
        // kexec_file_load gets the kernel's in-place updates; a kexec_load without the hotplug flag does not.
        model.kernel_updates_header =
            model.kernel.crash_hotplug && request.method == LoaderChoice::Configured;
        model.render()
    }

    /// Applies one event to the model, as the kernel does before it emits the uevent.
    fn apply(model: &mut HostModel, event: &DomainEvent) {
        match *event {
            DomainEvent::MemoryBlock {
                index,
                action: HotplugAction::Add,
            } => {
                model.plugged.insert(index);
            }
            DomainEvent::MemoryBlock {
                index,
                action: HotplugAction::Remove,
            } => {
                model.plugged.remove(&index);
            }
            DomainEvent::Cpu {
                id,
                action: HotplugAction::Add,
            } => {
                model.present_cpus.insert(id);
            }
            DomainEvent::Cpu {
                id,
                action: HotplugAction::Remove,
            } => {
                model.present_cpus.remove(&id);
            }
            _ => {}
        }
    }

    /// The uevents of one step, in the order the kernel emits them, as wire messages.
    #[cfg(test)]
    fn step_messages(model: &mut HostModel, step: &Step) -> Vec<Vec<u8>> {
        Self::step_uevents(model, step)
            .iter()
            .map(StepUevent::wire)
            .collect()
    }

    /// The uevents of one step, in the order the kernel emits them.
    fn step_uevents(model: &mut HostModel, step: &Step) -> Vec<StepUevent> {
        let mut events = Vec::new();
        match *step {
            Step::Plug { bytes, sparse } => {
                for _ in 0..bytes / BLOCK_SIZE {
                    let block = model.next_block;
                    model.next_block += if sparse { 2 } else { 1 };
                    events.push(DomainEvent::MemoryBlock {
                        index: block,
                        action: HotplugAction::Add,
                    });
                    events.push(DomainEvent::MemoryBlock {
                        index: block,
                        action: HotplugAction::Online,
                    });
                }
            }
            Step::Unplug { bytes } => {
                let victims: Vec<u64> = model
                    .plugged
                    .iter()
                    .rev()
                    .take((bytes / BLOCK_SIZE) as usize)
                    .copied()
                    .collect();
                for block in victims {
                    events.push(DomainEvent::MemoryBlock {
                        index: block,
                        action: HotplugAction::Offline,
                    });
                    events.push(DomainEvent::MemoryBlock {
                        index: block,
                        action: HotplugAction::Remove,
                    });
                }
            }
            Step::AddCpus(n) => {
                let first = model.present_cpus.iter().max().map_or(0, |m| m + 1);
                for id in first..first + n {
                    events.push(DomainEvent::Cpu {
                        id,
                        action: HotplugAction::Add,
                    });
                    events.push(DomainEvent::Cpu {
                        id,
                        action: HotplugAction::Online,
                    });
                }
            }
            Step::RemoveCpus(n) => {
                let victims: Vec<u32> = model
                    .present_cpus
                    .iter()
                    .rev()
                    .take(n as usize)
                    .copied()
                    .collect();
                for id in victims {
                    events.push(DomainEvent::Cpu {
                        id,
                        action: HotplugAction::Offline,
                    });
                    events.push(DomainEvent::Cpu {
                        id,
                        action: HotplugAction::Remove,
                    });
                }
            }
            Step::Malformed(n) => {
                return (0..n)
                    .map(|i| {
                        StepUevent::Raw(format!("online@/devices/system/memory/memoryX{i}\0ACTION=online\0DEVPATH=/devices/system/memory/memoryX{i}\0SUBSYSTEM=memory\0")
                            .into_bytes())
                    })
                    .collect();
            }
            Step::Pause(_) | Step::StayQuiet => {}
        }
        events
            .into_iter()
            .enumerate()
            .map(|(seq, event)| StepUevent::Event {
                event,
                seqnum: seq as u64,
            })
            .collect()
    }

    async fn run_steps(self, events: UeventSender) -> std::io::Result<()> {
        let watch = Watch::default();
        let scenario = self.scenario.clone();
        for step in &scenario.steps {
            match step {
                Step::Pause(duration) => {
                    tokio::time::sleep(*duration).await;
                    continue;
                }
                Step::StayQuiet => std::future::pending::<()>().await,
                _ => {}
            }
            let uevents = Self::step_uevents(&mut self.model(), step);
            for chunk in uevents.chunks(scenario.batch_size.max(1)) {
                let mut batch = UeventBatch::default();
                let findings = {
                    let mut model = self.model();
                    for pending in chunk {
                        let parsed = uevent::parse_kernel_message(&pending.wire(), watch);
                        if let Ok(uevent::Classified::Event(event)) = &parsed {
                            Self::apply(&mut model, event);
                        }
                        batch.push(parsed);
                    }
                    model.kernel_updates_after_hotplug();
                    model.render()?;
                    std::mem::take(&mut model.kmsg)
                };
                if events.batch(batch).await.is_err() {
                    return Ok(());
                }
                self.model().batches_delivered += 1;
                // The simulated /dev/kmsg watcher: the same classifier as the real one.
                let finding = findings.last().and_then(|line| kmsg_record::classify(line));
                if let (Some(finding), Some(kernel_log)) = (finding, &self.kernel_log) {
                    if kernel_log.finding(finding).await.is_err() {
                        return Ok(());
                    }
                }
                tokio::time::sleep(scenario.batch_interval).await;
            }
        }
        Ok(())
    }
}

impl EventSource for SimulatedHost {
    fn name(&self) -> String {
        format!("simulated host ({})", self.scenario.name)
    }

    fn run(self: Box<Self>, events: UeventSender) -> BoxFuture<()> {
        Box::pin(async move {
            match (*self).clone().run_steps(events.clone()).await {
                Ok(()) => events.finished().await,
                Err(error) => {
                    events
                        .failed(format!("simulated host cannot write its sysroot: {error}"))
                        .await
                }
            }
        })
    }
}

/// One load the simulated loader did (or refused).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LoadRecord {
    pub ranges: usize,
    pub cpus: usize,
    pub method: LoaderChoice,
    pub succeeded: bool,
}

/// A loader for when nothing may really be loaded: records each load, can be slow, can fail on demand.
pub struct SimulatedLoader {
    host: Option<SimulatedHost>,
    behaviour: Mutex<LoaderBehaviour>,
    method: LoaderChoice,
    records: Mutex<Vec<LoadRecord>>,
}

impl SimulatedLoader {
    pub fn new(
        host: Option<SimulatedHost>,
        behaviour: LoaderBehaviour,
        method: LoaderChoice,
    ) -> Self {
        SimulatedLoader {
            host,
            behaviour: Mutex::new(behaviour),
            method,
            records: Mutex::new(Vec::new()),
        }
    }

    pub fn records(&self) -> Vec<LoadRecord> {
        self.records.lock().map(|r| r.clone()).unwrap_or_default()
    }

    /// Makes the next `n` loads fail.
    pub fn fail_next(&self, n: u32) {
        if let Ok(mut behaviour) = self.behaviour.lock() {
            behaviour.failures = n;
        }
    }
}

impl Loader for Arc<SimulatedLoader> {
    fn name(&self) -> String {
        match self.method {
            LoaderChoice::Configured => "simulated kexec_file_load".into(),
            LoaderChoice::KexecLoad => "simulated kexec_load".into(),
        }
    }

    fn load(&self, request: LoadRequest) -> BoxFuture<Result<LoadReport, LoadError>> {
        let this = self.clone();
        Box::pin(async move {
            let (delay, fail, panic) = {
                let mut behaviour = this.behaviour.lock().unwrap_or_else(|p| p.into_inner());
                let fail = behaviour.failures > 0;
                behaviour.failures = behaviour.failures.saturating_sub(1);
                let panic = !fail && behaviour.panics > 0;
                if panic {
                    behaviour.panics -= 1;
                }
                (behaviour.delay, fail, panic)
            };
            tokio::time::sleep(delay).await;
            if panic {
                panic!("simulated loader bug: index out of range");
            }
            let record = |succeeded| LoadRecord {
                ranges: request.ranges.len(),
                cpus: request.cpus.len(),
                method: request.method,
                succeeded,
            };
            if fail {
                this.records
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .push(record(false));
                return Err(LoadError {
                    message: "simulated failure (EBUSY)".into(),
                    retry: true,
                });
            }
            if let Some(host) = &this.host {
                host.load_crash_kernel(&request).map_err(|e| LoadError {
                    message: format!("simulated host: {e}"),
                    retry: true,
                })?;
            }
            this.records
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(record(true));
            Ok(LoadReport {
                loader: this.name(),
                detail: format!(
                    "{} ranges, {} CPUs",
                    request.ranges.len(),
                    request.cpus.len()
                ),
            })
        })
    }
}

/// Records notifications, for tests and the simulated run; asks for `WATCHDOG=1` every `watchdog` when set,
/// as systemd's `WATCHDOG_USEC` does.
#[derive(Default)]
pub struct RecordingNotifier {
    pub notifications: Mutex<Vec<Notification>>,
    pub watchdog: Option<Duration>,
}

impl Notifier for RecordingNotifier {
    fn notify(&self, notification: Notification) {
        if let Ok(mut all) = self.notifications.lock() {
            all.push(notification);
        }
    }

    fn watchdog_interval(&self) -> Option<Duration> {
        self.watchdog
    }
}

impl Notifier for Arc<RecordingNotifier> {
    fn notify(&self, notification: Notification) {
        (**self).notify(notification)
    }

    fn watchdog_interval(&self) -> Option<Duration> {
        (**self).watchdog_interval()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn virtio_mem_merges_adjacent_blocks_and_sparse_plugs_do_not() {
        let dir = tempfile::tempdir().unwrap();
        let mut model = HostModel::new(dir.path().into(), SimKernel::STALE_HEADER);
        let contiguous = Step::Plug {
            bytes: 4 * GIB,
            sparse: false,
        };
        for message in SimulatedHost::step_messages(&mut model, &contiguous) {
            if let Ok(uevent::Classified::Event(e)) =
                uevent::parse_kernel_message(&message, Watch::default())
            {
                SimulatedHost::apply(&mut model, &e);
            }
        }
        assert_eq!(model.ranges().len(), boot_ranges().len() + 1);
        let sparse = Step::Plug {
            bytes: 4 * GIB,
            sparse: true,
        };
        for message in SimulatedHost::step_messages(&mut model, &sparse) {
            if let Ok(uevent::Classified::Event(e)) =
                uevent::parse_kernel_message(&message, Watch::default())
            {
                SimulatedHost::apply(&mut model, &e);
            }
        }
        // The first sparse block touches the contiguous run; the other 31 stand alone.
        assert_eq!(model.ranges().len(), boot_ranges().len() + 1 + 31);
    }

    #[test]
    fn the_self_updating_kernel_logs_instead_of_overflowing() {
        let dir = tempfile::tempdir().unwrap();
        let kernel = SimKernel {
            crash_hotplug: true,
            nr_cpus_default: 8,
            max_memory_ranges: 8,
        };
        let mut model = HostModel::new(dir.path().into(), kernel);
        // (2 + 8 + 8) × 56 bytes load as one page: (4096 - 64) / 56 = 72 program headers, 62 for memory with 8
        // possible CPUs, vmcoreinfo and the kernel text.
        let fits = 72 - 2 - 8;
        let mut block = 0;
        while model.ranges().len() < fits {
            model.plugged.insert(block * 2);
            block += 1;
            model.kernel_updates_after_hotplug();
        }
        assert!(model.kmsg.is_empty(), "{:?}", model.kmsg);
        assert_eq!(model.header.len(), fits);
        model.plugged.insert(block * 2);
        model.kernel_updates_after_hotplug();
        assert_eq!(model.header.len(), fits, "the stale header stays");
        assert_eq!(model.kmsg.len(), 1);
        assert!(
            crate::core::kmsg_record::classify(&model.kmsg[0]).is_some(),
            "{}",
            model.kmsg[0]
        );
    }

    #[test]
    fn a_kexec_file_load_bigger_than_the_hotplug_buffer_fails_and_leaves_nothing_loaded() {
        let kernel = SimKernel {
            crash_hotplug: true,
            nr_cpus_default: 8,
            max_memory_ranges: 8,
        };
        let host = SimulatedHost::new(Scenario {
            kernel,
            ..Scenario::named("self-updating").unwrap().clone()
        })
        .unwrap();
        let request = |n: u64, method| LoadRequest {
            ranges: Arc::new(
                (0..n)
                    .map(|i| MemRange::new(i * 2 * BLOCK_SIZE, i * 2 * BLOCK_SIZE + BLOCK_SIZE - 1))
                    .collect(),
            ),
            cpus: crate::core::model::CpuSet::default(),
            method,
            reason: String::new(),
        };
        // One page: 72 program headers, 62 for memory with the 8 possible CPUs.
        assert!(host
            .load_crash_kernel(&request(62, LoaderChoice::Configured))
            .is_ok());
        let error = host
            .load_crash_kernel(&request(63, LoaderChoice::Configured))
            .unwrap_err();
        assert_eq!(error.raw_os_error(), Some(libc::EINVAL));
        assert!(!host.model().crash_loaded, "the old image is gone too");
        // kexec_load builds the header in userspace at its real size.
        assert!(host
            .load_crash_kernel(&request(63, LoaderChoice::KexecLoad))
            .is_ok());
        // Without crash hotplug there is no fixed buffer: the segment is the header built for the ranges.
        assert_eq!(
            SimKernel::STALE_HEADER.segment_memsz(8, 40_000),
            kernel_rules::header_elfsz(8, 40_000)
        );
    }

    #[test]
    fn scenario_uevent_counts() {
        assert_eq!(
            Scenario::named("virtio-mem-1t").unwrap().uevent_count(),
            16_384
        );
        assert_eq!(
            Scenario::named("virtio-mem-8t").unwrap().uevent_count(),
            131_072
        );
    }
}

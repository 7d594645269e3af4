//! Real kernel uevents reach the daemon as domain events: writing `change` to a sysfs `uevent` file makes the
//! kernel emit one (drivers/base/core.c, `uevent_store`). Only ever `change`: an `add`/`remove` could make
//! udev rules act on this host.

use std::time::Duration;

use kdump_hotplugd::core::model::{DomainEvent, HotplugAction};
use kdump_hotplugd::core::uevent_record::Watch;
use kdump_hotplugd::edge::uevent_source::KernelUevents;
use kdump_hotplugd::edge::EventSource;
use kdump_hotplugd::messages::{Event, UeventSender};
use tokio::sync::mpsc;

#[path = "common/precondition.rs"]
mod precondition;

const CPU0: &str = "/sys/devices/system/cpu/cpu0/uevent";
const MEMORY0: &str = "/sys/devices/system/memory/memory0/uevent";
const DEADLINE: Duration = Duration::from_secs(20);

/// Writes `change`; `Err` with the reason when this machine does not allow it (a missing precondition).
fn trigger(path: &str) -> Result<(), String> {
    std::fs::write(path, "change")
        .map_err(|e| format!("cannot write {path} (needs root and a writable sysfs): {e}"))
}

/// The kernel's uevent socket, or the reason this machine forbids it.
fn netlink(watch: Watch) -> Result<KernelUevents, String> {
    KernelUevents::open(watch)
        .map_err(|e| format!("this machine forbids a uevent netlink socket: {e}"))
}

/// Memory block 0's uevent file, or why there is none.
fn memory0() -> Result<&'static str, String> {
    if std::path::Path::new(MEMORY0).exists() {
        Ok(MEMORY0)
    } else {
        Err(format!(
            "{MEMORY0} does not exist (a kernel without memory hotplug): no memory uevent to trigger"
        ))
    }
}

/// Receives batches until one holds `wanted`, or the deadline passes.
async fn wait_for(events: &mut mpsc::Receiver<Event>, wanted: DomainEvent) -> Result<u64, String> {
    let mut batches = 0;
    tokio::time::timeout(DEADLINE, async {
        loop {
            match events.recv().await {
                Some(Event::Uevents(batch)) => {
                    batches += 1;
                    if batch.events.contains(&wanted) {
                        return Ok(batches);
                    }
                }
                Some(other) => return Err(format!("unexpected event {other:?}")),
                None => return Err("source ended".to_owned()),
            }
        }
    })
    .await
    .map_err(|_| format!("{wanted:?} did not arrive within {DEADLINE:?}"))?
}

#[tokio::test]
async fn kernel_netlink_source_delivers_real_cpu_and_memory_uevents() {
    let source = match netlink(Watch::default()) {
        Ok(source) => source,
        Err(reason) => return precondition::missing(reason),
    };
    assert!(source.receive_buffer() > 0);
    let (tx, mut rx) = mpsc::channel(64);
    let task = tokio::spawn(Box::new(source).run(UeventSender::new(tx)));

    if let Err(reason) = trigger(CPU0) {
        task.abort();
        return precondition::missing(reason);
    }
    wait_for(
        &mut rx,
        DomainEvent::Cpu {
            id: 0,
            action: HotplugAction::Change,
        },
    )
    .await
    .unwrap();

    match memory0() {
        Ok(memory0) => {
            trigger(memory0).unwrap();
            wait_for(
                &mut rx,
                DomainEvent::MemoryBlock {
                    index: 0,
                    action: HotplugAction::Change,
                },
            )
            .await
            .unwrap();
        }
        Err(reason) => precondition::missing(format!("memory part: {reason}")),
    }
    task.abort();
}

#[tokio::test]
async fn unwatched_kinds_do_not_wake_the_owner_loop() {
    let source = match netlink(Watch {
        memory: true,
        cpu: false,
    }) {
        Ok(source) => source,
        Err(reason) => return precondition::missing(reason),
    };
    let (tx, mut rx) = mpsc::channel(64);
    let task = tokio::spawn(Box::new(source).run(UeventSender::new(tx)));
    if let Err(reason) = trigger(CPU0).and_then(|()| memory0().map(drop)) {
        task.abort();
        return precondition::missing(reason);
    }
    // The memory uevent comes after the CPU one: if the CPU one had produced a batch it would be first.
    trigger(MEMORY0).unwrap();
    let memory0 = DomainEvent::MemoryBlock {
        index: 0,
        action: HotplugAction::Change,
    };
    let mut seen = Vec::new();
    tokio::time::timeout(DEADLINE, async {
        while let Some(Event::Uevents(batch)) = rx.recv().await {
            let done = batch.events.contains(&memory0);
            seen.extend(batch.events);
            if done {
                break;
            }
        }
    })
    .await
    .expect("memory0 change did not arrive");
    assert!(seen.iter().all(DomainEvent::is_memory), "{seen:?}");
    task.abort();
}

/// A burst the socket cannot hold: the kernel drops uevents and says so (ENOBUFS) on the next read. The source
/// must report the loss in its batch (the owner loop then trusts a fresh snapshot, not the events).
#[tokio::test]
async fn an_overflowing_socket_reports_lost_uevents() {
    // The smallest buffer the kernel allows (it raises tiny values to its minimum, a few KiB).
    let source = match KernelUevents::open_with_buffer(Watch::default(), 1) {
        Ok(source) => source,
        Err(error) => {
            return precondition::missing(format!(
                "this machine forbids a uevent netlink socket: {error}"
            ))
        }
    };
    // Nobody reads yet: the kernel queues until the buffer is full, then drops.
    for _ in 0..200 {
        if let Err(reason) = trigger(CPU0) {
            return precondition::missing(reason);
        }
    }
    let (tx, mut rx) = mpsc::channel(64);
    let task = tokio::spawn(Box::new(source).run(UeventSender::new(tx)));
    let mut lost = 0;
    let mut seen = 0;
    tokio::time::timeout(DEADLINE, async {
        while lost == 0 {
            match rx.recv().await {
                Some(Event::Uevents(batch)) => {
                    lost += batch.overflows;
                    seen += batch.events.len();
                }
                other => panic!("unexpected {other:?}"),
            }
        }
    })
    .await
    .expect("no overflow reported");
    task.abort();
    assert!(lost > 0);
    assert!(seen < 200, "all 200 uevents fit: {seen}");
    eprintln!("overflow: {seen} uevents read, {lost} overflow report(s)");
}

/// udevd's monitor opens (with its kernel-side subsystem filter) even where no udevd runs; it would hear
/// nothing here, so delivery through it is left to hosts with udevd.
#[test]
fn udev_monitor_opens_with_an_enlarged_buffer() {
    let source = kdump_hotplugd::edge::uevent_source::UdevUevents::open(Watch::default())
        .expect("the udev monitor opens");
    assert!(
        source.receive_buffer() >= 212_992,
        "{}",
        source.receive_buffer()
    );
    assert_eq!(source.name(), "udev monitor");
}

/// A burst that is already queued when the source wakes arrives as one batch: one wake-up of the owner loop,
/// however many uevents.
#[tokio::test]
async fn a_queued_burst_is_one_batch() {
    const BURST: usize = 1000;
    let source = match netlink(Watch::default()) {
        Ok(source) => source,
        Err(reason) => return precondition::missing(reason),
    };
    for _ in 0..BURST {
        if let Err(reason) = trigger(CPU0) {
            return precondition::missing(reason);
        }
    }
    let (tx, mut rx) = mpsc::channel(64);
    let task = tokio::spawn(Box::new(source).run(UeventSender::new(tx)));
    let first = tokio::time::timeout(DEADLINE, rx.recv())
        .await
        .expect("no batch")
        .expect("source ended");
    task.abort();
    let Event::Uevents(batch) = first else {
        panic!("unexpected {first:?}");
    };
    let cpu0 = DomainEvent::Cpu {
        id: 0,
        action: HotplugAction::Change,
    };
    let ours = batch.events.iter().filter(|e| **e == cpu0).count();
    assert_eq!(batch.overflows, 0);
    assert!(ours >= BURST, "first batch held {ours} of {BURST}");
}

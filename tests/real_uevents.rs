//! Real kernel uevents reach the daemon as domain events: writing `change` to a sysfs `uevent` file makes the
//! kernel emit one (drivers/base/core.c, `uevent_store`). Only ever `change`: an `add`/`remove` could make
//! udev rules act on this host.

use std::time::Duration;

use kdump_hotplugd::daemon::Event;
use kdump_hotplugd::edge::uevents::KernelUevents;
use kdump_hotplugd::edge::EventSource;
use kdump_hotplugd::model::{DomainEvent, HotplugAction};
use kdump_hotplugd::uevent::Watch;
use tokio::sync::mpsc;

const CPU0: &str = "/sys/devices/system/cpu/cpu0/uevent";
const MEMORY0: &str = "/sys/devices/system/memory/memory0/uevent";
const DEADLINE: Duration = Duration::from_secs(20);

/// Writes `change`; `Err` with the reason when this machine does not allow it (the test then skips).
fn trigger(path: &str) -> Result<(), String> {
    std::fs::write(path, "change").map_err(|e| format!("cannot write {path}: {e}"))
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
    let source = match KernelUevents::open(Watch::default()) {
        Ok(source) => source,
        Err(error) => {
            eprintln!("SKIP: this machine forbids a uevent netlink socket: {error}");
            return;
        }
    };
    assert!(source.receive_buffer() > 0);
    let (tx, mut rx) = mpsc::channel(64);
    let task = tokio::spawn(Box::new(source).run(tx));

    if let Err(reason) = trigger(CPU0) {
        eprintln!("SKIP: {reason}");
        task.abort();
        return;
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

    if std::path::Path::new(MEMORY0).exists() {
        trigger(MEMORY0).unwrap();
        wait_for(
            &mut rx,
            DomainEvent::MemoryBlock {
                index: 0,
                action: HotplugAction::Change,
            },
        )
        .await
        .unwrap();
    } else {
        eprintln!("note: {MEMORY0} does not exist (no memory hotplug): memory uevent not tested");
    }
    task.abort();
}

#[tokio::test]
async fn unwatched_kinds_do_not_wake_the_owner_loop() {
    let Ok(source) = KernelUevents::open(Watch {
        memory: true,
        cpu: false,
    }) else {
        eprintln!("SKIP: no uevent netlink socket");
        return;
    };
    let (tx, mut rx) = mpsc::channel(64);
    let task = tokio::spawn(Box::new(source).run(tx));
    if trigger(CPU0).is_err() || !std::path::Path::new(MEMORY0).exists() {
        eprintln!("SKIP: cannot trigger both uevents here");
        task.abort();
        return;
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

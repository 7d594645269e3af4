//! Uevents in the daemon's terms. The kernel's netlink message is `ACTION@DEVPATH\0KEY=VALUE\0…`
//! (lib/kobject_uevent.c); udev's monitor hands over the same properties. Both end in [`classify`].

use std::fmt;

use crate::core::model::{DomainEvent, HotplugAction};

/// Why a uevent for a memory block or a CPU could not be understood. Counted and skipped, never fatal.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum MalformedUevent {
    #[error("missing {0}")]
    Missing(&'static str),
    #[error("not UTF-8")]
    NotUtf8,
    #[error("unknown action {0:?}")]
    UnknownAction(String),
    #[error("device path {0:?} names no block or CPU number")]
    BadDevpath(String),
    #[error("header {header:?} disagrees with ACTION/DEVPATH")]
    HeaderMismatch { header: String },
}

/// What [`classify`] made of one uevent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Classified {
    Event(DomainEvent),
    /// Another subsystem, or an action that does not touch the header (a CPU `bind`): not counted.
    Ignored,
}

/// Which event kinds the daemon watches (`[events]` in the config).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Watch {
    pub memory: bool,
    pub cpu: bool,
}

impl Default for Watch {
    fn default() -> Self {
        Self {
            memory: true,
            cpu: true,
        }
    }
}

fn action(text: &str) -> Option<HotplugAction> {
    Some(match text {
        "add" => HotplugAction::Add,
        "remove" => HotplugAction::Remove,
        "online" => HotplugAction::Online,
        "offline" => HotplugAction::Offline,
        "change" => HotplugAction::Change,
        _ => return None,
    })
}

impl fmt::Display for HotplugAction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            HotplugAction::Add => "add",
            HotplugAction::Remove => "remove",
            HotplugAction::Online => "online",
            HotplugAction::Offline => "offline",
            HotplugAction::Change => "change",
        })
    }
}

/// The number after `prefix` in the last path component (`/devices/system/memory/memory42` → 42).
fn device_number<T: std::str::FromStr>(devpath: &str, prefix: &str) -> Option<T> {
    let name = devpath.rsplit('/').next()?;
    let digits = name.strip_prefix(prefix)?;
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// Turns the three properties that matter into a domain event.
pub fn classify(
    subsystem: Option<&str>,
    action_text: Option<&str>,
    devpath: Option<&str>,
    watch: Watch,
) -> Result<Classified, MalformedUevent> {
    let subsystem = subsystem.ok_or(MalformedUevent::Missing("SUBSYSTEM"))?;
    let memory = subsystem == "memory";
    let cpu = subsystem == "cpu";
    if !(memory && watch.memory || cpu && watch.cpu) {
        return Ok(Classified::Ignored);
    }
    let action_text = action_text.ok_or(MalformedUevent::Missing("ACTION"))?;
    let devpath = devpath.ok_or(MalformedUevent::Missing("DEVPATH"))?;
    let Some(action) = action(action_text) else {
        // bind/unbind/move on a CPU or memory device do not change what the header holds.
        return match action_text {
            "bind" | "unbind" | "move" => Ok(Classified::Ignored),
            other => Err(MalformedUevent::UnknownAction(other.to_owned())),
        };
    };
    let bad_path = || MalformedUevent::BadDevpath(devpath.to_owned());
    let event = if memory {
        // The memory subsystem's root (/devices/system/memory) has no number and no uevents of interest.
        let index = device_number(devpath, "memory").ok_or_else(bad_path)?;
        DomainEvent::MemoryBlock { index, action }
    } else {
        let id = device_number(devpath, "cpu").ok_or_else(bad_path)?;
        DomainEvent::Cpu { id, action }
    };
    Ok(Classified::Event(event))
}

/// Parses one message from the kernel's uevent netlink group (`NETLINK_KOBJECT_UEVENT`, group 1).
pub fn parse_kernel_message(message: &[u8], watch: Watch) -> Result<Classified, MalformedUevent> {
    let mut fields = message.split(|&b| b == 0).filter(|f| !f.is_empty());
    let header = fields.next().ok_or(MalformedUevent::Missing("header"))?;
    let header = std::str::from_utf8(header).map_err(|_| MalformedUevent::NotUtf8)?;
    let (mut action, mut devpath, mut subsystem) = (None, None, None);
    for field in fields {
        let Ok(field) = std::str::from_utf8(field) else {
            return Err(MalformedUevent::NotUtf8);
        };
        if let Some(v) = field.strip_prefix("ACTION=") {
            action = Some(v);
        } else if let Some(v) = field.strip_prefix("DEVPATH=") {
            devpath = Some(v);
        } else if let Some(v) = field.strip_prefix("SUBSYSTEM=") {
            subsystem = Some(v);
        }
    }
    // The header repeats ACTION@DEVPATH; a message where they disagree was not written by the kernel.
    if let (Some((h_action, h_devpath)), Some(a), Some(d)) =
        (header.split_once('@'), action, devpath)
    {
        if h_action != a || h_devpath != d {
            return Err(MalformedUevent::HeaderMismatch {
                header: header.to_owned(),
            });
        }
    }
    classify(subsystem, action, devpath, watch)
}

/// Encodes an event the way the kernel would send it (for the simulator and the benchmarks).
pub fn encode_kernel_message(event: &DomainEvent, seqnum: u64) -> Vec<u8> {
    let (action, devpath, subsystem) = match event {
        DomainEvent::MemoryBlock { index, action } => (
            action,
            format!("/devices/system/memory/memory{index}"),
            "memory",
        ),
        DomainEvent::Cpu { id, action } => (action, format!("/devices/system/cpu/cpu{id}"), "cpu"),
    };
    format!("{action}@{devpath}\0ACTION={action}\0DEVPATH={devpath}\0SUBSYSTEM={subsystem}\0SEQNUM={seqnum}\0")
        .into_bytes()
}

/// Uevents read in one go from the event source: one wake-up of the owner loop.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct UeventBatch {
    pub events: Vec<DomainEvent>,
    /// Memory/CPU uevents that could not be understood.
    pub malformed: u64,
    /// Times the socket reported an overflow (ENOBUFS) during this read: each lost an unknown number of uevents
    /// (the kernel says only that it dropped some), so a fresh snapshot must follow.
    pub overflows: u64,
}

impl UeventBatch {
    /// Adds the outcome of [`classify`]/[`parse_kernel_message`] for one message. A malformed one is only
    /// counted: the edge that read it logs it, with where it came from.
    pub fn push(&mut self, outcome: Result<Classified, MalformedUevent>) {
        match outcome {
            Ok(Classified::Event(event)) => self.events.push(event),
            Ok(Classified::Ignored) => {}
            Err(_) => self.malformed += 1,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.events.is_empty() && self.malformed == 0 && self.overflows == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const ALL: Watch = Watch {
        memory: true,
        cpu: true,
    };

    #[test]
    fn memory_online_from_the_kernel() {
        let message = b"online@/devices/system/memory/memory42\0ACTION=online\0\
DEVPATH=/devices/system/memory/memory42\0SUBSYSTEM=memory\0SEQNUM=1234\0";
        assert_eq!(
            parse_kernel_message(message, ALL),
            Ok(Classified::Event(DomainEvent::MemoryBlock {
                index: 42,
                action: HotplugAction::Online
            }))
        );
    }

    #[test]
    fn encode_and_parse_round_trip() {
        for event in [
            DomainEvent::MemoryBlock {
                index: 8191,
                action: HotplugAction::Add,
            },
            DomainEvent::MemoryBlock {
                index: 0,
                action: HotplugAction::Remove,
            },
            DomainEvent::Cpu {
                id: 7,
                action: HotplugAction::Offline,
            },
        ] {
            assert_eq!(
                parse_kernel_message(&encode_kernel_message(&event, 9), ALL),
                Ok(Classified::Event(event))
            );
        }
    }

    #[test]
    fn other_subsystems_and_unwatched_kinds_are_ignored() {
        let message = b"add@/devices/pci0000:00/0000:00:03.0\0ACTION=add\0DEVPATH=/devices/pci0000:00/0000:00:03.0\0SUBSYSTEM=pci\0";
        assert_eq!(parse_kernel_message(message, ALL), Ok(Classified::Ignored));
        let cpu = encode_kernel_message(
            &DomainEvent::Cpu {
                id: 1,
                action: HotplugAction::Add,
            },
            1,
        );
        assert_eq!(
            parse_kernel_message(
                &cpu,
                Watch {
                    memory: true,
                    cpu: false
                }
            ),
            Ok(Classified::Ignored)
        );
        assert_eq!(
            classify(
                Some("cpu"),
                Some("bind"),
                Some("/devices/system/cpu/cpu1"),
                ALL
            ),
            Ok(Classified::Ignored)
        );
    }

    #[test]
    fn malformed_memory_and_cpu_uevents_say_why() {
        assert_eq!(
            classify(
                Some("memory"),
                Some("online"),
                Some("/devices/system/memory/memoryX"),
                ALL
            ),
            Err(MalformedUevent::BadDevpath(
                "/devices/system/memory/memoryX".into()
            ))
        );
        assert_eq!(
            classify(
                Some("memory"),
                None,
                Some("/devices/system/memory/memory1"),
                ALL
            ),
            Err(MalformedUevent::Missing("ACTION"))
        );
        assert_eq!(
            classify(
                Some("cpu"),
                Some("explode"),
                Some("/devices/system/cpu/cpu1"),
                ALL
            ),
            Err(MalformedUevent::UnknownAction("explode".into()))
        );
        assert_eq!(
            classify(None, Some("add"), Some("/x"), ALL),
            Err(MalformedUevent::Missing("SUBSYSTEM"))
        );
        let forged = b"add@/devices/system/memory/memory1\0ACTION=remove\0DEVPATH=/devices/system/memory/memory1\0SUBSYSTEM=memory\0";
        assert!(matches!(
            parse_kernel_message(forged, ALL),
            Err(MalformedUevent::HeaderMismatch { .. })
        ));
        assert_eq!(
            parse_kernel_message(b"", ALL),
            Err(MalformedUevent::Missing("header"))
        );
    }

    #[test]
    fn batch_counts_malformed_and_keeps_events() {
        let mut batch = UeventBatch::default();
        batch.push(Ok(Classified::Ignored));
        batch.push(Err(MalformedUevent::NotUtf8));
        batch.push(Ok(Classified::Event(DomainEvent::Cpu {
            id: 1,
            action: HotplugAction::Add,
        })));
        assert_eq!(batch.events.len(), 1);
        assert_eq!(batch.malformed, 1);
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
            let _ = parse_kernel_message(&bytes, ALL);
        }

        #[test]
        fn mutated_messages_never_panic(index in any::<u64>(), cut in 0usize..120, flip in any::<u8>()) {
            let mut message = encode_kernel_message(
                &DomainEvent::MemoryBlock { index, action: HotplugAction::Online }, 1);
            let at = cut.min(message.len().saturating_sub(1));
            message[at] ^= flip;
            let _ = parse_kernel_message(&message, ALL);
            message.truncate(cut);
            let _ = parse_kernel_message(&message, ALL);
        }
    }
}

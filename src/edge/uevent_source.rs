//! Real uevent sources: the kernel's own netlink group (hosts without udevd) and udevd's monitor.
//!
//! Both read their socket through tokio's [`AsyncFd`] until it would block and hand the owner loop one
//! [`UeventBatch`] per wake-up, so a storm of thousands of uevents costs one wake-up of the loop per batch.
//! When the kernel had to drop messages because the socket buffer was full, the next read fails with ENOBUFS
//! (`netlink_overrun` in net/netlink/af_netlink.c); the batch then carries `lost`, and the owner loop takes a
//! fresh snapshot instead of trusting the events it saw.

use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};

use nix::errno::Errno;
use nix::sys::socket::{
    bind, recvfrom, setsockopt, socket, sockopt, AddressFamily, NetlinkAddr, SockFlag,
    SockProtocol, SockType,
};
use tokio::io::unix::AsyncFd;

use crate::config::EventSourceKind;
use crate::core::uevent_record::{
    classify, parse_kernel_message, Classified, MalformedUevent, UeventBatch, Watch,
};
use crate::edge::{BoxFuture, EventSource};
use crate::host::sysroot::Sysroot;
use crate::messages::UeventSender;

/// The kernel's uevent multicast group (lib/kobject_uevent.c sends to group 1).
const KERNEL_UEVENT_GROUP: u32 = 1;

/// Receive buffer asked for: a 1 TiB virtio-mem plug sends ~16k uevents of ~150 bytes each in bursts, and the
/// kernel charges each message's skb truesize (a few KiB) against the buffer. systemd-udevd asks for 128 MiB.
pub const RECEIVE_BUFFER_BYTES: usize = 32 << 20;

/// At most this many messages per batch, so one endless storm cannot keep the loop from ever seeing a batch.
const MAX_MESSAGES_PER_BATCH: usize = 8192;

/// udevd creates its control socket at start (`/run/udev/control`); libudev's `udev_queue` checks the same.
pub const UDEVD_CONTROL: &str = "/run/udev/control";

/// Which source `[events] source` means on this host.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ResolvedSource {
    Udev,
    Kernel,
}

/// `auto` picks udev only when udevd runs: its monitor hears nothing otherwise (no one re-broadcasts).
pub fn resolve(kind: EventSourceKind, sysroot: &Sysroot) -> ResolvedSource {
    match kind {
        EventSourceKind::Udev => ResolvedSource::Udev,
        EventSourceKind::Kernel => ResolvedSource::Kernel,
        EventSourceKind::Auto if sysroot.exists(UDEVD_CONTROL) => ResolvedSource::Udev,
        EventSourceKind::Auto => ResolvedSource::Kernel,
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("cannot open the kernel uevent netlink socket: {0}")]
    Netlink(Errno),
    #[error("cannot open the udev monitor: {0}")]
    Udev(std::io::Error),
    #[error("cannot register the uevent socket with the event loop: {0}")]
    Register(std::io::Error),
}

/// Sets the receive buffer: SO_RCVBUFFORCE (CAP_NET_ADMIN) passes `net.core.rmem_max`, SO_RCVBUF is
/// capped by it. Returns the size the kernel reports.
fn enlarge_receive_buffer(fd: BorrowedFd<'_>, bytes: usize) -> usize {
    if setsockopt(&fd, sockopt::RcvBufForce, &bytes).is_err() {
        if let Err(error) = setsockopt(&fd, sockopt::RcvBuf, &bytes) {
            tracing::warn!(%error, "cannot enlarge the uevent socket buffer");
        }
    }
    nix::sys::socket::getsockopt(&fd, sockopt::RcvBuf).unwrap_or(0)
}

/// What one drain of the socket gave.
struct Drained {
    batch: UeventBatch,
    /// The socket reported EAGAIN: readiness can be cleared.
    would_block: bool,
}

/// Reads messages with `receive` (one per call, pushed into the batch or dropped) until it would block or the
/// batch is full.
fn drain(mut receive: impl FnMut(&mut UeventBatch) -> Result<(), Errno>) -> Result<Drained, Errno> {
    let mut batch = UeventBatch::default();
    for _ in 0..MAX_MESSAGES_PER_BATCH {
        match receive(&mut batch) {
            Ok(_) => {}
            Err(Errno::EAGAIN) => {
                return Ok(Drained {
                    batch,
                    would_block: true,
                })
            }
            Err(Errno::ENOBUFS) => batch.overflows += 1,
            Err(Errno::EINTR) => {}
            Err(error) => return Err(error),
        }
    }
    Ok(Drained {
        batch,
        would_block: false,
    })
}

/// Registers `socket` with the runtime, then waits for readiness, drains, sends non-empty batches; ends when
/// the daemon's channel closes, or on a socket error, which it sends to the daemon (a real host's daemon
/// stops rather than run blind).
async fn pump<T: AsRawFd>(
    name: &str,
    socket: T,
    events: UeventSender,
    mut receive: impl FnMut(&T, &mut UeventBatch) -> Result<(), Errno>,
) {
    let fd: AsyncFd<T> = match super::register_readable(socket) {
        Ok(fd) => fd,
        Err(error) => {
            events
                .failed(format!("{name}: {}", SourceError::Register(error)))
                .await;
            return;
        }
    };
    let error = loop {
        let mut guard = match fd.readable().await {
            Ok(guard) => guard,
            Err(error) => break format!("{name}: waiting for uevents: {error}"),
        };
        let drained = drain(|batch| receive(guard.get_inner(), batch));
        let drained = match drained {
            Ok(drained) => drained,
            Err(error) => break format!("{name}: reading uevents: {error}"),
        };
        if drained.would_block {
            guard.clear_ready();
        }
        if !drained.batch.is_empty() && events.batch(drained.batch).await.is_err() {
            return;
        }
    };
    events.failed(error).await;
}

/// The kernel's uevent netlink group, read directly (`NETLINK_KOBJECT_UEVENT`, group 1): works without udevd.
pub struct KernelUevents {
    socket: OwnedFd,
    watch: Watch,
    receive_buffer: usize,
}

impl KernelUevents {
    pub fn open(watch: Watch) -> Result<Self, SourceError> {
        Self::open_with_buffer(watch, RECEIVE_BUFFER_BYTES)
    }

    /// With a chosen receive buffer (tests use a tiny one to make the kernel overflow it).
    pub fn open_with_buffer(watch: Watch, receive_buffer: usize) -> Result<Self, SourceError> {
        let socket = socket(
            AddressFamily::Netlink,
            SockType::Datagram,
            SockFlag::SOCK_NONBLOCK | SockFlag::SOCK_CLOEXEC,
            SockProtocol::NetlinkKObjectUEvent,
        )
        .map_err(SourceError::Netlink)?;
        let receive_buffer = enlarge_receive_buffer(socket.as_fd(), receive_buffer);
        // Port id 0: the kernel assigns one, so several listeners (udevadm monitor, tests) can coexist.
        bind(
            socket.as_raw_fd(),
            &NetlinkAddr::new(0, KERNEL_UEVENT_GROUP),
        )
        .map_err(SourceError::Netlink)?;
        Ok(Self {
            socket,
            watch,
            receive_buffer,
        })
    }

    pub fn receive_buffer(&self) -> usize {
        self.receive_buffer
    }
}

/// Largest uevent: the kernel's UEVENT_BUFFER_SIZE (2048) plus the `ACTION@DEVPATH` header.
const MESSAGE_BUFFER: usize = 8192;

impl EventSource for KernelUevents {
    fn name(&self) -> String {
        "kernel uevent netlink".to_owned()
    }

    fn run(self: Box<Self>, events: UeventSender) -> BoxFuture<()> {
        Box::pin(async move {
            let watch = self.watch;
            let mut buffer = vec![0u8; MESSAGE_BUFFER];
            pump("kernel", self.socket, events, move |socket, batch| {
                let (len, from) = recvfrom::<NetlinkAddr>(socket.as_raw_fd(), &mut buffer)?;
                // Only the kernel (port id 0) sends kernel uevents; anything else is forged or misrouted.
                if from.map(|a| a.pid()) != Some(0) {
                    return Ok(());
                }
                batch.push(log_malformed(parse_kernel_message(&buffer[..len], watch)));
                Ok(())
            })
            .await
        })
    }
}

/// udevd's monitor (events after udev rules ran), filtered to the memory and cpu subsystems in the kernel.
pub struct UdevUevents {
    socket: UdevFd,
    watch: Watch,
    receive_buffer: usize,
}

/// The udev socket as a plain fd for [`AsyncFd`], keeping the monitor alive.
struct UdevFd(udev::MonitorSocket);

// SAFETY: libudev objects must not be used from two threads at once. This monitor (and its udev context) is
// created, read and dropped by one owner at a time: moved into the source task, never shared or cloned; the
// shared references `AsyncFd` hands out stay inside that task.
unsafe impl Send for UdevFd {}
unsafe impl Sync for UdevFd {}

impl AsRawFd for UdevFd {
    fn as_raw_fd(&self) -> RawFd {
        self.0.as_raw_fd()
    }
}

impl UdevUevents {
    pub fn open(watch: Watch) -> Result<Self, SourceError> {
        let mut builder = udev::MonitorBuilder::new().map_err(SourceError::Udev)?;
        if watch.memory {
            builder = builder
                .match_subsystem("memory")
                .map_err(SourceError::Udev)?;
        }
        if watch.cpu {
            builder = builder.match_subsystem("cpu").map_err(SourceError::Udev)?;
        }
        let socket = builder.listen().map_err(SourceError::Udev)?;
        let receive_buffer = enlarge_receive_buffer(socket.as_fd(), RECEIVE_BUFFER_BYTES);
        Ok(Self {
            socket: UdevFd(socket),
            watch,
            receive_buffer,
        })
    }

    pub fn receive_buffer(&self) -> usize {
        self.receive_buffer
    }
}

impl EventSource for UdevUevents {
    fn name(&self) -> String {
        "udev monitor".to_owned()
    }

    fn run(self: Box<Self>, events: UeventSender) -> BoxFuture<()> {
        Box::pin(async move {
            let watch = self.watch;
            pump("udev", self.socket, events, move |socket, batch| {
                // libudev returns NULL for "nothing more", for a dropped message and for errors alike; errno
                // tells them apart (EAGAIN, ENOBUFS).
                Errno::clear();
                let Some(event) = socket.0.iter().next() else {
                    return match Errno::last() {
                        Errno::UnknownErrno => Err(Errno::EAGAIN),
                        Errno::EAGAIN | Errno::ENOBUFS | Errno::EINTR => Err(Errno::last()),
                        // A message libudev rejected (bad credentials, filtered): drop it, keep reading.
                        _ => Ok(()),
                    };
                };
                batch.push(log_malformed(classify(
                    event.subsystem().and_then(|v| v.to_str()),
                    event.property_value("ACTION").and_then(|v| v.to_str()),
                    event.devpath().to_str(),
                    watch,
                )));
                Ok(())
            })
            .await
        })
    }
}

/// Malformed uevents are counted by the batch and logged here, where it is known which socket sent them.
fn log_malformed(
    outcome: Result<Classified, MalformedUevent>,
) -> Result<Classified, MalformedUevent> {
    if let Err(error) = &outcome {
        tracing::debug!(%error, "skipping malformed uevent");
    }
    outcome
}

/// Opens the source `kind` resolves to on this host.
pub fn open(
    kind: EventSourceKind,
    sysroot: &Sysroot,
    watch: Watch,
) -> Result<Box<dyn EventSource>, SourceError> {
    let resolved = resolve(kind, sysroot);
    let (source, receive_buffer): (Box<dyn EventSource>, usize) = match resolved {
        ResolvedSource::Kernel => {
            let source = KernelUevents::open(watch)?;
            let size = source.receive_buffer();
            (Box::new(source), size)
        }
        ResolvedSource::Udev => {
            if !sysroot.exists(UDEVD_CONTROL) {
                tracing::warn!(
                    "events.source = \"udev\" but udevd does not run ({UDEVD_CONTROL} is missing): no hotplug \
                     event will arrive until it does; \"auto\" or \"kernel\" listen to the kernel directly"
                );
            }
            let source = UdevUevents::open(watch)?;
            let size = source.receive_buffer();
            (Box::new(source), size)
        }
    };
    tracing::info!(
        source = %source.name(),
        configured = ?kind,
        receive_buffer,
        "listening for uevents"
    );
    Ok(source)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auto_picks_udev_only_when_udevd_runs() {
        let dir = tempfile::tempdir().unwrap();
        let root = Sysroot::new(dir.path());
        assert_eq!(
            resolve(EventSourceKind::Auto, &root),
            ResolvedSource::Kernel
        );
        assert_eq!(resolve(EventSourceKind::Udev, &root), ResolvedSource::Udev);
        std::fs::create_dir_all(dir.path().join("run/udev")).unwrap();
        std::fs::write(dir.path().join("run/udev/control"), "").unwrap();
        assert_eq!(resolve(EventSourceKind::Auto, &root), ResolvedSource::Udev);
        assert_eq!(
            resolve(EventSourceKind::Kernel, &root),
            ResolvedSource::Kernel
        );
    }

    #[test]
    fn drain_counts_overflows_and_stops_at_would_block() {
        // A message, an overflow report, a message dropped unseen, then nothing more.
        let mut script =
            vec![Ok(true), Err(Errno::ENOBUFS), Ok(false), Err(Errno::EAGAIN)].into_iter();
        let drained = drain(|batch| {
            let keep = script.next().unwrap()?;
            if keep {
                batch.events.push(crate::core::model::DomainEvent::Cpu {
                    id: 1,
                    action: crate::core::model::HotplugAction::Online,
                });
            }
            Ok(())
        })
        .unwrap();
        assert!(drained.would_block);
        assert_eq!(drained.batch.overflows, 1);
        assert_eq!(drained.batch.events.len(), 1);
    }

    #[test]
    fn drain_stops_at_a_full_batch_without_clearing_readiness() {
        let drained = drain(|_| Ok(())).unwrap();
        assert!(!drained.would_block);
        assert_eq!(drain(|_| Err(Errno::EBADF)).err(), Some(Errno::EBADF));
    }
}

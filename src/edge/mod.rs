//! Edges: thin adapters behind traits, each with a simulated twin. The owner loop only sees these traits.

pub mod command;
pub mod kernel_log;
pub mod kexec;
pub mod notify;
pub mod signals;
pub mod sim;
pub mod uevents;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use tokio::sync::mpsc;

use crate::daemon::Event;
use crate::decide::LoaderChoice;
use crate::model::{CpuSet, MemRange};

/// Registers a descriptor the edge owns with tokio's reactor, for reading.
///
/// Every caller passes a type that owns its descriptor for its whole life and always returns the same one
/// (an `OwnedFd`, or the udev monitor socket), which is what `AsyncFd::register` requires.
pub(crate) fn register_readable<T: std::os::fd::AsRawFd>(
    inner: T,
) -> std::io::Result<tokio::io::unix::AsyncFd<T>> {
    // SAFETY: see above: the descriptor stays open and unchanged while the AsyncFd owns `inner`.
    unsafe {
        tokio::io::unix::AsyncFd::register_with_interest(inner, tokio::io::Interest::READABLE)
    }
    .map_err(std::io::Error::from)
}

pub type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

/// Where hotplug uevents (and kernel log findings) come from. Runs until the daemon's channel closes, sending
/// [`Event::Uevents`] batches: one per wake-up, however many uevents it read.
pub trait EventSource: Send + 'static {
    fn name(&self) -> String;
    fn run(self: Box<Self>, events: mpsc::Sender<Event>) -> BoxFuture<()>;
}

/// What to load: the header the crash kernel must get.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LoadRequest {
    pub ranges: Arc<Vec<MemRange>>,
    pub cpus: CpuSet,
    pub method: LoaderChoice,
    pub reason: String,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LoadReport {
    /// What did the load, e.g. `kexec_file_load`, `kexec -c -p`, `kdumpctl reload`.
    pub loader: String,
    /// Captured output or details worth logging.
    pub detail: String,
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct LoadError {
    pub message: String,
    /// Whether trying the same load again later can help (EBUSY: yes; EPERM under lockdown: no).
    pub retry: bool,
}

/// Loads the crash kernel. A load replaces the previous image in one step; never unload first.
pub trait Loader: Send + Sync + 'static {
    fn name(&self) -> String;
    fn load(&self, request: LoadRequest) -> BoxFuture<Result<LoadReport, LoadError>>;
}

/// Service manager notifications (sd_notify).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Notification {
    Ready {
        status: String,
    },
    Status(String),
    Reloading,
    /// Config re-read (or refused): back to normal.
    Reloaded {
        status: String,
    },
    Stopping,
    Watchdog,
}

pub trait Notifier: Send + Sync + 'static {
    fn notify(&self, notification: Notification);
    /// How often the service manager wants `WATCHDOG=1`, if at all.
    fn watchdog_interval(&self) -> Option<std::time::Duration> {
        None
    }
}

/// A notifier for when no service manager listens.
pub struct NoNotifier;

impl Notifier for NoNotifier {
    fn notify(&self, _: Notification) {}
}

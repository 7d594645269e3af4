//! Edges: thin adapters behind traits, each with a simulated twin. The owner loop only sees these traits.

pub mod command;
pub mod header_record;
pub mod instance_lock;
pub mod kexec;
pub mod kmsg_reader;
pub mod notify;
pub mod rule_mask;
pub mod signals;
pub mod uevent_source;

use std::future::Future;
use std::pin::Pin;

use crate::core::rule_mask::{Action, Found};
use crate::messages::UeventSender;
pub use crate::messages::{LoadError, LoadReport, LoadRequest, Notification};

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
/// [`crate::messages::Event::Uevents`] batches: one per wake-up, however many uevents it read.
pub trait EventSource: Send + 'static {
    fn name(&self) -> String;
    fn run(self: Box<Self>, events: UeventSender) -> BoxFuture<()>;
}

/// Loads the crash kernel. A load replaces the previous image in one step; never unload first.
pub trait Loader: Send + Sync + 'static {
    fn name(&self) -> String;
    fn load(&self, request: LoadRequest) -> BoxFuture<Result<LoadReport, LoadError>>;
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

/// A file in the udev rules directories could not be read or changed (`path` is the host path).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{path}: {message}")]
pub struct RuleFileError {
    pub path: String,
    pub message: String,
}

/// What [`RuleFiles::apply`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Applied {
    Done,
    /// The file no longer carries the daemon's marker (someone replaced it since the survey): left alone.
    NotOurs,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UdevReload {
    /// udevd has read its rules again.
    Reloaded,
    /// No udevd listens; it reads every rule when it starts.
    NotRunning,
}

/// Where the daemon keeps the record of what the loaded crash kernel's header holds
/// ([`crate::core::header_record`] writes and judges it), so that a restarted instance knows.
pub trait HeaderRecords: Send + Sync + 'static {
    /// The record's location, for messages.
    fn location(&self) -> String;
    /// The record an earlier instance left in this boot (`Ok(None)`: none).
    fn read(&self) -> std::io::Result<Option<String>>;
    /// Replaces the record, atomically: a crash mid-write leaves the old one or the new one.
    fn write(&self, text: &str) -> std::io::Result<()>;
}

/// The udev rules directories, for standing in for the distribution's hotplug rule
/// ([`crate::core::rule_mask`] decides what to change).
pub trait RuleFiles: Send + Sync + 'static {
    /// What exists of each of [`crate::core::rule_mask::DISTRO_RULES`].
    fn survey(&self) -> Result<Vec<Found>, RuleFileError>;
    /// Carries out one change. Removing or restoring checks again that the file is the daemon's.
    fn apply(&self, action: &Action) -> Result<Applied, RuleFileError>;
    /// Asks udevd to read its rules now (it would otherwise notice at a later uevent).
    fn reload_udev(&self) -> Result<UdevReload, RuleFileError>;
}

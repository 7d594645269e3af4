//! The messages that cross into the owner loop, and the narrow senders each producer gets: a uevent source can
//! only send uevent batches and say it ended, the kmsg reader only its findings, the signal watcher only
//! signals. This module is a leaf: the daemon and the edges both import it, neither imports the other's types.

use std::sync::Arc;

use tokio::sync::{mpsc, oneshot};

use crate::core::decide::LoaderChoice;
use crate::core::kmsg_record::KernelFinding;
use crate::core::model::{CpuSet, MemRange};
use crate::core::uevent_record::UeventBatch;

/// Everything the owner loop reacts to.
#[derive(Debug)]
pub enum Event {
    /// Uevents read in one wake-up of the event source.
    Uevents(UeventBatch),
    /// The kernel logged that its in-place header update failed.
    KernelLog(KernelFinding),
    /// The debouncer's deadline passed: time to decide.
    DebounceDeadline,
    /// SIGHUP or D-Bus `ReloadConfig()`.
    ConfigReload {
        reply: Option<oneshot::Sender<Result<(), String>>>,
    },
    /// A request from the D-Bus or CLI side.
    Request(Request),
    /// The event source can send nothing more, and why (simulations end this way on purpose; on a real host
    /// the daemon would be blind).
    SourceFinished(SourceEnd),
    /// SIGTERM/SIGINT.
    Shutdown,
}

#[derive(Debug)]
pub enum Request {
    /// Reload now (after the one in flight), whatever changed; replies with the outcome.
    Reload { reply: oneshot::Sender<String> },
    /// Stop reacting (events are still counted); unpausing schedules one reload for what was missed.
    SetPaused {
        paused: bool,
        reply: oneshot::Sender<()>,
    },
}

/// Why an event source stopped.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SourceEnd {
    /// It had nothing more to deliver (a simulated scenario played to its end).
    EndOfStream,
    /// Its socket failed; the text says how.
    Failed(String),
}

impl std::fmt::Display for SourceEnd {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SourceEnd::EndOfStream => f.write_str("end of stream"),
            SourceEnd::Failed(error) => write!(f, "failed: {error}"),
        }
    }
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

/// The owner loop has stopped: its channel is closed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("the owner loop has stopped")]
pub struct LoopStopped;

/// What a uevent source may send: its batches, and that it ended.
#[derive(Clone)]
pub struct UeventSender(mpsc::Sender<Event>);

impl UeventSender {
    pub fn new(events: mpsc::Sender<Event>) -> Self {
        Self(events)
    }

    pub async fn batch(&self, batch: UeventBatch) -> Result<(), LoopStopped> {
        self.0
            .send(Event::Uevents(batch))
            .await
            .map_err(|_| LoopStopped)
    }

    /// The source has delivered everything it had.
    pub async fn finished(&self) {
        let _ = self
            .0
            .send(Event::SourceFinished(SourceEnd::EndOfStream))
            .await;
    }

    /// The source broke and can deliver nothing more; `error` says how.
    pub async fn failed(&self, error: String) {
        let _ = self
            .0
            .send(Event::SourceFinished(SourceEnd::Failed(error)))
            .await;
    }
}

/// What the kernel log reader may send: the findings it classified.
#[derive(Clone)]
pub struct KernelLogSender(mpsc::Sender<Event>);

impl KernelLogSender {
    pub fn new(events: mpsc::Sender<Event>) -> Self {
        Self(events)
    }

    pub async fn finding(&self, finding: KernelFinding) -> Result<(), LoopStopped> {
        self.0
            .send(Event::KernelLog(finding))
            .await
            .map_err(|_| LoopStopped)
    }
}

/// What the signal watcher may send: a configuration re-read (SIGHUP) and a shutdown (SIGTERM, SIGINT).
#[derive(Clone)]
pub struct SignalSender(mpsc::Sender<Event>);

impl SignalSender {
    pub fn new(events: mpsc::Sender<Event>) -> Self {
        Self(events)
    }

    pub async fn config_reload(&self) -> Result<(), LoopStopped> {
        self.0
            .send(Event::ConfigReload { reply: None })
            .await
            .map_err(|_| LoopStopped)
    }

    pub async fn shutdown(&self) -> Result<(), LoopStopped> {
        self.0.send(Event::Shutdown).await.map_err(|_| LoopStopped)
    }
}

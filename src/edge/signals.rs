//! SIGHUP re-reads the config; SIGTERM and SIGINT shut down cleanly.

use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::mpsc;

use crate::daemon::Event;

/// Forwards signals into the owner loop until the channel closes.
pub async fn forward(events: mpsc::Sender<Event>) -> std::io::Result<()> {
    let mut hangup = signal(SignalKind::hangup())?;
    let mut terminate = signal(SignalKind::terminate())?;
    let mut interrupt = signal(SignalKind::interrupt())?;
    loop {
        let event = tokio::select! {
            _ = hangup.recv() => Event::ConfigReload { reply: None },
            _ = terminate.recv() => Event::Shutdown,
            _ = interrupt.recv() => Event::Shutdown,
        };
        if events.send(event).await.is_err() {
            return Ok(());
        }
    }
}

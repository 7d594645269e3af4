//! SIGHUP re-reads the config; SIGTERM and SIGINT shut down cleanly.

use tokio::signal::unix::{signal, SignalKind};

use crate::messages::SignalSender;

/// Forwards signals into the owner loop until it stops.
pub async fn forward(events: SignalSender) -> std::io::Result<()> {
    let mut hangup = signal(SignalKind::hangup())?;
    let mut terminate = signal(SignalKind::terminate())?;
    let mut interrupt = signal(SignalKind::interrupt())?;
    loop {
        let sent = tokio::select! {
            _ = hangup.recv() => events.config_reload().await,
            _ = terminate.recv() => events.shutdown().await,
            _ = interrupt.recv() => events.shutdown().await,
        };
        if sent.is_err() {
            return Ok(());
        }
    }
}

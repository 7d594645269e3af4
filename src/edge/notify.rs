//! sd_notify(3) through the `sd-notify` crate: READY after the first snapshot, STATUS on changes, WATCHDOG when
//! the unit asks for it, RELOADING on SIGHUP, STOPPING at the end.

use std::time::Duration;

use sd_notify::NotifyState;

use crate::edge::{Notification, Notifier};

/// Talks to the service manager named by `NOTIFY_SOCKET`; does nothing when it is unset.
pub struct SdNotifier {
    watchdog: Option<Duration>,
}

impl SdNotifier {
    /// Reads `WATCHDOG_USEC` (honoured only when `WATCHDOG_PID` is this process, as sd_watchdog_enabled(3)).
    pub fn from_env() -> Self {
        let mut usec = 0;
        let watchdog = sd_notify::watchdog_enabled(false, &mut usec)
            .then(|| Duration::from_micros(usec))
            .filter(|d| !d.is_zero());
        Self { watchdog }
    }

    /// Whether a service manager listens.
    pub fn connected() -> bool {
        std::env::var_os("NOTIFY_SOCKET").is_some()
    }
}

/// The datagram for one notification. `monotonic_usec` is only used for RELOADING: systemd 253+ wants
/// `MONOTONIC_USEC` with it (Type=notify-reload) to tell this reload from an earlier one.
pub fn states(notification: &Notification, monotonic_usec: Option<i128>) -> Vec<NotifyState<'_>> {
    match notification {
        Notification::Ready { status } | Notification::Reloaded { status } => {
            vec![NotifyState::Ready, NotifyState::Status(status)]
        }
        Notification::Status(status) => vec![NotifyState::Status(status)],
        Notification::Reloading => {
            let mut states = vec![NotifyState::Reloading];
            if let Some(usec) = monotonic_usec {
                states.push(NotifyState::MonotonicUsec(usec));
            }
            states.push(NotifyState::Status("reloading configuration"));
            states
        }
        Notification::Stopping => vec![NotifyState::Stopping],
        Notification::Watchdog => vec![NotifyState::Watchdog],
    }
}

impl Notifier for SdNotifier {
    fn notify(&self, notification: Notification) {
        let monotonic = match &notification {
            Notification::Reloading => match NotifyState::monotonic_usec_now() {
                Ok(NotifyState::MonotonicUsec(usec)) => Some(usec),
                _ => None,
            },
            _ => None,
        };
        if let Err(error) = sd_notify::notify(false, &states(&notification, monotonic)) {
            tracing::warn!(%error, "sd_notify failed");
        }
    }

    fn watchdog_interval(&self) -> Option<Duration> {
        self.watchdog
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(states: &[NotifyState<'_>]) -> Vec<String> {
        states.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn each_notification_maps_to_its_datagram() {
        assert_eq!(
            text(&states(
                &Notification::Ready {
                    status: "idle".into()
                },
                None
            )),
            ["READY=1", "STATUS=idle"]
        );
        assert_eq!(
            text(&states(&Notification::Reloading, Some(42))),
            [
                "RELOADING=1",
                "MONOTONIC_USEC=42",
                "STATUS=reloading configuration"
            ]
        );
        assert_eq!(
            text(&states(
                &Notification::Reloaded {
                    status: "idle".into()
                },
                None
            )),
            ["READY=1", "STATUS=idle"]
        );
        assert_eq!(text(&states(&Notification::Stopping, None)), ["STOPPING=1"]);
        assert_eq!(text(&states(&Notification::Watchdog, None)), ["WATCHDOG=1"]);
    }
}

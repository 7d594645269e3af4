//! Whether the daemon may tell the service manager it is alive (`WATCHDOG=1`).
//!
//! systemd's watchdog (`WatchdogSec=`, sd_watchdog_enabled(3)) only helps if the ping means something: a ping
//! from a timer that fires whatever the daemon's state keeps a wedged daemon alive forever. The ping is
//! therefore earned: the owner loop must have turned within the watchdog interval, and no reload may be
//! running past its deadline. The clock is passed in.

use std::time::{Duration, Instant};

/// The plain values the judgement needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Pulse {
    pub now: Instant,
    /// When the owner loop last finished handling something.
    pub last_turn: Instant,
    /// The service manager's watchdog interval (`WATCHDOG_USEC`).
    pub interval: Duration,
    /// When the reload in flight, if any, is due to have ended.
    pub reload_deadline: Option<Instant>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Health {
    /// Ping.
    Alive,
    /// The owner loop has not turned for `silent_for`, longer than the interval.
    LoopStalled { silent_for: Duration },
    /// The reload in flight has run `overdue_by` past its deadline.
    ReloadStuck { overdue_by: Duration },
}

impl Health {
    pub fn is_alive(&self) -> bool {
        *self == Health::Alive
    }
}

/// Judges one watchdog tick. A stuck reload wins over a stalled loop: it is the more specific cause.
pub fn assess(pulse: Pulse) -> Health {
    if let Some(deadline) = pulse.reload_deadline {
        // At the deadline itself the loop reports the reload as stuck: the ping stops at the same instant.
        if pulse.now >= deadline {
            return Health::ReloadStuck {
                overdue_by: pulse.now - deadline,
            };
        }
    }
    let silent_for = pulse.now.saturating_duration_since(pulse.last_turn);
    if silent_for > pulse.interval {
        return Health::LoopStalled { silent_for };
    }
    Health::Alive
}

/// When a reload started at `started` is due to have ended.
pub fn reload_deadline(started: Instant, timeout: Duration) -> Instant {
    started + timeout
}

#[cfg(test)]
mod tests {
    use super::*;

    const INTERVAL: Duration = Duration::from_secs(60);

    fn pulse(now: u64, last_turn: u64, reload_deadline: Option<u64>) -> Pulse {
        let t0 = Instant::now();
        let at = |s: u64| t0 + Duration::from_secs(s);
        Pulse {
            now: at(now),
            last_turn: at(last_turn),
            interval: INTERVAL,
            reload_deadline: reload_deadline.map(at),
        }
    }

    #[test]
    fn a_loop_that_turned_within_the_interval_is_alive() {
        assert_eq!(assess(pulse(100, 70, None)), Health::Alive);
        // Exactly one interval is still in time.
        assert_eq!(assess(pulse(100, 40, None)), Health::Alive);
    }

    #[test]
    fn a_loop_silent_for_longer_than_the_interval_is_stalled() {
        assert_eq!(
            assess(pulse(100, 39, None)),
            Health::LoopStalled {
                silent_for: Duration::from_secs(61)
            }
        );
    }

    #[test]
    fn a_reload_before_its_deadline_is_alive_and_after_it_is_stuck() {
        assert_eq!(assess(pulse(100, 99, Some(180))), Health::Alive);
        assert_eq!(assess(pulse(179, 178, Some(180))), Health::Alive);
        assert_eq!(
            assess(pulse(180, 179, Some(180))),
            Health::ReloadStuck {
                overdue_by: Duration::ZERO
            }
        );
        assert_eq!(
            assess(pulse(181, 180, Some(180))),
            Health::ReloadStuck {
                overdue_by: Duration::from_secs(1)
            }
        );
    }

    #[test]
    fn a_stuck_reload_is_named_even_when_the_loop_is_also_silent() {
        assert_eq!(
            assess(pulse(500, 0, Some(180))),
            Health::ReloadStuck {
                overdue_by: Duration::from_secs(320)
            }
        );
    }

    #[test]
    fn a_turn_recorded_after_now_does_not_underflow() {
        // Clocks are read in different places; a turn stamped a hair after the tick is simply recent.
        assert_eq!(assess(pulse(100, 101, None)), Health::Alive);
    }

    #[test]
    fn the_deadline_is_the_start_plus_the_timeout() {
        let t0 = Instant::now();
        assert_eq!(
            reload_deadline(t0, Duration::from_secs(180)),
            t0 + Duration::from_secs(180)
        );
    }
}

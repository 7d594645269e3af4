//! The debouncer: a pure state machine that turns a stream of hotplug events into reload starts.
//!
//! Rules, all with the clock passed in (no clock is read here):
//! - a burst is reloaded once it has been quiet for `quiet_window`, or `max_delay` after its first event,
//!   whichever comes first, so a storm that never pauses still reloads;
//! - at most one reload is in flight; events that arrive during it coalesce into exactly one follow-up;
//! - a failed reload is retried after an exponential backoff capped at `backoff_max`, unless the failure says a
//!   retry cannot help (then the debouncer waits for the next event or a forced reload).

use std::time::{Duration, Instant};

/// The debouncer's timings (`[debounce]` in the configuration).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct DebounceTimings {
    pub quiet_window: Duration,
    pub max_delay: Duration,
    pub backoff_initial: Duration,
    pub backoff_max: Duration,
}

impl Default for DebounceTimings {
    fn default() -> Self {
        Self {
            quiet_window: Duration::from_millis(1000),
            max_delay: Duration::from_millis(10_000),
            backoff_initial: Duration::from_millis(1000),
            backoff_max: Duration::from_millis(60_000),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// Nothing to do.
    Idle,
    /// Events seen, waiting for quiet (or the maximum delay).
    Waiting,
    /// A reload is in flight.
    Reloading,
    /// The last reload failed; waiting to retry.
    Backoff,
    /// The last reload failed in a way a retry cannot fix; waiting for a new event or a forced reload.
    Failed,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReloadOutcome {
    Succeeded,
    /// The reload failed; `retry` says whether trying the same again can help.
    Failed {
        retry: bool,
    },
}

/// A burst of events not yet covered by a started reload.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Burst {
    first: Instant,
    last: Instant,
    /// Fire as soon as possible (a forced reload), ignoring the quiet window.
    urgent: bool,
}

impl Burst {
    fn starting(now: Instant) -> Self {
        Burst {
            first: now,
            last: now,
            urgent: false,
        }
    }

    fn extend(&mut self, now: Instant) {
        self.last = self.last.max(now);
    }
}

#[derive(Clone, Debug)]
pub struct Debouncer {
    settings: DebounceTimings,
    /// Events waiting for a reload that has not started yet.
    pending: Option<Burst>,
    /// When the in-flight reload started.
    in_flight: Option<Instant>,
    /// Earliest time the next retry may start, after a failure.
    retry_at: Option<Instant>,
    /// Consecutive failures, for the backoff exponent.
    failures: u32,
    /// The last failure said retrying cannot help.
    stuck: bool,
    /// Events absorbed into a reload that was already pending or in flight.
    coalesced: u64,
}

impl Debouncer {
    pub fn new(settings: DebounceTimings) -> Self {
        Self {
            settings,
            pending: None,
            in_flight: None,
            retry_at: None,
            failures: 0,
            stuck: false,
            coalesced: 0,
        }
    }

    pub fn settings(&self) -> &DebounceTimings {
        &self.settings
    }

    /// Takes new timing settings (config reload); the state carries over.
    pub fn set_settings(&mut self, settings: DebounceTimings) {
        self.settings = settings;
    }

    /// A hotplug event arrived at `now`.
    pub fn on_event(&mut self, now: Instant) {
        self.stuck = false;
        match &mut self.pending {
            Some(burst) => {
                burst.extend(now);
                self.coalesced += 1;
            }
            None => {
                // An event during a reload, or during a backoff, rides on the reload that comes next: it is
                // coalesced, not a burst of its own.
                if self.in_flight.is_some() || self.retry_at.is_some() {
                    self.coalesced += 1;
                }
                self.pending = Some(Burst::starting(now));
            }
        }
    }

    /// Several events at once (a batch read from the socket) count as that many events at `now`.
    pub fn on_events(&mut self, now: Instant, count: u64) {
        for _ in 0..count {
            self.on_event(now);
        }
    }

    /// Asks for a reload as soon as none is in flight (a D-Bus `Reload()` call or a kernel log finding).
    pub fn force(&mut self, now: Instant) {
        self.stuck = false;
        self.retry_at = None;
        let burst = self.pending.get_or_insert(Burst::starting(now));
        burst.urgent = true;
    }

    /// When the owner loop should next call [`Self::due`]; `None` means wait for an event.
    pub fn next_deadline(&self) -> Option<Instant> {
        if self.in_flight.is_some() || self.stuck {
            return None;
        }
        if let Some(retry_at) = self.retry_at {
            return Some(match self.pending {
                Some(burst) if burst.urgent => burst.first,
                _ => retry_at,
            });
        }
        let burst = self.pending?;
        if burst.urgent {
            return Some(burst.first);
        }
        let quiet = burst.last + self.settings.quiet_window;
        let cap = burst.first + self.settings.max_delay;
        Some(quiet.min(cap))
    }

    /// True when a reload should start at `now`.
    pub fn due(&self, now: Instant) -> bool {
        self.next_deadline().is_some_and(|deadline| now >= deadline)
    }

    /// The owner started a reload at `now`: every event so far is covered by it.
    pub fn on_reload_started(&mut self, now: Instant) {
        debug_assert!(self.in_flight.is_none(), "two reloads in flight");
        self.pending = None;
        self.retry_at = None;
        self.in_flight = Some(now);
    }

    /// The in-flight reload ended at `now`.
    pub fn on_reload_finished(&mut self, now: Instant, outcome: ReloadOutcome) {
        self.in_flight = None;
        match outcome {
            ReloadOutcome::Succeeded => {
                self.failures = 0;
                self.stuck = false;
            }
            ReloadOutcome::Failed { retry: true } => {
                self.failures = self.failures.saturating_add(1);
                self.retry_at = Some(now + self.backoff(self.failures));
                // The retry covers what the failed reload was for; events during it are already pending.
                self.pending.get_or_insert(Burst::starting(now));
            }
            ReloadOutcome::Failed { retry: false } => {
                self.failures = self.failures.saturating_add(1);
                // Events that arrived during the reload still deserve a try: they may have fixed the cause.
                self.stuck = self.pending.is_none();
            }
        }
    }

    /// Delay before retry number `failures` (1-based): `initial × 2^(failures-1)`, capped.
    pub fn backoff(&self, failures: u32) -> Duration {
        let exponent = failures.saturating_sub(1).min(31);
        let delay = self
            .settings
            .backoff_initial
            .saturating_mul(1u32 << exponent);
        delay.min(self.settings.backoff_max)
    }

    pub fn phase(&self) -> Phase {
        if self.in_flight.is_some() {
            Phase::Reloading
        } else if self.retry_at.is_some() {
            Phase::Backoff
        } else if self.pending.is_some() {
            Phase::Waiting
        } else if self.stuck {
            Phase::Failed
        } else {
            Phase::Idle
        }
    }

    pub fn coalesced(&self) -> u64 {
        self.coalesced
    }

    pub fn consecutive_failures(&self) -> u32 {
        self.failures
    }

    pub fn is_reloading(&self) -> bool {
        self.in_flight.is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn settings() -> DebounceTimings {
        DebounceTimings {
            quiet_window: Duration::from_millis(1000),
            max_delay: Duration::from_millis(10_000),
            backoff_initial: Duration::from_millis(500),
            backoff_max: Duration::from_millis(8000),
        }
    }

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn idle_debouncer_has_no_deadline() {
        let d = Debouncer::new(settings());
        assert_eq!(d.next_deadline(), None);
        assert_eq!(d.phase(), Phase::Idle);
    }

    #[test]
    fn one_event_fires_after_the_quiet_window() {
        let t0 = Instant::now();
        let mut d = Debouncer::new(settings());
        d.on_event(t0);
        assert_eq!(d.next_deadline(), Some(t0 + ms(1000)));
        assert!(!d.due(t0 + ms(999)));
        assert!(d.due(t0 + ms(1000)));
    }

    #[test]
    fn a_burst_is_one_reload_and_counts_coalesced_events() {
        let t0 = Instant::now();
        let mut d = Debouncer::new(settings());
        for i in 0..16_384u64 {
            d.on_event(t0 + Duration::from_micros(i * 10));
        }
        let last = t0 + Duration::from_micros(16_383 * 10);
        assert_eq!(d.next_deadline(), Some(last + ms(1000)));
        assert_eq!(d.coalesced(), 16_383);
    }

    #[test]
    fn a_storm_that_never_pauses_fires_at_max_delay() {
        let t0 = Instant::now();
        let mut d = Debouncer::new(settings());
        let mut now = t0;
        while now < t0 + ms(20_000) {
            d.on_event(now);
            if d.due(now) {
                break;
            }
            now += ms(100);
        }
        assert_eq!(now, t0 + ms(10_000));
    }

    #[test]
    fn events_during_a_reload_make_exactly_one_follow_up() {
        let t0 = Instant::now();
        let mut d = Debouncer::new(settings());
        d.on_event(t0);
        d.on_reload_started(t0 + ms(1000));
        assert_eq!(
            d.next_deadline(),
            None,
            "no second reload while one is in flight"
        );
        for i in 0..500 {
            d.on_event(t0 + ms(1001 + i));
        }
        assert_eq!(d.phase(), Phase::Reloading);
        d.on_reload_finished(t0 + ms(3000), ReloadOutcome::Succeeded);
        assert_eq!(d.phase(), Phase::Waiting);
        let follow_up = d.next_deadline().expect("one follow-up");
        assert_eq!(follow_up, t0 + ms(1500) + ms(1000));
        d.on_reload_started(follow_up.max(t0 + ms(3000)));
        d.on_reload_finished(t0 + ms(4000), ReloadOutcome::Succeeded);
        assert_eq!(d.next_deadline(), None, "and no third");
    }

    #[test]
    fn a_failure_is_retried_with_growing_capped_backoff() {
        let t0 = Instant::now();
        let mut d = Debouncer::new(settings());
        d.on_event(t0);
        let mut now = t0 + ms(1000);
        let mut delays = Vec::new();
        for _ in 0..6 {
            d.on_reload_started(now);
            d.on_reload_finished(now, ReloadOutcome::Failed { retry: true });
            assert_eq!(d.phase(), Phase::Backoff);
            let retry = d.next_deadline().expect("a retry is scheduled");
            delays.push((retry - now).as_millis());
            now = retry;
        }
        assert_eq!(delays, vec![500, 1000, 2000, 4000, 8000, 8000]);
        d.on_reload_started(now);
        d.on_reload_finished(now, ReloadOutcome::Succeeded);
        assert_eq!(d.phase(), Phase::Idle);
        assert_eq!(d.consecutive_failures(), 0);
    }

    #[test]
    fn a_hopeless_failure_waits_for_the_next_event() {
        let t0 = Instant::now();
        let mut d = Debouncer::new(settings());
        d.on_event(t0);
        d.on_reload_started(t0 + ms(1000));
        d.on_reload_finished(t0 + ms(1100), ReloadOutcome::Failed { retry: false });
        assert_eq!(d.phase(), Phase::Failed);
        assert_eq!(d.next_deadline(), None);
        d.on_event(t0 + ms(5000));
        assert_eq!(d.next_deadline(), Some(t0 + ms(6000)));
    }

    #[test]
    fn force_fires_now_or_right_after_the_reload_in_flight() {
        let t0 = Instant::now();
        let mut d = Debouncer::new(settings());
        d.force(t0);
        assert!(d.due(t0));
        d.on_reload_started(t0);
        d.force(t0 + ms(10));
        assert_eq!(d.next_deadline(), None);
        d.on_reload_finished(t0 + ms(500), ReloadOutcome::Succeeded);
        assert_eq!(d.next_deadline(), Some(t0 + ms(10)));
        assert!(d.due(t0 + ms(500)));
    }

    #[test]
    fn force_cuts_a_backoff_short() {
        let t0 = Instant::now();
        let mut d = Debouncer::new(settings());
        d.force(t0);
        d.on_reload_started(t0);
        d.on_reload_finished(t0, ReloadOutcome::Failed { retry: true });
        d.force(t0 + ms(1));
        assert!(d.due(t0 + ms(1)));
    }

    /// One step of a simulated run: an event after a gap, or the passage of time.
    #[derive(Clone, Debug)]
    enum Step {
        Event { gap_ms: u64 },
        Idle { gap_ms: u64 },
    }

    fn steps() -> impl Strategy<Value = Vec<Step>> {
        prop::collection::vec(
            prop_oneof![
                4 => (0u64..1500).prop_map(|gap_ms| Step::Event { gap_ms }),
                1 => (0u64..30_000).prop_map(|gap_ms| Step::Idle { gap_ms }),
            ],
            1..300,
        )
    }

    /// Drives the debouncer like the owner loop does, with reloads that take `reload_ms` and fail per
    /// `failures`. Returns (event times, reload (start, end) times).
    fn simulate(
        steps: &[Step],
        reload_ms: u64,
        failures: &[bool],
    ) -> (Vec<Instant>, Vec<(Instant, Instant, bool)>) {
        let t0 = Instant::now();
        let mut d = Debouncer::new(settings());
        let mut events = Vec::new();
        let mut reloads: Vec<(Instant, Instant, bool)> = Vec::new();
        let mut in_flight: Option<(Instant, Instant, bool)> = None;
        let mut now = t0;
        let mut failure_iter = failures.iter().copied().cycle();

        // Advances time to `until`, processing every reload start/finish on the way in order.
        let mut advance = |d: &mut Debouncer,
                           in_flight: &mut Option<(Instant, Instant, bool)>,
                           reloads: &mut Vec<(Instant, Instant, bool)>,
                           now: &mut Instant,
                           until: Instant| loop {
            let finish = in_flight.map(|(_, end, _)| end);
            let start = d.next_deadline();
            let next = [finish, start].into_iter().flatten().min();
            match next {
                Some(t) if t <= until => {
                    *now = t.max(*now);
                    if let Some((s, end, failed)) = *in_flight {
                        if end <= *now {
                            let outcome = if failed {
                                ReloadOutcome::Failed { retry: true }
                            } else {
                                ReloadOutcome::Succeeded
                            };
                            d.on_reload_finished(*now, outcome);
                            reloads.push((s, end, failed));
                            *in_flight = None;
                            continue;
                        }
                    }
                    if d.due(*now) {
                        assert!(in_flight.is_none(), "two reloads in flight");
                        d.on_reload_started(*now);
                        let failed = failure_iter.next().unwrap_or(false);
                        *in_flight = Some((*now, *now + ms(reload_ms), failed));
                    }
                }
                _ => {
                    *now = until.max(*now);
                    break;
                }
            }
        };

        for step in steps {
            match step {
                Step::Event { gap_ms } => {
                    let at = now + ms(*gap_ms);
                    advance(&mut d, &mut in_flight, &mut reloads, &mut now, at);
                    d.on_event(now);
                    events.push(now);
                }
                Step::Idle { gap_ms } => {
                    let at = now + ms(*gap_ms);
                    advance(&mut d, &mut in_flight, &mut reloads, &mut now, at);
                }
            }
        }
        // Drain: long enough for every retry and follow-up.
        let end = now + ms(1_000_000);
        advance(&mut d, &mut in_flight, &mut reloads, &mut now, end);
        assert!(in_flight.is_none());
        (events, reloads)
    }

    proptest! {
        #[test]
        fn never_two_reloads_in_flight(steps in steps(), reload_ms in 0u64..5000) {
            let (_, reloads) = simulate(&steps, reload_ms, &[false]);
            for pair in reloads.windows(2) {
                prop_assert!(pair[0].1 <= pair[1].0, "reload {:?} overlaps {:?}", pair[0], pair[1]);
            }
        }

        #[test]
        fn every_event_is_covered_within_max_delay_plus_the_reload_in_flight(
            steps in steps(), reload_ms in 0u64..5000,
        ) {
            let (events, reloads) = simulate(&steps, reload_ms, &[false]);
            let bound = settings().max_delay + ms(reload_ms);
            for event in events {
                let covering = reloads.iter().find(|(start, _, _)| *start >= event);
                let Some((start, _, _)) = covering else {
                    return Err(TestCaseError::fail(format!("event at {event:?} never covered")));
                };
                prop_assert!(*start - event <= bound, "covered after {:?} > {:?}", *start - event, bound);
            }
        }

        #[test]
        fn a_burst_without_pauses_is_one_reload(n in 1usize..5000, gap_ms in 0u64..999) {
            let steps: Vec<Step> = (0..n).map(|_| Step::Event { gap_ms }).collect();
            let span = gap_ms * (n as u64 - 1);
            let (_, reloads) = simulate(&steps, 100, &[false]);
            // Within max delay: exactly one. Longer storms: one per max delay, never one per event.
            let bound = 1 + span / settings().max_delay.as_millis() as u64;
            prop_assert!(!reloads.is_empty());
            prop_assert!(reloads.len() as u64 <= bound, "{} reloads for {} events", reloads.len(), n);
            if span < settings().max_delay.as_millis() as u64 {
                prop_assert_eq!(reloads.len(), 1);
            }
        }

        #[test]
        fn a_failed_reload_is_retried_until_one_succeeds(
            steps in steps(), failures in prop::collection::vec(any::<bool>(), 1..6),
        ) {
            let mut failures = failures;
            failures.push(false);
            let (events, reloads) = simulate(&steps, 200, &failures);
            if let Some(last_event) = events.last() {
                let ok_after = reloads.iter().any(|(start, _, failed)| *start >= *last_event && !failed);
                prop_assert!(ok_after, "the last event has no successful reload after it: {reloads:?}");
            }
            if let Some(last) = reloads.last() {
                prop_assert!(!last.2, "the run ended on a failure that was not retried");
            }
        }
    }
}

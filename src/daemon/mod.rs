//! The owner loop: one task owns all state and reacts to one [`Event`] at a time. Everything else (uevent
//! sources, signals, D-Bus, loaders) only sends into its channel and reads the [`Status`] it publishes.

pub mod rule_mask;
mod status;

pub(crate) use status::with_status_fields;
pub use status::{saturating_u32, BusSignal, FieldKind, State, Status, StatusField};

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::sync::{broadcast, mpsc, oneshot, watch, Notify};
use tokio::task::{JoinError, JoinHandle};
use tokio::time::Instant;

use crate::config::{ConfigError, InitialLoad, Settings};
use crate::core::debounce::{Debouncer, Phase, ReloadOutcome};
use crate::core::decide::{self, Assessment, Decision, LoadedHeader, LoaderChoice, Triggers};
use crate::core::header_record::{self, AtStart};
use crate::core::health::{self, Health, Pulse};
use crate::core::model::HostSnapshot;
use crate::core::reservation;
use crate::core::uevent_record::UeventBatch;
use crate::edge::{EventSource, HeaderRecords, Loader, Notifier, RuleFiles};
use crate::host::snapshot::{SnapshotError, SnapshotReader};
pub use crate::messages::{Event, Request, SourceEnd};
use crate::messages::{LoadError, LoadReport, LoadRequest, Notification, UeventSender};

/// How a refused configuration reload starts in `LastError`; a later good reload clears it.
const CONFIG_NOT_RELOADED: &str = "configuration not reloaded, keeping the previous one";

/// At most this many `Reload()` callers wait for the next reload's outcome; more are answered at once (the
/// reload they asked for is already due). Without a bound, callers piling up behind a stuck reload would
/// grow the daemon without limit.
pub const MAX_RELOAD_WAITERS: usize = 64;

/// The answer to `Reload()` callers while paused.
const PAUSED_RELOAD: &str =
    "paused: the reload will run when the daemon is unpaused (SetPaused false)";

/// Reads the config again on SIGHUP; injected so tests can hand over any outcome.
pub type ConfigSource = Box<dyn FnMut() -> Result<Settings, ConfigError> + Send>;

/// Builds the loaders for a configuration, so a SIGHUP can apply `[loader]` changes (the real service sets one;
/// simulations keep theirs).
pub type LoaderFactory = Box<dyn FnMut(&Settings) -> Loaders + Send>;

/// The loaders the decision can choose between.
pub struct Loaders {
    /// The configured one (native `kexec_file_load`, or the distro's command).
    pub configured: Arc<dyn Loader>,
    /// kexec-tools' `kexec_load` path, for headers the kernel's `kexec_file_load` buffer cannot hold.
    pub kexec_load: Arc<dyn Loader>,
    /// Which crash kernel these load and how (the distro's plan and the loader choice), for the status.
    pub description: String,
}

impl Loaders {
    fn pick(&self, choice: LoaderChoice) -> Arc<dyn Loader> {
        match choice {
            LoaderChoice::Configured => self.configured.clone(),
            LoaderChoice::KexecLoad => self.kexec_load.clone(),
        }
    }
}

/// What the loop does when its event source ends.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum WhenSourceEnds {
    /// A real host: without its source the daemon is blind to hotplug, so it stops and `run` reports why
    /// (the service exits non-zero and systemd's `Restart=on-failure` starts a fresh one).
    #[default]
    Fail,
    /// Simulations: stop once nothing is pending.
    ExitWhenQuiet,
    /// Simulations serving D-Bus: keep answering until told to stop.
    KeepRunning,
}

#[derive(Clone, Debug, Default)]
pub struct RunOptions {
    pub when_source_ends: WhenSourceEnds,
}

/// A reload that ended (or whose task died), as the loop handles it.
#[derive(Debug)]
struct ReloadFinished {
    result: Result<LoadReport, LoadError>,
    request: LoadRequest,
    duration: Duration,
}

/// The reload in flight: the loop keeps its task's handle, so a panicked or cancelled loader is a failed
/// reload instead of a reload that never ends.
struct InFlight {
    task: JoinHandle<Result<LoadReport, LoadError>>,
    request: LoadRequest,
    loader: String,
    started: std::time::Instant,
    deadline: std::time::Instant,
    timeout: Duration,
    /// Already reported as stuck.
    timed_out: bool,
}

/// What the watchdog task reads to judge the loop's health (see [`health::assess`]).
#[derive(Clone, Copy, Debug)]
struct Heartbeat {
    last_turn: std::time::Instant,
    reload_deadline: Option<std::time::Instant>,
}

/// What woke the loop.
enum Input {
    Event(Event),
    ReloadJoined(Result<Result<LoadReport, LoadError>, JoinError>),
    ReloadDeadline,
    /// The watchdog task asks the loop to turn, so that it can tell a live loop from a wedged one.
    Nudge,
}

/// How the loop ended: the last status it published and, on a real host, why it stopped early.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Stopped {
    pub status: Status,
    /// Why the loop stopped early because its event source ended (real hosts only).
    pub source_lost: Option<String>,
}

/// Handles for the rest of the program: send events, watch status, hear what becomes a D-Bus signal.
#[derive(Clone)]
pub struct DaemonHandle {
    pub events: mpsc::Sender<Event>,
    pub status: watch::Receiver<Status>,
    pub bus_signals: broadcast::Sender<BusSignal>,
}

pub struct Daemon {
    settings: Settings,
    config_source: ConfigSource,
    reader: SnapshotReader,
    loaders: Loaders,
    loader_factory: Option<LoaderFactory>,
    notifier: Arc<dyn Notifier>,
    /// Where the distribution's hotplug rule is masked while the daemon runs (`rule_mask`).
    rule_files: Option<Arc<dyn RuleFiles>>,
    /// Where the record of the loaded header is kept across restarts (`core::header_record`).
    header_records: Option<Arc<dyn HeaderRecords>>,
    options: RunOptions,
    debouncer: Debouncer,
    events_tx: mpsc::Sender<Event>,
    events_rx: mpsc::Receiver<Event>,
    status_tx: watch::Sender<Status>,
    bus_signals: broadcast::Sender<BusSignal>,
    /// What the loaded crash kernel's header holds, as far as the daemon knows.
    loaded: Option<LoadedHeader>,
    last_snapshot: Option<HostSnapshot>,
    /// READY=1 was sent: STATUS= changes go to the service manager only after it, READY carries the first.
    ready: bool,
    paused: bool,
    /// Events arrived while paused: one reload follows the unpause.
    missed_while_paused: bool,
    source_finished: bool,
    /// Why the next reload happens, besides what the snapshot shows.
    triggers: Triggers,
    /// The triggers of the reload in flight, given back if it fails so the retry keeps them.
    in_flight_triggers: Triggers,
    /// `Reload()` callers waiting for the outcome of the next reload (at most [`MAX_RELOAD_WAITERS`]).
    reload_waiters: Vec<oneshot::Sender<String>>,
    reload: Option<InFlight>,
    /// The first snapshot has been taken.
    primed: bool,
    /// Set when the source ended on a real host: the loop stops.
    source_lost: Option<String>,
    heartbeat: Arc<Mutex<Heartbeat>>,
}

fn realtime_usec() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}

impl Daemon {
    pub fn new(
        settings: Settings,
        config_source: ConfigSource,
        reader: SnapshotReader,
        loaders: Loaders,
        notifier: Arc<dyn Notifier>,
        options: RunOptions,
    ) -> (Self, DaemonHandle) {
        let (events_tx, events_rx) = mpsc::channel(1024);
        let status = Status {
            loader: loaders.configured.name(),
            crash_kernel_plan: loaders.description.clone(),
            version: env!("CARGO_PKG_VERSION").to_owned(),
            ..Status::default()
        };
        let (status_tx, status_rx) = watch::channel(status);
        let (bus_signals, _) = broadcast::channel(64);
        let handle = DaemonHandle {
            events: events_tx.clone(),
            status: status_rx,
            bus_signals: bus_signals.clone(),
        };
        let daemon = Daemon {
            debouncer: Debouncer::new(settings.debounce.clone()),
            settings,
            config_source,
            reader,
            loaders,
            loader_factory: None,
            notifier,
            rule_files: None,
            header_records: None,
            options,
            events_tx,
            events_rx,
            status_tx,
            bus_signals,
            loaded: None,
            last_snapshot: None,
            ready: false,
            paused: false,
            missed_while_paused: false,
            source_finished: false,
            triggers: Triggers::default(),
            in_flight_triggers: Triggers::default(),
            reload_waiters: Vec::new(),
            reload: None,
            primed: false,
            source_lost: None,
            heartbeat: Arc::new(Mutex::new(Heartbeat {
                last_turn: Instant::now().into_std(),
                reload_deadline: None,
            })),
        };
        (daemon, handle)
    }

    /// Rebuild the loaders with `factory` whenever a config re-read changes `[loader]`.
    pub fn with_loader_factory(mut self, factory: LoaderFactory) -> Self {
        self.loader_factory = Some(factory);
        self
    }

    /// Starts the event source and runs the loop until shutdown (or, on a real host, until the source ends);
    /// returns the last status it published and why it stopped early, if it did.
    pub async fn run(mut self, source: Box<dyn EventSource>) -> Stopped {
        tracing::info!(source = %source.name(), loader = %self.loaders.configured.name(), "starting");
        let source_task = tokio::spawn(source.run(UeventSender::new(self.events_tx.clone())));
        self.prime();
        self.ready();
        // The time between Daemon::new and here (the bus handshake, on a real host) is no stall.
        self.turned();
        let nudge = Arc::new(Notify::new());
        let watchdog_task = self.notifier.watchdog_interval().map(|interval| {
            tokio::spawn(watchdog(
                self.notifier.clone(),
                interval,
                self.heartbeat.clone(),
                nudge.clone(),
            ))
        });

        loop {
            let deadline = if self.paused {
                None
            } else {
                self.debouncer.next_deadline()
            };
            let stuck_at = self
                .reload
                .as_ref()
                .filter(|reload| !reload.timed_out)
                .map(|reload| reload.deadline);
            let input = tokio::select! {
                event = self.events_rx.recv() => Input::Event(event.unwrap_or(Event::Shutdown)),
                _ = sleep_until_std(deadline), if deadline.is_some() => Input::Event(Event::DebounceDeadline),
                joined = join(&mut self.reload), if self.reload.is_some() => Input::ReloadJoined(joined),
                _ = sleep_until_std(stuck_at), if stuck_at.is_some() => Input::ReloadDeadline,
                _ = nudge.notified() => Input::Nudge,
            };
            let go_on = match input {
                Input::Event(event) => self.handle(event),
                Input::ReloadJoined(joined) => {
                    self.on_reload_joined(joined);
                    true
                }
                Input::ReloadDeadline => {
                    self.on_reload_deadline();
                    true
                }
                Input::Nudge => true,
            };
            self.turned();
            if !go_on {
                break;
            }
            if self.options.when_source_ends == WhenSourceEnds::ExitWhenQuiet
                && self.source_finished
                && self.quiescent()
            {
                break;
            }
        }
        self.notifier.notify(Notification::Stopping);
        self.give_back_distro_rule().await;
        source_task.abort();
        if let Some(task) = watchdog_task {
            task.abort();
        }
        // A reload still in flight is left to finish on its own (a kexec_file_load cannot be interrupted; a
        // command loader's child is the loader's to kill). The process is about to exit anyway.
        let status = self.status_tx.borrow().clone();
        tracing::info!(
            events = status.events_seen,
            reloads = status.reloads,
            failed = status.reloads_failed,
            "stopped"
        );
        Stopped {
            status,
            source_lost: self.source_lost,
        }
    }

    /// Records that the loop has just turned, for the watchdog.
    fn turned(&self) {
        let now = Instant::now().into_std();
        if let Ok(mut heartbeat) = self.heartbeat.lock() {
            heartbeat.last_turn = now;
            heartbeat.reload_deadline = self.reload.as_ref().map(|reload| reload.deadline);
        }
    }

    fn quiescent(&self) -> bool {
        !self.missed_while_paused && matches!(self.debouncer.phase(), Phase::Idle | Phase::Failed)
    }

    /// Takes the first snapshot and schedules the initial load when one is due, without loading anything
    /// yet: the real host calls it before it owns the bus name, so that the first D-Bus reader sees real
    /// values. [`Self::run`] does it when nobody did.
    pub fn prime(&mut self) {
        if self.primed {
            return;
        }
        self.primed = true;
        match self.reader.take() {
            Ok(snapshot) => {
                let crash = &snapshot.crash;
                let capacity = decide::capacity(&snapshot, &self.settings.decision_policy());
                tracing::info!(
                    ranges = snapshot.ranges.len(),
                    capacity = %capacity,
                    crash_loaded = crash.loaded,
                    kernel_updates_memory = crash.kernel_updates_memory,
                    kernel_updates_cpu = crash.kernel_updates_cpu,
                    "host snapshot"
                );
                let load_now = match self.settings.initial_load {
                    InitialLoad::Always => true,
                    InitialLoad::IfMissing => !crash.loaded,
                    InitialLoad::Never => false,
                };
                let mut stale_at_start = false;
                if crash.loaded && !load_now {
                    match self.header_at_start(&snapshot) {
                        Ok(header) => self.set_loaded(header),
                        Err(stale) => {
                            // Known stale (the decision says what changed since) or unknown.
                            self.loaded = stale;
                            stale_at_start = true;
                        }
                    }
                }
                if crash.kexec_supported {
                    let now = Instant::now().into_std();
                    if load_now {
                        self.debouncer.force(now);
                    } else if stale_at_start {
                        // A restart in the middle of a burst: the rest of it may still be arriving. Waiting for
                        // the quiet window, as for an event, makes the start's reload and the burst's one.
                        self.debouncer.on_event(now);
                    }
                }
                self.absorb_snapshot(snapshot);
                // Only a daemon that can see the host stands in for the distribution's rule.
                self.stand_in_for_distro_rule(true);
            }
            Err(error) => self.record_snapshot_error(&error),
        }
        self.publish(|_| {});
    }

    /// Keeps the record of the header across restarts (`core::header_record`).
    pub fn with_header_records(mut self, records: Arc<dyn HeaderRecords>) -> Self {
        self.header_records = Some(records);
        self
    }

    /// What the loaded crash kernel's header holds when the daemon starts with one loaded and the settings
    /// trust it: `Ok`, the host's layout now; `Err`, not that: the stale layout an earlier instance recorded, or
    /// nothing known.
    fn header_at_start(
        &self,
        snapshot: &HostSnapshot,
    ) -> Result<LoadedHeader, Option<LoadedHeader>> {
        let now = LoadedHeader::of(snapshot);
        let Some(records) = &self.header_records else {
            return Ok(now);
        };
        let location = records.location();
        let record = match records.read() {
            Ok(record) => record,
            Err(error) => {
                tracing::warn!(record = %location, %error, "cannot read the header record: reloading");
                return Err(None);
            }
        };
        match header_record::at_start(&location, record.as_deref(), &now) {
            // Started after the distro's kdump service loaded it (the unit is ordered after it).
            AtStart::FirstStart | AtStart::Current => Ok(now),
            AtStart::Changed(recorded) => {
                tracing::warn!(
                    record = %location,
                    recorded_ranges = recorded.ranges.len(),
                    ranges = now.ranges.len(),
                    "the host changed while no instance listened: the loaded header is stale, reloading"
                );
                Err(Some(recorded))
            }
            AtStart::Unreadable(error) => {
                tracing::warn!(%error, "the header record cannot be read back: reloading");
                Err(None)
            }
        }
    }

    /// The header now loaded, as the daemon knows it; recorded for a later instance.
    fn set_loaded(&mut self, header: LoadedHeader) {
        if let Some(records) = &self.header_records {
            if let Err(error) = records.write(&header_record::render(&header)) {
                tracing::warn!(
                    record = %records.location(),
                    %error,
                    "cannot keep the header record: a restart will reload once"
                );
            }
        }
        self.loaded = Some(header);
    }

    /// READY=1 with the first status.
    fn ready(&mut self) {
        let summary = self.status_tx.borrow().summary.clone();
        self.ready = true;
        self.notifier
            .notify(Notification::Ready { status: summary });
    }

    /// Returns false to stop the loop.
    fn handle(&mut self, event: Event) -> bool {
        let now = Instant::now().into_std();
        match event {
            Event::Uevents(batch) => self.on_uevents(now, batch),
            Event::KernelLog(finding) => {
                tracing::warn!(
                    line = finding.line(),
                    "kernel reports its crash header update failed"
                );
                self.triggers.kernel_update_failed = Some(finding.line().to_owned());
                self.publish(|s| s.kernel_update_failures += 1);
                if self.paused {
                    self.missed_while_paused = true;
                } else {
                    self.debouncer.on_event(now);
                }
            }
            Event::DebounceDeadline => self.on_deadline(),
            Event::ConfigReload { reply } => self.reload_config(reply),
            Event::Request(request) => self.on_request(now, request),
            Event::SourceFinished(end) => return self.on_source_finished(end),
            Event::Shutdown => return false,
        }
        self.publish(|_| {});
        true
    }

    /// Returns false to stop the loop.
    fn on_source_finished(&mut self, end: SourceEnd) -> bool {
        match self.options.when_source_ends {
            WhenSourceEnds::ExitWhenQuiet | WhenSourceEnds::KeepRunning => {
                tracing::info!(%end, "event source finished");
                self.source_finished = true;
                true
            }
            // Exit rather than reopen in-process: a socket that failed once (a netlink error, udevd gone)
            // says the host changed under the daemon, and a fresh process re-resolves `events.source`
            // (udev or kernel), re-reads the config and takes a fresh snapshot, while systemd's
            // Restart=on-failure, RestartSec= and start limits give the backoff and make the failure
            // visible (`systemctl status`, the journal) instead of hiding it in a retry loop.
            WhenSourceEnds::Fail => {
                let message = format!(
                    "the event source ended ({end}): the daemon cannot see hotplug events, so it stops \
                     (the service manager restarts it)"
                );
                tracing::error!("{message}");
                // The last status the service manager and D-Bus see says so: never "idle" while blind.
                self.publish(|s| s.last_error = message.clone());
                self.source_lost = Some(message);
                false
            }
        }
    }

    fn on_uevents(&mut self, now: std::time::Instant, batch: UeventBatch) {
        let count = batch.events.len() as u64;
        if batch.overflows > 0 {
            tracing::warn!(
                overflows = batch.overflows,
                "uevent socket overflowed (an unknown number of uevents lost): taking a fresh snapshot"
            );
        }
        let coalesced_before = self.debouncer.coalesced();
        // A lost uevent may have been a hotplug: treat the overflow as one event so a snapshot follows.
        let relevant = count + u64::from(batch.overflows > 0);
        if self.paused {
            self.missed_while_paused |= relevant > 0;
        } else {
            self.debouncer.on_events(now, relevant);
        }
        let coalesced = self.debouncer.coalesced() - coalesced_before;
        self.publish(|s| {
            s.events_seen += count;
            s.events_malformed += batch.malformed;
            s.uevent_overflows += batch.overflows;
            s.events_coalesced += coalesced;
            s.uevent_batches += 1;
        });
    }

    fn on_request(&mut self, now: std::time::Instant, request: Request) {
        match request {
            Request::Reload { reply } => {
                self.triggers.forced = true;
                self.debouncer.force(now);
                if self.paused {
                    // Paused, the reload waits for the unpause, which may never come: say so now.
                    let _ = reply.send(PAUSED_RELOAD.to_owned());
                } else if self.reload_waiters.len() >= MAX_RELOAD_WAITERS {
                    let _ = reply.send(format!(
                        "queued: {MAX_RELOAD_WAITERS} callers already wait for the next reload, which covers \
                         this request too; its outcome will show in LastReloadReason or LastError"
                    ));
                } else {
                    self.reload_waiters.push(reply);
                }
            }
            Request::SetPaused { paused, reply } => {
                if self.paused && !paused && self.missed_while_paused {
                    self.debouncer.on_event(now);
                }
                if paused != self.paused {
                    tracing::info!(paused, "pause changed");
                }
                if paused && self.reload.is_none() {
                    // Their reload has not started and now waits for the unpause: answer them now. Callers
                    // of a reload in flight get its outcome.
                    self.answer_waiters(PAUSED_RELOAD);
                }
                self.paused = paused;
                self.missed_while_paused = false;
                self.publish(|s| s.paused = paused);
                let _ = reply.send(());
            }
        }
    }

    fn on_deadline(&mut self) {
        let now = Instant::now().into_std();
        if !self.debouncer.due(now) {
            return;
        }
        let triggers = std::mem::take(&mut self.triggers);
        // The debouncer enters its reload phase only once the decision is made, so that what the snapshot
        // publishes meanwhile never shows a "reloading" that a skip or a refusal did not do.
        let snapshot = match self.reader.take() {
            Ok(snapshot) => snapshot,
            Err(error) => {
                self.record_snapshot_error(&error);
                self.debouncer.on_reload_started(now);
                self.debouncer
                    .on_reload_finished(now, ReloadOutcome::Failed { retry: true });
                self.triggers = triggers;
                return;
            }
        };
        let assessment = decide::decide(
            self.loaded.as_ref(),
            &snapshot,
            &triggers,
            &self.settings.decision_policy(),
        );
        tracing::info!(
            decision = %assessment.decision,
            needed = assessment.needed,
            capacity = %assessment.capacity,
            "decided"
        );
        if let Some(warning) = &assessment.outside_header {
            tracing::warn!("{warning}");
        }
        self.absorb_snapshot(snapshot.clone());
        if let Some((needed, capacity)) = assessment.decision.buffer_too_small() {
            let _ = self
                .bus_signals
                .send(BusSignal::KernelBufferTooSmall { needed, capacity });
        }
        self.debouncer.on_reload_started(now);
        match assessment.decision.clone() {
            Decision::Skip { reason } => {
                if matches!(reason, decide::SkipReason::KernelUpdatesHeader { .. }) {
                    // The kernel wrote this layout into the header itself.
                    self.set_loaded(LoadedHeader::of(&snapshot));
                }
                self.debouncer
                    .on_reload_finished(now, ReloadOutcome::Succeeded);
                let text = assessment.with_warning(format!("skipped: {reason}"));
                self.publish(|s| {
                    s.reloads_skipped += 1;
                    s.last_decision = text.clone();
                });
                self.answer_waiters(&text);
            }
            Decision::CannotReload { reason } => {
                let text = assessment.with_warning(format!("cannot reload: {reason}"));
                tracing::error!("{text}");
                self.debouncer
                    .on_reload_finished(now, ReloadOutcome::Failed { retry: false });
                self.publish(|s| {
                    s.last_error = text.clone();
                    s.last_decision = text.clone();
                });
                self.answer_waiters(&text);
            }
            Decision::Reload { loader, .. } => {
                self.in_flight_triggers = triggers;
                self.start_reload(now, &snapshot, &assessment, loader)
            }
        }
    }

    fn start_reload(
        &mut self,
        now: std::time::Instant,
        snapshot: &HostSnapshot,
        assessment: &Assessment,
        choice: LoaderChoice,
    ) {
        let reason = assessment.why();
        let request = LoadRequest {
            ranges: Arc::new(snapshot.ranges.clone()),
            cpus: snapshot.present_cpus.clone(),
            method: choice,
            reason: reason.clone(),
        };
        self.publish(|s| s.last_decision = assessment.describe());
        if self.settings.dry_run {
            tracing::info!(%reason, ranges = snapshot.ranges.len(), "dry run: would load the crash kernel");
            self.debouncer
                .on_reload_finished(now, ReloadOutcome::Succeeded);
            self.publish(|s| s.reloads_skipped += 1);
            self.answer_waiters(&format!("dry run: would reload: {reason}"));
            return;
        }
        let loader = self.loaders.pick(choice);
        tracing::info!(loader = %loader.name(), ranges = request.ranges.len(), "reloading the crash kernel");
        self.notifier
            .notify(Notification::Status(format!("reloading: {reason}")));
        let name = loader.name();
        let load = loader.load(request.clone());
        let timeout = self.settings.reload_timeout;
        self.reload = Some(InFlight {
            // Its own task, so that a panic in the loader is caught by tokio and handed back to the loop as
            // a JoinError instead of unwinding through it.
            task: tokio::spawn(load),
            request,
            loader: name,
            started: now,
            deadline: health::reload_deadline(now, timeout),
            timeout,
            timed_out: false,
        });
    }

    /// The reload task ended: normally, by a panic in the loader, or cancelled.
    fn on_reload_joined(&mut self, joined: Result<Result<LoadReport, LoadError>, JoinError>) {
        let now = Instant::now().into_std();
        let Some(reload) = self.reload.take() else {
            return;
        };
        let result = joined.unwrap_or_else(|error| {
            // Retried like any failure: a panic says nothing about whether the next attempt can work.
            Err(LoadError {
                message: task_failure(error),
                retry: true,
            })
        });
        self.on_reload_finished(
            now,
            ReloadFinished {
                result,
                request: reload.request,
                duration: now.saturating_duration_since(reload.started),
            },
        );
    }

    /// The reload in flight has outlived `daemon.reload_timeout_ms`: report it, count it, keep waiting.
    ///
    /// It is not aborted. A native load is one kexec_file_load(2) in a blocking thread: a syscall cannot be
    /// interrupted from user space, and dropping the task would only lose its outcome while the kernel may
    /// still hold the kexec lock (the next attempt would fail with EBUSY) and may still replace the image.
    /// The loaders that run a child process (kexec-tools, the distribution's command) kill it at
    /// `loader.command_timeout_ms`, which the config keeps at most this timeout, so what is still running
    /// here is a hang no one can undo in-process. The watchdog is withheld from now on (see `watchdog`), so
    /// systemd's WatchdogSec= kills and restarts the daemon; one reload at a time stays true meanwhile.
    fn on_reload_deadline(&mut self) {
        let Some(reload) = self.reload.as_mut() else {
            return;
        };
        reload.timed_out = true;
        let message = format!(
            "reload stuck: {} has run for {} s, past daemon.reload_timeout_ms ({}); not aborted (a kexec load \
             cannot be interrupted), the watchdog is no longer fed",
            reload.loader,
            reload.timeout.as_secs(),
            reload.timeout.as_millis()
        );
        let signal = BusSignal::ReloadTimedOut {
            reason: reload.request.reason.clone(),
            timeout_usec: reload.timeout.as_micros() as u64,
        };
        tracing::error!("{message}");
        self.publish(|s| {
            s.reloads_timed_out += 1;
            s.last_error = message.clone();
        });
        let _ = self.bus_signals.send(signal);
    }

    fn on_reload_finished(&mut self, now: std::time::Instant, finished: ReloadFinished) {
        let ReloadFinished {
            result,
            request,
            duration,
        } = finished;
        let ranges = request.ranges.len() as u32;
        let duration_usec = duration.as_micros() as u64;
        match result {
            Ok(report) => {
                tracing::info!(
                    loader = %report.loader,
                    ranges,
                    duration_ms = duration.as_millis() as u64,
                    detail = %report.detail,
                    "crash kernel reloaded"
                );
                self.set_loaded(LoadedHeader {
                    ranges: (*request.ranges).clone(),
                    cpus: request.cpus,
                });
                self.debouncer
                    .on_reload_finished(now, ReloadOutcome::Succeeded);
                self.publish(|s| {
                    s.reloads += 1;
                    s.last_reload_usec = realtime_usec();
                    s.last_reload_duration_usec = duration_usec;
                    s.last_reload_reason = request.reason.clone();
                    s.last_error.clear();
                    s.crash_kernel_loaded = true;
                    if request.method == LoaderChoice::KexecLoad {
                        // A kexec_load without the hotplug flag is not updated by the kernel.
                        s.kernel_updates_memory = false;
                        s.kernel_updates_cpu = false;
                    }
                });
                let _ = self.bus_signals.send(BusSignal::ReloadFinished {
                    success: true,
                    reason: request.reason.clone(),
                    duration_usec,
                    ranges,
                });
                self.answer_waiters(&format!("reloaded: {}", request.reason));
                // A reload through SUSE's `systemctl restart kdump` copies kdump's rule over the mask.
                self.stand_in_for_distro_rule(false);
            }
            Err(error) => {
                let backoff = self
                    .debouncer
                    .backoff(self.debouncer.consecutive_failures() + 1);
                tracing::error!(
                    %error,
                    retry = error.retry,
                    retry_in_ms = error.retry.then_some(backoff.as_millis() as u64),
                    "crash kernel reload failed"
                );
                // The retry keeps what made this reload necessary; whether a crash kernel is still loaded
                // after the failure, the next snapshot says.
                let lost = std::mem::take(&mut self.in_flight_triggers);
                self.triggers.forced |= lost.forced;
                if self.triggers.kernel_update_failed.is_none() {
                    self.triggers.kernel_update_failed = lost.kernel_update_failed;
                }
                self.debouncer
                    .on_reload_finished(now, ReloadOutcome::Failed { retry: error.retry });
                let message = error.message.clone();
                self.publish(|s| {
                    s.reloads_failed += 1;
                    s.last_error = format!("reload failed: {message}");
                    s.last_reload_duration_usec = duration_usec;
                });
                let _ = self.bus_signals.send(BusSignal::ReloadFinished {
                    success: false,
                    reason: format!("{}: {}", request.reason, error.message),
                    duration_usec,
                    ranges,
                });
                self.answer_waiters(&format!("failed: {}", error.message));
            }
        }
    }

    fn reload_config(&mut self, reply: Option<oneshot::Sender<Result<(), String>>>) {
        self.notifier.notify(Notification::Reloading);
        let outcome = match (self.config_source)() {
            Ok(settings) => {
                tracing::info!("configuration reloaded");
                if settings.loader != self.settings.loader {
                    if let Some(factory) = &mut self.loader_factory {
                        self.loaders = factory(&settings);
                        let name = self.loaders.configured.name();
                        let plan = self.loaders.description.clone();
                        tracing::info!(loader = %name, "loader settings changed: loaders rebuilt");
                        self.publish(|s| {
                            s.loader = name;
                            s.crash_kernel_plan = plan;
                        });
                    }
                }
                if settings.events != self.settings.events {
                    tracing::warn!(
                        "[events] changed: the event source keeps its settings until a restart"
                    );
                }
                self.debouncer.set_settings(settings.debounce.clone());
                self.settings = settings;
                // mask_distro_rule may have changed, or the package put its rule back (SUSE's load.sh).
                self.stand_in_for_distro_rule(true);
                // What the status derives from the settings follows them now, not at the next snapshot.
                if let Some(snapshot) = self.last_snapshot.take() {
                    self.absorb_snapshot(snapshot);
                }
                self.publish(|s| {
                    if s.last_error.starts_with(CONFIG_NOT_RELOADED) {
                        s.last_error.clear();
                    }
                });
                Ok(())
            }
            Err(error) => {
                let message = format!("{CONFIG_NOT_RELOADED}: {error}");
                tracing::error!("{message}");
                self.publish(|s| s.last_error = message.clone());
                Err(error.to_string())
            }
        };
        let summary = self.status_tx.borrow().summary.clone();
        self.notifier
            .notify(Notification::Reloaded { status: summary });
        if let Some(reply) = reply {
            let _ = reply.send(outcome);
        }
    }

    fn answer_waiters(&mut self, outcome: &str) {
        for waiter in self.reload_waiters.drain(..) {
            let _ = waiter.send(outcome.to_owned());
        }
    }

    fn absorb_snapshot(&mut self, snapshot: HostSnapshot) {
        let capacity = decide::capacity(&snapshot, &self.settings.decision_policy());
        let configured = self.settings.kernel_max_memory_ranges;
        let reservation = reservation::of_snapshot(&snapshot);
        let warning = reservation.warning().unwrap_or_default();
        // Logged once per change of the verdict's text, not on every snapshot.
        let before = self.status_tx.borrow().reservation_warning.clone();
        if warning != before {
            if warning.is_empty() {
                tracing::info!(reservation = %reservation.verdict, "crash reservation check");
            } else {
                tracing::warn!("crash reservation too small: {warning}");
            }
        }
        self.publish(|s| {
            s.reservation_warning = warning;
            s.reservation_selects_bytes = reservation.selects();
            s.reserved_bytes = snapshot.crash.reserved_bytes.unwrap_or(0);
            s.distro_recommendation = reservation
                .distro_recommendation
                .as_ref()
                .map(|r| format!("{}: {} ({})", r.by, r.selects, r.rule))
                .unwrap_or_default();
            s.crash_kernel_loaded = snapshot.crash.loaded;
            s.kernel_updates_memory = snapshot.crash.kernel_updates_memory;
            s.kernel_updates_cpu = snapshot.crash.kernel_updates_cpu;
            s.range_count = saturating_u32(snapshot.ranges.len());
            s.kernel_range_capacity = match capacity {
                decide::Capacity::Known {
                    ranges,
                    source: decide::CapacitySource::ElfcorehdrSize,
                } => saturating_u32(ranges),
                _ => 0,
            };
            s.configured_range_capacity = configured.unwrap_or(0);
            s.capacity_kind = capacity.kind().to_owned();
            s.ranges = Arc::new(snapshot.ranges.clone());
            s.cpus = snapshot.present_cpus.to_string();
            s.addresses_hidden = snapshot.addresses_hidden;
        });
        if snapshot.addresses_hidden {
            self.publish(|s| s.last_error = decide::CannotReload::AddressesHidden.to_string());
        }
        self.last_snapshot = Some(snapshot);
    }

    fn record_snapshot_error(&mut self, error: &SnapshotError) {
        tracing::error!(%error, "cannot read the host's state");
        let message = format!("snapshot failed: {error}");
        self.publish(|s| s.last_error = message.clone());
    }

    /// Applies `change`, refreshes the derived fields, and tells watchers (D-Bus, sd_notify) when it changed.
    fn publish(&self, change: impl FnOnce(&mut Status)) {
        let phase = self.debouncer.phase();
        let paused = self.paused;
        let mut status_changed = false;
        self.status_tx.send_if_modified(|status| {
            let before = status.clone();
            change(status);
            status.state = State::from_phase(phase, !status.last_error.is_empty());
            status.paused = paused;
            status.summary = status.summary_line();
            status_changed = status.state != before.state || status.last_error != before.last_error;
            *status != before
        });
        if status_changed && self.ready {
            let summary = self.status_tx.borrow().summary.clone();
            self.notifier.notify(Notification::Status(summary));
        }
    }
}

async fn sleep_until_std(deadline: Option<std::time::Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(Instant::from_std(deadline)).await,
        None => std::future::pending().await,
    }
}

/// The reload task's outcome; pending while none is in flight.
async fn join(reload: &mut Option<InFlight>) -> Result<Result<LoadReport, LoadError>, JoinError> {
    match reload {
        Some(reload) => (&mut reload.task).await,
        None => std::future::pending().await,
    }
}

/// Why a reload task ended without an outcome, with the panic's text when it has one.
fn task_failure(error: JoinError) -> String {
    if !error.is_panic() {
        return "the reload task was cancelled".to_owned();
    }
    let payload = error.into_panic();
    let text = payload
        .downcast_ref::<&str>()
        .map(|text| (*text).to_owned())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "(the panic carried no text)".to_owned());
    format!("the loader panicked: {text}")
}

/// Feeds the service manager's watchdog every half interval, but only while [`health::assess`] says the loop
/// is alive; each tick also nudges the loop, so that a loop that still turns always has a recent turn.
async fn watchdog(
    notifier: Arc<dyn Notifier>,
    interval: Duration,
    heartbeat: Arc<Mutex<Heartbeat>>,
    nudge: Arc<Notify>,
) {
    let mut timer = tokio::time::interval(interval / 2);
    let mut withheld = false;
    loop {
        timer.tick().await;
        let beat = match heartbeat.lock() {
            Ok(beat) => *beat,
            Err(poisoned) => *poisoned.into_inner(),
        };
        let health = health::assess(Pulse {
            now: Instant::now().into_std(),
            last_turn: beat.last_turn,
            interval,
            reload_deadline: beat.reload_deadline,
        });
        match health {
            Health::Alive => {
                if std::mem::take(&mut withheld) {
                    tracing::info!("healthy again: feeding the watchdog");
                }
                notifier.notify(Notification::Watchdog);
            }
            Health::ReloadStuck { overdue_by } if !withheld => {
                withheld = true;
                tracing::error!(
                    overdue_ms = overdue_by.as_millis() as u64,
                    "withholding the watchdog ping: a reload is stuck past its deadline"
                );
            }
            Health::LoopStalled { silent_for } if !withheld => {
                withheld = true;
                tracing::error!(
                    silent_ms = silent_for.as_millis() as u64,
                    "withholding the watchdog ping: the owner loop has not turned"
                );
            }
            _ => {}
        }
        nudge.notify_one();
    }
}

//! The owner loop: one task owns all state and reacts to one [`Event`] at a time. Everything else (uevent
//! sources, signals, D-Bus, loaders) only sends into its channel and reads the [`Status`] it publishes.

mod status;

pub(crate) use status::with_status_fields;
pub use status::{saturating_u32, BusSignal, FieldKind, State, Status, StatusField};

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use tokio::sync::{broadcast, mpsc, oneshot, watch};
use tokio::time::Instant;

use crate::config::{ConfigError, InitialLoad, Settings};
use crate::core::debounce::{Debouncer, Phase, ReloadOutcome};
use crate::core::decide::{self, Assessment, Decision, LoadedHeader, LoaderChoice, Triggers};
use crate::core::model::HostSnapshot;
use crate::core::uevent_record::UeventBatch;
use crate::edge::{EventSource, Loader, Notifier};
use crate::host::snapshot::{SnapshotError, SnapshotReader};
pub use crate::messages::{Event, ReloadFinished, Request};
use crate::messages::{LoadRequest, Notification, UeventSender};

/// How a refused configuration reload starts in `LastError`; a later good reload clears it.
const CONFIG_NOT_RELOADED: &str = "configuration not reloaded, keeping the previous one";

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
}

impl Loaders {
    fn pick(&self, choice: LoaderChoice) -> Arc<dyn Loader> {
        match choice {
            LoaderChoice::Configured => self.configured.clone(),
            LoaderChoice::KexecLoad => self.kexec_load.clone(),
        }
    }
}

#[derive(Clone, Debug, Default)]
pub struct RunOptions {
    /// Exit once the event source has finished and nothing is pending (simulations).
    pub exit_when_source_finishes: bool,
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
    /// `Reload()` callers waiting for the outcome of the next reload.
    reload_waiters: Vec<oneshot::Sender<String>>,
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
        };
        (daemon, handle)
    }

    /// Rebuild the loaders with `factory` whenever a config re-read changes `[loader]`.
    pub fn with_loader_factory(mut self, factory: LoaderFactory) -> Self {
        self.loader_factory = Some(factory);
        self
    }

    /// Starts the event source and runs the loop until shutdown; returns the last status it published.
    pub async fn run(mut self, source: Box<dyn EventSource>) -> Status {
        tracing::info!(source = %source.name(), loader = %self.loaders.configured.name(), "starting");
        let source_task = tokio::spawn(source.run(UeventSender::new(self.events_tx.clone())));
        self.start();
        let watchdog = self.notifier.watchdog_interval();
        let mut watchdog_timer = watchdog.map(|period| tokio::time::interval(period / 2));

        loop {
            let deadline = if self.paused {
                None
            } else {
                self.debouncer.next_deadline()
            };
            let event = tokio::select! {
                event = self.events_rx.recv() => event.unwrap_or(Event::Shutdown),
                _ = sleep_until_std(deadline), if deadline.is_some() => Event::DebounceDeadline,
                _ = tick(&mut watchdog_timer), if watchdog_timer.is_some() => {
                    self.notifier.notify(Notification::Watchdog);
                    continue;
                }
            };
            if !self.handle(event) {
                break;
            }
            if self.options.exit_when_source_finishes && self.source_finished && self.quiescent() {
                break;
            }
        }
        self.notifier.notify(Notification::Stopping);
        source_task.abort();
        let status = self.status_tx.borrow().clone();
        tracing::info!(
            events = status.events_seen,
            reloads = status.reloads,
            failed = status.reloads_failed,
            "stopped"
        );
        status
    }

    fn quiescent(&self) -> bool {
        !self.missed_while_paused && matches!(self.debouncer.phase(), Phase::Idle | Phase::Failed)
    }

    /// First snapshot, READY, and the initial load when one is due.
    fn start(&mut self) {
        match self.reader.take() {
            Ok(snapshot) => {
                let crash = &snapshot.crash;
                let capacity = decide::capacity(&snapshot, &self.settings.decision_policy());
                tracing::info!(
                    ranges = snapshot.ranges.len(),
                    capacity = capacity.ranges,
                    capacity_source = ?capacity.source,
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
                if crash.loaded && !load_now {
                    // Started after the distro's kdump service loaded it (the unit is ordered after it): take
                    // that header as matching this snapshot.
                    self.loaded = Some(LoadedHeader::of(&snapshot));
                }
                if load_now && crash.kexec_supported {
                    self.debouncer.force(Instant::now().into_std());
                }
                self.absorb_snapshot(snapshot);
            }
            Err(error) => self.record_snapshot_error(&error),
        }
        self.publish(|_| {});
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
            Event::ReloadFinished(finished) => self.on_reload_finished(now, finished),
            Event::ConfigReload { reply } => self.reload_config(reply),
            Event::Request(request) => self.on_request(now, request),
            Event::SourceFinished => {
                tracing::info!("event source finished");
                self.source_finished = true;
            }
            Event::Shutdown => return false,
        }
        self.publish(|_| {});
        true
    }

    fn on_uevents(&mut self, now: std::time::Instant, batch: UeventBatch) {
        let count = batch.events.len() as u64;
        if batch.lost > 0 {
            tracing::warn!(
                lost = batch.lost,
                "uevent socket overflowed: taking a fresh snapshot"
            );
        }
        let coalesced_before = self.debouncer.coalesced();
        // A lost uevent may have been a hotplug: treat the overflow as one event so a snapshot follows.
        let relevant = count + u64::from(batch.lost > 0);
        if self.paused {
            self.missed_while_paused |= relevant > 0;
        } else {
            self.debouncer.on_events(now, relevant);
        }
        let coalesced = self.debouncer.coalesced() - coalesced_before;
        self.publish(|s| {
            s.events_seen += count;
            s.events_malformed += batch.malformed;
            s.events_lost += batch.lost;
            s.events_coalesced += coalesced;
            s.uevent_batches += 1;
        });
    }

    fn on_request(&mut self, now: std::time::Instant, request: Request) {
        match request {
            Request::Reload { reply } => {
                self.triggers.forced = true;
                self.reload_waiters.push(reply);
                self.debouncer.force(now);
            }
            Request::SetPaused { paused, reply } => {
                if self.paused && !paused && self.missed_while_paused {
                    self.debouncer.on_event(now);
                }
                if paused != self.paused {
                    tracing::info!(paused, "pause changed");
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
            capacity = assessment.capacity.ranges,
            "decided"
        );
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
                    self.loaded = Some(LoadedHeader::of(&snapshot));
                }
                self.debouncer
                    .on_reload_finished(now, ReloadOutcome::Succeeded);
                let text = format!("skipped: {reason}");
                self.publish(|s| {
                    s.reloads_skipped += 1;
                    s.last_decision = text.clone();
                });
                self.answer_waiters(&text);
            }
            Decision::CannotReload { reason } => {
                let text = format!("cannot reload: {reason}");
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
        let reason = assessment.decision.why();
        let request = LoadRequest {
            ranges: Arc::new(snapshot.ranges.clone()),
            cpus: snapshot.present_cpus.clone(),
            method: choice,
            reason: reason.clone(),
        };
        self.publish(|s| s.last_decision = assessment.decision.to_string());
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
        let events = self.events_tx.clone();
        tokio::spawn(async move {
            let started = Instant::now();
            let result = loader.load(request.clone()).await;
            let duration = started.elapsed();
            let _ = events
                .send(Event::ReloadFinished(ReloadFinished {
                    result,
                    request,
                    duration,
                }))
                .await;
        });
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
                self.loaded = Some(LoadedHeader {
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
                        tracing::info!(loader = %name, "loader settings changed: loaders rebuilt");
                        self.publish(|s| s.loader = name);
                    }
                }
                if settings.events != self.settings.events {
                    tracing::warn!(
                        "[events] changed: the event source keeps its settings until a restart"
                    );
                }
                self.debouncer.set_settings(settings.debounce.clone());
                self.settings = settings;
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
        let capacity_known = snapshot.crash.elfcorehdr_size.is_some();
        self.publish(|s| {
            s.crash_kernel_loaded = snapshot.crash.loaded;
            s.kernel_updates_memory = snapshot.crash.kernel_updates_memory;
            s.kernel_updates_cpu = snapshot.crash.kernel_updates_cpu;
            s.range_count = saturating_u32(snapshot.ranges.len());
            s.kernel_range_capacity = if capacity_known {
                saturating_u32(capacity.ranges)
            } else {
                0
            };
            s.configured_range_capacity = saturating_u32(capacity.ranges);
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

async fn tick(timer: &mut Option<tokio::time::Interval>) {
    match timer {
        Some(timer) => {
            timer.tick().await;
        }
        None => std::future::pending().await,
    }
}

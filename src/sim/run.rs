//! `run --simulate`: the whole daemon on a simulated host, with the simulated loader and notifier.

use std::sync::Arc;

use crate::config::Settings;
use crate::core::decide::LoaderChoice;
use crate::core::model::MemRange;
use crate::daemon::{
    ConfigSource, Daemon, DaemonHandle, Loaders, RunOptions, Status, WhenSourceEnds,
};
use crate::edge::{BoxFuture, EventSource, Notification};
use crate::host::snapshot::{SnapshotError, SnapshotReader};
use crate::host::sysroot::Sysroot;
use crate::messages::{KernelLogSender, UeventSender};
use crate::sim::{DumpCoverage, LoadRecord, RecordingNotifier, Scenario, SimulatedHost};

/// Everything a simulated run leaves behind, for the report and for tests.
#[derive(Debug)]
pub struct SimulationOutcome {
    pub scenario: Scenario,
    /// The last status the daemon published before it stopped.
    pub report: Status,
    pub coverage: DumpCoverage,
    pub new_ranges: Vec<MemRange>,
    pub loads: Vec<LoadRecord>,
    pub notifications: Vec<Notification>,
    /// Batches the simulated host delivered (`scenario.batch_size` uevents per simulated read).
    pub batches_delivered: u64,
}

/// A prepared simulated daemon: call [`Simulation::run`], or grab [`Simulation::handle`] first.
pub struct Simulation {
    host: SimulatedHost,
    daemon: Daemon,
    handle: DaemonHandle,
    configured: Arc<crate::sim::SimulatedLoader>,
    kexec_load: Arc<crate::sim::SimulatedLoader>,
    notifier: Arc<RecordingNotifier>,
}

impl Simulation {
    /// A simulation that ends once the scenario has played and nothing is pending.
    pub fn new(
        scenario: Scenario,
        settings: Settings,
        config_source: ConfigSource,
    ) -> Result<Self, SimulationError> {
        Self::with_options(
            scenario,
            settings,
            config_source,
            SimulationOptions::default(),
        )
    }

    pub fn with_options(
        scenario: Scenario,
        settings: Settings,
        config_source: ConfigSource,
        options: SimulationOptions,
    ) -> Result<Self, SimulationError> {
        let host = SimulatedHost::new(scenario).map_err(SimulationError::Sysroot)?;
        let reader = SnapshotReader::open(Sysroot::new(host.sysroot()))?;
        let configured = host.loader(LoaderChoice::Configured);
        let kexec_load = host.loader(LoaderChoice::KexecLoad);
        let notifier = Arc::new(RecordingNotifier {
            watchdog: options.watchdog,
            ..RecordingNotifier::default()
        });
        let loaders = Loaders {
            configured: Arc::new(configured.clone()),
            kexec_load: Arc::new(kexec_load.clone()),
            description: "simulated crash kernel, simulated loader".to_owned(),
        };
        let (daemon, handle) = Daemon::new(
            settings,
            config_source,
            reader,
            loaders,
            Arc::new(notifier.clone()),
            RunOptions {
                when_source_ends: if options.keep_running {
                    WhenSourceEnds::KeepRunning
                } else {
                    WhenSourceEnds::ExitWhenQuiet
                },
            },
        );
        let daemon = match &options.header_records {
            Some(records) => daemon.with_header_records(records.clone()),
            None => daemon,
        };
        let host = host.with_kernel_log(KernelLogSender::new(handle.events.clone()));
        Ok(Simulation {
            host,
            daemon,
            handle,
            configured,
            kexec_load,
            notifier,
        })
    }

    pub fn handle(&self) -> DaemonHandle {
        self.handle.clone()
    }

    pub fn host(&self) -> &SimulatedHost {
        &self.host
    }

    pub async fn run(self) -> SimulationOutcome {
        self.run_after(Box::pin(async {})).await
    }

    /// Runs the daemon at once, but plays the scenario only when `start` resolves: D-Bus clients can subscribe
    /// to signals first and still see the whole burst.
    pub async fn run_after(self, start: BoxFuture<()>) -> SimulationOutcome {
        let Simulation {
            host,
            daemon,
            configured,
            kexec_load,
            notifier,
            ..
        } = self;
        let source = Held {
            start,
            source: Box::new(host.clone()),
        };
        let report = daemon.run(Box::new(source)).await.status;
        let mut loads = configured.records();
        loads.extend(kexec_load.records());
        let notifications = notifier
            .notifications
            .lock()
            .map(|n| n.clone())
            .unwrap_or_default();
        SimulationOutcome {
            scenario: host.scenario().clone(),
            report,
            coverage: host.coverage(),
            new_ranges: host.new_ranges(),
            loads,
            notifications,
            batches_delivered: host.batches_delivered(),
        }
    }
}

#[derive(Clone, Debug, Default)]
pub struct SimulationOptions {
    /// Keep the daemon running after the scenario until it is told to shut down (SIGTERM), so that D-Bus
    /// clients can still query it.
    pub keep_running: bool,
    /// Ask for watchdog pings this often (the recording notifier's `WATCHDOG_USEC`).
    pub watchdog: Option<std::time::Duration>,
    /// The header record an earlier instance left (`None`: the daemon keeps none, as before records existed).
    pub header_records: Option<Arc<crate::sim::SimulatedHeaderRecords>>,
}

/// An event source that starts its inner source only once `start` resolves.
struct Held {
    start: BoxFuture<()>,
    source: Box<dyn EventSource>,
}

impl EventSource for Held {
    fn name(&self) -> String {
        self.source.name()
    }

    fn run(self: Box<Self>, events: UeventSender) -> BoxFuture<()> {
        Box::pin(async move {
            self.start.await;
            self.source.run(events).await
        })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SimulationError {
    #[error("cannot create the simulated sysroot: {0}")]
    Sysroot(std::io::Error),
    #[error(transparent)]
    Snapshot(#[from] SnapshotError),
}

//! `kdump-hotplugd run` on a real host: wires the real edges (uevent netlink, kexec, sd_notify, `/dev/kmsg`,
//! signals) into the same owner loop the simulation drives.

use std::path::PathBuf;
use std::sync::Arc;

use crate::config::{self, ConfigError, EventSourceKind, LoaderKind, Settings};
use crate::core::uevent_record::Watch;
use crate::core::{decide, loader_choice, plan};
use crate::daemon::{Daemon, Loaders, RunOptions, Status};
use crate::dbus::{self, BusAddress, ServeError};
use crate::edge::command::CommandLoader;
use crate::edge::header_record::HeaderRecordFile;
use crate::edge::instance_lock::{self, InstanceLock, LockError};
use crate::edge::kexec::{self, KernelPlan, KexecToolsLoader, KexecToolsMode, NativeLoader};
use crate::edge::kmsg_reader::KernelLog;
use crate::edge::notify::SdNotifier;
use crate::edge::rule_mask::HostRuleFiles;
use crate::edge::uevent_source as uevents;
use crate::edge::{
    signals, BoxFuture, EventSource, LoadError, LoadReport, LoadRequest, Loader, Notification,
    Notifier,
};
use crate::host::snapshot::{SnapshotError, SnapshotReader};
use crate::host::sysroot::Sysroot;
use crate::host::{kexec_version, plan_inputs};
use crate::messages::{KernelLogSender, SignalSender};

/// Command-line overrides of the config, re-applied after every SIGHUP re-read.
#[derive(Clone, Debug, Default)]
pub struct Overrides {
    pub dry_run: bool,
    pub loader: Option<LoaderKind>,
    pub kernel: Option<PathBuf>,
    pub initrd: Option<PathBuf>,
    pub cmdline: Option<String>,
    pub source: Option<EventSourceKind>,
    pub kexec_path: Option<PathBuf>,
}

impl Overrides {
    pub fn apply(&self, settings: &mut Settings) {
        settings.dry_run |= self.dry_run;
        if let Some(kind) = self.loader {
            settings.loader.kind = kind;
        }
        if let Some(kernel) = &self.kernel {
            settings.loader.kernel = Some(kernel.clone());
        }
        if let Some(initrd) = &self.initrd {
            settings.loader.initrd = Some(initrd.clone());
        }
        if let Some(cmdline) = &self.cmdline {
            settings.loader.cmdline = Some(cmdline.clone());
        }
        if let Some(source) = self.source {
            settings.events.source = source;
        }
        if let Some(path) = &self.kexec_path {
            settings.loader.kexec_path = path.clone();
        }
    }
}

/// The exit status of a `run` refused because another instance holds the lock or the bus name: sysexits.h's
/// EX_TEMPFAIL ("temporary failure; the user is invited to retry"), since the refusal lasts only as long as
/// the other instance. Every other failure exits with 1 (and a usage error with 2, clap's).
pub const EXIT_ANOTHER_INSTANCE: u8 = 75;

#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    #[error(transparent)]
    Lock(#[from] LockError),
    #[error(transparent)]
    Bus(ServeError),
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Snapshot(#[from] SnapshotError),
    #[error(transparent)]
    Source(#[from] uevents::SourceError),
    /// The event source ended while the daemon ran: it would be blind to hotplug.
    #[error("{0}")]
    SourceEnded(String),
    #[error(transparent)]
    Architecture(#[from] crate::core::arch::UnsupportedArchitecture),
    #[error("the owner loop ended abnormally: {0}")]
    OwnerLoop(String),
}

impl ServiceError {
    /// The process's exit status for this error.
    pub fn exit_status(&self) -> u8 {
        match self {
            ServiceError::Lock(LockError::Held { .. })
            | ServiceError::Bus(ServeError::NameTaken { .. }) => EXIT_ANOTHER_INSTANCE,
            _ => 1,
        }
    }
}

/// Where the daemon runs: the host's files, its runtime directory and its bus.
#[derive(Clone, Debug)]
pub struct Host {
    /// Root for every path read (`--sysroot`).
    pub sysroot: PathBuf,
    /// Holds the instance lock (`--runtime-dir`); `None` = `/run/kdump-hotplugd` under the sysroot.
    pub runtime_dir: Option<PathBuf>,
    pub bus: BusAddress,
}

/// How long the bus may take to connect and answer RequestName before the daemon runs without it: a bus
/// that accepts the connection but never answers must not keep the crash kernel from being kept current.
const BUS_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// Loads the config under `sysroot` with the overrides applied.
pub fn settings(sysroot: &Sysroot, overrides: &Overrides) -> Result<Settings, ConfigError> {
    let mut settings = config::load(sysroot)?;
    overrides.apply(&mut settings);
    Ok(settings)
}

/// Stands in for a loader that cannot work on this host (no kernel image, no kexec binary): every load fails
/// with the reason, so the status says why instead of the daemon refusing to start.
pub struct UnavailableLoader {
    pub name: String,
    pub reason: String,
}

impl Loader for UnavailableLoader {
    fn name(&self) -> String {
        self.name.clone()
    }

    fn load(&self, _: LoadRequest) -> BoxFuture<Result<LoadReport, LoadError>> {
        let message = self.reason.clone();
        Box::pin(async move {
            Err(LoadError {
                message,
                retry: false,
            })
        })
    }
}

fn unavailable(name: &str, reason: String) -> Arc<dyn Loader> {
    Arc::new(UnavailableLoader {
        name: name.to_owned(),
        reason,
    })
}

/// The distro's plan for this host and the loader chosen for it, as `run` and `plan` report them.
pub struct CrashKernelSetup {
    pub plan: plan::Plan,
    pub kernel: Result<KernelPlan, kexec::PlanError>,
    pub decision: loader_choice::Decision,
    pub overflow: loader_choice::Choice,
    pub kexec_binary: Option<PathBuf>,
}

impl CrashKernelSetup {
    /// One line for the status: which service's crash kernel, and how it is loaded.
    pub fn summary(&self) -> String {
        let what = match &self.kernel {
            Ok(kernel) => format!(
                "{}{}",
                kernel.kernel.display(),
                kernel
                    .initrd
                    .as_ref()
                    .map_or(String::new(), |i| format!(" + {}", i.display()))
            ),
            Err(error) => error.to_string(),
        };
        format!(
            "{}: {what}; loader {} ({})",
            self.plan.service.name(),
            self.decision.choice.name(),
            self.decision.reason
        )
    }
}

/// Why a plan has nothing to load, in the words of its errors.
fn refusal(plan: &plan::Plan) -> String {
    let errors: Vec<&str> = plan
        .findings
        .iter()
        .filter(|f| f.severity == plan::Severity::Error)
        .map(|f| f.message.as_str())
        .collect();
    if errors.is_empty() {
        format!("{}: nothing to load", plan.service.name())
    } else {
        errors.join("; ")
    }
}

fn loader_kind(kind: LoaderKind) -> loader_choice::Requested {
    match kind {
        LoaderKind::Auto => loader_choice::Requested::Auto,
        LoaderKind::KexecLoad => loader_choice::Requested::KexecLoad,
        LoaderKind::Native => loader_choice::Requested::Native,
        LoaderKind::KexecTools => loader_choice::Requested::KexecToolsFileLoad,
        LoaderKind::Command => loader_choice::Requested::Command,
    }
}

/// Reads the distro's plan under `sysroot` and chooses the loader (`core::plan`, `core::loader_choice`).
pub fn crash_kernel_setup(settings: &Settings, sysroot: &Sysroot) -> CrashKernelSetup {
    let (inputs, plan) = plan_inputs::read_and_plan(sysroot.root());
    let kernel = kexec::kernel_plan(&plan, &settings.loader, sysroot);
    let kexec_binary = find_kexec(&settings.loader.kexec_path, sysroot);
    // Kernel and command line set in `[loader]`: the administrator chose the crash kernel, not the plan.
    let configured = settings.loader.kernel.is_some() && settings.loader.cmdline.is_some();
    let verdict = match (&plan.verdict, &kernel) {
        (_, Ok(_)) if configured => loader_choice::PlanVerdict::Load {
            requires_file_load: false,
        },
        (plan::Verdict::Delegate { command, .. }, _) => loader_choice::PlanVerdict::Delegate {
            command: command.clone(),
        },
        (plan::Verdict::Refuse, _) => loader_choice::PlanVerdict::Refuse {
            reason: refusal(&plan),
        },
        (plan::Verdict::Load, Err(error)) => loader_choice::PlanVerdict::Refuse {
            reason: error.to_string(),
        },
        (plan::Verdict::Load, Ok(_)) => loader_choice::PlanVerdict::Load {
            // Only a distro's own choice binds; the daemon's plan for hosts without one does not ask for a syscall.
            requires_file_load: plan.service != plan::Service::None
                && plan
                    .parts
                    .as_ref()
                    .is_some_and(|p| p.syscall.value == plan::Syscall::KexecFileLoad),
        },
    };
    let facts = loader_choice::Facts {
        requested: loader_kind(settings.loader.kind),
        plan: verdict,
        lockdown: inputs.lockdown.clone(),
        kexec_tools_installed: kexec_binary.is_some(),
        // The version of the binary this daemon's loader runs, which may differ from the tools' /sbin/kexec
        // (loader.kexec_path), read from the binary itself (`core::parse::kexec_version` says why).
        kexec_tools_version: kexec_binary.as_deref().and_then(kexec_version::read),
        kernel_crash_hotplug: sysroot.exists("/sys/kernel/kexec/crash_elfcorehdr_size")
            || sysroot.exists("/sys/kernel/crash_elfcorehdr_size"),
    };
    CrashKernelSetup {
        decision: loader_choice::choose(&facts),
        overflow: loader_choice::overflow_choice(&facts),
        plan,
        kernel,
        kexec_binary,
    }
}

/// Builds the chosen loader and the kexec_load one for headers the kernel's buffer cannot hold.
pub fn loaders(settings: &Settings, sysroot: &Sysroot) -> Loaders {
    let setup = crash_kernel_setup(settings, sysroot);
    log_setup(&setup);
    let build = |choice: &loader_choice::Choice| -> Arc<dyn Loader> {
        let name = choice.name();
        // A plan with nothing to load says why first: every loader would fail for that reason.
        if setup.plan.verdict == plan::Verdict::Refuse
            && setup.kernel.is_err()
            && !matches!(choice, loader_choice::Choice::Delegate { .. })
        {
            return unavailable(&name, refusal(&setup.plan));
        }
        let kernel = match (&setup.kernel, choice) {
            (
                _,
                loader_choice::Choice::Delegate { .. } | loader_choice::Choice::Unavailable { .. },
            ) => None,
            (Ok(kernel), _) => Some(kernel.clone()),
            (Err(error), _) => return unavailable(&name, error.to_string()),
        };
        let kexec_tools = |mode: KexecToolsMode, hotplug: bool| -> Arc<dyn Loader> {
            match (&kernel, &setup.kexec_binary) {
                (Some(kernel), Some(binary)) => Arc::new(
                    KexecToolsLoader::new(
                        binary.clone(),
                        kernel.clone(),
                        mode,
                        settings.loader.command_timeout,
                    )
                    .with_hotplug(hotplug),
                ),
                _ => unavailable(
                    &name,
                    format!(
                        "kexec-tools is not installed ({} does not exist; set loader.kexec_path)",
                        settings.loader.kexec_path.display()
                    ),
                ),
            }
        };
        match choice {
            loader_choice::Choice::Prepared { hotplug } => {
                kexec_tools(KexecToolsMode::Load, *hotplug)
            }
            loader_choice::Choice::KexecToolsFileLoad => {
                kexec_tools(KexecToolsMode::FileLoad, false)
            }
            loader_choice::Choice::Native => {
                let kernel = kernel.expect("a kernel plan for kexec_file_load");
                if !kernel.options.is_empty() {
                    tracing::warn!(
                        options = ?kernel.options,
                        "kexec_file_load from the daemon cannot pass the plan's kexec-tools options"
                    );
                }
                Arc::new(NativeLoader::new(kernel))
            }
            loader_choice::Choice::Delegate { .. } => match CommandLoader::new(
                &settings.loader.command,
                sysroot,
                settings.loader.command_timeout,
            ) {
                Ok(loader) => Arc::new(loader),
                Err(error) => {
                    tracing::error!(%error, "cannot load a crash kernel");
                    unavailable("command", error.to_string())
                }
            },
            loader_choice::Choice::Unavailable { reason } => unavailable(&name, reason.clone()),
        }
    };
    Loaders {
        configured: build(&setup.decision.choice),
        kexec_load: build(&setup.overflow),
        description: setup.summary(),
    }
}

/// Where kexec-tools installs `kexec` across distributions (Debian 12: /sbin; Fedora: /usr/sbin; a minimal
/// initramfs: wherever it was copied).
pub const KEXEC_LOCATIONS: &[&str] = &[
    "/usr/sbin/kexec",
    "/sbin/kexec",
    "/usr/bin/kexec",
    "/bin/kexec",
];

/// The kexec binary (host path): the configured one; at the default setting, the first that exists of
/// [`KEXEC_LOCATIONS`]. A path set explicitly is never second-guessed.
pub fn find_kexec(configured: &std::path::Path, sysroot: &Sysroot) -> Option<PathBuf> {
    let path = sysroot.path(&configured.to_string_lossy());
    if path.exists() {
        return Some(path);
    }
    if configured != config::LoaderSettings::default().kexec_path {
        return None;
    }
    KEXEC_LOCATIONS
        .iter()
        .find(|candidate| sysroot.exists(candidate))
        .map(|candidate| sysroot.path(candidate))
}

fn log_setup(setup: &CrashKernelSetup) {
    for finding in &setup.plan.findings {
        match finding.severity {
            plan::Severity::Error => tracing::error!("crash-kernel plan: {finding}"),
            _ => tracing::warn!("crash-kernel plan: {finding}"),
        }
    }
    match &setup.kernel {
        Ok(kernel) => tracing::info!(
            service = setup.plan.service.name(),
            kernel = %kernel.kernel.display(),
            kernel_from = %kernel.origin.kernel,
            initrd = %kernel.initrd.as_ref().map_or("none".to_owned(), |p| p.display().to_string()),
            initrd_from = %kernel.origin.initrd,
            cmdline = %kernel.cmdline,
            cmdline_from = %kernel.origin.cmdline,
            options = ?kernel.options,
            "crash kernel to load"
        ),
        Err(error) => {
            tracing::warn!(service = setup.plan.service.name(), %error, "no crash kernel plan")
        }
    }
    tracing::info!(
        loader = %setup.decision.choice.name(),
        reason = %setup.decision.reason,
        overflow_loader = %setup.overflow.name(),
        "loader chosen"
    );
}

/// Logs every notification (the journal and stderr show READY and each status) and passes it on.
struct LoggingNotifier<N> {
    inner: N,
}

impl<N: Notifier> Notifier for LoggingNotifier<N> {
    fn notify(&self, notification: Notification) {
        match &notification {
            Notification::Ready { status } => tracing::info!("READY: {status}"),
            Notification::Status(status) => tracing::info!("status: {status}"),
            Notification::Reloading => tracing::info!("reloading configuration"),
            Notification::Reloaded { status } => tracing::info!("configuration applied: {status}"),
            Notification::Stopping => tracing::info!("stopping"),
            Notification::Watchdog => {}
        }
        self.inner.notify(notification);
    }

    fn watchdog_interval(&self) -> Option<std::time::Duration> {
        self.inner.watchdog_interval()
    }
}

/// Logs what the first snapshot says the daemon would do, with the capabilities it lacks.
fn log_startup(reader: &mut SnapshotReader, settings: &Settings) {
    let snapshot = match reader.take() {
        Ok(snapshot) => snapshot,
        Err(error) => {
            tracing::error!(%error, "cannot read the host's state");
            return;
        }
    };
    let crash = &snapshot.crash;
    let capacity = decide::capacity(&snapshot, &settings.decision_policy());
    if !crash.kexec_supported {
        tracing::warn!("this kernel has no kexec crash support (/sys/kernel/kexec_crash_loaded is missing): nothing to load");
    }
    if snapshot.addresses_hidden {
        tracing::error!(
            "/proc/iomem shows every address as 0: the daemon opened it without CAP_SYS_ADMIN; no reload can be \
             computed (start it with CAP_SYS_ADMIN, which it needs only to open /proc/iomem)"
        );
    }
    tracing::info!(
        ranges = snapshot.ranges.len(),
        present_cpus = %snapshot.present_cpus,
        crash_loaded = crash.loaded,
        crash_hotplug_memory = crash.kernel_updates_memory,
        crash_hotplug_cpu = crash.kernel_updates_cpu,
        reserved_bytes = crash.reserved_bytes,
        elfcorehdr_size = crash.elfcorehdr_size,
        capacity = %capacity,
        "what the kernel can do"
    );
    if let Some(warning) = decide::OutsideHeaderWarning::of(&snapshot) {
        tracing::warn!("{warning}");
    }
    if settings.dry_run {
        tracing::info!(
            ranges = snapshot.ranges.len(),
            cpus = snapshot.present_cpus.len(),
            "dry run: loads would carry these ranges; nothing will be loaded"
        );
    }
}

/// Opens the event source the settings name (the real one: netlink or udev).
pub type SourceOpener =
    Box<dyn FnOnce(&Settings, &Sysroot) -> Result<Box<dyn EventSource>, uevents::SourceError>>;

/// The real event source for `settings`.
fn open_source(
    settings: &Settings,
    root: &Sysroot,
) -> Result<Box<dyn EventSource>, uevents::SourceError> {
    let watch = Watch {
        memory: settings.events.memory,
        cpu: settings.events.cpu,
    };
    uevents::open(settings.events.source, root, watch)
}

/// Runs the daemon on this host until SIGTERM/SIGINT; fails at once when another instance runs, and later
/// when the event source ends.
pub async fn run(host: Host, overrides: Overrides) -> Result<Status, ServiceError> {
    run_with(host, overrides, Box::new(open_source)).await
}

/// [`run`] with the event source opened by `open` (tests hand in one that fails).
pub async fn run_with(
    host: Host,
    overrides: Overrides,
    open: SourceOpener,
) -> Result<Status, ServiceError> {
    let root = Sysroot::new(&host.sysroot);
    // First of all, before any config is read or anything loaded: one instance per host.
    let runtime_dir = host
        .runtime_dir
        .clone()
        .unwrap_or_else(|| root.path(instance_lock::RUNTIME_DIR));
    let lock = InstanceLock::acquire(&runtime_dir)?;
    tracing::info!(lock = %lock.path().display(), "instance lock taken");
    // Before anything is read or loaded: only an architecture whose header rules are known.
    let arch = crate::core::arch::Arch::from_machine(&crate::host::arch::machine(&root))?;
    tracing::info!(%arch, "header rules");
    let settings = settings(&root, &overrides)?;
    // Opened once: the kernel shows real addresses only to an opener with CAP_SYS_ADMIN.
    let mut reader = SnapshotReader::open(root.clone())?;
    log_startup(&mut reader, &settings);
    let loaders = loaders(&settings, &root);
    if settings.dry_run {
        tracing::info!(
            loader = %loaders.configured.name(),
            fallback = %loaders.kexec_load.name(),
            "dry run: would load with these"
        );
    }
    let source = open(&settings, &root)?;
    let kernel_log = if settings.watch_kernel_log {
        let path = root.path("/dev/kmsg");
        match KernelLog::open(&path) {
            Ok(log) => Some(log),
            Err(error) => {
                tracing::warn!(
                    path = %path.display(),
                    %error,
                    "cannot follow the kernel log: failed in-place header updates will go unnoticed"
                );
                None
            }
        }
    } else {
        None
    };
    let notifier = LoggingNotifier {
        inner: SdNotifier::from_env(),
    };
    if let Some(period) = notifier.watchdog_interval() {
        tracing::info!(
            watchdog_usec = period.as_micros() as u64,
            "service manager watchdog enabled"
        );
    }
    let config_root = root.clone();
    let config_overrides = overrides.clone();
    let config_source = Box::new(move || self::settings(&config_root, &config_overrides));
    let (daemon, handle) = Daemon::new(
        settings,
        config_source,
        reader,
        loaders,
        Arc::new(notifier),
        // The default: a source that ends stops the loop, and `run` fails below.
        RunOptions::default(),
    );
    let loader_root = root.clone();
    let mut daemon = daemon
        .with_loader_factory(Box::new(move |settings| {
            self::loaders(settings, &loader_root)
        }))
        .with_rule_files(Arc::new(HostRuleFiles::new(root.clone())))
        .with_header_records(Arc::new(HeaderRecordFile::in_runtime_dir(&runtime_dir)));
    // The first snapshot is published before the name appears on the bus: the first reader sees it. Nothing
    // is loaded until the loop runs, which it does only once the bus name is ours (or there is no bus).
    daemon.prime();
    // Without a bus (early boot, a minimal initramfs, the bus restarting) the daemon still does its job; only
    // another owner of the name stops it.
    let connection =
        match tokio::time::timeout(BUS_TIMEOUT, dbus::serve(handle.clone(), host.bus)).await {
            Ok(Ok(connection)) => connection,
            Ok(Err(error @ ServeError::NameTaken { .. })) => return Err(ServiceError::Bus(error)),
            Ok(Err(error)) => {
                tracing::warn!("D-Bus not served, running without it: {error}");
                let mut cause = std::error::Error::source(&error);
                while let Some(inner) = cause {
                    tracing::warn!("  caused by: {inner}");
                    cause = inner.source();
                }
                None
            }
            Err(_) => {
                tracing::warn!(
                    timeout_s = BUS_TIMEOUT.as_secs(),
                    "D-Bus not served, running without it: the bus did not answer in time"
                );
                None
            }
        };
    let signals = tokio::spawn(signals::forward(SignalSender::new(handle.events.clone())));
    let kernel_log =
        kernel_log.map(|log| tokio::spawn(log.follow(KernelLogSender::new(handle.events.clone()))));
    let stopped = tokio::spawn(daemon.run(source))
        .await
        .map_err(|e| ServiceError::OwnerLoop(e.to_string()));
    drop(connection);
    signals.abort();
    if let Some(task) = kernel_log {
        task.abort();
    }
    drop(lock);
    let stopped = stopped?;
    match stopped.source_lost {
        Some(why) => Err(ServiceError::SourceEnded(why)),
        None => Ok(stopped.status),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::daemon::Event;
    use tokio::sync::oneshot;

    /// A source that sends nothing until the daemon goes away.
    struct Silent;

    impl crate::edge::EventSource for Silent {
        fn name(&self) -> String {
            "silent".into()
        }
        fn run(self: Box<Self>, _events: crate::messages::UeventSender) -> BoxFuture<()> {
            Box::pin(std::future::pending())
        }
    }

    /// What SIGHUP sends, waiting until the loop has applied it.
    async fn reload_config(handle: &crate::daemon::DaemonHandle) {
        let (reply, replied) = oneshot::channel();
        handle
            .events
            .send(Event::ConfigReload { reply: Some(reply) })
            .await
            .unwrap();
        replied.await.unwrap().unwrap();
    }

    fn fixture() -> Sysroot {
        Sysroot::new(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/small-vm"
        ))
    }

    #[test]
    fn kexec_is_found_where_the_distribution_put_it_unless_configured() {
        let dir = tempfile::tempdir().unwrap();
        let root = Sysroot::new(dir.path());
        let default = config::LoaderSettings::default().kexec_path;
        assert_eq!(find_kexec(&default, &root), None);
        std::fs::create_dir_all(dir.path().join("sbin")).unwrap();
        std::fs::write(dir.path().join("sbin/kexec"), "").unwrap();
        assert_eq!(
            find_kexec(&default, &root),
            Some(dir.path().join("sbin/kexec"))
        );
        // An explicit path that does not exist is reported, not replaced.
        assert_eq!(find_kexec(std::path::Path::new("/opt/kexec"), &root), None);
        std::fs::create_dir_all(dir.path().join("usr/sbin")).unwrap();
        std::fs::write(dir.path().join("usr/sbin/kexec"), "").unwrap();
        assert_eq!(
            find_kexec(&default, &root),
            Some(dir.path().join("usr/sbin/kexec"))
        );
    }

    #[test]
    fn overrides_win_over_the_config() {
        let mut settings = Settings::default();
        Overrides {
            dry_run: true,
            loader: Some(LoaderKind::KexecTools),
            kernel: Some("/k".into()),
            initrd: Some("/i".into()),
            cmdline: Some("c".into()),
            source: Some(EventSourceKind::Kernel),
            kexec_path: Some("/sbin/kexec".into()),
        }
        .apply(&mut settings);
        assert!(settings.dry_run);
        assert_eq!(settings.loader.kind, LoaderKind::KexecTools);
        assert_eq!(settings.loader.kernel, Some(PathBuf::from("/k")));
        assert_eq!(settings.loader.initrd, Some(PathBuf::from("/i")));
        assert_eq!(settings.loader.cmdline.as_deref(), Some("c"));
        assert_eq!(settings.events.source, EventSourceKind::Kernel);
        assert_eq!(settings.loader.kexec_path, PathBuf::from("/sbin/kexec"));
        // Nothing given: the config stays.
        let mut untouched = Settings::default();
        Overrides::default().apply(&mut untouched);
        assert_eq!(untouched, Settings::default());
    }

    #[test]
    fn missing_kernel_or_kexec_gives_loaders_that_say_why() {
        // No kdump service and no kernel image: the daemon's own plan has nothing to load, and says why.
        let loaders = loaders(&Settings::default(), &fixture());
        assert_eq!(loaders.configured.name(), "none");
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let request = LoadRequest {
            ranges: Arc::new(Vec::new()),
            cpus: Default::default(),
            method: crate::core::decide::LoaderChoice::Configured,
            reason: "test".into(),
        };
        let error = rt
            .block_on(loaders.configured.load(request.clone()))
            .unwrap_err();
        assert!(
            error.message.starts_with("no crash kernel image"),
            "{}",
            error.message
        );
        assert!(!error.retry);
        let error = rt.block_on(loaders.kexec_load.load(request)).unwrap_err();
        assert!(
            error.message.starts_with("no crash kernel image"),
            "{}",
            error.message
        );
    }

    #[tokio::test]
    async fn sighup_with_new_loader_settings_rebuilds_the_loaders() {
        let mut next = Settings::default();
        next.loader.kind = LoaderKind::Command;
        next.loader.command = vec!["/bin/true".into()];
        let config_source = Box::new(move || Ok(next.clone()));
        let built = Arc::new(std::sync::Mutex::new(Vec::new()));
        let seen = built.clone();
        let (daemon, handle) = Daemon::new(
            Settings::default(),
            config_source,
            SnapshotReader::open(fixture()).unwrap(),
            loaders(&Settings::default(), &fixture()),
            Arc::new(crate::edge::NoNotifier),
            RunOptions::default(),
        );
        let daemon = daemon.with_loader_factory(Box::new(move |settings| {
            seen.lock().unwrap().push(settings.loader.kind);
            loaders(settings, &fixture())
        }));
        let running = tokio::spawn(daemon.run(Box::new(Silent)));
        assert_eq!(handle.status.borrow().loader, "none");
        reload_config(&handle).await;
        assert_eq!(*built.lock().unwrap(), [LoaderKind::Command]);
        assert_eq!(handle.status.borrow().loader, "/bin/true");
        // The same settings again: nothing to rebuild.
        reload_config(&handle).await;
        assert_eq!(built.lock().unwrap().len(), 1);
        handle.events.send(Event::Shutdown).await.unwrap();
        running.await.unwrap();
    }
}

//! `kdump-hotplugd run` on a real host: wires the real edges (uevent netlink, kexec, sd_notify, `/dev/kmsg`,
//! signals) into the same owner loop the simulation drives.

use std::path::PathBuf;
use std::sync::Arc;

use crate::config::{self, ConfigError, EventSourceKind, LoaderKind, Settings};
use crate::core::decide;
use crate::core::uevent_record::Watch;
use crate::daemon::{Daemon, Loaders, RunOptions, Status};
use crate::dbus::{self, BusAddress};
use crate::edge::command::CommandLoader;
use crate::edge::kexec::{self, KernelPlan, KexecToolsLoader, KexecToolsMode, NativeLoader};
use crate::edge::kmsg_reader::KernelLog;
use crate::edge::notify::SdNotifier;
use crate::edge::uevent_source as uevents;
use crate::edge::{
    signals, BoxFuture, LoadError, LoadReport, LoadRequest, Loader, Notification, Notifier,
};
use crate::host::snapshot::{SnapshotError, SnapshotReader};
use crate::host::sysroot::Sysroot;
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

#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Snapshot(#[from] SnapshotError),
    #[error(transparent)]
    Source(#[from] uevents::SourceError),
    #[error("the owner loop ended abnormally: {0}")]
    OwnerLoop(String),
}

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

/// Builds the configured loader and the kexec_load fallback.
pub fn loaders(settings: &Settings, sysroot: &Sysroot) -> Loaders {
    let plan = kexec::plan(&settings.loader, sysroot);
    match &plan {
        Ok(plan) => log_plan(plan),
        Err(error) if settings.loader.kind == LoaderKind::Command => {
            tracing::debug!(%error, "no kernel plan (the command loader does not need one)")
        }
        Err(error) => tracing::error!(%error, "cannot load a crash kernel"),
    }
    let kexec_binary = find_kexec(&settings.loader.kexec_path, sysroot);
    let kexec_tools = |mode: KexecToolsMode, name: &str| -> Arc<dyn Loader> {
        match (&plan, &kexec_binary) {
            (Ok(plan), Some(kexec_binary)) => Arc::new(KexecToolsLoader::new(
                kexec_binary.clone(),
                plan.clone(),
                mode,
                settings.loader.command_timeout,
            )),
            (Ok(_), None) => unavailable(
                name,
                format!(
                    "kexec-tools is not installed ({} does not exist; set loader.kexec_path)",
                    settings.loader.kexec_path.display()
                ),
            ),
            (Err(error), _) => unavailable(name, error.to_string()),
        }
    };
    let configured: Arc<dyn Loader> = match settings.loader.kind {
        LoaderKind::Native => match &plan {
            Ok(plan) => Arc::new(NativeLoader::new(plan.clone())),
            Err(error) => unavailable("kexec_file_load", error.to_string()),
        },
        LoaderKind::KexecTools => kexec_tools(KexecToolsMode::FileLoad, "kexec -s -p"),
        LoaderKind::Command => match CommandLoader::new(
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
    };
    Loaders {
        configured,
        kexec_load: kexec_tools(KexecToolsMode::Load, "kexec -c -p"),
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

fn log_plan(plan: &KernelPlan) {
    tracing::info!(
        kernel = %plan.kernel.display(),
        kernel_from = plan.origin.kernel,
        initrd = %plan.initrd.as_ref().map_or("none".to_owned(), |p| p.display().to_string()),
        initrd_from = plan.origin.initrd,
        cmdline = %plan.cmdline,
        cmdline_from = plan.origin.cmdline,
        "crash kernel to load"
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
        capacity = capacity.ranges,
        capacity_source = ?capacity.source,
        "what the kernel can do"
    );
    if settings.dry_run {
        tracing::info!(
            ranges = snapshot.ranges.len(),
            cpus = snapshot.present_cpus.len(),
            "dry run: loads would carry these ranges; nothing will be loaded"
        );
    }
}

/// Runs the daemon on this host until SIGTERM/SIGINT.
pub async fn run(
    sysroot: PathBuf,
    overrides: Overrides,
    bus: BusAddress,
) -> Result<Status, ServiceError> {
    let root = Sysroot::new(&sysroot);
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
    let watch = Watch {
        memory: settings.events.memory,
        cpu: settings.events.cpu,
    };
    let source = uevents::open(settings.events.source, &root, watch)?;
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
        RunOptions::default(),
    );
    let loader_root = root.clone();
    let daemon = daemon.with_loader_factory(Box::new(move |settings| {
        self::loaders(settings, &loader_root)
    }));
    let signals = tokio::spawn(signals::forward(SignalSender::new(handle.events.clone())));
    let kernel_log =
        kernel_log.map(|log| tokio::spawn(log.follow(KernelLogSender::new(handle.events.clone()))));
    // The loop takes its first snapshot before the name appears on the bus: the first reader sees it.
    let running = tokio::spawn(daemon.run(source));
    // Without a bus (early boot, a minimal initramfs, the bus restarting) the daemon still does its job.
    let connection = match dbus::serve(handle.clone(), bus).await {
        Ok(connection) => connection,
        Err(error) => {
            tracing::warn!("D-Bus not served, running without it: {error}");
            let mut cause = std::error::Error::source(&error);
            while let Some(inner) = cause {
                tracing::warn!("  caused by: {inner}");
                cause = inner.source();
            }
            None
        }
    };
    let report = running
        .await
        .map_err(|e| ServiceError::OwnerLoop(e.to_string()));
    drop(connection);
    signals.abort();
    if let Some(task) = kernel_log {
        task.abort();
    }
    report
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
        let loaders = loaders(&Settings::default(), &fixture());
        assert_eq!(loaders.configured.name(), "kexec_file_load");
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
        assert_eq!(handle.status.borrow().loader, "kexec_file_load");
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

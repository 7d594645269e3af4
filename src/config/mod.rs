//! Configuration: `/etc/kdump-hotplugd/config.toml` plus `config.d/*.toml` drop-ins, in three stages
//! (fragments → merged inputs → validated [`Settings`]).
// STUB: owned by the config work. `Settings` and its sub-structs are the contract; add, don't rename.

use std::path::PathBuf;
use std::time::Duration;

use crate::sysroot::Sysroot;

#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum LoaderKind {
    /// `kexec_file_load(2)` from the daemon itself.
    Native,
    /// The distro's own tool (`kdumpctl reload`, `kdump-config reload`, …).
    Command,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum EventSourceKind {
    /// udevd's monitor (events after udev rules ran).
    Udev,
    /// The kernel's raw uevent netlink group, for hosts without udevd.
    Kernel,
    /// udev when udevd is running, else the kernel group.
    Auto,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum InitialLoad {
    /// Load at start only when no crash kernel is loaded.
    IfMissing,
    /// Always load at start.
    Always,
    /// Leave the first load to the distro's kdump service.
    Never,
}

#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct DebounceSettings {
    pub quiet_window: Duration,
    pub max_delay: Duration,
    pub backoff_initial: Duration,
    pub backoff_max: Duration,
}

impl Default for DebounceSettings {
    fn default() -> Self {
        Self {
            quiet_window: Duration::from_millis(1000),
            max_delay: Duration::from_millis(10_000),
            backoff_initial: Duration::from_millis(1000),
            backoff_max: Duration::from_millis(60_000),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct LoaderSettings {
    pub kind: LoaderKind,
    /// Crash kernel image; `None` = discover (`/boot/vmlinuz-$(uname -r)`).
    pub kernel: Option<PathBuf>,
    /// Crash initrd; `None` = discover the distro's kdump initrd.
    pub initrd: Option<PathBuf>,
    /// Crash kernel command line; `None` = derive from the running one.
    pub cmdline: Option<String>,
    /// The delegation command, argv form; empty = detect the distro's tool.
    pub command: Vec<String>,
    pub command_timeout: Duration,
    /// kexec-tools binary, used when the kernel's header buffer is too small for `kexec_file_load`.
    pub kexec_path: PathBuf,
}

impl Default for LoaderSettings {
    fn default() -> Self {
        Self {
            kind: LoaderKind::Native,
            kernel: None,
            initrd: None,
            cmdline: None,
            command: Vec::new(),
            command_timeout: Duration::from_secs(120),
            kexec_path: PathBuf::from("/usr/sbin/kexec"),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct EventSettings {
    pub memory: bool,
    pub cpu: bool,
    pub source: EventSourceKind,
}

impl Default for EventSettings {
    fn default() -> Self {
        Self {
            memory: true,
            cpu: true,
            source: EventSourceKind::Auto,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Settings {
    pub debounce: DebounceSettings,
    pub loader: LoaderSettings,
    pub events: EventSettings,
    /// Fallback header capacity when the kernel has no `crash_elfcorehdr_size`: its
    /// `CONFIG_CRASH_MAX_MEMORY_RANGES` (default 8192).
    pub kernel_max_memory_ranges: u32,
    /// Decide and log, but never load.
    pub dry_run: bool,
    pub initial_load: InitialLoad,
    /// Follow `/dev/kmsg` for the kernel's failed in-place header updates.
    pub watch_kernel_log: bool,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            debounce: DebounceSettings::default(),
            loader: LoaderSettings::default(),
            events: EventSettings::default(),
            kernel_max_memory_ranges: 8192,
            dry_run: false,
            initial_load: InitialLoad::IfMissing,
            watch_kernel_log: true,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// `config.d/10-x.toml:3: debounce.quiet_window_ms: expected an integer`
    #[error("{file}:{line}: {key}: {message}")]
    Invalid {
        file: String,
        line: usize,
        key: String,
        message: String,
    },
    #[error("{file}: {message}")]
    Io { file: String, message: String },
}

/// Loads and validates the configuration under `sysroot`.
pub fn load(sysroot: &Sysroot) -> Result<Settings, ConfigError> {
    let _ = sysroot;
    todo!("config loader")
}

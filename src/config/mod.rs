//! Configuration: `/etc/kdump-hotplugd/config.toml` plus `config.d/*.toml` drop-ins, in three stages
//! (fragments → merged inputs → validated [`Settings`]).
//!
//! 1. `fragments`: each file parsed on its own; every field optional, unknown keys rejected.
//! 2. `inputs`: the fragments laid over the defaults in order, each value remembering its file and line.
//! 3. `validate`: ranges and consistency checked, producing [`Settings`].
//!
//! Files, all under the `--sysroot`: the main file first, then the drop-ins of the three directories in
//! [`DROP_IN_DIRS`] ordered by file name (see `sources` for the systemd-style rules). Every error names the
//! file, line and dotted key: `/etc/kdump-hotplugd/config.d/10-x.toml:3: debounce.quiet_window_ms: expected an
//! integer, found a string`.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use crate::host::sysroot::Sysroot;

mod describe;
mod diagnostics;
mod fragments;
mod inputs;
mod schema;
mod sources;
mod validate;

pub use sources::{DROP_IN_DIRS, MAIN_FILE};

#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum LoaderKind {
    /// Pick by `core::loader_choice`: `kexec_load` with prepared segments (the shortest window with no crash
    /// kernel) unless lockdown, the distro's plan (`-s`) or a missing kexec-tools needs `kexec_file_load`.
    Auto,
    /// kexec-tools' `kexec -c -p`: `kexec_load` with segments prepared before the call.
    KexecLoad,
    /// `kexec_file_load(2)` from the daemon itself.
    Native,
    /// The distro's own tool (`kdumpctl reload`, `kdump-config reload`, …).
    Command,
    /// kexec-tools' `kexec -s -p` (for kernels or setups where the daemon should not call the syscall itself).
    KexecTools,
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

pub use crate::core::debounce::DebounceTimings;

#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct LoaderSettings {
    pub kind: LoaderKind,
    /// Crash kernel image; `None` = the distro's plan (`core::plan`).
    pub kernel: Option<PathBuf>,
    /// Crash initrd; `None` = the distro's plan.
    pub initrd: Option<PathBuf>,
    /// Crash kernel command line; `None` = the distro's plan.
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
            kind: LoaderKind::Auto,
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
    pub debounce: DebounceTimings,
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
    /// A reload still running after this long is reported as stuck, and the watchdog is withheld.
    pub reload_timeout: Duration,
    /// While running, mask the distribution's kdump hotplug udev rule with a runtime file in
    /// `/run/udev/rules.d/` (removed when the daemon stops).
    pub mask_distro_rule: bool,
}

impl Settings {
    /// The plain values the pure decision takes from the configuration.
    pub fn decision_policy(&self) -> crate::core::decide::Policy {
        crate::core::decide::Policy {
            configured_max_memory_ranges: self.kernel_max_memory_ranges,
        }
    }
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            debounce: DebounceTimings::default(),
            loader: LoaderSettings::default(),
            events: EventSettings::default(),
            kernel_max_memory_ranges: 8192,
            dry_run: false,
            initial_load: InitialLoad::IfMissing,
            watch_kernel_log: true,
            reload_timeout: Duration::from_secs(180),
            mask_distro_rule: true,
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

/// Where a key's effective value came from.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case", tag = "kind")]
pub enum Origin {
    /// Not set in any file: the built-in default.
    #[default]
    Default,
    /// Last set in `file` (the host path) at `line` (1-based).
    File { file: String, line: usize },
}

impl std::fmt::Display for Origin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Origin::Default => f.write_str("default"),
            Origin::File { file, line } => write!(f, "{file}:{line}"),
        }
    }
}

/// Where every effective value came from, and which files were applied.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct Provenance {
    files: Vec<String>,
    /// By dotted key (`debounce.quiet_window_ms`).
    origins: BTreeMap<String, Origin>,
}

impl Provenance {
    /// The files applied, in order (host paths); a missing main file is not listed.
    pub fn files(&self) -> &[String] {
        &self.files
    }

    /// Where the dotted `key` (`debounce.quiet_window_ms`) got its value; `None` for a key that does not exist.
    pub fn origin(&self, key: &str) -> Option<&Origin> {
        self.origins.get(key)
    }

    /// Every key with its origin, by dotted key.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &Origin)> {
        self.origins
            .iter()
            .map(|(key, origin)| (key.as_str(), origin))
    }
}

/// Loads and validates the configuration under `sysroot`.
pub fn load(sysroot: &Sysroot) -> Result<Settings, ConfigError> {
    load_with_provenance(sysroot).map(|(settings, _)| settings)
}

/// Like [`load`], also saying where each value came from (for `check-config`, see [`describe`]).
pub fn load_with_provenance(sysroot: &Sysroot) -> Result<(Settings, Provenance), ConfigError> {
    let mut texts = Vec::new();
    for file in sources::discover(sysroot)? {
        if let Some(text) = sources::read(&file)? {
            texts.push((file.shown, text));
        }
    }
    from_texts(
        texts
            .iter()
            .map(|(file, text)| (file.as_str(), text.as_str())),
    )
}

/// The pure part of [`load_with_provenance`]: `(shown file name, text)` pairs, in the order they apply.
pub(crate) fn from_texts<'a>(
    texts: impl IntoIterator<Item = (&'a str, &'a str)>,
) -> Result<(Settings, Provenance), ConfigError> {
    let mut merged = inputs::Inputs::defaults();
    for (index, (file, text)) in texts.into_iter().enumerate() {
        let fragment = fragments::parse(file, text)?;
        let source = inputs::Source {
            file,
            text,
            rank: index + 1,
        };
        merged.apply(&source, fragment);
    }
    let settings = validate::validate(&merged)?;
    Ok((settings, merged.provenance()))
}

/// Renders every effective key as `key = value  # origin`, preceded by the files applied. The lines are valid
/// TOML, so the output can be saved as a config file that reproduces `settings`.
pub fn describe(settings: &Settings, provenance: &Provenance) -> String {
    describe::describe(settings, provenance)
}

#[cfg(test)]
mod tests;

//! `check-config` output: every effective key with its value and where it was set.
//!
//! The lines are TOML (dotted keys, comments for origins), so the output can itself be saved as a config file
//! and reproduce the same settings.

use std::fmt::Write as _;

use super::{Provenance, Settings};

fn millis(duration: std::time::Duration) -> toml::Value {
    toml::Value::Integer(i64::try_from(duration.as_millis()).unwrap_or(i64::MAX))
}

fn string(text: impl Into<String>) -> toml::Value {
    toml::Value::String(text.into())
}

fn optional_path(path: Option<&std::path::Path>) -> toml::Value {
    string(
        path.map(|path| path.to_string_lossy().into_owned())
            .unwrap_or_default(),
    )
}

/// An enum's configuration name (its serde name).
fn name<T: serde::Serialize + std::fmt::Debug>(value: &T) -> toml::Value {
    toml::Value::try_from(value).unwrap_or_else(|_| string(format!("{value:?}")))
}

/// Every key's effective value, in [`schema::KEYS`] order (a unit test holds it to that).
fn values(settings: &Settings) -> [(&'static str, toml::Value); 20] {
    let (debounce, loader, events) = (&settings.debounce, &settings.loader, &settings.events);
    [
        ("debounce.quiet_window_ms", millis(debounce.quiet_window)),
        ("debounce.max_delay_ms", millis(debounce.max_delay)),
        (
            "debounce.backoff_initial_ms",
            millis(debounce.backoff_initial),
        ),
        ("debounce.backoff_max_ms", millis(debounce.backoff_max)),
        ("loader.kind", name(&loader.kind)),
        ("loader.kernel", optional_path(loader.kernel.as_deref())),
        ("loader.initrd", optional_path(loader.initrd.as_deref())),
        (
            "loader.cmdline",
            string(loader.cmdline.clone().unwrap_or_default()),
        ),
        (
            "loader.command",
            toml::Value::Array(loader.command.iter().map(string).collect()),
        ),
        ("loader.command_timeout_ms", millis(loader.command_timeout)),
        ("loader.kexec_path", optional_path(Some(&loader.kexec_path))),
        (
            "kernel.max_memory_ranges",
            toml::Value::Integer(i64::from(settings.kernel_max_memory_ranges)),
        ),
        ("events.memory", toml::Value::Boolean(events.memory)),
        ("events.cpu", toml::Value::Boolean(events.cpu)),
        ("events.source", name(&events.source)),
        ("daemon.dry_run", toml::Value::Boolean(settings.dry_run)),
        ("daemon.initial_load", name(&settings.initial_load)),
        (
            "daemon.watch_kernel_log",
            toml::Value::Boolean(settings.watch_kernel_log),
        ),
        ("daemon.reload_timeout_ms", millis(settings.reload_timeout)),
        (
            "daemon.mask_distro_rule",
            toml::Value::Boolean(settings.mask_distro_rule),
        ),
    ]
}

/// What an empty value stands for, for the keys where empty means "work it out".
fn empty_means(key: &str) -> Option<&'static str> {
    match key {
        "loader.kernel" => Some("the distribution's plan: kdump-hotplugd plan"),
        "loader.initrd" => Some("the distribution's plan"),
        "loader.cmdline" => Some("the distribution's plan"),
        "loader.command" => Some("detect the distribution's tool"),
        _ => None,
    }
}

fn is_empty(value: &toml::Value) -> bool {
    match value {
        toml::Value::String(text) => text.is_empty(),
        toml::Value::Array(items) => items.is_empty(),
        _ => false,
    }
}

pub(crate) fn describe(settings: &Settings, provenance: &Provenance) -> String {
    let mut out = String::new();
    if provenance.files().is_empty() {
        out.push_str("# No configuration files; every value is the built-in default.\n");
    } else {
        out.push_str("# Files applied, in order (a later file wins per key):\n");
        for file in provenance.files() {
            let _ = writeln!(out, "#   {file}");
        }
    }
    let lines: Vec<(String, String)> = values(settings)
        .into_iter()
        .map(|(key, value)| {
            let mut origin = provenance
                .origin(key)
                .map_or_else(|| "default".to_owned(), ToString::to_string);
            if let Some(meaning) = empty_means(key).filter(|_| is_empty(&value)) {
                let _ = write!(origin, " (empty: {meaning})");
            }
            (format!("{key} = {value}"), origin)
        })
        .collect();
    let width = lines.iter().map(|(line, _)| line.len()).max().unwrap_or(0);
    for (line, origin) in lines {
        let _ = writeln!(out, "{line:width$}  # {origin}");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::schema;

    #[test]
    fn values_follow_the_schema_order() {
        let listed: Vec<&str> = values(&Settings::default())
            .iter()
            .map(|(key, _)| *key)
            .collect();
        let schema_keys: Vec<String> = schema::KEYS.iter().map(|spec| spec.dotted()).collect();
        assert_eq!(listed, schema_keys);
    }

    #[test]
    fn enum_values_print_as_their_config_names() {
        let printed = describe(&Settings::default(), &Provenance::default());
        assert!(printed.contains("loader.kind = \"auto\""), "{printed}");
        assert!(
            printed.contains("daemon.initial_load = \"if-missing\""),
            "{printed}"
        );
        assert!(printed.contains("events.source = \"auto\""), "{printed}");
    }
}

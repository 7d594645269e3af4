//! The one list of every configuration key: its section, name and what type it takes.
//!
//! Error messages (valid keys, valid values, expected types), the `check-config` renderer and the tests that keep
//! `config/config.toml` complete all read this list, so a key added here shows up everywhere at once.

/// What a key accepts, phrased for error messages.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Expect {
    Integer,
    Bool,
    String,
    /// A string holding an absolute path.
    Path,
    /// A string, one of the listed values.
    OneOf(&'static [&'static str]),
    StringArray,
}

impl Expect {
    /// "an integer", "one of \"native\", \"command\"", … for "expected …" messages.
    pub(crate) fn describe(self) -> String {
        match self {
            Expect::Integer => "an integer".to_owned(),
            Expect::Bool => "a boolean (true or false)".to_owned(),
            Expect::String => "a string".to_owned(),
            Expect::Path => "a string holding an absolute path".to_owned(),
            Expect::OneOf(values) => format!("one of {}", quoted_list(values)),
            Expect::StringArray => "an array of strings".to_owned(),
        }
    }
}

#[derive(Clone, Copy, Debug)]
pub(crate) struct KeySpec {
    pub section: &'static str,
    pub name: &'static str,
    pub expect: Expect,
}

impl KeySpec {
    #[cfg(test)]
    pub(crate) fn dotted(&self) -> String {
        format!("{}.{}", self.section, self.name)
    }
}

/// Serialized names of [`super::LoaderKind`]; a unit test keeps them in step with the enum.
pub(crate) const LOADER_KINDS: &[&str] =
    &["auto", "kexec-load", "native", "command", "kexec-tools"];
/// Serialized names of [`super::EventSourceKind`].
pub(crate) const EVENT_SOURCES: &[&str] = &["auto", "udev", "kernel"];
/// Serialized names of [`super::InitialLoad`].
pub(crate) const INITIAL_LOADS: &[&str] = &["if-missing", "always", "never"];

pub(crate) const SECTIONS: &[&str] = &["debounce", "loader", "kernel", "events", "daemon"];

const fn key(section: &'static str, name: &'static str, expect: Expect) -> KeySpec {
    KeySpec {
        section,
        name,
        expect,
    }
}

/// Every key, in the order `check-config` prints them and `config/config.toml` documents them.
pub(crate) const KEYS: &[KeySpec] = &[
    key("debounce", "quiet_window_ms", Expect::Integer),
    key("debounce", "max_delay_ms", Expect::Integer),
    key("debounce", "backoff_initial_ms", Expect::Integer),
    key("debounce", "backoff_max_ms", Expect::Integer),
    key("loader", "kind", Expect::OneOf(LOADER_KINDS)),
    key("loader", "kernel", Expect::Path),
    key("loader", "initrd", Expect::Path),
    key("loader", "cmdline", Expect::String),
    key("loader", "command", Expect::StringArray),
    key("loader", "command_timeout_ms", Expect::Integer),
    key("loader", "kexec_path", Expect::Path),
    key("kernel", "max_memory_ranges", Expect::Integer),
    key("events", "memory", Expect::Bool),
    key("events", "cpu", Expect::Bool),
    key("events", "source", Expect::OneOf(EVENT_SOURCES)),
    key("daemon", "dry_run", Expect::Bool),
    key("daemon", "initial_load", Expect::OneOf(INITIAL_LOADS)),
    key("daemon", "watch_kernel_log", Expect::Bool),
    key("daemon", "reload_timeout_ms", Expect::Integer),
    key("daemon", "mask_distro_rule", Expect::Bool),
];

pub(crate) fn find(section: &str, name: &str) -> Option<&'static KeySpec> {
    KEYS.iter()
        .find(|spec| spec.section == section && spec.name == name)
}

pub(crate) fn keys_in(section: &str) -> impl Iterator<Item = &'static KeySpec> + '_ {
    KEYS.iter().filter(move |spec| spec.section == section)
}

/// `"a", "b", "c"`
pub(crate) fn quoted_list(values: &[&str]) -> String {
    values
        .iter()
        .map(|value| format!("\"{value}\""))
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{EventSourceKind, InitialLoad, LoaderKind};

    /// Each listed name must deserialize, and each variant must serialize to a listed name, or error messages
    /// would offer values the parser rejects.
    fn assert_names_match<T>(names: &[&str], variants: &[T])
    where
        T: serde::Serialize + serde::de::DeserializeOwned + PartialEq + std::fmt::Debug,
    {
        for name in names {
            let parsed: T = serde_json::from_value(serde_json::Value::from(*name))
                .unwrap_or_else(|e| panic!("{name}: {e}"));
            assert!(variants.contains(&parsed));
        }
        for variant in variants {
            let name = serde_json::to_value(variant).unwrap();
            assert!(names.contains(&name.as_str().unwrap()), "{name} not listed");
        }
        assert_eq!(names.len(), variants.len());
    }

    #[test]
    fn enum_value_lists_match_the_enums() {
        assert_names_match(
            LOADER_KINDS,
            &[
                LoaderKind::Auto,
                LoaderKind::KexecLoad,
                LoaderKind::Native,
                LoaderKind::Command,
                LoaderKind::KexecTools,
            ],
        );
        assert_names_match(
            EVENT_SOURCES,
            &[
                EventSourceKind::Auto,
                EventSourceKind::Udev,
                EventSourceKind::Kernel,
            ],
        );
        assert_names_match(
            INITIAL_LOADS,
            &[
                InitialLoad::IfMissing,
                InitialLoad::Always,
                InitialLoad::Never,
            ],
        );
    }

    #[test]
    fn every_key_belongs_to_a_listed_section_and_is_unique() {
        for (i, spec) in KEYS.iter().enumerate() {
            assert!(SECTIONS.contains(&spec.section), "{}", spec.dotted());
            assert!(
                KEYS[..i]
                    .iter()
                    .all(|other| other.dotted() != spec.dotted()),
                "{} listed twice",
                spec.dotted()
            );
        }
        for section in SECTIONS {
            assert!(keys_in(section).next().is_some(), "[{section}] has no keys");
        }
    }
}

//! Stage 1: one TOML file as written, every field optional, unknown keys rejected.
//!
//! Values keep their byte span so that the merge can record the line each key was set on, and later
//! validation errors can point back at it.

use serde::Deserialize;
use toml::Spanned;

use super::diagnostics;
use super::{ConfigError, EventSourceKind, InitialLoad, LoaderKind};

#[derive(Debug, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ConfigFragment {
    pub debounce: Option<DebounceFragment>,
    pub loader: Option<LoaderFragment>,
    pub kernel: Option<KernelFragment>,
    pub events: Option<EventsFragment>,
    pub daemon: Option<DaemonFragment>,
}

// Integers are read as i64 (TOML's own integer type) so that negative or oversized values reach validation,
// which can say "must be at least 1" instead of serde's "invalid value: integer `-5`, expected u64".

#[derive(Debug, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct DebounceFragment {
    pub quiet_window_ms: Option<Spanned<i64>>,
    pub max_delay_ms: Option<Spanned<i64>>,
    pub backoff_initial_ms: Option<Spanned<i64>>,
    pub backoff_max_ms: Option<Spanned<i64>>,
}

#[derive(Debug, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct LoaderFragment {
    pub kind: Option<Spanned<LoaderKind>>,
    pub kernel: Option<Spanned<String>>,
    pub initrd: Option<Spanned<String>>,
    pub cmdline: Option<Spanned<String>>,
    pub command: Option<Spanned<Vec<String>>>,
    pub command_timeout_ms: Option<Spanned<i64>>,
    pub kexec_path: Option<Spanned<String>>,
}

#[derive(Debug, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct KernelFragment {
    pub max_memory_ranges: Option<Spanned<i64>>,
}

#[derive(Debug, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct EventsFragment {
    pub memory: Option<Spanned<bool>>,
    pub cpu: Option<Spanned<bool>>,
    pub source: Option<Spanned<EventSourceKind>>,
}

#[derive(Debug, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct DaemonFragment {
    pub dry_run: Option<Spanned<bool>>,
    pub initial_load: Option<Spanned<InitialLoad>>,
    pub watch_kernel_log: Option<Spanned<bool>>,
    pub reload_timeout_ms: Option<Spanned<i64>>,
    pub mask_distro_rule: Option<Spanned<bool>>,
}

/// Parses one file's text; `file` is the name errors show.
pub(crate) fn parse(file: &str, text: &str) -> Result<ConfigFragment, ConfigError> {
    // Parsing the syntax tree first separates syntax errors from type errors, and the tree's spans let a type
    // error be traced back to its dotted key.
    let document = toml_edit::ImDocument::parse(text)
        .map_err(|error| diagnostics::syntax_error(file, text, &error))?;
    toml::from_str(text).map_err(|error| diagnostics::data_error(file, text, &document, &error))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spanned<T>(text: &str, needle: &str, value: T) -> Option<Spanned<T>> {
        let start = text.find(needle).expect("needle in text");
        Some(Spanned::new(start..start + needle.len(), value))
    }

    #[test]
    fn empty_text_is_an_empty_fragment() {
        assert_eq!(parse("f", "").unwrap(), ConfigFragment::default());
        assert_eq!(
            parse("f", "# only a comment\n\n").unwrap(),
            ConfigFragment::default()
        );
    }

    #[test]
    fn every_section_parses_into_its_fields() {
        let text = r#"
[debounce]
quiet_window_ms = 250
max_delay_ms = 5000
backoff_initial_ms = 500
backoff_max_ms = 30000

[loader]
kind = "command"
kernel = "/boot/vmlinuz-kdump"
initrd = "/boot/initrd-kdump"
cmdline = "irqpoll nr_cpus=1"
command = ["kdumpctl", "reload"]
command_timeout_ms = 90000
kexec_path = "/sbin/kexec"

[kernel]
max_memory_ranges = 4096

[events]
memory = true
cpu = false
source = "udev"

[daemon]
dry_run = true
initial_load = "never"
watch_kernel_log = false
reload_timeout_ms = 150000
mask_distro_rule = false
"#;
        let expected = ConfigFragment {
            debounce: Some(DebounceFragment {
                quiet_window_ms: spanned(text, "250", 250),
                max_delay_ms: spanned(text, "5000", 5000),
                backoff_initial_ms: spanned(text, "500", 500),
                backoff_max_ms: spanned(text, "30000", 30000),
            }),
            loader: Some(LoaderFragment {
                kind: spanned(text, "\"command\"", LoaderKind::Command),
                kernel: spanned(
                    text,
                    "\"/boot/vmlinuz-kdump\"",
                    "/boot/vmlinuz-kdump".into(),
                ),
                initrd: spanned(text, "\"/boot/initrd-kdump\"", "/boot/initrd-kdump".into()),
                cmdline: spanned(text, "\"irqpoll nr_cpus=1\"", "irqpoll nr_cpus=1".into()),
                command: spanned(
                    text,
                    "[\"kdumpctl\", \"reload\"]",
                    vec!["kdumpctl".into(), "reload".into()],
                ),
                command_timeout_ms: spanned(text, "90000", 90000),
                kexec_path: spanned(text, "\"/sbin/kexec\"", "/sbin/kexec".into()),
            }),
            kernel: Some(KernelFragment {
                max_memory_ranges: spanned(text, "4096", 4096),
            }),
            events: Some(EventsFragment {
                memory: spanned(text, "true", true),
                cpu: spanned(text, "false", false),
                source: spanned(text, "\"udev\"", EventSourceKind::Udev),
            }),
            daemon: Some(DaemonFragment {
                dry_run: spanned(text, "true", true),
                initial_load: spanned(text, "\"never\"", InitialLoad::Never),
                watch_kernel_log: spanned(text, "false", false),
                reload_timeout_ms: spanned(text, "150000", 150000),
                mask_distro_rule: spanned(text, "false", false),
            }),
        };
        let parsed = parse("f", text).unwrap();
        assert_eq!(parsed, expected);
        // Spanned's equality ignores spans; the merge relies on them, so check one.
        let quiet = parsed.debounce.unwrap().quiet_window_ms.unwrap();
        assert_eq!(&text[quiet.span()], "250");
    }

    #[test]
    fn dotted_keys_and_inline_tables_are_the_same_settings() {
        let dotted = parse("f", "debounce.quiet_window_ms = 7\n").unwrap();
        let inline = parse("f", "debounce = { quiet_window_ms = 7 }\n").unwrap();
        assert_eq!(dotted, inline);
        assert_eq!(
            *dotted.debounce.unwrap().quiet_window_ms.unwrap().get_ref(),
            7
        );
    }
}

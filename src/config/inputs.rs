//! Stage 2: the fragments merged in order (a later file wins per key), each value remembering where it was set.
//!
//! Nothing is checked here beyond what the TOML types enforce; range and consistency checks are stage 3
//! ([`super::validate`]), which needs the origins recorded here to name the file and line of a bad value.

use std::collections::BTreeMap;

use toml::Spanned;

use super::diagnostics::line_of;
use super::fragments::ConfigFragment;
use super::{EventSourceKind, InitialLoad, LoaderKind, Origin, Provenance, Settings};

/// A value and where it came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Sourced<T> {
    pub value: T,
    pub origin: Origin,
    /// Merge position of the file that set it: 0 for the built-in default, then 1, 2, … in the order the
    /// files were applied. Lets a consistency error blame whichever of two keys was set last.
    pub rank: usize,
}

impl<T> Sourced<T> {
    fn builtin(value: T) -> Self {
        Self {
            value,
            origin: Origin::Default,
            rank: 0,
        }
    }

    fn override_with(&mut self, value: Option<Spanned<T>>, source: &Source<'_>) {
        if let Some(value) = value {
            let line = line_of(source.text, value.span().start);
            *self = Self {
                value: value.into_inner(),
                origin: Origin::File {
                    file: source.file.to_owned(),
                    line,
                },
                rank: source.rank,
            };
        }
    }
}

/// The file a fragment came from, for recording origins.
pub(crate) struct Source<'a> {
    /// The name errors and `check-config` show.
    pub file: &'a str,
    pub text: &'a str,
    /// 1 for the first file applied, then counting up.
    pub rank: usize,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct DebounceInputs {
    pub quiet_window_ms: Sourced<i64>,
    pub max_delay_ms: Sourced<i64>,
    pub backoff_initial_ms: Sourced<i64>,
    pub backoff_max_ms: Sourced<i64>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct LoaderInputs {
    pub kind: Sourced<LoaderKind>,
    /// Empty = discover.
    pub kernel: Sourced<String>,
    /// Empty = discover.
    pub initrd: Sourced<String>,
    /// Empty = the distribution's plan.
    pub cmdline: Sourced<String>,
    pub command: Sourced<Vec<String>>,
    pub command_timeout_ms: Sourced<i64>,
    pub kexec_path: Sourced<String>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct KernelInputs {
    pub max_memory_ranges: Sourced<i64>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct EventsInputs {
    pub memory: Sourced<bool>,
    pub cpu: Sourced<bool>,
    pub source: Sourced<EventSourceKind>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct DaemonInputs {
    pub dry_run: Sourced<bool>,
    pub initial_load: Sourced<InitialLoad>,
    pub watch_kernel_log: Sourced<bool>,
    pub reload_timeout_ms: Sourced<i64>,
    pub mask_distro_rule: Sourced<bool>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Inputs {
    pub debounce: DebounceInputs,
    pub loader: LoaderInputs,
    pub kernel: KernelInputs,
    pub events: EventsInputs,
    pub daemon: DaemonInputs,
    /// Every file applied, in order.
    pub files: Vec<String>,
}

fn millis(duration: std::time::Duration) -> i64 {
    i64::try_from(duration.as_millis()).unwrap_or(i64::MAX)
}

fn path_text(path: Option<&std::path::Path>) -> String {
    path.map(|path| path.to_string_lossy().into_owned())
        .unwrap_or_default()
}

impl Inputs {
    /// The starting point of the merge: [`Settings::default`], so the defaults live in one place.
    pub(crate) fn defaults() -> Self {
        let settings = Settings::default();
        Self {
            debounce: DebounceInputs {
                quiet_window_ms: Sourced::builtin(millis(settings.debounce.quiet_window)),
                max_delay_ms: Sourced::builtin(millis(settings.debounce.max_delay)),
                backoff_initial_ms: Sourced::builtin(millis(settings.debounce.backoff_initial)),
                backoff_max_ms: Sourced::builtin(millis(settings.debounce.backoff_max)),
            },
            loader: LoaderInputs {
                kind: Sourced::builtin(settings.loader.kind),
                kernel: Sourced::builtin(path_text(settings.loader.kernel.as_deref())),
                initrd: Sourced::builtin(path_text(settings.loader.initrd.as_deref())),
                cmdline: Sourced::builtin(settings.loader.cmdline.unwrap_or_default()),
                command: Sourced::builtin(settings.loader.command),
                command_timeout_ms: Sourced::builtin(millis(settings.loader.command_timeout)),
                kexec_path: Sourced::builtin(path_text(Some(&settings.loader.kexec_path))),
            },
            kernel: KernelInputs {
                max_memory_ranges: Sourced::builtin(i64::from(settings.kernel_max_memory_ranges)),
            },
            events: EventsInputs {
                memory: Sourced::builtin(settings.events.memory),
                cpu: Sourced::builtin(settings.events.cpu),
                source: Sourced::builtin(settings.events.source),
            },
            daemon: DaemonInputs {
                dry_run: Sourced::builtin(settings.dry_run),
                initial_load: Sourced::builtin(settings.initial_load),
                watch_kernel_log: Sourced::builtin(settings.watch_kernel_log),
                reload_timeout_ms: Sourced::builtin(millis(settings.reload_timeout)),
                mask_distro_rule: Sourced::builtin(settings.mask_distro_rule),
            },
            files: Vec::new(),
        }
    }

    /// Lays one file's fragment over what is merged so far.
    pub(crate) fn apply(&mut self, source: &Source<'_>, fragment: ConfigFragment) {
        self.files.push(source.file.to_owned());
        if let Some(debounce) = fragment.debounce {
            let inputs = &mut self.debounce;
            inputs
                .quiet_window_ms
                .override_with(debounce.quiet_window_ms, source);
            inputs
                .max_delay_ms
                .override_with(debounce.max_delay_ms, source);
            inputs
                .backoff_initial_ms
                .override_with(debounce.backoff_initial_ms, source);
            inputs
                .backoff_max_ms
                .override_with(debounce.backoff_max_ms, source);
        }
        if let Some(loader) = fragment.loader {
            let inputs = &mut self.loader;
            inputs.kind.override_with(loader.kind, source);
            inputs.kernel.override_with(loader.kernel, source);
            inputs.initrd.override_with(loader.initrd, source);
            inputs.cmdline.override_with(loader.cmdline, source);
            inputs.command.override_with(loader.command, source);
            inputs
                .command_timeout_ms
                .override_with(loader.command_timeout_ms, source);
            inputs.kexec_path.override_with(loader.kexec_path, source);
        }
        if let Some(kernel) = fragment.kernel {
            self.kernel
                .max_memory_ranges
                .override_with(kernel.max_memory_ranges, source);
        }
        if let Some(events) = fragment.events {
            let inputs = &mut self.events;
            inputs.memory.override_with(events.memory, source);
            inputs.cpu.override_with(events.cpu, source);
            inputs.source.override_with(events.source, source);
        }
        if let Some(daemon) = fragment.daemon {
            let inputs = &mut self.daemon;
            inputs.dry_run.override_with(daemon.dry_run, source);
            inputs
                .initial_load
                .override_with(daemon.initial_load, source);
            inputs
                .watch_kernel_log
                .override_with(daemon.watch_kernel_log, source);
            inputs
                .reload_timeout_ms
                .override_with(daemon.reload_timeout_ms, source);
            inputs
                .mask_distro_rule
                .override_with(daemon.mask_distro_rule, source);
        }
    }

    /// Every key's origin, by dotted key, in [`super::schema::KEYS`] order (a unit test holds it to that).
    fn origins(&self) -> [(&'static str, &Origin); 20] {
        let (d, l, k, e, m) = (
            &self.debounce,
            &self.loader,
            &self.kernel,
            &self.events,
            &self.daemon,
        );
        [
            ("debounce.quiet_window_ms", &d.quiet_window_ms.origin),
            ("debounce.max_delay_ms", &d.max_delay_ms.origin),
            ("debounce.backoff_initial_ms", &d.backoff_initial_ms.origin),
            ("debounce.backoff_max_ms", &d.backoff_max_ms.origin),
            ("loader.kind", &l.kind.origin),
            ("loader.kernel", &l.kernel.origin),
            ("loader.initrd", &l.initrd.origin),
            ("loader.cmdline", &l.cmdline.origin),
            ("loader.command", &l.command.origin),
            ("loader.command_timeout_ms", &l.command_timeout_ms.origin),
            ("loader.kexec_path", &l.kexec_path.origin),
            ("kernel.max_memory_ranges", &k.max_memory_ranges.origin),
            ("events.memory", &e.memory.origin),
            ("events.cpu", &e.cpu.origin),
            ("events.source", &e.source.origin),
            ("daemon.dry_run", &m.dry_run.origin),
            ("daemon.initial_load", &m.initial_load.origin),
            ("daemon.watch_kernel_log", &m.watch_kernel_log.origin),
            ("daemon.reload_timeout_ms", &m.reload_timeout_ms.origin),
            ("daemon.mask_distro_rule", &m.mask_distro_rule.origin),
        ]
    }

    pub(crate) fn provenance(&self) -> Provenance {
        Provenance {
            files: self.files.clone(),
            origins: self
                .origins()
                .into_iter()
                .map(|(key, origin)| (key.to_owned(), origin.clone()))
                .collect::<BTreeMap<_, _>>(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{fragments, schema};

    fn apply(inputs: &mut Inputs, file: &str, text: &str, rank: usize) {
        let fragment = fragments::parse(file, text).unwrap();
        inputs.apply(&Source { file, text, rank }, fragment);
    }

    fn origin(file: &str, line: usize) -> Origin {
        Origin::File {
            file: file.to_owned(),
            line,
        }
    }

    #[test]
    fn origins_follow_the_schema_order() {
        let inputs = Inputs::defaults();
        let listed: Vec<&str> = inputs.origins().iter().map(|(key, _)| *key).collect();
        let schema_keys: Vec<String> = schema::KEYS.iter().map(|spec| spec.dotted()).collect();
        assert_eq!(listed, schema_keys);
    }

    #[test]
    fn defaults_have_default_origin_everywhere() {
        let inputs = Inputs::defaults();
        assert!(inputs
            .origins()
            .iter()
            .all(|(_, origin)| **origin == Origin::Default));
        assert!(inputs.files.is_empty());
    }

    #[test]
    fn later_fragment_wins_per_key_and_records_its_line() {
        let mut inputs = Inputs::defaults();
        apply(
            &mut inputs,
            "a.toml",
            "[debounce]\nquiet_window_ms = 10\nmax_delay_ms = 20\n",
            1,
        );
        apply(
            &mut inputs,
            "b.toml",
            "\n\n[debounce]\nmax_delay_ms = 30\n",
            2,
        );

        let mut expected = Inputs::defaults();
        expected.files = vec!["a.toml".into(), "b.toml".into()];
        expected.debounce.quiet_window_ms = Sourced {
            value: 10,
            origin: origin("a.toml", 2),
            rank: 1,
        };
        expected.debounce.max_delay_ms = Sourced {
            value: 30,
            origin: origin("b.toml", 4),
            rank: 2,
        };
        assert_eq!(inputs, expected);
    }

    #[test]
    fn a_section_without_keys_changes_nothing() {
        let mut inputs = Inputs::defaults();
        apply(&mut inputs, "a.toml", "[loader]\n[events]\n", 1);
        let mut expected = Inputs::defaults();
        expected.files = vec!["a.toml".into()];
        assert_eq!(inputs, expected);
    }
}

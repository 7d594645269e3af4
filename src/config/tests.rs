//! Whole-pipeline tests on texts (no files): error texts, validation rules, merge order, and properties.

use std::path::PathBuf;
use std::time::Duration;

use proptest::prelude::*;

use super::*;

const FILE: &str = "/etc/kdump-hotplugd/config.d/10-x.toml";

fn settings_of(texts: &[(&str, &str)]) -> Settings {
    match from_texts(texts.iter().copied()) {
        Ok((settings, _)) => settings,
        Err(error) => panic!("unexpected error: {error}"),
    }
}

fn error_of(text: &str) -> String {
    error_of_files(&[(FILE, text)])
}

fn error_of_files(texts: &[(&str, &str)]) -> String {
    match from_texts(texts.iter().copied()) {
        Ok((settings, _)) => panic!("expected an error, got {settings:?}"),
        Err(error) => error.to_string(),
    }
}

#[test]
fn no_text_gives_the_defaults() {
    let (settings, provenance) = from_texts([]).unwrap();
    assert_eq!(settings, Settings::default());
    assert!(provenance.files().is_empty());
    assert!(provenance
        .iter()
        .all(|(_, origin)| *origin == Origin::Default));
    assert_eq!(provenance.iter().count(), schema::KEYS.len());
}

#[test]
fn every_key_reaches_settings() {
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
memory = false
cpu = false
source = "kernel"

[daemon]
dry_run = true
initial_load = "always"
watch_kernel_log = false
reload_timeout_ms = 150000
mask_distro_rule = false
"#;
    let expected = Settings {
        debounce: DebounceTimings {
            quiet_window: Duration::from_millis(250),
            max_delay: Duration::from_millis(5000),
            backoff_initial: Duration::from_millis(500),
            backoff_max: Duration::from_millis(30000),
        },
        loader: LoaderSettings {
            kind: LoaderKind::Command,
            kernel: Some(PathBuf::from("/boot/vmlinuz-kdump")),
            initrd: Some(PathBuf::from("/boot/initrd-kdump")),
            cmdline: Some("irqpoll nr_cpus=1".to_owned()),
            command: vec!["kdumpctl".to_owned(), "reload".to_owned()],
            command_timeout: Duration::from_millis(90000),
            kexec_path: PathBuf::from("/sbin/kexec"),
        },
        events: EventSettings {
            memory: false,
            cpu: false,
            source: EventSourceKind::Kernel,
        },
        kernel_max_memory_ranges: 4096,
        dry_run: true,
        initial_load: InitialLoad::Always,
        watch_kernel_log: false,
        reload_timeout: Duration::from_millis(150000),
        mask_distro_rule: false,
    };
    let (settings, provenance) = from_texts([(FILE, text)]).unwrap();
    assert_eq!(settings, expected);
    assert!(provenance
        .iter()
        .all(|(_, origin)| matches!(origin, Origin::File { .. })));
    assert_eq!(
        provenance.origin("loader.command"),
        Some(&Origin::File {
            file: FILE.to_owned(),
            line: 13
        })
    );
}

#[test]
fn empty_strings_mean_work_it_out() {
    let text = "[loader]\nkernel = \"\"\ninitrd = \"\"\ncmdline = \"\"\n";
    assert_eq!(settings_of(&[(FILE, text)]), Settings::default());
}

#[test]
fn later_text_wins_per_key_only() {
    let settings = settings_of(&[
        ("a", "[debounce]\nquiet_window_ms = 10\nmax_delay_ms = 20\n"),
        ("b", "[debounce]\nquiet_window_ms = 15\n"),
    ]);
    let expected = Settings {
        debounce: DebounceTimings {
            quiet_window: Duration::from_millis(15),
            max_delay: Duration::from_millis(20),
            ..DebounceTimings::default()
        },
        ..Settings::default()
    };
    assert_eq!(settings, expected);
}

// ---- parse errors: exact text ----

#[test]
fn wrong_type_names_expected_and_found() {
    assert_eq!(
        error_of("[debounce]\n\nquiet_window_ms = \"1000\"\n"),
        format!("{FILE}:3: debounce.quiet_window_ms: expected an integer, found a string")
    );
    assert_eq!(
        error_of("[events]\nmemory = 1\n"),
        format!("{FILE}:2: events.memory: expected a boolean (true or false), found an integer")
    );
    assert_eq!(
        error_of("debounce.max_delay_ms = 1.5\n"),
        format!("{FILE}:1: debounce.max_delay_ms: expected an integer, found a float")
    );
    assert_eq!(
        error_of("[loader]\ncommand = \"kdumpctl reload\"\n"),
        format!("{FILE}:2: loader.command: expected an array of strings, found a string")
    );
    assert_eq!(
        error_of("debounce = 5\n"),
        format!("{FILE}:1: debounce: expected a table ([debounce]), found an integer")
    );
}

#[test]
fn wrong_type_inside_an_array_names_the_element_line() {
    assert_eq!(
        error_of("[loader]\ncommand = [\n  \"kdumpctl\",\n  5,\n]\n"),
        format!(
            "{FILE}:4: loader.command: expected an array of strings, found an array holding an integer"
        )
    );
}

#[test]
fn wrong_type_in_an_inline_table_names_the_inner_key() {
    assert_eq!(
        error_of("loader = { kind = \"native\", kexec_path = 3 }\n"),
        format!(
            "{FILE}:1: loader.kexec_path: expected a string holding an absolute path, found an integer"
        )
    );
}

#[test]
fn unknown_key_is_named_with_the_valid_ones() {
    assert_eq!(
        error_of("[debounce]\nquiet_window_ms = 5\nquiet_ms = 5\n"),
        format!(
            "{FILE}:3: debounce.quiet_ms: unknown key \"quiet_ms\" in [debounce]; valid keys: \
             quiet_window_ms, max_delay_ms, backoff_initial_ms, backoff_max_ms"
        )
    );
}

#[test]
fn unknown_key_that_lives_in_another_section_says_where() {
    assert_eq!(
        error_of("[loader]\nmax_memory_ranges = 5\n"),
        format!(
            "{FILE}:2: loader.max_memory_ranges: unknown key \"max_memory_ranges\" in [loader]; valid keys: \
             kind, kernel, initrd, cmdline, command, command_timeout_ms, kexec_path; \
             \"max_memory_ranges\" belongs in [kernel]"
        )
    );
    assert_eq!(
        error_of("# top\ndry_run = true\n"),
        format!(
            "{FILE}:2: dry_run: unknown key \"dry_run\" outside any section; it belongs in [daemon]"
        )
    );
}

#[test]
fn unknown_section_is_named_with_the_valid_ones() {
    assert_eq!(
        error_of("[debounce]\n[loaders]\nkind = \"native\"\n"),
        format!(
            "{FILE}:2: loaders: unknown section \"loaders\"; valid sections: \
             debounce, loader, kernel, events, daemon"
        )
    );
}

#[test]
fn bad_enum_value_lists_the_valid_values() {
    assert_eq!(
        error_of("[loader]\nkind = \"kexec\"\n"),
        format!(
            "{FILE}:2: loader.kind: invalid value \"kexec\"; expected one of \"auto\", \"kexec-load\", \"native\", \"command\", \
             \"kexec-tools\""
        )
    );
    assert_eq!(
        error_of("[daemon]\ninitial_load = \"if_missing\"\n"),
        format!(
            "{FILE}:2: daemon.initial_load: invalid value \"if_missing\"; \
             expected one of \"if-missing\", \"always\", \"never\""
        )
    );
    assert_eq!(
        error_of("[events]\nsource = true\n"),
        format!(
            "{FILE}:2: events.source: expected one of \"auto\", \"udev\", \"kernel\", found a boolean"
        )
    );
}

#[test]
fn syntax_errors_name_the_line_without_a_key() {
    assert_eq!(
        error_of("[debounce]\nquiet_window_ms = \n"),
        format!("{FILE}:2: -: TOML syntax error: invalid string; expected `\"`, `'`")
    );
    assert_eq!(
        error_of("[debounce]\nquiet_window_ms = 1\nquiet_window_ms = 2\n"),
        format!(
            "{FILE}:3: -: TOML syntax error: duplicate key `quiet_window_ms` in table `debounce`"
        )
    );
    assert_eq!(
        error_of("\n[debounce\n"),
        format!("{FILE}:2: -: TOML syntax error: invalid table header; expected `.`, `]`")
    );
}

#[test]
fn the_first_bad_file_stops_the_load() {
    assert_eq!(
        error_of_files(&[
            ("/etc/kdump-hotplugd/config.toml", "[debounce]\n"),
            (FILE, "[debounce]\nquiet = 1\n"),
            ("/etc/kdump-hotplugd/config.d/20-y.toml", "[nope]\n"),
        ]),
        format!(
            "{FILE}:2: debounce.quiet: unknown key \"quiet\" in [debounce]; valid keys: \
             quiet_window_ms, max_delay_ms, backoff_initial_ms, backoff_max_ms"
        )
    );
}

// ---- validation errors: exact text ----

#[test]
fn durations_must_be_positive_and_bounded() {
    assert_eq!(
        error_of("[debounce]\nquiet_window_ms = 0\n"),
        format!("{FILE}:2: debounce.quiet_window_ms: must be at least 1 (milliseconds), found 0")
    );
    assert_eq!(
        error_of("[loader]\ncommand_timeout_ms = -5\n"),
        format!("{FILE}:2: loader.command_timeout_ms: must be at least 1 (milliseconds), found -5")
    );
    assert_eq!(
        error_of("[debounce]\nbackoff_max_ms = 86400001\n"),
        format!(
            "{FILE}:2: debounce.backoff_max_ms: must be at most 86400000 (milliseconds, 24 hours), \
             found 86400001"
        )
    );
}

#[test]
fn max_delay_below_quiet_window_blames_the_key_set_last() {
    // Only the quiet window is set: it is the one that broke the rule.
    assert_eq!(
        error_of("[debounce]\nquiet_window_ms = 20000\n"),
        format!(
            "{FILE}:2: debounce.quiet_window_ms: must not exceed debounce.max_delay_ms (10000, default), \
             found 20000"
        )
    );
    // Both in one file: the maximum delay is named.
    assert_eq!(
        error_of("[debounce]\nmax_delay_ms = 100\nquiet_window_ms = 200\n"),
        format!(
            "{FILE}:2: debounce.max_delay_ms: must be at least debounce.quiet_window_ms \
             (200, {FILE}:3), found 100"
        )
    );
    // A later drop-in lowering the maximum delay is blamed, not the earlier quiet window.
    let later = "/etc/kdump-hotplugd/config.d/90-late.toml";
    assert_eq!(
        error_of_files(&[
            (FILE, "[debounce]\nquiet_window_ms = 5000\n"),
            (later, "\n[debounce]\nmax_delay_ms = 4000\n"),
        ]),
        format!(
            "{later}:3: debounce.max_delay_ms: must be at least debounce.quiet_window_ms \
             (5000, {FILE}:2), found 4000"
        )
    );
}

#[test]
fn backoff_initial_above_cap_is_an_error() {
    assert_eq!(
        error_of("[debounce]\nbackoff_initial_ms = 120000\n"),
        format!(
            "{FILE}:2: debounce.backoff_initial_ms: must not exceed debounce.backoff_max_ms \
             (60000, default), found 120000"
        )
    );
}

#[test]
fn the_reload_deadline_comes_after_the_loaders_own_timeout() {
    assert_eq!(
        error_of("[daemon]\nreload_timeout_ms = 60000\n"),
        format!(
            "{FILE}:2: daemon.reload_timeout_ms: must be at least loader.command_timeout_ms \
             (120000, default), found 60000"
        )
    );
    // Raising the loader's timeout past the deadline blames the loader's key, set last.
    assert_eq!(
        error_of("[loader]\ncommand_timeout_ms = 200000\n"),
        format!(
            "{FILE}:2: loader.command_timeout_ms: must not exceed daemon.reload_timeout_ms \
             (180000, default), found 200000"
        )
    );
}

#[test]
fn max_memory_ranges_must_fit_a_u32_and_be_positive() {
    assert_eq!(
        error_of("[kernel]\nmax_memory_ranges = 0\n"),
        format!("{FILE}:2: kernel.max_memory_ranges: must be between 1 and 4294967295, found 0")
    );
    assert_eq!(
        error_of("[kernel]\nmax_memory_ranges = 4294967296\n"),
        format!(
            "{FILE}:2: kernel.max_memory_ranges: must be between 1 and 4294967295, found 4294967296"
        )
    );
    assert_eq!(
        settings_of(&[(FILE, "[kernel]\nmax_memory_ranges = 4294967295\n")])
            .kernel_max_memory_ranges,
        u32::MAX
    );
}

#[test]
fn explicit_empty_command_with_command_loader_is_an_error() {
    assert_eq!(
        error_of("[loader]\nkind = \"command\"\ncommand = []\n"),
        format!(
            "{FILE}:3: loader.command: must not be empty when loader.kind is \"command\" ({FILE}:2); \
             name the command, e.g. [\"kdumpctl\", \"reload\"], or remove this key to detect the \
             distribution's tool"
        )
    );
    // Unset means "detect"; empty with the native loader is unused.
    let detect = settings_of(&[(FILE, "[loader]\nkind = \"command\"\n")]);
    assert_eq!(detect.loader.command, Vec::<String>::new());
    assert_eq!(detect.loader.kind, LoaderKind::Command);
    settings_of(&[(FILE, "[loader]\ncommand = []\n")]);
    assert_eq!(
        error_of("[loader]\ncommand = [\"\", \"reload\"]\n"),
        format!(
            "{FILE}:2: loader.command: the program (first element) must not be an empty string"
        )
    );
}

#[test]
fn paths_must_be_absolute() {
    assert_eq!(
        error_of("[loader]\nkernel = \"boot/vmlinuz\"\n"),
        format!(
            "{FILE}:2: loader.kernel: must be an absolute path (starting with /), found \"boot/vmlinuz\""
        )
    );
    assert_eq!(
        error_of("[loader]\nkexec_path = \"\"\n"),
        format!(
            "{FILE}:2: loader.kexec_path: must be an absolute path (starting with /), found \"\""
        )
    );
    assert_eq!(
        error_of("[loader]\ninitrd = \"/boot/a\\u0000b\"\n"),
        format!("{FILE}:2: loader.initrd: must not contain a NUL character")
    );
}

// ---- properties ----

/// Lines that are often almost right: real sections and keys with values of every type, plus noise.
fn tomlish_line() -> impl Strategy<Value = String> {
    let section = prop_oneof![
        4 => proptest::sample::select(schema::SECTIONS.to_vec()).prop_map(str::to_owned),
        1 => "[a-z_.]{0,8}",
    ];
    let key = prop_oneof![
        6 => proptest::sample::select(schema::KEYS.iter().map(|spec| spec.name).collect::<Vec<_>>())
            .prop_map(str::to_owned),
        2 => proptest::sample::select(schema::KEYS.iter().map(|spec| spec.dotted()).collect::<Vec<_>>()),
        1 => "[a-z_\"']{0,8}",
    ];
    let value = prop_oneof![
        any::<i64>().prop_map(|n| n.to_string()),
        (0i64..100_000).prop_map(|n| n.to_string()),
        any::<bool>().prop_map(|b| b.to_string()),
        proptest::sample::select(vec![
            "\"native\"",
            "\"command\"",
            "\"if-missing\"",
            "\"udev\"",
            "\"/usr/sbin/kexec\"",
            "\"relative\"",
            "[]",
            "[\"kdumpctl\", \"reload\"]",
            "[1, \"a\"]",
            "{ x = 1 }",
            "1979-05-27",
            "1.5",
            "\"unterminated",
            "[",
            "",
        ])
        .prop_map(str::to_owned),
    ];
    let value = prop_oneof![8 => value, 1 => "\\PC{0,10}"];
    prop_oneof![
        3 => section.prop_map(|s| format!("[{s}]")),
        8 => (key, value).prop_map(|(k, v)| format!("{k} = {v}")),
        1 => "\\PC{0,20}",
        1 => Just(String::new()),
        1 => Just("# comment".to_owned()),
    ]
}

fn tomlish_text() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => proptest::collection::vec(tomlish_line(), 0..8).prop_map(|lines| lines.join("\n")),
        1 => proptest::collection::vec(any::<u8>(), 0..200)
            .prop_map(|bytes| String::from_utf8_lossy(&bytes).into_owned()),
        1 => "\\PC{0,200}",
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    /// Any text either loads or yields an error naming this file and a line inside it.
    #[test]
    fn any_text_loads_or_names_a_line_in_the_file(text in tomlish_text()) {
        match from_texts([(FILE, text.as_str())]) {
            Ok((_, provenance)) => {
                prop_assert_eq!(provenance.files(), &[FILE.to_owned()][..]);
                for (_, origin) in provenance.iter() {
                    if let Origin::File { line, .. } = origin {
                        prop_assert!(*line >= 1 && *line <= text.lines().count().max(1));
                    }
                }
            }
            Err(ConfigError::Invalid { file, line, key, message }) => {
                prop_assert_eq!(file, FILE);
                let lines = text.lines().count().max(1);
                prop_assert!(line >= 1 && line <= lines, "line {} of {}", line, lines);
                prop_assert!(!key.is_empty());
                prop_assert!(!message.is_empty());
            }
            Err(other) => prop_assert!(false, "unexpected error kind: {}", other),
        }
    }

    /// The debounce rules hold exactly: valid values come through unchanged, invalid ones are refused.
    #[test]
    fn debounce_values_are_kept_or_refused_by_the_rules(
        quiet in -5i64..30_000,
        max in -5i64..30_000,
        initial in -5i64..90_000,
        cap in -5i64..90_000,
    ) {
        let text = format!(
            "[debounce]\nquiet_window_ms = {quiet}\nmax_delay_ms = {max}\n\
             backoff_initial_ms = {initial}\nbackoff_max_ms = {cap}\n"
        );
        let valid = quiet >= 1 && max >= 1 && initial >= 1 && cap >= 1 && quiet <= max && initial <= cap;
        match from_texts([(FILE, text.as_str())]) {
            Ok((settings, _)) => {
                prop_assert!(valid);
                let millis = |n: i64| Duration::from_millis(n.unsigned_abs());
                prop_assert_eq!(settings.debounce, DebounceTimings {
                    quiet_window: millis(quiet),
                    max_delay: millis(max),
                    backoff_initial: millis(initial),
                    backoff_max: millis(cap),
                });
            }
            Err(ConfigError::Invalid { key, line, .. }) => {
                prop_assert!(!valid);
                prop_assert!(key.starts_with("debounce."));
                prop_assert!((2..=5).contains(&line));
            }
            Err(other) => prop_assert!(false, "unexpected error kind: {}", other),
        }
    }
}

//! Configuration loading from files under a sysroot: which files, in which order, the shipped documented
//! default file, the `check-config` rendering, and errors that name the file.

use std::path::{Path, PathBuf};
use std::time::Duration;

use kdump_hotplugd::config::{
    self, ConfigError, DebounceTimings, EventSettings, EventSourceKind, InitialLoad, LoaderKind,
    LoaderSettings, Origin, Settings,
};
use kdump_hotplugd::host::sysroot::Sysroot;

const MAIN: &str = "/etc/kdump-hotplugd/config.toml";
const USR: &str = "/usr/lib/kdump-hotplugd/config.d";
const RUN: &str = "/run/kdump-hotplugd/config.d";
const ETC: &str = "/etc/kdump-hotplugd/config.d";

/// A throwaway sysroot.
struct Root {
    dir: tempfile::TempDir,
}

impl Root {
    fn new() -> Self {
        Self {
            dir: tempfile::tempdir().expect("tempdir"),
        }
    }

    fn host(&self, absolute: &str) -> PathBuf {
        self.dir.path().join(absolute.trim_start_matches('/'))
    }

    fn write(&self, absolute: &str, text: &str) -> &Self {
        let path = self.host(absolute);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
        self
    }

    fn sysroot(&self) -> Sysroot {
        Sysroot::new(self.dir.path())
    }

    fn load(&self) -> Settings {
        config::load(&self.sysroot()).unwrap_or_else(|error| panic!("unexpected error: {error}"))
    }

    fn error(&self) -> ConfigError {
        match config::load(&self.sysroot()) {
            Ok(settings) => panic!("expected an error, got {settings:?}"),
            Err(error) => error,
        }
    }
}

fn with_quiet_window(ms: u64) -> Settings {
    Settings {
        debounce: DebounceTimings {
            quiet_window: Duration::from_millis(ms),
            ..DebounceTimings::default()
        },
        ..Settings::default()
    }
}

fn at(file: &str, line: usize) -> Origin {
    Origin::File {
        file: file.to_owned(),
        line,
    }
}

fn quiet(ms: u64) -> String {
    format!("[debounce]\nquiet_window_ms = {ms}\n")
}

#[test]
fn nothing_on_disk_gives_the_defaults() {
    let root = Root::new();
    let (settings, provenance) = config::load_with_provenance(&root.sysroot()).unwrap();
    assert_eq!(settings, Settings::default());
    assert!(provenance.files().is_empty());
    assert_eq!(
        provenance.origin("debounce.quiet_window_ms"),
        Some(&Origin::Default)
    );
    assert_eq!(provenance.origin("no.such_key"), None);
}

#[test]
fn empty_directories_give_the_defaults() {
    let root = Root::new();
    for dir in [USR, RUN, ETC] {
        std::fs::create_dir_all(root.host(dir)).unwrap();
    }
    assert_eq!(root.load(), Settings::default());
}

#[test]
fn main_file_alone_sets_every_section() {
    let root = Root::new();
    root.write(
        MAIN,
        r#"
[debounce]
quiet_window_ms = 500
max_delay_ms = 4000

[loader]
kind = "command"
command = ["kdump-config", "reload"]
command_timeout_ms = 30000

[kernel]
max_memory_ranges = 16384

[events]
cpu = false
source = "udev"

[daemon]
dry_run = true
initial_load = "never"
reload_timeout_ms = 45000
"#,
    );
    let expected = Settings {
        debounce: DebounceTimings {
            quiet_window: Duration::from_millis(500),
            max_delay: Duration::from_millis(4000),
            ..DebounceTimings::default()
        },
        loader: LoaderSettings {
            kind: LoaderKind::Command,
            command: vec!["kdump-config".into(), "reload".into()],
            command_timeout: Duration::from_millis(30000),
            ..LoaderSettings::default()
        },
        events: EventSettings {
            memory: true,
            cpu: false,
            source: EventSourceKind::Udev,
        },
        kernel_max_memory_ranges: 16384,
        dry_run: true,
        initial_load: InitialLoad::Never,
        watch_kernel_log: true,
        reload_timeout: Duration::from_millis(45000),
        mask_distro_rule: true,
    };
    assert_eq!(root.load(), expected);
}

#[test]
fn drop_ins_apply_after_the_main_file() {
    let root = Root::new();
    root.write(
        MAIN,
        "[debounce]\nquiet_window_ms = 5\nmax_delay_ms = 7000\n",
    )
    .write(&format!("{USR}/50-vendor.toml"), &quiet(6));
    let expected = Settings {
        debounce: DebounceTimings {
            quiet_window: Duration::from_millis(6),
            max_delay: Duration::from_millis(7000),
            ..DebounceTimings::default()
        },
        ..Settings::default()
    };
    assert_eq!(root.load(), expected);
}

#[test]
fn drop_ins_sort_by_file_name_across_directories() {
    let root = Root::new();
    // By name: 10-etc < 20-usr < 30-run, whatever the directory.
    root.write(&format!("{ETC}/10-etc.toml"), &quiet(100))
        .write(&format!("{USR}/20-usr.toml"), &quiet(200))
        .write(&format!("{RUN}/30-run.toml"), "[events]\nmemory = false\n");
    let (settings, provenance) = config::load_with_provenance(&root.sysroot()).unwrap();
    let expected = Settings {
        events: EventSettings {
            memory: false,
            ..EventSettings::default()
        },
        ..with_quiet_window(200)
    };
    assert_eq!(settings, expected);
    assert_eq!(
        provenance.files(),
        [
            format!("{ETC}/10-etc.toml"),
            format!("{USR}/20-usr.toml"),
            format!("{RUN}/30-run.toml"),
        ]
    );
    assert_eq!(
        provenance.origin("debounce.quiet_window_ms"),
        Some(&at(&format!("{USR}/20-usr.toml"), 2))
    );
    assert_eq!(
        provenance.origin("events.memory"),
        Some(&at(&format!("{RUN}/30-run.toml"), 2))
    );
    assert_eq!(provenance.origin("events.cpu"), Some(&Origin::Default));
}

#[test]
fn name_order_is_bytewise_not_numeric() {
    let root = Root::new();
    root.write(&format!("{ETC}/9-late.toml"), &quiet(9))
        .write(&format!("{ETC}/10-early.toml"), &quiet(10));
    assert_eq!(root.load(), with_quiet_window(9));
}

#[test]
fn same_name_in_a_later_directory_replaces_the_file_whole() {
    let root = Root::new();
    let name = "50-x.toml";
    root.write(
        &format!("{USR}/{name}"),
        "[debounce]\nquiet_window_ms = 1\nmax_delay_ms = 99\n",
    )
    .write(&format!("{ETC}/{name}"), &quiet(2));
    // max_delay_ms from /usr/lib is gone with the file it was in.
    let (settings, provenance) = config::load_with_provenance(&root.sysroot()).unwrap();
    assert_eq!(settings, with_quiet_window(2));
    assert_eq!(provenance.files(), [format!("{ETC}/{name}")]);
    assert_eq!(
        provenance.origin("debounce.max_delay_ms"),
        Some(&Origin::Default)
    );
}

#[test]
fn run_replaces_usr_lib_and_etc_replaces_both() {
    let root = Root::new();
    root.write(&format!("{USR}/50-x.toml"), &quiet(1))
        .write(&format!("{RUN}/50-x.toml"), &quiet(2));
    assert_eq!(root.load(), with_quiet_window(2));
    root.write(&format!("{ETC}/50-x.toml"), &quiet(3));
    assert_eq!(root.load(), with_quiet_window(3));
}

#[test]
fn an_empty_or_dev_null_drop_in_masks_a_vendor_one() {
    let root = Root::new();
    root.write(&format!("{USR}/50-x.toml"), &quiet(1))
        .write(&format!("{ETC}/50-x.toml"), "");
    assert_eq!(root.load(), Settings::default());

    let root = Root::new();
    root.write(&format!("{USR}/50-x.toml"), &quiet(1));
    std::fs::create_dir_all(root.host(ETC)).unwrap();
    std::os::unix::fs::symlink("/dev/null", root.host(&format!("{ETC}/50-x.toml"))).unwrap();
    assert_eq!(root.load(), Settings::default());
}

#[test]
fn other_entries_in_drop_in_directories_are_ignored() {
    let root = Root::new();
    root.write(&format!("{ETC}/50-x.conf"), "not toml at all [")
        .write(&format!("{ETC}/50-x.toml~"), "not toml at all [")
        .write(&format!("{ETC}/50-x.toml.rpmnew"), "not toml at all [")
        .write(&format!("{ETC}/.hidden.toml"), "not toml at all [")
        .write(&format!("{ETC}/dir.toml/inner.toml"), "not toml at all [")
        .write(&format!("{ETC}/60-real.toml"), &quiet(60));
    assert_eq!(root.load(), with_quiet_window(60));
}

// ---- errors name the file ----

fn invalid(error: ConfigError) -> (String, usize, String, String) {
    match error {
        ConfigError::Invalid {
            file,
            line,
            key,
            message,
        } => (file, line, key, message),
        other => panic!("expected Invalid, got {other:?}"),
    }
}

#[test]
fn a_bad_drop_in_is_named_by_its_host_path() {
    let root = Root::new();
    root.write(MAIN, &quiet(10)).write(
        &format!("{ETC}/10-x.toml"),
        "# local\n[debounce]\nquiet_window_ms = \"fast\"\n",
    );
    assert_eq!(
        root.error().to_string(),
        "/etc/kdump-hotplugd/config.d/10-x.toml:3: debounce.quiet_window_ms: expected an integer, \
         found a string"
    );
}

#[test]
fn each_error_kind_names_file_line_and_key() {
    let cases: [(&str, (usize, &str, &str)); 6] = [
        (
            "[debounce]\nquiet_window_ms = true\n",
            (2, "debounce.quiet_window_ms", "expected an integer, found a boolean"),
        ),
        (
            "[events]\nmemory = true\nnetwork = true\n",
            (
                3,
                "events.network",
                "unknown key \"network\" in [events]; valid keys: memory, cpu, source",
            ),
        ),
        (
            "[event]\nmemory = true\n",
            (
                1,
                "event",
                "unknown section \"event\"; valid sections: debounce, loader, kernel, events, daemon",
            ),
        ),
        (
            "[events]\nsource = \"netlink\"\n",
            (
                2,
                "events.source",
                "invalid value \"netlink\"; expected one of \"auto\", \"udev\", \"kernel\"",
            ),
        ),
        (
            "[events]\nmemory = yes\n",
            (2, "-", "TOML syntax error: invalid string; expected `\"`, `'`"),
        ),
        (
            "[loader]\ncommand_timeout_ms = 0\n",
            (
                2,
                "loader.command_timeout_ms",
                "must be at least 1 (milliseconds), found 0",
            ),
        ),
    ];
    let file = format!("{RUN}/20-y.toml");
    for (text, (line, key, message)) in cases {
        let root = Root::new();
        root.write(&file, text);
        assert_eq!(
            invalid(root.error()),
            (file.clone(), line, key.to_owned(), message.to_owned()),
            "for {text:?}"
        );
    }
}

#[test]
fn a_validation_error_names_where_the_key_was_last_set() {
    let root = Root::new();
    root.write(MAIN, "[loader]\nkind = \"command\"\n")
        .write(
            &format!("{USR}/10-vendor.toml"),
            "[loader]\ncommand = [\"kdumpctl\", \"reload\"]\n",
        )
        .write(
            &format!("{ETC}/90-local.toml"),
            "\n\n[loader]\ncommand = []\n",
        );
    let (file, line, key, message) = invalid(root.error());
    assert_eq!(
        (file.as_str(), line, key.as_str()),
        (
            "/etc/kdump-hotplugd/config.d/90-local.toml",
            4,
            "loader.command"
        )
    );
    assert!(
        message.starts_with(
            "must not be empty when loader.kind is \"command\" (/etc/kdump-hotplugd/config.toml:2)"
        ),
        "{message}"
    );
}

#[test]
fn invalid_utf8_names_the_line() {
    let root = Root::new();
    let path = root.host(MAIN);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(&path, b"[debounce]\n# caf\xe9\n").unwrap();
    assert_eq!(
        invalid(root.error()),
        (
            MAIN.to_owned(),
            2,
            "-".to_owned(),
            "not valid UTF-8 text".to_owned()
        )
    );
}

fn io(error: ConfigError) -> (String, String) {
    match error {
        ConfigError::Io { file, message } => (file, message),
        other => panic!("expected Io, got {other:?}"),
    }
}

#[test]
fn an_unreadable_main_file_is_an_io_error_naming_it() {
    let root = Root::new();
    // A directory in place of the file fails to read even as root, unlike a permission bit.
    std::fs::create_dir_all(root.host(MAIN)).unwrap();
    let (file, message) = io(root.error());
    assert_eq!(file, MAIN);
    assert!(message.contains("directory"), "{message}");
}

#[test]
fn a_dangling_drop_in_symlink_is_an_io_error_naming_it() {
    let root = Root::new();
    std::fs::create_dir_all(root.host(ETC)).unwrap();
    let link = root.host(&format!("{ETC}/50-gone.toml"));
    std::os::unix::fs::symlink(root.host("/nowhere.toml"), &link).unwrap();
    let (file, message) = io(root.error());
    assert_eq!(file, format!("{ETC}/50-gone.toml"));
    assert!(message.contains("No such file"), "{message}");
}

#[test]
fn a_drop_in_directory_that_is_a_file_is_an_io_error_naming_it() {
    let root = Root::new();
    root.write(RUN, "oops");
    let (file, _) = io(root.error());
    assert_eq!(file, RUN);
}

// ---- the shipped config/config.toml ----

fn shipped_config() -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/config.toml");
    std::fs::read_to_string(path).expect("config/config.toml")
}

/// Settings in the shipped file are commented out as `#key = value` (no space), prose as `# text`.
fn uncommented(text: &str) -> String {
    text.lines()
        .map(|line| match line.strip_prefix('#') {
            Some(rest) if !rest.is_empty() && !rest.starts_with([' ', '#']) => rest,
            _ => line,
        })
        .map(|line| format!("{line}\n"))
        .collect()
}

#[test]
fn shipped_config_as_is_gives_the_defaults() {
    let root = Root::new();
    root.write(MAIN, &shipped_config());
    let (settings, provenance) = config::load_with_provenance(&root.sysroot()).unwrap();
    assert_eq!(settings, Settings::default());
    assert!(provenance
        .iter()
        .all(|(_, origin)| *origin == Origin::Default));
}

#[test]
fn shipped_config_uncommented_gives_exactly_the_defaults_and_documents_every_key() {
    let root = Root::new();
    root.write(MAIN, &uncommented(&shipped_config()));
    let (settings, provenance) = config::load_with_provenance(&root.sysroot()).unwrap();
    assert_eq!(settings, Settings::default());
    let undocumented: Vec<&str> = provenance
        .iter()
        .filter(|(_, origin)| !matches!(origin, Origin::File { .. }))
        .map(|(key, _)| key)
        .collect();
    assert!(
        undocumented.is_empty(),
        "not in config/config.toml: {undocumented:?}"
    );
}

// ---- check-config rendering ----

#[test]
fn describe_shows_each_value_with_its_origin() {
    let root = Root::new();
    root.write(
        &format!("{ETC}/10-x.toml"),
        "[loader]\nkind = \"command\"\n",
    );
    let (settings, provenance) = config::load_with_provenance(&root.sysroot()).unwrap();
    let text = config::describe(&settings, &provenance);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(
        lines[0],
        "# Files applied, in order (a later file wins per key):"
    );
    assert_eq!(lines[1], "#   /etc/kdump-hotplugd/config.d/10-x.toml");
    let kind_line = lines
        .iter()
        .find(|line| line.starts_with("loader.kind = "))
        .expect("loader.kind listed");
    assert!(
        kind_line.ends_with("  # /etc/kdump-hotplugd/config.d/10-x.toml:2"),
        "{kind_line}"
    );
    let quiet_line = lines
        .iter()
        .find(|line| line.starts_with("debounce.quiet_window_ms = 1000 "))
        .expect("quiet window listed");
    assert!(quiet_line.ends_with("  # default"), "{quiet_line}");
    let command_line = lines
        .iter()
        .find(|line| line.starts_with("loader.command = [] "))
        .expect("command listed");
    assert!(
        command_line.ends_with("# default (empty: detect the distribution's tool)"),
        "{command_line}"
    );
    // One line per key after the two header lines.
    assert_eq!(lines.len(), 2 + provenance.iter().count());
}

#[test]
fn describe_output_is_a_config_that_reproduces_the_settings() {
    let root = Root::new();
    root.write(
        MAIN,
        "[loader]\nkernel = \"/boot/vmlinuz-crash\"\ncmdline = \"irqpoll \\\"quoted\\\"\"\n\
         command = [\"kdumpctl\", \"reload\"]\n[daemon]\ninitial_load = \"always\"\n",
    )
    .write(
        &format!("{RUN}/10-x.toml"),
        "[debounce]\nmax_delay_ms = 2500\n",
    );
    let (settings, provenance) = config::load_with_provenance(&root.sysroot()).unwrap();
    let rendered = config::describe(&settings, &provenance);

    let copy = Root::new();
    copy.write(MAIN, &rendered);
    assert_eq!(copy.load(), settings);
}

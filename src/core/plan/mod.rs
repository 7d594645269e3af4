//! The crash-kernel plan: which kdump service the host runs, and exactly what it would load now.
//!
//! Pure policy: [`plan`] takes [`Inputs`] (file contents and facts about paths, keyed by absolute path, plus the
//! running kernel release, Secure Boot, lockdown and the kexec-tools version) and returns a [`Plan`]. It does no
//! I/O. It asks for what it needs: every path it looked up that the inputs do not describe is listed in
//! [`Plan::wanted`], so a reader (`host::plan_inputs`) can fill those in and ask again, until nothing is wanted.
//!
//! Each distro's rules follow its tool's own code, cited per function in [`debian`], [`fedora`] and [`suse`];
//! [`daemon`] is the daemon's own derivation for hosts without one. Every part of the plan says where it came
//! from ([`Source`]). When a configuration cannot be evaluated, a kernel or initrd the tool would load is
//! missing, or the tool's record of its last load disagrees, the plan has an error [`Finding`] and its
//! [`Verdict`] delegates the reload to the distro's own tool rather than load a crash kernel the distro did not
//! ask for.

pub mod daemon;
pub mod debian;
pub mod fedora;
pub mod shell;
pub mod suse;

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use serde::Serialize;

pub use shell::{Origin, ShellError};

/// What is known about one path (symlinks followed, within the sysroot).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct PathFact {
    pub kind: PathKind,
    /// The link's own target text, when the path itself is a symlink (as `readlink` prints it).
    pub link: Option<String>,
    /// The file (after links) starts with the ELF magic.
    pub elf: bool,
    /// `access(W_OK)` succeeds (bash `-w`).
    pub writable: bool,
    /// A directory's entry names, sorted.
    pub entries: Vec<String>,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PathKind {
    #[default]
    Missing,
    File,
    Dir,
    Other,
}

/// Everything the plan is derived from. Paths are absolute host paths (`/etc/default/kdump-tools`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Inputs {
    /// Contents of the text files read (configuration, records, /proc/cmdline, /proc/cpuinfo, …).
    pub files: BTreeMap<String, String>,
    /// Facts about every path looked up. A path absent here is "not asked yet" (see [`Plan::wanted`]).
    pub paths: BTreeMap<String, PathFact>,
    /// `uname -r` of the running kernel.
    pub release: String,
    /// UEFI Secure Boot enforced: `SecureBoot-*` efivar byte 4 is 1 and `SetupMode-*` byte 4 is 0 (the rule of
    /// kdump-config `check_secure_boot` and kdump-lib.sh `is_secure_boot_enforced`).
    pub secure_boot: bool,
    /// `/sys/kernel/security/securelevel` reads 1 (kdump-config `check_securelevel`).
    pub securelevel: bool,
    /// The selected mode of `/sys/kernel/security/lockdown` (`none`, `integrity`, `confidentiality`), if present.
    pub lockdown: Option<String>,
    /// [`TOOL_KEXEC`], when it exists, with the version it carries.
    pub kexec: Option<KexecBinary>,
}

/// The kexec binary the distro tools run: kdump-config (`KEXEC=/sbin/kexec`), kdumpctl (`KEXEC=/sbin/kexec`)
/// and openSUSE's load.sh (`/sbin/kexec`). On a merged-/usr host it is the same file as /usr/sbin/kexec.
pub const TOOL_KEXEC: &str = "/sbin/kexec";

/// A kexec binary and the kexec-tools version found in it ([`crate::core::parse::kexec_version`]).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct KexecBinary {
    /// Host path (`/sbin/kexec`).
    pub path: String,
    /// Upstream version (`2.0.25`); `None` when the file holds no `kexec-tools` version string.
    pub version: Option<String>,
}

impl Inputs {
    /// Describes `path` as a regular file with these contents (for tests and readers).
    pub fn set_file(&mut self, path: &str, contents: &str) {
        self.files.insert(path.to_owned(), contents.to_owned());
        self.paths.insert(
            path.to_owned(),
            PathFact {
                kind: PathKind::File,
                ..PathFact::default()
            },
        );
    }
}

/// The inputs as the rules see them: every lookup of an undescribed path is remembered.
pub struct Ask<'a> {
    pub inputs: &'a Inputs,
    wanted: RefCell<BTreeSet<String>>,
}

impl<'a> Ask<'a> {
    pub fn new(inputs: &'a Inputs) -> Self {
        Ask {
            inputs,
            wanted: RefCell::new(BTreeSet::new()),
        }
    }

    pub fn fact(&self, path: &str) -> PathFact {
        match self.inputs.paths.get(path) {
            Some(fact) => fact.clone(),
            None => {
                self.wanted.borrow_mut().insert(path.to_owned());
                PathFact::default()
            }
        }
    }

    pub fn kind(&self, path: &str) -> PathKind {
        self.fact(path).kind
    }

    /// bash/dash `-e`.
    pub fn exists(&self, path: &str) -> bool {
        !path.is_empty() && self.kind(path) != PathKind::Missing
    }

    /// `-f`.
    pub fn is_file(&self, path: &str) -> bool {
        !path.is_empty() && self.kind(path) == PathKind::File
    }

    /// The contents of a text file: `Ok(None)` when it does not exist, `Err` when it exists but was not read
    /// (not text, too large, unreadable).
    pub fn read(&self, path: &str) -> Result<Option<&'a str>, String> {
        match self.kind(path) {
            PathKind::Missing => Ok(None),
            PathKind::File => match self.inputs.files.get(path) {
                Some(text) => Ok(Some(text.as_str())),
                None => Err(format!("{path} exists but could not be read as text")),
            },
            PathKind::Dir | PathKind::Other => Err(format!("{path} is not a regular file")),
        }
    }

    fn into_wanted(self) -> Vec<String> {
        self.wanted.into_inner().into_iter().collect()
    }
}

/// The kdump service whose plan this is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Service {
    /// Debian/Ubuntu kdump-tools (`kdump-config`).
    KdumpTools,
    /// Fedora/RHEL/CentOS kdump-utils (`kdumpctl`), formerly part of kexec-tools.
    KdumpUtils,
    /// openSUSE/SLE kdump 2.x (`/usr/lib/kdump/load.sh`).
    SuseKdump,
    /// SUSE kdump 1.x (the C++ `kdumptool load`): detected, not modelled.
    SuseKdumpLegacy,
    /// No kdump service: the daemon's own plan.
    None,
}

impl Service {
    pub fn name(self) -> &'static str {
        match self {
            Service::KdumpTools => "Debian/Ubuntu kdump-tools",
            Service::KdumpUtils => "Fedora/RHEL kdump-utils",
            Service::SuseKdump => "SUSE kdump",
            Service::SuseKdumpLegacy => "SUSE kdump 1.x (kdumptool)",
            Service::None => "none (kdump-hotplugd's own plan)",
        }
    }

    /// The command that makes the distro's tool load its crash kernel again.
    pub fn reload_command(self) -> Option<&'static str> {
        match self {
            Service::KdumpTools => Some("kdump-config reload"),
            Service::KdumpUtils => Some("kdumpctl reload"),
            // load.sh loads over the current crash kernel (kexec -p replaces it); load-once.sh, which SUSE's
            // own udev rule runs, serialises concurrent callers around it.
            Service::SuseKdump => Some("/usr/lib/kdump/load-once.sh"),
            Service::SuseKdumpLegacy => Some("kdumptool load"),
            Service::None => None,
        }
    }
}

/// Where a part of the plan came from.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Source {
    /// A variable assigned in a configuration file.
    Assignment {
        file: String,
        line: u32,
        variable: String,
    },
    /// The tool's own default or rule (its function named).
    Tool { tool: String, rule: String },
    /// The running kernel's /proc/cmdline, edited by the rule named.
    ProcCmdline { rule: String },
    /// The tool's record of what it last loaded agrees.
    Record { file: String, line: u32 },
    /// A fact about the host (Secure Boot, kexec-tools version, a writable directory…).
    Host { fact: String },
    /// kdump-hotplugd's own derivation.
    Daemon { rule: String },
}

impl Source {
    /// The source of a shell variable's value.
    pub fn of_var(variable: &str, origin: &Origin) -> Source {
        match origin {
            Origin::File { file, line } => Source::Assignment {
                file: file.clone(),
                line: *line,
                variable: variable.to_owned(),
            },
            Origin::Tool { tool, rule } => Source::Tool {
                tool: tool.clone(),
                rule: format!("{variable}: {rule}"),
            },
        }
    }

    pub fn tool(tool: &str, rule: impl Into<String>) -> Source {
        Source::Tool {
            tool: tool.to_owned(),
            rule: rule.into(),
        }
    }

    pub fn host(fact: impl Into<String>) -> Source {
        Source::Host { fact: fact.into() }
    }
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::Assignment {
                file,
                line,
                variable,
            } => write!(f, "{file}:{line} {variable}"),
            Source::Tool { tool, rule } => write!(f, "{tool}: {rule}"),
            Source::ProcCmdline { rule } => write!(f, "/proc/cmdline, {rule}"),
            Source::Record { file, line } => write!(f, "agrees with the record {file}:{line}"),
            Source::Host { fact } => write!(f, "host: {fact}"),
            Source::Daemon { rule } => write!(f, "kdump-hotplugd: {rule}"),
        }
    }
}

/// One part of the plan and where it came from.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Part<T> {
    pub value: T,
    pub from: Vec<Source>,
}

impl<T> Part<T> {
    pub fn new(value: T, from: Vec<Source>) -> Self {
        Part { value, from }
    }
}

/// The system call the load uses, as kexec-tools decides it (kexec/kexec.c `main`: the last of `-s`, `-c`, `-a`
/// wins; without one, kexec-tools 2.0.27 and later behave as `-a` ("kexec: make -a the default"), earlier ones
/// as `-c`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Syscall {
    /// `kexec_load`: kexec-tools prepares the segments, the kernel copies them.
    KexecLoad,
    /// `kexec_file_load`: the kernel reads (and may verify) kernel and initrd itself.
    KexecFileLoad,
    /// `kexec_file_load`, and `kexec_load` if the kernel refuses it as unsupported (`-a`).
    KexecFileLoadElseKexecLoad,
    /// Depends on the kexec-tools version, which is not known.
    Unknown,
}

impl fmt::Display for Syscall {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Syscall::KexecLoad => "kexec_load",
            Syscall::KexecFileLoad => "kexec_file_load",
            Syscall::KexecFileLoadElseKexecLoad => "kexec_file_load, falling back to kexec_load",
            Syscall::Unknown => {
                "unknown (kexec_load before kexec-tools 2.0.27, kexec_file_load from it)"
            }
        })
    }
}

/// Which syscall kexec-tools uses for `options` (kexec-tools' options only, in order).
pub fn syscall_for(options: &[String], kexec: Option<&KexecBinary>) -> (Syscall, Source) {
    let chosen = options.iter().rev().find_map(|o| match o.as_str() {
        "-s" | "--kexec-file-syscall" => Some((Syscall::KexecFileLoad, o)),
        "-c" | "--kexec-syscall" => Some((Syscall::KexecLoad, o)),
        "-a" | "--kexec-syscall-auto" => Some((Syscall::KexecFileLoadElseKexecLoad, o)),
        _ => None,
    });
    if let Some((syscall, option)) = chosen {
        return (
            syscall,
            Source::tool(
                "kexec-tools",
                format!("option {option} (the last of -s/-c/-a wins)"),
            ),
        );
    }
    let Some(binary) = kexec else {
        return (
            Syscall::Unknown,
            Source::host(format!(
                "kexec-tools version unknown: no {TOOL_KEXEC}, no -s/-c/-a"
            )),
        );
    };
    let path = &binary.path;
    match binary.version.as_deref() {
        Some(version) if version_at_least_2_0_27(version) => (
            Syscall::KexecFileLoadElseKexecLoad,
            Source::host(format!(
                "{path} is kexec-tools {version} (2.0.27 and later default to -a)"
            )),
        ),
        Some(version) => (
            Syscall::KexecLoad,
            Source::host(format!(
                "{path} is kexec-tools {version} (before 2.0.27 the default is kexec_load)"
            )),
        ),
        None => (
            Syscall::Unknown,
            Source::host(format!(
                "kexec-tools version unknown: {path} holds no version string, no -s/-c/-a"
            )),
        ),
    }
}

fn version_at_least_2_0_27(version: &str) -> bool {
    crate::core::parse::kexec_version::at_least(version, [2, 0, 27])
}

/// The crash kernel, initrd, command line and kexec options the service would load, each with its sources.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Parts {
    pub kernel: Part<String>,
    pub initrd: Part<Option<String>>,
    pub cmdline: Part<String>,
    /// kexec-tools options other than the command line, initrd and kernel (`-p` included), in order.
    pub kexec_options: Part<Vec<String>>,
    pub syscall: Part<Syscall>,
    /// The kexec command as the tool builds it (as `kdump-config test` prints it and its record holds it, as
    /// load.sh evals it, as kdumpctl logs it); `None` for the daemon's own plan.
    pub command: Option<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    Warning,
    /// The plan cannot stand in for the tool: the verdict delegates.
    Error,
}

/// Something the plan found wrong or worth saying.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Finding {
    pub severity: Severity,
    /// A stable identifier (`unevaluable`, `kernel-missing`, `record-differs`, …).
    pub code: &'static str,
    pub file: Option<String>,
    pub line: Option<u32>,
    pub variable: Option<String>,
    pub message: String,
}

impl Finding {
    pub fn error(code: &'static str, message: impl Into<String>) -> Self {
        Finding {
            severity: Severity::Error,
            code,
            file: None,
            line: None,
            variable: None,
            message: message.into(),
        }
    }

    pub fn warning(code: &'static str, message: impl Into<String>) -> Self {
        Finding {
            severity: Severity::Warning,
            ..Finding::error(code, message)
        }
    }

    pub fn at(mut self, file: &str, line: Option<u32>, variable: Option<&str>) -> Self {
        self.file = Some(file.to_owned());
        self.line = line;
        self.variable = variable.map(str::to_owned);
        self
    }

    /// Located at the assignment of `variable` when it came from a file.
    pub fn at_var(self, variable: &str, origin: Option<&Origin>) -> Self {
        match origin {
            Some(Origin::File { file, line }) => self.at(file, Some(*line), Some(variable)),
            _ => Finding {
                variable: Some(variable.to_owned()),
                ..self
            },
        }
    }

    pub fn unevaluable(e: &ShellError) -> Self {
        Finding::error("unevaluable", e.problem.clone()).at(
            &e.file,
            Some(e.line),
            e.variable.as_deref(),
        )
    }
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let severity = match self.severity {
            Severity::Warning => "warning",
            Severity::Error => "error",
        };
        write!(f, "{severity}: ")?;
        if let Some(file) = &self.file {
            write!(f, "{file}")?;
            if let Some(line) = self.line {
                write!(f, ":{line}")?;
            }
            write!(f, ": ")?;
        }
        if let Some(variable) = &self.variable {
            write!(f, "{variable}: ")?;
        }
        write!(f, "{}", self.message)
    }
}

/// What the daemon should do with the plan.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Verdict {
    /// The parts are what the service would load: the daemon may load them itself.
    Load,
    /// The daemon must not stand in for the tool: run the tool's own reload instead.
    Delegate { tool: String, command: String },
    /// No distro tool and no plan: nothing can be loaded.
    Refuse,
}

/// The plan.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Plan {
    pub service: Service,
    /// `None` when the configuration could not be evaluated far enough to say.
    pub parts: Option<Parts>,
    pub findings: Vec<Finding>,
    pub verdict: Verdict,
    /// Paths looked up that the inputs did not describe (a reader fills them in and plans again).
    #[serde(skip)]
    pub wanted: Vec<String>,
}

/// Detects the kdump service from the files it installs (its tool's path).
pub fn detect(ask: &Ask) -> Service {
    if ask.is_file("/usr/sbin/kdump-config") {
        Service::KdumpTools
    } else if ask.is_file("/usr/bin/kdumpctl") || ask.is_file("/usr/sbin/kdumpctl") {
        Service::KdumpUtils
    } else if ask.is_file("/usr/lib/kdump/load.sh") {
        Service::SuseKdump
    } else if ask.is_file("/usr/sbin/kdumptool") {
        Service::SuseKdumpLegacy
    } else {
        Service::None
    }
}

/// The plan for the host the inputs describe.
pub fn plan(inputs: &Inputs) -> Plan {
    let ask = Ask::new(inputs);
    let service = detect(&ask);
    let (parts, mut findings) = match service {
        Service::KdumpTools => debian::plan(&ask),
        Service::KdumpUtils => fedora::plan(&ask),
        Service::SuseKdump => suse::plan(&ask),
        Service::SuseKdumpLegacy => (
            None,
            vec![Finding::error(
                "unsupported-version",
                "SUSE kdump 1.x (the C++ kdumptool) is not modelled: its load is left to kdumptool",
            )
            .at("/usr/sbin/kdumptool", None, None)],
        ),
        Service::None => daemon::plan(&ask),
    };
    if let (Some(parts), Some(mode)) = (&parts, inputs.lockdown.as_deref()) {
        if mode != "none" && parts.syscall.value == Syscall::KexecLoad {
            findings.push(Finding::warning(
                "lockdown-kexec-load",
                format!(
                    "the kernel is locked down ([{mode}]) and refuses kexec_load: this load fails unless it \
                     uses kexec_file_load (kexec -s)"
                ),
            ));
        }
    }
    let failed = parts.is_none() || findings.iter().any(|f| f.severity == Severity::Error);
    let verdict = match (failed, service.reload_command()) {
        (false, _) => Verdict::Load,
        (true, Some(command)) => Verdict::Delegate {
            tool: service.name().to_owned(),
            command: command.to_owned(),
        },
        (true, None) => Verdict::Refuse,
    };
    Plan {
        service,
        parts,
        findings,
        verdict,
        wanted: ask.into_wanted(),
    }
}

/// A kexec-tools command line taken apart: what the tools build, and what their records hold.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct KexecCommand {
    pub options: Vec<String>,
    pub cmdline: Option<String>,
    pub initrd: Option<String>,
    pub kernel: Option<String>,
    /// Positional words after the kernel (kexec ignores them; their presence means the line was mis-split).
    pub extra: Vec<String>,
}

/// Takes apart `argv` (`argv[0]` is kexec itself): `--command-line=`/`--append=` and `--initrd=`/`--ramdisk=`
/// (kexec/arch/i386 `kexec-bzImage.c` options, also in their two-word form), the first positional word as the
/// kernel, every other option word as an option.
pub fn parse_kexec_argv(argv: &[String]) -> KexecCommand {
    let mut out = KexecCommand::default();
    let mut words = argv.iter().skip(1);
    while let Some(word) = words.next() {
        let (key, inline) = match word.split_once('=') {
            Some((k, v)) if k.starts_with("--") => (k, Some(v.to_owned())),
            _ => (word.as_str(), None),
        };
        match key {
            "--command-line" | "--append" | "--initrd" | "--ramdisk" => {
                let value = inline.or_else(|| words.next().cloned()).unwrap_or_default();
                if matches!(key, "--command-line" | "--append") {
                    out.cmdline = Some(value);
                } else {
                    out.initrd = Some(value);
                }
            }
            _ if word.starts_with('-') => out.options.push(word.clone()),
            _ if out.kernel.is_none() => out.kernel = Some(word.clone()),
            _ => out.extra.push(word.clone()),
        }
    }
    out
}

/// A shell-built kexec command as the tool's `eval $CMD` runs it (fields joined, then parsed as shell words).
pub fn eval_kexec_command(text: &str) -> Result<KexecCommand, String> {
    shell::words(&shell::field_join(text)).map(|argv| parse_kexec_argv(&argv))
}

/// Reads a configuration file into `env` as the tool sources it: an absent file sets nothing.
pub(crate) fn source_optional(
    ask: &Ask,
    env: &mut shell::Env,
    path: &str,
) -> Result<bool, Finding> {
    match ask.read(path) {
        Ok(None) => Ok(false),
        Ok(Some(text)) => shell::source(env, path, text)
            .map(|()| true)
            .map_err(|e| Finding::unevaluable(&e)),
        Err(problem) => Err(Finding::error("unreadable", problem).at(path, None, None)),
    }
}

/// The command line as one string: the tools' `$(< /proc/cmdline)` / `$(cat …)` drop the trailing newlines.
pub(crate) fn proc_cmdline(ask: &Ask) -> Result<String, Finding> {
    match ask.read("/proc/cmdline") {
        Ok(Some(text)) => Ok(text.trim_end_matches('\n').to_owned()),
        Ok(None) => Err(Finding::error("unreadable", "/proc/cmdline is missing").at(
            "/proc/cmdline",
            None,
            None,
        )),
        Err(problem) => Err(Finding::error("unreadable", problem).at("/proc/cmdline", None, None)),
    }
}

impl fmt::Display for Plan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "kdump service: {}", self.service.name())?;
        match &self.parts {
            None => writeln!(f, "plan: none (see the findings)")?,
            Some(parts) => {
                fn sources(f: &mut fmt::Formatter<'_>, from: &[Source]) -> fmt::Result {
                    for source in from {
                        writeln!(f, "    from {source}")?;
                    }
                    Ok(())
                }
                writeln!(f, "kernel:   {}", parts.kernel.value)?;
                sources(f, &parts.kernel.from)?;
                writeln!(
                    f,
                    "initrd:   {}",
                    parts.initrd.value.as_deref().unwrap_or("(none)")
                )?;
                sources(f, &parts.initrd.from)?;
                writeln!(f, "cmdline:  {}", parts.cmdline.value)?;
                sources(f, &parts.cmdline.from)?;
                writeln!(f, "options:  {}", parts.kexec_options.value.join(" "))?;
                sources(f, &parts.kexec_options.from)?;
                writeln!(f, "syscall:  {}", parts.syscall.value)?;
                sources(f, &parts.syscall.from)?;
                if let Some(command) = &parts.command {
                    writeln!(f, "command:  {command}")?;
                }
            }
        }
        for finding in &self.findings {
            writeln!(f, "{finding}")?;
        }
        match &self.verdict {
            Verdict::Load => writeln!(f, "verdict: load this plan"),
            Verdict::Delegate { tool, command } => {
                writeln!(f, "verdict: delegate the reload to {tool}: `{command}`")
            }
            Verdict::Refuse => writeln!(f, "verdict: nothing to load"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn syscall_follows_kexec_tools() {
        let opts = |o: &[&str]| o.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let kexec = |version: Option<&str>| KexecBinary {
            path: TOOL_KEXEC.to_owned(),
            version: version.map(str::to_owned),
        };
        assert_eq!(
            syscall_for(&opts(&["-p"]), Some(&kexec(Some("2.0.25")))),
            (
                Syscall::KexecLoad,
                Source::host(
                    "/sbin/kexec is kexec-tools 2.0.25 (before 2.0.27 the default is kexec_load)"
                )
            )
        );
        assert_eq!(
            syscall_for(&opts(&["-p"]), Some(&kexec(Some("2.0.29.git")))).0,
            Syscall::KexecFileLoadElseKexecLoad
        );
        assert_eq!(
            syscall_for(&opts(&["-p"]), Some(&kexec(None))),
            (
                Syscall::Unknown,
                Source::host(
                    "kexec-tools version unknown: /sbin/kexec holds no version string, no -s/-c/-a"
                )
            )
        );
        assert_eq!(syscall_for(&opts(&["-p"]), None).0, Syscall::Unknown);
        assert_eq!(
            syscall_for(&opts(&["-s", "-p", "-c"]), None).0,
            Syscall::KexecLoad
        );
        assert_eq!(
            syscall_for(&opts(&["-c", "-s"]), None).0,
            Syscall::KexecFileLoad
        );
        assert_eq!(
            syscall_for(&opts(&["-s", "-a"]), Some(&kexec(Some("2.0.25")))).0,
            Syscall::KexecFileLoadElseKexecLoad
        );
    }

    #[test]
    fn kexec_commands_come_apart() {
        let cmd = eval_kexec_command(
            r#"/sbin/kexec -p  --command-line="root=/dev/vda  rw reset_devices" --initrd=/var/lib/kdump/initrd.img /var/lib/kdump/vmlinuz"#,
        )
        .unwrap();
        assert_eq!(
            cmd,
            KexecCommand {
                options: vec!["-p".into()],
                cmdline: Some("root=/dev/vda rw reset_devices".into()),
                initrd: Some("/var/lib/kdump/initrd.img".into()),
                kernel: Some("/var/lib/kdump/vmlinuz".into()),
                extra: vec![],
            }
        );
    }
}

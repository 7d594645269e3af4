//! Debian/Ubuntu kdump-tools: what `kdump-config load` (and `reload`, which the udev rule's `try-reload` runs)
//! would load now.
//!
//! Follows `/usr/sbin/kdump-config` of kdump-tools 1.8.1 (Debian 12), read from the package: the global setup
//! (`. /etc/default/kdump-tools`, then `KDUMP_COREDIR=${KDUMP_COREDIR:=/var/crash}` and the
//! `KDUMP_CMDLINE_APPEND` default), `check_kdump_support`, `kdump_create_symlinks`/`manage_symlinks`,
//! `locate_kdump_kernel` and `kdump_load`, which builds `KEXEC_CMD` as a string, runs it with `eval $KEXEC_CMD`,
//! and records it with `echo "$KEXEC_CMD" > $KDUMP_COREDIR/kexec_cmd`.

use super::shell::Env;
use super::{
    eval_kexec_command, proc_cmdline, source_optional, syscall_for, Ask, Finding, KexecCommand,
    Part, Parts, PathKind, Source,
};
use crate::core::cmdline;

const TOOL: &str = "kdump-config";
pub const DEFAULTS: &str = "/etc/default/kdump-tools";
const KDUMP_DIR: &str = "/var/lib/kdump";
/// `kdump_load`'s sed: `s/(^| )(crashkernel|hugepages|hugepagesz|abm)=[^ ]*//g`.
pub const CMDLINE_REMOVE: &[&str] = &["crashkernel", "hugepages", "hugepagesz", "abm"];
pub const CMDLINE_APPEND_DEFAULT: &str =
    "reset_devices systemd.unit=kdump-tools-dump.service nr_cpus=1 irqpoll usbcore.nousb";

/// dash's `echo` (kdump-config is `#!/bin/sh`): it interprets backslash escapes, so `\\` prints as `\`. Other
/// escapes are refused: a command line holding them is not evaluated.
fn dash_echo(text: &str) -> Result<String, String> {
    let mut out = String::new();
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('\\') => out.push('\\'),
            Some(other) => return Err(format!("dash's echo would interpret the escape \\{other}")),
            None => out.push('\\'),
        }
    }
    Ok(out)
}

fn var_source(env: &Env, name: &str) -> Option<Source> {
    env.get(name).map(|v| Source::of_var(name, &v.origin))
}

/// The plan: parts (unless the configuration could not be evaluated) and findings.
pub fn plan(ask: &Ask) -> (Option<Parts>, Vec<Finding>) {
    let mut findings = Vec::new();
    let inputs = ask.inputs;
    let release = inputs.release.as_str();

    // Global setup: the variables kdump-config sets before sourcing, then the file, then its `:=` defaults.
    let mut env = Env::new();
    env.set_by_tool(
        "PATH",
        "/bin:/usr/bin:/sbin:/usr/sbin",
        TOOL,
        "set before reading the defaults file",
    );
    env.set_by_tool(
        "NAME",
        "kdump-config",
        TOOL,
        "set before reading the defaults file",
    );
    if let Err(finding) = source_optional(ask, &mut env, DEFAULTS) {
        return (None, vec![finding]);
    }
    env.default_if_empty(
        "KDUMP_COREDIR",
        "/var/crash",
        TOOL,
        "${KDUMP_COREDIR:=/var/crash}",
    );
    env.default_if_empty(
        "KDUMP_CMDLINE_APPEND",
        CMDLINE_APPEND_DEFAULT,
        TOOL,
        "${KDUMP_CMDLINE_APPEND:=…} built-in default",
    );

    // check_kdump_support: each of these makes `load` exit 1.
    let use_kdump = env.value("USE_KDUMP");
    if use_kdump.is_empty() || use_kdump == "0" {
        findings.push(
            Finding::error(
                "disabled",
                "USE_KDUMP is not set or zero: kdump-config does not load a crash kernel",
            )
            .at_var("USE_KDUMP", env.get("USE_KDUMP").map(|v| &v.origin))
            .with_file_default(DEFAULTS),
        );
    }
    if !ask.exists("/sys/kernel/kexec_crash_loaded") {
        findings.push(Finding::error(
            "no-kdump-support",
            "/sys/kernel/kexec_crash_loaded is missing: kdump-config says kdump is not supported by this kernel",
        ));
    }
    let running = match proc_cmdline(ask) {
        Ok(line) => line,
        Err(finding) => return (None, vec![finding]),
    };
    if !running.to_ascii_lowercase().contains("crashkernel=") {
        findings.push(
            Finding::error(
                "no-crashkernel",
                "no crashkernel= parameter in the kernel command line",
            )
            .at("/proc/cmdline", None, None),
        );
    }

    // locate_kdump_kernel.
    let mut kernel = env.value("KDUMP_KERNEL").to_owned();
    let mut initrd = env.value("KDUMP_INITRD").to_owned();
    let (kernel_from, initrd_from);
    if !kernel.is_empty() {
        kernel_from = var_source(&env, "KDUMP_KERNEL");
        initrd_from = var_source(&env, "KDUMP_INITRD");
        if !ask.exists(&kernel) {
            findings.push(
                Finding::error(
                    "kernel-missing",
                    format!("KDUMP_KERNEL does not exist: {kernel}"),
                )
                .at_var("KDUMP_KERNEL", env.get("KDUMP_KERNEL").map(|v| &v.origin)),
            );
        } else if !initrd.is_empty() && !ask.exists(&initrd) {
            findings.push(
                Finding::error(
                    "initrd-missing",
                    format!("KDUMP_INITRD does not exist: {initrd}"),
                )
                .at_var("KDUMP_INITRD", env.get("KDUMP_INITRD").map(|v| &v.origin)),
            );
        }
    } else {
        let config = format!("/boot/config-{release}");
        let relocatable = match ask.read(&config) {
            Ok(Some(text)) => text.contains("CONFIG_RELOCATABLE=y"),
            _ => false,
        };
        if !relocatable {
            findings.push(Finding::error(
                "kernel-missing",
                format!(
                    "KDUMP_KERNEL is not set and {config} does not say CONFIG_RELOCATABLE=y: kdump-config finds \
                     no kdump kernel"
                ),
            ));
            return (None, findings);
        }
        let rule = format!("locate_kdump_kernel: the running kernel {release} is relocatable");
        kernel = [
            format!("/boot/vmlinuz-{release}"),
            format!("/boot/vmlinux-{release}"),
        ]
        .into_iter()
        .find(|p| ask.is_file(p))
        .unwrap_or_default();
        if kernel.is_empty() {
            findings.push(Finding::error(
                "kernel-missing",
                format!("neither /boot/vmlinuz-{release} nor /boot/vmlinux-{release} exists"),
            ));
            return (None, findings);
        }
        let candidate = format!("/boot/initrd.img-{release}");
        initrd = if ask.is_file(&candidate) {
            candidate
        } else {
            String::new()
        };
        kernel_from = Some(Source::tool(TOOL, rule.clone()));
        initrd_from = Some(Source::tool(TOOL, rule));
    }

    // kdump_create_symlinks (run by `load` once the old crash kernel is unloaded) points
    // /var/lib/kdump/vmlinuz at the running kernel and initrd.img at its kdump initrd, building that first.
    // A plan read from stale links would load another kernel than kdump-config will.
    if ask.kind(KDUMP_DIR) == PathKind::Dir {
        let vmlinuz = format!("{KDUMP_DIR}/vmlinuz");
        let initrd_link = format!("{KDUMP_DIR}/initrd.img");
        let want_kernel = [
            format!("/boot/vmlinuz-{release}"),
            format!("/boot/vmlinux-{release}"),
        ];
        let want_initrd = format!("{KDUMP_DIR}/initrd.img-{release}");
        if kernel == vmlinuz
            && !want_kernel
                .iter()
                .any(|w| ask.fact(&vmlinuz).link.as_deref() == Some(w))
        {
            findings.push(
                Finding::error(
                    "symlink-stale",
                    format!(
                        "{vmlinuz} does not link to {} of the running kernel: kdump-config load re-links it \
                         (kdump_create_symlinks)",
                        want_kernel[0]
                    ),
                )
                .at(&vmlinuz, None, None),
            );
        }
        if initrd == initrd_link {
            if !ask.is_file(&want_initrd) {
                findings.push(
                    Finding::error(
                        "initrd-missing",
                        format!(
                            "{want_initrd} does not exist: kdump-config load builds it (kdump_create_symlinks \
                             runs /etc/kernel/postinst.d/kdump-tools)"
                        ),
                    )
                    .at(&want_initrd, None, None),
                );
            } else if ask.fact(&initrd_link).link.as_deref() != Some(want_initrd.as_str()) {
                findings.push(
                    Finding::error(
                        "symlink-stale",
                        format!(
                            "{initrd_link} does not link to {want_initrd}: kdump-config load re-links it \
                             (kdump_create_symlinks)"
                        ),
                    )
                    .at(&initrd_link, None, None),
                );
            }
        }
    }

    // kdump_load: KEXEC_CMD, as a string.
    let mut command = String::from("/sbin/kexec -p");
    let mut option_sources = vec![Source::tool(TOOL, "kdump_load: -p (load the crash kernel)")];
    if inputs.secure_boot || inputs.securelevel {
        command.push_str(" -s");
        option_sources.push(Source::host(if inputs.secure_boot {
            "Secure Boot enforced: kdump_load adds -s (check_secure_boot)"
        } else {
            "securelevel 1: kdump_load adds -s (check_securelevel)"
        }));
    }
    // `file "$KDUMP_KERNEL" | grep ELF`: file(1) does not follow a symlink, and its output starts with the path.
    let fact = ask.fact(&kernel);
    let file_output_has_elf = kernel.contains("ELF")
        || fact.link.as_deref().is_some_and(|l| l.contains("ELF"))
        || (fact.link.is_none() && fact.elf);
    if file_output_has_elf {
        command.push_str(" --args-linux");
        option_sources.push(Source::tool(
            TOOL,
            "kdump_load: --args-linux for an ELF kernel image",
        ));
    }
    let kexec_args = env.value("KDUMP_KEXEC_ARGS").to_owned();
    if !kexec_args.is_empty() {
        command.push(' ');
        command.push_str(&kexec_args);
        option_sources.extend(var_source(&env, "KDUMP_KEXEC_ARGS"));
    }
    let mut cmdline_from = Vec::new();
    let mut kdump_cmdline = env.value("KDUMP_CMDLINE").to_owned();
    if kdump_cmdline.is_empty() {
        // sed -re 's/…//g;s/"/\\\\"/': every line edited, the first quote of each escaped for the eval.
        kdump_cmdline = running
            .split('\n')
            .map(|line| cmdline::sed_remove(line, CMDLINE_REMOVE).replacen('"', "\\\\\"", 1))
            .collect::<Vec<_>>()
            .join("\n");
        cmdline_from.push(Source::ProcCmdline {
            rule: "kdump_load removes crashkernel= hugepages= hugepagesz= abm= (sed)".into(),
        });
    } else {
        cmdline_from.extend(var_source(&env, "KDUMP_CMDLINE"));
    }
    cmdline_from.extend(var_source(&env, "KDUMP_CMDLINE_APPEND"));
    let full_cmdline = format!("{kdump_cmdline} {}", env.value("KDUMP_CMDLINE_APPEND"));
    command.push_str(&format!(" --command-line=\"{full_cmdline}\""));
    if ask.exists(&initrd) {
        command.push_str(&format!(" --initrd={initrd}"));
    }
    command.push(' ');
    command.push_str(&kernel);

    // What `test` prints and the record holds (dash's echo), and what `eval $KEXEC_CMD` really runs.
    let printed = match dash_echo(&command) {
        Ok(p) => p,
        Err(problem) => {
            findings.push(Finding::error(
                "unevaluable",
                format!("kdump-config's kexec command: {problem}"),
            ));
            return (None, findings);
        }
    };
    // `eval $KEXEC_CMD` is what really runs. The printed form is what `test` shows and the record holds; when
    // /proc/cmdline has a double quote the two part ways (the sed escapes only the first quote, for an eval
    // that then ends the string there).
    let evaluated = match eval_kexec_command(&command) {
        Ok(e) => e,
        Err(problem) => {
            findings.push(
                Finding::error(
                    "tool-misquotes",
                    format!(
                        "kdump-config's own `eval` of its kexec command fails ({problem}): it cannot load this \
                         configuration: {printed}"
                    ),
                )
                .at("/proc/cmdline", Some(1), None),
            );
            return (None, findings);
        }
    };
    let intended = eval_kexec_command(&printed).ok();
    if intended.as_ref() != Some(&evaluated) || !evaluated.extra.is_empty() {
        findings.push(
            Finding::error(
                "tool-misquotes",
                format!(
                    "kdump-config escapes only the first double quote of /proc/cmdline, so its own `eval` splits \
                     the command there: kexec gets --command-line={:?}, kernel {:?} and the extra words {:?}",
                    evaluated.cmdline.clone().unwrap_or_default(),
                    evaluated.kernel.clone().unwrap_or_default(),
                    evaluated.extra
                ),
            )
            .at("/proc/cmdline", Some(1), None),
        );
    }
    if let Some(k) = &evaluated.kernel {
        if *k != kernel && !ask.exists(k) {
            findings.push(Finding::error(
                "kernel-missing",
                format!("{k} does not exist"),
            ));
        }
    }

    let KexecCommand {
        options,
        cmdline: cmdline_value,
        initrd: initrd_value,
        kernel: kernel_value,
        ..
    } = evaluated.clone();
    let (syscall, syscall_from) = syscall_for(&options, inputs.kexec.as_ref());
    let mut parts = Parts {
        kernel: Part::new(
            kernel_value.unwrap_or_default(),
            kernel_from.into_iter().collect(),
        ),
        initrd: Part::new(initrd_value, initrd_from.into_iter().collect()),
        cmdline: Part::new(cmdline_value.unwrap_or_default(), cmdline_from),
        kexec_options: Part::new(options, option_sources),
        syscall: Part::new(syscall, vec![syscall_from]),
        command: Some(printed.clone()),
    };

    // The record of the last load: `echo "$KEXEC_CMD" > $KDUMP_COREDIR/kexec_cmd`.
    let record = format!("{}/kexec_cmd", env.value("KDUMP_COREDIR"));
    match ask.read(&record) {
        Ok(None) => {}
        Err(problem) => {
            findings.push(Finding::warning("record-unreadable", problem).at(&record, None, None))
        }
        Ok(Some(text)) => compare_record(&record, text, &evaluated, &mut parts, &mut findings),
    }
    (Some(parts), findings)
}

trait WithFileDefault {
    fn with_file_default(self, file: &str) -> Self;
}

impl WithFileDefault for Finding {
    /// A finding about a variable the file does not set is still about that file.
    fn with_file_default(mut self, file: &str) -> Self {
        if self.file.is_none() {
            self.file = Some(file.to_owned());
        }
        self
    }
}

/// Compares the plan with the record, part by part; an agreeing part gains the record as a source.
fn compare_record(
    record: &str,
    text: &str,
    plan: &KexecCommand,
    parts: &mut Parts,
    findings: &mut Vec<Finding>,
) {
    let line = text.lines().next().unwrap_or("");
    let recorded = match eval_kexec_command(line) {
        Ok(r) => r,
        Err(problem) => {
            findings.push(
                Finding::error(
                    "record-unparsable",
                    format!("cannot parse the recorded command: {problem}"),
                )
                .at(record, Some(1), None),
            );
            return;
        }
    };
    let source = Source::Record {
        file: record.to_owned(),
        line: 1,
    };
    let mut differs = |part: &str, planned: String, recorded: String, from: &mut Vec<Source>| {
        if planned == recorded {
            from.push(source.clone());
        } else {
            findings.push(
                Finding::error(
                    "record-differs",
                    format!(
                        "the {part} kdump-config last loaded differs from its configuration now: recorded \
                         {recorded:?}, planned {planned:?}"
                    ),
                )
                .at(record, Some(1), None),
            );
        }
    };
    differs(
        "kernel",
        plan.kernel.clone().unwrap_or_default(),
        recorded.kernel.clone().unwrap_or_default(),
        &mut parts.kernel.from,
    );
    differs(
        "initrd",
        plan.initrd.clone().unwrap_or_default(),
        recorded.initrd.clone().unwrap_or_default(),
        &mut parts.initrd.from,
    );
    differs(
        "command line",
        plan.cmdline.clone().unwrap_or_default(),
        recorded.cmdline.clone().unwrap_or_default(),
        &mut parts.cmdline.from,
    );
    differs(
        "kexec options",
        plan.options.join(" "),
        recorded.options.join(" "),
        &mut parts.kexec_options.from,
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dash_echo_halves_backslashes() {
        assert_eq!(dash_echo(r#"a=\\"b c""#).unwrap(), r#"a=\"b c""#);
        assert!(dash_echo(r"a\nb").is_err());
    }
}

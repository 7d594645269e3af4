//! openSUSE/SLE kdump 2.x: what `/usr/lib/kdump/load.sh` (run by kdump.service, and by `load-once.sh` from
//! SUSE's udev rule) would load now.
//!
//! Follows openSUSE/kdump: `kdump-read-config.sh` (`. /etc/sysconfig/kdump`, then `kdump_read_config_main`'s
//! `option` defaults and checks), and init/load.sh: the fixed `/var/lib/kdump/kernel` and `/var/lib/kdump/initrd`
//! (links mkdumprd makes for `KDUMP_KERNELVER`), `build_kdump_commandline` with `remove_from_commandline`, and
//! `load_kdump_kexec`, which builds `KEXEC_CALL` as a string and runs `eval "$KEXEC_CALL"`.

use super::shell::{self, Env};
use super::{proc_cmdline, source_optional, syscall_for, Ask, Finding, Part, Parts, Source};
use crate::core::cmdline::awk_remove;

const TOOL: &str = "kdump load.sh";
pub const SYSCONFIG: &str = "/etc/sysconfig/kdump";
pub const KERNEL: &str = "/var/lib/kdump/kernel";
pub const INITRD: &str = "/var/lib/kdump/initrd";
/// `build_kdump_commandline`'s first `remove_from_commandline`.
pub const REMOVE: &[&str] = &[
    "root",
    "resume",
    "crashkernel",
    "splash",
    "mem",
    "BOOT_IMAGE",
    "showopts",
    "zfcp.allow_lun_scan",
    "hugepages",
    "acpi_no_memhotplug",
    "cgroup_disable",
    "unknown_nmi_panic",
    "rd.udev.children-max",
];
/// The x86 removal after the additions.
pub const REMOVE_X86: &[&str] = &["unknown_nmi_panic", "notsc", "console=hvc0"];

/// `$2` of awk with `-F':[ \t]'`: the text between the first and the second `:` followed by a blank.
fn awk_field_2(line: &str) -> Option<String> {
    let separator = |text: &str| {
        text.char_indices()
            .find(|&(i, c)| c == ':' && matches!(text[i + 1..].chars().next(), Some(' ' | '\t')))
            .map(|(i, _)| i)
    };
    let start = separator(line)? + 2;
    let rest = &line[start..];
    Some(rest[..separator(rest).unwrap_or(rest.len())].to_owned())
}

fn var_source(env: &Env, name: &str) -> Option<Source> {
    env.get(name).map(|v| Source::of_var(name, &v.origin))
}

/// `option int NAME DEFAULT` of kdump-read-config.sh: empty takes the default, a non-number is reported and
/// replaced by the default.
fn option_int(env: &mut Env, name: &str, default: &str, findings: &mut Vec<Finding>) {
    let value = env.value(name).to_owned();
    let is_number = {
        let digits = value.strip_prefix('-').unwrap_or(&value);
        !digits.is_empty() && digits.chars().all(|c| c.is_ascii_digit())
    };
    if value.is_empty() || !is_number {
        if !value.is_empty() {
            findings.push(
                Finding::warning(
                    "invalid-value",
                    format!("{value:?} is not a number: kdump uses its default {default}"),
                )
                .at_var(name, env.get(name).map(|v| &v.origin)),
            );
        }
        env.set_by_tool(name, default, "kdump-read-config.sh", "option default");
    }
}

/// `option bool`: yes/1/true and no/0/false; anything else is reported and takes the default.
fn option_bool(env: &mut Env, name: &str, default: bool, findings: &mut Vec<Finding>) -> bool {
    match env.value(name) {
        "" => default,
        "yes" | "1" | "true" => true,
        "no" | "0" | "false" => false,
        other => {
            findings.push(
                Finding::warning(
                    "invalid-value",
                    format!("{other:?} is not a boolean: kdump uses its default {default}"),
                )
                .at_var(name, env.get(name).map(|v| &v.origin)),
            );
            default
        }
    }
}

pub fn plan(ask: &Ask) -> (Option<Parts>, Vec<Finding>) {
    let inputs = ask.inputs;
    let mut findings = Vec::new();
    let mut env = Env::new();
    if let Err(finding) = source_optional(ask, &mut env, SYSCONFIG) {
        return (None, vec![finding]);
    }
    option_int(&mut env, "KDUMP_CPUS", "32", &mut findings);
    option_int(&mut env, "KDUMP_VERBOSE", "0", &mut findings);
    if option_bool(&mut env, "KDUMP_FADUMP", false, &mut findings) {
        findings.push(
            Finding::error(
                "unsupported-mode",
                "KDUMP_FADUMP is set: firmware-assisted dump, not a crash kernel",
            )
            .at_var("KDUMP_FADUMP", env.get("KDUMP_FADUMP").map(|v| &v.origin)),
        );
        return (None, findings);
    }

    // load.sh exits 6 (no load) unless both links resolve to files.
    for (path, what) in [(KERNEL, "kernel"), (INITRD, "initrd")] {
        if !ask.is_file(path) {
            findings.push(
                Finding::error(
                    if what == "kernel" { "kernel-missing" } else { "initrd-missing" },
                    format!("{path} is not a file: load.sh does not load (mkdumprd makes it, from KDUMP_KERNELVER)"),
                )
                .at(path, None, None),
            );
        }
    }

    // build_kdump_commandline.
    let running = match proc_cmdline(ask) {
        Ok(line) => line,
        Err(finding) => return (None, vec![finding]),
    };
    let mut cmdline_from = Vec::new();
    let mut commandline = env.value("KDUMP_COMMANDLINE").to_owned();
    if commandline.is_empty() {
        commandline = awk_remove(&running, REMOVE);
        let mut rule = format!(
            "build_kdump_commandline removes {} (remove_from_commandline)",
            REMOVE.join(" ")
        );
        let verbose: i64 = env.value("KDUMP_VERBOSE").parse().unwrap_or(0);
        if verbose & 8 != 0 {
            commandline = awk_remove(&commandline, &["quiet"]);
            rule.push_str(", and quiet (KDUMP_VERBOSE has 8)");
        }
        cmdline_from.push(Source::ProcCmdline { rule });
        let xen = ask.exists("/proc/xen");
        let cpus = if xen { "1" } else { env.value("KDUMP_CPUS") }.to_owned();
        let nr_cpus = if cpus.parse::<i64>().unwrap_or(1) != 0 {
            format!("nr_cpus={cpus}")
        } else {
            String::new()
        };
        cmdline_from.extend(if xen {
            Some(Source::host("/proc/xen exists: nr_cpus=1"))
        } else {
            var_source(&env, "KDUMP_CPUS")
        });
        commandline
            .push_str(" sysrq=yes reset_devices acpi_no_memhotplug cgroup_disable=memory nokaslr");
        commandline.push_str(" numa=off");
        commandline.push_str(&format!(" irqpoll {nr_cpus}"));
        commandline.push_str(" root=kdump rootflags=bind rd.udev.children-max=8");
        cmdline_from.push(Source::tool(
            TOOL,
            "build_kdump_commandline: sysrq=yes reset_devices acpi_no_memhotplug cgroup_disable=memory nokaslr \
             numa=off irqpoll nr_cpus root=kdump rootflags=bind rd.udev.children-max=8",
        ));
        // x86: `awk -F':[ \t]' '/^initial apicid[ \t]*:/ {print $2; exit}' /proc/cpuinfo`.
        match ask.read("/proc/cpuinfo") {
            Ok(Some(cpuinfo)) => {
                let apicid = cpuinfo
                    .lines()
                    .find(|line| {
                        line.strip_prefix("initial apicid")
                            .is_some_and(|r| r.trim_start_matches([' ', '\t']).starts_with(':'))
                    })
                    .and_then(awk_field_2);
                if let Some(id) = apicid.filter(|id| !id.is_empty()) {
                    commandline.push_str(&format!(" disable_cpu_apicid={id}"));
                    cmdline_from.push(Source::tool(
                        TOOL,
                        format!("build_kdump_commandline: disable_cpu_apicid={id} (/proc/cpuinfo initial apicid)"),
                    ));
                }
            }
            Ok(None) => {}
            Err(problem) => {
                findings.push(Finding::error("unreadable", problem).at("/proc/cpuinfo", None, None))
            }
        }
        commandline = awk_remove(&commandline, REMOVE_X86);
    } else {
        cmdline_from.extend(var_source(&env, "KDUMP_COMMANDLINE"));
    }
    // set_serial_console: only under Xen's control domain, which the plan does not model.
    if ask.is_file("/proc/xen/capabilities") {
        findings.push(
            Finding::error(
                "unevaluable",
                "a Xen host: load.sh derives console= from `xl info`, not modelled",
            )
            .at("/proc/xen/capabilities", None, None),
        );
    }
    commandline.push(' ');
    commandline.push(' ');
    commandline.push_str(env.value("KDUMP_COMMANDLINE_APPEND"));
    cmdline_from.extend(var_source(&env, "KDUMP_COMMANDLINE_APPEND"));
    if awk_remove(&commandline, &["panic"]) == commandline {
        commandline.push_str(" panic=1");
        cmdline_from.push(Source::tool(
            TOOL,
            "build_kdump_commandline: panic=1 (no panic= given)",
        ));
    }

    // load_kdump_kexec: KEXEC_CALL, then `eval "$KEXEC_CALL"` (quoted: the shell parses it once).
    let kexec_options = env.value("KEXEC_OPTIONS").to_owned();
    let call = format!(
        "/sbin/kexec -p {KERNEL} --append=\"{commandline}\" --initrd={INITRD} {kexec_options} -a"
    );
    let argv = match shell::words(&call) {
        Ok(argv) => argv,
        Err(problem) => {
            findings.push(Finding::error(
                "unevaluable",
                format!("load.sh's kexec command cannot be evaluated: {problem}: {call}"),
            ));
            return (None, findings);
        }
    };
    let evaluated = super::parse_kexec_argv(&argv);
    if evaluated.cmdline.as_deref() != Some(commandline.as_str()) || !evaluated.extra.is_empty() {
        findings.push(
            Finding::warning(
                "tool-misquotes",
                format!(
                    "load.sh puts the command line in double quotes and evals it, so a double quote in it splits \
                     it: kexec would get --append={:?} and the extra words {:?} (this plan is the line load.sh \
                     builds)",
                    evaluated.cmdline.clone().unwrap_or_default(),
                    evaluated.extra
                ),
            )
            .at("/proc/cmdline", Some(1), None),
        );
    }
    let mut options = vec!["-p".to_owned()];
    let mut options_from = vec![Source::tool(TOOL, "load_kdump_kexec: -p")];
    match shell::words(&kexec_options) {
        Ok(words) => options.extend(words),
        Err(problem) => {
            findings.push(
                Finding::error("unevaluable", problem)
                    .at_var("KEXEC_OPTIONS", env.get("KEXEC_OPTIONS").map(|v| &v.origin)),
            );
            return (None, findings);
        }
    }
    options_from.extend(var_source(&env, "KEXEC_OPTIONS").filter(|_| !kexec_options.is_empty()));
    options.push("-a".to_owned());
    options_from.push(Source::tool(
        TOOL,
        "load_kdump_kexec: -a last, after KEXEC_OPTIONS",
    ));
    let (syscall, syscall_from) = syscall_for(&options, inputs.kexec.as_ref());

    let mut kernel_from = vec![Source::tool(TOOL, format!("{KERNEL}, linked by mkdumprd"))];
    kernel_from.extend(
        var_source(&env, "KDUMP_KERNELVER").filter(|_| !env.value("KDUMP_KERNELVER").is_empty()),
    );
    let parts = Parts {
        kernel: Part::new(KERNEL.to_owned(), kernel_from),
        initrd: Part::new(
            Some(INITRD.to_owned()),
            vec![Source::tool(TOOL, format!("{INITRD}, built by mkdumprd"))],
        ),
        cmdline: Part::new(commandline, cmdline_from),
        kexec_options: Part::new(options, options_from),
        syscall: Part::new(syscall, vec![syscall_from]),
        command: Some(call),
    };
    (Some(parts), findings)
}

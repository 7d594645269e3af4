//! Fedora/RHEL/CentOS kdump-utils: what `kdumpctl reload` (`setup_initrd`, then `start_dump` → `load_kdump`)
//! would load now.
//!
//! Follows rhkdump/kdump-utils (`kdumpctl` and `kdump-lib.sh`): the variables kdumpctl sets before sourcing
//! `/etc/sysconfig/kdump`, `_get_kdump_kernel_version`, `prepare_kdump_kernel`, `prepare_kdump_bootinfo` (the
//! kdump initramfs name), `prepare_kexec_args`, `prepare_cmdline` with `_cmdline_parse` and
//! `get_bootcpu_apicid`, and `load_kdump`, which passes its words to kexec directly (no `eval`).

use super::shell::Env;
use super::{proc_cmdline, source_optional, syscall_for, Ask, Finding, Part, Parts, Source};
use crate::core::cmdline;

const TOOL: &str = "kdumpctl";
pub const SYSCONFIG: &str = "/etc/sysconfig/kdump";
/// kdumpctl's default when the file does not set it.
pub const COMMANDLINE_REMOVE_DEFAULT: &str = "hugepages hugepagesz slub_debug";
/// `prepare_cmdline`'s fixed removals: the reservation, `panic_on_warn`, `root=` (the kdump initramfs mounts
/// its targets itself), what `--hostonly-cmdline` regenerates, and the iSCSI words it would duplicate.
pub const ALWAYS_REMOVE: &[&str] = &[
    "crashkernel",
    "panic_on_warn",
    "root",
    "rd.lvm.lv",
    "rd.luks.uuid",
    "rd.dm.uuid",
    "rd.md.uuid",
    "fcoe",
    "netroot",
    "rd.iscsi.initiator",
    "iscsi_initiator",
];

fn var_source(env: &Env, name: &str) -> Option<Source> {
    env.get(name).map(|v| Source::of_var(name, &v.origin))
}

/// bash `read -r opt val` of one line: the first word, and the rest with blanks trimmed at both ends.
fn read_two(line: &str) -> (String, String) {
    let line = line.trim_matches([' ', '\t', '\n']);
    match line.find([' ', '\t']) {
        Some(at) => (
            line[..at].to_owned(),
            line[at..].trim_matches([' ', '\t', '\n']).to_owned(),
        ),
        None => (line.to_owned(), String::new()),
    }
}

/// `_cmdline_parse`: each `xargs` word as `opt val` (split at the first `=`, a value with a blank re-quoted,
/// `opt=` with an empty value dropped), as `read -r opt val` gets it back.
fn cmdline_parse(text: &str) -> Result<Vec<(String, String)>, &'static str> {
    let mut out = Vec::new();
    for word in cmdline::xargs_words(text)? {
        let (opt, val) = match word.split_once('=') {
            Some((_, "")) => continue,
            Some((opt, val)) if val.chars().any(char::is_whitespace) => {
                (opt.to_owned(), format!("\"{val}\""))
            }
            Some((opt, val)) => (opt.to_owned(), val.to_owned()),
            None => (word.clone(), String::new()),
        };
        let (opt, val) = read_two(&format!("{opt} {val}"));
        if !opt.is_empty() {
            out.push((opt, val));
        }
    }
    Ok(out)
}

/// `get_bootcpu_apicid`: the `apicid` of processor 0 in /proc/cpuinfo (awk: fields split on blanks).
fn boot_cpu_apicid(cpuinfo: &str) -> Option<String> {
    let mut cpu = "-1".to_owned();
    let mut found = None;
    for line in cpuinfo.lines() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        if fields.len() >= 2 && fields[0] == "processor" && fields[1] == ":" {
            cpu = fields.last().unwrap_or(&"").to_string();
        }
        if cpu == "0" && line.starts_with("apicid") && found.is_none() {
            found = fields.last().map(|s| s.to_string());
        }
    }
    found
}

pub fn plan(ask: &Ask) -> (Option<Parts>, Vec<Finding>) {
    let inputs = ask.inputs;
    let mut findings = Vec::new();
    let mut env = Env::new();
    for (name, value) in [
        ("KDUMP_KERNELVER", ""),
        ("KDUMP_KERNEL", ""),
        ("KEXEC_ARGS", ""),
        ("KEXEC", "/sbin/kexec"),
    ] {
        env.set_by_tool(name, value, TOOL, "set before reading /etc/sysconfig/kdump");
    }
    env.set_by_tool(
        "KDUMP_COMMANDLINE_REMOVE",
        COMMANDLINE_REMOVE_DEFAULT,
        TOOL,
        "default when /etc/sysconfig/kdump does not set it",
    );
    if let Err(finding) = source_optional(ask, &mut env, SYSCONFIG) {
        return (None, vec![finding]);
    }

    // _get_kdump_kernel_version.
    let (kver, kver_from) = if !env.value("KDUMP_KERNELVER").is_empty() {
        (
            env.value("KDUMP_KERNELVER").to_owned(),
            var_source(&env, "KDUMP_KERNELVER"),
        )
    } else {
        let release = inputs.release.clone();
        let nondebug = release
            .strip_suffix("+debug")
            .or_else(|| release.strip_suffix("-debug"))
            .map(str::to_owned);
        match nondebug {
            Some(n) if ask.is_file(&format!("/usr/lib/modules/{n}/modules.dep")) => (
                n,
                Some(Source::tool(
                    TOOL,
                    "_get_kdump_kernel_version: the non-debug twin of the running kernel",
                )),
            ),
            _ => (
                release,
                Some(Source::tool(
                    TOOL,
                    "_get_kdump_kernel_version: the running kernel",
                )),
            ),
        }
    };

    // prepare_kdump_kernel.
    if ask.is_file("/run/ostree-booted") {
        findings.push(Finding::error(
            "unsupported-host",
            "an OSTree host (/run/ostree-booted): kdumpctl looks for the kernel under /boot/ostree/*, not modelled",
        ));
        return (None, findings);
    }
    let stub = "/sys/firmware/efi/efivars/StubImageIdentifier-4a67b082-0a4c-41cf-b6c7-440b29bb8c4f";
    if ask.is_file(stub) {
        findings.push(
            Finding::error(
                "unevaluable",
                "a UKI boot stub names the image in an EFI variable: kdumpctl's name for it is not modelled",
            )
            .at(stub, None, None),
        );
        return (None, findings);
    }
    let machine_id = match ask.read("/etc/machine-id") {
        Ok(Some(text)) => text.lines().next().unwrap_or("").trim().to_owned(),
        _ => String::new(),
    };
    let img = env.value("KDUMP_IMG");
    let ext = env.value("KDUMP_IMG_EXT");
    let boot_dirs = match env.value("KDUMP_BOOTDIR") {
        "" => "/boot /boot/efi /efi /".to_owned(),
        dirs => dirs.to_owned(),
    };
    let mut images: Vec<String> =
        format!("{img}-{kver}{ext} {machine_id}/{kver}/{img} EFI/Linux/{machine_id}-{kver}.efi")
            .split_whitespace()
            .map(str::to_owned)
            .collect();
    let running = match proc_cmdline(ask) {
        Ok(line) => line,
        Err(finding) => return (None, vec![finding]),
    };
    // `grep -P -o '^BOOT_IMAGE=(\S+)'`, then sed drops a GRUB device prefix `(hd0,gpt1)`.
    if let Some(first) = running
        .split_whitespace()
        .next()
        .and_then(|w| w.strip_prefix("BOOT_IMAGE="))
    {
        let image = match (first.starts_with('('), first.rfind(')')) {
            (true, Some(close)) => &first[close + 1..],
            _ => first,
        };
        if image.ends_with(kver.as_str()) {
            images.insert(0, image.to_owned());
        }
    }
    let kernel = boot_dirs.split_whitespace().find_map(|dir| {
        images.iter().find_map(|img| {
            let path = format!("{dir}/{img}");
            ask.is_file(&path).then(|| squeeze_slashes(&path))
        })
    });
    let Some(kernel) = kernel else {
        findings.push(Finding::error(
            "kernel-missing",
            format!(
                "kdumpctl finds no kernel for {kver}: none of {} under {boot_dirs} (prepare_kdump_bootinfo: \
                 \"Failed to detect kdump kernel location\")",
                images.join(" ")
            ),
        ));
        return (None, findings);
    };
    let mut kernel_from: Vec<Source> = kver_from.into_iter().collect();
    kernel_from.extend(var_source(&env, "KDUMP_IMG"));
    kernel_from.push(Source::tool(
        TOOL,
        "prepare_kdump_kernel: first image found in the boot directories",
    ));

    // prepare_kdump_bootinfo: the kdump initramfs beside the default one, or in /var/lib/kdump.
    let boot_dir = match kernel.rfind('/') {
        Some(0) => "/".to_owned(),
        Some(at) => kernel[..at].to_owned(),
        None => ".".to_owned(),
    };
    let join = |dir: &str, name: &str| squeeze_slashes(&format!("{dir}/{name}"));
    let default_initrd = [format!("initramfs-{kver}.img"), "initrd".to_owned()]
        .into_iter()
        .map(|name| join(&boot_dir, &name))
        .find(|path| ask.is_file(path));
    let writable = ask.fact(&boot_dir).writable;
    let (initrd, initrd_rule) = match &default_initrd {
        Some(default) if writable => match default.strip_suffix(".img") {
            Some(stem) => (
                format!("{stem}kdump.img"),
                format!("{default} with .img → kdump.img"),
            ),
            None => (format!("{default}kdump"), format!("{default} + kdump")),
        },
        _ => (
            format!("/var/lib/kdump/initramfs-{kver}kdump.img"),
            if default_initrd.is_none() {
                format!("no default initramfs in {boot_dir}: /var/lib/kdump")
            } else {
                format!("{boot_dir} is not writable: /var/lib/kdump")
            },
        ),
    };
    let mut initrd_from = vec![Source::tool(
        TOOL,
        format!("prepare_kdump_bootinfo: {initrd_rule}"),
    )];
    if !writable && default_initrd.is_some() {
        initrd_from.push(Source::host(format!("{boot_dir} is not writable")));
    }
    if !ask.is_file(&initrd) {
        findings.push(
            Finding::error(
                "initrd-missing",
                format!("the kdump initramfs {initrd} does not exist (kdumpctl restart builds it with mkdumprd)"),
            )
            .at(&initrd, None, None),
        );
    }

    // prepare_cmdline.
    let commandline = env.value("KDUMP_COMMANDLINE");
    let (input, mut cmdline_from) = if commandline.is_empty() {
        (
            running.clone(),
            vec![Source::ProcCmdline {
                rule: "prepare_cmdline: words as xargs splits them, KDUMP_COMMANDLINE_REMOVE and crashkernel \
                       panic_on_warn root rd.lvm.lv rd.luks.uuid rd.dm.uuid rd.md.uuid fcoe netroot \
                       rd.iscsi.initiator iscsi_initiator removed"
                    .into(),
            }],
        )
    } else {
        (
            commandline.to_owned(),
            var_source(&env, "KDUMP_COMMANDLINE").into_iter().collect(),
        )
    };
    cmdline_from.extend(var_source(&env, "KDUMP_COMMANDLINE_REMOVE"));
    cmdline_from.extend(var_source(&env, "KDUMP_COMMANDLINE_APPEND"));
    let (remove, words) = match (
        cmdline_parse(env.value("KDUMP_COMMANDLINE_REMOVE")),
        cmdline_parse(&input),
    ) {
        (Ok(r), Ok(w)) => (r, w),
        (Err(problem), _) => {
            findings.push(
                Finding::error("unevaluable", format!("xargs: {problem}")).at_var(
                    "KDUMP_COMMANDLINE_REMOVE",
                    env.get("KDUMP_COMMANDLINE_REMOVE").map(|v| &v.origin),
                ),
            );
            return (None, findings);
        }
        (_, Err(problem)) => {
            let finding = Finding::error("unevaluable", format!("xargs: {problem}"));
            findings.push(if commandline.is_empty() {
                finding.at("/proc/cmdline", Some(1), None)
            } else {
                finding.at_var(
                    "KDUMP_COMMANDLINE",
                    env.get("KDUMP_COMMANDLINE").map(|v| &v.origin),
                )
            });
            return (None, findings);
        }
    };
    let removed: Vec<&str> = remove
        .iter()
        .map(|(opt, _)| opt.as_str())
        .chain(ALWAYS_REMOVE.iter().copied())
        .collect();
    let mut out = String::new();
    for (opt, val) in &words {
        if removed.contains(&opt.as_str()) {
            continue;
        }
        if val.is_empty() {
            out.push_str(&format!("{opt} "));
        } else {
            out.push_str(&format!("{opt}={val} "));
        }
    }
    out.push_str(&format!("{} ", env.value("KDUMP_COMMANDLINE_APPEND")));
    match ask.read("/proc/cpuinfo") {
        Ok(Some(cpuinfo)) => {
            if let Some(id) = boot_cpu_apicid(cpuinfo) {
                out.push_str(&format!("disable_cpu_apicid={id} "));
                cmdline_from.push(Source::tool(
                    TOOL,
                    format!("prepare_cmdline: disable_cpu_apicid={id}, the boot CPU's apicid (/proc/cpuinfo)"),
                ));
            }
        }
        Ok(None) => {}
        Err(problem) => {
            findings.push(Finding::error("unreadable", problem).at("/proc/cpuinfo", None, None))
        }
    }
    // get_watchdog_drvs resolves each watchdog's modalias with `modprobe -R` for `<drv>.pretimeout=0`.
    let watchdogs: Vec<String> = ask
        .fact("/sys/class/watchdog")
        .entries
        .iter()
        .map(|e| format!("/sys/class/watchdog/{e}/device/modalias"))
        .filter(|p| ask.is_file(p))
        .collect();
    if let Some(first) = watchdogs.first() {
        findings.push(
            Finding::error(
                "unevaluable",
                "kdumpctl adds <driver>.pretimeout=0 for each watchdog, naming the driver with `modprobe -R` of \
                 its modalias: not modelled",
            )
            .at(first, None, None),
        );
    }
    out.push_str("rd.systemd.gpt_auto=no ");
    cmdline_from.push(Source::tool(
        TOOL,
        "prepare_cmdline: rd.systemd.gpt_auto=no",
    ));
    // `sed -e "s/^ *//g" -e "s/ *$//g" -e "s/ \+/ /g"`: spaces only, runs squeezed everywhere.
    let cmdline_value = out
        .split('\n')
        .map(|line| {
            line.split(' ')
                .filter(|w| !w.is_empty())
                .collect::<Vec<_>>()
                .join(" ")
        })
        .collect::<Vec<_>>()
        .join("\n");

    // prepare_kexec_args: KEXEC_ARGS (+ -s under Secure Boot), read back with `IFS=' ' read -r -a`.
    let mut kexec_args = env.value("KEXEC_ARGS").to_owned();
    let mut options_from: Vec<Source> = var_source(&env, "KEXEC_ARGS").into_iter().collect();
    if inputs.secure_boot {
        kexec_args.push_str(" -s");
        options_from.push(Source::host(
            "Secure Boot enforced: prepare_kexec_args adds -s (is_secure_boot_enforced)",
        ));
    }
    let mut options: Vec<String> = kexec_args
        .split('\n')
        .next()
        .unwrap_or("")
        .split(' ')
        .filter(|w| !w.is_empty())
        .map(str::to_owned)
        .collect();
    options.push("-p".to_owned());
    options_from.push(Source::tool(TOOL, "load_kdump: -p"));
    let (syscall, syscall_from) = syscall_for(&options, inputs.kexec.as_ref());

    // load_kdump logs `$KEXEC ${args[*]}` (ddebug) and passes the words as they are.
    let command = format!(
        "/sbin/kexec {} --command-line={cmdline_value} --initrd={initrd} {kernel}",
        options.join(" ")
    );
    let parts = Parts {
        kernel: Part::new(kernel, kernel_from),
        initrd: Part::new(Some(initrd), initrd_from),
        cmdline: Part::new(cmdline_value, cmdline_from),
        kexec_options: Part::new(options, options_from),
        syscall: Part::new(syscall, vec![syscall_from]),
        command: Some(command),
    };
    (Some(parts), findings)
}

/// `tr -s '/'`.
fn squeeze_slashes(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    for c in path.chars() {
        if !(c == '/' && out.ends_with('/')) {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cmdline_parse_is_kdumpctls() {
        assert_eq!(
            cmdline_parse(r#"a=1 b= dyndbg="file foo.c +p" "x y" flag"#).unwrap(),
            vec![
                ("a".into(), "1".into()),
                ("dyndbg".into(), "\"file foo.c +p\"".into()),
                // A quoted word without `=` comes back as two: kdumpctl's own quirk.
                ("x".into(), "y".into()),
                ("flag".into(), String::new()),
            ]
        );
    }

    #[test]
    fn apicid_of_cpu_zero() {
        let cpuinfo =
            "processor\t: 0\napicid\t\t: 4\ninitial apicid\t: 4\n\nprocessor\t: 1\napicid\t\t: 6\n";
        assert_eq!(boot_cpu_apicid(cpuinfo).as_deref(), Some("4"));
        assert_eq!(squeeze_slashes("//boot//vmlinuz"), "/boot/vmlinuz");
    }
}

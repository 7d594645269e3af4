//! The crash-kernel plan on each fixture sysroot (tests/fixtures/plan-*), compared whole; and the Debian plans
//! compared with what Debian's real kdump-config prints and runs for the same files.
//!
//! The fixtures are written from the tools' documented keys and defaults (see tests/fixtures/README.md). The
//! expected texts are the plans' `Display`: every part, every source (file:line and variable, the tool's rule,
//! /proc/cmdline, the record), every finding with its file, line and variable, and the verdict.

use std::path::{Path, PathBuf};
use std::process::Command;

use kdump_hotplugd::core::plan::{
    self, parse_kexec_argv, Finding, KexecCommand, Plan, Service, Severity, Verdict,
};
use kdump_hotplugd::host::plan_inputs::{read_and_plan, read_and_plan_with};

#[path = "common/precondition.rs"]
mod precondition;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

fn plan_of(name: &str) -> Plan {
    let (_, plan) = read_and_plan(&fixture(name));
    assert_eq!(
        plan.wanted,
        Vec::<String>::new(),
        "the reader answered every lookup"
    );
    plan
}

fn plan_text(name: &str) -> String {
    plan_of(name).to_string()
}

#[test]
fn plan_debian() {
    assert_eq!(
        plan_text("plan-debian"),
        r#"kdump service: Debian/Ubuntu kdump-tools
kernel:   /var/lib/kdump/vmlinuz
    from /etc/default/kdump-tools:6 KDUMP_KERNEL
    from agrees with the record /var/crash/kexec_cmd:1
initrd:   /var/lib/kdump/initrd.img
    from /etc/default/kdump-tools:7 KDUMP_INITRD
    from agrees with the record /var/crash/kexec_cmd:1
cmdline:  BOOT_IMAGE=/boot/vmlinuz-6.1.0-37-amd64 root=/dev/vda rw console=ttyS0 memhp_default_state=online_movable reset_devices systemd.unit=kdump-tools-dump.service nr_cpus=1 irqpoll usbcore.nousb
    from /proc/cmdline, kdump_load removes crashkernel= hugepages= hugepagesz= abm= (sed)
    from kdump-config: KDUMP_CMDLINE_APPEND: ${KDUMP_CMDLINE_APPEND:=…} built-in default
    from agrees with the record /var/crash/kexec_cmd:1
options:  -p
    from kdump-config: kdump_load: -p (load the crash kernel)
    from agrees with the record /var/crash/kexec_cmd:1
syscall:  kexec_load
    from host: /sbin/kexec is kexec-tools 2.0.25 (before 2.0.27 the default is kexec_load)
command:  /sbin/kexec -p --command-line="BOOT_IMAGE=/boot/vmlinuz-6.1.0-37-amd64 root=/dev/vda rw console=ttyS0 memhp_default_state=online_movable reset_devices systemd.unit=kdump-tools-dump.service nr_cpus=1 irqpoll usbcore.nousb" --initrd=/var/lib/kdump/initrd.img /var/lib/kdump/vmlinuz
verdict: load this plan
"#
    );
}

#[test]
fn plan_debian_append() {
    assert_eq!(
        plan_text("plan-debian-append"),
        r#"kdump service: Debian/Ubuntu kdump-tools
kernel:   drivers/virtio/virtio_mem.c
    from /etc/default/kdump-tools:6 KDUMP_KERNEL
initrd:   /var/lib/kdump/initrd.img
    from /etc/default/kdump-tools:7 KDUMP_INITRD
cmdline:  BOOT_IMAGE=/boot/vmlinuz-6.1.0-37-amd64 root=/dev/vda rw console=ttyS0 dyndbg=\file
    from /proc/cmdline, kdump_load removes crashkernel= hugepages= hugepagesz= abm= (sed)
    from /etc/default/kdump-tools:19 KDUMP_CMDLINE_APPEND
options:  -p --elf64-core-headers
    from kdump-config: kdump_load: -p (load the crash kernel)
    from /etc/default/kdump-tools:21 KDUMP_KEXEC_ARGS
syscall:  kexec_load
    from host: /sbin/kexec is kexec-tools 2.0.25 (before 2.0.27 the default is kexec_load)
command:  /sbin/kexec -p --elf64-core-headers --command-line="BOOT_IMAGE=/boot/vmlinuz-6.1.0-37-amd64 root=/dev/vda rw console=ttyS0 dyndbg=\"file drivers/virtio/virtio_mem.c +p" quiet reset_devices systemd.unit=kdump-tools-dump.service nr_cpus=1 irqpoll usbcore.nousb nmi_watchdog=0 panic=10" --initrd=/var/lib/kdump/initrd.img /var/lib/kdump/vmlinuz
error: /proc/cmdline:1: kdump-config escapes only the first double quote of /proc/cmdline, so its own `eval` splits the command there: kexec gets --command-line="BOOT_IMAGE=/boot/vmlinuz-6.1.0-37-amd64 root=/dev/vda rw console=ttyS0 dyndbg=\\file", kernel "drivers/virtio/virtio_mem.c" and the extra words ["+p quiet reset_devices systemd.unit=kdump-tools-dump.service nr_cpus=1 irqpoll usbcore.nousb nmi_watchdog=0 panic=10", "/var/lib/kdump/vmlinuz"]
error: drivers/virtio/virtio_mem.c does not exist
verdict: delegate the reload to Debian/Ubuntu kdump-tools: `kdump-config reload`
"#
    );
}

#[test]
fn plan_debian_secureboot() {
    assert_eq!(
        plan_text("plan-debian-secureboot"),
        r#"kdump service: Debian/Ubuntu kdump-tools
kernel:   /var/lib/kdump/vmlinuz
    from /etc/default/kdump-tools:6 KDUMP_KERNEL
initrd:   /var/lib/kdump/initrd.img
    from /etc/default/kdump-tools:7 KDUMP_INITRD
cmdline:  BOOT_IMAGE=/boot/vmlinuz-6.1.0-37-amd64 root=/dev/vda rw console=ttyS0 memhp_default_state=online_movable reset_devices systemd.unit=kdump-tools-dump.service nr_cpus=1 irqpoll usbcore.nousb
    from /proc/cmdline, kdump_load removes crashkernel= hugepages= hugepagesz= abm= (sed)
    from kdump-config: KDUMP_CMDLINE_APPEND: ${KDUMP_CMDLINE_APPEND:=…} built-in default
options:  -p -s
    from kdump-config: kdump_load: -p (load the crash kernel)
    from host: Secure Boot enforced: kdump_load adds -s (check_secure_boot)
syscall:  kexec_file_load
    from kexec-tools: option -s (the last of -s/-c/-a wins)
command:  /sbin/kexec -p -s --command-line="BOOT_IMAGE=/boot/vmlinuz-6.1.0-37-amd64 root=/dev/vda rw console=ttyS0 memhp_default_state=online_movable reset_devices systemd.unit=kdump-tools-dump.service nr_cpus=1 irqpoll usbcore.nousb" --initrd=/var/lib/kdump/initrd.img /var/lib/kdump/vmlinuz
verdict: load this plan
"#
    );
}

#[test]
fn plan_debian_record_mismatch() {
    assert_eq!(
        plan_text("plan-debian-record-mismatch"),
        r#"kdump service: Debian/Ubuntu kdump-tools
kernel:   /var/lib/kdump/vmlinuz
    from /etc/default/kdump-tools:6 KDUMP_KERNEL
    from agrees with the record /var/crash/kexec_cmd:1
initrd:   /var/lib/kdump/initrd.img
    from /etc/default/kdump-tools:7 KDUMP_INITRD
    from agrees with the record /var/crash/kexec_cmd:1
cmdline:  BOOT_IMAGE=/boot/vmlinuz-6.1.0-37-amd64 root=/dev/vda rw console=ttyS0 memhp_default_state=online_movable reset_devices systemd.unit=kdump-tools-dump.service nr_cpus=1 irqpoll usbcore.nousb
    from /proc/cmdline, kdump_load removes crashkernel= hugepages= hugepagesz= abm= (sed)
    from kdump-config: KDUMP_CMDLINE_APPEND: ${KDUMP_CMDLINE_APPEND:=…} built-in default
options:  -p
    from kdump-config: kdump_load: -p (load the crash kernel)
    from agrees with the record /var/crash/kexec_cmd:1
syscall:  kexec_load
    from host: /sbin/kexec is kexec-tools 2.0.25 (before 2.0.27 the default is kexec_load)
command:  /sbin/kexec -p --command-line="BOOT_IMAGE=/boot/vmlinuz-6.1.0-37-amd64 root=/dev/vda rw console=ttyS0 memhp_default_state=online_movable reset_devices systemd.unit=kdump-tools-dump.service nr_cpus=1 irqpoll usbcore.nousb" --initrd=/var/lib/kdump/initrd.img /var/lib/kdump/vmlinuz
error: /var/crash/kexec_cmd:1: the command line kdump-config last loaded differs from its configuration now: recorded "BOOT_IMAGE=/boot/vmlinuz-6.1.0-37-amd64 root=/dev/vda rw console=ttyS0 memhp_default_state=online_movable reset_devices nr_cpus=1 irqpoll", planned "BOOT_IMAGE=/boot/vmlinuz-6.1.0-37-amd64 root=/dev/vda rw console=ttyS0 memhp_default_state=online_movable reset_devices systemd.unit=kdump-tools-dump.service nr_cpus=1 irqpoll usbcore.nousb"
verdict: delegate the reload to Debian/Ubuntu kdump-tools: `kdump-config reload`
"#
    );
}

#[test]
fn plan_fedora() {
    assert_eq!(
        plan_text("plan-fedora"),
        r#"kdump service: Fedora/RHEL kdump-utils
kernel:   /boot/vmlinuz-6.11.4-301.fc41.x86_64
    from kdumpctl: _get_kdump_kernel_version: the running kernel
    from /etc/sysconfig/kdump:21 KDUMP_IMG
    from kdumpctl: prepare_kdump_kernel: first image found in the boot directories
initrd:   /boot/initramfs-6.11.4-301.fc41.x86_64kdump.img
    from kdumpctl: prepare_kdump_bootinfo: /boot/initramfs-6.11.4-301.fc41.x86_64.img with .img → kdump.img
cmdline:  BOOT_IMAGE=(hd0,gpt2)/vmlinuz-6.11.4-301.fc41.x86_64 ro rootflags=subvol=root rhgb novmcoredd hugetlb_cma=0 kfence.sample_interval=0 initramfs_options=size=90% irqpoll nr_cpus=1 reset_devices cgroup_disable=memory mce=off numa=off udev.children-max=2 panic=10 acpi_no_memhotplug transparent_hugepage=never nokaslr hest_disable cma=0 pcie_ports=compat disable_cpu_apicid=0 rd.systemd.gpt_auto=no
    from /proc/cmdline, prepare_cmdline: words as xargs splits them, KDUMP_COMMANDLINE_REMOVE and crashkernel panic_on_warn root rd.lvm.lv rd.luks.uuid rd.dm.uuid rd.md.uuid fcoe netroot rd.iscsi.initiator iscsi_initiator removed
    from /etc/sysconfig/kdump:8 KDUMP_COMMANDLINE_REMOVE
    from /etc/sysconfig/kdump:11 KDUMP_COMMANDLINE_APPEND
    from kdumpctl: prepare_cmdline: disable_cpu_apicid=0, the boot CPU's apicid (/proc/cpuinfo)
    from kdumpctl: prepare_cmdline: rd.systemd.gpt_auto=no
options:  -s -p
    from /etc/sysconfig/kdump:16 KEXEC_ARGS
    from kdumpctl: load_kdump: -p
syscall:  kexec_file_load
    from kexec-tools: option -s (the last of -s/-c/-a wins)
command:  /sbin/kexec -s -p --command-line=BOOT_IMAGE=(hd0,gpt2)/vmlinuz-6.11.4-301.fc41.x86_64 ro rootflags=subvol=root rhgb novmcoredd hugetlb_cma=0 kfence.sample_interval=0 initramfs_options=size=90% irqpoll nr_cpus=1 reset_devices cgroup_disable=memory mce=off numa=off udev.children-max=2 panic=10 acpi_no_memhotplug transparent_hugepage=never nokaslr hest_disable cma=0 pcie_ports=compat disable_cpu_apicid=0 rd.systemd.gpt_auto=no --initrd=/boot/initramfs-6.11.4-301.fc41.x86_64kdump.img /boot/vmlinuz-6.11.4-301.fc41.x86_64
verdict: load this plan
"#
    );
}

#[test]
fn plan_suse() {
    assert_eq!(
        plan_text("plan-suse"),
        r#"kdump service: SUSE kdump
kernel:   /var/lib/kdump/kernel
    from kdump load.sh: /var/lib/kdump/kernel, linked by mkdumprd
initrd:   /var/lib/kdump/initrd
    from kdump load.sh: /var/lib/kdump/initrd, built by mkdumprd
cmdline:   mitigations=auto quiet security=apparmor sysrq=yes reset_devices acpi_no_memhotplug cgroup_disable=memory nokaslr numa=off irqpoll nr_cpus=32 root=kdump rootflags=bind rd.udev.children-max=8 disable_cpu_apicid=2  console=ttyS0,115200 panic=1
    from /proc/cmdline, build_kdump_commandline removes root resume crashkernel splash mem BOOT_IMAGE showopts zfcp.allow_lun_scan hugepages acpi_no_memhotplug cgroup_disable unknown_nmi_panic rd.udev.children-max (remove_from_commandline)
    from kdump-read-config.sh: KDUMP_CPUS: option default
    from kdump load.sh: build_kdump_commandline: sysrq=yes reset_devices acpi_no_memhotplug cgroup_disable=memory nokaslr numa=off irqpoll nr_cpus root=kdump rootflags=bind rd.udev.children-max=8
    from kdump load.sh: build_kdump_commandline: disable_cpu_apicid=2 (/proc/cpuinfo initial apicid)
    from /etc/sysconfig/kdump:26 KDUMP_COMMANDLINE_APPEND
    from kdump load.sh: build_kdump_commandline: panic=1 (no panic= given)
options:  -p -a
    from kdump load.sh: load_kdump_kexec: -p
    from kdump load.sh: load_kdump_kexec: -a last, after KEXEC_OPTIONS
syscall:  kexec_file_load, falling back to kexec_load
    from kexec-tools: option -a (the last of -s/-c/-a wins)
command:  /sbin/kexec -p /var/lib/kdump/kernel --append=" mitigations=auto quiet security=apparmor sysrq=yes reset_devices acpi_no_memhotplug cgroup_disable=memory nokaslr numa=off irqpoll nr_cpus=32 root=kdump rootflags=bind rd.udev.children-max=8 disable_cpu_apicid=2  console=ttyS0,115200 panic=1" --initrd=/var/lib/kdump/initrd  -a
verdict: load this plan
"#
    );
}

#[test]
fn plan_none() {
    assert_eq!(
        plan_text("plan-none"),
        r#"kdump service: none (kdump-hotplugd's own plan)
kernel:   /boot/vmlinuz-6.12.22-amd64
    from kdump-hotplugd: first existing of /boot/vmlinuz-R, /boot/vmlinux-R, /boot/vmlinuz
initrd:   /boot/initrd.img-6.12.22-amd64
    from kdump-hotplugd: first existing kdump initrd (Debian, Fedora, SUSE names), else the boot initrd
cmdline:  root=/dev/vda rw console=ttyS0 dyndbg="module virtio_mem +p" reset_devices irqpoll nr_cpus=1 cma=0 hugetlb_cma=0 -- single
    from /proc/cmdline, kdump-hotplugd removes crashkernel BOOT_IMAGE initrd hugepages hugepagesz default_hugepagesz hugetlb_cma cma log_buf_len swiotlb slub_debug nr_cpus maxcpus kfence.sample_interval and appends reset_devices irqpoll nr_cpus=1 cma=0 hugetlb_cma=0
options:  
    from kdump-hotplugd: none: the daemon calls kexec_file_load itself
syscall:  kexec_file_load
    from kdump-hotplugd: native kexec_file_load
verdict: load this plan
"#
    );
}

#[test]
fn plan_bad_shell() {
    assert_eq!(
        plan_text("plan-bad-shell"),
        r#"kdump service: Debian/Ubuntu kdump-tools
plan: none (see the findings)
error: /etc/default/kdump-tools:18: KDUMP_CMDLINE_APPEND: command substitution $(…) is not evaluated
verdict: delegate the reload to Debian/Ubuntu kdump-tools: `kdump-config reload`
"#
    );
}

/// A read-only /boot cannot be checked into git (and root may write anyway): the test states it.
#[test]
fn plan_fedora_readonly_boot() {
    let (_, plan) = read_and_plan_with(&fixture("plan-fedora-readonly-boot"), |inputs| {
        if let Some(boot) = inputs.paths.get_mut("/boot") {
            boot.writable = false;
        }
    });
    assert_eq!(plan.wanted, Vec::<String>::new());
    let parts = plan.parts.as_ref().expect("a plan");
    assert_eq!(
        parts.initrd.value.as_deref(),
        Some("/var/lib/kdump/initramfs-6.11.4-301.fc41.x86_64kdump.img")
    );
    assert_eq!(
        parts.initrd.from,
        vec![
            plan::Source::Tool {
                tool: "kdumpctl".into(),
                rule: "prepare_kdump_bootinfo: /boot is not writable: /var/lib/kdump".into()
            },
            plan::Source::Host {
                fact: "/boot is not writable".into()
            },
        ]
    );
    assert_eq!(plan.findings, vec![]);
    assert_eq!(plan.verdict, Verdict::Load);
    // Everything else is the writable fixture's plan.
    let writable = plan_of("plan-fedora");
    let other = writable.parts.as_ref().unwrap();
    assert_eq!(
        (&parts.kernel, &parts.cmdline, &parts.kexec_options),
        (&other.kernel, &other.cmdline, &other.kexec_options)
    );
}

#[test]
fn a_missing_kernel_delegates_to_kdumpctl() {
    // The fixture without its kernel image (kdumpctl also finds it as /boot//vmlinuz-… through BOOT_IMAGE).
    let dir = tempfile::tempdir().unwrap();
    let copy = Command::new("cp")
        .arg("-a")
        .arg(fixture("plan-fedora"))
        .arg(dir.path().join("root"))
        .status();
    assert!(copy.unwrap().success());
    std::fs::remove_file(dir.path().join("root/boot/vmlinuz-6.11.4-301.fc41.x86_64")).unwrap();
    let (_, plan) = read_and_plan(&dir.path().join("root"));
    assert_eq!(plan.service, Service::KdumpUtils);
    assert_eq!(plan.parts, None);
    assert_eq!(
        plan.findings,
        vec![Finding {
            severity: Severity::Error,
            code: "kernel-missing",
            file: None,
            line: None,
            variable: None,
            message: "kdumpctl finds no kernel for 6.11.4-301.fc41.x86_64: none of /vmlinuz-6.11.4-301.fc41.x86_64 \
                      vmlinuz-6.11.4-301.fc41.x86_64 \
                      4c2f8b9e0d1a4e6b9a7c3d5e1f203948/6.11.4-301.fc41.x86_64/vmlinuz \
                      EFI/Linux/4c2f8b9e0d1a4e6b9a7c3d5e1f203948-6.11.4-301.fc41.x86_64.efi under /boot /boot/efi \
                      /efi / (prepare_kdump_bootinfo: \"Failed to detect kdump kernel location\")"
                .into(),
        }]
    );
    assert_eq!(
        plan.verdict,
        Verdict::Delegate {
            tool: "Fedora/RHEL kdump-utils".into(),
            command: "kdumpctl reload".into()
        }
    );
}

#[test]
fn an_unevaluable_file_names_file_line_and_variable() {
    let plan = plan_of("plan-bad-shell");
    assert_eq!(
        plan.findings,
        vec![Finding {
            severity: Severity::Error,
            code: "unevaluable",
            file: Some("/etc/default/kdump-tools".into()),
            line: Some(18),
            variable: Some("KDUMP_CMDLINE_APPEND".into()),
            message: "command substitution $(…) is not evaluated".into(),
        }]
    );
    assert_eq!(
        plan.verdict,
        Verdict::Delegate {
            tool: "Debian/Ubuntu kdump-tools".into(),
            command: "kdump-config reload".into()
        }
    );
}

#[test]
fn json_carries_the_same_plan() {
    let json: serde_json::Value =
        serde_json::to_value(plan_of("plan-debian-record-mismatch")).unwrap();
    assert_eq!(json["service"], "kdump_tools");
    assert_eq!(json["parts"]["kernel"]["value"], "/var/lib/kdump/vmlinuz");
    assert_eq!(
        json["parts"]["kernel"]["from"][0],
        serde_json::json!({"kind": "assignment", "file": "/etc/default/kdump-tools", "line": 6, "variable": "KDUMP_KERNEL"})
    );
    assert_eq!(json["parts"]["syscall"]["value"], "kexec_load");
    assert_eq!(json["findings"][0]["code"], "record-differs");
    assert_eq!(json["findings"][0]["file"], "/var/crash/kexec_cmd");
    assert_eq!(json["findings"][0]["line"], 1);
    assert_eq!(
        json["verdict"],
        serde_json::json!({"kind": "delegate", "tool": "Debian/Ubuntu kdump-tools", "command": "kdump-config reload"})
    );
}

// --- The acceptance test: Debian's real kdump-config on the same fixtures ------------------------------------

/// Under CI a missing precondition fails the test; locally it skips, saying so.
fn precondition(what: &str) {
    precondition::missing(what);
}

const KDUMP_TOOLS_CACHE: &str = "/var/tmp/kdump-hotplugd-kdump-tools";

/// Debian's kdump-config from the real package (apt-get download, unpacked; cached).
fn real_kdump_config() -> Result<PathBuf, String> {
    let cache = Path::new(KDUMP_TOOLS_CACHE);
    let script = cache.join("root/usr/sbin/kdump-config");
    if script.is_file() {
        return Ok(script);
    }
    std::fs::create_dir_all(cache).map_err(|e| format!("{}: {e}", cache.display()))?;
    let run = |cmd: &mut Command| -> Result<(), String> {
        let out = cmd
            .current_dir(cache)
            .output()
            .map_err(|e| format!("{cmd:?}: {e}"))?;
        if out.status.success() {
            Ok(())
        } else {
            Err(format!("{cmd:?}: {}", String::from_utf8_lossy(&out.stderr)))
        }
    };
    run(Command::new("apt-get").args(["download", "kdump-tools"]))?;
    let deb = std::fs::read_dir(cache)
        .map_err(|e| e.to_string())?
        .flatten()
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|x| x == "deb"))
        .ok_or("apt-get download left no .deb")?;
    run(Command::new("dpkg-deb").arg("-x").arg(&deb).arg("root"))?;
    script
        .is_file()
        .then_some(script)
        .ok_or_else(|| "the package has no usr/sbin/kdump-config".into())
}

struct Run {
    stdout: String,
    argv: Vec<String>,
    record: String,
}

fn run_kdump_config(script: &Path, fixture_name: &str, mode: &str) -> Run {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let harness = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/plan/run-kdump-config.sh");
    let status = Command::new("sh")
        .arg(&harness)
        .arg(script)
        .arg(fixture(fixture_name))
        .arg(mode)
        .arg(&out)
        .status()
        .unwrap();
    assert!(
        status.success(),
        "{harness:?} failed for {fixture_name} {mode}"
    );
    let read = |ext: &str| std::fs::read_to_string(out.with_extension(ext)).unwrap_or_default();
    assert_eq!(
        read("status").trim(),
        "0",
        "kdump-config {mode} on {fixture_name}: {}",
        read("stderr")
    );
    let argv = std::fs::read(out.with_extension("argv")).unwrap_or_default();
    Run {
        stdout: read("stdout"),
        argv: String::from_utf8(argv)
            .unwrap()
            .split_terminator('\0')
            .map(str::to_owned)
            .collect(),
        record: read("record"),
    }
}

#[test]
fn debian_plans_equal_what_the_real_kdump_config_prints_and_runs() {
    if !nix::unistd::geteuid().is_root() {
        return precondition("root (kdump-config runs chrooted in a private mount namespace)");
    }
    let script = match real_kdump_config() {
        Ok(script) => script,
        Err(e) => return precondition(&format!("Debian's kdump-tools package: {e}")),
    };
    for name in [
        "plan-debian",
        "plan-debian-append",
        "plan-debian-secureboot",
        "plan-debian-record-mismatch",
    ] {
        let plan = plan_of(name);
        let parts = plan.parts.as_ref().expect("a plan");

        // `kdump-config test`: the line after "kexec command to be used:" is the plan's command, byte for byte.
        let test = run_kdump_config(&script, name, "test");
        let printed = test
            .stdout
            .lines()
            .skip_while(|l| *l != "kexec command to be used:")
            .nth(1)
            .unwrap_or_else(|| panic!("{name}: no kexec command in {}", test.stdout));
        assert_eq!(
            Some(printed.trim_start()),
            parts.command.as_deref(),
            "{name}: kdump-config test"
        );

        // `kdump-config load` with a recording kexec: what kexec really gets is the plan's parts.
        let load = run_kdump_config(&script, name, "load");
        assert!(!load.argv.is_empty(), "{name}: kexec was not run");
        let mut argv = vec!["/sbin/kexec".to_owned()];
        argv.extend(load.argv);
        let got = parse_kexec_argv(&argv);
        let planned = KexecCommand {
            options: parts.kexec_options.value.clone(),
            cmdline: Some(parts.cmdline.value.clone()),
            initrd: parts.initrd.value.clone(),
            kernel: Some(parts.kernel.value.clone()),
            extra: got.extra.clone(),
        };
        assert_eq!(got, planned, "{name}: kdump-config load");
        // Extra words only where the plan says kdump-config mis-splits its own command.
        let misquotes = plan.findings.iter().any(|f| f.code == "tool-misquotes");
        assert_eq!(!got.extra.is_empty(), misquotes, "{name}: {:?}", got.extra);
        // And the record it leaves is the printed command.
        assert_eq!(
            load.record.trim_end(),
            printed.trim_start(),
            "{name}: kexec_cmd record"
        );
    }
}

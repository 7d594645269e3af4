//! No kdump service: kdump-hotplugd's own plan, the derivation `edge::kexec::plan` makes today when the config
//! leaves `[loader]` unset (the first kernel and initrd candidate that exists, the running command line minus
//! what a crash kernel must not inherit, plus what a dump kernel wants), loaded with its native
//! `kexec_file_load`. The command line is edited with the kernel's own word splitting ([`crate::core::cmdline`]),
//! so a quoted value stays one word; for unquoted lines the result is the same as today's.

use super::{proc_cmdline, Ask, Finding, Part, Parts, Source, Syscall};
use crate::core::cmdline::Cmdline;

/// Options the crash kernel must not inherit: the reservation itself, boot-loader bookkeeping, and memory
/// tuning sized for the full machine that cannot fit in the crash reservation (as `edge::kexec::CMDLINE_REMOVE`).
pub const CMDLINE_REMOVE: &[&str] = &[
    "crashkernel",
    "BOOT_IMAGE",
    "initrd",
    "hugepages",
    "hugepagesz",
    "default_hugepagesz",
    "hugetlb_cma",
    "cma",
    "log_buf_len",
    "swiotlb",
    "slub_debug",
    "nr_cpus",
    "maxcpus",
    "kfence.sample_interval",
];

/// What a dump kernel wants (as `edge::kexec::CMDLINE_APPEND`).
pub const CMDLINE_APPEND: &str = "reset_devices irqpoll nr_cpus=1 cma=0 hugetlb_cma=0";

/// Crash kernel images to try, in order (as `edge::kexec::kernel_candidates`).
pub fn kernel_candidates(release: &str) -> Vec<String> {
    vec![
        format!("/boot/vmlinuz-{release}"),
        format!("/boot/vmlinux-{release}"),
        "/boot/vmlinuz".to_owned(),
    ]
}

/// The distributions' kdump initrds first, then the boot initrd (as `edge::kexec::initrd_candidates`).
pub fn initrd_candidates(release: &str) -> Vec<String> {
    vec![
        format!("/var/lib/kdump/initrd.img-{release}"),
        "/var/lib/kdump/initrd.img".to_owned(),
        format!("/boot/initramfs-{release}kdump.img"),
        format!("/boot/initrd-{release}-kdump"),
        "/var/lib/kdump/initrd".to_owned(),
        format!("/boot/initrd.img-{release}"),
        format!("/boot/initramfs-{release}.img"),
        format!("/boot/initrd-{release}"),
    ]
}

/// The crash kernel's command line from the running one.
pub fn crash_cmdline(running: &str) -> String {
    let mut cmdline = Cmdline::parse(running);
    cmdline.remove(CMDLINE_REMOVE);
    cmdline.append(CMDLINE_APPEND);
    cmdline.to_string()
}

pub fn plan(ask: &Ask) -> (Option<Parts>, Vec<Finding>) {
    let release = &ask.inputs.release;
    let kernels = kernel_candidates(release);
    let Some(kernel) = kernels.iter().find(|k| ask.exists(k)).cloned() else {
        return (
            None,
            vec![Finding::error(
                "kernel-missing",
                format!(
                    "no crash kernel image: none of {} exists; set loader.kernel",
                    kernels.join(", ")
                ),
            )],
        );
    };
    let initrd = initrd_candidates(release)
        .into_iter()
        .find(|i| ask.exists(i));
    let running = match proc_cmdline(ask) {
        Ok(line) => line,
        Err(finding) => return (None, vec![finding]),
    };
    let rule = |what: &str| Source::Daemon {
        rule: what.to_owned(),
    };
    let parts = Parts {
        kernel: Part::new(
            kernel,
            vec![rule(
                "first existing of /boot/vmlinuz-R, /boot/vmlinux-R, /boot/vmlinuz",
            )],
        ),
        initrd: Part::new(
            initrd,
            vec![rule(
                "first existing kdump initrd (Debian, Fedora, SUSE names), else the boot initrd",
            )],
        ),
        cmdline: Part::new(
            crash_cmdline(&running),
            vec![Source::ProcCmdline {
                rule: format!(
                    "kdump-hotplugd removes {} and appends {CMDLINE_APPEND}",
                    CMDLINE_REMOVE.join(" ")
                ),
            }],
        ),
        kexec_options: Part::new(
            Vec::new(),
            vec![rule("none: the daemon calls kexec_file_load itself")],
        ),
        syscall: Part::new(Syscall::KexecFileLoad, vec![rule("native kexec_file_load")]),
        command: None,
    };
    (Some(parts), Vec::new())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The same results as `edge::kexec::crash_cmdline` for unquoted lines; quoted values stay whole.
    #[test]
    fn crash_cmdline_matches_todays_derivation() {
        assert_eq!(
            crash_cmdline(
                "BOOT_IMAGE=/vmlinuz root=/dev/vda crashkernel=256M nr_cpus=4 quiet -- single"
            ),
            "root=/dev/vda quiet reset_devices irqpoll nr_cpus=1 cma=0 hugetlb_cma=0 -- single"
        );
        assert_eq!(
            crash_cmdline(r#"root=/dev/vda dyndbg="file foo.c +p" crashkernel=1G"#),
            r#"root=/dev/vda dyndbg="file foo.c +p" reset_devices irqpoll nr_cpus=1 cma=0 hugetlb_cma=0"#
        );
    }
}

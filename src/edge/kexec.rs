//! Loading the crash kernel for real: `kexec_file_load(2)` from the daemon itself, or kexec-tools (`kexec -s -p`,
//! and `kexec -c -p` when the kernel's own header buffer is too small).
//!
//! What to load ([`KernelPlan`]) comes from the config or is discovered from the running system; both loaders
//! take the same plan, so a fallback to kexec-tools loads the very same kernel, initrd and command line.

use std::ffi::CString;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::config::LoaderSettings;
use crate::core::decide::LoaderChoice;
use crate::edge::{BoxFuture, LoadError, LoadReport, LoadRequest, Loader};
use crate::host::sysroot::Sysroot;

/// `kexec_file_load` flags (include/uapi/linux/kexec.h).
pub const KEXEC_FILE_UNLOAD: libc::c_ulong = 0x1;
pub const KEXEC_FILE_ON_CRASH: libc::c_ulong = 0x2;
pub const KEXEC_FILE_NO_INITRAMFS: libc::c_ulong = 0x4;

/// The kernel, initrd and command line of the crash kernel.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KernelPlan {
    /// Host path (already under the sysroot).
    pub kernel: PathBuf,
    pub initrd: Option<PathBuf>,
    pub cmdline: String,
    /// Where each part came from, for the log (`config`, `discovered`).
    pub origin: PlanOrigin,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PlanOrigin {
    pub kernel: &'static str,
    pub initrd: &'static str,
    pub cmdline: &'static str,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PlanError {
    #[error(
        "no crash kernel image: none of {tried} exists; set loader.kernel in /etc/kdump-hotplugd/config.toml"
    )]
    NoKernel { tried: String },
    #[error("loader.kernel {0} does not exist")]
    KernelMissing(PathBuf),
    #[error("loader.initrd {0} does not exist")]
    InitrdMissing(PathBuf),
    #[error("cannot read the running kernel's command line: {0}")]
    Cmdline(String),
}

/// Options the crash kernel must not inherit: the reservation itself, boot-loader bookkeeping, and memory
/// tuning sized for the full machine that cannot fit in the crash reservation.
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

/// What a dump kernel wants: reset devices the crashed kernel left running, poll interrupts that may never be
/// routed, one CPU, and no large memory carve-outs.
pub const CMDLINE_APPEND: &[&str] = &[
    "reset_devices",
    "irqpoll",
    "nr_cpus=1",
    "cma=0",
    "hugetlb_cma=0",
];

/// The crash kernel's command line from the running one: drops [`CMDLINE_REMOVE`] and appends
/// [`CMDLINE_APPEND`]. Arguments after `--` belong to init and stay last.
pub fn crash_cmdline(running: &str) -> String {
    let words: Vec<&str> = running.split_whitespace().collect();
    let split = words.iter().position(|w| *w == "--").unwrap_or(words.len());
    let (kernel_args, init_args) = words.split_at(split);
    let mut out: Vec<&str> = kernel_args
        .iter()
        .copied()
        .filter(|word| {
            let name = word.split_once('=').map_or(*word, |(name, _)| name);
            !CMDLINE_REMOVE.contains(&name)
        })
        .collect();
    out.extend(CMDLINE_APPEND);
    out.extend(init_args);
    out.join(" ")
}

/// Crash kernel images to try, in order, for kernel `release`.
pub fn kernel_candidates(release: &str) -> Vec<String> {
    vec![
        format!("/boot/vmlinuz-{release}"),
        format!("/boot/vmlinux-{release}"),
        "/boot/vmlinuz".to_owned(),
    ]
}

/// The distributions' dedicated kdump initrds first (they hold the dump-saving logic), then the boot initrd.
pub fn initrd_candidates(release: &str) -> Vec<String> {
    vec![
        // Debian/Ubuntu kdump-tools
        format!("/var/lib/kdump/initrd.img-{release}"),
        "/var/lib/kdump/initrd.img".to_owned(),
        // Fedora/RHEL kdump-utils
        format!("/boot/initramfs-{release}kdump.img"),
        // SUSE kdump
        format!("/boot/initrd-{release}-kdump"),
        "/var/lib/kdump/initrd".to_owned(),
        // The boot initrd: boots, but has no dump-saving logic of its own.
        format!("/boot/initrd.img-{release}"),
        format!("/boot/initramfs-{release}.img"),
        format!("/boot/initrd-{release}"),
    ]
}

/// The running kernel's release: `/proc/sys/kernel/osrelease` under the sysroot, else uname(2).
pub fn kernel_release(sysroot: &Sysroot) -> String {
    if let Ok(Some(text)) = sysroot.read_optional("/proc/sys/kernel/osrelease") {
        return text.trim().to_owned();
    }
    nix::sys::utsname::uname()
        .map(|u| u.release().to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// Builds the plan from the config, discovering what it leaves unset.
pub fn plan(settings: &LoaderSettings, sysroot: &Sysroot) -> Result<KernelPlan, PlanError> {
    let release = kernel_release(sysroot);
    let mut origin = PlanOrigin::default();
    let kernel = match &settings.kernel {
        Some(path) => {
            let host = sysroot.path(&path.to_string_lossy());
            if !host.exists() {
                return Err(PlanError::KernelMissing(path.clone()));
            }
            origin.kernel = "config";
            host
        }
        None => {
            let candidates = kernel_candidates(&release);
            let found = candidates.iter().find(|c| sysroot.exists(c));
            let Some(found) = found else {
                return Err(PlanError::NoKernel {
                    tried: candidates.join(", "),
                });
            };
            origin.kernel = "discovered";
            sysroot.path(found)
        }
    };
    let initrd = match &settings.initrd {
        Some(path) => {
            let host = sysroot.path(&path.to_string_lossy());
            if !host.exists() {
                return Err(PlanError::InitrdMissing(path.clone()));
            }
            origin.initrd = "config";
            Some(host)
        }
        None => {
            origin.initrd = "discovered";
            initrd_candidates(&release)
                .iter()
                .find(|c| sysroot.exists(c))
                .map(|c| sysroot.path(c))
        }
    };
    let cmdline = match &settings.cmdline {
        Some(cmdline) => {
            origin.cmdline = "config";
            cmdline.clone()
        }
        None => {
            origin.cmdline = "derived from /proc/cmdline";
            let running = sysroot
                .read_to_string("/proc/cmdline")
                .map_err(|e| PlanError::Cmdline(e.to_string()))?;
            crash_cmdline(&running)
        }
    };
    Ok(KernelPlan {
        kernel,
        initrd,
        cmdline,
        origin,
    })
}

/// The arguments of one `kexec_file_load` call.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileLoadArgs {
    /// Includes the terminating NUL, as the syscall wants it counted.
    pub cmdline: CString,
    pub flags: libc::c_ulong,
    pub with_initrd: bool,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("the crash kernel command line contains a NUL byte")]
pub struct NulInCmdline;

/// Crash load (`ON_CRASH`), without initrd when there is none. One call replaces the loaded image: never
/// UNLOAD first (a crash between the two would find no crash kernel).
pub fn file_load_args(plan: &KernelPlan) -> Result<FileLoadArgs, NulInCmdline> {
    let mut flags = KEXEC_FILE_ON_CRASH;
    if plan.initrd.is_none() {
        flags |= KEXEC_FILE_NO_INITRAMFS;
    }
    Ok(FileLoadArgs {
        cmdline: CString::new(plan.cmdline.clone()).map_err(|_| NulInCmdline)?,
        flags,
        with_initrd: plan.initrd.is_some(),
    })
}

/// What a failed `kexec_file_load` means, and whether trying again can help.
pub fn explain_errno(errno: i32) -> LoadError {
    let (message, retry) = match errno {
        libc::EPERM => (
            "kexec_file_load: permission denied: the daemon lacks CAP_SYS_BOOT, kexec is disabled \
             (kernel.kexec_load_disabled=1), or the kernel is locked down and the image is not signed"
                .to_owned(),
            false,
        ),
        libc::ENOMEM | libc::EADDRNOTAVAIL => (
            "kexec_file_load: the crash kernel, initrd and header do not fit the crashkernel= reservation \
             (make it larger or the initrd smaller); no crash kernel is loaded now"
                .to_owned(),
            false,
        ),
        libc::ENOEXEC => (
            "kexec_file_load: the kernel image is not a bootable image for this architecture (or is not \
             relocatable); no crash kernel is loaded now"
                .to_owned(),
            false,
        ),
        libc::EKEYREJECTED => (
            "kexec_file_load: the kernel image's signature was rejected (lockdown or \
             CONFIG_KEXEC_SIG_FORCE needs a kernel signed with a trusted key); no crash kernel is loaded now"
                .to_owned(),
            false,
        ),
        libc::EBUSY => (
            "kexec_file_load: another kexec operation holds the kexec lock; will retry".to_owned(),
            true,
        ),
        libc::EINVAL => (
            "kexec_file_load: the kernel rejected the load (invalid arguments, or more memory ranges than its \
             header buffer holds); no crash kernel is loaded now"
                .to_owned(),
            false,
        ),
        libc::ENOSYS => (
            "kexec_file_load: this kernel has no kexec_file_load (CONFIG_KEXEC_FILE=n or no kexec at all); \
             only kexec_load (kexec -c -p) or the distribution's command (loader.kind = \"command\") can load \
             here"
                .to_owned(),
            false,
        ),
        other => (
            format!(
                "kexec_file_load: {}",
                std::io::Error::from_raw_os_error(other)
            ),
            true,
        ),
    };
    LoadError { message, retry }
}

fn open_image(path: &Path, what: &str) -> Result<std::fs::File, LoadError> {
    std::fs::File::open(path).map_err(|e| LoadError {
        message: format!("cannot open the {what} {}: {e}", path.display()),
        retry: false,
    })
}

/// The one syscall. Blocking (under TCG it takes about a second): run it off the event loop.
fn kexec_file_load(plan: &KernelPlan) -> Result<(), LoadError> {
    let args = file_load_args(plan).map_err(|e| LoadError {
        message: e.to_string(),
        retry: false,
    })?;
    let kernel = open_image(&plan.kernel, "crash kernel image")?;
    let initrd = match &plan.initrd {
        Some(path) => Some(open_image(path, "crash initrd")?),
        None => None,
    };
    let initrd_fd = initrd.as_ref().map_or(-1, |f| f.as_raw_fd());
    let cmdline = args.cmdline.as_bytes_with_nul();
    // SAFETY: the fds stay open for the call, and the cmdline pointer and length describe a live
    // NUL-terminated buffer.
    let result = unsafe {
        libc::syscall(
            libc::SYS_kexec_file_load,
            kernel.as_raw_fd() as libc::c_long,
            initrd_fd as libc::c_long,
            cmdline.len() as libc::c_ulong,
            cmdline.as_ptr(),
            args.flags,
        )
    };
    if result == 0 {
        Ok(())
    } else {
        Err(explain_errno(
            std::io::Error::last_os_error().raw_os_error().unwrap_or(0),
        ))
    }
}

fn describe_plan(plan: &KernelPlan) -> String {
    format!(
        "kernel {}, initrd {}, cmdline \"{}\"",
        plan.kernel.display(),
        plan.initrd
            .as_ref()
            .map_or("none".to_owned(), |p| p.display().to_string()),
        plan.cmdline
    )
}

/// `kexec_file_load(2)` from the daemon itself.
pub struct NativeLoader {
    plan: KernelPlan,
}

impl NativeLoader {
    pub fn new(plan: KernelPlan) -> Self {
        Self { plan }
    }
}

impl Loader for NativeLoader {
    fn name(&self) -> String {
        "kexec_file_load".to_owned()
    }

    fn load(&self, request: LoadRequest) -> BoxFuture<Result<LoadReport, LoadError>> {
        let plan = self.plan.clone();
        Box::pin(async move {
            if request.method == LoaderChoice::KexecLoad {
                // It would fail with EINVAL after freeing the loaded image.
                return Err(LoadError {
                    message:
                        "refusing kexec_file_load: the header does not fit the kernel's buffer"
                            .into(),
                    retry: false,
                });
            }
            let detail = describe_plan(&plan);
            tokio::task::spawn_blocking(move || kexec_file_load(&plan))
                .await
                .map_err(|e| LoadError {
                    message: format!("kexec_file_load task failed: {e}"),
                    retry: true,
                })??;
            Ok(LoadReport {
                loader: "kexec_file_load".to_owned(),
                detail,
            })
        })
    }
}

/// How kexec-tools should load.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KexecToolsMode {
    /// `kexec -s -p`: `kexec_file_load`, the kernel builds (and on 6.6+ updates) the header.
    FileLoad,
    /// `kexec -c -p`: `kexec_load`, kexec-tools builds the header from `/proc/iomem` at its real size; the
    /// kernel will no longer update it on hotplug.
    Load,
}

/// The argv after the program name.
pub fn kexec_tools_args(plan: &KernelPlan, mode: KexecToolsMode) -> Vec<String> {
    let mut args = vec![
        match mode {
            KexecToolsMode::FileLoad => "-s",
            KexecToolsMode::Load => "-c",
        }
        .to_owned(),
        "-p".to_owned(),
        plan.kernel.display().to_string(),
    ];
    if let Some(initrd) = &plan.initrd {
        args.push(format!("--initrd={}", initrd.display()));
    }
    args.push(format!("--command-line={}", plan.cmdline));
    args
}

/// Whether a failed kexec-tools run is worth retrying: only when the kernel said the kexec lock was busy, or
/// the run timed out. Its other failures (no reservation, bad image, lockdown) stay until someone acts, and a
/// failed crash load has already dropped the old image: retrying would only repeat that.
pub fn kexec_tools_retry(mut error: LoadError) -> LoadError {
    let message = error.message.to_ascii_lowercase();
    error.retry = message.contains("busy") || message.contains("killed after");
    error
}

/// kexec-tools, as a child process with a timeout.
pub struct KexecToolsLoader {
    program: PathBuf,
    plan: KernelPlan,
    mode: KexecToolsMode,
    timeout: Duration,
}

impl KexecToolsLoader {
    pub fn new(
        program: PathBuf,
        plan: KernelPlan,
        mode: KexecToolsMode,
        timeout: Duration,
    ) -> Self {
        Self {
            program,
            plan,
            mode,
            timeout,
        }
    }

    fn command_line(&self) -> String {
        let mut line = self.program.display().to_string();
        for arg in kexec_tools_args(&self.plan, self.mode) {
            line.push(' ');
            line.push_str(&arg);
        }
        line
    }
}

impl Loader for KexecToolsLoader {
    fn name(&self) -> String {
        match self.mode {
            KexecToolsMode::FileLoad => "kexec -s -p".to_owned(),
            KexecToolsMode::Load => "kexec -c -p".to_owned(),
        }
    }

    fn load(&self, request: LoadRequest) -> BoxFuture<Result<LoadReport, LoadError>> {
        let mut command = tokio::process::Command::new(&self.program);
        command.args(kexec_tools_args(&self.plan, self.mode));
        let name = self.name();
        let line = self.command_line();
        let timeout = self.timeout;
        let mode = self.mode;
        Box::pin(async move {
            if mode == KexecToolsMode::FileLoad && request.method == LoaderChoice::KexecLoad {
                return Err(LoadError {
                    message: "refusing kexec -s: the header does not fit the kernel's buffer"
                        .into(),
                    retry: false,
                });
            }
            let output = super::command::run(command, &line, timeout)
                .await
                .map_err(kexec_tools_retry)?;
            let mut detail = output;
            if mode == KexecToolsMode::Load {
                let note =
                    "loaded with kexec_load: the kernel no longer updates this header on hotplug, \
                            later changes need reloads again";
                tracing::warn!("{note}");
                detail = if detail.is_empty() {
                    note.to_owned()
                } else {
                    format!("{note}; {detail}")
                };
            }
            Ok(LoadReport {
                loader: name,
                detail,
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan_with(initrd: Option<&str>) -> KernelPlan {
        KernelPlan {
            kernel: PathBuf::from("/boot/vmlinuz-6.12"),
            initrd: initrd.map(PathBuf::from),
            cmdline: "root=/dev/vda ro reset_devices".into(),
            origin: PlanOrigin::default(),
        }
    }

    #[test]
    fn crash_cmdline_drops_reservation_and_tuning_and_keeps_init_args_last() {
        assert_eq!(
            crash_cmdline(
                "BOOT_IMAGE=/vmlinuz-6.12 root=UUID=1 ro crashkernel=256M quiet hugepages=64 nr_cpus=8 \
                 console=ttyS0 -- --init-arg\n"
            ),
            "root=UUID=1 ro quiet console=ttyS0 reset_devices irqpoll nr_cpus=1 cma=0 hugetlb_cma=0 -- --init-arg"
        );
        assert_eq!(
            crash_cmdline(""),
            "reset_devices irqpoll nr_cpus=1 cma=0 hugetlb_cma=0"
        );
    }

    #[test]
    fn file_load_is_one_crash_load_never_an_unload() {
        let with = file_load_args(&plan_with(Some("/var/lib/kdump/initrd.img"))).unwrap();
        assert_eq!(with.flags, KEXEC_FILE_ON_CRASH);
        assert_eq!(with.flags & KEXEC_FILE_UNLOAD, 0);
        assert!(with.with_initrd);
        assert_eq!(
            with.cmdline.as_bytes_with_nul(),
            b"root=/dev/vda ro reset_devices\0"
        );
        let without = file_load_args(&plan_with(None)).unwrap();
        assert_eq!(without.flags, KEXEC_FILE_ON_CRASH | KEXEC_FILE_NO_INITRAMFS);
        let mut bad = plan_with(None);
        bad.cmdline = "a\0b".into();
        assert_eq!(file_load_args(&bad), Err(NulInCmdline));
    }

    #[test]
    fn errno_messages_say_what_to_do_and_only_ebusy_retries() {
        let eperm = explain_errno(libc::EPERM);
        assert!(eperm.message.contains("CAP_SYS_BOOT") && eperm.message.contains("locked down"));
        assert!(!eperm.retry);
        for errno in [libc::ENOMEM, libc::EADDRNOTAVAIL] {
            let e = explain_errno(errno);
            assert!(
                e.message.contains("crashkernel= reservation"),
                "{}",
                e.message
            );
            assert!(!e.retry);
        }
        assert!(explain_errno(libc::ENOEXEC)
            .message
            .contains("not a bootable image"));
        assert!(explain_errno(libc::EKEYREJECTED)
            .message
            .contains("signature"));
        let busy = explain_errno(libc::EBUSY);
        assert!(busy.retry && busy.message.contains("kexec lock"));
        assert!(explain_errno(libc::EINVAL)
            .message
            .contains("no crash kernel is loaded now"));
        assert!(explain_errno(libc::EIO)
            .message
            .starts_with("kexec_file_load: "));
    }

    #[test]
    fn kexec_tools_failures_retry_only_when_busy_or_timed_out() {
        let failed = |message: &str| {
            kexec_tools_retry(LoadError {
                message: message.into(),
                retry: true,
            })
            .retry
        };
        assert!(failed(
            "kexec -s -p failed (exit status: 255): kexec_file_load failed: Device or resource busy"
        ));
        assert!(failed("kexec -s -p: killed after 120000 ms"));
        assert!(!failed(
            "kexec -s -p failed (exit status: 1): Memory for crashkernel is not reserved"
        ));
    }

    #[test]
    fn kexec_tools_arguments_for_both_modes() {
        let plan = plan_with(Some("/boot/initrd.img"));
        assert_eq!(
            kexec_tools_args(&plan, KexecToolsMode::FileLoad),
            [
                "-s",
                "-p",
                "/boot/vmlinuz-6.12",
                "--initrd=/boot/initrd.img",
                "--command-line=root=/dev/vda ro reset_devices"
            ]
        );
        assert_eq!(
            kexec_tools_args(&plan_with(None), KexecToolsMode::Load),
            [
                "-c",
                "-p",
                "/boot/vmlinuz-6.12",
                "--command-line=root=/dev/vda ro reset_devices"
            ]
        );
    }

    fn touch(root: &Path, path: &str) {
        let full = root.join(path.trim_start_matches('/'));
        std::fs::create_dir_all(full.parent().unwrap()).unwrap();
        std::fs::write(full, "x").unwrap();
    }

    #[test]
    fn plan_discovers_kernel_kdump_initrd_and_cmdline_under_the_sysroot() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::create_dir_all(root.join("proc/sys/kernel")).unwrap();
        std::fs::write(root.join("proc/sys/kernel/osrelease"), "6.12.0-test\n").unwrap();
        std::fs::write(
            root.join("proc/cmdline"),
            "root=/dev/vda crashkernel=256M\n",
        )
        .unwrap();
        let sysroot = Sysroot::new(root);
        let settings = LoaderSettings::default();
        assert!(matches!(
            plan(&settings, &sysroot),
            Err(PlanError::NoKernel { tried }) if tried.contains("/boot/vmlinuz-6.12.0-test")
        ));
        touch(root, "/boot/vmlinuz-6.12.0-test");
        touch(root, "/boot/initrd.img-6.12.0-test");
        let boot = plan(&settings, &sysroot).unwrap();
        assert_eq!(boot.kernel, root.join("boot/vmlinuz-6.12.0-test"));
        assert_eq!(boot.initrd, Some(root.join("boot/initrd.img-6.12.0-test")));
        assert_eq!(
            boot.cmdline,
            "root=/dev/vda reset_devices irqpoll nr_cpus=1 cma=0 hugetlb_cma=0"
        );
        // The distribution's kdump initrd wins over the boot one.
        touch(root, "/var/lib/kdump/initrd.img-6.12.0-test");
        assert_eq!(
            plan(&settings, &sysroot).unwrap().initrd,
            Some(root.join("var/lib/kdump/initrd.img-6.12.0-test"))
        );
        let configured = LoaderSettings {
            kernel: Some(PathBuf::from("/boot/missing")),
            ..LoaderSettings::default()
        };
        assert_eq!(
            plan(&configured, &sysroot),
            Err(PlanError::KernelMissing(PathBuf::from("/boot/missing")))
        );
        let configured = LoaderSettings {
            kernel: Some(PathBuf::from("/boot/vmlinuz-6.12.0-test")),
            cmdline: Some("console=ttyS0".into()),
            ..LoaderSettings::default()
        };
        let from_config = plan(&configured, &sysroot).unwrap();
        assert_eq!(from_config.cmdline, "console=ttyS0");
        assert_eq!(from_config.origin.kernel, "config");
    }
}

// Skip locally, fail under CI=true: the same rule as the integration tests.
#[cfg(test)]
#[path = "../../tests/common/precondition.rs"]
mod precondition;

#[cfg(test)]
mod syscall_tests {
    use super::*;
    use std::sync::Arc;

    /// The real syscall, only where it cannot load anything: a kernel without kexec support answers and the
    /// answer is explained (on a kexec-capable host this test would replace the crash kernel: a missing
    /// precondition, so it skips, or fails under CI=true).
    #[tokio::test]
    async fn the_kernels_refusal_is_explained() {
        if Path::new("/sys/kernel/kexec_crash_loaded").exists() {
            return super::precondition::missing(
                "this kernel supports kexec (/sys/kernel/kexec_crash_loaded exists): the test would really load a \
                 crash kernel; run it on a kernel without kexec",
            );
        }
        let plan = KernelPlan {
            kernel: PathBuf::from("/proc/self/exe"),
            initrd: None,
            cmdline: "console=ttyS0".into(),
            origin: PlanOrigin::default(),
        };
        let request = LoadRequest {
            ranges: Arc::new(Vec::new()),
            cpus: Default::default(),
            method: LoaderChoice::Configured,
            reason: "test".into(),
        };
        let error = NativeLoader::new(plan.clone())
            .load(request.clone())
            .await
            .unwrap_err();
        eprintln!("kernel said: {}", error.message);
        assert!(
            error.message.starts_with("kexec_file_load: "),
            "{}",
            error.message
        );
        assert!(!error.retry, "{}", error.message);

        let refused = NativeLoader::new(plan)
            .load(LoadRequest {
                method: LoaderChoice::KexecLoad,
                ..request
            })
            .await
            .unwrap_err();
        assert!(refused.message.starts_with("refusing kexec_file_load"));
    }
}

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

/// The kernel, initrd, command line and kexec-tools options of the crash kernel: the distro's plan
/// (`core::plan`) with `[loader]` overrides, resolved to host paths.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct KernelPlan {
    /// Host path (already under the sysroot).
    pub kernel: PathBuf,
    pub initrd: Option<PathBuf>,
    pub cmdline: String,
    /// The plan's kexec-tools options other than the syscall choice (`-s`/`-c`/`-a`) and `-p`, which the loader
    /// sets itself; `kexec_file_load` from the daemon cannot honour them (see [`NativeLoader`]).
    pub options: Vec<String>,
    /// Where each part came from, for the log.
    pub origin: PlanOrigin,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PlanOrigin {
    pub kernel: String,
    pub initrd: String,
    pub cmdline: String,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PlanError {
    #[error("{service}: no plan could be derived ({why})")]
    NoParts { service: String, why: String },
    #[error("loader.kernel {0} does not exist")]
    KernelMissing(PathBuf),
    #[error("loader.initrd {0} does not exist")]
    InitrdMissing(PathBuf),
    #[error("the plan's crash kernel {0} does not exist")]
    PlanKernelMissing(PathBuf),
    #[error("the plan's initrd {0} does not exist")]
    PlanInitrdMissing(PathBuf),
}

/// kexec-tools options the loaders set themselves: the syscall choice and the crash-load flag.
const LOADER_OWNED_OPTIONS: &[&str] = &[
    "-p",
    "--load-panic",
    "-s",
    "--kexec-file-syscall",
    "-c",
    "--kexec-syscall",
    "-a",
    "--kexec-syscall-auto",
];

fn sources(from: &[crate::core::plan::Source]) -> String {
    from.iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

/// A plan path on the host: the distros' tools load through symlinks (`/var/lib/kdump/vmlinuz` points at
/// `/boot/vmlinuz-<release>`), which must be followed inside the sysroot, not on the host running a fixture.
fn inside(sysroot: &Sysroot, path: &str) -> Option<PathBuf> {
    crate::host::plan_inputs::resolve(sysroot.root(), path)
}

/// The plan the `[loader]` keys alone describe (kernel and command line set; initrd optional).
fn configured_only(settings: &LoaderSettings, sysroot: &Sysroot) -> Result<KernelPlan, PlanError> {
    let kernel = settings.kernel.clone().expect("checked by the caller");
    let host = sysroot.path(&kernel.to_string_lossy());
    if !host.exists() {
        return Err(PlanError::KernelMissing(kernel));
    }
    let initrd = match &settings.initrd {
        Some(path) => {
            let host = sysroot.path(&path.to_string_lossy());
            if !host.exists() {
                return Err(PlanError::InitrdMissing(path.clone()));
            }
            Some(host)
        }
        None => None,
    };
    Ok(KernelPlan {
        kernel: host,
        initrd,
        cmdline: settings.cmdline.clone().expect("checked by the caller"),
        options: Vec::new(),
        origin: PlanOrigin {
            kernel: "config: loader.kernel".to_owned(),
            initrd: if settings.initrd.is_some() {
                "config: loader.initrd".to_owned()
            } else {
                "none".to_owned()
            },
            cmdline: "config: loader.cmdline".to_owned(),
        },
    })
}

/// The plan to load: the distro's `plan` with the `[loader]` keys set in `settings` overriding each part.
pub fn kernel_plan(
    plan: &crate::core::plan::Plan,
    settings: &LoaderSettings,
    sysroot: &Sysroot,
) -> Result<KernelPlan, PlanError> {
    // The administrator's `[loader]` keys stand on their own: with kernel and command line set, a plan that
    // could not be derived does not matter.
    if plan.parts.is_none() && settings.kernel.is_some() && settings.cmdline.is_some() {
        return configured_only(settings, sysroot);
    }
    let Some(parts) = &plan.parts else {
        let why = plan
            .findings
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("; ");
        return Err(PlanError::NoParts {
            service: plan.service.name().to_owned(),
            why: if why.is_empty() {
                "nothing to load".to_owned()
            } else {
                why
            },
        });
    };
    let mut origin = PlanOrigin::default();
    let kernel = match &settings.kernel {
        Some(path) => {
            let host = sysroot.path(&path.to_string_lossy());
            if !host.exists() {
                return Err(PlanError::KernelMissing(path.clone()));
            }
            origin.kernel = "config: loader.kernel".to_owned();
            host
        }
        None => {
            let Some(host) = inside(sysroot, &parts.kernel.value) else {
                return Err(PlanError::PlanKernelMissing(PathBuf::from(
                    &parts.kernel.value,
                )));
            };
            origin.kernel = sources(&parts.kernel.from);
            host
        }
    };
    let initrd = match &settings.initrd {
        Some(path) => {
            let host = sysroot.path(&path.to_string_lossy());
            if !host.exists() {
                return Err(PlanError::InitrdMissing(path.clone()));
            }
            origin.initrd = "config: loader.initrd".to_owned();
            Some(host)
        }
        None => match &parts.initrd.value {
            Some(path) => {
                let Some(host) = inside(sysroot, path) else {
                    return Err(PlanError::PlanInitrdMissing(PathBuf::from(path)));
                };
                origin.initrd = sources(&parts.initrd.from);
                Some(host)
            }
            None => {
                origin.initrd = sources(&parts.initrd.from);
                None
            }
        },
    };
    let cmdline = match &settings.cmdline {
        Some(cmdline) => {
            origin.cmdline = "config: loader.cmdline".to_owned();
            cmdline.clone()
        }
        None => {
            origin.cmdline = sources(&parts.cmdline.from);
            parts.cmdline.value.clone()
        }
    };
    let options = parts
        .kexec_options
        .value
        .iter()
        .filter(|o| !LOADER_OWNED_OPTIONS.contains(&o.as_str()))
        .cloned()
        .collect();
    Ok(KernelPlan {
        kernel,
        initrd,
        cmdline,
        options,
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

/// The argv after the program name: the syscall choice, `-p`, the plan's own options, `--hotplug` when asked
/// for (kexec_load only: the kernel then updates the header in place, `KEXEC_UPDATE_ELFCOREHDR`), then kernel,
/// initrd and command line.
pub fn kexec_tools_args(plan: &KernelPlan, mode: KexecToolsMode, hotplug: bool) -> Vec<String> {
    let mut args = vec![
        match mode {
            KexecToolsMode::FileLoad => "-s",
            KexecToolsMode::Load => "-c",
        }
        .to_owned(),
        "-p".to_owned(),
    ];
    args.extend(plan.options.iter().cloned());
    if hotplug && mode == KexecToolsMode::Load {
        args.push("--hotplug".to_owned());
    }
    args.push(plan.kernel.display().to_string());
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
    hotplug: bool,
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
            hotplug: false,
        }
    }

    /// Ask the kernel to update the loaded header in place on hotplug (`kexec -c -p --hotplug`).
    pub fn with_hotplug(mut self, hotplug: bool) -> Self {
        self.hotplug = hotplug;
        self
    }

    fn command_line(&self) -> String {
        let mut line = self.program.display().to_string();
        for arg in kexec_tools_args(&self.plan, self.mode, self.hotplug) {
            line.push(' ');
            line.push_str(&arg);
        }
        line
    }
}

impl Loader for KexecToolsLoader {
    fn name(&self) -> String {
        match (self.mode, self.hotplug) {
            (KexecToolsMode::FileLoad, _) => "kexec -s -p".to_owned(),
            (KexecToolsMode::Load, false) => "kexec -c -p".to_owned(),
            (KexecToolsMode::Load, true) => "kexec -c -p --hotplug".to_owned(),
        }
    }

    fn load(&self, request: LoadRequest) -> BoxFuture<Result<LoadReport, LoadError>> {
        let mut command = tokio::process::Command::new(&self.program);
        command.args(kexec_tools_args(&self.plan, self.mode, self.hotplug));
        let name = self.name();
        let line = self.command_line();
        let timeout = self.timeout;
        let mode = self.mode;
        let hotplug = self.hotplug;
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
            if mode == KexecToolsMode::Load && !hotplug {
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
            options: Vec::new(),
            origin: PlanOrigin::default(),
        }
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
            kexec_tools_args(&plan, KexecToolsMode::FileLoad, true),
            [
                "-s",
                "-p",
                "/boot/vmlinuz-6.12",
                "--initrd=/boot/initrd.img",
                "--command-line=root=/dev/vda ro reset_devices"
            ]
        );
        assert_eq!(
            kexec_tools_args(&plan_with(None), KexecToolsMode::Load, false),
            [
                "-c",
                "-p",
                "/boot/vmlinuz-6.12",
                "--command-line=root=/dev/vda ro reset_devices"
            ]
        );
        let mut plan = plan_with(None);
        plan.options = vec!["--console-serial".into()];
        assert_eq!(
            kexec_tools_args(&plan, KexecToolsMode::Load, true),
            [
                "-c",
                "-p",
                "--console-serial",
                "--hotplug",
                "/boot/vmlinuz-6.12",
                "--command-line=root=/dev/vda ro reset_devices"
            ]
        );
    }

    fn debian_plan() -> crate::core::plan::Plan {
        let root = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/plan-debian");
        crate::host::plan_inputs::read_and_plan(Path::new(root)).1
    }

    #[test]
    fn the_kernel_plan_is_the_distros_with_config_overrides() {
        let root = Path::new(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/plan-debian"
        ));
        let sysroot = Sysroot::new(root);
        let plan = debian_plan();
        let kernel = kernel_plan(&plan, &LoaderSettings::default(), &sysroot).unwrap();
        // kdump-tools' symlinks, followed inside the sysroot.
        assert_eq!(kernel.kernel, root.join("boot/vmlinuz-6.1.0-37-amd64"));
        assert_eq!(
            kernel.initrd,
            Some(root.join("var/lib/kdump/initrd.img-6.1.0-37-amd64"))
        );
        assert!(
            kernel
                .cmdline
                .ends_with("reset_devices systemd.unit=kdump-tools-dump.service nr_cpus=1 irqpoll usbcore.nousb"),
            "{}",
            kernel.cmdline
        );
        // kdump-tools' own `-p` is the loader's to set.
        assert!(kernel.options.is_empty(), "{:?}", kernel.options);
        assert!(
            kernel.origin.kernel.contains("KDUMP_KERNEL"),
            "{}",
            kernel.origin.kernel
        );
        let overridden = LoaderSettings {
            cmdline: Some("console=ttyS0".into()),
            ..LoaderSettings::default()
        };
        let kernel = kernel_plan(&plan, &overridden, &sysroot).unwrap();
        assert_eq!(kernel.cmdline, "console=ttyS0");
        assert_eq!(kernel.origin.cmdline, "config: loader.cmdline");
        let missing = LoaderSettings {
            kernel: Some(PathBuf::from("/boot/missing")),
            ..LoaderSettings::default()
        };
        assert_eq!(
            kernel_plan(&plan, &missing, &sysroot),
            Err(PlanError::KernelMissing(PathBuf::from("/boot/missing")))
        );
    }

    #[test]
    fn a_plan_without_parts_is_an_error_naming_the_service() {
        let mut plan = debian_plan();
        plan.parts = None;
        let root = Path::new(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/plan-debian"
        ));
        let error =
            kernel_plan(&plan, &LoaderSettings::default(), &Sysroot::new(root)).unwrap_err();
        assert!(
            error.to_string().starts_with("Debian/Ubuntu kdump-tools: "),
            "{error}"
        );
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
            options: Vec::new(),
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

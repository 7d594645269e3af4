//! Which loader reloads the crash kernel: pure policy over plain facts about the host and the distro's plan.
//!
//! The figure that matters is the window with no crash kernel loaded. Both load syscalls free the loaded crash
//! image before they install the new one ("Free any current crash dump kernel before we corrupt it":
//! `kernel/kexec.c` `do_kexec_load()`, `kernel/kexec_file.c` `kexec_file_load`). `kexec_file_load` then reads
//! the kernel and initrd, parses them and computes the purgatory digest inside that window (about 1 s for
//! Debian's files under software emulation); with `kexec_load`, kexec-tools reads, builds and digests every
//! segment *before* the call, and the kernel only copies them (about 0.09 s on the same files). So the
//! prepared path is the default, and `kexec_file_load` is used only where it is the one that works:
//!
//! - the kernel is locked down (`kexec_load` is refused: `kernel/kexec.c` `kexec_load_permitted()` →
//!   `security_locked_down(LOCKDOWN_KEXEC)`);
//! - the distro's plan asks for `kexec_file_load` itself (`-s`: signed images, Secure Boot), which the daemon
//!   must not override;
//! - kexec-tools is not installed (only the daemon's own syscall is left).
//!
//! On a kernel with `CONFIG_CRASH_HOTPLUG` and a kexec-tools that knows `--hotplug` (kexec-tools 2.0.28,
//! "crashdump: introduce the hotplug command line options"), the prepared load passes it, so the kernel
//! updates later bursts in place (`KEXEC_UPDATE_ELFCOREHDR`, sized from `/sys/kernel/crash_elfcorehdr_size`).
//! Where kexec-tools is older, such a kernel gets `kexec_file_load`: an in-place update needs no reload at all,
//! which beats the shortest window.

use serde::Serialize;

/// The `[loader] kind` the administrator configured.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Requested {
    /// Let this policy pick.
    Auto,
    /// `kexec_load` with segments kexec-tools prepares (`kexec -c -p`).
    KexecLoad,
    /// `kexec_file_load(2)` from the daemon itself.
    Native,
    /// kexec-tools' `kexec -s -p` (`kexec_file_load` through kexec-tools).
    KexecToolsFileLoad,
    /// The distro's own tool.
    Command,
}

/// What the distro's plan says about loading.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PlanVerdict {
    /// The daemon may load the plan's parts itself.
    Load {
        /// The plan asks for `kexec_file_load` (`-s`, or Secure Boot).
        requires_file_load: bool,
    },
    /// The plan could not be evaluated safely: the distro's tool must do the reload.
    Delegate { command: String },
    /// Nothing can be loaded.
    Refuse { reason: String },
}

/// Plain facts the choice depends on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Facts {
    pub requested: Requested,
    pub plan: PlanVerdict,
    /// The mode `/sys/kernel/security/lockdown` selects (`none`, `integrity`, `confidentiality`), if present.
    pub lockdown: Option<String>,
    pub kexec_tools_installed: bool,
    /// The kexec-tools version the loader's kexec binary carries (`2.0.25`), when known.
    pub kexec_tools_version: Option<String>,
    /// `/sys/kernel/crash_elfcorehdr_size` exists: the kernel was built with `CONFIG_CRASH_HOTPLUG`.
    pub kernel_crash_hotplug: bool,
}

/// The loader to use, and why.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Choice {
    /// `kexec -c -p` with the plan's options; `hotplug` adds `--hotplug`.
    Prepared { hotplug: bool },
    /// `kexec_file_load(2)` from the daemon.
    Native,
    /// `kexec -s -p`.
    KexecToolsFileLoad,
    /// Run the distro's tool.
    Delegate { command: String },
    /// No loader can work; every reload fails with the reason.
    Unavailable { reason: String },
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Decision {
    pub choice: Choice,
    pub reason: String,
}

impl Choice {
    /// The name the status and the log show.
    pub fn name(&self) -> String {
        match self {
            Choice::Prepared { hotplug: true } => "kexec_load (kexec -c -p --hotplug)".to_owned(),
            Choice::Prepared { hotplug: false } => "kexec_load (kexec -c -p)".to_owned(),
            Choice::Native => "kexec_file_load".to_owned(),
            Choice::KexecToolsFileLoad => "kexec_file_load (kexec -s -p)".to_owned(),
            Choice::Delegate { command } => format!("the distro's tool ({command})"),
            Choice::Unavailable { .. } => "none".to_owned(),
        }
    }
}

fn locked_down(lockdown: Option<&str>) -> bool {
    lockdown.is_some_and(|mode| mode != "none")
}

/// kexec-tools 2.0.28 added `--hotplug`; the version is the one the kexec binary carries (`2.0.29`).
pub fn kexec_tools_knows_hotplug(version: Option<&str>) -> bool {
    version.is_some_and(|v| crate::core::parse::kexec_version::at_least(v, [2, 0, 28]))
}

/// Picks the loader for reloads.
pub fn choose(facts: &Facts) -> Decision {
    let decision = |choice: Choice, reason: &str| Decision {
        choice,
        reason: reason.to_owned(),
    };
    let locked = locked_down(facts.lockdown.as_deref());
    let prepared = || Choice::Prepared {
        hotplug: facts.kernel_crash_hotplug
            && kexec_tools_knows_hotplug(facts.kexec_tools_version.as_deref()),
    };
    match facts.requested {
        Requested::Command => {
            let command = match &facts.plan {
                PlanVerdict::Delegate { command } => command.clone(),
                _ => String::new(),
            };
            return decision(
                Choice::Delegate { command },
                "[loader] kind = \"command\" in the configuration",
            );
        }
        Requested::Native => {
            return decision(
                Choice::Native,
                "[loader] kind = \"native\" in the configuration",
            )
        }
        Requested::KexecToolsFileLoad => {
            return decision(
                Choice::KexecToolsFileLoad,
                "[loader] kind = \"kexec-tools\" in the configuration",
            )
        }
        Requested::KexecLoad | Requested::Auto => {}
    }
    let requires_file_load = match &facts.plan {
        PlanVerdict::Delegate { command } => {
            return decision(
                Choice::Delegate {
                    command: command.clone(),
                },
                "the distro's configuration cannot be followed exactly: its own tool reloads",
            )
        }
        PlanVerdict::Refuse { reason } => {
            return decision(
                Choice::Unavailable {
                    reason: reason.clone(),
                },
                "no crash kernel to load",
            )
        }
        PlanVerdict::Load { requires_file_load } => *requires_file_load,
    };
    if facts.requested == Requested::KexecLoad {
        if locked {
            return decision(
                Choice::Unavailable {
                    reason: "kexec_load is refused while the kernel is locked down; set [loader] kind = \"auto\""
                        .to_owned(),
                },
                "[loader] kind = \"kexec-load\" in the configuration",
            );
        }
        if !facts.kexec_tools_installed {
            return decision(
                Choice::Unavailable {
                    reason: "kexec-tools is not installed (set loader.kexec_path)".to_owned(),
                },
                "[loader] kind = \"kexec-load\" in the configuration",
            );
        }
        return decision(
            prepared(),
            "[loader] kind = \"kexec-load\" in the configuration",
        );
    }
    if locked {
        return decision(
            Choice::Native,
            "the kernel is locked down: only kexec_file_load (with a signed image) may load",
        );
    }
    if requires_file_load {
        return decision(
            Choice::Native,
            "the distro's plan asks for kexec_file_load (-s): signed images",
        );
    }
    if !facts.kexec_tools_installed {
        return decision(
            Choice::Native,
            "kexec-tools is not installed: the daemon's own kexec_file_load",
        );
    }
    if facts.kernel_crash_hotplug
        && !kexec_tools_knows_hotplug(facts.kexec_tools_version.as_deref())
    {
        // A header the kernel updates in place needs no reload at all for later bursts: no window beats a
        // short one. kexec_file_load always gets that (KEXEC_FILE_ON_CRASH sets the hotplug support flag on
        // such kernels); kexec_load only with --hotplug, which this kexec-tools does not know.
        return decision(
            Choice::Native,
            "the kernel updates a kexec_file_load header in place (CONFIG_CRASH_HOTPLUG), and this kexec-tools \
             has no --hotplug (2.0.28) to ask for that with kexec_load",
        );
    }
    decision(
        prepared(),
        "kexec_load with segments prepared before the call: the shortest window with no crash kernel",
    )
}

/// The loader for headers that outgrow the kernel's `kexec_file_load` buffer: kexec-tools sizes the header to
/// the ranges, and must not ask for in-place updates (the kernel's buffer would overflow again).
pub fn overflow_choice(facts: &Facts) -> Choice {
    if locked_down(facts.lockdown.as_deref()) {
        Choice::Unavailable {
            reason: "the header outgrows the kernel's buffer, and kexec_load is refused while the kernel is \
                     locked down"
                .to_owned(),
        }
    } else if !facts.kexec_tools_installed {
        Choice::Unavailable {
            reason: "the header outgrows the kernel's buffer, and kexec-tools (kexec -c -p) is not installed"
                .to_owned(),
        }
    } else {
        Choice::Prepared { hotplug: false }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts() -> Facts {
        Facts {
            requested: Requested::Auto,
            plan: PlanVerdict::Load {
                requires_file_load: false,
            },
            lockdown: Some("none".to_owned()),
            kexec_tools_installed: true,
            kexec_tools_version: Some("2.0.25".to_owned()),
            kernel_crash_hotplug: false,
        }
    }

    #[test]
    fn debian_12_gets_the_prepared_load_without_hotplug() {
        assert_eq!(choose(&facts()).choice, Choice::Prepared { hotplug: false });
    }

    #[test]
    fn a_hotplug_kernel_and_kexec_tools_2_0_28_get_in_place_updates() {
        let mut f = facts();
        f.kernel_crash_hotplug = true;
        // Without --hotplug a kexec_load header would go stale at the next burst: kexec_file_load is updated in
        // place instead.
        assert_eq!(choose(&f).choice, Choice::Native);
        f.kexec_tools_version = Some("2.0.28".to_owned());
        assert_eq!(choose(&f).choice, Choice::Prepared { hotplug: true });
        f.kernel_crash_hotplug = false;
        assert_eq!(choose(&f).choice, Choice::Prepared { hotplug: false });
    }

    #[test]
    fn lockdown_signed_plans_and_missing_kexec_tools_take_kexec_file_load() {
        let mut f = facts();
        f.lockdown = Some("integrity".to_owned());
        assert_eq!(choose(&f).choice, Choice::Native);
        assert!(choose(&f).reason.contains("locked down"));
        let mut f = facts();
        f.plan = PlanVerdict::Load {
            requires_file_load: true,
        };
        assert_eq!(choose(&f).choice, Choice::Native);
        let mut f = facts();
        f.kexec_tools_installed = false;
        assert_eq!(choose(&f).choice, Choice::Native);
        // No lockdown file (older kernels) is not lockdown.
        let mut f = facts();
        f.lockdown = None;
        assert_eq!(choose(&f).choice, Choice::Prepared { hotplug: false });
    }

    #[test]
    fn a_plan_that_cannot_be_followed_delegates_to_the_distro_tool() {
        let mut f = facts();
        f.plan = PlanVerdict::Delegate {
            command: "kdump-config reload".to_owned(),
        };
        assert_eq!(
            choose(&f).choice,
            Choice::Delegate {
                command: "kdump-config reload".to_owned()
            }
        );
        // Even a configured kexec-load does not load what the distro did not ask for.
        f.requested = Requested::KexecLoad;
        assert!(matches!(choose(&f).choice, Choice::Delegate { .. }));
    }

    #[test]
    fn explicit_kinds_are_honoured() {
        let mut f = facts();
        f.requested = Requested::Native;
        assert_eq!(choose(&f).choice, Choice::Native);
        f.requested = Requested::KexecToolsFileLoad;
        assert_eq!(choose(&f).choice, Choice::KexecToolsFileLoad);
        f.requested = Requested::KexecLoad;
        f.lockdown = Some("confidentiality".to_owned());
        assert!(matches!(choose(&f).choice, Choice::Unavailable { .. }));
    }

    #[test]
    fn overflow_reloads_never_ask_for_in_place_updates() {
        let mut f = facts();
        f.kernel_crash_hotplug = true;
        f.kexec_tools_version = Some("2.0.29".to_owned());
        assert_eq!(overflow_choice(&f), Choice::Prepared { hotplug: false });
        f.lockdown = Some("integrity".to_owned());
        assert!(matches!(overflow_choice(&f), Choice::Unavailable { .. }));
    }

    #[test]
    fn hotplug_support_follows_the_version() {
        assert!(!kexec_tools_knows_hotplug(None));
        assert!(!kexec_tools_knows_hotplug(Some("2.0.25")));
        assert!(!kexec_tools_knows_hotplug(Some("2.0.27")));
        assert!(kexec_tools_knows_hotplug(Some("2.0.28")));
        assert!(kexec_tools_knows_hotplug(Some("2.0.29.git")));
        assert!(kexec_tools_knows_hotplug(Some("2.1.0")));
    }
}

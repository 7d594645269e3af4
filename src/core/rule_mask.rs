//! Standing in for the distribution's kdump hotplug udev rule while the daemon runs: which rule to mask, the
//! text of the mask, and what to undo when the daemon stops. Plain values in and out; the files are read and
//! written by `edge::rule_mask`.
//!
//! udev reads rules files of the same name from one directory only, by priority: `/etc/udev/rules.d`, then
//! `/run/udev/rules.d`, then `/usr/local/lib`, `/usr/lib` and (split `/usr`) `/lib` (systemd 252
//! `src/basic/def.h`, `CONF_PATHS()`, used as `RULES_DIRS` in `src/udev/udev-rules.c`). A file in `/run`
//! therefore hides a vendor file without touching it and without surviving a reboot, while the admin's own file
//! in `/etc` still wins over both.

/// Where the daemon writes its masks.
pub const RUNTIME_DIR: &str = "/run/udev/rules.d";
/// The administrator's directory: a file here decides, and the daemon leaves the rule alone.
pub const ADMIN_DIR: &str = "/etc/udev/rules.d";
/// The vendor directories a distribution package installs its rule into, in udev's order.
pub const VENDOR_DIRS: &[&str] = &[
    "/usr/local/lib/udev/rules.d",
    "/usr/lib/udev/rules.d",
    "/lib/udev/rules.d",
];

/// The first line of every mask the daemon writes. Only files that start with it are ever removed.
pub const MARKER: &str = "# kdump-hotplugd runtime mask v1";
const MASKS_FIELD: &str = "# masks: ";
const RESTORE_FIELD: &str = "# restore-from: ";

/// A distribution's kdump hotplug rule.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DistroRule {
    /// The file name udev knows it by.
    pub name: &'static str,
    pub distribution: &'static str,
    pub package: &'static str,
    /// Where the package keeps the rule when it installs it into `/run` itself instead of a vendor directory.
    pub template: Option<&'static str>,
}

/// The rules this daemon stands in for.
pub const DISTRO_RULES: &[DistroRule] = &[
    DistroRule {
        name: "50-kdump-tools.rules",
        distribution: "Debian/Ubuntu",
        package: "kdump-tools",
        template: None,
    },
    DistroRule {
        name: "98-kexec.rules",
        distribution: "Fedora/RHEL",
        package: "kdump-utils",
        template: None,
    },
    // openSUSE/kdump installs the rule as /usr/lib/kdump/70-kdump.rules, and init/load.sh copies it into
    // /run/udev/rules.d/ after each successful load (init/unload.sh removes it again). The active rule is then
    // that runtime copy, at the very path a mask would take.
    DistroRule {
        name: "70-kdump.rules",
        distribution: "SUSE",
        package: "kdump",
        template: Some("/usr/lib/kdump/70-kdump.rules"),
    },
];

/// What a mask the daemon wrote says about itself.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MaskHeader {
    /// The files it hides.
    pub masks: Vec<String>,
    /// The package's runtime copy it replaced, to be put back from this template when the mask goes.
    pub restore_from: Option<String>,
}

/// The file in [`RUNTIME_DIR`] under a rule's name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RuntimeFile {
    Absent,
    /// A mask this daemon wrote.
    Ours(MaskHeader),
    /// Someone else's file. Where the rule has a [`DistroRule::template`] that exists, the package's own copy:
    /// SUSE's load.sh overwrites that path and unload.sh deletes it whatever is there, so kdump treats it as its
    /// own (the copy may also predate the package's last upgrade, so its bytes are not compared).
    Foreign,
}

/// What exists on the host for one rule.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Found {
    pub rule: DistroRule,
    /// A file (or a symlink, `/dev/null` included) of that name in [`ADMIN_DIR`].
    pub admin_file: bool,
    pub runtime: RuntimeFile,
    /// The vendor copies that exist (host paths), one per distinct file.
    pub vendor: Vec<String>,
    /// The rule's [`DistroRule::template`] exists.
    pub template: bool,
}

impl Found {
    /// Nothing of this rule on the host.
    pub fn nothing(rule: DistroRule) -> Self {
        Found {
            rule,
            admin_file: false,
            runtime: RuntimeFile::Absent,
            vendor: Vec::new(),
            template: false,
        }
    }
}

/// What the daemon makes of one rule.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Mask it with the file at `path`.
    Mask {
        path: String,
        masks: Vec<String>,
        restore_from: Option<String>,
    },
    /// The administrator's file of that name in `/etc/udev/rules.d` is in effect; nothing is masked.
    AdminFile { path: String },
    /// A runtime file someone else wrote is in effect; left alone.
    ForeignRuntimeFile { path: String },
    /// The rule is not installed (or, SUSE, not active because kdump has not loaded).
    Absent,
    /// `mask_distro_rule = false`.
    Disabled,
}

/// A change to a file in [`RUNTIME_DIR`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Write `text` to `path` (replacing the file there).
    Write { path: String, text: String },
    /// Remove the daemon's mask at `path`.
    Remove { path: String },
    /// Replace the daemon's mask at `path` with a copy of `from` (the package's own runtime copy, as it was).
    Restore { path: String, from: String },
}

impl Action {
    pub fn path(&self) -> &str {
        match self {
            Action::Write { path, .. } | Action::Remove { path } | Action::Restore { path, .. } => {
                path
            }
        }
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Plan {
    pub verdicts: Vec<(DistroRule, Verdict)>,
    pub actions: Vec<Action>,
}

impl Plan {
    /// The masks in effect once the actions are done.
    pub fn masked(&self) -> Vec<String> {
        self.verdicts
            .iter()
            .filter_map(|(_, verdict)| match verdict {
                Verdict::Mask { path, .. } => Some(path.clone()),
                _ => None,
            })
            .collect()
    }
}

pub fn runtime_path(rule: &DistroRule) -> String {
    format!("{RUNTIME_DIR}/{}", rule.name)
}

pub fn admin_path(rule: &DistroRule) -> String {
    format!("{ADMIN_DIR}/{}", rule.name)
}

/// How the daemon's own mask is undone: back to the package's runtime copy if it replaced one whose template
/// still exists, else removed.
fn undo(found: &Found, header: &MaskHeader) -> Action {
    let path = runtime_path(&found.rule);
    match &header.restore_from {
        Some(from) if found.template => Action::Restore {
            path,
            from: from.clone(),
        },
        _ => Action::Remove { path },
    }
}

fn verdict(found: &Found, enabled: bool) -> Verdict {
    let rule = &found.rule;
    if !enabled {
        return Verdict::Disabled;
    }
    // Besides the vendor copies, the package's own copy in /run is an active rule (SUSE, while kdump is
    // loaded); once a mask of ours replaced it, the mask stands for it for as long as the template is there.
    let restore_from = match &found.runtime {
        RuntimeFile::Foreign if found.template => rule.template.map(str::to_owned),
        RuntimeFile::Ours(header) if found.template => header.restore_from.clone(),
        _ => None,
    };
    let mut masks = Vec::new();
    if restore_from.is_some() {
        masks.push(runtime_path(rule));
    }
    masks.extend(found.vendor.iter().cloned());
    if masks.is_empty() {
        return Verdict::Absent;
    }
    if found.admin_file {
        return Verdict::AdminFile {
            path: admin_path(rule),
        };
    }
    if found.runtime == RuntimeFile::Foreign && restore_from.is_none() {
        return Verdict::ForeignRuntimeFile {
            path: runtime_path(rule),
        };
    }
    Verdict::Mask {
        path: runtime_path(rule),
        masks,
        restore_from,
    }
}

/// Which rules to mask, given what exists and the config's `mask_distro_rule`, and the file changes that get
/// there. A mask of ours that is no longer wanted (config off, the admin took over, the rule is gone) is
/// undone; an unchanged mask is not rewritten.
pub fn plan(found: &[Found], enabled: bool) -> Plan {
    let mut plan = Plan::default();
    for found in found {
        let verdict = verdict(found, enabled);
        match (&verdict, &found.runtime) {
            (
                Verdict::Mask {
                    path,
                    masks,
                    restore_from,
                },
                runtime,
            ) => {
                let header = MaskHeader {
                    masks: masks.clone(),
                    restore_from: restore_from.clone(),
                };
                if *runtime != RuntimeFile::Ours(header.clone()) {
                    plan.actions.push(Action::Write {
                        path: path.clone(),
                        text: mask_text(&found.rule, &header),
                    });
                }
            }
            (_, RuntimeFile::Ours(header)) => plan.actions.push(undo(found, header)),
            _ => {}
        }
        plan.verdicts.push((found.rule, verdict));
    }
    plan
}

/// What gives every rule back: each mask of ours undone, nothing else touched.
pub fn release(found: &[Found]) -> Vec<Action> {
    found
        .iter()
        .filter_map(|found| match &found.runtime {
            RuntimeFile::Ours(header) => Some(undo(found, header)),
            _ => None,
        })
        .collect()
}

/// Reads the daemon's header from a file's text; `None` for any file the daemon did not write.
pub fn parse_header(text: &str) -> Option<MaskHeader> {
    let mut lines = text.lines();
    if lines.next()? != MARKER {
        return None;
    }
    let mut header = MaskHeader::default();
    for line in lines.take_while(|line| line.starts_with('#')) {
        if let Some(path) = line.strip_prefix(MASKS_FIELD) {
            header.masks.push(path.trim().to_owned());
        } else if let Some(path) = line.strip_prefix(RESTORE_FIELD) {
            header.restore_from = Some(path.trim().to_owned());
        }
    }
    Some(header)
}

/// The mask: no rules, a header [`parse_header`] reads back, and an explanation for whoever finds it.
pub fn mask_text(rule: &DistroRule, header: &MaskHeader) -> String {
    let mut text = format!("{MARKER}\n");
    for path in &header.masks {
        text.push_str(&format!("{MASKS_FIELD}{path}\n"));
    }
    if let Some(from) = &header.restore_from {
        text.push_str(&format!("{RESTORE_FIELD}{from}\n"));
    }
    text.push_str(&format!(
        "#\n\
         # This file holds no rules. kdump-hotplugd wrote it when it started, to mask the\n\
         # hotplug rule of {distribution}'s {package} package of the same name: udev reads a rules\n\
         # file from /run/udev/rules.d instead of one with the same name in /usr/lib or /lib.\n\
         # While the daemon runs, it reloads the crash kernel itself, once per hotplug burst.\n\
         #\n\
         # The daemon removes this file when it stops; after a crash or SIGKILL the unit's\n\
         # ExecStopPost= does (kdump-hotplugd release-rules), and /run does not survive a\n\
         # reboot. Nothing else was changed.\n",
        distribution = rule.distribution,
        package = rule.package,
    ));
    if let Some(from) = &header.restore_from {
        text.push_str(&format!(
            "# It replaced the copy {package} made of {from} when it loaded the crash kernel;\n\
             # that copy is put back when the mask goes.\n",
            package = rule.package,
        ));
    }
    text.push_str(&format!(
        "#\n\
         # To keep the distribution's rule while the daemon runs, set\n\
         #     [daemon] mask_distro_rule = false\n\
         # in /etc/kdump-hotplugd/config.toml. A file named {name} in /etc/udev/rules.d/\n\
         # wins over this one; the daemon then writes no mask. See kdump-hotplugd(8).\n",
        name = rule.name,
    ));
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEBIAN: DistroRule = DISTRO_RULES[0];
    const FEDORA: DistroRule = DISTRO_RULES[1];
    const SUSE: DistroRule = DISTRO_RULES[2];

    fn vendor(rule: DistroRule, path: &str) -> Found {
        Found {
            vendor: vec![path.to_owned()],
            ..Found::nothing(rule)
        }
    }

    fn ours(masks: &[&str], restore_from: Option<&str>) -> RuntimeFile {
        RuntimeFile::Ours(MaskHeader {
            masks: masks.iter().map(|m| m.to_string()).collect(),
            restore_from: restore_from.map(str::to_owned),
        })
    }

    fn mask(path: &str, masks: &[&str], restore_from: Option<&str>) -> Verdict {
        Verdict::Mask {
            path: path.to_owned(),
            masks: masks.iter().map(|m| m.to_string()).collect(),
            restore_from: restore_from.map(str::to_owned),
        }
    }

    #[test]
    fn a_vendor_rule_is_masked_by_a_same_named_runtime_file() {
        let found = [
            vendor(DEBIAN, "/lib/udev/rules.d/50-kdump-tools.rules"),
            Found::nothing(FEDORA),
            Found::nothing(SUSE),
        ];
        let plan = plan(&found, true);
        assert_eq!(
            plan.verdicts,
            [
                (
                    DEBIAN,
                    mask(
                        "/run/udev/rules.d/50-kdump-tools.rules",
                        &["/lib/udev/rules.d/50-kdump-tools.rules"],
                        None
                    )
                ),
                (FEDORA, Verdict::Absent),
                (SUSE, Verdict::Absent),
            ]
        );
        let header = MaskHeader {
            masks: vec!["/lib/udev/rules.d/50-kdump-tools.rules".into()],
            restore_from: None,
        };
        assert_eq!(
            plan.actions,
            [Action::Write {
                path: "/run/udev/rules.d/50-kdump-tools.rules".into(),
                text: mask_text(&DEBIAN, &header),
            }]
        );
        assert_eq!(plan.masked(), ["/run/udev/rules.d/50-kdump-tools.rules"]);
    }

    #[test]
    fn the_admins_file_in_etc_wins_and_a_stale_mask_of_ours_goes() {
        let mut found = vendor(FEDORA, "/usr/lib/udev/rules.d/98-kexec.rules");
        found.admin_file = true;
        let result = plan(&[found.clone()], true);
        assert_eq!(
            result.verdicts,
            [(
                FEDORA,
                Verdict::AdminFile {
                    path: "/etc/udev/rules.d/98-kexec.rules".into()
                }
            )]
        );
        assert!(result.actions.is_empty());
        assert!(result.masked().is_empty());
        found.runtime = ours(&["/usr/lib/udev/rules.d/98-kexec.rules"], None);
        assert_eq!(
            plan(&[found], true).actions,
            [Action::Remove {
                path: "/run/udev/rules.d/98-kexec.rules".into()
            }]
        );
    }

    #[test]
    fn disabled_masks_nothing_and_undoes_an_earlier_mask() {
        let mut found = vendor(DEBIAN, "/usr/lib/udev/rules.d/50-kdump-tools.rules");
        let result = plan(&[found.clone()], false);
        assert_eq!(result.verdicts, [(DEBIAN, Verdict::Disabled)]);
        assert!(result.actions.is_empty());
        found.runtime = ours(&["/usr/lib/udev/rules.d/50-kdump-tools.rules"], None);
        assert_eq!(
            plan(&[found], false).actions,
            [Action::Remove {
                path: "/run/udev/rules.d/50-kdump-tools.rules".into()
            }]
        );
    }

    #[test]
    fn an_unchanged_mask_is_not_rewritten_and_a_changed_one_is() {
        let mut found = vendor(DEBIAN, "/usr/lib/udev/rules.d/50-kdump-tools.rules");
        found.runtime = ours(&["/usr/lib/udev/rules.d/50-kdump-tools.rules"], None);
        let result = plan(&[found.clone()], true);
        assert!(result.actions.is_empty(), "{:?}", result.actions);
        assert_eq!(result.masked(), ["/run/udev/rules.d/50-kdump-tools.rules"]);
        // The package moved its rule (merged /usr): the header follows.
        found
            .vendor
            .push("/lib/udev/rules.d/50-kdump-tools.rules".into());
        assert!(matches!(
            plan(&[found], true).actions.as_slice(),
            [Action::Write { .. }]
        ));
    }

    #[test]
    fn someone_elses_runtime_file_is_left_alone() {
        let mut found = vendor(DEBIAN, "/usr/lib/udev/rules.d/50-kdump-tools.rules");
        found.runtime = RuntimeFile::Foreign;
        let result = plan(&[found], true);
        assert_eq!(
            result.verdicts,
            [(
                DEBIAN,
                Verdict::ForeignRuntimeFile {
                    path: "/run/udev/rules.d/50-kdump-tools.rules".into()
                }
            )]
        );
        assert!(result.actions.is_empty());
    }

    #[test]
    fn suse_loaded_copy_is_replaced_and_restored_on_release() {
        let found = Found {
            runtime: RuntimeFile::Foreign,
            template: true,
            ..Found::nothing(SUSE)
        };
        let result = plan(std::slice::from_ref(&found), true);
        let header = MaskHeader {
            masks: vec!["/run/udev/rules.d/70-kdump.rules".into()],
            restore_from: Some("/usr/lib/kdump/70-kdump.rules".into()),
        };
        assert_eq!(
            result.verdicts,
            [(
                SUSE,
                mask(
                    "/run/udev/rules.d/70-kdump.rules",
                    &["/run/udev/rules.d/70-kdump.rules"],
                    Some("/usr/lib/kdump/70-kdump.rules")
                )
            )]
        );
        assert_eq!(
            result.actions,
            [Action::Write {
                path: "/run/udev/rules.d/70-kdump.rules".into(),
                text: mask_text(&SUSE, &header),
            }]
        );
        // Once written, the mask stands for the copy it replaced: the same plan again changes nothing.
        let masked = Found {
            runtime: RuntimeFile::Ours(header),
            ..found
        };
        assert!(plan(std::slice::from_ref(&masked), true).actions.is_empty());
        assert_eq!(
            release(std::slice::from_ref(&masked)),
            [Action::Restore {
                path: "/run/udev/rules.d/70-kdump.rules".into(),
                from: "/usr/lib/kdump/70-kdump.rules".into(),
            }]
        );
        // The package is gone: nothing to restore from, the mask is just removed.
        let orphan = Found {
            template: false,
            ..masked
        };
        assert_eq!(
            release(&[orphan]),
            [Action::Remove {
                path: "/run/udev/rules.d/70-kdump.rules".into()
            }]
        );
    }

    #[test]
    fn suse_before_kdump_loaded_has_no_active_rule() {
        let found = Found {
            template: true,
            ..Found::nothing(SUSE)
        };
        assert_eq!(plan(&[found], true).verdicts, [(SUSE, Verdict::Absent)]);
    }

    #[test]
    fn a_runtime_70_kdump_without_suses_template_is_someone_elses() {
        let found = Found {
            runtime: RuntimeFile::Foreign,
            ..Found::nothing(SUSE)
        };
        assert_eq!(plan(&[found], true).verdicts, [(SUSE, Verdict::Absent)]);
    }

    #[test]
    fn a_mask_whose_rule_was_uninstalled_is_removed() {
        let found = Found {
            runtime: ours(&["/usr/lib/udev/rules.d/98-kexec.rules"], None),
            ..Found::nothing(FEDORA)
        };
        let result = plan(&[found], true);
        assert_eq!(result.verdicts, [(FEDORA, Verdict::Absent)]);
        assert_eq!(
            result.actions,
            [Action::Remove {
                path: "/run/udev/rules.d/98-kexec.rules".into()
            }]
        );
    }

    #[test]
    fn release_touches_only_our_masks() {
        let found = [
            Found {
                runtime: ours(&["/lib/udev/rules.d/50-kdump-tools.rules"], None),
                ..vendor(DEBIAN, "/lib/udev/rules.d/50-kdump-tools.rules")
            },
            Found {
                runtime: RuntimeFile::Foreign,
                ..vendor(FEDORA, "/usr/lib/udev/rules.d/98-kexec.rules")
            },
            Found::nothing(SUSE),
        ];
        assert_eq!(
            release(&found),
            [Action::Remove {
                path: "/run/udev/rules.d/50-kdump-tools.rules".into()
            }]
        );
    }

    #[test]
    fn the_mask_reads_back_and_explains_itself() {
        let header = MaskHeader {
            masks: vec![
                "/usr/lib/udev/rules.d/50-kdump-tools.rules".into(),
                "/lib/udev/rules.d/50-kdump-tools.rules".into(),
            ],
            restore_from: None,
        };
        let text = mask_text(&DEBIAN, &header);
        assert_eq!(parse_header(&text), Some(header));
        assert!(text.lines().all(|line| line.starts_with('#')), "{text}");
        for needle in [
            "kdump-hotplugd wrote it",
            "Debian/Ubuntu's kdump-tools",
            "removes this file when it stops",
            "release-rules",
            "mask_distro_rule = false",
            "/etc/udev/rules.d/",
        ] {
            assert!(text.contains(needle), "{needle:?} missing:\n{text}");
        }
        let suse = MaskHeader {
            masks: vec!["/run/udev/rules.d/70-kdump.rules".into()],
            restore_from: Some("/usr/lib/kdump/70-kdump.rules".into()),
        };
        let text = mask_text(&SUSE, &suse);
        assert_eq!(parse_header(&text), Some(suse));
        assert!(text.contains("put back"), "{text}");
    }

    #[test]
    fn files_without_the_marker_first_are_not_ours() {
        assert_eq!(parse_header(""), None);
        assert_eq!(
            parse_header("SUBSYSTEM==\"memory\", RUN+=\"/bin/true\"\n"),
            None
        );
        // The marker quoted further down (a copy of our text inside someone's file) does not count.
        assert_eq!(parse_header(&format!("# mine\n{MARKER}\n")), None);
        assert_eq!(parse_header(MARKER), Some(MaskHeader::default()));
    }
}

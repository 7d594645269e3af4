//! Standing in for the distribution's hotplug rule: the plan of [`crate::core::rule_mask`] carried out through
//! the [`RuleFiles`] edge, and said in the log. The daemon masks after its first snapshot (before READY) and on
//! each configuration reload, and gives the rules back when it stops; `kdump-hotplugd release-rules` gives them
//! back after a crash (the unit's `ExecStopPost=`).

use std::sync::Arc;

use super::Daemon;
use crate::core::rule_mask::{self, Action, Verdict};
use crate::edge::{Applied, RuleFiles, UdevReload};

/// What [`stand_in`] left in place.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StandIn {
    /// The masks in effect (host paths).
    pub masked: Vec<String>,
    /// A file changed: udevd should read its rules again.
    pub changed: bool,
}

fn describe(action: &Action) -> String {
    match action {
        Action::Write { path, .. } => format!("write {path}"),
        Action::Remove { path } => format!("remove {path}"),
        Action::Restore { path, from } => format!("restore {path} from {from}"),
    }
}

/// Carries out `actions`; returns whether any file changed and the paths whose change failed.
fn apply(files: &dyn RuleFiles, actions: &[Action]) -> (bool, Vec<String>) {
    let mut changed = false;
    let mut failed = Vec::new();
    for action in actions {
        match files.apply(action) {
            Ok(Applied::Done) => {
                changed = true;
                tracing::debug!(action = %describe(action), "udev rules changed");
            }
            Ok(Applied::NotOurs) => tracing::info!(
                path = action.path(),
                "not the daemon's mask any more (replaced since it was read): left alone"
            ),
            Err(error) => {
                tracing::error!(%error, action = %describe(action), "cannot change the udev rules");
                failed.push(action.path().to_owned());
            }
        }
    }
    (changed, failed)
}

/// Masks the distribution's rule when `enabled` (and not in a dry run, which reloads nothing itself, so the
/// distribution's rule must keep working), undoes masks no longer wanted, and logs what is in effect (with
/// `announce`, or when something changed).
pub fn stand_in(files: &dyn RuleFiles, enabled: bool, dry_run: bool, announce: bool) -> StandIn {
    let found = match files.survey() {
        Ok(found) => found,
        Err(error) => {
            tracing::error!(%error, "cannot read the udev rules directories: the distribution's hotplug rule is not masked");
            return StandIn::default();
        }
    };
    let plan = rule_mask::plan(&found, enabled && !dry_run);
    if !announce && plan.actions.is_empty() {
        return StandIn {
            masked: plan.masked(),
            changed: false,
        };
    }
    // What would be masked, to say what `false` or a dry run leaves running.
    let wanted = rule_mask::plan(&found, true);
    for ((rule, verdict), (_, would)) in plan.verdicts.iter().zip(&wanted.verdicts) {
        match (verdict, would) {
            (Verdict::Mask { path, masks, .. }, _) => tracing::info!(
                mask = %path,
                masks = %masks.join(" "),
                "{} hotplug rule {} masked while the daemon runs",
                rule.distribution,
                rule.name
            ),
            (Verdict::AdminFile { path }, _) => tracing::info!(
                "the administrator's {path} is in effect: the distribution's rule {} is not masked",
                rule.name
            ),
            (Verdict::ForeignRuntimeFile { path }, _) => tracing::warn!(
                "{path} was not written by kdump-hotplugd: left alone, the distribution's rule {} is not masked",
                rule.name
            ),
            (Verdict::Disabled, Verdict::Mask { masks, .. }) if dry_run && enabled => tracing::info!(
                "dry run: would mask {} ({}); it keeps running",
                rule.name,
                masks.join(" ")
            ),
            (Verdict::Disabled, Verdict::Mask { masks, .. }) => tracing::info!(
                "daemon.mask_distro_rule = false: {} hotplug rule {} keeps running beside the daemon",
                rule.distribution,
                masks.join(" ")
            ),
            _ => {}
        }
    }
    let (changed, failed) = apply(files, &plan.actions);
    let masked = plan
        .masked()
        .into_iter()
        .filter(|path| !failed.contains(path))
        .collect();
    StandIn { masked, changed }
}

/// Gives every rule back: each of the daemon's masks removed (or the package's runtime copy put back), nothing
/// else touched. Returns whether a file changed, or the first error after trying them all.
pub fn release(files: &dyn RuleFiles) -> Result<bool, String> {
    let found = files.survey().map_err(|e| e.to_string())?;
    let actions = rule_mask::release(&found);
    for action in &actions {
        tracing::info!(action = %describe(action), "giving the distribution's hotplug rule back");
    }
    let (changed, failed) = apply(files, &actions);
    match failed.first() {
        Some(path) => Err(format!("{path}: could not be given back (see the log)")),
        None => Ok(changed),
    }
}

/// Asks udevd to read the rules now, and says what it means when it cannot.
pub fn reload_udev(files: &dyn RuleFiles) {
    match files.reload_udev() {
        Ok(UdevReload::Reloaded) => tracing::info!("udevd read its rules again"),
        Ok(UdevReload::NotRunning) => {
            tracing::info!("udevd is not running: it reads the rules when it starts")
        }
        Err(error) => tracing::warn!(
            %error,
            "cannot ask udevd to reload: it notices the change itself at the first uevent 3 s or more after its last \
             check"
        ),
    }
}

impl Daemon {
    /// The rules directories, for standing in for the distribution's hotplug rule (the real host sets them).
    pub fn with_rule_files(mut self, files: Arc<dyn RuleFiles>) -> Self {
        self.rule_files = Some(files);
        self
    }

    /// Applies `[daemon] mask_distro_rule` as the settings say now (`announce`: log the verdict even if nothing
    /// changed); udevd is asked to reload beside the loop.
    pub(super) fn stand_in_for_distro_rule(&mut self, announce: bool) {
        let Some(files) = self.rule_files.clone() else {
            return;
        };
        let outcome = stand_in(
            &*files,
            self.settings.mask_distro_rule,
            self.settings.dry_run,
            announce,
        );
        let masked = outcome.masked.join(", ");
        self.publish(|s| s.masked_rule = masked);
        if outcome.changed {
            tokio::task::spawn_blocking(move || reload_udev(&*files));
        }
    }

    /// Gives the distribution's rule back when the daemon stops.
    pub(super) async fn give_back_distro_rule(&mut self) {
        let Some(files) = self.rule_files.take() else {
            return;
        };
        let changed = match release(&*files) {
            Ok(changed) => changed,
            Err(error) => {
                tracing::error!("{error}");
                true
            }
        };
        self.publish(|s| s.masked_rule.clear());
        if changed {
            let _ = tokio::task::spawn_blocking(move || reload_udev(&*files)).await;
        }
    }
}

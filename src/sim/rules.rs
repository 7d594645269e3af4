//! The simulated twin of the udev rules directories: files held in memory by host path, a udevd that counts
//! reloads (or is not running), and writes that fail on demand. Every change is also written to a journal that
//! a test can share with a notifier, to see what happened in which order.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};

use crate::core::rule_mask::{
    self, Action, Found, RuntimeFile, DISTRO_RULES, RUNTIME_DIR, VENDOR_DIRS,
};
use crate::edge::{Applied, RuleFileError, RuleFiles, UdevReload};

pub type Journal = Arc<Mutex<Vec<String>>>;

#[derive(Default)]
struct State {
    files: BTreeMap<String, String>,
    /// Host paths that are the same file as another (a merged /usr's /lib → /usr/lib).
    aliases: BTreeMap<String, String>,
    reloads: u32,
    fail_writes: bool,
}

#[derive(Clone)]
pub struct SimulatedRuleFiles {
    state: Arc<Mutex<State>>,
    udevd_running: bool,
    journal: Journal,
}

impl SimulatedRuleFiles {
    pub fn new(udevd_running: bool) -> Self {
        Self {
            state: Arc::default(),
            udevd_running,
            journal: Journal::default(),
        }
    }

    /// Records into `journal` as well (shared with whatever else a test records).
    pub fn with_journal(mut self, journal: Journal) -> Self {
        self.journal = journal;
        self
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn record(&self, entry: String) {
        self.journal
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(entry);
    }

    pub fn put(&self, path: &str, text: &str) -> &Self {
        self.lock().files.insert(path.to_owned(), text.to_owned());
        self
    }

    /// `alias` names the same file as `path`.
    pub fn alias(&self, alias: &str, path: &str) -> &Self {
        self.lock()
            .aliases
            .insert(alias.to_owned(), path.to_owned());
        self
    }

    pub fn get(&self, path: &str) -> Option<String> {
        let state = self.lock();
        state.files.get(resolve(&state, path)).cloned()
    }

    pub fn reloads(&self) -> u32 {
        self.lock().reloads
    }

    pub fn fail_writes(&self, fail: bool) {
        self.lock().fail_writes = fail;
    }
}

fn resolve<'a>(state: &'a State, path: &'a str) -> &'a str {
    state.aliases.get(path).map_or(path, String::as_str)
}

impl RuleFiles for SimulatedRuleFiles {
    fn survey(&self) -> Result<Vec<Found>, RuleFileError> {
        let state = self.lock();
        Ok(DISTRO_RULES
            .iter()
            .map(|rule| {
                let runtime = match state.files.get(&rule_mask::runtime_path(rule)) {
                    None => RuntimeFile::Absent,
                    Some(text) => rule_mask::parse_header(text)
                        .map_or(RuntimeFile::Foreign, RuntimeFile::Ours),
                };
                let mut seen = BTreeSet::new();
                let vendor = VENDOR_DIRS
                    .iter()
                    .map(|dir| format!("{dir}/{}", rule.name))
                    .filter(|path| {
                        let real = resolve(&state, path).to_owned();
                        state.files.contains_key(&real) && seen.insert(real)
                    })
                    .collect();
                Found {
                    rule: *rule,
                    admin_file: state.files.contains_key(&rule_mask::admin_path(rule)),
                    runtime,
                    vendor,
                    template: rule.template.is_some_and(|t| state.files.contains_key(t)),
                }
            })
            .collect())
    }

    fn apply(&self, action: &Action) -> Result<Applied, RuleFileError> {
        let mut state = self.lock();
        let path = action.path().to_owned();
        if state.fail_writes {
            return Err(RuleFileError {
                path,
                message: "simulated failure (EROFS)".into(),
            });
        }
        let ours = state
            .files
            .get(&path)
            .is_some_and(|text| rule_mask::parse_header(text).is_some());
        if !matches!(action, Action::Write { .. }) && !ours {
            return Ok(Applied::NotOurs);
        }
        assert!(
            path.starts_with(RUNTIME_DIR),
            "{path} is outside {RUNTIME_DIR}"
        );
        match action {
            Action::Write { text, .. } => {
                state.files.insert(path.clone(), text.clone());
            }
            Action::Remove { .. } => {
                state.files.remove(&path);
            }
            Action::Restore { from, .. } => {
                let text = state.files.get(from).cloned().ok_or(RuleFileError {
                    path: from.clone(),
                    message: "No such file or directory".into(),
                })?;
                state.files.insert(path.clone(), text);
            }
        }
        drop(state);
        self.record(match action {
            Action::Write { .. } => format!("write {path}"),
            Action::Remove { .. } => format!("remove {path}"),
            Action::Restore { from, .. } => format!("restore {path} from {from}"),
        });
        Ok(Applied::Done)
    }

    fn reload_udev(&self) -> Result<UdevReload, RuleFileError> {
        if !self.udevd_running {
            return Ok(UdevReload::NotRunning);
        }
        self.lock().reloads += 1;
        self.record("udevd reload".into());
        Ok(UdevReload::Reloaded)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Settings;
    use crate::daemon::{Daemon, Event, RunOptions};
    use crate::edge::{BoxFuture, EventSource, Notification, Notifier};
    use crate::host::snapshot::SnapshotReader;
    use crate::host::sysroot::Sysroot;
    use crate::sim::{LoaderBehaviour, SimulatedLoader};

    const DEBIAN_RULE: &str = "/lib/udev/rules.d/50-kdump-tools.rules";
    const MASK: &str = "/run/udev/rules.d/50-kdump-tools.rules";

    struct Silent;

    impl EventSource for Silent {
        fn name(&self) -> String {
            "silent".into()
        }
        fn run(self: Box<Self>, _: crate::messages::UeventSender) -> BoxFuture<()> {
            Box::pin(std::future::pending())
        }
    }

    struct JournalNotifier(Journal);

    impl Notifier for JournalNotifier {
        fn notify(&self, notification: Notification) {
            let entry = match notification {
                Notification::Ready { .. } => "READY",
                Notification::Stopping => "STOPPING",
                Notification::Reloaded { .. } => "RELOADED",
                _ => return,
            };
            self.0.lock().unwrap().push(entry.into());
        }
    }

    fn daemon(
        settings: Settings,
        next: Settings,
        files: &SimulatedRuleFiles,
        journal: &Journal,
    ) -> (Daemon, crate::daemon::DaemonHandle) {
        let root = Sysroot::new(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/small-vm"
        ));
        let loader = |method| {
            Arc::new(Arc::new(SimulatedLoader::new(
                None,
                LoaderBehaviour::default(),
                method,
            ))) as Arc<dyn crate::edge::Loader>
        };
        let (daemon, handle) = Daemon::new(
            settings,
            Box::new(move || Ok(next.clone())),
            SnapshotReader::open(root).unwrap(),
            crate::daemon::Loaders {
                configured: loader(crate::core::decide::LoaderChoice::Configured),
                kexec_load: loader(crate::core::decide::LoaderChoice::KexecLoad),
                description: "simulated".to_owned(),
            },
            Arc::new(JournalNotifier(journal.clone())),
            RunOptions::default(),
        );
        (daemon.with_rule_files(Arc::new(files.clone())), handle)
    }

    async fn reload_config(handle: &crate::daemon::DaemonHandle) {
        let (reply, replied) = tokio::sync::oneshot::channel();
        handle
            .events
            .send(Event::ConfigReload { reply: Some(reply) })
            .await
            .unwrap();
        replied.await.unwrap().unwrap();
    }

    /// Waits until the blocking reload task beside the loop has run.
    async fn reloads_reach(files: &SimulatedRuleFiles, n: u32) {
        tokio::time::timeout(std::time::Duration::from_secs(10), async {
            while files.reloads() < n {
                tokio::task::yield_now().await;
            }
        })
        .await
        .expect("udevd reload");
    }

    #[tokio::test]
    async fn masked_before_ready_given_back_at_stop() {
        let journal = Journal::default();
        let files = SimulatedRuleFiles::new(true).with_journal(journal.clone());
        files.put(DEBIAN_RULE, "RUN+=\"kdump-config try-reload\"\n");
        let (daemon, handle) = daemon(Settings::default(), Settings::default(), &files, &journal);
        let running = tokio::spawn(daemon.run(Box::new(Silent)));
        reloads_reach(&files, 1).await;
        let mask = files.get(MASK).expect("the mask");
        assert_eq!(rule_mask::parse_header(&mask).unwrap().masks, [DEBIAN_RULE]);
        assert_eq!(handle.status.borrow().masked_rule, MASK);
        handle.events.send(Event::Shutdown).await.unwrap();
        running.await.unwrap();
        assert_eq!(files.get(MASK), None);
        assert_eq!(
            files.get(DEBIAN_RULE).as_deref(),
            Some("RUN+=\"kdump-config try-reload\"\n")
        );
        // The reload runs beside the loop, so only these orders are fixed.
        let journal = journal.lock().unwrap().clone();
        let at = |entry: &str| {
            journal
                .iter()
                .position(|e| e == entry)
                .unwrap_or_else(|| panic!("no {entry:?} in {journal:?}"))
        };
        assert!(at(&format!("write {MASK}")) < at("READY"), "{journal:?}");
        assert!(
            at("STOPPING") < at(&format!("remove {MASK}")),
            "{journal:?}"
        );
        assert_eq!(journal.last().map(String::as_str), Some("udevd reload"));
        assert_eq!(files.reloads(), 2);
    }

    #[tokio::test]
    async fn suse_copy_is_masked_again_after_a_reload_and_put_back_at_stop() {
        const TEMPLATE: &str = "/usr/lib/kdump/70-kdump.rules";
        const COPY: &str = "/run/udev/rules.d/70-kdump.rules";
        let journal = Journal::default();
        let files = SimulatedRuleFiles::new(true).with_journal(journal.clone());
        files
            .put(TEMPLATE, "kdump's rule\n")
            .put(COPY, "kdump's rule\n");
        let (daemon, handle) = daemon(Settings::default(), Settings::default(), &files, &journal);
        let running = tokio::spawn(daemon.run(Box::new(Silent)));
        reloads_reach(&files, 1).await;
        let header = rule_mask::parse_header(&files.get(COPY).unwrap()).unwrap();
        assert_eq!(header.restore_from.as_deref(), Some(TEMPLATE));
        assert_eq!(handle.status.borrow().masked_rule, COPY);
        // A reload through `systemctl restart kdump`: kdump's load.sh copies its rule over the mask.
        files.put(COPY, "kdump's rule\n");
        let (reply, replied) = tokio::sync::oneshot::channel();
        handle
            .events
            .send(Event::Request(crate::daemon::Request::Reload { reply }))
            .await
            .unwrap();
        let outcome = replied.await.unwrap();
        assert!(outcome.starts_with("reloaded"), "{outcome}");
        reloads_reach(&files, 2).await;
        assert!(rule_mask::parse_header(&files.get(COPY).unwrap()).is_some());
        handle.events.send(Event::Shutdown).await.unwrap();
        running.await.unwrap();
        assert_eq!(files.get(COPY).as_deref(), Some("kdump's rule\n"));
        assert_eq!(files.reloads(), 3);
    }

    #[tokio::test]
    async fn sighup_with_the_flag_off_gives_the_rule_back() {
        let journal = Journal::default();
        let files = SimulatedRuleFiles::new(true).with_journal(journal.clone());
        files.put(DEBIAN_RULE, "rule\n");
        let off = Settings {
            mask_distro_rule: false,
            ..Settings::default()
        };
        let (daemon, handle) = daemon(Settings::default(), off, &files, &journal);
        let running = tokio::spawn(daemon.run(Box::new(Silent)));
        reloads_reach(&files, 1).await;
        assert!(files.get(MASK).is_some());
        reload_config(&handle).await;
        assert_eq!(files.get(MASK), None);
        assert_eq!(handle.status.borrow().masked_rule, "");
        reloads_reach(&files, 2).await;
        handle.events.send(Event::Shutdown).await.unwrap();
        running.await.unwrap();
        // Nothing of ours left at the stop: no change, no further reload.
        assert_eq!(files.reloads(), 2);
    }

    #[tokio::test]
    async fn the_admins_file_dry_runs_and_failed_writes_mask_nothing() {
        let journal = Journal::default();
        let files = SimulatedRuleFiles::new(true).with_journal(journal.clone());
        files
            .put("/usr/lib/udev/rules.d/98-kexec.rules", "rule\n")
            .put("/etc/udev/rules.d/98-kexec.rules", "# mine\n");
        let settings = Settings::default();
        let (daemon, handle) = daemon(settings.clone(), settings, &files, &journal);
        let running = tokio::spawn(daemon.run(Box::new(Silent)));
        reload_config(&handle).await;
        assert_eq!(handle.status.borrow().masked_rule, "");
        assert_eq!(files.get("/run/udev/rules.d/98-kexec.rules"), None);
        handle.events.send(Event::Shutdown).await.unwrap();
        running.await.unwrap();

        let dry = SimulatedRuleFiles::new(true);
        dry.put(DEBIAN_RULE, "rule\n");
        let settings = Settings {
            dry_run: true,
            ..Settings::default()
        };
        assert_eq!(stand_in(&dry, &settings), StandInResult::default());
        assert_eq!(dry.get(MASK), None);

        let failing = SimulatedRuleFiles::new(true);
        failing.put(DEBIAN_RULE, "rule\n");
        failing.fail_writes(true);
        assert_eq!(
            stand_in(&failing, &Settings::default()),
            StandInResult::default()
        );
    }

    type StandInResult = crate::daemon::rule_mask::StandIn;

    fn stand_in(files: &SimulatedRuleFiles, settings: &Settings) -> StandInResult {
        crate::daemon::rule_mask::stand_in(files, settings.mask_distro_rule, settings.dry_run, true)
    }

    #[test]
    fn merged_usr_lists_the_rule_once_and_release_leaves_foreign_files() {
        let files = SimulatedRuleFiles::new(false);
        files
            .put("/usr/lib/udev/rules.d/50-kdump-tools.rules", "rule\n")
            .alias(DEBIAN_RULE, "/usr/lib/udev/rules.d/50-kdump-tools.rules")
            .put(
                "/run/udev/rules.d/98-kexec.rules",
                "# an admin's runtime file\n",
            );
        let outcome = crate::daemon::rule_mask::stand_in(&files, true, false, true);
        assert_eq!(outcome.masked, [MASK]);
        let header = rule_mask::parse_header(&files.get(MASK).unwrap()).unwrap();
        assert_eq!(header.masks, ["/usr/lib/udev/rules.d/50-kdump-tools.rules"]);
        assert_eq!(crate::daemon::rule_mask::release(&files), Ok(true));
        assert_eq!(files.get(MASK), None);
        assert_eq!(
            files.get("/run/udev/rules.d/98-kexec.rules").as_deref(),
            Some("# an admin's runtime file\n")
        );
        assert_eq!(crate::daemon::rule_mask::release(&files), Ok(false));
    }
}

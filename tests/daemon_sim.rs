//! The whole owner loop on the simulated host, with tokio's paused clock: no test waits in real time.

use std::sync::Arc;
use std::time::Duration;

use kdump_hotplugd::config::{ConfigError, Settings};
use kdump_hotplugd::core::decide::LoaderChoice;
use kdump_hotplugd::daemon::{BusSignal, Event, Request, State, MAX_RELOAD_WAITERS};
use kdump_hotplugd::edge::Notification;
use kdump_hotplugd::sim::run::{Simulation, SimulationOptions, SimulationOutcome};
use kdump_hotplugd::sim::{LoaderBehaviour, Scenario, Step};
use tokio::sync::{broadcast, oneshot};

fn default_config() -> Box<dyn FnMut() -> Result<Settings, ConfigError> + Send> {
    Box::new(|| Ok(Settings::default()))
}

async fn simulate(scenario: Scenario) -> SimulationOutcome {
    Simulation::new(scenario, Settings::default(), default_config())
        .expect("simulation")
        .run()
        .await
}

fn scenario(name: &str) -> Scenario {
    Scenario::named(name).unwrap_or_else(|| panic!("no scenario {name}"))
}

#[tokio::test(start_paused = true)]
async fn a_terabyte_of_virtio_mem_is_one_reload() {
    let outcome = simulate(scenario("virtio-mem-1t")).await;
    let c = &outcome.report;
    assert_eq!(c.events_seen, 16_384);
    assert_eq!(c.reloads, 1);
    assert_eq!(c.reloads_failed, 0);
    assert_eq!(c.events_coalesced, 16_383);
    // How many batches there are is the simulator's setting (batch_size uevents per simulated read); what is
    // checked is that the daemon counts each delivered batch once and that a burst spread over many reads is
    // still one reload.
    assert!(
        outcome.batches_delivered > 1,
        "{}",
        outcome.batches_delivered
    );
    assert_eq!(c.uevent_batches, outcome.batches_delivered);
    assert_eq!(outcome.new_ranges.len(), 1);
    assert_eq!(outcome.new_ranges[0].size(), 1 << 40);
    assert!(
        outcome.coverage.missing().is_empty(),
        "the dump misses {:?}",
        outcome.coverage.missing()
    );
    assert_eq!(outcome.report.last_error, "");
    assert!(matches!(
        outcome.notifications.first(),
        Some(Notification::Ready { .. })
    ));
}

#[tokio::test(start_paused = true)]
async fn without_the_daemon_the_simulated_dump_misses_the_new_memory() {
    // The control: the same host and plug, but nobody reloads. Proves the coverage check can fail.
    let s = scenario("virtio-mem-1t");
    let host = kdump_hotplugd::sim::SimulatedHost::new(s).expect("host");
    let (tx, mut rx) = tokio::sync::mpsc::channel(1024);
    let source: Box<dyn kdump_hotplugd::edge::EventSource> = Box::new(host.clone());
    let task = tokio::spawn(source.run(kdump_hotplugd::messages::UeventSender::new(tx)));
    while let Some(event) = rx.recv().await {
        if matches!(event, Event::SourceFinished(_)) {
            break;
        }
    }
    task.await.expect("source");
    assert_eq!(host.coverage().missing().len(), 1);
}

#[tokio::test(start_paused = true)]
async fn a_self_updating_kernel_needs_no_reload() {
    let outcome = simulate(scenario("self-updating")).await;
    let c = &outcome.report;
    assert_eq!(c.events_seen, 1024);
    assert_eq!(c.reloads, 0);
    assert_eq!(c.reloads_skipped, 1);
    assert!(outcome.loads.is_empty());
    assert!(outcome.coverage.missing().is_empty());
    // A skip never tells the service manager it is reloading.
    let reloading: Vec<_> = outcome
        .notifications
        .iter()
        .filter(|n| matches!(n, Notification::Status(s) if s.starts_with("reloading")))
        .collect();
    assert!(reloading.is_empty(), "{reloading:?}");
}

#[tokio::test(start_paused = true)]
async fn overflowing_the_kernel_buffer_reloads_through_kexec_load() {
    let outcome = simulate(scenario("sparse-overflow")).await;
    let c = &outcome.report;
    assert_eq!(c.reloads, 1);
    assert!(
        c.kernel_update_failures >= 1,
        "the kernel's overflow line was caught"
    );
    assert_eq!(outcome.loads.len(), 1);
    assert_eq!(
        outcome.loads[0].method,
        LoaderChoice::KexecLoad,
        "never a kexec_file_load that cannot fit"
    );
    assert_eq!(outcome.loads[0].ranges, 3 + 10_240);
    assert!(outcome.coverage.missing().is_empty());
}

#[tokio::test(start_paused = true)]
async fn a_stale_header_kernel_past_8192_ranges_reloads_with_kexec_file_load() {
    // Issue 13: a 6.1-like kernel has no crash hotplug buffer; kexec_file_load sizes its header to the ranges.
    let outcome = simulate(scenario("sparse-stale")).await;
    assert_eq!(outcome.report.reloads, 1);
    assert_eq!(outcome.loads.len(), 1);
    assert_eq!(outcome.loads[0].method, LoaderChoice::Configured);
    assert_eq!(outcome.loads[0].ranges, 3 + 9_000);
    assert!(
        !outcome
            .report
            .last_reload_reason
            .contains("buffer too small"),
        "{}",
        outcome.report.last_reload_reason
    );
    assert!(outcome.coverage.missing().is_empty());
}

#[tokio::test(start_paused = true)]
async fn cpu_hotplug_reloads_for_each_settled_change() {
    let outcome = simulate(scenario("cpu-hotplug")).await;
    assert_eq!(outcome.report.reloads, 2);
    let cpus: Vec<usize> = outcome.loads.iter().map(|l| l.cpus).collect();
    assert_eq!(cpus, vec![4, 3]);
}

#[tokio::test(start_paused = true)]
async fn events_during_a_slow_reload_make_exactly_one_follow_up() {
    let outcome = simulate(scenario("slow-loader")).await;
    let c = &outcome.report;
    assert_eq!(c.events_seen, 2 * 1024);
    assert_eq!(c.reloads, 2, "the one in flight and exactly one follow-up");
    assert!(outcome.coverage.missing().is_empty());
}

#[tokio::test(start_paused = true)]
async fn a_failing_loader_is_retried_with_backoff_and_reported() {
    let started = tokio::time::Instant::now();
    let outcome = simulate(scenario("failing-loader")).await;
    let c = &outcome.report;
    assert_eq!(c.reloads_failed, 2);
    assert_eq!(c.reloads, 1);
    assert_eq!(outcome.loads.iter().filter(|l| !l.succeeded).count(), 2);
    // quiet 1 s, then backoffs of 1 s and 2 s between the attempts of 0.2 s each.
    assert!(started.elapsed() >= Duration::from_millis(1000 + 1000 + 2000 + 600));
    assert!(outcome.coverage.missing().is_empty());
    let statuses: Vec<&Notification> = outcome
        .notifications
        .iter()
        .filter(|n| matches!(n, Notification::Status(s) if s.contains("reload failed")))
        .collect();
    assert!(
        !statuses.is_empty(),
        "the failure reached the service manager's status"
    );
}

#[tokio::test(start_paused = true)]
async fn malformed_uevents_are_counted_and_skipped() {
    let outcome = simulate(scenario("malformed")).await;
    let c = &outcome.report;
    assert_eq!(c.events_malformed, 5);
    assert_eq!(c.events_seen, 128);
    assert_eq!(c.reloads, 1);
}

#[tokio::test(start_paused = true)]
async fn a_forced_reload_replies_with_its_outcome_and_pause_defers_reloads() {
    let mut s = scenario("virtio-mem-1t");
    s.steps = vec![
        Step::Pause(Duration::from_secs(5)),
        Step::Plug {
            bytes: 4 << 30,
            sparse: false,
        },
    ];
    s.loader = LoaderBehaviour {
        delay: Duration::from_millis(100),
        failures: 0,
        panics: 0,
    };
    let simulation = Simulation::new(s, Settings::default(), default_config()).expect("simulation");
    let handle = simulation.handle();
    let run = tokio::spawn(simulation.run());

    let (reply, answer) = oneshot::channel();
    handle
        .events
        .send(Event::Request(Request::Reload { reply }))
        .await
        .expect("send");
    let outcome = answer.await.expect("an answer");
    assert!(outcome.starts_with("reloaded: forced"), "{outcome}");

    let (reply, done) = oneshot::channel();
    handle
        .events
        .send(Event::Request(Request::SetPaused {
            paused: true,
            reply,
        }))
        .await
        .expect("send");
    done.await.expect("paused");
    let mut status = handle.status.clone();
    // The plug comes and goes while paused: counted, not reloaded.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while status.borrow().events_seen < 64 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "events never arrived"
        );
        let _ = tokio::time::timeout_at(deadline, status.changed()).await;
    }
    // The clock is paused: this advances virtual time past every debounce deadline, instantly.
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(status.borrow().reloads, 1, "no reload while paused");
    assert!(status.borrow().paused);

    let (reply, done) = oneshot::channel();
    handle
        .events
        .send(Event::Request(Request::SetPaused {
            paused: false,
            reply,
        }))
        .await
        .expect("send");
    done.await.expect("unpaused");
    let outcome = run.await.expect("daemon");
    assert_eq!(outcome.report.reloads, 2, "one reload follows the unpause");
    assert!(outcome.coverage.missing().is_empty());
}

#[tokio::test(start_paused = true)]
async fn a_bad_config_on_reload_is_reported_and_the_old_one_kept() {
    let mut s = scenario("virtio-mem-1t");
    s.steps = vec![Step::Pause(Duration::from_secs(2))];
    let mut calls = 0;
    let source = Box::new(move || {
        calls += 1;
        Err(ConfigError::Invalid {
            file: "/etc/kdump-hotplugd/config.d/10-x.toml".into(),
            line: 3,
            key: "debounce.quiet_window_ms".into(),
            message: format!("expected an integer (call {calls})"),
        })
    });
    let simulation = Simulation::new(s, Settings::default(), source).expect("simulation");
    let handle = simulation.handle();
    let run = tokio::spawn(simulation.run());
    let (reply, answer) = oneshot::channel();
    handle
        .events
        .send(Event::ConfigReload { reply: Some(reply) })
        .await
        .expect("send");
    let error = answer
        .await
        .expect("answer")
        .expect_err("the bad config is refused");
    assert!(
        error.contains("10-x.toml:3: debounce.quiet_window_ms"),
        "{error}"
    );
    assert!(handle
        .status
        .borrow()
        .last_error
        .contains("keeping the previous one"));
    assert_eq!(handle.status.borrow().state, State::Error);
    let outcome = run
        .await
        .expect("daemon keeps running until its source ends");
    assert_eq!(outcome.report.events_seen, 0);
}

#[tokio::test(start_paused = true)]
async fn shutdown_stops_the_loop_cleanly() {
    let mut s = scenario("virtio-mem-1t");
    s.steps = vec![Step::Pause(Duration::from_secs(3600))];
    let simulation = Simulation::new(s, Settings::default(), default_config()).expect("simulation");
    let handle = simulation.handle();
    let run = tokio::spawn(simulation.run());
    handle.events.send(Event::Shutdown).await.expect("send");
    let outcome = tokio::time::timeout(Duration::from_secs(1), run)
        .await
        .expect("stops")
        .expect("no panic");
    assert!(matches!(
        outcome.notifications.last(),
        Some(Notification::Stopping)
    ));
}

/// Every bus signal sent so far.
fn signals_heard(receiver: &mut broadcast::Receiver<BusSignal>) -> Vec<BusSignal> {
    let mut all = Vec::new();
    while let Ok(signal) = receiver.try_recv() {
        all.push(signal);
    }
    all
}

fn statuses(outcome: &SimulationOutcome) -> Vec<&str> {
    outcome
        .notifications
        .iter()
        .filter_map(|n| match n {
            Notification::Status(status) => Some(status.as_str()),
            _ => None,
        })
        .collect()
}

/// A loader that panics is a failed reload that names the panic, is retried after the backoff, and the retry
/// covers the plug: without supervision the debouncer would stay "reloading" for ever.
#[tokio::test(start_paused = true)]
async fn a_panicking_loader_is_a_failed_reload_with_the_panic_text_and_is_retried() {
    let mut s = scenario("virtio-mem-1t");
    s.loader.panics = 1;
    let simulation = Simulation::new(s, Settings::default(), default_config()).expect("simulation");
    let mut heard = simulation.handle().bus_signals.subscribe();
    let outcome = tokio::time::timeout(Duration::from_secs(600), simulation.run())
        .await
        .expect("the loop ends: the panicked reload did not wedge it");
    let c = &outcome.report;
    assert_eq!(c.reloads_failed, 1);
    assert_eq!(c.reloads, 1, "the retry succeeded");
    assert!(outcome.coverage.missing().is_empty());
    assert_eq!(outcome.report.last_error, "", "cleared by the retry");
    let panic_text = "the loader panicked: simulated loader bug: index out of range";
    assert!(
        statuses(&outcome).iter().any(
            |s| s.starts_with("backoff") && s.contains(&format!("reload failed: {panic_text}"))
        ),
        "{:#?}",
        outcome.notifications
    );
    let finished: Vec<_> = signals_heard(&mut heard)
        .into_iter()
        .filter_map(|n| match n {
            BusSignal::ReloadFinished {
                success, reason, ..
            } => Some((success, reason)),
            _ => None,
        })
        .collect();
    assert_eq!(finished.len(), 2, "{finished:?}");
    assert!(
        !finished[0].0 && finished[0].1.ends_with(panic_text),
        "{finished:?}"
    );
    assert!(finished[1].0, "{finished:?}");
}

/// A reload that hangs past `daemon.reload_timeout_ms` is reported at the deadline (status, counter, signal),
/// and from then on no `WATCHDOG=1` goes out until it ends; before the deadline the pings flow.
#[tokio::test(start_paused = true)]
async fn a_stuck_reload_is_reported_at_its_deadline_and_the_watchdog_withheld() {
    let mut s = scenario("virtio-mem-1t");
    s.loader.delay = Duration::from_secs(3600);
    let settings = Settings::default();
    let timeout = settings.reload_timeout;
    let options = SimulationOptions {
        watchdog: Some(Duration::from_secs(20)),
        ..SimulationOptions::default()
    };
    let simulation =
        Simulation::with_options(s, settings, default_config(), options).expect("simulation");
    let handle = simulation.handle();
    let mut heard = handle.bus_signals.subscribe();
    let run = tokio::spawn(simulation.run());

    // Virtual time at which the reload started and at which it was reported stuck.
    let mut status = handle.status.clone();
    let started = loop {
        if status.borrow_and_update().state == State::Reloading {
            break tokio::time::Instant::now();
        }
        status.changed().await.expect("the loop runs");
    };
    let reported = loop {
        if status.borrow_and_update().reloads_timed_out == 1 {
            break tokio::time::Instant::now();
        }
        status.changed().await.expect("the loop runs");
    };
    assert_eq!(reported - started, timeout, "reported at the deadline");
    let last_error = status.borrow().last_error.clone();
    assert!(
        last_error.starts_with("reload stuck: simulated kexec_file_load has run for 180 s"),
        "{last_error}"
    );
    assert_eq!(
        status.borrow().state,
        State::Reloading,
        "still waiting for it"
    );
    let timed_out: Vec<_> = signals_heard(&mut heard)
        .into_iter()
        .filter_map(|n| match n {
            BusSignal::ReloadTimedOut {
                reason,
                timeout_usec,
            } => Some((reason, timeout_usec)),
            _ => None,
        })
        .collect();
    assert_eq!(
        timed_out.len(),
        1,
        "one ReloadTimedOut signal: {timed_out:?}"
    );
    assert_eq!(timed_out[0].1, 180_000_000);
    assert!(!timed_out[0].0.is_empty(), "it says why the reload started");

    let outcome = run.await.expect("daemon");
    assert_eq!(outcome.report.reloads, 1, "it ended after all");
    assert_eq!(outcome.report.reloads_timed_out, 1);
    let n = &outcome.notifications;
    let position = |wanted: &dyn Fn(&Notification) -> bool| n.iter().position(wanted);
    let reloading =
        position(&|x| matches!(x, Notification::Status(s) if s.starts_with("reloading: ")))
            .expect("a reloading status");
    let stuck = position(&|x| matches!(x, Notification::Status(s) if s.contains("reload stuck")))
        .expect("the stuck status");
    let done = position(&|x| matches!(x, Notification::Status(s) if s.contains("reloads 1 (")))
        .expect("the reload's end");
    assert!(reloading < stuck && stuck < done, "{n:#?}");
    let pings = |range: std::ops::Range<usize>| {
        n[range]
            .iter()
            .filter(|x| **x == Notification::Watchdog)
            .count()
    };
    // Every 10 s (half the interval) for the 180 s before the deadline.
    assert!(pings(reloading..stuck) >= 17, "{}", pings(reloading..stuck));
    assert_eq!(
        pings(stuck..done),
        0,
        "no WATCHDOG=1 while the reload is stuck"
    );
}

/// While paused, `Reload()` is answered at once (the reload waits for the unpause, which may never come);
/// the unpause then runs the reload asked for.
#[tokio::test(start_paused = true)]
async fn reload_requests_while_paused_are_answered_at_once() {
    let mut s = scenario("virtio-mem-1t");
    s.steps = vec![Step::Pause(Duration::from_secs(60))];
    let simulation = Simulation::new(s, Settings::default(), default_config()).expect("simulation");
    let handle = simulation.handle();
    let run = tokio::spawn(simulation.run());
    let (reply, done) = oneshot::channel();
    handle
        .events
        .send(Event::Request(Request::SetPaused {
            paused: true,
            reply,
        }))
        .await
        .expect("send");
    done.await.expect("paused");
    for _ in 0..200 {
        let (reply, answer) = oneshot::channel();
        handle
            .events
            .send(Event::Request(Request::Reload { reply }))
            .await
            .expect("send");
        // No virtual time passes: the answer does not wait for a reload (which waits for the unpause).
        let asked = tokio::time::Instant::now();
        let answer = tokio::time::timeout(Duration::from_secs(1), answer)
            .await
            .expect("answered at once, not after an unpause")
            .expect("answered");
        assert_eq!(tokio::time::Instant::now(), asked);
        assert!(answer.starts_with("paused: "), "{answer}");
    }
    assert_eq!(handle.status.borrow().reloads, 0);
    let (reply, done) = oneshot::channel();
    handle
        .events
        .send(Event::Request(Request::SetPaused {
            paused: false,
            reply,
        }))
        .await
        .expect("send");
    done.await.expect("unpaused");
    let outcome = run.await.expect("daemon");
    assert_eq!(
        outcome.report.reloads, 1,
        "the unpause runs the reload asked for"
    );
}

/// Callers piling up behind a slow reload are bounded: the first [`MAX_RELOAD_WAITERS`] get its outcome, the
/// rest are answered at once.
#[tokio::test(start_paused = true)]
async fn reload_waiters_are_bounded() {
    let mut s = scenario("virtio-mem-1t");
    s.steps = vec![Step::Pause(Duration::from_secs(1))];
    s.loader.delay = Duration::from_secs(60);
    let simulation = Simulation::new(s, Settings::default(), default_config()).expect("simulation");
    let handle = simulation.handle();
    let run = tokio::spawn(simulation.run());
    let extra = 6;
    let mut answers = Vec::new();
    for _ in 0..MAX_RELOAD_WAITERS + extra {
        let (reply, answer) = oneshot::channel();
        handle
            .events
            .send(Event::Request(Request::Reload { reply }))
            .await
            .expect("send");
        answers.push(answer);
    }
    let mut texts = Vec::new();
    for answer in answers {
        texts.push(answer.await.expect("every caller is answered"));
    }
    let queued = texts
        .iter()
        .filter(|t| t.starts_with("queued: 64 callers"))
        .count();
    let reloaded = texts.iter().filter(|t| t.starts_with("reloaded: ")).count();
    assert_eq!(
        (queued, reloaded),
        (extra, MAX_RELOAD_WAITERS),
        "{texts:#?}"
    );
    run.await.expect("daemon");
}

/// A restarted instance does not trust a loaded header that its predecessor recorded for other memory (the
/// distribution tier's SIGKILL in the middle of a burst found the restarted daemon trusting kdump-tools' stale
/// header); a first start (no record) and a matching record trust it; every load updates the record.
#[tokio::test(start_paused = true)]
async fn a_restart_reloads_when_memory_changed_since_the_recorded_header() {
    use kdump_hotplugd::core::decide::LoadedHeader;
    use kdump_hotplugd::core::header_record;
    use kdump_hotplugd::core::model::MemRange;
    use kdump_hotplugd::host::snapshot::SnapshotReader;
    use kdump_hotplugd::host::sysroot::Sysroot;
    use kdump_hotplugd::sim::SimulatedHeaderRecords;

    // 1 TiB in one burst: one reload when the start trusts the loaded header.
    let run = |records: Arc<SimulatedHeaderRecords>| async move {
        let options = SimulationOptions {
            header_records: Some(records),
            ..SimulationOptions::default()
        };
        let simulation = Simulation::with_options(
            scenario("virtio-mem-1t"),
            Settings::default(),
            default_config(),
            options,
        )
        .expect("simulation");
        let at_boot = SnapshotReader::open(Sysroot::new(simulation.host().sysroot()))
            .and_then(|mut reader| reader.take())
            .map(|snapshot| LoadedHeader::of(&snapshot))
            .expect("the simulated host's snapshot");
        (simulation.run().await, at_boot)
    };
    // First start in this boot: the distro's load is trusted; the record ends with the header loaded last.
    let first = SimulatedHeaderRecords::holding(None);
    let (outcome, at_boot) = run(first.clone()).await;
    assert_eq!(outcome.report.reloads, 1, "{}", outcome.report.summary);
    let last = header_record::parse("record", &first.text().unwrap()).unwrap();
    assert_eq!(
        last.ranges.len(),
        at_boot.ranges.len() + 1,
        "the record holds the header of the burst's reload: {last:?}"
    );
    // A restart that finds the memory its predecessor recorded: trusted, the burst alone reloads; its first
    // uevent starts the burst, the other 16,383 are coalesced into it.
    let same = SimulatedHeaderRecords::holding(Some(header_record::render(&at_boot)));
    let trusted = run(same).await.0.report;
    assert_eq!((trusted.reloads, trusted.events_coalesced), (1, 16_383));
    // A restart after memory changed while no instance listened: a reload is due at start. It waits for the
    // quiet window like an event (a restart in the middle of a burst hears its rest), so the burst that follows
    // rides on it: still one reload, every uevent coalesced into the start's.
    let mut stale = at_boot.clone();
    stale
        .ranges
        .push(MemRange::new(0x7000_0000_0000, 0x7000_07ff_ffff));
    let older = SimulatedHeaderRecords::holding(Some(header_record::render(&stale)));
    let (outcome, _) = run(older.clone()).await;
    assert_eq!(
        (outcome.report.reloads, outcome.report.events_coalesced),
        (1, 16_384),
        "{}",
        outcome.report.summary
    );
    assert!(outcome.coverage.missing().is_empty());
    // A damaged record: nothing is known of the header, the same.
    let damaged = SimulatedHeaderRecords::holding(Some("garbage".to_owned()));
    let report = run(damaged).await.0.report;
    assert_eq!((report.reloads, report.events_coalesced), (1, 16_384));
}

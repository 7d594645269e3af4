//! The `kdump-hotplugd` subcommands: the daemon (`run`) and its tools, with their printers.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};

mod plan;

use crate::config::{self, Settings};
use crate::core::decide::{self, LoadedHeader, Triggers};
use crate::core::reservation;
use crate::daemon::Event;
use crate::dbus::{self, BusAddress};
use crate::edge::signals;
use crate::host::snapshot::SnapshotReader;
use crate::host::sysroot::Sysroot;
use crate::real_host;
use crate::sim::run::{Simulation, SimulationOptions, SimulationOutcome};
use crate::sim::Scenario;

#[derive(Parser)]
#[command(
    name = "kdump-hotplugd",
    version,
    about = "Keeps the kdump crash kernel's ELF core header in step with \
memory and CPU hotplug"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the daemon (on this host, or on a simulated one with --simulate).
    Run {
        /// Root for every path the daemon reads: /proc, /sys, /etc, /boot, /dev/kmsg (fixture trees).
        #[arg(long, default_value = "/")]
        sysroot: PathBuf,
        /// Run on a simulated host instead of this one; SCENARIO defaults to virtio-mem-1t.
        #[arg(long, value_name = "SCENARIO", num_args = 0..=1, default_missing_value = "virtio-mem-1t")]
        simulate: Option<String>,
        /// List the simulated scenarios and exit.
        #[arg(long)]
        list_scenarios: bool,
        /// Decide and log, but never load a crash kernel.
        #[arg(long)]
        dry_run: bool,
        /// Print the final report as JSON (simulations).
        #[arg(long)]
        json: bool,
        /// Serve org.kdump.Hotplug1 on this bus: `system`, `none`, or a D-Bus address such as
        /// unix:path=/run/test/bus. Simulations default to none.
        #[arg(long, value_name = "ADDRESS")]
        bus: Option<String>,
        /// Simulations: keep running after the scenario until SIGTERM/SIGINT, so D-Bus clients can query.
        #[arg(long)]
        keep_running: bool,
        /// Simulations: play the scenario only on SIGUSR1, so D-Bus clients can subscribe to signals first.
        #[arg(long)]
        hold_scenario: bool,
        /// Loader, overriding loader.kind: auto (the shortest window that works here), kexec-load (kexec -c -p),
        /// native (kexec_file_load), kexec-tools (kexec -s -p) or command.
        #[arg(long, value_name = "KIND")]
        loader: Option<LoaderArg>,
        /// Crash kernel image (absolute, under --sysroot), overriding loader.kernel.
        #[arg(long, value_name = "PATH")]
        kernel: Option<PathBuf>,
        /// Crash initrd (absolute, under --sysroot), overriding loader.initrd.
        #[arg(long, value_name = "PATH")]
        initrd: Option<PathBuf>,
        /// Crash kernel command line, overriding loader.cmdline.
        #[arg(long, value_name = "TEXT", allow_hyphen_values = true)]
        cmdline: Option<String>,
        /// Uevent source, overriding events.source: auto, udev or kernel.
        #[arg(long, value_name = "SOURCE")]
        events: Option<SourceArg>,
        /// kexec-tools binary (absolute, under --sysroot), overriding loader.kexec_path.
        #[arg(long, value_name = "PATH")]
        kexec: Option<PathBuf>,
        /// Where the instance lock lives (default /run/kdump-hotplugd under --sysroot): one daemon per
        /// directory; a second is refused with exit status 75.
        #[arg(long, value_name = "DIR")]
        runtime_dir: Option<PathBuf>,
    },
    /// Print the running daemon's state, read from D-Bus (org.kdump.Hotplug1).
    Status {
        /// Print every field of GetStatus() as JSON.
        #[arg(long)]
        json: bool,
        /// The bus to read from: `system` (default) or a D-Bus address.
        #[arg(long, value_name = "ADDRESS", default_value = "system")]
        address: String,
    },
    /// Ask the running daemon to reload the crash kernel now and print the outcome (root only).
    Reload {
        /// The bus the daemon serves on: `system` (default) or a D-Bus address.
        #[arg(long, value_name = "ADDRESS", default_value = "system")]
        address: String,
    },
    /// Ask the running daemon to read its configuration again (root only).
    ReloadConfig {
        /// The bus the daemon serves on: `system` (default) or a D-Bus address.
        #[arg(long, value_name = "ADDRESS", default_value = "system")]
        address: String,
    },
    /// Print the crash memory ranges, CPUs and crash state of the host, and the decision for them.
    Ranges {
        /// Root for every read of /proc and /sys (fixture trees).
        #[arg(long, default_value = "/")]
        sysroot: PathBuf,
        /// Print the snapshot and the decision as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Print the crash kernel the daemon would reload (the distro's kdump service's own plan, each part with
    /// where it came from) and the loader it would use.
    Plan {
        /// Root for every file the plan is read from: /etc, /proc, /sys, /boot, /var (fixture trees).
        #[arg(long, default_value = "/")]
        sysroot: PathBuf,
        /// Print the plan and the loader choice as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Give the distribution's kdump hotplug udev rule back: remove the masks the daemon wrote in
    /// /run/udev/rules.d (only files carrying its marker) and ask udevd to reload. The unit's ExecStopPost= runs
    /// it, so the rule is back even after a crash or SIGKILL.
    ReleaseRules {
        /// Root for /etc, /run and /usr/lib/udev (fixture trees).
        #[arg(long, default_value = "/")]
        sysroot: PathBuf,
    },
    /// Print the merged configuration and where each value came from, or the error (exit status 1).
    CheckConfig {
        /// Root for the configuration directories under /etc, /run and /usr/lib (fixture trees).
        #[arg(long, default_value = "/")]
        sysroot: PathBuf,
    },
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum LoaderArg {
    Auto,
    KexecLoad,
    Native,
    KexecTools,
    Command,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum SourceArg {
    Auto,
    Udev,
    Kernel,
}

/// A printing command piped into `head` should end the way `cat` does, not panic: restore the default SIGPIPE
/// (Rust ignores it). Only for the short-lived printers; the daemon keeps ignoring it.
fn die_quietly_on_closed_pipe() {
    use nix::sys::signal::{signal, SigHandler, Signal};
    // SAFETY: at start, single-threaded, installing the default disposition.
    let _ = unsafe { signal(Signal::SIGPIPE, SigHandler::SigDfl) };
}

fn init_logging(default_level: &str) {
    use tracing_subscriber::EnvFilter;
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_level));
    // Under systemd the journal adds its own timestamps and colours make no sense there.
    let under_journal = std::env::var_os("JOURNAL_STREAM").is_some();
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal() && !under_journal)
        .with_target(false);
    if under_journal {
        builder.without_time().init();
    } else {
        builder.init();
    }
}

/// Logs an error and each of its causes on a line of its own.
fn log_error_chain(error: &dyn std::error::Error) {
    tracing::error!("{error}");
    let mut cause = error.source();
    while let Some(inner) = cause {
        tracing::error!("  caused by: {inner}");
        cause = inner.source();
    }
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Run {
            sysroot,
            simulate,
            list_scenarios,
            dry_run,
            json,
            bus,
            keep_running,
            hold_scenario,
            loader,
            kernel,
            initrd,
            cmdline,
            events,
            kexec,
            runtime_dir,
        } => {
            if list_scenarios {
                for scenario in Scenario::all() {
                    println!(
                        "{:16} {} uevents: {}",
                        scenario.name,
                        scenario.uevent_count(),
                        scenario.description
                    );
                }
                return ExitCode::SUCCESS;
            }
            init_logging("info");
            match simulate {
                Some(name) => {
                    let serving = Serving {
                        bus: bus.as_deref().map_or(BusAddress::None, BusAddress::parse),
                        keep_running,
                        hold_scenario,
                    };
                    run_simulation(&sysroot, &name, dry_run, json, serving)
                }
                None => {
                    let overrides = real_host::Overrides {
                        dry_run,
                        loader: loader.map(|l| match l {
                            LoaderArg::Auto => config::LoaderKind::Auto,
                            LoaderArg::KexecLoad => config::LoaderKind::KexecLoad,
                            LoaderArg::Native => config::LoaderKind::Native,
                            LoaderArg::KexecTools => config::LoaderKind::KexecTools,
                            LoaderArg::Command => config::LoaderKind::Command,
                        }),
                        kernel,
                        initrd,
                        cmdline,
                        source: events.map(|s| match s {
                            SourceArg::Auto => config::EventSourceKind::Auto,
                            SourceArg::Udev => config::EventSourceKind::Udev,
                            SourceArg::Kernel => config::EventSourceKind::Kernel,
                        }),
                        kexec_path: kexec,
                    };
                    // A real daemon serves the system bus unless told otherwise; it runs on without one.
                    let host = real_host::Host {
                        sysroot,
                        runtime_dir,
                        bus: bus.as_deref().map_or(BusAddress::System, BusAddress::parse),
                    };
                    match runtime().block_on(real_host::run(host, overrides)) {
                        Ok(_) => ExitCode::SUCCESS,
                        Err(error) => {
                            log_error_chain(&error);
                            ExitCode::from(error.exit_status())
                        }
                    }
                }
            }
        }
        Command::Status { json, address } => {
            client(&address, |c| async move { c.status(json).await })
        }
        Command::Reload { address } => client(&address, |c| async move {
            c.reload().await.map(|outcome| format!("{outcome}\n"))
        }),
        Command::ReloadConfig { address } => client(&address, |c| async move {
            c.reload_config().await.map(|()| String::new())
        }),
        Command::Ranges { sysroot, json } => {
            die_quietly_on_closed_pipe();
            ranges(sysroot, json)
        }
        Command::Plan { sysroot, json } => {
            die_quietly_on_closed_pipe();
            plan::print(sysroot, json)
        }
        Command::ReleaseRules { sysroot } => {
            init_logging("info");
            release_rules(sysroot)
        }
        Command::CheckConfig { sysroot } => {
            die_quietly_on_closed_pipe();
            check_config(sysroot)
        }
    }
}

fn load_settings(sysroot: &std::path::Path) -> Result<Settings, config::ConfigError> {
    config::load(&Sysroot::new(sysroot))
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime")
}

/// How a simulated daemon shows itself on D-Bus.
struct Serving {
    bus: BusAddress,
    keep_running: bool,
    hold_scenario: bool,
}

fn run_simulation(
    sysroot: &std::path::Path,
    name: &str,
    dry_run: bool,
    json: bool,
    serving: Serving,
) -> ExitCode {
    let Some(scenario) = Scenario::named(name) else {
        let names: Vec<_> = Scenario::all().iter().map(|s| s.name).collect();
        eprintln!("unknown scenario {name:?}; known: {}", names.join(", "));
        return ExitCode::FAILURE;
    };
    // The simulated host has its own /proc and /sys; the config still comes from --sysroot.
    let mut settings = match load_settings(sysroot) {
        Ok(settings) => settings,
        Err(error) => {
            log_error_chain(&error);
            return ExitCode::FAILURE;
        }
    };
    settings.dry_run |= dry_run;
    let config_root = sysroot.to_path_buf();
    let config_source = Box::new(move || load_settings(&config_root));
    eprintln!("simulating {}: {}", scenario.name, scenario.description);
    let outcome = runtime().block_on(async {
        let options = SimulationOptions {
            keep_running: serving.keep_running,
            ..SimulationOptions::default()
        };
        let simulation = match Simulation::with_options(scenario, settings, config_source, options)
        {
            Ok(simulation) => simulation,
            Err(error) => {
                log_error_chain(&error);
                return None;
            }
        };
        let handle = simulation.handle();
        let start = match scenario_start(serving.hold_scenario) {
            Ok(start) => start,
            Err(error) => {
                log_error_chain(&error);
                return None;
            }
        };
        tokio::spawn(signals::forward(crate::messages::SignalSender::new(
            handle.events.clone(),
        )));
        let live = tokio::spawn(live_summary(handle.status.clone()));
        // The loop takes its first snapshot before the name appears on the bus: the first reader sees it.
        let daemon = tokio::spawn(simulation.run_after(start));
        let connection = match dbus::serve(handle.clone(), serving.bus).await {
            Ok(connection) => connection,
            Err(error) => {
                log_error_chain(&error);
                let _ = handle.events.send(Event::Shutdown).await;
                let _ = daemon.await;
                return None;
            }
        };
        let outcome = daemon.await.ok();
        drop(connection);
        live.abort();
        outcome
    });
    let Some(outcome) = outcome else {
        return ExitCode::FAILURE;
    };
    if json {
        print_json_report(&outcome);
    } else {
        print_report(&outcome);
    }
    let missing = outcome.coverage.missing();
    if missing.is_empty() && outcome.report.last_error.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// A one-line summary that follows the daemon's state: rewritten in place on a terminal, a line per second
/// otherwise.
async fn live_summary(mut status: tokio::sync::watch::Receiver<crate::daemon::Status>) {
    let terminal = std::io::stderr().is_terminal();
    let period = if terminal {
        Duration::from_millis(100)
    } else {
        Duration::from_secs(1)
    };
    let mut last = String::new();
    while status.changed().await.is_ok() {
        let line = status.borrow_and_update().summary.clone();
        if line != last {
            if terminal {
                eprint!("\r\x1b[2K{line}");
            } else {
                eprintln!("{line}");
            }
            last = line;
        }
        tokio::time::sleep(period).await;
    }
}

/// When the scenario plays: at once, or on SIGUSR1 (the handler is installed now, before anyone can send it).
fn scenario_start(hold: bool) -> std::io::Result<crate::edge::BoxFuture<()>> {
    if !hold {
        return Ok(Box::pin(async {}));
    }
    let mut user1 = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::user_defined1())?;
    tracing::info!("holding the scenario until SIGUSR1");
    Ok(Box::pin(async move {
        user1.recv().await;
        tracing::info!("SIGUSR1: playing the scenario");
    }))
}

/// Runs one D-Bus client request against the daemon and prints what it returns.
fn client<F, Fut>(address: &str, request: F) -> ExitCode
where
    F: FnOnce(dbus::Client) -> Fut,
    Fut: std::future::Future<Output = Result<String, dbus::ClientError>>,
{
    let bus = match BusAddress::parse(address) {
        BusAddress::None => BusAddress::System,
        bus => bus,
    };
    let result = runtime().block_on(async {
        let client = dbus::Client::connect(&bus).await?;
        request(client).await
    });
    match result {
        Ok(text) => {
            print!("{text}");
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("kdump-hotplugd: {error}");
            ExitCode::FAILURE
        }
    }
}

fn print_report(outcome: &SimulationOutcome) {
    let c = &outcome.report;
    let missing = outcome.coverage.missing();
    println!();
    println!("== kdump-hotplugd simulation: {} ==", outcome.scenario.name);
    println!("uevents seen        {:>10}", c.events_seen);
    println!("  coalesced         {:>10}", c.events_coalesced);
    println!("  malformed         {:>10}", c.events_malformed);
    println!("  socket overflows  {:>10}", c.uevent_overflows);
    // The batch count is the simulator's setting (batch_size uevents per simulated read), not a measurement.
    println!(
        "  batches           {:>10}  (simulated reads of {} uevents each)",
        c.uevent_batches, outcome.scenario.batch_size
    );
    println!("reloads             {:>10}", c.reloads);
    println!("  failed            {:>10}", c.reloads_failed);
    println!("  skipped           {:>10}", c.reloads_skipped);
    println!("  timed out         {:>10}", c.reloads_timed_out);
    println!("kernel update fails {:>10}", c.kernel_update_failures);
    println!("crash ranges        {:>10}", outcome.report.range_count);
    for load in &outcome.loads {
        println!(
            "load: {:?} {} ranges, {} CPUs: {}",
            load.method,
            load.ranges,
            load.cpus,
            if load.succeeded { "ok" } else { "FAILED" }
        );
    }
    let new = &outcome.new_ranges;
    let new_bytes: u64 = new.iter().map(|r| r.size()).sum();
    println!(
        "new memory: {} GiB in ranges: {}",
        new_bytes >> 30,
        new.len()
    );
    for range in new.iter().take(5) {
        println!("  {range}  ({} MiB)", range.size() >> 20);
    }
    if new.len() > 5 {
        println!("  … {} more", new.len() - 5);
    }
    println!("last reload: {}", outcome.report.last_reload_reason);
    if missing.is_empty() {
        println!(
            "crash dump would cover all {} ranges: yes{}",
            outcome.coverage.host_ranges.len(),
            if outcome.report.last_error.is_empty() {
                ", no error"
            } else {
                ""
            }
        );
    } else {
        println!(
            "crash dump would MISS {} of {} ranges",
            missing.len(),
            outcome.coverage.host_ranges.len()
        );
    }
    if !outcome.report.last_error.is_empty() {
        println!("last error: {}", outcome.report.last_error);
    }
}

fn print_json_report(outcome: &SimulationOutcome) {
    let value = serde_json::json!({
        "scenario": outcome.scenario.name,
        "report": outcome.report.to_json(),
        "new_ranges": outcome.new_ranges,
        "missing_from_dump": outcome.coverage.missing(),
        "loads": outcome.loads.iter().map(|l| serde_json::json!({
            "method": l.method, "ranges": l.ranges, "cpus": l.cpus, "succeeded": l.succeeded,
        })).collect::<Vec<_>>(),
    });
    println!(
        "{}",
        serde_json::to_string_pretty(&value).unwrap_or_default()
    );
}

fn ranges(sysroot: PathBuf, json: bool) -> ExitCode {
    if let Err(refusal) =
        crate::core::arch::Arch::from_machine(&crate::host::arch::machine(&Sysroot::new(&sysroot)))
    {
        eprintln!("kdump-hotplugd: {refusal}");
        return ExitCode::FAILURE;
    }
    let settings = match load_settings(&sysroot) {
        Ok(settings) => settings,
        Err(error) => {
            eprintln!("kdump-hotplugd: {error}");
            return ExitCode::FAILURE;
        }
    };
    let snapshot = match SnapshotReader::open(Sysroot::new(&sysroot)).and_then(|mut r| r.take()) {
        Ok(snapshot) => snapshot,
        Err(error) => {
            eprintln!("kdump-hotplugd: {error}");
            return ExitCode::FAILURE;
        }
    };
    // What the loaded header holds is not visible from userspace; judge as if it matched the host now.
    let loaded = snapshot.crash.loaded.then(|| LoadedHeader::of(&snapshot));
    let assessment = decide::decide(
        loaded.as_ref(),
        &snapshot,
        &Triggers::default(),
        &settings.decision_policy(),
    );
    let reservation = reservation::of_snapshot(&snapshot);
    if json {
        let value = serde_json::json!({
            "snapshot": snapshot,
            "assessment": assessment,
            "capacity_kind": assessment.capacity.kind(),
            "cma_ranges_excluded": snapshot.crash.cma_ranges,
            "reservation": reservation,
            "reservation_warning": reservation.warning(),
        });
        let mut value = value;
        // Only where there is something to say: x86_64's JSON stays as it was.
        if let Some(warning) = &assessment.outside_header {
            value["outside_header_warning"] = serde_json::Value::String(warning.to_string());
        }
        println!(
            "{}",
            serde_json::to_string_pretty(&value).unwrap_or_default()
        );
        return ExitCode::SUCCESS;
    }
    let crash = &snapshot.crash;
    if !snapshot.arch.is_x86_64() {
        println!(
            "architecture: {} (one range per System RAM resource, as kexec-tools counts them; the kernel's own \
             header may merge them, so coverage is compared by union)",
            snapshot.arch
        );
    }
    println!(
        "crash memory ranges: {} ({} MiB)",
        snapshot.ranges.len(),
        snapshot.total_bytes() >> 20
    );
    for range in &snapshot.ranges {
        println!("  {range}  {:>10} KiB", range.size() >> 10);
    }
    println!(
        "present CPUs: {} (possible {})",
        snapshot.present_cpus, snapshot.possible_cpus
    );
    println!(
        "crash kernel: {}; kernel updates header: memory {}, cpu {}",
        if !crash.kexec_supported {
            "no kexec support"
        } else if crash.loaded {
            "loaded"
        } else {
            "not loaded"
        },
        yes_no(crash.kernel_updates_memory),
        yes_no(crash.kernel_updates_cpu),
    );
    println!(
        "kernel header capacity: {}; needed: {}",
        assessment.capacity, assessment.needed
    );
    if !crash.cma_ranges.is_empty() {
        let listed: Vec<String> = crash.cma_ranges.iter().map(ToString::to_string).collect();
        println!(
            "crash CMA ranges excluded: {} ({})",
            crash.cma_ranges.len(),
            listed.join(", ")
        );
    }
    if let Some((needed, capacity)) = assessment.decision.buffer_too_small() {
        println!("WARNING: kernel buffer too small: {needed} ranges needed, {capacity} fit");
    }
    if let Some(warning) = &assessment.outside_header {
        println!("WARNING: {warning}");
        for outside in &snapshot.outside_header {
            println!(
                "  {}  {:>10} KiB  {}",
                outside.range,
                outside.range.size() >> 10,
                outside.driver
            );
        }
    }
    println!("crash reservation: {}", reservation.verdict);
    if let Some(r) = &reservation.distro_recommendation {
        println!(
            "  {} recommends {} MiB for this memory: crashkernel={} ({})",
            r.by,
            r.selects >> 20,
            r.rule,
            r.source
        );
    }
    if let Some(warning) = reservation.warning() {
        println!("WARNING: crash reservation too small: {warning}");
    }
    println!("decision: {}", assessment.describe());
    ExitCode::SUCCESS
}

fn yes_no(value: bool) -> &'static str {
    if value {
        "yes"
    } else {
        "no"
    }
}

fn check_config(sysroot: PathBuf) -> ExitCode {
    match config::load_with_provenance(&Sysroot::new(&sysroot)) {
        Ok((settings, provenance)) => {
            print!("{}", config::describe(&settings, &provenance));
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("kdump-hotplugd: {error}");
            ExitCode::FAILURE
        }
    }
}

fn release_rules(sysroot: PathBuf) -> ExitCode {
    use crate::daemon::rule_mask;
    let files = crate::edge::rule_mask::HostRuleFiles::new(Sysroot::new(&sysroot));
    match rule_mask::release(&files) {
        Ok(changed) => {
            if changed {
                rule_mask::reload_udev(&files);
            } else {
                tracing::info!(
                    "no mask of kdump-hotplugd in /run/udev/rules.d: nothing to give back"
                );
            }
            ExitCode::SUCCESS
        }
        Err(error) => {
            tracing::error!("{error}");
            // What could be given back, udevd should see now.
            rule_mask::reload_udev(&files);
            ExitCode::FAILURE
        }
    }
}

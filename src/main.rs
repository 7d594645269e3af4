//! The `kdump-hotplugd` command: the daemon (`run`) and its tools.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};

use kdump_hotplugd::config::{self, Settings};
use kdump_hotplugd::decide::{self, LoadedHeader, Triggers};
use kdump_hotplugd::edge::sim::Scenario;
use kdump_hotplugd::service;
use kdump_hotplugd::simulate::{Simulation, SimulationOutcome};
use kdump_hotplugd::snapshot::SnapshotReader;
use kdump_hotplugd::sysroot::Sysroot;

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
        /// Root for every read of /proc, /sys and /etc (fixture trees).
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
        /// Loader, overriding loader.kind: native (kexec_file_load), kexec-tools (kexec -s -p) or command.
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
    },
    /// Print the crash memory ranges, CPUs and crash state of the host, and the decision for them.
    Ranges {
        #[arg(long, default_value = "/")]
        sysroot: PathBuf,
        #[arg(long)]
        json: bool,
    },
    /// Print the merged configuration and where each value came from, or the error (exit status 1).
    CheckConfig {
        #[arg(long, default_value = "/")]
        sysroot: PathBuf,
    },
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum LoaderArg {
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

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Run {
            sysroot,
            simulate,
            list_scenarios,
            dry_run,
            json,
            loader,
            kernel,
            initrd,
            cmdline,
            events,
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
                Some(name) => run_simulation(&sysroot, &name, dry_run, json),
                None => {
                    let overrides = service::Overrides {
                        dry_run,
                        loader: loader.map(|l| match l {
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
                    };
                    match runtime().block_on(service::run(sysroot, overrides)) {
                        Ok(_) => ExitCode::SUCCESS,
                        Err(error) => {
                            log_error_chain(&error);
                            ExitCode::FAILURE
                        }
                    }
                }
            }
        }
        Command::Ranges { sysroot, json } => ranges(sysroot, json),
        Command::CheckConfig { sysroot } => check_config(sysroot),
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

fn run_simulation(sysroot: &std::path::Path, name: &str, dry_run: bool, json: bool) -> ExitCode {
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
        let simulation = match Simulation::new(scenario, settings, config_source) {
            Ok(simulation) => simulation,
            Err(error) => {
                log_error_chain(&error);
                return None;
            }
        };
        let live = tokio::spawn(live_summary(simulation.handle().status));
        let outcome = simulation.run().await;
        live.abort();
        Some(outcome)
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
async fn live_summary(mut status: tokio::sync::watch::Receiver<kdump_hotplugd::daemon::Status>) {
    let terminal = std::io::stderr().is_terminal();
    let period = if terminal {
        Duration::from_millis(100)
    } else {
        Duration::from_secs(1)
    };
    let mut last = String::new();
    while status.changed().await.is_ok() {
        let line = status.borrow_and_update().summary();
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

fn print_report(outcome: &SimulationOutcome) {
    let c = &outcome.report.counters;
    let missing = outcome.coverage.missing();
    println!();
    println!("== kdump-hotplugd simulation: {} ==", outcome.scenario.name);
    println!("uevents seen        {:>10}", c.events_seen);
    println!("  coalesced         {:>10}", c.events_coalesced);
    println!("  malformed         {:>10}", c.events_malformed);
    println!("  lost              {:>10}", c.events_lost);
    println!("  socket reads      {:>10}", c.uevent_batches);
    println!("reloads             {:>10}", c.reloads);
    println!("  failed            {:>10}", c.reloads_failed);
    println!("  skipped           {:>10}", c.reloads_skipped);
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
    println!("new memory: {} ranges, {} GiB", new.len(), new_bytes >> 30);
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
        "report": outcome.report,
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
    let assessment = decide::decide(loaded.as_ref(), &snapshot, &Triggers::default(), &settings);
    if json {
        let value = serde_json::json!({ "snapshot": snapshot, "assessment": assessment });
        println!(
            "{}",
            serde_json::to_string_pretty(&value).unwrap_or_default()
        );
        return ExitCode::SUCCESS;
    }
    let crash = &snapshot.crash;
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
        "kernel header capacity: {} ranges (from {}); needed: {}",
        assessment.capacity.ranges,
        match assessment.capacity.source {
            decide::CapacitySource::ElfcorehdrSize => "crash_elfcorehdr_size",
            decide::CapacitySource::Config => "config kernel.max_memory_ranges",
        },
        assessment.needed
    );
    if let Some((needed, capacity)) = assessment.decision.buffer_too_small() {
        println!("WARNING: kernel buffer too small: {needed} ranges needed, {capacity} fit");
    }
    println!("decision: {}", assessment.decision);
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

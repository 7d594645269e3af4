//! The real-distribution tier: Debian 12 with systemd, udevd, the system bus and kdump-tools in QEMU, this
//! project's .deb installed with dpkg, judged by the dump kdump-tools saves to /var/crash. Every test is
//! `#[ignore]`d; run them with `make test-distro` (docs/README-distro.md). Each scenario prints `checked:` lines
//! and one `FIGURES` line.

#[allow(dead_code)]
#[path = "guest/harness.rs"]
mod harness;

mod distro {
    pub mod dump;
    pub mod steps;
    pub mod system;
}

use std::time::Duration;

use distro::steps::*;
use distro::system::{image, secs, Distro};
use kdump_hotplugd::core::ranges::crash_ranges;

const DISTRO_RULE: &str = "50-kdump-tools.rules";
const RULE_MASK: &str = "/run/udev/rules.d/50-kdump-tools.rules";

/// The loader `plan` must name on Debian's 6.1 (no in-kernel update): kexec_load prepared by kexec-tools, the
/// shortest window.
const LOADER_KEXEC_LOAD: &str = "loader:   kexec_load (kexec -c -p) (";
/// On 6.12 (CONFIG_CRASH_HOTPLUG) with bookworm's kexec-tools 2.0.25 (no `--hotplug`): kexec_file_load, so that the
/// kernel updates the header of later bursts in place (core::loader_choice).
const LOADER_KEXEC_FILE_LOAD: &str = "loader:   kexec_file_load (the kernel updates";

/// `kdump-hotplugd plan` names kdump-tools, its kernel, initrd and command line (what `kdump-config load` loads),
/// verdict load, and `loader`.
fn check_plan_names_kdump_tools(d: &mut Distro, loader: &str) {
    let (status, lines) = d.sh("kdump-hotplugd plan", secs(60));
    let text = lines.join("\n");
    assert_eq!(status, 0, "[{}] kdump-hotplugd plan:\n{text}", d.name);
    for part in [
        "kdump service: Debian/Ubuntu kdump-tools",
        "kernel:   /var/lib/kdump/vmlinuz",
        "initrd:   /var/lib/kdump/initrd.img",
        "systemd.unit=kdump-tools-dump.service",
        "verdict: load this plan",
        loader,
    ] {
        assert!(
            text.contains(part),
            "[{}] `kdump-hotplugd plan` does not say {part:?}:\n{text}",
            d.name
        );
    }
    checked(
        d,
        format!(
            "`kdump-hotplugd plan` names kdump-tools, its kernel, initrd and command line; {}; {}",
            lines
                .iter()
                .find(|l| l.starts_with("loader:"))
                .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
                .unwrap_or_default(),
            lines
                .iter()
                .find(|l| l.starts_with("cmdline:"))
                .map(|l| l.trim())
                .unwrap_or_default()
        ),
    );
}

/// While the daemon runs the distro rule is masked at runtime (a same-named file under /run/udev/rules.d);
/// whenever it does not, the mask is gone.
fn check_rule_masked(d: &mut Distro, daemon_running: bool) {
    let present = d.sh(&format!("test -e {RULE_MASK}"), secs(30)).0 == 0;
    assert_eq!(
        present,
        daemon_running,
        "[{}] {RULE_MASK} {} while the daemon {}",
        d.name,
        if present { "exists" } else { "is missing" },
        if daemon_running {
            "runs"
        } else {
            "does not run"
        }
    );
    if present {
        let text = d.sh_ok(&format!("cat {RULE_MASK}"), secs(30)).join("\n");
        assert!(
            !text
                .lines()
                .any(|l| !l.trim().is_empty() && !l.trim_start().starts_with('#')),
            "[{}] the mask holds rules:\n{text}",
            d.name
        );
    }
    checked(
        d,
        format!(
            "{RULE_MASK} {} while the daemon {}",
            if present {
                "masks the distro rule"
            } else {
                "is absent"
            },
            if daemon_running {
                "runs"
            } else {
                "does not run"
            }
        ),
    );
}

/// The parameters of a kernel command line without the ones a crash-kernel loader adds for the dump.
fn without_loader_parameters(cmdline: &str) -> Vec<String> {
    cmdline
        .split_whitespace()
        .filter(|p| !p.starts_with("elfcorehdr=") && !p.starts_with("acpi_rsdp="))
        .map(str::to_string)
        .collect()
}

/// The crash kernel booted with kdump-tools' own command line (its kexec_cmd record), plus only the loader's
/// `elfcorehdr=`/`acpi_rsdp=`.
fn check_crash_cmdline_is_kdump_tools(d: &Distro, crash_cmdline: &str, kdump_tools: &str) {
    let same = without_loader_parameters(crash_cmdline) == without_loader_parameters(kdump_tools);
    assert!(
        same,
        "[{}] the crash kernel's command line `{crash_cmdline}` is not kdump-tools' `{kdump_tools}` (plus elfcorehdr=/acpi_rsdp=)",
        d.name
    );
    checked(
        d,
        format!("the crash kernel booted with kdump-tools' command line (+ loader parameters): `{crash_cmdline}`"),
    );
}

fn unit_property(d: &mut Distro, property: &str) -> String {
    d.value(&format!("systemctl show -p {property} --value {UNIT}"))
}

fn is_active(d: &mut Distro) -> String {
    d.value(&format!("systemctl is-active {UNIT} ; true"))
}

/// Daemon figures of a burst: CPU, RSS, counters.
fn daemon_figures(
    figures: &mut Figures,
    before: &DaemonStatus,
    after: &DaemonStatus,
    usage0: Usage,
    usage1: Usage,
) {
    figures.add("reloads", after.u("Reloads") - before.u("Reloads"));
    figures.add(
        "skipped",
        after.u("ReloadsSkipped") - before.u("ReloadsSkipped"),
    );
    figures.add(
        "daemon_events",
        after.u("EventsSeen") - before.u("EventsSeen"),
    );
    figures.add(
        "daemon_reload_s",
        format!("{:.2}", after.u("LastReloadDurationUsec") as f64 / 1e6),
    );
    if usage0.pid == usage1.pid {
        figures.add("daemon_cpu_ms", usage1.cpu_ms - usage0.cpu_ms);
    }
    figures.add("daemon_cpu_total_ms", usage1.cpu_ms);
    figures.add("daemon_rss_kib", usage1.rss_kib);
    figures.add("daemon_hwm_kib", usage1.hwm_kib);
}

fn coverage_figure(
    figures: &mut Figures,
    iomem: &[kdump_hotplugd::core::parse::iomem::Resource],
    crash: &Crash,
) {
    let expected = crash_ranges(iomem, NO_CRASH_CMA);
    let missing = distro::dump::missing_pages(&expected, &crash.dump.covered);
    figures.add(
        "dump_covers_gib",
        format!(
            "{:.2}/{:.2}",
            (bytes(&expected) - bytes(&missing)) as f64 / GIB as f64,
            bytes(&expected) as f64 / GIB as f64
        ),
    );
    figures.add("max_mapnr", crash.dump.header.max_mapnr);
    figures.add("crash_to_saved_s", format!("{:.0}", crash.seconds));
}

/// Debian's own setup alone (the daemon masked): kdump-tools' udev rule is the only thing that reacts to the
/// hot-add, and it fails inside udevd's sandbox; the dump kdump-tools saves must miss the hot-added memory.
#[test]
#[ignore = "distro tier: make test-distro"]
fn stock() {
    let mut d = Distro::boot("stock", "6.1");
    let mut figures = Figures::default();
    d.sh_ok(&format!("systemctl mask --now {UNIT}"), secs(120));
    assert_eq!(is_active(&mut d), "inactive");
    assert_eq!(
        d.value(&format!("systemctl is-enabled {UNIT} ; true")),
        "masked"
    );
    checked(&d, "kdump-hotplugd masked and stopped");
    assert_eq!(d.value("cat /sys/kernel/kexec_crash_loaded"), "1");
    let kdump_tools = kdump_tools_cmdline(&mut d);
    checked(
        &d,
        format!("kdump-tools loaded the crash kernel at boot: `{kdump_tools}`"),
    );
    check_rule_masked(&mut d, false);
    start_watchers(&mut d);
    let (runs0, failures0) = distro_rule_runs(&mut d);
    let burst = plug(&mut d, 4 * GIB);
    let iomem = read_iomem(&mut d);
    let hot_added = virtio_mem_ranges(&iomem);
    assert_eq!(
        bytes(&hot_added),
        4 * GIB,
        "virtio-mem added 4 GiB: {hot_added:x?}"
    );
    let events = burst_figures(&mut d, &mut figures, &burst);
    stop_poller(&mut d);
    let (runs, failures) = distro_rule_runs(&mut d);
    let online = events
        .iter()
        .filter(|e| !e.from_udev && e.action == "online")
        .count();
    figures.add("rule_runs", runs - runs0);
    figures.add("rule_failures", failures - failures0);
    assert_eq!(
        runs - runs0,
        online,
        "the distro rule ran once per memory online uevent"
    );
    checked(
        &d,
        format!(
            "{DISTRO_RULE} ran {} times (one per online uevent), {} failed to unload the crash kernel",
            runs - runs0,
            failures - failures0
        ),
    );
    assert_eq!(d.value("cat /sys/kernel/kexec_crash_loaded"), "1");
    let crash = crash(&mut d);
    coverage_figure(&mut figures, &iomem, &crash);
    figures.print(&d);
    check_crash_cmdline_is_kdump_tools(&d, &crash.cmdline, &kdump_tools);
    // The control: the very check the daemon scenarios pass must fail here, on exactly the hot-added memory.
    let problem = coverage_problem(&iomem, &crash.dump)
        .unwrap_or_else(|| panic!("[stock] the dump check passed without the daemon"));
    let missing =
        distro::dump::missing_pages(&crash_ranges(&iomem, NO_CRASH_CMA), &crash.dump.covered);
    assert_eq!(
        missing, hot_added,
        "the stale header must miss exactly the hot-added ranges"
    );
    checked(
        &d,
        format!("the dump check fails without the daemon, as it must: {problem}"),
    );
}

/// The daemon as the package ships it, on Debian's 6.1 (no in-kernel header update).
#[test]
#[ignore = "distro tier: make test-distro"]
fn daemon_6_1() {
    let mut d = Distro::boot("daemon-6.1", "6.1");
    let user = image().user.clone();
    let mut figures = Figures::default();
    assert_eq!(is_active(&mut d), "active");
    assert_eq!(d.value(&format!("systemctl is-enabled {UNIT}")), "enabled");
    let status_text = unit_property(&mut d, "StatusText");
    assert!(
        status_text.contains("ranges") && status_text.contains("reloads"),
        "StatusText carries the daemon's summary: {status_text:?}"
    );
    checked(
        &d,
        format!("{UNIT} active and enabled under systemd; StatusText: {status_text}"),
    );
    let state = d.value(&format!("busctl get-property {BUS_ARGS} State"));
    assert!(
        state.starts_with("s \""),
        "busctl get-property State: {state}"
    );
    checked(&d, format!("busctl get-property … State as root: {state}"));
    let (status, refused) = d.sh(
        &format!("runuser -u {user} -- busctl call {BUS_ARGS} Reload"),
        secs(60),
    );
    assert_ne!(status, 0, "Reload by {user} must be refused: {refused:?}");
    assert!(
        refused.iter().any(|l| l.contains("Access denied")),
        "the refusal says Access denied: {refused:?}"
    );
    checked(
        &d,
        format!(
            "busctl call … Reload as {user} refused: {}",
            refused.join(" ")
        ),
    );
    let status_lines = d.sh_ok(
        &format!("runuser -u {user} -- kdump-hotplugd status"),
        secs(60),
    );
    assert!(
        status_lines.iter().any(|l| l.contains("idle")),
        "kdump-hotplugd status as {user}: {status_lines:?}"
    );
    checked(&d, format!("`kdump-hotplugd status` works as {user}"));
    check_plan_names_kdump_tools(&mut d, LOADER_KEXEC_LOAD);
    check_rule_masked(&mut d, true);
    let kdump_tools = kdump_tools_cmdline(&mut d);
    start_watchers(&mut d);
    let before = daemon_status(&mut d);
    let usage0 = daemon_usage(&mut d);
    let (runs0, failures0) = distro_rule_runs(&mut d);
    let burst = plug(&mut d, 4 * GIB);
    let events = uevents(&mut d, burst.requested_at);
    let processed = events.iter().filter(|e| e.from_udev).count() as u64;
    let after = wait_daemon_settled(&mut d, &before, processed);
    let usage1 = daemon_usage(&mut d);
    let iomem = read_iomem(&mut d);
    burst_figures(&mut d, &mut figures, &burst);
    stop_poller(&mut d);
    let (runs, failures) = distro_rule_runs(&mut d);
    figures.add("rule_runs", runs - runs0);
    figures.add("rule_failures", failures - failures0);
    daemon_figures(&mut figures, &before, &after, usage0, usage1);
    println!("[{}] daemon: {}", d.name, after.s("Summary"));
    // A wrong reload count is reported at the end, after the dump has been judged too.
    let mut failures = Vec::new();
    let reloads = after.u("Reloads") - before.u("Reloads");
    if reloads == 1 {
        checked(
            &d,
            format!("one reload for the burst of {processed} processed uevents"),
        );
    } else {
        failures.push(format!(
            "{reloads} reloads for one burst of {processed} processed uevents (expected exactly 1): {}; last decision: {}",
            after.s("Summary"),
            after.s("LastDecision")
        ));
    }
    assert_eq!(
        after.u("ReloadsFailed"),
        before.u("ReloadsFailed"),
        "no failed reload"
    );
    assert_eq!(
        after.u("UeventOverflows"),
        0,
        "no uevent lost (the socket never overflowed)"
    );
    assert_eq!(is_active(&mut d), "active");
    let crash = crash(&mut d);
    coverage_figure(&mut figures, &iomem, &crash);
    figures.add("crash_cmdline", format!("\"{}\"", crash.cmdline));
    figures.print(&d);
    assert_dump_complete(&d, &iomem, &crash.dump);
    check_crash_cmdline_is_kdump_tools(&d, &crash.cmdline, &kdump_tools);
    assert!(failures.is_empty(), "[daemon-6.1] {}", failures.join("\n"));
}

/// Debian's 6.12 kernel updates the crash header itself (`crash_hotplug` reads 1), but only for a crash kernel loaded
/// with kexec_file_load, or with kexec_load and KEXEC_UPDATE_ELFCOREHDR (kernel/kexec.c, `kexec_load_check` and
/// `crash_check_hotplug_support`), which bookworm's kexec-tools 2.0.25 never passes (no `--hotplug`). So after
/// kdump-tools' boot-time `kexec -p` it reads 0, and the daemon reloads kdump-tools' own crash kernel (its files and
/// command line) with kexec_file_load, after which it must read 1. Two bursts, each judged by what `crash_hotplug`
/// reads before it: 0, exactly one reload; 1, a skip and no reload.
#[test]
#[ignore = "distro tier: make test-distro"]
fn daemon_6_12() {
    let mut d = Distro::boot("daemon-6.12", "6.12");
    let mut figures = Figures::default();
    assert_eq!(is_active(&mut d), "active");
    let at_boot = d.value("cat /sys/devices/system/memory/crash_hotplug");
    let record = d.value("cat /var/crash/kexec_cmd");
    checked(
        &d,
        format!(
            "crash_hotplug reads {at_boot} with the crash kernel kdump-tools loaded (`{record}`)"
        ),
    );
    figures.add("crash_hotplug_at_boot", &at_boot);
    check_plan_names_kdump_tools(&mut d, LOADER_KEXEC_FILE_LOAD);
    check_rule_masked(&mut d, true);
    let kdump_tools = kdump_tools_cmdline(&mut d);
    start_watchers(&mut d);
    let before = daemon_status(&mut d);
    let usage0 = daemon_usage(&mut d);
    let (runs0, failures0) = distro_rule_runs(&mut d);
    let mut status = before.clone();
    let mut flag = at_boot.clone();
    let mut last = None;
    for (burst_number, target) in [(1, 2 * GIB), (2, 4 * GIB)] {
        let burst = plug(&mut d, target);
        let events = uevents(&mut d, burst.requested_at);
        let processed = events.iter().filter(|e| e.from_udev).count() as u64;
        let now = wait_daemon_settled(&mut d, &status, processed);
        println!(
            "[{}] daemon after burst {burst_number}: {}",
            d.name,
            now.s("Summary")
        );
        let reloads = now.u("Reloads") - status.u("Reloads");
        let skipped = now.u("ReloadsSkipped") - status.u("ReloadsSkipped");
        // The kernel's own update runs under kexec_trylock(); while the daemon's load holds that lock, an update
        // for memory onlined meanwhile is dropped and logged ("crash hp: kexec_trylock() failed, kdump image may
        // be inaccurate", seen in a CI run). The daemon follows /dev/kmsg and must then reload once more, in this
        // burst or as the next one begins.
        let kernel_failures = now.u("KernelUpdateFailures") - status.u("KernelUpdateFailures");
        let expected = if flag == "1" { 0 } else { 1 };
        let allowed = expected + u64::from(kernel_failures > 0);
        assert!(
            (expected..=allowed).contains(&reloads),
            "[{}] burst {burst_number} with crash_hotplug {flag}: {reloads} reloads (expected {expected}, {allowed} \
             after {kernel_failures} failed in-kernel updates): {}; last decision: {}",
            d.name,
            now.s("Summary"),
            now.s("LastDecision")
        );
        if kernel_failures > 0 {
            checked(
                &d,
                format!(
                    "burst {burst_number}: the kernel reported {kernel_failures} failed in-place update(s); {reloads} \
                     reload(s), last decision: {}",
                    now.s("LastDecision")
                ),
            );
        }
        figures.add(
            &format!("burst{burst_number}_kernel_update_failures"),
            kernel_failures,
        );
        if flag == "1" && kernel_failures == 0 {
            assert!(
                skipped > 0,
                "[{}] burst {burst_number}: crash_hotplug 1, the burst was decided and skipped: {:?}",
                d.name,
                now.values
            );
        }
        assert_eq!(
            now.u("ReloadsFailed"),
            status.u("ReloadsFailed"),
            "no failed reload"
        );
        checked(
            &d,
            format!(
                "burst {burst_number} (crash_hotplug {flag}): {reloads} reload(s), {skipped} skip(s) for {processed} \
                 processed uevents"
            ),
        );
        figures.add(&format!("burst{burst_number}_reloads"), reloads);
        flag = d.value("cat /sys/devices/system/memory/crash_hotplug");
        figures.add(&format!("crash_hotplug_after_burst{burst_number}"), &flag);
        assert_eq!(
            flag, "1",
            "[{}] after burst {burst_number} the crash kernel is one the kernel updates in place (crash_hotplug)",
            d.name
        );
        status = now;
        last = Some(burst);
    }
    let second = last.expect("two bursts");
    let after = status;
    assert_eq!(
        after.u("UeventOverflows"),
        0,
        "no uevent lost (the socket never overflowed)"
    );
    let usage1 = daemon_usage(&mut d);
    let iomem = read_iomem(&mut d);
    burst_figures(&mut d, &mut figures, &second);
    stop_poller(&mut d);
    let (runs, failures) = distro_rule_runs(&mut d);
    figures.add("rule_runs", runs - runs0);
    figures.add("rule_failures", failures - failures0);
    daemon_figures(&mut figures, &before, &after, usage0, usage1);
    println!("[{}] daemon: {}", d.name, after.s("Summary"));
    let crash = crash(&mut d);
    coverage_figure(&mut figures, &iomem, &crash);
    figures.print(&d);
    assert_dump_complete(&d, &iomem, &crash.dump);
    check_crash_cmdline_is_kdump_tools(&d, &crash.cmdline, &kdump_tools);
}

/// Waits until systemd has run the unit's ExecStopPost after a death and waits out RestartSec.
fn wait_auto_restart(d: &mut Distro) {
    d.sh_ok(
        &format!(
            "for i in $(seq 600); do [ \"$(systemctl show -p SubState --value {UNIT})\" = auto-restart ] && exit 0; \
             sleep 0.05; done; systemctl status --no-pager {UNIT}; exit 1"
        ),
        secs(90),
    );
}

/// SIGKILL in the middle of a burst, systemd's restart, `systemctl stop`, and a second instance by hand.
#[test]
#[ignore = "distro tier: make test-distro"]
fn faults() {
    let mut d = Distro::boot("faults", "6.1");
    let mut figures = Figures::default();
    let mut failures: Vec<String> = Vec::new();
    assert_eq!(is_active(&mut d), "active");
    let restarts0: u64 = unit_property(&mut d, "NRestarts").parse().unwrap();
    start_watchers(&mut d);
    let before = daemon_status(&mut d);
    let pid0 = daemon_usage(&mut d).pid;
    let request = request_plug(&mut d, 4 * GIB);
    // The middle of the burst: the daemon has heard some of it.
    let heard = poll_until(&mut d, secs(240), Duration::from_millis(200), |d| {
        let heard = daemon_status(d).u("EventsSeen") - before.u("EventsSeen");
        if heard > 0 {
            Ok(heard)
        } else {
            Err("the daemon heard no uevent of the burst".to_owned())
        }
    });
    d.sh_ok(&format!("systemctl kill -s KILL {UNIT}"), secs(60));
    wait_auto_restart(&mut d);
    let online_at_kill = d.value("cat /sys/devices/system/memory/memory*/state | grep -cx online");
    checked(
        &d,
        format!("SIGKILL after the daemon heard {heard} uevents ({online_at_kill} blocks online)"),
    );
    check_rule_masked(&mut d, false);
    // systemd restarts it (Restart=on-failure, RestartSec=5s).
    d.sh_ok(
        &format!(
            "for i in $(seq 600); do [ \"$(systemctl show -p NRestarts --value {UNIT})\" -gt {restarts0} ] && \
             systemctl is-active -q {UNIT} && exit 0; sleep 0.2; done; exit 1"
        ),
        secs(180),
    );
    let restarts: u64 = unit_property(&mut d, "NRestarts").parse().unwrap();
    let usage_restarted = daemon_usage(&mut d);
    assert_ne!(usage_restarted.pid, pid0, "a new process");
    checked(
        &d,
        format!(
            "systemd restarted the daemon (NRestarts {restarts0} -> {restarts}, pid {pid0} -> {})",
            usage_restarted.pid
        ),
    );
    check_rule_masked(&mut d, true);
    let burst = finish_plug(&mut d, &request);
    let events = uevents(&mut d, request.requested_at);
    let processed_after_restart = events.iter().filter(|e| e.from_udev).count() as u64;
    // Every event the new instance can still hear is counted once it is idle; it must have decided once.
    let settled = poll_until(&mut d, secs(300), Duration::from_millis(500), |d| {
        let now = daemon_status(d);
        // A new process: its counters start at 0. Its start finds the memory changed since the header its
        // predecessor recorded (/run/kdump-hotplugd/loaded-header) and reloads.
        if now.s("State") == "idle" && now.decided() > 0 {
            Ok(now)
        } else {
            Err(format!(
                "the restarted daemon never decided about the rest of the burst: {:?} (it heard {} uevents; {} \
                 processed in the whole burst)",
                now.values,
                now.u("EventsSeen"),
                processed_after_restart
            ))
        }
    });
    println!("[faults] restarted daemon: {}", settled.s("Summary"));
    let reloads = settled.u("Reloads");
    if reloads != 1 {
        failures.push(format!(
            "the restarted daemon reloaded {reloads} times after the burst (expected 1): {}",
            settled.s("Summary")
        ));
    } else {
        checked(
            &d,
            format!(
                "the restarted daemon reloaded once (heard {} uevents; reason: {})",
                settled.u("EventsSeen"),
                settled.s("LastReloadReason")
            ),
        );
    }
    // A crash of the daemon itself (SIGABRT, as an abort or a failed assertion ends it): systemd runs
    // ExecStopPost (release-rules), so the rule is back while it is dead, and restarts it.
    let pid_before_abort = daemon_usage(&mut d).pid;
    d.sh_ok(&format!("systemctl kill -s ABRT {UNIT}"), secs(60));
    wait_auto_restart(&mut d);
    let abort_result = unit_property(&mut d, "Result");
    check_rule_masked(&mut d, false);
    d.sh_ok(
        &format!(
            "for i in $(seq 600); do [ \"$(systemctl show -p NRestarts --value {UNIT})\" -gt {restarts} ] && \
             systemctl is-active -q {UNIT} && exit 0; sleep 0.2; done; exit 1"
        ),
        secs(180),
    );
    check_rule_masked(&mut d, true);
    let restarts_after_abort = unit_property(&mut d, "NRestarts");
    checked(
        &d,
        format!(
            "SIGABRT of pid {pid_before_abort}: unit waiting to restart (Result={abort_result}) with the rule given back, then restarted with the mask back \
             (NRestarts {restarts_after_abort})"
        ),
    );
    let iomem = read_iomem(&mut d);
    burst_figures(&mut d, &mut figures, &burst);
    stop_poller(&mut d);
    figures.add("restarts", restarts - restarts0);
    figures.add("reloads_after_restart", reloads);
    // A second instance by hand must refuse to run (issue 12: one instance per host).
    let (status, lines) = d.sh("timeout 30 kdump-hotplugd run; echo \"exit=$?\"", secs(90));
    let exit = lines
        .iter()
        .rev()
        .find_map(|l| l.trim().strip_prefix("exit="))
        .and_then(|v| v.parse::<i32>().ok())
        .unwrap_or(-1);
    let _ = status;
    if exit == 0 || exit == 124 || exit == 143 {
        failures.push(format!(
            "a second `kdump-hotplugd run` beside the service did not refuse to run (exit {exit}; {}): {}",
            if exit == 124 { "still running after 30 s, stopped by timeout" } else { "ran" },
            lines.iter().rev().take(6).rev().cloned().collect::<Vec<_>>().join(" | ")
        ));
    } else {
        checked(
            &d,
            format!(
                "a second instance refuses to run (exit {exit}): {}",
                lines.join(" | ")
            ),
        );
    }
    // systemctl stop: the unit stops cleanly, the mask is gone.
    d.sh_ok(&format!("systemctl stop {UNIT}"), secs(120));
    assert_eq!(is_active(&mut d), "inactive");
    assert_eq!(unit_property(&mut d, "Result"), "success");
    checked(&d, "systemctl stop: inactive, Result=success");
    check_rule_masked(&mut d, false);
    let crash = crash(&mut d);
    coverage_figure(&mut figures, &iomem, &crash);
    figures.print(&d);
    if let Some(problem) = coverage_problem(&iomem, &crash.dump) {
        failures.push(format!("after SIGKILL and restart: {problem}"));
    } else {
        assert_dump_complete(&d, &iomem, &crash.dump);
    }
    assert!(
        failures.is_empty(),
        "[faults] {} check(s) failed:\n- {}",
        failures.len(),
        failures.join("\n- ")
    );
}

/// apt-get remove, purge, dpkg -i again in the guest; lintian on the host.
#[test]
#[ignore = "distro tier: make test-distro"]
fn package_lifecycle() {
    let image = image();
    let lintian = std::process::Command::new("lintian")
        .args(["--info", "--display-info"])
        .arg(&image.deb)
        .output()
        .expect("run lintian (tests/distro/setup.sh host installs it)");
    let report = String::from_utf8_lossy(&lintian.stdout).into_owned()
        + &String::from_utf8_lossy(&lintian.stderr);
    let problems: Vec<&str> = report
        .lines()
        .filter(|l| l.starts_with("E:") || l.starts_with("W:"))
        .collect();
    println!("lintian {}:\n{report}", image.deb.display());
    assert!(
        problems.is_empty(),
        "lintian errors or warnings:\n{}",
        problems.join("\n")
    );
    println!("[package] checked: lintian reports no error or warning");

    let mut d = Distro::boot("package", "6.1");
    assert_eq!(is_active(&mut d), "active");
    let files = d.sh_ok("dpkg-query -L kdump-hotplugd", secs(60));
    let files: Vec<String> = files
        .into_iter()
        .map(|l| l.trim().to_string())
        .filter(|l| l.starts_with('/'))
        .collect();
    assert!(
        files.iter().any(|f| f.ends_with("/kdump-hotplugd.service")),
        "the package ships the unit: {files:?}"
    );
    d.sh_ok(
        "DEBIAN_FRONTEND=noninteractive apt-get remove -y -q kdump-hotplugd",
        secs(300),
    );
    assert_eq!(
        d.value("dpkg-query -W -f='${Status}\\n' kdump-hotplugd"),
        "deinstall ok config-files"
    );
    assert_eq!(is_active(&mut d), "inactive");
    // The unit file goes; deb-systemd-helper masks the name while the conffiles stay (debhelper's postrm on
    // remove), so that nothing starts a half-removed package.
    assert_ne!(
        d.sh(
            &format!("test -e /lib/systemd/system/{UNIT}.service"),
            secs(30)
        )
        .0,
        0,
        "no unit file after remove"
    );
    let load_state = unit_property(&mut d, "LoadState");
    assert!(
        load_state == "masked" || load_state == "not-found",
        "after remove the unit is masked or unknown: {load_state}"
    );
    assert_ne!(
        d.sh(
            "test -e /usr/share/dbus-1/system.d/org.kdump.Hotplug1.conf",
            secs(30)
        )
        .0,
        0,
        "no D-Bus policy after remove"
    );
    assert_eq!(
        d.sh("test -f /etc/kdump-hotplugd/config.toml", secs(30)).0,
        0,
        "remove keeps the conffile"
    );
    let owner = d
        .sh(&format!("busctl status {}", "org.kdump.Hotplug1"), secs(60))
        .0;
    assert_ne!(owner, 0, "nobody owns org.kdump.Hotplug1 after remove");
    check_rule_masked(&mut d, false);
    println!("[package] checked: apt-get remove: unit stopped, its file gone (LoadState {load_state}), D-Bus policy gone, bus name free, conffile kept");
    d.sh_ok(
        "DEBIAN_FRONTEND=noninteractive apt-get purge -y -q kdump-hotplugd",
        secs(300),
    );
    let (status, _) = d.sh("dpkg-query -W -f='${Status}\\n' kdump-hotplugd", secs(60));
    let state =
        d.value("dpkg-query -W -f='${db:Status-Abbrev}\\n' kdump-hotplugd 2>/dev/null ; true");
    assert!(
        status != 0 || state.is_empty() || state.starts_with("un"),
        "purged: {state:?}"
    );
    // Every file the package shipped is gone, except folders other packages share.
    let leftover = d.sh_ok(
        &format!(
            "for f in {}; do [ -e \"$f\" ] && [ ! -d \"$f\" ] && echo \"left: $f\"; done; \
             for f in /etc/kdump-hotplugd /run/kdump-hotplugd /usr/share/doc/kdump-hotplugd /var/lib/kdump-hotplugd \
             /etc/systemd/system/multi-user.target.wants/kdump-hotplugd.service \
             /etc/systemd/system/kdump-hotplugd.service {RULE_MASK}; do \
             [ -e \"$f\" ] && echo \"left: $f\"; done; \
             ls /var/lib/systemd/deb-systemd-helper-enabled/ /var/lib/systemd/deb-systemd-helper-masked/ 2>/dev/null \
             | grep kdump-hotplugd | sed 's/^/left: helper state /'; true",
            files.iter().filter(|f| !f.contains(' ')).cloned().collect::<Vec<_>>().join(" ")
        ),
        secs(120),
    );
    let leftover: Vec<&String> = leftover.iter().filter(|l| l.starts_with("left:")).collect();
    assert!(leftover.is_empty(), "purge left files behind: {leftover:?}");
    println!("[package] checked: apt-get purge: none of the {} shipped files, no /etc/kdump-hotplugd, no enablement state left", files.len());
    d.sh_ok("dpkg -i /root/kdump-hotplugd.deb", secs(300));
    d.sh_ok(
        &format!("for i in $(seq 300); do systemctl is-active -q {UNIT} && exit 0; sleep 0.2; done; exit 1"),
        secs(120),
    );
    assert_eq!(d.value(&format!("systemctl is-enabled {UNIT}")), "enabled");
    let state = d.value(&format!("busctl get-property {BUS_ARGS} State"));
    assert!(
        state.starts_with("s \""),
        "the reinstalled daemon serves the bus: {state}"
    );
    check_rule_masked(&mut d, true);
    println!(
        "[package] checked: dpkg -i again: enabled, active, serving org.kdump.Hotplug1 ({state})"
    );
}

/// One way of putting a fresh crash kernel in place, and how long the host had none while it did.
struct Window {
    mechanism: &'static str,
    runs: Vec<f64>,
    daemon_reload_s: Vec<f64>,
}

impl Window {
    fn median(values: &[f64]) -> f64 {
        let mut sorted = values.to_vec();
        sorted.sort_by(f64::total_cmp);
        sorted[sorted.len() / 2]
    }
}

/// Runs `command` (which must leave a crash kernel loaded) `times` times; for each run, the seconds the poller saw
/// `kexec_crash_loaded` read 0 between the command's start and its end.
fn measure_window(
    d: &mut Distro,
    mechanism: &'static str,
    command: &str,
    times: usize,
    via_daemon: bool,
) -> Window {
    let mut window = Window {
        mechanism,
        runs: Vec::new(),
        daemon_reload_s: Vec::new(),
    };
    for run in 1..=times {
        let started = d.uptime();
        let output = d.sh_ok(command, secs(300));
        let ended = d.uptime();
        assert_eq!(
            d.value("cat /sys/kernel/kexec_crash_loaded"),
            "1",
            "[{}] {mechanism} left no crash kernel loaded: {output:?}",
            d.name
        );
        // The poller writes the 0→1 change after the load: wait until it has seen the state the command left.
        // Each probe is a guest round trip already: no pause between them.
        let log = poll_until(d, secs(30), Duration::ZERO, |d| {
            let log = loaded_log(d);
            if log.last().is_some_and(|&(_, loaded)| loaded) {
                Ok(log)
            } else {
                Err("the poller never saw the crash kernel loaded again".to_owned())
            }
        });
        let (unloaded, loads, _) = unloaded_time(&log, started, ended);
        assert_eq!(
            loads, 1,
            "[{}] {mechanism} run {run}: one unload and load seen by the poller ({log:?})",
            d.name
        );
        window.runs.push(unloaded);
        if via_daemon {
            let status = daemon_status(d);
            window
                .daemon_reload_s
                .push(status.u("LastReloadDurationUsec") as f64 / 1e6);
        }
        println!(
            "[{}] {mechanism} run {run}: no crash kernel for {unloaded:.3}s (command took {:.2}s)",
            d.name,
            ended - started
        );
    }
    window
}

/// The window with no crash kernel per reload, same guest, same files, same run: kdump-tools' own reload
/// (`kdump-config reload`: unload, then kexec-tools prepares and loads), the daemon's default (`kexec -c -p`:
/// kexec_load of segments prepared before the old image is freed) and the daemon's `kexec_file_load` (the kernel
/// reads and digests kernel and initrd after freeing the old image).
#[test]
#[ignore = "distro tier: make test-distro"]
fn windows() {
    const RUNS: usize = 3;
    const NATIVE_DROP_IN: &str = "/etc/kdump-hotplugd/config.d/90-distro-tier-native.toml";
    let mut d = Distro::boot("windows", "6.1");
    let mut figures = Figures::default();
    assert_eq!(is_active(&mut d), "active");
    start_watchers(&mut d);
    let reload = format!("busctl call {BUS_ARGS} Reload");
    let distro = measure_window(
        &mut d,
        "kdump-config reload",
        "kdump-config reload",
        RUNS,
        false,
    );
    let kexec_load = measure_window(
        &mut d,
        "daemon kexec_load (kexec -c -p)",
        &reload,
        RUNS,
        true,
    );
    let plan = d.sh_ok("kdump-hotplugd plan", secs(60)).join("\n");
    assert!(
        plan.contains("loader:   kexec_load (kexec -c -p)"),
        "{plan}"
    );
    d.sh_ok(
        &format!(
            "printf '# the distro tier measures kexec_file_load here\\n[loader]\\nkind = \"native\"\\n' > {NATIVE_DROP_IN} \
             && systemctl restart {UNIT} && for i in $(seq 300); do \
             busctl get-property {BUS_ARGS} State 2>/dev/null | grep -q idle && exit 0; sleep 0.2; done; exit 1"
        ),
        secs(180),
    );
    let native = measure_window(&mut d, "daemon kexec_file_load", &reload, RUNS, true);
    let native_status = daemon_status(&mut d);
    assert_eq!(
        native_status.u("ReloadsFailed"),
        0,
        "{:?}",
        native_status.values
    );
    d.sh_ok(
        &format!(
            "rm -f {NATIVE_DROP_IN} && systemctl restart {UNIT} && systemctl is-active {UNIT}"
        ),
        secs(180),
    );
    stop_poller(&mut d);
    let mut lines = Vec::new();
    for (key, window) in [
        ("kdump_config_reload", &distro),
        ("daemon_kexec_load", &kexec_load),
        ("daemon_kexec_file_load", &native),
    ] {
        let median = Window::median(&window.runs);
        figures.add(&format!("{key}_no_crash_kernel_s"), format!("{median:.3}"));
        if !window.daemon_reload_s.is_empty() {
            figures.add(
                &format!("{key}_reload_s"),
                format!("{:.2}", Window::median(&window.daemon_reload_s)),
            );
        }
        lines.push(format!(
            "{}: median {median:.3}s of {:?}",
            window.mechanism,
            window
                .runs
                .iter()
                .map(|r| format!("{r:.3}"))
                .collect::<Vec<_>>()
        ));
    }
    figures.add("runs", RUNS);
    figures.print(&d);
    let (k, n, c) = (
        Window::median(&kexec_load.runs),
        Window::median(&native.runs),
        Window::median(&distro.runs),
    );
    // The rule the loader choice rests on: prepared segments leave the shortest window.
    assert!(
        k < n && k < c,
        "[windows] kexec_load prepared before the call must leave the shortest window: {}",
        lines.join("; ")
    );
    checked(
        &d,
        format!(
            "the window with no crash kernel, median of {RUNS}: {} (kexec_load {:.0}x shorter than kexec_file_load, \
             {:.0}x shorter than kdump-config reload)",
            lines.join("; "),
            n / k.max(1e-3),
            c / k.max(1e-3)
        ),
    );
}

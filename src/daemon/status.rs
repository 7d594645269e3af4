//! The state the owner loop publishes: read by D-Bus, the CLI, sd_notify and the final report.

use std::sync::Arc;

use serde::Serialize;

use crate::core::debounce::Phase;
use crate::core::model::MemRange;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum State {
    #[default]
    Idle,
    Waiting,
    Reloading,
    Backoff,
    Error,
}

impl State {
    pub fn from_phase(phase: Phase, error: bool) -> Self {
        match phase {
            Phase::Waiting => State::Waiting,
            Phase::Reloading => State::Reloading,
            Phase::Backoff => State::Backoff,
            Phase::Failed => State::Error,
            Phase::Idle if error => State::Error,
            Phase::Idle => State::Idle,
        }
    }

    pub fn as_str(&self) -> &'static str {
        match self {
            State::Idle => "idle",
            State::Waiting => "waiting",
            State::Reloading => "reloading",
            State::Backoff => "backoff",
            State::Error => "error",
        }
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Counters {
    pub events_seen: u64,
    /// Events that rode on a reload already pending or in flight instead of causing their own.
    pub events_coalesced: u64,
    pub events_malformed: u64,
    /// Times the uevent socket overflowed (ENOBUFS); each lost an unknown number of uevents, and each was
    /// followed by a fresh snapshot.
    pub uevent_overflows: u64,
    /// Wake-ups of the owner loop for uevents (each carries a batch).
    pub uevent_batches: u64,
    pub reloads: u64,
    pub reloads_failed: u64,
    /// Debounced bursts that needed no reload (nothing changed, or the kernel updates the header itself).
    pub reloads_skipped: u64,
    /// Reloads still running at `daemon.reload_timeout_ms` (reported, not aborted).
    pub reloads_timed_out: u64,
    /// Kernel log lines saying its in-place header update failed.
    pub kernel_update_failures: u64,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Status {
    pub state: State,
    pub paused: bool,
    pub crash_kernel_loaded: bool,
    pub kernel_updates_memory: bool,
    pub kernel_updates_cpu: bool,
    pub range_count: u64,
    /// Memory ranges the kernel's header buffer holds, from `crash_elfcorehdr_size`; 0 = the kernel does not say.
    pub kernel_range_capacity: u64,
    /// The config's `kernel.max_memory_ranges` override; 0 = none.
    pub configured_range_capacity: u64,
    /// `known`, `unbounded` (no crash hotplug buffer: a load is sized to the ranges) or `unknown`
    /// ([`crate::core::decide::Capacity::kind`]).
    pub capacity_kind: String,
    /// The running kernel's `crashkernel=` range expression evaluated at the memory present now selects more
    /// than is reserved: what it would select, that a reboot applies it (and the distro's recommendation, when
    /// it has one). Empty when there is nothing to say ([`crate::core::reservation`]).
    pub reservation_warning: String,
    /// What the `crashkernel=` range expression selects for the memory present now; 0 = nothing to evaluate.
    pub reservation_selects_bytes: u64,
    /// Bytes reserved now (`kexec_crash_size`); 0 = unknown or none.
    pub reserved_bytes: u64,
    /// The distribution tool's recommended `crashkernel=` size for this memory, labelled with its source;
    /// empty when the distribution publishes no rule (or it is not known).
    pub distro_recommendation: String,
    #[serde(skip)]
    pub ranges: Arc<Vec<MemRange>>,
    pub cpus: String,
    pub addresses_hidden: bool,
    pub counters: Counters,
    /// Realtime (µs since the epoch) of the last successful reload; 0 = none.
    pub last_reload_usec: u64,
    pub last_reload_duration_usec: u64,
    pub last_reload_reason: String,
    pub last_decision: String,
    pub last_error: String,
    pub loader: String,
    /// The crash kernel the daemon reloads (the distro's plan) and the loader chosen for it.
    pub crash_kernel_plan: String,
    pub version: String,
    /// The mask standing in for the distribution's hotplug rule (host path; several joined by ", "); empty =
    /// none.
    pub masked_rule: String,
}

impl Status {
    /// One line for sd_notify's STATUS= and the live display.
    pub fn summary(&self) -> String {
        let mut line = format!(
            "{}{}: ranges {}, crash kernel {}, events {} ({} coalesced, {} malformed, {} overflows), reloads {} ({} failed, \
             {} skipped, {} timed out)",
            self.state.as_str(),
            if self.paused { " (paused)" } else { "" },
            self.range_count,
            if self.crash_kernel_loaded { "loaded" } else { "not loaded" },
            self.counters.events_seen,
            self.counters.events_coalesced,
            self.counters.events_malformed,
            self.counters.uevent_overflows,
            self.counters.reloads,
            self.counters.reloads_failed,
            self.counters.reloads_skipped,
            self.counters.reloads_timed_out,
        );
        if !self.last_error.is_empty() {
            line.push_str("; last error: ");
            line.push_str(&self.last_error);
        }
        line
    }
}

/// Things that happened, for D-Bus signals.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Notice {
    ReloadFinished {
        success: bool,
        reason: String,
        duration_usec: u64,
        ranges: u32,
    },
    KernelBufferTooSmall {
        needed: u64,
        capacity: u64,
    },
    /// A reload has run past `daemon.reload_timeout_ms` and is still running.
    ReloadTimedOut {
        reason: String,
        timeout_usec: u64,
    },
}

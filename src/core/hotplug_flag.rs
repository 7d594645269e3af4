//! When a `crash_hotplug` 0 is believed.
//!
//! `/sys/devices/system/{memory,cpu}/crash_hotplug` are computed on each read by `crash_check_hotplug_support()`
//! (kernel/crash_core.c; `crash_check_update_elfcorehdr()` before 6.10), which takes the kexec lock with
//! `kexec_trylock()` and returns 0 when someone else holds it: a load or unload in progress, or the kernel's own
//! in-place update of the header during a hotplug burst (`crash_handle_hotplug_event()` holds the lock while it
//! rebuilds the header). So a single 0 right after a 1, with the crash kernel still loaded, is not proof that the
//! kernel stopped updating the header: it is re-read a few times, a short interval apart, before the daemon
//! switches to reloading for it. The policy is here; the reads (and the waiting) are the reader's
//! ([`crate::host::snapshot::SnapshotReader`]).

use std::time::Duration;

/// How many re-reads confirm a 0, and how far apart.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ZeroConfirmation {
    pub rereads: u32,
    pub interval: Duration,
}

impl ZeroConfirmation {
    /// Three re-reads 20 ms apart: longer than an in-kernel header update holds the lock (one header rebuild),
    /// and at most 60 ms of the snapshot step, once per 1 → 0 change; short against the 1 s quiet window.
    pub const DEFAULT: ZeroConfirmation = ZeroConfirmation {
        rereads: 3,
        interval: Duration::from_millis(20),
    };

    /// Re-reads disabled.
    pub const NONE: ZeroConfirmation = ZeroConfirmation {
        rereads: 0,
        interval: Duration::ZERO,
    };
}

/// Whether a flag reading `now` must be re-read before it is believed: it read 1 the last time, it reads 0 now,
/// and a crash kernel is still loaded (with none loaded, 0 is simply the answer).
pub fn needs_confirming(previous: Option<bool>, now: bool, crash_loaded: bool) -> bool {
    previous == Some(true) && !now && crash_loaded
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_drop_with_a_crash_kernel_loaded_is_confirmed() {
        assert!(needs_confirming(Some(true), false, true));
        assert!(
            !needs_confirming(Some(true), false, false),
            "nothing loaded"
        );
        assert!(
            !needs_confirming(Some(false), false, true),
            "already 0 before"
        );
        assert!(!needs_confirming(None, false, true), "first read: no drop");
        assert!(!needs_confirming(Some(true), true, true));
        assert!(!needs_confirming(Some(false), true, true));
    }
}

//! Tests that need something of the machine — root, a writable sysfs, `/dev/kmsg`, a netlink socket, a tool such
//! as kexec-tools or dbus-daemon — call [`missing`] where that something is absent. Under `CI=true` (what CI
//! services set, and what `.ci/run` exports) the test then FAILS with the reason: a CI run that tested nothing
//! must not pass. Anywhere else it prints `SKIP: reason` and the caller returns (or carries on with the part it
//! can still check).
//!
//! Included by each test crate that needs it (`#[path = "common/precondition.rs"] mod precondition;`), and by
//! `src/edge/kexec.rs`'s syscall test; tests/precondition.rs tests it.

#![allow(dead_code)] // Each crate that includes this module uses a different part of it.

use std::fmt::Display;

/// The variable that says a run is CI.
pub const CI_VARIABLE: &str = "CI";

/// What an unmet precondition does to a test.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// The test fails with this message.
    Fail(String),
    /// The test skips; this is what it prints.
    Skip(String),
}

/// Whether `value` (of `CI`) asks for a strict run. `true` and `1` do (GitHub, GitLab and most services set
/// `CI=true`); unset, empty or anything else does not.
pub fn is_ci(value: Option<&str>) -> bool {
    matches!(
        value.map(|v| v.trim().to_ascii_lowercase()).as_deref(),
        Some("true" | "1")
    )
}

/// The verdict for a precondition that is not met, given the value of `CI`. Pure: tests/precondition.rs checks it.
pub fn verdict(ci: Option<&str>, reason: &str) -> Verdict {
    if is_ci(ci) {
        Verdict::Fail(format!(
            "precondition not met under {CI_VARIABLE}=true (a skipped test is a failure in CI): {reason}"
        ))
    } else {
        Verdict::Skip(format!(
            "SKIP: {reason} (set {CI_VARIABLE}=true to make this a failure)"
        ))
    }
}

/// The value of `CI` in this process.
pub fn ci_value() -> Option<String> {
    std::env::var(CI_VARIABLE).ok()
}

/// Reports a missing precondition: panics under `CI=true` (the test fails with `reason`), otherwise prints
/// `SKIP: reason` to stderr and returns, so the caller can `return missing(…)` or carry on with less.
#[track_caller]
pub fn missing(reason: impl Display) {
    match verdict(ci_value().as_deref(), &reason.to_string()) {
        Verdict::Fail(message) => panic!("{message}"),
        Verdict::Skip(message) => eprintln!("{message}"),
    }
}

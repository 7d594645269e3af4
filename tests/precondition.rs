//! The precondition helper (tests/common/precondition.rs): under CI=true an unmet precondition fails, elsewhere it
//! skips and says so. End to end (a real test failing under CI=true when kexec-tools is missing): see
//! tests/kexec_tools.rs, `without_kexec_tools_ci_fails_and_a_local_run_skips`.

#[path = "common/precondition.rs"]
mod precondition;

use precondition::{is_ci, missing, verdict, Verdict};

#[test]
fn ci_true_turns_a_missing_precondition_into_a_failure() {
    for value in ["true", "TRUE", "1", " true "] {
        assert_eq!(
            verdict(Some(value), "kexec-tools is not installed"),
            Verdict::Fail(
                "precondition not met under CI=true (a skipped test is a failure in CI): kexec-tools is not \
                 installed"
                    .into()
            ),
            "CI={value:?}"
        );
    }
}

#[test]
fn elsewhere_a_missing_precondition_skips_saying_why() {
    for value in [None, Some(""), Some("false"), Some("0"), Some("yes please")] {
        assert!(!is_ci(value), "{value:?}");
        assert_eq!(
            verdict(value, "/dev/kmsg is not readable"),
            Verdict::Skip(
                "SKIP: /dev/kmsg is not readable (set CI=true to make this a failure)".into()
            ),
            "CI={value:?}"
        );
    }
}

/// `missing` itself, in this process: it panics exactly when the process runs with CI=true. (The environment is
/// not changed here: other tests of this crate run in parallel.)
#[test]
fn missing_follows_this_processes_ci_variable() {
    let ci = is_ci(precondition::ci_value().as_deref());
    let outcome = std::panic::catch_unwind(|| missing("a tool this test made up is not installed"));
    match outcome {
        Ok(()) => assert!(!ci, "CI=true but missing() did not fail"),
        Err(panic) => {
            assert!(ci, "missing() failed without CI=true");
            let message = panic.downcast_ref::<String>().cloned().unwrap_or_default();
            assert!(
                message.ends_with(": a tool this test made up is not installed"),
                "{message}"
            );
        }
    }
}

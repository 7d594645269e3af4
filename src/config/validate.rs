//! Stage 3: merged inputs → [`Settings`], rejecting values the daemon cannot use. Each error names the file and
//! line where the offending key was last set.

use std::path::PathBuf;
use std::time::Duration;

use super::inputs::{Inputs, Sourced};
use super::{
    ConfigError, DebounceTimings, EventSettings, LoaderKind, LoaderSettings, Origin, Settings,
};

/// Upper bound for every duration: a day is far beyond any sensible delay, and the bound keeps
/// `Instant + Duration` arithmetic elsewhere in the daemon far from overflow.
pub(crate) const MAX_DURATION_MS: i64 = 24 * 60 * 60 * 1000;

fn invalid(key: &str, origin: &Origin, message: String) -> ConfigError {
    let (file, line) = match origin {
        Origin::File { file, line } => (file.clone(), *line),
        // Only reachable if the built-in defaults broke a rule; a unit test keeps them valid.
        Origin::Default => ("(built-in default)".to_owned(), 0),
    };
    ConfigError::Invalid {
        file,
        line,
        key: key.to_owned(),
        message,
    }
}

fn millis(key: &str, input: &Sourced<i64>) -> Result<Duration, ConfigError> {
    let value = input.value;
    if value < 1 {
        return Err(invalid(
            key,
            &input.origin,
            format!("must be at least 1 (milliseconds), found {value}"),
        ));
    }
    if value > MAX_DURATION_MS {
        return Err(invalid(
            key,
            &input.origin,
            format!("must be at most {MAX_DURATION_MS} (milliseconds, 24 hours), found {value}"),
        ));
    }
    Ok(Duration::from_millis(value.unsigned_abs()))
}

/// Checks `lower <= upper`, blaming whichever of the two keys was set later (the edit that broke the rule).
fn ordered(
    (lower_key, lower): (&str, &Sourced<i64>),
    (upper_key, upper): (&str, &Sourced<i64>),
) -> Result<(), ConfigError> {
    if lower.value <= upper.value {
        return Ok(());
    }
    Err(if lower.rank > upper.rank {
        invalid(
            lower_key,
            &lower.origin,
            format!(
                "must not exceed {upper_key} ({}, {}), found {}",
                upper.value, upper.origin, lower.value
            ),
        )
    } else {
        invalid(
            upper_key,
            &upper.origin,
            format!(
                "must be at least {lower_key} ({}, {}), found {}",
                lower.value, lower.origin, upper.value
            ),
        )
    })
}

fn without_nul(key: &str, input: &Sourced<String>) -> Result<(), ConfigError> {
    if input.value.contains('\0') {
        return Err(invalid(
            key,
            &input.origin,
            "must not contain a NUL character".to_owned(),
        ));
    }
    Ok(())
}

fn absolute_path(key: &str, input: &Sourced<String>) -> Result<PathBuf, ConfigError> {
    without_nul(key, input)?;
    if !input.value.starts_with('/') {
        return Err(invalid(
            key,
            &input.origin,
            format!(
                "must be an absolute path (starting with /), found \"{}\"",
                input.value.escape_debug()
            ),
        ));
    }
    Ok(PathBuf::from(&input.value))
}

/// An empty string means "work it out" (the key's documented default).
fn optional_path(key: &str, input: &Sourced<String>) -> Result<Option<PathBuf>, ConfigError> {
    if input.value.is_empty() {
        return Ok(None);
    }
    absolute_path(key, input).map(Some)
}

fn command(inputs: &Inputs) -> Result<Vec<String>, ConfigError> {
    let key = "loader.command";
    let command = &inputs.loader.command;
    let kind = &inputs.loader.kind;
    // Unset means "detect the distro's tool"; an empty list written down is a mistake, not a request.
    if kind.value == LoaderKind::Command
        && command.value.is_empty()
        && command.origin != Origin::Default
    {
        return Err(invalid(
            key,
            &command.origin,
            format!(
                "must not be empty when loader.kind is \"command\" ({}); name the command, e.g. \
                 [\"kdumpctl\", \"reload\"], or remove this key to detect the distribution's tool",
                kind.origin
            ),
        ));
    }
    if command.value.first().is_some_and(String::is_empty) {
        return Err(invalid(
            key,
            &command.origin,
            "the program (first element) must not be an empty string".to_owned(),
        ));
    }
    if command.value.iter().any(|arg| arg.contains('\0')) {
        return Err(invalid(
            key,
            &command.origin,
            "arguments must not contain a NUL character".to_owned(),
        ));
    }
    Ok(command.value.clone())
}

pub(crate) fn validate(inputs: &Inputs) -> Result<Settings, ConfigError> {
    let debounce = &inputs.debounce;
    let quiet_window = millis("debounce.quiet_window_ms", &debounce.quiet_window_ms)?;
    let max_delay = millis("debounce.max_delay_ms", &debounce.max_delay_ms)?;
    let backoff_initial = millis("debounce.backoff_initial_ms", &debounce.backoff_initial_ms)?;
    let backoff_max = millis("debounce.backoff_max_ms", &debounce.backoff_max_ms)?;
    ordered(
        ("debounce.quiet_window_ms", &debounce.quiet_window_ms),
        ("debounce.max_delay_ms", &debounce.max_delay_ms),
    )?;
    ordered(
        ("debounce.backoff_initial_ms", &debounce.backoff_initial_ms),
        ("debounce.backoff_max_ms", &debounce.backoff_max_ms),
    )?;

    let loader = &inputs.loader;
    without_nul("loader.cmdline", &loader.cmdline)?;
    let loader_settings = LoaderSettings {
        kind: loader.kind.value,
        kernel: optional_path("loader.kernel", &loader.kernel)?,
        initrd: optional_path("loader.initrd", &loader.initrd)?,
        cmdline: Some(loader.cmdline.value.clone()).filter(|cmdline| !cmdline.is_empty()),
        command: command(inputs)?,
        command_timeout: millis("loader.command_timeout_ms", &loader.command_timeout_ms)?,
        kexec_path: absolute_path("loader.kexec_path", &loader.kexec_path)?,
    };

    let daemon = &inputs.daemon;
    let reload_timeout = millis("daemon.reload_timeout_ms", &daemon.reload_timeout_ms)?;
    // A loader that runs a child kills it at its own timeout; the daemon's deadline must not come first, or a
    // command that was about to be killed and retried would be reported as stuck instead.
    ordered(
        ("loader.command_timeout_ms", &loader.command_timeout_ms),
        ("daemon.reload_timeout_ms", &daemon.reload_timeout_ms),
    )?;

    let ranges = &inputs.kernel.max_memory_ranges;
    let kernel_max_memory_ranges = u32::try_from(ranges.value)
        .ok()
        .filter(|&count| count >= 1)
        .ok_or_else(|| {
            invalid(
                "kernel.max_memory_ranges",
                &ranges.origin,
                format!("must be between 1 and {}, found {}", u32::MAX, ranges.value),
            )
        })?;

    Ok(Settings {
        debounce: DebounceTimings {
            quiet_window,
            max_delay,
            backoff_initial,
            backoff_max,
        },
        loader: loader_settings,
        events: EventSettings {
            memory: inputs.events.memory.value,
            cpu: inputs.events.cpu.value,
            source: inputs.events.source.value,
        },
        kernel_max_memory_ranges,
        dry_run: inputs.daemon.dry_run.value,
        initial_load: inputs.daemon.initial_load.value,
        watch_kernel_log: inputs.daemon.watch_kernel_log.value,
        reload_timeout,
        mask_distro_rule: inputs.daemon.mask_distro_rule.value,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn built_in_defaults_validate_to_settings_default() {
        assert_eq!(validate(&Inputs::defaults()).unwrap(), Settings::default());
    }
}

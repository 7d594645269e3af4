//! `kdump-hotplugd status`: reads the running daemon's object and prints a short summary (or JSON).

use std::fmt::Write as _;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use zbus::proxy;

use super::{BusAddress, BUS_NAME};
use crate::daemon::Status;

/// A client of `org.kdump.Hotplug1`, for the `status` command and for tests.
#[proxy(
    interface = "org.kdump.Hotplug1",
    default_service = "org.kdump.Hotplug1",
    default_path = "/org/kdump/Hotplug1"
)]
pub trait Hotplug1 {
    fn get_ranges(&self) -> zbus::Result<Vec<(u64, u64)>>;
    /// The daemon's [`Status`], read with the same type it was sent as.
    fn get_status(&self) -> zbus::Result<Status>;
    fn reload(&self) -> zbus::Result<String>;
    fn reload_config(&self) -> zbus::Result<()>;
    fn set_paused(&self, paused: bool) -> zbus::Result<()>;

    #[zbus(property)]
    fn state(&self) -> zbus::Result<String>;
    #[zbus(property)]
    fn reloads(&self) -> zbus::Result<u64>;

    #[zbus(signal)]
    fn reload_finished(
        &self,
        success: bool,
        reason: String,
        duration_usec: u64,
        ranges: u32,
    ) -> zbus::Result<()>;
    #[zbus(signal)]
    fn kernel_buffer_too_small(&self, needed: u32, capacity: u32) -> zbus::Result<()>;
}

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("cannot connect to the {bus}: {cause}")]
    Connect { bus: String, cause: zbus::Error },
    #[error("{BUS_NAME} on the {bus}: {cause}{hint}")]
    Call {
        bus: String,
        cause: zbus::Error,
        hint: &'static str,
    },
    #[error("no bus to read from")]
    NoBus,
}

/// A connection to the running daemon's object, with the bus named for error messages.
pub struct Client {
    proxy: Hotplug1Proxy<'static>,
    bus: String,
}

impl Client {
    pub async fn connect(bus: &BusAddress) -> Result<Client, ClientError> {
        let (connection, bus_name) = match bus {
            BusAddress::None => return Err(ClientError::NoBus),
            BusAddress::System => (zbus::Connection::system().await, "system bus".to_owned()),
            BusAddress::Address(address) => (
                async {
                    zbus::connection::Builder::address(address.as_str())?
                        .build()
                        .await
                }
                .await,
                format!("bus at {address}"),
            ),
        };
        let connection = connection.map_err(|cause| ClientError::Connect {
            bus: bus_name.clone(),
            cause,
        })?;
        let proxy = Hotplug1Proxy::new(&connection)
            .await
            .map_err(|cause| call_error(&bus_name, cause))?;
        Ok(Client {
            proxy,
            bus: bus_name,
        })
    }

    fn failed(&self, cause: zbus::Error) -> ClientError {
        call_error(&self.bus, cause)
    }

    /// `GetStatus()`, rendered: a few lines for a person, or every field as JSON.
    pub async fn status(&self, json: bool) -> Result<String, ClientError> {
        let status = self.proxy.get_status().await.map_err(|e| self.failed(e))?;
        if json {
            return Ok(serde_json::to_string_pretty(&status.to_json()).unwrap_or_default() + "\n");
        }
        Ok(status_text(&status, SystemTime::now()))
    }

    /// `Reload()`: the outcome, once the reload (queued behind any in flight) has ended.
    pub async fn reload(&self) -> Result<String, ClientError> {
        self.proxy.reload().await.map_err(|e| self.failed(e))
    }

    pub async fn reload_config(&self) -> Result<(), ClientError> {
        self.proxy.reload_config().await.map_err(|e| self.failed(e))
    }
}

fn call_error(bus: &str, cause: zbus::Error) -> ClientError {
    let nobody_there = matches!(
        &cause,
        zbus::Error::MethodError(name, _, _)
            if name.as_str() == "org.freedesktop.DBus.Error.ServiceUnknown"
                || name.as_str() == "org.freedesktop.DBus.Error.NameHasNoOwner"
    );
    ClientError::Call {
        bus: bus.to_owned(),
        cause,
        hint: if nobody_there {
            " (is kdump-hotplugd running?)"
        } else {
            ""
        },
    }
}

fn yes_no(value: bool) -> &'static str {
    if value {
        "yes"
    } else {
        "no"
    }
}

/// What `kdump-hotplugd status` prints: several lines, unlike the one-line [`Status::summary`].
fn status_text(s: &Status, now: SystemTime) -> String {
    let mut out = String::new();
    let paused = if s.paused { " (paused)" } else { "" };
    let _ = writeln!(
        out,
        "kdump-hotplugd {}: {}{paused}",
        s.version,
        s.state.as_str()
    );
    let _ = writeln!(
        out,
        "crash kernel:  {}; the kernel updates its header itself: memory {}, cpu {}",
        if s.crash_kernel_loaded {
            "loaded"
        } else {
            "not loaded"
        },
        yes_no(s.kernel_updates_memory),
        yes_no(s.kernel_updates_cpu),
    );
    let capacity = match s.capacity_kind.as_str() {
        "unbounded" => {
            "the kernel sizes each load to the ranges (no crash hotplug buffer)".to_owned()
        }
        "unknown" => "the kernel does not say how many fit".to_owned(),
        _ => match s.kernel_range_capacity {
            0 => format!(
                "the kernel does not say how many fit (configured {})",
                s.configured_range_capacity
            ),
            capacity => format!("the kernel's buffer holds {capacity}"),
        },
    };
    let _ = writeln!(out, "memory ranges: {}; {capacity}", s.range_count);
    if !s.reservation_warning.is_empty() {
        let _ = writeln!(out, "reservation:   WARNING: {}", s.reservation_warning);
    }
    let _ = writeln!(
        out,
        "events:        {} seen, {} coalesced, {} malformed, {} socket overflows",
        s.events_seen, s.events_coalesced, s.events_malformed, s.uevent_overflows,
    );
    let _ = writeln!(
        out,
        "reloads:       {} ({} failed, {} skipped, {} timed out) with {}",
        s.reloads, s.reloads_failed, s.reloads_skipped, s.reloads_timed_out, s.loader,
    );
    if s.last_reload_usec == 0 {
        let _ = writeln!(out, "last reload:   none since the daemon started");
    } else {
        let at = UNIX_EPOCH + Duration::from_micros(s.last_reload_usec);
        let ago = now.duration_since(at).unwrap_or_default().as_secs();
        let _ = writeln!(
            out,
            "last reload:   {} ({ago} s ago), took {} ms: {}",
            utc_timestamp(s.last_reload_usec / 1_000_000),
            s.last_reload_duration_usec / 1000,
            s.last_reload_reason,
        );
    }
    let masked = if s.masked_rule.is_empty() {
        "none masked".to_owned()
    } else {
        format!("masked by {}", s.masked_rule)
    };
    let _ = writeln!(out, "distro rule:   {masked}");
    let error = if s.last_error.is_empty() {
        "none"
    } else {
        &s.last_error
    };
    let _ = writeln!(out, "last error:    {error}");
    out
}

/// `YYYY-MM-DD HH:MM:SS UTC` from seconds since the epoch (the civil-from-days conversion of the proleptic
/// Gregorian calendar).
fn utc_timestamp(seconds: u64) -> String {
    let days = (seconds / 86_400) as i64;
    let time = seconds % 86_400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z.rem_euclid(146_097);
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let mp = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02} UTC",
        time / 3600,
        time / 60 % 60,
        time % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_are_utc_calendar_dates() {
        assert_eq!(utc_timestamp(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(utc_timestamp(951_782_400), "2000-02-29 00:00:00 UTC");
        assert_eq!(utc_timestamp(1_795_591_845), "2026-11-25 07:30:45 UTC");
    }

    #[test]
    fn the_status_text_names_state_ranges_capacity_and_the_last_error() {
        let status = Status {
            state: crate::daemon::State::Error,
            version: "9.9".into(),
            crash_kernel_loaded: true,
            range_count: 9000,
            kernel_range_capacity: 8192,
            events_seen: 7,
            reloads: 2,
            reloads_timed_out: 1,
            masked_rule: "/run/udev/rules.d/98-kexec.rules".into(),
            last_reload_usec: 1_795_591_845_000_000,
            last_reload_duration_usec: 250_000,
            last_reload_reason: "memory changed".into(),
            last_error: "kernel buffer too small".into(),
            ..Status::default()
        };
        let now = UNIX_EPOCH + Duration::from_secs(1_795_591_855);
        let text = status_text(&status, now);
        assert!(text.starts_with("kdump-hotplugd 9.9: error\n"), "{text}");
        assert!(text.contains("crash kernel:  loaded;"), "{text}");
        assert!(
            text.contains("memory ranges: 9000; the kernel's buffer holds 8192"),
            "{text}"
        );
        assert!(text.contains("events:        7 seen"), "{text}");
        assert!(
            text.contains("reloads:       2 (0 failed, 0 skipped, 1 timed out)"),
            "{text}"
        );
        assert!(
            text.contains("distro rule:   masked by /run/udev/rules.d/98-kexec.rules"),
            "{text}"
        );
        assert!(
            text.contains("2026-11-25 07:30:45 UTC (10 s ago), took 250 ms: memory changed"),
            "{text}"
        );
        assert!(
            text.contains("last error:    kernel buffer too small"),
            "{text}"
        );
    }
}

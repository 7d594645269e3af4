//! `kdump-hotplugd status`: reads the running daemon's object and prints a short summary (or JSON).

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use zbus::proxy;
use zbus::zvariant::{OwnedValue, Value};

use super::{BusAddress, BUS_NAME};

/// A client of `org.kdump.Hotplug1`, for the `status` command and for tests.
#[proxy(
    interface = "org.kdump.Hotplug1",
    default_service = "org.kdump.Hotplug1",
    default_path = "/org/kdump/Hotplug1"
)]
pub trait Hotplug1 {
    fn get_ranges(&self) -> zbus::Result<Vec<(u64, u64)>>;
    fn get_status(&self) -> zbus::Result<HashMap<String, OwnedValue>>;
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
pub enum StatusError {
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
    pub async fn connect(bus: &BusAddress) -> Result<Client, StatusError> {
        let (connection, bus_name) = match bus {
            BusAddress::None => return Err(StatusError::NoBus),
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
        let connection = connection.map_err(|cause| StatusError::Connect {
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

    fn failed(&self, cause: zbus::Error) -> StatusError {
        call_error(&self.bus, cause)
    }

    /// `GetStatus()`, rendered: a summary, or every field as JSON.
    pub async fn status(&self, json: bool) -> Result<String, StatusError> {
        let dict = self.proxy.get_status().await.map_err(|e| self.failed(e))?;
        if json {
            let object: BTreeMap<String, serde_json::Value> = dict
                .iter()
                .map(|(key, value)| (key.clone(), json_of(value)))
                .collect();
            return Ok(serde_json::to_string_pretty(&object).unwrap_or_default() + "\n");
        }
        Ok(summary(&StatusFields(&dict), SystemTime::now()))
    }

    /// `Reload()`: the outcome, once the reload (queued behind any in flight) has ended.
    pub async fn reload(&self) -> Result<String, StatusError> {
        self.proxy.reload().await.map_err(|e| self.failed(e))
    }

    pub async fn reload_config(&self) -> Result<(), StatusError> {
        self.proxy.reload_config().await.map_err(|e| self.failed(e))
    }
}

fn call_error(bus: &str, cause: zbus::Error) -> StatusError {
    let nobody_there = matches!(
        &cause,
        zbus::Error::MethodError(name, _, _)
            if name.as_str() == "org.freedesktop.DBus.Error.ServiceUnknown"
                || name.as_str() == "org.freedesktop.DBus.Error.NameHasNoOwner"
    );
    StatusError::Call {
        bus: bus.to_owned(),
        cause,
        hint: if nobody_there {
            " (is kdump-hotplugd running?)"
        } else {
            ""
        },
    }
}

/// Plain JSON for the basic D-Bus types `GetStatus` uses.
fn json_of(value: &Value<'_>) -> serde_json::Value {
    use serde_json::Value as J;
    match value {
        Value::Bool(b) => J::from(*b),
        Value::U8(n) => J::from(*n),
        Value::U16(n) => J::from(*n),
        Value::U32(n) => J::from(*n),
        Value::U64(n) => J::from(*n),
        Value::I16(n) => J::from(*n),
        Value::I32(n) => J::from(*n),
        Value::I64(n) => J::from(*n),
        Value::F64(n) => J::from(*n),
        Value::Str(s) => J::from(s.as_str()),
        Value::Value(inner) => json_of(inner),
        other => J::from(other.to_string()),
    }
}

/// Typed reads of the `GetStatus` dictionary; a missing or mistyped key reads as zero or empty, so an older
/// or newer daemon still gets a summary.
struct StatusFields<'a>(&'a HashMap<String, OwnedValue>);

impl StatusFields<'_> {
    fn text(&self, key: &str) -> String {
        match self.0.get(key).map(|v| &**v) {
            Some(Value::Str(s)) => s.as_str().to_owned(),
            _ => String::new(),
        }
    }

    fn number(&self, key: &str) -> u64 {
        match self.0.get(key).map(|v| &**v) {
            Some(Value::U64(n)) => *n,
            Some(Value::U32(n)) => u64::from(*n),
            _ => 0,
        }
    }

    fn flag(&self, key: &str) -> bool {
        matches!(self.0.get(key).map(|v| &**v), Some(Value::Bool(true)))
    }
}

fn yes_no(value: bool) -> &'static str {
    if value {
        "yes"
    } else {
        "no"
    }
}

fn summary(s: &StatusFields<'_>, now: SystemTime) -> String {
    let mut out = String::new();
    let paused = if s.flag("Paused") { " (paused)" } else { "" };
    let _ = writeln!(
        out,
        "kdump-hotplugd {}: {}{paused}",
        s.text("Version"),
        s.text("State")
    );
    let _ = writeln!(
        out,
        "crash kernel:  {}; the kernel updates its header itself: memory {}, cpu {}",
        if s.flag("CrashKernelLoaded") {
            "loaded"
        } else {
            "not loaded"
        },
        yes_no(s.flag("KernelUpdatesMemory")),
        yes_no(s.flag("KernelUpdatesCpu")),
    );
    let capacity = match s.text("CapacityKind").as_str() {
        "unbounded" => {
            "the kernel sizes each load to the ranges (no crash hotplug buffer)".to_owned()
        }
        "unknown" => "the kernel does not say how many fit".to_owned(),
        _ => match s.number("KernelRangeCapacity") {
            0 => format!(
                "the kernel does not say how many fit (configured {})",
                s.number("ConfiguredRangeCapacity")
            ),
            capacity => format!("the kernel's buffer holds {capacity}"),
        },
    };
    let _ = writeln!(out, "memory ranges: {}; {capacity}", s.number("RangeCount"));
    let warning = s.text("ReservationWarning");
    if !warning.is_empty() {
        let _ = writeln!(out, "reservation:   WARNING: {warning}");
    }
    let _ = writeln!(
        out,
        "events:        {} seen, {} coalesced, {} malformed, {} socket overflows",
        s.number("EventsSeen"),
        s.number("EventsCoalesced"),
        s.number("EventsMalformed"),
        s.number("UeventOverflows"),
    );
    let _ = writeln!(
        out,
        "reloads:       {} ({} failed, {} skipped) with {}",
        s.number("Reloads"),
        s.number("ReloadsFailed"),
        s.number("ReloadsSkipped"),
        s.text("Loader"),
    );
    let last = s.number("LastReloadUsec");
    if last == 0 {
        let _ = writeln!(out, "last reload:   none since the daemon started");
    } else {
        let at = UNIX_EPOCH + Duration::from_micros(last);
        let ago = now.duration_since(at).unwrap_or_default().as_secs();
        let _ = writeln!(
            out,
            "last reload:   {} ({ago} s ago), took {} ms: {}",
            utc_timestamp(last / 1_000_000),
            s.number("LastReloadDurationUsec") / 1000,
            s.text("LastReloadReason"),
        );
    }
    let masked = s.text("MaskedRule");
    let _ = writeln!(
        out,
        "distro rule:   {}",
        if masked.is_empty() {
            "none masked".to_owned()
        } else {
            format!("masked by {masked}")
        }
    );
    let error = s.text("LastError");
    let _ = writeln!(
        out,
        "last error:    {}",
        if error.is_empty() { "none" } else { &error }
    );
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

    fn dict(entries: &[(&str, Value<'static>)]) -> HashMap<String, OwnedValue> {
        entries
            .iter()
            .map(|(k, v)| ((*k).to_owned(), v.try_to_owned().expect("no fds")))
            .collect()
    }

    #[test]
    fn the_summary_names_state_ranges_capacity_and_the_last_error() {
        let d = dict(&[
            ("State", Value::from("error")),
            ("Version", Value::from("9.9")),
            ("CrashKernelLoaded", Value::from(true)),
            ("RangeCount", Value::from(9000u32)),
            ("KernelRangeCapacity", Value::from(8192u32)),
            ("EventsSeen", Value::from(7u64)),
            ("Reloads", Value::from(2u64)),
            ("LastReloadUsec", Value::from(1_795_591_845_000_000u64)),
            ("LastReloadDurationUsec", Value::from(250_000u64)),
            ("LastReloadReason", Value::from("memory changed")),
            ("LastError", Value::from("kernel buffer too small")),
        ]);
        let now = UNIX_EPOCH + Duration::from_secs(1_795_591_855);
        let text = summary(&StatusFields(&d), now);
        assert!(text.starts_with("kdump-hotplugd 9.9: error\n"), "{text}");
        assert!(text.contains("crash kernel:  loaded;"), "{text}");
        assert!(
            text.contains("memory ranges: 9000; the kernel's buffer holds 8192"),
            "{text}"
        );
        assert!(text.contains("events:        7 seen"), "{text}");
        assert!(
            text.contains("2026-11-25 07:30:45 UTC (10 s ago), took 250 ms: memory changed"),
            "{text}"
        );
        assert!(
            text.contains("last error:    kernel buffer too small"),
            "{text}"
        );
    }

    #[test]
    fn json_keeps_numbers_and_flags_typed() {
        assert_eq!(json_of(&Value::from(5u64)), serde_json::json!(5));
        assert_eq!(json_of(&Value::from(true)), serde_json::json!(true));
        assert_eq!(json_of(&Value::from("idle")), serde_json::json!("idle"));
    }
}

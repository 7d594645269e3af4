//! The state the owner loop publishes: read by D-Bus (properties and `GetStatus()`), the `status` client,
//! sd_notify, the live display and the simulator's final report.
//!
//! [`Status`] is written down once, in [`with_status_fields!`]: the struct, its `a{sv}` form, the D-Bus
//! properties and their `PropertiesChanged` all expand from that list.

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use zbus::zvariant::{Signature, Type, Value};

use crate::core::debounce::Phase;
use crate::core::model::MemRange;

/// The one list of what the daemon publishes. Each entry is
///
/// ```text
/// /// What the field means (the property's documentation in the introspection XML).
/// "DBusName" field_name: RustType,
/// ```
///
/// and becomes the field `Status::field_name` and the key `DBusName` of `GetStatus()`'s `a{sv}`, with the
/// D-Bus type of `RustType` (`u64` is `t`, `u32` is `u`, `bool` is `b`, `String` and [`State`] are `s`).
/// The group says what else it is:
///
/// - `properties`: a read-only property `DBusName` of `org.kdump.Hotplug1` that emits `PropertiesChanged`
///   whenever the value changes;
/// - `constant_properties`: a property that never changes (`EmitsChangedSignal` `const`);
/// - `get_status_only`: a detail only `GetStatus()` carries.
///
/// Adding a field is adding an entry here (and setting it in the owner loop). A new property also changes
/// the interface: copy the live introspection into `packaging/dbus/org.kdump.Hotplug1.xml` and name it in
/// `docs/README-dbus.md`; `dbus::object`'s tests fail until both are done, and tests/dbus.rs checks every
/// entry against the live object on a real bus.
///
/// Why a list in a macro rather than only derives: zvariant's derives give the `a{sv}` (de)serialization,
/// and [`Status`] uses them, but zbus has no derive for properties: each property is a `#[zbus(property)]`
/// getter inside the single `#[interface]` impl of the object. So the list is handed to a macro given by
/// the caller (`with_status_fields!(callback! { extra })` expands to `callback! { { extra } properties {…}
/// constant_properties {…} get_status_only {…} }`): `define_status!` below builds the struct from it, and
/// `dbus::object` builds the getters and the `PropertiesChanged` comparison from the same text.
macro_rules! with_status_fields {
    ($callback:ident! { $($extra:tt)* }) => {
        $callback! {
            { $($extra)* }
            properties {
                /// `idle`, `waiting` (a burst is being debounced), `reloading`, `backoff` (retrying a failed reload) or
                /// `error` (the last attempt failed and will not be retried by itself, or the host cannot be read).
                "State" state: $crate::daemon::State,
                /// `SetPaused(true)` is in effect.
                "Paused" paused: bool,
                /// A crash kernel is loaded (`/sys/kernel/kexec_crash_loaded`).
                "CrashKernelLoaded" crash_kernel_loaded: bool,
                /// The kernel rewrites the loaded header itself on memory hotplug (`crash_hotplug`).
                "KernelUpdatesMemory" kernel_updates_memory: bool,
                /// The kernel rewrites the loaded header itself on CPU hotplug.
                "KernelUpdatesCpu" kernel_updates_cpu: bool,
                /// Crash memory ranges the host has now (the header needs one program header each).
                "RangeCount" range_count: u32,
                /// 0 = the kernel does not say (no `crash_elfcorehdr_size`).
                "KernelRangeCapacity" kernel_range_capacity: u32,
                /// `known` (the kernel's buffer size), `unbounded` (no crash hotplug buffer: a load is sized to
                /// the ranges) or `unknown` (the kernel updates the header but hides the size).
                "CapacityKind" capacity_kind: String,
                /// The `crashkernel=` range expression selects more for the memory present now than is reserved
                /// (a reboot applies it); empty when there is nothing to say.
                "ReservationWarning" reservation_warning: String,
                /// Hotplug uevents received.
                "EventsSeen" events_seen: u64,
                /// Uevents that joined a reload already pending or in flight instead of causing their own.
                "EventsCoalesced" events_coalesced: u64,
                /// Uevents that could not be parsed (counted and skipped).
                "EventsMalformed" events_malformed: u64,
                /// Times the uevent socket overflowed (ENOBUFS); each lost an unknown number of uevents, and a fresh
                /// snapshot followed.
                "UeventOverflows" uevent_overflows: u64,
                /// Successful crash kernel reloads.
                "Reloads" reloads: u64,
                /// Failed reload attempts.
                "ReloadsFailed" reloads_failed: u64,
                /// Debounced bursts that needed no reload (nothing changed, or the kernel updates the header).
                "ReloadsSkipped" reloads_skipped: u64,
                /// Reloads still running at `daemon.reload_timeout_ms` (reported, not aborted).
                "ReloadsTimedOut" reloads_timed_out: u64,
                /// When the last successful reload ended, in µs since the epoch (realtime); 0 = none yet.
                "LastReloadUsec" last_reload_usec: u64,
                /// How long the last reload attempt took, in µs.
                "LastReloadDurationUsec" last_reload_duration_usec: u64,
                /// Why the last successful reload happened.
                "LastReloadReason" last_reload_reason: String,
                /// The last error (failed reload, unreadable host, refused configuration); empty when fine.
                "LastError" last_error: String,
                /// What loads the crash kernel, e.g. `kexec_file_load` or the distribution's command.
                "Loader" loader: String,
                /// The crash kernel the daemon reloads (the distribution's plan) and the loader chosen for it.
                "CrashKernelPlan" crash_kernel_plan: String,
                /// The mask standing in for the distribution's hotplug rule (host path; several joined by `, `);
                /// empty = none.
                "MaskedRule" masked_rule: String,
            }
            constant_properties {
                /// The daemon's version.
                "Version" version: String,
            }
            get_status_only {
                /// The config's `kernel.max_memory_ranges` override; 0 = none.
                "ConfiguredRangeCapacity" configured_range_capacity: u32,
                /// What the `crashkernel=` range expression selects for the memory present now; 0 = nothing to
                /// evaluate.
                "ReservationSelectsBytes" reservation_selects_bytes: u64,
                /// Bytes reserved now (`kexec_crash_size`); 0 = unknown or none.
                "ReservedBytes" reserved_bytes: u64,
                /// The distribution tool's recommended `crashkernel=` size for this memory, labelled with its
                /// source; empty when the distribution publishes no rule.
                "DistroRecommendation" distro_recommendation: String,
                /// The present CPUs, as a kernel cpulist (`0-3,8`).
                "Cpus" cpus: String,
                /// The kernel shows zeros for the addresses in `/proc/iomem` (the reader lacks CAP_SYS_ADMIN).
                "AddressesHidden" addresses_hidden: bool,
                /// Wake-ups of the owner loop for uevents (each carries a batch).
                "UeventBatches" uevent_batches: u64,
                /// Kernel log lines saying its in-place header update failed.
                "KernelUpdateFailures" kernel_update_failures: u64,
                /// What the last decision was, e.g. `skip: nothing changed`.
                "LastDecision" last_decision: String,
                /// One line for sd_notify's `STATUS=` and the live display, kept current by the owner loop.
                "Summary" summary: String,
            }
        }
    };
}
pub(crate) use with_status_fields;

/// The [`FieldKind`] of a group of the list.
macro_rules! field_kind {
    (properties) => {
        FieldKind::Property
    };
    (constant_properties) => {
        FieldKind::ConstantProperty
    };
    (get_status_only) => {
        FieldKind::GetStatusOnly
    };
}

/// Builds [`Status`] and [`Status::FIELDS`] from the list; `{ extra }` holds the fields that are not
/// published.
macro_rules! define_status {
    (
        { $($extra:tt)* }
        $(
            $group:ident {
                $( $(#$doc:tt)* $name:literal $field:ident : $ty:ty, )*
            }
        )*
    ) => {
        /// What the owner loop publishes on its watch channel, and what `GetStatus()` returns as `a{sv}`.
        ///
        /// The `a{sv}` form comes from zvariant's dictionary support: `Type` with the `a{sv}` signature and
        /// serde's derives with every field wrapped in a variant (`as_value`). zvariant's `SerializeDict` and
        /// `DeserializeDict` do the same but cannot skip a field (`ranges` is not published this way) and
        /// make every key required when reading, so a client could not read a daemon one field older or
        /// newer; `#[serde(default)]` here lets a missing key read as its default, and unknown keys are
        /// ignored.
        #[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, Type)]
        #[zvariant(signature = "a{sv}", crate = "zbus::zvariant")]
        #[serde(default)]
        pub struct Status {
            $($(
                $(#$doc)*
                #[serde(rename = $name, with = "zbus::zvariant::as_value")]
                pub $field: $ty,
            )*)*
            $($extra)*
        }

        impl Status {
            /// Every published field, in the order of the list.
            pub const FIELDS: &'static [StatusField] = &[
                $($(
                    StatusField {
                        name: $name,
                        signature: <$ty as Type>::SIGNATURE,
                        kind: field_kind!($group),
                    },
                )*)*
            ];

            /// The published fields as JSON, under their D-Bus names, for `status --json` and the
            /// simulator's report.
            pub fn to_json(&self) -> serde_json::Value {
                let mut object = serde_json::Map::new();
                $($(
                    object.insert(
                        $name.to_owned(),
                        serde_json::to_value(&self.$field).unwrap_or_default(),
                    );
                )*)*
                serde_json::Value::Object(object)
            }
        }
    };
}

with_status_fields!(define_status! {
    /// The crash memory ranges of the last snapshot, for `GetRanges()`: not part of `GetStatus()`.
    #[serde(skip)]
    pub ranges: Arc<Vec<MemRange>>,
});

/// One entry of [`Status::FIELDS`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StatusField {
    /// The key in `GetStatus()`, and the property's name for a property.
    pub name: &'static str,
    pub signature: &'static Signature,
    pub kind: FieldKind,
}

/// Which group of [`with_status_fields!`] a field is in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FieldKind {
    /// A property that emits `PropertiesChanged`.
    Property,
    /// A property that never changes.
    ConstantProperty,
    /// Only in `GetStatus()`.
    GetStatusOnly,
}

impl FieldKind {
    pub fn is_property(self) -> bool {
        self != FieldKind::GetStatusOnly
    }
}

/// The `State` property's values; on D-Bus a string.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, Type)]
#[zvariant(signature = "s", crate = "zbus::zvariant")]
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

/// The property getter and `PropertiesChanged` need the value as a D-Bus `Value`: the same string serde
/// writes.
impl From<State> for Value<'static> {
    fn from(state: State) -> Self {
        Value::from(state.as_str())
    }
}

/// D-Bus's `u` for counts the daemon keeps as `u64` or `usize`: a count past `u32::MAX` reads as `u32::MAX`.
pub fn saturating_u32(value: impl TryInto<u32>) -> u32 {
    value.try_into().unwrap_or(u32::MAX)
}

impl Status {
    /// One line for sd_notify's STATUS= and the live display; the owner loop keeps it in [`Status::summary`].
    pub fn summary_line(&self) -> String {
        let mut line = format!(
            "{}{}: ranges {}, crash kernel {}, events {} ({} coalesced, {} malformed, {} overflows), reloads {} ({} failed, \
             {} skipped, {} timed out)",
            self.state.as_str(),
            if self.paused { " (paused)" } else { "" },
            self.range_count,
            if self.crash_kernel_loaded { "loaded" } else { "not loaded" },
            self.events_seen,
            self.events_coalesced,
            self.events_malformed,
            self.uevent_overflows,
            self.reloads,
            self.reloads_failed,
            self.reloads_skipped,
            self.reloads_timed_out,
        );
        if !self.last_error.is_empty() {
            line.push_str("; last error: ");
            line.push_str(&self.last_error);
        }
        line
    }
}

/// What the owner loop announces, for the D-Bus signals of the same names (the service manager hears
/// [`Notification`](crate::messages::Notification)s instead).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BusSignal {
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

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use zbus::zvariant::serialized::Context;
    use zbus::zvariant::{to_bytes, OwnedValue, LE};

    use super::*;

    fn encode<T: Serialize + Type>(
        value: &T,
    ) -> zbus::zvariant::serialized::Data<'static, 'static> {
        to_bytes(Context::new_dbus(LE, 0), value).expect("encodes")
    }

    /// What `GetStatus()` puts on the wire, read back as a plain dictionary.
    fn dict_of(status: &Status) -> HashMap<String, OwnedValue> {
        encode(status).deserialize().expect("an a{sv}").0
    }

    fn busy_status() -> Status {
        Status {
            state: State::Backoff,
            paused: true,
            range_count: 7,
            uevent_overflows: 3,
            cpus: "0-3".into(),
            summary: "backoff".into(),
            version: "9.9".into(),
            ranges: Arc::new(vec![MemRange::new(0x1000, 0x1fff)]),
            ..Status::default()
        }
    }

    #[test]
    fn get_status_is_an_a_sv_with_every_field_under_its_name_and_type() {
        assert_eq!(Status::SIGNATURE.to_string(), "a{sv}");
        let dict = dict_of(&busy_status());
        assert_eq!(dict.len(), Status::FIELDS.len(), "{dict:?}");
        for field in Status::FIELDS {
            let value = dict
                .get(field.name)
                .unwrap_or_else(|| panic!("no {}", field.name));
            assert_eq!(value.value_signature(), field.signature, "{}", field.name);
        }
        assert_eq!(&*dict["State"], &Value::from("backoff"));
        assert_eq!(&*dict["RangeCount"], &Value::from(7u32));
        assert_eq!(&*dict["UeventOverflows"], &Value::from(3u64));
        assert_eq!(&*dict["Paused"], &Value::from(true));
    }

    #[test]
    fn names_are_distinct_and_the_signatures_are_the_ones_the_interface_has_always_had() {
        let mut names: Vec<_> = Status::FIELDS.iter().map(|f| f.name).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), Status::FIELDS.len());
        let signature = |name: &str| {
            Status::FIELDS
                .iter()
                .find(|f| f.name == name)
                .map(|f| f.signature.to_string())
        };
        assert_eq!(signature("State").as_deref(), Some("s"));
        assert_eq!(signature("RangeCount").as_deref(), Some("u"));
        assert_eq!(signature("Reloads").as_deref(), Some("t"));
        assert_eq!(signature("Paused").as_deref(), Some("b"));
    }

    #[test]
    fn the_client_reads_back_what_the_daemon_sent_except_the_ranges() {
        let sent = busy_status();
        let (read, _): (Status, _) = encode(&sent).deserialize().expect("a Status");
        assert_eq!(read.ranges.len(), 0, "ranges travel by GetRanges()");
        assert_eq!(
            read,
            Status {
                ranges: Arc::default(),
                ..sent
            }
        );
    }

    #[test]
    fn a_daemon_with_fewer_or_more_fields_still_reads() {
        let mut dict: HashMap<&str, Value<'_>> = HashMap::new();
        dict.insert("Reloads", Value::from(4u64));
        dict.insert("State", Value::from("waiting"));
        dict.insert("SomethingNewer", Value::from(("a", 1u32)));
        let (read, _): (Status, _) = encode(&dict).deserialize().expect("a Status");
        assert_eq!(read.reloads, 4);
        assert_eq!(read.state, State::Waiting);
        assert_eq!(read.loader, "", "missing keys read as their default");
    }

    #[test]
    fn json_has_the_dbus_names_and_plain_values() {
        let json = busy_status().to_json();
        assert_eq!(json["State"], "backoff");
        assert_eq!(json["RangeCount"], 7);
        assert_eq!(json["Paused"], true);
        assert_eq!(
            json.as_object().map(|o| o.len()),
            Some(Status::FIELDS.len())
        );
    }

    #[test]
    fn the_summary_line_names_state_counts_and_the_error() {
        let status = Status {
            last_error: "reload failed: EBUSY".into(),
            ..busy_status()
        };
        let line = status.summary_line();
        assert!(line.starts_with("backoff (paused): ranges 7,"), "{line}");
        assert!(line.contains("0 malformed, 3 overflows"), "{line}");
        assert!(
            line.ends_with("; last error: reload failed: EBUSY"),
            "{line}"
        );
    }

    #[test]
    fn counts_beyond_u32_saturate() {
        assert_eq!(saturating_u32(5u64), 5);
        assert_eq!(saturating_u32(u64::MAX), u32::MAX);
        assert_eq!(saturating_u32(usize::MAX), u32::MAX);
    }
}

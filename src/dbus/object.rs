//! The `org.kdump.Hotplug1` object: properties read the published [`Status`], methods send requests into the
//! owner loop, signals come from its [`Notice`]s.

use std::borrow::Cow;
use std::collections::HashMap;

use tokio::sync::{broadcast, oneshot, watch};
use zbus::message::Header;
use zbus::names::InterfaceName;
use zbus::object_server::SignalEmitter;
use zbus::zvariant::Value;
use zbus::{fdo, interface, Connection};

use crate::daemon::{DaemonHandle, Event, Notice, Request, Status};

/// The object served at [`super::OBJECT_PATH`].
pub struct Hotplug1 {
    handle: DaemonHandle,
}

impl Hotplug1 {
    pub fn new(handle: DaemonHandle) -> Self {
        Hotplug1 { handle }
    }

    fn status(&self) -> watch::Ref<'_, Status> {
        self.handle.status.borrow()
    }

    async fn send(&self, event: Event) -> fdo::Result<()> {
        self.handle
            .events
            .send(event)
            .await
            .map_err(|_| fdo::Error::Failed("the daemon is shutting down".into()))
    }

    async fn reply<T>(receiver: oneshot::Receiver<T>) -> fdo::Result<T> {
        receiver
            .await
            .map_err(|_| fdo::Error::Failed("the daemon stopped before answering".into()))
    }
}

/// D-Bus's `u` for counts the daemon keeps as `u64`: a count past `u32::MAX` reads as `u32::MAX`.
fn saturating_u32(value: u64) -> u32 {
    u32::try_from(value).unwrap_or(u32::MAX)
}

/// Every property of the interface, by its D-Bus name, as the getters below return it. One list for
/// `PropertiesChanged` and `GetStatus`, so neither can forget one.
pub fn properties(status: &Status) -> Vec<(&'static str, Value<'static>)> {
    let c = &status.counters;
    vec![
        ("State", Value::from(status.state.as_str().to_owned())),
        ("Paused", Value::from(status.paused)),
        ("CrashKernelLoaded", Value::from(status.crash_kernel_loaded)),
        (
            "KernelUpdatesMemory",
            Value::from(status.kernel_updates_memory),
        ),
        ("KernelUpdatesCpu", Value::from(status.kernel_updates_cpu)),
        (
            "RangeCount",
            Value::from(saturating_u32(status.range_count)),
        ),
        (
            "KernelRangeCapacity",
            Value::from(saturating_u32(status.kernel_range_capacity)),
        ),
        ("CapacityKind", Value::from(status.capacity_kind.clone())),
        (
            "ReservationWarning",
            Value::from(status.reservation_warning.clone()),
        ),
        ("EventsSeen", Value::from(c.events_seen)),
        ("EventsCoalesced", Value::from(c.events_coalesced)),
        ("EventsMalformed", Value::from(c.events_malformed)),
        ("UeventOverflows", Value::from(c.uevent_overflows)),
        ("Reloads", Value::from(c.reloads)),
        ("ReloadsFailed", Value::from(c.reloads_failed)),
        ("ReloadsSkipped", Value::from(c.reloads_skipped)),
        ("ReloadsTimedOut", Value::from(c.reloads_timed_out)),
        ("LastReloadUsec", Value::from(status.last_reload_usec)),
        (
            "LastReloadDurationUsec",
            Value::from(status.last_reload_duration_usec),
        ),
        (
            "LastReloadReason",
            Value::from(status.last_reload_reason.clone()),
        ),
        ("LastError", Value::from(status.last_error.clone())),
        ("Loader", Value::from(status.loader.clone())),
        ("Version", Value::from(status.version.clone())),
    ]
}

/// `GetStatus()`: every property, and what only a snapshot needs (not worth a property of its own).
fn status_dict(status: &Status) -> HashMap<String, Value<'static>> {
    let c = &status.counters;
    let mut dict: HashMap<String, Value<'static>> = properties(status)
        .into_iter()
        .map(|(name, value)| (name.to_owned(), value))
        .collect();
    let extras = [
        (
            "ConfiguredRangeCapacity",
            Value::from(saturating_u32(status.configured_range_capacity)),
        ),
        (
            "ReservationSelectsBytes",
            Value::from(status.reservation_selects_bytes),
        ),
        ("ReservedBytes", Value::from(status.reserved_bytes)),
        (
            "DistroRecommendation",
            Value::from(status.distro_recommendation.clone()),
        ),
        ("Cpus", Value::from(status.cpus.clone())),
        ("AddressesHidden", Value::from(status.addresses_hidden)),
        ("UeventBatches", Value::from(c.uevent_batches)),
        (
            "KernelUpdateFailures",
            Value::from(c.kernel_update_failures),
        ),
        ("LastDecision", Value::from(status.last_decision.clone())),
        ("MaskedRule", Value::from(status.masked_rule.clone())),
        ("Summary", Value::from(status.summary())),
    ];
    dict.extend(extras.into_iter().map(|(k, v)| (k.to_owned(), v)));
    dict
}

/// Refuses mutating calls from anyone but root, whatever the bus policy let through: the caller's uid comes
/// from the bus (`GetConnectionUnixUser` on the message's sender), never from anything the caller says.
async fn require_root(
    connection: &Connection,
    header: &Header<'_>,
    method: &str,
) -> fdo::Result<()> {
    let sender = header
        .sender()
        .ok_or_else(|| fdo::Error::AccessDenied(format!("{method}: the caller has no bus name")))?;
    let bus = fdo::DBusProxy::new(connection).await?;
    let uid = bus.get_connection_unix_user(sender.clone().into()).await?;
    if uid == 0 {
        Ok(())
    } else {
        tracing::warn!(%sender, uid, method, "refused a D-Bus call from a non-root caller");
        Err(fdo::Error::AccessDenied(format!(
            "{method} is for root only (caller uid {uid})"
        )))
    }
}

#[interface(name = "org.kdump.Hotplug1")]
impl Hotplug1 {
    /// `idle`, `waiting` (a burst is being debounced), `reloading`, `backoff` (retrying a failed reload) or
    /// `error` (the last attempt failed and will not be retried by itself, or the host cannot be read).
    #[zbus(property)]
    fn state(&self) -> String {
        self.status().state.as_str().to_owned()
    }

    /// `SetPaused(true)` is in effect.
    #[zbus(property)]
    fn paused(&self) -> bool {
        self.status().paused
    }

    /// A crash kernel is loaded (`/sys/kernel/kexec_crash_loaded`).
    #[zbus(property)]
    fn crash_kernel_loaded(&self) -> bool {
        self.status().crash_kernel_loaded
    }

    /// The kernel rewrites the loaded header itself on memory hotplug (`crash_hotplug`).
    #[zbus(property)]
    fn kernel_updates_memory(&self) -> bool {
        self.status().kernel_updates_memory
    }

    /// The kernel rewrites the loaded header itself on CPU hotplug.
    #[zbus(property)]
    fn kernel_updates_cpu(&self) -> bool {
        self.status().kernel_updates_cpu
    }

    /// Crash memory ranges the host has now (the header needs one program header each).
    #[zbus(property)]
    fn range_count(&self) -> u32 {
        saturating_u32(self.status().range_count)
    }

    /// 0 = the kernel does not say (no `crash_elfcorehdr_size`).
    #[zbus(property)]
    fn kernel_range_capacity(&self) -> u32 {
        saturating_u32(self.status().kernel_range_capacity)
    }

    /// `known` (the kernel's buffer size), `unbounded` (no crash hotplug buffer: a load is sized to the ranges)
    /// or `unknown` (the kernel updates the header but hides the size).
    #[zbus(property)]
    fn capacity_kind(&self) -> String {
        self.status().capacity_kind.clone()
    }

    /// The `crashkernel=` range expression selects more for the memory present now than is reserved (a
    /// reboot applies it); empty when there is nothing to say.
    #[zbus(property)]
    fn reservation_warning(&self) -> String {
        self.status().reservation_warning.clone()
    }

    /// Hotplug uevents received.
    #[zbus(property)]
    fn events_seen(&self) -> u64 {
        self.status().counters.events_seen
    }

    /// Uevents that joined a reload already pending or in flight instead of causing their own.
    #[zbus(property)]
    fn events_coalesced(&self) -> u64 {
        self.status().counters.events_coalesced
    }

    /// Uevents that could not be parsed (counted and skipped).
    #[zbus(property)]
    fn events_malformed(&self) -> u64 {
        self.status().counters.events_malformed
    }

    /// Times the uevent socket overflowed (ENOBUFS); each lost an unknown number of uevents, and a fresh
    /// snapshot followed.
    #[zbus(property)]
    fn uevent_overflows(&self) -> u64 {
        self.status().counters.uevent_overflows
    }

    /// Successful crash kernel reloads.
    #[zbus(property)]
    fn reloads(&self) -> u64 {
        self.status().counters.reloads
    }

    /// Failed reload attempts.
    #[zbus(property)]
    fn reloads_failed(&self) -> u64 {
        self.status().counters.reloads_failed
    }

    /// Debounced bursts that needed no reload (nothing changed, or the kernel updates the header).
    #[zbus(property)]
    fn reloads_skipped(&self) -> u64 {
        self.status().counters.reloads_skipped
    }

    /// Reloads still running at `daemon.reload_timeout_ms` (reported, not aborted).
    #[zbus(property)]
    fn reloads_timed_out(&self) -> u64 {
        self.status().counters.reloads_timed_out
    }

    /// When the last successful reload ended, in µs since the epoch (realtime); 0 = none yet.
    #[zbus(property)]
    fn last_reload_usec(&self) -> u64 {
        self.status().last_reload_usec
    }

    /// How long the last reload attempt took, in µs.
    #[zbus(property)]
    fn last_reload_duration_usec(&self) -> u64 {
        self.status().last_reload_duration_usec
    }

    /// Why the last successful reload happened.
    #[zbus(property)]
    fn last_reload_reason(&self) -> String {
        self.status().last_reload_reason.clone()
    }

    /// The last error (failed reload, unreadable host, refused configuration); empty when fine.
    #[zbus(property)]
    fn last_error(&self) -> String {
        self.status().last_error.clone()
    }

    /// What loads the crash kernel, e.g. `kexec_file_load` or the distribution's command.
    #[zbus(property)]
    fn loader(&self) -> String {
        self.status().loader.clone()
    }

    /// The daemon's version.
    #[zbus(property(emits_changed_signal = "const"))]
    fn version(&self) -> String {
        self.status().version.clone()
    }

    /// The crash memory ranges of the last snapshot, `(first byte, last byte)`, as the header would list them.
    #[zbus(out_args("ranges"))]
    fn get_ranges(&self) -> Vec<(u64, u64)> {
        self.status()
            .ranges
            .iter()
            .map(|range| (range.start, range.end))
            .collect()
    }

    /// Every property and a few details (Cpus, LastDecision, Summary, …) read at one instant.
    #[zbus(out_args("status"))]
    fn get_status(&self) -> HashMap<String, Value<'static>> {
        status_dict(&self.status())
    }

    /// Reloads now, after any reload in flight, whatever changed; returns the outcome. Root only.
    #[zbus(out_args("outcome"))]
    async fn reload(
        &self,
        #[zbus(connection)] connection: &Connection,
        #[zbus(header)] header: Header<'_>,
    ) -> fdo::Result<String> {
        require_root(connection, &header, "Reload").await?;
        let (reply, outcome) = oneshot::channel();
        self.send(Event::Request(Request::Reload { reply })).await?;
        Self::reply(outcome).await
    }

    /// Reads the configuration again (as SIGHUP does); fails, keeping the old one, when it is invalid. Root only.
    async fn reload_config(
        &self,
        #[zbus(connection)] connection: &Connection,
        #[zbus(header)] header: Header<'_>,
    ) -> fdo::Result<()> {
        require_root(connection, &header, "ReloadConfig").await?;
        let (reply, outcome) = oneshot::channel();
        self.send(Event::ConfigReload { reply: Some(reply) })
            .await?;
        Self::reply(outcome).await?.map_err(fdo::Error::Failed)
    }

    /// Stops reacting to hotplug during maintenance; events are still counted, and one reload follows the
    /// unpause when any arrived. Root only.
    async fn set_paused(
        &self,
        paused: bool,
        #[zbus(connection)] connection: &Connection,
        #[zbus(header)] header: Header<'_>,
    ) -> fdo::Result<()> {
        require_root(connection, &header, "SetPaused").await?;
        let (reply, done) = oneshot::channel();
        self.send(Event::Request(Request::SetPaused { paused, reply }))
            .await?;
        Self::reply(done).await
    }

    /// A reload ended; on failure `reason` says why. `ranges` is the number of memory ranges loaded.
    #[zbus(signal)]
    async fn reload_finished(
        emitter: &SignalEmitter<'_>,
        success: bool,
        reason: &str,
        duration_usec: u64,
        ranges: u32,
    ) -> zbus::Result<()>;

    /// The header needs more memory ranges than the kernel's buffer holds: the daemon falls back to
    /// `kexec_load`, or reports that it cannot reload.
    #[zbus(signal)]
    async fn kernel_buffer_too_small(
        emitter: &SignalEmitter<'_>,
        needed: u32,
        capacity: u32,
    ) -> zbus::Result<()>;

    /// A reload has run past `daemon.reload_timeout_ms` (`timeout_usec`) and is still running; `reason` is
    /// why it started. A `ReloadFinished` follows if it ever ends.
    #[zbus(signal)]
    async fn reload_timed_out(
        emitter: &SignalEmitter<'_>,
        reason: &str,
        timeout_usec: u64,
    ) -> zbus::Result<()>;
}

/// Emits one `PropertiesChanged` per published status change, naming every property whose value differs.
/// The watch channel keeps only the newest status, so a fast burst costs a handful of signals, not one per
/// uevent.
pub(super) async fn publish_property_changes(
    emitter: SignalEmitter<'static>,
    mut status: watch::Receiver<Status>,
) {
    let interface = InterfaceName::from_static_str_unchecked(super::INTERFACE);
    let mut last = properties(&status.borrow_and_update());
    while status.changed().await.is_ok() {
        let now = properties(&status.borrow_and_update());
        let changed: HashMap<&str, Value<'_>> = now
            .iter()
            .zip(&last)
            .filter(|((_, new), (_, old))| new != old)
            .map(|((name, value), _)| (*name, value.clone()))
            .collect();
        if !changed.is_empty() {
            if let Err(error) = fdo::Properties::properties_changed(
                &emitter,
                interface.clone(),
                changed,
                Cow::Borrowed(&[]),
            )
            .await
            {
                tracing::warn!(%error, "cannot emit PropertiesChanged");
            }
        }
        last = now;
    }
}

/// Turns the loop's notices into signals until the daemon goes away.
pub(super) async fn publish_notices(
    emitter: SignalEmitter<'static>,
    mut notices: broadcast::Receiver<Notice>,
) {
    loop {
        let result = match notices.recv().await {
            Ok(Notice::ReloadFinished {
                success,
                reason,
                duration_usec,
                ranges,
            }) => {
                Hotplug1::reload_finished(&emitter, success, &reason, duration_usec, ranges).await
            }
            Ok(Notice::KernelBufferTooSmall { needed, capacity }) => {
                Hotplug1::kernel_buffer_too_small(
                    &emitter,
                    saturating_u32(needed),
                    saturating_u32(capacity),
                )
                .await
            }
            Ok(Notice::ReloadTimedOut {
                reason,
                timeout_usec,
            }) => Hotplug1::reload_timed_out(&emitter, &reason, timeout_usec).await,
            Err(broadcast::error::RecvError::Lagged(missed)) => {
                tracing::warn!(
                    missed,
                    "D-Bus signals fell behind the daemon; some were not sent"
                );
                continue;
            }
            Err(broadcast::error::RecvError::Closed) => return,
        };
        if let Err(error) = result {
            tracing::warn!(%error, "cannot emit a D-Bus signal");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_property_has_a_distinct_name_and_get_status_has_them_all() {
        let status = Status::default();
        let names: Vec<_> = properties(&status).into_iter().map(|(n, _)| n).collect();
        let unique: std::collections::BTreeSet<_> = names.iter().collect();
        assert_eq!(unique.len(), names.len());
        let dict = status_dict(&status);
        for name in &names {
            assert!(dict.contains_key(*name), "GetStatus lacks {name}");
        }
    }

    #[test]
    fn counts_beyond_u32_saturate() {
        assert_eq!(saturating_u32(5), 5);
        assert_eq!(saturating_u32(u64::MAX), u32::MAX);
    }
}

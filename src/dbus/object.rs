//! The `org.kdump.Hotplug1` object: properties read the published [`Status`], methods send requests into the
//! owner loop, signals come from its [`BusSignal`]s.

use std::borrow::Cow;
use std::collections::HashMap;

use tokio::sync::{broadcast, oneshot, watch};
use zbus::message::Header;
use zbus::names::InterfaceName;
use zbus::object_server::SignalEmitter;
use zbus::zvariant::Value;
use zbus::{fdo, interface, Connection};

use crate::daemon::{saturating_u32, BusSignal, DaemonHandle, Event, Request, Status};

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

/// The object's interface: one getter per property of [`with_status_fields!`]'s list (which zbus needs
/// written out inside the one `#[interface]` impl, hence a macro), followed by the methods and signals
/// below; and the comparison [`publish_property_changes`] uses, from the same list.
macro_rules! hotplug1_interface {
    (
        { $($members:tt)* }
        properties {
            $( $(#$doc:tt)* $name:literal $field:ident : $ty:ty, )*
        }
        constant_properties {
            $( $(#$const_doc:tt)* $const_name:literal $const_field:ident : $const_ty:ty, )*
        }
        get_status_only { $($get_status_only:tt)* }
    ) => {
        #[interface(name = "org.kdump.Hotplug1")]
        impl Hotplug1 {
            $(
                $(#$doc)*
                #[zbus(property, name = $name)]
                fn $field(&self) -> $ty {
                    Clone::clone(&self.status().$field)
                }
            )*
            $(
                $(#$const_doc)*
                #[zbus(property(emits_changed_signal = "const"), name = $const_name)]
                fn $const_field(&self) -> $const_ty {
                    Clone::clone(&self.status().$const_field)
                }
            )*
            $($members)*
        }

        /// The properties that emit `PropertiesChanged` whose value differs from `old` to `new`, by name,
        /// with the new value.
        fn changed_properties(old: &Status, new: &Status) -> HashMap<&'static str, Value<'static>> {
            let mut changed = HashMap::new();
            $(
                if old.$field != new.$field {
                    changed.insert($name, Value::from(Clone::clone(&new.$field)));
                }
            )*
            changed
        }
    };
}

// rustfmt leaves what is inside a macro call alone: keep the members formatted by hand.
crate::daemon::with_status_fields!(hotplug1_interface! {
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
    fn get_status(&self) -> Status {
        Status {
            ranges: Default::default(),
            ..self.status().clone()
        }
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
});

/// Emits one `PropertiesChanged` per published status change, naming every property whose value differs.
/// The watch channel keeps only the newest status, so a fast burst costs a handful of signals, not one per
/// uevent.
pub(super) async fn publish_property_changes(
    emitter: SignalEmitter<'static>,
    mut status: watch::Receiver<Status>,
) {
    let interface = InterfaceName::from_static_str_unchecked(super::INTERFACE);
    let mut last = status.borrow_and_update().clone();
    while status.changed().await.is_ok() {
        let now = status.borrow_and_update().clone();
        let changed = changed_properties(&last, &now);
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

/// Emits the loop's [`BusSignal`]s until the daemon goes away.
pub(super) async fn publish_signals(
    emitter: SignalEmitter<'static>,
    mut bus_signals: broadcast::Receiver<BusSignal>,
) {
    loop {
        let result = match bus_signals.recv().await {
            Ok(BusSignal::ReloadFinished {
                success,
                reason,
                duration_usec,
                ranges,
            }) => {
                Hotplug1::reload_finished(&emitter, success, &reason, duration_usec, ranges).await
            }
            Ok(BusSignal::KernelBufferTooSmall { needed, capacity }) => {
                Hotplug1::kernel_buffer_too_small(
                    &emitter,
                    saturating_u32(needed),
                    saturating_u32(capacity),
                )
                .await
            }
            Ok(BusSignal::ReloadTimedOut {
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
    use std::collections::BTreeMap;

    use zbus::object_server::Interface;
    use zbus::zvariant::serialized::Context;
    use zbus::zvariant::{to_bytes, LE};

    use super::*;
    use crate::daemon::FieldKind;

    const XML: &str = include_str!("../../packaging/dbus/org.kdump.Hotplug1.xml");
    const README: &str = include_str!("../../docs/README-dbus.md");

    fn object() -> Hotplug1 {
        let (events, _) = tokio::sync::mpsc::channel(1);
        let (_, status) = watch::channel(Status::default());
        let (bus_signals, _) = broadcast::channel(1);
        Hotplug1::new(DaemonHandle {
            events,
            status,
            bus_signals,
        })
    }

    /// The `org.kdump.Hotplug1` element of an introspection document, whitespace normalised; with
    /// `comments` false, without its comments (tests/dbus.rs compares the live object's that way).
    fn interface_element(xml: &str, comments: bool) -> String {
        let start = xml
            .find(&format!("<interface name=\"{}\">", super::super::INTERFACE))
            .expect("the interface element");
        let end = start + xml[start..].find("</interface>").expect("its end");
        let mut element = &xml[start..end];
        let mut out = String::new();
        while let Some(comment) = element.find("<!--").filter(|_| !comments) {
            out.push_str(&element[..comment]);
            let rest = &element[comment..];
            element = &rest[rest.find("-->").expect("end of comment") + 3..];
        }
        out.push_str(element);
        out.split_whitespace().collect::<Vec<_>>().join(" ")
    }

    /// The value of `attribute="…"` in `element`.
    fn attribute<'a>(element: &'a str, attribute: &str) -> Option<&'a str> {
        let start = element.find(&format!(" {attribute}=\""))? + attribute.len() + 3;
        Some(&element[start..start + element[start..].find('"')?])
    }

    /// The `<property>` elements of the checked-in XML: name → (type, access, EmitsChangedSignal annotation).
    fn xml_properties() -> BTreeMap<String, (String, String, Option<String>)> {
        let element = interface_element(XML, false);
        element
            .split("<property ")
            .skip(1)
            .map(|rest| {
                let head_end = rest.find('>').expect("end of the property tag");
                let head = format!(" {}", &rest[..head_end]);
                // `<property …/>`, or `<property …> <annotation …/> </property>`.
                let body = if head.ends_with('/') {
                    ""
                } else {
                    &rest[head_end..rest.find("</property>").expect("</property>")]
                };
                let emits = body
                    .contains("org.freedesktop.DBus.Property.EmitsChangedSignal")
                    .then(|| attribute(body, "value").unwrap_or("").to_owned());
                let value = |name| attribute(&head, name).unwrap_or("").to_owned();
                (value("name"), (value("type"), value("access"), emits))
            })
            .collect()
    }

    /// A status in which every published field differs from the default.
    fn every_field_changed() -> Status {
        let dict: HashMap<&str, Value<'_>> = Status::FIELDS
            .iter()
            .map(|field| {
                let value = match field.signature.to_string().as_str() {
                    "s" => Value::from("error"),
                    "b" => Value::from(true),
                    "t" => Value::from(7u64),
                    "u" => Value::from(7u32),
                    other => panic!("{}: no test value for {other}", field.name),
                };
                (field.name, value)
            })
            .collect();
        let bytes = to_bytes(Context::new_dbus(LE, 0), &dict).expect("encodes");
        let (status, _): (Status, _) = bytes.deserialize().expect("a Status");
        status
    }

    /// Comments included: the XML documents each member with its doc comment here, which zbus copies into
    /// the introspection.
    #[test]
    fn the_introspection_matches_the_checked_in_xml_without_a_bus() {
        let mut live = String::new();
        object().introspect_to_writer(&mut live, 0);
        assert_eq!(
            interface_element(&live, true),
            interface_element(XML, true),
            "packaging/dbus/org.kdump.Hotplug1.xml differs from the interface: copy it from a running daemon \
             (busctl introspect --xml-interface org.kdump.Hotplug1 /org/kdump/Hotplug1)"
        );
    }

    #[test]
    fn the_xml_has_exactly_the_properties_of_the_status_list() {
        let in_xml = xml_properties();
        let expected: BTreeMap<String, (String, String, Option<String>)> = Status::FIELDS
            .iter()
            .filter(|field| field.kind.is_property())
            .map(|field| {
                let emits = (field.kind == FieldKind::ConstantProperty).then(|| "const".to_owned());
                (
                    field.name.to_owned(),
                    (field.signature.to_string(), "read".to_owned(), emits),
                )
            })
            .collect();
        assert_eq!(
            in_xml, expected,
            "packaging/dbus/org.kdump.Hotplug1.xml and with_status_fields! disagree"
        );
    }

    #[test]
    fn readme_dbus_names_every_field() {
        let missing: Vec<_> = Status::FIELDS
            .iter()
            .filter(|field| !README.contains(&format!("`{}`", field.name)))
            .map(|field| field.name)
            .collect();
        assert!(
            missing.is_empty(),
            "docs/README-dbus.md does not name {missing:?}"
        );
    }

    #[test]
    fn properties_changed_names_every_changing_property_and_nothing_else() {
        let before = Status::default();
        let after = every_field_changed();
        let changed = changed_properties(&before, &after);
        let mut names: Vec<_> = changed.keys().copied().collect();
        names.sort_unstable();
        let mut expected: Vec<_> = Status::FIELDS
            .iter()
            .filter(|field| field.kind == FieldKind::Property)
            .map(|field| field.name)
            .collect();
        expected.sort_unstable();
        assert_eq!(names, expected);
        assert_eq!(changed["State"], Value::from("error"));
        assert_eq!(changed["RangeCount"], Value::from(7u32));
        assert!(changed_properties(&after, &after).is_empty());

        let only_details = Status {
            cpus: "0-7".into(),
            summary: "something".into(),
            last_decision: "skip".into(),
            ..Status::default()
        };
        assert!(changed_properties(&before, &only_details).is_empty());
    }

    #[test]
    fn get_status_returns_every_field_but_not_the_ranges() {
        let (events, _) = tokio::sync::mpsc::channel(1);
        let status = Status {
            ranges: std::sync::Arc::new(vec![crate::core::model::MemRange::new(0, 0xfff)]),
            ..every_field_changed()
        };
        let (_, receiver) = watch::channel(status.clone());
        let (bus_signals, _) = broadcast::channel(1);
        let object = Hotplug1::new(DaemonHandle {
            events,
            status: receiver,
            bus_signals,
        });
        let returned = object.get_status();
        assert!(returned.ranges.is_empty());
        assert_eq!(
            returned,
            Status {
                ranges: Default::default(),
                ..status
            }
        );
    }
}

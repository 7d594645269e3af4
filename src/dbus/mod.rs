//! The D-Bus edge: `org.kdump.Hotplug1` at `/org/kdump/Hotplug1`.
//!
//! The object never touches the daemon's state. Its methods send [`Request`](crate::daemon::Request)s into the
//! owner loop's channel and wait for the reply; its properties read the [`Status`](crate::daemon::Status) the loop publishes on its
//! watch channel; two background tasks turn status changes into `PropertiesChanged` and the loop's
//! [`BusSignal`](crate::daemon::BusSignal)s into signals. Both tasks end when the daemon drops its channels.

mod client;
mod object;

pub use client::{Client, ClientError, Hotplug1Proxy};
pub use object::Hotplug1;

use crate::daemon::DaemonHandle;

/// The well-known bus name, the object path and the interface: fixed, users and tests depend on them.
pub const BUS_NAME: &str = "org.kdump.Hotplug1";
pub const OBJECT_PATH: &str = "/org/kdump/Hotplug1";
pub const INTERFACE: &str = "org.kdump.Hotplug1";

/// Which bus to serve on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BusAddress {
    /// The system bus (honours `DBUS_SYSTEM_BUS_ADDRESS`).
    System,
    /// Any D-Bus address, e.g. `unix:path=/run/test/bus` (tests and `--bus`).
    Address(String),
    /// Do not serve at all.
    None,
}

impl BusAddress {
    /// `system`, `none`, or a D-Bus address.
    pub fn parse(text: &str) -> Self {
        match text {
            "system" => BusAddress::System,
            "none" | "" => BusAddress::None,
            address => BusAddress::Address(address.to_owned()),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("cannot connect to the {bus}")]
    Connect {
        bus: String,
        #[source]
        source: zbus::Error,
    },
    #[error("cannot own the name {BUS_NAME} on the {bus} (the bus policy forbids it?)")]
    Name {
        bus: String,
        #[source]
        source: zbus::Error,
    },
    /// Another process owns the name: a second instance must not run.
    #[error("another kdump-hotplugd is running: {owner}{pid} owns {BUS_NAME} on the {bus}", pid = .pid.map_or(String::new(), |pid| format!(" (pid {pid})")))]
    NameTaken {
        bus: String,
        /// The owner's unique name (`:1.42`), or why it could not be asked.
        owner: String,
        pid: Option<u32>,
    },
    #[error("cannot reach the served object")]
    Object(#[source] zbus::Error),
}

/// Serves the object on `bus` and owns [`BUS_NAME`]; returns the connection (drop it to leave the bus), or
/// `None` for [`BusAddress::None`].
///
/// The object is registered before the name is requested, so whoever sees the name can call it at once. The
/// name is requested with DoNotQueue: when another process owns it, this fails with
/// [`ServeError::NameTaken`] naming the owner, instead of waiting in the bus's queue to become a second live
/// instance later. Prime the daemon first (its first snapshot), so the first reader sees real values.
/// The two publishing tasks end by themselves when the daemon stops.
pub async fn serve(
    handle: DaemonHandle,
    bus: BusAddress,
) -> Result<Option<zbus::Connection>, ServeError> {
    let (builder, bus_name) = match &bus {
        BusAddress::None => return Ok(None),
        BusAddress::System => (zbus::connection::Builder::system(), "system bus".to_owned()),
        BusAddress::Address(address) => (
            zbus::connection::Builder::address(address.as_str()),
            format!("bus at {address}"),
        ),
    };
    let connect_error = |source| ServeError::Connect {
        bus: bus_name.clone(),
        source,
    };
    let object = Hotplug1::new(handle.clone());
    let connection = builder
        .and_then(|b| b.serve_at(OBJECT_PATH, object))
        .map_err(connect_error)?
        .build()
        .await
        .map_err(connect_error)?;
    let flags = zbus::fdo::RequestNameFlags::DoNotQueue.into();
    match connection.request_name_with_flags(BUS_NAME, flags).await {
        Ok(_) => {}
        Err(zbus::Error::NameTaken) => {
            let (owner, pid) = name_owner(&connection).await;
            return Err(ServeError::NameTaken {
                bus: bus_name,
                owner,
                pid,
            });
        }
        Err(source) => {
            return Err(ServeError::Name {
                bus: bus_name,
                source,
            })
        }
    }
    let object = connection
        .object_server()
        .interface::<_, Hotplug1>(OBJECT_PATH)
        .await
        .map_err(ServeError::Object)?;
    tokio::spawn(object::publish_property_changes(
        object.signal_emitter().to_owned(),
        handle.status.clone(),
    ));
    tokio::spawn(object::publish_signals(
        object.signal_emitter().to_owned(),
        handle.bus_signals.subscribe(),
    ));
    tracing::info!(name = BUS_NAME, bus = %bus_name, "serving on D-Bus");
    Ok(Some(connection))
}

/// Who owns [`BUS_NAME`]: its unique name and, when the bus says, its pid (GetConnectionUnixProcessID).
async fn name_owner(connection: &zbus::Connection) -> (String, Option<u32>) {
    let proxy = match zbus::fdo::DBusProxy::new(connection).await {
        Ok(proxy) => proxy,
        Err(error) => return (format!("a process (cannot ask the bus: {error})"), None),
    };
    let name = zbus::names::WellKnownName::from_static_str_unchecked(BUS_NAME);
    let owner = match proxy.get_name_owner(name.into()).await {
        Ok(owner) => owner,
        // It went away between the two calls.
        Err(error) => return (format!("a process (GetNameOwner: {error})"), None),
    };
    let pid = proxy
        .get_connection_unix_process_id((&owner).into())
        .await
        .ok();
    (owner.to_string(), pid)
}

//! kdump-hotplugd: keeps the kdump crash kernel's ELF core header in step with memory and CPU hotplug.
//!
//! The pure core (parsing, range math, debouncing, the decision, config) lives in its own modules and does no
//! I/O beyond the [`sysroot::Sysroot`] reader; the edges (udev, kexec, D-Bus, sd_notify, kmsg, signals) are thin
//! adapters behind the traits in [`edge`], each with a simulated twin.

pub mod config;
pub mod daemon;
pub mod dbus;
pub mod debounce;
pub mod decide;
pub mod edge;
pub mod kmsg;
pub mod model;
pub mod parse;
pub mod ranges;
pub mod service;
pub mod simulate;
pub mod snapshot;
pub mod sysroot;
pub mod uevent;
pub mod core {
    pub mod cmdline;
    pub mod plan;
}
pub mod host {
    pub mod plan_inputs;
}

//! kdump-hotplugd: keeps the kdump crash kernel's ELF core header in step with memory and CPU hotplug.
//!
//! The tree, from the inside out (no module imports one listed after it, except the two roots at the end;
//! `tests/module_graph.rs` checks this):
//!
//! - [`core`]: pure policy. Plain values in, plain values out: parsers, crash ranges, the debouncer, the
//!   decision, the watchdog's health check, uevent and kmsg record classification. No I/O, no tokio, no
//!   tracing, no config types.
//! - [`config`]: TOML fragments → merged inputs → validated settings, with file:line:key errors.
//! - [`host`]: the readers of the host's files (`/proc`, `/sys`, `/etc`), all rooted by `--sysroot`.
//! - [`messages`]: what crosses into the owner loop, and the narrow senders each producer gets.
//! - [`edge`]: thin adapters to the system behind traits (uevents, kexec, the distro's command, sd_notify,
//!   /dev/kmsg, signals).
//! - [`daemon`]: the owner loop, which owns all state and publishes the status.
//! - [`dbus`]: the `org.kdump.Hotplug1` object and its clients.
//! - [`sim`]: the simulated host, kernel, loader and notifier, and `run --simulate`. Only [`cli`] uses it.
//! - [`real_host`]: the composition root for a real host: picks the real edges and wires them to the daemon.
//! - [`cli`]: the subcommands and their printers.

pub mod core;

pub mod config;
pub mod host;
pub mod messages;

pub mod edge;

pub mod daemon;
pub mod dbus;

pub mod sim;

pub mod real_host;

pub mod cli;

//! The pure core: every function here is a function of its arguments. Nothing in `core` reads a file, takes
//! the time, logs, or knows about tokio or the configuration types; the edges and the owner loop hand it plain
//! values and act on what it returns.

pub mod arch;
pub mod arm64_ranges;
pub mod cmdline;
pub mod debounce;
pub mod decide;
pub mod header_record;
pub mod health;
pub mod hotplug_flag;
pub mod kmsg_record;
pub mod loader_choice;
pub mod model;
pub mod parse;
pub mod plan;
pub mod ranges;
pub mod reservation;
pub mod rule_mask;
pub mod uevent_record;

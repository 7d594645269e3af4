//! Readers of the host's state. Every path goes through [`sysroot::Sysroot`], so each reader runs against a
//! fixture tree as well as against `/`.

pub mod arch;
pub mod kexec_version;
pub mod plan_inputs;
pub mod snapshot;
pub mod sysroot;

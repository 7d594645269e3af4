//! The architecture whose header rules apply, chosen from what the running kernel reports as its machine.
//!
//! Each architecture builds the crash header its own way, so the range rules and the capacity take this value:
//! - x86_64 (arch/x86/kernel/crash.c): every busy System RAM resource, driver-managed memory included, minus the
//!   low 1 MiB and the crash reservations; with `CONFIG_CRASH_HOTPLUG` the kernel updates the header in place
//!   inside a fixed buffer ([`crate::core::ranges`], [`crate::core::decide::capacity`]).
//! - arm64 (arch/arm64/kernel/machine_kexec_file.c): memblock memory minus the crash reservations, no low cut,
//!   never driver-managed memory, and no in-kernel update: every load rebuilds the header
//!   ([`crate::core::arm64_ranges`]).
//!
//! Others are refused: powerpc rewrites the FDT too and uses its own header code, s390's crash kernel builds the
//! header itself. Computing x86 or arm64 ranges for them would be a guess.

use serde::Serialize;

/// An architecture whose header rules the daemon knows.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize)]
pub enum Arch {
    #[default]
    #[serde(rename = "x86_64")]
    X86_64,
    #[serde(rename = "arm64")]
    Arm64,
}

impl Arch {
    /// The architecture for the kernel's `utsname.machine` (`uname -m`): `x86_64`, or `aarch64` (arm64's
    /// `UTS_MACHINE`, arch/arm64/Makefile). Anything else is refused, naming it.
    pub fn from_machine(machine: &str) -> Result<Arch, UnsupportedArchitecture> {
        match machine {
            "x86_64" => Ok(Arch::X86_64),
            "aarch64" => Ok(Arch::Arm64),
            other => Err(UnsupportedArchitecture {
                machine: other.to_owned(),
            }),
        }
    }

    /// The kernel's name for the architecture (`arch/<name>`).
    pub fn name(self) -> &'static str {
        match self {
            Arch::X86_64 => "x86_64",
            Arch::Arm64 => "arm64",
        }
    }

    /// For `skip_serializing_if`: x86_64's JSON stays as it was before the architecture was a parameter.
    pub fn is_x86_64(&self) -> bool {
        *self == Arch::X86_64
    }
}

impl std::fmt::Display for Arch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error(
    "this host's architecture is {machine}: kdump-hotplugd computes the crash header the way x86_64 \
     (arch/x86/kernel/crash.c) and arm64 (arch/arm64/kernel/machine_kexec_file.c) kernels do and supports only \
     those; refusing rather than computing their ranges for {machine}"
)]
pub struct UnsupportedArchitecture {
    pub machine: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn x86_64_and_aarch64_are_known_and_the_refusal_names_the_architecture() {
        assert_eq!(Arch::from_machine("x86_64"), Ok(Arch::X86_64));
        assert_eq!(Arch::from_machine("aarch64"), Ok(Arch::Arm64));
        for machine in [
            "ppc64le",
            "s390x",
            "i686",
            "arm64",
            "aarch64_be",
            "riscv64",
            "",
        ] {
            let refusal = Arch::from_machine(machine).unwrap_err();
            assert!(
                refusal.to_string().contains(&format!("is {machine}:")),
                "{refusal}"
            );
            assert!(refusal.to_string().contains("supports only those"));
        }
    }

    #[test]
    fn names_and_json_follow_the_kernels_arch_directories() {
        assert_eq!(Arch::Arm64.to_string(), "arm64");
        assert_eq!(serde_json::to_string(&Arch::X86_64).unwrap(), "\"x86_64\"");
        assert_eq!(serde_json::to_string(&Arch::Arm64).unwrap(), "\"arm64\"");
        assert!(Arch::default().is_x86_64());
    }
}

//! The architecture guard. The range rules in [`crate::core::ranges`] and the header arithmetic in
//! [`crate::core::decide`] are x86_64's (arch/x86/kernel/crash.c: the low 1 MiB cut, `crash_load_segments`'
//! buffer, 4 KiB pages). Other architectures build the header differently (arm64 from memblock,
//! `for_each_mem_range`, and with no in-kernel hotplug update; powerpc rewrites the FDT too; s390's crash kernel
//! builds it itself), so the daemon refuses rather than compute x86 ranges for them.

/// What `uname -m` says on the one supported architecture.
pub const SUPPORTED: &str = "x86_64";

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error(
    "this host's architecture is {machine}: kdump-hotplugd computes the crash header the way x86_64 kernels do \
     (arch/x86/kernel/crash.c) and supports only x86_64 for now (arm64 is planned); refusing rather than \
     computing x86 ranges for {machine}"
)]
pub struct UnsupportedArchitecture {
    pub machine: String,
}

/// `Ok` on x86_64; the refusal, naming the architecture, elsewhere.
pub fn check(machine: &str) -> Result<(), UnsupportedArchitecture> {
    if machine == SUPPORTED {
        Ok(())
    } else {
        Err(UnsupportedArchitecture {
            machine: machine.to_owned(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_x86_64_passes_and_the_refusal_names_the_architecture() {
        assert_eq!(check("x86_64"), Ok(()));
        for machine in ["aarch64", "ppc64le", "s390x", "i686", ""] {
            let refusal = check(machine).unwrap_err();
            assert!(
                refusal.to_string().contains(&format!("is {machine}:")),
                "{refusal}"
            );
            assert!(refusal.to_string().contains("arm64 is planned"));
        }
    }
}

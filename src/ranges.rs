//! The memory ranges the crash ELF header must cover, computed as the kernel does for x86 `kexec_file_load`.
// STUB: owned by the parsers work.

use crate::model::MemRange;
use crate::parse::iomem::Resource;

/// Every busy `System RAM` resource at any depth, minus the low 1 MiB, minus the `Crash kernel` reservations.
/// One range per resource (split where an exclusion cuts one in two), never merged.
pub fn crash_ranges(resources: &[Resource]) -> Vec<MemRange> {
    let _ = resources;
    todo!()
}

/// True when every address in the file read as 0 (opened without CAP_SYS_ADMIN).
pub fn addresses_hidden(resources: &[Resource]) -> bool {
    !resources.is_empty() && resources.iter().all(|r| r.start == 0 && r.end == 0)
}

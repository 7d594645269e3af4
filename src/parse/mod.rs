//! Parsers for the kernel's text files. Each returns a [`ParseError`] naming file and line; none panics.

pub mod cpulist;
pub mod iomem;
pub mod sysfs;

use std::fmt;

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub struct ParseError {
    /// The host path (e.g. `/proc/iomem`), not the sysroot path, so messages read the same on fixtures.
    pub file: String,
    /// 1-based line number.
    pub line: usize,
    pub message: String,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}: {}", self.file, self.line, self.message)
    }
}

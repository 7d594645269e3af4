//! Single-value sysfs files: flags (`0`/`1`), decimal sizes, hex block sizes, memory block state.
// STUB: owned by the parsers work.

use super::ParseError;

/// `crash_hotplug`, `kexec_crash_loaded`: `0` or `1`.
pub fn parse_flag(file: &str, text: &str) -> Result<bool, ParseError> {
    let _ = (file, text);
    todo!()
}

/// `kexec_crash_size`, `crash_elfcorehdr_size`: a decimal number.
pub fn parse_decimal(file: &str, text: &str) -> Result<u64, ParseError> {
    let _ = (file, text);
    todo!()
}

/// `block_size_bytes`: hex without `0x` (`8000000` = 128 MiB).
pub fn parse_hex(file: &str, text: &str) -> Result<u64, ParseError> {
    let _ = (file, text);
    todo!()
}

//! Single-value sysfs files: flags (`0`/`1`), decimal sizes, hex block sizes, memory block state; and the one
//! list file, `crash_cma_ranges`.
//!
//! A sysfs attribute prints one value and `\n` (`Documentation/filesystems/sysfs.rst`: "one value per file").
//! The trailing newline is optional here so hand-written fixtures need not care; anything else (spaces, a second
//! line, a `0x` prefix) is an error, because it means the file is not what this daemon thinks it is.

use super::{numbered_lines, parse_decimal_u64, parse_hex_u64, quote, ParseError};
use crate::core::model::MemRange;
use serde::Serialize;

/// `crash_hotplug`, `kexec_crash_loaded`: `0` or `1` (both print an int with `%d\n`: `kernel/ksysfs.c`,
/// `kexec_crash_loaded_show`; `drivers/base/memory.c` and `drivers/base/cpu.c`, `crash_hotplug_show`).
pub fn parse_flag(file: &str, text: &str) -> Result<bool, ParseError> {
    let (line, value) = single_value(file, text)?;
    match value {
        "0" => Ok(false),
        "1" => Ok(true),
        other => Err(ParseError::new(
            file,
            line,
            format!("expected 0 or 1, found {}", quote(other)),
        )),
    }
}

/// `kexec_crash_size`, `crash_elfcorehdr_size`: a decimal number.
pub fn parse_decimal(file: &str, text: &str) -> Result<u64, ParseError> {
    let (line, value) = single_value(file, text)?;
    parse_decimal_u64(value).ok_or_else(|| {
        ParseError::new(
            file,
            line,
            format!(
                "expected an unsigned decimal number, found {}",
                quote(value)
            ),
        )
    })
}

/// `block_size_bytes`: hex without `0x` (`8000000` = 128 MiB; `drivers/base/memory.c`,
/// `block_size_bytes_show` prints `%lx\n`). Also `memoryN/phys_index` (`%08lx\n`).
pub fn parse_hex(file: &str, text: &str) -> Result<u64, ParseError> {
    let (line, value) = single_value(file, text)?;
    parse_hex_u64(value).ok_or_else(|| {
        ParseError::new(
            file,
            line,
            format!(
                "expected 1 to 16 hex digits without 0x, found {}",
                quote(value)
            ),
        )
    })
}

/// `crash_cma_ranges`: one `start-end` pair per line, inclusive, hex without `0x` (`%08llx-%08llx\n`,
/// `crash_cma_ranges_show` in kernel/ksysfs.c, later kernel/kexec_core.c); empty without CMA reservations.
pub fn parse_range_list(file: &str, text: &str) -> Result<Vec<MemRange>, ParseError> {
    numbered_lines(text)
        .map(|(line, value)| {
            let bad = || {
                ParseError::new(
                    file,
                    line,
                    format!(
                        "expected start-end in hex without 0x (start <= end), found {}",
                        quote(value)
                    ),
                )
            };
            let (start, end) = value.split_once('-').ok_or_else(bad)?;
            match (parse_hex_u64(start), parse_hex_u64(end)) {
                (Some(start), Some(end)) if start <= end => Ok(MemRange::new(start, end)),
                _ => Err(bad()),
            }
        })
        .collect()
}

/// `memoryN/state`, as `drivers/base/memory.c` (`state_show`) prints it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum MemoryBlockState {
    Online,
    Offline,
    /// Transient, while the kernel migrates pages away before offlining.
    GoingOffline,
}

pub fn parse_memory_state(file: &str, text: &str) -> Result<MemoryBlockState, ParseError> {
    let (line, value) = single_value(file, text)?;
    match value {
        "online" => Ok(MemoryBlockState::Online),
        "offline" => Ok(MemoryBlockState::Offline),
        "going-offline" => Ok(MemoryBlockState::GoingOffline),
        // Includes the kernel's own `ERROR-UNKNOWN-<n>` for a state it does not know.
        other => Err(ParseError::new(
            file,
            line,
            format!(
                "expected online, offline or going-offline, found {}",
                quote(other)
            ),
        )),
    }
}

/// The one value of a single-value file, with its line number (always 1).
fn single_value<'a>(file: &str, text: &'a str) -> Result<(usize, &'a str), ParseError> {
    let mut lines = numbered_lines(text);
    let Some((number, value)) = lines.next() else {
        return Err(ParseError::new(file, 1, "empty file: expected one value"));
    };
    if value.is_empty() {
        return Err(ParseError::new(
            file,
            number,
            "empty line: expected one value",
        ));
    }
    if let Some((extra, line)) = lines.next() {
        return Err(ParseError::new(
            file,
            extra,
            format!("expected one value, found another line: {}", quote(line)),
        ));
    }
    Ok((number, value))
}

#[cfg(test)]
mod tests {
    use super::*;

    const FILE: &str = "/sys/kernel/kexec_crash_loaded";

    #[test]
    fn flags() {
        assert!(!parse_flag(FILE, "0\n").unwrap());
        assert!(parse_flag(FILE, "1\n").unwrap());
        assert!(parse_flag(FILE, "1").unwrap());
        for bad in [
            "", "\n", "2\n", "01\n", " 1\n", "1 \n", "true\n", "1\n\n", "1\r\n",
        ] {
            assert!(parse_flag(FILE, bad).is_err(), "{bad:?}");
        }
        let e = parse_flag(FILE, "1\n0\n").unwrap_err();
        assert_eq!((e.file.as_str(), e.line), (FILE, 2));
    }

    #[test]
    fn crash_cma_range_lists() {
        const CMA: &str = "/sys/kernel/kexec/crash_cma_ranges";
        assert_eq!(parse_range_list(CMA, "").unwrap(), vec![]);
        assert_eq!(
            parse_range_list(CMA, "100000000-10c7fffff\n00a00000-00bfffff\n").unwrap(),
            vec![
                MemRange::new(0x1_0000_0000, 0x1_0c7f_ffff),
                MemRange::new(0xa0_0000, 0xbf_ffff)
            ]
        );
        for (bad, line) in [
            ("0x100-0x200\n", 1),
            ("100000000-10c7fffff\n200-100\n", 2),
            ("100000000\n", 1),
            ("1-2-3\n", 1),
            ("1-2\n\n", 2),
        ] {
            let e = parse_range_list(CMA, bad).unwrap_err();
            assert_eq!((e.file.as_str(), e.line), (CMA, line), "{bad:?}");
        }
    }

    #[test]
    fn decimals() {
        assert_eq!(parse_decimal(FILE, "268435456\n").unwrap(), 268_435_456);
        assert_eq!(parse_decimal(FILE, "0\n").unwrap(), 0);
        for bad in [
            "",
            "-1\n",
            "0x10\n",
            "1e3\n",
            "18446744073709551616\n",
            "12 \n",
        ] {
            assert_eq!(parse_decimal(FILE, bad).unwrap_err().line, 1, "{bad:?}");
        }
    }

    #[test]
    fn hex_without_prefix() {
        assert_eq!(parse_hex(FILE, "8000000\n").unwrap(), 128 << 20);
        assert_eq!(parse_hex(FILE, "80000000\n").unwrap(), 2 << 30);
        assert_eq!(parse_hex(FILE, "0000002f\n").unwrap(), 0x2f);
        for bad in ["", "0x8000000\n", "g\n", "10000000000000000\n", "80 00\n"] {
            assert_eq!(parse_hex(FILE, bad).unwrap_err().line, 1, "{bad:?}");
        }
    }

    #[test]
    fn memory_states() {
        assert_eq!(
            parse_memory_state(FILE, "online\n").unwrap(),
            MemoryBlockState::Online
        );
        assert_eq!(
            parse_memory_state(FILE, "offline\n").unwrap(),
            MemoryBlockState::Offline
        );
        assert_eq!(
            parse_memory_state(FILE, "going-offline\n").unwrap(),
            MemoryBlockState::GoingOffline
        );
        let e = parse_memory_state(FILE, "ERROR-UNKNOWN-7\n").unwrap_err();
        assert!(e.message.contains("ERROR-UNKNOWN-7"), "{e}");
    }
}

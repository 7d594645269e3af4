//! The kernel's cpulist syntax (`0-3,8,10-11`), used by `possible`, `present` and `online`.
//!
//! Those files print a cpumask with `%*pbl` (`drivers/base/cpu.c`, `print_cpus_*`; `lib/vsprintf.c`,
//! `bitmap_list_string`): comma-separated ids and `first-last` runs in ascending order, then `\n`. An empty
//! mask prints just `\n`. The stride forms `bitmap_parselist` accepts on input (`0-7:2/4`) are never printed,
//! so they are rejected here.

use super::{numbered_lines, parse_decimal_u64, quote, ParseError};
use crate::core::model::CpuSet;

/// Largest CPU id accepted. Kernels cap `CONFIG_NR_CPUS` in the thousands; the cap keeps a corrupt file such as
/// `0-4294967295` from building a set of four billion ids.
pub const MAX_CPU_ID: u32 = 65_535;

pub fn parse(file: &str, text: &str) -> Result<CpuSet, ParseError> {
    let mut lines = numbered_lines(text);
    let set = match lines.next() {
        None => CpuSet::default(),
        Some((number, line)) => {
            parse_list(line).map_err(|message| ParseError::new(file, number, message))?
        }
    };
    if let Some((number, line)) = lines.next() {
        return Err(ParseError::new(
            file,
            number,
            format!("expected one line, found more: {}", quote(line)),
        ));
    }
    Ok(set)
}

fn parse_list(line: &str) -> Result<CpuSet, String> {
    let mut set = CpuSet::default();
    if line.is_empty() {
        return Ok(set);
    }
    for item in line.split(',') {
        let (first, last) = match item.split_once('-') {
            Some((first, last)) => (cpu_id(first, item)?, cpu_id(last, item)?),
            None => {
                let id = cpu_id(item, item)?;
                (id, id)
            }
        };
        if first > last {
            return Err(format!("range {} runs backwards", quote(item)));
        }
        set.0.extend(first..=last);
    }
    Ok(set)
}

fn cpu_id(digits: &str, item: &str) -> Result<u32, String> {
    let value = parse_decimal_u64(digits).ok_or_else(|| {
        format!(
            "expected a CPU id or `first-last` range, found {}",
            quote(item)
        )
    })?;
    u32::try_from(value)
        .ok()
        .filter(|&id| id <= MAX_CPU_ID)
        .ok_or_else(|| format!("CPU id {value} is above the supported maximum {MAX_CPU_ID}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cpus(ids: &[u32]) -> CpuSet {
        ids.iter().copied().collect()
    }

    #[test]
    fn parses_ranges_and_single_ids() {
        assert_eq!(
            parse("/sys/devices/system/cpu/online", "0-3,8,10-11\n").unwrap(),
            cpus(&[0, 1, 2, 3, 8, 10, 11])
        );
        assert_eq!(parse("f", "0\n").unwrap(), cpus(&[0]));
        assert_eq!(parse("f", "5-5").unwrap(), cpus(&[5]));
    }

    #[test]
    fn empty_mask_is_an_empty_set() {
        assert_eq!(parse("f", "\n").unwrap(), CpuSet::default());
        assert_eq!(parse("f", "").unwrap(), CpuSet::default());
    }

    #[test]
    fn round_trips_through_display() {
        let set = parse("f", "0-3,8,10-11\n").unwrap();
        assert_eq!(set.to_string(), "0-3,8,10-11");
    }

    #[test]
    fn rejects_malformed_lists_with_line_numbers() {
        for bad in [
            "0-", "-1", "1,,2", ",", "0,", "a", "3-1", "0-7:2/4", " 0", "0 ", "1--2", "+1",
        ] {
            let e = parse("/sys/devices/system/cpu/present", bad).unwrap_err();
            assert_eq!(e.line, 1, "{bad:?}: {e}");
            assert_eq!(e.file, "/sys/devices/system/cpu/present");
        }
        assert_eq!(parse("f", "0-3\n4\n").unwrap_err().line, 2);
        assert_eq!(parse("f", "0-3\n\n").unwrap_err().line, 2);
    }

    #[test]
    fn rejects_ids_past_the_cap_without_building_them() {
        let e = parse("f", "0-4294967295\n").unwrap_err();
        assert!(e.message.contains("maximum"), "{e}");
        assert!(parse("f", "0-99999999999999999999").is_err());
        assert_eq!(parse("f", "65535").unwrap(), cpus(&[65_535]));
    }
}

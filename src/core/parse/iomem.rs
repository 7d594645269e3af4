//! `/proc/iomem`: a nested tree of `start-end : name` lines, two spaces of indent per level.
//!
//! The kernel prints one line per resource in a pre-order walk of the resource tree (`kernel/resource.c`,
//! `r_show`): `2 × depth` spaces, start and end as zero-padded lowercase hex (at least 8 digits, 16 for
//! addresses above 4 GiB), ` : `, then the name, which may hold spaces, colons and parentheses
//! (`PCI Bus 0000:00`, `System RAM (virtio_mem)`).

use super::{parse_hex_u64, quote, ParseError};

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Resource {
    pub start: u64,
    pub end: u64,
    /// Nesting level: 0 for top-level resources.
    pub depth: usize,
    pub name: String,
}

/// Separates the address range from the name (`r_show` prints exactly this).
const NAME_SEPARATOR: &str = " : ";

/// Parses the whole file into resources in file order. `file` names the source in errors.
pub fn parse(file: &str, text: &str) -> Result<Vec<Resource>, ParseError> {
    if text.is_empty() {
        // Even an unprivileged reader sees every line (with zeroed addresses): an empty file is no iomem.
        return Err(ParseError::new(
            file,
            1,
            "empty file: expected at least one resource",
        ));
    }
    // Lines are ~40 bytes; reserving up front keeps 64k-line files to a handful of reallocations.
    let mut resources = Vec::with_capacity(text.len() / 32 + 1);
    let mut previous_depth: Option<usize> = None;
    for (number, line) in super::numbered_lines(text) {
        let resource =
            parse_line(line).map_err(|message| ParseError::new(file, number, message))?;
        // A pre-order walk can go down at most one level per line.
        let deepest_allowed = previous_depth.map_or(0, |depth| depth + 1);
        if resource.depth > deepest_allowed {
            return Err(ParseError::new(
                file,
                number,
                format!(
                    "indented {} levels, but the line above allows at most {deepest_allowed}",
                    resource.depth
                ),
            ));
        }
        previous_depth = Some(resource.depth);
        resources.push(resource);
    }
    Ok(resources)
}

/// `text.split_once(NAME_SEPARATOR)`, found through the separator's colon: `split_once` with a `&str` pattern
/// builds a substring searcher per line, which was a fifth of the instructions of a 16k-range snapshot. The
/// first colon with a space on each side is the first ` : `.
fn split_at_separator(text: &str) -> Option<(&str, &str)> {
    let mut from = 0;
    while let Some(offset) = text[from..].find(':') {
        let colon = from + offset;
        // The separator is ` : `: it starts one byte before its colon.
        if let Some(start) = colon.checked_sub(1) {
            if text.as_bytes()[start..].starts_with(NAME_SEPARATOR.as_bytes()) {
                return Some((&text[..start], &text[start + NAME_SEPARATOR.len()..]));
            }
        }
        // A colon is one byte, so the next byte starts a character.
        from = colon + 1;
    }
    None
}

fn parse_line(line: &str) -> Result<Resource, String> {
    let indent = line.bytes().take_while(|&byte| byte == b' ').count();
    if indent % 2 != 0 {
        return Err(format!(
            "odd indentation ({indent} spaces; the kernel indents 2 per level): {}",
            quote(line)
        ));
    }
    let rest = &line[indent..];
    let Some((range, name)) = split_at_separator(rest) else {
        return Err(format!(
            "expected `start-end : name`, found {}",
            quote(line)
        ));
    };
    let Some((start_text, end_text)) = range.split_once('-') else {
        return Err(format!(
            "expected `start-end` before ` : `, found {}",
            quote(range)
        ));
    };
    let start = parse_hex_u64(start_text).ok_or_else(|| {
        format!(
            "start address is not 1 to 16 hex digits: {}",
            quote(start_text)
        )
    })?;
    let end = parse_hex_u64(end_text)
        .ok_or_else(|| format!("end address is not 1 to 16 hex digits: {}", quote(end_text)))?;
    if start > end {
        return Err(format!("start {start:#x} is after end {end:#x}"));
    }
    Ok(Resource {
        start,
        end,
        depth: indent / 2,
        name: name.to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn separator_split_is_split_once(text in "[0-9a-f :()-]{0,24}") {
            prop_assert_eq!(split_at_separator(&text), text.split_once(NAME_SEPARATOR));
        }

        #[test]
        fn separator_split_is_split_once_on_any_text(text in any::<String>()) {
            prop_assert_eq!(split_at_separator(&text), text.split_once(NAME_SEPARATOR));
        }
    }

    #[test]
    fn separator_split_takes_the_first_separator() {
        for text in [
            "0-1 : PCI Bus 0000:00",
            "0-1 : a : b",
            ": x",
            " : ",
            " :",
            "a:b : c",
            "a :b : c",
            "",
        ] {
            assert_eq!(
                split_at_separator(text),
                text.split_once(NAME_SEPARATOR),
                "{text:?}"
            );
        }
    }

    fn resource(start: u64, end: u64, depth: usize, name: &str) -> Resource {
        Resource {
            start,
            end,
            depth,
            name: name.to_owned(),
        }
    }

    #[test]
    fn parses_nested_tree_with_32_and_64_bit_addresses_and_odd_names() {
        let text = "\
00000000-00000fff : Reserved
00100000-7ffdbfff : System RAM
  6f000000-7effffff : Crash kernel
c0000000-febfffff : PCI Bus 0000:00
  fd000000-fdffffff : 0000:00:01.0
    fd000000-fdffffff : bochs-drm
180000000-1ffffffff : virtio0
  180000000-187ffffff : System RAM (virtio_mem)
b0000000-bfffffff : PCI MMCONFIG 0000 [bus 00-ff]
";
        let parsed = parse("/proc/iomem", text).unwrap();
        assert_eq!(
            parsed,
            vec![
                resource(0, 0xfff, 0, "Reserved"),
                resource(0x10_0000, 0x7ffd_bfff, 0, "System RAM"),
                resource(0x6f00_0000, 0x7eff_ffff, 1, "Crash kernel"),
                resource(0xc000_0000, 0xfebf_ffff, 0, "PCI Bus 0000:00"),
                resource(0xfd00_0000, 0xfdff_ffff, 1, "0000:00:01.0"),
                resource(0xfd00_0000, 0xfdff_ffff, 2, "bochs-drm"),
                resource(0x1_8000_0000, 0x1_ffff_ffff, 0, "virtio0"),
                resource(0x1_8000_0000, 0x1_87ff_ffff, 1, "System RAM (virtio_mem)"),
                resource(0xb000_0000, 0xbfff_ffff, 0, "PCI MMCONFIG 0000 [bus 00-ff]"),
            ]
        );
    }

    #[test]
    fn accepts_missing_final_newline_and_full_64_bit_range() {
        let parsed = parse("/proc/iomem", "0000000000000000-ffffffffffffffff : all").unwrap();
        assert_eq!(parsed, vec![resource(0, u64::MAX, 0, "all")]);
    }

    #[test]
    fn name_keeps_separators_after_the_first() {
        let parsed = parse("/proc/iomem", "0-1 : a : b\n").unwrap();
        assert_eq!(parsed[0].name, "a : b");
    }

    #[test]
    fn empty_name_is_allowed() {
        let parsed = parse("/proc/iomem", "0-1 : \n").unwrap();
        assert_eq!(parsed[0].name, "");
    }

    fn error(text: &str) -> ParseError {
        parse("/proc/iomem", text).unwrap_err()
    }

    #[test]
    fn errors_name_file_and_line() {
        let e = error("0-1 : a\n2-1 : b\n");
        assert_eq!((e.file.as_str(), e.line), ("/proc/iomem", 2));
        assert!(e.message.contains("after end"), "{e}");
        assert_eq!(e.to_string(), "/proc/iomem:2: start 0x2 is after end 0x1");
    }

    #[test]
    fn rejects_malformed_lines() {
        assert_eq!(error("").line, 1);
        assert_eq!(error("0-1 : a\n\n").line, 2, "empty line");
        assert_eq!(error("0-1 : a\n 0-1 : b\n").line, 2, "odd indent");
        assert_eq!(error("0-1 : a\n    0-1 : b\n").line, 2, "skips a level");
        assert_eq!(error("  0-1 : a\n").line, 1, "first line nested");
        assert_eq!(error("0-1 : a\n0-1: b\n").line, 2, "no separator");
        assert_eq!(error("01 : a\n").line, 1, "no dash");
        assert_eq!(error("0-1-2 : a\n").line, 1, "two dashes");
        assert_eq!(error("g-1 : a\n").line, 1, "bad start");
        assert_eq!(error("0-x : a\n").line, 1, "bad end");
        assert_eq!(error("-1 : a\n").line, 1, "empty start");
        assert_eq!(error("00000000000000000-1 : a\n").line, 1, "17 digits");
        assert_eq!(error("0-1 : a\n\t0-1 : b\n").line, 2, "tab indent");
    }

    #[test]
    fn depth_can_drop_several_levels_at_once() {
        let parsed = parse(
            "/proc/iomem",
            "0-9 : a\n  0-9 : b\n    0-9 : c\n10-11 : d\n",
        )
        .unwrap();
        assert_eq!(
            parsed.iter().map(|r| r.depth).collect::<Vec<_>>(),
            vec![0, 1, 2, 0]
        );
    }
}

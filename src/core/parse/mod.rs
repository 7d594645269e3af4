//! Parsers for the kernel's text files. Each returns a [`ParseError`] naming file and line; none panics.
//! [`kexec_version`] scans a binary instead, and finds a version or none.

pub mod cpulist;
pub mod iomem;
pub mod kexec_version;
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

impl ParseError {
    pub fn new(file: &str, line: usize, message: impl Into<String>) -> Self {
        Self {
            file: file.to_owned(),
            line,
            message: message.into(),
        }
    }
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}: {}", self.file, self.line, self.message)
    }
}

/// `ID` then the words of `ID_LIKE` from an os-release file (os-release(5): `KEY=value`, the value optionally
/// in double or single quotes; `#` comments). Unknown lines are skipped: the file is informational here.
pub fn os_release_ids(text: &str) -> Vec<String> {
    let value = |key: &str| {
        text.lines().find_map(|line| {
            let rest = line.trim().strip_prefix(key)?.strip_prefix('=')?;
            Some(rest.trim_matches(|c| c == '"' || c == '\'').to_owned())
        })
    };
    let mut ids: Vec<String> = value("ID").into_iter().collect();
    if let Some(like) = value("ID_LIKE") {
        ids.extend(like.split_whitespace().map(str::to_owned));
    }
    ids.retain(|id| !id.is_empty());
    ids
}

/// Splits `text` into `(1-based line number, line)` pairs. The kernel ends every line with `\n`, so the empty
/// piece after the final newline is not a line; an empty piece anywhere else is (an empty line).
pub(crate) fn numbered_lines(text: &str) -> impl Iterator<Item = (usize, &str)> {
    let body = text.strip_suffix('\n').unwrap_or(text);
    let pieces = if text.is_empty() {
        None
    } else {
        Some(body.split('\n'))
    };
    pieces
        .into_iter()
        .flatten()
        .enumerate()
        .map(|(index, line)| (index + 1, line))
}

/// Quotes a piece of input for an error message, shortened so a binary blob cannot flood the log.
pub(crate) fn quote(text: &str) -> String {
    const LIMIT: usize = 60;
    let mut end = text.len().min(LIMIT);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    if end < text.len() {
        format!("{:?}…", &text[..end])
    } else {
        format!("{text:?}")
    }
}

/// Parses 1 to 16 hex digits (either case) into a `u64`; `None` for anything else.
pub(crate) fn parse_hex_u64(digits: &str) -> Option<u64> {
    if digits.is_empty() || digits.len() > 16 {
        return None;
    }
    let mut value: u64 = 0;
    for byte in digits.bytes() {
        let nibble = match byte {
            b'0'..=b'9' => byte - b'0',
            b'a'..=b'f' => byte - b'a' + 10,
            b'A'..=b'F' => byte - b'A' + 10,
            _ => return None,
        };
        value = (value << 4) | u64::from(nibble);
    }
    Some(value)
}

/// Parses ASCII decimal digits into a `u64`; `None` on anything else or overflow.
pub(crate) fn parse_decimal_u64(digits: &str) -> Option<u64> {
    if digits.is_empty() {
        return None;
    }
    let mut value: u64 = 0;
    for byte in digits.bytes() {
        if !byte.is_ascii_digit() {
            return None;
        }
        value = value.checked_mul(10)?.checked_add(u64::from(byte - b'0'))?;
    }
    Some(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbered_lines_drops_only_the_piece_after_the_final_newline() {
        let lines: Vec<_> = numbered_lines("a\n\nb\n").collect();
        assert_eq!(lines, vec![(1, "a"), (2, ""), (3, "b")]);
        assert_eq!(numbered_lines("").count(), 0);
        assert_eq!(numbered_lines("\n").collect::<Vec<_>>(), vec![(1, "")]);
        assert_eq!(numbered_lines("x").collect::<Vec<_>>(), vec![(1, "x")]);
    }

    #[test]
    fn hex_accepts_both_cases_and_rejects_overlong_input() {
        assert_eq!(parse_hex_u64("8000000"), Some(0x800_0000));
        assert_eq!(parse_hex_u64("ffffFFFFffffFFFF"), Some(u64::MAX));
        assert_eq!(parse_hex_u64("10000000000000000"), None);
        assert_eq!(parse_hex_u64(""), None);
        assert_eq!(parse_hex_u64("0x10"), None);
    }

    #[test]
    fn decimal_rejects_overflow_and_signs() {
        assert_eq!(parse_decimal_u64("18446744073709551615"), Some(u64::MAX));
        assert_eq!(parse_decimal_u64("18446744073709551616"), None);
        assert_eq!(parse_decimal_u64("-1"), None);
        assert_eq!(parse_decimal_u64("+1"), None);
    }

    #[test]
    fn quote_shortens_on_a_char_boundary() {
        let long = "é".repeat(100);
        let quoted = quote(&long);
        assert!(quoted.ends_with('…'));
        assert!(quoted.len() < 80);
    }
}

//! The kexec-tools version that a `kexec` binary carries.
//!
//! `kexec --version` prints `PACKAGE_STRING` (kexec-tools' kexec/kexec.c `version()`), which autoconf builds from
//! `AC_INIT(kexec-tools, 2.0.25)` in configure.ac as `kexec-tools 2.0.25`; the string therefore sits in the
//! binary's read-only data. The version is read there, as bytes, rather than from a package database: the
//! binary is the very file that runs (whatever package, or none, put it there), it answers the same on dpkg
//! and RPM systems (dpkg's status file is dpkg's private interface, and RPM's database is not a text file), and
//! reading needs no exec, so a `--sysroot` fixture tree answers as well as `/`.

/// What precedes the version in `PACKAGE_STRING`.
const PREFIX: &[u8] = b"kexec-tools ";
/// Longer runs of version characters are not a version (`2.0.29.git` is 10).
const MAX_VERSION: usize = 32;

/// The version (`2.0.25`, `2.0.29.git`) after the first `kexec-tools ` in `bytes` that a version follows: a digit,
/// then digits, ASCII letters and `.+~_-`, holding a `.` followed by a digit. `None` when no occurrence has one
/// (not kexec-tools' kexec, or a stand-in file).
pub fn kexec_tools_version(bytes: &[u8]) -> Option<String> {
    let mut from = 0;
    while let Some(at) = find(&bytes[from..], PREFIX) {
        let start = from + at + PREFIX.len();
        let rest = &bytes[start..];
        let run = rest
            .iter()
            .take_while(|&&b| b.is_ascii_alphanumeric() || b"._+~-".contains(&b))
            .count();
        // A sentence's full stop or a dangling separator is not part of the version.
        let mut token = &rest[..run];
        while let Some((last, head)) = token.split_last() {
            if last.is_ascii_alphanumeric() {
                break;
            }
            token = head;
        }
        if token.len() <= MAX_VERSION && looks_like_version(token) {
            // Only ASCII bytes were taken.
            return Some(token.iter().map(|&b| char::from(b)).collect());
        }
        from = start;
    }
    None
}

/// `version` (`2.0.25`, `2.0.29.git`) is at least `wanted`: its first three numbers compared in order, a missing
/// one counting as 0.
pub fn at_least(version: &str, wanted: [u32; 3]) -> bool {
    let mut numbers = version
        .split(|c: char| !c.is_ascii_digit())
        .map(|n| n.parse::<u32>().unwrap_or(0));
    let have: [u32; 3] = std::array::from_fn(|_| numbers.next().unwrap_or(0));
    have >= wanted
}

fn looks_like_version(token: &[u8]) -> bool {
    token.first().is_some_and(u8::is_ascii_digit)
        && token
            .windows(2)
            .any(|pair| pair[0] == b'.' && pair[1].is_ascii_digit())
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack
        .windows(needle.len())
        .position(|window| window == needle)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn finds_the_version_string_among_binary_data() {
        let binary =
            b"\x7fELF\x02\x01\x01\0\0\0usage: kexec [OPTION]...\0kexec-tools 2.0.25\n\0%s\0";
        assert_eq!(kexec_tools_version(binary).as_deref(), Some("2.0.25"));
        assert_eq!(
            kexec_tools_version(b"kexec-tools 2.0.29.git\n").as_deref(),
            Some("2.0.29.git")
        );
        // The end of the input ends the version too.
        assert_eq!(
            kexec_tools_version(b"kexec-tools 2.0.31").as_deref(),
            Some("2.0.31")
        );
    }

    #[test]
    fn skips_mentions_that_carry_no_version() {
        let binary =
            b"kexec-tools %s\0see kexec-tools documentation\0kexec-tools 2.\0kexec-tools 2.0.28.\0";
        assert_eq!(kexec_tools_version(binary).as_deref(), Some("2.0.28"));
        assert_eq!(kexec_tools_version(b""), None);
        assert_eq!(kexec_tools_version(b"#!/bin/sh\nexit 0\n"), None);
        assert_eq!(kexec_tools_version(b"kexec-tools "), None);
        assert_eq!(kexec_tools_version(b"kexec-tools v2.0.25"), None);
        assert_eq!(
            kexec_tools_version(format!("kexec-tools 2.0.{}", "1".repeat(40)).as_bytes()),
            None
        );
    }

    #[test]
    fn versions_compare_by_their_first_three_numbers() {
        assert!(at_least("2.0.27", [2, 0, 27]));
        assert!(at_least("2.0.29.git", [2, 0, 28]));
        assert!(at_least("2.1", [2, 0, 28]));
        assert!(!at_least("2.0.25", [2, 0, 27]));
        assert!(!at_least("2.0", [2, 0, 27]));
        assert!(!at_least("", [2, 0, 27]));
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = kexec_tools_version(&bytes);
        }

        #[test]
        fn arbitrary_bytes_after_the_prefix_never_panic(tail in proptest::collection::vec(any::<u8>(), 0..64)) {
            let mut bytes = PREFIX.to_vec();
            bytes.extend(tail);
            if let Some(version) = kexec_tools_version(&bytes) {
                prop_assert!(version.len() <= MAX_VERSION);
                prop_assert!(version.starts_with(|c: char| c.is_ascii_digit()));
            }
        }

        #[test]
        fn an_embedded_version_string_is_found(
            before in proptest::collection::vec(any::<u8>(), 0..256),
            after in proptest::collection::vec(any::<u8>(), 0..256),
            minor in 0u32..100,
        ) {
            prop_assume!(find(&before, b"kexec-tools").is_none());
            let mut bytes = before;
            bytes.extend_from_slice(format!("kexec-tools 2.0.{minor}\n\0").as_bytes());
            bytes.extend(after);
            prop_assert_eq!(kexec_tools_version(&bytes), Some(format!("2.0.{minor}")));
        }
    }
}

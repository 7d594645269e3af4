//! The record of what the loaded crash kernel's header holds, kept beside the instance lock in the runtime
//! directory (`/run/kdump-hotplugd`, kept across restarts by `RuntimeDirectoryPreserve=yes`, emptied at boot
//! because /run is a tmpfs).
//!
//! No kernel interface shows what a loaded elfcorehdr holds. A daemon that starts with a crash kernel loaded
//! can trust the distro's boot-time load on its first start (nothing came before it in this boot that it could
//! have heard), but not after a restart: memory hot-added while no instance listened (a SIGKILL in the middle of
//! a burst, `systemctl stop` during maintenance) is in no header. The record says what the last instance knew
//! the header held; a start that finds memory different from it reloads.

use crate::core::decide::LoadedHeader;
use crate::core::model::MemRange;
use crate::core::parse::cpulist;

/// The first line of every record; a file without it is not one (and is reported, not trusted).
const MAGIC: &str = "kdump-hotplugd header record 1";

/// The record's text for `header`.
pub fn render(header: &LoadedHeader) -> String {
    let mut text = format!("{MAGIC}\ncpus {}\n", header.cpus);
    for range in &header.ranges {
        text.push_str(&format!("range {:#x} {:#x}\n", range.start, range.end));
    }
    text
}

/// Why a record could not be read back.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RecordError {
    #[error("{file}: not a header record (its first line is not \"{MAGIC}\")")]
    NotARecord { file: String },
    #[error("{file}:{line}: {problem}")]
    Line {
        file: String,
        line: usize,
        problem: String,
    },
}

/// The header a record describes.
pub fn parse(file: &str, text: &str) -> Result<LoadedHeader, RecordError> {
    let mut lines = text.lines().enumerate();
    if lines.next().map(|(_, l)| l) != Some(MAGIC) {
        return Err(RecordError::NotARecord {
            file: file.to_owned(),
        });
    }
    let mut header = LoadedHeader::default();
    for (index, line) in lines {
        let bad = |problem: String| RecordError::Line {
            file: file.to_owned(),
            line: index + 1,
            problem,
        };
        match line.split_once(' ') {
            Some(("cpus", list)) => {
                header.cpus = cpulist::parse(file, list).map_err(|e| bad(e.to_string()))?;
            }
            Some(("range", bounds)) => {
                let number = |word: Option<&str>| {
                    word.and_then(|w| w.strip_prefix("0x"))
                        .and_then(|hex| u64::from_str_radix(hex, 16).ok())
                };
                let mut words = bounds.split(' ');
                match (number(words.next()), number(words.next()), words.next()) {
                    (Some(start), Some(end), None) if start <= end => {
                        header.ranges.push(MemRange::new(start, end))
                    }
                    _ => {
                        return Err(bad(format!(
                            "a range is two hex addresses, start <= end: {bounds:?}"
                        )))
                    }
                }
            }
            _ if line.is_empty() => {}
            _ => return Err(bad(format!("unknown line {line:?}"))),
        }
    }
    Ok(header)
}

/// What a start with a crash kernel loaded may take its header to hold.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AtStart {
    /// No record: the first start in this boot; the distro's boot-time load is taken as current.
    FirstStart,
    /// The last instance knew the header to hold what the host has now.
    Current,
    /// The host changed while no instance listened: the header holds the record's layout, a reload is due.
    Changed(LoadedHeader),
    /// The record cannot be read back: nothing is known of the header, a reload is due.
    Unreadable(RecordError),
}

/// Compares the record left by an earlier instance (`None`: none) with the header the host needs now.
pub fn at_start(file: &str, record: Option<&str>, now: &LoadedHeader) -> AtStart {
    let Some(text) = record else {
        return AtStart::FirstStart;
    };
    match parse(file, text) {
        Ok(header) if header == *now => AtStart::Current,
        Ok(header) => AtStart::Changed(header),
        Err(error) => AtStart::Unreadable(error),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::model::CpuSet;
    use proptest::prelude::*;

    fn header(ranges: &[(u64, u64)], cpus: &[u32]) -> LoadedHeader {
        LoadedHeader {
            ranges: ranges.iter().map(|&(s, e)| MemRange::new(s, e)).collect(),
            cpus: cpus.iter().copied().collect(),
        }
    }

    #[test]
    fn a_record_reads_back_as_the_header_it_was_written_for() {
        let h = header(&[(0x1000, 0x9fbff), (0x100000, 0x7ffdffff)], &[0, 1, 2, 5]);
        let text = render(&h);
        assert!(text.starts_with(MAGIC), "{text}");
        assert!(text.contains("cpus 0-2,5\n"), "{text}");
        assert_eq!(parse("r", &text), Ok(h));
    }

    #[test]
    fn start_trusts_the_first_load_and_a_matching_record_only() {
        let boot = header(&[(0x100000, 0x7fffffff)], &[0, 1]);
        let grown = header(
            &[(0x100000, 0x7fffffff), (0x100000000, 0x1ffffffff)],
            &[0, 1],
        );
        assert_eq!(at_start("r", None, &grown), AtStart::FirstStart);
        assert_eq!(
            at_start("r", Some(&render(&grown)), &grown),
            AtStart::Current
        );
        assert_eq!(
            at_start("r", Some(&render(&boot)), &grown),
            AtStart::Changed(boot)
        );
        assert!(matches!(
            at_start("r", Some("garbage\n"), &grown),
            AtStart::Unreadable(RecordError::NotARecord { .. })
        ));
    }

    #[test]
    fn a_damaged_line_is_named_by_file_and_line() {
        let text = format!("{MAGIC}\ncpus 0\nrange 0x10 0x1\n");
        assert_eq!(
            parse("/run/kdump-hotplugd/header", &text).unwrap_err().to_string(),
            "/run/kdump-hotplugd/header:3: a range is two hex addresses, start <= end: \"0x10 0x1\""
        );
    }

    proptest! {
        #[test]
        fn arbitrary_text_never_panics(text in ".{0,200}") {
            let _ = parse("r", &format!("{MAGIC}\n{text}"));
            let _ = at_start("r", Some(&text), &LoadedHeader::default());
        }

        #[test]
        fn every_header_round_trips(
            ranges in proptest::collection::vec((0u64..1 << 40, 0u64..1 << 30), 0..20),
            cpus in proptest::collection::btree_set(0u32..512, 0..16),
        ) {
            let h = LoadedHeader {
                ranges: ranges.iter().map(|&(s, len)| MemRange::new(s, s + len)).collect(),
                cpus: CpuSet(cpus),
            };
            prop_assert_eq!(parse("r", &render(&h)), Ok(h));
        }
    }
}

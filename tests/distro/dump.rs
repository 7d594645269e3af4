//! The dump kdump-tools saved, read on the host from the guest's disk without mounting it: the overlay is copied
//! to a raw image, its ext4 journal replayed on that copy (the crash kernel ends with `reboot -f`), the flattened
//! dump taken out with `debugfs`, turned into a kdump-compressed file by `makedumpfile -R`, and the first page
//! bitmap of that file read back: the page frames the saved dump holds.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use kdump_hotplugd::core::model::MemRange;

use super::system::run_host;

const PAGE: u64 = 4096;

/// `struct disk_dump_header` (makedumpfile, diskdump_mod.h) on x86_64, the fields this tier reads, and
/// `struct kdump_sub_header`'s 64-bit page count (header version 6 and later).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KdumpHeader {
    pub header_version: i32,
    pub release: String,
    pub block_size: u64,
    pub sub_hdr_size: u64,
    pub bitmap_blocks: u64,
    /// Page frames the dump describes: 0..max_mapnr.
    pub max_mapnr: u64,
}

fn u32_at(bytes: &[u8], offset: usize) -> u32 {
    u32::from_le_bytes(bytes[offset..offset + 4].try_into().unwrap())
}

fn u64_at(bytes: &[u8], offset: usize) -> u64 {
    u64::from_le_bytes(bytes[offset..offset + 8].try_into().unwrap())
}

/// Parses the first block and the sub header. Offsets follow the C layout on x86_64: an 8-byte signature, the
/// version, six 65-byte utsname strings (12..402), a 16-byte `struct timeval` aligned to 8 (408..424), then the
/// 32-bit fields from `status` (424) on. The sub header starts at the second block; its `max_mapnr_64` follows
/// eleven 8-byte fields and two 8-byte pfns (offset 96).
pub fn parse_header(bytes: &[u8]) -> Result<KdumpHeader, String> {
    if bytes.len() < 464 {
        return Err(format!(
            "{} bytes: too short for a kdump header",
            bytes.len()
        ));
    }
    if &bytes[..8] != b"KDUMP   " {
        return Err(format!(
            "signature {:?} is not \"KDUMP   \" (not a kdump-compressed file)",
            String::from_utf8_lossy(&bytes[..8])
        ));
    }
    let header_version = u32_at(bytes, 8) as i32;
    let release_field = &bytes[12 + 2 * 65..12 + 3 * 65];
    let release = String::from_utf8_lossy(release_field)
        .trim_end_matches('\0')
        .to_string();
    let block_size = u64::from(u32_at(bytes, 428));
    let sub_hdr_size = u64::from(u32_at(bytes, 432));
    let bitmap_blocks = u64::from(u32_at(bytes, 436));
    let mut max_mapnr = u64::from(u32_at(bytes, 440));
    if !(512..=1 << 20).contains(&block_size) || !block_size.is_power_of_two() {
        return Err(format!(
            "block size {block_size} is not a plausible block size"
        ));
    }
    if header_version >= 6 {
        let sub = block_size as usize;
        if bytes.len() < sub + 104 {
            return Err(format!(
                "version {header_version} header: {} bytes do not reach the sub header's max_mapnr_64",
                bytes.len()
            ));
        }
        max_mapnr = u64_at(bytes, sub + 96);
    }
    if bitmap_blocks == 0 || bitmap_blocks % 2 != 0 {
        return Err(format!(
            "{bitmap_blocks} bitmap blocks: expected an even, non-zero count (two bitmaps)"
        ));
    }
    let bits = bitmap_blocks / 2 * block_size * 8;
    if max_mapnr > bits {
        return Err(format!(
            "max_mapnr {max_mapnr} does not fit the {bits}-bit first bitmap"
        ));
    }
    Ok(KdumpHeader {
        header_version,
        release,
        block_size,
        sub_hdr_size,
        bitmap_blocks,
        max_mapnr,
    })
}

/// The first bitmap (one bit per page frame, bit `n % 8` of byte `n / 8`, set when the vmcore held the page)
/// as byte ranges of physical memory, merged where adjacent.
pub fn bitmap_ranges(bitmap: &[u8], max_mapnr: u64) -> Vec<MemRange> {
    let mut ranges: Vec<MemRange> = Vec::new();
    let mut run_start: Option<u64> = None;
    for pfn in 0..=max_mapnr {
        let set = pfn < max_mapnr && bitmap[(pfn / 8) as usize] & (1 << (pfn % 8)) != 0;
        match (set, run_start) {
            (true, None) => run_start = Some(pfn),
            (false, Some(start)) => {
                ranges.push(MemRange::new(start * PAGE, pfn * PAGE - 1));
                run_start = None;
            }
            _ => {}
        }
    }
    ranges
}

/// The page frames of `expected` (whole pages inside each range) that `covered` lacks, as byte ranges.
pub fn missing_pages(expected: &[MemRange], covered: &[MemRange]) -> Vec<MemRange> {
    let mut missing = Vec::new();
    for range in expected {
        let first = range.start.div_ceil(PAGE);
        let end = (range.end + 1) / PAGE; // exclusive
        let mut pfn = first;
        while pfn < end {
            let address = pfn * PAGE;
            match covered
                .iter()
                .find(|c| c.start <= address && address <= c.end)
            {
                Some(c) => pfn = ((c.end + 1) / PAGE).max(pfn + 1),
                None => {
                    let next = covered
                        .iter()
                        .filter(|c| c.start > address)
                        .map(|c| c.start / PAGE)
                        .min()
                        .unwrap_or(end)
                        .min(end);
                    missing.push(MemRange::new(address, next * PAGE - 1));
                    pfn = next;
                }
            }
        }
    }
    missing
}

/// What the host read from the guest's disk after the crash.
#[derive(Debug)]
pub struct SavedDump {
    /// `/var/crash/<stamp>` in the guest.
    pub dir: String,
    pub files: Vec<String>,
    pub flattened_bytes: u64,
    pub kdump: PathBuf,
    pub header: KdumpHeader,
    pub covered: Vec<MemRange>,
}

impl SavedDump {
    pub fn covered_bytes(&self) -> u64 {
        self.covered.iter().map(MemRange::size).sum()
    }
}

fn debugfs(disk: &Path, request: &str) -> String {
    run_host(
        Command::new("debugfs")
            .args(["-R", request])
            .arg(disk)
            .stderr(Stdio::null()),
    )
}

/// Reads the one dump kdump-tools saved under /var/crash of the overlay `overlay` (the guest has exited).
pub fn read_saved_dump(overlay: &Path, work: &Path) -> SavedDump {
    let raw = work.join("after-crash.raw");
    let _ = std::fs::remove_file(&raw);
    run_host(
        Command::new("qemu-img")
            .args(["convert", "-O", "raw"])
            .arg(overlay)
            .arg(&raw),
    );
    // The crash kernel syncs and reboots without unmounting: replay the journal on the copy, nothing else.
    let status = Command::new("e2fsck")
        .args(["-fy", "-E", "journal_only"])
        .arg(&raw)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("run e2fsck");
    assert!(
        matches!(status.code(), Some(0) | Some(1)),
        "e2fsck -E journal_only on {}: {status}",
        raw.display()
    );
    let listing = debugfs(&raw, "ls -p /var/crash");
    // `ls -p`: /inode/mode/uid/gid/name/size/ per entry; dump folders are named by kdump-config's timestamp.
    let stamps: Vec<String> = listing
        .lines()
        .filter_map(|l| l.split('/').nth(5))
        .filter(|n| n.len() >= 12 && n.bytes().all(|b| b.is_ascii_digit()))
        .map(str::to_string)
        .collect();
    assert_eq!(
        stamps.len(),
        1,
        "exactly one dump folder under /var/crash; debugfs lists:\n{listing}"
    );
    let dir = format!("/var/crash/{}", stamps[0]);
    let files: Vec<String> = debugfs(&raw, &format!("ls -p {dir}"))
        .lines()
        .filter_map(|l| l.split('/').nth(5))
        .filter(|n| !n.is_empty() && *n != "." && *n != "..")
        .map(str::to_string)
        .collect();
    let name = format!("dump.{}", stamps[0]);
    assert!(
        files.contains(&name),
        "kdump-tools saved no {dir}/{name}; the folder holds {files:?}"
    );
    let flattened = work.join("dump.flattened");
    let kdump = work.join("dump.kdump");
    let _ = std::fs::remove_file(&flattened);
    let _ = std::fs::remove_file(&kdump);
    debugfs(&raw, &format!("dump {dir}/{name} {}", flattened.display()));
    let flattened_bytes = std::fs::metadata(&flattened)
        .unwrap_or_else(|e| panic!("debugfs wrote no {}: {e}", flattened.display()))
        .len();
    run_host(
        Command::new("makedumpfile")
            .arg("-R")
            .arg(&kdump)
            .stdin(File::open(&flattened).unwrap()),
    );
    let _ = std::fs::remove_file(&raw);
    let _ = std::fs::remove_file(&flattened);
    let mut file = File::open(&kdump).unwrap();
    let mut head = vec![0u8; 8192];
    let read = file.read(&mut head).unwrap();
    head.truncate(read);
    let mut header = parse_header(&head).unwrap_or_else(|e| panic!("{}: {e}", kdump.display()));
    if header.header_version >= 6 && head.len() < header.block_size as usize + 104 {
        let mut more = vec![0u8; header.block_size as usize * 2];
        file.seek(SeekFrom::Start(0)).unwrap();
        file.read_exact(&mut more).unwrap();
        header = parse_header(&more).unwrap_or_else(|e| panic!("{}: {e}", kdump.display()));
    }
    let bitmap_offset = header.block_size * (1 + header.sub_hdr_size);
    let mut bitmap = vec![0u8; (header.bitmap_blocks / 2 * header.block_size) as usize];
    file.seek(SeekFrom::Start(bitmap_offset)).unwrap();
    file.read_exact(&mut bitmap)
        .unwrap_or_else(|e| panic!("{}: first bitmap: {e}", kdump.display()));
    let covered = bitmap_ranges(&bitmap, header.max_mapnr);
    SavedDump {
        dir,
        files,
        flattened_bytes,
        kdump,
        header,
        covered,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bitmap_runs_become_byte_ranges() {
        // pfns 0-1 and 9 set, of 16.
        let ranges = bitmap_ranges(&[0b0000_0011, 0b0000_0010], 16);
        assert_eq!(
            ranges,
            vec![
                MemRange::new(0, 2 * PAGE - 1),
                MemRange::new(9 * PAGE, 10 * PAGE - 1)
            ]
        );
    }

    #[test]
    fn missing_pages_lists_the_gaps_inside_whole_pages() {
        let expected = [
            MemRange::new(0x1000, 0x9fbff),
            MemRange::new(0x10_0000, 0x4fff_ffff),
        ];
        let covered = [
            MemRange::new(0, 0x9ffff),
            MemRange::new(0x10_0000, 0x2fff_ffff),
        ];
        assert_eq!(
            missing_pages(&expected, &covered),
            vec![MemRange::new(0x3000_0000, 0x4fff_ffff)]
        );
        assert!(missing_pages(&expected[..1], &covered).is_empty());
    }

    #[test]
    fn a_header_that_is_not_kdump_is_refused() {
        let mut bytes = vec![0u8; 4096];
        bytes[..8].copy_from_slice(b"makedump");
        assert!(parse_header(&bytes).unwrap_err().contains("signature"));
    }
}

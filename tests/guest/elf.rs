//! The crash dump's ELF header as the crash kernel shows it in `/proc/vmcore`: program headers and CPU notes.
//!
//! In the crash kernel, `fs/proc/vmcore.c` keeps every PT_LOAD's `p_paddr` and `p_memsz` from the header the
//! first kernel prepared (only `p_offset` is rewritten) and merges all PT_NOTE segments into one, dropping the
//! empty per-CPU notes of CPUs that never saved their registers. So the PT_LOADs are the memory the dump
//! holds, and the NT_PRSTATUS notes are the CPUs that were online at the crash.

use kdump_hotplugd::model::MemRange;

const PT_LOAD: u32 = 1;
const PT_NOTE: u32 = 4;
const NT_PRSTATUS: u32 = 1;
const EM_X86_64: u16 = 62;
const EM_AARCH64: u16 = 183;
/// x86_64 maps the kernel image at `__START_KERNEL_map`; the header describes that mapping with one extra
/// PT_LOAD (`crash_prepare_elf64_headers`' `need_kernel_map`, kexec-tools' `kern_vaddr_start`), which is not
/// a System RAM range.
const X86_64_KERNEL_TEXT_MAP: u64 = 0xffff_ffff_8000_0000;
/// arm64 maps the kernel image above the linear map (`KIMAGE_VADDR`, `arch/arm64/include/asm/memory.h`): the
/// linear map ends at `_PAGE_END(VA_BITS_MIN)`, 0xffff_8000_0000_0000 with 48-bit (and 52-bit) VAs.
const AARCH64_KERNEL_TEXT_MAP: u64 = 0xffff_8000_0000_0000;

#[derive(Debug, Default)]
pub struct DumpHeader {
    /// Physical memory ranges of the dump, one per PT_LOAD, sorted, without the kernel-text mapping.
    pub memory: Vec<MemRange>,
    pub kernel_text_loads: usize,
    pub note_segments: usize,
    /// One NT_PRSTATUS note per CPU that saved its registers at the crash.
    pub cpu_notes: usize,
    pub vmcoreinfo: bool,
}

fn u16_at(bytes: &[u8], at: usize) -> Result<u16, String> {
    bytes
        .get(at..at + 2)
        .map(|b| u16::from_le_bytes([b[0], b[1]]))
        .ok_or_else(|| format!("ELF header truncated at byte {at}"))
}

fn u32_at(bytes: &[u8], at: usize) -> Result<u32, String> {
    bytes
        .get(at..at + 4)
        .map(|b| u32::from_le_bytes(b.try_into().unwrap()))
        .ok_or_else(|| format!("ELF header truncated at byte {at}"))
}

fn u64_at(bytes: &[u8], at: usize) -> Result<u64, String> {
    bytes
        .get(at..at + 8)
        .map(|b| u64::from_le_bytes(b.try_into().unwrap()))
        .ok_or_else(|| format!("ELF header truncated at byte {at}"))
}

/// Parses the start of `/proc/vmcore` (at least the headers and the note segment).
pub fn parse(bytes: &[u8]) -> Result<DumpHeader, String> {
    if bytes.get(0..4) != Some(b"\x7fELF".as_slice()) {
        return Err("no ELF magic at the start of /proc/vmcore".into());
    }
    if bytes[4] != 2 || bytes[5] != 1 {
        return Err("not a little-endian ELF64 file".into());
    }
    let kernel_text_map = match u16_at(bytes, 0x12)? {
        EM_X86_64 => X86_64_KERNEL_TEXT_MAP,
        EM_AARCH64 => AARCH64_KERNEL_TEXT_MAP,
        other => return Err(format!("ELF machine {other}: neither x86_64 nor aarch64")),
    };
    let phoff = u64_at(bytes, 0x20)? as usize;
    let phentsize = u16_at(bytes, 0x36)? as usize;
    let phnum = u16_at(bytes, 0x38)? as usize;
    let mut header = DumpHeader::default();
    for index in 0..phnum {
        let at = phoff + index * phentsize;
        let p_type = u32_at(bytes, at)?;
        let p_offset = u64_at(bytes, at + 8)?;
        let p_vaddr = u64_at(bytes, at + 16)?;
        let p_paddr = u64_at(bytes, at + 24)?;
        let p_filesz = u64_at(bytes, at + 32)?;
        let p_memsz = u64_at(bytes, at + 40)?;
        match p_type {
            PT_LOAD if p_vaddr >= kernel_text_map => header.kernel_text_loads += 1,
            PT_LOAD if p_memsz > 0 => header
                .memory
                .push(MemRange::new(p_paddr, p_paddr + p_memsz - 1)),
            PT_NOTE => {
                header.note_segments += 1;
                count_notes(bytes, p_offset as usize, p_filesz as usize, &mut header)?;
            }
            _ => {}
        }
    }
    header.memory.sort();
    Ok(header)
}

fn align4(n: usize) -> usize {
    (n + 3) & !3
}

fn count_notes(
    bytes: &[u8],
    offset: usize,
    size: usize,
    header: &mut DumpHeader,
) -> Result<(), String> {
    let end = offset + size;
    if end > bytes.len() {
        return Err(format!(
            "note segment {offset}+{size} lies past the {} bytes read",
            bytes.len()
        ));
    }
    let mut at = offset;
    while at + 12 <= end {
        let namesz = u32_at(bytes, at)? as usize;
        let descsz = u32_at(bytes, at + 4)? as usize;
        let kind = u32_at(bytes, at + 8)?;
        if namesz == 0 {
            break;
        }
        let name = bytes
            .get(at + 12..at + 12 + namesz)
            .ok_or("note name truncated")?;
        let name = name.strip_suffix(b"\0").unwrap_or(name);
        match (name, kind) {
            (b"CORE", NT_PRSTATUS) => header.cpu_notes += 1,
            (b"VMCOREINFO", _) => header.vmcoreinfo = true,
            _ => {}
        }
        at += 12 + align4(namesz) + align4(descsz);
    }
    Ok(())
}

/// Decodes standard base64 (busybox `base64` output), ignoring line breaks.
pub fn base64_decode(text: &str) -> Result<Vec<u8>, String> {
    fn value(c: u8) -> Option<u32> {
        match c {
            b'A'..=b'Z' => Some((c - b'A') as u32),
            b'a'..=b'z' => Some((c - b'a') as u32 + 26),
            b'0'..=b'9' => Some((c - b'0') as u32 + 52),
            b'+' => Some(62),
            b'/' => Some(63),
            _ => None,
        }
    }
    let mut out = Vec::with_capacity(text.len() * 3 / 4);
    let (mut buffer, mut bits) = (0u32, 0u32);
    for c in text.bytes().filter(|c| !c.is_ascii_whitespace()) {
        if c == b'=' {
            break;
        }
        let v = value(c).ok_or_else(|| format!("not base64: {:?}", c as char))?;
        buffer = (buffer << 6) | v;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((buffer >> bits) as u8);
            buffer &= (1 << bits) - 1;
        }
    }
    Ok(out)
}

/// The bytes of `expected` that no range of `actual` covers, as ranges.
pub fn uncovered(expected: &[MemRange], actual: &[MemRange]) -> Vec<MemRange> {
    let mut missing = Vec::new();
    for range in expected {
        let mut cursor = range.start;
        let mut covering: Vec<&MemRange> = actual
            .iter()
            .filter(|a| a.end >= range.start && a.start <= range.end)
            .collect();
        covering.sort();
        for cover in covering {
            if cover.start > cursor {
                missing.push(MemRange::new(cursor, cover.start - 1));
            }
            cursor = cursor.max(cover.end.saturating_add(1));
            if cursor > range.end {
                break;
            }
        }
        if cursor <= range.end {
            missing.push(MemRange::new(cursor, range.end));
        }
    }
    missing
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_round_trip_of_a_known_string() {
        assert_eq!(
            base64_decode("aGVsbG8g\nd29ybGQ=\n").unwrap(),
            b"hello world"
        );
    }

    /// An ELF64 header with the given machine and PT_LOADs (vaddr, paddr, memsz), no notes.
    fn core_file(machine: u16, loads: &[(u64, u64, u64)]) -> Vec<u8> {
        let mut bytes = vec![0u8; 64];
        bytes[0..4].copy_from_slice(b"\x7fELF");
        bytes[4] = 2;
        bytes[5] = 1;
        bytes[0x12..0x14].copy_from_slice(&machine.to_le_bytes());
        bytes[0x20..0x28].copy_from_slice(&64u64.to_le_bytes());
        bytes[0x36..0x38].copy_from_slice(&56u16.to_le_bytes());
        bytes[0x38..0x3a].copy_from_slice(&(loads.len() as u16).to_le_bytes());
        for &(vaddr, paddr, memsz) in loads {
            let mut phdr = vec![0u8; 56];
            phdr[0..4].copy_from_slice(&PT_LOAD.to_le_bytes());
            phdr[16..24].copy_from_slice(&vaddr.to_le_bytes());
            phdr[24..32].copy_from_slice(&paddr.to_le_bytes());
            phdr[32..40].copy_from_slice(&memsz.to_le_bytes());
            phdr[40..48].copy_from_slice(&memsz.to_le_bytes());
            bytes.extend(phdr);
        }
        bytes
    }

    #[test]
    fn kernel_text_mapping_is_told_apart_per_machine() {
        // arm64: linear map at 0xffff_0000_…, kernel image at 0xffff_8000_…+KASLR.
        let arm64 = core_file(
            EM_AARCH64,
            &[
                (0xffff_8000_8800_0000, 0x4020_0000, 0x200_0000),
                (0xffff_0000_0000_0000, 0x4000_0000, 0x8000_0000),
            ],
        );
        let header = parse(&arm64).unwrap();
        assert_eq!(header.kernel_text_loads, 1);
        assert_eq!(header.memory, vec![MemRange::new(0x4000_0000, 0xbfff_ffff)]);
        // x86_64: the linear map at 0xffff_8880_… lies above arm64's boundary and is memory there.
        let x86 = core_file(
            EM_X86_64,
            &[
                (0xffff_ffff_8100_0000, 0x100_0000, 0x200_0000),
                (0xffff_8880_0010_0000, 0x10_0000, 0x7ff0_0000),
            ],
        );
        let header = parse(&x86).unwrap();
        assert_eq!(header.kernel_text_loads, 1);
        assert_eq!(header.memory, vec![MemRange::new(0x10_0000, 0x7fff_ffff)]);
        assert!(
            parse(&core_file(40, &[])).is_err(),
            "ARM (32-bit) is refused"
        );
    }

    #[test]
    fn uncovered_finds_holes_and_tails() {
        let expected = [MemRange::new(0, 99), MemRange::new(200, 299)];
        let actual = [MemRange::new(0, 49), MemRange::new(60, 99)];
        assert_eq!(
            uncovered(&expected, &actual),
            vec![MemRange::new(50, 59), MemRange::new(200, 299)]
        );
    }
}

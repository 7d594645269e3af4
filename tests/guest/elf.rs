//! The crash dump's ELF header as the crash kernel shows it in `/proc/vmcore`: program headers and CPU notes.
//!
//! In the crash kernel, `fs/proc/vmcore.c` keeps every PT_LOAD's `p_paddr` and `p_memsz` from the header the
//! first kernel prepared (only `p_offset` is rewritten) and merges all PT_NOTE segments into one, dropping the
//! empty per-CPU notes of CPUs that never saved their registers. So the PT_LOADs are the memory the dump
//! holds, and the NT_PRSTATUS notes are the CPUs that were online at the crash.

use base64::Engine as _;
use kdump_hotplugd::core::model::MemRange;
use object::elf::{FileHeader64, EM_AARCH64, EM_X86_64, NT_PRSTATUS, PT_LOAD, PT_NOTE};
use object::read::elf::{FileHeader as _, ProgramHeader as _};
use object::LittleEndian;

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

/// Parses the start of `/proc/vmcore` (at least the headers and the note segment) with the `object` crate's
/// ELF reader: an x86_64 dump is little-endian ELF64.
pub fn parse(bytes: &[u8]) -> Result<DumpHeader, String> {
    let elf = FileHeader64::<LittleEndian>::parse(bytes).map_err(|e| {
        format!("/proc/vmcore does not start with a little-endian ELF64 header: {e}")
    })?;
    let endian = elf.endian().map_err(|e| format!("/proc/vmcore: {e}"))?;
    let kernel_text_map = match elf.e_machine(endian) {
        EM_X86_64 => X86_64_KERNEL_TEXT_MAP,
        EM_AARCH64 => AARCH64_KERNEL_TEXT_MAP,
        other => {
            return Err(format!(
                "ELF machine {}: neither x86_64 nor aarch64",
                other.0
            ))
        }
    };
    let mut header = DumpHeader::default();
    let segments = elf
        .program_headers(endian, bytes)
        .map_err(|e| format!("/proc/vmcore program headers: {e}"))?;
    for segment in segments {
        let (vaddr, paddr, memsz) = (
            segment.p_vaddr(endian),
            segment.p_paddr(endian),
            segment.p_memsz(endian),
        );
        match segment.p_type(endian) {
            PT_LOAD if vaddr >= kernel_text_map => header.kernel_text_loads += 1,
            PT_LOAD if memsz > 0 => header.memory.push(MemRange::new(paddr, paddr + memsz - 1)),
            PT_NOTE => {
                header.note_segments += 1;
                let mut notes = segment
                    .notes(endian, bytes)
                    .map_err(|e| {
                        format!("/proc/vmcore note segment (read enough of the file?): {e}")
                    })?
                    .ok_or("a PT_NOTE segment without notes")?;
                while let Some(note) = notes
                    .next()
                    .map_err(|e| format!("/proc/vmcore note: {e}"))?
                {
                    match (note.name(), note.n_type(endian)) {
                        (b"CORE", NT_PRSTATUS) => header.cpu_notes += 1,
                        (b"VMCOREINFO", _) => header.vmcoreinfo = true,
                        _ => {}
                    }
                }
            }
            _ => {}
        }
    }
    header.memory.sort();
    Ok(header)
}

/// Decodes standard base64 (busybox `base64` output, wrapped in lines).
pub fn base64_decode(text: &str) -> Result<Vec<u8>, String> {
    let joined: String = text.split_ascii_whitespace().collect();
    base64::engine::general_purpose::STANDARD
        .decode(joined)
        .map_err(|e| format!("not base64: {e}"))
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
    fn base64_lines_decode() {
        assert_eq!(
            base64_decode("aGVsbG8g\nd29ybGQ=\n").unwrap(),
            b"hello world"
        );
        assert!(base64_decode("not*base64").is_err());
    }

    /// The reader on a real ELF64 file, this test binary: loadable segments, a note segment, no CPU notes.
    #[test]
    fn parse_reads_a_real_elf_file() {
        let bytes = std::fs::read("/proc/self/exe").unwrap();
        let header = parse(&bytes).unwrap();
        assert!(!header.memory.is_empty(), "{header:?}");
        assert!(header.note_segments >= 1, "{header:?}");
        assert_eq!((header.cpu_notes, header.vmcoreinfo), (0, false));
        assert!(parse(b"\x7fELF not really").is_err());
        assert!(parse(b"#!/bin/sh").is_err());
    }

    /// An ELF64 header with the given machine and PT_LOADs (vaddr, paddr, memsz), no notes.
    fn core_file(machine: object::elf::Machine, loads: &[(u64, u64, u64)]) -> Vec<u8> {
        let mut bytes = vec![0u8; 64];
        bytes[0..4].copy_from_slice(b"\x7fELF");
        bytes[4] = 2; // ELFCLASS64
        bytes[5] = 1; // ELFDATA2LSB
        bytes[6] = 1; // EV_CURRENT, which a reader checks
        bytes[0x12..0x14].copy_from_slice(&machine.0.to_le_bytes());
        bytes[0x20..0x28].copy_from_slice(&64u64.to_le_bytes());
        bytes[0x36..0x38].copy_from_slice(&56u16.to_le_bytes());
        bytes[0x38..0x3a].copy_from_slice(&(loads.len() as u16).to_le_bytes());
        for &(vaddr, paddr, memsz) in loads {
            let mut phdr = vec![0u8; 56];
            phdr[0..4].copy_from_slice(&PT_LOAD.0.to_le_bytes());
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
            parse(&core_file(object::elf::Machine(40), &[])).is_err(),
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

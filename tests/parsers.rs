//! Property tests for every parser (arbitrary bytes, grammar-shaped noise, mutated real files) and for the crash
//! range computation against a literal model of the kernel's algorithm.

#[path = "fixtures/sparse_host.rs"]
mod sparse_host;

use std::path::PathBuf;

use kdump_hotplugd::core::model::{CpuSet, MemRange};
use kdump_hotplugd::core::parse::iomem::{self, Resource};
use kdump_hotplugd::core::parse::{cpulist, sysfs, ParseError};
use kdump_hotplugd::core::ranges::{crash_ranges, LOW_MEMORY_END};
use proptest::prelude::*;
use proptest::sample::Index;

const FILE: &str = "/test/file";

/// A parser reduced to one shape: `Ok(())` or the error.
type AnyParser = fn(&str) -> Result<(), ParseError>;

/// Every parser, by name.
fn parsers() -> Vec<(&'static str, AnyParser)> {
    vec![
        ("iomem", |t| iomem::parse(FILE, t).map(drop)),
        ("cpulist", |t| cpulist::parse(FILE, t).map(drop)),
        ("flag", |t| sysfs::parse_flag(FILE, t).map(drop)),
        ("decimal", |t| sysfs::parse_decimal(FILE, t).map(drop)),
        ("hex", |t| sysfs::parse_hex(FILE, t).map(drop)),
        ("memory state", |t| {
            sysfs::parse_memory_state(FILE, t).map(drop)
        }),
    ]
}

/// Runs every parser on `text`; each error must name the file and a line that exists (line 1 for empty input).
fn check_all_parsers(text: &str) -> Result<(), TestCaseError> {
    let last_line = text.lines().count().max(1);
    for (name, parse) in parsers() {
        if let Err(e) = parse(text) {
            prop_assert_eq!(&e.file, FILE, "{}", name);
            prop_assert!(
                (1..=last_line).contains(&e.line),
                "{}: line {} outside 1..={} for {:?}: {}",
                name,
                e.line,
                last_line,
                text,
                e
            );
            prop_assert!(!e.message.is_empty(), "{}", name);
        }
    }
    Ok(())
}

fn fixture_text(path: &str) -> String {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(path);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Real files the mutation test starts from.
fn seeds() -> Vec<String> {
    vec![
        fixture_text("small-vm/proc/iomem"),
        fixture_text("no-kexec/proc/iomem"),
        fixture_text("self-updating/proc/iomem"),
        fixture_text("hidden-addresses/proc/iomem"),
        "0-3,8,10-11\n".into(),
        "\n".into(),
        "1\n".into(),
        "462448\n".into(),
        "8000000\n".into(),
        "online\n".into(),
    ]
}

#[derive(Clone, Debug)]
enum Mutation {
    Delete(Index),
    Insert(Index, u8),
    Replace(Index, u8),
    /// Duplicates a slice, e.g. a whole line, somewhere else.
    Splice(Index, Index, Index),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    // Bytes that matter to the grammars are likelier than the rest.
    let byte = prop_oneof![
        prop::sample::select(b" -:\n,0189afAFgx()\r\t".to_vec()),
        any::<u8>(),
    ];
    prop_oneof![
        any::<Index>().prop_map(Mutation::Delete),
        (any::<Index>(), byte.clone()).prop_map(|(i, b)| Mutation::Insert(i, b)),
        (any::<Index>(), byte).prop_map(|(i, b)| Mutation::Replace(i, b)),
        (any::<Index>(), any::<Index>(), any::<Index>())
            .prop_map(|(a, b, c)| Mutation::Splice(a, b, c)),
    ]
}

fn mutate(seed: &str, mutations: &[Mutation]) -> String {
    let mut bytes = seed.as_bytes().to_vec();
    for m in mutations {
        let len = bytes.len();
        match *m {
            Mutation::Delete(i) if len > 0 => {
                bytes.remove(i.index(len));
            }
            Mutation::Insert(i, b) => bytes.insert(i.index(len + 1), b),
            Mutation::Replace(i, b) if len > 0 => bytes[i.index(len)] = b,
            Mutation::Splice(from, to, at) if len > 0 => {
                let (a, b) = (from.index(len), to.index(len));
                let piece = bytes[a.min(b)..=a.max(b)].to_vec();
                let at = at.index(len + 1);
                bytes.splice(at..at, piece);
            }
            _ => {}
        }
    }
    String::from_utf8_lossy(&bytes).into_owned()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_never_panic_and_errors_name_a_real_line(bytes in prop::collection::vec(any::<u8>(), 0..400)) {
        check_all_parsers(&String::from_utf8_lossy(&bytes))?;
    }

    #[test]
    fn grammar_shaped_noise_never_panics(text in "[0-9a-fA-F :,()\\-\n]{0,200}") {
        check_all_parsers(&text)?;
    }

    #[test]
    fn mutated_real_files_never_panic(
        seed in prop::sample::select(seeds()),
        mutations in prop::collection::vec(mutation(), 1..8),
    ) {
        check_all_parsers(&mutate(&seed, &mutations))?;
    }

    #[test]
    fn parsed_iomem_is_well_formed(text in "([ ]{0,4}[0-9a-f]{1,3}-[0-9a-f]{1,3} : [A-Za-z ()]{0,12}\n){0,12}") {
        if let Ok(resources) = iomem::parse(FILE, &text) {
            let mut previous_depth: Option<usize> = None;
            for r in &resources {
                prop_assert!(r.start <= r.end);
                prop_assert!(r.depth <= previous_depth.map_or(0, |d| d + 1));
                previous_depth = Some(r.depth);
            }
            // Every range this parser accepts, crash_ranges must handle.
            let ranges = crash_ranges(&resources, &[]);
            prop_assert!(ranges.windows(2).all(|w| w[0].end < w[1].start));
        }
    }

    #[test]
    fn formatted_iomem_trees_parse_back(tree in iomem_tree()) {
        let text: String = tree
            .iter()
            .map(|r| format!("{:indent$}{:08x}-{:08x} : {}\n", "", r.start, r.end, r.name, indent = 2 * r.depth))
            .collect();
        prop_assert_eq!(iomem::parse(FILE, &text).unwrap(), tree);
    }

    #[test]
    fn cpulists_round_trip_through_the_kernel_format(ids in prop::collection::btree_set(0u32..300, 0..60)) {
        let set = CpuSet(ids);
        prop_assert_eq!(cpulist::parse(FILE, &format!("{set}\n")).unwrap(), set);
    }

    #[test]
    fn sysfs_numbers_round_trip(value in any::<u64>()) {
        prop_assert_eq!(sysfs::parse_decimal(FILE, &format!("{value}\n")).unwrap(), value);
        prop_assert_eq!(sysfs::parse_hex(FILE, &format!("{value:x}\n")).unwrap(), value);
    }

    #[test]
    fn crash_ranges_match_the_kernels_algorithm(
        ram in prop::collection::vec((0u64..64, 1u64..8), 0..12),
        crash in prop::collection::vec((0u64..72, 1u64..12), 0..4),
        cma in prop::collection::vec((0u64..72, 1u64..12), 0..3),
        nest_crash_under_ram in any::<bool>(),
    ) {
        // Addresses in 256 KiB units, so the low 1 MiB cut and the crash reservations all interact.
        const UNIT: u64 = 256 << 10;
        let mut resources = Vec::new();
        let mut next_free = 0;
        let mut walked = Vec::new();
        for (gap, length) in ram {
            let start = next_free + gap;
            let end = start + length - 1;
            next_free = end + 1;
            resources.push(Resource { start: start * UNIT, end: (end + 1) * UNIT - 1, depth: 0, name: "System RAM".into() });
            walked.push(MemRange::new(start * UNIT, (end + 1) * UNIT - 1));
        }
        let mut exclusions = vec![(0, LOW_MEMORY_END)];
        for (start, length) in crash {
            let (start, end) = (start * UNIT, (start + length) * UNIT - 1);
            let depth = usize::from(nest_crash_under_ram && !resources.is_empty());
            resources.push(Resource { start, end, depth, name: "Crash kernel".into() });
            exclusions.push((start, end));
        }
        // Crash CMA ranges come last, one crash_exclude_mem_range each (`elf_header_exclude_ranges`).
        let cma: Vec<MemRange> = cma
            .into_iter()
            .map(|(start, length)| MemRange::new(start * UNIT, (start + length) * UNIT - 1))
            .collect();
        exclusions.extend(cma.iter().map(|r| (r.start, r.end)));
        let mut expected = walked;
        for (start, end) in exclusions {
            kernel_crash_exclude_mem_range(&mut expected, start, end);
        }
        prop_assert_eq!(crash_ranges(&resources, &cma), expected);
    }
}

/// A literal transcription of the kernel's `crash_exclude_mem_range` (`kernel/crash_core.c`), as the model the
/// optimised subtraction in `ranges.rs` must agree with: drop a range that is fully covered, split one cut in the
/// middle (the second half right after the first), otherwise trim the covered end.
fn kernel_crash_exclude_mem_range(ranges: &mut Vec<MemRange>, mstart: u64, mend: u64) {
    let mut i = 0;
    while i < ranges.len() {
        let MemRange { start, end } = ranges[i];
        if mstart > end || mend < start {
            i += 1;
            continue;
        }
        let p_start = mstart.max(start);
        let p_end = mend.min(end);
        if p_start == start && p_end == end {
            ranges.remove(i);
            continue;
        }
        if p_start > start && p_end < end {
            ranges[i].end = p_start - 1;
            ranges.insert(i + 1, MemRange::new(p_end + 1, end));
            i += 1;
        } else if p_start != start {
            ranges[i].end = p_start - 1;
        } else {
            ranges[i].start = p_end + 1;
        }
        i += 1;
    }
}

/// Random iomem-shaped resource lists: ascending, disjoint, depth rising by at most one per line.
fn iomem_tree() -> impl Strategy<Value = Vec<Resource>> {
    let name = "[A-Za-z][A-Za-z0-9 :()._-]{0,20}";
    prop::collection::vec((1u64..0x1000, 0u64..0x1000, 0usize..3, name), 1..40).prop_map(|nodes| {
        let mut tree: Vec<Resource> = Vec::new();
        let mut cursor = 0u64;
        for (gap, length, depth_hint, name) in nodes {
            let depth = depth_hint.min(tree.last().map_or(0, |r: &Resource| r.depth + 1));
            let start = cursor + gap;
            let end = start + length;
            cursor = end + 1;
            tree.push(Resource {
                start,
                end,
                depth,
                name: name.trim_end().to_string(),
            });
        }
        tree
    })
}

#[test]
fn parses_64k_lines_into_one_range_each() {
    // How long this takes is measured by the benchmarks (benches/), not asserted here.
    let host = sparse_host::SparseHost {
        plugged_blocks: 64 * 1024,
        virtio_memory_dirs: 0,
    };
    let text = host.files().remove("proc/iomem").unwrap();
    assert!(text.lines().count() > 64 * 1024);
    let resources = iomem::parse("/proc/iomem", &text).unwrap();
    assert_eq!(crash_ranges(&resources, &[]).len(), 3 + 64 * 1024);
}

#[test]
fn every_fixture_iomem_parses() {
    for fixture in [
        "small-vm",
        "sparse-host",
        "self-updating",
        "no-kexec",
        "not-loaded",
        "hidden-addresses",
    ] {
        let text = fixture_text(&format!("{fixture}/proc/iomem"));
        let resources =
            iomem::parse("/proc/iomem", &text).unwrap_or_else(|e| panic!("{fixture}: {e}"));
        assert_eq!(resources.len(), text.lines().count(), "{fixture}");
    }
}

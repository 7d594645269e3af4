//! The reservation check: does the running kernel's `crashkernel=` range expression, evaluated at the memory
//! present now, select more than is reserved? A guest booted small and grown by hotplug keeps its boot-time
//! reservation; the crash kernel may then not fit, or not boot, in it.
//!
//! The rules are the kernel's (kernel/crash_reserve.c, earlier kernel/crash_core.c):
//! - `get_last_crashkernel()`: the LAST `crashkernel=` on the command line without a `,high`, `,low` or `,cma`
//!   suffix is the one used (the suffixed forms are fixed sizes, not range expressions);
//! - `__parse_crashkernel()`: a `:` before the first space means the range syntax
//!   `start-[end]:size[,start-[end]:size…][@offset]`, anything else the fixed `size[@offset]`;
//! - `parse_crashkernel_mem()`: the memory is rounded up to 128 MiB ("firmware sometimes reserves some memory
//!   regions for its own use"), the first range with `start <= memory < end` (no end: unbounded) gives the
//!   size, a size not below the rounded memory is invalid (`-EINVAL`: nothing is reserved), no match is 0;
//! - `memparse()` (lib/cmdline.c): `simple_strtoull(…, 0)` (so `0x` hex and a leading `0` octal) and a
//!   `K`/`M`/`G`/`T`/`P`/`E` suffix, either case.
//!
//! The kernel evaluates it once, at boot, against `memblock_phys_mem_size()` (x86 `arch_reserve_crashkernel`):
//! the RAM the firmware reported. Here it is evaluated against the System RAM present now
//! ([`crate::core::ranges::system_ram_bytes`]): what a boot with this much memory would select. The reservation
//! is fixed at boot; only a reboot with the memory present at boot applies the larger size (memory that the
//! hypervisor plugs again after boot, such as virtio-mem, is added too late for it).

use std::fmt;

use serde::Serialize;

use crate::core::cmdline;
use crate::core::model::HostSnapshot;

const MIB: u64 = 1 << 20;
/// `parse_crashkernel_mem()` rounds the memory up to this (`SZ_128M`).
const TOTAL_MEM_ALIGN: u64 = 128 * MIB;

/// One `start-[end]:size` entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Tier {
    pub start: u64,
    /// `None`: `start-:size`, up to the top.
    pub end: Option<u64>,
    pub size: u64,
}

/// A `crashkernel=` range expression.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct RangeExpression {
    pub tiers: Vec<Tier>,
    pub offset: Option<u64>,
}

/// `memparse()`: a number in C's base-0 notation and an optional binary suffix. Returns the value and the rest.
fn memparse(text: &str) -> Option<(u64, &str)> {
    let (digits_start, radix) = if let Some(hex) = text
        .strip_prefix("0x")
        .or_else(|| text.strip_prefix("0X"))
        .filter(|rest| rest.starts_with(|c: char| c.is_ascii_hexdigit()))
    {
        (text.len() - hex.len(), 16)
    } else if text.starts_with('0') {
        (0, 8)
    } else {
        (0, 10)
    };
    let body = &text[digits_start..];
    let end = body
        .find(|c: char| !c.is_digit(radix))
        .unwrap_or(body.len());
    if end == 0 {
        return None;
    }
    let mut value = u64::from_str_radix(&body[..end], radix).ok()?;
    let mut rest = &body[end..];
    let shift = match rest.chars().next() {
        Some('K' | 'k') => 10,
        Some('M' | 'm') => 20,
        Some('G' | 'g') => 30,
        Some('T' | 't') => 40,
        Some('P' | 'p') => 50,
        Some('E' | 'e') => 60,
        _ => 0,
    };
    if shift > 0 {
        value = value.checked_mul(1 << shift)?;
        rest = &rest[1..];
    }
    Some((value, rest))
}

impl RangeExpression {
    /// Parses the value of `crashkernel=` in the range syntax, as `parse_crashkernel_mem()` reads it.
    pub fn parse(value: &str) -> Result<Self, String> {
        let mut tiers = Vec::new();
        let mut cur = value;
        loop {
            let (start, rest) = memparse(cur).ok_or("memory value expected")?;
            let rest = rest.strip_prefix('-').ok_or("'-' expected")?;
            let (end, rest) = if rest.starts_with(':') {
                (None, rest)
            } else {
                let (end, rest) = memparse(rest).ok_or("memory value expected")?;
                if end <= start {
                    return Err("end <= start".into());
                }
                (Some(end), rest)
            };
            let rest = rest.strip_prefix(':').ok_or("':' expected")?;
            let (size, rest) = memparse(rest).ok_or("memory value expected")?;
            tiers.push(Tier { start, end, size });
            match rest.strip_prefix(',') {
                Some(next) => cur = next,
                None => {
                    cur = rest;
                    break;
                }
            }
        }
        // After the list, the kernel skips to an `@` (or the end of the word) for the offset.
        let offset = match cur.find('@') {
            Some(at) => Some(
                memparse(&cur[at + 1..])
                    .ok_or("memory value expected after '@'")?
                    .0,
            ),
            None => None,
        };
        Ok(RangeExpression { tiers, offset })
    }

    /// The size the kernel selects for `system_ram` bytes: `Ok(0)` when no tier matches, `Err` for a size the
    /// kernel refuses ("crashkernel: invalid size").
    pub fn select(&self, system_ram: u64) -> Result<u64, String> {
        let total = system_ram.div_ceil(TOTAL_MEM_ALIGN) * TOTAL_MEM_ALIGN;
        for tier in &self.tiers {
            if tier.size >= total {
                return Err(format!(
                    "size {} is not below the memory ({})",
                    Bytes(tier.size),
                    Bytes(total)
                ));
            }
            if total >= tier.start && tier.end.is_none_or(|end| total < end) {
                return Ok(tier.size);
            }
        }
        Ok(0)
    }
}

/// The `crashkernel=` value the kernel uses: the last one without a known suffix (`get_last_crashkernel()`).
/// Words are the kernel's (`next_arg()`); the kernel itself searches the raw line with `strstr`, which only
/// differs for a name that merely ends in `crashkernel=`.
pub fn crashkernel_value(line: &str) -> Option<String> {
    cmdline::Cmdline::parse(line)
        .kernel_args()
        .iter()
        .filter(|word| word.name() == "crashkernel")
        .filter_map(|word| word.value())
        .filter(|value| ![",high", ",low", ",cma"].iter().any(|s| value.ends_with(s)))
        .last()
        .map(str::to_owned)
}

/// What the check found.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case", tag = "verdict")]
pub enum Verdict {
    /// No command line, no `crashkernel=`, or a fixed size: there is nothing that depends on memory.
    NothingToEvaluate { why: String },
    /// The range expression does not parse as the kernel parses it (it would reserve nothing at boot).
    Unparsable { expression: String, error: String },
    /// `kexec_crash_size` could not be read (EBUSY while the kexec lock is held, or absent).
    ReservedUnknown {
        expression: String,
        memory: u64,
        selects: u64,
    },
    /// The reservation is at least what the expression selects now.
    Sufficient {
        expression: String,
        memory: u64,
        selects: u64,
        reserved: u64,
    },
    /// The expression selects more now than is reserved: a reboot with this memory would reserve more.
    TooSmall {
        expression: String,
        memory: u64,
        selects: u64,
        reserved: u64,
    },
}

/// A distribution tool's published size rule, and what it gives here.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Recommendation {
    /// Who recommends it, e.g. `Fedora kdump-utils`.
    pub by: &'static str,
    /// Where the rule is written, for the reader to check.
    pub source: &'static str,
    pub rule: &'static str,
    /// What the rule selects for the memory present now (0: none).
    pub selects: u64,
}

/// The verdict, with the distribution's recommendation when it publishes one.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Reservation {
    #[serde(flatten)]
    pub verdict: Verdict,
    pub distro_recommendation: Option<Recommendation>,
}

/// A distribution's published rule (a `crashkernel=` range expression).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DistroRule {
    pub by: &'static str,
    pub source: &'static str,
    pub rule: &'static str,
}

/// Fedora, RHEL and their rebuilds: kdump-utils' x86_64 default, `kdumpctl get-default-crashkernel`
/// (rhkdump/kdump-utils, kdump-lib.sh, `kdump_get_arch_recommend_crashkernel`). The tool adds 64M when SME/SEV
/// memory encryption is active, which is not detected here.
pub const FEDORA_KDUMP_UTILS: DistroRule = DistroRule {
    by: "Fedora kdump-utils",
    source:
        "kdump-utils kdump-lib.sh kdump_get_arch_recommend_crashkernel (x86_64; +64M with SME/SEV)",
    rule: "2G-64G:256M,64G-:512M",
};

/// The rule for a distribution, from `/etc/os-release`'s `ID` and `ID_LIKE` words. Only Fedora's tooling
/// publishes a rule as an expression; Debian's kdump-tools and SUSE's kdump size it otherwise.
pub fn distro_rule(ids: &[String]) -> Option<DistroRule> {
    let fedora_like = ["fedora", "rhel", "centos", "rocky", "almalinux"];
    ids.iter()
        .any(|id| fedora_like.contains(&id.as_str()))
        .then_some(FEDORA_KDUMP_UTILS)
}

/// The check for plain values: the running command line, the System RAM present now, the bytes reserved.
pub fn check(
    cmdline: Option<&str>,
    memory: u64,
    reserved: Option<u64>,
    distro: Option<DistroRule>,
) -> Reservation {
    let distro_recommendation = distro.and_then(|rule| {
        let selects = RangeExpression::parse(rule.rule)
            .ok()?
            .select(memory)
            .ok()?;
        Some(Recommendation {
            by: rule.by,
            source: rule.source,
            rule: rule.rule,
            selects,
        })
    });
    Reservation {
        verdict: verdict(cmdline, memory, reserved),
        distro_recommendation,
    }
}

fn verdict(cmdline: Option<&str>, memory: u64, reserved: Option<u64>) -> Verdict {
    let nothing = |why: &str| Verdict::NothingToEvaluate { why: why.into() };
    let Some(line) = cmdline else {
        return nothing("no kernel command line");
    };
    let Some(expression) = crashkernel_value(line) else {
        return nothing("no crashkernel= (or only ,high/,low/,cma sizes)");
    };
    // `__parse_crashkernel()`: the range syntax has a ':' before any space.
    if !expression.contains(':') {
        return nothing("crashkernel= is a fixed size, not a range expression");
    }
    if memory == 0 {
        return nothing("the memory size is not known (addresses hidden)");
    }
    let parsed = RangeExpression::parse(&expression).and_then(|e| e.select(memory));
    let selects = match parsed {
        Ok(selects) => selects,
        Err(error) => return Verdict::Unparsable { expression, error },
    };
    match reserved {
        None => Verdict::ReservedUnknown {
            expression,
            memory,
            selects,
        },
        Some(reserved) if selects > reserved => Verdict::TooSmall {
            expression,
            memory,
            selects,
            reserved,
        },
        Some(reserved) => Verdict::Sufficient {
            expression,
            memory,
            selects,
            reserved,
        },
    }
}

/// The check for a snapshot, with the distribution's rule when known.
pub fn of_snapshot(snapshot: &HostSnapshot) -> Reservation {
    check(
        snapshot.kernel_cmdline.as_deref(),
        snapshot.system_ram_bytes,
        snapshot.crash.reserved_bytes,
        distro_rule(&snapshot.distro_ids),
    )
}

impl Reservation {
    /// The warning, when the expression now selects more than is reserved: empty otherwise.
    pub fn warning(&self) -> Option<String> {
        let Verdict::TooSmall {
            expression,
            memory,
            selects,
            reserved,
        } = &self.verdict
        else {
            return None;
        };
        let mut text = format!(
            "crashkernel={expression} selects {} for the {} of memory present now, but {} is reserved (chosen \
             at boot); a reboot with this memory present at boot applies it",
            Bytes(*selects),
            Bytes(*memory),
            Bytes(*reserved)
        );
        if let Some(r) = &self.distro_recommendation {
            text.push_str(&format!(
                "; {} recommends {} here ({})",
                r.by,
                Bytes(r.selects),
                r.rule
            ));
        }
        Some(text)
    }

    /// What the expression selects now; 0 when nothing was evaluated.
    pub fn selects(&self) -> u64 {
        match &self.verdict {
            Verdict::ReservedUnknown { selects, .. }
            | Verdict::Sufficient { selects, .. }
            | Verdict::TooSmall { selects, .. } => *selects,
            Verdict::NothingToEvaluate { .. } | Verdict::Unparsable { .. } => 0,
        }
    }
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Verdict::NothingToEvaluate { why } => write!(f, "nothing to evaluate: {why}"),
            Verdict::Unparsable { expression, error } => {
                write!(f, "crashkernel={expression} does not parse: {error}")
            }
            Verdict::ReservedUnknown {
                expression,
                memory,
                selects,
            } => write!(
                f,
                "crashkernel={expression} selects {} for {}; the reserved size is unreadable",
                Bytes(*selects),
                Bytes(*memory)
            ),
            Verdict::Sufficient {
                expression,
                memory,
                selects,
                reserved,
            } => write!(
                f,
                "crashkernel={expression} selects {} for {}; {} is reserved: enough",
                Bytes(*selects),
                Bytes(*memory),
                Bytes(*reserved)
            ),
            Verdict::TooSmall {
                expression,
                memory,
                selects,
                reserved,
            } => write!(
                f,
                "crashkernel={expression} selects {} for {}; only {} is reserved",
                Bytes(*selects),
                Bytes(*memory),
                Bytes(*reserved)
            ),
        }
    }
}

/// Bytes for people: whole MiB below 10 GiB, else GiB with one decimal.
struct Bytes(u64);

impl fmt::Display for Bytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let gib = 1u64 << 30;
        if self.0 >= 10 * gib {
            write!(f, "{:.1} GiB", self.0 as f64 / gib as f64)
        } else {
            write!(f, "{} MiB", self.0 / MIB)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GIB: u64 = 1 << 30;
    const TIERED: &str = "1G-4G:192M,4G-64G:256M,64G-:512M";

    #[test]
    fn memparse_is_the_kernels() {
        assert_eq!(memparse("192M,"), Some((192 * MIB, ",")));
        assert_eq!(memparse("0x1000k"), Some((0x1000 << 10, "")));
        assert_eq!(memparse("010G"), Some((8 * GIB, "")));
        assert_eq!(memparse("4g-"), Some((4 * GIB, "-")));
        assert_eq!(memparse("M"), None);
        assert_eq!(memparse(""), None);
    }

    #[test]
    fn tiers_select_as_parse_crashkernel_mem_does() {
        let e = RangeExpression::parse(TIERED).unwrap();
        assert_eq!(e.tiers.len(), 3);
        assert_eq!(e.tiers[2].end, None);
        // Below the first tier: nothing. But every tier the kernel reads before a match must be smaller than
        // the memory: at 512 MiB the last tier's 512M is "invalid size" before anything matches.
        assert_eq!(e.select(768 * MIB), Ok(0));
        assert!(e.select(512 * MIB).is_err());
        // 2 GiB minus firmware holes rounds up to 2 GiB: 192M. Exactly 4 GiB belongs to the second tier.
        assert_eq!(e.select(2 * GIB - 5 * MIB), Ok(192 * MIB));
        assert_eq!(e.select(4 * GIB), Ok(256 * MIB));
        // 4 GiB less a little rounds up to 4 GiB too: the rounding moves hosts up a tier.
        assert_eq!(e.select(4 * GIB - 100 * MIB), Ok(256 * MIB));
        assert_eq!(e.select(128 * GIB), Ok(512 * MIB));
        assert_eq!(e.select(u64::MAX / 2), Ok(512 * MIB));
        // A size not below the memory is refused.
        assert!(RangeExpression::parse("0-:2G")
            .unwrap()
            .select(GIB)
            .is_err());
    }

    #[test]
    fn offsets_and_malformed_expressions() {
        let e = RangeExpression::parse("512M-2G:64M,2G-:128M@16M").unwrap();
        assert_eq!(e.offset, Some(16 * MIB));
        assert_eq!(e.select(3 * GIB), Ok(128 * MIB));
        for bad in [
            "1G:192M",
            "1G-4G192M",
            "4G-1G:192M",
            "1G-4G:",
            "-4G:1M",
            "1G-:1M@x",
        ] {
            assert!(RangeExpression::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_last_unsuffixed_crashkernel_word_is_used() {
        assert_eq!(
            crashkernel_value("ro crashkernel=128M crashkernel=1G-:256M crashkernel=512M,high"),
            Some("1G-:256M".into())
        );
        assert_eq!(
            crashkernel_value("crashkernel=1G,cma crashkernel=256M,low"),
            None
        );
        assert_eq!(crashkernel_value("ro quiet"), None);
        // After `--` the words are init's.
        assert_eq!(crashkernel_value("ro -- crashkernel=1G-:256M"), None);
    }

    #[test]
    fn a_host_grown_past_its_tier_is_warned_with_the_size() {
        let line = format!("BOOT_IMAGE=/vmlinuz root=/dev/vda crashkernel={TIERED}");
        let r = check(Some(&line), 126 * GIB, Some(192 * MIB), None);
        assert_eq!(
            r.verdict,
            Verdict::TooSmall {
                expression: TIERED.into(),
                memory: 126 * GIB,
                selects: 512 * MIB,
                reserved: 192 * MIB
            }
        );
        let warning = r.warning().expect("warned");
        assert!(warning.contains("selects 512 MiB"), "{warning}");
        assert!(warning.contains("192 MiB is reserved"), "{warning}");
        assert!(warning.contains("reboot"), "{warning}");
        assert_eq!(r.selects(), 512 * MIB);
        // At the memory it booted with, it was enough.
        let r = check(Some(&line), 2 * GIB, Some(192 * MIB), None);
        assert!(matches!(r.verdict, Verdict::Sufficient { .. }), "{r:?}");
        assert_eq!(r.warning(), None);
    }

    #[test]
    fn nothing_to_evaluate_is_never_a_warning() {
        for line in [
            "root=/dev/vda crashkernel=256M",
            "root=/dev/vda",
            "crashkernel=512M,high crashkernel=128M,low",
            "crashkernel=256M@16M",
        ] {
            let r = check(Some(line), 512 * GIB, Some(256 * MIB), None);
            assert!(
                matches!(r.verdict, Verdict::NothingToEvaluate { .. }),
                "{line}: {r:?}"
            );
            assert_eq!(r.warning(), None, "{line}");
        }
        assert!(matches!(
            check(None, GIB, None, None).verdict,
            Verdict::NothingToEvaluate { .. }
        ));
        // Unparsable and unreadable sizes are reported, not warned.
        let r = check(Some("crashkernel=1G-4G:"), 8 * GIB, Some(0), None);
        assert!(matches!(r.verdict, Verdict::Unparsable { .. }), "{r:?}");
        assert_eq!(r.warning(), None);
        let r = check(Some("crashkernel=1G-:256M"), 8 * GIB, None, None);
        assert!(matches!(r.verdict, Verdict::ReservedUnknown { .. }));
        assert_eq!(r.warning(), None);
    }

    #[test]
    fn fedora_like_hosts_get_kdump_utils_recommendation() {
        let ids = |list: &[&str]| list.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(distro_rule(&ids(&["fedora"])), Some(FEDORA_KDUMP_UTILS));
        assert_eq!(
            distro_rule(&ids(&["almalinux", "rhel", "centos", "fedora"])),
            Some(FEDORA_KDUMP_UTILS)
        );
        assert_eq!(distro_rule(&ids(&["debian"])), None);
        assert_eq!(distro_rule(&ids(&[])), None);
        let r = check(
            Some(&format!("crashkernel={TIERED}")),
            126 * GIB,
            Some(192 * MIB),
            Some(FEDORA_KDUMP_UTILS),
        );
        let recommendation = r.distro_recommendation.clone().expect("fedora");
        assert_eq!(recommendation.selects, 512 * MIB);
        assert!(r
            .warning()
            .unwrap()
            .contains("Fedora kdump-utils recommends 512 MiB here (2G-64G:256M,64G-:512M)"));
        // Below 2 GiB Fedora's rule reserves nothing.
        let small = check(None, GIB, None, Some(FEDORA_KDUMP_UTILS));
        assert_eq!(small.distro_recommendation.map(|r| r.selects), Some(0));
    }
}

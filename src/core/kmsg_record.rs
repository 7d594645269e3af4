//! The kernel log lines that say its in-place crash header update failed. The update is silent to userspace:
//! `crash_hotplug` keeps reading 1 and only `/dev/kmsg` tells (kernel/crash_core.c, arch/x86/kernel/crash.c,
//! arch/powerpc/kexec/crash.c; all these messages carry the `crash hp: ` prefix from their `pr_fmt`).

use serde::Serialize;

/// One `/dev/kmsg` record: `prio,seq,usec,flags[,…];text` (Documentation/ABI/testing/dev-kmsg).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KmsgRecord<'a> {
    /// syslog facility (`prio >> 3`): 0 only for the kernel's own messages. Userspace writing to /dev/kmsg
    /// gets LOG_USER or the facility it asks for, never 0 (kernel/printk/printk.c, `devkmsg_write`).
    pub facility: u32,
    pub sequence: u64,
    pub text: &'a str,
}

impl KmsgRecord<'_> {
    /// Logged by the kernel itself, not written into /dev/kmsg by a process (journald's ForwardToKMsg=,
    /// early-boot services, this daemon's own log lines quoting a kernel message).
    pub fn from_kernel(&self) -> bool {
        self.facility == 0
    }
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("malformed kmsg record: {0}")]
pub struct MalformedRecord(pub &'static str);

/// Parses one record as read from `/dev/kmsg` (one `read()` returns one record).
pub fn parse_record(record: &str) -> Result<KmsgRecord<'_>, MalformedRecord> {
    let (prefix, rest) = record.split_once(';').ok_or(MalformedRecord("no ';'"))?;
    let mut fields = prefix.split(',');
    let priority: u32 = fields
        .next()
        .and_then(|p| p.parse().ok())
        .ok_or(MalformedRecord("no priority"))?;
    let sequence = fields
        .next()
        .and_then(|s| s.parse().ok())
        .ok_or(MalformedRecord("no sequence number"))?;
    // Continuation lines (" KEY=value") carry device metadata, not message text.
    let text = rest.split('\n').next().unwrap_or("");
    Ok(KmsgRecord {
        facility: priority >> 3,
        sequence,
        text,
    })
}

/// What a kernel log line says about the crash header.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case", tag = "kind")]
pub enum KernelFinding {
    /// The rebuilt header did not fit the buffer sized at load time; the old header stays
    /// (x86: "update elfcorehdr elfsz %lu > memsz %lu").
    BufferOverflow {
        elfsz: Option<u64>,
        memsz: Option<u64>,
        line: String,
    },
    /// The update was skipped because the kexec lock was held ("kexec_trylock() failed, kdump image may be
    /// inaccurate"; older kernels: "elfcorehdr may be inaccurate"): `crash_handle_hotplug_event()` returns without
    /// touching the header, so it is stale and a reload is needed. The same line comes from a contended read of
    /// `crash_hotplug` (`crash_check_hotplug_support()`), which changed nothing; the two cannot be told apart,
    /// and a reload costs less than a dump that misses memory, so both count as a failed update.
    Skipped { line: String },
    /// The update failed for another reason ("unable to create new elfcorehdr", "mapping elfcorehdr segment
    /// failed", …).
    Failed { line: String },
}

impl KernelFinding {
    pub fn line(&self) -> &str {
        match self {
            KernelFinding::BufferOverflow { line, .. }
            | KernelFinding::Skipped { line }
            | KernelFinding::Failed { line } => line,
        }
    }
}

fn number_after(text: &str, word: &str) -> Option<u64> {
    let rest = &text[text.find(word)? + word.len()..];
    let digits: String = rest
        .trim_start()
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    digits.parse().ok()
}

/// Classifies one kernel log message; `None` for anything unrelated.
pub fn classify(text: &str) -> Option<KernelFinding> {
    let at = text.find("crash hp:")?;
    let message = text[at..].trim_end();
    let line = message.to_owned();
    if message.contains("elfsz") && message.contains("memsz") && message.contains('>') {
        return Some(KernelFinding::BufferOverflow {
            elfsz: number_after(message, "elfsz"),
            memsz: number_after(message, "memsz"),
            line,
        });
    }
    if message.contains("may be inaccurate") || message.contains("kexec_trylock") {
        return Some(KernelFinding::Skipped { line });
    }
    let failure_words = [
        "unable to",
        "failed",
        "fail to",
        "error",
        "too large",
        "cannot",
    ];
    if failure_words.iter().any(|w| message.contains(w)) {
        return Some(KernelFinding::Failed { line });
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn x86_overflow_line_is_a_buffer_overflow() {
        let record =
            parse_record("3,1742,5119820,-;crash hp: update elfcorehdr elfsz 8192 > memsz 4096\n")
                .unwrap();
        assert_eq!(record.sequence, 1742);
        assert_eq!(
            classify(record.text),
            Some(KernelFinding::BufferOverflow {
                elfsz: Some(8192),
                memsz: Some(4096),
                line: "crash hp: update elfcorehdr elfsz 8192 > memsz 4096".into()
            })
        );
    }

    #[test]
    fn lock_contention_and_other_failures() {
        assert!(matches!(
            classify("crash hp: kexec_trylock() failed, kdump image may be inaccurate"),
            Some(KernelFinding::Skipped { .. })
        ));
        assert!(matches!(
            classify("crash hp: kexec_trylock() failed, elfcorehdr may be inaccurate"),
            Some(KernelFinding::Skipped { .. })
        ));
        assert!(matches!(
            classify("crash hp: unable to create new elfcorehdr"),
            Some(KernelFinding::Failed { .. })
        ));
        assert!(matches!(
            classify("crash hp: mapping elfcorehdr segment failed"),
            Some(KernelFinding::Failed { .. })
        ));
    }

    #[test]
    fn ordinary_lines_are_not_findings() {
        assert_eq!(
            classify("crash hp: hp_action 1, cpu 4294967295, mem 48"),
            None
        );
        assert_eq!(
            classify("virtio_mem virtio0: plugged size: 0x100000000"),
            None
        );
        let record =
            parse_record("6,12,345,-;Memory block 40 onlined\n SUBSYSTEM=memory\n").unwrap();
        assert_eq!(record.text, "Memory block 40 onlined");
    }

    #[test]
    fn kernel_records_are_told_from_userspace_ones() {
        assert!(parse_record("3,1,2,-;crash hp: x\n").unwrap().from_kernel());
        // "<3>" written by a process: LOG_USER (1 << 3 | 3).
        assert!(!parse_record("11,1,2,-;crash hp: x\n")
            .unwrap()
            .from_kernel());
        assert!(!parse_record("30,1,2,-;crash hp: x\n")
            .unwrap()
            .from_kernel());
    }

    #[test]
    fn malformed_records_are_errors() {
        assert!(parse_record("no separator").is_err());
        assert!(parse_record("6;text").is_err());
        assert!(parse_record("6,x,1,-;text").is_err());
        assert!(parse_record("x,1,1,-;text").is_err());
    }

    proptest! {
        #[test]
        fn arbitrary_records_never_panic(s in "\\PC{0,200}") {
            if let Ok(record) = parse_record(&s) {
                let _ = classify(record.text);
            }
            let _ = classify(&s);
        }
    }
}

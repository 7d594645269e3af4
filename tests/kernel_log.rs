//! The `/dev/kmsg` watcher on a fixture stream in the kmsg record format (`prio,seq,usec,flags;text`, with
//! ` KEY=value` continuation lines), fed through a pipe the way `/dev/kmsg` is read: non-blocking, polled.
//! The fixture also holds a userspace record quoting a kernel line (facility LOG_DAEMON, as journald's
//! ForwardToKMsg= would write this daemon's own log): it must not count.
//!
//! The fixture's kernel lines are ones the kernel prints, at the level it prints them: virtio_mem's probe
//! (`virtio_mem_init`, dev_info with its device metadata), x86's refused in-place update
//! (`arch_crash_handle_hotplug_event` in arch/x86/kernel/crash.c, pr_err; the sizes as the guest tier's small
//! kernel logged them), the lock contention (`crash_handle_hotplug_event` in kernel/crash_core.c, pr_info) and a
//! failed rebuild (pr_err).

use std::io::Write;
use std::time::Duration;

use kdump_hotplugd::core::kmsg_record::KernelFinding;
use kdump_hotplugd::daemon::Event;
use kdump_hotplugd::edge::kmsg_reader::{read_all, KernelLog};
use kdump_hotplugd::messages::KernelLogSender;
use tokio::sync::mpsc;

#[path = "common/precondition.rs"]
mod precondition;

const FIXTURE: &str = "tests/fixtures/kmsg/hotplug-overflow.txt";

fn expected() -> Vec<KernelFinding> {
    vec![
        // As the guest tier's small kernel logged it (docs/README-guest.md): both sizes are whole pages.
        KernelFinding::BufferOverflow {
            elfsz: Some(8192),
            memsz: Some(4096),
            line: "crash hp: update elfcorehdr elfsz 8192 > memsz 4096".into(),
        },
        KernelFinding::Skipped {
            line: "crash hp: kexec_trylock() failed, kdump image may be inaccurate".into(),
        },
        KernelFinding::Failed {
            line: "crash hp: unable to create new elfcorehdr".into(),
        },
    ]
}

#[tokio::test]
async fn findings_from_a_pipe_arrive_as_kernel_log_events() {
    let fixture = std::fs::read(FIXTURE).unwrap();
    let (read_end, write_end) = nix::unistd::pipe().unwrap();
    let log = KernelLog::from_fd(read_end).unwrap();
    let (tx, mut rx) = mpsc::channel(16);
    let follower = tokio::spawn(log.follow(KernelLogSender::new(tx)));
    // Split inside the overflow record: the reader must join partial lines across reads.
    let mut writer = std::fs::File::from(write_end);
    let inside = fixture.windows(5).position(|w| w == b"elfsz").unwrap();
    let (first, rest) = fixture.split_at(inside);
    writer.write_all(first).unwrap();
    writer.flush().unwrap();
    writer.write_all(rest).unwrap();
    drop(writer);
    let mut findings = Vec::new();
    tokio::time::timeout(Duration::from_secs(20), async {
        while let Some(event) = rx.recv().await {
            match event {
                Event::KernelLog(finding) => findings.push(finding),
                other => panic!("unexpected {other:?}"),
            }
        }
    })
    .await
    .expect("the watcher did not finish at end of stream");
    follower.await.unwrap();
    assert_eq!(findings, expected());
}

#[test]
fn a_fixture_file_reads_the_same() {
    let findings = read_all(std::fs::File::open(FIXTURE).unwrap()).unwrap();
    assert_eq!(findings, expected());
}

/// The real `/dev/kmsg`: opened at its end, a record logged afterwards arrives and nothing older does. The
/// record is written by the test itself (root may write to /dev/kmsg) and says it is a test.
#[tokio::test]
async fn dev_kmsg_delivers_only_new_records() {
    let path = std::path::Path::new("/dev/kmsg");
    // Userspace cannot log as the kernel, so the test's own record is let through on purpose.
    let log = match KernelLog::open(path) {
        Ok(log) => log.accepting_userspace(),
        Err(error) => {
            return precondition::missing(format!(
                "/dev/kmsg is not readable here (run as root, outside a container that hides it): {error}"
            ))
        }
    };
    let marker = format!(
        "crash hp: unable to create new elfcorehdr (kdump-hotplugd test {}, not a real failure)",
        std::process::id()
    );
    let (tx, mut rx) = mpsc::channel(16);
    let follower = tokio::spawn(log.follow(KernelLogSender::new(tx)));
    if let Err(error) = std::fs::OpenOptions::new()
        .write(true)
        .open(path)
        .and_then(|mut kmsg| kmsg.write_all(format!("<6>{marker}\n").as_bytes()))
    {
        follower.abort();
        return precondition::missing(format!(
            "cannot write a test record to /dev/kmsg (run as root): {error}"
        ));
    }
    let first = tokio::time::timeout(Duration::from_secs(20), rx.recv())
        .await
        .expect("the test record did not arrive");
    follower.abort();
    match first {
        Some(Event::KernelLog(KernelFinding::Failed { line })) => assert_eq!(line, marker),
        other => panic!("expected the test record first, got {other:?}"),
    }
}

//! Follows the kernel log for its failed in-place header updates (only `/dev/kmsg` tells: `crash_hotplug` keeps
//! reading 1). Opened at start and positioned at the end, so only messages logged while the daemon runs count.
//!
//! One `read()` of `/dev/kmsg` returns exactly one record; a pipe or file (fixtures) returns many at once. The
//! reader splits on newlines either way: continuation lines (` KEY=value`) start with a space and are skipped.

use std::io::Read;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::path::Path;

use nix::fcntl::{fcntl, FcntlArg, OFlag};

use crate::core::kmsg_record::{classify, parse_record, KernelFinding};
use crate::messages::KernelLogSender;

/// `/dev/kmsg` records are at most 8 KiB (CONSOLE_EXT_LOG_MAX); a smaller buffer makes read() fail EINVAL.
const RECORD_BUFFER: usize = 16 * 1024;

/// Splits raw bytes into complete lines, keeping a partial last line for the next read.
#[derive(Default)]
pub struct RecordSplitter {
    pending: Vec<u8>,
    /// Also classify records a process wrote into the log (tests of the real /dev/kmsg can only write those).
    accept_userspace: bool,
}

impl RecordSplitter {
    /// Feeds bytes, returns the findings of every complete record line in them.
    pub fn feed(&mut self, bytes: &[u8]) -> Vec<KernelFinding> {
        self.pending.extend_from_slice(bytes);
        let mut findings = Vec::new();
        let mut consumed = 0;
        while let Some(end) = self.pending[consumed..].iter().position(|&b| b == b'\n') {
            let line = &self.pending[consumed..consumed + end];
            consumed += end + 1;
            if line.first() == Some(&b' ') {
                continue;
            }
            let text = String::from_utf8_lossy(line);
            match parse_record(&text) {
                // Only the kernel's own lines count: a process quoting one (this daemon's log forwarded by
                // journald, say) must not trigger a reload.
                Ok(record) if record.from_kernel() || self.accept_userspace => {
                    findings.extend(classify(record.text))
                }
                Ok(_) => {}
                Err(error) => tracing::debug!(%error, "skipping kernel log record"),
            }
        }
        self.pending.drain(..consumed);
        findings
    }
}

/// A kernel log stream: `/dev/kmsg`, or any readable fd (a fixture file or pipe).
pub struct KernelLog {
    fd: OwnedFd,
    accept_userspace: bool,
}

struct Fd(OwnedFd);

impl AsRawFd for Fd {
    fn as_raw_fd(&self) -> RawFd {
        self.0.as_raw_fd()
    }
}

impl KernelLog {
    /// Opens `/dev/kmsg` (or the file at `path`) and seeks to its end: only new messages.
    pub fn open(path: &Path) -> std::io::Result<Self> {
        use std::io::Seek;
        let mut file = std::fs::File::open(path)?;
        // /dev/kmsg: SEEK_END moves to the record after the newest one.
        file.seek(std::io::SeekFrom::End(0))?;
        Self::from_fd(file.into())
    }

    /// Reads `fd` from where it is (fixtures: from the start).
    pub fn from_fd(fd: OwnedFd) -> std::io::Result<Self> {
        let flags = OFlag::from_bits_truncate(fcntl(fd.as_raw_fd(), FcntlArg::F_GETFL)?);
        fcntl(fd.as_raw_fd(), FcntlArg::F_SETFL(flags | OFlag::O_NONBLOCK))?;
        Ok(Self {
            fd,
            accept_userspace: false,
        })
    }

    /// Also report lines written into the log by processes (tests only: userspace cannot log as the kernel).
    pub fn accepting_userspace(mut self) -> Self {
        self.accept_userspace = true;
        self
    }

    /// Sends one finding at a time until end of stream, an error, or the channel closes.
    pub async fn follow(self, events: KernelLogSender) {
        let fd = match super::register_readable(Fd(self.fd)) {
            Ok(fd) => fd,
            Err(error) => {
                // epoll refuses regular files (EPERM): those go through read_all.
                tracing::warn!(%error, "cannot watch the kernel log");
                return;
            }
        };
        let mut splitter = RecordSplitter {
            accept_userspace: self.accept_userspace,
            ..RecordSplitter::default()
        };
        let mut buffer = vec![0u8; RECORD_BUFFER];
        loop {
            let mut guard = match fd.readable().await {
                Ok(guard) => guard,
                Err(error) => {
                    tracing::warn!(%error, "kernel log watch stopped");
                    return;
                }
            };
            let mut findings = Vec::new();
            let mut finished = false;
            loop {
                match nix::unistd::read(guard.get_inner().as_raw_fd(), &mut buffer) {
                    Ok(0) => {
                        finished = true;
                        break;
                    }
                    Ok(n) => findings.extend(splitter.feed(&buffer[..n])),
                    Err(nix::errno::Errno::EAGAIN) => {
                        guard.clear_ready();
                        break;
                    }
                    // Records were overwritten before we read them (the ring buffer wrapped): go on.
                    Err(nix::errno::Errno::EPIPE) | Err(nix::errno::Errno::EINTR) => {}
                    Err(error) => {
                        tracing::warn!(%error, "reading the kernel log failed; watch stopped");
                        finished = true;
                        break;
                    }
                }
            }
            for finding in findings {
                if events.finding(finding).await.is_err() {
                    return;
                }
            }
            if finished {
                return;
            }
        }
    }
}

/// Reads a whole stream synchronously (fixtures, and regular files epoll refuses).
pub fn read_all(mut reader: impl Read) -> std::io::Result<Vec<KernelFinding>> {
    let mut splitter = RecordSplitter::default();
    let mut buffer = vec![0u8; RECORD_BUFFER];
    let mut findings = Vec::new();
    loop {
        let n = reader.read(&mut buffer)?;
        if n == 0 {
            return Ok(findings);
        }
        findings.extend(splitter.feed(&buffer[..n]));
    }
}

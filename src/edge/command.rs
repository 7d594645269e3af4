//! Delegation: run the distribution's own kdump tool (or any configured command) to reload, with a timeout,
//! its output captured into the log and the load report.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use crate::edge::{BoxFuture, LoadError, LoadReport, LoadRequest, Loader};
use crate::host::sysroot::Sysroot;

/// Captured output kept in the report: the tail is what says why a tool failed.
const DETAIL_LIMIT: usize = 4096;

/// The distributions' tools, in the order they are looked for: (program, arguments).
pub const KNOWN_TOOLS: &[(&str, &[&str])] = &[
    // Fedora, RHEL, CentOS (kdump-utils)
    ("kdumpctl", &["reload"]),
    // Debian, Ubuntu (kdump-tools)
    ("kdump-config", &["reload"]),
    // SUSE (kdump)
    ("kdumptool", &["load"]),
];

const SEARCH_DIRS: &[&str] = &["/usr/sbin", "/usr/bin", "/sbin", "/bin"];

/// The first known tool installed under the sysroot, as an argv with the program's absolute path.
pub fn detect(sysroot: &Sysroot) -> Option<Vec<String>> {
    for (program, args) in KNOWN_TOOLS {
        for dir in SEARCH_DIRS {
            let path = format!("{dir}/{program}");
            if sysroot.exists(&path) {
                let mut argv = vec![path];
                argv.extend(args.iter().map(|a| (*a).to_owned()));
                return Some(argv);
            }
        }
    }
    None
}

/// What a failure message quotes of the output: enough for a tool's explanation, short enough for a status line.
const MESSAGE_LIMIT: usize = 600;

/// The last `limit` bytes of `text` (on a character boundary).
fn tail_chars(text: &str, limit: usize) -> &str {
    if text.len() <= limit {
        return text;
    }
    let mut start = text.len() - limit;
    while !text.is_char_boundary(start) {
        start += 1;
    }
    &text[start..]
}

fn tail(text: &str) -> &str {
    tail_chars(text.trim(), DETAIL_LIMIT)
}

/// Captured output kept per stream while a command runs: a tool that loops printing cannot make the daemon
/// grow. What is beyond it is dropped from the front (the tail says why a tool failed) and the report says so.
const CAPTURE_LIMIT: usize = 64 * 1024;

/// The last [`CAPTURE_LIMIT`] bytes of one output stream, and how many came before them.
#[derive(Default)]
struct Tail {
    bytes: Vec<u8>,
    dropped: u64,
}

impl Tail {
    fn push(&mut self, chunk: &[u8], limit: usize) {
        self.bytes.extend_from_slice(chunk);
        // Trimmed in steps of at least `limit`, so a stream of small writes does not move the buffer each time.
        if self.bytes.len() > 2 * limit {
            let excess = self.bytes.len() - limit;
            self.bytes.drain(..excess);
            self.dropped += excess as u64;
        }
    }

    fn finish(mut self, limit: usize) -> Self {
        if self.bytes.len() > limit {
            let excess = self.bytes.len() - limit;
            self.bytes.drain(..excess);
            self.dropped += excess as u64;
        }
        self
    }
}

/// Reads `stream` to its end, keeping the tail.
async fn capture(stream: Option<impl tokio::io::AsyncRead + Unpin>, limit: usize) -> Tail {
    use tokio::io::AsyncReadExt;
    let mut tail = Tail::default();
    let Some(mut stream) = stream else {
        return tail;
    };
    let mut buffer = [0u8; 8192];
    loop {
        match stream.read(&mut buffer).await {
            Ok(0) | Err(_) => break,
            Ok(n) => tail.push(&buffer[..n], limit),
        }
    }
    tail.finish(limit)
}

/// Kills the command's whole process group unless disarmed: on the timeout, and when the reload is cancelled
/// (the future dropped). `kill_on_drop` alone reaches only the direct child, and a `kexec` it started would
/// keep the kexec lock, so every retry would fail with EBUSY.
struct GroupKiller {
    group: Option<nix::unistd::Pid>,
}

impl GroupKiller {
    fn kill(&mut self) {
        if let Some(group) = self.group.take() {
            // ESRCH: every member is already gone.
            let _ = nix::sys::signal::killpg(group, nix::sys::signal::Signal::SIGKILL);
        }
    }
}

impl Drop for GroupKiller {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Runs `command` to completion or until `timeout` (then kills its process group), returning its combined
/// output. `line` names it in messages. The child does not inherit NOTIFY_SOCKET: its notifications are not the
/// daemon's. It leads a process group of its own (`setpgid(0, 0)` before exec), so its children and theirs can
/// be killed with it.
pub(crate) async fn run(
    command: tokio::process::Command,
    line: &str,
    timeout: Duration,
) -> Result<String, LoadError> {
    run_bounded(command, line, timeout, CAPTURE_LIMIT).await
}

async fn run_bounded(
    mut command: tokio::process::Command,
    line: &str,
    timeout: Duration,
    capture_limit: usize,
) -> Result<String, LoadError> {
    command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .env_remove("NOTIFY_SOCKET")
        .env_remove("WATCHDOG_USEC")
        .env_remove("WATCHDOG_PID")
        .process_group(0)
        .kill_on_drop(true);
    tracing::info!(command = %line, "running");
    let mut child = command.spawn().map_err(|e| LoadError {
        message: format!("cannot run {line}: {e}"),
        retry: false,
    })?;
    // The group's id is the child's pid (process_group(0)); it stays taken while any member lives.
    let mut killer = GroupKiller {
        group: child
            .id()
            .and_then(|pid| i32::try_from(pid).ok())
            .map(nix::unistd::Pid::from_raw),
    };
    let stdout = child.stdout.take();
    let stderr = child.stderr.take();
    let finished = tokio::time::timeout(timeout, async {
        tokio::join!(
            child.wait(),
            capture(stdout, capture_limit),
            capture(stderr, capture_limit)
        )
    })
    .await;
    let (status, stdout, stderr) = match finished {
        Ok((Ok(status), stdout, stderr)) => (status, stdout, stderr),
        Ok((Err(e), _, _)) => {
            return Err(LoadError {
                message: format!("{line}: {e}"),
                retry: true,
            })
        }
        Err(_) => {
            killer.kill();
            // The direct child too, should the group be gone already (it cannot have left it: it is its leader).
            let _ = child.start_kill();
            // Reaped here, so no zombie is left for the next attempt to trip over.
            let _ = child.wait().await;
            return Err(LoadError {
                message: format!(
                    "{line}: killed after {} ms (with its process group)",
                    timeout.as_millis()
                ),
                retry: true,
            });
        }
    };
    // Exited and its output closed: whatever else it started and left behind is its own business.
    killer.group = None;
    let mut text = String::from_utf8_lossy(&stdout.bytes).trim_end().to_owned();
    let stderr_text = String::from_utf8_lossy(&stderr.bytes);
    if !stderr_text.trim().is_empty() {
        if !text.is_empty() {
            text.push('\n');
        }
        text.push_str(stderr_text.trim_end());
    }
    let mut detail = tail(&text).to_owned();
    if stdout.dropped > 0 || stderr.dropped > 0 {
        let note = format!(
            "[output truncated: the first {} bytes of stdout and {} of stderr were not kept, only the last {} KiB \
             of each]",
            stdout.dropped,
            stderr.dropped,
            capture_limit / 1024
        );
        tracing::warn!(command = %line, "{note}");
        detail = format!("{note}\n{detail}");
    }
    for output_line in detail.lines() {
        tracing::info!(command = %line, "{output_line}");
    }
    if status.success() {
        Ok(detail)
    } else {
        let said: Vec<&str> = detail
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .collect();
        let said = said.join("; ");
        Err(LoadError {
            message: format!(
                "{line} failed ({}){}{}",
                status,
                if said.is_empty() { "" } else { ": " },
                tail_chars(&said, MESSAGE_LIMIT)
            ),
            // The tool's own failures (bad config, no reservation) do not heal by themselves, but a tool
            // racing another kexec user does: retry with backoff.
            retry: true,
        })
    }
}

/// Runs an argv as the reload.
pub struct CommandLoader {
    argv: Vec<String>,
    timeout: Duration,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error(
    "loader.kind = \"command\" but no command is configured and none of kdumpctl, kdump-config, kdumptool is \
     installed; set loader.command"
)]
pub struct NoCommand;

impl CommandLoader {
    /// The configured argv, or the detected distribution tool.
    pub fn new(
        configured: &[String],
        sysroot: &Sysroot,
        timeout: Duration,
    ) -> Result<Self, NoCommand> {
        let argv = if configured.is_empty() {
            detect(sysroot).ok_or(NoCommand)?
        } else {
            configured.to_vec()
        };
        Ok(Self { argv, timeout })
    }

    pub fn argv(&self) -> &[String] {
        &self.argv
    }
}

impl Loader for CommandLoader {
    fn name(&self) -> String {
        self.argv.join(" ")
    }

    fn load(&self, _request: LoadRequest) -> BoxFuture<Result<LoadReport, LoadError>> {
        let mut command = tokio::process::Command::new(PathBuf::from(&self.argv[0]));
        command.args(&self.argv[1..]);
        let line = self.name();
        let timeout = self.timeout;
        Box::pin(async move {
            let detail = run(command, &line, timeout).await?;
            Ok(LoadReport {
                loader: line,
                detail,
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::decide::LoaderChoice;
    use std::sync::Arc;

    fn request() -> LoadRequest {
        LoadRequest {
            ranges: Arc::new(Vec::new()),
            cpus: Default::default(),
            method: LoaderChoice::Configured,
            reason: "test".into(),
        }
    }

    fn sh(script: &str, timeout: Duration) -> CommandLoader {
        let argv = vec!["/bin/sh".to_owned(), "-c".to_owned(), script.to_owned()];
        CommandLoader::new(&argv, &Sysroot::new("/nonexistent"), timeout).unwrap()
    }

    #[test]
    fn detects_the_distribution_tool_under_the_sysroot() {
        let dir = tempfile::tempdir().unwrap();
        let root = Sysroot::new(dir.path());
        assert_eq!(detect(&root), None);
        assert_eq!(
            CommandLoader::new(&[], &root, Duration::from_secs(1)).err(),
            Some(NoCommand)
        );
        std::fs::create_dir_all(dir.path().join("usr/sbin")).unwrap();
        std::fs::write(dir.path().join("usr/sbin/kdump-config"), "").unwrap();
        assert_eq!(
            detect(&root),
            Some(vec![
                "/usr/sbin/kdump-config".to_owned(),
                "reload".to_owned()
            ])
        );
        std::fs::write(dir.path().join("usr/sbin/kdumpctl"), "").unwrap();
        assert_eq!(detect(&root).unwrap(), ["/usr/sbin/kdumpctl", "reload"]);
    }

    #[tokio::test]
    async fn output_is_captured_into_the_report() {
        let loader = sh("echo loaded; echo note >&2", Duration::from_secs(30));
        let report = loader.load(request()).await.unwrap();
        assert_eq!(report.detail, "loaded\nnote");
        assert!(report.loader.starts_with("/bin/sh -c"));
    }

    #[tokio::test]
    async fn failure_names_the_status_and_quotes_the_output() {
        let loader = sh(
            "echo first; echo 'no memory reserved' >&2; exit 3",
            Duration::from_secs(30),
        );
        let error = loader.load(request()).await.unwrap_err();
        assert!(
            error.message.contains("exit status: 3"),
            "{}",
            error.message
        );
        assert!(
            error.message.ends_with(": first; no memory reserved"),
            "{}",
            error.message
        );
    }

    // Paused time: the runtime jumps to the deadline as soon as it only waits for the child.
    #[tokio::test(start_paused = true)]
    async fn a_hanging_command_is_killed_at_the_timeout() {
        let loader = sh("exec sleep 600", Duration::from_millis(200));
        let error = loader.load(request()).await.unwrap_err();
        assert!(
            error.message.contains("killed after 200 ms"),
            "{}",
            error.message
        );
        assert!(error.retry);
    }

    /// `pid`'s command name and state letter from `/proc/PID/stat` ("PID (comm) STATE …"), if it exists.
    fn proc_state(pid: u32) -> Option<(String, char)> {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        let (head, rest) = stat.rsplit_once(") ")?;
        let comm = head.split_once(" (")?.1.to_owned();
        Some((comm, rest.chars().next()?))
    }

    /// Alive: it exists and is not a zombie waiting for its reaper (whatever it runs: killed between fork and
    /// exec it would still be the shell).
    fn alive(pid: u32) -> bool {
        proc_state(pid).is_some_and(|(_, state)| !matches!(state, 'Z' | 'X'))
    }

    /// Polls until `pid` is gone, or the deadline; whether it went.
    async fn gone_within(pid: u32, deadline: Duration) -> bool {
        let until = std::time::Instant::now() + deadline;
        while std::time::Instant::now() < until {
            if !alive(pid) {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        !alive(pid)
    }

    /// Polls until `pid` runs `sleep` (the script's `&` forks first, then execs), with a deadline.
    async fn sleeping(pid: u32) {
        let until = std::time::Instant::now() + Duration::from_secs(20);
        while proc_state(pid).is_none_or(|(comm, _)| comm != "sleep") {
            assert!(
                std::time::Instant::now() < until,
                "pid {pid} never ran sleep: {:?}",
                proc_state(pid)
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The pid the script wrote to `file`, waiting for it with a deadline.
    async fn pid_in(file: &std::path::Path) -> u32 {
        let until = std::time::Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(pid) = std::fs::read_to_string(file)
                .ok()
                .and_then(|t| t.trim().parse().ok())
            {
                return pid;
            }
            assert!(
                std::time::Instant::now() < until,
                "the script never wrote {}",
                file.display()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// A shell script that starts a sleeping grandchild (its output elsewhere, so no pipe keeps anything
    /// waiting), writes its pid, and waits for it: a stand-in for a kdump tool whose `kexec` hangs.
    fn grandchild_script(pid_file: &std::path::Path) -> String {
        format!(
            "sleep 600 >/dev/null 2>&1 & echo $! > {}.tmp && mv {0}.tmp {0}; wait",
            pid_file.display()
        )
    }

    // Real time: the grandchild is a real process, and the kill has to reach it.
    #[tokio::test]
    async fn the_timeout_kills_the_grandchildren_too() {
        let dir = tempfile::tempdir().unwrap();
        let pid_file = dir.path().join("grandchild");
        let loader = sh(&grandchild_script(&pid_file), Duration::from_secs(3));
        let error = loader.load(request()).await.unwrap_err();
        assert!(
            error
                .message
                .contains("killed after 3000 ms (with its process group)"),
            "{}",
            error.message
        );
        let grandchild = pid_in(&pid_file).await;
        assert!(
            gone_within(grandchild, Duration::from_secs(10)).await,
            "the grandchild sleep (pid {grandchild}) outlived the timeout"
        );
    }

    #[tokio::test]
    async fn a_cancelled_reload_kills_the_grandchildren_too() {
        let dir = tempfile::tempdir().unwrap();
        let pid_file = dir.path().join("grandchild");
        let loader = sh(&grandchild_script(&pid_file), Duration::from_secs(600));
        let reload = tokio::spawn(loader.load(request()));
        let grandchild = pid_in(&pid_file).await;
        sleeping(grandchild).await;
        reload.abort();
        assert!(reload.await.unwrap_err().is_cancelled());
        assert!(
            gone_within(grandchild, Duration::from_secs(10)).await,
            "the grandchild sleep (pid {grandchild}) outlived the cancelled reload"
        );
    }

    #[tokio::test]
    async fn captured_output_is_bounded_and_says_it_was_truncated() {
        // 100 lines of 100 bytes on stdout, then the line that says why; 10 bytes on stderr.
        let script = "i=0; while [ $i -lt 100 ]; do printf '%099d\\n' $i; i=$((i+1)); done; \
                      echo 'the end'; echo 'a warning' >&2";
        let mut command = tokio::process::Command::new("/bin/sh");
        command.args(["-c", script]);
        let detail = run_bounded(command, "script", Duration::from_secs(30), 1024)
            .await
            .unwrap();
        let stdout_bytes = 100 * 100 + "the end\n".len();
        assert_eq!(
            detail.lines().next().unwrap(),
            format!(
                "[output truncated: the first {} bytes of stdout and 0 of stderr were not kept, only the last 1 \
                 KiB of each]",
                stdout_bytes - 1024
            )
        );
        assert!(detail.ends_with("the end\na warning"), "{detail}");
        // What was kept: the note, then the last 1 KiB of stdout (its final newline trimmed), then stderr.
        let note = detail.lines().next().unwrap().len();
        assert_eq!(detail.len(), note + 1 + (1024 - 1) + 1 + "a warning".len());
    }

    #[test]
    fn a_tail_keeps_the_last_bytes_and_counts_the_rest() {
        let mut tail = Tail::default();
        for chunk in [b"0123456789".as_slice(); 7] {
            tail.push(chunk, 16);
        }
        let tail = tail.finish(16);
        assert_eq!(tail.bytes, b"4567890123456789");
        assert_eq!(tail.dropped, 70 - 16);
        let short = Tail::default();
        let mut short = short;
        short.push(b"abc", 16);
        let short = short.finish(16);
        assert_eq!(
            (short.bytes.as_slice(), short.dropped),
            (b"abc".as_slice(), 0)
        );
    }

    #[tokio::test]
    async fn a_missing_program_is_a_clear_error() {
        let loader = CommandLoader::new(
            &["/nonexistent/kdumpctl".to_owned()],
            &Sysroot::new("/"),
            Duration::from_secs(1),
        )
        .unwrap();
        let error = loader.load(request()).await.unwrap_err();
        assert!(error
            .message
            .starts_with("cannot run /nonexistent/kdumpctl"));
    }
}

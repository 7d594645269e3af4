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

/// Runs `command` to completion or until `timeout` (then kills it), returning its combined output. `line` names
/// it in messages. The child does not inherit NOTIFY_SOCKET: its notifications are not the daemon's.
pub(crate) async fn run(
    mut command: tokio::process::Command,
    line: &str,
    timeout: Duration,
) -> Result<String, LoadError> {
    command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .env_remove("NOTIFY_SOCKET")
        .env_remove("WATCHDOG_USEC")
        .env_remove("WATCHDOG_PID")
        .kill_on_drop(true);
    tracing::info!(command = %line, "running");
    let child = command.spawn().map_err(|e| LoadError {
        message: format!("cannot run {line}: {e}"),
        retry: false,
    })?;
    let output = match tokio::time::timeout(timeout, child.wait_with_output()).await {
        Ok(Ok(output)) => output,
        Ok(Err(e)) => {
            return Err(LoadError {
                message: format!("{line}: {e}"),
                retry: true,
            })
        }
        // Dropping the future drops the child, which kill_on_drop kills.
        Err(_) => {
            return Err(LoadError {
                message: format!("{line}: killed after {} ms", timeout.as_millis()),
                retry: true,
            })
        }
    };
    let mut text = String::from_utf8_lossy(&output.stdout)
        .trim_end()
        .to_owned();
    let stderr = String::from_utf8_lossy(&output.stderr);
    if !stderr.trim().is_empty() {
        if !text.is_empty() {
            text.push('\n');
        }
        text.push_str(stderr.trim_end());
    }
    let detail = tail(&text).to_owned();
    for output_line in detail.lines() {
        tracing::info!(command = %line, "{output_line}");
    }
    if output.status.success() {
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
                output.status,
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

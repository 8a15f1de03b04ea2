//! Runs one notify command: no shell, no capability, only the environment
//! it is given, stdin from /dev/null, its own process group (so a timeout
//! kills what it started too), output captured up to a bound, a deadline. Returns what happened; it never panics and never
//! waits longer than the deadline plus short graces.

use std::fmt;
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use futures::future::FutureExt;
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::time::Instant;

use super::child::Report;

/// Bytes kept of each of stdout and stderr; the rest is counted, not kept.
pub const CAPTURE: usize = 4096;
/// How long output is still read after the command exited: a process it
/// left in the background may hold the pipe open for ever.
const GRACE: Duration = Duration::from_millis(250);
/// How long a killed group may take to be reaped.
const REAP: Duration = Duration::from_secs(5);

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Status {
    Exited(i32),
    Signaled(i32),
    /// Killed, with its process group, at the deadline.
    TimedOut,
    /// Could not be started (or waited for): the reason.
    Failed(String),
}

impl Status {
    pub fn ok(&self) -> bool {
        *self == Status::Exited(0)
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Status::Exited(c) => write!(f, "exit {c}"),
            Status::Signaled(s) => write!(f, "killed by signal {s}"),
            Status::TimedOut => f.write_str("timed out; process group killed"),
            Status::Failed(why) => write!(f, "failed: {why}"),
        }
    }
}

impl From<ExitStatus> for Status {
    fn from(s: ExitStatus) -> Status {
        use std::os::unix::process::ExitStatusExt;
        match (s.code(), s.signal()) {
            (Some(c), _) => Status::Exited(c),
            (None, Some(sig)) => Status::Signaled(sig),
            (None, None) => Status::Failed(format!("{s}")),
        }
    }
}

/// The first [`CAPTURE`] bytes of a stream and how many more there were.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Captured {
    pub bytes: Vec<u8>,
    pub dropped: usize,
}

impl fmt::Display for Captured {
    /// One line: control characters (newlines too) as spaces.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let text = String::from_utf8_lossy(&self.bytes);
        f.write_str(crate::error::printable(text.trim()).as_str())?;
        if self.dropped > 0 {
            write!(f, " [{} more bytes dropped]", self.dropped)?;
        }
        Ok(())
    }
}

#[derive(Clone, Debug)]
pub struct Outcome {
    pub status: Status,
    pub elapsed: Duration,
    pub stdout: Captured,
    pub stderr: Captured,
}

/// Kills the process group when dropped armed: when the run is abandoned
/// (the task aborted at shutdown) or timed out.
struct Group(Option<i32>);

impl Group {
    fn kill(&mut self) {
        if let Some(pgid) = self.0.take() {
            // SAFETY: kill(2) with a negative pid signals that group only;
            // the leader is not reaped yet, so the group id is still ours.
            unsafe { libc::kill(-pgid, libc::SIGKILL) };
        }
    }

    /// The leader was reaped: its id may be reused, never signal it.
    fn disarm(&mut self) {
        self.0 = None;
    }
}

impl Drop for Group {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Runs `argv` (argv[0] an absolute path) with exactly `env` (nothing of
/// the watcher's own) and no capability, for at most `timeout`.
pub async fn run(argv: &[String], env: &[(String, String)], timeout: Duration) -> Outcome {
    let t0 = Instant::now();
    let failed = |why: String| Outcome {
        status: Status::Failed(why),
        elapsed: t0.elapsed(),
        stdout: Captured::default(),
        stderr: Captured::default(),
    };
    let Some((program, args)) = argv.split_first() else {
        return failed("empty command".into());
    };
    let report = match Report::new() {
        Ok(r) => r,
        Err(e) => return failed(format!("{program}: not started: pipe: {e}")),
    };
    let mut cmd = tokio::process::Command::new(program);
    cmd.args(args)
        .env_clear()
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        // Not the watcher's working directory: nothing to hold mounted.
        .current_dir("/")
        .process_group(0)
        .kill_on_drop(true);
    // SAFETY: the closure makes raw system calls only, as code between
    // fork and execve must (see child.rs); it allocates nothing.
    unsafe { cmd.pre_exec(report.drop_in_child()) };
    // A failed drop fails the spawn: the command never runs privileged.
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => return failed(format!("{program}: {}", report.why(&e))),
    };
    drop(report);
    let mut group = Group(child.id().and_then(|p| i32::try_from(p).ok()));
    let (so, se) = (child.stdout.take(), child.stderr.take());
    let (mut stdout, mut stderr) = (Captured::default(), Captured::default());
    let status = {
        let reading = async {
            tokio::join!(capture(so, &mut stdout), capture(se, &mut stderr));
        };
        let mut reading = std::pin::pin!(reading.fuse());
        // Output is read while waiting, or a chatty command would block on
        // a full pipe and look hung.
        let waited = tokio::time::timeout_at(t0 + timeout, async {
            let mut wait = std::pin::pin!(child.wait());
            loop {
                tokio::select! {
                    s = &mut wait => return s,
                    () = &mut reading => {}
                }
            }
        })
        .await;
        let status = match waited {
            Ok(Ok(s)) => {
                group.disarm();
                Status::from(s)
            }
            Ok(Err(e)) => Status::Failed(format!("wait: {e}")),
            Err(_) => {
                group.kill();
                if let Ok(Ok(_)) = tokio::time::timeout(REAP, child.wait()).await {
                    group.disarm();
                }
                Status::TimedOut
            }
        };
        if !futures::future::FusedFuture::is_terminated(&reading) {
            let _ = tokio::time::timeout(GRACE, &mut reading).await;
        }
        status
    };
    Outcome {
        status,
        elapsed: t0.elapsed(),
        stdout,
        stderr,
    }
}

/// Reads `r` to its end, keeping the first [`CAPTURE`] bytes.
async fn capture(r: Option<impl AsyncRead + Unpin>, into: &mut Captured) {
    let Some(mut r) = r else { return };
    let mut buf = [0u8; 4096];
    loop {
        match r.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => {
                let keep = n.min(CAPTURE - into.bytes.len());
                into.bytes.extend_from_slice(&buf[..keep]);
                into.dropped += n - keep;
            }
        }
    }
}

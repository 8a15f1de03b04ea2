//! The host-wide lock that serializes concurrent runs (Sentinel runs up to
//! 16 scripts at once, and a watcher may run beside them). It only locks.
//!
//! The file lives in the runtime directory, its owner's alone (see
//! `rundir`): a user who could open it could take it and stall every pass
//! (flock needs only a read-only descriptor). And nothing waits for it
//! for ever: [`acquire`] gives up after [`WAIT`] with an error naming the
//! holder, so that the watcher stays alive, logs and counts it, answers
//! the hooks waiting on it (exit 1) and tries again on its next trigger or
//! timer, and a one-shot run exits 1 for Sentinel to retry. The wait polls
//! (`LOCK_NB`, a few milliseconds apart) on the async path: no thread is
//! left blocked in `flock`, and the watcher's loop is never held longer
//! than the bound.

use std::fs::File;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::os::unix::io::AsRawFd;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context, Result};

/// The longest any run waits for the lock. A legitimate holder keeps it
/// for one pass: a Sentinel question and a name resolution (each at most
/// `sentinel_timeout_ms`, 300 ms by default) and a few netlink calls; the
/// watcher's own passes run one at a time. Far below systemd's
/// `WatchdogSec=` (30 s), which must see the watcher's loop alive.
pub const WAIT: Duration = Duration::from_secs(5);

/// Held while alive; the kernel drops the lock with the descriptor, so a
/// killed holder never leaves it stuck.
pub struct Lock {
    _file: File,
}

/// Takes the exclusive lock on `path` (created if needed), waiting at most
/// [`WAIT`].
pub async fn acquire(path: &Path) -> Result<Lock> {
    acquire_within(path, WAIT).await
}

/// [`acquire`], waiting at most `wait`.
pub async fn acquire_within(path: &Path, wait: Duration) -> Result<Lock> {
    let file = crate::rundir::open_or_create(path)
        .with_context(|| format!("lock file {}", path.display()))?;
    let deadline = Instant::now() + wait;
    // Uncontended, the first try takes it: the hook's latency is the
    // failover's. Contended, tries double their spacing up to 10 ms.
    let mut pause = Duration::from_millis(1);
    loop {
        if try_lock(&file).with_context(|| format!("lock {}", path.display()))? {
            return Ok(Lock { _file: file });
        }
        let now = Instant::now();
        if now >= deadline {
            return Err(anyhow!(
                "lock {} held{} for over {} ms; giving up for now",
                path.display(),
                holder(&file).map_or(String::new(), |p| format!(" by pid {p}")),
                wait.as_millis()
            ));
        }
        tokio::time::sleep(pause.min(deadline - now)).await;
        pause = (pause * 2).min(Duration::from_millis(10));
    }
}

/// One non-blocking try: whether the lock is ours now.
fn try_lock(file: &File) -> io::Result<bool> {
    loop {
        // SAFETY: flock on a descriptor we own; no memory is shared.
        if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0 {
            return Ok(true);
        }
        let e = io::Error::last_os_error();
        match e.kind() {
            io::ErrorKind::WouldBlock => return Ok(false),
            io::ErrorKind::Interrupted => continue,
            _ => return Err(e),
        }
    }
}

/// The pid holding a flock on `file`, from `/proc/locks`, for the error
/// line: "1: FLOCK  ADVISORY  WRITE 1234 00:1a:5678 0 EOF" (device in
/// hex, inode in decimal; waiters' lines have "->").
fn holder(file: &File) -> Option<u32> {
    let m = file.metadata().ok()?;
    let dev = m.dev();
    let major = ((dev >> 8) & 0xfff) | ((dev >> 32) & !0xfff);
    let minor = (dev & 0xff) | ((dev >> 12) & !0xff);
    let id = format!("{major:02x}:{minor:02x}:{}", m.ino());
    let locks = std::fs::read_to_string("/proc/locks").ok()?;
    locks.lines().find_map(|l| {
        let w: Vec<&str> = l.split_whitespace().collect();
        (w.get(1) == Some(&"FLOCK") && w.get(5) == Some(&id.as_str()))
            .then(|| w.get(4)?.parse().ok())
            .flatten()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn scratch_dir(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("sv-lock-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    /// Issue 22, defect 2: a lock held elsewhere is waited for a bounded
    /// time, then reported, never waited for forever.
    #[tokio::test]
    async fn a_held_lock_is_waited_for_a_bounded_time() {
        let d = scratch_dir("held");
        let path = d.join("lock");
        let holder = File::create(&path).unwrap();
        // SAFETY: flock on a descriptor we own.
        assert_eq!(unsafe { libc::flock(holder.as_raw_fd(), libc::LOCK_EX) }, 0);
        let t = Instant::now();
        let wait = Duration::from_millis(200);
        let r = tokio::time::timeout(Duration::from_secs(2), acquire_within(&path, wait)).await;
        let waited = t.elapsed();
        drop(holder);
        let r = r.expect("acquire still waiting after 2 s");
        let e = r.err().expect("acquired a held lock").to_string();
        assert!(waited >= wait, "{waited:?}");
        let pid = format!("held by pid {}", std::process::id());
        assert!(e.contains(&pid) && e.contains("over 200 ms"), "{e}");
        std::fs::remove_dir_all(&d).unwrap();
    }

    /// Issue 22, defect 2: the lock file is its directory owner's alone
    /// (0600): any user who could open it could stall every pass.
    #[tokio::test]
    async fn the_lock_file_is_private_to_its_directory_owner() {
        let d = scratch_dir("private");
        let path = d.join("lock");
        let root = unsafe { libc::geteuid() } == 0;
        if root {
            // As the watcher's RuntimeDirectory=: owned by its user.
            std::os::unix::fs::chown(&d, Some(65534), Some(65534)).unwrap();
        }
        drop(acquire(&path).await.unwrap());
        let m = std::fs::metadata(&path).unwrap();
        assert_eq!(m.mode() & 0o777, 0o600, "mode {:o}", m.mode() & 0o777);
        if root {
            assert_eq!((m.uid(), m.gid()), (65534, 65534), "owner");
        }
        std::fs::remove_dir_all(&d).unwrap();
    }
}

//! The host-wide lock that serializes concurrent runs (Sentinel runs up to
//! 16 scripts at once, and a watcher may run beside them). It only locks.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

/// Held while alive; the kernel drops the lock with the descriptor, so a
/// killed holder never leaves it stuck.
pub struct Lock {
    _file: File,
}

/// Waits for the exclusive lock on `path`, creating the file if needed.
/// flock works on a read-only descriptor, so a lock file created by root
/// still serves the unprivileged Sentinel user and the other way round.
pub async fn acquire(path: &Path) -> Result<Lock> {
    let file = open(path).with_context(|| format!("lock file {}", path.display()))?;
    // Uncontended, the lock is taken without a thread: the hook's latency
    // is the failover's.
    // SAFETY: flock on a descriptor we own; no memory is shared.
    if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0 {
        return Ok(Lock { _file: file });
    }
    let path: PathBuf = path.to_path_buf();
    tokio::task::spawn_blocking(move || {
        loop {
            // SAFETY: flock on a descriptor we own; no memory is shared.
            let r = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) };
            if r == 0 {
                return Ok(Lock { _file: file });
            }
            let e = io::Error::last_os_error();
            if e.kind() != io::ErrorKind::Interrupted {
                return Err(e).with_context(|| format!("lock {}", path.display()));
            }
        }
    })
    .await?
}

fn open(path: &Path) -> io::Result<File> {
    // O_NOFOLLOW: the default lives in a world-writable directory.
    let flags = libc::O_NOFOLLOW | libc::O_CLOEXEC;
    match OpenOptions::new().read(true).custom_flags(flags).open(path) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => OpenOptions::new()
            .write(true)
            .create(true)
            .mode(0o644)
            .custom_flags(flags)
            .open(path),
        r => r,
    }
}

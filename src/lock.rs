//! The host-wide lock that serializes concurrent runs (Sentinel runs up to
//! 16 scripts at once, and a watcher may run beside them). It only locks.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
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
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            let f = OpenOptions::new()
                .write(true)
                .create(true)
                .mode(0o644)
                .custom_flags(flags)
                .open(path)?;
            // 0644 whatever the umask (the unit's is 0077): every user of
            // the lock must be able to open it. Fails only if another
            // process created it meanwhile: then it is theirs, as they made it.
            let _ = f.set_permissions(std::fs::Permissions::from_mode(0o644));
            Ok(f)
        }
        r => r,
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    /// Under the unit's UMask=0077 the file must still be 0644, or a hook
    /// running as Sentinel's user could not open the watcher's lock.
    #[tokio::test]
    async fn the_lock_file_is_0644_whatever_the_umask() {
        let dir = std::env::temp_dir().join(format!("sentinel-vip-lock-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("x.lock");
        // SAFETY: umask(2) has no preconditions; restored right after.
        let old = unsafe { libc::umask(0o077) };
        let lock = super::acquire(&path).await;
        // SAFETY: as above.
        unsafe { libc::umask(old) };
        let mode = std::fs::metadata(&path).map(|m| m.permissions().mode() & 0o777);
        drop(lock);
        let _ = std::fs::remove_dir_all(&dir);
        assert_eq!(mode.unwrap(), 0o644);
    }
}

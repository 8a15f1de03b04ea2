//! Files in the runtime directory (`/run/sentinel-vip`, the watcher's
//! systemd `RuntimeDirectory=`, tmpfs, emptied at boot like the VIPs
//! themselves): the host lock and the ownership record. It creates and
//! opens them; it knows nothing of what they hold.
//!
//! Each file belongs to the directory's owner alone (mode 0600): any user
//! who could open the lock could stall every pass, and any who could
//! write the record could claim the host's own address as a VIP. The
//! directory is the watcher's (`sentinel-vip`, 0755) under the packaged
//! unit; a root process (`reconcile`, `vip`, a hook under a Sentinel run
//! as root) may open anything, and hands a file it creates to the
//! directory's owner, so that the watcher can still open it. Without the
//! directory, root creates it (0755; the unit hands it and its files to
//! the watcher's user when it starts: systemd chowns a `RuntimeDirectory=`
//! owned by someone else, recursively); anyone else gets an error naming
//! it. So the processes that take the lock are root and the directory's
//! owner: a hook acting itself as Sentinel's own user (an unconfined
//! Sentinel, the binary with file capabilities, no watcher) needs the
//! directory to be that user's (README: a `tmpfiles.d` line).

use std::fs::{self, DirBuilder, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::Path;

/// `O_NOFOLLOW`: a link planted where the file should be is refused.
const FLAGS: i32 = libc::O_NOFOLLOW | libc::O_CLOEXEC;

fn is_root() -> bool {
    // SAFETY: geteuid cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// `path`'s directory, created by root when missing.
fn directory(path: &Path) -> io::Result<&Path> {
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    match fs::metadata(dir) {
        Ok(_) => Ok(dir),
        Err(e) if e.kind() == io::ErrorKind::NotFound && is_root() => {
            match DirBuilder::new().mode(0o755).create(dir) {
                Err(e) if e.kind() != io::ErrorKind::AlreadyExists => Err(e),
                _ => Ok(dir),
            }
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => Err(io::Error::new(
            e.kind(),
            format!(
                "directory {} does not exist (sentinel-vip.service creates it; see README)",
                dir.display()
            ),
        )),
        Err(e) => Err(e),
    }
}

/// Creates `path` (exclusively) as a private file of its directory's
/// owner, open for writing.
fn create(path: &Path) -> io::Result<File> {
    let dir = directory(path)?;
    let f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(FLAGS)
        .open(path)?;
    if is_root() {
        let d = fs::metadata(dir)?;
        if let Err(e) = std::os::unix::fs::fchown(&f, Some(d.uid()), Some(d.gid())) {
            let _ = fs::remove_file(path);
            return Err(e);
        }
    }
    Ok(f)
}

/// Opens `path` for reading (flock needs no more), creating it private to
/// its directory's owner when missing.
pub fn open_or_create(path: &Path) -> io::Result<File> {
    let open = || OpenOptions::new().read(true).custom_flags(FLAGS).open(path);
    match open() {
        Err(e) if e.kind() == io::ErrorKind::NotFound => match create(path) {
            // Created by another process meanwhile.
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => open(),
            Ok(_) => open(),
            Err(e) => Err(e),
        },
        r => r,
    }
}
/// Replaces `path` with `bytes` at once (a reader sees the old or the new
/// whole file), private to its directory's owner.
pub fn replace(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    let _ = fs::remove_file(&tmp);
    let mut f = create(&tmp)?;
    let r = f.write_all(bytes).and_then(|()| fs::rename(&tmp, path));
    if r.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    r
}

//! Joining one of the lab's network namespaces from this process, without
//! `ip netns exec`: a thread joins by setns(2) (so a client can live in the
//! client namespace for a whole run as one thread), a child joins between
//! fork and exec (so nothing else runs between a clock reading and the
//! program's exec). It changes no namespace; it only enters them.

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};

use crate::process::NOBODY;
use crate::Privilege;

/// The handle `ip netns add` leaves for namespace `ns`.
fn handle(ns: &str) -> io::Result<File> {
    File::open(format!("/run/netns/{ns}"))
        .map_err(|e| io::Error::new(e.kind(), format!("netns {ns}: {e}")))
}

/// Moves the calling thread (only it: a network namespace is per task)
/// into namespace `ns`; sockets it opens afterwards live there.
pub fn enter(ns: &str) -> io::Result<()> {
    let f = handle(ns)?;
    // SAFETY: plain syscall on a valid fd; affects the calling thread only.
    if unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
        let e = io::Error::last_os_error();
        return Err(io::Error::new(e.kind(), format!("setns into {ns}: {e}")));
    }
    Ok(())
}

/// Spawns `cmd` inside namespace `ns` as `who`, in a process group of its
/// own, with its output discarded. `who` may be root or an unprivileged
/// user without any capability ([`Privilege::NoCaps`], as a hardened
/// Sentinel runs its scripts); [`Privilege::TwoCaps`] and
/// [`Privilege::NetAdmin`] need ambient capabilities, which only the
/// lab's setpriv path gives, and panic.
pub fn spawn_in(ns: &str, who: Privilege, cmd: &mut Command) -> Child {
    let uid: Option<libc::uid_t> = match who {
        Privilege::Root => None,
        Privilege::NoCaps => Some(NOBODY),
        Privilege::NoCapsAs(u) => Some(u),
        Privilege::TwoCaps | Privilege::NetAdmin => {
            panic!("netns::spawn_in: {who:?} needs setpriv (Lab::sv_as)")
        }
    };
    let f = handle(ns).unwrap_or_else(|e| panic!("lab: {e}"));
    let fd = f.as_raw_fd();
    // SAFETY: only async-signal-safe syscalls between fork and exec; `f`
    // stays open until spawn returns.
    unsafe {
        cmd.pre_exec(move || {
            if libc::setns(fd, libc::CLONE_NEWNET) != 0 {
                return Err(io::Error::last_os_error());
            }
            if let Some(uid) = uid {
                // As systemd's NoNewPrivileges=: no file capability or
                // set-id bit can give any back. Changing uid from 0 to
                // non-zero clears the permitted, effective and ambient sets.
                let steps = [
                    libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0),
                    libc::setgroups(0, std::ptr::null()),
                    libc::setresgid(uid, uid, uid),
                    libc::setresuid(uid, uid, uid),
                ];
                if steps.iter().any(|&r| r != 0) {
                    return Err(io::Error::last_os_error());
                }
            }
            Ok(())
        });
    }
    let child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0)
        .spawn()
        .unwrap_or_else(|e| panic!("lab: cannot spawn {cmd:?} in {ns}: {e}"));
    drop(f);
    child
}

/// SIGKILLs the process group `child` leads (see [`spawn_in`]) and reaps it.
pub fn kill_group(child: &mut Child) {
    // SAFETY: signalling the process group this process created.
    unsafe {
        libc::kill(-(child.id() as i32), libc::SIGKILL);
    }
    let _ = child.wait();
}

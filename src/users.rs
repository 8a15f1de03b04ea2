//! Who may use the control socket: group lookup in the system's user
//! database and the rule applied to a peer's `SO_PEERCRED` credentials.
//! It reads the user database (libc's reentrant calls) and never changes it.

use std::ffi::{CStr, CString};

/// A group resolved by name: its id and its listed members.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Group {
    pub name: String,
    pub gid: u32,
    pub members: Vec<String>,
}

/// `getgrnam_r`: `None` when no such group exists.
pub fn group(name: &str) -> std::io::Result<Option<Group>> {
    let cname = CString::new(name)
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::InvalidInput, "NUL in group name"))?;
    let mut buf = vec![0u8; 4096];
    loop {
        // SAFETY: every pointer refers to memory owned here and sized as
        // passed; on success `result` points into `grp`/`buf`, read below
        // before either is dropped or reused.
        let mut grp: libc::group = unsafe { std::mem::zeroed() };
        let mut result: *mut libc::group = std::ptr::null_mut();
        let rc = unsafe {
            libc::getgrnam_r(
                cname.as_ptr(),
                &mut grp,
                buf.as_mut_ptr().cast(),
                buf.len(),
                &mut result,
            )
        };
        if rc == libc::ERANGE && buf.len() < 1 << 20 {
            buf.resize(buf.len() * 4, 0);
            continue;
        }
        if rc != 0 {
            return Err(std::io::Error::from_raw_os_error(rc));
        }
        if result.is_null() {
            return Ok(None);
        }
        let mut members = Vec::new();
        // SAFETY: gr_mem is a NULL-terminated array of C strings in `buf`.
        unsafe {
            let mut p = grp.gr_mem;
            while !p.is_null() && !(*p).is_null() {
                members.push(CStr::from_ptr(*p).to_string_lossy().into_owned());
                p = p.add(1);
            }
        }
        return Ok(Some(Group {
            name: name.to_string(),
            gid: grp.gr_gid,
            members,
        }));
    }
}

/// `getpwuid_r`: the user name of `uid`, if it has one.
pub fn user_name(uid: u32) -> Option<String> {
    let mut buf = vec![0u8; 4096];
    // SAFETY: as in `group`: all memory is ours and sized as passed.
    let mut pwd: libc::passwd = unsafe { std::mem::zeroed() };
    let mut result: *mut libc::passwd = std::ptr::null_mut();
    let rc = unsafe {
        libc::getpwuid_r(
            uid,
            &mut pwd,
            buf.as_mut_ptr().cast(),
            buf.len(),
            &mut result,
        )
    };
    if rc != 0 || result.is_null() {
        return None;
    }
    // SAFETY: pw_name is a C string in `buf`.
    Some(
        unsafe { CStr::from_ptr(pwd.pw_name) }
            .to_string_lossy()
            .into_owned(),
    )
}

/// Pure: whether a peer may ask for a pass. Root, the watcher's own user,
/// and the socket's group (as primary group, or as a listed member: the
/// kernel reports only the primary gid). The socket's mode already keeps
/// others out; this holds even if someone loosens the mode by hand.
pub fn peer_allowed(uid: u32, gid: u32, name: Option<&str>, own_uid: u32, group: &Group) -> bool {
    uid == 0
        || uid == own_uid
        || gid == group.gid
        || name.is_some_and(|n| group.members.iter().any(|m| m == n))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn who_may_ask() {
        let g = Group {
            name: "redis".into(),
            gid: 112,
            members: vec!["sentinel-vip".into(), "ops".into()],
        };
        let rows = [
            // (uid, gid, name, allowed)
            (0, 0, Some("root"), true),
            (999, 999, Some("sentinel-vip"), true), // the watcher itself
            (110, 112, Some("redis"), true),        // primary group
            (1001, 1001, Some("ops"), true),        // listed member
            (1002, 1002, Some("mallory"), false),
            (1003, 1003, None, false),
            (65534, 65534, Some("nobody"), false),
        ];
        for (uid, gid, name, want) in rows {
            assert_eq!(peer_allowed(uid, gid, name, 999, &g), want, "uid {uid}");
        }
    }

    #[test]
    fn looks_up_root() {
        let g = group("root").unwrap().expect("group root exists");
        assert_eq!(g.gid, 0);
        assert!(group("no-such-group-here").unwrap().is_none());
        assert_eq!(user_name(0).as_deref(), Some("root"));
    }
}

//! Who may use the control socket: user and group lookups in the system's
//! user database and the rule applied to a peer's `SO_PEERCRED`
//! credentials. It reads the user database (libc's reentrant calls) and
//! never changes it.

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

/// `getpwnam_r`: the uid and primary gid of user `name`, if it exists.
pub fn user_ids(name: &str) -> Option<(u32, u32)> {
    let cname = CString::new(name).ok()?;
    let mut buf = vec![0u8; 4096];
    // SAFETY: as in `group`: all memory is ours and sized as passed.
    let mut pwd: libc::passwd = unsafe { std::mem::zeroed() };
    let mut result: *mut libc::passwd = std::ptr::null_mut();
    let rc = unsafe {
        libc::getpwnam_r(
            cname.as_ptr(),
            &mut pwd,
            buf.as_mut_ptr().cast(),
            buf.len(),
            &mut result,
        )
    };
    (rc == 0 && !result.is_null()).then_some((pwd.pw_uid, pwd.pw_gid))
}

/// Who may ask the watcher for a pass besides root and the watcher's own
/// user: these users by name, and the members of this group.
pub struct Allowed<'a> {
    pub users: &'a [String],
    /// Resolved when the peer connects (`None`: none set, or no such group).
    pub group: Option<&'a Group>,
}

/// Pure: whether a peer may ask for a pass. Root, the watcher's own user,
/// a listed user (by the name the peer's uid has now: a Sentinel package
/// installed after the watcher started creates its user, and its hooks
/// are welcome at once), and the group's members (as primary group, or
/// listed: the kernel reports only the primary gid).
pub fn peer_allowed(uid: u32, gid: u32, name: Option<&str>, own_uid: u32, a: &Allowed) -> bool {
    uid == 0
        || uid == own_uid
        || name.is_some_and(|n| a.users.iter().any(|u| u == n))
        || a.group
            .is_some_and(|g| gid == g.gid || name.is_some_and(|n| g.members.iter().any(|m| m == n)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn who_may_ask() {
        let users = ["redis".to_string(), "valkey".to_string()];
        let g = Group {
            name: "redis".into(),
            gid: 112,
            members: vec!["sentinel-vip".into(), "ops".into()],
        };
        let by_users = Allowed {
            users: &users,
            group: None,
        };
        let by_group = Allowed {
            users: &[],
            group: Some(&g),
        };
        #[rustfmt::skip]
        let rows = [
            // (uid, gid, name, allowed by the users, by the group)
            (0, 0, Some("root"), true, true),
            (999, 999, Some("sentinel-vip"), true, true), // the watcher itself
            (110, 112, Some("redis"), true, true),        // listed; primary group
            (111, 113, Some("valkey"), true, false),      // listed
            (1001, 1001, Some("ops"), false, true),       // group member
            (1002, 112, Some("mallory"), false, true),    // primary group
            (1002, 1002, Some("mallory"), false, false),
            (1003, 1003, None, false, false),
            (65534, 65534, Some("nobody"), false, false),
        ];
        for (uid, gid, name, users, group) in rows {
            assert_eq!(
                peer_allowed(uid, gid, name, 999, &by_users),
                users,
                "uid {uid}, users"
            );
            assert_eq!(
                peer_allowed(uid, gid, name, 999, &by_group),
                group,
                "uid {uid}, group"
            );
        }
    }

    #[test]
    fn looks_up_root() {
        let g = group("root").unwrap().expect("group root exists");
        assert_eq!(g.gid, 0);
        assert!(group("no-such-group-here").unwrap().is_none());
        assert_eq!(user_name(0).as_deref(), Some("root"));
        assert_eq!(user_ids("root"), Some((0, 0)));
        assert_eq!(user_ids("no-such-user-here"), None);
    }
}

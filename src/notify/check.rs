//! Validation of a notify command for the config loader: a pure check
//! of the file system, one-line errors; it runs nothing.

/// For config validation: `argv[0]` must be an absolute path to an
/// existing, executable regular file, and no argument may hold a NUL. The
/// error is one line, without the key.
pub fn check_command(argv: &[String]) -> Result<(), String> {
    use std::os::unix::fs::PermissionsExt;
    let Some(program) = argv.first() else {
        return Err("is empty; give the program and its arguments".into());
    };
    if let Some(a) = argv.iter().find(|a| a.contains('\0')) {
        return Err(format!(
            "argument `{}` contains a NUL byte",
            a.escape_debug()
        ));
    }
    let shown = program.escape_debug();
    if !program.starts_with('/') {
        return Err(format!(
            "`{shown}` must be an absolute path (no shell, no PATH lookup)"
        ));
    }
    let meta = std::fs::metadata(program).map_err(|e| format!("`{shown}`: {e}"))?;
    if !meta.is_file() {
        return Err(format!("`{shown}` is not a regular file"));
    }
    let path = std::ffi::CString::new(program.as_bytes()).expect("NUL checked above");
    // SAFETY: access(2) reads a NUL-terminated path and nothing else. The
    // mode check also catches root, for whom X_OK passes if any x bit is set.
    let runnable = unsafe { libc::access(path.as_ptr(), libc::X_OK) } == 0;
    if !runnable || meta.permissions().mode() & 0o111 == 0 {
        return Err(format!("`{shown}` is not executable"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::notify::testdir::Dir;

    #[test]
    fn commands_are_checked_when_the_config_is_loaded() {
        use std::os::unix::fs::PermissionsExt;
        let d = Dir::new("check");
        let set = |name: &str, mode: u32| {
            let p = d.path(name);
            std::fs::write(&p, "#!/bin/sh\n").unwrap();
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
            p
        };
        let exe = set("exe", 0o755);
        let plain = set("plain", 0o644);
        let link = d.path("link");
        std::os::unix::fs::symlink(&exe, &link).unwrap();
        let v = |a: &[&str]| a.iter().map(|s| s.to_string()).collect::<Vec<String>>();
        assert_eq!(check_command(&v(&[&exe, "--flag", "x y"])), Ok(()));
        assert_eq!(check_command(&v(&[&link])), Ok(()));
        let missing = d.path("missing");
        let rows: Vec<(Vec<String>, &str)> = vec![
            (vec![], "is empty"),
            (v(&["bin/true"]), "must be an absolute path"),
            (v(&["true"]), "must be an absolute path"),
            (v(&[&missing]), "No such file or directory"),
            (v(&[&d.path("")]), "is not a regular file"),
            (v(&[&plain]), "is not executable"),
            (v(&[&exe, "a\0b"]), "contains a NUL byte"),
        ];
        for (argv, want) in rows {
            let e = check_command(&argv).unwrap_err();
            assert!(e.contains(want), "{argv:?}: {e}");
            assert!(!e.contains('\n'), "{argv:?}: {e:?}");
        }
    }
}

//! Validation of `notify_env`, the variables the admin gives every notify
//! command: names a shell can use, values that can be passed. Pure.

/// The facts' prefix: the watcher's, never the admin's.
const FACTS: &str = "SENTINEL_VIP_";

/// One `notify_env` entry: a portable variable name (letters, digits and
/// `_`, not starting with a digit), not one of the facts', and a value
/// without NUL. The error is one line, without the key.
pub fn check_env(name: &str, value: &str) -> Result<(), String> {
    let shown = name.escape_debug();
    let portable = name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if name.is_empty() || !portable || name.starts_with(|c: char| c.is_ascii_digit()) {
        return Err(format!(
            "`{shown}` is not a variable name (letters, digits and _, not starting with a digit)"
        ));
    }
    if name.starts_with(FACTS) {
        return Err(format!(
            "`{shown}`: {FACTS}* are the facts of each change, set by the watcher"
        ));
    }
    if value.contains('\0') {
        return Err(format!("`{shown}`'s value contains a NUL byte"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::check_env;

    #[test]
    fn names_and_values() {
        for ok in ["AWS_REGION", "https_proxy", "_X", "PATH", "TZ", "A1"] {
            assert_eq!(check_env(ok, "value with spaces = ok"), Ok(()), "{ok}");
        }
        // (name, value, the error names)
        let rows = [
            ("", "x", "not a variable name"),
            ("1X", "x", "not a variable name"),
            ("A-B", "x", "not a variable name"),
            ("A B", "x", "not a variable name"),
            ("A=B", "x", "not a variable name"),
            ("ÄX", "x", "not a variable name"),
            ("SENTINEL_VIP_VIP", "x", "facts of each change"),
            ("SENTINEL_VIP_", "x", "facts of each change"),
            ("TOKEN", "a\0b", "NUL"),
        ];
        for (name, value, want) in rows {
            let e = check_env(name, value).unwrap_err();
            assert!(e.contains(want), "{name:?}: {e}");
            assert!(!e.contains('\n'), "{name:?}: {e:?}");
        }
    }
}

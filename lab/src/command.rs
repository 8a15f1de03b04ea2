//! Running `ip` and friends from the test process, and small file helpers.
//! Every failure here panics with the command and its stderr: a lab that
//! cannot be set up or observed must say why.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

/// Runs `ip ARGS`.
pub(crate) fn ip(args: &[&str]) -> Output {
    Command::new("ip")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("lab: cannot run ip {args:?}: {e}"))
}

/// Panics unless the command succeeded; returns its output.
pub(crate) fn must(o: Output) -> Output {
    assert!(
        o.status.success(),
        "lab: command failed ({}): {}",
        o.status,
        String::from_utf8_lossy(&o.stderr).trim()
    );
    o
}

/// `ip -n NS ARGS`, which must succeed.
pub(crate) fn ip_in(ns: &str, args: &[&str]) -> Output {
    let mut full = vec!["-n", ns];
    full.extend_from_slice(args);
    must(ip(&full))
}

pub(crate) fn sysctl(ns: &str, setting: &str) {
    let o = ip(&["netns", "exec", ns, "sysctl", "-qw", setting]);
    assert!(
        o.status.success(),
        "lab: sysctl {setting} in {ns} failed: {}",
        String::from_utf8_lossy(&o.stderr).trim()
    );
}

/// (trimmed stdout, trimmed stderr).
pub(crate) fn out_err(o: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&o.stdout).trim().to_string(),
        String::from_utf8_lossy(&o.stderr).trim().to_string(),
    )
}

/// Sends `signal` (a name such as "HUP") to `pid` with kill(1).
pub(crate) fn signal(pid: u32, signal: &str) -> bool {
    Command::new("kill")
        .args([format!("-{signal}"), pid.to_string()])
        .status()
        .is_ok_and(|s| s.success())
}

pub(crate) fn write_file(path: &Path, text: &str) {
    fs::write(path, text).unwrap_or_else(|e| panic!("lab: cannot write {}: {e}", path.display()));
}

pub(crate) fn find_in_path(tool: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(tool))
        .find(|p| p.is_file())
}

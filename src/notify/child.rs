//! What a notify command starts with: no capability and a clean
//! environment. The drop runs in the forked child before execve, with raw
//! system calls only; the environment is built beforehand, purely. It
//! never runs the command itself.
//!
//! Why in the child: the watcher holds CAP_NET_ADMIN and CAP_NET_RAW as
//! ambient capabilities (that is how the unit gives them to an
//! unprivileged user), and ambient capabilities survive execve. A notify
//! command (a shell script calling curl or a cloud CLI) needs neither.

use std::collections::BTreeMap;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

/// A command's `PATH` unless `notify_env` sets one: systemd's default for
/// services, so that a command behaves the same under the unit and by hand.
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
/// Taken from the watcher's environment when set there.
const PASSED: [&str; 2] = ["LANG", "TZ"];

/// Pure: what every notify command's environment holds besides the facts
/// of its change: `PATH`, `LANG` and `TZ` from `watcher` when it has them,
/// then the admin's `notify_env`, which may replace any of these. Nothing
/// else of the watcher's environment (`NOTIFY_SOCKET`, `INVOCATION_ID`,
/// `SENTINEL_VIP_CONFIG`, whatever started it had) reaches a command.
pub fn base_environment(
    watcher: impl Fn(&str) -> Option<String>,
    admin: &BTreeMap<String, String>,
) -> Vec<(String, String)> {
    let mut env = BTreeMap::from([("PATH".to_string(), DEFAULT_PATH.to_string())]);
    for k in PASSED {
        if let Some(v) = watcher(k) {
            env.insert(k.to_string(), v);
        }
    }
    env.extend(admin.iter().map(|(k, v)| (k.clone(), v.clone())));
    env.into_iter().collect()
}

/// A step of the drop; its number is what the child reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Step {
    Ambient = 1,
    Sets = 2,
    NoNewPrivs = 3,
}

impl Step {
    fn from_byte(b: u8) -> Option<Step> {
        [Step::Ambient, Step::Sets, Step::NoNewPrivs]
            .into_iter()
            .find(|s| *s as u8 == b)
    }

    fn what(self) -> &'static str {
        match self {
            Step::Ambient => "clearing the ambient capabilities (prctl PR_CAP_AMBIENT_CLEAR_ALL)",
            Step::Sets => "emptying the capability sets (capset)",
            Step::NoNewPrivs => "setting no_new_privs (prctl PR_SET_NO_NEW_PRIVS)",
        }
    }
}

/// capset(2)'s header and, for version 3, two of these (bits 0-31, 32-63).
#[repr(C)]
struct CapHeader {
    version: u32,
    pid: libc::c_int,
}
#[repr(C)]
#[derive(Clone, Copy)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}
const CAP_VERSION_3: u32 = 0x2008_0522;

/// In the forked child: ambient, then effective, permitted and inheritable
/// emptied, then no_new_privs (set by the unit already; here it holds for a
/// watcher started by hand too). With permitted empty and no_new_privs,
/// execve grants nothing: neither file capabilities nor a set-user-ID root
/// binary nor uid 0 itself can add to an empty permitted set. The bounding
/// set stays: dropping from it needs CAP_SETPCAP, which the watcher does
/// not hold, and with the other sets empty it is only a ceiling.
///
/// Only raw system calls on the stack: between fork and execve of a
/// multi-threaded process nothing may allocate or take a lock.
fn drop_all() -> Result<(), Step> {
    let zero: libc::c_ulong = 0;
    // SAFETY: prctl with integer arguments only.
    let r = unsafe {
        libc::prctl(
            libc::PR_CAP_AMBIENT,
            libc::PR_CAP_AMBIENT_CLEAR_ALL as libc::c_ulong,
            zero,
            zero,
            zero,
        )
    };
    if r != 0 {
        return Err(Step::Ambient);
    }
    let mut header = CapHeader {
        version: CAP_VERSION_3,
        pid: 0,
    };
    let data = [CapData {
        effective: 0,
        permitted: 0,
        inheritable: 0,
    }; 2];
    // SAFETY: capset reads a v3 header and two data structs, both live on
    // this stack frame for the call; pid 0 is this thread.
    let r = unsafe {
        libc::syscall(
            libc::SYS_capset,
            &mut header as *mut CapHeader,
            data.as_ptr(),
        )
    };
    if r != 0 {
        return Err(Step::Sets);
    }
    // SAFETY: prctl with integer arguments only.
    if unsafe {
        libc::prctl(
            libc::PR_SET_NO_NEW_PRIVS,
            1 as libc::c_ulong,
            zero,
            zero,
            zero,
        )
    } != 0
    {
        return Err(Step::NoNewPrivs);
    }
    Ok(())
}

/// Which step failed, told by the child through a close-on-exec pipe (the
/// spawn error carries only an errno, which exec failures share).
pub struct Report {
    read: OwnedFd,
    write: OwnedFd,
}

impl Report {
    pub fn new() -> io::Result<Report> {
        let mut fds = [0; 2];
        // SAFETY: pipe2 fills two descriptors, owned from here on.
        if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC | libc::O_NONBLOCK) } != 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: both were just opened and are not owned elsewhere.
        let (read, write) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
        Ok(Report { read, write })
    }

    /// For `pre_exec`: the drop, failing the spawn (the command does not
    /// run) with the failed call's errno, and the step written to the pipe.
    pub fn drop_in_child(&self) -> impl FnMut() -> io::Result<()> + Send + Sync + 'static {
        let fd = self.write.as_raw_fd();
        move || {
            drop_all().map_err(|step| {
                // errno first: write(2) may change it.
                let e = io::Error::last_os_error();
                let b = step as u8;
                // SAFETY: one byte from the stack to a descriptor the
                // parent keeps open until the spawn returned.
                unsafe { libc::write(fd, (&b as *const u8).cast(), 1) };
                e
            })
        }
    }

    /// After the spawn failed with `e`: why, naming the step if a step failed.
    pub fn why(self, e: &io::Error) -> String {
        drop(self.write);
        let mut b = 0u8;
        // SAFETY: reads at most one byte into `b`; non-blocking.
        let n = unsafe { libc::read(self.read.as_raw_fd(), (&mut b as *mut u8).cast(), 1) };
        match (n, Step::from_byte(b)) {
            (1, Some(step)) => format!("not started: {} failed: {e}", step.what()),
            _ => e.to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_environment_is_path_lang_tz_and_the_admins() {
        let watcher = |k: &str| match k {
            "LANG" => Some("C.UTF-8".to_string()),
            "NOTIFY_SOCKET" | "SENTINEL_VIP_CONFIG" | "HOME" => Some("/x".to_string()),
            _ => None,
        };
        let admin = |kv: &[(&str, &str)]| -> BTreeMap<String, String> {
            kv.iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        // (admin's notify_env, what the command gets)
        type Vars<'a> = &'a [(&'a str, &'a str)];
        let rows: [(Vars, Vars); 3] = [
            (&[], &[("LANG", "C.UTF-8"), ("PATH", DEFAULT_PATH)]),
            (
                &[("AWS_REGION", "eu-west-1"), ("TZ", "UTC")],
                &[
                    ("AWS_REGION", "eu-west-1"),
                    ("LANG", "C.UTF-8"),
                    ("PATH", DEFAULT_PATH),
                    ("TZ", "UTC"),
                ],
            ),
            (
                &[("PATH", "/opt/cli/bin:/usr/bin"), ("LANG", "de_DE.UTF-8")],
                &[("LANG", "de_DE.UTF-8"), ("PATH", "/opt/cli/bin:/usr/bin")],
            ),
        ];
        for (set, want) in rows {
            let got = base_environment(watcher, &admin(set));
            let want: Vec<(String, String)> = admin(want).into_iter().collect();
            assert_eq!(got, want, "notify_env {set:?}");
        }
        let none = base_environment(|_| None, &BTreeMap::new());
        assert_eq!(none, [("PATH".to_string(), DEFAULT_PATH.to_string())]);
    }

    /// For real: a command run as the watcher runs it records its own
    /// status and environment. `make test` runs as root, so the parent
    /// holds every capability, and a root child would regain them all at
    /// execve but for the drop.
    #[tokio::test]
    async fn a_command_holds_no_capability_and_only_its_environment() {
        let d = crate::notify::testdir::Dir::new("held");
        let body = "grep -E '^(Cap(Inh|Prm|Eff|Amb)|NoNewPrivs):' /proc/$$/status; env";
        let argv = d.script("held", body, &[]);
        let admin = BTreeMap::from([("GREETING".to_string(), "two words".to_string())]);
        let mut env = base_environment(|k| (k == "TZ").then(|| "UTC".to_string()), &admin);
        env.push(("SENTINEL_VIP_ACTION".into(), "acquire".into()));
        let timeout = std::time::Duration::from_secs(10);
        let out = crate::notify::run::run(&argv, &env, timeout).await;
        let text = String::from_utf8_lossy(&out.stdout.bytes).to_string();
        assert!(out.status.ok(), "{:?}: {text} {}", out.status, out.stderr);
        let own = std::fs::read_to_string("/proc/self/status").unwrap();
        let own_eff = own.lines().find(|l| l.starts_with("CapEff:")).unwrap_or("");
        let field = |k: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(k))
                .map(str::trim)
                .unwrap_or_else(|| panic!("no {k} in {text}"))
        };
        for set in ["CapInh:", "CapPrm:", "CapEff:", "CapAmb:"] {
            assert_eq!(
                field(set),
                "0000000000000000",
                "{set} (this test's {own_eff})"
            );
        }
        assert_eq!(field("NoNewPrivs:"), "1");
        let mut vars: Vec<&str> = text.lines().filter(|l| l.contains('=')).collect();
        vars.retain(|l| !l.starts_with("PWD="));
        vars.sort_unstable();
        let path = format!("PATH={DEFAULT_PATH}");
        let want = [
            "GREETING=two words",
            &path,
            "SENTINEL_VIP_ACTION=acquire",
            "TZ=UTC",
        ];
        assert_eq!(vars, want, "nothing of the test's own environment");
    }

    #[test]
    fn a_failed_step_is_named() {
        let e = io::Error::from_raw_os_error(libc::EPERM);
        // Nothing reported: a failure before or at exec, said as it is.
        let r = Report::new().unwrap();
        assert_eq!(r.why(&e), e.to_string());
        for (step, words) in [
            (Step::Ambient, "PR_CAP_AMBIENT_CLEAR_ALL"),
            (Step::Sets, "capset"),
            (Step::NoNewPrivs, "no_new_privs"),
        ] {
            let r = Report::new().unwrap();
            let b = step as u8;
            // SAFETY: one byte to the pipe's write end, as the child does.
            assert_eq!(
                unsafe { libc::write(r.write.as_raw_fd(), (&b as *const u8).cast(), 1) },
                1
            );
            let why = r.why(&e);
            assert!(
                why.starts_with("not started: ") && why.contains(words),
                "{why}"
            );
            assert!(why.ends_with(&e.to_string()), "{why}");
        }
    }
}

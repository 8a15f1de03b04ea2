//! Step (f) of e2e_notify.rs: what a notify command holds under a watcher
//! started by hand as the unit runs it (nobody, with CAP_NET_ADMIN and
//! CAP_NET_RAW as ambient capabilities, no_new_privs set by setpriv).
//! Judged by the command's own record of /proc/$$/status, `id` and its
//! environment (lab/src/held.rs); and what `check` says of the watcher's
//! privileges, as the unit runs it and as root.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::time::Duration;

use sentinel_vip_lab::held::{Held, SCRIPT};
use sentinel_vip_lab::suite::show;
use sentinel_vip_lab::{wait_until, Lab, Privilege, NODES};

/// CAP_NET_ADMIN (12) and CAP_NET_RAW (13), as /proc/PID/status prints them.
const TWO_CAPS: &str = "0000000000003000";

fn record(lab: &Lab, n: usize) -> PathBuf {
    lab.node_dir(n).join("run").join("held.rec")
}

/// (f) Every node's `on_acquire` records what it holds; the watchers are
/// restarted as the unit runs them, and the VIP deleted on its holder: the
/// command that holder's watcher runs to take it back has every
/// capability set but the bounding one empty, no_new_privs set, and no
/// variable of the watcher's environment but TZ (LANG would pass too),
/// plus the config's `notify_env`.
pub fn commands_hold_no_privilege<C>(lab: &mut Lab, _: &mut C) {
    for n in NODES {
        let script = lab.node_dir(n).join("held.sh");
        fs::write(&script, SCRIPT).unwrap();
        fs::set_permissions(&script, fs::Permissions::from_mode(0o755)).unwrap();
        let _ = fs::remove_file(record(lab, n));
        lab.rewrite_config(
            n,
            &format!(
                "notify_env = {{ GREETING = \"two words\" }}\non_acquire = [\"{}\", \"{}\"]\n",
                script.display(),
                record(lab, n).display()
            ),
        );
    }
    // Step (e)'s commands still hang: each watcher lets them run 5 s at
    // exit. All at once, not one after the other.
    for n in NODES {
        lab.signal_watcher(n, "TERM");
    }
    lab.restart_watchers(Privilege::TwoCaps);
    let h = lab.wait_one_holder(Duration::from_secs(10));
    // The premise: the watcher itself holds the two as ambient capabilities.
    let pid = lab.watcher(h).pid().expect("a watcher on the holder");
    let status = fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    for key in ["CapAmb:", "CapEff:"] {
        let line = status.lines().find(|l| l.starts_with(key)).unwrap_or("");
        assert!(line.ends_with(TWO_CAPS), "n{h}'s watcher: {line:?}");
    }
    lab.delete_vip(h);
    let mut held = None;
    let recorded = wait_until(Duration::from_secs(10), Duration::from_millis(50), || {
        held = fs::read_to_string(record(lab, h))
            .ok()
            .and_then(|t| Held::parse(&t));
        held.is_some()
    });
    assert!(recorded, "n{h}'s on_acquire recorded nothing within 10 s");
    let held = held.unwrap();
    eprintln!("  f: n{h}'s on_acquire: {} {:?}", held.id, held.status);
    assert_eq!(
        held.privilege_problems(),
        Vec::<String>::new(),
        "n{h}'s on_acquire holds"
    );
    assert!(
        held.id.starts_with("uid=65534"),
        "n{h}'s on_acquire: {}",
        held.id
    );
    let unexpected = held.unexpected_env(&["GREETING"]);
    assert_eq!(unexpected, Vec::<String>::new(), "n{h}: {:?}", held.env);
    assert_eq!(
        held.env.get("TZ").map(String::as_str),
        Some("UTC"),
        "passed through"
    );
    assert_eq!(held.env["GREETING"], "two words", "notify_env");
    assert_eq!(held.env["SENTINEL_VIP_ACTION"], "acquire");
    check_warns_of_a_root_watcher(lab, h);
}

/// `check` says nothing of the watcher's privileges while it runs as the
/// unit runs it, and warns once a root watcher answers, with the same exit
/// status (which the machine's own Sentinel units may make non-zero).
fn check_warns_of_a_root_watcher(lab: &mut Lab, h: usize) {
    let check = |lab: &Lab| {
        let o = lab.sv(h, &["check"]);
        let warns: Vec<String> = String::from_utf8_lossy(&o.stdout)
            .lines()
            .filter(|l| l.starts_with("warn"))
            .map(str::to_string)
            .collect();
        (o.status.code(), warns, show(&o))
    };
    let (code, warns, shown) = check(lab);
    assert!(
        warns.is_empty(),
        "n{h}, watcher as nobody with two caps: {shown}"
    );
    lab.watcher(h).stop("TERM", Duration::from_secs(5));
    lab.start_watcher(h, Privilege::Root);
    let answered = wait_until(Duration::from_secs(5), Duration::from_millis(100), || {
        String::from_utf8_lossy(&lab.sv(h, &["check"]).stdout).contains("hands its call")
    });
    assert!(answered, "the root watcher on n{h} does not answer");
    let pid = lab.watcher(h).pid().expect("the root watcher");
    let (root_code, warns, shown) = check(lab);
    eprintln!("  f: check with a root watcher: {warns:?}");
    assert_eq!(root_code, code, "a warning changed check's exit: {shown}");
    let root = format!("warn watcher (pid {pid}) runs as root");
    assert!(warns.iter().any(|l| l.starts_with(&root)), "{warns:?}");
    assert!(
        warns
            .iter()
            .any(|l| l.contains("holds more than") && l.contains("in all")),
        "{warns:?}"
    );
}

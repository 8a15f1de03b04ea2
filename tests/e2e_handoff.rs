//! End-to-end tests of the hook handing its call to the watcher over the
//! control socket, as it must under a hardened Sentinel: the hook runs as
//! `nobody` with no capability (as Debian's redis-sentinel.service runs it)
//! and the watchers as `nobody` with only CAP_NET_ADMIN and CAP_NET_RAW.
//! Judged by the kernel's addresses, exit codes and both sides' logs; once
//! on each server build the lab runs (Redis 7.0 and 8.0, Valkey 8.1 and 9).

use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use sentinel_vip_lab::suite::{expect_exit, one_lab_at_a_time, run_scenarios, show, Step};
use sentinel_vip_lab::{e2e_enabled, hook_cmd, wait_until, Family, Lab, LabOptions, Privilege};
use sentinel_vip_lab::{MASTER_NAME, NODES, POLL};

/// As the systemd unit runs it.
const WATCHER: Privilege = Privilege::TwoCaps;
/// As Debian's redis-sentinel.service runs its scripts: no capability.
const HARDENED_HOOK: Privilege = Privilege::NoCaps;

/// Starts node `n`'s watcher and waits until it answers on its socket.
fn start_watcher(lab: &mut Lab, n: usize) {
    lab.start_watcher(n, WATCHER);
    let sock = lab.control_socket(n);
    let up = wait_until(Duration::from_secs(5), POLL, || ping(&sock).is_ok());
    assert!(up, "watcher on n{n} never answered on {}", sock.display());
}

#[test]
fn hook_hands_off_to_watcher_redis() {
    hook_hands_off_to_watcher(Family::Redis);
}

#[test]
fn hook_hands_off_to_watcher_valkey() {
    hook_hands_off_to_watcher(Family::Valkey);
}

#[test]
fn hook_hands_off_to_watcher_redis8() {
    hook_hands_off_to_watcher(Family::Redis8);
}

#[test]
fn hook_hands_off_to_watcher_valkey9() {
    hook_hands_off_to_watcher(Family::Valkey9);
}

/// Every scenario, in order, on one lab running `family`'s servers.
fn hook_hands_off_to_watcher(family: Family) {
    if !e2e_enabled() {
        return;
    }
    let _one = one_lab_at_a_time();
    let started = Instant::now();
    let programs = family.programs();
    let lab = Lab::new(
        Path::new(env!("CARGO_BIN_EXE_sentinel-vip")),
        LabOptions {
            programs,
            ..LabOptions::default()
        },
    );
    lab.wait_ready();
    eprintln!(
        "lab {} ({} {}) up in {:.1} s",
        lab.prefix,
        family.name(),
        programs.version(),
        started.elapsed().as_secs_f64()
    );
    let scenarios: [(&str, Step<()>); 7] = [
        (
            "a-unprivileged-hook-answered",
            unprivileged_hook_is_answered,
        ),
        ("b-failover-through-the-socket", failover_through_the_socket),
        ("c-burst-shares-passes", burst_shares_passes),
        ("d-bad-requests", bad_requests_are_refused),
        ("e-no-watcher", without_watcher),
        (
            "f-stale-and-second-watcher",
            stale_socket_and_second_watcher,
        ),
        ("g-config-unreadable", config_unreadable_by_the_hook),
    ];
    run_scenarios(lab, &mut (), &scenarios, started);
}

/// One raw exchange with a watcher's socket: what a client sends, what it
/// gets back (the reply line, or "" if the watcher closed without one).
fn exchange(sock: &Path, bytes: &[u8]) -> String {
    let mut s = UnixStream::connect(sock).expect("connect to the control socket");
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let _ = s.write_all(bytes);
    let _ = s.shutdown(std::net::Shutdown::Write);
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out
}

fn ping(sock: &Path) -> Result<String, String> {
    let r = UnixStream::connect(sock)
        .map(|_| exchange(sock, b"{\"op\":\"ping\"}\n"))
        .map_err(|e| e.to_string())?;
    if r.contains("\"code\":0") {
        Ok(r)
    } else {
        Err(r)
    }
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Waits for the VIP on Sentinel's master alone; returns it.
fn settled(lab: &Lab) -> usize {
    let m = lab.master_node();
    lab.expect_vip_still_on(m, Duration::from_secs(10), "settled");
    lab.master_node()
}

/// (a) With a watcher on every node, a hook with no capability at all is
/// answered by the watcher: exit 0 everywhere, nothing done by the hook
/// itself, the VIP where Sentinel says.
fn unprivileged_hook_is_answered(lab: &mut Lab, _: &mut ()) {
    for n in NODES {
        start_watcher(lab, n);
    }
    let m = settled(lab);
    let other = NODES.into_iter().find(|&n| n != m).expect("a replica");
    for n in NODES {
        let o = lab.sv_as(n, HARDENED_HOOK, &hook_cmd("observer", other, m));
        expect_exit(&o, 0, &format!("unprivileged hook on n{n}"));
        assert!(
            stderr(&o).contains("answered by the watcher"),
            "hook on n{n} did not hand off: {}",
            show(&o)
        );
    }
    assert_eq!(lab.holders(), vec![m]);
    for n in NODES {
        assert!(
            lab.log_lines(n, &["hook: acting itself"]).is_empty(),
            "a hook acted itself on n{n}"
        );
    }
}

/// (b) A failover: Sentinel runs the hook on every node; each hands its
/// call to the local watcher; the VIP moves; no script error.
fn failover_through_the_socket(lab: &mut Lab, _: &mut ()) {
    let old = settled(lab);
    let before: Vec<usize> = NODES
        .iter()
        .map(|&n| lab.log_count(n, &["answered by the watcher"]))
        .collect();
    lab.sentinel_failover();
    let new = lab.wait_vip_moves(old, Duration::from_secs(20));
    // Every Sentinel runs the script once it knows the new configuration.
    let all = wait_until(Duration::from_secs(15), POLL, || {
        NODES
            .iter()
            .all(|&n| lab.log_count(n, &["answered by the watcher"]) > before[n - 1])
    });
    assert!(all, "not every node's hook was answered by its watcher");
    for n in NODES {
        assert!(
            lab.log_lines(n, &["hook: acting itself"]).is_empty(),
            "a hook acted itself on n{n}"
        );
        let errors = lab.tail(n, "sentinel.log", 200);
        assert!(
            !errors.contains("-script-error"),
            "Sentinel on n{n} logged a script error"
        );
    }
    assert_eq!(lab.holders(), vec![new]);
}

/// (c) Sixteen hooks at once (Sentinel's own limit) while the watcher's
/// pass waits for the host lock: all are answered, by two passes at most
/// (the one already running, and one for everything that queued behind it).
fn burst_shares_passes(lab: &mut Lab, _: &mut ()) {
    let m = settled(lab);
    let other = NODES.into_iter().find(|&n| n != m).expect("a replica");
    let lock = lab.lock_path(m);
    let mut holder = Command::new("flock")
        .arg(&lock)
        .args(["sleep", "1.5"])
        .spawn()
        .expect("flock");
    std::thread::sleep(Duration::from_millis(100));
    let seen = lab.log_count(m, &["hook request answered"]);
    let runs = vec![(m, hook_cmd("observer", other, m)); 16];
    let outs = lab.sv_concurrently(HARDENED_HOOK, &runs);
    let _ = holder.wait();
    for (i, o) in outs.iter().enumerate() {
        expect_exit(o, 0, &format!("hook {i} of the burst"));
    }
    let answered = lab.log_lines(m, &["hook request answered"]);
    let answered = &answered[seen..];
    assert_eq!(answered.len(), 16, "answers logged: {answered:?}");
    let mut passes: Vec<&str> = answered
        .iter()
        .filter_map(|l| l.split_whitespace().find(|f| f.starts_with("pass=")))
        .collect();
    passes.dedup();
    eprintln!("  16 hooks answered by {} pass(es)", passes.len());
    assert!(passes.len() <= 2, "passes used: {passes:?}");
    assert_eq!(lab.holders(), vec![m]);
}

/// (d) What is not a valid request gets a one-line refusal (or, for a
/// master not configured here, "nothing to do"), the watcher keeps
/// serving, and no address moves: a client cannot choose the holder.
fn bad_requests_are_refused(lab: &mut Lab, _: &mut ()) {
    let m = settled(lab);
    let other = NODES.into_iter().find(|&n| n != m).expect("a replica");
    let sock = lab.control_socket(m);
    let before = lab.all_addrs();
    let hook = |args: Vec<String>| {
        let a: Vec<String> = args
            .into_iter()
            .skip(1)
            .map(|s| format!("\"{s}\""))
            .collect();
        format!("{{\"op\":\"hook\",\"args\":[{}]}}\n", a.join(","))
    };
    let mut wrong_ip = hook_cmd("observer", m, other);
    wrong_ip[6] = "192.0.2.300".into();
    let mut not_here = hook_cmd("observer", m, other);
    not_here[1] = "othermaster".into();
    let cases: Vec<(String, Vec<u8>, &str, &str)> = vec![
        (
            "junk".into(),
            b"hello\n".to_vec(),
            "\"code\":2",
            "malformed request",
        ),
        (
            "oversize".into(),
            vec![b'x'; 5000],
            "\"code\":2",
            "over 4096 bytes",
        ),
        (
            "a placement".into(),
            b"{\"op\":\"place\",\"vip\":\"192.0.2.100\",\"to\":\"192.0.2.12\"}\n".to_vec(),
            "\"code\":2",
            "unknown variant",
        ),
        (
            "bad TO_IP".into(),
            hook(wrong_ip).into_bytes(),
            "\"code\":2",
            "TO_IP",
        ),
        (
            "unknown master".into(),
            hook(not_here).into_bytes(),
            "\"code\":0",
            "not configured here",
        ),
        // Valid, but naming another node: the Sentinels decide, not the client.
        (
            "stale arguments".into(),
            hook(hook_cmd("observer", m, other)).into_bytes(),
            "\"code\":0",
            MASTER_NAME,
        ),
    ];
    for (what, bytes, code, text) in &cases {
        let r = exchange(&sock, bytes);
        assert!(
            r.contains(code) && r.contains(text) && r.trim_end().lines().count() == 1,
            "{what}: reply {r:?}, want {code} and {text:?} on one line"
        );
    }
    // A client that connects and says nothing is cut off after 2 s.
    let t = Instant::now();
    let mut s = UnixStream::connect(&sock).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut r = String::new();
    let _ = s.read_to_string(&mut r);
    assert!(r.contains("no request within"), "silent client: {r:?}");
    assert!(t.elapsed() < Duration::from_secs(5));
    // Anyone may connect (mode 0666); who is served is decided by the
    // peer's credentials: uid 1 (`daemon`) is not in control_socket_users.
    let mode = std::fs::metadata(&sock).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o666, "socket mode");
    let o = lab.sv_as(m, Privilege::NoCapsAs(1), &hook_cmd("observer", other, m));
    expect_exit(&o, 2, "hook from a uid not in control_socket_users");
    assert!(
        stderr(&o).contains(
            "uid 1 (daemon) is neither root, the watcher's user, nor in control_socket_users"
        ),
        "refusal must say why: {}",
        show(&o)
    );
    assert_eq!(lab.all_addrs(), before, "addresses changed");
    assert!(ping(&sock).is_ok(), "watcher stopped answering");
}

/// (e) Without a watcher: an unprivileged hook exits 1 (Sentinel retries)
/// with one line naming the socket and the capabilities, touching nothing;
/// a hook holding both capabilities acts itself.
fn without_watcher(lab: &mut Lab, _: &mut ()) {
    let m = settled(lab);
    let other = NODES.into_iter().find(|&n| n != m).expect("a replica");
    let st = lab.watcher(m).stop("TERM", Duration::from_secs(5));
    assert_eq!(
        st.and_then(|s| s.code()),
        Some(0),
        "watcher exit on SIGTERM"
    );
    let sock = lab.control_socket(m);
    assert!(!sock.exists(), "the socket outlived its watcher");
    // Something for the hook to do: the VIP gone from the master.
    lab.delete_vip(m);
    let before = lab.all_addrs();
    let o = lab.sv_as(m, HARDENED_HOOK, &hook_cmd("observer", other, m));
    expect_exit(&o, 1, "unprivileged hook with no watcher");
    let last = stderr(&o).lines().last().unwrap_or("").to_string();
    for want in [sock.to_str().unwrap(), "CAP_NET_ADMIN", "CAP_NET_RAW"] {
        assert!(last.contains(want), "last line {last:?} lacks {want:?}");
    }
    assert_eq!(lab.all_addrs(), before, "addresses changed");
    // Both capabilities, as on a host whose Sentinel runs unconfined.
    let o = lab.sv_as(m, Privilege::TwoCaps, &hook_cmd("observer", other, m));
    expect_exit(&o, 0, "hook with both capabilities and no watcher");
    assert!(stderr(&o).contains("acting itself"), "{}", show(&o));
    assert_eq!(lab.holders(), vec![m]);
    start_watcher(lab, m);
}

/// (f) A watcher killed with SIGKILL leaves its socket file: the next one
/// replaces it. A second watcher beside a live one refuses to start.
fn stale_socket_and_second_watcher(lab: &mut Lab, _: &mut ()) {
    let m = settled(lab);
    let pid = lab.watcher(m).pid().expect("running");
    lab.watcher(m).kill();
    let sock = lab.control_socket(m);
    assert!(
        sock.exists(),
        "SIGKILL cannot remove the socket (pid {pid})"
    );
    start_watcher(lab, m);
    let mut second = lab.spawn_watcher(m, WATCHER);
    let st = second
        .stop("0", Duration::from_secs(10))
        .expect("a second watcher must exit by itself");
    assert_ne!(st.code(), Some(0), "second watcher exit");
    assert!(
        second.output().contains("another watcher is listening"),
        "the second watcher did not say why it stopped: {:?}",
        second.output()
    );
    assert!(ping(&sock).is_ok(), "the first watcher stopped answering");
    assert_eq!(lab.holders(), vec![m]);
}

/// (g) The config readable by root alone (it may hold passwords): the
/// hook, as Sentinel's user, still hands its call to the watcher, found
/// through `SENTINEL_VIP_CONTROL_SOCKET` (on a packaged host, the default
/// path); with no watcher it exits 1 saying it cannot act without the
/// config, touching nothing.
fn config_unreadable_by_the_hook(lab: &mut Lab, _: &mut ()) {
    let m = settled(lab);
    let other = NODES.into_iter().find(|&n| n != m).expect("a replica");
    let cfg = lab.config_path(m);
    let sock = lab.control_socket(m);
    let env = [("SENTINEL_VIP_CONTROL_SOCKET", sock.to_str().unwrap())];
    std::fs::set_permissions(&cfg, std::fs::Permissions::from_mode(0o600)).unwrap();
    let restore =
        || std::fs::set_permissions(&cfg, std::fs::Permissions::from_mode(0o644)).unwrap();
    let o = lab.sv_env(m, HARDENED_HOOK, &hook_cmd("observer", other, m), &env);
    expect_exit(&o, 0, "hook that cannot read the config, watcher up");
    assert!(
        stderr(&o).contains("answered by the watcher"),
        "{}",
        show(&o)
    );
    lab.watcher(m).stop("TERM", Duration::from_secs(5));
    lab.delete_vip(m);
    let before = lab.all_addrs();
    let o = lab.sv_env(m, HARDENED_HOOK, &hook_cmd("observer", other, m), &env);
    restore();
    expect_exit(&o, 1, "hook that cannot read the config, no watcher");
    let last = stderr(&o).lines().last().unwrap_or("").to_string();
    for want in [
        sock.to_str().unwrap(),
        "needs the config",
        "Permission denied",
    ] {
        assert!(last.contains(want), "last line {last:?} lacks {want:?}");
    }
    assert_eq!(lab.all_addrs(), before, "addresses changed");
    start_watcher(lab, m);
    lab.expect_vip_still_on(m, Duration::from_secs(5), "the watcher back");
}

//! End-to-end tests of the hook handing its call to the watcher over the
//! control socket, as it must under a hardened Sentinel: the hook runs as
//! `nobody` with no capability (as Debian's redis-sentinel.service runs it)
//! and the watchers as `nobody` with only CAP_NET_ADMIN and CAP_NET_RAW.
//! Judged by the kernel's addresses, exit codes and both sides' logs.

mod lab;

use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use lab::check::*;
use lab::{hook_cmd, Lab, LabOptions, RunAs, SpawnId, MASTER_NAME, NODES};

/// The watcher running on each node (index n-1).
#[derive(Default)]
struct Watchers([Option<SpawnId>; 3]);

impl Watchers {
    fn start(&mut self, lab: &mut Lab, n: usize) {
        self.0[n - 1] = Some(lab.spawn_watcher(n, RunAs::TwoCaps));
        let sock = lab.control_socket(n);
        let up = lab::wait_until(Duration::from_secs(5), POLL, || ping(&sock).is_ok());
        assert!(up, "watcher on n{n} never answered on {}", sock.display());
    }
    fn id(&self, n: usize) -> SpawnId {
        self.0[n - 1].expect("watcher started")
    }
}

#[test]
fn hook_hands_off_to_watcher() {
    if !lab::e2e_enabled() {
        return;
    }
    let started = Instant::now();
    let lab = Lab::new(
        Path::new(env!("CARGO_BIN_EXE_sentinel-vip")),
        LabOptions::default(),
    );
    lab.wait_ready();
    for n in NODES {
        // The hooks below run as nobody: they append to the log too.
        for f in [
            lab.sv_log_path(n),
            lab.node_dir(n).join("sentinel-vip.lock"),
        ] {
            let _ = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&f);
            std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o666)).unwrap();
        }
    }
    let scenarios: [(&str, Scenario<Watchers>); 6] = [
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
    ];
    run_scenarios(lab, &mut Watchers::default(), &scenarios, started);
}

/// How a hook is run here.
#[derive(Clone, Copy)]
enum Caps {
    /// As Debian's redis-sentinel.service runs its scripts: no capability.
    None,
    /// Both capabilities, as on a host whose Sentinel runs unconfined.
    Two,
}

/// sentinel-vip as `nobody` (uid/gid 65534) in node `n`'s namespace.
fn sv_nobody(lab: &Lab, n: usize, caps: Caps, args: &[String]) -> Output {
    sv_uid(lab, n, 65534, caps, args)
}

fn sv_uid(lab: &Lab, n: usize, uid: u32, caps: Caps, args: &[String]) -> Output {
    let set = match caps {
        Caps::None => "-all",
        Caps::Two => "-all,+net_admin,+net_raw",
    };
    let mut c = Command::new("ip");
    c.args(["netns", "exec", &lab.ns(n), "timeout", "-k", "2", "60"])
        .arg("setpriv")
        .arg(format!("--reuid={uid}"))
        .arg(format!("--regid={uid}"))
        .arg("--clear-groups")
        .arg(format!("--inh-caps={set}"))
        .arg(format!("--bounding-set={set}"));
    if let Caps::Two = caps {
        c.arg(format!("--ambient-caps={set}"));
    }
    c.arg(lab.bin())
        .args(args)
        .env("SENTINEL_VIP_CONFIG", lab.config_path(n))
        .stdin(Stdio::null())
        .output()
        .expect("run setpriv")
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

fn log_lines(lab: &Lab, n: usize, what: &str) -> Vec<String> {
    std::fs::read_to_string(lab.sv_log_path(n))
        .unwrap_or_default()
        .lines()
        .filter(|l| l.contains(what))
        .map(str::to_string)
        .collect()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Waits for the VIP on Sentinel's master alone; returns it.
fn settled(lab: &Lab) -> usize {
    let m = lab.master_node();
    expect_vip_still_on(lab, m, Duration::from_secs(10), "settled");
    lab.master_node()
}

/// (a) With a watcher on every node, a hook with no capability at all is
/// answered by the watcher: exit 0 everywhere, nothing done by the hook
/// itself, the VIP where Sentinel says.
fn unprivileged_hook_is_answered(lab: &mut Lab, w: &mut Watchers) {
    for n in NODES {
        w.start(lab, n);
    }
    let m = settled(lab);
    let other = NODES.into_iter().find(|&n| n != m).expect("a replica");
    for n in NODES {
        let o = sv_nobody(lab, n, Caps::None, &hook_cmd("observer", other, m));
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
            log_lines(lab, n, "hook: acting itself").is_empty(),
            "a hook acted itself on n{n}"
        );
    }
}

/// (b) A failover: Sentinel runs the hook on every node; each hands its
/// call to the local watcher; the VIP moves; no script error.
fn failover_through_the_socket(lab: &mut Lab, _: &mut Watchers) {
    let old = settled(lab);
    let before: Vec<usize> = NODES
        .iter()
        .map(|&n| log_lines(lab, n, "answered by the watcher").len())
        .collect();
    lab.sentinel_failover();
    let new = wait_vip_moves(lab, old, Duration::from_secs(20));
    // Every Sentinel runs the script once it knows the new configuration.
    let all = lab::wait_until(Duration::from_secs(15), POLL, || {
        NODES
            .iter()
            .all(|&n| log_lines(lab, n, "answered by the watcher").len() > before[n - 1])
    });
    assert!(all, "not every node's hook was answered by its watcher");
    for n in NODES {
        assert!(
            log_lines(lab, n, "hook: acting itself").is_empty(),
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
fn burst_shares_passes(lab: &mut Lab, _: &mut Watchers) {
    let m = settled(lab);
    let other = NODES.into_iter().find(|&n| n != m).expect("a replica");
    let lock = lab.node_dir(m).join("sentinel-vip.lock");
    let mut holder = Command::new("flock")
        .arg(&lock)
        .args(["sleep", "1.5"])
        .spawn()
        .expect("flock");
    std::thread::sleep(Duration::from_millis(100));
    let seen = log_lines(lab, m, "hook request answered").len();
    let runs: Vec<_> = (0..16)
        .map(|_| {
            let (ns, bin, cfg) = (lab.ns(m), lab.bin().to_owned(), lab.config_path(m));
            let args = hook_cmd("observer", other, m);
            std::thread::spawn(move || {
                Command::new("ip")
                    .args([
                        "netns",
                        "exec",
                        &ns,
                        "setpriv",
                        "--reuid=65534",
                        "--regid=65534",
                    ])
                    .args(["--clear-groups", "--inh-caps=-all", "--bounding-set=-all"])
                    .arg(bin)
                    .args(args)
                    .env("SENTINEL_VIP_CONFIG", cfg)
                    .output()
                    .expect("hook")
            })
        })
        .collect();
    let outs: Vec<Output> = runs.into_iter().map(|t| t.join().unwrap()).collect();
    let _ = holder.wait();
    for (i, o) in outs.iter().enumerate() {
        expect_exit(o, 0, &format!("hook {i} of the burst"));
    }
    let answered = log_lines(lab, m, "hook request answered");
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
fn bad_requests_are_refused(lab: &mut Lab, _: &mut Watchers) {
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
    // A peer neither root nor in the group, with the mode loosened by hand:
    // refused on its credentials (uid 1 is `daemon`).
    std::fs::set_permissions(&sock, std::fs::Permissions::from_mode(0o666)).unwrap();
    let o = sv_uid(lab, m, 1, Caps::None, &hook_cmd("observer", other, m));
    std::fs::set_permissions(&sock, std::fs::Permissions::from_mode(0o660)).unwrap();
    expect_exit(&o, 2, "hook from a uid outside the group");
    assert!(
        stderr(&o).contains("neither root nor in group"),
        "refusal must say why: {}",
        show(&o)
    );
    assert_eq!(lab.all_addrs(), before, "addresses changed");
    assert!(ping(&sock).is_ok(), "watcher stopped answering");
}

/// (e) Without a watcher: an unprivileged hook exits 1 (Sentinel retries)
/// with one line naming the socket and the capabilities, touching nothing;
/// a hook holding both capabilities acts itself.
fn without_watcher(lab: &mut Lab, w: &mut Watchers) {
    let m = settled(lab);
    let other = NODES.into_iter().find(|&n| n != m).expect("a replica");
    let st = lab.stop_spawned(w.id(m), "TERM", Duration::from_secs(5));
    assert_eq!(
        st.and_then(|s| s.code()),
        Some(0),
        "watcher exit on SIGTERM"
    );
    let sock = lab.control_socket(m);
    assert!(!sock.exists(), "the socket outlived its watcher");
    // Something for the hook to do: the VIP gone from the master.
    lab.run_node(m, &["ip", "addr", "del", lab::VIP4_CIDR, "dev", "eth0"]);
    let before = lab.all_addrs();
    let o = sv_nobody(lab, m, Caps::None, &hook_cmd("observer", other, m));
    expect_exit(&o, 1, "unprivileged hook with no watcher");
    let last = stderr(&o).lines().last().unwrap_or("").to_string();
    for want in [sock.to_str().unwrap(), "CAP_NET_ADMIN", "CAP_NET_RAW"] {
        assert!(last.contains(want), "last line {last:?} lacks {want:?}");
    }
    assert_eq!(lab.all_addrs(), before, "addresses changed");
    let o = sv_nobody(lab, m, Caps::Two, &hook_cmd("observer", other, m));
    expect_exit(&o, 0, "hook with both capabilities and no watcher");
    assert!(stderr(&o).contains("acting itself"), "{}", show(&o));
    assert_eq!(lab.holders(), vec![m]);
    w.start(lab, m);
}

/// (f) A watcher killed with SIGKILL leaves its socket file: the next one
/// replaces it. A second watcher beside a live one refuses to start.
fn stale_socket_and_second_watcher(lab: &mut Lab, w: &mut Watchers) {
    let m = settled(lab);
    let pid = lab.spawned_pid(w.id(m)).expect("running");
    let _ = lab.stop_spawned(w.id(m), "KILL", Duration::from_secs(5));
    let sock = lab.control_socket(m);
    assert!(
        sock.exists(),
        "SIGKILL cannot remove the socket (pid {pid})"
    );
    w.start(lab, m);
    let second = lab.spawn_watcher(m, RunAs::TwoCaps);
    let st = lab
        .stop_spawned(second, "0", Duration::from_secs(10))
        .expect("a second watcher must exit by itself");
    assert_ne!(st.code(), Some(0), "second watcher exit");
    let said = std::fs::read_dir(lab.node_dir(m))
        .unwrap()
        .filter_map(|e| std::fs::read_to_string(e.ok()?.path()).ok())
        .any(|t| t.contains("another watcher is listening"));
    assert!(said, "the second watcher did not say why it stopped");
    assert!(ping(&sock).is_ok(), "the first watcher stopped answering");
    assert_eq!(lab.holders(), vec![m]);
}

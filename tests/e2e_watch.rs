//! End-to-end tests of watch mode: one `sentinel-vip watch` per node, run
//! as `nobody` with only CAP_NET_ADMIN and CAP_NET_RAW, in the namespace lab
//! with real Redis and Sentinel, on each server build the lab runs.
//! Sentinel's reconfig script is off, so every move seen here is the
//! watchers' doing.

use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use sentinel_vip_lab::suite::{expect_exit, one_lab_at_a_time, run_scenarios, Step};
use sentinel_vip_lab::{e2e_enabled, wait_until, Family, Lab, LabOptions, Privilege};
use sentinel_vip_lab::{NODES, POLL, VIP4};

/// As the systemd unit runs it.
const WATCHER: Privilege = Privilege::TwoCaps;
/// The watcher's user in the lab.
const NOBODY: u32 = 65534;

#[test]
fn watch_mode_end_to_end_redis() {
    watch_mode_end_to_end(Family::Redis);
}

#[test]
fn watch_mode_end_to_end_valkey() {
    watch_mode_end_to_end(Family::Valkey);
}

#[test]
fn watch_mode_end_to_end_redis8() {
    watch_mode_end_to_end(Family::Redis8);
}

#[test]
fn watch_mode_end_to_end_valkey9() {
    watch_mode_end_to_end(Family::Valkey9);
}

/// Every scenario, in order, on one lab running `family`'s servers.
fn watch_mode_end_to_end(family: Family) {
    if !e2e_enabled() {
        return;
    }
    let _one = one_lab_at_a_time();
    let started = Instant::now();
    let programs = family.programs();
    let opts = LabOptions {
        reconfig_script: false,
        programs,
        ..LabOptions::default()
    };
    let lab = Lab::new(Path::new(env!("CARGO_BIN_EXE_sentinel-vip")), opts);
    lab.wait_ready();
    eprintln!(
        "lab {} ({} {}) up in {:.1} s",
        lab.prefix,
        family.name(),
        programs.version(),
        started.elapsed().as_secs_f64()
    );
    let scenarios: [(&str, Step<()>); 8] = [
        ("a-no-capabilities", without_capabilities_watch_refuses),
        ("b-start-places-vip", watchers_place_vip_on_master),
        ("c-master-killed", killed_master_moves_vip),
        ("d-vip-deleted-by-hand", deleted_vip_comes_back),
        ("d2-lock-cannot-stall", the_lock_cannot_stall_the_watcher),
        (
            "e-watcher-killed-during-failover",
            killed_watcher_converges_on_restart,
        ),
        ("f-sentinels-restarted", sentinel_restart_keeps_vip),
        ("g-sigterm-policies", sigterm_keeps_or_releases),
    ];
    run_scenarios(lab, &mut (), &scenarios, started);
}

/// (a) Without its two capabilities the watcher refuses to start, naming
/// what is missing, and touches nothing.
fn without_capabilities_watch_refuses(lab: &mut Lab, _: &mut ()) {
    let before = lab.all_addrs();
    lab.start_watcher(1, Privilege::NoCaps);
    let st = lab
        .watcher(1)
        .stop("0", Duration::from_secs(10))
        .expect("watch without caps must exit by itself");
    assert_eq!(st.code(), Some(2), "exit code without capabilities");
    let out = lab.watcher(1).output();
    assert!(
        out.contains("CAP_NET_ADMIN") && out.contains("CAP_NET_RAW"),
        "error must name the capabilities: {out:?}"
    );
    assert_eq!(lab.all_addrs(), before, "addresses changed");
}

/// (b) Watchers started with no failover put the VIP on the master only,
/// and `status` agrees on every node.
fn watchers_place_vip_on_master(lab: &mut Lab, _: &mut ()) {
    assert!(
        lab.holders().is_empty(),
        "VIP held before the watchers start"
    );
    for n in NODES {
        lab.start_watcher(n, WATCHER);
    }
    let m = lab.wait_one_holder(Duration::from_secs(5));
    assert_eq!(m, 1);
    // It stays put: give the timers a few passes.
    std::thread::sleep(Duration::from_millis(2500));
    assert_eq!(
        lab.holders(),
        vec![1],
        "holders after a few reconcile passes"
    );
    for n in NODES {
        expect_exit(&lab.sv(n, &["status"]), 0, &format!("status on n{n}"));
    }
    lab.client_write_lands_on(1, "watch-b", "b")
        .unwrap_or_else(|e| panic!("write through the VIP: {e}"));
}

/// (c) Killing the master's redis moves the VIP to the new master only, and
/// the client's neighbour entry follows without client traffic.
fn killed_master_moves_vip(lab: &mut Lab, _: &mut ()) {
    let old = lab.master_node();
    lab.client_ping().unwrap_or_else(|e| panic!("before: {e}"));
    assert_eq!(lab.client_vip_mac(), lab.mac(old));
    let t = Instant::now();
    lab.kill_redis(old);
    let new = lab.wait_vip_moves(old, Duration::from_secs(20));
    eprintln!(
        "  c: VIP moved n{old} -> n{new} {:.1} s after kill -9",
        t.elapsed().as_secs_f64()
    );
    lab.expect_client_mac(VIP4, new);
    lab.client_write_lands_on(new, "watch-c", "c")
        .unwrap_or_else(|e| panic!("write after failover: {e}"));
    lab.restart_redis(old);
    lab.wait_ready();
    lab.expect_vip_still_on(
        new,
        Duration::from_secs(10),
        "c: after the old master rejoined",
    );
}

/// (d) The VIP deleted by hand on the holder comes back within a second,
/// and is announced again.
fn deleted_vip_comes_back(lab: &mut Lab, _: &mut ()) {
    let h = lab.master_node();
    assert_eq!(lab.holders(), vec![h]);
    let t = Instant::now();
    lab.delete_vip(h);
    let back = wait_until(Duration::from_secs(1), Duration::from_millis(5), || {
        lab.holds(h, VIP4)
    });
    let took = t.elapsed();
    assert!(back, "VIP not back on n{h} within 1 s");
    eprintln!(
        "  d: VIP back on n{h} {:.0} ms after ip addr del",
        took.as_secs_f64() * 1e3
    );
    assert_eq!(lab.holders(), vec![h]);
}

/// (d2) The host lock (issue 22, defect 2). Another local user cannot
/// take it: the watcher's is its own (0600 in its runtime directory), so
/// a VIP stripped while that user tries comes back at once. One who may
/// take it (root) and holds it makes a pass wait at most 5 s: the watcher
/// says so in its log while the lock is still held, and its next pass
/// after the release puts the VIP back.
fn the_lock_cannot_stall_the_watcher(lab: &mut Lab, _: &mut ()) {
    let h = lab.master_node();
    assert_eq!(lab.holders(), vec![h]);
    let lock = lab.lock_path(h);
    let mode = std::fs::metadata(&lock).map(|m| (m.mode() & 0o777, m.uid()));
    eprintln!("  d2: lock {}: mode and owner {mode:?}", lock.display());
    // uid 1 (`daemon`): neither root nor the watcher's user.
    let mut other = Command::new("setpriv")
        .args(["--reuid=1", "--regid=1", "--clear-groups", "flock", "-x"])
        .arg(&lock)
        .args(["sleep", "8"])
        .stderr(Stdio::piped())
        .spawn()
        .expect("setpriv flock");
    std::thread::sleep(Duration::from_millis(300));
    lab.delete_vip(h);
    let back = wait_until(Duration::from_secs(3), Duration::from_millis(10), || {
        lab.holds(h, VIP4)
    });
    let held_by_other = other.try_wait().ok().flatten().is_none();
    let _ = other.kill();
    let out = other.wait_with_output().expect("flock");
    assert!(
        back && !held_by_other,
        "uid 1 took the watcher's lock (flock still running: {held_by_other}; lock {mode:?}) \
         and the stripped VIP stayed away for 3 s; flock said {:?}",
        String::from_utf8_lossy(&out.stderr).trim()
    );
    assert_eq!(mode.ok(), Some((0o600, NOBODY)), "lock mode and owner");
    // Root holds it for 6.5 s, longer than a pass waits.
    let seen = lab.log_count(h, &["cannot take the lock"]);
    let mut root = Command::new("flock")
        .arg(&lock)
        .args(["sleep", "6.5"])
        .spawn()
        .expect("flock");
    std::thread::sleep(Duration::from_millis(300));
    lab.delete_vip(h);
    let complained = wait_until(Duration::from_secs(6), POLL, || {
        lab.log_count(h, &["cannot take the lock"]) > seen
    });
    let still_held = root.try_wait().ok().flatten().is_none();
    let _ = root.wait();
    let t = Instant::now();
    let back = wait_until(Duration::from_secs(3), Duration::from_millis(10), || {
        lab.holds(h, VIP4)
    });
    assert!(
        complained && still_held,
        "no lock complaint in the watcher's log while root held the lock for 6.5 s"
    );
    assert!(back, "VIP not back within 3 s of the lock's release");
    eprintln!(
        "  d2: VIP back {:.0} ms after root released the lock",
        t.elapsed().as_secs_f64() * 1e3
    );
    assert_eq!(lab.holders(), vec![h]);
}

/// (e) The holder's watcher dies (SIGKILL), a failover happens meanwhile,
/// the watcher is restarted: everything converges on the new master.
fn killed_watcher_converges_on_restart(lab: &mut Lab, _: &mut ()) {
    let old = lab.master_node();
    assert_eq!(lab.holders(), vec![old]);
    lab.watcher(old).kill();
    lab.sentinel_failover();
    let ok = wait_until(Duration::from_secs(15), POLL, || {
        lab.sentinels_agree()
            .is_some_and(|m| m != old && lab.holds(m, VIP4))
    });
    assert!(
        ok,
        "the new master's watcher did not take the VIP: holders {:?}",
        lab.holders()
    );
    // Nobody is left to release it on the old holder until its watcher runs.
    assert!(
        lab.holds(old, VIP4),
        "the dead watcher's VIP vanished by itself"
    );
    lab.start_watcher(old, WATCHER);
    let new = lab.wait_one_holder(Duration::from_secs(5));
    assert_ne!(new, old);
    lab.wait_ready();
}

/// (f) Restarting every Sentinel does not move the VIP; the watchers
/// resubscribe, and a later failover still moves it.
fn sentinel_restart_keeps_vip(lab: &mut Lab, _: &mut ()) {
    let h = lab.master_node();
    assert_eq!(lab.holders(), vec![h]);
    let subs: Vec<usize> = NODES
        .iter()
        .map(|&n| lab.log_count(n, &["subscribed"]))
        .collect();
    lab.restart_sentinels();
    let mut moved = false;
    let resubscribed = wait_until(Duration::from_secs(20), POLL, || {
        moved |= lab.holders() != vec![h];
        // Each watcher holds three subscriptions; all must come back.
        NODES
            .iter()
            .all(|&n| lab.log_count(n, &["subscribed"]) >= subs[n - 1] + 3)
    });
    assert!(!moved, "the VIP moved while Sentinels restarted");
    assert!(
        resubscribed,
        "watchers did not resubscribe to all three Sentinels"
    );
    lab.wait_ready();
    assert_eq!(
        lab.holders(),
        vec![h],
        "holders after the Sentinels restarted"
    );
    lab.sentinel_failover();
    let new = lab.wait_vip_moves(h, Duration::from_secs(15));
    eprintln!("  f: failover after the restart moved the VIP n{h} -> n{new}");
    lab.wait_ready();
}

/// (g) SIGTERM with the default policy keeps the VIP; after a SIGHUP reload
/// with `on_exit = "release"`, SIGTERM drops it; a new watcher takes it back.
fn sigterm_keeps_or_releases(lab: &mut Lab, _: &mut ()) {
    let h = lab.master_node();
    assert_eq!(lab.holders(), vec![h]);
    let st = lab.watcher(h).stop("TERM", Duration::from_secs(5));
    assert_eq!(
        st.and_then(|s| s.code()),
        Some(0),
        "watcher exit on SIGTERM"
    );
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(lab.holders(), vec![h], "on_exit = keep must keep the VIP");

    // SIGHUP before the handler is installed would end the process: wait
    // until the new watcher has subscribed.
    let subs = lab.log_count(h, &["subscribed"]);
    lab.start_watcher(h, WATCHER);
    let started = wait_until(Duration::from_secs(5), POLL, || {
        lab.log_count(h, &["subscribed"]) > subs
    });
    assert!(started, "restarted watcher never subscribed");
    lab.rewrite_config(h, "on_exit = \"release\"");
    lab.reload_watcher(h);
    assert_eq!(lab.holders(), vec![h], "reload must not move the VIP");
    let st = lab.watcher(h).stop("TERM", Duration::from_secs(5));
    assert_eq!(
        st.and_then(|s| s.code()),
        Some(0),
        "watcher exit on SIGTERM"
    );
    assert!(
        lab.holders().is_empty(),
        "on_exit = release must drop the VIP: holders {:?}",
        lab.holders()
    );

    lab.rewrite_config(h, "");
    lab.start_watcher(h, WATCHER);
    assert_eq!(lab.wait_one_holder(Duration::from_secs(5)), h);
}

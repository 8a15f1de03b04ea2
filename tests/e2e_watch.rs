//! End-to-end tests of watch mode: one `sentinel-vip watch` per node, run
//! as `nobody` with only CAP_NET_ADMIN and CAP_NET_RAW, in the namespace lab
//! with real Redis and Sentinel, on each server build the lab runs.
//! Sentinel's reconfig script is off, so every move seen here is the
//! watchers' doing.

use std::path::Path;
use std::time::{Duration, Instant};

use sentinel_vip_lab::suite::{expect_exit, one_lab_at_a_time, run_scenarios, Step};
use sentinel_vip_lab::{e2e_enabled, wait_until, Family, Lab, LabOptions, Privilege};
use sentinel_vip_lab::{NODES, POLL, VIP4};

/// As the systemd unit runs it.
const WATCHER: Privilege = Privilege::TwoCaps;

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
    let scenarios: [(&str, Step<()>); 7] = [
        ("a-no-capabilities", without_capabilities_watch_refuses),
        ("b-start-places-vip", watchers_place_vip_on_master),
        ("c-master-killed", killed_master_moves_vip),
        ("d-vip-deleted-by-hand", deleted_vip_comes_back),
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

//! The routed lab's faults (issue 19): the master's host cut off whole,
//! cut off from the other hosts only (with `release`, then `keep`), its
//! routing daemon restarted, the watchers restarted. Each starts by
//! undoing a cut an earlier failed scenario may have left.

use std::time::Duration;

use sentinel_vip_lab::routed::{BFD_INTERVAL_MS, BFD_MULTIPLIER};
use sentinel_vip_lab::{node_ip, now_epoch, wait_until, Lab, MASTER_NAME, NODES, POLL};

use super::{node_top, Shared, WATCHER};

/// `sentinel_loss_after_ms` for the cut-off cases: shorter than the
/// default 10 s, so that the case is short; the bound below scales with it.
const LOSS_AFTER_MS: u64 = 3000;
/// The watchers' timer pass (`reconcile_interval_ms`, the default).
const PASS_MS: u64 = 1000;
/// How long a cut lasts when nothing ends it sooner.
const CUT_FOR: Duration = Duration::from_secs(8);

/// Node configs with `on_sentinel_loss = policy`, every watcher restarted
/// and subscribed to the three Sentinels again.
fn set_policy(lab: &mut Lab, policy: &str) {
    let before: Vec<usize> = NODES.map(|n| lab.log_count(n, &["subscribed"])).to_vec();
    let top =
        format!("on_sentinel_loss = \"{policy}\"\nsentinel_loss_after_ms = {LOSS_AFTER_MS}\n");
    for n in NODES {
        lab.rewrite_config(n, &node_top(lab, n, &top));
    }
    lab.restart_watchers(WATCHER);
    for n in NODES {
        let ok = wait_until(Duration::from_secs(10), Duration::from_millis(50), || {
            lab.log_count(n, &["subscribed"]) >= before[n - 1] + 3
        });
        assert!(ok, "the watcher on n{n} did not subscribe to 3 Sentinels");
    }
}

/// Waits for the master the Sentinels other than `cut`'s agree on to hold
/// the VIP and have the router's route; returns it.
fn wait_new_routed(lab: &Lab, cut: usize, timeout: Duration) -> usize {
    let mut new = None;
    let ok = wait_until(timeout, POLL, || {
        new = lab
            .majority_master(cut)
            .filter(|&x| lab.routed_vip_on(x).is_some() && lab.route_via() == Some(x));
        new.is_some()
    });
    assert!(
        ok,
        "no new holder routed within {timeout:?}: Sentinels {:?}, holders {:?}, router via {:?}",
        lab.live_sentinels_master(cut),
        lab.routed_holders(),
        lab.route_via()
    );
    new.expect("set when ok")
}

/// After a heal at `healed`: how long the router sent the VIP back to the
/// old holder `old` before it went for good, if it did.
fn back_to_old(sh: &Shared, old: usize, healed: f64) -> Option<f64> {
    let ev = sh.routes.after(healed);
    let i = ev.iter().position(|e| e.via == Some(old))?;
    let end = ev[i + 1..].iter().find(|e| e.via != Some(old))?;
    Some((end.at - ev[i].at) * 1e3)
}

fn back_text(w: Option<f64>, old: usize) -> String {
    match w {
        Some(ms) => format!("the router sent the VIP back to n{old} for {ms:.0} ms (its session came back before its watcher released)"),
        None => format!("the router never sent the VIP back to n{old}"),
    }
}

/// (c) The master's whole host cut off: its BIRD falls silent without a
/// withdrawal. The router stops using its route within BFD's detection
/// time (100 ms × 3, asserted with a margin for this machine), the new
/// master's route wins once it is announced, and writes follow.
pub fn host_cut_off_silent(lab: &mut Lab, sh: &mut Shared) {
    lab.uncut();
    let m = lab.wait_routed_holder(0, Duration::from_secs(20));
    let t0 = now_epoch();
    lab.cut_host(m);
    let gone = sh
        .routes
        .wait_for(t0, Duration::from_secs(5), |e| e.via != Some(m));
    let new = gone
        .as_ref()
        .map(|_| wait_new_routed(lab, m, Duration::from_secs(20)));
    let took = new.map(|new| {
        let route = sh.routes.after(t0).into_iter().find(|e| e.via == Some(new));
        let write = lab.routed_write_lands_on(new, "routed-c", "c");
        (new, route.map(|e| (e.at - t0) * 1e3), write)
    });
    let healed = now_epoch();
    lab.uncut();
    let gone = gone.unwrap_or_else(|| {
        panic!(
            "the router still routes to the cut-off n{m}: {}",
            sh.routes.text()
        )
    });
    let detect = (gone.at - t0) * 1e3;
    let (new, route_ms, write) = took.expect("set with gone");
    write.unwrap_or_else(|e| panic!("write through the VIP after the cut: {e}"));
    let fin = lab.rejoin_routed();
    let back = back_to_old(sh, m, healed);
    let bfd = (BFD_INTERVAL_MS * BFD_MULTIPLIER) as f64;
    sh.figure(format!(
        "(c) n{m} cut off whole: the router dropped its route {detect:.0} ms after the cut (BFD {BFD_INTERVAL_MS} ms x {BFD_MULTIPLIER}); n{new}'s route {} ms after the cut; after the heal {}; final holder n{fin}",
        route_ms.map_or("--".into(), |v| format!("{v:.0}")),
        back_text(back, m)
    ));
    assert!(
        detect <= bfd + 700.0,
        "the router used the silent host's route {detect:.0} ms, beyond BFD's {bfd} ms and a 700 ms margin"
    );
}

/// (d) With `release`: the old master cut off from the Sentinels (and
/// the other hosts) but not from the router drops the VIP after
/// `sentinel_loss_after_ms` plus a pass, and its BIRD withdraws the route
/// at once: gone from the router's BIRD within that plus BGP's moment.
pub fn release_when_cut_from_sentinels(lab: &mut Lab, sh: &mut Shared) {
    lab.uncut();
    set_policy(lab, "release");
    let m = lab.wait_routed_holder(0, Duration::from_secs(20));
    let t0 = now_epoch();
    lab.cut_from_hosts(m);
    let mut withdrawn = None;
    wait_until(Duration::from_secs(12), Duration::from_millis(20), || {
        if !lab.router_candidates().contains(&m) {
            withdrawn = Some(now_epoch());
        }
        withdrawn.is_some()
    });
    let new = withdrawn.map(|_| wait_new_routed(lab, m, Duration::from_secs(20)));
    let write = new.map(|n| lab.routed_write_lands_on(n, "routed-d", "d"));
    let away = sh
        .routes
        .after(t0)
        .into_iter()
        .find(|e| e.via != Some(m))
        .map(|e| (e.at - t0) * 1e3);
    lab.uncut();
    let withdrawn =
        withdrawn.unwrap_or_else(|| panic!("n{m} never withdrew its route after the cut"));
    let ms = (withdrawn - t0) * 1e3;
    write
        .expect("set with withdrawn")
        .unwrap_or_else(|e| panic!("write through the VIP after the release: {e}"));
    let fin = lab.rejoin_routed();
    sh.figure(format!(
        "(d) release: n{m} cut from the Sentinels withdrew its route {ms:.0} ms after the cut (sentinel_loss_after_ms {LOSS_AFTER_MS} + a pass of {PASS_MS}); the router stopped sending the client there after {} ms; new holder n{}, final n{fin}",
        away.map_or("--".into(), |v| format!("{v:.0}")),
        new.expect("set with withdrawn")
    ));
    let bound = (LOSS_AFTER_MS + PASS_MS + 1000) as f64;
    assert!(
        ms <= bound,
        "withdrawn {ms:.0} ms after the cut, beyond sentinel_loss_after_ms + a pass + 1 s ({bound} ms)"
    );
}

/// (e) With `keep` the cut-off old master holds the VIP and its route
/// stays announced. The old master is n1, whose router ID is the lowest:
/// the router's tie-break (BIRD: the lowest router ID) keeps sending the
/// client to it after the new master's route came, for the whole cut.
/// Measured: how long, and how long after the heal until it released.
pub fn keep_when_cut_from_sentinels(lab: &mut Lab, sh: &mut Shared) {
    lab.uncut();
    set_policy(lab, "keep");
    // The old master with the lowest router ID (n1's 198.18.1.2): the
    // router's tie-break then favours the stale route, the case to see.
    let m = fail_over_to(lab, 1);
    let t0 = now_epoch();
    lab.cut_from_hosts(m);
    // Sampled every 50 ms: when the new master's route reached the
    // router's BIRD, and whether both routes were there at once.
    let (mut second, mut both) = (None, false);
    wait_until(CUT_FOR, Duration::from_millis(50), || {
        let c = lab.router_candidates();
        if second.is_none() && c.iter().any(|&n| n != m) {
            second = Some(now_epoch());
        }
        both |= c.contains(&m) && c.len() > 1;
        false
    });
    let held = lab.routed_vip_on(m).is_some();
    let healed = now_epoch();
    lab.uncut();
    let fin = lab.rejoin_routed();
    // When the kernel table stopped sending the client to n{m}: during
    // the cut if the router preferred the new route, else after the heal.
    let left = sh
        .routes
        .after(t0)
        .into_iter()
        .find(|e| e.via != Some(m))
        .map(|e| e.at);
    let second =
        second.unwrap_or_else(|| panic!("no new master's route reached the router during the cut"));
    let until = match left {
        Some(t) if t < healed => format!(
            "{:.0} ms after the cut: the router preferred the new route once it came",
            (t - t0) * 1e3
        ),
        Some(t) => format!(
            "the heal ({:.1} s after the cut) and {:.0} ms more: the router kept n{m}'s route (its tie-break, the lowest router ID) until n{m}'s watcher released",
            healed - t0,
            (t - healed) * 1e3
        ),
        None => "the end of the case".into(),
    };
    sh.figure(format!(
        "(e) keep: n{m} cut from the Sentinels kept the VIP ({held}) and its route; the new master's route at the router {:.0} ms after the cut, both there at once ({both}); the router sent the client to the old master until {until}; final n{fin}",
        (second - t0) * 1e3
    ));
    assert!(
        held,
        "with keep, the cut-off n{m} must keep the VIP until the heal"
    );
    assert!(
        left.is_none_or(|t| t >= healed),
        "BIRD left the lowest router ID's route during the cut"
    );
}

/// Makes node `target` the master (if it is not): the other replica's
/// `replica-priority` set to 0 until Sentinel has seen it (its INFO comes
/// every 10 s), `SENTINEL FAILOVER`, the priority back. Returns `target`.
fn fail_over_to(lab: &mut Lab, target: usize) -> usize {
    let m = lab.wait_routed_holder(0, Duration::from_secs(20));
    if m == target {
        return m;
    }
    let other = NODES
        .into_iter()
        .find(|&n| n != m && n != target)
        .expect("three nodes");
    let set = |lab: &Lab, p: &str| {
        let (out, err) = lab.redis_cli(other, &["CONFIG", "SET", "replica-priority", p]);
        assert_eq!(out, "OK", "CONFIG SET replica-priority on n{other}: {err}");
    };
    set(lab, "0");
    let seen = wait_until(Duration::from_secs(15), Duration::from_millis(250), || {
        NODES
            .into_iter()
            .all(|s| priority_seen(lab, s, other) == Some(0))
    });
    let moved = seen.then(|| {
        lab.start_failover(1, Duration::from_secs(30));
        lab.wait_routed_holder(m, Duration::from_secs(30))
    });
    set(lab, "100");
    assert!(
        seen,
        "the Sentinels did not see n{other}'s replica-priority 0"
    );
    assert_eq!(moved, Some(target), "SENTINEL FAILOVER chose another node");
    lab.rejoin_routed()
}

/// The `slave-priority` Sentinel `s` reports for node `n`.
fn priority_seen(lab: &Lab, s: usize, n: usize) -> Option<u64> {
    let (out, _) = lab.sentinel_cli(s, &["SENTINEL", "REPLICAS", MASTER_NAME]);
    let lines: Vec<&str> = out.lines().collect();
    let mut ip = "";
    for w in lines.windows(2) {
        match w[0] {
            "ip" => ip = w[1],
            "slave-priority" if ip == node_ip(n) => return w[1].parse().ok(),
            _ => {}
        }
    }
    None
}

/// (f) The holder's routing daemon restarted (SIGTERM: it closes its
/// session, the router withdraws at once; then it starts again): the
/// route comes back to the same host, no other host announces meanwhile,
/// the VIP never leaves, and nothing changes afterwards.
pub fn daemon_restarted_on_holder(lab: &mut Lab, sh: &mut Shared) {
    lab.uncut();
    let m = lab.wait_routed_holder(0, Duration::from_secs(20));
    let changes = lab.log_count(m, &["changed"]);
    let t0 = now_epoch();
    lab.stop_host_daemon(m, Duration::from_secs(5));
    let gone = sh
        .routes
        .wait_for(t0, Duration::from_secs(5), |e| e.via.is_none());
    lab.start_host_daemon(m);
    let back = sh.routes.wait_for(t0, Duration::from_secs(20), |e| {
        e.via == Some(m) && gone.as_ref().is_some_and(|g| e.at >= g.at)
    });
    std::thread::sleep(Duration::from_secs(3));
    let gone =
        gone.unwrap_or_else(|| panic!("the router kept n{m}'s route while its daemon was down"));
    let back =
        back.unwrap_or_else(|| panic!("n{m}'s route did not come back: {}", sh.routes.text()));
    let since: Vec<_> = sh.routes.after(t0);
    assert!(
        since.iter().all(|e| e.via.is_none() || e.via == Some(m)),
        "another host announced the VIP meanwhile: {since:?}"
    );
    let later: Vec<_> = sh.routes.after(back.at);
    assert!(
        later.is_empty(),
        "the route flapped after it came back: {later:?}"
    );
    assert_eq!(lab.routed_holders(), vec![m], "the VIP moved");
    assert_eq!(
        lab.log_count(m, &["changed"]),
        changes,
        "the watcher changed an address"
    );
    sh.figure(format!(
        "(f) {} restarted on n{m}: route withdrawn {:.0} ms after SIGTERM, back {:.0} ms after it was withdrawn, then steady; the VIP never moved",
        lab.host_daemon().name(),
        (gone.at - t0) * 1e3,
        (back.at - gone.at) * 1e3
    ));
}

/// (g) Every watcher restarted (SIGTERM keeps the VIP): the route at the
/// router does not change at all, before, during or after.
pub fn watcher_restarted(lab: &mut Lab, sh: &mut Shared) {
    lab.uncut();
    let m = lab.wait_routed_holder(0, Duration::from_secs(20));
    let t0 = now_epoch();
    let passes: Vec<usize> = NODES
        .map(|n| lab.log_count(n, &["watch: starting"]))
        .to_vec();
    lab.restart_watchers(WATCHER);
    for n in NODES {
        let ok = wait_until(Duration::from_secs(10), Duration::from_millis(50), || {
            lab.log_count(n, &["watch: starting"]) > passes[n - 1]
        });
        assert!(ok, "the watcher on n{n} did not start again");
    }
    // A few timer passes of the new watchers.
    std::thread::sleep(Duration::from_millis(2500));
    let since = sh.routes.after(t0);
    assert!(since.is_empty(), "the route changed: {since:?}");
    assert_eq!(lab.routed_holders(), vec![m]);
    assert_eq!(lab.router_candidates(), vec![m]);
    sh.figure(format!(
        "(g) watchers restarted: no route change at the router over {:.1} s, the VIP on n{m} throughout",
        now_epoch() - t0
    ));
}

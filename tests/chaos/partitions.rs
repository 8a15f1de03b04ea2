//! Partitions (cases 4 and 6): the master's host cut off from the others
//! and the client, with each loss policy and with hooks alone; the
//! watchers blinded to Sentinel while it fails over.

use std::time::Duration;

use sentinel_vip_lab::monitor::Monitor;
use sentinel_vip_lab::{wait_until, Lab, NODES, POLL, VIP4};

use crate::{again, World};

/// The partition lab's `sentinel_loss_after_ms` with `release`: short
/// enough to watch the cut-off holder let go.
const LOSS_AFTER: Duration = Duration::from_secs(3);
/// The product's default `reconcile_interval_ms` (the labs keep it).
const RECONCILE: Duration = Duration::from_secs(1);
/// Allowance for scheduling and the Sentinel question itself on top of a
/// documented deadline.
const SLACK: Duration = Duration::from_secs(1);

pub fn cut_off_release(lab: &mut Lab, w: &mut World) {
    let top = format!(
        "on_sentinel_loss = \"release\"\nsentinel_loss_after_ms = {}\n",
        LOSS_AFTER.as_millis()
    );
    cut_off(lab, w, &top, true);
}

/// `keep`, no longer the default (the fence is): said explicitly.
pub fn cut_off_keep(lab: &mut Lab, w: &mut World) {
    cut_off(lab, w, "on_sentinel_loss = \"keep\"\n", false);
}

/// Hook mode has no release on Sentinel loss: nothing runs on the cut-off
/// host, so it holds the VIP, unheard, like `keep`. At the heal its own
/// Sentinel learns the new config from a hello and runs the hook as
/// observer, which asks the Sentinels and releases.
pub fn cut_off_hook(lab: &mut Lab, w: &mut World) {
    cut_off(lab, w, "", false);
}

/// (4) The master's host cut off (its veth down in the bridge namespace):
/// the majority fails over and the new master takes the VIP. With
/// `release`, the cut-off host drops it in time; with `keep` it may hold it
/// until the heal. After the heal, one holder within seconds, the client
/// on it, and the old holder never wins it back.
fn cut_off(lab: &mut Lab, w: &mut World, top: &str, release: bool) {
    w.set_config(lab, top);
    let old = lab.ready_for_fault();
    let mon = Monitor::start(lab);
    lab.cut_off(old);
    let mut new = None;
    let took_over = wait_until(Duration::from_secs(30), POLL, || {
        new = lab.majority_master(old);
        new.is_some_and(|n| lab.holds(n, VIP4))
    });
    let deadline = LOSS_AFTER + RECONCILE + SLACK;
    if release {
        // Poll past the deadline, to report how late a late release is.
        let _ = wait_until(
            deadline + Duration::from_secs(5),
            Duration::from_millis(20),
            || !lab.holds(old, VIP4),
        );
    }
    std::thread::sleep(Duration::from_secs(2));
    let during = lab.holders();
    lab.reconnect(old);
    let healed = mon.now();
    // What clients see; the cut-off Sentinel catches up on its own
    // schedule (hello messages every 2 s), rejoin_all() waits for it.
    let settled = new.is_some_and(|new| {
        wait_until(Duration::from_secs(10), Duration::from_millis(20), || {
            lab.holders() == vec![new] && lab.client_vip_mac() == lab.mac(new)
        })
    });
    let settled_at = mon.now();
    let settling = settled_at - healed;
    // Long enough for several refreshes by the true holder.
    std::thread::sleep(Duration::from_secs(4));
    let observed = mon.now();
    let fin = settled.then(|| lab.rejoin_all());
    let trace = mon.stop();
    let new = new.unwrap_or_else(|| {
        panic!(
            "the majority's new master did not take the VIP within 30 s: holders {:?}",
            trace.history()
        )
    });
    let fin = fin.unwrap_or(new);
    let win = w.record(&trace, fin);
    let released = trace
        .first_where(Duration::ZERO, |s| !s.holders.contains(&old))
        .map_or(f64::INFINITY, |t| t.as_secs_f64());
    w.row.note = format!(
        "n{old} -> n{new}; n{old} released at {}; holders {during:?} at the heal; settled {:.2} s after it{}",
        if released.is_finite() { format!("{released:.2} s") } else { "never".into() },
        settling.as_secs_f64(),
        again(new, fin)
    );
    assert!(took_over, "n{new} did not take the VIP during the cut");
    if release {
        assert!(
            released <= deadline.as_secs_f64(),
            "n{old} dropped the VIP {released:.2} s after the cut; allowed: sentinel_loss_after_ms {} + reconcile_interval_ms {} + {} ms slack",
            LOSS_AFTER.as_millis(),
            RECONCILE.as_millis(),
            SLACK.as_millis()
        );
        assert_eq!(during, vec![new], "holders during the cut");
    }
    assert!(
        settled && settling <= Duration::from_secs(5),
        "not settled within 5 s of the heal (after {:.2} s): holders {:?}, client entry {:?} (n{new} is {})",
        settling.as_secs_f64(),
        lab.holders(),
        lab.client_neigh(VIP4),
        lab.mac(new)
    );
    // The old holder must not win the VIP or the client back.
    // The slice opens with the last sample taken before settling (t = 0),
    // which may predate what the lab saw settle: judge only what follows.
    let after_heal = trace.slice(settled_at, observed);
    let lost = after_heal.violations(Duration::from_nanos(1), |s| {
        s.holders == [new] && s.neigh_node() == Some(new)
    });
    assert!(
        lost.is_empty(),
        "after settling at {:.2} s, the VIP or the client's entry left n{new}: {:?}",
        settled_at.as_secs_f64(),
        lost.first()
    );
    trace.assert_settled(&win, fin);
    lab.client_write_lands_on(fin, "chaos-4", "4")
        .unwrap_or_else(|e| panic!("write through the VIP: {e}"));
}

/// (6) Every watcher's own traffic to Sentinel is dropped (nftables, by
/// its uid) while Sentinel fails over: the pub/sub events are lost for
/// good. Unblocked, the watchers must converge anyway.
pub fn blind_watchers(lab: &mut Lab, w: &mut World) {
    let old = lab.ready_for_fault();
    let mon = Monitor::start(lab);
    for n in NODES {
        lab.block_watcher(n);
    }
    // Sentinel's own traffic (it runs as root) still flows: it fails over.
    lab.start_failover(w.rng.node(), Duration::from_secs(30));
    let new = lab.wait_new_master(old, Duration::from_secs(30));
    // Sentinel publishes +switch-master once; let it go by unseen.
    std::thread::sleep(Duration::from_secs(3));
    let blind = lab.holders();
    assert!(
        !blind.contains(&new),
        "n{new} took the VIP while its watcher could not reach any Sentinel: the block leaks (holders {blind:?})"
    );
    for n in NODES {
        lab.unblock_watcher(n);
    }
    let unblocked = mon.now();
    let holder = lab.wait_one_holder(Duration::from_secs(20));
    let fin = lab.settle_after_failover(holder);
    let trace = mon.stop();
    let win = w.record(&trace, fin);
    let after = trace
        .first_where(unblocked, |s| s.holders == [holder])
        .map_or(f64::NAN, |t| (t - unblocked).as_secs_f64());
    w.row.note = format!(
        "n{old} -> n{new}; held by {blind:?} while blind; 1 holder {after:.2} s after unblock{}",
        again(new, fin)
    );
    trace.assert_settled(&win, fin);
    lab.client_write_lands_on(fin, "chaos-6", "6")
        .unwrap_or_else(|e| panic!("write through the VIP: {e}"));
}

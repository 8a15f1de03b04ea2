//! Following the promotion (cases 13): in watch mode the VIP moves when
//! the replica a failover's leader promotes first answers `ROLE` master,
//! before Sentinel announces the promotion; a leader killed mid-failover,
//! forged or slow hints, and data nodes behind a password change nothing
//! the Sentinels would not; and a master's whole host gone (its Sentinel
//! silent) costs a pass nothing, in watch and in hook mode.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use sentinel_vip_lab::events::{Events, React, PROMOTED};
use sentinel_vip_lab::monitor::Monitor;
use sentinel_vip_lab::timeline::first_log;
use sentinel_vip_lab::{node_ip, node_of_ip, now_epoch, wait_until, Lab, MASTER_NAME, NODES};
use sentinel_vip_lab::{POLL, VIP4};

use crate::junk::FakeSentinel;
use crate::{again, World};

const WAIT_PROMOTION: &str = "+failover-state-wait-promotion";
/// A pass that waited out a silent Sentinel would take its whole
/// `sentinel_timeout_ms` (300): anything well under it did not.
const NOT_WAITED_MS: f64 = 150.0;

/// `+promoted-slave` this soon after `SLAVEOF NO ONE` was sent means
/// Sentinel's next INFO went right behind it.
const SAME_INFO_MS: f64 = 50.0;

/// Milliseconds from `a` to `b` (epoch seconds).
fn ms(a: f64, b: f64) -> f64 {
    (b - a) * 1e3
}

/// When node `n`'s watcher logged a line with all of `words` after `t`.
fn logged(lab: &Lab, n: usize, words: &[&str], t: f64) -> Option<f64> {
    first_log(lab, n, words, t).map(|(at, _)| at)
}

/// (13a) `kill -9` of the master: the new master's watcher takes the VIP
/// once the replica answers ROLE master, before `+promoted-slave`.
pub fn before_the_announcement(lab: &mut Lab, w: &mut World) {
    let old = lab.ready_for_fault();
    let events = Events::start(lab, &[WAIT_PROMOTION, PROMOTED], None);
    let mon = Monitor::start(lab);
    let t = now_epoch();
    lab.kill_redis(old);
    let new = lab.wait_vip_moves(old, Duration::from_secs(30));
    let fin = lab.settle_after_failover(new);
    let trace = mon.stop();
    let win = w.record(&trace, fin);
    let sent = events.first(WAIT_PROMOTION, t).map(|e| e.at);
    let promoted = events.first(PROMOTED, t).map(|e| e.at);
    let role = logged(lab, new, &["answers ROLE master"], t);
    let acquired = logged(lab, new, &["changed", "Acquire"], t);
    let (Some(promoted), Some(role), Some(acquired)) = (promoted, role, acquired) else {
        panic!("missing: +promoted-slave {promoted:?}, ROLE master {role:?}, acquired {acquired:?} (n{new})");
    };
    w.row.note = format!(
        "n{old} -> n{new}: VIP {:.0} ms before +promoted-slave, {:.1} ms after ROLE master{}",
        ms(acquired, promoted),
        ms(role, acquired),
        again(new, fin)
    );
    // Sentinel's once-a-second INFO to the replica can fall just after its
    // SLAVEOF NO ONE; then it announces at once and there is no window to
    // win, only a ROLE poll that must still have been prompt.
    let no_window = sent.is_some_and(|s| ms(s, promoted) < SAME_INFO_MS);
    assert!(
        acquired < promoted || (no_window && ms(role, acquired) < NOT_WAITED_MS),
        "the VIP came {:.0} ms after +promoted-slave ({:.0} ms after SLAVEOF NO ONE was sent): the promotion was not followed",
        ms(promoted, acquired),
        sent.map_or(f64::NAN, |s| ms(s, promoted))
    );
    trace.assert_settled(&win, fin);
    lab.client_write_lands_on(fin, "chaos-13a", "1")
        .unwrap_or_else(|e| panic!("write through the VIP: {e}"));
}

/// (13b) The leader Sentinel killed the moment it has sent `SLAVEOF NO
/// ONE`: the replica is a master no Sentinel announces, until the others
/// time the failover out and redo it in a later epoch. Exactly one holder
/// once the Sentinels agree; what happened to the writes the promoted
/// replica took meanwhile is reported.
pub fn leader_killed(lab: &mut Lab, w: &mut World) {
    let old = lab.ready_for_fault();
    let pids = lab.pids();
    let killed: Arc<Mutex<Option<(usize, String)>>> = Arc::default();
    let react: React = {
        let killed = killed.clone();
        Arc::new(move |e| {
            let mut k = killed.lock().unwrap();
            if e.channel == WAIT_PROMOTION && k.is_none() {
                pids.signal_sentinel(e.sentinel, "KILL");
                *k = Some((e.sentinel, e.instance_ip().unwrap_or("").to_string()));
            }
        })
    };
    let events = Events::start(lab, &[WAIT_PROMOTION], Some(react));
    let mon = Monitor::start(lab);
    lab.kill_redis(old);
    let struck = wait_until(Duration::from_secs(30), POLL, || {
        killed.lock().unwrap().is_some()
    });
    drop(events);
    let (leader, promoted) = killed.lock().unwrap().clone().unwrap_or_default();
    assert!(struck, "no leader sent SLAVEOF NO ONE within 30 s");
    let promoted = node_of_ip(&promoted).expect("a node was being promoted");
    // Writes through the VIP until the two live Sentinels agree on a new
    // master: the ones the promoted replica took are at stake.
    let mut accepted = Vec::new();
    let mut i = 0;
    let agreed = wait_until(Duration::from_secs(60), Duration::from_millis(200), || {
        i += 1;
        let key = format!("chaos-13b-{i}");
        if lab.client_write(&key, "1").is_ok() {
            accepted.push(key);
        }
        lab.live_sentinels_master(leader).is_some_and(|m| m != old)
    });
    // The killed leader's data node is alive and may be the one redone.
    let redone = lab.live_sentinels_master(leader);
    // The dead leader keeps its vote; the rest settle without it.
    let holder = wait_until(Duration::from_secs(20), POLL, || {
        redone.is_some_and(|m| lab.holders() == vec![m])
    });
    // Back with the configuration it had when killed; hello messages bring
    // it up to date, and the old master back as a replica.
    lab.restart_sentinel(leader);
    let fin = lab.rejoin_all();
    let trace = mon.stop();
    let win = w.record(&trace, fin);
    let kept = accepted
        .iter()
        .filter(|k| lab.redis_cli(fin, &["GET", k]).0 == "1")
        .count();
    w.row.note = format!(
        "leader n{leader} killed as it promoted n{promoted}; redone: n{}; {} writes taken meanwhile, {kept} kept{}",
        redone.map_or("?".into(), |m| m.to_string()),
        accepted.len(),
        again(redone.unwrap_or(fin), fin)
    );
    assert!(
        agreed,
        "the live Sentinels did not agree on a new master in 60 s"
    );
    assert!(
        holder,
        "the VIP did not settle on the redone master alone: {:?}",
        lab.holders()
    );
    trace.assert_settled(&win, fin);
    lab.client_write_lands_on(fin, "chaos-13b", "1")
        .unwrap_or_else(|e| panic!("write through the VIP: {e}"));
}

/// (13c) Forged failover-state events, naming a replica nobody promotes,
/// published on a Sentinel address: the hint is checked with the
/// publisher, which confirms nothing, so nothing moves.
pub fn forged_hint(lab: &mut Lab, w: &mut World) {
    let m = lab.ready_for_fault();
    let k = NODES.into_iter().find(|&n| n != m).expect("another node");
    let o = NODES
        .into_iter()
        .find(|&n| n != m && n != k)
        .expect("third");
    let ep = format!("sentinel={}:26379", node_ip(k));
    let subs: Vec<usize> = NODES
        .iter()
        .map(|&n| lab.log_count(n, &["subscribed", &ep]))
        .collect();
    let refused: Vec<usize> = NODES
        .iter()
        .map(|&n| lab.log_count(n, &["promotion hint not confirmed"]))
        .collect();
    lab.kill_sentinel(k);
    let fake = FakeSentinel::start(lab, k);
    assert!(
        fake.up && fake.subscribed(lab, &subs),
        "the watchers never subscribed to the fake Sentinel"
    );
    let mon = Monitor::start(lab);
    let (mi, oi) = (node_ip(m), node_ip(o));
    let payload = format!("slave {oi}:6379 {oi} 6379 @ {MASTER_NAME} {mi} 6379");
    let delivered: u64 = std::thread::scope(|s| {
        let hs: Vec<_> = ["+selected-slave", WAIT_PROMOTION]
            .map(|ch| s.spawn(|| fake.publish(lab, ch, &payload)))
            .into_iter()
            .collect();
        hs.into_iter().map(|h| h.join().expect("publisher")).sum()
    });
    std::thread::sleep(Duration::from_secs(1));
    let trace = mon.stop();
    let win = w.record(&trace, m);
    drop(fake);
    lab.restart_sentinel(k);
    lab.wait_ready();
    let checked: Vec<usize> = NODES
        .iter()
        .map(|&n| lab.log_count(n, &["promotion hint not confirmed"]) - refused[n - 1])
        .collect();
    w.row.note = format!(
        "{delivered} forged hints for n{o} delivered; refusals logged per node {checked:?}"
    );
    assert!(delivered > 0, "no forged hint reached a watcher");
    assert!(
        checked.iter().all(|&c| c >= 1),
        "every watcher must check the hint and refuse it: {checked:?}"
    );
    assert_eq!(win.two_holders, Duration::ZERO, "{:?}", trace.history());
    assert!(
        trace
            .violations(Duration::ZERO, |s| s.holders == [m]
                && s.neigh_node() == Some(m))
            .is_empty(),
        "the VIP or the client moved: {:?}",
        trace.history()
    );
}

/// (13d) The replica being promoted paused past the deadline: the
/// watchers give up on it, and the ordinary path (Sentinel's own
/// announcement) still moves the VIP.
pub fn replica_slow(lab: &mut Lab, w: &mut World) {
    w.set_config(lab, "follow_promotion_deadline_ms = 300\n");
    let old = lab.ready_for_fault();
    let gave_up: Vec<usize> = NODES
        .iter()
        .map(|&n| lab.log_count(n, &["promotion not followed"]))
        .collect();
    let pids = lab.pids();
    let paused: Arc<Mutex<Option<usize>>> = Arc::default();
    let react: React = {
        let paused = paused.clone();
        Arc::new(move |e| {
            let mut p = paused.lock().unwrap();
            let Some(r) = e.instance_ip().and_then(node_of_ip) else {
                return;
            };
            if e.channel == "+selected-slave" && p.is_none() && pids.signal_redis(r, "STOP") {
                *p = Some(r);
                // Under down-after (1 s): Sentinel still promotes it.
                std::thread::spawn(move || {
                    std::thread::sleep(Duration::from_millis(800));
                    pids.signal_redis(r, "CONT");
                });
            }
        })
    };
    let events = Events::start(lab, &["+selected-slave", PROMOTED], Some(react));
    let mon = Monitor::start(lab);
    let t = now_epoch();
    lab.kill_redis(old);
    let new = lab.wait_vip_moves(old, Duration::from_secs(30));
    let promoted = events.first(PROMOTED, t).map(|e| e.at);
    drop(events);
    let fin = lab.settle_after_failover(new);
    let trace = mon.stop();
    let win = w.record(&trace, fin);
    let r = paused
        .lock()
        .unwrap()
        .expect("the selected replica was paused");
    let acquired = logged(lab, new, &["changed", "Acquire"], t);
    let given_up: Vec<usize> = NODES
        .iter()
        .map(|&n| lab.log_count(n, &["promotion not followed"]) - gave_up[n - 1])
        .collect();
    w.row.note = format!(
        "n{old} -> n{new}; n{r} paused 0.8 s at +selected-slave; gave up per node {given_up:?}; VIP {} ms after +promoted-slave{}",
        match (promoted, acquired) {
            (Some(p), Some(a)) => format!("{:.0}", ms(p, a)),
            _ => "?".into(),
        },
        again(new, fin)
    );
    assert!(
        given_up.iter().all(|&c| c >= 1),
        "every watcher must give up at the 300 ms deadline: {given_up:?}"
    );
    trace.assert_settled(&win, fin);
    lab.client_write_lands_on(fin, "chaos-13d", "1")
        .unwrap_or_else(|e| panic!("write through the VIP: {e}"));
}

/// (13e) Data nodes with `requirepass`: given `redis_password`, the
/// watchers follow the promotion; the VIP comes before `+promoted-slave`.
pub fn with_password(lab: &mut Lab, w: &mut World) {
    before_the_announcement(lab, w);
}

/// (13e') The same without the password: one clear logged error per
/// watcher and failover, and the ordinary path still moves the VIP.
pub fn without_password(lab: &mut Lab, w: &mut World) {
    w.set_config(lab, "");
    let old = lab.ready_for_fault();
    let before: Vec<usize> = NODES
        .iter()
        .map(|&n| lab.log_count(n, &["promotion not followed", "NOAUTH"]))
        .collect();
    let mon = Monitor::start(lab);
    lab.kill_redis(old);
    let new = lab.wait_vip_moves(old, Duration::from_secs(30));
    let fin = lab.settle_after_failover(new);
    let trace = mon.stop();
    let win = w.record(&trace, fin);
    let errors: Vec<usize> = NODES
        .iter()
        .map(|&n| lab.log_count(n, &["promotion not followed", "NOAUTH"]) - before[n - 1])
        .collect();
    w.row.note = format!(
        "n{old} -> n{new}; NOAUTH logged per node {errors:?}{}",
        again(new, fin)
    );
    // On a loaded machine Sentinel sometimes fails over a second time on
    // its own (the fresh master misses down-after); the watchers try to
    // follow that one too. One error per failover, never one per poll.
    let failovers = if fin == new { 1 } else { 2 };
    assert!(
        errors.iter().all(|&c| (1..=failovers).contains(&c)),
        "one NOAUTH error per watcher and failover ({failovers}): {errors:?}"
    );
    trace.assert_settled(&win, fin);
    lab.client_write_lands_on(fin, "chaos-13e", "1")
        .unwrap_or_else(|e| panic!("write through the VIP: {e}"));
}

/// (13f, 13h) The master's whole host lost: its Redis and its Sentinel
/// stop answering, packets dropped, no reset. The VIP reaches the new
/// master without any pass waiting out the silent Sentinel: in watch mode
/// from the replica's ROLE master, in hook mode within the hook's run.
pub fn host_lost(lab: &mut Lab, w: &mut World) {
    let old = lab.ready_for_fault();
    let events = Events::start(lab, &[PROMOTED], None);
    let mon = Monitor::start(lab);
    let t = now_epoch();
    lab.cut_off(old);
    let mut new = None;
    let took_over = wait_until(Duration::from_secs(30), POLL, || {
        new = lab.majority_master(old);
        new.is_some_and(|n| lab.holds(n, VIP4))
    });
    let promoted = events.first(PROMOTED, t).map(|e| e.at);
    drop(events);
    let new = new.filter(|_| took_over).unwrap_or_else(|| {
        panic!(
            "the majority's new master did not take the VIP within 30 s: {:?}",
            lab.holders()
        )
    });
    // From what the mover saw to the VIP added on the new master.
    let (from, what, took) = if w.watch {
        let role = logged(lab, new, &["answers ROLE master"], t);
        let acquired = logged(lab, new, &["changed", "Acquire"], t);
        let took = role.zip(acquired).map(|(r, a)| ms(r, a));
        ("ROLE master", "watcher", took)
    } else {
        // The hook's own run, exec to done (Sentinel's script delay aside).
        let line = first_log(lab, new, &["hook", "Acquire"], t).map(|(_, l)| l);
        let took = line.as_deref().and_then(|l| {
            let v = l.split("elapsed_ms=").nth(1)?;
            v.split_whitespace().next()?.parse::<f64>().ok()
        });
        ("hook exec", "hook", took)
    };
    lab.reconnect(old);
    let settled = wait_until(Duration::from_secs(15), Duration::from_millis(20), || {
        lab.holders() == vec![new]
    });
    let fin = lab.rejoin_all();
    let trace = mon.stop();
    let win = w.record(&trace, fin);
    let acquired = logged(lab, new, &["Acquire"], t);
    w.row.note = format!(
        "n{old} cut off -> n{new}: {from} -> VIP {} ms ({what}); +promoted-slave -> VIP {} ms{}",
        took.map_or("?".into(), |v| format!("{v:.1}")),
        promoted
            .zip(acquired)
            .map_or("?".into(), |(p, a)| format!("{:.0}", ms(p, a))),
        again(new, fin)
    );
    let took = took.unwrap_or_else(|| panic!("no {what} log line for the move to n{new}"));
    assert!(
        took < NOT_WAITED_MS,
        "{from} -> VIP took {took:.1} ms: the pass waited for the silent Sentinel"
    );
    assert!(settled, "after the heal, holders {:?}", lab.holders());
    trace.assert_settled(&win, fin);
    lab.client_write_lands_on(fin, "chaos-13f", "1")
        .unwrap_or_else(|e| panic!("write through the VIP: {e}"));
}

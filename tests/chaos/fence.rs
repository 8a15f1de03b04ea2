//! The fence (case 14, issue 20), Jepsen-style: a client appends unique
//! ids through the VIP (a write every 5 ms, one connection, reconnecting
//! at once) while a fault plays out, and every acknowledged id the final
//! master lacks is a write acknowledged and then lost. The watchers run
//! `on_sentinel_loss = "fence"`: the master cut off from its peers (not
//! from the client) loses at most the writes of the fence time plus a
//! probe period; a Sentinel-only outage, every replica down, and a slow
//! network release nothing and fail no write.

use std::time::Duration;

use sentinel_vip_lab::acked::{tally, IdWriter};
use sentinel_vip_lab::loss::{cut_off_peers, PACE};
use sentinel_vip_lab::monitor::Monitor;
use sentinel_vip_lab::{now_epoch, Lab, NODES};

use crate::World;

/// The fence time the lab runs with (the default `fence_after_ms`).
const FENCE: Duration = Duration::from_millis(300);
/// A pass of the fence: its probe period (fence / 6) and its check's
/// period, with the scheduling of a loaded 2-core machine.
const PASS: Duration = Duration::from_millis(100);
/// The monitor samples the holders every 20 ms.
const SAMPLING: Duration = Duration::from_millis(20);
/// How long the cut lasts: past the failover, whose new master takes the
/// VIP ~2 s after the cut.
const HOLD: Duration = Duration::from_secs(6);
/// The added delay each way of the slow-network case.
const SLOW: Duration = Duration::from_millis(100);

/// Log lines of a fence release on any node.
fn fence_releases(lab: &Lab) -> usize {
    NODES
        .iter()
        .map(|&n| lab.log_count(n, &["fence: released"]))
        .sum()
}

/// (14a) The master's host cut off from the other Redis/Sentinel hosts,
/// not from the client: it hears neither a Sentinel majority nor a
/// replica, and releases within the fence time plus a pass; the writes it
/// acknowledged meanwhile are all that is lost.
pub fn cut_off(lab: &mut Lab, w: &mut World) {
    let c = cut_off_peers(lab, "chaos:14a", PACE, HOLD);
    let win = w.record(&c.trace, c.fin);
    let t = &c.tally;
    // The writes of the fence time plus a pass, at the rate measured in
    // the second before the cut (+1: a write in flight at the cut).
    let allowed = (t.rate_before * (FENCE + PASS).as_secs_f64()).ceil() as usize + 1;
    w.row.note = format!(
        "{}; allowed {allowed}; one holder {} after the heal",
        c.line(),
        c.settled
            .map_or("never".into(), |d| format!("{:.2} s", d.as_secs_f64()))
    );
    let released = c.released.unwrap_or(Duration::MAX);
    assert!(
        released <= FENCE + PASS + SAMPLING,
        "n{} released the VIP {:.3} s after the cut; allowed: the fence time {} ms + a pass {} ms + sampling {} ms",
        c.old,
        released.as_secs_f64(),
        FENCE.as_millis(),
        PASS.as_millis(),
        SAMPLING.as_millis()
    );
    assert!(
        t.lost.len() <= allowed,
        "{} acknowledged writes lost (first and last acknowledged at {:?}); allowed {allowed}, the writes of {} ms at {:.0}/s",
        t.lost.len(),
        t.lost_span,
        (FENCE + PASS).as_millis(),
        t.rate_before
    );
    assert_eq!(c.during, vec![c.new], "holders during the cut");
    assert!(
        c.settled.is_some_and(|d| d <= Duration::from_secs(5)),
        "not one holder with the client on it within 5 s of the heal: {:?}",
        c.trace.history()
    );
    c.trace.assert_settled(&win, c.fin);
}

/// A case in which nothing may move: the master, a writer through the
/// VIP, the monitor, when the fault began, and the fence releases logged
/// before it.
struct Quiet {
    m: usize,
    writer: IdWriter,
    mon: Monitor,
    t0: f64,
    releases: usize,
}

fn quiet_start(lab: &mut Lab, key: &str) -> Quiet {
    let m = lab.ready_for_fault();
    let writer = IdWriter::start(lab, key, PACE);
    let ok = writer.wait_acks(now_epoch(), 100, Duration::from_secs(10));
    assert!(ok, "no writes through the VIP: {}", writer.last_error());
    Quiet {
        m,
        writer,
        mon: Monitor::start(lab),
        t0: now_epoch(),
        releases: fence_releases(lab),
    }
}

/// The end of those cases: nothing moved, no write failed or was lost,
/// and no fence released anything. `what` names the fault for the note.
fn nothing_moved(lab: &mut Lab, w: &mut World, q: Quiet, what: &str) {
    let Quiet {
        m,
        writer,
        mon,
        t0,
        releases,
    } = q;
    let t1 = now_epoch();
    let trace = mon.stop();
    w.record(&trace, m);
    let fin = lab.rejoin_all();
    let key = writer.key.clone();
    let attempts = writer.stop();
    let t = tally(&attempts, &lab.ids_on(fin, &key), t0, t1);
    w.row.note = format!(
        "{what}; {} writes acknowledged, {} failed, {} lost; longest without an acknowledged write {:.3} s",
        t.acked,
        t.failed,
        t.lost.len(),
        t.unavailable
    );
    assert_eq!(fence_releases(lab), releases, "a fence released the VIP");
    trace.assert_never_moved(m);
    assert_eq!(t.failed, 0, "writes failed through the VIP");
    assert!(t.lost.is_empty(), "acknowledged writes lost: {:?}", t.lost);
    assert!(t.acked > 0, "no write acknowledged during the fault");
}

/// (14b) Every Sentinel killed for 30 s while the data nodes run on: the
/// replicas still replicate from the master, so it keeps the VIP; no
/// write fails.
pub fn sentinels_killed(lab: &mut Lab, w: &mut World) {
    let q = quiet_start(lab, "chaos:14b");
    for n in NODES {
        lab.kill_sentinel(n);
    }
    std::thread::sleep(Duration::from_secs(30));
    for n in NODES {
        lab.restart_sentinel(n);
    }
    nothing_moved(lab, w, q, "3 Sentinels killed for 30 s");
}

/// (14c) Every replica killed while the Sentinels run on: the Sentinel
/// majority still names the master, so it keeps the VIP; `status` shows
/// the replica witness gone.
pub fn replicas_killed(lab: &mut Lab, w: &mut World) {
    let witnesses = |lab: &Lab, m| {
        let out = String::from_utf8_lossy(&lab.sv(m, &["status"]).stdout).into_owned();
        out.lines().filter(|l| l.ends_with("(witness)")).count()
    };
    let q = quiet_start(lab, "chaos:14c");
    let m = q.m;
    let before = witnesses(lab, m);
    let replicas: Vec<usize> = NODES.into_iter().filter(|&n| n != m).collect();
    for &n in &replicas {
        lab.kill_redis(n);
    }
    std::thread::sleep(Duration::from_secs(5));
    let during = witnesses(lab, m);
    nothing_moved(lab, w, q, &format!("replicas {replicas:?} killed for 5 s"));
    w.row.note.push_str(&format!(
        "; status: {before} replica witnesses before, {during} during"
    ));
    assert_eq!((before, during), (2, 0), "replica witnesses in `status`");
}

/// (14d) Every packet between the three hosts delayed 100 ms each way
/// (the lab's NFQUEUE delay line; the client's not): the witnesses answer
/// late but keep answering, and nothing is released.
pub fn slow_network(lab: &mut Lab, w: &mut World) {
    let q = quiet_start(lab, "chaos:14d");
    let m = q.m;
    let replica = NODES.into_iter().find(|&n| n != m).expect("a replica");
    let slow = lab.slow_network(SLOW);
    let rtt = lab.ping_rtt(m, replica, 5);
    std::thread::sleep(Duration::from_secs(20));
    let delayed = slow.stop();
    nothing_moved(lab, w, q, "20 s of 100 ms added each way between the hosts");
    w.row.note.push_str(&format!(
        "; PING n{m} -> n{replica} {:.0} ms; {delayed} packets delayed",
        rtt.as_secs_f64() * 1e3
    ));
    assert!(
        rtt >= 2 * SLOW,
        "the delay line did not delay: PING round trip {rtt:?}"
    );
}

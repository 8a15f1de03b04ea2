//! Process failures (cases 1, 2, 3, 5, 10): the master's Redis killed,
//! shut down or paused; Sentinels restarted; watchers killed at random
//! around failovers.

use std::time::{Duration, Instant};

use sentinel_vip_lab::monitor::Monitor;
use sentinel_vip_lab::trace::Windows;
use sentinel_vip_lab::{wait_until, Lab, NODES, POLL};

use crate::{again, World, DOWN_AFTER, WATCHER};

pub fn master_killed(lab: &mut Lab, w: &mut World) {
    master_dies(lab, w, Death::Kill);
}

pub fn master_shut_down(lab: &mut Lab, w: &mut World) {
    master_dies(lab, w, Death::Shutdown);
}

#[derive(Clone, Copy)]
enum Death {
    Kill,
    Shutdown,
}

/// (1) The master's Redis dies: the VIP moves to the master Sentinel
/// elects, and only there, and the client's entry follows without the
/// client sending anything.
fn master_dies(lab: &mut Lab, w: &mut World, how: Death) {
    let old = lab.ready_for_fault();
    let mon = Monitor::start(lab);
    match how {
        Death::Kill => lab.kill_redis(old),
        Death::Shutdown => {
            // The server closes the connection instead of answering.
            let _ = lab.redis_cli(old, &["SHUTDOWN", "NOSAVE"]);
            let gone = wait_until(Duration::from_secs(5), POLL, || !lab.redis_running(old));
            assert!(gone, "redis on n{old} still runs after SHUTDOWN NOSAVE");
        }
    }
    let new = lab.wait_vip_moves(old, Duration::from_secs(30));
    // The old master coming back as a replica must not move anything.
    let fin = lab.settle_after_failover(new);
    let trace = mon.stop();
    let win = w.record(&trace, fin);
    w.row.note = format!("n{old} -> n{new}, n{old} rejoined{}", again(new, fin));
    trace.assert_settled(&win, fin);
    lab.client_write_lands_on(fin, "chaos-1", "1")
        .unwrap_or_else(|e| panic!("write through the VIP: {e}"));
}

/// (2) The master is paused (SIGSTOP) past down-after: Sentinel fails
/// over, the VIP moves; resumed, the old master believes it is master
/// until Sentinel demotes it, and the VIP must not flap back meanwhile.
pub fn long_pause(lab: &mut Lab, w: &mut World) {
    let old = lab.ready_for_fault();
    let mon = Monitor::start(lab);
    let paused = lab.pause_redis(old);
    let new = lab.wait_vip_moves(old, Duration::from_secs(30));
    let epoch = lab.config_epoch();
    std::thread::sleep(Duration::from_secs(1));
    drop(paused);
    let resumed = mon.now();
    // Sentinel demotes it within about 10-20 s (its INFO period plus a
    // grace period): the window in which a flap back would happen.
    let demoted = wait_until(Duration::from_secs(30), Duration::from_millis(200), || {
        lab.redis_cli(old, &["ROLE"]).0.starts_with("slave")
    });
    let demoted_after = (mon.now() - resumed).as_secs_f64();
    std::thread::sleep(Duration::from_secs(1));
    let fin = lab.rejoin_all();
    let trace = mon.stop();
    let win = w.record(&trace, fin);
    let epochs = (epoch, lab.config_epoch());
    w.row.note = match (demoted, epochs.0 == epochs.1) {
        (true, true) => {
            format!("n{old} -> n{new}; resumed, demoted by Sentinel {demoted_after:.0} s later")
        }
        (false, true) => format!("n{old} -> n{new}; resumed, not demoted by Sentinel in 30 s"),
        (_, false) => format!(
            "n{old} -> n{new}{}; epoch {} -> {}: flap check not applicable",
            again(new, fin),
            epochs.0,
            epochs.1
        ),
    };
    // A flap is the VIP back on the old master while Sentinel still names
    // the new one: judged unless Sentinel failed over again meanwhile.
    if epochs.0 == epochs.1 {
        let moved = trace
            .first_where(Duration::ZERO, |s| s.holders == [new])
            .unwrap_or_else(|| panic!("the VIP never sat on n{new} alone: {:?}", trace.history()));
        let back = trace.violations(moved, |s| !s.holders.contains(&old));
        assert!(
            back.is_empty(),
            "the VIP went back to n{old} after it had moved to n{new} (first at t={:.2} s, resumed at {:.2} s): {:?}",
            back[0].at.as_secs_f64(),
            resumed.as_secs_f64(),
            trace.history()
        );
    }
    trace.assert_settled(&win, fin);
    lab.client_write_lands_on(fin, "chaos-2", "2")
        .unwrap_or_else(|e| panic!("write through the VIP: {e}"));
}

/// (3) The master paused for less than down-after, three times: Sentinel
/// does not fail over, and the VIP and the client's entry do not move.
pub fn short_pause(lab: &mut Lab, w: &mut World) {
    let m = lab.ready_for_fault();
    let pause = DOWN_AFTER / 2;
    let mon = Monitor::start(lab);
    for _ in 0..3 {
        let paused = lab.pause_redis(m);
        std::thread::sleep(pause);
        drop(paused);
        std::thread::sleep(Duration::from_millis(1500));
    }
    let trace = mon.stop();
    w.record(&trace, m);
    w.row.note = format!(
        "3 pauses of {} ms, down-after {} ms",
        pause.as_millis(),
        DOWN_AFTER.as_millis()
    );
    assert_eq!(lab.sentinels_agree(), Some(m), "Sentinel failed over");
    trace.assert_never_moved(m);
}

/// (5) Sentinels restarted one at a time, then all at once: the watchers
/// resubscribe, the VIP and the client's entry stay put.
pub fn sentinel_restarts(lab: &mut Lab, w: &mut World) {
    let m = lab.ready_for_fault();
    let subscriptions = |lab: &Lab| -> Vec<usize> {
        NODES
            .iter()
            .map(|&n| lab.log_count(n, &["subscribed"]))
            .collect()
    };
    let subscribed = subscriptions(lab);
    let mon = Monitor::start(lab);
    for n in NODES {
        lab.restart_sentinel(n);
        let back = wait_until(Duration::from_secs(20), POLL, || {
            lab.sentinel_master(n).is_ok()
        });
        assert!(back, "Sentinel on n{n} did not answer after its restart");
        std::thread::sleep(Duration::from_secs(1));
    }
    lab.restart_sentinels();
    let back = wait_until(Duration::from_secs(20), POLL, || {
        lab.sentinels_agree().is_some()
    });
    assert!(
        back,
        "Sentinels did not agree again after restarting together"
    );
    lab.wait_ready();
    if w.watch {
        // One subscription per Sentinel per watcher, and each Sentinel went
        // away twice.
        let again = wait_until(Duration::from_secs(15), POLL, || {
            NODES
                .iter()
                .all(|&n| lab.log_count(n, &["subscribed"]) >= subscribed[n - 1] + 6)
        });
        assert!(
            again,
            "watchers did not resubscribe to every restarted Sentinel: subscriptions logged before {subscribed:?}, now {:?}",
            subscriptions(lab)
        );
    }
    std::thread::sleep(Duration::from_secs(1));
    let trace = mon.stop();
    w.record(&trace, m);
    w.row.note = "3 one at a time, then all 3 together".into();
    assert_eq!(lab.sentinels_agree(), Some(m), "Sentinel failed over");
    trace.assert_never_moved(m);
}

/// (10) Watchers SIGKILLed at random moments around failovers (20
/// kill/restart cycles over 5 failovers) and restarted after a random
/// pause: after each failover, exactly the new master holds the VIP.
pub fn killed_watchers(lab: &mut Lab, w: &mut World) {
    const FAILOVERS: usize = 5;
    const KILLS: usize = 4;
    lab.ready_for_fault();
    let mon = Monitor::start(lab);
    let mut cycles = 0;
    let mut failovers = Vec::new();
    for f in 1..=FAILOVERS {
        let old = lab.start_failover(w.rng.node(), Duration::from_secs(60));
        let t0 = Instant::now();
        let from = mon.now();
        let mut at: Vec<u64> = (0..KILLS).map(|_| w.rng.below(3000) as u64).collect();
        at.sort_unstable();
        let mut killed = Vec::new();
        for ms in at {
            if let Some(wait) = Duration::from_millis(ms).checked_sub(t0.elapsed()) {
                std::thread::sleep(wait);
            }
            // SIGKILL: no clean-up runs, the kernel drops the lock.
            let n = w.rng.node();
            lab.watcher(n).kill();
            let down = w.rng.below(300) as u64;
            std::thread::sleep(Duration::from_millis(down));
            lab.start_watcher(n, WATCHER);
            killed.push(format!("n{n}@{ms}ms+{down}ms"));
            cycles += 1;
        }
        let new = lab.wait_new_master(old, Duration::from_secs(30));
        // Exactly one holder, Sentinel's master (it may have moved on).
        let holder = lab.wait_one_holder(Duration::from_secs(15));
        eprintln!(
            "  failover {f}: n{old} -> n{new}, one holder (n{holder}) after {:.2} s; killed {}",
            t0.elapsed().as_secs_f64(),
            killed.join(" ")
        );
        failovers.push((from, old));
    }
    let fin = lab.rejoin_all();
    let trace = mon.stop();
    let per = trace.per_failover(&failovers, fin);
    w.row.windows = Some(Windows::worst(&per));
    w.row.note =
        format!("{cycles} kill/restart cycles, {FAILOVERS} failovers (worst failover shown)");
    for (i, w) in per.iter().enumerate() {
        assert!(
            w.converge.is_some(),
            "failover {}: the VIP did not settle on its master",
            i + 1
        );
    }
}

//! Series and bursts (cases 7, 7w, 8): twenty failovers in a row with the
//! hook and then its calls replayed; twenty followed by the watchers on
//! Sentinel's events alone; 48 conflicting hook runs during a failover.

use std::time::{Duration, Instant};

use sentinel_vip_lab::monitor::Monitor;
use sentinel_vip_lab::suite::show;
use sentinel_vip_lab::trace::Windows;
use sentinel_vip_lab::{hook_cmd, wait_until, Lab, Privilege, NODES, POLL};

use crate::{again, restart_watchers, World};

/// (8) 16 hook runs per host (48 at once) with conflicting arguments,
/// launched as Sentinel starts a failover: every run exits 0 and the VIP
/// ends on Sentinel's master, alone.
pub fn hook_storm(lab: &mut Lab, w: &mut World) {
    const PER_HOST: usize = 16;
    let old = lab.ready_for_fault();
    let runs: Vec<(usize, Vec<String>)> = NODES
        .iter()
        .flat_map(|&n| {
            (0..PER_HOST).map(move |j| {
                let to = 1 + (n + j) % 3;
                let from = 1 + (n + j + 1) % 3;
                let role = if j % 2 == 0 { "leader" } else { "observer" };
                (n, hook_cmd(role, from, to))
            })
        })
        .collect();
    let mon = Monitor::start(lab);
    lab.start_failover(w.rng.node(), Duration::from_secs(30));
    let outs = lab.sv_concurrently(Privilege::Root, &runs);
    let new = lab.wait_new_master(old, Duration::from_secs(30));
    lab.wait_one_holder(Duration::from_secs(20));
    std::thread::sleep(Duration::from_secs(2));
    let fin = lab.rejoin_all();
    let trace = mon.stop();
    let win = w.record(&trace, fin);
    let bad: Vec<String> = runs
        .iter()
        .zip(&outs)
        .filter(|(_, o)| o.status.code() != Some(0))
        .map(|((n, a), o)| format!("n{n} {:?}: {}", &a[2..], show(o)))
        .collect();
    w.row.note = format!(
        "n{old} -> n{new}; {} of {} runs exited 0{}",
        outs.len() - bad.len(),
        outs.len(),
        again(new, fin)
    );
    assert!(
        bad.is_empty(),
        "{} hook run(s) did not exit 0: {}",
        bad.len(),
        bad.join("; ")
    );
    trace.assert_settled(&win, fin);
}

/// (7, watch mode) 20 failovers in a row, each waited for, with the
/// watchers' timer pass slowed to once a minute: moves must come from
/// Sentinel's events, as README describes (the timer is the fallback).
/// With 3 nodes the master keeps returning to nodes it left seconds
/// before: events that look alike, yet are new. The VIP must follow every
/// failover within 10 s. On the way: a SIGHUP reload must apply the new
/// interval.
pub fn failover_series_watch(lab: &mut Lab, w: &mut World) {
    const FAILOVERS: usize = 20;
    const SLOW: &str = "reconcile_interval_ms = 60000";
    let default = w.default_top.clone();
    let slow = format!("{default}\n{SLOW}\n");
    lab.ready_for_fault();
    let mut problems = Vec::new();
    w.set_config(lab, &slow);
    let idle = quiet_query_idle(lab);
    if idle < 3 {
        problems.push(format!(
            "after a SIGHUP reload with `{SLOW}` the watchers still ask Sentinel every second (a query connection idle only {idle} s after 5 s without events)"
        ));
    }
    // Restarted, they certainly run with the slow timer.
    restart_watchers(lab);
    let idle = quiet_query_idle(lab);
    assert!(
        idle >= 3,
        "watchers restarted with `{SLOW}` still ask every second (idle {idle} s): the case cannot judge events"
    );
    let t = Instant::now();
    let mon = Monitor::start(lab);
    let mut failovers = Vec::new();
    let mut late = Vec::new();
    for i in 0..FAILOVERS {
        let old = lab.start_failover(1 + i % 3, Duration::from_secs(60));
        failovers.push((mon.now(), old));
        let new = lab.wait_new_master(old, Duration::from_secs(30));
        let followed = wait_until(Duration::from_secs(10), POLL, || lab.holders() == vec![new]);
        eprintln!(
            "  failover {}/{FAILOVERS}: n{old} -> n{new} at {:.1} s; VIP {}",
            i + 1,
            t.elapsed().as_secs_f64(),
            if followed {
                "followed".to_string()
            } else {
                format!("did NOT follow within 10 s (holders {:?})", lab.holders())
            }
        );
        if !followed {
            late.push(format!("{} (n{old} -> n{new})", i + 1));
            // A reload runs a pass: the next failover starts from a
            // placed VIP.
            for n in NODES {
                lab.signal_watcher(n, "HUP");
            }
            let _ = wait_until(Duration::from_secs(10), POLL, || lab.holders() == vec![new]);
        }
    }
    let fin = lab.rejoin_all();
    let trace = mon.stop();
    w.set_config_restart(lab, &default);
    let per = trace.per_failover(&failovers, fin);
    w.row.windows = Some(Windows::worst(&per));
    w.row.note = format!(
        "{FAILOVERS} failovers in {:.0} s with {SLOW} (worst shown); {} not followed",
        t.elapsed().as_secs_f64(),
        late.len()
    );
    if !late.is_empty() {
        problems.push(format!(
            "the VIP did not follow {} of {FAILOVERS} failovers within 10 s, failovers {}: the watchers let Sentinel's events pass",
            late.len(),
            late.join(", ")
        ));
    }
    assert!(
        problems.is_empty(),
        "{} problem(s): {}",
        problems.len(),
        problems.join("; ")
    );
}

/// Waits 5 s without events and returns how long, in seconds, the most
/// recently used watcher query connection to any Sentinel has been idle
/// (`CLIENT LIST`: the watchers' pipeline ends with
/// GET-MASTER-ADDR-BY-NAME; the lab's own questions use connections
/// that are closed by then). A timer pass asks every Sentinel.
fn quiet_query_idle(lab: &Lab) -> u64 {
    std::thread::sleep(Duration::from_secs(5));
    NODES
        .iter()
        .flat_map(|&n| {
            let (list, _) = lab.sentinel_cli(n, &["CLIENT", "LIST"]);
            list.lines()
                .filter(|l| l.contains("cmd=sentinel|get-master-addr-by-name"))
                .filter_map(|l| {
                    l.split_whitespace()
                        .find_map(|f| f.strip_prefix("idle="))
                        .and_then(|v| v.parse::<u64>().ok())
                })
                .collect::<Vec<_>>()
        })
        .min()
        .unwrap_or(u64::MAX)
}

/// (7) 20 failovers in a row (each waited for), with the hook as
/// Sentinel's script: the VIP ends on the final master. Then every hook
/// call of the series is replayed on every node: all exit 0 and nothing
/// changes.
pub fn failover_series(lab: &mut Lab, w: &mut World) {
    const FAILOVERS: usize = 20;
    lab.ready_for_fault();
    let t = Instant::now();
    let mon = Monitor::start(lab);
    let mut history = Vec::new();
    let mut last_start = Duration::ZERO;
    for i in 0..FAILOVERS {
        let old = lab.start_failover(1 + i % 3, Duration::from_secs(60));
        last_start = mon.now();
        let new = lab.wait_new_master(old, Duration::from_secs(30));
        eprintln!(
            "  failover {}/{FAILOVERS}: n{old} -> n{new} at {:.1} s",
            i + 1,
            t.elapsed().as_secs_f64()
        );
        history.push((old, new));
    }
    // The final master is whichever Sentinel names now (it may have moved
    // on by itself after the 20th); exactly it must hold the VIP.
    let newest = history.last().expect("failovers").1;
    let last = lab.wait_one_holder(Duration::from_secs(30));
    lab.client_follows(last, Duration::from_secs(5));
    std::thread::sleep(Duration::from_secs(2));
    let series = t.elapsed().as_secs_f64();

    // Sentinel's own calls of the series, replayed everywhere at once, as
    // retries arriving late would.
    let before = lab.all_addrs();
    let replay_at = mon.now();
    let runs: Vec<(usize, Vec<String>)> = NODES
        .iter()
        .flat_map(|&n| {
            history
                .iter()
                .map(move |&(from, to)| (n, hook_cmd("leader", from, to)))
        })
        .collect();
    let outs = lab.sv_concurrently(Privilege::Root, &runs);
    std::thread::sleep(Duration::from_secs(1));
    let trace = mon.stop();
    let mut win = trace.windows(last);
    // Convergence is judged from the last failover: the ones before it
    // were not waited for by the VIP.
    let tail = trace.slice(last_start, trace.end).windows(last);
    win.converge = tail.converge;
    win.client = tail.client;
    w.row.windows = Some(win.clone());
    let bad: Vec<String> = runs
        .iter()
        .zip(&outs)
        .filter(|(_, o)| o.status.code() != Some(0))
        .map(|((n, a), o)| format!("n{n} {:?}: {}", &a[4..7], show(o)))
        .collect();
    w.row.note = format!(
        "{FAILOVERS} failovers in {series:.0} s, final n{last} (converge: from the last); {} replays{}",
        runs.len(),
        again(newest, last)
    );
    trace.assert_settled(&win, last);
    assert!(
        bad.is_empty(),
        "{} replayed hook call(s) did not exit 0: {}",
        bad.len(),
        bad.join("; ")
    );
    assert_eq!(lab.all_addrs(), before, "the replay changed addresses");
    let moved = trace.violations(replay_at, |s| {
        s.holders == [last] && s.neigh_node() == Some(last)
    });
    assert!(
        moved.is_empty(),
        "during the replay the VIP or the client's entry left n{last}: {:?}",
        moved.first()
    );
}

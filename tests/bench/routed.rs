//! Part 6 of `make bench` (issue 19): the routed VIP. `kill -9` of the
//! master's server → first acknowledged write through the VIP (a /32 on
//! `lo` announced over BGP, the client behind the router) against the
//! Sentinel-aware client writing through the very same failovers; and the
//! promoted replica first answering `ROLE` master → the route at the
//! router, split at the moment sentinel-vip took the VIP (its log), so the
//! figures say what dominates. BIRD on the hosts, then FRR
//! (`BENCH_ROUTED=bird,frr`). It measures and prints; it judges nothing.

use std::path::Path;
use std::time::Duration;

use sentinel_vip_lab::client::{KeptWriter, Pace, Route};
use sentinel_vip_lab::routed::outage::{kill_routed_master, RoutedKill};
use sentinel_vip_lab::routed::{Daemon, RouteMonitor, Routed};
use sentinel_vip_lab::stats::{median, summary};
use sentinel_vip_lab::suite::catch;
use sentinel_vip_lab::timeline::first_log;
use sentinel_vip_lab::{Lab, LabOptions, Privilege, Programs, NODES};

use super::env_usize;

const VIP: usize = 0;
const SENTINEL: usize = 1;

/// Part 6.
pub fn routed(bin: &Path, programs: Programs) {
    let kills = env_usize("BENCH_KILLS", 5);
    let ms = |k: &str, d: usize| Duration::from_millis(env_usize(k, d) as u64);
    let pace = Pace {
        interval: ms("BENCH_WRITE_INTERVAL_MS", 10),
        timeout: ms("BENCH_CLIENT_TIMEOUT_MS", 250),
    };
    let daemons = std::env::var("BENCH_ROUTED").unwrap_or_else(|_| "bird,frr".into());
    println!("\n6. routed VIP (a /32 on lo announced over BGP, the client behind a BIRD router): kill -9 of the master's server");
    println!(
        "   {kills} failovers per daemon on the hosts; watchers with follow_promotion; clients as in part 4"
    );
    for d in daemons.split(',').map(str::trim) {
        let daemon = match d {
            "bird" => Daemon::Bird,
            "frr" => Daemon::Frr,
            other => panic!("BENCH_ROUTED: unknown daemon {other} (bird, frr)"),
        };
        let rounds = series(bin, programs, daemon, kills, pace);
        report(daemon, &rounds);
    }
}

/// `kills` failovers in one routed lab with `daemon` on the hosts; each
/// with the time sentinel-vip logged taking the VIP on the new master.
fn series(
    bin: &Path,
    programs: Programs,
    daemon: Daemon,
    kills: usize,
    pace: Pace,
) -> Vec<(RoutedKill, Option<f64>)> {
    let opts = LabOptions {
        reconfig_script: false,
        programs,
        routed: Some(Routed { hosts: daemon }),
        ..LabOptions::default()
    };
    let mut lab = Lab::new(bin, opts);
    lab.wait_ready();
    lab.wait_routing(Duration::from_secs(30));
    for n in NODES {
        lab.start_watcher(n, Privilege::TwoCaps);
    }
    let routes = RouteMonitor::start(&lab);
    let vip = KeptWriter::start(&lab, "vip", Route::Vip, pace);
    let sentinel = KeptWriter::start(&lab, "sentinel", Route::Sentinel, pace);
    let mut out = Vec::new();
    for round in 1..=kills {
        let r = catch(|| {
            kill_routed_master(
                &mut lab,
                &[&vip, &sentinel],
                &routes,
                Duration::from_secs(15),
            )
        });
        match r {
            Ok(k) => {
                let took = first_log(&lab, k.new, &["Acquire"], k.at).map(|(t, _)| t);
                print_round(daemon, round, &k, took);
                out.push((k, took));
            }
            Err(why) => {
                println!("  {} #{round}: round failed: {why}", daemon.name());
                catch(|| lab.rejoin_routed())
                    .unwrap_or_else(|e| panic!("the routed lab did not recover: {e}"));
            }
        }
    }
    out
}

fn print_round(daemon: Daemon, round: usize, k: &RoutedKill, took: Option<f64>) {
    let t = |x: Option<f64>| x.map_or("--".into(), |v| format!("{v:.1}"));
    let w = |i: usize| match &k.writes[i].why {
        Some(why) => format!("none ({why})"),
        None => t(k.after_kill(k.writes[i].first_kept)),
    };
    println!(
        "  {} #{round} n{}->n{}: VIP client {} ms, Sentinel client {} ms after the kill; ROLE master -> VIP taken {} ms -> route at the router {} ms",
        daemon.name(),
        k.old,
        k.new,
        w(VIP),
        w(SENTINEL),
        t(k.after_role(took)),
        t(k.after_role(k.route)),
    );
}

fn report(daemon: Daemon, rounds: &[(RoutedKill, Option<f64>)]) {
    let kept = |k: &RoutedKill, w: usize| k.after_kill(k.writes[w].first_kept);
    let all = || rounds.iter();
    println!("  {} on the hosts:", daemon.name());
    let mut v: Vec<f64> = all().filter_map(|(k, _)| kept(k, VIP)).collect();
    let vm = summary("kill -> first write, routed VIP", &mut v);
    let mut s: Vec<f64> = all().filter_map(|(k, _)| kept(k, SENTINEL)).collect();
    let sm = summary("kill -> first write, Sentinel-aware (redis-rs)", &mut s);
    let mut paired: Vec<f64> = all()
        .filter_map(|(k, _)| Some(kept(k, VIP)? / kept(k, SENTINEL)?))
        .collect();
    println!(
        "  ratio routed VIP / Sentinel-aware: {:.2} of the medians, {:.2} median of per-failover ratios (target <= 0.70)",
        vm / sm,
        median(&mut paired)
    );
    let mut route: Vec<f64> = all().filter_map(|(k, _)| k.after_role(k.route)).collect();
    summary("ROLE master -> route at the router (<= 20)", &mut route);
    let mut took: Vec<f64> = all().filter_map(|(k, t)| k.after_role(*t)).collect();
    summary("  of which ROLE master -> VIP taken (log)", &mut took);
    let mut prop: Vec<f64> = all()
        .filter_map(|(k, t)| Some((k.route? - (*t)?) * 1e3))
        .collect();
    summary("  and VIP taken -> route at the router", &mut prop);
    let mut write: Vec<f64> = all()
        .filter_map(|(k, _)| k.after_role(k.writes[VIP].first_kept))
        .collect();
    summary("ROLE master -> first write, routed VIP", &mut write);
    let lost: usize = all().flat_map(|(k, _)| &k.writes).map(|w| w.lost).sum();
    println!("  acknowledged writes lost: {lost}");
}

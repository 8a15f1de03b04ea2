//! Fault injection ("chaos") for sentinel-vip, on real redis-server,
//! redis-sentinel and sentinel-vip in the namespace lab (tests/lab): the
//! master killed, paused or cut off; Sentinels restarted; watchers blinded
//! during a failover or killed at random; twenty failovers in a row (hook
//! mode, and watch mode driven by events alone); hook storms; interface
//! churn; bad input; missing privileges.
//!
//! Every case asserts behaviour (kernel addresses, the client's neighbour
//! table, captured frames, writes through the VIP). While a fault plays
//! out, a [`Monitor`] samples the holders and the client's neighbour entry
//! every 20 ms; the table at the end prints the windows it measured.
//! Speed is reported, not asserted (beyond bounds the product documents).
//!
//! `cargo test --test chaos` runs everything (harness = false: this file
//! has its own `main`); `cargo test --test chaos -- 4a 9` runs only the
//! cases whose name contains "4a" or "9". Needs root, and `nft`
//! (nftables) for case 6. `CHAOS_SEED=N` repeats the random choices of an
//! earlier run.

mod lab;

use std::fs;
use std::io::Write;
use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use lab::check::{
    arp_lines, bad_hook_calls, client_vip_mac, expect_client_mac, expect_exit, panic_message, show,
    stop_capture_when, wait_vip_moves, POLL,
};
use lab::monitor::{Monitor, Trace, Windows};
use lab::{
    hook_cmd, node_ip, node_ip6, node_of_ip, now_epoch, wait_until, Capture, Lab, LabOptions,
    RunAs, SpawnId, MASTER_NAME, NODES, SENTINEL_PORT, VIP4,
};

/// Sentinel's down-after-milliseconds in every lab: short, so failovers
/// start quickly.
const DOWN_AFTER_MS: u64 = 1000;
/// The partition lab's `sentinel_loss_after_ms` with `release`: short
/// enough to watch the cut-off holder let go.
const LOSS_AFTER_MS: u64 = 3000;
/// The product's default `reconcile_interval_ms` (the labs keep it).
const RECONCILE_MS: u64 = 1000;
/// Allowance for scheduling and the Sentinel question itself on top of a
/// documented deadline.
const SLACK_MS: u64 = 1000;
/// An address no config names, for `vip add`/`vip del`.
const SCRATCH_CIDR: &str = "192.0.2.200/24";
const SCRATCH_IP: &str = "192.0.2.200";
/// Set in the environment of this binary re-run as the junk server.
const JUNK_ENV: &str = "CHAOS_JUNK_SERVER";
/// nftables table that blinds the watchers (case 6).
const NFT_TABLE: &str = "chaos";
/// The watcher runs as this uid (see `Lab::spawn_watcher`).
const NOBODY: u32 = 65534;

fn bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_sentinel-vip"))
}

// ----- the run -----------------------------------------------------------------

/// A case fills in its row as it goes, so that a failing case still shows
/// what it measured.
type Case = fn(&mut Lab, &mut World, &mut Row);

#[derive(Default)]
struct Row {
    windows: Option<Windows>,
    note: String,
}

/// One lab and the cases run on it, in order (a lab takes seconds to build,
/// and a failover costs a Sentinel refresh cycle to recover from).
struct Plan {
    name: &'static str,
    opts: LabOptions,
    /// Watchers on every node (else the hook, as Sentinel's script).
    watch: bool,
    cases: Vec<(&'static str, Case)>,
}

/// What the cases of one lab share.
struct World {
    watch: bool,
    /// The watcher running on each node (index n-1).
    watchers: [Option<SpawnId>; 3],
    rng: Rng,
    /// The top-level TOML the node configs currently carry, and the lab's
    /// own (restored by recover()).
    toml_top: String,
    default_top: String,
}

impl World {
    fn start_watcher(&mut self, lab: &mut Lab, n: usize) {
        self.watchers[n - 1] = Some(lab.spawn_watcher(n, RunAs::TwoCaps));
    }

    /// SIGKILL: no clean-up runs, the kernel drops the lock.
    fn kill_watcher(&mut self, lab: &mut Lab, n: usize) {
        if let Some(id) = self.watchers[n - 1].take() {
            lab.stop_spawned(id, "KILL", Duration::from_secs(5));
        }
    }

    fn watcher_pid(&self, lab: &Lab, n: usize) -> u32 {
        self.watchers[n - 1]
            .and_then(|id| lab.spawned_pid(id))
            .unwrap_or_else(|| panic!("no watcher running on n{n}"))
    }

    fn watcher_running(&self, lab: &mut Lab, n: usize) -> bool {
        self.watchers[n - 1].is_some_and(|id| lab.spawned_running(id))
    }
}

struct Outcome {
    name: &'static str,
    error: Option<String>,
    row: Row,
    secs: f64,
}

fn plans() -> Vec<Plan> {
    let watch = LabOptions {
        reconfig_script: false,
        down_after_ms: DOWN_AFTER_MS,
        ..LabOptions::default()
    };
    vec![
        Plan {
            name: "watch",
            opts: watch.clone(),
            watch: true,
            // Cases that keep the master first: a failover costs a Sentinel
            // refresh, and a broken one should not take them down with it.
            cases: vec![
                ("3  master paused < down-after (watch)", short_pause),
                ("5  Sentinels restarted 1 by 1, then all", sentinel_restarts),
                ("9a holder eth0 down/up (watch)", link_flap),
                ("9b holder addr flush, re-added (watch)", addr_flush),
                ("9c holder eth0 deleted, re-created (watch)", link_recreated),
                ("11 bad input; junk for the watchers", bad_input),
                ("1a master SIGKILL (watch)", master_killed),
                ("1b master SHUTDOWN NOSAVE (watch)", master_shut_down),
                ("2  master paused > down-after (watch)", long_pause),
                ("6  watchers blind during a failover", blind_watchers),
                (
                    "7w 20 failovers, events only (watch)",
                    failover_series_watch,
                ),
                ("10 watchers SIGKILLed x20 in failovers", killed_watchers),
            ],
        },
        Plan {
            name: "hook",
            opts: LabOptions {
                reconfig_script: true,
                down_after_ms: DOWN_AFTER_MS,
                ..LabOptions::default()
            },
            watch: false,
            cases: vec![
                ("12 privileges: 2 caps work, none refused", privileges),
                ("8  48 conflicting hooks in a failover", hook_storm),
                ("1c master SIGKILL (hook)", master_killed),
                ("1d master SHUTDOWN NOSAVE (hook)", master_shut_down),
                ("2h master paused > down-after (hook)", long_pause),
                ("7  20 failovers, stale replay (hook)", failover_series),
                ("4h master cut off (hook)", cut_off_hook),
            ],
        },
        Plan {
            name: "partition",
            opts: LabOptions {
                // The true holder re-announces every second, so that a
                // healed partition is settled quickly.
                toml_tail: "[announce]\nrefresh_interval_ms = 1000\n".into(),
                ..watch
            },
            watch: true,
            cases: vec![
                ("4a master cut off, release (watch)", cut_off_release),
                ("4b master cut off, keep (watch)", cut_off_keep),
            ],
        },
    ]
}

fn main() {
    // Re-run of this binary inside a namespace, as a fake Sentinel (case 11).
    if let Ok(addr) = std::env::var(JUNK_ENV) {
        junk_server(&addr);
    }
    let args: Vec<String> = std::env::args().skip(1).collect();
    // `cargo test -- --list` asks a harness for its tests; there are none
    // to list one by one here.
    if args.iter().any(|a| a == "--list") {
        return;
    }
    if !lab::e2e_enabled() {
        println!("chaos: 0 passed, 0 failed");
        return;
    }
    // Options meant for libtest (`make test` passes --nocapture) are ignored;
    // bare words select the cases whose name contains any of them.
    let filters: Vec<&str> = args
        .iter()
        .map(String::as_str)
        .filter(|a| !a.starts_with('-'))
        .collect();
    let seed = std::env::var("CHAOS_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| now_epoch().to_bits());
    eprintln!("chaos: seed {seed} (CHAOS_SEED={seed} repeats the random choices)");
    let started = Instant::now();
    let mut outcomes = Vec::new();
    for plan in plans() {
        outcomes.extend(run_lab(plan, &filters, seed));
    }
    print_table(&mut outcomes, started.elapsed());
    let failed = outcomes.iter().filter(|o| o.error.is_some()).count();
    println!("chaos: {} passed, {failed} failed", outcomes.len() - failed);
    if failed > 0 {
        std::process::exit(1);
    }
}

fn run_lab(plan: Plan, filters: &[&str], seed: u64) -> Vec<Outcome> {
    let cases: Vec<(&'static str, Case)> = plan
        .cases
        .into_iter()
        .filter(|(name, _)| filters.is_empty() || filters.iter().any(|f| name.contains(f)))
        .collect();
    if cases.is_empty() {
        return Vec::new();
    }
    eprintln!("\n===== lab '{}': {} case(s)", plan.name, cases.len());
    let mut world = World {
        watch: plan.watch,
        watchers: [None; 3],
        rng: Rng::new(seed ^ plan.name.len() as u64),
        toml_top: plan.opts.toml_top.clone(),
        default_top: plan.opts.toml_top.clone(),
    };
    let t = Instant::now();
    let built = catch_unwind(AssertUnwindSafe(|| {
        let mut lab = Lab::new(bin(), plan.opts.clone());
        lab.wait_ready();
        place_vip(&mut lab, &mut world);
        lab
    }));
    let mut lab = match built {
        Ok(lab) => lab,
        Err(p) => {
            let msg = format!("lab setup failed: {}", one_line(&*p));
            eprintln!("{msg}");
            return cases
                .into_iter()
                .map(|(name, _)| Outcome {
                    name,
                    error: Some(msg.clone()),
                    row: Row::default(),
                    secs: 0.0,
                })
                .collect();
        }
    };
    eprintln!(
        "lab {} ready, VIP placed, in {:.1} s",
        lab.prefix,
        t.elapsed().as_secs_f64()
    );
    let mut outcomes = Vec::new();
    let mut unusable: Option<String> = None;
    for (name, case) in cases {
        if let Some(why) = &unusable {
            outcomes.push(Outcome {
                name,
                error: Some(format!("not run: {why}")),
                row: Row::default(),
                secs: 0.0,
            });
            continue;
        }
        eprintln!("\n--- {name}");
        let t = Instant::now();
        let mut row = Row::default();
        let result = catch_unwind(AssertUnwindSafe(|| case(&mut lab, &mut world, &mut row)));
        let secs = t.elapsed().as_secs_f64();
        let error = result.err().map(|p| one_line(&*p));
        match &error {
            None => eprintln!("--- {name}: pass ({secs:.1} s) {}", row.note),
            Some(e) => {
                eprintln!("--- {name}: FAIL ({secs:.1} s): {e}");
                // Put the lab back in shape for the cases after this one.
                if let Err(p) = catch_unwind(AssertUnwindSafe(|| recover(&mut lab, &mut world))) {
                    let why = format!("lab not recovered after {name}: {}", one_line(&*p));
                    eprintln!("{why}");
                    unusable = Some(why);
                }
            }
        }
        if let Some(w) = &row.windows {
            eprintln!(
                "    sampled {} times, largest gap {:.0} ms",
                w.samples,
                w.max_gap * 1e3
            );
        }
        outcomes.push(Outcome {
            name,
            error,
            row,
            secs,
        });
    }
    if outcomes.iter().any(|o| o.error.is_some()) {
        lab.dump_logs();
    }
    outcomes
}

/// Puts the VIP on the master the way each mode does at boot: the watchers
/// start, or `reconcile` runs on every node.
fn place_vip(lab: &mut Lab, w: &mut World) {
    if w.watch {
        for n in NODES {
            w.start_watcher(lab, n);
        }
    } else {
        for n in NODES {
            expect_exit(&lab.sv(n, &["reconcile"]), 0, &format!("reconcile on n{n}"));
        }
    }
    wait_one_holder(lab, Duration::from_secs(10));
}

fn print_table(outcomes: &mut [Outcome], took: Duration) {
    // By scenario number, whichever lab ran it.
    let key = |name: &str| {
        let id = name.split_whitespace().next().unwrap_or("");
        let digits: String = id.chars().take_while(char::is_ascii_digit).collect();
        (digits.parse::<u32>().unwrap_or(99), id.to_string())
    };
    outcomes.sort_by_key(|o| key(o.name));
    let secs = |v: Option<f64>| v.map_or("never".to_string(), |s| format!("{s:.2}"));
    println!();
    println!(
        "{:<46} {:<6} {:>9} {:>9} {:>9} {:>9} {:>7}  notes",
        "scenario", "result", "2 holders", "no holder", "converge", "client", "case"
    );
    println!("{}", "-".repeat(118));
    for o in outcomes.iter() {
        let (two, none, conv, client) = match &o.row.windows {
            Some(w) => (
                format!("{:.2}", w.two_holders),
                format!("{:.2}", w.no_holder),
                secs(w.converge),
                secs(w.client),
            ),
            None => ("-".into(), "-".into(), "-".into(), "-".into()),
        };
        println!(
            "{:<46} {:<6} {two:>9} {none:>9} {conv:>9} {client:>9} {:>6.0}s  {}",
            o.name,
            if o.error.is_none() { "pass" } else { "FAIL" },
            o.secs,
            o.row.note
        );
    }
    println!("{}", "-".repeat(118));
    println!(
        "Seconds. 2 holders / no holder: total time two or more / no node held the VIP;\n\
         converge: fault injected -> exactly one holder, Sentinel's master, for good;\n\
         client: fault injected -> the client's neighbour entry on that holder, for good.\n\
         Sampled every {} ms from fault injection to the end of the case.",
        lab::monitor::PERIOD.as_millis()
    );
    for o in outcomes.iter() {
        if let Some(e) = &o.error {
            println!("FAIL {}: {e}", o.name);
        }
    }
    println!("total run time {:.0} s", took.as_secs_f64());
}

// ----- scenarios -----------------------------------------------------------------

fn master_killed(lab: &mut Lab, _: &mut World, row: &mut Row) {
    master_dies(lab, row, Death::Kill);
}

fn master_shut_down(lab: &mut Lab, _: &mut World, row: &mut Row) {
    master_dies(lab, row, Death::Shutdown);
}

#[derive(Clone, Copy)]
enum Death {
    Kill,
    Shutdown,
}

/// (1) The master's Redis dies: the VIP moves to the master Sentinel
/// elects, and only there, and the client's entry follows without the
/// client sending anything.
fn master_dies(lab: &mut Lab, row: &mut Row, how: Death) {
    let old = prepare(lab);
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
    let new = wait_vip_moves(lab, old, Duration::from_secs(30));
    // Announcements trail the address; a flap would show in the meantime.
    let _ = wait_until(Duration::from_secs(5), POLL, || {
        client_vip_mac(lab) == lab.mac(new)
    });
    std::thread::sleep(Duration::from_secs(2));
    // The old master coming back as a replica must not move anything.
    let fin = rejoin_all(lab);
    let trace = mon.stop();
    let w = record(row, &trace, fin);
    row.note = format!("n{old} -> n{new}, n{old} rejoined{}", again(new, fin));
    assert_settled(&trace, &w, fin);
    lab.client_write_lands_on(fin, "chaos-1", "1")
        .unwrap_or_else(|e| panic!("write through the VIP: {e}"));
}

/// (2) The master is paused (SIGSTOP) past down-after: Sentinel fails
/// over, the VIP moves; resumed, the old master believes it is master
/// until Sentinel demotes it, and the VIP must not flap back meanwhile.
fn long_pause(lab: &mut Lab, _: &mut World, row: &mut Row) {
    let old = prepare(lab);
    let pid = lab.redis_pid(old).expect("redis running on the master");
    let mon = Monitor::start(lab);
    signal(pid, "STOP");
    let resume = Resume(pid);
    let new = wait_vip_moves(lab, old, Duration::from_secs(30));
    let epoch = config_epoch(lab);
    std::thread::sleep(Duration::from_secs(1));
    drop(resume);
    let resumed = mon.now();
    // Sentinel demotes it within about 10-20 s (its INFO period plus a
    // grace period): the window in which a flap back would happen.
    let demoted = wait_until(Duration::from_secs(30), Duration::from_millis(200), || {
        lab.redis_cli(old, &["ROLE"]).0.starts_with("slave")
    });
    let demoted_after = mon.now() - resumed;
    std::thread::sleep(Duration::from_secs(1));
    let fin = rejoin_all(lab);
    let trace = mon.stop();
    let w = record(row, &trace, fin);
    let epochs = (epoch, config_epoch(lab));
    row.note = match (demoted, epochs.0 == epochs.1) {
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
            .first_where(0.0, |s| s.holders == [new])
            .unwrap_or_else(|| panic!("the VIP never sat on n{new} alone: {:?}", trace.history()));
        let back = trace.violations(moved, |s| !s.holders.contains(&old));
        assert!(
            back.is_empty(),
            "the VIP went back to n{old} after it had moved to n{new} (first at t={:.2} s, resumed at {resumed:.2} s): {:?}",
            back[0].t,
            trace.history()
        );
    }
    assert_settled(&trace, &w, fin);
    lab.client_write_lands_on(fin, "chaos-2", "2")
        .unwrap_or_else(|e| panic!("write through the VIP: {e}"));
}

/// (3) The master paused for less than down-after, three times: Sentinel
/// does not fail over, and the VIP and the client's entry do not move.
fn short_pause(lab: &mut Lab, _: &mut World, row: &mut Row) {
    let m = prepare(lab);
    let pid = lab.redis_pid(m).expect("redis running on the master");
    let pause = Duration::from_millis(DOWN_AFTER_MS / 2);
    let mon = Monitor::start(lab);
    for _ in 0..3 {
        signal(pid, "STOP");
        let resume = Resume(pid);
        std::thread::sleep(pause);
        drop(resume);
        std::thread::sleep(Duration::from_millis(1500));
    }
    let trace = mon.stop();
    record(row, &trace, m);
    row.note = format!(
        "3 pauses of {} ms, down-after {DOWN_AFTER_MS} ms",
        pause.as_millis()
    );
    assert_eq!(lab.sentinels_agree(), Some(m), "Sentinel failed over");
    assert_never_moved(&trace, m);
}

/// (5) Sentinels restarted one at a time, then all at once: the watchers
/// resubscribe, the VIP and the client's entry stay put.
fn sentinel_restarts(lab: &mut Lab, w: &mut World, row: &mut Row) {
    let m = prepare(lab);
    let subscribed: Vec<usize> = NODES
        .iter()
        .map(|&n| log_count(lab, n, &["subscribed"]))
        .collect();
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
                .all(|&n| log_count(lab, n, &["subscribed"]) >= subscribed[n - 1] + 6)
        });
        let now: Vec<usize> = NODES
            .iter()
            .map(|&n| log_count(lab, n, &["subscribed"]))
            .collect();
        assert!(
            again,
            "watchers did not resubscribe to every restarted Sentinel: subscriptions logged before {subscribed:?}, now {now:?}"
        );
    }
    std::thread::sleep(Duration::from_secs(1));
    let trace = mon.stop();
    record(row, &trace, m);
    row.note = "3 one at a time, then all 3 together".into();
    assert_eq!(lab.sentinels_agree(), Some(m), "Sentinel failed over");
    assert_never_moved(&trace, m);
}

/// (6) Every watcher's own traffic to Sentinel is dropped (nftables, by
/// its uid) while Sentinel fails over: the pub/sub events are lost for
/// good. Unblocked, the watchers must converge anyway.
fn blind_watchers(lab: &mut Lab, w: &mut World, row: &mut Row) {
    assert!(
        in_path("nft"),
        "`nft` is needed to block the watchers' connections: apt-get install nftables"
    );
    let old = prepare(lab);
    let mon = Monitor::start(lab);
    for n in NODES {
        block_watcher(lab, n);
    }
    // Sentinel's own traffic (it runs as root) still flows: it fails over.
    start_failover(lab, 1 + w.rng.below(3), Duration::from_secs(30));
    let new = wait_new_master(lab, old, Duration::from_secs(30));
    // Sentinel publishes +switch-master once; let it go by unseen.
    std::thread::sleep(Duration::from_secs(3));
    let blind = lab.holders();
    assert!(
        !blind.contains(&new),
        "n{new} took the VIP while its watcher could not reach any Sentinel: the block leaks (holders {blind:?})"
    );
    for n in NODES {
        unblock_watcher(lab, n);
    }
    let unblocked = mon.now();
    let holder = wait_one_holder(lab, Duration::from_secs(20));
    let _ = wait_until(Duration::from_secs(5), POLL, || {
        client_vip_mac(lab) == lab.mac(holder)
    });
    std::thread::sleep(Duration::from_secs(2));
    let fin = rejoin_all(lab);
    let trace = mon.stop();
    let win = record(row, &trace, fin);
    let after = trace
        .first_where(unblocked, |s| s.holders == [holder])
        .map_or(f64::NAN, |t| t - unblocked);
    row.note = format!(
        "n{old} -> n{new}; held by {blind:?} while blind; 1 holder {after:.2} s after unblock{}",
        again(new, fin)
    );
    assert_settled(&trace, &win, fin);
    lab.client_write_lands_on(fin, "chaos-6", "6")
        .unwrap_or_else(|e| panic!("write through the VIP: {e}"));
}

fn link_flap(lab: &mut Lab, _: &mut World, row: &mut Row) {
    churn(lab, row, Churn::LinkFlap);
}

fn addr_flush(lab: &mut Lab, _: &mut World, row: &mut Row) {
    churn(lab, row, Churn::Flush);
}

fn link_recreated(lab: &mut Lab, _: &mut World, row: &mut Row) {
    churn(lab, row, Churn::Recreate);
}

#[derive(Clone, Copy, PartialEq)]
enum Churn {
    LinkFlap,
    Flush,
    Recreate,
}

/// (9) The holder's interface churns: down/up; every address flushed and
/// the node's own re-added (as a network manager would); deleted and
/// re-created with a new MAC. The VIP must come back on the holder and be
/// announced again, and the client must end up pointing at it.
fn churn(lab: &mut Lab, row: &mut Row, how: Churn) {
    let m = prepare(lab);
    // The churn takes a few hundred ms, and peers must re-learn a new MAC:
    // with down-after at 1 s Sentinel might fail over, which is not what
    // this case is about. Restored below, or by recover() on failure.
    set_down_after(lab, 5000);
    let ns = lab.ns(m);
    let cap = Capture::start(lab);
    let mon = Monitor::start(lab);
    let gap = Duration::from_millis(300);
    // "After the churn" starts just before the step that makes the
    // interface usable again: the watcher may react before `ip` returns.
    let (done, done_at) = match how {
        Churn::LinkFlap => {
            ip_must(lab, &ns, &["link", "set", "eth0", "down"]);
            std::thread::sleep(gap);
            let mark = (now_epoch(), mon.now());
            ip_must(lab, &ns, &["link", "set", "eth0", "up"]);
            // IPv6 addresses go with the link (IPv4 ones stay).
            readd_node_addrs(lab, m);
            mark
        }
        Churn::Flush => {
            ip_must(lab, &ns, &["addr", "flush", "dev", "eth0"]);
            std::thread::sleep(gap);
            let mark = (now_epoch(), mon.now());
            readd_node_addrs(lab, m);
            mark
        }
        Churn::Recreate => {
            let done = recreate_eth0(lab, m, gap);
            (done, mon.now() - (now_epoch() - done))
        }
    };
    let back = wait_until(Duration::from_secs(5), Duration::from_millis(10), || {
        lab.holders() == vec![m]
    });
    let mac = lab.mac(m);
    let garp_after = |f: &lab::Frame| f.ts > done && f.src_mac == mac && f.is_garp_for(VIP4);
    let frames = stop_capture_when(cap, Duration::from_secs(5), |fs| fs.iter().any(garp_after));
    let garp = frames.iter().find(|f| garp_after(f)).map(|f| f.ts - done);
    let _ = wait_until(Duration::from_secs(3), POLL, || client_vip_mac(lab) == mac);
    std::thread::sleep(Duration::from_secs(1));
    let trace = mon.stop();
    set_down_after(lab, DOWN_AFTER_MS);
    let w = record(row, &trace, m);
    let held = trace
        .first_where(done_at, |s| s.holders == [m])
        .map_or(f64::NAN, |t| t - done_at);
    row.note = format!(
        "held again {held:.2} s after the churn, GARP {} s after",
        garp.map_or("never".into(), |g| format!("{g:.2}"))
    );
    assert!(
        back,
        "the VIP did not come back on n{m} alone within 5 s: holders {:?}",
        trace.history()
    );
    assert!(
        garp.is_some(),
        "no gratuitous ARP for {VIP4} from n{m} ({mac}) after the churn; ARP seen: {:?}",
        arp_lines(&frames)
    );
    assert_eq!(lab.sentinels_agree(), Some(m), "Sentinel failed over");
    assert_settled(&trace, &w, m);
    expect_client_mac(lab, VIP4, m);
    lab.client_write_lands_on(m, "chaos-9", "9")
        .unwrap_or_else(|e| panic!("write through the VIP: {e}"));
}

/// (10) Watchers SIGKILLed at random moments around failovers (20
/// kill/restart cycles over 5 failovers) and restarted after a random
/// pause: after each failover, exactly the new master holds the VIP.
fn killed_watchers(lab: &mut Lab, w: &mut World, row: &mut Row) {
    const FAILOVERS: usize = 5;
    const KILLS: usize = 4;
    prepare(lab);
    let mon = Monitor::start(lab);
    let mut cycles = 0;
    let mut starts = Vec::new();
    let mut olds = Vec::new();
    for f in 1..=FAILOVERS {
        let old = start_failover(lab, 1 + w.rng.below(3), Duration::from_secs(60));
        olds.push(old);
        let t0 = Instant::now();
        let from = mon.now();
        let mut at: Vec<u64> = (0..KILLS).map(|_| w.rng.below(3000) as u64).collect();
        at.sort_unstable();
        let mut killed = Vec::new();
        for ms in at {
            if let Some(wait) = Duration::from_millis(ms).checked_sub(t0.elapsed()) {
                std::thread::sleep(wait);
            }
            let n = 1 + w.rng.below(3);
            w.kill_watcher(lab, n);
            let down = w.rng.below(300) as u64;
            std::thread::sleep(Duration::from_millis(down));
            w.start_watcher(lab, n);
            killed.push(format!("n{n}@{ms}ms+{down}ms"));
            cycles += 1;
        }
        let new = wait_new_master(lab, old, Duration::from_secs(30));
        // Exactly one holder, Sentinel's master (it may have moved on).
        let holder = wait_one_holder(lab, Duration::from_secs(15));
        eprintln!(
            "  failover {f}: n{old} -> n{new}, one holder (n{holder}) after {:.2} s; killed {}",
            t0.elapsed().as_secs_f64(),
            killed.join(" ")
        );
        starts.push(from);
    }
    let fin = rejoin_all(lab);
    let trace = mon.stop();
    // Each failover judged on its own stretch of the trace, against the
    // master Sentinel had settled on when the next one began.
    let per: Vec<Windows> = starts
        .iter()
        .enumerate()
        .map(|(i, &from)| {
            let (to, rightful) = starts
                .get(i + 1)
                .map_or((trace.end, fin), |&t| (t, olds[i + 1]));
            trace.slice(from, to).windows(rightful)
        })
        .collect();
    row.windows = Some(Windows::worst(&per));
    row.note =
        format!("{cycles} kill/restart cycles, {FAILOVERS} failovers (worst failover shown)");
    for (i, w) in per.iter().enumerate() {
        assert!(
            w.converge.is_some(),
            "failover {}: the VIP did not settle on its master",
            i + 1
        );
    }
}

/// (11) Bad input everywhere: malformed hook arguments and configs exit as
/// documented and touch nothing; the watchers shrug off a malformed config
/// on SIGHUP and a "Sentinel" that speaks garbage or forges events.
fn bad_input(lab: &mut Lab, w: &mut World, row: &mut Row) {
    let m = prepare(lab);
    let before = lab.all_addrs();
    let mon = Monitor::start(lab);
    let mut problems = Vec::new();
    problems.extend(bad_hook_calls(lab, m));
    bad_configs(lab, m, &before, &mut problems);
    junk_reload(lab, w, &mut problems);
    junk_sentinel(lab, w, m, &mut problems);
    let trace = mon.stop();
    record(row, &trace, m);
    row.note = "hook args, configs, SIGHUP, junk and forged Sentinel".into();
    if lab.all_addrs() != before {
        problems.push(format!(
            "addresses changed: before {before:?}, after {:?}",
            lab.all_addrs()
        ));
    }
    for n in NODES {
        if !w.watcher_running(lab, n) {
            problems.push(format!("the watcher on n{n} died"));
        }
    }
    if trace.holder_changes() != 0 {
        problems.push(format!("the VIP moved: {:?}", trace.history()));
    }
    assert!(
        problems.is_empty(),
        "{} problem(s): {}",
        problems.len(),
        problems.join("; ")
    );
}

/// (12) With only CAP_NET_ADMIN and CAP_NET_RAW, as nobody, `check`, the
/// hook and `vip add`/`vip del` work; with no capability they refuse
/// (exit 2; `check` non-zero), naming what is missing, and touch nothing.
fn privileges(lab: &mut Lab, _: &mut World, row: &mut Row) {
    let m = prepare(lab);
    let other = NODES.into_iter().find(|&n| n != m).expect("a replica");
    open_for_nobody(lab);
    let mut problems = Vec::new();
    // A hook call that asks for what Sentinel says: the VIP on `m`.
    let hook = |n: usize| hook_cmd("observer", if n == m { other } else { n }, m);
    let add = ["vip", "add", SCRATCH_CIDR, "--dev", "eth0"];
    let del = ["vip", "del", SCRATCH_CIDR, "--dev", "eth0"];

    // With the two capabilities.
    for n in NODES {
        let o = sv_as(lab, n, Priv::TwoCaps, &["check"]);
        want_exit(
            &mut problems,
            &o,
            0,
            &format!("check on n{n} with two caps"),
        );
    }
    del_vip_by_hand(lab, m);
    for n in NODES {
        let o = sv_as(lab, n, Priv::TwoCaps, &hook(n));
        want_exit(&mut problems, &o, 0, &format!("hook on n{n} with two caps"));
    }
    let restored = lab.holders() == vec![m];
    let cap = Capture::start(lab);
    let o = sv_as(lab, other, Priv::TwoCaps, &add);
    want_exit(&mut problems, &o, 0, "vip add with two caps");
    let added = lab.holds(other, SCRATCH_IP);
    let mac = lab.mac(other);
    let garp = |f: &lab::Frame| f.src_mac == mac && f.is_garp_for(SCRATCH_IP);
    let frames = stop_capture_when(cap, Duration::from_secs(3), |f| f.iter().any(garp));
    let announced = frames.iter().any(garp);
    let o = sv_as(lab, other, Priv::TwoCaps, &del);
    want_exit(&mut problems, &o, 0, "vip del with two caps");
    let deleted = !lab.holds(other, SCRATCH_IP);

    // Without any capability; each attempt is judged on its own snapshot.
    let mut changed = Vec::new();
    // `want`: the exit code, or None for any failure.
    let mut attempt = |lab: &Lab, n: usize, args: &[String], what: &str, want: Option<i32>| {
        let before = lab.all_addrs();
        let o = sv_as(lab, n, Priv::NoCaps, args);
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
        eprintln!("  {what} as nobody without caps: {}", show(&o));
        let code_ok = match (o.status.code(), want) {
            (Some(c), None) => c != 0 && c != 124,
            (c, w) => c == w,
        };
        if !code_ok || !text.contains("CAP_NET_") {
            problems.push(format!(
                "{what} without capabilities: want a refusal naming the capability, got {}",
                show(&o)
            ));
        }
        if lab.all_addrs() != before {
            changed.push(what.to_string());
        }
    };
    let strings = |a: &[&str]| a.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    attempt(lab, other, &strings(&add), "vip add", Some(2));
    let mut quiet = strings(&add);
    quiet.push("--no-announce".into());
    attempt(lab, other, &quiet, "vip add --no-announce", Some(2));
    attempt(lab, m, &strings(&["check"]), "check", None);
    // Something to refuse to undo: the scratch address on `other`, the VIP
    // gone from the master.
    ip_must(
        lab,
        &lab.ns(other),
        &["addr", "add", SCRATCH_CIDR, "dev", "eth0"],
    );
    del_vip_by_hand(lab, m);
    attempt(lab, other, &strings(&del), "vip del", Some(2));
    // No watcher runs here: the hook cannot hand its call over, and exits
    // 1 so that Sentinel retries (the watcher may be back by then).
    attempt(lab, m, &hook(m), "hook with the VIP to add", Some(1));
    // Back to normal, as root.
    ip_must(
        lab,
        &lab.ns(other),
        &["addr", "del", SCRATCH_CIDR, "dev", "eth0"],
    );
    expect_exit(&lab.sv(m, &["reconcile"]), 0, "reconcile as root");

    row.note = "check, hook, vip add/del as nobody, with and without caps".into();
    assert!(
        restored,
        "the hook with two caps did not put the VIP back on n{m}"
    );
    assert!(added, "vip add with two caps did not add {SCRATCH_CIDR}");
    assert!(
        announced,
        "vip add with two caps sent no gratuitous ARP for {SCRATCH_IP}; ARP seen: {:?}",
        arp_lines(&frames)
    );
    assert!(
        deleted,
        "vip del with two caps did not delete {SCRATCH_CIDR}"
    );
    assert!(
        changed.is_empty(),
        "addresses changed without capabilities, by {changed:?}"
    );
    assert!(
        problems.is_empty(),
        "{} problem(s): {}",
        problems.len(),
        problems.join("; ")
    );
    assert_eq!(lab.holders(), vec![m]);
}

fn want_exit(problems: &mut Vec<String>, o: &Output, code: i32, what: &str) {
    if o.status.code() != Some(code) {
        problems.push(format!("{what}: want exit {code}, got {}", show(o)));
    }
}

/// (8) 16 hook runs per host (48 at once) with conflicting arguments,
/// launched as Sentinel starts a failover: every run exits 0 and the VIP
/// ends on Sentinel's master, alone.
fn hook_storm(lab: &mut Lab, w: &mut World, row: &mut Row) {
    const PER_HOST: usize = 16;
    let old = prepare(lab);
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
    start_failover(lab, 1 + w.rng.below(3), Duration::from_secs(30));
    let outs = run_concurrently(lab, &runs);
    let new = wait_new_master(lab, old, Duration::from_secs(30));
    wait_one_holder(lab, Duration::from_secs(20));
    std::thread::sleep(Duration::from_secs(2));
    let fin = rejoin_all(lab);
    let trace = mon.stop();
    let win = record(row, &trace, fin);
    let bad: Vec<String> = runs
        .iter()
        .zip(&outs)
        .filter(|(_, o)| o.status.code() != Some(0))
        .map(|((n, a), o)| format!("n{n} {:?}: {}", &a[2..], show(o)))
        .collect();
    row.note = format!(
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
    assert_settled(&trace, &win, fin);
}

/// (7, watch mode) 20 failovers in a row, each waited for, with the
/// watchers' timer pass slowed to once a minute: moves must come from
/// Sentinel's events, as README describes (the timer is the fallback).
/// With 3 nodes the master keeps returning to nodes it left seconds
/// before: events that look alike, yet are new. The VIP must follow every
/// failover within 10 s. On the way: a SIGHUP reload must apply the new
/// interval.
fn failover_series_watch(lab: &mut Lab, w: &mut World, row: &mut Row) {
    const FAILOVERS: usize = 20;
    const SLOW: &str = "reconcile_interval_ms = 60000";
    let default = w.default_top.clone();
    let slow = format!("{default}\n{SLOW}\n");
    prepare(lab);
    let mut problems = Vec::new();
    set_config(lab, w, &slow);
    let idle = quiet_query_idle(lab);
    if idle < 3 {
        problems.push(format!(
            "after a SIGHUP reload with `{SLOW}` the watchers still ask Sentinel every second (a query connection idle only {idle} s after 5 s without events)"
        ));
    }
    // Restarted, they certainly run with the slow timer.
    restart_watchers(lab, w);
    let idle = quiet_query_idle(lab);
    assert!(
        idle >= 3,
        "watchers restarted with `{SLOW}` still ask every second (idle {idle} s): the case cannot judge events"
    );
    let t = Instant::now();
    let mon = Monitor::start(lab);
    let mut starts = Vec::new();
    let mut olds = Vec::new();
    let mut late = Vec::new();
    for i in 0..FAILOVERS {
        let old = start_failover(lab, 1 + i % 3, Duration::from_secs(60));
        olds.push(old);
        starts.push(mon.now());
        let new = wait_new_master(lab, old, Duration::from_secs(30));
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
                signal(w.watcher_pid(lab, n), "HUP");
            }
            let _ = wait_until(Duration::from_secs(10), POLL, || lab.holders() == vec![new]);
        }
    }
    let fin = rejoin_all(lab);
    let trace = mon.stop();
    set_config_restart(lab, w, &default);
    let per: Vec<Windows> = starts
        .iter()
        .enumerate()
        .map(|(i, &from)| {
            let (to, rightful) = starts
                .get(i + 1)
                .map_or((trace.end, fin), |&t| (t, olds[i + 1]));
            trace.slice(from, to).windows(rightful)
        })
        .collect();
    row.windows = Some(Windows::worst(&per));
    row.note = format!(
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

/// Stops every watcher with SIGTERM (on_exit = keep: the VIP stays) and
/// starts it again, so that the config on disk applies in full.
fn restart_watchers(lab: &mut Lab, w: &mut World) {
    for n in NODES {
        if let Some(id) = w.watchers[n - 1].take() {
            lab.stop_spawned(id, "TERM", Duration::from_secs(5));
        }
        w.start_watcher(lab, n);
    }
    wait_one_holder(lab, Duration::from_secs(10));
}

/// Like [`set_config`], but restarting the watchers instead of reloading:
/// a reload leaves `reconcile_interval_ms` as it was (see case 7w).
fn set_config_restart(lab: &mut Lab, w: &mut World, top: &str) {
    if w.toml_top == top {
        return;
    }
    for n in NODES {
        lab.rewrite_config(n, top);
    }
    restart_watchers(lab, w);
    w.toml_top = top.to_string();
}

/// (7) 20 failovers in a row (each waited for), with the hook as
/// Sentinel's script: the VIP ends on the final master. Then every hook
/// call of the series is replayed on every node: all exit 0 and nothing
/// changes.
fn failover_series(lab: &mut Lab, _: &mut World, row: &mut Row) {
    const FAILOVERS: usize = 20;
    prepare(lab);
    let t = Instant::now();
    let mon = Monitor::start(lab);
    let mut history = Vec::new();
    let mut last_start = 0.0;
    for i in 0..FAILOVERS {
        let old = start_failover(lab, 1 + i % 3, Duration::from_secs(60));
        last_start = mon.now();
        let new = wait_new_master(lab, old, Duration::from_secs(30));
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
    let last = wait_one_holder(lab, Duration::from_secs(30));
    let _ = wait_until(Duration::from_secs(5), POLL, || {
        client_vip_mac(lab) == lab.mac(last)
    });
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
    let outs = run_concurrently(lab, &runs);
    std::thread::sleep(Duration::from_secs(1));
    let trace = mon.stop();
    let mut win = trace.windows(last);
    // Convergence is judged from the last failover: the ones before it
    // were not waited for by the VIP.
    let tail = trace.slice(last_start, trace.end).windows(last);
    win.converge = tail.converge;
    win.client = tail.client;
    row.windows = Some(win.clone());
    let bad: Vec<String> = runs
        .iter()
        .zip(&outs)
        .filter(|(_, o)| o.status.code() != Some(0))
        .map(|((n, a), o)| format!("n{n} {:?}: {}", &a[4..7], show(o)))
        .collect();
    row.note = format!(
        "{FAILOVERS} failovers in {series:.0} s, final n{last} (converge: from the last); {} replays{}",
        runs.len(),
        again(newest, last)
    );
    assert_settled(&trace, &win, last);
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

fn cut_off_release(lab: &mut Lab, w: &mut World, row: &mut Row) {
    cut_off(lab, w, row, true);
}

fn cut_off_keep(lab: &mut Lab, w: &mut World, row: &mut Row) {
    cut_off(lab, w, row, false);
}

/// Hook mode has no release on Sentinel loss: nothing runs on the cut-off
/// host, so it holds the VIP, unheard, like `keep`. At the heal its own
/// Sentinel learns the new config from a hello and runs the hook as
/// observer, which asks the Sentinels and releases.
fn cut_off_hook(lab: &mut Lab, w: &mut World, row: &mut Row) {
    cut_off(lab, w, row, false);
}

/// (4) The master's host cut off (its veth down in the bridge namespace):
/// the majority fails over and the new master takes the VIP. With
/// `release`, the cut-off host drops it in time; with `keep` it may hold it
/// until the heal. After the heal, one holder within seconds, the client
/// on it, and the old holder never wins it back.
fn cut_off(lab: &mut Lab, w: &mut World, row: &mut Row, release: bool) {
    let top = if release {
        format!("on_sentinel_loss = \"release\"\nsentinel_loss_after_ms = {LOSS_AFTER_MS}\n")
    } else {
        String::new()
    };
    set_config(lab, w, &top);
    let old = prepare(lab);
    let br = lab.ns_bridge();
    let port = format!("vn{old}");
    let mon = Monitor::start(lab);
    ip_must(lab, &br, &["link", "set", &port, "down"]);
    let mut new = None;
    let took_over = wait_until(Duration::from_secs(30), POLL, || {
        new = majority_master(lab, old);
        new.is_some_and(|n| lab.holds_vip(n, VIP4))
    });
    let deadline = LOSS_AFTER_MS + RECONCILE_MS + SLACK_MS;
    if release {
        // Poll past the deadline, to report how late a late release is.
        let _ = wait_until(
            Duration::from_millis(deadline + 5000),
            Duration::from_millis(20),
            || !lab.holds_vip(old, VIP4),
        );
    }
    std::thread::sleep(Duration::from_secs(2));
    let during = lab.holders();
    ip_must(lab, &br, &["link", "set", &port, "up"]);
    let healed = mon.now();
    // What clients see; the cut-off Sentinel catches up on its own
    // schedule (hello messages every 2 s), rejoin_all() waits for it.
    let settled = new.is_some_and(|new| {
        wait_until(Duration::from_secs(10), Duration::from_millis(20), || {
            lab.holders() == vec![new] && client_vip_mac(lab) == lab.mac(new)
        })
    });
    let settled_at = mon.now();
    // Long enough for several refreshes by the true holder.
    std::thread::sleep(Duration::from_secs(4));
    let observed = mon.now();
    let fin = settled.then(|| rejoin_all(lab));
    let trace = mon.stop();
    let new = new.unwrap_or_else(|| {
        panic!(
            "the majority's new master did not take the VIP within 30 s: holders {:?}",
            trace.history()
        )
    });
    let fin = fin.unwrap_or(new);
    let win = record(row, &trace, fin);
    let released = trace.first_where(0.0, |s| !s.holders.contains(&old));
    row.note = format!(
        "n{old} -> n{new}; n{old} released at {}; holders {during:?} at the heal; settled {:.2} s after it{}",
        released.map_or("never".into(), |t| format!("{t:.2} s")),
        settled_at - healed,
        again(new, fin)
    );
    assert!(took_over, "n{new} did not take the VIP during the cut");
    if release {
        let r = released.unwrap_or(f64::INFINITY);
        assert!(
            r <= deadline as f64 / 1e3,
            "n{old} dropped the VIP {r:.2} s after the cut; allowed: sentinel_loss_after_ms {LOSS_AFTER_MS} + reconcile_interval_ms {RECONCILE_MS} + {SLACK_MS} ms slack"
        );
        assert_eq!(during, vec![new], "holders during the cut");
    }
    assert!(
        settled && settled_at - healed <= 5.0,
        "not settled within 5 s of the heal (after {:.2} s): holders {:?}, client entry {:?} (n{new} is {})",
        settled_at - healed,
        lab.holders(),
        lab.client_neigh(VIP4),
        lab.mac(new)
    );
    // The old holder must not win the VIP or the client back.
    // The slice opens with the last sample taken before settling (t = 0),
    // which may predate what the lab saw settle: judge only what follows.
    let after_heal = trace.slice(settled_at, observed);
    let lost = after_heal.violations(f64::MIN_POSITIVE, |s| {
        s.holders == [new] && s.neigh_node() == Some(new)
    });
    assert!(
        lost.is_empty(),
        "after settling at {settled_at:.2} s, the VIP or the client's entry left n{new}: {:?}",
        lost.first()
    );
    assert_settled(&trace, &win, fin);
    lab.client_write_lands_on(fin, "chaos-4", "4")
        .unwrap_or_else(|e| panic!("write through the VIP: {e}"));
}

// ----- bad input (11) ------------------------------------------------------------

/// Malformed configs: every command that needs one exits 2 (`check`:
/// non-zero); with no Sentinels configured, an unresolvable TO_IP is
/// permanent (exit 2).
fn bad_configs(lab: &Lab, m: usize, before: &[Vec<(String, u8)>], problems: &mut Vec<String>) {
    let good = fs::read_to_string(lab.config_path(m)).expect("node config");
    let vip_line = format!("address = \"{}\"", lab::VIP4_CIDR);
    assert!(good.contains(&vip_line), "unexpected lab config: {good}");
    let bad = [
        ("unknown key", format!("bogus_key = 1\n{good}")),
        (
            "address without prefix",
            good.replace(&vip_line, &format!("address = \"{VIP4}\"")),
        ),
        (
            "broadcast address",
            good.replace(&vip_line, "address = \"192.0.2.255/24\""),
        ),
        (
            "loopback address",
            good.replace(&vip_line, "address = \"127.0.0.9/8\""),
        ),
        ("not TOML", format!("{good}\n[[vip]\n")),
    ];
    let hook = hook_cmd("leader", 1, 2);
    let hook: Vec<&str> = hook.iter().map(String::as_str).collect();
    for (i, (what, text)) in bad.iter().enumerate() {
        let path = lab.node_dir(m).join(format!("bad-{i}.toml"));
        fs::write(&path, text).expect("write scratch config");
        let p = path.display().to_string();
        let cmds: [&[&str]; 5] = [&hook, &["reconcile"], &["watch"], &["status"], &["check"]];
        for cmd in cmds {
            let mut a = vec!["--config", p.as_str()];
            a.extend_from_slice(cmd);
            let o = lab.sv(m, &a);
            let ok = if cmd[0] == "check" || cmd[0] == "status" {
                o.status.code().is_some_and(|c| c != 0 && c != 124)
            } else {
                o.status.code() == Some(2)
            };
            if !ok {
                problems.push(format!("config with {what}, `{}`: {}", cmd[0], show(&o)));
            }
        }
    }
    // Only the arguments can decide, and they name no usable host.
    let none = good
        .lines()
        .map(|l| {
            if l.starts_with("sentinels") {
                "sentinels = []".to_string()
            } else if l.starts_with("control_socket =") {
                // No watcher there: the hook must act on its own config.
                let sock = lab.node_dir(m).join("no-watcher.sock");
                format!("control_socket = \"{}\"", sock.display())
            } else {
                l.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\n");
    let path = lab.node_dir(m).join("no-sentinels.toml");
    fs::write(&path, none).expect("write scratch config");
    let p = path.display().to_string();
    let o = lab.sv(
        m,
        &[
            "--config",
            &p,
            "hook",
            MASTER_NAME,
            "leader",
            "start",
            &node_ip(1),
            "6379",
            "no-such-host.invalid",
            "6379",
        ],
    );
    if o.status.code() != Some(2) {
        problems.push(format!(
            "unresolvable TO_IP without Sentinels: want exit 2, got {}",
            show(&o)
        ));
    }
    if lab.all_addrs() != before {
        problems.push("bad configs changed addresses".into());
    }
}

/// A malformed config on SIGHUP is logged and ignored; the watcher keeps
/// running on the old one.
fn junk_reload(lab: &mut Lab, w: &World, problems: &mut Vec<String>) {
    for n in NODES {
        let _restore = Restore::file(&lab.config_path(n));
        let good = fs::read_to_string(lab.config_path(n)).expect("node config");
        fs::write(lab.config_path(n), format!("{good}\nnot = toml = [\n")).expect("write");
        let before = log_count(lab, n, &["not reloaded"]);
        signal(w.watcher_pid(lab, n), "HUP");
        let logged = wait_until(Duration::from_secs(5), POLL, || {
            log_count(lab, n, &["not reloaded"]) > before
        });
        if !logged {
            problems.push(format!(
                "n{n}: no `config not reloaded` logged after SIGHUP with a malformed config"
            ));
        }
    }
    std::thread::sleep(Duration::from_millis(500));
    for n in NODES {
        if !w.watcher_running(lab, n) {
            problems.push(format!(
                "n{n}: the watcher died on SIGHUP with a bad config"
            ));
        }
    }
}

/// One Sentinel (not the master's node) replaced, first by a TCP server
/// answering garbage, then by a plain redis-server on which malformed and
/// forged events are published on the channels the watchers subscribe to.
/// Two real Sentinels still make a majority: nothing may move or crash.
fn junk_sentinel(lab: &mut Lab, w: &World, m: usize, problems: &mut Vec<String>) {
    let k = NODES.into_iter().find(|&n| n != m).expect("another node");
    let o = NODES
        .into_iter()
        .find(|&n| n != m && n != k)
        .expect("third");
    let ep = format!("sentinel={}:{SENTINEL_PORT}", node_ip(k));
    let addr = format!("{}:{SENTINEL_PORT}", node_ip(k));
    lab.kill_sentinel(k);

    let exe = std::env::current_exe().expect("own path");
    {
        let mut junk = Background::start(
            lab,
            k,
            &[exe.display().to_string()],
            &[(JUNK_ENV, addr.as_str())],
            "junk-server.out",
        );
        // Several reconnects and timer passes of every watcher.
        std::thread::sleep(Duration::from_secs(5));
        let out = fs::read_to_string(lab.node_dir(k).join("junk-server.out")).unwrap_or_default();
        if !junk.running() {
            problems.push(format!("the junk server died: {out}"));
        }
        let served = out.lines().filter(|l| l.starts_with("junk ")).count();
        eprintln!("  junk server: {served} connections served garbage");
        if served < 6 {
            problems.push(format!(
                "the junk server served only {served} connections: the watchers hardly tried it"
            ));
        }
    }

    let subs: Vec<usize> = NODES
        .iter()
        .map(|&n| log_count(lab, n, &["subscribed", &ep]))
        .collect();
    let ignored: Vec<usize> = NODES
        .iter()
        .map(|&n| log_count(lab, n, &["malformed event ignored", &ep]))
        .collect();
    let redis_dir = lab.node_dir(k).join("fake-sentinel");
    fs::create_dir_all(&redis_dir).expect("fake sentinel dir");
    let args: Vec<String> = [
        "redis-server",
        "--port",
        &SENTINEL_PORT.to_string(),
        "--bind",
        &node_ip(k),
        "--protected-mode",
        "no",
        "--save",
        "",
        "--appendonly",
        "no",
        "--dir",
        &redis_dir.display().to_string(),
    ]
    .map(str::to_string)
    .to_vec();
    let fake_started = Instant::now();
    let mut fake = Background::start(lab, k, &args, &[], "fake-sentinel.out");
    let (host, port) = (node_ip(k), SENTINEL_PORT.to_string());
    let cli = |args: &[&str]| {
        let mut full = vec!["timeout", "10", "redis-cli", "-h", &host, "-p", &port];
        full.extend_from_slice(args);
        lab.run_node(k, &full)
    };
    let up = wait_until(Duration::from_secs(5), POLL, || {
        String::from_utf8_lossy(&cli(&["PING"]).stdout).trim() == "PONG"
    });
    let subscribed = up
        && wait_until(Duration::from_secs(15), POLL, || {
            NODES
                .iter()
                .all(|&n| log_count(lab, n, &["subscribed", &ep]) > subs[n - 1])
        });
    if !subscribed {
        problems.push("the watchers never subscribed to the fake Sentinel".into());
    }
    let (mi, oi) = (node_ip(m), node_ip(o));
    let events: Vec<(&str, String)> = vec![
        ("+switch-master", "garbage".into()),
        ("+switch-master", String::new()),
        // Forged: a move to another node, and to the VIP itself.
        (
            "+switch-master",
            format!("{MASTER_NAME} {mi} 6379 {oi} 6379"),
        ),
        (
            "+switch-master",
            format!("{MASTER_NAME} {mi} 6379 {VIP4} 6379"),
        ),
        (
            "+switch-master",
            format!("{MASTER_NAME} 1.2.3.4 6379 999.0.0.1 6379"),
        ),
        (
            "+switch-master",
            format!("{MASTER_NAME} {mi} 6379\n{oi} 6379"),
        ),
        ("+switch-master", "x".repeat(64 * 1024)),
        ("+switch-master", format!("othermaster {mi} 6379 {oi} 6379")),
        (
            "+promoted-slave",
            format!("slave {oi}:6379 {oi} 6379 @ {MASTER_NAME} {mi} 6379"),
        ),
        ("+promoted-slave", "slave".into()),
        ("+promoted-slave", "\u{1}\u{7f}\u{ff}\u{feff}".into()),
    ];
    // Every event is published every 10 ms for 3 s, all at once, so that a
    // watcher that reconnects on the way still receives each of them.
    let received: u64 = std::thread::scope(|s| {
        let handles: Vec<_> = events
            .iter()
            .map(|(ch, payload)| {
                s.spawn(|| {
                    let out = cli(&["-r", "300", "-i", "0.01", "PUBLISH", ch, payload]);
                    String::from_utf8_lossy(&out.stdout)
                        .lines()
                        .filter_map(|l| l.trim().parse::<u64>().ok())
                        .sum::<u64>()
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("publisher"))
            .sum()
    });
    std::thread::sleep(Duration::from_secs(1));
    for n in NODES {
        if log_count(lab, n, &["malformed event ignored", &ep]) <= ignored[n - 1] {
            problems.push(format!(
                "n{n}: the watcher logged no malformed event from the fake Sentinel"
            ));
        }
    }
    if received == 0 {
        problems.push("no junk event reached any watcher".into());
    }
    if !fake.running() {
        problems.push("the fake Sentinel died".into());
    }
    drop(fake);
    // It answers SUBSCRIBE but not SENTINEL questions, as a data Redis
    // listed by mistake would, for good: README promises reconnects "with
    // backoff (100 ms doubling to 5 s)", so a handful in these seconds.
    let secs = fake_started.elapsed().as_secs_f64();
    let allowed = (1.5 * secs) as usize + 5;
    for n in NODES {
        let times = log_count(lab, n, &["subscribed", &ep]) - subs[n - 1];
        eprintln!("  n{n} subscribed to the fake Sentinel {times} times in {secs:.1} s");
        if times > allowed {
            problems.push(format!(
                "n{n}: the watcher subscribed to the non-Sentinel endpoint {times} times in {secs:.1} s (allowed {allowed}): no reconnect backoff"
            ));
        }
    }
    for n in NODES {
        if !w.watcher_running(lab, n) {
            problems.push(format!("n{n}: the watcher died on junk from a Sentinel"));
        }
    }
    lab.restart_sentinel(k);
    lab.wait_ready();
}

/// This binary re-run in a node's namespace, in place of a Sentinel: every
/// connection gets a different kind of garbage. The real Sentinels connect
/// here too, taking it for their peer; they name their links
/// `sentinel-<id>-cmd` first thing and are only disconnected: junk for
/// them would test Redis, not sentinel-vip.
fn junk_server(addr: &str) -> ! {
    let l = TcpListener::bind(addr).unwrap_or_else(|e| {
        eprintln!("junk server: cannot listen on {addr}: {e}");
        std::process::exit(1)
    });
    let mut rng = Rng::new(now_epoch().to_bits());
    for (i, conn) in l.incoming().enumerate() {
        let Ok(mut c) = conn else { continue };
        let junk: Vec<u8> = match i % 7 {
            0 => (0..4096).map(|_| rng.below(256) as u8).collect(),
            // A reply far larger than anything asked for, never sent.
            1 => b"$2147483647\r\nabc".to_vec(),
            2 => b"*-7\r\n:notanumber\r\n%3\r\n*99999999999\r\n".to_vec(),
            3 => b"+OK\r\n".repeat(1000),
            // A megabyte without a line end.
            4 => vec![b'A'; 1 << 20],
            // Silence: accept and never answer.
            5 => Vec::new(),
            _ => {
                drop(c);
                continue;
            }
        };
        std::thread::spawn(move || {
            let _ = c.set_read_timeout(Some(Duration::from_millis(200)));
            let mut first = [0u8; 512];
            let n = std::io::Read::read(&mut c, &mut first).unwrap_or(0);
            if String::from_utf8_lossy(&first[..n]).contains("sentinel-") {
                return;
            }
            // Read by the case: proof that clients other than Sentinels
            // were served (one line, one write: no interleaving).
            let _ = std::io::stdout().write_all(format!("junk {}\n", i % 7).as_bytes());
            let _ = c.write_all(&junk);
            std::thread::sleep(Duration::from_secs(3));
        });
    }
    std::process::exit(0)
}

// ----- helpers: waiting and judging ------------------------------------------------

/// Every case starts from a quiet lab: one holder, the master, and a
/// client whose neighbour entry points at it (gratuitous ARP only updates
/// an entry the client already has).
fn prepare(lab: &Lab) -> usize {
    let m = wait_one_holder(lab, Duration::from_secs(15));
    lab.client_ping()
        .unwrap_or_else(|e| panic!("before the fault: {e}"));
    expect_client_mac(lab, VIP4, m);
    m
}

/// Waits until every Sentinel names the same master and exactly that node
/// holds the VIP; returns it.
fn wait_one_holder(lab: &Lab, timeout: Duration) -> usize {
    let mut m = None;
    let ok = wait_until(timeout, POLL, || {
        m = lab.sentinels_agree();
        m.is_some_and(|m| lab.holders() == vec![m])
    });
    assert!(
        ok,
        "no single holder that is Sentinel's master within {timeout:?}: Sentinels say {:?}, holders {:?}",
        lab.sentinels_agree(),
        lab.holders()
    );
    m.expect("set when ok")
}

/// Waits until every Sentinel names a master other than `old`.
fn wait_new_master(lab: &Lab, old: usize, timeout: Duration) -> usize {
    let mut new = None;
    let ok = wait_until(timeout, POLL, || {
        new = lab.sentinels_agree().filter(|&m| m != old);
        new.is_some()
    });
    assert!(
        ok,
        "Sentinels did not agree on a master other than n{old} within {timeout:?}"
    );
    new.expect("set when ok")
}

/// The master the two Sentinels other than `cut`'s agree on, if not `cut`.
fn majority_master(lab: &Lab, cut: usize) -> Option<usize> {
    let v: Vec<usize> = NODES
        .into_iter()
        .filter(|&n| n != cut)
        .map(|n| lab.sentinel_master(n).ok().and_then(|ip| node_of_ip(&ip)))
        .collect::<Option<_>>()?;
    (v[0] == v[1] && v[0] != cut).then_some(v[0])
}

/// A Sentinel's `SENTINEL MASTER` reply as a map (RESP3 map or RESP2 list).
fn master_info(lab: &Lab, n: usize) -> Option<serde_json::Map<String, Value>> {
    match lab
        .sentinel_json(n, &["SENTINEL", "MASTER", MASTER_NAME])
        .ok()?
    {
        Value::Object(m) => Some(m),
        Value::Array(a) => Some(
            a.chunks(2)
                .filter_map(|kv| Some((kv[0].as_str()?.to_string(), kv.get(1)?.clone())))
                .collect(),
        ),
        _ => None,
    }
}

/// The master, if every Sentinel names it and none sees it down or is
/// failing it over.
fn settled_master(lab: &Lab) -> Option<usize> {
    let m = lab.sentinels_agree()?;
    NODES
        .iter()
        .all(|&n| {
            master_info(lab, n)
                .is_some_and(|i| i.get("flags").and_then(Value::as_str) == Some("master"))
        })
        .then_some(m)
}

/// Starts a failover with SENTINEL FAILOVER once Sentinel can take one:
/// settled, and a replica fit to promote (until Sentinel has fresh INFO
/// from one, it answers NOGOODSLAVE). Sentinel `via` is asked first, so
/// that the leader varies. Returns the old master.
fn start_failover(lab: &Lab, via: usize, timeout: Duration) -> usize {
    let deadline = Instant::now() + timeout;
    let mut last = String::new();
    loop {
        match settled_master(lab) {
            Some(m) => {
                for k in (0..3).map(|i| 1 + (via - 1 + i) % 3) {
                    let (out, err) = lab.sentinel_cli(k, &["SENTINEL", "FAILOVER", MASTER_NAME]);
                    if out == "OK" {
                        return m;
                    }
                    last = format!("n{k}: {out} {err}");
                }
            }
            None => last = "Sentinels not settled on one master".into(),
        }
        assert!(
            Instant::now() < deadline,
            "SENTINEL FAILOVER not accepted within {timeout:?}: {last}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Stores the trace's windows in the row and returns them.
fn record(row: &mut Row, trace: &Trace, holder: usize) -> Windows {
    let w = trace.windows(holder);
    row.windows = Some(w.clone());
    w
}

/// The trace ends with exactly `holder` holding the VIP and the client
/// pointing at it.
fn assert_settled(trace: &Trace, w: &Windows, holder: usize) {
    assert!(
        w.converge.is_some(),
        "the VIP did not end on n{holder} alone; holders over time (s): {:?}",
        trace.history()
    );
    assert!(
        w.client.is_some(),
        "the client's entry for the VIP did not end on n{holder}: last sample {:?}",
        trace.samples.last()
    );
}

/// Not a single sample with another holder, nor with the client's entry
/// elsewhere.
fn assert_never_moved(trace: &Trace, m: usize) {
    let off = trace.violations(0.0, |s| s.holders == [m]);
    assert!(
        off.is_empty(),
        "the VIP left n{m} alone in {} sample(s); holders over time (s): {:?}",
        off.len(),
        trace.history()
    );
    let away = trace.violations(0.0, |s| s.neigh_node() == Some(m));
    assert!(
        away.is_empty(),
        "the client's entry left n{m} in {} sample(s), first {:?}",
        away.len(),
        away.first()
    );
}

/// Lines of node `n`'s sentinel-vip log containing every one of `words`.
fn log_count(lab: &Lab, n: usize, words: &[&str]) -> usize {
    fs::read_to_string(lab.sv_log_path(n))
        .unwrap_or_default()
        .lines()
        .filter(|l| words.iter().all(|w| l.contains(w)))
        .count()
}

// ----- helpers: doing things ---------------------------------------------------

/// Every Redis running and replicating from Sentinel's master, Sentinel
/// ready, and the VIP on that master alone, the client pointed at it;
/// returns the master. Sentinel gets the nodes there by itself too, but
/// only after its 10 s INFO period plus a grace period per stale node;
/// pointing them at the master saves that (~15 s a failover) without
/// changing what the cases judge, which came before. Only once Sentinel has
/// settled, and only nodes that do not replicate the master already:
/// re-pointing a node Sentinel is promoting fights Sentinel (seen: an
/// observer's second failover right after the first, undone by this).
fn rejoin_all(lab: &mut Lab) -> usize {
    for n in NODES {
        if !lab.redis_running(n) {
            lab.restart_redis(n);
        }
    }
    let m = wait_settled(lab, Duration::from_secs(60));
    let master_ip = node_ip(m);
    for n in NODES {
        let (role, _) = lab.redis_cli(n, &["ROLE"]);
        let mut lines = role.lines();
        let (kind, host) = (lines.next().unwrap_or(""), lines.next().unwrap_or(""));
        let target = match (n == m, kind) {
            (true, "master") => continue,
            // Restarted with its original arguments, it may be a replica.
            (true, _) => vec!["REPLICAOF", "NO", "ONE"],
            (false, "slave") if host == master_ip => continue,
            (false, _) => vec!["REPLICAOF", master_ip.as_str(), "6379"],
        };
        let (out, err) = lab.redis_cli(n, &target);
        assert!(out.starts_with("OK"), "n{n} {target:?}: {out} {err}");
    }
    lab.wait_ready();
    let m = wait_one_holder(lab, Duration::from_secs(15));
    let _ = wait_until(Duration::from_secs(5), POLL, || {
        client_vip_mac(lab) == lab.mac(m)
    });
    m
}

/// Waits until Sentinel has settled (see [`settled_master`]).
fn wait_settled(lab: &Lab, timeout: Duration) -> usize {
    let mut m = None;
    let ok = wait_until(timeout, POLL, || {
        m = settled_master(lab);
        m.is_some()
    });
    assert!(ok, "Sentinel did not settle on a master within {timeout:?}");
    m.expect("set when ok")
}

/// Note for a row when Sentinel moved the master again on its own.
fn again(new: usize, fin: usize) -> String {
    if new == fin {
        String::new()
    } else {
        format!("; Sentinel then failed over to n{fin} on its own")
    }
}

/// The highest config-epoch any Sentinel reports.
fn config_epoch(lab: &Lab) -> u64 {
    NODES
        .iter()
        .filter_map(|&n| {
            master_info(lab, n)?
                .get("config-epoch")?
                .as_str()?
                .parse()
                .ok()
        })
        .max()
        .unwrap_or(0)
}

/// After a failed case: undo whatever it may have left behind (a stopped
/// or dead Redis, a link down, a missing eth0, the firewall, a dead
/// Sentinel or watcher, Sentinel's down-after), then wait for a ready lab
/// with the VIP on the master.
fn recover(lab: &mut Lab, w: &mut World) {
    let br = lab.ns_bridge();
    for n in NODES {
        if let Some(pid) = lab.redis_pid(n) {
            let _ = Command::new("kill")
                .args(["-CONT", &pid.to_string()])
                .status();
        }
        if in_path("nft") {
            unblock_watcher(lab, n);
        }
        if !lab
            .run_node(n, &["ip", "link", "show", "eth0"])
            .status
            .success()
        {
            recreate_eth0(lab, n, Duration::ZERO);
        }
        let _ = lab.run(&br, &["ip", "link", "set", &format!("vn{n}"), "up"]);
        let _ = lab.run_node(n, &["ip", "link", "set", "eth0", "up"]);
        readd_node_addrs(lab, n);
        if !lab.sentinel_running(n) {
            lab.restart_sentinel(n);
        }
    }
    let answer = wait_until(Duration::from_secs(20), POLL, || {
        lab.sentinels_agree().is_some()
    });
    assert!(answer, "Sentinels do not agree on a master");
    set_down_after(lab, DOWN_AFTER_MS);
    if w.watch && w.toml_top != w.default_top {
        let top = w.default_top.clone();
        set_config_restart(lab, w, &top);
    }
    for n in NODES {
        if !w.watch {
            // In the hook lab, only a failover would place the VIP otherwise.
            let _ = lab.sv(n, &["reconcile"]);
        } else if !w.watcher_running(lab, n) {
            w.start_watcher(lab, n);
        }
    }
    rejoin_all(lab);
}

fn set_down_after(lab: &Lab, ms: u64) {
    for n in NODES {
        let (out, err) = lab.sentinel_cli(
            n,
            &[
                "SENTINEL",
                "SET",
                MASTER_NAME,
                "down-after-milliseconds",
                &ms.to_string(),
            ],
        );
        assert_eq!(out, "OK", "SENTINEL SET down-after on n{n}: {err}");
    }
}

/// Rewrites every node's config with `top` and reloads the watchers
/// (SIGHUP), waiting until each has logged the reload.
fn set_config(lab: &mut Lab, w: &mut World, top: &str) {
    if w.toml_top == top {
        return;
    }
    for n in NODES {
        lab.rewrite_config(n, top);
        let before = log_count(lab, n, &["config reloaded"]);
        signal(w.watcher_pid(lab, n), "HUP");
        let ok = wait_until(Duration::from_secs(5), POLL, || {
            log_count(lab, n, &["config reloaded"]) > before
        });
        assert!(ok, "the watcher on n{n} logged no reload after SIGHUP");
    }
    w.toml_top = top.to_string();
}

/// Drops the watcher's own traffic to Sentinel in node `n`'s namespace:
/// output from uid nobody to the Sentinel port. Sentinel runs as root, so
/// its traffic still flows.
fn block_watcher(lab: &Lab, n: usize) {
    for cmd in [
        format!("add table inet {NFT_TABLE}"),
        format!("add chain inet {NFT_TABLE} out {{ type filter hook output priority 0 ; }}"),
        format!("add rule inet {NFT_TABLE} out meta skuid {NOBODY} tcp dport {SENTINEL_PORT} drop"),
    ] {
        let o = lab.run_node(n, &["nft", &cmd]);
        assert!(o.status.success(), "nft {cmd} on n{n}: {}", show(&o));
    }
}

fn unblock_watcher(lab: &Lab, n: usize) {
    let _ = lab.run_node(n, &["nft", &format!("delete table inet {NFT_TABLE}")]);
}

/// `ip ARGS` in namespace `ns`, which must succeed.
fn ip_must(lab: &Lab, ns: &str, args: &[&str]) {
    let mut full = vec!["ip"];
    full.extend_from_slice(args);
    let o = lab.run(ns, &full);
    assert!(o.status.success(), "ip {args:?} in {ns}: {}", show(&o));
}

/// The node's own addresses, as the lab configured them (idempotent).
fn readd_node_addrs(lab: &Lab, n: usize) {
    let ns = lab.ns(n);
    let v4 = format!("{}/24", node_ip(n));
    let v6 = format!("{}/64", node_ip6(n));
    ip_must(lab, &ns, &["addr", "replace", &v4, "dev", "eth0"]);
    ip_must(lab, &ns, &["addr", "replace", &v6, "dev", "eth0", "nodad"]);
}

/// Deletes node `n`'s eth0 (its veth peer in the bridge namespace goes
/// with it) and after `gap` builds it again as the lab did: as when a NIC
/// is re-plugged, a new interface with a new MAC, the node's addresses
/// re-added by hand. Returns when (epoch) the last step, link up, began.
fn recreate_eth0(lab: &Lab, n: usize, gap: Duration) -> f64 {
    let (ns, br, port) = (lab.ns(n), lab.ns_bridge(), format!("vn{n}"));
    let _ = lab.run(&ns, &["ip", "link", "del", "eth0"]);
    std::thread::sleep(gap);
    ip_must(
        lab,
        &br,
        &[
            "link", "add", &port, "type", "veth", "peer", "name", "eth0", "netns", &ns,
        ],
    );
    ip_must(lab, &br, &["link", "set", &port, "master", "br0", "up"]);
    readd_node_addrs(lab, n);
    let up = now_epoch();
    ip_must(lab, &ns, &["link", "set", "eth0", "up"]);
    up
}

/// Deletes the VIP from node `n` by hand (no watcher in the hook lab puts
/// it back).
fn del_vip_by_hand(lab: &Lab, n: usize) {
    ip_must(
        lab,
        &lab.ns(n),
        &["addr", "del", lab::VIP4_CIDR, "dev", "eth0"],
    );
}

#[derive(Clone, Copy)]
enum Priv {
    /// As nobody with exactly CAP_NET_ADMIN and CAP_NET_RAW (ambient).
    TwoCaps,
    /// As nobody with no capability at all.
    NoCaps,
}

/// sentinel-vip as nobody through setpriv, in node `n`'s namespace, with
/// the node's config.
fn sv_as<S: AsRef<str>>(lab: &Lab, n: usize, p: Priv, args: &[S]) -> Output {
    let caps: &[&str] = match p {
        Priv::TwoCaps => &[
            "--inh-caps=-all,+net_admin,+net_raw",
            "--ambient-caps=-all,+net_admin,+net_raw",
            "--bounding-set=-all,+net_admin,+net_raw",
        ],
        Priv::NoCaps => &["--inh-caps=-all", "--bounding-set=-all"],
    };
    Command::new("ip")
        .args(["netns", "exec", &lab.ns(n), "timeout", "-k", "2", "30"])
        .args([
            "setpriv",
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
        ])
        .args(caps)
        .arg(lab.bin())
        .args(args.iter().map(AsRef::as_ref))
        .env("SENTINEL_VIP_CONFIG", lab.config_path(n))
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run setpriv on n{n}: {e}"))
}

/// Lets nobody append to each node's log and open its lock, as
/// `Lab::spawn_watcher` does for the watcher.
fn open_for_nobody(lab: &Lab) {
    for n in NODES {
        for f in [
            lab.sv_log_path(n),
            lab.node_dir(n).join("sentinel-vip.lock"),
        ] {
            let _ = fs::OpenOptions::new().create(true).append(true).open(&f);
            fs::set_permissions(&f, fs::Permissions::from_mode(0o666))
                .unwrap_or_else(|e| panic!("chmod {}: {e}", f.display()));
        }
    }
}

/// Runs `sv` for every (node, arguments) at once; outputs in order.
fn run_concurrently(lab: &Lab, runs: &[(usize, Vec<String>)]) -> Vec<Output> {
    std::thread::scope(|s| {
        let handles: Vec<_> = runs
            .iter()
            .map(|(n, args)| s.spawn(move || lab.sv(*n, args)))
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("sv thread"))
            .collect()
    })
}

fn signal(pid: u32, sig: &str) {
    let ok = Command::new("kill")
        .args([format!("-{sig}"), pid.to_string()])
        .status()
        .is_ok_and(|s| s.success());
    assert!(ok, "kill -{sig} {pid} failed");
}

fn in_path(tool: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join(tool).is_file()))
}

fn one_line(p: &(dyn std::any::Any + Send)) -> String {
    panic_message(p).replace('\n', " ")
}

/// Sends SIGCONT when dropped, so that a failing case never leaves Redis
/// stopped.
struct Resume(u32);

impl Drop for Resume {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-CONT", &self.0.to_string()])
            .status();
    }
}

/// Puts a file's content back when dropped.
struct Restore {
    path: PathBuf,
    text: String,
}

impl Restore {
    fn file(path: &Path) -> Restore {
        Restore {
            path: path.to_path_buf(),
            text: fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display())),
        }
    }
}

impl Drop for Restore {
    fn drop(&mut self) {
        let _ = fs::write(&self.path, &self.text);
    }
}

/// A process in a node's namespace for the length of a case step; killed
/// when dropped (and with the lab's namespaces in any case).
struct Background(Child);

impl Background {
    fn start(lab: &Lab, n: usize, args: &[String], env: &[(&str, &str)], out: &str) -> Background {
        let f = fs::File::create(lab.node_dir(n).join(out)).expect("create output file");
        let f2 = f.try_clone().expect("dup output file");
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &lab.ns(n)])
            .args(args)
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(f)
            .stderr(f2);
        Background(
            c.spawn()
                .unwrap_or_else(|e| panic!("cannot start {args:?} on n{n}: {e}")),
        )
    }

    fn running(&mut self) -> bool {
        matches!(self.0.try_wait(), Ok(None))
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// xorshift64*: reproducible random choices from a printed seed.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        Rng(seed | 1)
    }

    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform enough in 0..n.
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

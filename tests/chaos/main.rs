//! Fault injection ("chaos") for sentinel-vip, on real redis-server,
//! redis-sentinel and sentinel-vip in the namespace lab (lab/), and the
//! process-failure, partition and bad-input families again on the other
//! server builds (`other_build_cases`, the same cases on the same kind of
//! lab): the
//! master killed, paused or cut off; Sentinels restarted; watchers blinded
//! during a failover or killed at random; twenty failovers in a row (hook
//! mode, and watch mode driven by events alone); hook storms; interface
//! churn; bad input; missing privileges.
//!
//! Every case asserts behaviour (kernel addresses, the client's neighbour
//! table, captured frames, writes through the VIP). While a fault plays
//! out, a `Monitor` samples the holders and the client's neighbour entry
//! every 20 ms; the table at the end prints the windows it measured.
//! Speed is reported, not asserted (beyond bounds the product documents).
//! This file holds the plan (which lab runs which cases), table.rs the
//! table; each family of faults has its own module.
//!
//! `cargo test --test chaos` runs everything (harness = false: this
//! target has its own `main`); `cargo test --test chaos -- 4a 9` runs only
//! the cases whose name contains "4a" or "9", on every server; the words
//! `redis`, `redis8`, `valkey` and `valkey9` pick servers (`-- valkey`,
//! `-- redis 4a`). Needs
//! root, and `nft` (nftables) for case 6. `CHAOS_SEED=N` repeats the
//! random choices of an earlier run.

mod bad_input;
mod churn;
mod failures;
mod fence;
mod junk;
mod partitions;
mod privileges;
mod promotion;
mod series;
mod table;

use std::path::Path;
use std::time::{Duration, Instant};

use sentinel_vip_lab::suite::{catch, expect_exit, run_steps, Outcome};
use sentinel_vip_lab::trace::{Trace, Windows};
use sentinel_vip_lab::{e2e_enabled, now_epoch, Family, Lab, LabOptions, Privilege, NODES};

/// Sentinel's down-after-milliseconds in every lab: short, so failovers
/// start quickly.
const DOWN_AFTER: Duration = Duration::from_secs(1);
/// The data nodes' `requirepass` in the auth lab.
const DATA_PASSWORD: &str = "chaos-data-pw";
/// The watchers run as the systemd unit runs them.
const WATCHER: Privilege = Privilege::TwoCaps;
/// The cases run on the other server builds as well, by id: on Debian 13's
/// Valkey 8.1 the process failures (failures.rs), the partitions
/// (partitions.rs) and bad input (bad_input.rs, junk.rs), each in the mode
/// its Redis row runs in; on Debian 13's Redis 8.0 and Debian testing's
/// Valkey 9 one case of each of those families and mode. The other families
/// exercise sentinel-vip itself more than the server, and would add
/// minutes to every `make test` for nothing new.
fn other_build_cases(f: Family) -> &'static [&'static str] {
    match f {
        Family::Redis => &[],
        Family::Valkey => &[
            "1a", "1b", "1c", "1d", "2", "2h", "3", "4a", "4b", "4h", "5", "6", "10", "11", "14a",
            "14b", "14c", "14d",
        ],
        Family::Redis8 | Family::Valkey9 => &["1a", "1c", "4a", "4h", "11"],
    }
}

fn bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_sentinel-vip"))
}

// ----- the run -----------------------------------------------------------------

/// A case fills in its row (`World::row`) as it goes, so that a failing
/// case still shows what it measured.
type Case = fn(&mut Lab, &mut World);

/// One line of the table: whose servers ran the case, how it ended, and
/// what it measured.
type Ran = (Family, Outcome, Row);

#[derive(Default)]
struct Row {
    windows: Option<Windows>,
    note: String,
}

/// One lab and the cases run on it, in order (a lab takes seconds to build,
/// and a failover costs a Sentinel refresh cycle to recover from).
#[derive(Clone)]
struct Plan {
    name: &'static str,
    /// Whose servers it runs (`opts.programs` is set from it when the lab
    /// is built, so that a Valkey that cannot be had fails that lab only).
    family: Family,
    opts: LabOptions,
    /// Watchers on every node (else the hook, as Sentinel's script).
    watch: bool,
    cases: Vec<(&'static str, Case)>,
}

/// What the cases of one lab share.
struct World {
    watch: bool,
    rng: Rng,
    /// The top-level TOML the node configs currently carry, and the lab's
    /// own (restored by recover()).
    toml_top: String,
    default_top: String,
    /// The row of the case running now.
    row: Row,
}

impl World {
    /// Rewrites every node's config with `top` and reloads the watchers
    /// (SIGHUP), waiting until each has logged the reload.
    fn set_config(&mut self, lab: &mut Lab, top: &str) {
        if self.toml_top == top {
            return;
        }
        for n in NODES {
            lab.rewrite_config(n, top);
            lab.reload_watcher(n);
        }
        self.toml_top = top.to_string();
    }

    /// Like [`World::set_config`], but restarting the watchers instead of
    /// reloading: a reload leaves `reconcile_interval_ms` as it was (see
    /// case 7w).
    fn set_config_restart(&mut self, lab: &mut Lab, top: &str) {
        if self.toml_top == top {
            return;
        }
        for n in NODES {
            lab.rewrite_config(n, top);
        }
        restart_watchers(lab);
        self.toml_top = top.to_string();
    }

    /// Stores the trace's windows for `holder` in the row and returns them.
    fn record(&mut self, trace: &Trace, holder: usize) -> Windows {
        let w = trace.windows(holder);
        self.row.windows = Some(w.clone());
        w
    }
}

/// Every watcher stopped with SIGTERM and started again, so that the
/// config on disk applies in full; then the VIP back on the master alone.
fn restart_watchers(lab: &mut Lab) {
    lab.restart_watchers(WATCHER);
    lab.wait_one_holder(Duration::from_secs(10));
}

/// The Redis labs, then the same labs on each other server build with
/// its [`other_build_cases`] only (a lab left with none is not built).
fn plans() -> Vec<Plan> {
    let redis = redis_plans();
    let others: Vec<Plan> = Family::ALL
        .into_iter()
        .filter(|&f| f != Family::Redis)
        .flat_map(|family| {
            redis.iter().cloned().map(move |mut p| {
                p.family = family;
                p.cases
                    .retain(|(name, _)| other_build_cases(family).contains(&case_id(name)));
                p
            })
        })
        .filter(|p| !p.cases.is_empty())
        .collect();
    redis.into_iter().chain(others).collect()
}

/// A case's number and letter, the first word of its name ("4a").
fn case_id(name: &str) -> &str {
    name.split_whitespace().next().unwrap_or("")
}

fn redis_plans() -> Vec<Plan> {
    let watch = LabOptions {
        reconfig_script: false,
        down_after: DOWN_AFTER,
        ..LabOptions::default()
    };
    vec![
        Plan {
            name: "watch",
            family: Family::Redis,
            opts: watch.clone(),
            watch: true,
            // Cases that keep the master first: a failover costs a Sentinel
            // refresh, and a broken one should not take them down with it.
            cases: vec![
                (
                    "3  master paused < down-after (watch)",
                    failures::short_pause,
                ),
                (
                    "5  Sentinels restarted 1 by 1, then all",
                    failures::sentinel_restarts,
                ),
                ("9a holder eth0 down/up (watch)", churn::link_flap),
                ("9b holder addr flush, re-added (watch)", churn::addr_flush),
                (
                    "9c holder eth0 deleted, re-created (watch)",
                    churn::link_recreated,
                ),
                ("11 bad input; junk for the watchers", bad_input::bad_input),
                ("1a master SIGKILL (watch)", failures::master_killed),
                (
                    "1b master SHUTDOWN NOSAVE (watch)",
                    failures::master_shut_down,
                ),
                (
                    "2  master paused > down-after (watch)",
                    failures::long_pause,
                ),
                (
                    "6  watchers blind during a failover",
                    partitions::blind_watchers,
                ),
                (
                    "7w 20 failovers, events only (watch)",
                    series::failover_series_watch,
                ),
                (
                    "10 watchers SIGKILLed x20 in failovers",
                    failures::killed_watchers,
                ),
                (
                    "13a master SIGKILL: VIP before +promoted-slave",
                    promotion::before_the_announcement,
                ),
                ("13c forged promotion hints", promotion::forged_hint),
                (
                    "13d promoted replica paused past the deadline",
                    promotion::replica_slow,
                ),
                (
                    "13f master's host lost, its Sentinel silent (watch)",
                    promotion::host_lost,
                ),
                (
                    "13b leader killed after SLAVEOF NO ONE",
                    promotion::leader_killed,
                ),
            ],
        },
        Plan {
            name: "hook",
            family: Family::Redis,
            opts: LabOptions {
                reconfig_script: true,
                down_after: DOWN_AFTER,
                ..LabOptions::default()
            },
            watch: false,
            cases: vec![
                (
                    "12 privileges: 2 caps work, none refused",
                    privileges::privileges,
                ),
                ("8  48 conflicting hooks in a failover", series::hook_storm),
                ("1c master SIGKILL (hook)", failures::master_killed),
                (
                    "1d master SHUTDOWN NOSAVE (hook)",
                    failures::master_shut_down,
                ),
                ("2h master paused > down-after (hook)", failures::long_pause),
                (
                    "7  20 failovers, stale replay (hook)",
                    series::failover_series,
                ),
                ("4h master cut off (hook)", partitions::cut_off_hook),
                (
                    "13h master's host lost, its Sentinel silent (hook)",
                    promotion::host_lost,
                ),
            ],
        },
        Plan {
            name: "partition",
            family: Family::Redis,
            opts: LabOptions {
                // The true holder re-announces every second, so that a
                // healed partition is settled quickly.
                toml_tail: "[announce]\nrefresh_interval_ms = 1000\n".into(),
                ..watch.clone()
            },
            watch: true,
            cases: vec![
                (
                    "4a master cut off, release (watch)",
                    partitions::cut_off_release,
                ),
                ("4b master cut off, keep (watch)", partitions::cut_off_keep),
            ],
        },
        Plan {
            name: "fence",
            family: Family::Redis,
            opts: LabOptions {
                toml_top: "on_sentinel_loss = \"fence\"\n".into(),
                toml_tail: "[announce]\nrefresh_interval_ms = 1000\n".into(),
                ..watch.clone()
            },
            watch: true,
            // The cases that keep the master first.
            cases: vec![
                (
                    "14b Sentinels all killed 30 s, fence (Jepsen)",
                    fence::sentinels_killed,
                ),
                (
                    "14c every replica killed, fence (Jepsen)",
                    fence::replicas_killed,
                ),
                (
                    "14d 100 ms each way between hosts, fence (Jepsen)",
                    fence::slow_network,
                ),
                (
                    "14a master cut off from its peers, fence (Jepsen)",
                    fence::cut_off,
                ),
            ],
        },
        Plan {
            name: "auth",
            family: Family::Redis,
            opts: LabOptions {
                data_password: Some(DATA_PASSWORD.into()),
                toml_top: format!("redis_password = \"{DATA_PASSWORD}\"\n"),
                ..watch
            },
            watch: true,
            cases: vec![
                (
                    "13e data nodes with requirepass, password given",
                    promotion::with_password,
                ),
                (
                    "13e data nodes with requirepass, no password",
                    promotion::without_password,
                ),
            ],
        },
    ]
}

fn main() {
    // Re-run of this binary inside a namespace, as a fake Sentinel (case 11).
    if let Ok(addr) = std::env::var(junk::JUNK_ENV) {
        junk::junk_server(&addr);
    }
    let args: Vec<String> = std::env::args().skip(1).collect();
    // `cargo test -- --list` asks a harness for its tests; there are none
    // to list one by one here.
    if args.iter().any(|a| a == "--list") {
        return;
    }
    if !e2e_enabled() {
        println!("chaos: 0 passed, 0 failed");
        return;
    }
    // Options meant for libtest (`make test` passes --nocapture) are ignored;
    // bare words select the cases whose name contains any of them, and
    // `redis` / `valkey` the servers.
    let words: Vec<&str> = args
        .iter()
        .map(String::as_str)
        .filter(|a| !a.starts_with('-'))
        .collect();
    let (servers, filters): (Vec<&str>, Vec<&str>) = words
        .into_iter()
        .partition(|w| Family::ALL.iter().any(|f| f.name() == *w));
    let seed = std::env::var("CHAOS_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| now_epoch().to_bits());
    eprintln!("chaos: seed {seed} (CHAOS_SEED={seed} repeats the random choices)");
    let started = Instant::now();
    let mut results = Vec::new();
    for plan in plans() {
        if servers.is_empty() || servers.contains(&plan.family.name()) {
            results.extend(run_lab(plan, &filters, seed));
        }
    }
    table::print_table(&mut results, started.elapsed());
    let failed = results.iter().filter(|(_, o, _)| o.error.is_some()).count();
    println!("chaos: {} passed, {failed} failed", results.len() - failed);
    if failed > 0 {
        std::process::exit(1);
    }
}

fn run_lab(plan: Plan, filters: &[&str], seed: u64) -> Vec<Ran> {
    let cases: Vec<(&'static str, Case)> = plan
        .cases
        .into_iter()
        .filter(|(name, _)| filters.is_empty() || filters.iter().any(|f| name.contains(f)))
        .collect();
    if cases.is_empty() {
        return Vec::new();
    }
    let family = plan.family;
    eprintln!(
        "\n===== lab '{}' ({}): {} case(s)",
        plan.name,
        family.name(),
        cases.len()
    );
    // Redis labs keep the random choices of seeds printed before Valkey ran.
    let salt = Family::ALL.iter().position(|&f| f == family).unwrap_or(0) as u64;
    let mut world = World {
        watch: plan.watch,
        rng: Rng::new(seed ^ plan.name.len() as u64 ^ (salt << 32)),
        toml_top: plan.opts.toml_top.clone(),
        default_top: plan.opts.toml_top.clone(),
        row: Row::default(),
    };
    let t = Instant::now();
    let built = catch(|| {
        let programs = family.programs();
        eprintln!("{} {}", family.name(), programs.version());
        let opts = LabOptions {
            programs,
            ..plan.opts.clone()
        };
        let mut lab = Lab::new(bin(), opts);
        lab.wait_ready();
        place_vip(&mut lab, &world);
        lab
    });
    let mut lab = match built {
        Ok(lab) => lab,
        Err(e) => {
            let msg = format!("lab setup failed: {e}");
            eprintln!("{msg}");
            let failed = |name| Outcome {
                name,
                error: Some(msg.clone()),
                took: Duration::ZERO,
            };
            return cases
                .into_iter()
                .map(|(name, _)| (family, failed(name), Row::default()))
                .collect();
        }
    };
    eprintln!(
        "lab {} ready, VIP placed, in {:.1} s",
        lab.prefix,
        t.elapsed().as_secs_f64()
    );
    let mut rows = Vec::new();
    let outcomes = run_steps(&mut lab, &mut world, &cases, recover, |w, _| {
        let row = std::mem::take(&mut w.row);
        if !row.note.is_empty() {
            eprintln!("    {}", row.note);
        }
        if let Some(win) = &row.windows {
            eprintln!(
                "    sampled {} times, largest gap {} ms",
                win.samples,
                win.max_gap.as_millis()
            );
        }
        rows.push(row);
    });
    outcomes
        .into_iter()
        .zip(rows)
        .map(|(o, r)| (family, o, r))
        .collect()
}

/// Puts the VIP on the master the way each mode does at boot: the watchers
/// start, or `reconcile` runs on every node.
fn place_vip(lab: &mut Lab, w: &World) {
    for n in NODES {
        if w.watch {
            lab.start_watcher(n, WATCHER);
        } else {
            expect_exit(&lab.sv(n, &["reconcile"]), 0, &format!("reconcile on n{n}"));
        }
    }
    lab.wait_one_holder(Duration::from_secs(10));
}

/// After a failed case: undo whatever it may have left behind (see
/// `Lab::heal`), the lab's own config and a watcher on every node (or,
/// in the hook lab, a `reconcile`), then a ready lab with the VIP on the
/// master.
fn recover(lab: &mut Lab, w: &mut World) {
    lab.heal();
    if w.watch && w.toml_top != w.default_top {
        let top = w.default_top.clone();
        w.set_config_restart(lab, &top);
    }
    for n in NODES {
        if !w.watch {
            // In the hook lab, only a failover would place the VIP otherwise.
            let _ = lab.sv(n, &["reconcile"]);
        } else if !lab.watcher(n).running() {
            lab.start_watcher(n, WATCHER);
        }
    }
    lab.rejoin_all();
}

/// Note for a row when Sentinel moved the master again on its own.
fn again(new: usize, fin: usize) -> String {
    if new == fin {
        String::new()
    } else {
        format!("; Sentinel then failed over to n{fin} on its own")
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

    /// A node number, 1..=3.
    fn node(&mut self) -> usize {
        1 + self.below(NODES.len())
    }
}

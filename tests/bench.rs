//! `make bench`: speed measured in the namespace lab, against baselines
//! measured in the same run. Prints medians and ratios; asserts nothing
//! about time (a slow machine must not fail anything). A part that cannot
//! run (its lab cannot be built, a wait times out) says why and the run
//! goes on to the next part; the exit code is then 1.
//!
//! 1. Hook: exec -> first gratuitous ARP captured by the client, for the
//!    hook (with its Sentinel check, and trusting its arguments) and for the
//!    common shell recipe (`ip addr add` + `arping -c 3 -A`).
//! 2. Failover (`SENTINEL FAILOVER`): promotion (the replica first
//!    answering `ROLE` master) -> first gratuitous ARP, and -> first client
//!    write through the VIP on the new master, for watch and hook mode.
//! 3. `reconcile` wall time for 1, 100 and 1000 VIPs, cold and warm; the
//!    watcher's resident memory and idle CPU (1 and 1000 VIPs).
//! 4. Outage (issue 11): `kill -9` of the master's redis-server -> first
//!    acknowledged write on the new master, for clients through the VIP
//!    (watch mode with and without `follow_promotion`, hook mode) and a
//!    Sentinel-aware client (redis-rs), all in the same failovers; and the
//!    promoted replica first answering `ROLE` master -> first gratuitous ARP.
//! 5. Hook handoff (issue 10): hook exec -> exit when handed to a running
//!    watcher (the hook as `nobody` without capabilities), against the
//!    hook acting itself as root with no watcher.
//! 6. Routed (issue 19): part 4's comparison with the VIP a /32 on `lo`
//!    announced over BGP to a router, and `ROLE` master -> the route at
//!    the router (`bench/routed.rs`).
//! 7. Partition (issue 20): the master cut off from its peers, not from the
//!    client; acknowledged writes lost and the longest time without an
//!    acknowledged write, for `on_sentinel_loss` keep, release after 1 s
//!    and fence, interleaved in one lab (`BENCH_PARTITIONS`, default 3).
//!
//! `BENCH_PARTS=1,3` picks parts (default all). `BENCH_SERVER` (default
//! `redis,valkey`) names the servers (any of `redis`, `redis8`, `valkey`,
//! `valkey9`): Debian 12's Redis gets every part, the others the headline
//! figures only, parts 4 ((a) and (d) unless `BENCH_MODES` says), 5, 6
//! and 7.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use sentinel_vip_lab::client::{Pace, RoleWatch};
use sentinel_vip_lab::failovers::{self, Mode};
use sentinel_vip_lab::hook_timing::HookCall;
use sentinel_vip_lab::netns::{kill_group, spawn_in};
use sentinel_vip_lab::stats::summary;
use sentinel_vip_lab::suite::catch;
use sentinel_vip_lab::timeline::Writer;
use sentinel_vip_lab::{
    hook_args, node_ip, now_epoch, wait_until, Capture, Family, Lab, LabOptions, Programs,
};
use sentinel_vip_lab::{Privilege, NODES, SENTINEL_PORT, VIP4, VIP4_CIDR};

#[path = "bench/routed.rs"]
mod routed;

fn env_usize(k: &str, d: usize) -> usize {
    std::env::var(k)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(d)
}

/// Waits for the first gratuitous ARP for the VIP from `mac` after `t0`.
fn first_garp(cap: &Capture, mac: &str, t0: f64, max: Duration) -> Option<f64> {
    let deadline = Instant::now() + max;
    while Instant::now() < deadline {
        if let Some(f) = cap
            .peek()
            .iter()
            .find(|f| f.ts > t0 && f.src_mac == mac && f.is_garp_for(VIP4))
        {
            return Some(f.ts);
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    None
}

/// The VIP off node `n`, if it is there.
fn del_vip(lab: &Lab, n: usize) {
    let _ = lab.run_node(n, &["ip", "addr", "del", VIP4_CIDR, "dev", "eth0"]);
}

fn main() {
    let bin = PathBuf::from(env!("CARGO_BIN_EXE_sentinel-vip"));
    for tool in ["arping"] {
        if Command::new("sh")
            .args(["-c", &format!("command -v {tool}")])
            .output()
            .map_or(true, |o| !o.status.success())
        {
            eprintln!("bench: `{tool}` is missing (apt-get install iputils-arping); it is the shell recipe's baseline");
            std::process::exit(1);
        }
    }
    println!(
        "sentinel-vip bench ({}), medians of repeated runs in a namespace lab",
        bin.display()
    );
    let parts = std::env::var("BENCH_PARTS").unwrap_or_else(|_| "1,2,3,4,5,6".into());
    let want = |p: &str| parts.split(',').any(|x| x.trim() == p);
    let servers = std::env::var("BENCH_SERVER").unwrap_or_else(|_| "redis,valkey".into());
    let all: [(&str, Part); 7] = [
        ("1", |b, _| hook_vs_recipe(b)),
        ("2", |b, _| failover_latency(b)),
        ("3", |b, _| reconcile_and_watcher(b)),
        ("4", outage),
        ("5", hook_handoff),
        ("6", routed::routed),
        ("7", partition),
    ];
    let mut failed = Vec::new();
    for name in servers.split(',').map(str::trim) {
        let Some(family) = Family::ALL.into_iter().find(|f| f.name() == name) else {
            println!("\n{name}: unknown server (redis or valkey)");
            failed.push(format!("{name}: unknown server"));
            continue;
        };
        // Panics, saying why, when Valkey cannot be had: caught and listed.
        let programs = match catch(|| family.programs()) {
            Ok(p) => p,
            Err(why) => {
                println!("\n{name}: cannot run the bench against it: {why}");
                failed.push(format!("{name}: {why}"));
                continue;
            }
        };
        // Beside Redis, another server gets the headline parts only.
        let theirs = |p: &str| name == "redis" || HEADLINE.contains(&p);
        println!("\n=== {name} {}", programs.version());
        for (p, part) in all.iter().filter(|(p, _)| want(p) && theirs(p)) {
            let t = Instant::now();
            if let Err(why) = catch(|| part(&bin, programs)) {
                println!("\n  part {p} ({name}) FAILED: {why}");
                failed.push(format!("part {p} ({name}): {why}"));
            }
            eprintln!(
                "bench: part {p} ({name}) took {:.0} s",
                t.elapsed().as_secs_f64()
            );
        }
    }
    if !failed.is_empty() {
        println!("\nbench: {} part(s) could not run:", failed.len());
        for f in &failed {
            println!("  {f}");
        }
        std::process::exit(1);
    }
}

/// The parts run against a server other than Redis (issue 14).
const HEADLINE: [&str; 4] = ["4", "5", "6", "7"];

/// A part of the bench: the binary under test, the server family.
type Part = fn(&Path, Programs);

/// Part 1.
fn hook_vs_recipe(bin: &Path) {
    let rounds = env_usize("BENCH_HOOK_ROUNDS", 30);
    let opts = LabOptions {
        reconfig_script: false,
        toml_tail: "[announce]\ncount = 1\n".into(),
        ..LabOptions::default()
    };
    let lab = Lab::new(bin, opts);
    lab.wait_ready();
    let n = lab.master_node();
    let ns = lab.ns(n);
    let mac = lab.mac(n);
    let cfg = lab.config_path(n);
    let text = fs::read_to_string(&cfg).unwrap();
    let trusting = lab.node_dir(n).join("no-sentinels.toml");
    let no_sentinels: String = text
        .lines()
        .map(|l| {
            if l.starts_with("sentinels") {
                "sentinels = []"
            } else {
                l
            }
        })
        .collect::<Vec<_>>()
        .join("\n");
    fs::write(&trusting, no_sentinels).unwrap();
    let recipe = lab.node_dir(n).join("recipe.sh");
    fs::write(&recipe, format!("#!/bin/sh\n/sbin/ip addr add {VIP4_CIDR} dev eth0\narping -q -c 3 -A {VIP4} -I eth0\nexit 0\n")).unwrap();
    fs::set_permissions(&recipe, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let hook_args = hook_args("leader", if n == 1 { 2 } else { 1 }, n);
    let lab_bin = lab.bin().to_path_buf();

    let cap = Capture::start(&lab);
    let mut results: Vec<Vec<f64>> = vec![Vec::new(), Vec::new(), Vec::new()];
    for _ in 0..rounds {
        for (k, res) in results.iter_mut().enumerate() {
            del_vip(&lab, n);
            std::thread::sleep(Duration::from_millis(30));
            let mut cmd = match k {
                0 | 1 => {
                    let mut c = Command::new(&lab_bin);
                    c.args(&hook_args)
                        .env("SENTINEL_VIP_CONFIG", if k == 0 { &cfg } else { &trusting });
                    c
                }
                _ => Command::new(&recipe),
            };
            let t0 = now_epoch();
            let mut child = spawn_in(&ns, Privilege::Root, &mut cmd);
            let garp = first_garp(&cap, &mac, t0, Duration::from_secs(3));
            kill_group(&mut child);
            if let Some(t) = garp {
                res.push((t - t0) * 1e3);
            }
        }
    }
    drop(cap);
    del_vip(&lab, n);
    println!("\n1. exec -> first gratuitous ARP seen by the client ({rounds} rounds, interleaved)");
    let hook = summary("hook (asks 3 Sentinels first)", &mut results[0]);
    let trust = summary(
        "hook (sentinels = [], trusts its arguments)",
        &mut results[1],
    );
    let shell = summary(
        "shell recipe: ip addr add + arping -c 3 -A",
        &mut results[2],
    );
    println!(
        "  ratio recipe/hook: {:.1}x (Sentinel-checked), {:.1}x (trusting)",
        shell / hook,
        shell / trust
    );
}

/// Part 2: one lab with Sentinel's script on; watchers run for the watch
/// rounds (they win the race) and are stopped for the hook rounds.
fn failover_latency(bin: &Path) {
    let per_mode = env_usize("BENCH_FAILOVERS", 3);
    let mut lab = Lab::new(bin, LabOptions::default());
    lab.wait_ready();
    lab.reconcile_all();
    let cap = Capture::start(&lab);
    let writer = Writer::start(&lab);
    let mut r: Vec<Vec<f64>> = vec![Vec::new(); 4];
    for mode in ["watch", "hook"] {
        if mode == "watch" {
            for n in NODES {
                lab.start_watcher(n, Privilege::TwoCaps);
            }
        }
        std::thread::sleep(Duration::from_millis(1500));
        for _ in 0..per_mode {
            lab.wait_ready();
            let old = lab.master_node();
            // Promotion is when the chosen replica first answers ROLE
            // master: watch mode (follow_promotion) acts on that, well
            // before Sentinel's +promoted-slave.
            let replicas: Vec<usize> = NODES.into_iter().filter(|&n| n != old).collect();
            let role = RoleWatch::start(&lab, &replicas, Duration::from_millis(1));
            let t_cmd = now_epoch();
            lab.sentinel_failover();
            let mut new = None;
            // Each poll runs ip and redis-cli six times: a slow poll keeps
            // that load off the failover being timed.
            let moved = wait_until(Duration::from_secs(20), Duration::from_millis(50), || {
                new = lab.vip_alone_on_master(|m| m != old);
                new.is_some()
            });
            let promoted = role.first_master();
            drop(role);
            let Some(new) = new.filter(|_| moved) else {
                println!("  {mode}: VIP did not follow a failover; round skipped");
                continue;
            };
            let Some((_, tp)) = promoted.filter(|(n, _)| *n == new) else {
                println!("  {mode}: n{new} not seen answering ROLE master; round skipped");
                continue;
            };
            let garp = first_garp(&cap, &lab.mac(new), t_cmd, Duration::from_secs(3));
            let ok = wait_until(Duration::from_secs(5), Duration::from_millis(10), || {
                writer.first_ok_after(tp, Some(new)).is_some()
            });
            let base = if mode == "watch" { 0 } else { 2 };
            if let Some(g) = garp {
                r[base].push((g - tp) * 1e3);
            }
            if ok {
                r[base + 1].push((writer.first_ok_after(tp, Some(new)).unwrap() - tp) * 1e3);
            }
        }
        if mode == "watch" {
            for n in NODES {
                lab.watcher(n).stop("TERM", Duration::from_secs(5));
            }
        }
    }
    drop(writer);
    drop(cap);
    println!("\n2. promotion (the replica first answering ROLE master) -> ... ({per_mode} SENTINEL FAILOVERs per mode;\n   the client writes with a redis-cli per attempt, 0.25 s timeout)");
    let wg = summary("watch: first gratuitous ARP", &mut r[0]);
    let ww = summary("watch: first client write on the new master", &mut r[1]);
    let hg = summary("hook:  first gratuitous ARP", &mut r[2]);
    let hw = summary("hook:  first client write on the new master", &mut r[3]);
    println!(
        "  ratio hook/watch: {:.1}x to the ARP, {:.1}x to the write",
        hg / wg,
        hw / ww
    );
}

/// Part 3.
fn reconcile_and_watcher(bin: &Path) {
    let mut lab = Lab::new(
        bin,
        LabOptions {
            reconfig_script: false,
            ..LabOptions::default()
        },
    );
    lab.wait_ready();
    let n = lab.master_node();
    let ns = lab.ns(n);
    let base = fs::read_to_string(lab.config_path(n)).unwrap();
    let head: String = base
        .lines()
        .take_while(|l| !l.starts_with("[[vip]]"))
        .collect::<Vec<_>>()
        .join("\n");
    let master_ip = node_ip(n);
    // An IPv4 VIP is added only beside the host's own address in its
    // subnet (else it would be the primary): give the host one.
    let own = lab.run_node(
        n,
        &["ip", "addr", "add", "198.19.255.254/15", "dev", "eth0"],
    );
    assert!(
        own.status.success(),
        "host address in 198.18.0.0/15: {own:?}"
    );
    println!("\n3. reconcile wall time (exec to exit), N masters all local, VIPs in 198.18.0.0/15");
    let mut configs = Vec::new();
    for count in [1usize, 100, 1000] {
        // Every Sentinel monitors the extra names (all the same Redis): the
        // pass asks about each of them in one pipeline per Sentinel.
        let monitor: String = (0..count)
            .map(|i| format!("SENTINEL MONITOR bench{i} {master_ip} 6379 2\n"))
            .collect();
        let t = Instant::now();
        std::thread::scope(|sc| {
            for s in NODES {
                let (lab, monitor) = (&lab, &monitor);
                sc.spawn(move || sentinel_batch(lab, s, monitor));
            }
        });
        let registered = t.elapsed();
        let mut text = format!("{head}\n[announce]\ncount = 1\n");
        for i in 0..count {
            text.push_str(&format!("[[vip]]\nmaster = \"bench{i}\"\naddress = \"198.18.{}.{}/15\"\ninterface = \"eth0\"\n", i / 250, 1 + i % 250));
        }
        let path = lab.node_dir(n).join(format!("bench-{count}.toml"));
        fs::write(&path, text).unwrap();
        // Sentinels that were just told to MONITOR hundreds of names are busy
        // connecting to them for a while; a pass then waits out
        // sentinel_timeout_ms (300 ms) for the slowest, or fails. Measure
        // once an untimed run succeeds well inside that.
        let t = Instant::now();
        let settled = wait_until(Duration::from_secs(60), Duration::from_millis(500), || {
            let mut c = Command::new(lab.bin());
            c.arg("reconcile").env("SENTINEL_VIP_CONFIG", &path);
            let t = Instant::now();
            let ok = spawn_in(&ns, Privilege::Root, &mut c)
                .wait()
                .is_ok_and(|st| st.success());
            ok && t.elapsed() < Duration::from_millis(250)
        });
        drop_vips(&lab, n, count);
        println!(
            "  ({count} masters: registered with the Sentinels in {:.1} s, a pass inside 250 ms after {:.1} s{})",
            registered.as_secs_f64(),
            t.elapsed().as_secs_f64(),
            if settled {
                ""
            } else {
                "; never, measuring anyway"
            }
        );
        let mut cold = Vec::new();
        let mut warm = Vec::new();
        for _ in 0..5 {
            for (k, v) in [&mut cold, &mut warm].into_iter().enumerate() {
                let t = Instant::now();
                let mut c = Command::new(lab.bin());
                c.arg("reconcile").env("SENTINEL_VIP_CONFIG", &path);
                let mut child = spawn_in(&ns, Privilege::Root, &mut c);
                let st = child.wait().unwrap();
                let ms = t.elapsed().as_secs_f64() * 1e3;
                if st.success() {
                    v.push(ms);
                } else {
                    // The bench discards stderr; the log says why.
                    let why = fs::read_to_string(lab.sv_log_path(n)).unwrap_or_default();
                    let last = why.lines().rev().find(|l| l.contains("ERROR"));
                    println!(
                        "  reconcile with {count} VIPs exited {st}: {}",
                        last.unwrap_or("(nothing logged)")
                            .chars()
                            .take(300)
                            .collect::<String>()
                    );
                }
                if k == 1 {
                    drop_vips(&lab, n, count);
                }
            }
        }
        summary(
            &format!("{count:>4} VIPs, cold (adds and announces all)"),
            &mut cold,
        );
        summary(
            &format!("{count:>4} VIPs, warm (holds all, announces again)"),
            &mut warm,
        );
        configs.push((count, path));
    }
    println!("\n3b. watcher at rest (after 3 s, CPU over 10 s; reconcile_interval_ms = 1000)");
    for (count, path) in configs.iter().filter(|(c, _)| *c == 1 || *c == 1000) {
        fs::copy(path, lab.config_path(n)).unwrap();
        lab.start_watcher(n, Privilege::TwoCaps);
        let pid = lab.watcher(n).pid().unwrap();
        std::thread::sleep(Duration::from_secs(3));
        let cpu0 = cpu_ticks(pid);
        let t = Instant::now();
        std::thread::sleep(Duration::from_secs(10));
        let cpu = (cpu_ticks(pid) - cpu0) as f64 / 100.0 / t.elapsed().as_secs_f64() * 100.0;
        let rss = fs::read_to_string(format!("/proc/{pid}/status"))
            .unwrap_or_default()
            .lines()
            .find(|l| l.starts_with("VmRSS"))
            .unwrap_or("VmRSS: ?")
            .split_whitespace()
            .nth(1)
            .unwrap_or("?")
            .to_string();
        println!("  {count:>4} VIPs: resident {rss} KiB, CPU {cpu:.2} % of one core");
        lab.watcher(n).stop("TERM", Duration::from_secs(5));
        drop_vips(&lab, n, *count);
    }
}

fn cpu_ticks(pid: u32) -> u64 {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    cpu_ticks_of(&stat).unwrap_or_else(|| panic!("cannot read utime/stime from {stat:?}"))
}

/// utime + stime (fields 14 and 15 of /proc/PID/stat). Fields are counted
/// from the end of the command name, by position: fields that are not
/// unsigned (state `S`, tpgid -1 without a terminal) must not be skipped.
fn cpu_ticks_of(stat: &str) -> Option<u64> {
    let f: Vec<&str> = stat.rsplit_once(") ")?.1.split_whitespace().collect();
    // `f[0]` is field 3.
    Some(f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?)
}

/// Sends Sentinel `s` one command per line of `lines` through one
/// redis-cli, not a process per command. Sentinel rewrites and fsyncs its
/// config file after every MONITOR, so a thousand take minutes anyway:
/// the caller feeds the three Sentinels at once.
fn sentinel_batch(lab: &Lab, s: usize, lines: &str) {
    let mut c = Command::new("ip")
        .args(["netns", "exec", &lab.ns(s), "timeout", "300"])
        .args([lab.programs().cli, "-h", &node_ip(s), "-p"])
        .arg(SENTINEL_PORT.to_string())
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("redis-cli for Sentinel");
    let fed = c.stdin.take().expect("piped").write_all(lines.as_bytes());
    let st = c.wait().expect("redis-cli for Sentinel");
    assert!(
        fed.is_ok() && st.success(),
        "feeding Sentinel n{s} its commands: {fed:?}, {st}"
    );
}

fn drop_vips(lab: &Lab, n: usize, count: usize) {
    let batch = lab.node_dir(n).join("del.batch");
    let lines: String = (0..count)
        .map(|i| format!("addr del 198.18.{}.{}/15 dev eth0\n", i / 250, 1 + i % 250))
        .collect();
    fs::write(&batch, lines).unwrap();
    let _ = lab.run_node(n, &["ip", "-force", "-batch", batch.to_str().unwrap()]);
}

/// Part 4: the VIP client and the Sentinel-aware client write through the
/// same failovers.
fn outage(bin: &Path, programs: Programs) {
    let kills = env_usize("BENCH_KILLS", 5);
    let ms = |k: &str, d: usize| Duration::from_millis(env_usize(k, d) as u64);
    let pace = Pace {
        interval: ms("BENCH_WRITE_INTERVAL_MS", 10),
        timeout: ms("BENCH_CLIENT_TIMEOUT_MS", 250),
    };
    // Against another server, only the headline figures by default: (a),
    // and (d), which writes through every failover. BENCH_MODES=a,c picks.
    let default = if programs.family == Family::Redis {
        "a,b,c"
    } else {
        "a"
    };
    let modes = Mode::picked(&std::env::var("BENCH_MODES").unwrap_or_else(|_| default.into()));
    println!(
        "\n4. kill -9 of the master's server process -> first acknowledged write on the new master"
    );
    println!(
        "   {kills} failovers per mode; each client one thread, one connection, reconnecting at once,\n   a write every {:?}, {:?} connect/read/write timeouts; acknowledged = OK from the server\n   and the key read back from the master once every node rejoined",
        pace.interval, pace.timeout
    );
    let rounds = failovers::run(bin, programs, &modes, kills, pace);
    failovers::report(&modes, &rounds);
}

/// Part 7 (issue 20): the loss policies through the same kind of partition.
fn partition(bin: &Path, programs: Programs) {
    let rounds = env_usize("BENCH_PARTITIONS", 3);
    println!("\n7. master cut off from its peers (not from the client) for 6 s; a client appending unique ids\n   through the VIP every 5 ms (250 ms timeouts, reconnecting at once); {rounds} partitions per policy,\n   interleaved; lost = acknowledged, then missing from the final master");
    sentinel_vip_lab::loss::bench(bin, programs, rounds, Duration::from_secs(6));
}

/// Part 5: the same hook call, VIP already in place, handed to a watcher
/// or acting itself.
fn hook_handoff(bin: &Path, programs: Programs) {
    let per_block = (env_usize("BENCH_HANDOFF_ROUNDS", 30) / 2).max(1);
    let opts = LabOptions {
        reconfig_script: false,
        programs,
        ..LabOptions::default()
    };
    let mut lab = Lab::new(bin, opts);
    lab.wait_ready();
    lab.reconcile_all();
    let m = lab.master_node();
    let call = HookCall::new(
        &lab,
        m,
        hook_args("observer", if m == 1 { 2 } else { 1 }, m),
    );
    println!("\n5. hook exec -> exit, the VIP already in place on n{m} (alternating blocks)");
    // With the default announcements the hook acting itself exits after
    // its last one (2.2 s; a few runs show it); with one, both paths do
    // the same work.
    let cfg = lab.config_path(m);
    let base = fs::read_to_string(&cfg).expect("the node's config");
    let one = format!("{base}\n[announce]\ncount = 1\n");
    for (what, text, runs) in [
        ("[announce] as default (3)", base.clone(), per_block.min(3)),
        ("[announce] count = 1", one, per_block),
    ] {
        fs::write(&cfg, text).expect("write the node's config");
        println!("  {what}, {} runs each way:", runs * 2);
        let mut b = call.blocks(&mut lab, runs);
        let h = summary(
            "handed to the watcher (nobody, no caps, NNP)",
            &mut b.handed,
        );
        let d = summary("acting itself (root, no watcher)", &mut b.direct);
        let failed = if b.errors.is_empty() {
            String::new()
        } else {
            format!("; failed runs: {:?}", b.errors)
        };
        println!(
            "  ratio handed/direct: {:.2}; the watcher answered {} runs, the hook acted itself in {}{failed}",
            h / d,
            b.answered,
            b.acted
        );
    }
    fs::write(&cfg, base).expect("write the node's config");
}

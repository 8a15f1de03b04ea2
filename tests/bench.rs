//! `make bench`: speed measured in the namespace lab, against baselines
//! measured in the same run. Prints medians and ratios; asserts nothing
//! about time (a slow machine must not fail anything).
//!
//! 1. Hook: exec -> first gratuitous ARP captured by the client, for the
//!    hook (with its Sentinel check, and trusting its arguments) and for the
//!    common shell recipe (`ip addr add` + `arping -c 3 -A`).
//! 2. Failover: Sentinel's promotion -> first gratuitous ARP, and -> first
//!    client write through the VIP on the new master, for watch and hook mode.
//! 3. `reconcile` wall time for 1, 100 and 1000 VIPs, cold and warm.
//! 4. The watcher's resident memory and idle CPU (1 and 1000 VIPs).

use std::fs;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use sentinel_vip_lab::timeline::{Promotions, Writer};
use sentinel_vip_lab::{hook_args, node_ip, now_epoch, wait_until, Capture, Lab, LabOptions};
use sentinel_vip_lab::{Privilege, NODES, VIP4, VIP4_CIDR};

fn env_usize(k: &str, d: usize) -> usize {
    std::env::var(k)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(d)
}

fn median(v: &mut [f64]) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

fn summary(name: &str, v: &mut [f64]) -> f64 {
    let m = median(v);
    let (lo, hi) = (
        v.first().copied().unwrap_or(f64::NAN),
        v.last().copied().unwrap_or(f64::NAN),
    );
    println!(
        "  {name:<44} median {m:>9.3} ms   min {lo:>8.3}   max {hi:>8.3}   n={}",
        v.len()
    );
    m
}

/// Spawns `cmd` inside namespace `ns` by setns(2) in the child just before
/// exec: unlike `ip netns exec`, nothing else runs between our clock
/// reading and the program's exec.
fn spawn_in_ns(ns: &str, cmd: &mut Command) -> Child {
    let f = fs::File::open(format!("/run/netns/{ns}")).expect("netns handle");
    let fd = std::os::fd::AsRawFd::as_raw_fd(&f);
    // SAFETY: setns is async-signal-safe; fd stays open until spawn returns.
    unsafe {
        cmd.pre_exec(move || {
            if libc::setns(fd, libc::CLONE_NEWNET) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let c = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0)
        .spawn()
        .expect("spawn");
    drop(f);
    c
}

fn kill_group(c: &mut Child) {
    // SAFETY: signalling the process group we created.
    unsafe {
        libc::kill(-(c.id() as i32), libc::SIGKILL);
    }
    let _ = c.wait();
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
    // BENCH_PARTS=1,3 runs only those parts (default: all).
    let parts = std::env::var("BENCH_PARTS").unwrap_or_else(|_| "1,2,3".into());
    let want = |p: &str| parts.split(',').any(|x| x.trim() == p);
    if want("1") {
        hook_vs_recipe(&bin);
    }
    if want("2") {
        failover_latency(&bin);
    }
    if want("3") {
        reconcile_and_watcher(&bin);
    }
}

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
            let mut child = spawn_in_ns(&ns, &mut cmd);
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
    let per_mode = env_usize("BENCH_FAILOVERS", 5);
    let mut lab = Lab::new(bin, LabOptions::default());
    lab.wait_ready();
    for n in NODES {
        let _ = lab.sv(n, &["reconcile"]);
    }
    let promotions = Promotions::start(&lab);
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
            let t_cmd = now_epoch();
            lab.sentinel_failover();
            let mut new = None;
            let moved = wait_until(Duration::from_secs(20), Duration::from_millis(10), || {
                new = lab.vip_alone_on_master(|m| m != old);
                new.is_some()
            });
            let Some(new) = new.filter(|_| moved) else {
                println!("  {mode}: VIP did not follow a failover; round skipped");
                continue;
            };
            let Some((tp, _)) = promotions.first_after(t_cmd) else {
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
    println!("\n2. Sentinel's promotion (+promoted-slave) -> ... ({per_mode} SENTINEL FAILOVERs per mode)");
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

/// Part 3 and 4.
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
    println!("\n3. reconcile wall time (exec to exit), N masters all local, VIPs in 198.18.0.0/15");
    let mut configs = Vec::new();
    for count in [1usize, 100, 1000] {
        // Every Sentinel monitors the extra names (all the same Redis): the
        // pass asks about each of them in one pipeline per Sentinel.
        for s in NODES {
            for i in 0..count {
                let _ = lab.sentinel_cli(
                    s,
                    &[
                        "SENTINEL",
                        "MONITOR",
                        &format!("bench{i}"),
                        &master_ip,
                        "6379",
                        "2",
                    ],
                );
            }
        }
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
            let ok = spawn_in_ns(&ns, &mut c).wait().is_ok_and(|st| st.success());
            ok && t.elapsed() < Duration::from_millis(250)
        });
        drop_vips(&lab, n, count);
        println!(
            "  ({count} masters: a pass inside 250 ms after {:.1} s{})",
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
                let mut child = spawn_in_ns(&ns, &mut c);
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
    println!("\n4. watcher at rest (after 3 s, CPU over 10 s; reconcile_interval_ms = 1000)");
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

fn drop_vips(lab: &Lab, n: usize, count: usize) {
    let batch = lab.node_dir(n).join("del.batch");
    let lines: String = (0..count)
        .map(|i| format!("addr del 198.18.{}.{}/15 dev eth0\n", i / 250, 1 + i % 250))
        .collect();
    fs::write(&batch, lines).unwrap();
    let _ = lab.run_node(n, &["ip", "-force", "-batch", batch.to_str().unwrap()]);
}

//! A "Sentinel" that is not one (part of case 11): first this binary
//! re-run as a TCP server answering garbage, then a plain redis-server on
//! which malformed and forged events are published.

use std::fs;
use std::io::Write;
use std::net::TcpListener;
use std::time::{Duration, Instant};

use sentinel_vip_lab::{node_ip, now_epoch, wait_until, Lab, MASTER_NAME, NODES, POLL};
use sentinel_vip_lab::{SENTINEL_PORT, VIP4};

use crate::Rng;

/// Set in the environment of this binary re-run as the junk server.
pub const JUNK_ENV: &str = "CHAOS_JUNK_SERVER";

/// One Sentinel (not the master's node) replaced, first by a TCP server
/// answering garbage, then by a plain redis-server on which malformed and
/// forged events are published on the channels the watchers subscribe to.
/// Two real Sentinels still make a majority: nothing may move or crash.
pub fn junk_sentinel(lab: &mut Lab, m: usize, problems: &mut Vec<String>) {
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
        let mut junk = lab.spawn(
            k,
            &[exe.display().to_string()],
            &[(JUNK_ENV, addr.as_str())],
            "junk-server.out",
        );
        // Several reconnects and timer passes of every watcher.
        std::thread::sleep(Duration::from_secs(5));
        let out = junk.output();
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
        .map(|&n| lab.log_count(n, &["subscribed", &ep]))
        .collect();
    let ignored: Vec<usize> = NODES
        .iter()
        .map(|&n| lab.log_count(n, &["malformed event ignored", &ep]))
        .collect();
    let redis_dir = lab.node_dir(k).join("fake-sentinel");
    fs::create_dir_all(&redis_dir).expect("fake sentinel dir");
    let args: Vec<String> = [
        lab.programs().server,
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
    let mut fake = lab.spawn(k, &args, &[], "fake-sentinel.out");
    let (host, port) = (node_ip(k), SENTINEL_PORT.to_string());
    let cli_program = lab.programs().cli;
    let cli = |args: &[&str]| {
        let mut full = vec!["timeout", "10", cli_program, "-h", &host, "-p", &port];
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
                .all(|&n| lab.log_count(n, &["subscribed", &ep]) > subs[n - 1])
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
        if lab.log_count(n, &["malformed event ignored", &ep]) <= ignored[n - 1] {
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
        let times = lab.log_count(n, &["subscribed", &ep]) - subs[n - 1];
        eprintln!("  n{n} subscribed to the fake Sentinel {times} times in {secs:.1} s");
        if times > allowed {
            problems.push(format!(
                "n{n}: the watcher subscribed to the non-Sentinel endpoint {times} times in {secs:.1} s (allowed {allowed}): no reconnect backoff"
            ));
        }
    }
    for n in NODES {
        if !lab.watcher(n).running() {
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
pub fn junk_server(addr: &str) -> ! {
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

//! `make demo`: the main job on a self-contained lab. For each mode (the
//! hook as Sentinel's script, then the watcher), bring up three Redis hosts
//! and a client in network namespaces, place the VIP, kill the master and
//! print what the world saw and when. Exits non-zero if the VIP did not
//! follow. `DEMO_SCENE=routed` shows the routed scene instead (issue 19:
//! the VIP announced over BGP, `demo/routed.rs`).

#[path = "demo/routed.rs"]
mod routed;

use std::path::Path;
use std::time::Duration;

use sentinel_vip_lab::timeline::{first_log, Promotions, Writer};
use sentinel_vip_lab::{node_of_ip, now_epoch, wait_until, Capture, Lab, LabOptions};
use sentinel_vip_lab::{Privilege, NODES, VIP4};

#[derive(Clone, Copy, PartialEq)]
enum Mode {
    Hook,
    Watch,
}

fn main() {
    let bin = Path::new(env!("CARGO_BIN_EXE_sentinel-vip"));
    if std::env::var("DEMO_SCENE").as_deref() == Ok("routed") {
        if !routed::run(bin) {
            eprintln!("demo: the VIP's route did not follow the master");
            std::process::exit(1);
        }
        println!("\ndemo: the router followed the master; lab removed");
        return;
    }
    let mut ok = true;
    for mode in [Mode::Hook, Mode::Watch] {
        ok &= run(bin, mode);
    }
    if !ok {
        eprintln!("demo: the VIP did not follow the master");
        std::process::exit(1);
    }
    println!("\ndemo: the VIP followed the master in both modes; lab removed");
}

fn run(bin: &Path, mode: Mode) -> bool {
    let name = if mode == Mode::Hook {
        "hook mode (Sentinel's client-reconfig-script)"
    } else {
        "watch mode (sentinel-vip watch, as nobody with two capabilities)"
    };
    println!("\n== {name} ==");
    let mut lab = Lab::new(
        bin,
        LabOptions {
            reconfig_script: mode == Mode::Hook,
            ..LabOptions::default()
        },
    );
    lab.wait_ready();
    let master = lab.master_node();
    match mode {
        Mode::Hook => {
            for n in NODES {
                let o = lab.sv(n, &["reconcile"]);
                print!("reconcile on n{n}: {}", String::from_utf8_lossy(&o.stdout));
            }
        }
        Mode::Watch => {
            for n in NODES {
                lab.start_watcher(n, Privilege::TwoCaps);
            }
        }
    }
    let placed = wait_until(Duration::from_secs(5), Duration::from_millis(50), || {
        lab.holders() == vec![master]
    });
    println!(
        "VIP {VIP4} on {:?} (master n{master}): {}",
        holders(&lab),
        if placed { "placed" } else { "NOT placed" }
    );
    if !placed {
        return false;
    }
    let _ = lab.client_ping();
    let promotions = Promotions::start(&lab);
    let capture = Capture::start(&lab);
    let writer = Writer::start(&lab);
    std::thread::sleep(Duration::from_millis(300));

    let t0 = now_epoch();
    lab.kill_redis(master);
    let mut new = None;
    let moved = wait_until(Duration::from_secs(30), Duration::from_millis(20), || {
        new = lab.vip_alone_on_master(|m| m != master);
        new.is_some()
    });
    let wrote = moved
        && wait_until(Duration::from_secs(5), Duration::from_millis(20), || {
            writer.first_ok_after(t0, new).is_some()
        });
    std::thread::sleep(Duration::from_millis(300));
    let frames = capture.stop();
    let write = writer.first_ok_after(t0, new);
    drop(writer);
    let Some(new) = new.filter(|_| moved) else {
        println!(
            "VIP did not move: holders {:?}, Sentinel says {:?}",
            holders(&lab),
            lab.sentinels_agree()
        );
        return false;
    };
    let mac = lab.mac(new);
    let promo = promotions.first_after(t0);
    let added = first_log(&lab, new, &["Acquire"], t0).map(|(t, _)| t);
    let garp = frames
        .iter()
        .find(|f| f.ts > t0 && f.src_mac == mac && f.is_garp_for(VIP4))
        .map(|f| f.ts);
    let rel = |t: Option<f64>| t.map_or("      --".to_string(), |t| format!("{:+8.3} s", t - t0));
    let since = |t: Option<f64>| match (t, promo.as_ref()) {
        (Some(t), Some((p, _))) if t < *p => {
            format!(
                "  ({:.1} ms before the promotion was announced)",
                (p - t) * 1e3
            )
        }
        (Some(t), Some((p, _))) => format!("  ({:.1} ms after promotion)", (t - p) * 1e3),
        _ => String::new(),
    };
    let pnode = promo
        .as_ref()
        .and_then(|(_, ip)| node_of_ip(ip))
        .map_or("?".into(), |n| format!("n{n}"));
    let promoted = promo.as_ref().map(|p| p.0);
    // In time order: with follow_promotion the VIP moves before Sentinel
    // announces the promotion.
    let mut lines = [
        (Some(t0), format!("kill -9 redis-server on n{master}")),
        (
            promoted,
            format!("Sentinel promoted {pnode} (+promoted-slave)"),
        ),
        (
            added,
            format!(
                "sentinel-vip on n{new} logged taking the VIP{}",
                since(added)
            ),
        ),
        (
            garp,
            format!(
                "gratuitous ARP from n{new} seen by the client{}",
                since(garp)
            ),
        ),
        (
            write,
            format!(
                "first client write through the VIP on n{new}{}",
                since(write)
            ),
        ),
    ];
    lines.sort_by(|a, b| a.0.unwrap_or(f64::MAX).total_cmp(&b.0.unwrap_or(f64::MAX)));
    println!("timeline (relative to the kill):");
    for (t, what) in &lines {
        println!("  {}  {what}", rel(*t));
    }
    println!(
        "client's neighbour entry for {VIP4}: {:?} (n{new} is {mac})",
        lab.client_neigh(VIP4)
    );
    drop(promotions);
    moved && wrote && garp.is_some()
}

fn holders(lab: &Lab) -> Vec<String> {
    lab.holders().iter().map(|n| format!("n{n}")).collect()
}

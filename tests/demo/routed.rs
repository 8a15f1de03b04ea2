//! `DEMO_SCENE=routed make demo` (or `make demo-routed`): the routed
//! scene. Three Redis hosts in subnets of their own behind a router
//! namespace running BIRD, a BIRD on each host announcing the VIP, a /32
//! on `lo`, while it is there; the watchers move it; the master is killed
//! and the demo prints what the router and the client saw, and when.

use std::path::Path;
use std::time::Duration;

use sentinel_vip_lab::routed::{Daemon, RouteMonitor, Routed, VIP, VIP_CIDR};
use sentinel_vip_lab::timeline::{first_log, Promotions, Writer};
use sentinel_vip_lab::{node_of_ip, now_epoch, Lab, LabOptions, Privilege, NODES};

/// Runs the scene; false if the VIP's route did not follow the master.
pub fn run(bin: &Path) -> bool {
    println!("\n== routed scene: BIRD on a router and on each host, the VIP {VIP_CIDR} on lo ==");
    let mut lab = Lab::new(
        bin,
        LabOptions {
            reconfig_script: false,
            routed: Some(Routed {
                hosts: Daemon::Bird,
            }),
            ..LabOptions::default()
        },
    );
    lab.wait_ready();
    lab.wait_routing(Duration::from_secs(30));
    println!(
        "eBGP with BFD (100 ms x 3) from each host to the router; the client routed through it"
    );
    for n in NODES {
        lab.start_watcher(n, Privilege::TwoCaps);
    }
    let master = lab.wait_routed_holder(0, Duration::from_secs(15));
    println!(
        "VIP on n{master}'s lo; the router's table: {}",
        router_table(&lab)
    );
    let promotions = Promotions::start(&lab);
    let routes = RouteMonitor::start(&lab);
    let writer = Writer::start(&lab);
    std::thread::sleep(Duration::from_millis(300));

    let t0 = now_epoch();
    lab.kill_redis(master);
    let new = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        lab.wait_routed_holder(master, Duration::from_secs(30))
    }));
    let Ok(new) = new else {
        println!(
            "the VIP's route did not follow: the router says {}",
            router_table(&lab)
        );
        return false;
    };
    let wrote =
        sentinel_vip_lab::wait_until(Duration::from_secs(5), Duration::from_millis(20), || {
            writer.first_ok_after(t0, Some(new)).is_some()
        });
    let write = writer.first_ok_after(t0, Some(new));
    drop(writer);
    let promo = promotions.first_after(t0);
    let added = first_log(&lab, new, &["Acquire"], t0).map(|(t, _)| t);
    let released = first_log(&lab, master, &["Release"], t0).map(|(t, _)| t);
    let route = routes
        .after(t0)
        .into_iter()
        .find(|e| e.via == Some(new))
        .map(|e| e.at);
    let pnode = promo
        .as_ref()
        .and_then(|(_, ip)| node_of_ip(ip))
        .map_or("?".into(), |n| format!("n{n}"));
    let rel = |t: Option<f64>| t.map_or("       --".to_string(), |t| format!("{:+9.4} s", t - t0));
    let mut lines = [
        (Some(t0), format!("kill -9 redis-server on n{master}")),
        (
            promo.as_ref().map(|p| p.0),
            format!("Sentinel promoted {pnode} (+promoted-slave)"),
        ),
        (
            added,
            format!("sentinel-vip on n{new} logged taking the VIP"),
        ),
        (
            released,
            format!("sentinel-vip on n{master} logged releasing it"),
        ),
        (
            route,
            format!("the router's kernel table sends {VIP} to n{new}"),
        ),
        (
            write,
            format!("first client write through the VIP on n{new}"),
        ),
    ];
    lines.sort_by(|a, b| a.0.unwrap_or(f64::MAX).total_cmp(&b.0.unwrap_or(f64::MAX)));
    println!("timeline (relative to the kill):");
    for (t, what) in &lines {
        println!("  {}  {what}", rel(*t));
    }
    if !wrote {
        println!("client writes through the VIP did NOT reach n{new}");
    }
    println!("the router's table now: {}", router_table(&lab));
    println!(
        "its BIRD: {}",
        lab.router_birdc(&["show", "route", "for", VIP_CIDR])
            .unwrap_or_default()
            .lines()
            .skip(1)
            .collect::<Vec<_>>()
            .join(" | ")
    );
    wrote && route.is_some()
}

/// `ip route show VIP` in the router's namespace, one line.
fn router_table(lab: &Lab) -> String {
    let o = lab.run(&lab.ns_router(), &["ip", "route", "show", VIP]);
    let s = String::from_utf8_lossy(&o.stdout).trim().to_string();
    if s.is_empty() {
        "no route".into()
    } else {
        s
    }
}

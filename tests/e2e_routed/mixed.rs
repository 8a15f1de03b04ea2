//! A mixed config on the bridge lab (issue 19): the lab's VIP on `eth0`
//! (l2) and a second VIP of the same master on `lo` (routed, by default).
//! Both follow the master together, the l2 one announced with gratuitous
//! ARP as ever, the routed one with no frame on any host.

use std::path::Path;
use std::time::{Duration, Instant};

use sentinel_vip_lab::capture::{has_garp_forms, Capture};
use sentinel_vip_lab::routed::observe::FrameWatch;
use sentinel_vip_lab::routed::{VIP, VIP_CIDR};
use sentinel_vip_lab::suite::one_lab_at_a_time;
use sentinel_vip_lab::{e2e_enabled, wait_until, Lab, LabOptions, MASTER_NAME, NODES, POLL, VIP4};

use super::WATCHER;

pub fn mixed_l2_and_routed() {
    if !e2e_enabled() {
        return;
    }
    let _one = one_lab_at_a_time();
    let started = Instant::now();
    let opts = LabOptions {
        reconfig_script: false,
        toml_tail: format!(
            "[[vip]]\nmaster = \"{MASTER_NAME}\"\naddress = \"{VIP_CIDR}\"\ninterface = \"lo\"\n"
        ),
        ..LabOptions::default()
    };
    let mut lab = Lab::new(Path::new(env!("CARGO_BIN_EXE_sentinel-vip")), opts);
    lab.wait_ready();
    let frames = FrameWatch::start(&lab);
    let cap = Capture::start(&lab);
    for n in NODES {
        lab.start_watcher(n, WATCHER);
    }
    let both_on = |lab: &Lab, m: usize| {
        wait_until(Duration::from_secs(10), POLL, || {
            lab.holders() == vec![m] && lab.routed_holders() == vec![m]
        })
    };
    let m = lab.wait_one_holder(Duration::from_secs(15));
    assert!(
        both_on(&lab, m),
        "the routed VIP not on n{m} alone: {:?}",
        lab.routed_holders()
    );
    let old = lab.start_failover(2, Duration::from_secs(30));
    let new = lab.wait_vip_moves(old, Duration::from_secs(30));
    assert!(
        both_on(&lab, new),
        "the routed VIP did not follow to n{new}: {:?}",
        lab.routed_holders()
    );
    let seen = cap.stop_when(Duration::from_secs(5), |f| {
        has_garp_forms(f, VIP4, &lab.mac(new))
    });
    assert!(
        has_garp_forms(&seen, VIP4, &lab.mac(new)),
        "no gratuitous ARP for the l2 VIP from n{new}"
    );
    assert!(
        seen.iter().all(|f| !f.line.contains(VIP)),
        "the client saw frames for the routed VIP"
    );
    let on_hosts = frames.vip_frames();
    assert!(
        on_hosts.is_empty(),
        "frames for the routed VIP on the hosts: {on_hosts:#?}"
    );
    eprintln!(
        "mixed: both VIPs on n{m}, then on n{new} after SENTINEL FAILOVER; gratuitous ARP for {VIP4} only ({:.1} s)",
        started.elapsed().as_secs_f64()
    );
}

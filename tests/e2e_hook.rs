//! End-to-end tests of hook mode: sentinel-vip as Sentinel's
//! `client-reconfig-script`, in a lab of network namespaces with real Redis
//! and Sentinel processes (the `sentinel-vip-lab` crate, lab/), on each server
//! build the lab runs (Debian 12's and 13's Redis, Debian 13's and
//! testing's Valkey).
//!
//! Building the lab is the slow part, so one test builds it once and runs
//! every scenario against it in order; each scenario is isolated with
//! `catch_unwind` so that one failure still lets the others report. Later
//! scenarios build on the state earlier ones leave (who is master), and check
//! their own preconditions rather than assume them.

use std::path::Path;
use std::time::{Duration, Instant};

use sentinel_vip_lab::capture::{arp_lines, frame_lines, has_garp_forms};
use sentinel_vip_lab::hook_calls::bad_hook_calls;
use sentinel_vip_lab::suite::{catch, expect_exit, one_lab_at_a_time, run_scenarios, show, Step};
use sentinel_vip_lab::{e2e_enabled, hook_cmd, node_ip, wait_until, Capture, Family, FrameKind};
use sentinel_vip_lab::{Lab, LabOptions, NODES, POLL, VIP4, VIP4_CIDR, VIP6, VIP6_CIDR};

/// What earlier scenarios leave for later ones.
#[derive(Default)]
struct Shared {
    /// (old master IP, new master IP) of the failover in scenario b.
    failover_b: Option<(String, String)>,
}

#[test]
fn hook_mode_end_to_end_redis() {
    hook_mode_end_to_end(Family::Redis);
}

#[test]
fn hook_mode_end_to_end_valkey() {
    hook_mode_end_to_end(Family::Valkey);
}

#[test]
fn hook_mode_end_to_end_redis8() {
    hook_mode_end_to_end(Family::Redis8);
}

#[test]
fn hook_mode_end_to_end_valkey9() {
    hook_mode_end_to_end(Family::Valkey9);
}

/// Every scenario, in order, on one lab running `family`'s servers.
fn hook_mode_end_to_end(family: Family) {
    if !e2e_enabled() {
        return;
    }
    let _one = one_lab_at_a_time();
    let started = Instant::now();
    let programs = family.programs();
    let lab = Lab::new(
        Path::new(env!("CARGO_BIN_EXE_sentinel-vip")),
        LabOptions {
            programs,
            ..LabOptions::default()
        },
    );
    lab.wait_ready();
    eprintln!(
        "lab {} ({} {}) up in {:.1} s",
        lab.prefix,
        family.name(),
        programs.version(),
        started.elapsed().as_secs_f64()
    );

    let scenarios: [(&str, Step<Shared>); 7] = [
        ("a-reconcile", reconcile_puts_vip_on_master),
        ("b-sentinel-failover", failover_moves_vip),
        ("c-master-killed", killed_master_moves_vip),
        ("d-stale-replay", stale_hook_replay_changes_nothing),
        ("e-bad-arguments", bad_arguments_are_rejected),
        ("f-ipv6-vip", ipv6_vip_add_announces),
        ("g-minority", minority_places_nothing),
    ];
    let mut shared = Shared::default();
    run_scenarios(lab, &mut shared, &scenarios, started);
}

// ----- scenarios ---------------------------------------------------------------

/// (a) `reconcile` on every node puts the VIP on the master, and only there.
fn reconcile_puts_vip_on_master(lab: &mut Lab, _: &mut Shared) {
    assert_eq!(
        lab.holders(),
        Vec::<usize>::new(),
        "VIP held before reconcile"
    );
    let master = lab.master_node();
    assert_eq!(master, 1, "lab should start with n1 as master");
    for n in NODES {
        expect_exit(&lab.sv(n, &["reconcile"]), 0, &format!("reconcile on n{n}"));
    }
    assert_eq!(lab.holders(), vec![1], "holders after reconcile");
    assert!(
        lab.addrs(1).contains(&(VIP4.to_string(), 24)),
        "n1 holds the VIP with the wrong prefix: {:?}",
        lab.addrs(1)
    );
    lab.client_write_lands_on(1, "scenario-a", "a")
        .unwrap_or_else(|e| panic!("write through the VIP: {e}"));
}

/// (b) A Sentinel-driven failover moves the VIP to the new master, tells the
/// client by gratuitous ARP, and writes through the VIP reach the new master.
fn failover_moves_vip(lab: &mut Lab, shared: &mut Shared) {
    let old = lab.master_node();
    assert_eq!(
        lab.holders(),
        vec![old],
        "VIP not on the master before failover"
    );
    // The client must already have a neighbour entry for the VIP, or a
    // gratuitous ARP would have nothing to update.
    lab.client_ping()
        .unwrap_or_else(|e| panic!("before failover: {e}"));
    assert_eq!(
        lab.client_vip_mac(),
        lab.mac(old),
        "client's neighbour entry before failover"
    );

    let cap = Capture::start(lab);
    let t = Instant::now();
    lab.sentinel_failover();
    let new = lab.wait_vip_moves(old, Duration::from_secs(15));
    eprintln!(
        "  b: VIP moved n{old} -> n{new} {:.1} s after SENTINEL FAILOVER",
        t.elapsed().as_secs_f64()
    );
    // Checked before any traffic: only an announcement can have updated the
    // entry (a write would make the client re-resolve by itself).
    lab.expect_client_mac(VIP4, new);
    let frames = cap.stop_when(Duration::from_secs(3), |f| {
        has_garp_forms(f, VIP4, &lab.mac(new))
    });
    let from_new = frame_lines(
        frames
            .iter()
            .filter(|f| f.src_mac == lab.mac(new) && f.is_garp_for(VIP4)),
    );
    assert!(
        has_garp_forms(&frames, VIP4, &lab.mac(new)),
        "expected gratuitous ARP for {VIP4} from n{new} ({}) in request and reply form; \
         got from n{new}: {:?}; all ARP seen: {:?}",
        lab.mac(new),
        from_new,
        arp_lines(&frames)
    );
    lab.client_write_lands_on(new, "scenario-b", "b")
        .unwrap_or_else(|e| panic!("write through the VIP after failover: {e}"));
    shared.failover_b = Some((node_ip(old), node_ip(new)));
}

/// (c) Killing the master's redis-server moves the VIP to the master Sentinel
/// elects; the killed node then comes back as a replica.
fn killed_master_moves_vip(lab: &mut Lab, _: &mut Shared) {
    let old = lab.master_node();
    assert_eq!(
        lab.holders(),
        vec![old],
        "VIP not on the master before kill"
    );
    lab.client_ping()
        .unwrap_or_else(|e| panic!("before kill: {e}"));
    assert_eq!(
        lab.client_vip_mac(),
        lab.mac(old),
        "client's neighbour entry before kill"
    );

    let t = Instant::now();
    lab.kill_redis(old);
    let moved = catch(|| lab.wait_vip_moves(old, Duration::from_secs(20)));
    // Bring the node back whatever happened, so later scenarios have three.
    let restart = |lab: &mut Lab| {
        lab.restart_redis(old);
        let t = Instant::now();
        lab.wait_ready();
        eprintln!(
            "  c: n{old} back as a replica {:.1} s after restart",
            t.elapsed().as_secs_f64()
        );
    };
    let new = match moved {
        Ok(new) => new,
        Err(e) => {
            restart(lab);
            panic!("{e}");
        }
    };
    eprintln!(
        "  c: VIP moved n{old} -> n{new} {:.1} s after kill -9",
        t.elapsed().as_secs_f64()
    );
    let checks = catch(|| {
        lab.expect_client_mac(VIP4, new);
        lab.client_write_lands_on(new, "scenario-c", "c")
            .unwrap_or_else(|e| panic!("write through the VIP after kill: {e}"));
    });
    restart(lab);
    if let Err(e) = checks {
        panic!("{e}");
    }
    lab.expect_vip_still_on(
        new,
        Duration::from_secs(10),
        "c: after the old master came back",
    );
}

/// (d) Replaying b's (now stale) hook call on every node changes nothing:
/// the hook follows what Sentinel says now, not its arguments.
fn stale_hook_replay_changes_nothing(lab: &mut Lab, shared: &mut Shared) {
    let (from, to) = shared
        .failover_b
        .clone()
        .expect("scenario b did not complete, nothing to replay");
    let master = lab.master_node();
    assert_eq!(
        lab.holders(),
        vec![master],
        "VIP not on the master before replay"
    );
    assert_ne!(node_ip(master), to, "replay would not be stale");
    let before = lab.all_addrs();
    let args = ["mymaster", "leader", "start", &from, "6379", &to, "6379"];
    let mut problems = Vec::new();
    for with_word in [true, false] {
        for n in NODES {
            let mut a: Vec<&str> = Vec::new();
            if with_word {
                a.push("hook");
            }
            a.extend(args);
            let o = lab.sv(n, &a);
            if o.status.code() != Some(0) {
                problems.push(format!("n{n} {a:?}: {}", show(&o)));
            }
            let holders = lab.holders();
            if holders != vec![master] {
                problems.push(format!("after n{n} {a:?}: holders {holders:?}"));
            }
        }
    }
    if lab.all_addrs() != before {
        problems.push(format!(
            "addresses changed: before {before:?}, after {:?}",
            lab.all_addrs()
        ));
    }
    assert!(problems.is_empty(), "{}", problems.join("; "));
}

/// (e) Malformed hook calls exit 2 with a one-line error and touch nothing,
/// on the holder and elsewhere; an unknown master is not an error.
fn bad_arguments_are_rejected(lab: &mut Lab, _: &mut Shared) {
    let master = lab.master_node();
    assert_eq!(lab.holders(), vec![master], "VIP not on the master");
    let problems = bad_hook_calls(lab, master);
    assert!(
        problems.is_empty(),
        "{} problem(s):\n  {}",
        problems.len(),
        problems.join("\n  ")
    );
}

/// (f) `vip add` of an IPv6 address sends an unsolicited neighbour
/// advertisement that repoints the client's existing entry; `vip del`
/// removes the address.
fn ipv6_vip_add_announces(lab: &mut Lab, _: &mut Shared) {
    let master = lab.master_node();
    let other = NODES.into_iter().find(|&n| n != master).expect("a replica");
    assert_eq!(
        lab.holders_of(VIP6),
        Vec::<usize>::new(),
        "IPv6 VIP held already"
    );
    let v4_before = lab.holders();

    // Give the client an entry for the IPv6 VIP that points at another node:
    // Linux ignores advertisements for addresses it has no entry for.
    let add = lab.run_node(
        other,
        &["ip", "addr", "add", VIP6_CIDR, "dev", "eth0", "nodad"],
    );
    expect_exit(&add, 0, "adding the IPv6 VIP on the other node");
    // Any packet makes the client resolve the address; a TCP connection
    // attempt (refused, nothing listens there) does it with tools the lab
    // already needs (ping is not always installed).
    let _ = lab.client_cli_to(VIP6, &["PING"]);
    let first = lab.client_neigh(VIP6);
    let del = lab.run_node(other, &["ip", "addr", "del", VIP6_CIDR, "dev", "eth0"]);
    expect_exit(&del, 0, "removing the IPv6 VIP from the other node");
    assert_eq!(
        first.as_ref().map(|(mac, _)| mac.clone()),
        Some(lab.mac(other)),
        "client's entry for {VIP6} should point at n{other} first: {first:?}"
    );

    let cap = Capture::start(lab);
    let o = lab.sv(master, &["vip", "add", VIP6_CIDR, "--dev", "eth0"]);
    expect_exit(&o, 0, &format!("vip add {VIP6_CIDR} on n{master}"));
    assert!(
        lab.addrs(master).contains(&(VIP6.to_string(), 64)),
        "n{master} does not hold {VIP6_CIDR}: {:?}",
        lab.addrs(master)
    );
    let mac = lab.mac(master);
    let frames = cap.stop_when(Duration::from_secs(3), |f| {
        f.iter()
            .any(|f| f.src_mac == mac && f.is_unsolicited_na_for(VIP6))
    });
    assert!(
        frames
            .iter()
            .any(|f| f.src_mac == mac && f.is_unsolicited_na_for(VIP6)),
        "no unsolicited neighbour advertisement for {VIP6} from n{master} ({mac}); \
         ICMPv6 seen: {:?}",
        frame_lines(frames.iter().filter(|f| f.kind != FrameKind::Other))
    );
    lab.expect_client_mac(VIP6, master);
    eprintln!("  f: client entry for {VIP6}: {:?}", lab.client_neigh(VIP6));

    let o = lab.sv(master, &["vip", "del", VIP6_CIDR, "--dev", "eth0"]);
    expect_exit(&o, 0, &format!("vip del {VIP6_CIDR} on n{master}"));
    assert_eq!(lab.holders_of(VIP6), Vec::<usize>::new(), "after vip del");
    assert_eq!(
        lab.holders(),
        v4_before,
        "IPv4 VIP disturbed by the IPv6 one"
    );
}

/// (g) With only a minority of the Sentinels answering, `reconcile` and a
/// hook place nothing and exit 1 (issue 22, defect 4): a rebooted old
/// master still cut off, whose own Sentinel names it, must not take the
/// VIP. Here the minority happens to be right; the rule cannot know.
fn minority_places_nothing(lab: &mut Lab, _: &mut Shared) {
    let m = lab.master_node();
    assert_eq!(lab.holders(), vec![m], "VIP not on the master");
    let others: Vec<usize> = NODES.into_iter().filter(|&n| n != m).collect();
    for &k in &others {
        lab.kill_sentinel(k);
    }
    let del = lab.run_node(m, &["ip", "addr", "del", VIP4_CIDR, "dev", "eth0"]);
    expect_exit(&del, 0, "deleting the VIP by hand");
    let reconcile = lab.sv(m, &["reconcile"]);
    let hook = lab.sv(m, &hook_cmd("observer", others[0], m));
    let holders = lab.holders();
    for &k in &others {
        lab.restart_sentinel(k);
    }
    for (what, o) in [("reconcile", &reconcile), ("hook", &hook)] {
        expect_exit(o, 1, &format!("{what} with 1 of 3 Sentinels"));
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(
            err.contains("only 1 of 3 Sentinels answered"),
            "{what}: {err}"
        );
    }
    assert_eq!(holders, Vec::<usize>::new(), "a minority placed the VIP");
    // The Sentinels back: a majority places it again.
    let back = wait_until(Duration::from_secs(20), POLL, || {
        lab.sv(m, &["reconcile"]).status.success()
    });
    assert!(back, "reconcile never succeeded with the Sentinels back");
    assert_eq!(lab.holders(), vec![m]);
}

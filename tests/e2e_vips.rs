//! End-to-end tests of several VIPs for one master and of VIPs that are
//! never a source address (issue 13). One master, three VIPs: the lab's
//! IPv4 VIP and an IPv6 VIP on eth0, and a VIP on a second network (eth1,
//! 198.18.0.0/15). Judged as the world would: the kernel's addresses and
//! source choice, frames and neighbour entries at the client, client
//! writes through each VIP, and what Redis and Sentinel peers report of
//! the holder's connections. Watchers run as the systemd unit runs them;
//! Sentinel's reconfig script is off.
//!
//! The IPv6 VIP is chosen so that only its deprecation keeps it from being
//! the source: to the client 2001:2::50, RFC 6724's longest-prefix rule
//! (rule 8) prefers 2001:2::5f (124 common bits) over the host's
//! 2001:2::1n (121 bits), and only rule 3 (avoid deprecated addresses)
//! comes first. Step b shows the kernel picking it when it is added
//! without `preferred_lft 0`.

use std::path::Path;
use std::time::{Duration, Instant};

use sentinel_vip_lab::capture::{frame_lines, has_garp_forms, Capture, Frame};
use sentinel_vip_lab::extra_vips::{node_ip2, VipSampler, NET2_VIP, NET2_VIP_CIDR};
use sentinel_vip_lab::source::{client_addrs, strip_port, Peer};
use sentinel_vip_lab::suite::{run_scenarios, Step};
use sentinel_vip_lab::{
    e2e_enabled, node_ip, node_ip6, node_of_ip, wait_until, Lab, LabOptions, Privilege, NODES,
    POLL, VIP4,
};

const WATCHER: Privilege = Privilege::TwoCaps;
const VIP6: &str = "2001:2::5f";
const VIP6_CIDR: &str = "2001:2::5f/64";
/// Every VIP of the master, with its interface.
const VIPS: [(&str, &str); 3] = [(VIP4, "eth0"), (VIP6, "eth0"), (NET2_VIP, "eth1")];

#[test]
fn several_vips_end_to_end() {
    if !e2e_enabled() {
        return;
    }
    let started = Instant::now();
    let opts = LabOptions {
        reconfig_script: false,
        toml_tail: format!(
            "[[vip]]\nmaster = \"mymaster\"\naddress = \"{VIP6_CIDR}\"\ninterface = \"eth0\"\n\
             [[vip]]\nmaster = \"mymaster\"\naddress = \"{NET2_VIP_CIDR}\"\ninterface = \"eth1\"\n"
        ),
        ..LabOptions::default()
    };
    let lab = Lab::new(Path::new(env!("CARGO_BIN_EXE_sentinel-vip")), opts);
    lab.add_second_network();
    lab.redis_listen_on_vips(&[VIP6, NET2_VIP]);
    lab.wait_ready();
    let scenarios: [(&str, Step<()>); 4] = [
        ("a-three-vips-on-the-master", three_vips_on_the_master),
        ("b-never-a-source-address", never_a_source_address),
        (
            "c-failover-moves-them-together",
            failover_moves_them_together,
        ),
        ("d-peers-never-see-a-vip", peers_never_see_a_vip),
    ];
    run_scenarios(lab, &mut (), &scenarios, started);
}

fn is_vip(ip: &str) -> bool {
    VIPS.iter().any(|(v, _)| *v == ip)
}

/// The MAC a client on `iface`'s network reaches node `n` at.
fn mac(lab: &Lab, n: usize, iface: &str) -> String {
    lab.mac_on(n, iface)
}

/// A write through `vip` from the client lands on node `n`: SET answered
/// OK (only a master takes writes), the node answering on the VIP is `n`
/// (its first bind address), and `n` returns the value.
fn write_lands_on(lab: &Lab, vip: &str, n: usize, key: &str) -> Result<(), String> {
    let o = lab.client_cli_to(vip, &["SET", key, vip]);
    let out = String::from_utf8_lossy(&o.stdout).trim().to_string();
    if out != "OK" {
        return Err(format!(
            "SET via {vip}: {out:?} {}",
            String::from_utf8_lossy(&o.stderr)
        ));
    }
    let o = lab.client_cli_to(vip, &["CONFIG", "GET", "bind"]);
    let out = String::from_utf8_lossy(&o.stdout).to_string();
    let first = out.lines().nth(1).and_then(|l| l.split_whitespace().next());
    let via = first.and_then(node_of_ip);
    if via != Some(n) {
        return Err(format!("{vip} answered by {first:?}, want n{n}"));
    }
    let (got, err) = lab.redis_cli(n, &["GET", key]);
    if got != vip {
        return Err(format!("n{n} has {key}={got:?} ({err})"));
    }
    Ok(())
}

/// The client's neighbour entry for each VIP points at node `n`, within
/// `timeout` and without client traffic to it.
fn client_points_at(lab: &Lab, n: usize, timeout: Duration) {
    for (vip, iface) in VIPS {
        let want = mac(lab, n, iface);
        let ok = wait_until(timeout, POLL, || {
            lab.client_neigh(vip).is_some_and(|(m, _)| m == want)
        });
        assert!(
            ok,
            "client's entry for {vip}: {:?}, want n{n}'s {iface} {want}",
            lab.client_neigh(vip)
        );
    }
}

/// (a) The watchers put all three VIPs on the master alone, as the kernel
/// should hold them: the IPv6 one deprecated and without DAD, the IPv4
/// ones secondary beside the host's address. The client reaches each on
/// the master.
fn three_vips_on_the_master(lab: &mut Lab, _: &mut ()) {
    let m = lab.master_node();
    for n in NODES {
        lab.start_watcher(n, WATCHER);
    }
    let vips: Vec<&str> = VIPS.iter().map(|v| v.0).collect();
    let mut s = VipSampler::new(lab, &vips);
    let ok = s.until(Duration::from_secs(10), Duration::from_millis(20), |x| {
        x.holders.values().all(|h| h == &[m])
    });
    assert!(ok, "the VIPs are not on n{m} alone: {:?}", s.samples.last());
    for (vip, iface) in VIPS {
        let info = lab.addr_info(m, iface);
        let a = info.iter().find(|a| a["local"] == vip).expect("held");
        if vip.contains(':') {
            assert_eq!(a["preferred_life_time"], 0, "{vip}: {a}");
            assert_eq!(a["nodad"], true, "{vip}: {a}");
        } else {
            assert_eq!(a["secondary"], true, "{vip} must be a secondary: {a}");
        }
        eprintln!("  a: n{m} {iface}: {a}");
    }
    for (vip, _) in VIPS {
        let o = lab.run_client(&["ping", "-n", "-c", "1", "-W", "2", vip]);
        assert!(
            o.status.success(),
            "client ping {vip}: {}",
            String::from_utf8_lossy(&o.stdout)
        );
        write_lands_on(lab, vip, m, &format!("a-{vip}")).unwrap_or_else(|e| panic!("{e}"));
    }
    client_points_at(lab, m, Duration::from_secs(2));
}

/// (b) On the holder, for IPv4, IPv6 and the second network: the kernel
/// picks the host's own address as the source to the client, a ping the
/// holder sends reaches the client from it, and a connection the holder
/// opens is seen by a peer on the client as coming from it. The control:
/// on a node not holding it (its watcher stopped), the same IPv6 VIP added
/// by `ip` without `preferred_lft 0` becomes the source, and with it is not.
fn never_a_source_address(lab: &mut Lab, _: &mut ()) {
    let h = lab.master_node();
    let own = [node_ip(h), node_ip6(h), node_ip2(h)];
    let _peer = Peer::start(lab);
    let caps = [
        Capture::start_on(
            lab,
            "eth0",
            "icmp[icmptype] == icmp-echo or (icmp6 and ip6[40] == 128)",
        ),
        Capture::start_on(lab, "eth1", "icmp[icmptype] == icmp-echo"),
    ];
    for (dst, own) in client_addrs().into_iter().zip(&own) {
        let src = lab.route_src(h, dst);
        let seen = lab.peer_sees(h, dst).unwrap_or_else(|e| panic!("{e}"));
        assert!(lab.ping_from(h, dst), "n{h} cannot ping {dst}");
        eprintln!("  b: n{h} -> {dst}: ip route get: src {src}; the peer sees {seen}");
        assert_eq!(&src, own, "source chosen for {dst}");
        assert_eq!(&seen, own, "a connection to {dst} came from {seen}");
    }
    // tcpdump hands frames over in blocks: wait until they are there.
    let to = |f: &[Frame], dst: &str| f.iter().any(|f| f.ip_pair().is_some_and(|p| p.1 == dst));
    let [c0, c1] = caps;
    let [v4, v6, v2] = client_addrs();
    let mut frames = c0.stop_when(Duration::from_secs(3), |f| to(f, v4) && to(f, v6));
    frames.extend(c1.stop_when(Duration::from_secs(3), |f| to(f, v2)));
    let pings: Vec<(String, String)> = frames.iter().filter_map(|f| f.ip_pair()).collect();
    for (dst, own) in client_addrs().into_iter().zip(&own) {
        let from: Vec<&String> = pings.iter().filter(|p| p.1 == dst).map(|p| &p.0).collect();
        eprintln!("  b: echo requests to {dst} captured at the client came from {from:?}");
        assert!(
            !from.is_empty() && from.iter().all(|f| *f == own),
            "pings to {dst}: {from:?}; captured {:?}",
            frame_lines(&frames)
        );
    }
    // The control, on a node whose watcher cannot react.
    let c = NODES.into_iter().find(|&n| n != h).unwrap();
    lab.watcher(c).stop("TERM", Duration::from_secs(5));
    let ns = lab.ns(c);
    let ip = |args: &[&str]| {
        let mut full = vec!["ip", "-n", ns.as_str()];
        full.extend_from_slice(args);
        let o = std::process::Command::new(full[0])
            .args(&full[1..])
            .output()
            .unwrap();
        assert!(
            o.status.success(),
            "{full:?}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
    };
    ip(&["addr", "add", VIP6_CIDR, "dev", "eth0", "nodad"]);
    let preferred = lab.route_src(c, "2001:2::50");
    ip(&[
        "addr",
        "change",
        VIP6_CIDR,
        "dev",
        "eth0",
        "nodad",
        "preferred_lft",
        "0",
    ]);
    let deprecated = lab.route_src(c, "2001:2::50");
    ip(&["addr", "del", VIP6_CIDR, "dev", "eth0"]);
    lab.start_watcher(c, WATCHER);
    eprintln!("  b: control on n{c}: {VIP6} preferred -> src {preferred}; with preferred_lft 0 -> src {deprecated}");
    assert_eq!(
        preferred, VIP6,
        "without deprecation the kernel must prefer the VIP (rule 8)"
    );
    assert_eq!(deprecated, node_ip6(c));
}

/// (c) A failover moves all three VIPs together: never two holders of
/// one, all on the new master within a few samples of each other, each
/// announced on its own network, the client's entries following without
/// client traffic, and writes through each landing on the new master.
fn failover_moves_them_together(lab: &mut Lab, _: &mut ()) {
    let old = lab.master_node();
    let vips: Vec<&str> = VIPS.iter().map(|v| v.0).collect();
    let caps = [Capture::start(lab), Capture::start_on(lab, "eth1", "arp")];
    let mut s = VipSampler::new(lab, &vips);
    s.sample();
    lab.start_failover(2, Duration::from_secs(20));
    let moved = s.until(Duration::from_secs(20), Duration::from_millis(10), |x| {
        let h = &x.holders[VIP4];
        h.len() == 1 && h[0] != old && x.holders.values().all(|v| v == h)
    });
    assert!(
        moved,
        "the VIPs did not move together off n{old}: {:?}",
        s.samples.last()
    );
    let new = s.samples.last().unwrap().holders[VIP4][0];
    // A few more samples: nothing moves back.
    s.until(
        Duration::from_millis(500),
        Duration::from_millis(10),
        |_| false,
    );
    // A sample reads the nodes one after another, so one taken across the
    // move itself can show the old holder (read before its release) beside
    // the new one (read after its acquire). What must not happen is two
    // holders that last: at most two samples (10 ms apart) may show it.
    let doubles = s.doubles();
    assert!(
        doubles.len() <= 2,
        "two holders in {} samples: {doubles:?}",
        doubles.len()
    );
    let doubled = doubles.len();
    let firsts: Vec<Duration> = vips
        .iter()
        .map(|v| s.first_alone(v, new).unwrap())
        .collect();
    let spread = *firsts.iter().max().unwrap() - *firsts.iter().min().unwrap();
    eprintln!(
        "  c: n{old} -> n{new}; {} samples, {doubled} with two holders (taken across the move); all three on n{new} within {spread:?} of each other",
        s.samples.len()
    );
    assert!(s
        .samples
        .last()
        .unwrap()
        .holders
        .values()
        .all(|h| h == &[new]));
    client_points_at(lab, new, Duration::from_secs(3));
    let (mac0, mac1) = (mac(lab, new, "eth0"), mac(lab, new, "eth1"));
    let [c0, c1] = caps;
    let f0 = c0.stop_when(Duration::from_secs(2), |f| has_garp_forms(f, VIP4, &mac0));
    let f1 = c1.stop_when(Duration::from_secs(2), |f| {
        has_garp_forms(f, NET2_VIP, &mac1)
    });
    assert!(
        has_garp_forms(&f0, VIP4, &mac0),
        "no gratuitous ARP for {VIP4} from n{new}"
    );
    assert!(
        has_garp_forms(&f1, NET2_VIP, &mac1),
        "no gratuitous ARP for {NET2_VIP} on eth1 from n{new}"
    );
    assert!(
        f0.iter()
            .any(|f| f.src_mac == mac0 && f.is_unsolicited_na_for(VIP6)),
        "no unsolicited NA for {VIP6} from n{new}"
    );
    for (vip, _) in VIPS {
        write_lands_on(lab, vip, new, &format!("c-{vip}")).unwrap_or_else(|e| panic!("{e}"));
    }
    eprintln!("  c: the client's entries for {VIP4}, {VIP6}, {NET2_VIP} point at n{new}; writes through each landed there");
}

/// Every `addr=` of a `CLIENT LIST` reply, as IPs.
fn client_addrs_of(list: &str) -> Vec<(String, String)> {
    list.lines()
        .filter_map(|l| {
            let f = |k: &str| l.split_whitespace().find_map(|w| w.strip_prefix(k));
            Some((
                strip_port(f("addr=")?).to_string(),
                f("flags=").unwrap_or("").to_string(),
            ))
        })
        .collect()
}

/// (d) After the failover, with the new master holding every VIP: the
/// new holder's own traffic still leaves from its address; the master
/// sees its replicas connect from their hosts' addresses; every Sentinel
/// lists replicas and peers by host address and sees connections only
/// from host addresses: no VIP anywhere.
fn peers_never_see_a_vip(lab: &mut Lab, _: &mut ()) {
    // The old master replicating again (sooner than Sentinel would).
    lab.rejoin_all();
    let h = lab.master_node();
    assert_eq!(lab.holders_on("eth1", NET2_VIP), vec![h]);
    let _peer = Peer::start(lab);
    for (dst, own) in client_addrs()
        .into_iter()
        .zip([node_ip(h), node_ip6(h), node_ip2(h)])
    {
        assert_eq!(lab.route_src(h, dst), own);
        assert_eq!(lab.peer_sees(h, dst).unwrap_or_else(|e| panic!("{e}")), own);
    }
    let replicas: Vec<String> = NODES
        .iter()
        .filter(|&&n| n != h)
        .map(|&n| node_ip(n))
        .collect();
    let (info, _) = lab.redis_cli(h, &["INFO", "replication"]);
    let mut listed: Vec<String> = info
        .lines()
        .filter(|l| l.starts_with("slave") && l.contains("ip="))
        .filter_map(|l| {
            l.split(',')
                .find_map(|kv| kv.split_once("ip=").map(|(_, v)| v.to_string()))
        })
        .collect();
    listed.sort();
    eprintln!("  d: n{h}'s INFO replication lists replicas at {listed:?}");
    assert_eq!(listed, replicas, "{info}");
    let (list, _) = lab.redis_cli(h, &["CLIENT", "LIST"]);
    let conns = client_addrs_of(&list);
    let mut repl: Vec<String> = conns
        .iter()
        .filter(|(_, f)| f.contains('S'))
        .map(|(a, _)| a.clone())
        .collect();
    repl.sort();
    assert_eq!(repl, replicas, "replica connections on n{h}: {list}");
    assert!(
        conns.iter().all(|(a, _)| !is_vip(a)),
        "a connection from a VIP on n{h}: {list}"
    );
    for n in NODES {
        let (reps, _) = lab.sentinel_cli(n, &["SENTINEL", "REPLICAS", "mymaster"]);
        let (peers, _) = lab.sentinel_cli(n, &["SENTINEL", "SENTINELS", "mymaster"]);
        let ips = |reply: &str| -> Vec<String> {
            let l: Vec<&str> = reply.lines().collect();
            l.windows(2)
                .filter(|w| w[0] == "ip")
                .map(|w| w[1].to_string())
                .collect()
        };
        let (mut r, mut p) = (ips(&reps), ips(&peers));
        r.sort();
        p.sort();
        let others: Vec<String> = NODES
            .iter()
            .filter(|&&k| k != n)
            .map(|&k| node_ip(k))
            .collect();
        assert_eq!(r, replicas, "Sentinel n{n}'s replicas");
        assert_eq!(p, others, "Sentinel n{n}'s peers (from their hellos)");
        let (list, _) = lab.sentinel_cli(n, &["CLIENT", "LIST"]);
        let conns = client_addrs_of(&list);
        assert!(
            conns.iter().all(|(a, _)| !is_vip(a)),
            "a connection from a VIP on Sentinel n{n}: {list}"
        );
        if n != h {
            assert!(
                conns.iter().any(|(a, _)| *a == node_ip(h)),
                "no connection from n{h}'s Sentinel on n{n}: {list}"
            );
        }
        eprintln!(
            "  d: Sentinel n{n}: replicas {r:?}, peers {p:?}, {} connections, none from a VIP",
            conns.len()
        );
    }
}

//! The routed lab (issue 19): the three Redis hosts each in a subnet of
//! its own behind a router namespace, the client in another, and the VIP
//! announced over BGP by real routing daemons (Debian's BIRD 2 on the
//! router; BIRD or FRR on the hosts) that the lab starts in the
//! namespaces with configs it writes. This module owns the address plan
//! and builds the network; the daemons, the router's view and the faults
//! are its submodules. It never touches the root namespace, and routes
//! only the lab's own ranges (no default route anywhere).
//!
//! Address plan: host `n`'s link to the router is 198.18.n.0/24 (router
//! .1, host .2); its own service address, the one Redis, Sentinel and
//! sentinel-vip name it by, is [`node_ip`](crate::node_ip) (192.0.2.1n)
//! as a /32 on `lo`, routed to it by the router (a loopback service
//! address, as hosts in routed fabrics have); the client is 198.18.10.2
//! behind 198.18.10.1; the VIP is [`VIP`], a /32 on `lo` of the master's
//! host. Everything between hosts, and from the client, crosses the
//! router. IPv6 beside it: host `n`'s link is 2001:2:0:n::/64 (router
//! ::1, host ::2), the client's 2001:2:0:a::/64, and [`VIP6`] a /128 on
//! `lo` for the tests that configure it; BGP carries it over a session
//! of its own per host (BIRD hosts only: the FRR recipe is IPv4's).

mod bird;
mod frr;
pub mod observe;
pub mod outage;
pub mod router;

use std::time::Duration;

use crate::command::{ip_in, sysctl};
use crate::process::Slot;
use crate::{node_ip, wait_until, Lab, NODES};

pub use router::RouteMonitor;

/// The routed VIP and its host prefix (TEST-NET-3, RFC 5737).
pub const VIP: &str = "203.0.113.100";
pub const VIP_CIDR: &str = "203.0.113.100/32";
/// The routed IPv6 VIP and its host prefix (2001:2::/48, RFC 5180).
pub const VIP6: &str = "2001:2::100";
pub const VIP6_CIDR: &str = "2001:2::100/128";
/// The client's own IPv6 address and its router.
pub const CLIENT6: &str = "2001:2:0:a::2";
const CLIENT6_GW: &str = "2001:2:0:a::1";
/// The router's AS; host `n` is `HOST_AS + n`.
pub const ROUTER_AS: u32 = 65000;
/// The client's own address and its router.
pub const CLIENT: &str = "198.18.10.2";
const CLIENT_GW: &str = "198.18.10.1";
/// BFD's timers on every session: 100 ms × 3, a dead peer detected in
/// 300 ms at most.
pub const BFD_INTERVAL_MS: u64 = 100;
pub const BFD_MULTIPLIER: u64 = 3;
/// The BGP hold time: what detects a silent peer without BFD.
pub const HOLD_S: u64 = 3;

/// Which daemon the Redis hosts run (the router always runs BIRD).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Daemon {
    Bird,
    Frr,
}

impl Daemon {
    pub fn name(self) -> &'static str {
        match self {
            Daemon::Bird => "BIRD",
            Daemon::Frr => "FRR",
        }
    }
}

/// `LabOptions::routed`: build this topology instead of the bridge.
#[derive(Clone, Copy, Debug)]
pub struct Routed {
    pub hosts: Daemon,
}

/// The routing daemons the lab runs: the router's BIRD and each host's
/// daemon(s) (FRR is three processes), killed with the lab.
#[derive(Default)]
pub(crate) struct Routing {
    pub(crate) router: Slot,
    /// Node n's at index n-1.
    pub(crate) hosts: Vec<Vec<Slot>>,
}

/// Host `n`'s address on its link to the router.
pub fn link_ip(n: usize) -> String {
    format!("198.18.{n}.2")
}

/// The router's address on its link to host `n`.
pub fn gateway_ip(n: usize) -> String {
    format!("198.18.{n}.1")
}

/// Host `n`'s IPv6 address on its link to the router.
pub fn link_ip6(n: usize) -> String {
    format!("2001:2:0:{n}::2")
}

/// The router's IPv6 address on its link to host `n`.
pub fn gateway_ip6(n: usize) -> String {
    format!("2001:2:0:{n}::1")
}

/// The host whose link address (IPv4 or IPv6) is `ip`.
pub fn node_of_link_ip(ip: &str) -> Option<usize> {
    NODES
        .into_iter()
        .find(|&n| link_ip(n) == ip || link_ip6(n) == ip)
}

/// The router's interface towards host `n` (`h1`..`h3`; `cl` the client's).
pub fn router_port(n: usize) -> String {
    format!("h{n}")
}

/// Panics naming every routing tool the lab needs and cannot find, and
/// where they come from: a routed test that cannot run fails, never skips.
pub(crate) fn check_tools(r: Routed) {
    let mut tools = vec![bird::BIRD, bird::BIRDC, "/usr/sbin/nft"];
    if r.hosts == Daemon::Frr {
        tools.extend([
            "/usr/lib/frr/zebra",
            "/usr/lib/frr/bgpd",
            "/usr/lib/frr/bfdd",
            "/usr/bin/vtysh",
        ]);
    }
    let missing: Vec<&str> = tools
        .into_iter()
        .filter(|t| !std::path::Path::new(t).is_file())
        .collect();
    assert!(
        missing.is_empty(),
        "lab: the routed lab needs {} (Debian's bird2, frr and nftables: run scripts/deps.sh)",
        missing.join(", ")
    );
}

impl Lab {
    /// The router's namespace.
    pub fn ns_router(&self) -> String {
        format!("{}rt", self.prefix)
    }

    /// Which daemon the hosts run; panics outside a routed lab.
    pub fn host_daemon(&self) -> Daemon {
        self.routed().hosts
    }

    pub(crate) fn routed(&self) -> Routed {
        self.opts
            .routed
            .unwrap_or_else(|| panic!("lab: not a routed lab (LabOptions::routed)"))
    }

    /// The router and client namespaces, each host's link to the router
    /// (created from inside the router's namespace, so the root namespace
    /// never sees an end), the addresses and the static routes of the
    /// lab's own ranges.
    pub(crate) fn build_routed_network(&mut self) {
        let rt = self.ns_router();
        self.add_ns(&rt);
        sysctl(&rt, "net.ipv4.ip_forward=1");
        sysctl(&rt, "net.ipv6.conf.all.forwarding=1");
        ip_in(&rt, &["link", "set", "lo", "up"]);
        for n in NODES {
            let ns = self.ns(n);
            self.add_ns(&ns);
            // Redis listens on the VIPs on every host (start_redis); the
            // bind must succeed where the VIP is not.
            sysctl(&ns, "net.ipv4.ip_nonlocal_bind=1");
            sysctl(&ns, "net.ipv6.ip_nonlocal_bind=1");
            let port = router_port(n);
            self.veth_from_router(&port, &ns);
            ip_in(
                &rt,
                &[
                    "addr",
                    "add",
                    &format!("{}/24", gateway_ip(n)),
                    "dev",
                    &port,
                ],
            );
            ip_in(&rt, &["link", "set", &port, "up"]);
            addr6(&rt, &gateway_ip6(n), &port);
            // The host's own address, routed to it.
            let own = format!("{}/32", node_ip(n));
            ip_in(&rt, &["route", "add", &own, "via", &link_ip(n)]);
            ip_in(&ns, &["link", "set", "lo", "up"]);
            ip_in(&ns, &["addr", "add", &own, "dev", "lo"]);
            ip_in(
                &ns,
                &["addr", "add", &format!("{}/24", link_ip(n)), "dev", "eth0"],
            );
            addr6(&ns, &link_ip6(n), "eth0");
            ip_in(&ns, &["link", "set", "eth0", "up"]);
            self.lab_routes(&ns, &gateway_ip(n), &gateway_ip6(n));
        }
        let cl = self.ns_client();
        self.add_ns(&cl);
        self.veth_from_router("cl", &cl);
        ip_in(
            &rt,
            &["addr", "add", &format!("{CLIENT_GW}/24"), "dev", "cl"],
        );
        ip_in(&rt, &["link", "set", "cl", "up"]);
        addr6(&rt, CLIENT6_GW, "cl");
        ip_in(&cl, &["link", "set", "lo", "up"]);
        ip_in(
            &cl,
            &["addr", "add", &format!("{CLIENT}/24"), "dev", "eth0"],
        );
        addr6(&cl, CLIENT6, "eth0");
        ip_in(&cl, &["link", "set", "eth0", "up"]);
        self.lab_routes(&cl, CLIENT_GW, CLIENT6_GW);
    }

    /// A veth pair made in the router's namespace: `port` stays there,
    /// `eth0` goes to `ns`.
    fn veth_from_router(&self, port: &str, ns: &str) {
        let rt = self.ns_router();
        let args = [
            "link", "add", port, "type", "veth", "peer", "name", "eth0", "netns", ns,
        ];
        ip_in(&rt, &args);
    }

    /// The lab's ranges through the router at `gw` (IPv6: `gw6`), nothing
    /// else: no default route, so no lab traffic can leave the machine.
    fn lab_routes(&self, ns: &str, gw: &str, gw6: &str) {
        for net in ["198.18.0.0/15", "192.0.2.0/24", "203.0.113.0/24"] {
            ip_in(ns, &["route", "add", net, "via", gw]);
        }
        ip_in(ns, &["-6", "route", "add", "2001:2::/48", "via", gw6]);
    }

    /// Starts the router's BIRD and every host's daemon.
    pub(crate) fn start_routing(&mut self) {
        self.routing.router = self.start_router_bird();
        self.routing.hosts = NODES.iter().map(|_| Vec::new()).collect();
        for n in NODES {
            self.start_host_daemon(n);
        }
    }

    /// Starts host `n`'s routing daemon (again): BIRD, or FRR's zebra,
    /// bgpd and bfdd. Whatever ran there before is stopped first.
    pub fn start_host_daemon(&mut self, n: usize) {
        self.stop_host_daemon(n, Duration::from_secs(5));
        let slots = match self.host_daemon() {
            Daemon::Bird => vec![self.start_host_bird(n)],
            Daemon::Frr => self.start_host_frr(n),
        };
        self.routing.hosts[n - 1] = slots;
    }

    /// Stops host `n`'s routing daemon as an operator would (SIGTERM: BIRD
    /// and FRR close their sessions, and the router withdraws at once).
    pub fn stop_host_daemon(&mut self, n: usize, timeout: Duration) {
        for s in self.routing.hosts[n - 1].iter_mut().rev() {
            s.stop("TERM", timeout);
        }
    }

    /// Waits until the router has an established BGP session with every
    /// host and their BFD sessions are up.
    pub fn wait_routing(&self, timeout: Duration) {
        let mut last = String::new();
        let ok = wait_until(timeout, Duration::from_millis(200), || {
            let down: Vec<usize> = NODES.into_iter().filter(|&n| !self.session_up(n)).collect();
            last = format!("sessions not up with {down:?}");
            down.is_empty()
        });
        assert!(
            ok,
            "lab: the router's BGP/BFD sessions did not come up within {timeout:?}: {last}; router log:\n{}",
            self.routing.router.output()
        );
    }
}

/// `ip addr add ADDR/64 dev DEV nodad` in `ns`: usable at once (a link
/// address in DAD would hold the BGP session back).
fn addr6(ns: &str, addr: &str, dev: &str) {
    let cidr = format!("{addr}/64");
    ip_in(ns, &["-6", "addr", "add", &cidr, "dev", dev, "nodad"]);
}

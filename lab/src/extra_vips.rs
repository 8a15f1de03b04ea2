//! More VIPs than the lab's one IPv4 VIP: a second network (each host's
//! `eth1` on a second bridge `br1` in the bridge namespace, addresses in
//! 198.18.0.0/15), Redis listening on every VIP, per-interface MACs and
//! addresses, and a sampler of which node holds which VIP. Only the lab's
//! own namespaces are touched.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::command::{ip_in, sysctl};
use crate::monitor::IpBatch;
use crate::{check_node, node_ip, Lab, NODES, VIP4};

/// The VIP on the second network, and its prefix.
pub const NET2_VIP: &str = "198.18.0.100";
pub const NET2_VIP_CIDR: &str = "198.18.0.100/24";
/// The client's address on the second network.
pub const CLIENT_IP2: &str = "198.18.0.50";

/// Node `n`'s address on the second network.
pub fn node_ip2(n: usize) -> String {
    check_node(n);
    format!("198.18.0.1{n}")
}

impl Lab {
    /// Builds the second network: `br1` in the bridge namespace, a veth
    /// pair per host (`wn{n}`/`wcl` on the bridge, `eth1` in the host),
    /// the hosts' addresses on it. Call once, before the watchers start.
    pub fn add_second_network(&self) {
        let br = self.ns_bridge();
        ip_in(
            &br,
            &[
                "link",
                "add",
                "br1",
                "type",
                "bridge",
                "mcast_snooping",
                "0",
            ],
        );
        ip_in(&br, &["link", "set", "br1", "up"]);
        let hosts = NODES
            .iter()
            .map(|&n| (self.ns(n), format!("wn{n}"), node_ip2(n)))
            .chain([(self.ns_client(), "wcl".into(), CLIENT_IP2.to_string())]);
        for (ns, port, addr) in hosts {
            ip_in(
                &br,
                &[
                    "link", "add", &port, "type", "veth", "peer", "name", "eth1", "netns", &ns,
                ],
            );
            ip_in(&br, &["link", "set", &port, "master", "br1", "up"]);
            sysctl(&ns, "net.ipv6.conf.eth1.accept_dad=0");
            ip_in(&ns, &["addr", "add", &format!("{addr}/24"), "dev", "eth1"]);
            ip_in(&ns, &["link", "set", "eth1", "up"]);
        }
    }

    /// Makes every node's Redis listen on its own address and on `vips`
    /// too (whether it holds them or not, as the lab's Redis does for the
    /// IPv4 VIP), so that a client reaches whichever node holds each. The
    /// node's address stays first. Lasts until that Redis restarts.
    pub fn redis_listen_on_vips(&self, vips: &[&str]) {
        for n in NODES {
            // Binding an IPv6 VIP the node does not hold needs this, as
            // ip_nonlocal_bind does for IPv4.
            sysctl(&self.ns(n), "net.ipv6.ip_nonlocal_bind=1");
            let mut bind = vec![node_ip(n), VIP4.to_string()];
            bind.extend(vips.iter().map(|v| v.to_string()));
            let (out, err) = self.redis_cli(n, &["CONFIG", "SET", "bind", &bind.join(" ")]);
            assert_eq!(out, "OK", "CONFIG SET bind on n{n}: {err}");
        }
    }

    /// MAC address of node `n`'s `iface`.
    pub fn mac_on(&self, n: usize, iface: &str) -> String {
        let o = ip_in(&self.ns(n), &["-j", "link", "show", "dev", iface]);
        let v: Value = serde_json::from_slice(&o.stdout).unwrap_or(Value::Null);
        v[0]["address"]
            .as_str()
            .unwrap_or_else(|| panic!("lab: no MAC for {iface} on n{n}"))
            .to_string()
    }

    /// Node `n`'s addresses on `iface`, each as `ip -j addr` describes it
    /// (`local`, `prefixlen`, `secondary`, `preferred_life_time`, ...).
    pub fn addr_info(&self, n: usize, iface: &str) -> Vec<Value> {
        let o = ip_in(&self.ns(n), &["-j", "addr", "show", "dev", iface]);
        let v: Value = serde_json::from_slice(&o.stdout).unwrap_or(Value::Null);
        v[0]["addr_info"].as_array().cloned().unwrap_or_default()
    }

    /// Nodes holding `addr` on `iface`.
    pub fn holders_on(&self, iface: &str, addr: &str) -> Vec<usize> {
        NODES
            .into_iter()
            .filter(|&n| self.addr_info(n, iface).iter().any(|a| a["local"] == addr))
            .collect()
    }
}

/// One sample of a [`VipSampler`]: per VIP, the nodes holding it.
#[derive(Clone, Debug)]
pub struct VipSample {
    /// Since the sampler started.
    pub at: Duration,
    pub holders: BTreeMap<String, Vec<usize>>,
}

/// Samples, every `period`, which nodes hold each of some VIPs (on any
/// interface), through one `ip -batch` process per node.
pub struct VipSampler {
    vips: Vec<String>,
    batches: Vec<IpBatch>,
    start: Instant,
    pub samples: Vec<VipSample>,
}

impl VipSampler {
    pub fn new(lab: &Lab, vips: &[&str]) -> VipSampler {
        VipSampler {
            vips: vips.iter().map(|v| v.to_string()).collect(),
            batches: NODES.iter().map(|&n| IpBatch::new(&lab.ns(n))).collect(),
            start: Instant::now(),
            samples: Vec::new(),
        }
    }

    /// Takes one sample and returns it.
    pub fn sample(&mut self) -> &VipSample {
        let mut holders: BTreeMap<String, Vec<usize>> =
            self.vips.iter().map(|v| (v.clone(), Vec::new())).collect();
        for (i, b) in self.batches.iter_mut().enumerate() {
            let links = b.query("address show").unwrap_or(Value::Null);
            for link in links.as_array().into_iter().flatten() {
                for a in link["addr_info"].as_array().into_iter().flatten() {
                    if let Some(h) = a["local"].as_str().and_then(|l| holders.get_mut(l)) {
                        h.push(i + 1);
                    }
                }
            }
        }
        self.samples.push(VipSample {
            at: self.start.elapsed(),
            holders,
        });
        self.samples.last().expect("just pushed")
    }

    /// Samples every `period` until `done` holds for a sample or `timeout`
    /// passes; returns whether `done` held.
    pub fn until(
        &mut self,
        timeout: Duration,
        period: Duration,
        done: impl Fn(&VipSample) -> bool,
    ) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            let t = Instant::now();
            if done(self.sample()) {
                return true;
            }
            if t >= deadline {
                return false;
            }
            std::thread::sleep(period.saturating_sub(t.elapsed()));
        }
    }

    /// The first time `vip` was held by `node` alone, if it was.
    pub fn first_alone(&self, vip: &str, node: usize) -> Option<Duration> {
        self.samples
            .iter()
            .find(|s| s.holders.get(vip).is_some_and(|h| h == &[node]))
            .map(|s| s.at)
    }

    /// The samples in which some VIP had two holders or more.
    pub fn doubles(&self) -> Vec<&VipSample> {
        self.samples
            .iter()
            .filter(|s| s.holders.values().any(|h| h.len() > 1))
            .collect()
    }
}

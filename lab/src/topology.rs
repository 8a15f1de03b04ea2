//! The lab's network: namespaces, the bridge, each host's veth and
//! addresses, re-creating a host's interface, and reaping labs abandoned
//! by killed runs. Only the lab's own namespaces are ever touched: every
//! link is created from inside the bridge namespace.

use std::fs;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::command::{ip, ip_in, must, sysctl};
use crate::{node_ip, node_ip6, now_epoch, Lab, CLIENT_IP, CLIENT_IP6};

/// Name of the file in a lab's temp dir holding the pid of the test process.
pub(crate) const OWNER_FILE: &str = "owner.pid";
/// Suffixes of a lab's namespace names, after the 8-char prefix.
/// `sc` is a [`Scratch`](crate::scratch::Scratch) namespace, `rt` the
/// routed lab's router.
const NS_SUFFIXES: [&str; 7] = ["br", "n1", "n2", "n3", "cl", "sc", "rt"];

/// A network namespace this process created; dropping it kills every
/// process left in it and deletes it.
pub struct Namespace {
    name: String,
}

impl Namespace {
    pub fn add(name: &str) -> Namespace {
        assert!(name.len() <= 15, "lab: namespace name {name} too long");
        must(ip(&["netns", "add", name]));
        Namespace {
            name: name.to_string(),
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }
}

impl Drop for Namespace {
    fn drop(&mut self) {
        kill_all_in(&self.name);
        delete_ns(&self.name);
    }
}

/// A host on the lab's bridge.
#[derive(Clone, Copy)]
enum Host {
    Node(usize),
    Client,
}

const HOSTS: [Host; 4] = [Host::Node(1), Host::Node(2), Host::Node(3), Host::Client];

impl Lab {
    /// The bridge namespace with `br0`, then every host's namespace with
    /// its `eth0` on the bridge and its addresses.
    pub(crate) fn build_network(&mut self) {
        let br = self.ns_bridge();
        self.add_ns(&br);
        // The bridge namespace needs no IPv6; disabling it keeps its router
        // solicitations and MLD reports out of the captures.
        sysctl(&br, "net.ipv6.conf.all.disable_ipv6=1");
        sysctl(&br, "net.ipv6.conf.default.disable_ipv6=1");
        // Multicast snooping could drop neighbour solicitations to groups the
        // bridge has not seen joined; flooding is what a dumb switch does.
        ip_in(
            &br,
            &[
                "link",
                "add",
                "br0",
                "type",
                "bridge",
                "mcast_snooping",
                "0",
            ],
        );
        ip_in(&br, &["link", "set", "br0", "up"]);
        for host in HOSTS {
            let ns = self.host_ns(host);
            self.add_ns(&ns);
            self.plug(host);
            ip_in(&ns, &["link", "set", "lo", "up"]);
            // Without DAD, IPv6 addresses are usable at once, and a moved VIP
            // is not refused as a duplicate.
            for key in ["all", "default", "eth0"] {
                sysctl(&ns, &format!("net.ipv6.conf.{key}.accept_dad=0"));
            }
            // Redis listens on the VIP on every node (see start_redis); the
            // bind must succeed while the node does not hold the VIP.
            sysctl(&ns, "net.ipv4.ip_nonlocal_bind=1");
            self.address(host);
            ip_in(&ns, &["link", "set", "eth0", "up"]);
        }
    }

    pub(crate) fn add_ns(&mut self, name: &str) {
        self.namespaces.push(Namespace::add(name));
    }

    fn host_ns(&self, host: Host) -> String {
        match host {
            Host::Node(n) => self.ns(n),
            Host::Client => self.ns_client(),
        }
    }

    /// A veth pair, created from inside the bridge namespace so the root
    /// namespace never sees either end: `vn{n}`/`vcl` on the bridge,
    /// `eth0` in the host's namespace.
    fn plug(&self, host: Host) {
        let port = bridge_port(host);
        ip_in(
            &self.ns_bridge(),
            &[
                "link",
                "add",
                &port,
                "type",
                "veth",
                "peer",
                "name",
                "eth0",
                "netns",
                &self.host_ns(host),
            ],
        );
        ip_in(
            &self.ns_bridge(),
            &["link", "set", &port, "master", "br0", "up"],
        );
    }

    /// The host's own addresses on eth0 (idempotent).
    fn address(&self, host: Host) {
        let (v4, v6) = match host {
            Host::Node(n) => (node_ip(n), node_ip6(n)),
            Host::Client => (CLIENT_IP.to_string(), CLIENT_IP6.to_string()),
        };
        let ns = self.host_ns(host);
        ip_in(
            &ns,
            &["addr", "replace", &format!("{v4}/24"), "dev", "eth0"],
        );
        let v6 = format!("{v6}/64");
        ip_in(&ns, &["addr", "replace", &v6, "dev", "eth0", "nodad"]);
    }

    /// Node `n`'s own addresses, as the lab configured them (idempotent):
    /// what a network manager puts back after a flush.
    pub fn readd_node_addrs(&self, n: usize) {
        self.address(Host::Node(n));
    }

    /// Whether node `n` has an eth0 at all.
    pub(crate) fn has_eth0(&self, n: usize) -> bool {
        self.run_node(n, &["ip", "link", "show", "eth0"])
            .status
            .success()
    }

    /// Deletes node `n`'s eth0 (its veth peer in the bridge namespace goes
    /// with it) and after `gap` builds it again as the lab did: as when a NIC
    /// is re-plugged, a new interface with a new MAC, the node's addresses
    /// re-added by hand. Returns when (epoch) the last step, link up, began.
    pub fn recreate_eth0(&self, n: usize, gap: Duration) -> f64 {
        let _ = self.run_node(n, &["ip", "link", "del", "eth0"]);
        std::thread::sleep(gap);
        self.plug(Host::Node(n));
        self.readd_node_addrs(n);
        let up = now_epoch();
        ip_in(&self.ns(n), &["link", "set", "eth0", "up"]);
        up
    }
}

fn bridge_port(host: Host) -> String {
    match host {
        Host::Node(n) => node_port(n),
        Host::Client => "vcl".into(),
    }
}

/// Node `n`'s veth port in the bridge namespace.
pub(crate) fn node_port(n: usize) -> String {
    format!("vn{n}")
}

/// Removes labs left behind by runs that died without unwinding (a killed
/// test process): their namespaces and Redis processes would otherwise pile
/// up across runs. A lab is abandoned when its temp dir names an owner pid
/// that no longer exists; labs without that file are left alone, as they may
/// belong to someone else.
pub(crate) fn reap_stale_labs() {
    let list = ip(&["netns", "list"]);
    let list = String::from_utf8_lossy(&list.stdout);
    // Lines look like "svlab12cn1 (id: 3)" or just the name.
    let names: Vec<&str> = list
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|n| {
            n.len() == 10 && n.starts_with("svl") && NS_SUFFIXES.iter().any(|s| n.ends_with(s))
        })
        .collect();
    let mut prefixes: Vec<&str> = names.iter().map(|n| &n[..8]).collect();
    prefixes.sort_unstable();
    prefixes.dedup();
    for p in prefixes {
        let dir = lab_dir(p);
        let Ok(owner) = fs::read_to_string(dir.join(OWNER_FILE)) else {
            continue;
        };
        let owner = owner.trim();
        if owner.is_empty() || Path::new("/proc").join(owner).exists() {
            continue;
        }
        eprintln!("lab: removing abandoned lab {p} (its test process {owner} is gone)");
        let mine: Vec<&str> = names.iter().copied().filter(|n| n.starts_with(p)).collect();
        for ns in &mine {
            kill_all_in(ns);
        }
        for ns in &mine {
            delete_ns(ns);
            // A scratch namespace's files for `ip netns exec`.
            let _ = fs::remove_dir_all(Path::new("/etc/netns").join(ns));
        }
        let _ = fs::remove_dir_all(&dir);
    }
}

/// The temp dir of the lab whose namespaces start with `prefix`.
pub(crate) fn lab_dir(prefix: &str) -> std::path::PathBuf {
    std::env::temp_dir().join(format!("sentinel-vip-lab-{prefix}"))
}

/// SIGKILLs every process in namespace `ns`, until none is left (killed
/// processes may have forked meanwhile).
pub(crate) fn kill_all_in(ns: &str) {
    for _ in 0..50 {
        let pids = ip(&["netns", "pids", ns]);
        let pids = String::from_utf8_lossy(&pids.stdout).to_string();
        let pids: Vec<&str> = pids.split_whitespace().collect();
        if pids.is_empty() {
            return;
        }
        let _ = Command::new("kill").arg("-9").args(&pids).output();
        std::thread::sleep(Duration::from_millis(20));
    }
    eprintln!("lab: processes still running in namespace {ns}");
}

pub(crate) fn delete_ns(ns: &str) {
    let o = ip(&["netns", "del", ns]);
    if !o.status.success() {
        eprintln!(
            "lab: cannot delete namespace {ns}: {}",
            String::from_utf8_lossy(&o.stderr).trim()
        );
    }
}

/// `svl` + 5 base-36 chars from pid and time, so concurrent and successive
/// runs do not collide; the longest name (`{p}br`) stays well under 15.
pub(crate) fn unique_prefix() -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let mut x = (u128::from(std::process::id()) << 32) ^ nanos;
    // Mix, so that the low digits differ even for close timestamps.
    x = x.wrapping_mul(0x9E37_79B9_7F4A_7C15_F39C_C060_5CED_C835);
    let mut x = (x >> 64) as u64;
    let digits = b"0123456789abcdefghijklmnopqrstuvwxyz";
    let mut s = String::from("svl");
    for _ in 0..5 {
        s.push(digits[(x % 36) as usize] as char);
        x /= 36;
    }
    s
}

#[cfg(test)]
mod tests {
    #[test]
    fn prefix_is_short_and_safe() {
        let p = super::unique_prefix();
        assert_eq!(p.len(), 8);
        assert!(p.chars().all(|c| c.is_ascii_alphanumeric()));
    }
}

//! Faults injected into the lab and their undoing: a node cut off from
//! the bridge, its interface taken down, flushed or deleted, the VIP
//! deleted by hand, the watchers' Sentinel traffic dropped by nftables.
//! Pausing and killing processes is in the process modules; [`Lab::heal`]
//! undoes all of it after a case that failed half-way.

use std::time::Duration;

use crate::command::{find_in_path, ip_in};
use crate::process::NOBODY;
use crate::topology::node_port;
use crate::{wait_until, Lab, NODES, POLL, SENTINEL_PORT, VIP4_CIDR};

/// nftables table that blinds the watchers.
const NFT_TABLE: &str = "svlab";

impl Lab {
    /// Cuts node `n` off: its port on the bridge goes down, its own link
    /// stays up (so nothing on the node notices but silence).
    pub fn cut_off(&self, n: usize) {
        ip_in(&self.ns_bridge(), &["link", "set", &node_port(n), "down"]);
    }

    /// Undoes [`Lab::cut_off`].
    pub fn reconnect(&self, n: usize) {
        ip_in(&self.ns_bridge(), &["link", "set", &node_port(n), "up"]);
    }

    /// Node `n`'s eth0 down or up.
    pub fn set_link(&self, n: usize, up: bool) {
        let state = if up { "up" } else { "down" };
        ip_in(&self.ns(n), &["link", "set", "eth0", state]);
    }

    /// Every address off node `n`'s eth0, as `ip addr flush` does.
    pub fn flush_addrs(&self, n: usize) {
        ip_in(&self.ns(n), &["addr", "flush", "dev", "eth0"]);
    }

    /// Deletes the IPv4 VIP from node `n` by hand.
    pub fn delete_vip(&self, n: usize) {
        ip_in(&self.ns(n), &["addr", "del", VIP4_CIDR, "dev", "eth0"]);
    }

    /// Drops the watcher's own traffic to Sentinel in node `n`'s
    /// namespace: output from uid nobody (the watchers' user) to the
    /// Sentinel port. Sentinel runs as root, so its traffic still flows.
    pub fn block_watcher(&self, n: usize) {
        assert!(
            find_in_path("nft").is_some(),
            "`nft` is needed to block the watchers' connections: apt-get install nftables"
        );
        for cmd in [
            format!("add table inet {NFT_TABLE}"),
            format!("add chain inet {NFT_TABLE} out {{ type filter hook output priority 0 ; }}"),
            format!(
                "add rule inet {NFT_TABLE} out meta skuid {NOBODY} tcp dport {SENTINEL_PORT} drop"
            ),
        ] {
            let o = self.run_node(n, &["nft", &cmd]);
            assert!(
                o.status.success(),
                "nft {cmd} on n{n}: {}",
                String::from_utf8_lossy(&o.stderr).trim()
            );
        }
    }

    /// Undoes [`Lab::block_watcher`] (nothing if not blocked).
    pub fn unblock_watcher(&self, n: usize) {
        let _ = self.run_node(n, &["nft", &format!("delete table inet {NFT_TABLE}")]);
    }

    /// After a case that failed half-way: every redis-server resumed, no
    /// firewall, every eth0 present, up and addressed, every node on the
    /// bridge, every Sentinel running and in agreement, Sentinel's
    /// down-after as the lab was built. Watchers and placing the VIP are
    /// the caller's.
    pub fn heal(&mut self) {
        self.resume_all_redis();
        for n in NODES {
            self.unblock_watcher(n);
            self.unisolate(n);
            if !self.has_eth0(n) {
                self.recreate_eth0(n, Duration::ZERO);
            }
            let port = node_port(n);
            let _ = self.run(&self.ns_bridge(), &["ip", "link", "set", &port, "up"]);
            let _ = self.run_node(n, &["ip", "link", "set", "eth0", "up"]);
            self.readd_node_addrs(n);
            if !self.sentinel_running(n) {
                self.restart_sentinel(n);
            }
        }
        let answer = wait_until(Duration::from_secs(20), POLL, || {
            self.sentinels_agree().is_some()
        });
        assert!(answer, "Sentinels do not agree on a master");
        self.set_down_after(self.opts.down_after);
    }
}

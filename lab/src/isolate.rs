//! The fence's partition: a node cut off from the other Redis/Sentinel
//! hosts while the client still reaches it (nftables in that node's
//! namespace drops every packet to or from the other nodes' addresses,
//! IPv4 and IPv6; ARP still flows, as on a switch that filters above
//! layer 2). Nothing times out faster than it would in a real partition:
//! the packets vanish, no connection is refused.

use crate::command::find_in_path;
use crate::{node_ip, node_ip6, Lab, NODES};

/// nftables table of the cut, in the cut node's namespace.
const NFT_TABLE: &str = "svlab_isolate";

impl Lab {
    /// Cuts node `n` off from the other two nodes, not from the client.
    pub fn isolate(&self, n: usize) {
        assert!(
            find_in_path("nft").is_some(),
            "`nft` is needed to cut a node off from its peers: apt-get install nftables"
        );
        let peers: Vec<usize> = NODES.into_iter().filter(|&p| p != n).collect();
        let v4 = peers
            .iter()
            .map(|&p| node_ip(p))
            .collect::<Vec<_>>()
            .join(", ");
        let v6 = peers
            .iter()
            .map(|&p| node_ip6(p))
            .collect::<Vec<_>>()
            .join(", ");
        let t = NFT_TABLE;
        let mut cmds = vec![
            format!("add table inet {t}"),
            format!("add chain inet {t} in {{ type filter hook input priority -10 ; }}"),
            format!("add chain inet {t} out {{ type filter hook output priority -10 ; }}"),
        ];
        for (family, set) in [("ip", &v4), ("ip6", &v6)] {
            cmds.push(format!(
                "add rule inet {t} in {family} saddr {{ {set} }} drop"
            ));
            cmds.push(format!(
                "add rule inet {t} out {family} daddr {{ {set} }} drop"
            ));
        }
        for cmd in cmds {
            let o = self.run_node(n, &["nft", &cmd]);
            assert!(
                o.status.success(),
                "nft {cmd} on n{n}: {}",
                String::from_utf8_lossy(&o.stderr).trim()
            );
        }
    }

    /// Undoes [`Lab::isolate`] (nothing if `n` is not cut off).
    pub fn unisolate(&self, n: usize) {
        let _ = self.run_node(n, &["nft", &format!("delete table inet {NFT_TABLE}")]);
    }
}

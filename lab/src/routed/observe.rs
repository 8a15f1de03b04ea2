//! What the routed lab's world sees, and the faults done to it: who holds
//! the VIP on `lo` (and with which scope), a client writing through the
//! routed VIP, frames captured on every host, a host cut off whole
//! (silent: its daemons send nothing, not even a withdrawal) or from the
//! other hosts only (the router still reaches it), and the undoing.

use std::path::PathBuf;
use std::time::Duration;

use serde_json::Value;

use super::{link_ip, router_port, VIP, VIP6};
use crate::command::{ip_in, out_err};
use crate::process::Slot;
use crate::{node_ip, node_of_ip, wait_until, Lab, NODES};

/// nftables table of the routed lab's faults.
const NFT_TABLE: &str = "svroute";
/// Debian's nft, by path (`check_tools` requires it).
const NFT: &str = "/usr/sbin/nft";

impl Lab {
    /// The VIP on host `n`'s `lo`, as `ip -j addr` shows it: its prefix
    /// length and scope (`global`, `host`...).
    pub fn routed_vip_on(&self, n: usize) -> Option<(u8, String)> {
        self.routed_addr_on(n, VIP)
    }

    /// The same for any address `addr` (the IPv6 VIP).
    pub fn routed_addr_on(&self, n: usize, addr: &str) -> Option<(u8, String)> {
        let o = ip_in(&self.ns(n), &["-j", "addr", "show", "dev", "lo"]);
        let v: Value = serde_json::from_slice(&o.stdout).ok()?;
        v.as_array()?
            .iter()
            .flat_map(|l| l["addr_info"].as_array().cloned().unwrap_or_default())
            .find(|a| a["local"] == addr)
            .and_then(|a| {
                let prefix = u8::try_from(a["prefixlen"].as_u64()?).ok()?;
                Some((prefix, a["scope"].as_str()?.to_string()))
            })
    }

    /// Hosts with the VIP on `lo`.
    pub fn routed_holders(&self) -> Vec<usize> {
        self.routed_holders_of(VIP)
    }

    /// Hosts with `addr` on `lo`.
    pub fn routed_holders_of(&self, addr: &str) -> Vec<usize> {
        NODES
            .into_iter()
            .filter(|&n| self.routed_addr_on(n, addr).is_some())
            .collect()
    }

    /// Waits until every Sentinel names a master other than `old`, that
    /// host alone holds the VIP and the router sends the VIP there;
    /// returns it. `old` = 0: any master.
    pub fn wait_routed_holder(&self, old: usize, timeout: Duration) -> usize {
        let mut seen = String::new();
        let mut found = None;
        wait_until(timeout, crate::POLL, || {
            let m = self.sentinels_agree().filter(|&m| m != old);
            let (holders, via) = (self.routed_holders(), self.route_via());
            seen = format!("Sentinels say {m:?}, holders {holders:?}, the router sends to {via:?}");
            found = m.filter(|&m| holders == vec![m] && via == Some(m));
            found.is_some()
        });
        found.unwrap_or_else(|| panic!("no single routed holder within {timeout:?}: {seen}"))
    }

    /// `SET key val` through the routed VIP, then which host answered it
    /// (`CONFIG GET bind` names the host's own address first) and that the
    /// host has it.
    pub fn routed_write_lands_on(&self, n: usize, key: &str, val: &str) -> Result<(), String> {
        self.routed_write_via(VIP, n, key, val)
    }

    /// [`Lab::routed_write_lands_on`] through `vip` (the IPv6 VIP).
    pub fn routed_write_via(
        &self,
        vip: &str,
        n: usize,
        key: &str,
        val: &str,
    ) -> Result<(), String> {
        let (out, err) = out_err(&self.client_cli_to(vip, &["SET", key, val]));
        if out != "OK" {
            return Err(format!("SET via the routed VIP {vip}: {out:?} {err:?}"));
        }
        let (out, err) = out_err(&self.client_cli_to(vip, &["CONFIG", "GET", "bind"]));
        let via = out
            .lines()
            .nth(1)
            .and_then(|l| l.split_whitespace().next())
            .and_then(node_of_ip)
            .ok_or_else(|| format!("CONFIG GET bind via the VIP: {out:?} {err:?}"))?;
        if via != n {
            return Err(format!("the VIP answered by n{via}, expected n{n}"));
        }
        let (got, err) = self.redis_cli(n, &["GET", key]);
        if got != val {
            return Err(format!("n{n} has {key}={got:?} ({err}), expected {val:?}"));
        }
        Ok(())
    }

    /// Host `n` cut off whole: every packet in or out of it dropped, so
    /// its daemons fall silent without a goodbye (no BGP withdrawal, no
    /// BFD down), as when the host dies or its link is cut.
    pub fn cut_host(&self, n: usize) {
        let t = NFT_TABLE;
        let rules = format!(
            "table inet {t} {{ chain i {{ type filter hook input priority 0; policy drop; }}; chain o {{ type filter hook output priority 0; policy drop; }}; }}"
        );
        self.nft(&self.ns(n), &rules);
    }

    /// Host `n` cut off from the other hosts (their Sentinels, Redis and
    /// watchers) at the router, while the router and the client still
    /// reach it: its BGP session stays up.
    pub fn cut_from_hosts(&self, n: usize) {
        let t = NFT_TABLE;
        let others: Vec<String> = NODES
            .into_iter()
            .filter(|&m| m != n)
            .map(|m| format!("\"{}\"", router_port(m)))
            .collect();
        let others = others.join(", ");
        let port = router_port(n);
        let rules = format!(
            "table inet {t} {{ chain f {{ type filter hook forward priority 0; iifname \"{port}\" oifname {{ {others} }} drop; iifname {{ {others} }} oifname \"{port}\" drop; }}; }}"
        );
        self.nft(&self.ns_router(), &rules);
    }

    /// Undoes [`Lab::cut_host`] and [`Lab::cut_from_hosts`] (nothing if
    /// neither is in place).
    pub fn uncut(&self) {
        let del = format!("delete table inet {NFT_TABLE}");
        let _ = self.run(&self.ns_router(), &[NFT, &del]);
        for n in NODES {
            let _ = self.run_node(n, &[NFT, &del]);
        }
    }

    fn nft(&self, ns: &str, rules: &str) {
        let o = self.run(ns, &[NFT, rules]);
        assert!(
            o.status.success(),
            "nft in {ns}: {rules}: {}",
            String::from_utf8_lossy(&o.stderr).trim()
        );
    }

    /// The local address host `n` speaks from towards `ip` (`ip route
    /// get`): its own, never the VIP.
    pub fn source_towards(&self, n: usize, ip: &str) -> String {
        let o = ip_in(&self.ns(n), &["-j", "route", "get", ip]);
        let v: Value = serde_json::from_slice(&o.stdout).unwrap_or(Value::Null);
        v[0]["prefsrc"].as_str().unwrap_or("").to_string()
    }

    /// Every host's own addresses (service address on lo, link address),
    /// for checking that a Sentinel names hosts by them only.
    pub fn host_addresses(&self) -> Vec<String> {
        NODES
            .into_iter()
            .flat_map(|n| [node_ip(n), link_ip(n)])
            .collect()
    }
}

/// tcpdump on every interface of each host (`lo` and `eth0`), capturing
/// ARP and ICMPv6 for the whole run: what a VIP on `lo` must never cause.
pub struct FrameWatch {
    slots: Vec<Slot>,
    outs: Vec<PathBuf>,
}

impl FrameWatch {
    /// Starts the captures; returns once each is listening.
    pub fn start(lab: &Lab) -> FrameWatch {
        let mut w = FrameWatch {
            slots: Vec::new(),
            outs: Vec::new(),
        };
        for n in NODES {
            let out = lab.node_dir(n).join("frames.txt");
            let args = ["tcpdump", "-i", "any", "-n", "-l", "-U", "arp or icmp6"].map(String::from);
            w.slots.push(lab.spawn_ns(&lab.ns(n), &args, &[], &out));
            let ok = wait_until(Duration::from_secs(10), Duration::from_millis(20), || {
                std::fs::read_to_string(&out).is_ok_and(|s| s.contains("listening on"))
            });
            assert!(ok, "lab: tcpdump on n{n} did not start listening");
            w.outs.push(out);
        }
        w
    }

    /// Every captured line naming either VIP, with its host.
    pub fn vip_frames(&self) -> Vec<String> {
        self.outs
            .iter()
            .enumerate()
            .flat_map(|(i, p)| {
                std::fs::read_to_string(p)
                    .unwrap_or_default()
                    .lines()
                    .filter(|l| l.contains(VIP) || l.contains(VIP6))
                    .map(|l| format!("n{}: {l}", i + 1))
                    .collect::<Vec<_>>()
            })
            .collect()
    }

    /// How many ARP/ICMPv6 lines were captured in all (some traffic must
    /// have been seen, or the capture proves nothing).
    pub fn frames(&self) -> usize {
        self.outs
            .iter()
            .map(|p| {
                std::fs::read_to_string(p)
                    .unwrap_or_default()
                    .lines()
                    .filter(|l| l.contains(" ARP, ") || l.contains("ICMP6"))
                    .count()
            })
            .sum()
    }
}

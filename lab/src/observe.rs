//! What the world sees, read without changing it: each node's addresses
//! and MAC, who holds the VIP, the client's neighbour entry, and what a
//! client gets when it talks to Redis through the VIP.

use std::process::Output;

use serde_json::Value;

use crate::command::{ip_in, out_err};
use crate::{node_of_ip, Lab, NODES, REDIS_PORT, VIP4};

impl Lab {
    /// Every address on node `n`'s eth0 as (address, prefix length), in the
    /// kernel's order.
    pub fn addrs(&self, n: usize) -> Vec<(String, u8)> {
        let ns = self.ns(n);
        let o = ip_in(&ns, &["-j", "addr", "show", "dev", "eth0"]);
        let v: Value = serde_json::from_slice(&o.stdout)
            .unwrap_or_else(|e| panic!("lab: unparsable `ip -j addr` output in {ns}: {e}"));
        v.as_array()
            .into_iter()
            .flatten()
            .flat_map(|link| link["addr_info"].as_array().cloned().unwrap_or_default())
            .filter_map(|a| {
                let local = a["local"].as_str()?.to_string();
                let prefix = u8::try_from(a["prefixlen"].as_u64()?).ok()?;
                Some((local, prefix))
            })
            .collect()
    }

    /// Whether node `n` has `addr` (e.g. [`VIP4`]) on eth0.
    pub fn holds(&self, n: usize, addr: &str) -> bool {
        self.addrs(n).iter().any(|(a, _)| a == addr)
    }

    /// Nodes holding the IPv4 VIP.
    pub fn holders(&self) -> Vec<usize> {
        self.holders_of(VIP4)
    }

    /// Nodes holding `addr`.
    pub fn holders_of(&self, addr: &str) -> Vec<usize> {
        NODES.into_iter().filter(|&n| self.holds(n, addr)).collect()
    }

    /// Every node's address list, for before/after comparisons.
    pub fn all_addrs(&self) -> Vec<Vec<(String, u8)>> {
        NODES.iter().map(|&n| self.addrs(n)).collect()
    }

    /// The master the Sentinels agree on, if `accept` takes it and that
    /// node alone holds the VIP: the state every failover must end in.
    pub fn vip_alone_on_master(&self, accept: impl Fn(usize) -> bool) -> Option<usize> {
        self.sentinels_agree()
            .filter(|&m| accept(m))
            .filter(|&m| self.holders() == vec![m])
    }

    /// MAC address of node `n`'s eth0.
    pub fn mac(&self, n: usize) -> String {
        let ns = self.ns(n);
        let o = ip_in(&ns, &["-j", "link", "show", "dev", "eth0"]);
        let v: Value = serde_json::from_slice(&o.stdout)
            .unwrap_or_else(|e| panic!("lab: unparsable `ip -j link` output in {ns}: {e}"));
        v[0]["address"]
            .as_str()
            .unwrap_or_else(|| panic!("lab: no MAC for eth0 in {ns}"))
            .to_string()
    }

    /// The client's neighbour entry for `ip` as (lladdr, state); lladdr is
    /// empty for entries without one (INCOMPLETE, FAILED), and several
    /// states are joined with ','.
    pub fn client_neigh(&self, ip_addr: &str) -> Option<(String, String)> {
        let out = ip_in(&self.ns_client(), &["-j", "neigh", "show", ip_addr]);
        let v: Value = serde_json::from_slice(&out.stdout).ok()?;
        let e = v.as_array()?.iter().find(|e| e["dst"] == ip_addr)?;
        let mac = e["lladdr"].as_str().unwrap_or("").to_string();
        let state = match &e["state"] {
            Value::Array(a) => a
                .iter()
                .filter_map(Value::as_str)
                .collect::<Vec<_>>()
                .join(","),
            Value::String(s) => s.clone(),
            _ => String::new(),
        };
        Some((mac, state))
    }

    /// The MAC the client currently resolves the IPv4 VIP to ("" if none).
    pub fn client_vip_mac(&self) -> String {
        self.client_neigh(VIP4).map(|(m, _)| m).unwrap_or_default()
    }

    // ----- the client --------------------------------------------------------

    /// redis-cli from the client namespace to `host`:6379, with a 2 s limit
    /// (redis-cli itself would wait much longer on an unreachable host).
    pub fn client_cli_to(&self, host: &str, args: &[&str]) -> Output {
        let port = REDIS_PORT.to_string();
        let cli = self.programs().cli;
        let mut full = vec!["timeout", "2", cli, "-h", host, "-p", &port];
        full.extend_from_slice(args);
        self.run(&self.ns_client(), &full)
    }

    /// PING through the VIP (also makes the client resolve the VIP's MAC).
    pub fn client_ping(&self) -> Result<(), String> {
        let (out, err) = out_err(&self.client_cli_to(VIP4, &["PING"]));
        if out == "PONG" {
            Ok(())
        } else {
            Err(format!("PING via VIP: {out} {err}"))
        }
    }

    /// `SET key val` through the VIP. Only a master accepts it (replicas
    /// answer READONLY), so success means the VIP leads to a master.
    fn client_write(&self, key: &str, val: &str) -> Result<(), String> {
        let o = self.client_cli_to(VIP4, &["SET", key, val]);
        let (out, err) = out_err(&o);
        // redis-cli exits 0 on error replies, so the text decides.
        if out == "OK" {
            Ok(())
        } else {
            Err(format!(
                "SET via VIP: status {:?}, stdout {out:?}, stderr {err:?}",
                o.status.code()
            ))
        }
    }

    /// Which node answers on the VIP: `CONFIG GET bind` returns the node's
    /// own address first.
    fn client_node_via_vip(&self) -> Result<usize, String> {
        let (out, err) = out_err(&self.client_cli_to(VIP4, &["CONFIG", "GET", "bind"]));
        let mut lines = out.lines();
        if lines.next() != Some("bind") {
            return Err(format!("CONFIG GET bind via VIP: {out:?} {err:?}"));
        }
        let first = lines
            .next()
            .and_then(|l| l.split_whitespace().next())
            .unwrap_or("");
        node_of_ip(first).ok_or_else(|| format!("CONFIG GET bind via VIP: unknown bind {out:?}"))
    }

    /// Writes through the VIP and checks the write landed on node `n`: the
    /// node answering on the VIP is `n`, and `n` itself returns the value.
    pub fn client_write_lands_on(&self, n: usize, key: &str, val: &str) -> Result<(), String> {
        self.client_write(key, val)?;
        let via = self.client_node_via_vip()?;
        if via != n {
            return Err(format!("VIP answered by n{via}, expected n{n}"));
        }
        let (got, err) = self.redis_cli(n, &["GET", key]);
        if got != val {
            return Err(format!("n{n} has {key}={got:?} ({err}), expected {val:?}"));
        }
        Ok(())
    }
}

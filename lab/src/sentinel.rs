//! Asking the lab's Redis servers and Sentinels (redis-cli from inside
//! each node's namespace) and the Sentinel commands tests send: who is
//! master, whether the Sentinels agree and have settled, readiness, and
//! forcing a failover. Nothing here touches addresses.

use std::time::{Duration, Instant};

use serde_json::{Map, Value};

use crate::command::out_err;
use crate::{node_ip, node_of_ip, wait_until, Lab, MASTER_NAME, NODES, REDIS_PORT};
use crate::{POLL, SENTINEL_PORT};

impl Lab {
    /// The client program against `port` on node `n`, from inside its
    /// namespace. Returns (trimmed stdout, trimmed stderr).
    fn cli(&self, n: usize, port: u16, args: &[&str]) -> (String, String) {
        let (ip, port) = (node_ip(n), port.to_string());
        let mut full = vec!["timeout", "3", self.programs().cli, "-h", &ip, "-p", &port];
        if port == REDIS_PORT.to_string() {
            full.extend(self.data_auth());
        }
        full.extend_from_slice(args);
        out_err(&self.run_node(n, &full))
    }

    /// redis-cli against node `n`'s redis-server.
    pub fn redis_cli(&self, n: usize, args: &[&str]) -> (String, String) {
        self.cli(n, REDIS_PORT, args)
    }

    /// redis-cli against node `n`'s Sentinel.
    pub fn sentinel_cli(&self, n: usize, args: &[&str]) -> (String, String) {
        self.cli(n, SENTINEL_PORT, args)
    }

    /// A Sentinel command's reply as JSON (redis-cli --json).
    fn sentinel_json(&self, n: usize, args: &[&str]) -> Result<Value, String> {
        let mut full = vec!["--json"];
        full.extend_from_slice(args);
        let (out, err) = self.sentinel_cli(n, &full);
        serde_json::from_str(&out)
            .map_err(|e| format!("sentinel n{n} {args:?}: unparsable reply {out:?} {err:?}: {e}"))
    }

    /// The master's IP according to node `n`'s Sentinel.
    pub fn sentinel_master(&self, n: usize) -> Result<String, String> {
        let v = self.sentinel_json(n, &["SENTINEL", "get-master-addr-by-name", MASTER_NAME])?;
        v.get(0)
            .and_then(Value::as_str)
            .map(str::to_string)
            .ok_or_else(|| format!("sentinel n{n}: no master address in {v}"))
    }

    /// The master's node number according to the first Sentinel that
    /// answers.
    pub fn master_node(&self) -> usize {
        let mut errs = Vec::new();
        for n in NODES {
            match self.sentinel_master(n) {
                Ok(ip) => {
                    return node_of_ip(&ip)
                        .unwrap_or_else(|| panic!("lab: Sentinel names unknown master {ip}"))
                }
                Err(e) => errs.push(e),
            }
        }
        panic!("lab: no Sentinel named the master: {errs:?}");
    }

    /// The master's node number if all three Sentinels answer and agree.
    pub fn sentinels_agree(&self) -> Option<usize> {
        let ips: Vec<String> = NODES
            .iter()
            .map(|&n| self.sentinel_master(n).ok())
            .collect::<Option<_>>()?;
        if ips.iter().all(|ip| *ip == ips[0]) {
            node_of_ip(&ips[0])
        } else {
            None
        }
    }

    /// The master the two Sentinels other than `silent`'s agree on. Only
    /// that node's Sentinel is gone: its data node may be the master.
    pub fn live_sentinels_master(&self, silent: usize) -> Option<usize> {
        let v: Vec<usize> = NODES
            .into_iter()
            .filter(|&n| n != silent)
            .map(|n| self.sentinel_master(n).ok().and_then(|ip| node_of_ip(&ip)))
            .collect::<Option<_>>()?;
        (v[0] == v[1]).then_some(v[0])
    }

    /// The master the two Sentinels other than `cut`'s agree on, if not
    /// `cut`: the whole host is gone, so its data node cannot be it.
    pub fn majority_master(&self, cut: usize) -> Option<usize> {
        self.live_sentinels_master(cut).filter(|&m| m != cut)
    }

    /// Node `n`'s Sentinel's `SENTINEL MASTER` reply as a map.
    fn master_info(&self, n: usize) -> Option<Map<String, Value>> {
        let v = self
            .sentinel_json(n, &["SENTINEL", "MASTER", MASTER_NAME])
            .ok()?;
        entries(&Value::Array(vec![v])).pop()
    }

    /// The master, if every Sentinel names it and none sees it down or is
    /// failing it over.
    pub(crate) fn settled_master(&self) -> Option<usize> {
        let m = self.sentinels_agree()?;
        NODES
            .iter()
            .all(|&n| {
                self.master_info(n)
                    .is_some_and(|i| i.get("flags").and_then(Value::as_str) == Some("master"))
            })
            .then_some(m)
    }

    /// The highest config-epoch any Sentinel reports.
    pub fn config_epoch(&self) -> u64 {
        NODES
            .iter()
            .filter_map(|&n| {
                self.master_info(n)?
                    .get("config-epoch")?
                    .as_str()?
                    .parse()
                    .ok()
            })
            .max()
            .unwrap_or(0)
    }

    /// Forces a failover (`SENTINEL FAILOVER`) through the first Sentinel
    /// that accepts it, now.
    pub fn sentinel_failover(&self) {
        let mut errs = Vec::new();
        for n in NODES {
            let (out, err) = self.sentinel_cli(n, &["SENTINEL", "FAILOVER", MASTER_NAME]);
            if out == "OK" {
                return;
            }
            errs.push(format!("n{n}: {out} {err}"));
        }
        panic!("lab: SENTINEL FAILOVER refused: {errs:?}");
    }

    /// Starts a failover with SENTINEL FAILOVER once Sentinel can take one:
    /// settled, and a replica fit to promote (until Sentinel has fresh INFO
    /// from one, it answers NOGOODSLAVE). Sentinel `via` is asked first, so
    /// that the leader varies. Returns the old master.
    pub fn start_failover(&self, via: usize, timeout: Duration) -> usize {
        let deadline = Instant::now() + timeout;
        let mut last = String::new();
        loop {
            match self.settled_master() {
                Some(m) => {
                    for k in (0..3).map(|i| 1 + (via - 1 + i) % 3) {
                        let (out, err) =
                            self.sentinel_cli(k, &["SENTINEL", "FAILOVER", MASTER_NAME]);
                        if out == "OK" {
                            return m;
                        }
                        last = format!("n{k}: {out} {err}");
                    }
                }
                None => last = "Sentinels not settled on one master".into(),
            }
            assert!(
                Instant::now() < deadline,
                "SENTINEL FAILOVER not accepted within {timeout:?}: {last}"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Sets every Sentinel's `down-after-milliseconds` for the master.
    pub fn set_down_after(&self, down_after: Duration) {
        let ms = down_after.as_millis().to_string();
        for n in NODES {
            let (out, err) = self.sentinel_cli(
                n,
                &[
                    "SENTINEL",
                    "SET",
                    MASTER_NAME,
                    "down-after-milliseconds",
                    &ms,
                ],
            );
            assert_eq!(out, "OK", "SENTINEL SET down-after on n{n}: {err}");
        }
    }

    /// Waits until the master has both replicas online, so that the
    /// Sentinels' first INFO already lists them (otherwise they would only
    /// learn of them at the next 10 s INFO refresh).
    pub(crate) fn wait_replication(&self) {
        let ok = wait_until(Duration::from_secs(20), POLL, || {
            let (out, _) = self.redis_cli(1, &["INFO", "replication"]);
            out.lines()
                .filter(|l| l.starts_with("slave") && l.contains("state=online"))
                .count()
                == 2
        });
        assert!(ok, "lab: replicas did not sync with n1 within 20 s");
    }

    /// Waits (up to 60 s) until every Sentinel agrees on the master, sees two
    /// healthy replicas and knows the two other Sentinels.
    pub fn wait_ready(&self) {
        let start = Instant::now();
        let mut last = String::new();
        let ok = wait_until(
            Duration::from_secs(60),
            Duration::from_millis(200),
            || match self.sentinel_state() {
                Ok(()) => true,
                Err(e) => {
                    last = e;
                    false
                }
            },
        );
        assert!(
            ok,
            "lab: Sentinels not ready after 60 s; last observation: {last}"
        );
        eprintln!(
            "lab {}: Sentinels ready after {:.1} s",
            self.prefix,
            start.elapsed().as_secs_f64()
        );
    }

    fn sentinel_state(&self) -> Result<(), String> {
        let mut masters = Vec::new();
        for n in NODES {
            let master = self.sentinel_master(n)?;
            // Healthy: connected, replicating, and from the master Sentinel
            // names (a restarted node first points at a stale master).
            let replicas = self.sentinel_json(n, &["SENTINEL", "replicas", MASTER_NAME])?;
            let healthy = entries(&replicas)
                .iter()
                .filter(|r| {
                    field(r, "flags") == "slave"
                        && field(r, "master-link-status") == "ok"
                        && field(r, "master-host") == master
                })
                .count();
            if healthy != 2 {
                return Err(format!(
                    "sentinel n{n} sees {healthy} healthy replicas of {master}"
                ));
            }
            let peers = self.sentinel_json(n, &["SENTINEL", "sentinels", MASTER_NAME])?;
            // Healthy peers: `master_down` is only the vote that peer gave
            // on an earlier master (Valkey 9 keeps it after the failover).
            let known = entries(&peers)
                .iter()
                .filter(|p| {
                    let flags: Vec<&str> = field(p, "flags").split(',').collect();
                    flags.contains(&"sentinel")
                        && !flags
                            .iter()
                            .any(|f| matches!(*f, "s_down" | "o_down" | "disconnected"))
                })
                .count();
            if known != 2 {
                let seen: Vec<String> = entries(&peers)
                    .iter()
                    .map(|p| format!("{} [{}]", field(p, "ip"), field(p, "flags")))
                    .collect();
                return Err(format!(
                    "sentinel n{n} knows {known} other sentinels: {}",
                    seen.join(", ")
                ));
            }
            masters.push(master);
        }
        if masters.iter().any(|m| *m != masters[0]) {
            return Err(format!("sentinels disagree on the master: {masters:?}"));
        }
        Ok(())
    }
}

/// The entries of a `SENTINEL replicas|sentinels` reply as key/value maps.
/// Accepts RESP3 maps (JSON objects) and RESP2 flat key/value arrays.
fn entries(reply: &Value) -> Vec<Map<String, Value>> {
    reply
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|e| match e {
            Value::Object(m) => Some(m.clone()),
            Value::Array(a) => Some(
                a.chunks(2)
                    .filter_map(|kv| Some((kv[0].as_str()?.to_string(), kv.get(1)?.clone())))
                    .collect(),
            ),
            _ => None,
        })
        .collect()
}

fn field<'a>(entry: &'a Map<String, Value>, key: &str) -> &'a str {
    entry.get(key).and_then(Value::as_str).unwrap_or("")
}

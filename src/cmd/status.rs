//! `status`: per VIP and Sentinel, what the Sentinels say, whether the
//! master is local, whether the VIP is held, and what a pass would do
//! (asked of `decide`, like every mode); and the fence's two witnesses,
//! the Sentinels that answered and the replicas still replicating from the
//! master. Exit 1 on any disagreement. It only reads.

use std::collections::{HashMap, HashSet};
use std::fmt::Write as _;

use anyhow::{anyhow, Result};
use serde::Serialize;

use crate::config::Config;
use crate::decide::{Action, Presence};
use crate::engine::Engine;

/// One Sentinel's answer about one master.
#[derive(Debug, Serialize)]
struct SentinelRow {
    sentinel: String,
    reachable: bool,
    master: Option<String>,
    config_epoch: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

/// One replica the Sentinels list for a master, asked `ROLE` from here.
#[derive(Clone, Debug, Serialize)]
struct ReplicaRow {
    replica: String,
    /// What it answered, in words.
    says: String,
    /// It replicates from the master the Sentinels name, its link up: a
    /// witness for the fence.
    witness: bool,
}

/// One VIP.
#[derive(Debug, Serialize)]
struct StatusRow {
    master: String,
    vip: String,
    interface: String,
    /// How the VIP is announced: `l2` (gratuitous ARP/NA) or `routed`
    /// (the routing daemon's host route).
    mode: &'static str,
    sentinel_master: Option<String>,
    config_epoch: Option<u64>,
    answered: usize,
    sentinels_total: usize,
    master_is_local: bool,
    vip_held: bool,
    presence: String,
    /// What a pass would do now, if anything.
    pending: Option<String>,
    agree: bool,
    sentinels: Vec<SentinelRow>,
    replicas: Vec<ReplicaRow>,
}

pub(super) async fn run(cfg: Config, json: bool) -> Result<()> {
    let engine = Engine::new(cfg)?;
    let view = engine.gather(&engine.cfg.masters()).await?;
    let mut replicas = HashMap::new();
    for name in engine.cfg.masters() {
        let named = view.master(name).0.master.map(|r| (r.host, r.port));
        replicas.insert(name, replica_rows(&engine, name, named).await);
    }
    let mut rows = Vec::new();
    for v in &engine.cfg.vip {
        let (verdict, master) = view.master(&v.master);
        let presence = view.presence(v);
        let action = view.decide(&engine.cfg, v, &master);
        let sentinels: Vec<SentinelRow> = view
            .answers
            .iter()
            .map(|a| {
                let rep = a.report(&v.master);
                SentinelRow {
                    sentinel: a.sentinel.clone(),
                    reachable: a.reply.is_ok(),
                    master: rep.map(|r| format!("{}:{}", r.host, r.port)),
                    config_epoch: rep.map(|r| r.epoch),
                    error: a.reply.as_ref().err().map(|e| e.to_string()),
                }
            })
            .collect();
        let reported: HashSet<&String> =
            sentinels.iter().filter_map(|s| s.master.as_ref()).collect();
        let settled = matches!(action, Action::Nothing | Action::Keep);
        rows.push(StatusRow {
            master: v.master.clone(),
            vip: v.address.to_string(),
            interface: v.interface.clone(),
            mode: v.mode().as_str(),
            sentinel_master: verdict
                .master
                .as_ref()
                .map(|r| format!("{}:{}", r.host, r.port)),
            config_epoch: verdict.master.as_ref().map(|r| r.epoch),
            answered: verdict.answered,
            sentinels_total: verdict.total,
            master_is_local: master.is_local(&view.local),
            vip_held: presence == Presence::Held,
            presence: format!("{presence:?}"),
            pending: match action {
                Action::Nothing | Action::Keep => None,
                Action::Refuse(why) => Some(format!("Refuse: {why}")),
                Action::Wait(why) => Some(format!("Wait: {why}")),
                a => Some(format!("{a:?}")),
            },
            agree: verdict.majority() && reported.len() == 1 && settled,
            sentinels,
            replicas: replicas.get(v.master.as_str()).cloned().unwrap_or_default(),
        });
    }
    if json {
        println!("{}", serde_json::to_string_pretty(&rows)?);
    } else {
        print!("{}", text(&rows));
    }
    if rows.iter().all(|r| r.agree) {
        Ok(())
    } else {
        Err(anyhow!(
            "status: Sentinels, this host and the VIP do not all agree"
        ))
    }
}

/// The replicas every Sentinel lists for `name`, each asked `ROLE`: is it
/// still a replica of `named` (the master the Sentinels name), link up?
async fn replica_rows(
    engine: &Engine,
    name: &str,
    named: Option<(crate::hookargs::Host, u16)>,
) -> Vec<ReplicaRow> {
    let list = engine.sentinels.replicas(name).await;
    let asks = list.iter().map(|r| {
        let named = named.clone();
        async move {
            let got = match crate::datanode::Node::new(&engine.cfg, r) {
                Ok(mut n) => n.replica_of().await,
                Err(e) => Err(e),
            };
            let (says, witness) = match got {
                Ok(Some(of)) => (
                    format!("replica of {}:{}, link {}", of.host, of.port, of.state),
                    named.is_some_and(|n| of.witnesses(&n)),
                ),
                Ok(None) => ("not a replica".to_string(), false),
                Err(e) => (format!("no answer: {}", crate::error::one_line(&e)), false),
            };
            ReplicaRow {
                replica: format!("{}:{}", r.0, r.1),
                says,
                witness,
            }
        }
    });
    futures::future::join_all(asks).await
}

/// Three tables for a person: the VIPs, each Sentinel's answer, each
/// replica's.
fn text(rows: &[StatusRow]) -> String {
    let yes = |b: bool| if b { "yes" } else { "no" }.to_string();
    let mut vips = vec![[
        "MASTER",
        "VIP",
        "IFACE",
        "MODE",
        "SENTINELS SAY",
        "EPOCH",
        "ANSWERED",
        "LOCAL",
        "HELD",
        "REPLICAS",
        "STATE",
    ]
    .map(String::from)
    .to_vec()];
    let mut sentinels = vec![["SENTINEL", "MASTER", "SAYS"].map(String::from).to_vec()];
    let mut replicas = vec![["REPLICA", "MASTER", "SAYS"].map(String::from).to_vec()];
    let mut listed = HashSet::new();
    for r in rows {
        let witnessing = r.replicas.iter().filter(|x| x.witness).count();
        vips.push(vec![
            r.master.clone(),
            r.vip.clone(),
            r.interface.clone(),
            r.mode.to_string(),
            r.sentinel_master
                .clone()
                .unwrap_or_else(|| "unknown".into()),
            r.config_epoch.map_or("-".into(), |e| e.to_string()),
            format!("{}/{}", r.answered, r.sentinels_total),
            yes(r.master_is_local),
            yes(r.vip_held),
            format!("{witnessing}/{}", r.replicas.len()),
            match (&r.pending, r.agree) {
                (Some(p), _) => format!("DISAGREE, would {p}"),
                (None, true) => "ok".into(),
                (None, false) => "DISAGREE".into(),
            },
        ]);
        for s in &r.sentinels {
            let says = match (&s.master, s.config_epoch, &s.error) {
                (Some(m), Some(e), _) => format!("{m} epoch {e}"),
                (_, _, Some(e)) => format!("no answer: {e}"),
                _ => "does not monitor it".into(),
            };
            sentinels.push(vec![s.sentinel.clone(), r.master.clone(), says]);
        }
        // Once per master, however many VIPs it has.
        if listed.insert(&r.master) {
            for x in &r.replicas {
                let says = format!("{}{}", x.says, if x.witness { " (witness)" } else { "" });
                replicas.push(vec![x.replica.clone(), r.master.clone(), says]);
            }
        }
    }
    let mut out = table(&vips);
    out.push('\n');
    out.push_str(&table(&sentinels));
    if replicas.len() > 1 {
        out.push('\n');
        out.push_str(&table(&replicas));
    }
    out
}

/// Left-aligned columns, two spaces apart.
fn table(rows: &[Vec<String>]) -> String {
    let cols = rows.iter().map(Vec::len).max().unwrap_or(0);
    let width: Vec<usize> = (0..cols)
        .map(|c| {
            rows.iter()
                .map(|r| r.get(c).map_or(0, |s| s.chars().count()))
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for r in rows {
        let mut line = String::new();
        for (c, cell) in r.iter().enumerate() {
            let _ = write!(line, "{cell:<w$}  ", w = width[c]);
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_line_up() {
        let t = table(&[
            vec!["A".into(), "BB".into(), "C".into()],
            vec!["long one".into(), "x".into(), "y".into()],
        ]);
        assert_eq!(t, "A         BB  C\nlong one  x   y\n");
    }

    #[test]
    fn text_shows_each_vip_and_sentinel() {
        let row = StatusRow {
            master: "mymaster".into(),
            vip: "192.0.2.100/24".into(),
            interface: "eth0".into(),
            mode: "l2",
            sentinel_master: Some("192.0.2.12:6379".into()),
            config_epoch: Some(4),
            answered: 2,
            sentinels_total: 3,
            master_is_local: true,
            vip_held: false,
            presence: "Absent".into(),
            pending: Some("Acquire".into()),
            agree: false,
            sentinels: vec![
                SentinelRow {
                    sentinel: "192.0.2.11:26379".into(),
                    reachable: true,
                    master: Some("192.0.2.12:6379".into()),
                    config_epoch: Some(4),
                    error: None,
                },
                SentinelRow {
                    sentinel: "192.0.2.13:26379".into(),
                    reachable: false,
                    master: None,
                    config_epoch: None,
                    error: Some("no answer within 300 ms".into()),
                },
            ],
            replicas: vec![ReplicaRow {
                replica: "192.0.2.11:6379".into(),
                says: "replica of 192.0.2.12:6379, link connected".into(),
                witness: true,
            }],
        };
        let t = text(&[row]);
        let lines: Vec<&str> = t.lines().collect();
        assert!(lines[0].starts_with("MASTER    VIP"), "{t}");
        assert!(lines[1].contains("192.0.2.12:6379") && lines[1].contains("2/3"));
        assert!(
            lines[0].contains("MODE") && lines[1].contains(" l2 "),
            "{t}"
        );
        assert!(lines[1].ends_with("DISAGREE, would Acquire"), "{t}");
        assert!(lines[4].contains("192.0.2.12:6379 epoch 4"), "{t}");
        assert!(
            lines[5].contains("no answer: no answer within 300 ms"),
            "{t}"
        );
        assert!(lines[1].contains(" 1/1 "), "{t}");
        assert!(lines[8].ends_with("link connected (witness)"), "{t}");
    }
}

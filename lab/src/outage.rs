//! One `kill -9` failover of the master's redis-server, timed from the
//! outside for the benchmark: when the promoted replica first answered
//! `ROLE` with `master`, when Sentinel announced it, when the client saw
//! the first gratuitous ARP from it, and when each [`KeptWriter`] had its
//! first write acknowledged and kept (read back from the master once every
//! node rejoined). It judges nothing; the caller prints.

use std::time::Duration;

use crate::client::{Ack, KeptWriter, RoleWatch};
use crate::timeline::Promotions;
use crate::{now_epoch, wait_until, Capture, Lab, NODES, VIP4};

/// How often the promoted replica is asked `ROLE`.
const ROLE_PERIOD: Duration = Duration::from_millis(1);

/// What one failover looked like; times are epoch seconds.
#[derive(Clone, Debug)]
pub struct Kill {
    pub old: usize,
    /// The master the Sentinels agreed on afterwards.
    pub new: usize,
    pub at: f64,
    /// The first replica to answer `ROLE` with `master`, and when.
    pub role_master: Option<(usize, f64)>,
    /// The first `+promoted-slave` seen from any Sentinel.
    pub promoted_event: Option<f64>,
    /// The first gratuitous ARP for the VIP from the promoted node.
    pub garp: Option<f64>,
    /// Per writer, in the order given.
    pub writes: Vec<Writes>,
}

/// One writer's side of a failover.
#[derive(Clone, Debug, Default)]
pub struct Writes {
    /// The first write acknowledged after the kill whose key the master
    /// still holds once every node has rejoined.
    pub first_kept: Option<f64>,
    /// Writes acknowledged after the kill, before that one, whose key is
    /// gone (an acknowledged write lost).
    pub lost: usize,
    /// Why there is no `first_kept`.
    pub why: Option<String>,
}

impl Kill {
    /// Milliseconds from the kill to `t`.
    pub fn ms(&self, t: f64) -> f64 {
        (t - self.at) * 1e3
    }
}

/// Waits for a quiet lab (one holder, every writer writing), kills the
/// master's redis-server, waits up to `limit` for every writer, then
/// rejoins every node ([`Lab::rejoin_all`]) and reads the writes back.
/// Panics, naming what was seen, if the lab does not get there.
pub fn kill_master(
    lab: &mut Lab,
    writers: &[&KeptWriter],
    cap: &Capture,
    promotions: &Promotions,
    limit: Duration,
) -> Kill {
    let old = lab.wait_one_holder(Duration::from_secs(20));
    let Killed {
        at,
        firsts,
        role_master,
    } = kill_with_writers(lab, old, writers, limit);
    let new = lab.wait_new_master(old, Duration::from_secs(30));
    let promoted = role_master.map_or(new, |(n, _)| n);
    let mac = lab.mac(promoted);
    // A write can get through before the announcement is captured (the
    // client may resolve the VIP itself): give the capture a moment.
    let mut garp = None;
    wait_until(Duration::from_secs(3), Duration::from_millis(5), || {
        garp = cap
            .peek()
            .iter()
            .find(|f| f.ts > at && f.src_mac == mac && f.is_garp_for(VIP4))
            .map(|f| f.ts);
        garp.is_some()
    });
    let promoted_event = promotions.first_after(at).map(|(t, _)| t);
    let fin = lab.rejoin_all();
    let writes = writes_kept(lab, fin, writers, firsts, at, limit);
    Kill {
        old,
        new,
        at,
        role_master,
        promoted_event,
        garp,
        writes,
    }
}

/// Reads the acknowledged writes back from node `n` in order until one is
/// there: acknowledged means `OK` from a master and the key kept.
/// What [`kill_with_writers`] saw.
pub(crate) struct Killed {
    /// When the master's server was killed (epoch seconds).
    pub at: f64,
    /// Per writer, its first write acknowledged after the kill, if any
    /// within the limit.
    pub firsts: Vec<Option<Ack>>,
    /// The replica that first answered `ROLE` master, and when.
    pub role_master: Option<(usize, f64)>,
}

/// With every writer writing, SIGKILLs node `old`'s redis-server while the
/// replicas' `ROLE` is polled, then waits up to `limit` for each writer's
/// first acknowledged write. Panics if a writer writes nothing before.
pub(crate) fn kill_with_writers(
    lab: &mut Lab,
    old: usize,
    writers: &[&KeptWriter],
    limit: Duration,
) -> Killed {
    let now = now_epoch();
    for w in writers {
        assert!(
            w.wait_ack_after(now, Duration::from_secs(10)).is_some(),
            "client {} writes nothing before the kill: {}",
            w.name,
            w.last_error()
        );
    }
    let replicas: Vec<usize> = NODES.into_iter().filter(|&n| n != old).collect();
    let role = RoleWatch::start(lab, &replicas, ROLE_PERIOD);
    let at = now_epoch();
    lab.kill_redis(old);
    let firsts = writers
        .iter()
        .map(|w| w.wait_ack_after(at, limit))
        .collect();
    let role_master = role.first_master();
    Killed {
        at,
        firsts,
        role_master,
    }
}

/// Per writer, what of its writes acknowledged after `at` node `fin` (the
/// final master) kept; a writer with no acknowledged write within `limit`
/// (`firsts`) says why.
pub(crate) fn writes_kept(
    lab: &Lab,
    fin: usize,
    writers: &[&KeptWriter],
    firsts: Vec<Option<Ack>>,
    at: f64,
    limit: Duration,
) -> Vec<Writes> {
    writers
        .iter()
        .zip(firsts)
        .map(|(w, first)| match first {
            None => Writes {
                why: Some(format!(
                    "no write acknowledged within {limit:?}: {}",
                    w.last_error()
                )),
                ..Writes::default()
            },
            Some(_) => kept(lab, fin, &w.acks_after(at)),
        })
        .collect()
}

pub(crate) fn kept(lab: &Lab, n: usize, acks: &[Ack]) -> Writes {
    for (lost, a) in acks.iter().take(50).enumerate() {
        let (got, err) = lab.redis_cli(n, &["GET", &a.key]);
        if got == a.value.to_string() {
            return Writes {
                first_kept: Some(a.at),
                lost,
                why: None,
            };
        }
        if !err.is_empty() {
            return Writes {
                why: Some(format!("GET {} on n{n}: {err}", a.key)),
                ..Writes::default()
            };
        }
    }
    Writes {
        lost: acks.len().min(50),
        why: Some(format!(
            "none of the first {} acknowledged writes kept",
            acks.len().min(50)
        )),
        ..Writes::default()
    }
}

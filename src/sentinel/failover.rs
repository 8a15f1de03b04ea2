//! What the leader of a failover says about it while it runs: from its
//! `SENTINEL MASTER` (the failover state, its configuration's epoch) and
//! `SENTINEL REPLICAS` (the replica flagged `promoted`). Pure: replies in,
//! a judgement out. A failover-state event is only a hint; this is how the
//! hint is checked with the Sentinel that published it.

use redis::Value;

use super::reply::{field, replica_addr, text, ReplyError};
use crate::hookargs::Host;

/// The leader's view of one master while (perhaps) failing it over.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LeaderView {
    /// The epoch of the configuration the leader still holds.
    pub config_epoch: u64,
    /// `Some(state)` while a failover is in progress (`failover-state`).
    pub failover_state: Option<String>,
    /// Replicas flagged `promoted`: the one the failover chose.
    pub promoted: Vec<(Host, u16)>,
}

/// Why a hint was not confirmed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Unconfirmed {
    #[error("no failover in progress")]
    NoFailover,
    #[error("failover state `{0}` is not a promotion")]
    State(String),
    #[error("replica not flagged promoted")]
    NotPromoted,
    /// The leader's configuration is not the one the watcher last saw: the
    /// failover is not of the configuration in hand (the ordinary pass
    /// sorts out what happened).
    #[error("leader's config-epoch {leader} is not the {seen} last seen")]
    Epoch { leader: u64, seen: u64 },
}

/// The states in which the promoted replica is chosen and being (or
/// about to be) promoted; from `reconf_slaves` on, Sentinel itself
/// announces the new master.
const PROMOTING: [&str; 2] = ["send_slaveof_noone", "wait_promotion"];

/// Whether a leader in failover state `state` is promoting a replica.
pub fn is_promoting(state: &str) -> bool {
    PROMOTING.contains(&state)
}

/// The states in which the leader has seen the replica promoted and
/// already answers it as the master, with the failover's epoch
/// (sentinel.c, `sentinelGetCurrentMasterAddress`: from `reconf_slaves`
/// on), while still leading the failover.
const SWITCHED: [&str; 2] = ["reconf_slaves", "update_config"];

/// Whether a leader in failover state `state` already answers the promoted
/// replica as the master. Any other state (an unknown one too) means its
/// answers are still the old configuration.
pub fn is_switched(state: &str) -> bool {
    SWITCHED.contains(&state)
}

impl LeaderView {
    /// Whether this confirms that `replica` is being promoted in a failover
    /// of the configuration last seen (epoch `seen`), so newer than it.
    pub fn confirms(&self, replica: &(Host, u16), seen: u64) -> Result<(), Unconfirmed> {
        let state = self
            .failover_state
            .as_deref()
            .ok_or(Unconfirmed::NoFailover)?;
        if !PROMOTING.contains(&state) {
            return Err(Unconfirmed::State(state.to_string()));
        }
        if self.config_epoch != seen {
            return Err(Unconfirmed::Epoch {
                leader: self.config_epoch,
                seen,
            });
        }
        if !self.promoted.contains(replica) {
            return Err(Unconfirmed::NotPromoted);
        }
        Ok(())
    }
}

fn flags(v: &Value) -> Vec<String> {
    field(v, "flags")
        .flatten()
        .and_then(text)
        .map(|f| f.split(',').map(str::to_string).collect())
        .unwrap_or_default()
}

/// Parses the replies to `SENTINEL MASTER <name>` and `SENTINEL REPLICAS
/// <name>` (RESP2 arrays or RESP3 maps).
pub fn parse_leader(master: &Value, replicas: &Value) -> Result<LeaderView, ReplyError> {
    for v in [master, replicas] {
        if let Value::ServerError(e) = v {
            let said: String = e.to_string().chars().take(200).collect();
            return Err(ReplyError::Refused {
                name: "failover".into(),
                said: crate::error::printable(&said),
            });
        }
    }
    let epoch = field(master, "config-epoch")
        .ok_or(ReplyError::NotAMap)?
        .and_then(text)
        .ok_or(ReplyError::NoEpoch)?;
    let config_epoch = epoch
        .parse()
        .map_err(|_| ReplyError::BadEpoch(epoch.escape_debug().to_string()))?;
    let failover_state = super::reply::failover_state(master);
    let Value::Array(list) = replicas else {
        return Err(ReplyError::Shape("SENTINEL REPLICAS".into()));
    };
    let mut promoted = Vec::new();
    for r in list {
        if !flags(r).iter().any(|f| f == "promoted") {
            continue;
        }
        promoted.push(replica_addr(r)?);
    }
    Ok(LeaderView {
        config_epoch,
        failover_state,
        promoted,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sentinel::reply::tests::{fixture, SERVERS};

    fn r12() -> (Host, u16) {
        (Host::parse("192.0.2.12").unwrap(), 6379)
    }

    /// The replica the recorded `SENTINEL FAILOVER` selected.
    fn selected(server: &str) -> (Host, u16) {
        let path = format!(
            "{}/tests/fixtures/replies/{server}/failovers.json",
            env!("CARGO_MANIFEST_DIR")
        );
        let runs: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        let run = runs["runs"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["run"] == "sentinel-failover")
            .expect("the SENTINEL FAILOVER run");
        (
            Host::parse(run["selected"].as_str().unwrap()).unwrap(),
            6379,
        )
    }

    /// The leader's replies recorded during real failovers, Redis and
    /// Valkey, RESP2 and RESP3.
    #[test]
    fn recorded_failovers() {
        for server in SERVERS {
            let chosen = selected(server);
            for proto in ["resp2", "resp3"] {
                let at = |state: &str| {
                    parse_leader(
                        &fixture(server, &format!("failover-master-{state}.{proto}")),
                        &fixture(server, &format!("failover-replicas-promoted.{proto}")),
                    )
                    .unwrap()
                };
                let wait = at("wait_promotion");
                assert_eq!(wait.failover_state.as_deref(), Some("wait_promotion"));
                assert_eq!(wait.promoted, vec![chosen.clone()], "{server} {proto}");
                assert_eq!(wait.confirms(&chosen, wait.config_epoch), Ok(()));
                assert_eq!(
                    at("send_slaveof_noone").confirms(&chosen, wait.config_epoch),
                    Ok(())
                );
                let none = at("none");
                assert_eq!(
                    none.confirms(&chosen, none.config_epoch),
                    Err(Unconfirmed::NoFailover)
                );
                let reconf = at("reconf_slaves");
                assert_eq!(
                    reconf.confirms(&chosen, wait.config_epoch),
                    Err(Unconfirmed::State("reconf_slaves".into())),
                    "{server} {proto}"
                );
                // The same from a kill -9 failover (flags s_down, o_down...).
                let killed = parse_leader(
                    &fixture(
                        server,
                        &format!("kill-failover-master-wait_promotion.{proto}"),
                    ),
                    &fixture(server, &format!("kill-failover-replicas-promoted.{proto}")),
                )
                .unwrap();
                assert_eq!(killed.promoted.len(), 1, "{server} {proto}");
                assert_eq!(
                    killed.confirms(&killed.promoted[0], killed.config_epoch),
                    Ok(())
                );
            }
        }
    }

    #[test]
    fn judgements() {
        let v = LeaderView {
            config_epoch: 4,
            failover_state: Some("wait_promotion".into()),
            promoted: vec![r12()],
        };
        let r13 = (Host::parse("192.0.2.13").unwrap(), 6379);
        assert_eq!(v.confirms(&r12(), 4), Ok(()));
        assert_eq!(v.confirms(&r13, 4), Err(Unconfirmed::NotPromoted));
        assert_eq!(
            v.confirms(&(r12().0, 6380), 4),
            Err(Unconfirmed::NotPromoted)
        );
        assert_eq!(
            v.confirms(&r12(), 5),
            Err(Unconfirmed::Epoch { leader: 4, seen: 5 })
        );
        assert_eq!(
            v.confirms(&r12(), 3),
            Err(Unconfirmed::Epoch { leader: 4, seen: 3 })
        );
        let noauth = redis::parse_redis_value(b"-NOAUTH Authentication required.\r\n").unwrap();
        assert!(matches!(
            parse_leader(&noauth, &Value::Array(vec![])),
            Err(ReplyError::Refused { .. })
        ));
        assert_eq!(
            parse_leader(&Value::Array(vec![]), &Value::Array(vec![])),
            Err(ReplyError::NoEpoch)
        );
    }
}

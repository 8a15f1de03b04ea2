//! The I/O of following a promotion: asking the leader to confirm a hint,
//! asking the replica `ROLE` until it is master, and asking again while a
//! promotion stands. Outcomes come back to the loop as triggers; every
//! decision is `Promotions`'.

use std::time::Duration;

use tracing::info;

use super::promotion::{Next, Replica};
use super::{Trigger, Watcher};
use crate::config::Config;
use crate::engine::resolve;
use crate::error::one_line;

/// How often a replica being promoted is asked `ROLE`.
pub(super) const ROLE_EVERY: Duration = Duration::from_millis(2);
/// A followed promotion's replica is asked again by passes after this.
pub(super) const RECHECK_AFTER: Duration = Duration::from_millis(200);

/// The promoted replicas in `recheck` that no longer answer master (an
/// error counts as no: the promotion is then dropped, and the Sentinels'
/// answer rules, which is where the watcher would be without it).
pub(super) async fn still_master(
    cfg: &Config,
    recheck: &[(String, Replica)],
) -> Vec<(String, Replica)> {
    let checks = recheck.iter().map(|(m, r)| async move {
        let role = match crate::datanode::Node::new(cfg, r) {
            Ok(mut n) => n.role().await.ok(),
            Err(_) => None,
        };
        (role != Some(crate::datanode::Role::Master)).then(|| (m.clone(), r.clone()))
    });
    futures::future::join_all(checks)
        .await
        .into_iter()
        .flatten()
        .collect()
}

impl Watcher {
    /// Starts the I/O a promotion's next step needs; its outcome comes back
    /// as a trigger. `replica` is the one an event named, if any.
    pub(super) fn follow(&self, master: &str, replica: Option<&Replica>, next: Next) {
        let tx = self.tx.clone();
        let (master, replica) = (master.to_string(), replica.cloned());
        match next {
            Next::Nothing | Next::Pass => {}
            Next::AskLeader { sentinel, seen } => {
                let Some(leader) = self.engine.sentinels.leader(&sentinel) else {
                    return;
                };
                info!(master = %master, sentinel = %sentinel, "promotion hint; asking the leader");
                tokio::spawn(async move {
                    let (replica, confirmed) = match leader.failover(&master).await {
                        Ok(view) => {
                            // Unnamed (a pass saw the failover): the one
                            // the leader flags promoted.
                            match replica.or_else(|| view.promoted.first().cloned()) {
                                Some(r) => {
                                    let c = view.confirms(&r, seen).map_err(|e| e.to_string());
                                    (r, c)
                                }
                                None => return,
                            }
                        }
                        Err(e) => match replica {
                            Some(r) => (r, Err(e.to_string())),
                            None => return,
                        },
                    };
                    let _ = tx
                        .send(Trigger::Leader {
                            master,
                            replica,
                            confirmed,
                        })
                        .await;
                });
            }
            Next::WaitMaster { until } => {
                let Some(replica) = replica else { return };
                let node = crate::datanode::Node::new(&self.engine.cfg, &replica);
                let within = self.engine.cfg.sentinel_timeout;
                tokio::spawn(async move {
                    let master_at = async {
                        let at = node?.wait_master(ROLE_EVERY, until).await?;
                        Ok::<_, anyhow::Error>((at, resolve(&replica.0, within).await?))
                    }
                    .await
                    .map_err(|e| one_line(&e));
                    let _ = tx
                        .send(Trigger::Role {
                            master,
                            replica,
                            master_at,
                        })
                        .await;
                });
            }
        }
    }
}

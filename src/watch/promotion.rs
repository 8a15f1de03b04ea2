//! Following a failover as its leader runs it, as plain state. A
//! failover-state event is a hint; a promotion counts only once the
//! Sentinel that published it confirms it (failover in progress, of the
//! configuration last seen, that replica flagged `promoted`) and the
//! replica itself answers `ROLE` master. It then stands, as
//! [`Master::Promoted`], until the Sentinels' own answers reach a newer
//! configuration or the replica stops being master. Methods take `now`
//! and inputs and return the next step; the watcher does the I/O.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use crate::decide::Master;
use crate::hookargs::Host;

/// How long a hint the leader refused is not checked again.
pub const REFUSED_HOLD: Duration = Duration::from_secs(1);

/// A replica address as Sentinel names it.
pub type Replica = (Host, u16);

/// What the watcher should do next for a promotion.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Next {
    Nothing,
    /// Ask `sentinel` (the one that published the hint) about `master`.
    AskLeader {
        sentinel: String,
        seen: u64,
    },
    /// Ask the replica `ROLE` until it answers master, or `until`.
    WaitMaster {
        until: Instant,
    },
    /// The replica is master: run a pass now.
    Pass,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Stage {
    /// The leader did not confirm it: the same hint is not checked again
    /// for a while (a flood of forged events must not become a flood of
    /// questions).
    Refused {
        at: Instant,
    },
    Checking,
    Waiting,
    Promoted {
        ips: Vec<IpAddr>,
        at: Instant,
    },
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct Tracked {
    /// The replica, once known: an event names it; a pass that only saw a
    /// failover under way learns it from the leader's check.
    replica: Option<Replica>,
    /// The configuration epoch the hint was checked against: the failover
    /// being followed is newer, so its epoch is at least `seen + 1`.
    seen: u64,
    stage: Stage,
}

pub struct Promotions {
    deadline: Duration,
    /// Per master, the configuration epoch the last pass saw.
    seen: HashMap<String, u64>,
    tracked: HashMap<String, Tracked>,
}

impl Promotions {
    pub fn new(deadline: Duration) -> Promotions {
        Promotions {
            deadline,
            seen: HashMap::new(),
            tracked: HashMap::new(),
        }
    }

    /// A pass saw `master` at configuration `epoch` (with a majority).
    pub fn saw(&mut self, master: &str, epoch: u64) {
        self.seen.insert(master.to_string(), epoch);
    }

    /// A hint from `sentinel` that a replica is being promoted for
    /// `master`: named by an event, or not (a pass saw that Sentinel
    /// leading a failover). The three events of one failover and the passes
    /// meanwhile make one check; a hint before any pass saw the master has
    /// nothing to be newer than.
    pub fn hint(
        &mut self,
        now: Instant,
        master: &str,
        sentinel: &str,
        replica: Option<&Replica>,
    ) -> Next {
        let Some(&seen) = self.seen.get(master) else {
            return Next::Nothing;
        };
        if let Some(t) = self.tracked.get(master) {
            let same = match (replica, &t.replica) {
                (Some(r), Some(tr)) => r == tr,
                _ => true,
            };
            let held_off = match t.stage {
                Stage::Refused { at } => now.duration_since(at) < REFUSED_HOLD,
                _ => true,
            };
            if same && t.seen == seen && held_off {
                return Next::Nothing;
            }
        }
        self.tracked.insert(
            master.to_string(),
            Tracked {
                replica: replica.cloned(),
                seen,
                stage: Stage::Checking,
            },
        );
        Next::AskLeader {
            sentinel: sentinel.to_string(),
            seen,
        }
    }

    /// The leader's answer about `replica` (the hinted one, or the one it
    /// flags promoted): `confirmed` or not. Stale answers (another replica
    /// tracked since) change nothing.
    pub fn checked(
        &mut self,
        now: Instant,
        master: &str,
        replica: &Replica,
        confirmed: bool,
    ) -> Next {
        match self.tracked.get_mut(master) {
            Some(t)
                if t.replica.as_ref().is_none_or(|r| r == replica)
                    && t.stage == Stage::Checking =>
            {
                t.replica = Some(replica.clone());
                if confirmed {
                    t.stage = Stage::Waiting;
                    Next::WaitMaster {
                        until: now + self.deadline,
                    }
                } else {
                    t.stage = Stage::Refused { at: now };
                    Next::Nothing
                }
            }
            _ => Next::Nothing,
        }
    }

    /// The replica answered master at `at` (its addresses resolved), or
    /// not before the deadline (`None`).
    pub fn role(
        &mut self,
        master: &str,
        replica: &Replica,
        master_at: Option<(Instant, Vec<IpAddr>)>,
    ) -> Next {
        match self.tracked.get_mut(master) {
            Some(t) if t.replica.as_ref() == Some(replica) && t.stage == Stage::Waiting => {
                match master_at {
                    Some((at, ips)) => {
                        t.stage = Stage::Promoted { ips, at };
                        Next::Pass
                    }
                    None => {
                        self.tracked.remove(master);
                        Next::Nothing
                    }
                }
            }
            _ => Next::Nothing,
        }
    }

    /// What a pass takes as `master`'s master, given the highest epoch the
    /// Sentinels answered now: the promotion while they have not reached a
    /// newer configuration; from then on, they rule (and a check or wait
    /// still running is dropped).
    pub fn master_for(&mut self, master: &str, answered_epoch: Option<u64>) -> Option<Master> {
        let t = self.tracked.get(master)?;
        if answered_epoch.is_some_and(|e| e > t.seen) {
            self.tracked.remove(master);
            return None;
        }
        match &t.stage {
            Stage::Promoted { ips, .. } => Some(Master::Promoted {
                ips: ips.clone(),
                epoch: t.seen + 1,
            }),
            _ => None,
        }
    }

    /// Promoted replicas whose role a pass should check again: those seen
    /// master longer than `fresh` ago.
    pub fn to_recheck(&self, now: Instant, fresh: Duration) -> Vec<(String, Replica)> {
        let mut v: Vec<(String, Replica)> = self
            .tracked
            .iter()
            .filter(|(_, t)| matches!(t.stage, Stage::Promoted { at, .. } if now.duration_since(at) >= fresh))
            .filter_map(|(m, t)| Some((m.clone(), t.replica.clone()?)))
            .collect();
        v.sort_by(|a, b| a.0.cmp(&b.0));
        v
    }

    /// The replica no longer answers master: the promotion is over.
    pub fn demoted(&mut self, master: &str, replica: &Replica) {
        if self
            .tracked
            .get(master)
            .is_some_and(|t| t.replica.as_ref() == Some(replica))
        {
            self.tracked.remove(master);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(last: u8) -> Replica {
        (Host::parse(&format!("192.0.2.{last}")).unwrap(), 6379)
    }

    fn ips(last: u8) -> Vec<IpAddr> {
        vec![format!("192.0.2.{last}").parse().unwrap()]
    }

    const S1: &str = "192.0.2.11:26379";

    #[test]
    fn a_confirmed_promotion_is_followed_until_the_sentinels_catch_up() {
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        let mut p = Promotions::new(ms(3000));
        // Before any pass has seen the master: nothing to compare with.
        assert_eq!(p.hint(t0, "m", S1, Some(&r(12))), Next::Nothing);
        p.saw("m", 4);
        assert_eq!(
            p.hint(t0, "m", S1, Some(&r(12))),
            Next::AskLeader {
                sentinel: S1.into(),
                seen: 4
            }
        );
        // The failover's next two events are the same hint.
        assert_eq!(p.hint(t0, "m", S1, Some(&r(12))), Next::Nothing);
        assert_eq!(p.master_for("m", Some(4)), None, "not promoted yet");
        assert_eq!(
            p.checked(t0, "m", &r(12), true),
            Next::WaitMaster {
                until: t0 + ms(3000)
            }
        );
        assert_eq!(
            p.role("m", &r(12), Some((t0 + ms(100), ips(12)))),
            Next::Pass
        );
        let promoted = Master::Promoted {
            ips: ips(12),
            epoch: 5,
        };
        assert_eq!(p.master_for("m", Some(4)), Some(promoted.clone()));
        assert_eq!(
            p.master_for("m", None),
            Some(promoted),
            "no answers: it stands"
        );
        assert!(p.to_recheck(t0 + ms(150), ms(200)).is_empty(), "just seen");
        assert_eq!(
            p.to_recheck(t0 + ms(400), ms(200)),
            vec![("m".to_string(), r(12))]
        );
        // The Sentinels' configuration reaches epoch 5: they rule again.
        assert_eq!(p.master_for("m", Some(5)), None);
        assert_eq!(p.master_for("m", Some(4)), None, "dropped for good");
    }

    #[test]
    fn unconfirmed_late_or_demoted_promotions_count_for_nothing() {
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        let mut p = Promotions::new(ms(3000));
        p.saw("m", 4);
        // A forged or wrong hint: the leader does not confirm it, and the
        // same hint is not checked again for a while.
        p.hint(t0, "m", S1, Some(&r(13)));
        assert_eq!(p.checked(t0, "m", &r(13), false), Next::Nothing);
        assert_eq!(p.hint(t0 + ms(500), "m", S1, Some(&r(13))), Next::Nothing);
        assert_eq!(p.hint(t0 + ms(500), "m", S1, None), Next::Nothing);
        assert!(matches!(
            p.hint(t0 + REFUSED_HOLD, "m", S1, Some(&r(13))),
            Next::AskLeader { .. }
        ));
        assert_eq!(p.checked(t0, "m", &r(13), false), Next::Nothing);
        assert_eq!(p.role("m", &r(13), Some((t0, ips(13)))), Next::Nothing);
        assert_eq!(p.master_for("m", Some(4)), None);
        // The replica never answers master before the deadline.
        p.hint(t0, "m", S1, Some(&r(12)));
        p.checked(t0, "m", &r(12), true);
        assert_eq!(p.role("m", &r(12), None), Next::Nothing);
        assert_eq!(p.master_for("m", Some(4)), None);
        // A stale answer about a replica no longer tracked.
        p.hint(t0, "m", S1, Some(&r(12)));
        p.hint(t0, "m", S1, Some(&r(13)));
        assert_eq!(p.checked(t0, "m", &r(12), true), Next::Nothing);
        // Promoted, then demoted (Sentinel turned it back into a replica).
        assert!(matches!(
            p.checked(t0, "m", &r(13), true),
            Next::WaitMaster { .. }
        ));
        assert_eq!(p.role("m", &r(13), Some((t0, ips(13)))), Next::Pass);
        p.demoted("m", &r(12));
        assert!(
            p.master_for("m", Some(4)).is_some(),
            "another replica's demotion"
        );
        p.demoted("m", &r(13));
        assert_eq!(p.master_for("m", Some(4)), None);
        // A pass that saw the leader's failover under way, replica unknown:
        // the leader's check names it.
        p.hint(t0, "m", S1, None);
        assert_eq!(
            p.hint(t0, "m", S1, None),
            Next::Nothing,
            "one check per failover"
        );
        assert_eq!(
            p.hint(t0, "m", S1, Some(&r(12))),
            Next::Nothing,
            "the events add nothing"
        );
        assert!(matches!(
            p.checked(t0, "m", &r(12), true),
            Next::WaitMaster { .. }
        ));
        assert_eq!(p.role("m", &r(12), Some((t0, ips(12)))), Next::Pass);
        assert!(p.master_for("m", Some(4)).is_some());
        p.demoted("m", &r(12));
        // A newer configuration while the check runs drops it too.
        p.hint(t0, "m", S1, Some(&r(12)));
        assert_eq!(p.master_for("m", Some(6)), None);
        assert_eq!(p.checked(t0, "m", &r(12), true), Next::Nothing);
    }
}

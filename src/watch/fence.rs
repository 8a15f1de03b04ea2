//! The fence (`on_sentinel_loss = "fence"`), as plain state: a host that
//! holds a master's VIP on a Sentinel majority's word, and has heard a
//! replica of that master answer as its replica, releases the VIP once it
//! has heard, for `fence_after_ms`, neither a majority of the Sentinels
//! nor any replica still replicating from it. Methods take
//! `now` and when each witness last answered, and return what to do; the
//! probing is `witness`'s, the release the watcher's. It never takes a
//! VIP: it only releases one, and holds back a VIP it released until a
//! Sentinel majority speaks again.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use crate::decide::{Action, Presence};

/// When each witness of one master last answered.
#[derive(Clone, Copy, Debug)]
pub struct Heard<'a> {
    /// Each configured Sentinel (`None`: not since the watcher started).
    pub sentinels: &'a [Option<Instant>],
    /// Each replica the Sentinels last listed for the master, when it last
    /// answered `ROLE` as a connected replica of it.
    pub replicas: &'a [Option<Instant>],
}

/// How many witnesses answered within the fence time.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Witnesses {
    pub sentinels: usize,
    pub sentinels_total: usize,
    pub replicas: usize,
    pub replicas_known: usize,
}

impl Witnesses {
    /// A majority of the configured Sentinels answered (none configured:
    /// nothing is lost).
    pub fn sentinel_majority(&self) -> bool {
        self.sentinels_total == 0 || self.sentinels > self.sentinels_total / 2
    }

    /// Both witnesses lost. With no replica known there is nothing to fence
    /// against: no failover can promote one, so a cut-off master loses no
    /// write by keeping its VIP.
    pub fn lost(&self) -> bool {
        !self.sentinel_majority() && self.replicas_known > 0 && self.replicas == 0
    }
}

/// What the fence says about one master.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    /// Not watched: not held here on a Sentinel majority's word.
    Idle,
    /// Held on a majority's word for this long, but no replica has yet
    /// answered as its replica: the fence cannot tell silence from a
    /// replica it was never able to ask (no `redis_password`, TLS not
    /// configured), so it does not arm.
    Waiting(Duration),
    Keep,
    /// Release every VIP of the master held here.
    Release,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Watch {
    /// Held on a majority's word since; no replica heard as its replica.
    Waiting { since: Instant },
    /// Both witnesses heard: from `since` on, their silence counts.
    Armed { since: Instant },
}

pub struct Fence {
    after: Duration,
    /// Masters whose VIP is held here on a Sentinel majority's word.
    watched: HashMap<String, Watch>,
    /// Masters whose VIP the fence released; a pass without a majority
    /// must not take it back.
    released: HashSet<String>,
}

impl Fence {
    pub fn new(after: Duration) -> Fence {
        Fence {
            after,
            watched: HashMap::new(),
            released: HashSet::new(),
        }
    }

    pub fn after(&self) -> Duration {
        self.after
    }

    /// A pass found master `name`'s VIP `held` here or not, with a Sentinel
    /// `majority` or not. The fence watches on a majority's word only: a
    /// watcher started while cut off never had one, and knows no replica
    /// to miss. A VIP kept without a majority stays watched: that is the
    /// time the fence is for.
    pub fn passed(&mut self, now: Instant, name: &str, held: bool, majority: bool) {
        if majority {
            self.released.remove(name);
        }
        match (held, majority) {
            (false, _) => {
                self.watched.remove(name);
            }
            (true, true) => {
                let w = Watch::Waiting { since: now };
                self.watched.entry(name.to_string()).or_insert(w);
            }
            (true, false) => {}
        }
    }

    /// The masters the fence watches (their replicas are probed).
    pub fn watched(&self) -> impl Iterator<Item = &str> {
        self.watched.keys().map(String::as_str)
    }

    /// Whether the fence released `name`'s VIP and no Sentinel majority has
    /// spoken since: only that majority gives it back.
    pub fn blocks(&self, name: &str) -> bool {
        self.released.contains(name)
    }

    /// The witnesses of `name` at `now`: those heard within the fence
    /// time. While armed, nothing counts as older than the arming (a
    /// probe's answer may be on its way).
    pub fn witnesses(&self, now: Instant, name: &str, heard: &Heard) -> Witnesses {
        let since = match self.watched.get(name) {
            Some(Watch::Armed { since }) => Some(*since),
            _ => None,
        };
        let fresh = |at: &Option<Instant>| {
            let at = match (*at, since) {
                (Some(a), Some(s)) => Some(a.max(s)),
                (a, s) => a.or(s),
            };
            at.is_some_and(|at| now.saturating_duration_since(at) < self.after)
        };
        Witnesses {
            sentinels: heard.sentinels.iter().filter(|a| fresh(a)).count(),
            sentinels_total: heard.sentinels.len(),
            replicas: heard.replicas.iter().filter(|a| fresh(a)).count(),
            replicas_known: heard.replicas.len(),
        }
    }

    /// What to do about `name` at `now`. A watched master arms once a
    /// replica answers as its replica; armed, it is released once both
    /// witnesses have been silent for the fence time (and again at each
    /// check until [`Fence::released`] says it was done).
    pub fn check(&mut self, now: Instant, name: &str, heard: &Heard) -> (Step, Witnesses) {
        let w = self.witnesses(now, name, heard);
        let step = match self.watched.get(name).copied() {
            None => Step::Idle,
            Some(Watch::Waiting { .. }) if w.replicas > 0 => {
                let armed = Watch::Armed { since: now };
                self.watched.insert(name.to_string(), armed);
                Step::Keep
            }
            Some(Watch::Waiting { since }) => Step::Waiting(now.saturating_duration_since(since)),
            Some(Watch::Armed { .. }) if w.lost() => Step::Release,
            Some(Watch::Armed { .. }) => Step::Keep,
        };
        (step, w)
    }

    /// When `name`'s witnesses, armed and not lost at `now`, will be lost
    /// if nothing more is heard: the instant the answer that keeps the
    /// Sentinel majority, and the last replica's, go stale. The watcher
    /// checks again then, not a probe period later. `None`: nothing to
    /// wait for (not armed, already lost, or never lost).
    pub fn deadline(&self, now: Instant, name: &str, heard: &Heard) -> Option<Instant> {
        let Some(Watch::Armed { since }) = self.watched.get(name) else {
            return None;
        };
        let stale = |at: &Option<Instant>| at.map_or(*since, |a| a.max(*since)) + self.after;
        let mut sentinels: Vec<Instant> = heard.sentinels.iter().map(stale).collect();
        sentinels.sort_unstable_by(|a, b| b.cmp(a));
        let majority = heard.sentinels.len() / 2 + 1;
        let replicas = heard.replicas.iter().map(stale).max();
        let at = match (heard.sentinels.is_empty(), replicas) {
            (true, _) | (_, None) => return None,
            (false, Some(r)) => sentinels[majority - 1].max(r),
        };
        (at > now).then_some(at)
    }

    /// `name`'s VIPs were released: no longer watched, and held back,
    /// until a pass finds one held with a Sentinel majority again.
    pub fn released(&mut self, name: &str) {
        self.watched.remove(name);
        self.released.insert(name.to_string());
    }
}

/// What the fence does with one VIP it releases, by how it is present:
/// only a VIP held as ours is deleted (the rule `decide()` applies when it
/// releases on Sentinel loss); one absent or foreign is not touched.
pub fn release_for(presence: &Presence) -> Option<Action> {
    match presence {
        Presence::Held => Some(Action::Release),
        Presence::Absent | Presence::Foreign(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    /// When each witness was last heard, in ms after t0 (`None`: never).
    type Ms = Vec<Option<u64>>;

    /// Those instants.
    fn at(t0: Instant, v: &[Option<u64>]) -> Vec<Option<Instant>> {
        v.iter().map(|o| o.map(|m| t0 + ms(m))).collect()
    }

    /// A fence watching "m" since t0, armed by a replica's answer then.
    fn armed(t0: Instant) -> Fence {
        let mut f = Fence::new(ms(300));
        f.passed(t0, "m", true, true);
        let (s, r) = ([Some(t0)], [Some(t0)]);
        let heard = Heard {
            sentinels: &s,
            replicas: &r,
        };
        assert_eq!(f.check(t0, "m", &heard).0, Step::Keep);
        f
    }

    #[test]
    fn releases_only_when_both_witnesses_are_silent_for_the_fence_time() {
        let t0 = Instant::now();
        let (s, r) = (Some, Some);
        // (now ms, Sentinels last heard, replicas last heard, step)
        #[rustfmt::skip]
        let rows: Vec<(u64, Ms, Ms, Step)> = vec![
            // Everyone answering.
            (1000, vec![s(990), s(990), s(990)], vec![r(990), r(990)], Step::Keep),
            // Sentinels all down, replicas answering: a Sentinel-only outage.
            (1000, vec![s(100), None, None], vec![r(990), r(500)], Step::Keep),
            // Replicas all down, the Sentinel majority answering.
            (1000, vec![s(990), s(990), s(100)], vec![None, r(100)], Step::Keep),
            // Cut off: only the local Sentinel answers, no replica; silent
            // for 299 ms: not yet.
            (1000, vec![s(999), s(701), s(701)], vec![r(701), r(701)], Step::Keep),
            // ...for 300 ms: release.
            (1000, vec![s(999), s(700), s(700)], vec![r(700), r(600)], Step::Release),
            // One replica still replicating from here keeps it.
            (1000, vec![s(999), None, None], vec![None, r(950)], Step::Keep),
            // Two Sentinels of three are a majority; one is not.
            (1000, vec![None, s(950), s(950)], vec![None, None], Step::Keep),
            (1000, vec![None, None, s(950)], vec![None, None], Step::Release),
            // No replica known: nothing a failover could promote, nothing
            // to fence against.
            (1000, vec![None, None, None], vec![], Step::Keep),
        ];
        for (i, (now, sent, reps, want)) in rows.into_iter().enumerate() {
            let mut f = armed(t0);
            let (sent, reps) = (at(t0, &sent), at(t0, &reps));
            let heard = Heard {
                sentinels: &sent,
                replicas: &reps,
            };
            assert_eq!(f.check(t0 + ms(now), "m", &heard).0, want, "row {i}");
        }
    }

    #[test]
    fn arming_grace_release_and_hold_back() {
        let t0 = Instant::now();
        let mut f = Fence::new(ms(300));
        let none = [None, None, None];
        let reps = [None];
        let silent = Heard {
            sentinels: &none,
            replicas: &reps,
        };
        // Not held: nothing to watch, whatever the witnesses.
        assert_eq!(f.check(t0, "m", &silent).0, Step::Idle);
        // Held without a majority (a watcher started while cut off): not
        // watched.
        f.passed(t0, "m", true, false);
        assert_eq!(f.check(t0 + ms(5000), "m", &silent).0, Step::Idle);
        // Watched from a pass with a majority at 1000, but no replica has
        // answered as its replica (a password or TLS not configured): not
        // armed, however long the silence.
        f.passed(t0 + ms(1000), "m", true, true);
        assert_eq!(f.watched().collect::<Vec<_>>(), ["m"]);
        assert_eq!(
            f.check(t0 + ms(9000), "m", &silent).0,
            Step::Waiting(ms(8000))
        );
        // A replica answers at 9000: armed from then; the fence time runs
        // from the arming.
        let one = [Some(t0 + ms(9000))];
        let answered = Heard {
            sentinels: &none,
            replicas: &one,
        };
        assert_eq!(f.check(t0 + ms(9000), "m", &answered).0, Step::Keep);
        assert_eq!(f.check(t0 + ms(9299), "m", &silent).0, Step::Keep);
        // Passes without a majority keep it armed, from the same instant.
        f.passed(t0 + ms(9200), "m", true, false);
        let (step, w) = f.check(t0 + ms(9300), "m", &silent);
        assert_eq!(step, Step::Release);
        assert_eq!(
            f.check(t0 + ms(9350), "m", &silent).0,
            Step::Release,
            "until done"
        );
        f.released("m");
        assert_eq!(
            w,
            Witnesses {
                sentinels: 0,
                sentinels_total: 3,
                replicas: 0,
                replicas_known: 1
            }
        );
        // Released once: disarmed, and held back until a majority speaks.
        assert_eq!(f.check(t0 + ms(9400), "m", &silent).0, Step::Idle);
        assert!(f.blocks("m"));
        f.passed(t0 + ms(10_000), "m", false, false);
        assert!(f.blocks("m"), "a pass without a majority changes nothing");
        f.passed(t0 + ms(11_000), "m", true, true);
        assert!(!f.blocks("m"));
        assert!(matches!(
            f.check(t0 + ms(11_100), "m", &silent).0,
            Step::Waiting(_)
        ));
        // Released elsewhere (a failover): no longer watched.
        f.passed(t0 + ms(12_000), "m", false, true);
        assert_eq!(f.check(t0 + ms(19_000), "m", &silent).0, Step::Idle);
        assert_eq!(f.watched().count(), 0);
    }

    #[test]
    fn the_next_check_is_when_the_witnesses_would_be_lost() {
        let t0 = Instant::now();
        let f = armed(t0);
        // (now, Sentinels heard, replicas heard, deadline), ms after t0.
        #[rustfmt::skip]
        let rows: Vec<(u64, Ms, Ms, Option<u64>)> = vec![
            // The majority's second-latest answer (900) and the latest
            // replica's (950) decide: lost at 1250.
            (1000, vec![Some(990), Some(900), Some(800)], vec![Some(950), Some(700)], Some(1250)),
            // One Sentinel left: the replica alone keeps it, until 1250.
            (1000, vec![Some(990), None, None], vec![Some(950)], Some(1250)),
            // Already lost: check now, not later.
            (1000, vec![Some(990), None, None], vec![Some(600)], None),
            // No replica known: never lost.
            (1000, vec![Some(990), Some(990), Some(990)], vec![], None),
        ];
        for (i, (now, sent, reps, want)) in rows.into_iter().enumerate() {
            let (sent, reps) = (at(t0, &sent), at(t0, &reps));
            let heard = Heard {
                sentinels: &sent,
                replicas: &reps,
            };
            let got = f.deadline(t0 + ms(now), "m", &heard);
            assert_eq!(got, want.map(|w| t0 + ms(w)), "row {i}");
        }
        let idle = Fence::new(ms(300));
        let (s, r) = ([Some(t0)], [Some(t0)]);
        let heard = Heard {
            sentinels: &s,
            replicas: &r,
        };
        assert_eq!(idle.deadline(t0, "m", &heard), None, "not armed");
    }

    #[test]
    fn only_a_vip_held_as_ours_is_released() {
        assert_eq!(release_for(&Presence::Held), Some(Action::Release));
        assert_eq!(release_for(&Presence::Absent), None);
        assert_eq!(
            release_for(&Presence::Foreign("the host's own".into())),
            None
        );
    }

    #[test]
    fn witnesses_count_what_was_heard_within_the_fence_time() {
        let t0 = Instant::now();
        let f = Fence::new(ms(300));
        let sent = at(t0, &[Some(900), Some(600), None]);
        let reps = at(t0, &[Some(800), Some(801)]);
        let heard = Heard {
            sentinels: &sent,
            replicas: &reps,
        };
        let w = f.witnesses(t0 + ms(1100), "m", &heard);
        assert_eq!((w.sentinels, w.replicas), (1, 1));
        assert!(!w.sentinel_majority() && !w.lost());
        let none = Witnesses::default();
        assert!(
            none.sentinel_majority() && !none.lost(),
            "nothing configured"
        );
    }
}

//! The watcher's bookkeeping as plain state (boringtun's style): which
//! events are repeats, how long each master has gone without a Sentinel
//! majority and what to trust for it meanwhile, and when each held VIP is
//! announced next. Methods take `now` and inputs and return what to do;
//! no I/O, no clock of its own, so every rule is table-tested without root.

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::time::Instant;

use crate::announce::Target;
use crate::config::AnnounceConfig;
use crate::decide::Master;
use crate::netlink::Event;
use crate::sentinel::failover::is_switched;
use crate::sentinel::{Answer, AskError};

/// What a pass trusts for one master.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Trust {
    /// This master (the Sentinels' answer, or unknown with how long a
    /// majority has been silent).
    Master(Master),
    /// No Sentinel knows the master and a hook is waiting: its arguments
    /// decide, as they would if the hook acted itself.
    HookArgs,
}

/// What a kernel event asks of the watcher.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KernelCue {
    /// Nothing a pass reads has changed.
    Ignore,
    Pass,
    /// A pass, and every held VIP announced again: after a link went
    /// down/up or was re-created, clients must hear from the holder anew.
    PassAndAnnounce,
}

/// Which kernel events change what a pass reads. A pass reads two things
/// from the kernel: where the VIPs are, and which addresses are this
/// host's own. So a VIP removed matters, and so does any change to the
/// host's addresses: a network manager re-applying them after a flush or a
/// DHCP renewal makes the master local again, and the VIP must come back
/// then, not on the next timer pass. A VIP added is the echo of our own
/// pass (or an operator's hand, which the timer pass corrects).
pub fn kernel_cue(e: &Event, is_vip: impl Fn(IpAddr) -> bool) -> KernelCue {
    match *e {
        Event::AddrAdded(ip) if is_vip(ip) => KernelCue::Ignore,
        Event::AddrAdded(_) | Event::AddrRemoved(_) => KernelCue::Pass,
        Event::Link => KernelCue::PassAndAnnounce,
    }
}

/// Whether a VIP held after a pass (taken or kept) is announced from here,
/// given the master the pass placed it by and the state of a Sentinel
/// leading a failover of that master, if one is. Until that leader has
/// seen the replica promoted, the Sentinels' answers are the old
/// configuration: a VIP held on them (kept, or taken by a watcher
/// restarted on the old master) is held but not announced, or clients
/// would be pulled back from the replica being promoted. From
/// `reconf_slaves` on the leader answers the promoted replica: a VIP held
/// on that answer is the new holder's and stays announced, else its rounds
/// stop until the failover ends, and a stray round from the old master is
/// not undone meanwhile. A followed promotion is the new holder's too.
pub fn may_announce(master: &Master, failover: Option<&str>) -> bool {
    match (master, failover) {
        (Master::Promoted { .. }, _) | (_, None) => true,
        (_, Some(state)) => is_switched(state),
    }
}

/// Announcement schedule of one held VIP.
#[derive(Clone, Debug)]
struct Schedule {
    target: Target,
    /// Rounds still due at `interval` spacing; then refreshes.
    rounds_left: u32,
    next: Instant,
}

pub struct State {
    announce: AnnounceConfig,
    /// When the latest pass began asking the Sentinels. Sentinel is
    /// single-threaded and flushes a published event only after the state
    /// change that emitted it (sentinel.c publishes +switch-master, then
    /// changes the address, in one call), so any event received before
    /// this instant is already reflected in that pass's answers: such
    /// events are repeats, whatever they say. (Keying repeats on the
    /// event's content instead would drop a genuine later failover back to
    /// the same node, and let a forged event mask a real one.)
    asked_at: Option<Instant>,
    /// Per master, when a Sentinel majority last answered for it (or when
    /// the watcher first asked, if none ever has).
    majority_at: HashMap<String, Instant>,
    schedules: HashMap<IpAddr, Schedule>,
    /// VIPs whose master is here but which wait to be added, and why: the
    /// reason is logged when it is news, not on every pass.
    waiting: HashMap<IpAddr, String>,
    /// Sentinels (by endpoint) whose link is known to be down: their
    /// subscription is lost, or their last question failed to connect or
    /// timed out. A pass does not wait for them once a majority has answered.
    down: HashSet<String>,
}

impl State {
    pub fn new(announce: AnnounceConfig) -> State {
        State {
            announce,
            asked_at: None,
            majority_at: HashMap::new(),
            schedules: HashMap::new(),
            waiting: HashMap::new(),
            down: HashSet::new(),
        }
    }

    /// A pass found `ip` waiting to be added (`Some(why)`) or not; true
    /// when that is news worth a log line.
    pub fn waiting(&mut self, ip: IpAddr, why: Option<&str>) -> bool {
        match why {
            Some(w) if self.waiting.get(&ip).is_some_and(|old| old == w) => false,
            Some(w) => {
                self.waiting.insert(ip, w.to_string());
                true
            }
            None => {
                self.waiting.remove(&ip);
                false
            }
        }
    }

    /// A Sentinel's subscription came up (`true`) or was lost.
    pub fn link(&mut self, sentinel: &str, up: bool) {
        if up {
            self.down.remove(sentinel);
        } else {
            self.down.insert(sentinel.to_string());
        }
    }

    /// What a pass's answers say of each link: an answer (even a wrong
    /// one) means it works; a failed connection or a timeout means down
    /// until one comes. Not waited for says nothing: the Sentinel was only
    /// slower than the grace, and marking it down would deny it the grace
    /// on every later pass, so that it would never be heard again (its
    /// `up` 0 for good, its newer configuration ignored).
    pub fn answered(&mut self, answers: &[Answer]) {
        for a in answers {
            match &a.reply {
                Err(AskError::NotWaited(_)) => {}
                Err(AskError::Unreachable(_)) => self.link(&a.sentinel, false),
                _ => self.link(&a.sentinel, true),
            }
        }
    }

    /// The Sentinels a pass need not wait for.
    pub fn known_down(&self) -> &HashSet<String> {
        &self.down
    }

    /// After a reload: new announcement settings, no schedules (the next
    /// pass announces every held VIP afresh); the loss clocks run on.
    pub fn reload(&mut self, announce: AnnounceConfig) {
        self.announce = announce;
        self.schedules.clear();
    }

    /// The repeat rule: whether an event received at `received` needs a
    /// pass, or a pass that began asking after it already answered it.
    pub fn needs_pass(&self, received: Instant) -> bool {
        self.asked_at.is_none_or(|asked| received >= asked)
    }

    /// A pass begins asking the Sentinels.
    pub fn asking(&mut self, now: Instant) {
        self.asked_at = Some(now);
    }

    /// What the pass trusts for master `name`, given whether a majority
    /// answered for it, the Sentinels' combined answer (`Known` if any
    /// answered) and whether a hook is waiting on it. Runs the loss clock.
    pub fn trust(
        &mut self,
        now: Instant,
        name: &str,
        majority: bool,
        answer: &Master,
        hook_waiting: bool,
    ) -> Trust {
        let since = *self.majority_at.entry(name.to_string()).or_insert(now);
        if majority {
            self.majority_at.insert(name.to_string(), now);
        }
        let answered = !matches!(answer, Master::Unknown { .. });
        match (majority, answered, hook_waiting) {
            (true, true, _) => Trust::Master(answer.clone()),
            // A hook's stale-call guard, as when it acts itself: with no
            // Sentinel answer at all, its own arguments.
            (_, false, true) => Trust::HookArgs,
            // No Sentinels configured: nothing known, nothing lost.
            (true, false, false) => Trust::Master(answer.clone()),
            // Without a majority no answer can be trusted, a waiting
            // hook's or not (it is told to retry); the policy decides how
            // long a held VIP is kept.
            (false, _, _) => Trust::Master(Master::Unknown {
                lost_for: Some(now.duration_since(since)),
            }),
        }
    }

    /// After a pass converged one VIP. `target` is set when the VIP is held
    /// with a majority (or a waiting hook) behind it; then it is announced:
    /// from the first round if it was just taken (`fresh`) or has no
    /// schedule yet, else on its current schedule. A VIP not held, or held
    /// unconfirmed, is never announced: a healed split brain's old holder
    /// would win the clients back.
    pub fn converged(&mut self, now: Instant, ip: IpAddr, target: Option<Target>, fresh: bool) {
        match target {
            Some(t) if fresh || !self.schedules.contains_key(&ip) => {
                self.schedules.insert(
                    ip,
                    Schedule {
                        target: t,
                        rounds_left: self.announce.count,
                        next: now,
                    },
                );
            }
            Some(_) => {}
            None => {
                self.schedules.remove(&ip);
            }
        }
    }

    /// The targets whose round is due at `now`; report each with [`sent`].
    ///
    /// [`sent`]: State::sent
    pub fn due(&self, now: Instant) -> Vec<Target> {
        let mut due: Vec<&Schedule> = self.schedules.values().filter(|s| s.next <= now).collect();
        due.sort_by_key(|s| s.next);
        due.into_iter().map(|s| s.target.clone()).collect()
    }

    /// A round for `ip` went out (`ok`) or failed at `now`. A failed round
    /// is retried at the next interval (the link may be down for a moment);
    /// after the last round come refreshes, or nothing if they are off.
    pub fn sent(&mut self, now: Instant, ip: IpAddr, ok: bool) {
        let Some(s) = self.schedules.get_mut(&ip) else {
            return;
        };
        if ok {
            s.rounds_left = s.rounds_left.saturating_sub(1);
        }
        if s.rounds_left > 0 {
            s.next = now + self.announce.interval;
        } else if !self.announce.refresh.is_zero() {
            s.next = now + self.announce.refresh;
        } else {
            self.schedules.remove(&ip);
        }
    }

    /// When the next round is due, if any.
    pub fn next_due(&self) -> Option<Instant> {
        self.schedules.values().map(|s| s.next).min()
    }

    /// Whether `ip` is being announced from here.
    pub fn announcing(&self, ip: IpAddr) -> bool {
        self.schedules.contains_key(&ip)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn target(s: &str) -> Target {
        Target {
            ifindex: 2,
            ifname: "eth0".into(),
            mac: [2, 0, 0, 0, 0, 1],
            ip: ip(s),
        }
    }

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn state(count: u32, refresh: u64) -> State {
        State::new(AnnounceConfig {
            count,
            interval: ms(1100),
            refresh: ms(refresh),
        })
    }

    #[test]
    fn events_before_the_last_question_are_repeats() {
        let t0 = Instant::now();
        let mut s = state(3, 5000);
        assert!(s.needs_pass(t0), "before any pass, everything is news");
        s.asking(t0 + ms(10));
        for (received, needs) in [(0, false), (9, false), (10, true), (11, true), (500, true)] {
            assert_eq!(
                s.needs_pass(t0 + ms(received)),
                needs,
                "received at {received} ms"
            );
        }
    }

    #[test]
    fn trust_and_the_loss_clock() {
        let t0 = Instant::now();
        let here = Master::Known(vec![ip("192.0.2.11")]);
        let none = Master::Unknown { lost_for: None };
        let lost = |d: u64| {
            Trust::Master(Master::Unknown {
                lost_for: Some(ms(d)),
            })
        };
        let mut s = state(3, 5000);
        // (at ms, majority, answer, hook waiting, trusted)
        #[rustfmt::skip]
        let rows: Vec<(u64, bool, &Master, bool, Trust)> = vec![
            (0, true, &here, false, Trust::Master(here.clone())),
            // The majority goes quiet at 1000: the clock counts from the
            // last pass that had one.
            (1000, false, &here, false, lost(1000)),
            (2500, false, &none, false, lost(2500)),
            // A hook waiting: a minority's answer is no more trusted than
            // without one (issue 22, defect 4)...
            (2600, false, &here, true, lost(2600)),
            // ...and with no answer at all, its arguments.
            (2700, false, &none, true, Trust::HookArgs),
            // A majority again resets the clock.
            (3000, true, &here, false, Trust::Master(here.clone())),
            (3400, false, &none, false, lost(400)),
            // No Sentinels configured: a "majority" of none, unknown, not lost.
            (3500, true, &none, false, Trust::Master(none.clone())),
        ];
        for (at, majority, answer, hook, want) in rows {
            assert_eq!(
                s.trust(t0 + ms(at), "m", majority, answer, hook),
                want,
                "at {at} ms"
            );
        }
        // A master never confirmed counts from its first pass.
        assert_eq!(s.trust(t0 + ms(100), "n", false, &none, false), lost(0));
        assert_eq!(s.trust(t0 + ms(700), "n", false, &none, false), lost(600));
    }

    #[test]
    fn announce_schedule() {
        let t0 = Instant::now();
        let v = ip("192.0.2.100");
        let mut s = state(3, 5000);
        assert_eq!(s.next_due(), None);
        s.converged(t0, v, Some(target("192.0.2.100")), true);
        assert!(s.announcing(v));
        // Three rounds 1100 ms apart, then a refresh every 5000 ms.
        let mut at = t0;
        for (round, gap) in [(1, 1100), (2, 1100), (3, 5000), (4, 5000)] {
            assert_eq!(s.due(at).len(), 1, "round {round}");
            s.sent(at, v, true);
            assert!(s.due(at).is_empty(), "round {round} sent once");
            assert_eq!(s.next_due(), Some(at + ms(gap)), "after round {round}");
            at += ms(gap);
        }
        // A failed round is retried at the interval and not counted.
        s.converged(at, v, Some(target("192.0.2.100")), true);
        s.sent(at, v, false);
        assert_eq!(s.next_due(), Some(at + ms(1100)));
        for i in 0..3 {
            s.sent(at + ms(1100 * (i + 1)), v, true);
        }
        assert_eq!(
            s.next_due(),
            Some(at + ms(3300 + 5000)),
            "3 good rounds, then refresh"
        );
        // Kept without news: the schedule stands; taken anew: it restarts.
        s.converged(at, v, Some(target("192.0.2.100")), false);
        assert_eq!(s.next_due(), Some(at + ms(8300)));
        s.converged(at, v, Some(target("192.0.2.100")), true);
        assert_eq!(s.next_due(), Some(at));
        // Released or unconfirmed: never announced again.
        s.converged(at, v, None, false);
        assert!(!s.announcing(v) && s.next_due().is_none());
    }

    #[test]
    fn announced_during_a_failover_only_on_the_new_configuration() {
        let known = Master::Known(vec![ip("192.0.2.11")]);
        let promoted = Master::Promoted {
            ips: vec![ip("192.0.2.12")],
            epoch: 5,
        };
        // (master the pass placed the VIP by, leader's failover state, announced)
        #[rustfmt::skip]
        let rows = [
            (&known, None, true),
            // The leader has not seen the promotion: the answers are the
            // old configuration; no round may pull clients back to it.
            (&known, Some("wait_start"), false),
            (&known, Some("select_slave"), false),
            (&known, Some("send_slaveof_noone"), false),
            (&known, Some("wait_promotion"), false),
            (&known, Some("unknown"), false),
            // The leader answers the promoted replica: the VIP held on
            // that answer is the new holder's (case 10: its rounds stopped
            // until the failover ended, 2.2 s for the client).
            (&known, Some("reconf_slaves"), true),
            (&known, Some("update_config"), true),
            (&promoted, Some("wait_promotion"), true),
            (&promoted, None, true),
        ];
        for (master, failover, want) in rows {
            assert_eq!(
                may_announce(master, failover),
                want,
                "{master:?} in {failover:?}"
            );
        }
        // The new holder took the VIP on the followed promotion; the next
        // pass sees the Sentinels' new answer while the leader still
        // reconfigures the replicas: its schedule stands.
        let t0 = Instant::now();
        let v = ip("192.0.2.100");
        let mut s = state(3, 5000);
        s.converged(t0, v, Some(target("192.0.2.100")), true);
        s.sent(t0, v, true);
        let t = may_announce(&known, Some("reconf_slaves")).then(|| target("192.0.2.100"));
        s.converged(t0 + ms(900), v, t, false);
        assert_eq!(s.next_due(), Some(t0 + ms(1100)), "round 2 still due");
    }

    #[test]
    fn without_refresh_a_schedule_ends() {
        let t0 = Instant::now();
        let v = ip("2001:2::100");
        let mut s = state(2, 0);
        s.converged(t0, v, Some(target("2001:2::100")), true);
        s.sent(t0, v, true);
        s.sent(t0 + ms(1100), v, true);
        assert!(!s.announcing(v), "two rounds and no refresh");
        // Due targets come in order of their deadlines.
        let (a, b) = (ip("192.0.2.100"), ip("192.0.2.101"));
        s.converged(t0 + ms(5), a, Some(target("192.0.2.100")), true);
        s.converged(t0, b, Some(target("192.0.2.101")), true);
        let due: Vec<IpAddr> = s.due(t0 + ms(5)).iter().map(|t| t.ip).collect();
        assert_eq!(due, [b, a]);
        s.reload(AnnounceConfig::default());
        assert!(s.next_due().is_none(), "a reload forgets the schedules");
    }

    #[test]
    fn links_known_down() {
        let answer = |ep: &str, reply| Answer {
            sentinel: ep.into(),
            reply,
        };
        let mut s = state(3, 5000);
        assert!(s.known_down().is_empty());
        s.link("192.0.2.11:26379", false);
        s.answered(&[
            answer("192.0.2.12:26379", Err(AskError::NotWaited("5 ms".into()))),
            answer(
                "192.0.2.13:26379",
                Err(AskError::Unreachable("refused".into())),
            ),
        ]);
        // A Sentinel only slower than the grace is not down: the next
        // pass gives it the grace again, so that it is heard as soon as
        // it answers in time (issue 22, defect 3).
        let down = |s: &State| {
            let mut d: Vec<String> = s.known_down().iter().cloned().collect();
            d.sort();
            d
        };
        assert_eq!(down(&s), ["192.0.2.11:26379", "192.0.2.13:26379"]);
        // Not waited for again: whatever it was, it stays.
        s.answered(&[answer(
            "192.0.2.13:26379",
            Err(AskError::NotWaited("5 ms".into())),
        )]);
        assert_eq!(down(&s), ["192.0.2.11:26379", "192.0.2.13:26379"]);
        // An answer, even a refusal, proves the link; so does a subscription.
        s.answered(&[
            answer("192.0.2.12:26379", Ok(HashMap::new())),
            answer("192.0.2.13:26379", Err(AskError::Refused("NOAUTH".into()))),
        ]);
        s.link("192.0.2.11:26379", true);
        assert!(s.known_down().is_empty());
    }

    #[test]
    fn a_wait_is_logged_when_news() {
        let (v, w) = (ip("192.0.2.100"), ip("192.0.2.101"));
        let mut s = state(3, 5000);
        #[rustfmt::skip]
        let rows = [
            (v, Some("no host address"), true),
            (v, Some("no host address"), false),
            (w, Some("no host address"), true),
            (v, Some("another reason"), true),
            (v, None, false),
            (v, Some("another reason"), true),
        ];
        for (i, (ip, why, news)) in rows.into_iter().enumerate() {
            assert_eq!(s.waiting(ip, why), news, "row {i}");
        }
    }

    #[test]
    fn kernel_events_that_change_the_view_cause_a_pass() {
        let vip = ip("192.0.2.100");
        let own = ip("192.0.2.11");
        let is_vip = |a| a == vip;
        let rows = [
            (Event::AddrRemoved(vip), KernelCue::Pass),
            (Event::AddrAdded(vip), KernelCue::Ignore),
            // The host's own address back after a flush: the master may be
            // local again.
            (Event::AddrAdded(own), KernelCue::Pass),
            (Event::AddrRemoved(own), KernelCue::Pass),
            (Event::Link, KernelCue::PassAndAnnounce),
        ];
        for (e, want) in rows {
            assert_eq!(kernel_cue(&e, is_vip), want, "{e:?}");
        }
    }
}

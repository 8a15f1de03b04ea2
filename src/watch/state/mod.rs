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

    /// A pass could not apply its decision for `ip`: it refused (a foreign
    /// address, the VIP named as the master), or a change failed. Whatever
    /// was held before, nothing this pass confirmed: no more rounds until
    /// a pass takes or keeps it again (after a failover, an old holder
    /// whose release failed must not keep pulling clients back).
    pub fn failed(&mut self, ip: IpAddr) {
        self.schedules.remove(&ip);
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
mod tests;

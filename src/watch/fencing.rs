//! The fence in the watcher (`on_sentinel_loss = "fence"`): it asks the
//! plain [`Fence`] at every probe period, from the select loop and while a
//! pass waits on the Sentinels (a pass without a majority waits out
//! `sentinel_timeout_ms`, and the fence must not wait with it), and
//! releases what it says, under the host lock, through the engine's own
//! release. Only VIPs held here as ours are ever deleted; nothing is added.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::time::{Duration, Instant};

use tokio::time::sleep_until;
use tracing::{error, warn};

use super::fence::{release_for, Fence, Heard, Step, Witnesses};
use super::state::State;
use super::witness::{targets, Probes};
use super::Watcher;
use crate::config::{Config, Policy};
use crate::decide::{Action, Master};
use crate::engine::{local_addrs, Engine, FirstRound, View};
use crate::error::one_line;
use crate::lock;
use crate::metrics::{ActionKind, ErrorKind, Metrics, Said, VipId};
use crate::notify::Notifier;
use crate::sentinel::replicas::Replica;
use crate::sentinel::Answer;

/// Probes per fence time: a witness that answers at all answers several
/// times within it.
const PROBES_PER_FENCE: u32 = 6;

/// What one master's VIPs were released for.
type Fenced = (String, Witnesses);

pub(super) struct Fencing {
    on: bool,
    fence: Fence,
    probes: Probes,
    /// Per master held here, the address the Sentinels name for it: its
    /// replicas must follow that one.
    named: HashMap<String, Replica>,
    /// Masters whose fence could not arm, already logged.
    warned: HashSet<String>,
    /// When the fence was last asked, and the earliest instant a watched
    /// master's witnesses would be lost if nothing more is heard.
    last: Instant,
    next: Option<Instant>,
}

/// How long a fence may wait for its first replica before it says so.
const WAIT_WARNING: Duration = Duration::from_secs(5);

impl Fencing {
    pub fn new(cfg: &Config) -> Fencing {
        let on = cfg.on_sentinel_loss == Policy::Fence;
        let every = (cfg.fence_after / PROBES_PER_FENCE).max(Duration::from_millis(10));
        Fencing {
            on,
            fence: Fence::new(cfg.fence_after),
            probes: if on {
                Probes::start(cfg, every)
            } else {
                Probes::none(cfg)
            },
            named: HashMap::new(),
            warned: HashSet::new(),
            last: Instant::now(),
            next: None,
        }
    }

    /// When the fence wants asking next: a probe period after it last
    /// was (to follow the replica lists and the gauges), or the instant
    /// a master's witnesses would be lost, if sooner. An hour when off.
    pub fn next_wake(&self) -> Instant {
        let tick = self.last + self.period();
        self.next.map_or(tick, |n| n.min(tick))
    }

    /// How often the fence is asked (an hour when it is off).
    pub fn period(&self) -> Duration {
        match self.on {
            true => (self.fence.after() / PROBES_PER_FENCE).max(Duration::from_millis(10)),
            false => Duration::from_secs(3600),
        }
    }

    /// After a pass: its answers, and per VIP whether its master's VIP is
    /// held, with a Sentinel majority, and where the Sentinels put it.
    pub fn passed(
        &mut self,
        now: Instant,
        answers: &[Answer],
        vips: &[(String, bool, bool, Option<Replica>)],
    ) {
        if !self.on {
            return;
        }
        self.probes.heard_sentinels(answers);
        let mut per: HashMap<&str, (bool, bool, Option<&Replica>)> = HashMap::new();
        for (m, held, majority, named) in vips {
            let e = per.entry(m).or_insert((false, *majority, None));
            e.0 |= *held;
            e.2 = e.2.or(named.as_ref());
        }
        for (m, (held, majority, named)) in per {
            self.fence.passed(now, m, held, majority);
            match (held, majority, named) {
                (false, _, _) => {
                    self.named.remove(m);
                }
                (true, true, Some(n)) => {
                    self.named.insert(m.to_string(), n.clone());
                }
                _ => {}
            }
        }
    }

    /// A master whose VIP the fence released comes back only on a Sentinel
    /// majority's word: without one, nothing places it.
    pub fn gate(&self, name: &str, majority: bool, master: Master) -> Master {
        match self.on && !majority && self.fence.blocks(name) {
            true => Master::Unknown { lost_for: None },
            false => master,
        }
    }

    /// The masters whose VIPs must go now; sets the witness gauges.
    fn due(&mut self, now: Instant, cfg: &Config, metrics: &Metrics) -> Vec<Fenced> {
        (self.last, self.next) = (now, None);
        if !self.on {
            return Vec::new();
        }
        self.probes
            .watch(&targets(self.fence.watched(), &self.named));
        let mut out = Vec::new();
        for name in cfg.masters() {
            let (sentinels, replicas) = self.probes.heard(name);
            let heard = Heard {
                sentinels: &sentinels,
                replicas: &replicas,
            };
            let (step, w) = self.fence.check(now, name, &heard);
            if let Some(d) = self.fence.deadline(now, name, &heard) {
                self.next = Some(self.next.map_or(d, |n| n.min(d)));
            }
            let watched = step != Step::Idle;
            metrics.fence_witnesses(name, watched.then_some((w.sentinels, w.replicas)));
            match step {
                Step::Release => out.push((name.to_string(), w)),
                Step::Waiting(d) if d >= WAIT_WARNING && self.warned.insert(name.to_string()) => {
                    warn!(
                        master = %name, replicas_known = w.replicas_known,
                        "fence not armed: no replica answers ROLE as a connected replica of this master, so its silence would prove nothing; check redis_password and [redis_tls] (`sentinel-vip status` shows each replica's answer)"
                    );
                }
                Step::Keep => {
                    self.warned.remove(name);
                }
                _ => {}
            }
        }
        out
    }
}

/// Releases every VIP of the `fenced` masters held here as ours, through
/// the engine's release; the caller holds the host lock. Returns whether
/// anything was released. A master whose VIPs could not all be released
/// stays armed, so that the next probe period tries again.
async fn release(
    engine: &Engine,
    fencing: &mut Fencing,
    state: &mut State,
    metrics: &Metrics,
    notifier: &mut Notifier,
    fenced: &[Fenced],
) -> bool {
    let snap = match engine.snapshot().await {
        Ok(s) => s,
        Err(e) => {
            metrics.error(ErrorKind::Netlink);
            error!(error = %one_line(&e), "fence: netlink dump failed");
            return false;
        }
    };
    let view = View {
        answers: Vec::new(),
        masters: HashMap::new(),
        unresolved: Vec::new(),
        local: local_addrs(&snap.addrs, &engine.cfg),
        snap,
    };
    let after = fencing.fence.after();
    let mut any = false;
    for (name, w) in fenced {
        let mut all = true;
        for vip in engine.cfg.vips_for(name) {
            if release_for(&view.presence(vip)) != Some(Action::Release) {
                continue;
            }
            let id = VipId::from(vip);
            let ip = vip.address.ip;
            match engine
                .apply(&view, vip, Action::Release, FirstRound::Scheduled)
                .await
            {
                Ok(_) => {
                    any = true;
                    state.converged(Instant::now(), ip, None, false);
                    metrics.fence_released(&id);
                    warn!(
                        master = %name, vip = %vip.address, fence_ms = after.as_millis() as u64,
                        sentinels = w.sentinels, sentinels_total = w.sentinels_total,
                        replicas_known = w.replicas_known,
                        "fence: released; neither a Sentinel majority nor a replica heard"
                    );
                    let said = Said {
                        answered: w.sentinels,
                        configured: w.sentinels_total,
                        ..Said::default()
                    };
                    let did = Some((ActionKind::Release, "fence".to_string()));
                    notifier.outcome(&id, did, &said);
                }
                Err(e) => {
                    all = false;
                    state.failed(ip);
                    metrics.error(ErrorKind::Netlink);
                    error!(master = %name, vip = %vip.address, error = %one_line(&e), "fence: release failed");
                }
            }
        }
        if all {
            fencing.fence.released(name);
        }
    }
    any
}

/// Runs `work` (a pass's questions) while the fence keeps asking every
/// probe period, releasing under the lock the pass holds. Returns the
/// work's output and whether the fence released anything meanwhile (then
/// the pass's view of the addresses is stale).
pub(super) async fn watching<T>(
    work: impl Future<Output = T>,
    fencing: &mut Fencing,
    engine: &Engine,
    state: &mut State,
    metrics: &Metrics,
    notifier: &mut Notifier,
) -> (T, bool) {
    if !fencing.on {
        return (work.await, false);
    }
    tokio::pin!(work);
    let mut released = false;
    loop {
        tokio::select! {
            t = &mut work => return (t, released),
            _ = sleep_until(fencing.next_wake().into()) => {
                let due = fencing.due(Instant::now(), &engine.cfg, metrics);
                if !due.is_empty() {
                    released |= release(engine, fencing, state, metrics, notifier, &due).await;
                }
            }
        }
    }
}

impl Watcher {
    /// Between passes: asks the fence, and releases what it says under the
    /// host lock.
    pub(super) async fn fence_tick(&mut self) {
        let due = self
            .fencing
            .due(Instant::now(), &self.engine.cfg, &self.metrics);
        if due.is_empty() {
            return;
        }
        let _lock = match lock::acquire(&self.engine.cfg.lock_file).await {
            Ok(l) => l,
            Err(e) => {
                self.metrics.error(ErrorKind::Lock);
                error!(error = %one_line(&e), "fence: cannot take the lock; trying again");
                return;
            }
        };
        let released = release(
            &self.engine,
            &mut self.fencing,
            &mut self.state,
            &self.metrics,
            &mut self.notifier,
            &due,
        )
        .await;
        if released {
            self.set_status();
        }
    }
}

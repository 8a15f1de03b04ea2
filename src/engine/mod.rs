//! The pass, owned here and shared by every mode: [`Engine::gather`] takes
//! the view (the Sentinels' answers and one netlink dump, concurrently),
//! [`View::decide`] says what to do per VIP, [`Engine::apply`] does it.
//! Policy lives in `decide`; this module only plumbs, and never runs a
//! Sentinel question or a dump per VIP.

mod view;

pub use crate::resolve::resolve;
pub use view::{announce_target, local_addrs, placed, presence, View};

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::Instant;

use anyhow::{anyhow, Result};
use tracing::{info, warn};

use crate::announce::{Sender, Target};
use crate::config::{Config, VipConfig};
use crate::decide::{announce_again, basis, Action, Master};
use crate::error::permanent;
use crate::netlink::{Change, Netlink, Snapshot};
use crate::owned;
use crate::sentinel::{verdict, Sentinels};

/// Who sends the first announcement round for a VIP held after `apply`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FirstRound {
    /// `apply` does, for a VIP taken or kept (the hook and `reconcile`: an
    /// operator or a late retry expects clients to be pointed here again).
    Now,
    /// The caller schedules every round (the watcher).
    Scheduled,
}

/// The outcome for one VIP, for logs and replies.
#[derive(Debug)]
pub struct Outcome {
    pub action: Action,
    pub change: Option<Change>,
    /// Set when the VIP is held after the pass and announced with frames
    /// (`l2`): the caller may announce more. Never for a routed VIP.
    pub target: Option<Target>,
}

pub struct Engine {
    pub cfg: Config,
    pub nl: Netlink,
    pub sentinels: Sentinels,
    /// The ownership record, beside the lock.
    pub record: PathBuf,
    /// Opened on first use (it needs CAP_NET_RAW, `status` does not) and
    /// kept: closing an AF_PACKET socket costs an RCU grace period.
    packet: OnceLock<Sender>,
}

impl Engine {
    pub fn new(cfg: Config) -> Result<Engine> {
        let sentinels = Sentinels::new(&cfg)?;
        Ok(Engine {
            nl: Netlink::connect()?,
            sentinels,
            record: owned::path_for(&cfg.lock_file),
            cfg,
            packet: OnceLock::new(),
        })
    }

    /// The view of one pass: every Sentinel asked about `names` in one
    /// pipeline each, while the netlink dump runs (the two are
    /// independent); then each verdict resolved to addresses.
    pub async fn gather(&self, names: &[&str]) -> Result<View> {
        self.gather_knowing(names, &HashSet::new()).await
    }

    /// [`Engine::gather`] for a caller that knows which Sentinels' links
    /// are down (the watcher): once a majority has answered, those are
    /// not waited for.
    pub async fn gather_knowing(
        &self,
        names: &[&str],
        known_down: &HashSet<String>,
    ) -> Result<View> {
        let (answers, snap) =
            tokio::join!(self.sentinels.ask(names, known_down), self.nl.snapshot());
        let mut snap = snap?;
        self.vouch(&mut snap);
        // Names (announce-hostnames) resolve all at once, each within the
        // Sentinel timeout: a dead resolver costs a pass that, not more.
        let verdicts: Vec<_> = names.iter().map(|n| (*n, verdict(&answers, n))).collect();
        let within = self.cfg.sentinel_timeout;
        let resolved = futures::future::join_all(verdicts.iter().map(|(_, v)| async move {
            match &v.master {
                Some(r) => Some(
                    resolve(&r.host, within)
                        .await
                        .map(|ips| placed(&r.host, ips)),
                ),
                None => None,
            }
        }))
        .await;
        let mut masters = HashMap::new();
        let mut unresolved = Vec::new();
        for ((n, v), r) in verdicts.into_iter().zip(resolved) {
            let m = match r {
                Some(Ok(m)) => m,
                Some(Err(e)) => {
                    warn!(master = %n, error = %e, temporary = e.temporary, "cannot resolve the master Sentinel names");
                    unresolved.push((n.to_string(), e));
                    Master::Unknown { lost_for: None }
                }
                None => Master::Unknown { lost_for: None },
            };
            masters.insert(n.to_string(), (v, m));
        }
        Ok(View {
            answers,
            masters,
            unresolved,
            local: local_addrs(&snap.addrs, &self.cfg),
            snap,
        })
    }

    /// This host's links and addresses, the ones the record vouches for
    /// marked ours.
    pub async fn snapshot(&self) -> Result<Snapshot> {
        let mut snap = self.nl.snapshot().await?;
        self.vouch(&mut snap);
        Ok(snap)
    }

    /// Marks what the ownership record vouches for, reading it only when
    /// some configured VIP is present untagged and primary (on a kernel
    /// that keeps the tag, never).
    fn vouch(&self, snap: &mut Snapshot) {
        owned::learn(&snap.addrs);
        let untagged =
            |a: &crate::netlink::Addr| self.cfg.is_vip(a.ip) && !a.tagged() && !a.secondary;
        if snap.addrs.iter().any(untagged) {
            owned::mark(&mut snap.addrs, &owned::load(&self.record));
        }
    }

    /// Sends one announcement round for `t`.
    pub fn send_round(&self, t: &Target) -> Result<()> {
        let sender = match self.packet.get() {
            Some(s) => s,
            None => {
                let s = Sender::open()?;
                self.packet.get_or_init(|| s)
            }
        };
        sender
            .send_round(t)
            .map_err(|e| anyhow!("announce {} on {}: {e}", t.ip, t.ifname))
    }

    /// Decides for `vip` against `view` with `master`, and applies it: the
    /// one-shot runs' pass. Waiting is a transient failure for them (exit
    /// 1: Sentinel retries the hook); the watcher's next pass needs none.
    pub async fn converge(
        &self,
        view: &View,
        vip: &VipConfig,
        master: &Master,
        first: FirstRound,
    ) -> Result<Outcome> {
        let action = view.decide(&self.cfg, vip, master);
        if let Action::Wait(why) = &action {
            return Err(anyhow!("{}: {} not added: {why}", vip.master, vip.address));
        }
        self.apply(view, vip, action, first).await
    }

    /// Carries out `action` for `vip`: add and announce, keep, or delete.
    pub async fn apply(
        &self,
        view: &View,
        vip: &VipConfig,
        action: Action,
        first: FirstRound,
    ) -> Result<Outcome> {
        let link = view.snap.link(&vip.interface);
        let mut out = Outcome {
            action: action.clone(),
            change: None,
            target: None,
        };
        if !matches!(
            action,
            Action::Nothing | Action::Wait(_) | Action::Refuse(_)
        ) {
            // Fail before touching anything: adding a VIP we then cannot
            // announce would leave clients pointing at the old holder.
            let missing = crate::caps::missing(vip.sends_frames());
            if !missing.is_empty() {
                return Err(permanent(format!(
                    "{}: would {action:?} {} but lacks {}",
                    vip.master,
                    vip.address,
                    missing.join(" and ")
                )));
            }
        }
        match &action {
            Action::Refuse(why) => return Err(permanent(format!("{}: {why}", vip.master))),
            Action::Nothing | Action::Wait(_) => {}
            Action::Acquire | Action::Keep => {
                let link = link.ok_or_else(|| {
                    anyhow!("{}: interface {} does not exist", vip.master, vip.interface)
                })?;
                // Before the add: an l2 VIP nobody could hear of is
                // refused, not added.
                let target = announce_target(vip, link).map_err(permanent)?;
                if action == Action::Acquire {
                    let label = vip.label.as_deref();
                    let change = self.nl.add(vip.address, link.index, label).await?;
                    if change == Change::Made {
                        owned::added_or_undo(&self.nl, &self.record, vip.address, link.index)
                            .await?;
                    }
                    out.change = Some(change);
                }
                if let (Some(t), FirstRound::Now) = (&target, first) {
                    self.send_round(t)?;
                }
                out.target = target;
            }
            Action::Release => {
                // Presence was Held, so the interface exists in the view.
                let index = link
                    .map(|l| l.index)
                    .ok_or_else(|| anyhow!("interface {} vanished", vip.interface))?;
                out.change = Some(self.nl.del(vip.address, index).await?);
                owned::forget(&self.record, vip.address.ip);
            }
        }
        Ok(out)
    }

    /// The remaining announcement rounds of a one-shot run, for every VIP
    /// it holds, `announce.interval_ms` apart. Before each round, one
    /// view for all of them (never one per VIP); a VIP gets the round only
    /// if [`announce_again`] allows, and once refused it gets no more.
    pub async fn repeat_rounds(&self, held: &[(&VipConfig, Target)], rounds: u32) {
        let mut held: Vec<&(&VipConfig, Target)> = held.iter().collect();
        for _ in 0..rounds {
            if held.is_empty() {
                return;
            }
            tokio::time::sleep(self.cfg.announce.interval).await;
            let names: Vec<&str> = held.iter().map(|(v, _)| v.master.as_str()).collect();
            let view = match self.gather(&names).await {
                Ok(v) => v,
                Err(e) => {
                    warn!(error = %e, "cannot check the VIPs before announcing; stopping");
                    return;
                }
            };
            held.retain(|(vip, t)| {
                let present = view
                    .snap
                    .addrs
                    .iter()
                    .any(|a| a.ip == t.ip && a.index == t.ifindex);
                let (v, master) = view.master(&vip.master);
                let b = basis(v.answered, v.total, master);
                let again = announce_again(present, &b, &view.local);
                if !again {
                    info!(vip = %t.ip, present, sentinel = %b, "VIP no longer ours to announce; stopping");
                }
                again
            });
            for (_, t) in &held {
                if let Err(e) = self.send_round(t) {
                    warn!(vip = %t.ip, error = %e, "announce failed");
                }
            }
        }
    }
}

/// Milliseconds since `t`, for logs.
pub fn ms(t: Instant) -> f64 {
    t.elapsed().as_secs_f64() * 1e3
}

//! The watcher's pass: gather the view, decide and apply for every VIP,
//! send the first announcement rounds, then tell everyone who asked or
//! watches: the hooks waiting on the control socket, the metrics, the
//! notify commands. The rules it follows are `State`'s and `Promotions'`.

use std::collections::HashMap;
use std::time::Instant;

use tracing::{debug, error, info, warn};

use super::fencing;
use super::follow::{still_master, RECHECK_AFTER};
use super::state::{self, Trust};
use super::Watcher;
use crate::config::Mode;
use crate::control::server::HookRequest;
use crate::control::Reply;
use crate::decide::{basis, Action, Basis, Master, Presence};
use crate::engine::{local_addrs, ms, placed, resolve, FirstRound};
use crate::error::{exit_code, one_line};
use crate::lock;
use crate::metrics::{ActionKind, ErrorKind, Said, Trigger as Why, VipId};
use crate::sentinel::failover::is_promoting;

/// What one VIP came to in a pass, reported once the rounds are out.
struct Done {
    id: VipId,
    did: Option<(ActionKind, String)>,
    said: Said,
}

/// Per master, the reply a waiting hook gets: with several VIPs, the worst
/// code and every VIP's line.
fn merge(replies: &mut HashMap<String, Reply>, master: &str, r: Reply) {
    match replies.get_mut(master) {
        Some(old) => {
            *old = Reply::new(
                old.code.max(r.code),
                format!("{}; {}", old.message, r.message),
            )
        }
        None => {
            replies.insert(master.to_string(), r);
        }
    }
}

impl Watcher {
    /// One pass over every VIP, then the answers to the hook requests that
    /// were waiting for it, the metrics and the status line.
    pub(super) async fn pass(&mut self, why: Why, since: Option<Instant>, announce_held: bool) {
        let t0 = Instant::now();
        let requests = std::mem::take(&mut self.pending);
        self.passes += 1;
        let outcome = self.pass_once(why, since, announce_held, &requests).await;
        self.metrics.pass_done(why, t0.elapsed(), outcome.is_ok());
        if let Err((kind, e)) = &outcome {
            self.metrics.error(*kind);
            error!(error = %e, "pass failed");
        }
        for r in requests {
            let reply = match &outcome {
                Ok(per_master) => per_master
                    .get(&r.call.master)
                    .cloned()
                    .unwrap_or_else(|| Reply::new(0, "nothing to do")),
                Err((_, e)) => Reply::new(1, format!("pass failed: {e}")),
            };
            info!(
                peer = %r.peer, master = %r.call.master, code = reply.code, message = %reply.message,
                wait_ms = ms(r.at), pass = self.passes, "hook request answered"
            );
            let _ = r.reply.send(reply);
        }
        self.set_status();
    }

    /// Gather, decide and apply for every VIP; the first announcement
    /// rounds go out before the lock is released (announcing is the point
    /// of taking the VIP, and it takes microseconds), and the notify
    /// commands are queued after them. Returns, per master, the reply a
    /// hook asking about it gets.
    async fn pass_once(
        &mut self,
        why: Why,
        since: Option<Instant>,
        announce_held: bool,
        requests: &[HookRequest],
    ) -> Result<HashMap<String, Reply>, (ErrorKind, String)> {
        let t0 = Instant::now();
        let cfg = &self.engine.cfg;
        let _lock = lock::acquire(&cfg.lock_file).await.map_err(|e| {
            (
                ErrorKind::Lock,
                format!("cannot take the lock: {}", one_line(&e)),
            )
        })?;
        let names = cfg.masters();
        self.state.asking(Instant::now());
        // A followed promotion stands only while its replica is master:
        // ask again, beside the Sentinels.
        let recheck = self.promotions.to_recheck(Instant::now(), RECHECK_AFTER);
        let known_down = self.state.known_down().clone();
        let asking = async {
            tokio::join!(
                self.engine.gather_knowing(&names, &known_down),
                still_master(&self.engine.cfg, &recheck)
            )
        };
        // The fence keeps watch while the Sentinels are asked.
        let ((view, demoted), fenced) = fencing::watching(
            asking,
            &mut self.fencing,
            &self.engine,
            &mut self.state,
            &self.metrics,
            &mut self.notifier,
        )
        .await;
        let mut view = view.map_err(|e| {
            (
                ErrorKind::Netlink,
                format!("netlink dump failed: {}", one_line(&e)),
            )
        })?;
        if fenced {
            // What the kernel holds now, not what it held before the fence.
            view.snap = self.engine.snapshot().await.map_err(|e| {
                let e = format!("netlink dump failed: {}", one_line(&e));
                (ErrorKind::Netlink, e)
            })?;
            view.local = local_addrs(&view.snap.addrs, cfg);
        }
        for (master, replica) in demoted {
            info!(master = %master, replica = %replica.0, "promotion over: the replica is no longer master");
            self.promotions.demoted(&master, &replica);
        }
        self.state.answered(&view.answers);
        for (a, (_, reset)) in view.answers.iter().zip(&self.subscribers) {
            self.metrics.sentinel_answer(&a.sentinel, a.reply.is_ok());
            if a.unreachable() {
                // The connection failed, so the subscription is suspect
                // too. (A wrong answer over a working connection, as from
                // a data Redis listed by mistake, says nothing about it.)
                reset.notify_one();
            }
        }
        // Once per master, however many VIPs it has (announce-hostnames).
        for _ in &view.unresolved {
            self.metrics.error(ErrorKind::Resolve);
        }
        let now = Instant::now();
        let mut changed = 0;
        let mut replies = HashMap::new();
        let mut hints = Vec::new();
        let mut done = Vec::new();
        let mut fence_seen = Vec::new();
        for vip in &cfg.vip {
            let (v, answer) = view.master(&vip.master);
            let id = VipId::from(vip);
            let said = Said::from(&v);
            // The newest request for this master, if a hook is waiting.
            let hook = requests.iter().rev().find(|r| r.call.master == vip.master);
            let epoch = v.master.as_ref().map(|r| r.epoch);
            if let (true, Some(e), Master::Known(_)) = (v.majority(), epoch, &answer) {
                self.promotions.saw(&vip.master, e);
            }
            // A Sentinel leading a failover of this master: followed like
            // its events (level-triggered, so a watcher that missed them,
            // restarted or reconnected, still follows).
            if let Some((sentinel, state)) = &v.failover {
                if cfg.follow_promotion && is_promoting(state) {
                    hints.push((vip.master.clone(), sentinel.clone()));
                }
            }
            // A master the Sentinels named by a name that did not resolve
            // is their answer failing, not their silence: a hook's
            // arguments do not stand in for it.
            let unresolved = view.unresolved(&vip.master);
            let args_may_decide = hook.is_some() && unresolved.is_none();
            let trusted =
                self.state
                    .trust(now, &vip.master, v.majority(), &answer, args_may_decide);
            // A hook waiting on a pass that trusted no answer is told why,
            // and to retry: a minority settled nothing it asked.
            let mut unconfirmed = match (unresolved, basis(v.answered, v.total, answer)) {
                (Some(e), _) => Some(Reply::new(
                    if e.temporary { 1 } else { 2 },
                    format!("{}: {e}", vip.master),
                )),
                (None, b @ Basis::Minority { .. }) => {
                    Some(Reply::new(1, format!("{}: {b}", vip.master)))
                }
                _ => None,
            };
            // A followed promotion goes before the Sentinels' answer until
            // they reach a newer configuration.
            let master = match (self.promotions.master_for(&vip.master, epoch), trusted) {
                (Some(promoted), _) => {
                    unconfirmed = None;
                    promoted
                }
                (None, Trust::Master(m)) => m,
                (None, Trust::HookArgs) => {
                    let to = &hook.expect("only with a hook waiting").call.to.0;
                    match resolve(to, cfg.sentinel_timeout).await {
                        Ok(ips) => {
                            warn!(master = %vip.master, to = %to, "no Sentinel answered; acting on the hook's arguments");
                            placed(to, ips)
                        }
                        Err(e) => {
                            self.metrics.error(ErrorKind::Resolve);
                            let held = view.presence(vip) == Presence::Held;
                            self.metrics.vip_state(&id, held, &said);
                            let code = if e.temporary { 1 } else { 2 };
                            let e = format!("{}: no Sentinel answered and TO_IP: {e}", vip.master);
                            merge(&mut replies, &vip.master, Reply::new(code, e));
                            continue;
                        }
                    }
                }
            };
            let master = self.fencing.gate(&vip.master, v.majority(), master);
            if let Master::Unknown { lost_for: Some(d) } = &master {
                warn!(master = %vip.master, answered = v.answered, total = v.total, lost_ms = d.as_millis() as u64, "no Sentinel majority");
            }
            let action = view.decide(cfg, vip, &master);
            let result = self
                .engine
                .apply(&view, vip, action.clone(), FirstRound::Scheduled)
                .await;
            let reply = match &result {
                Ok(o) => Reply::new(
                    0,
                    format!(
                        "{}: {:?} {} (Sentinels: {v})",
                        vip.master, o.action, vip.address
                    ),
                ),
                Err(e) => Reply::new(exit_code(e) as u8, one_line(e)),
            };
            let reply = match unconfirmed {
                Some(r) if reply.code == 0 => r,
                _ => reply,
            };
            merge(&mut replies, &vip.master, reply);
            // Held after the pass: what it did, or what it found.
            let held = match (&result, &action) {
                (Ok(_), Action::Acquire | Action::Keep) => true,
                (Ok(_), Action::Release) => false,
                _ => view.presence(vip) == Presence::Held,
            };
            self.metrics.vip_state(&id, held, &said);
            if vip.mode() == Mode::Routed && held {
                self.routed_held.insert(vip.address.ip);
            } else {
                self.routed_held.remove(&vip.address.ip);
            }
            let named = v.master.as_ref().map(|r| (r.host.clone(), r.port));
            fence_seen.push((vip.master.clone(), held, v.majority(), named));
            // A refusal is news whether or not applying it "failed"; other
            // changes count once made.
            let did = match (&result, ActionKind::of(&action)) {
                (_, Some((ActionKind::Refuse, why))) => Some((ActionKind::Refuse, why)),
                (Ok(_), d) => d,
                (Err(_), _) => None,
            };
            if let Some((kind, _)) = &did {
                self.metrics.action(&id, *kind);
            }
            // With the master unknown, doing nothing is no news: a
            // refusal stays remembered, so a flapping majority does not
            // run on_refuse again each time it comes back.
            if !(action == Action::Nothing && matches!(master, Master::Unknown { .. })) {
                done.push(Done { id, did, said });
            }
            match result {
                Ok(o) => {
                    if let Action::Wait(why) = &o.action {
                        if self.state.waiting(vip.address.ip, Some(why)) {
                            warn!(master = %vip.master, vip = %vip.address, why = %why, "VIP not added yet");
                        }
                    } else {
                        self.state.waiting(vip.address.ip, None);
                    }
                    if !matches!(o.action, Action::Nothing | Action::Keep | Action::Wait(_)) {
                        changed += 1;
                        info!(
                            master = %vip.master, vip = %vip.address, why = why.as_str(), action = ?o.action,
                            change = ?o.change, sentinel = ?v.master, latency_ms = since.map(ms),
                            "changed"
                        );
                    }
                    let fresh = o.action == Action::Acquire || announce_held;
                    let failover = v.failover.as_ref().map(|(_, s)| s.as_str());
                    let target = o.target.filter(|_| state::may_announce(&master, failover));
                    self.state.converged(now, vip.address.ip, target, fresh);
                }
                Err(e) => {
                    self.state.failed(vip.address.ip);
                    if !matches!(action, Action::Refuse(_)) {
                        self.metrics.error(ErrorKind::Netlink);
                    }
                    error!(master = %vip.master, error = %one_line(&e), "pass")
                }
            }
        }
        self.fencing.passed(now, &view.answers, &fence_seen);
        let vips = cfg.vip.len();
        self.announce_due();
        // After the address changes and the first rounds, never before:
        // a notify command must not delay what clients need.
        for d in done {
            self.notifier.outcome(&d.id, d.did, &d.said);
        }
        for (master, sentinel) in hints {
            let next = self.promotions.hint(now, &master, &sentinel, None);
            self.follow(&master, None, next);
        }
        debug!(
            why = why.as_str(),
            vips,
            changed,
            elapsed_ms = ms(t0),
            "pass done"
        );
        Ok(replies)
    }

    /// Sends every round that is due.
    pub(super) fn announce_due(&mut self) {
        let now = Instant::now();
        for t in self.state.due(now) {
            let ok = match self.engine.send_round(&t) {
                Ok(()) => true,
                Err(e) => {
                    warn!(vip = %t.ip, error = %one_line(&e), "announce failed");
                    false
                }
            };
            self.metrics.announced(t.ip, ok);
            self.state.sent(now, t.ip, ok);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies_for_several_vips_of_a_master_merge() {
        let mut r = HashMap::new();
        merge(&mut r, "m", Reply::new(0, "m: Acquire 192.0.2.100/24"));
        merge(&mut r, "m", Reply::new(2, "m: refused"));
        merge(&mut r, "n", Reply::new(1, "n: netlink"));
        assert_eq!(r["m"].code, 2, "the worst code");
        assert_eq!(r["m"].message, "m: Acquire 192.0.2.100/24; m: refused");
        assert_eq!(r["n"].code, 1);
    }
}

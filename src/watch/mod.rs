//! Watch mode: a long-running daemon that keeps every VIP where Sentinel
//! says its master is. Level-triggered: Sentinel events, reconnects, kernel
//! address/link events, hook requests and a timer all lead to the same
//! pass, which compares desired with actual; events only make it happen
//! sooner. This module holds the select loop and the I/O; every rule about
//! repeats, trust and announcing lives in [`state`], as plain state.

mod state;
mod subscribe;

use std::collections::HashMap;
use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use futures::StreamExt;
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::{mpsc, Notify};
use tokio::task::JoinHandle;
use tokio::time::{interval, sleep_until, MissedTickBehavior};
use tracing::{debug, error, info, warn};

use crate::config::{Config, Policy};
use crate::control::server::{self, HookRequest};
use crate::control::Reply;
use crate::decide::{Action, Master, Presence};
use crate::engine::{ms, resolve, Engine, FirstRound};
use crate::error::{exit_code, one_line, permanent};
use crate::lock;
use crate::netlink::{self, Event as KernelEvent};
use crate::sentinel::Event;
use state::{kernel_cue, KernelCue, State, Trust};

/// Why a pass runs.
#[derive(Debug)]
enum Trigger {
    Sentinel {
        from: String,
        ev: Event,
        at: Instant,
    },
    Subscribed(String),
    Kernel(KernelEvent, Instant),
    /// A hook handed its call over the control socket.
    Hook(HookRequest),
}

impl From<HookRequest> for Trigger {
    fn from(r: HookRequest) -> Trigger {
        Trigger::Hook(r)
    }
}

struct Watcher {
    engine: Engine,
    path: PathBuf,
    tx: mpsc::Sender<Trigger>,
    subscribers: Vec<(JoinHandle<()>, Arc<Notify>)>,
    state: State,
    /// Hook requests waiting for the next pass (which begins asking after
    /// they arrived, so its answer is news to them).
    pending: Vec<HookRequest>,
    /// The last STATUS= sent to systemd, so that only changes are sent.
    status: String,
    /// Passes run so far, for the log: which requests one pass answered.
    passes: u64,
}

pub async fn run(path: PathBuf, cfg: Config, shutdown: impl Future<Output = ()>) -> Result<()> {
    let missing = crate::caps::missing();
    if !missing.is_empty() {
        return Err(permanent(format!(
            "watch: missing capability {} (grant CAP_NET_ADMIN and CAP_NET_RAW, see README)",
            missing.join(" and ")
        )));
    }
    let (tx, mut rx) = mpsc::channel(4096);
    // Bound before the first pass: a hook that arrives meanwhile waits in
    // the queue instead of finding no watcher.
    let control = server::bind(&cfg.control_socket, &cfg.control_socket_group)?;
    info!(socket = %control.path().display(), group = %cfg.control_socket_group, "control socket ready");
    let control = tokio::spawn(control.serve(tx.clone()));
    let mut w = Watcher {
        state: State::new(cfg.announce.clone()),
        engine: Engine::new(cfg)?,
        path,
        tx: tx.clone(),
        subscribers: Vec::new(),
        pending: Vec::new(),
        status: String::new(),
        passes: 0,
    };
    let kernel = {
        let mut events = netlink::monitor()?;
        let tx = tx.clone();
        tokio::spawn(async move {
            while let Some(e) = events.next().await {
                if tx.send(Trigger::Kernel(e, Instant::now())).await.is_err() {
                    return;
                }
            }
        })
    };
    let mut term = signal(SignalKind::terminate()).context("SIGTERM handler")?;
    let mut hup = signal(SignalKind::hangup()).context("SIGHUP handler")?;
    tokio::pin!(shutdown);

    info!(
        vips = w.engine.cfg.vip.len(),
        sentinels = w.engine.cfg.sentinels.len(),
        "watch: starting"
    );
    w.spawn_subscribers();
    w.pass("start", None, true).await;
    notify(&[sd_notify::NotifyState::Ready]);
    let mut tick = w.ticker();
    // systemd's WatchdogSec: pet it from the loop itself, so a loop stuck
    // in a pass is restarted.
    let watchdog = sd_notify::watchdog_enabled();
    let mut dog = interval(watchdog.map_or(Duration::from_secs(3600), |d| d / 2));
    loop {
        let due = w.state.next_due();
        let announce_due = sleep_until(
            due.unwrap_or_else(|| Instant::now() + Duration::from_secs(3600))
                .into(),
        );
        tokio::select! {
            Some(t) = rx.recv() => {
                // Coalesce a burst (several Sentinels, several channels,
                // several hooks) into one pass.
                let mut triggers = vec![t];
                while let Ok(t) = rx.try_recv() {
                    triggers.push(t);
                }
                w.on_triggers(triggers).await;
            }
            _ = tick.tick() => w.pass("timer", None, false).await,
            _ = announce_due => w.announce_due(),
            _ = dog.tick(), if watchdog.is_some() => notify(&[sd_notify::NotifyState::Watchdog]),
            _ = hup.recv() => {
                notify(&[sd_notify::NotifyState::Reloading]);
                w.reload().await;
                tick = w.ticker();
                notify(&[sd_notify::NotifyState::Ready]);
            }
            _ = term.recv() => break,
            _ = &mut shutdown => break,
        }
    }
    notify(&[sd_notify::NotifyState::Stopping]);
    // Dropping the listener removes the socket file: a hook started from
    // now on finds no watcher instead of waiting on one that is leaving.
    control.abort();
    let _ = control.await;
    kernel.abort();
    for (h, _) in &w.subscribers {
        h.abort();
    }
    w.exit().await
}

/// Tells systemd (`Type=notify`); a no-op when not started by it.
fn notify(state: &[sd_notify::NotifyState]) {
    if let Err(e) = sd_notify::notify(state) {
        debug!(error = %e, "sd_notify failed");
    }
}

impl Watcher {
    /// The timer pass, at the configured interval (rebuilt on reload).
    fn ticker(&self) -> tokio::time::Interval {
        let mut tick = interval(self.engine.cfg.reconcile_interval);
        tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
        tick.reset();
        tick
    }

    fn spawn_subscribers(&mut self) {
        for (h, _) in self.subscribers.drain(..) {
            h.abort();
        }
        let t = self.engine.cfg.sentinel_timeout;
        for (ep, client) in self.engine.sentinels.clients() {
            let reset = Arc::new(Notify::new());
            let h = tokio::spawn(subscribe::subscribe(
                ep.to_string(),
                client.clone(),
                self.tx.clone(),
                reset.clone(),
                t,
            ));
            self.subscribers.push((h, reset));
        }
    }

    async fn on_triggers(&mut self, triggers: Vec<Trigger>) {
        let mut run = None;
        let mut announce_held = false;
        let now = Instant::now();
        let earliest = |run: Option<Instant>, at: Instant| Some(run.map_or(at, |r| r.min(at)));
        for t in triggers {
            match t {
                Trigger::Sentinel { from, ev, at } => {
                    if self.engine.cfg.vip_for(&ev.master).is_none() {
                        info!(sentinel = %from, event = %ev, "event for a master not configured here; ignored");
                    } else if !self.state.needs_pass(at) {
                        debug!(sentinel = %from, event = %ev, "event already seen by a later pass");
                    } else {
                        run = earliest(run, at);
                    }
                }
                Trigger::Subscribed(ep) => {
                    // Pub/sub drops what was published while we were away.
                    debug!(sentinel = %ep, "subscribed; reconciling for anything missed");
                    run = earliest(run, now);
                }
                Trigger::Kernel(e, at) => {
                    let cfg = &self.engine.cfg;
                    match kernel_cue(&e, |ip| cfg.is_vip(ip)) {
                        KernelCue::Ignore => continue,
                        KernelCue::Pass => {}
                        KernelCue::PassAndAnnounce => announce_held = true,
                    }
                    match e {
                        KernelEvent::AddrRemoved(ip) if cfg.is_vip(ip) => {
                            info!(vip = %ip, "VIP removed from the kernel")
                        }
                        _ => debug!(event = ?e, "kernel event"),
                    }
                    run = earliest(run, at);
                }
                Trigger::Hook(r) => {
                    info!(peer = %r.peer, master = %r.call.master, to = %r.call.to.0, "hook request");
                    if self.engine.cfg.vip_for(&r.call.master).is_none() {
                        let why = format!(
                            "master {} is not configured here; nothing to do",
                            r.call.master
                        );
                        let _ = r.reply.send(Reply::new(0, why));
                        continue;
                    }
                    run = earliest(run, r.at);
                    self.pending.push(r);
                }
            }
        }
        if let Some(at) = run {
            self.pass("event", Some(at), announce_held).await;
        }
    }

    /// One pass over every VIP, then the answers to the hook requests that
    /// were waiting for it, and the status line.
    async fn pass(&mut self, why: &str, since: Option<Instant>, announce_held: bool) {
        let requests = std::mem::take(&mut self.pending);
        self.passes += 1;
        let outcome = self.pass_once(why, since, announce_held, &requests).await;
        if let Err(e) = &outcome {
            error!(error = %e, "pass failed");
        }
        for r in requests {
            let reply = match &outcome {
                Ok(per_master) => per_master[&r.call.master].clone(),
                Err(e) => Reply::new(1, format!("pass failed: {e}")),
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
    /// of taking the VIP, and it takes microseconds). Returns, per master,
    /// the reply a hook asking about it gets.
    async fn pass_once(
        &mut self,
        why: &str,
        since: Option<Instant>,
        announce_held: bool,
        requests: &[HookRequest],
    ) -> Result<HashMap<String, Reply>, String> {
        let t0 = Instant::now();
        let cfg = &self.engine.cfg;
        let _lock = lock::acquire(&cfg.lock_file)
            .await
            .map_err(|e| format!("cannot take the lock: {}", one_line(&e)))?;
        let names = cfg.masters();
        self.state.asking(Instant::now());
        let view = self
            .engine
            .gather(&names)
            .await
            .map_err(|e| format!("netlink dump failed: {}", one_line(&e)))?;
        for (a, (_, reset)) in view.answers.iter().zip(&self.subscribers) {
            if a.unreachable() {
                // The connection failed, so the subscription is suspect
                // too. (A wrong answer over a working connection, as from
                // a data Redis listed by mistake, says nothing about it.)
                reset.notify_one();
            }
        }
        let now = Instant::now();
        let mut changed = 0;
        let mut replies = HashMap::new();
        for vip in &cfg.vip {
            let (v, answer) = view.master(&vip.master);
            // The newest request for this master, if a hook is waiting.
            let hook = requests.iter().rev().find(|r| r.call.master == vip.master);
            let master = match self.state.trust(
                now,
                &vip.master,
                v.majority(),
                &answer,
                hook.is_some(),
            ) {
                Trust::Master(m) => m,
                Trust::HookArgs => {
                    let to = &hook.expect("only with a hook waiting").call.to.0;
                    match resolve(to).await {
                        Ok(ips) => {
                            warn!(master = %vip.master, to = %to, "no Sentinel answered; acting on the hook's arguments");
                            Master::Known(ips)
                        }
                        Err(e) => {
                            let e = format!("{}: no Sentinel answered and TO_IP: {e}", vip.master);
                            replies.insert(vip.master.clone(), Reply::new(2, e));
                            continue;
                        }
                    }
                }
            };
            if let Master::Unknown { lost_for: Some(d) } = &master {
                warn!(master = %vip.master, answered = v.answered, total = v.total, lost_ms = d.as_millis() as u64, "no Sentinel majority");
            }
            let result = self
                .engine
                .converge(&view, vip, &master, FirstRound::Scheduled)
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
            replies.insert(vip.master.clone(), reply);
            match result {
                Ok(o) => {
                    if !matches!(o.action, Action::Nothing | Action::Keep) {
                        changed += 1;
                        info!(
                            master = %vip.master, vip = %vip.address, why, action = ?o.action, change = ?o.change,
                            sentinel = ?v.master, latency_ms = since.map(ms),
                            "changed"
                        );
                    }
                    let fresh = o.action == Action::Acquire || announce_held;
                    self.state.converged(now, vip.address.ip, o.target, fresh);
                }
                Err(e) => error!(master = %vip.master, error = %one_line(&e), "pass"),
            }
        }
        let vips = cfg.vip.len();
        self.announce_due();
        debug!(why, vips, changed, elapsed_ms = ms(t0), "pass done");
        Ok(replies)
    }

    /// Sends every round that is due.
    fn announce_due(&mut self) {
        let now = Instant::now();
        for t in self.state.due(now) {
            let ok = match self.engine.send_round(&t) {
                Ok(()) => true,
                Err(e) => {
                    warn!(vip = %t.ip, error = %one_line(&e), "announce failed");
                    false
                }
            };
            self.state.sent(now, t.ip, ok);
        }
    }

    /// STATUS= for systemd: what this host announces, sent when it changes.
    fn set_status(&mut self) {
        let held: Vec<String> = self
            .engine
            .cfg
            .vip
            .iter()
            .filter(|v| self.state.announcing(v.address.ip))
            .map(|v| format!("{} {}", v.master, v.address))
            .collect();
        let status = format!(
            "{} of {} VIPs held and announced here{}{}",
            held.len(),
            self.engine.cfg.vip.len(),
            if held.is_empty() { "" } else { ": " },
            held.join(", ")
        );
        if status != self.status {
            notify(&[sd_notify::NotifyState::Status(&status)]);
            self.status = status;
        }
    }

    async fn reload(&mut self) {
        match Config::load(&self.path).and_then(Engine::new) {
            Ok(engine) => {
                info!(path = %self.path.display(), vips = engine.cfg.vip.len(), "SIGHUP: config reloaded");
                let old = &self.engine.cfg;
                if (&old.control_socket, &old.control_socket_group)
                    != (&engine.cfg.control_socket, &engine.cfg.control_socket_group)
                {
                    warn!("SIGHUP: control_socket and its group change at the next restart");
                }
                self.state.reload(engine.cfg.announce.clone());
                self.engine = engine;
                self.spawn_subscribers();
                self.pass("reload", None, true).await;
            }
            Err(e) => {
                error!(error = %one_line(&e), "SIGHUP: config not reloaded; keeping the old one")
            }
        }
    }

    /// SIGTERM/SIGINT: keep the VIPs (default: a restart must not drop
    /// clients) or release the ones held.
    async fn exit(self) -> Result<()> {
        let cfg = &self.engine.cfg;
        if cfg.on_exit == Policy::Keep {
            info!("watch: exiting; VIPs kept (on_exit = keep)");
            return Ok(());
        }
        let _lock = lock::acquire(&cfg.lock_file).await?;
        let snap = self.engine.nl.snapshot().await?;
        for v in &cfg.vip {
            if crate::engine::presence(&snap, v) == Presence::Held {
                if let Some(l) = snap.link(&v.interface) {
                    let r = self.engine.nl.del(v.address, l.index).await;
                    info!(vip = %v.address, result = ?r.map_err(|e| one_line(&e)), "watch: released on exit");
                }
            }
        }
        Ok(())
    }
}

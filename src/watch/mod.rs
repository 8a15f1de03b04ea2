//! Watch mode: a long-running daemon that keeps every VIP where Sentinel
//! says its master is. Level-triggered: Sentinel events, reconnects, kernel
//! address/link events, hook requests and a timer all lead to the same
//! pass, which compares desired with actual; events only make it happen
//! sooner. This module holds the select loop and the I/O; every rule about
//! repeats, trust and announcing lives in [`state`], as plain state, and
//! the fence's in [`fence`] (its probes in `witness`).

mod fence;
mod fencing;
mod follow;
mod pass;
mod promotion;
mod state;
mod subscribe;
mod witness;

use std::future::Future;
use std::net::SocketAddr;
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

use crate::config::{Config, Mode, Policy, VipConfig};
use crate::control::server::{self, HookRequest};
use crate::control::Reply;
use crate::decide::Presence;
use crate::engine::Engine;
use crate::error::{one_line, permanent};
use crate::lock;
use crate::metrics::{ActionKind, ErrorKind, Metrics, Said, Trigger as Why, VipId};
use crate::netlink::{self, Event as KernelEvent};
use crate::notify::Notifier;
use crate::sentinel::Event;
use promotion::{Next, Promotions, Replica};
use state::{kernel_cue, KernelCue, State};

/// Why a pass runs.
#[derive(Debug)]
enum Trigger {
    Sentinel {
        from: String,
        ev: Event,
        at: Instant,
    },
    Subscribed(String),
    /// A subscription was lost: that Sentinel's link is down.
    Unsubscribed(String),
    Kernel(KernelEvent, Instant),
    /// A hook handed its call over the control socket.
    Hook(HookRequest),
    /// The Sentinel that hinted at a promotion confirmed it, or not.
    Leader {
        master: String,
        replica: Replica,
        confirmed: Result<(), String>,
    },
    /// The promoted replica answered `ROLE` master (when, and where it
    /// is), or did not before the deadline.
    Role {
        master: String,
        replica: Replica,
        master_at: Result<(Instant, Vec<std::net::IpAddr>), String>,
    },
}

impl From<HookRequest> for Trigger {
    fn from(r: HookRequest) -> Trigger {
        Trigger::Hook(r)
    }
}

struct Watcher {
    engine: Engine,
    metrics: Arc<Metrics>,
    /// The `/metrics` server, while `metrics_listen` is set.
    metrics_server: Option<(SocketAddr, JoinHandle<()>)>,
    notifier: Notifier,
    path: PathBuf,
    tx: mpsc::Sender<Trigger>,
    subscribers: Vec<(JoinHandle<()>, Arc<Notify>)>,
    state: State,
    promotions: Promotions,
    fencing: fencing::Fencing,
    /// Hook requests waiting for the next pass (which begins asking after
    /// they arrived, so its answer is news to them).
    pending: Vec<HookRequest>,
    /// The last STATUS= sent to systemd, so that only changes are sent.
    status: String,
    /// Routed VIPs held after the last pass: announced by the routing
    /// daemon, so never in `state`'s schedules, but held all the same.
    routed_held: std::collections::HashSet<std::net::IpAddr>,
    /// Passes run so far, for the log: which requests one pass answered.
    passes: u64,
}

pub async fn run(path: PathBuf, cfg: Config, shutdown: impl Future<Output = ()>) -> Result<()> {
    // Routed VIPs only: CAP_NET_ADMIN is all it takes. A reload that adds
    // an l2 VIP without CAP_NET_RAW is refused per VIP by the pass.
    let missing = crate::caps::missing(cfg.vip.iter().any(VipConfig::sends_frames));
    if !missing.is_empty() {
        return Err(permanent(format!(
            "watch: missing capability {} (grant CAP_NET_ADMIN, and CAP_NET_RAW for l2 VIPs; see README)",
            missing.join(" and ")
        )));
    }
    let (tx, mut rx) = mpsc::channel(4096);
    // Bound before the first pass: a hook that arrives meanwhile waits in
    // the queue instead of finding no watcher.
    let control = server::bind(
        &cfg.control_socket,
        &cfg.control_socket_users,
        cfg.control_socket_group.as_deref(),
    )?;
    info!(socket = %control.path().display(), users = ?cfg.control_socket_users, group = ?cfg.control_socket_group, "control socket ready");
    let metrics = Arc::new(Metrics::new());
    let counted = metrics.clone();
    let control = tokio::spawn(control.serve(
        tx.clone(),
        Arc::new(move || counted.error(ErrorKind::Control)),
    ));
    let mut w = Watcher {
        metrics: metrics.clone(),
        metrics_server: None,
        notifier: Notifier::new(Some(metrics)),
        state: State::new(cfg.announce.clone()),
        promotions: Promotions::new(cfg.follow_promotion_deadline),
        fencing: fencing::Fencing::new(&cfg),
        engine: Engine::new(cfg)?,
        path,
        tx: tx.clone(),
        subscribers: Vec::new(),
        pending: Vec::new(),
        status: String::new(),
        routed_held: Default::default(),
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
    w.configure_reporting().await?;
    w.spawn_subscribers();
    w.pass(Why::Start, None, true).await;
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
        let fence_due = sleep_until(w.fencing.next_wake().into());
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
            _ = tick.tick() => w.pass(Why::Timer, None, false).await,
            _ = fence_due => w.fence_tick().await,
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

/// How long queued notify commands may still run when the watcher exits.
const EXIT_NOTIFY_GRACE: Duration = Duration::from_secs(5);

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
        // The pass's trigger, for the metrics: the most telling of a burst.
        let mut why: Option<Why> = None;
        let mut because = |w: Why| {
            let rank = |w: Why| match w {
                Why::ControlSocket => 5,
                Why::Promotion => 4,
                Why::Event => 3,
                Why::Kernel => 2,
                _ => 1,
            };
            if why.is_none_or(|old| rank(w) > rank(old)) {
                why = Some(w);
            }
        };
        let mut announce_held = false;
        let now = Instant::now();
        let earliest = |run: Option<Instant>, at: Instant| Some(run.map_or(at, |r| r.min(at)));
        for t in triggers {
            match t {
                Trigger::Sentinel { from, ev, at } => {
                    if !self.engine.cfg.has_master(&ev.master) {
                        info!(sentinel = %from, event = %ev, "event for a master not configured here; ignored");
                    } else if ev.kind.is_promotion_hint() {
                        if self.engine.cfg.follow_promotion {
                            let next = self.promotions.hint(now, &ev.master, &from, Some(&ev.addr));
                            self.follow(&ev.master, Some(&ev.addr), next);
                        }
                    } else if !self.state.needs_pass(at) {
                        debug!(sentinel = %from, event = %ev, "event already seen by a later pass");
                    } else {
                        because(Why::Event);
                        run = earliest(run, at);
                    }
                }
                Trigger::Subscribed(ep) => {
                    // Pub/sub drops what was published while we were away.
                    debug!(sentinel = %ep, "subscribed; reconciling for anything missed");
                    self.state.link(&ep, true);
                    because(Why::Reconnect);
                    run = earliest(run, now);
                }
                Trigger::Unsubscribed(ep) => self.state.link(&ep, false),
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
                    because(Why::Kernel);
                    run = earliest(run, at);
                }
                Trigger::Leader {
                    master,
                    replica,
                    confirmed,
                } => {
                    match &confirmed {
                        Ok(()) => {
                            info!(master = %master, replica = %replica.0, "promotion: the leader confirms it; waiting for ROLE master")
                        }
                        Err(e) => {
                            info!(master = %master, replica = %replica.0, why = %e, "promotion hint not confirmed; ignored")
                        }
                    }
                    let next = self
                        .promotions
                        .checked(now, &master, &replica, confirmed.is_ok());
                    self.follow(&master, Some(&replica), next);
                }
                Trigger::Role {
                    master,
                    replica,
                    master_at,
                } => {
                    let seen = match master_at {
                        Ok((at, ips)) => {
                            info!(master = %master, replica = %replica.0, "promotion: the replica answers ROLE master");
                            Some((at, ips))
                        }
                        Err(e) => {
                            warn!(master = %master, replica = %replica.0, error = %e, "promotion not followed: no ROLE master from the replica");
                            None
                        }
                    };
                    let at = seen.as_ref().map(|(at, _)| *at);
                    if let (Next::Pass, Some(at)) =
                        (self.promotions.role(&master, &replica, seen), at)
                    {
                        because(Why::Promotion);
                        run = earliest(run, at);
                    }
                }
                Trigger::Hook(r) => {
                    info!(peer = %r.peer, master = %r.call.master, to = %r.call.to.0, "hook request");
                    if !self.engine.cfg.has_master(&r.call.master) {
                        let why = format!(
                            "master {} is not configured here; nothing to do",
                            r.call.master
                        );
                        let _ = r.reply.send(Reply::new(0, why));
                        continue;
                    }
                    because(Why::ControlSocket);
                    run = earliest(run, r.at);
                    self.pending.push(r);
                }
            }
        }
        if let Some(at) = run {
            let why = why.unwrap_or(Why::Event);
            self.pass(why, Some(at), announce_held).await;
        }
    }

    /// STATUS= for systemd: what this host announces, sent when it changes
    /// (a routed VIP: what it holds for the routing daemon to announce).
    fn set_status(&mut self) {
        let held: Vec<String> = self
            .engine
            .cfg
            .vip
            .iter()
            .filter_map(|v| match v.mode() {
                Mode::L2 if self.state.announcing(v.address.ip) => {
                    Some(format!("{} {}", v.master, v.address))
                }
                Mode::Routed if self.routed_held.contains(&v.address.ip) => {
                    Some(format!("{} {} (routed)", v.master, v.address))
                }
                _ => None,
            })
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
                let who = |c: &Config| {
                    (
                        c.control_socket.clone(),
                        c.control_socket_users.clone(),
                        c.control_socket_group.clone(),
                    )
                };
                if who(old) != who(&engine.cfg) {
                    warn!("SIGHUP: control_socket and who may use it change at the next restart");
                }
                self.state.reload(engine.cfg.announce.clone());
                // Promotions under way are dropped: the next pass follows the
                // Sentinels, and the next hint starts afresh.
                self.promotions = Promotions::new(engine.cfg.follow_promotion_deadline);
                self.fencing = fencing::Fencing::new(&engine.cfg);
                self.engine = engine;
                if let Err(e) = self.configure_reporting().await {
                    error!(error = %one_line(&e), "SIGHUP: metrics endpoint");
                }
                self.spawn_subscribers();
                self.pass(Why::Reload, None, true).await;
            }
            Err(e) => {
                error!(error = %one_line(&e), "SIGHUP: config not reloaded; keeping the old one")
            }
        }
    }

    /// The metrics' series and the notify commands for the current
    /// config; the `/metrics` server bound (again, if its address changed).
    async fn configure_reporting(&mut self) -> Result<()> {
        let cfg = &self.engine.cfg;
        let ids: Vec<VipId> = cfg.vip.iter().map(VipId::from).collect();
        let sentinels: Vec<String> = cfg.sentinels.iter().map(|e| e.to_string()).collect();
        self.metrics.configure(&ids, &sentinels);
        let modes: Vec<_> = cfg.vip.iter().map(|v| (VipId::from(v), v.mode())).collect();
        self.metrics.configure_modes(&modes);
        let commands = cfg
            .vip
            .iter()
            .map(|v| (VipId::from(v), cfg.commands(v)))
            .collect();
        self.notifier.configure(commands, cfg.notify_timeout);
        self.notifier.set_env(&cfg.notify_env);
        let want = cfg.metrics_listen;
        if self.metrics_server.as_ref().map(|(a, _)| *a) != want {
            if let Some((_, h)) = self.metrics_server.take() {
                // Awaited, so that its listener is closed before the new
                // bind: the same port on another address would be in use.
                h.abort();
                let _ = h.await;
            }
            if let Some(addr) = want {
                let l = crate::metrics::bind(addr)
                    .await
                    .map_err(anyhow::Error::msg)?;
                info!(listen = %addr, "metrics endpoint ready");
                let h = tokio::spawn(crate::metrics::serve(l, self.metrics.clone()));
                self.metrics_server = Some((addr, h));
            }
        }
        Ok(())
    }

    /// SIGTERM/SIGINT: keep the VIPs (default: a restart must not drop
    /// clients) or release the ones held; then give queued notify commands
    /// a moment to finish.
    async fn exit(mut self) -> Result<()> {
        if let Some((_, h)) = self.metrics_server.take() {
            h.abort();
        }
        let cfg = &self.engine.cfg;
        if cfg.on_exit == Policy::Keep {
            info!("watch: exiting; VIPs kept (on_exit = keep)");
        } else {
            let _lock = lock::acquire(&cfg.lock_file).await?;
            let snap = self.engine.snapshot().await?;
            for v in &cfg.vip {
                if crate::engine::presence(&snap, v) == Presence::Held {
                    if let Some(l) = snap.link(&v.interface) {
                        let r = self.engine.nl.del(v.address, l.index).await;
                        if r.is_ok() {
                            crate::owned::forget(&self.engine.record, v.address.ip);
                        }
                        info!(vip = %v.address, result = ?r.as_ref().map_err(one_line), "watch: released on exit");
                        if r.is_ok() {
                            let did = Some((ActionKind::Release, "on_exit".to_string()));
                            self.notifier
                                .outcome(&VipId::from(v), did, &Said::default());
                        }
                    }
                }
            }
        }
        self.notifier.drain(EXIT_NOTIFY_GRACE).await;
        Ok(())
    }
}

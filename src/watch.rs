//! Watch mode: a long-running daemon that keeps every VIP where Sentinel
//! says its master is. Level-triggered: Sentinel events, reconnects, kernel
//! address/link events and a timer all lead to the same reconcile pass,
//! which compares desired with actual; events only make it happen sooner.

use std::collections::HashMap;
use std::future::Future;
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use futures::{FutureExt, StreamExt};
use redis::Value;
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::{mpsc, Notify};
use tokio::task::JoinHandle;
use tokio::time::{interval, sleep, sleep_until, timeout, MissedTickBehavior};
use tracing::{debug, error, info, warn};

use crate::announce::Target;
use crate::config::{Config, Policy};
use crate::control::server::{self, HookRequest};
use crate::control::Reply;
use crate::decide::{Action, Master, Presence};
use crate::engine::{local_addrs, ms, presence, resolve, Announce, Engine};
use crate::error::{exit_code, one_line, permanent};
use crate::lock;
use crate::netlink::{self, Event};
use crate::sentinel::{parse_event, MasterMoved, CHANNELS};

/// Why a pass runs.
#[derive(Debug)]
enum Trigger {
    Sentinel {
        from: String,
        ev: MasterMoved,
        at: Instant,
    },
    Subscribed(String),
    Kernel(Event, Instant),
    /// A hook handed its call over the control socket.
    Hook(HookRequest),
}

impl From<HookRequest> for Trigger {
    fn from(r: HookRequest) -> Trigger {
        Trigger::Hook(r)
    }
}

/// Announcement schedule of one held VIP.
struct Schedule {
    target: Target,
    /// Rounds still due at `interval_ms` spacing; then refreshes.
    rounds_left: u32,
    next: Instant,
}

struct Watcher {
    engine: Engine,
    path: PathBuf,
    tx: mpsc::Sender<Trigger>,
    subscribers: Vec<(JoinHandle<()>, Arc<Notify>)>,
    last_majority: HashMap<String, Instant>,
    schedules: HashMap<IpAddr, Schedule>,
    /// When the latest pass began asking the Sentinels. Sentinel is
    /// single-threaded and flushes a published event only after the state
    /// change that emitted it (sentinel.c publishes +switch-master, then
    /// changes the address, in one call), so any event received before
    /// this instant is already reflected in that pass's answers: such
    /// events are repeats, whatever they say. (Keying
    /// repeats on the event's content instead would drop a genuine later
    /// failover back to the same node, and let a forged event mask a
    /// real one.)
    asked_at: Option<Instant>,
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
        engine: Engine::new(cfg)?,
        path,
        tx: tx.clone(),
        subscribers: Vec::new(),
        last_majority: HashMap::new(),
        schedules: HashMap::new(),
        asked_at: None,
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
        let due = w.schedules.values().map(|s| s.next).min();
        let announce_due = sleep_until(
            due.unwrap_or_else(|| Instant::now() + Duration::from_secs(3600))
                .into(),
        );
        tokio::select! {
            Some(t) = rx.recv() => {
                // Coalesce a burst (several Sentinels, several channels) into one pass.
                let mut first = Some(t);
                let mut triggers = Vec::new();
                while let Some(t) = first.take().or_else(|| rx.try_recv().ok()) {
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
        let mut tick = interval(Duration::from_millis(self.engine.cfg.reconcile_interval_ms));
        tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
        tick.reset();
        tick
    }

    fn spawn_subscribers(&mut self) {
        for (h, _) in self.subscribers.drain(..) {
            h.abort();
        }
        let t = self.engine.cfg.sentinel_timeout();
        for (ep, client) in self.engine.sentinels.clients() {
            let reset = Arc::new(Notify::new());
            let h = tokio::spawn(subscribe(
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
        for t in triggers {
            match t {
                Trigger::Sentinel { from, ev, at } => {
                    if self.engine.cfg.vip_for(&ev.master).is_none() {
                        info!(sentinel = %from, master = %ev.master, "event for a master not configured here; ignored");
                        continue;
                    }
                    if self.asked_at.is_some_and(|asked| at < asked) {
                        debug!(sentinel = %from, master = %ev.master, "event already seen by a later pass");
                        continue;
                    }
                    run = Some(run.map_or(at, |r: Instant| r.min(at)));
                }
                Trigger::Subscribed(ep) => {
                    // Pub/sub drops what was published while we were away.
                    debug!(sentinel = %ep, "subscribed; reconciling for anything missed");
                    run = Some(run.unwrap_or(now));
                }
                Trigger::Kernel(e, at) => {
                    let is_vip = |ip| self.engine.cfg.vip.iter().any(|v| v.address.ip == ip);
                    match kernel_cue(&e, is_vip) {
                        KernelCue::Ignore => continue,
                        KernelCue::Pass => {}
                        KernelCue::PassAndAnnounce => announce_held = true,
                    }
                    match e {
                        Event::AddrRemoved(ip) if is_vip(ip) => {
                            info!(vip = %ip, "VIP removed from the kernel")
                        }
                        _ => debug!(event = ?e, "kernel event"),
                    }
                    run = Some(run.unwrap_or(at));
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
                    run = Some(run.map_or(r.at, |x: Instant| x.min(r.at)));
                    self.pending.push(r);
                }
            }
        }
        if let Some(at) = run {
            self.pass("event", Some(at), announce_held).await;
        }
    }

    /// One reconcile pass over every VIP, then the answers to the hook
    /// requests that were waiting for it.
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

    /// One Sentinel round, one netlink dump, then decide and apply per
    /// VIP. Returns, per master, the reply a hook asking about it gets.
    async fn pass_once(
        &mut self,
        why: &str,
        since: Option<Instant>,
        announce_held: bool,
        requests: &[HookRequest],
    ) -> Result<HashMap<String, Reply>, String> {
        let t0 = Instant::now();
        let _lock = lock::acquire(&self.engine.cfg.lock_path())
            .await
            .map_err(|e| format!("cannot take the lock: {}", one_line(&e)))?;
        let cfg = &self.engine.cfg;
        let names: Vec<&str> = cfg.vip.iter().map(|v| v.master.as_str()).collect();
        self.asked_at = Some(Instant::now());
        let (answers, masters) = self.engine.masters(&names).await;
        for (a, (_, reset)) in answers.iter().zip(&self.subscribers) {
            if a.unreachable {
                // The connection failed, so the subscription is suspect
                // too. (A wrong answer over a working connection, as from
                // a data Redis listed by mistake, says nothing about it.)
                reset.notify_one();
            }
        }
        let snap = self
            .engine
            .nl
            .snapshot()
            .await
            .map_err(|e| format!("netlink dump failed: {}", one_line(&e)))?;
        let local = local_addrs(&snap.addrs, cfg);
        let now = Instant::now();
        let mut changed = 0;
        let mut replies = HashMap::new();
        for vip in &cfg.vip {
            let (v, m) = &masters[&vip.master];
            let last = *self.last_majority.entry(vip.master.clone()).or_insert(t0);
            if v.majority() {
                self.last_majority.insert(vip.master.clone(), now);
            }
            // The newest request for this master, if a hook is waiting.
            let hook = requests.iter().rev().find(|r| r.call.master == vip.master);
            let master = match (hook, v.majority()) {
                (_, true) if matches!(m, Master::Known(_)) => m.clone(),
                // A hook's stale-call guard, as when it acts itself: any
                // Sentinel's answer (highest epoch), and only with none at
                // all its own arguments.
                (Some(_), _) if matches!(m, Master::Known(_)) => m.clone(),
                (Some(r), _) => match resolve(&r.call.to.0).await {
                    Ok(ips) => {
                        warn!(master = %vip.master, to = %r.call.to.0, "no Sentinel answered; acting on the hook's arguments");
                        Master::Known(ips)
                    }
                    Err(e) => {
                        let e = format!("{}: no Sentinel answered and TO_IP: {e}", vip.master);
                        replies.insert(vip.master.clone(), Reply::new(2, e));
                        continue;
                    }
                },
                // No Sentinels configured: nothing known, nothing lost.
                (None, true) => m.clone(),
                (None, false) => {
                    // Without a majority no answer can be trusted; the
                    // policy decides how long we hold on.
                    let lost = now.duration_since(last).as_millis() as u64;
                    warn!(master = %vip.master, answered = v.answered, total = v.total, lost_ms = lost, "no Sentinel majority");
                    Master::Unknown {
                        lost_for_ms: Some(lost),
                    }
                }
            };
            let result = self
                .engine
                .converge(&snap, &local, vip, &master, Announce::Never)
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
                            master = %vip.master, vip = %vip.address, why, action = ?o.action, done = ?o.done,
                            sentinel = ?v.master, latency_ms = since.map(ms),
                            "changed"
                        );
                    }
                    match o.target {
                        Some(t) => {
                            if o.action == Action::Acquire
                                || announce_held
                                || !self.schedules.contains_key(&t.ip)
                            {
                                self.schedules.insert(
                                    t.ip,
                                    Schedule {
                                        target: t,
                                        rounds_left: cfg.announce.count,
                                        next: now,
                                    },
                                );
                            }
                        }
                        // Released, or held without a Sentinel majority
                        // confirming it (decide says Nothing then): never
                        // announce what a majority has not confirmed, or a
                        // healed split brain's old holder would win back
                        // the clients.
                        None => {
                            self.schedules.remove(&vip.address.ip);
                        }
                    }
                }
                Err(e) => error!(master = %vip.master, error = %one_line(&e), "pass"),
            }
        }
        // First rounds go out before the lock is released: announcing is
        // the point of taking the VIP, and it takes microseconds.
        let vips = cfg.vip.len();
        self.announce_due();
        debug!(why, vips, changed, elapsed_ms = ms(t0), "pass done");
        Ok(replies)
    }

    /// STATUS= for systemd: what this host holds, sent when it changes.
    fn set_status(&mut self) {
        let held: Vec<String> = self
            .engine
            .cfg
            .vip
            .iter()
            .filter(|v| self.schedules.contains_key(&v.address.ip))
            .map(|v| format!("{} {}", v.master, v.address))
            .collect();
        let status = format!(
            "{} of {} VIPs announced from here{}{}",
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

    /// Sends every round that is due. A failed round is retried at the
    /// next interval (the link may be down for a moment).
    fn announce_due(&mut self) {
        let now = Instant::now();
        let a = &self.engine.cfg.announce;
        let engine = &self.engine;
        self.schedules.retain(|_, s| {
            if s.next > now {
                return true;
            }
            match engine.announce(&s.target) {
                Ok(()) => s.rounds_left = s.rounds_left.saturating_sub(1),
                Err(e) => warn!(vip = %s.target.ip, error = %one_line(&e), "announce failed"),
            }
            if s.rounds_left > 0 {
                s.next = now + Duration::from_millis(a.interval_ms);
                true
            } else if a.refresh_interval_ms > 0 {
                s.next = now + Duration::from_millis(a.refresh_interval_ms);
                true
            } else {
                false
            }
        });
    }

    async fn reload(&mut self) {
        match Config::load(&self.path).and_then(Engine::new) {
            Ok(engine) => {
                info!(path = %self.path.display(), vips = engine.cfg.vip.len(), "SIGHUP: config reloaded");
                self.engine = engine;
                self.schedules.clear();
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
        if self.engine.cfg.on_exit == Policy::Keep {
            info!("watch: exiting; VIPs kept (on_exit = keep)");
            return Ok(());
        }
        let _lock = lock::acquire(&self.engine.cfg.lock_path()).await?;
        let snap = self.engine.nl.snapshot().await?;
        for v in &self.engine.cfg.vip {
            if presence(&snap, v) == Presence::Held {
                if let Some(l) = snap.link(&v.interface) {
                    let r = self.engine.nl.del(v.address, l.index).await;
                    info!(vip = %v.address, result = ?r.map_err(|e| one_line(&e)), "watch: released on exit");
                }
            }
        }
        Ok(())
    }
}

/// What a kernel event asks of the watcher.
#[derive(Debug, PartialEq, Eq)]
enum KernelCue {
    /// Nothing a pass reads has changed.
    Ignore,
    Pass,
    /// A pass, and every held VIP announced again: after a link went
    /// down/up or was re-created, clients must hear from the holder anew.
    PassAndAnnounce,
}

/// Pure: which kernel events change what a pass reads. A pass reads two
/// things from the kernel: where the VIPs are, and which addresses are
/// this host's own. So a VIP removed matters, and so does any change to
/// the host's addresses: a network manager re-applying them after a flush
/// or a DHCP renewal makes the master local again, and the VIP must come
/// back then, not on the next timer pass. A VIP added is the echo of our
/// own pass (or an operator's hand, which the timer pass corrects).
fn kernel_cue(e: &Event, is_vip: impl Fn(IpAddr) -> bool) -> KernelCue {
    match *e {
        Event::AddrAdded(ip) if is_vip(ip) => KernelCue::Ignore,
        Event::AddrAdded(_) | Event::AddrRemoved(_) => KernelCue::Pass,
        Event::Link => KernelCue::PassAndAnnounce,
    }
}

/// How long a subscription must last before a reconnect starts again
/// from the shortest backoff.
const STABLE: Duration = Duration::from_secs(10);

/// Holds one pub/sub subscription to one Sentinel, reconnecting with
/// backoff; pings it so that a silently dead peer is noticed.
async fn subscribe(
    ep: String,
    client: redis::Client,
    tx: mpsc::Sender<Trigger>,
    reset: Arc<Notify>,
    t: Duration,
) {
    let mut backoff = Duration::from_millis(100);
    loop {
        let conn = async {
            let mut ps = client.get_async_pubsub().await?;
            ps.subscribe(&CHANNELS[..]).await?;
            Ok::<_, redis::RedisError>(ps.split())
        };
        match timeout(t * 3, conn).await {
            Ok(Ok((mut sink, mut stream))) => {
                let up = Instant::now();
                // A reset asked for before this connection existed is
                // about the old one.
                let _ = reset.notified().now_or_never();
                info!(sentinel = %ep, "subscribed");
                if tx.send(Trigger::Subscribed(ep.clone())).await.is_err() {
                    return;
                }
                let mut ping = interval(Duration::from_secs(1));
                ping.tick().await;
                loop {
                    tokio::select! {
                        m = stream.next() => {
                            let Some(m) = m else { break };
                            let at = Instant::now();
                            let channel = m.get_channel_name().to_string();
                            let payload = String::from_utf8_lossy(m.get_payload_bytes()).into_owned();
                            info!(sentinel = %ep, channel = %channel, payload = %payload.escape_debug(), "event");
                            match parse_event(&channel, &payload) {
                                Ok(ev) => {
                                    if tx.send(Trigger::Sentinel { from: ep.clone(), ev, at }).await.is_err() {
                                        return;
                                    }
                                }
                                Err(e) => warn!(sentinel = %ep, error = %e, "malformed event ignored"),
                            }
                        }
                        _ = ping.tick() => {
                            if !matches!(timeout(t * 3, sink.ping::<Value>()).await, Ok(Ok(_))) {
                                warn!(sentinel = %ep, "no answer to PING");
                                break;
                            }
                        }
                        _ = reset.notified() => break,
                    }
                }
                warn!(sentinel = %ep, "subscription lost; reconnecting");
                // Only a subscription that lasted earns a quick reconnect:
                // an endpoint that accepts SUBSCRIBE but fails every
                // question (a data Redis listed by mistake) would
                // otherwise be hammered ten times a second.
                if up.elapsed() >= STABLE {
                    backoff = Duration::from_millis(100);
                }
            }
            Ok(Err(e)) => debug!(sentinel = %ep, error = %e, "subscribe failed"),
            Err(_) => debug!(sentinel = %ep, "subscribe timed out"),
        }
        sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(5));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernel_events_that_change_the_view_cause_a_pass() {
        let vip: IpAddr = "192.0.2.100".parse().unwrap();
        let own: IpAddr = "192.0.2.11".parse().unwrap();
        let is_vip = |ip| ip == vip;
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

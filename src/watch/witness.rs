//! The fence's witnesses, probed: one task per configured Sentinel
//! (`PING` every probe period over a kept connection, and `SENTINEL
//! REPLICAS` for the masters the fence watches, once per reconcile
//! interval) and one per replica of a watched master (`ROLE` every probe
//! period over a kept connection; AUTH and TLS as configured). Probes are
//! pipelined on their connection: a slow network delays the answers but
//! does not stop them coming, and the fence judges by when the last answer
//! came, never by a per-probe timeout. The tasks record when each witness
//! last answered; they decide nothing and touch no address.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use futures::stream::{FuturesUnordered, StreamExt};
use redis::{AsyncConnectionConfig, Value};
use tokio::task::JoinHandle;
use tokio::time::{interval, MissedTickBehavior};
use tracing::debug;

use crate::config::Config;
use crate::datanode::parse_replica_of;
use crate::sentinel::replicas::{merge, parse_replicas, Replica};
use crate::sentinel::Answer;

/// Probes that may await their answer on one connection at once.
const MAX_INFLIGHT: usize = 64;
/// A probe unanswered this long drops its connection and a new one is
/// opened: far above any round trip the fence must ride out, since the
/// answers' arrival, not this, is what the fence judges.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// What the probes heard, shared by the tasks and the watcher.
#[derive(Default)]
struct Board {
    /// Per Sentinel endpoint, when it last answered.
    sentinels: HashMap<String, Instant>,
    /// Per watched master, per Sentinel, the replicas it last listed.
    lists: HashMap<String, HashMap<String, Vec<Replica>>>,
    /// Per (master, replica `host:port`), when the replica last answered
    /// as a connected replica of the master's address.
    replicas: HashMap<(String, String), Instant>,
    /// The masters the fence watches; `generation` changes with them so
    /// that the Sentinel tasks list the replicas of a new one at once.
    watched: Vec<String>,
    generation: u64,
}

fn board(b: &Mutex<Board>) -> MutexGuard<'_, Board> {
    b.lock().unwrap_or_else(|p| p.into_inner())
}

fn key(r: &Replica) -> String {
    format!("{}:{}", r.0, r.1)
}

/// The probe tasks of one config. Dropping it stops them.
pub struct Probes {
    cfg: Arc<Config>,
    every: Duration,
    board: Arc<Mutex<Board>>,
    tasks: Vec<JoinHandle<()>>,
    /// Per (master, replica, the master's address it must follow), its task.
    replicas: HashMap<(String, String, String), JoinHandle<()>>,
}

impl Probes {
    /// No probes (the fence is off).
    pub fn none(cfg: &Config) -> Probes {
        Probes {
            cfg: Arc::new(cfg.clone()),
            every: Duration::from_secs(3600),
            board: Arc::default(),
            tasks: Vec::new(),
            replicas: HashMap::new(),
        }
    }

    /// Probes, every `every`, the witnesses of the masters [`Probes::watch`]
    /// is given: none until then.
    pub fn start(cfg: &Config, every: Duration) -> Probes {
        let mut p = Probes::none(cfg);
        p.every = every;
        p
    }

    /// Every configured Sentinel probed (while a master is watched: a host
    /// that holds no VIP has nothing to fence).
    fn probe_sentinels(&mut self, on: bool) {
        if !on {
            for t in self.tasks.drain(..) {
                t.abort();
            }
            return;
        }
        if !self.tasks.is_empty() {
            return;
        }
        for e in &self.cfg.sentinels {
            let client = match crate::conn::client(&e.host, e.port, &self.cfg.sentinel_auth()) {
                Ok(c) => c,
                Err(err) => {
                    debug!(sentinel = %e, error = %err, "fence: no probe");
                    continue;
                }
            };
            let task = sentinel_probe(
                e.to_string(),
                client,
                self.board.clone(),
                self.every,
                self.cfg.reconcile_interval,
            );
            self.tasks.push(tokio::spawn(task));
        }
    }

    /// A pass's answers count as the Sentinels' answers too.
    pub fn heard_sentinels(&self, answers: &[Answer]) {
        let now = Instant::now();
        let mut b = board(&self.board);
        for a in answers.iter().filter(|a| a.reply.is_ok()) {
            b.sentinels.insert(a.sentinel.clone(), now);
        }
    }

    /// Probes the Sentinels and the replicas of the `watched` masters,
    /// each replica against the master address the Sentinels name for it;
    /// stops probing the rest.
    pub fn watch(&mut self, watched: &[(String, Replica)]) {
        self.probe_sentinels(!watched.is_empty());
        let mut want: HashMap<(String, String, String), (Replica, Replica)> = HashMap::new();
        {
            let mut b = board(&self.board);
            let names: Vec<String> = watched.iter().map(|(m, _)| m.clone()).collect();
            if b.watched != names {
                b.watched = names;
                b.generation += 1;
            }
            b.lists.retain(|m, _| watched.iter().any(|(w, _)| w == m));
            for (m, named) in watched {
                let listed = b.lists.get(m).map(|l| merge(l.values().cloned()));
                for r in listed.unwrap_or_default() {
                    let k = (m.clone(), key(&r), key(named));
                    want.insert(k, (r, named.clone()));
                }
            }
            b.replicas
                .retain(|(m, _), _| watched.iter().any(|(w, _)| w == m));
        }
        self.replicas.retain(|k, task| {
            let keep = want.contains_key(k);
            if !keep {
                task.abort();
            }
            keep
        });
        for (k, (r, named)) in want {
            if self.replicas.contains_key(&k) {
                continue;
            }
            let client = match crate::conn::client(&r.0.to_string(), r.1, &self.cfg.redis_auth()) {
                Ok(c) => c,
                Err(e) => {
                    debug!(replica = %k.1, error = %e, "fence: no probe");
                    continue;
                }
            };
            let task = replica_probe(
                k.0.clone(),
                r,
                named,
                client,
                self.board.clone(),
                self.every,
            );
            self.replicas.insert(k, tokio::spawn(task));
        }
    }

    /// When each configured Sentinel (in config order) and each replica
    /// the Sentinels list for `master` last answered.
    pub fn heard(&self, master: &str) -> (Vec<Option<Instant>>, Vec<Option<Instant>>) {
        let b = board(&self.board);
        let sentinels = self
            .cfg
            .sentinels
            .iter()
            .map(|e| b.sentinels.get(&e.to_string()).copied())
            .collect();
        let listed = b.lists.get(master).map(|l| merge(l.values().cloned()));
        let replicas = listed
            .unwrap_or_default()
            .iter()
            .map(|r| b.replicas.get(&(master.to_string(), key(r))).copied())
            .collect();
        (sentinels, replicas)
    }
}

impl Drop for Probes {
    fn drop(&mut self) {
        for t in self.tasks.iter().chain(self.replicas.values()) {
            t.abort();
        }
    }
}

/// `PING` every `every`; `SENTINEL REPLICAS` for each watched master every
/// `refresh`, or at once when the watched masters change.
fn sentinel_probe(
    ep: String,
    client: redis::Client,
    b: Arc<Mutex<Board>>,
    every: Duration,
    refresh: Duration,
) -> impl Future<Output = ()> {
    let mut listed: Option<(Instant, u64)> = None;
    let b2 = b.clone();
    let ask = move || {
        let mut p = redis::pipe();
        p.ignore_errors();
        p.cmd("PING");
        let names = {
            let board = board(&b);
            let due = listed.is_none_or(|(at, g)| g != board.generation || at.elapsed() >= refresh);
            if due {
                listed = Some((Instant::now(), board.generation));
                board.watched.clone()
            } else {
                Vec::new()
            }
        };
        for n in &names {
            p.cmd("SENTINEL").arg("REPLICAS").arg(n);
        }
        (p, names)
    };
    let heard = move |at: Instant, names: Vec<String>, vals: Vec<Value>| {
        let mut board = board(&b2);
        if matches!(vals.first(), Some(v) if !matches!(v, Value::ServerError(_))) {
            board.sentinels.insert(ep.clone(), at);
        }
        for (n, v) in names.iter().zip(vals.iter().skip(1)) {
            match parse_replicas(v) {
                Ok(list) => {
                    if board.watched.contains(n) {
                        let lists = board.lists.entry(n.clone()).or_default();
                        lists.insert(ep.clone(), list);
                    }
                }
                Err(e) => debug!(sentinel = %ep, master = %n, error = %e, "fence: no replica list"),
            }
        }
    };
    keep_asking(client, every, ask, heard)
}

/// `ROLE` every `every`; an answer counts when the replica follows
/// `named` with its link up.
fn replica_probe(
    master: String,
    replica: Replica,
    named: Replica,
    client: redis::Client,
    b: Arc<Mutex<Board>>,
    every: Duration,
) -> impl Future<Output = ()> {
    let k = (master, key(&replica));
    let ask = || {
        let mut p = redis::pipe();
        // A refusal (NOAUTH) comes back as a value: the connection stays.
        p.ignore_errors();
        p.cmd("ROLE");
        (p, ())
    };
    let heard = move |at: Instant, (): (), vals: Vec<Value>| {
        let of = vals.first().and_then(parse_replica_of);
        if of.is_some_and(|o| o.witnesses(&named)) {
            board(&b).replicas.insert(k.clone(), at);
        }
    };
    keep_asking(client, every, ask, heard)
}

/// Sends `ask()`'s pipeline every `every` over one kept connection, at
/// most [`MAX_INFLIGHT`] unanswered, and hands each answer to `heard` with
/// the instant it came. A failed or unanswered probe drops the connection;
/// a new one is tried at the next tick.
async fn keep_asking<C: Send + 'static>(
    client: redis::Client,
    every: Duration,
    mut ask: impl FnMut() -> (redis::Pipeline, C),
    mut heard: impl FnMut(Instant, C, Vec<Value>),
) {
    let cfg = AsyncConnectionConfig::new()
        .set_connection_timeout(Some(PROBE_TIMEOUT))
        .set_response_timeout(Some(PROBE_TIMEOUT));
    let mut tick = interval(every);
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let conn = match client
            .get_multiplexed_async_connection_with_config(&cfg)
            .await
        {
            Ok(c) => c,
            Err(_) => continue,
        };
        let mut inflight = FuturesUnordered::new();
        loop {
            tokio::select! {
                _ = tick.tick(), if inflight.len() < MAX_INFLIGHT => {
                    let (p, c) = ask();
                    let mut conn = conn.clone();
                    inflight.push(async move { (p.query_async::<Vec<Value>>(&mut conn).await, c) });
                }
                Some((r, c)) = inflight.next(), if !inflight.is_empty() => match r {
                    Ok(v) => heard(Instant::now(), c, v),
                    Err(_) => break,
                },
            }
        }
    }
}

/// The replicas a pass should name to [`Probes::watch`]: each watched
/// master with the address the Sentinels name for it.
pub fn targets<'a>(
    armed: impl Iterator<Item = &'a str>,
    named: &HashMap<String, Replica>,
) -> Vec<(String, Replica)> {
    let armed: HashSet<&str> = armed.collect();
    let mut v: Vec<(String, Replica)> = named
        .iter()
        .filter(|(m, _)| armed.contains(m.as_str()))
        .map(|(m, r)| (m.clone(), r.clone()))
        .collect();
    v.sort_by(|a, b| a.0.cmp(&b.0));
    v
}

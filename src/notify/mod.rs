//! keepalived-style notify commands: after a pass acquired, released or
//! refused a VIP, the configured command for that change runs with the
//! facts in its environment. Per VIP one queue and one worker, so commands
//! run one at a time in the order of the changes, each under a timeout.
//! Enqueueing never waits: a command that hangs or fails delays neither the
//! watcher nor later changes. It never decides and never touches an address.

mod check;
mod child;
mod run;
#[cfg(test)]
mod testdir;

pub use check::check_command;

use run::Outcome;

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tracing::{info, warn};

use crate::metrics::{ActionKind, ErrorKind, Metrics, Said, VipId};

/// The notify timeout when the config sets none: a cloud provider's CLI
/// call takes seconds; a minute would leave later changes waiting long.
pub const DEFAULT_TIMEOUT: Duration = crate::config::defaults::NOTIFY_TIMEOUT;
/// Changes waiting per VIP before the oldest waiting one is dropped (the
/// newest is the truth; the sequence numbers show the gap).
const MAX_WAITING: usize = 64;

/// One `[[vip]]`'s commands, each an argument vector (no shell).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Commands {
    pub on_acquire: Option<Vec<String>>,
    pub on_release: Option<Vec<String>>,
    pub on_refuse: Option<Vec<String>>,
}

impl Commands {
    fn for_kind(&self, k: ActionKind) -> Option<&Vec<String>> {
        match k {
            ActionKind::Acquire => self.on_acquire.as_ref(),
            ActionKind::Release => self.on_release.as_ref(),
            ActionKind::Refuse => self.on_refuse.as_ref(),
        }
    }
}

/// One command to run for one change, with its facts fixed when queued.
#[derive(Clone, Debug)]
struct Job {
    argv: Vec<String>,
    env: Vec<(String, String)>,
    timeout: Duration,
    vip: VipId,
    action: ActionKind,
    seq: u64,
}

/// The facts of one change, in a notify command's environment.
fn environment(
    vip: &VipId,
    action: ActionKind,
    reason: &str,
    said: &Said,
    seq: u64,
) -> Vec<(String, String)> {
    [
        ("MASTER", vip.master.clone()),
        ("VIP", vip.vip.to_string()),
        ("INTERFACE", vip.interface.clone()),
        ("ACTION", action.as_str().to_string()),
        ("REASON", crate::error::printable(reason)),
        (
            "CONFIG_EPOCH",
            said.epoch.map(|e| e.to_string()).unwrap_or_default(),
        ),
        ("SENTINEL_MASTER", said.master.clone().unwrap_or_default()),
        (
            "SENTINELS_ANSWERED",
            format!("{}/{}", said.answered, said.configured),
        ),
        ("SEQUENCE", seq.to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (format!("SENTINEL_VIP_{k}"), v))
    .collect()
}

/// A variable of the watcher's own environment, if set and UTF-8.
fn env_var(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

/// The next sequence number of a VIP: consecutive within a run, and
/// starting from the wall clock in microseconds, so that a restarted
/// watcher's numbers are larger than its predecessor's.
fn next_seq(last: Option<u64>, now_micros: u64) -> u64 {
    match last {
        Some(s) => s + 1,
        None => now_micros.max(1),
    }
}

/// Whether a pass's result for a VIP is news: a refusal repeated with the
/// same reason (the pass refuses again every time) is not; anything else is.
fn is_news(last: Option<&(ActionKind, String)>, kind: ActionKind, reason: &str) -> bool {
    !matches!(last, Some((ActionKind::Refuse, r)) if kind == ActionKind::Refuse && r == reason)
}

/// One VIP's queue, shared with its worker.
#[derive(Default)]
struct Queue {
    jobs: Mutex<VecDeque<Job>>,
    wake: Notify,
    closed: AtomicBool,
}

impl Queue {
    fn close(&self) {
        self.closed.store(true, Ordering::Release);
        self.wake.notify_one();
    }
}

/// What the workers share.
struct Shared {
    metrics: Option<Arc<Metrics>>,
    /// Tests hear each finished command here.
    #[cfg(test)]
    done: Option<tokio::sync::mpsc::UnboundedSender<(u64, Outcome)>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// The watcher's notify commands. Needs a tokio runtime: workers are
/// spawned on the first change of each VIP.
pub struct Notifier {
    timeout: Duration,
    /// What every command's environment holds besides the facts.
    base_env: Vec<(String, String)>,
    commands: HashMap<IpAddr, Commands>,
    queues: HashMap<IpAddr, (Arc<Queue>, JoinHandle<()>)>,
    /// Per VIP: the last sequence number given, and the last change.
    seq: HashMap<IpAddr, u64>,
    last: HashMap<IpAddr, (ActionKind, String)>,
    shared: Arc<Shared>,
}

impl Notifier {
    /// `metrics`, when given, counts each failed command as an error of
    /// kind `notify`.
    pub fn new(metrics: Option<Arc<Metrics>>) -> Notifier {
        Notifier {
            timeout: DEFAULT_TIMEOUT,
            base_env: child::base_environment(env_var, &BTreeMap::new()),
            commands: HashMap::new(),
            queues: HashMap::new(),
            seq: HashMap::new(),
            last: HashMap::new(),
            shared: Arc::new(Shared {
                metrics,
                #[cfg(test)]
                done: None,
            }),
        }
    }

    /// For tests: also sends each finished command's sequence number and
    /// outcome.
    #[cfg(test)]
    fn with_done(
        metrics: Option<Arc<Metrics>>,
    ) -> (
        Notifier,
        tokio::sync::mpsc::UnboundedReceiver<(u64, Outcome)>,
    ) {
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        let mut n = Notifier::new(metrics);
        n.shared = Arc::new(Shared {
            metrics: n.shared.metrics.clone(),
            done: Some(tx),
        });
        (n, rx)
    }

    /// At start and after each reload: each VIP's commands and the
    /// timeout. Changes already queued run with the commands they were
    /// queued with. Queues stay: a VIP removed and added back keeps its
    /// one worker, so its commands never overlap.
    pub fn configure(&mut self, vips: Vec<(VipId, Commands)>, timeout: Duration) {
        self.timeout = timeout;
        self.commands = vips.into_iter().map(|(v, c)| (v.vip, c)).collect();
    }

    /// At start and after each reload: the config's `notify_env`. A
    /// command's environment is `PATH`, `LANG` and `TZ` (the watcher's),
    /// these, then the facts of its change; nothing else of the watcher's.
    pub fn set_env(&mut self, admin: &BTreeMap<String, String>) {
        self.base_env = child::base_environment(env_var, admin);
    }

    /// What a pass did for `vip`, after its address change and first
    /// announcement: `Some((kind, reason))` for an acquire, release or
    /// refusal (`ActionKind::of(&action)`), `None` for keep and nothing.
    /// Call it for every VIP after every pass: a `None` ends a refusal,
    /// so that the next one is news again. Every change takes the VIP's
    /// next sequence number, with a command configured for it or not.
    /// Returns at once, with the sequence number when a command was queued.
    pub fn outcome(
        &mut self,
        vip: &VipId,
        did: Option<(ActionKind, String)>,
        said: &Said,
    ) -> Option<u64> {
        let Some((kind, reason)) = did else {
            self.last.remove(&vip.vip);
            return None;
        };
        if !is_news(self.last.get(&vip.vip), kind, &reason) {
            return None;
        }
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        let seq = next_seq(self.seq.get(&vip.vip).copied(), now.as_micros() as u64);
        self.seq.insert(vip.vip, seq);
        let mut env = self.base_env.clone();
        env.extend(environment(vip, kind, &reason, said, seq));
        self.last.insert(vip.vip, (kind, reason));
        let argv = self.commands.get(&vip.vip)?.for_kind(kind)?.clone();
        let job = Job {
            argv,
            env,
            timeout: self.timeout,
            vip: vip.clone(),
            action: kind,
            seq,
        };
        let shared = &self.shared;
        let (q, _) = self.queues.entry(vip.vip).or_insert_with(|| {
            let q = Arc::new(Queue::default());
            let h = tokio::spawn(worker(q.clone(), shared.clone()));
            (q, h)
        });
        let mut jobs = lock(&q.jobs);
        if jobs.len() >= MAX_WAITING {
            if let Some(old) = jobs.pop_front() {
                warn!(vip = %vip.vip, action = old.action.as_str(), sequence = old.seq, "notify: too many changes waiting; the oldest is dropped");
                if let Some(m) = &self.shared.metrics {
                    m.error(ErrorKind::Notify);
                }
            }
        }
        jobs.push_back(job);
        drop(jobs);
        q.wake.notify_one();
        Some(seq)
    }

    /// At exit: lets the queued commands run for up to `within`, then
    /// kills what still runs (with its process group).
    pub async fn drain(mut self, within: Duration) {
        let deadline = tokio::time::Instant::now() + within;
        let queues = std::mem::take(&mut self.queues);
        for (q, _) in queues.values() {
            q.close();
        }
        for (_, (_, mut h)) in queues {
            if tokio::time::timeout_at(deadline, &mut h).await.is_err() {
                h.abort();
                let _ = h.await;
            }
        }
    }
}

/// Dropped without [`Notifier::drain`]: the workers finish what is queued
/// and end.
impl Drop for Notifier {
    fn drop(&mut self) {
        for (q, _) in self.queues.values() {
            q.close();
        }
    }
}

/// Runs one VIP's commands in order until its queue is closed and empty.
async fn worker(q: Arc<Queue>, shared: Arc<Shared>) {
    loop {
        let job = lock(&q.jobs).pop_front();
        let Some(job) = job else {
            if q.closed.load(Ordering::Acquire) {
                return;
            }
            q.wake.notified().await;
            continue;
        };
        let out = run::run(&job.argv, &job.env, job.timeout).await;
        report(&job, &out, &shared);
    }
}

/// The log line of a finished command, and the error count if it failed.
fn report(job: &Job, out: &Outcome, shared: &Shared) {
    // The program only: arguments may carry tokens.
    let (v, command) = (
        &job.vip,
        crate::error::printable(job.argv.first().map_or("", String::as_str)),
    );
    let elapsed_ms = out.elapsed.as_secs_f64() * 1e3;
    let (stdout, stderr) = (out.stdout.to_string(), out.stderr.to_string());
    if out.status.ok() {
        info!(master = %v.master, vip = %v.vip, interface = %v.interface, action = job.action.as_str(), sequence = job.seq, command = %command, status = %out.status, elapsed_ms, stdout, stderr, "notify command done");
    } else {
        warn!(master = %v.master, vip = %v.vip, interface = %v.interface, action = job.action.as_str(), sequence = job.seq, command = %command, status = %out.status, elapsed_ms, stdout, stderr, "notify command failed");
        if let Some(m) = &shared.metrics {
            m.error(ErrorKind::Notify);
        }
    }
    #[cfg(test)]
    if let Some(tx) = &shared.done {
        let _ = tx.send((job.seq, out.clone()));
    }
}

#[cfg(test)]
mod tests;

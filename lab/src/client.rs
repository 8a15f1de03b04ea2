//! Long-lived clients in the lab's client namespace, for the benchmark:
//! [`KeptWriter`], one connection kept and replaced at once when it fails,
//! reaching the master through the VIP or through a real client library's
//! Sentinel support; and [`RoleWatch`], which stamps when a replica first
//! answers `ROLE` with `master`. Each is one thread of this process that
//! joined the namespace with setns(2): no process is started per attempt.
//! They write only keys of their own and change nothing else in the lab.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use redis::sentinel::Sentinel;
use redis::{Connection, RedisResult, Value};

use crate::wait_until;
use crate::{netns, node_ip, now_epoch, Lab, MASTER_NAME, NODES, REDIS_PORT, SENTINEL_PORT};

/// How a client finds the master.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Route {
    /// Connects to the VIP and nothing else.
    Vip,
    /// redis-rs `Sentinel::master_for` before every connection: asks the
    /// Sentinels (`SENTINEL MASTERS`, skipping one flagged down), checks
    /// the answer with `ROLE`, then connects there.
    Sentinel,
}

/// The same for every client: one write attempt per `interval` (a failed
/// attempt drops the connection and the next one reconnects, with no
/// back-off), and `timeout` for connecting, reading and writing.
#[derive(Clone, Copy, Debug)]
pub struct Pace {
    pub interval: Duration,
    pub timeout: Duration,
}

/// A write the server acknowledged with `OK`: when, and the key and value.
#[derive(Clone, Debug)]
pub struct Ack {
    pub at: f64,
    pub key: String,
    pub value: u64,
}

/// A thread writing `SET bench:<name>:<n> <n>` to the master in a loop.
pub struct KeptWriter {
    pub name: String,
    stop: Arc<AtomicBool>,
    acks: Arc<Mutex<Vec<Ack>>>,
    last_error: Arc<Mutex<String>>,
    handle: Option<JoinHandle<()>>,
}

impl KeptWriter {
    /// Starts the writer in the lab's client namespace; returns once the
    /// thread has joined it (panics, naming why, if it cannot).
    pub fn start(lab: &Lab, name: &str, route: Route, pace: Pace) -> KeptWriter {
        let stop = Arc::new(AtomicBool::new(false));
        let acks = Arc::new(Mutex::new(Vec::new()));
        let last_error = Arc::new(Mutex::new(String::new()));
        let (tx, rx) = mpsc::channel();
        let ns = lab.ns_client();
        // The lab's VIP: the bridge's, or the routed one.
        let vip = lab.vip4();
        let (s, a, e, n) = (
            stop.clone(),
            acks.clone(),
            last_error.clone(),
            name.to_string(),
        );
        let handle = std::thread::spawn(move || {
            let ready = netns::enter(&ns).map_err(|e| e.to_string()).and_then(|()| {
                let urls = NODES.map(|k| format!("redis://{}:{SENTINEL_PORT}/", node_ip(k)));
                Sentinel::build(urls.to_vec()).map_err(|e| format!("redis-rs Sentinel: {e}"))
            });
            let sentinel = match ready {
                Ok(s) => s,
                Err(why) => return drop(tx.send(Err(why))),
            };
            let _ = tx.send(Ok(()));
            write_loop(&n, route, vip, pace, sentinel, &s, &a, &e);
        });
        match rx.recv() {
            Ok(Ok(())) => {}
            Ok(Err(why)) => panic!("client {name}: {why}"),
            Err(_) => panic!("client {name}: its thread died while starting"),
        }
        KeptWriter {
            name: name.to_string(),
            stop,
            acks,
            last_error,
            handle: Some(handle),
        }
    }

    /// The acknowledged writes after `t` (epoch seconds), oldest first.
    pub fn acks_after(&self, t: f64) -> Vec<Ack> {
        let acks = self.acks.lock().unwrap();
        let from = acks.partition_point(|a| a.at <= t);
        acks[from..].to_vec()
    }

    /// The first acknowledged write after `t`.
    pub fn first_ack_after(&self, t: f64) -> Option<Ack> {
        self.acks_after(t).into_iter().next()
    }

    /// Waits up to `timeout` for a write acknowledged after `t`.
    pub fn wait_ack_after(&self, t: f64, timeout: Duration) -> Option<Ack> {
        let mut got = None;
        wait_until(timeout, Duration::from_millis(5), || {
            got = self.first_ack_after(t);
            got.is_some()
        });
        got
    }

    /// The last error the client met (for messages).
    pub fn last_error(&self) -> String {
        self.last_error.lock().unwrap().clone()
    }
}

impl Drop for KeptWriter {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.handle.take() {
            // The library's Sentinel connections have no timeout; a thread
            // stuck on a hung Sentinel must not hang the run.
            if wait_until(Duration::from_secs(3), Duration::from_millis(10), || {
                h.is_finished()
            }) {
                let _ = h.join();
            } else {
                eprintln!("client {}: still blocked after 3 s; left behind", self.name);
            }
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn write_loop(
    name: &str,
    route: Route,
    vip: &str,
    pace: Pace,
    mut sentinel: Sentinel,
    stop: &AtomicBool,
    acks: &Mutex<Vec<Ack>>,
    last_error: &Mutex<String>,
) {
    let mut conn: Option<Connection> = None;
    let mut n = 0u64;
    while !stop.load(Ordering::Relaxed) {
        let began = Instant::now();
        n += 1;
        let key = format!("bench:{name}:{n}");
        let attempt = (|| -> RedisResult<Value> {
            if conn.is_none() {
                conn = Some(connect(route, vip, pace.timeout, &mut sentinel)?);
            }
            let c = conn.as_mut().expect("just set");
            redis::cmd("SET").arg(&key).arg(n).query::<Value>(c)
        })();
        match attempt {
            Ok(Value::Okay) => acks.lock().unwrap().push(Ack {
                at: now_epoch(),
                key,
                value: n,
            }),
            other => {
                conn = None;
                *last_error.lock().unwrap() = match other {
                    Ok(v) => format!("SET answered {v:?}"),
                    Err(e) => e.to_string(),
                };
            }
        }
        if let Some(rest) = (began + pace.interval).checked_duration_since(Instant::now()) {
            std::thread::sleep(rest);
        }
    }
}

fn connect(
    route: Route,
    vip: &str,
    timeout: Duration,
    sentinel: &mut Sentinel,
) -> RedisResult<Connection> {
    let client = match route {
        Route::Vip => redis::Client::open(format!("redis://{vip}:{REDIS_PORT}/"))?,
        Route::Sentinel => sentinel.master_for(MASTER_NAME, None)?,
    };
    let c = client.get_connection_with_timeout(timeout)?;
    c.set_read_timeout(Some(timeout))?;
    c.set_write_timeout(Some(timeout))?;
    Ok(c)
}

/// Polls `ROLE` on some nodes every `period`, each over one kept
/// connection (replaced at once when it fails), and stamps the first reply
/// saying `master` from each: the moment a promoted replica is known to
/// take writes.
pub struct RoleWatch {
    stop: Arc<AtomicBool>,
    firsts: Arc<Mutex<Vec<(usize, f64)>>>,
    handle: Option<JoinHandle<()>>,
}

impl RoleWatch {
    /// Starts polling `nodes` and returns once each has answered once
    /// (panics after 5 s otherwise), so that a fault injected right after
    /// finds every connection open.
    pub fn start(lab: &Lab, nodes: &[usize], period: Duration) -> RoleWatch {
        let stop = Arc::new(AtomicBool::new(false));
        let firsts = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = mpsc::channel();
        let ns = lab.ns_client();
        let nodes = nodes.to_vec();
        let (s, f) = (stop.clone(), firsts.clone());
        let handle = std::thread::spawn(move || {
            if let Err(e) = netns::enter(&ns) {
                return drop(tx.send(Err(e.to_string())));
            }
            role_loop(&nodes, period, &s, &f, tx);
        });
        let started = rx
            .recv_timeout(Duration::from_secs(5))
            .unwrap_or_else(|_| Err("no answer to ROLE within 5 s".into()));
        let watch = RoleWatch {
            stop,
            firsts,
            handle: Some(handle),
        };
        if let Err(why) = started {
            panic!("ROLE watch: {why}");
        }
        watch
    }

    /// The first node seen answering `master`, and when.
    pub fn first_master(&self) -> Option<(usize, f64)> {
        let f = self.firsts.lock().unwrap();
        f.iter().copied().min_by(|a, b| a.1.total_cmp(&b.1))
    }
}

impl Drop for RoleWatch {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

/// A short timeout: the nodes polled are alive, and a poll stuck on one
/// must not delay seeing another.
const ROLE_TIMEOUT: Duration = Duration::from_millis(100);

fn role_loop(
    nodes: &[usize],
    period: Duration,
    stop: &AtomicBool,
    firsts: &Mutex<Vec<(usize, f64)>>,
    ready: mpsc::Sender<Result<(), String>>,
) {
    let mut conns: Vec<Option<Connection>> = nodes.iter().map(|_| None).collect();
    let mut answered = vec![false; nodes.len()];
    let mut ready = Some(ready);
    while !stop.load(Ordering::Relaxed) {
        let began = Instant::now();
        for (i, &n) in nodes.iter().enumerate() {
            if firsts.lock().unwrap().iter().any(|(m, _)| *m == n) {
                continue;
            }
            match role(&mut conns[i], n) {
                Ok(is_master) => {
                    answered[i] = true;
                    if is_master {
                        firsts.lock().unwrap().push((n, now_epoch()));
                    }
                }
                Err(_) => conns[i] = None,
            }
        }
        if answered.iter().all(|&a| a) {
            if let Some(tx) = ready.take() {
                let _ = tx.send(Ok(()));
            }
        }
        if let Some(rest) = (began + period).checked_duration_since(Instant::now()) {
            std::thread::sleep(rest);
        }
    }
}

/// `ROLE` on node `n`: whether it says `master`. Read from the raw reply:
/// a replica's offset is -1 until it has synced, which typed parsers refuse.
fn role(conn: &mut Option<Connection>, n: usize) -> RedisResult<bool> {
    if conn.is_none() {
        let url = format!("redis://{}:{REDIS_PORT}/", node_ip(n));
        let c = redis::Client::open(url)?.get_connection_with_timeout(ROLE_TIMEOUT)?;
        c.set_read_timeout(Some(ROLE_TIMEOUT))?;
        c.set_write_timeout(Some(ROLE_TIMEOUT))?;
        *conn = Some(c);
    }
    let reply: Value = redis::cmd("ROLE").query(conn.as_mut().expect("just set"))?;
    Ok(match reply {
        Value::Array(items) => {
            matches!(items.first(), Some(Value::BulkString(b)) if b == b"master")
        }
        _ => false,
    })
}

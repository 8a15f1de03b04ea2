//! What the world sees while a fault plays out: every ~20 ms, which nodes
//! hold the IPv4 VIP on eth0 and which MAC the client's neighbour entry for
//! it carries. A [`Monitor`] runs in its own thread from fault injection
//! until the scenario ends and returns a [`Trace`].
//!
//! Each namespace gets one long-running `ip -json -batch -` process that
//! answers a query line with one JSON line (~0.1 ms). Spawning `ip` per
//! query would cost milliseconds of CPU each, 200 times a second, on the
//! machine whose timing is being measured.

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::trace::{Sample, Trace};
use crate::{Lab, NODES, VIP4};

/// How often the monitor samples (a sample itself takes well under 1 ms).
pub const PERIOD: Duration = Duration::from_millis(20);

/// Samples in a background thread until [`Monitor::stop`].
pub struct Monitor {
    start: Instant,
    stop: Arc<AtomicBool>,
    handle: Option<JoinHandle<Vec<Sample>>>,
}

impl Monitor {
    /// Starts sampling and returns once the first sample is taken, so that
    /// a fault injected right after lies inside the trace; t = 0 is the
    /// return of this call.
    pub fn start(lab: &Lab) -> Monitor {
        let nodes: Vec<String> = NODES.iter().map(|&n| lab.ns(n)).collect();
        let client = lab.ns_client();
        let stop = Arc::new(AtomicBool::new(false));
        let (ready_tx, ready_rx) = mpsc::channel();
        let flag = stop.clone();
        let handle = std::thread::spawn(move || {
            let mut q = Queriers {
                nodes: nodes.iter().map(|ns| IpBatch::new(ns)).collect(),
                client: IpBatch::new(&client),
            };
            let mut samples = Vec::new();
            let mut start = None;
            loop {
                let tick = Instant::now();
                let s = q.sample(start.map_or(Duration::ZERO, |t: Instant| t.elapsed()));
                if start.is_none() {
                    // The caller's clock starts when it gets control back.
                    let t0 = Instant::now();
                    start = Some(t0);
                    let _ = ready_tx.send(t0);
                }
                samples.push(s);
                if flag.load(Ordering::Relaxed) {
                    return samples;
                }
                std::thread::sleep(PERIOD.saturating_sub(tick.elapsed()));
            }
        });
        let start = ready_rx
            .recv_timeout(Duration::from_secs(10))
            .expect("monitor: first sample not taken within 10 s");
        Monitor {
            start,
            stop,
            handle: Some(handle),
        }
    }

    /// Time since the monitor started, to mark events in the trace.
    pub fn now(&self) -> Duration {
        self.start.elapsed()
    }

    /// Takes a last sample, stops and returns everything seen.
    pub fn stop(mut self) -> Trace {
        self.finish()
    }

    fn finish(&mut self) -> Trace {
        self.stop.store(true, Ordering::Relaxed);
        let samples = self
            .handle
            .take()
            .map(|h| h.join().unwrap_or_default())
            .unwrap_or_default();
        Trace {
            end: samples.last().map_or(Duration::ZERO, |s| s.at),
            samples,
        }
    }
}

impl Drop for Monitor {
    fn drop(&mut self) {
        if self.handle.is_some() {
            self.finish();
        }
    }
}

struct Queriers {
    nodes: Vec<IpBatch>,
    client: IpBatch,
}

impl Queriers {
    fn sample(&mut self, at: Duration) -> Sample {
        let mut holders = Vec::new();
        let mut macs = Vec::new();
        for (i, b) in self.nodes.iter_mut().enumerate() {
            let links = b.query("address show").unwrap_or(Value::Null);
            let eth0 = links
                .as_array()
                .and_then(|a| a.iter().find(|l| l["ifname"] == "eth0"));
            macs.push(
                eth0.and_then(|l| l["address"].as_str())
                    .unwrap_or("")
                    .to_string(),
            );
            let held = eth0
                .and_then(|l| l["addr_info"].as_array())
                .is_some_and(|a| a.iter().any(|x| x["local"] == VIP4));
            if held {
                holders.push(i + 1);
            }
        }
        let neigh = self
            .client
            .query(&format!("neighbour show {VIP4}"))
            .and_then(|v| {
                v.as_array()?
                    .iter()
                    .find(|e| e["dst"] == VIP4)?
                    .get("lladdr")?
                    .as_str()
                    .map(str::to_string)
            });
        Sample {
            at,
            holders,
            macs,
            neigh,
        }
    }
}

/// One `ip -n NS -json -force -batch -` process: a command line in, one
/// JSON line out. A reader thread feeds the lines through a channel so that
/// a query can time out instead of hanging the monitor.
pub(crate) struct IpBatch {
    ns: String,
    proc: Option<(Child, ChildStdin, Receiver<String>)>,
}

impl IpBatch {
    pub(crate) fn new(ns: &str) -> IpBatch {
        IpBatch {
            ns: ns.to_string(),
            proc: None,
        }
    }

    fn spawn(&self) -> Option<(Child, ChildStdin, Receiver<String>)> {
        let mut c = Command::new("ip")
            .args(["-n", &self.ns, "-json", "-force", "-batch", "-"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .ok()?;
        let stdin = c.stdin.take()?;
        let stdout = c.stdout.take()?;
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        Some((c, stdin, rx))
    }

    /// The JSON answer to `cmd`, or `None` (and a fresh process next time)
    /// if `ip` does not answer within a second.
    pub(crate) fn query(&mut self, cmd: &str) -> Option<Value> {
        if self.proc.is_none() {
            self.proc = self.spawn();
        }
        let (_, stdin, rx) = self.proc.as_mut()?;
        let sent = writeln!(stdin, "{cmd}")
            .and_then(|()| stdin.flush())
            .is_ok();
        match sent.then(|| rx.recv_timeout(Duration::from_secs(1))) {
            Some(Ok(line)) => serde_json::from_str(&line).ok(),
            _ => {
                self.kill();
                None
            }
        }
    }

    fn kill(&mut self) {
        if let Some((mut c, stdin, _)) = self.proc.take() {
            drop(stdin);
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for IpBatch {
    fn drop(&mut self) {
        self.kill();
    }
}

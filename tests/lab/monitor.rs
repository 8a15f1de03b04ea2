//! What the world sees while a fault plays out: every ~20 ms, which nodes
//! hold the IPv4 VIP on eth0 and which MAC the client's neighbour entry for
//! it carries. A [`Monitor`] runs in its own thread from fault injection
//! until the scenario ends; the [`Trace`] it returns yields the windows a
//! failover is judged by (two holders, no holder, time to converge, time
//! until the client points at the holder).
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

use super::{Lab, NODES, VIP4};

/// How often the monitor samples (a sample itself takes well under 1 ms).
pub const PERIOD: Duration = Duration::from_millis(20);

/// One observation.
#[derive(Clone, Debug, PartialEq)]
pub struct Sample {
    /// Seconds since the monitor started.
    pub t: f64,
    /// Nodes holding the IPv4 VIP on eth0, ascending.
    pub holders: Vec<usize>,
    /// Each node's eth0 MAC (index n-1); "" while it has no eth0. Sampled
    /// because re-creating an interface changes it.
    pub macs: Vec<String>,
    /// The MAC the client's neighbour entry for the VIP carries; `None`
    /// without an entry or without an address in it (INCOMPLETE, FAILED).
    pub neigh: Option<String>,
}

impl Sample {
    /// The node the client's neighbour entry points at, if any.
    pub fn neigh_node(&self) -> Option<usize> {
        let mac = self.neigh.as_deref()?;
        NODES.into_iter().find(|&n| self.macs[n - 1] == mac)
    }
}

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
                nodes: nodes.iter().map(|ns| Batch::new(ns)).collect(),
                client: Batch::new(&client),
            };
            let mut samples = Vec::new();
            let mut start = None;
            loop {
                let tick = Instant::now();
                let s = q.sample(start.map_or(0.0, |t: Instant| t.elapsed().as_secs_f64()));
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

    /// Seconds since the monitor started, to mark events in the trace.
    pub fn now(&self) -> f64 {
        self.start.elapsed().as_secs_f64()
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
            end: samples.last().map_or(0.0, |s| s.t),
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
    nodes: Vec<Batch>,
    client: Batch,
}

impl Queriers {
    fn sample(&mut self, t: f64) -> Sample {
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
            t,
            holders,
            macs,
            neigh,
        }
    }
}

/// One `ip -n NS -json -force -batch -` process: a command line in, one
/// JSON line out. A reader thread feeds the lines through a channel so that
/// a query can time out instead of hanging the monitor.
struct Batch {
    ns: String,
    proc: Option<(Child, ChildStdin, Receiver<String>)>,
}

impl Batch {
    fn new(ns: &str) -> Batch {
        Batch {
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
    fn query(&mut self, cmd: &str) -> Option<Value> {
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

impl Drop for Batch {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The windows a trace yields for an expected final holder.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Windows {
    /// Seconds during which two or more nodes held the VIP.
    pub two_holders: f64,
    /// Seconds during which no node held it.
    pub no_holder: f64,
    /// From the start until exactly the expected node held it for good
    /// (until the end of the trace); `None` if it did not at the end.
    pub converge: Option<f64>,
    /// From the start until the client's entry pointed at the expected
    /// node for good; `None` if it did not at the end.
    pub client: Option<f64>,
    /// How often the set of holders changed.
    pub changes: usize,
    /// Samples taken, and the largest gap between two (seconds): the
    /// resolution of the numbers above.
    pub samples: usize,
    pub max_gap: f64,
}

impl Windows {
    /// Several runs summed up: total time with two or no holders, the
    /// slowest convergence (`None` if any did not converge).
    pub fn worst(all: &[Windows]) -> Windows {
        let max = |f: fn(&Windows) -> Option<f64>| {
            all.iter()
                .map(f)
                .try_fold(0.0, |acc: f64, v| v.map(|v| acc.max(v)))
        };
        Windows {
            two_holders: all.iter().fold(0.0, |t, w| t + w.two_holders),
            no_holder: all.iter().fold(0.0, |t, w| t + w.no_holder),
            converge: max(|w| w.converge),
            client: max(|w| w.client),
            changes: all.iter().map(|w| w.changes).sum(),
            samples: all.iter().map(|w| w.samples).sum(),
            max_gap: all.iter().map(|w| w.max_gap).fold(0.0, f64::max),
        }
    }
}

/// Everything a monitor saw.
#[derive(Clone, Debug, Default)]
pub struct Trace {
    pub samples: Vec<Sample>,
    /// Time of the last sample.
    pub end: f64,
}

impl Trace {
    /// Each sample with how long its state lasted (until the next sample).
    fn spans(&self) -> impl Iterator<Item = (&Sample, f64)> {
        self.samples.iter().enumerate().map(|(i, s)| {
            let next = self.samples.get(i + 1).map_or(self.end, |n| n.t);
            (s, next - s.t)
        })
    }

    /// Total seconds during which `f` held.
    pub fn time_where(&self, f: impl Fn(&Sample) -> bool) -> f64 {
        // fold from +0.0: an empty f64 sum() is -0.0, printed "-0.00".
        self.spans()
            .filter(|(s, _)| f(s))
            .fold(0.0, |total, (_, d)| total + d)
    }

    /// Start of the final stretch during which `f` held up to the end;
    /// `None` if it does not hold at the end.
    pub fn settled_from(&self, f: impl Fn(&Sample) -> bool) -> Option<f64> {
        let mut from = None;
        for s in &self.samples {
            from = if f(s) { from.or(Some(s.t)) } else { None };
        }
        from
    }

    /// First time at or after `after` at which `f` held.
    pub fn first_where(&self, after: f64, f: impl Fn(&Sample) -> bool) -> Option<f64> {
        self.samples
            .iter()
            .find(|s| s.t >= after && f(s))
            .map(|s| s.t)
    }

    /// Samples at or after `after` for which `f` fails (for messages).
    pub fn violations(&self, after: f64, f: impl Fn(&Sample) -> bool) -> Vec<&Sample> {
        self.samples
            .iter()
            .filter(|s| s.t >= after && !f(s))
            .collect()
    }

    /// How often the set of holders changed.
    pub fn holder_changes(&self) -> usize {
        self.samples
            .windows(2)
            .filter(|w| w[0].holders != w[1].holders)
            .count()
    }

    /// How often the client's entry changed MAC.
    pub fn client_changes(&self) -> usize {
        self.samples
            .windows(2)
            .filter(|w| w[0].neigh != w[1].neigh)
            .count()
    }

    /// The holder sets in order, without repeats, with the time each began:
    /// a compact history for messages.
    pub fn history(&self) -> Vec<(f64, Vec<usize>)> {
        let mut h: Vec<(f64, Vec<usize>)> = Vec::new();
        for s in &self.samples {
            if h.last().is_none_or(|(_, last)| *last != s.holders) {
                h.push((s.t, s.holders.clone()));
            }
        }
        h
    }

    /// The part of the trace from `from` to `to`, with times counted from
    /// `from`; the state at `from` (the sample before it) opens it.
    pub fn slice(&self, from: f64, to: f64) -> Trace {
        let first = self.samples.iter().rposition(|s| s.t <= from).unwrap_or(0);
        let samples = self.samples[first..]
            .iter()
            .enumerate()
            .filter(|(i, s)| *i == 0 || (s.t > from && s.t <= to))
            .map(|(_, s)| Sample {
                t: (s.t - from).max(0.0),
                ..s.clone()
            })
            .collect();
        Trace {
            samples,
            end: to.min(self.end) - from,
        }
    }

    /// The windows, judged against `holder` as the rightful final holder.
    pub fn windows(&self, holder: usize) -> Windows {
        let max_gap = self
            .samples
            .windows(2)
            .map(|w| w[1].t - w[0].t)
            .fold(0.0, f64::max);
        Windows {
            two_holders: self.time_where(|s| s.holders.len() >= 2),
            no_holder: self.time_where(|s| s.holders.is_empty()),
            converge: self.settled_from(|s| s.holders == [holder]),
            client: self.settled_from(|s| s.neigh_node() == Some(holder)),
            changes: self.holder_changes(),
            samples: self.samples.len(),
            max_gap,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(t: f64, holders: &[usize], neigh: Option<&str>) -> Sample {
        Sample {
            t,
            holders: holders.to_vec(),
            macs: vec!["m1".into(), "m2".into(), "m3".into()],
            neigh: neigh.map(str::to_string),
        }
    }

    #[test]
    fn windows_from_a_failover() {
        let t = Trace {
            samples: vec![
                s(0.0, &[1], Some("m1")),
                s(1.0, &[], Some("m1")),
                s(1.5, &[2], Some("m1")),
                s(2.0, &[1, 2], Some("m2")),
                s(2.5, &[2], Some("m2")),
                s(3.0, &[2], Some("m2")),
            ],
            end: 3.0,
        };
        let w = t.windows(2);
        assert_eq!(w.no_holder, 0.5);
        assert_eq!(w.two_holders, 0.5);
        assert_eq!(w.converge, Some(2.5));
        assert_eq!(w.client, Some(2.0));
        assert_eq!(w.changes, 4);
        assert_eq!(w.max_gap, 1.0);
        assert_eq!(t.windows(1).converge, None);
        assert_eq!(t.history().len(), 5);

        let part = t.slice(1.2, 2.6);
        assert_eq!(part.samples[0].holders, Vec::<usize>::new());
        assert!((part.end - 1.4).abs() < 1e-9);
        let pw = part.windows(2);
        assert!((pw.converge.unwrap() - 1.3).abs() < 1e-9);
        let both = Windows::worst(&[w.clone(), pw]);
        assert_eq!(both.converge, Some(2.5));
        assert_eq!(Windows::worst(&[w, t.windows(1)]).converge, None);
    }
}

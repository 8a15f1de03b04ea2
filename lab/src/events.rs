//! Sentinel's pub/sub events as a test sees them: subscribed on every
//! Sentinel from the client namespace, stamped on arrival, and reacted to
//! at once when a case must strike at a precise moment of a failover (kill
//! the leader as it promotes, pause the replica it chose).

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use crate::command::signal;
use crate::{node_ip, now_epoch, Lab, NODES, SENTINEL_PORT};

/// The channel Sentinel announces a promotion on, the instant it sees the
/// replica report itself master.
pub const PROMOTED: &str = "+promoted-slave";

/// One event: when it arrived (CLOCK_REALTIME seconds), from which node's
/// Sentinel, on which channel, with which payload.
#[derive(Clone, Debug)]
pub struct SentinelEvent {
    pub at: f64,
    pub sentinel: usize,
    pub channel: String,
    pub payload: String,
}

impl SentinelEvent {
    /// The address a replica's event names (`slave <ip>:<port> <ip> ...`).
    pub fn instance_ip(&self) -> Option<&str> {
        let mut f = self.payload.split(' ');
        (f.next() == Some("slave")).then(|| f.nth(1)).flatten()
    }
}

/// What to do the moment an event arrives (on the reader's thread).
pub type React = Arc<dyn Fn(&SentinelEvent) + Send + Sync>;

/// The processes a reaction may signal, by node: taken when the
/// subscription starts, so a reaction needs no access to the lab.
#[derive(Clone, Copy, Debug, Default)]
pub struct Pids {
    pub redis: [Option<u32>; 3],
    pub sentinel: [Option<u32>; 3],
}

impl Pids {
    /// SIGKILL, SIGSTOP, SIGCONT... to node `n`'s redis-server.
    pub fn signal_redis(&self, n: usize, sig: &str) -> bool {
        self.redis[n - 1].is_some_and(|p| signal(p, sig))
    }

    pub fn signal_sentinel(&self, n: usize, sig: &str) -> bool {
        self.sentinel[n - 1].is_some_and(|p| signal(p, sig))
    }
}

pub struct Events {
    children: Vec<Child>,
    seen: Arc<Mutex<Vec<SentinelEvent>>>,
    readers: Vec<JoinHandle<()>>,
}

impl Lab {
    /// The pids of every node's redis-server and Sentinel now.
    pub fn pids(&self) -> Pids {
        let mut p = Pids::default();
        for n in NODES {
            p.redis[n - 1] = self.nodes[n - 1].redis.pid();
            p.sentinel[n - 1] = self.nodes[n - 1].sentinel.pid();
        }
        p
    }
}

impl Events {
    /// Subscribes to `channels` on every running Sentinel; `react` runs on
    /// each event as it arrives.
    pub fn start(lab: &Lab, channels: &[&str], react: Option<React>) -> Events {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let mut children = Vec::new();
        let mut readers = Vec::new();
        for n in NODES {
            let mut c = Command::new("ip")
                .args(["netns", "exec", &lab.ns_client(), lab.programs().cli, "-h"])
                .arg(node_ip(n))
                .args(["-p", &SENTINEL_PORT.to_string(), "SUBSCRIBE"])
                .args(channels)
                .stdout(Stdio::piped())
                .stderr(Stdio::null())
                .stdin(Stdio::null())
                .spawn()
                .expect("redis-cli SUBSCRIBE");
            let out = c.stdout.take().expect("piped");
            let (seen, react) = (seen.clone(), react.clone());
            readers.push(std::thread::spawn(move || {
                // redis-cli prints each message as three lines:
                // `message`, the channel, the payload.
                let mut lines = BufReader::new(out).lines().map_while(Result::ok);
                while let Some(line) = lines.next() {
                    if line != "message" {
                        continue;
                    }
                    let (Some(channel), Some(payload)) = (lines.next(), lines.next()) else {
                        return;
                    };
                    let e = SentinelEvent {
                        at: now_epoch(),
                        sentinel: n,
                        channel,
                        payload,
                    };
                    if let Some(r) = &react {
                        r(&e);
                    }
                    seen.lock().unwrap().push(e);
                }
            }));
            children.push(c);
        }
        // Give the subscriptions a moment to be registered.
        std::thread::sleep(Duration::from_millis(300));
        Events {
            children,
            seen,
            readers,
        }
    }

    /// The first event on `channel` after `after`.
    pub fn first(&self, channel: &str, after: f64) -> Option<SentinelEvent> {
        let seen = self.seen.lock().unwrap();
        seen.iter()
            .filter(|e| e.channel == channel && e.at > after)
            .min_by(|a, b| a.at.total_cmp(&b.at))
            .cloned()
    }
}

impl Drop for Events {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
        for r in self.readers.drain(..) {
            let _ = r.join();
        }
    }
}

//! A Jepsen-style client for the fence's cases and benchmark: one thread
//! in the client namespace appends unique ids to one list through the VIP
//! (`RPUSH key id`, one connection kept and replaced at once when it
//! fails, with no back-off), and records every attempt: when it was sent,
//! when it ended, whether the server acknowledged it. After the heal, what
//! the final master holds is read back: an acknowledged id missing there
//! is an acknowledged write lost. It writes only its own key.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use redis::Value;

use crate::client::Pace;
use crate::{netns, now_epoch, wait_until, Lab, REDIS_PORT, VIP4};

/// One write: its id, when it was sent and ended (epoch seconds), and
/// whether the server acknowledged it (an integer reply to `RPUSH`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Attempt {
    pub id: u64,
    pub sent: f64,
    pub done: f64,
    pub acked: bool,
}

/// The writer thread; stops when dropped.
pub struct IdWriter {
    pub key: String,
    stop: Arc<AtomicBool>,
    log: Arc<Mutex<Vec<Attempt>>>,
    last_error: Arc<Mutex<String>>,
    handle: Option<JoinHandle<()>>,
}

impl IdWriter {
    /// Starts writing to `key` through the VIP at `pace`; returns once the
    /// thread is in the client namespace.
    pub fn start(lab: &Lab, key: &str, pace: Pace) -> IdWriter {
        let url = match &lab.opts.data_password {
            Some(pw) => format!("redis://:{pw}@{VIP4}:{REDIS_PORT}/"),
            None => format!("redis://{VIP4}:{REDIS_PORT}/"),
        };
        let (stop, log, last_error) = (Arc::default(), Arc::default(), Arc::default());
        let (s, l, e, k) = (
            Arc::clone(&stop),
            Arc::clone(&log),
            Arc::clone(&last_error),
            key.to_string(),
        );
        let ns = lab.ns_client();
        let (tx, rx) = mpsc::channel();
        let handle = std::thread::spawn(move || {
            let ready = netns::enter(&ns).map_err(|e| e.to_string());
            let failed = ready.is_err();
            let _ = tx.send(ready);
            if !failed {
                write_loop(&url, &k, pace, &s, &l, &e);
            }
        });
        match rx.recv() {
            Ok(Ok(())) => {}
            Ok(Err(why)) => panic!("writer {key}: {why}"),
            Err(_) => panic!("writer {key}: its thread died while starting"),
        }
        IdWriter {
            key: key.to_string(),
            stop,
            log,
            last_error,
            handle: Some(handle),
        }
    }

    /// Every attempt so far, in order.
    pub fn attempts(&self) -> Vec<Attempt> {
        self.log.lock().unwrap().clone()
    }

    /// Waits up to `timeout` for `count` writes acknowledged after `t`.
    pub fn wait_acks(&self, t: f64, count: usize, timeout: Duration) -> bool {
        wait_until(timeout, Duration::from_millis(10), || {
            let log = self.log.lock().unwrap();
            log.iter().filter(|a| a.acked && a.sent > t).count() >= count
        })
    }

    /// The last error the client met (for messages).
    pub fn last_error(&self) -> String {
        self.last_error.lock().unwrap().clone()
    }

    /// Stops writing; returns every attempt.
    pub fn stop(mut self) -> Vec<Attempt> {
        self.finish();
        self.attempts()
    }

    fn finish(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

impl Drop for IdWriter {
    fn drop(&mut self) {
        self.finish();
    }
}

fn write_loop(
    url: &str,
    key: &str,
    pace: Pace,
    stop: &AtomicBool,
    log: &Mutex<Vec<Attempt>>,
    last_error: &Mutex<String>,
) {
    let mut conn: Option<redis::Connection> = None;
    let mut id = 0u64;
    while !stop.load(Ordering::Relaxed) {
        let began = Instant::now();
        id += 1;
        let sent = now_epoch();
        let attempt = (|| -> redis::RedisResult<Value> {
            if conn.is_none() {
                let c = redis::Client::open(url)?.get_connection_with_timeout(pace.timeout)?;
                c.set_read_timeout(Some(pace.timeout))?;
                c.set_write_timeout(Some(pace.timeout))?;
                conn = Some(c);
            }
            let c = conn.as_mut().expect("just set");
            redis::cmd("RPUSH").arg(key).arg(id).query::<Value>(c)
        })();
        let acked = matches!(attempt, Ok(Value::Int(_)));
        if !acked {
            conn = None;
            *last_error.lock().unwrap() = match attempt {
                Ok(v) => format!("RPUSH answered {v:?}"),
                Err(e) => e.to_string(),
            };
        }
        log.lock().unwrap().push(Attempt {
            id,
            sent,
            done: now_epoch(),
            acked,
        });
        if let Some(rest) = (began + pace.interval).checked_duration_since(Instant::now()) {
            std::thread::sleep(rest);
        }
    }
}

impl Lab {
    /// The ids node `n` holds in list `key` (read with the node's own
    /// client program, from its namespace).
    pub fn ids_on(&self, n: usize, key: &str) -> HashSet<u64> {
        let (out, err) = self.redis_cli(n, &["LRANGE", key, "0", "-1"]);
        assert!(err.is_empty(), "LRANGE {key} on n{n}: {err}");
        out.lines().filter_map(|l| l.trim().parse().ok()).collect()
    }
}

/// What a stretch of attempts came to.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Tally {
    /// Acknowledged, and not acknowledged, in the stretch.
    pub acked: usize,
    pub failed: usize,
    /// Acknowledged ids (of the whole run up to the stretch's end) the
    /// final master does not hold: acknowledged, then lost.
    pub lost: Vec<u64>,
    /// When the first and last lost write was acknowledged (epoch s).
    pub lost_span: Option<(f64, f64)>,
    /// The longest time without an acknowledged write in the stretch
    /// (from its start, between acknowledgements, to its end), seconds:
    /// what a client through the VIP saw as unavailable.
    pub unavailable: f64,
    /// Acknowledged writes per second in the second before the stretch.
    pub rate_before: f64,
}

/// Pure: the tally of `attempts` over the stretch `from`..`to` (epoch s),
/// judged against `kept`, the ids the final master holds.
pub fn tally(attempts: &[Attempt], kept: &HashSet<u64>, from: f64, to: f64) -> Tally {
    let within = || attempts.iter().filter(|a| a.done >= from && a.done <= to);
    let lost: Vec<&Attempt> = attempts
        .iter()
        .filter(|a| a.acked && a.done <= to && !kept.contains(&a.id))
        .collect();
    let mut last = from;
    let mut gap = 0.0f64;
    for a in within().filter(|a| a.acked) {
        gap = gap.max(a.done - last);
        last = a.done;
    }
    gap = gap.max(to - last);
    let before = attempts
        .iter()
        .filter(|a| a.acked && a.done < from && a.done >= from - 1.0)
        .count();
    Tally {
        acked: within().filter(|a| a.acked).count(),
        failed: within().filter(|a| !a.acked).count(),
        lost_span: lost
            .first()
            .map(|f| (f.done, lost.last().map_or(f.done, |l| l.done))),
        lost: lost.iter().map(|a| a.id).collect(),
        unavailable: gap,
        rate_before: before as f64,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(id: u64, done: f64, acked: bool) -> Attempt {
        Attempt {
            id,
            sent: done - 0.001,
            done,
            acked,
        }
    }

    #[test]
    fn lost_writes_and_the_longest_gap() {
        let run = [
            a(1, 9.2, true),
            a(2, 9.6, true),
            // The cut at 10: acknowledged by the old master, then lost.
            a(3, 10.1, true),
            a(4, 10.2, true),
            a(5, 10.5, false),
            a(6, 10.8, false),
            // On the new master from 11.5.
            a(7, 11.5, true),
            a(8, 11.6, true),
            a(9, 13.0, true),
        ];
        let kept: HashSet<u64> = [1, 2, 7, 8].into();
        let t = tally(&run, &kept, 10.0, 12.0);
        assert_eq!((t.acked, t.failed), (4, 2));
        assert_eq!(t.lost, [3, 4], "9 came after the stretch");
        assert_eq!(t.lost_span, Some((10.1, 10.2)));
        assert!((t.unavailable - 1.3).abs() < 1e-9, "{}", t.unavailable);
        assert_eq!(t.rate_before, 2.0);
        let none = tally(&[], &kept, 10.0, 12.0);
        assert_eq!((none.unavailable, none.lost.len()), (2.0, 0));
    }
}

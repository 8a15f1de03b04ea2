//! Timestamps from the world's side, for the demo and the benchmark: when
//! Sentinel promoted a replica (its pub/sub event), when sentinel-vip
//! changed an address (its log), when a client write first succeeded.
//! All are CLOCK_REALTIME seconds, like tcpdump's `-tt`.

use std::io::Write;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use crate::events::{Events, PROMOTED};
use crate::{node_of_ip, now_epoch, Lab};

/// Days since 1970-01-01 of a civil date (H. Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let doy = (153 * (m + if m > 2 { -3 } else { 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146097 + doe - 719468
}

fn epoch(y: i64, mo: i64, d: i64, h: i64, mi: i64, s: f64) -> f64 {
    (days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60) as f64 + s
}

/// `2026-11-23T09:12:07.933759Z` (tracing's default timestamp) to epoch.
fn parse_rfc3339(s: &str) -> Option<f64> {
    let s = s.strip_suffix('Z')?;
    let (date, time) = s.split_once('T')?;
    let mut d = date.split('-').map(|x| x.parse::<i64>().ok());
    let (y, mo, dd) = (d.next()??, d.next()??, d.next()??);
    let mut t = time.split(':');
    let (h, mi) = (t.next()?.parse().ok()?, t.next()?.parse().ok()?);
    Some(epoch(y, mo, dd, h, mi, t.next()?.parse().ok()?))
}

/// `2026-12-06T02:50:12.190160` (UTC, as `ip -ts` prints it under
/// `TZ=UTC`) to epoch.
pub(crate) fn epoch_of(s: &str) -> Option<f64> {
    parse_rfc3339(&format!("{s}Z"))
}

/// The timestamp that starts a sentinel-vip log line.
fn log_line_time(line: &str) -> Option<f64> {
    parse_rfc3339(line.split_whitespace().next()?)
}

/// First line of node `n`'s sentinel-vip log after `after` that contains
/// every one of `words`, with its time.
pub fn first_log(lab: &Lab, n: usize, words: &[&str], after: f64) -> Option<(f64, String)> {
    let text = std::fs::read_to_string(lab.sv_log_path(n)).ok()?;
    text.lines()
        .filter(|l| words.iter().all(|w| l.contains(w)))
        .filter_map(|l| Some((log_line_time(l)?, l.to_string())))
        .find(|(t, _)| *t > after)
}

/// Subscribes to `+promoted-slave` on every Sentinel (from the client
/// namespace) and stamps each event on arrival: Sentinel publishes it the
/// instant it sees the replica report itself master.
pub struct Promotions(Events);

impl Promotions {
    pub fn start(lab: &Lab) -> Promotions {
        Promotions(Events::start(lab, &[PROMOTED], None))
    }

    /// The first promotion seen after `after`: (time, promoted replica's IP).
    pub fn first_after(&self, after: f64) -> Option<(f64, String)> {
        let e = self.0.first(PROMOTED, after)?;
        Some((e.at, e.instance_ip().unwrap_or("").to_string()))
    }
}

/// Successful writes: when, and which node took them.
type Stamps = Arc<Mutex<Vec<(f64, Option<usize>)>>>;

/// Writes through the VIP from the client namespace in a loop and stamps
/// each success with the node that took it (`CONFIG GET bind` on the same
/// connection): a replica answers READONLY and a dead master refuses.
pub struct Writer {
    stop: Arc<Mutex<bool>>,
    oks: Stamps,
    handle: Option<JoinHandle<()>>,
}

impl Writer {
    pub fn start(lab: &Lab) -> Writer {
        let stop = Arc::new(Mutex::new(false));
        let oks = Arc::new(Mutex::new(Vec::new()));
        let ns = lab.ns_client();
        let cli = lab.programs().cli;
        let auth: Vec<String> = lab.data_auth().into_iter().map(String::from).collect();
        let vip = lab.vip4();
        let (s, o) = (stop.clone(), oks.clone());
        let handle = std::thread::spawn(move || {
            let mut i = 0u64;
            while !*s.lock().unwrap() {
                i += 1;
                // A short timeout: a connect that went to the old holder just
                // before the move would otherwise hang for a SYN retransmit.
                let child = Command::new("ip")
                    .args(["netns", "exec", &ns, "timeout", "0.25", cli, "-h", vip])
                    .args(&auth)
                    .stdin(Stdio::piped())
                    .stdout(Stdio::piped())
                    .stderr(Stdio::null())
                    .spawn();
                let Ok(mut child) = child else { continue };
                if let Some(mut stdin) = child.stdin.take() {
                    let _ = writeln!(stdin, "SET timeline {i}\nCONFIG GET bind");
                }
                let Ok(out) = child.wait_with_output() else {
                    continue;
                };
                let text = String::from_utf8_lossy(&out.stdout);
                let mut lines = text.lines();
                if lines.next() == Some("OK") {
                    let node = lines
                        .nth(1)
                        .and_then(|l| l.split_whitespace().next())
                        .and_then(node_of_ip);
                    o.lock().unwrap().push((now_epoch(), node));
                }
            }
        });
        Writer {
            stop,
            oks,
            handle: Some(handle),
        }
    }

    /// The first write after `after` that succeeded on node `n` (any node
    /// when `None`).
    pub fn first_ok_after(&self, after: f64, n: Option<usize>) -> Option<f64> {
        let oks = self.oks.lock().unwrap();
        oks.iter()
            .find(|(t, node)| *t > after && (n.is_none() || *node == n))
            .map(|(t, _)| *t)
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        *self.stop.lock().unwrap() = true;
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn rfc3339() {
        assert_eq!(super::parse_rfc3339("1970-01-01T00:00:01.5Z"), Some(1.5));
        let t = super::parse_rfc3339("2026-11-23T09:12:07.933759Z").unwrap();
        assert!((t - 1_795_425_127.933_759).abs() < 1e-6, "{t}");
        assert_eq!(
            super::log_line_time("2026-11-23T09:12:07Z  INFO hook"),
            Some(1_795_425_127.0)
        );
    }
}

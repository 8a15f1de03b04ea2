//! Asking Sentinels who the master is: one cached connection per Sentinel,
//! one pipeline per pass, AUTH and TLS as configured. It reports what the
//! Sentinels say; it never touches addresses.
//!
//! A pass does not wait for a Sentinel that does not answer once the
//! answers in hand settle the question ([`settled`]). Why that is safe: a
//! configuration newer than every answer from a majority can only be known
//! to the Sentinel that led the failover creating it. A failover needs a
//! majority's votes for its leader, and the others adopt its result only
//! from the leader's hello messages, so until then the leader alone has
//! it. Alive and reachable, that leader answers about as fast as its peers
//! (it is the one that ran the hook, or published the event, a moment
//! ago), so it is heard within the grace; if it does not answer, it is dead
//! or cut off, and its configuration is not what the Sentinel majority, or
//! a Sentinel-aware client, acts on: should it stay away, the others time
//! its failover out and redo it. Waiting longer could only add a
//! configuration no majority has adopted, at the price of the whole
//! timeout on every pass while a host is down, which is when passes
//! matter most.
//!
//! [`verdict`] combines answers, [`reply`] reads them, [`event`] reads
//! pub/sub payloads; all three are pure.

pub mod event;
pub mod failover;
pub mod replicas;
pub mod reply;
pub mod verdict;

pub use event::{parse_event, Event, EventError, Kind, CHANNELS};
pub use verdict::{verdict, Answer, AskError, Report, Verdict};

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::stream::{FuturesUnordered, StreamExt};

use anyhow::Result;
use redis::aio::MultiplexedConnection;
use redis::{AsyncConnectionConfig, Value};

use crate::config::{Config, Endpoint};

/// One Sentinel and its cached connection.
struct Peer {
    endpoint: Endpoint,
    client: redis::Client,
    conn: Mutex<Option<MultiplexedConnection>>,
}

/// The configured Sentinels, with a cached connection to each.
pub struct Sentinels {
    all: Vec<Arc<Peer>>,
    timeout: Duration,
}

/// However fast a majority answers, the rest get at least this long.
pub const GRACE_MIN: Duration = Duration::from_millis(5);

/// Whether the answers in hand settle the question: a majority of the
/// `total` Sentinels answered (`ok`), and either no Sentinel not known to
/// be down is still out (`live_pending`), or the majority has been in hand
/// for the grace (the time it took, at least [`GRACE_MIN`]). Without a
/// majority nothing is settled: the pass waits for everyone, known down or
/// not, up to the timeout.
pub fn settled(
    total: usize,
    ok: usize,
    live_pending: usize,
    majority_for: Option<Duration>,
    grace: Duration,
) -> bool {
    ok > total / 2 && (live_pending == 0 || majority_for.is_some_and(|d| d >= grace))
}

impl Sentinels {
    pub fn new(cfg: &Config) -> Result<Sentinels> {
        let all = cfg
            .sentinels
            .iter()
            .map(|e| {
                Ok(Arc::new(Peer {
                    endpoint: e.clone(),
                    client: crate::conn::client(&e.host, e.port, &cfg.sentinel_auth())?,
                    conn: Mutex::new(None),
                }))
            })
            .collect::<Result<_>>()?;
        Ok(Sentinels {
            all,
            timeout: cfg.sentinel_timeout,
        })
    }

    pub fn is_empty(&self) -> bool {
        self.all.is_empty()
    }

    pub fn clients(&self) -> impl Iterator<Item = (&Endpoint, &redis::Client)> {
        self.all.iter().map(|o| (&o.endpoint, &o.client))
    }

    /// Asks every Sentinel at once, in one pipeline each, until the answers
    /// settle the question (see the module doc) or the timeout. Sentinels
    /// in `known_down` (by endpoint) are asked too, but not waited for
    /// once a majority has answered. A question left behind runs on to its
    /// own timeout, so that a dead connection is still dropped.
    pub async fn ask(&self, names: &[&str], known_down: &HashSet<String>) -> Vec<Answer> {
        let start = Instant::now();
        let names: Arc<[String]> = names.iter().map(|n| n.to_string()).collect();
        let mut asks: FuturesUnordered<_> = self
            .all
            .iter()
            .enumerate()
            .map(|(i, p)| {
                let (p, names, t) = (p.clone(), names.clone(), self.timeout);
                let task = tokio::spawn(async move { ask_peer(&p, &names, t).await });
                async move { (i, task.await) }
            })
            .collect();
        let total = self.all.len();
        let live: Vec<bool> = self
            .all
            .iter()
            .map(|p| !known_down.contains(&p.endpoint.to_string()))
            .collect();
        let mut got: Vec<Option<Result<_, AskError>>> = vec![None; total];
        let mut majority_at: Option<Instant> = None;
        let deadline = tokio::time::Instant::from_std(start + self.timeout);
        loop {
            let ok = got.iter().filter(|g| matches!(g, Some(Ok(_)))).count();
            let live_pending = (0..total).filter(|&i| live[i] && got[i].is_none()).count();
            if ok > total / 2 && majority_at.is_none() {
                majority_at = Some(Instant::now());
            }
            let grace = majority_at.map_or(GRACE_MIN, |m| (m - start).max(GRACE_MIN));
            let majority_for = majority_at.map(|m| m.elapsed());
            if got.iter().all(Option::is_some)
                || settled(total, ok, live_pending, majority_for, grace)
            {
                break;
            }
            let until = match majority_at {
                Some(m) => tokio::time::Instant::from_std(m + grace).min(deadline),
                None => deadline,
            };
            tokio::select! {
                next = asks.next() => match next {
                    Some((i, Ok(r))) => got[i] = Some(r),
                    Some((i, Err(e))) => got[i] = Some(Err(AskError::Unreachable(e.to_string()))),
                    None => break,
                },
                _ = tokio::time::sleep_until(until) => {
                    if until >= deadline {
                        break;
                    }
                }
            }
        }
        let waited = start.elapsed().as_millis();
        self.all
            .iter()
            .zip(got)
            .map(|(p, g)| Answer {
                sentinel: p.endpoint.to_string(),
                reply: g.unwrap_or_else(|| {
                    Err(AskError::NotWaited(format!("no answer within {waited} ms")))
                }),
            })
            .collect()
    }
}

/// One Sentinel asked about a failover it may be leading.
pub struct Leader {
    peer: Arc<Peer>,
    timeout: Duration,
}

impl Sentinels {
    /// The configured Sentinel at `endpoint` (as its events name it).
    pub fn leader(&self, endpoint: &str) -> Option<Leader> {
        self.all
            .iter()
            .find(|p| p.endpoint.to_string() == endpoint)
            .map(|p| Leader {
                peer: p.clone(),
                timeout: self.timeout,
            })
    }
}

impl Leader {
    /// `SENTINEL MASTER` and `SENTINEL REPLICAS` for `master`, in one
    /// pipeline on the kept connection, within the timeout.
    pub async fn failover(&self, master: &str) -> Result<failover::LeaderView, AskError> {
        let ask = async {
            let mut con = connection(&self.peer, self.timeout).await?;
            let mut pipe = redis::pipe();
            pipe.ignore_errors();
            pipe.cmd("SENTINEL").arg("MASTER").arg(master);
            pipe.cmd("SENTINEL").arg("REPLICAS").arg(master);
            let vals: Vec<Value> = pipe.query_async(&mut con).await.map_err(ask_error)?;
            match vals.as_slice() {
                [m, r] => Ok(failover::parse_leader(m, r)?),
                _ => Err(AskError::Reply(reply::ReplyError::Count {
                    got: vals.len(),
                    want: 2,
                })),
            }
        };
        let r = match tokio::time::timeout(self.timeout, ask).await {
            Ok(r) => r,
            Err(_) => Err(AskError::Unreachable(format!(
                "no answer within {} ms",
                self.timeout.as_millis()
            ))),
        };
        if r.is_err() {
            *self.peer.conn.lock().expect("lock") = None;
        }
        r
    }
}

/// One Sentinel's answer within `timeout`; a failure drops its cached
/// connection, so that the next question opens a fresh one.
async fn ask_peer(
    p: &Peer,
    names: &[String],
    timeout: Duration,
) -> Result<HashMap<String, Option<Report>>, AskError> {
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    let r = match tokio::time::timeout(timeout, ask_one(p, &names, timeout)).await {
        Ok(r) => r,
        Err(_) => Err(AskError::Unreachable(format!(
            "no answer within {} ms",
            timeout.as_millis()
        ))),
    };
    if r.is_err() {
        *p.conn.lock().expect("lock") = None;
    }
    r
}

/// A failed question: the connection's fault, or the peer's answer.
fn ask_error(e: redis::RedisError) -> AskError {
    if e.is_io_error() || e.is_connection_dropped() || e.is_connection_refusal() || e.is_timeout() {
        AskError::Unreachable(e.to_string())
    } else {
        AskError::Refused(crate::error::printable(&e.to_string()))
    }
}

/// The peer's kept connection, or a new one (then kept).
async fn connection(o: &Peer, timeout: Duration) -> Result<MultiplexedConnection, AskError> {
    if let Some(c) = o.conn.lock().expect("lock").clone() {
        return Ok(c);
    }
    let cfg = AsyncConnectionConfig::new()
        .set_connection_timeout(Some(timeout))
        .set_response_timeout(Some(timeout));
    let c = o
        .client
        .get_multiplexed_async_connection_with_config(&cfg)
        .await
        .map_err(ask_error)?;
    *o.conn.lock().expect("lock") = Some(c.clone());
    Ok(c)
}

async fn ask_one(
    o: &Peer,
    names: &[&str],
    timeout: Duration,
) -> Result<HashMap<String, Option<Report>>, AskError> {
    let mut con = connection(o, timeout).await?;
    // Per name, SENTINEL MASTER carries the config-epoch and
    // GET-MASTER-ADDR-BY-NAME the address, which unlike MASTER already names
    // the promoted replica while the leader is still reconfiguring the
    // others. Per name, not SENTINEL MASTERS: a Sentinel set often monitors
    // hundreds of masters, and every pass would make it describe them all.
    // One pipeline, so all replies describe the same instant; errors come
    // back in place (a name this Sentinel does not monitor is an error).
    let mut pipe = redis::pipe();
    pipe.ignore_errors();
    for n in names {
        pipe.cmd("SENTINEL").arg("MASTER").arg(*n);
        pipe.cmd("SENTINEL").arg("GET-MASTER-ADDR-BY-NAME").arg(*n);
    }
    let vals: Vec<Value> = pipe.query_async(&mut con).await.map_err(ask_error)?;
    Ok(reply::parse_answer(&vals, names)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn when_the_answers_settle_it() {
        let ms = Duration::from_millis;
        let grace = ms(5);
        // (total, ok, live still out, majority in hand for, settled)
        #[rustfmt::skip]
        let rows: [(usize, usize, usize, Option<u64>, bool); 10] = [
            (3, 3, 0, Some(0), true),   // all answered
            (3, 2, 0, Some(0), true),   // the third is known down: no wait at all
            (3, 2, 1, Some(0), false),  // the third may be the leader: the grace
            (3, 2, 1, Some(4), false),
            (3, 2, 1, Some(5), true),   // grace over: not waited for
            (3, 1, 0, None, false),     // no majority: wait, known down or not
            (3, 1, 2, None, false),
            (5, 3, 0, Some(0), true),
            (5, 2, 0, None, false),
            (1, 1, 0, Some(0), true),
        ];
        for (total, ok, live, for_ms, want) in rows {
            assert_eq!(
                settled(total, ok, live, for_ms.map(ms), grace),
                want,
                "{ok}/{total} answered, {live} live out, majority for {for_ms:?} ms"
            );
        }
    }
}

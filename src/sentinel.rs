//! Asking Sentinels who the master is, and reading their pub/sub payloads.
//! It reports what Sentinels say; it never touches addresses.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use anyhow::{Context, Result};
use redis::aio::MultiplexedConnection;
use redis::{
    AsyncConnectionConfig, ConnectionAddr, IntoConnectionInfo, RedisConnectionInfo, Value,
};

use crate::config::{Config, Endpoint};
use crate::error::printable;
use crate::hookargs::{parse_port, valid_master_name, Host};

/// One Sentinel's view of one master.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Report {
    pub host: Host,
    pub port: u16,
    pub epoch: u64,
}

/// One Sentinel's answer for all the names asked: per name, its report, or
/// `None` when that Sentinel does not monitor the name.
#[derive(Clone, Debug)]
pub struct Answer {
    pub sentinel: String,
    pub reply: Result<HashMap<String, Option<Report>>, String>,
    /// The failure was the connection's (refused, dropped, timed out), not
    /// a wrong answer over a working one: only then is this Sentinel's
    /// pub/sub subscription suspect too.
    pub unreachable: bool,
}

/// What the answers say about one master.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verdict {
    /// The report with the highest config-epoch: Sentinel is
    /// last-failover-wins, and a newer epoch always supersedes older ones.
    pub master: Option<Report>,
    /// Sentinels that answered and know the master.
    pub answered: usize,
    pub total: usize,
}

impl Verdict {
    pub fn majority(&self) -> bool {
        self.total == 0 || self.answered > self.total / 2
    }
}

/// For logs and replies: `192.0.2.12:6379 epoch 4 (3/3 answered)`.
impl std::fmt::Display for Verdict {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.master {
            Some(r) => write!(f, "{}:{} epoch {} ", r.host, r.port, r.epoch)?,
            None => f.write_str("no master known ")?,
        }
        write!(f, "({}/{} answered)", self.answered, self.total)
    }
}

/// Pure: combines the answers for `name`. Ties in epoch (an observer that
/// caught up and the leader) go to the address most Sentinels report.
pub fn verdict(answers: &[Answer], name: &str) -> Verdict {
    let reports: Vec<&Report> = answers
        .iter()
        .filter_map(|a| a.reply.as_ref().ok()?.get(name)?.as_ref())
        .collect();
    let count = |r: &Report| {
        reports
            .iter()
            .filter(|o| o.host == r.host && o.port == r.port)
            .count()
    };
    let master = reports
        .iter()
        .max_by(|a, b| {
            (a.epoch, count(a), b.host.to_string()).cmp(&(b.epoch, count(b), a.host.to_string()))
        })
        .map(|r| (*r).clone());
    Verdict {
        master,
        answered: reports.len(),
        total: answers.len(),
    }
}

struct One {
    endpoint: Endpoint,
    client: redis::Client,
    conn: Mutex<Option<MultiplexedConnection>>,
}

/// The configured Sentinels, with a cached connection to each.
pub struct Sentinels {
    all: Vec<One>,
    timeout: Duration,
}

impl Sentinels {
    pub fn new(cfg: &Config) -> Result<Sentinels> {
        let all = cfg
            .sentinels
            .iter()
            .map(|e| {
                Ok(One {
                    endpoint: e.clone(),
                    client: client(cfg, e)?,
                    conn: Mutex::new(None),
                })
            })
            .collect::<Result<_>>()?;
        Ok(Sentinels {
            all,
            timeout: cfg.sentinel_timeout(),
        })
    }

    pub fn is_empty(&self) -> bool {
        self.all.is_empty()
    }

    pub fn clients(&self) -> impl Iterator<Item = (&Endpoint, &redis::Client)> {
        self.all.iter().map(|o| (&o.endpoint, &o.client))
    }

    /// Asks every Sentinel at once, in one pipeline each, and waits for all
    /// of them (bounded by the timeout): the leader may be the only one that
    /// already knows the new master, so the first answers are not enough.
    pub async fn ask(&self, names: &[&str]) -> Vec<Answer> {
        let asks = self.all.iter().map(|o| async move {
            let (reply, unreachable) =
                match tokio::time::timeout(self.timeout, ask_one(o, names, self.timeout)).await {
                    Ok(Ok(r)) => (Ok(r), false),
                    Ok(Err(e)) => {
                        *o.conn.lock().expect("lock") = None;
                        let link = e.downcast_ref::<redis::RedisError>().is_some_and(|r| {
                            r.is_io_error()
                                || r.is_connection_dropped()
                                || r.is_connection_refusal()
                                || r.is_timeout()
                        });
                        (Err(e.to_string()), link)
                    }
                    Err(_) => {
                        *o.conn.lock().expect("lock") = None;
                        let e = format!("no answer within {} ms", self.timeout.as_millis());
                        (Err(e), true)
                    }
                };
            Answer {
                sentinel: o.endpoint.to_string(),
                reply,
                unreachable,
            }
        });
        futures::future::join_all(asks).await
    }
}

/// The redis client for one Sentinel, with AUTH and TLS as configured.
pub fn client(cfg: &Config, e: &Endpoint) -> Result<redis::Client> {
    let addr = match &cfg.sentinel_tls {
        Some(_) => ConnectionAddr::TcpTls {
            host: e.host.clone(),
            port: e.port,
            insecure: false,
            tls_params: None,
        },
        None => ConnectionAddr::Tcp(e.host.clone(), e.port),
    };
    let mut redis_info = RedisConnectionInfo::default().set_skip_set_lib_name();
    if let Some(p) = &cfg.sentinel_password {
        redis_info = redis_info.set_password(p);
    }
    if let Some(u) = &cfg.sentinel_username {
        redis_info = redis_info.set_username(u);
    }
    let info = addr.into_connection_info()?.set_redis_settings(redis_info);
    let Some(tls) = &cfg.sentinel_tls else {
        return Ok(redis::Client::open(info)?);
    };
    let read = |p: &std::path::Path| {
        std::fs::read(p).with_context(|| format!("sentinel_tls: {}", p.display()))
    };
    let client_tls = match (&tls.cert_file, &tls.key_file) {
        (Some(c), Some(k)) => Some(redis::ClientTlsConfig {
            client_cert: read(c)?,
            client_key: read(k)?,
        }),
        _ => None,
    };
    let root_cert = tls.ca_file.as_deref().map(read).transpose()?;
    Ok(redis::Client::build_with_tls(
        info,
        redis::TlsCertificates {
            client_tls,
            root_cert,
        },
    )?)
}

async fn ask_one(
    o: &One,
    names: &[&str],
    timeout: Duration,
) -> Result<HashMap<String, Option<Report>>> {
    let cached = o.conn.lock().expect("lock").clone();
    let mut con = match cached {
        Some(c) => c,
        None => {
            let cfg = AsyncConnectionConfig::new()
                .set_connection_timeout(Some(timeout))
                .set_response_timeout(Some(timeout));
            let c = o
                .client
                .get_multiplexed_async_connection_with_config(&cfg)
                .await?;
            *o.conn.lock().expect("lock") = Some(c.clone());
            c
        }
    };
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
    let vals: Vec<Value> = pipe.query_async(&mut con).await?;
    parse_answer(&vals, names).map_err(|e| anyhow::anyhow!("unexpected reply: {e}"))
}

fn text(v: &Value) -> Option<String> {
    match v {
        Value::BulkString(b) => String::from_utf8(b.clone()).ok(),
        Value::SimpleString(s) => Some(s.clone()),
        Value::VerbatimString { text, .. } => Some(text.clone()),
        Value::Int(i) => Some(i.to_string()),
        _ => None,
    }
}

/// Pure: the config-epoch in one `SENTINEL MASTER` reply (a flat
/// field/value array in RESP2, a map in RESP3).
fn config_epoch(v: &Value) -> Result<u64, String> {
    let is_key = |k: &Value| text(k).as_deref() == Some("config-epoch");
    let value = match v {
        Value::Array(flat) => flat.chunks_exact(2).find(|c| is_key(&c[0])).map(|c| &c[1]),
        Value::Map(kv) => kv.iter().find(|(k, _)| is_key(k)).map(|(_, v)| v),
        _ => return Err("SENTINEL MASTER is not a map".into()),
    };
    let e = value
        .and_then(text)
        .ok_or("SENTINEL MASTER has no config-epoch")?;
    e.parse()
        .map_err(|_| format!("config-epoch `{}`", e.escape_debug()))
}

/// Pure: the pipeline's replies (`SENTINEL MASTER`, then
/// `GET-MASTER-ADDR-BY-NAME`, for each name) to per-name reports. A name
/// this Sentinel does not monitor is `None`; any other error reply fails
/// the whole answer (wrong password, not a Sentinel).
pub fn parse_answer(
    vals: &[Value],
    names: &[&str],
) -> Result<HashMap<String, Option<Report>>, String> {
    if vals.len() != 2 * names.len() {
        return Err(format!(
            "{} replies for {} commands",
            vals.len(),
            2 * names.len()
        ));
    }
    let mut out = HashMap::new();
    for (n, pair) in names.iter().zip(vals.chunks(2)) {
        let report = match (&pair[0], &pair[1]) {
            // GET-MASTER-ADDR-BY-NAME answers nil only for a name this
            // Sentinel does not monitor, whatever words MASTER's error uses.
            (Value::ServerError(_), Value::Nil) => None,
            (Value::ServerError(e), _) | (_, Value::ServerError(e)) => {
                // A peer's words: bounded, and on one line.
                let said: String = e.to_string().chars().take(200).collect();
                return Err(format!("{n}: {}", printable(&said)));
            }
            (m, Value::Array(a)) if a.len() == 2 => {
                let host = text(&a[0])
                    .and_then(|h| Host::parse(&h))
                    .ok_or("master address")?;
                let port = text(&a[1])
                    .and_then(|p| parse_port(&p))
                    .ok_or("master port")?;
                let epoch = config_epoch(m)?;
                Some(Report { host, port, epoch })
            }
            _ => return Err(format!("SENTINEL MASTER / GET-MASTER-ADDR-BY-NAME {n}")),
        };
        out.insert(n.to_string(), report);
    }
    Ok(out)
}

/// A pub/sub event that says where a master now is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MasterMoved {
    pub master: String,
    pub to: (Host, u16),
}

/// The channels the watcher subscribes to.
pub const CHANNELS: [&str; 2] = ["+switch-master", "+promoted-slave"];

/// Pure: parses a payload from one of [`CHANNELS`].
/// `+switch-master`: `<name> <old-ip> <old-port> <new-ip> <new-port>`.
/// `+promoted-slave`: `slave <ip>:<port> <ip> <port> @ <name> <ip> <port>`.
pub fn parse_event(channel: &str, payload: &str) -> Result<MasterMoved, String> {
    let f: Vec<&str> = payload.split(' ').collect();
    let host =
        |s: &str| Host::parse(s).ok_or_else(|| format!("bad address `{}`", s.escape_debug()));
    let port = |s: &str| parse_port(s).ok_or_else(|| format!("bad port `{}`", s.escape_debug()));
    let name = |s: &str| {
        if valid_master_name(s) {
            Ok(s.to_string())
        } else {
            Err(format!("bad master name `{}`", s.escape_debug()))
        }
    };
    match channel {
        "+switch-master" => {
            if f.len() != 5 {
                return Err(format!("+switch-master wants 5 fields, got {}", f.len()));
            }
            host(f[1])?;
            port(f[2])?;
            Ok(MasterMoved {
                master: name(f[0])?,
                to: (host(f[3])?, port(f[4])?),
            })
        }
        "+promoted-slave" => {
            if f.len() != 8 || f[0] != "slave" || f[4] != "@" {
                return Err(
                    "+promoted-slave wants `slave <ip>:<port> <ip> <port> @ <name> <ip> <port>`"
                        .into(),
                );
            }
            host(f[6])?;
            port(f[7])?;
            Ok(MasterMoved {
                master: name(f[5])?,
                to: (host(f[2])?, port(f[3])?),
            })
        }
        other => Err(format!("unexpected channel `{}`", other.escape_debug())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rep(h: &str, epoch: u64) -> Option<Report> {
        Some(Report {
            host: Host::parse(h).unwrap(),
            port: 6379,
            epoch,
        })
    }

    fn ans(name: &str, r: Option<Report>) -> Answer {
        Answer {
            sentinel: "s".into(),
            reply: Ok([(name.to_string(), r)].into()),
            unreachable: false,
        }
    }

    #[test]
    fn highest_epoch_wins() {
        let a = vec![
            ans("m", rep("192.0.2.11", 3)),
            ans("m", rep("192.0.2.12", 4)),
            Answer {
                sentinel: "down".into(),
                reply: Err("refused".into()),
                unreachable: true,
            },
        ];
        let v = verdict(&a, "m");
        assert_eq!(v.master, rep("192.0.2.12", 4));
        assert_eq!((v.answered, v.total), (2, 3));
        assert!(v.majority());
        let v = verdict(&a, "other");
        assert_eq!(v.master, None);
        assert!(!v.majority());
    }

    #[test]
    fn epoch_tie_goes_to_most_reported() {
        let a = vec![
            ans("m", rep("192.0.2.13", 5)),
            ans("m", rep("192.0.2.12", 5)),
            ans("m", rep("192.0.2.12", 5)),
        ];
        assert_eq!(verdict(&a, "m").master, rep("192.0.2.12", 5));
    }

    /// A reply as Sentinel sends it on the wire (RESP2 or RESP3).
    fn wire(resp: &str) -> Value {
        redis::parse_redis_value(resp.as_bytes()).unwrap()
    }

    #[test]
    fn parses_pipeline_replies_resp2_and_resp3() {
        let unknown = "-ERR No such master with that name\r\n";
        let vals = vec![
            // m: RESP2, a flat field/value array.
            wire("*6\r\n$4\r\nname\r\n$1\r\nm\r\n$2\r\nip\r\n$10\r\n192.0.2.11\r\n$12\r\nconfig-epoch\r\n$1\r\n7\r\n"),
            wire("*2\r\n$10\r\n192.0.2.12\r\n$4\r\n6379\r\n"),
            // n: RESP3, a map; the address is a hostname.
            wire("%2\r\n$4\r\nname\r\n$1\r\nn\r\n$12\r\nconfig-epoch\r\n:2\r\n"),
            wire("*2\r\n$15\r\nredis-3.example\r\n$4\r\n6380\r\n"),
            // x: not monitored by this Sentinel.
            wire(unknown),
            wire("$-1\r\n"),
        ];
        let r = parse_answer(&vals, &["m", "n", "x"]).unwrap();
        assert_eq!(r["m"], rep("192.0.2.12", 7));
        assert_eq!(
            r["n"],
            Some(Report {
                host: Host::Name("redis-3.example".into()),
                port: 6380,
                epoch: 2
            })
        );
        assert_eq!(r["x"], None);
        assert!(parse_answer(&vals[..4], &["m", "n", "x"])
            .unwrap_err()
            .contains("4 replies for 6 commands"));
        let bad: Vec<(Vec<Value>, &str)> = vec![
            // Not a Sentinel (a data Redis listed by mistake), or no AUTH:
            // an error for both commands fails the whole answer.
            (
                vec![
                    wire("-ERR unknown command 'SENTINEL'\r\n"),
                    wire("-ERR unknown command 'SENTINEL'\r\n"),
                ],
                "unknown command",
            ),
            (
                vec![
                    wire("-NOAUTH Authentication required.\r\n"),
                    wire("-NOAUTH Authentication required.\r\n"),
                ],
                "Authentication required",
            ),
            (
                vec![
                    vals[0].clone(),
                    wire("*2\r\n$10\r\n192.0.2.12\r\n$1\r\n0\r\n"),
                ],
                "port",
            ),
            (
                vec![
                    vals[0].clone(),
                    wire("*2\r\n$7\r\nbad ip!\r\n$4\r\n6379\r\n"),
                ],
                "address",
            ),
            (
                vec![wire("*2\r\n$4\r\nname\r\n$1\r\nm\r\n"), vals[1].clone()],
                "no config-epoch",
            ),
            (
                vec![
                    wire("*2\r\n$12\r\nconfig-epoch\r\n$2\r\n-1\r\n"),
                    vals[1].clone(),
                ],
                "config-epoch `-1`",
            ),
            (vec![wire("+OK\r\n"), vals[1].clone()], "not a map"),
            (
                vec![vals[0].clone(), wire(":1\r\n")],
                "GET-MASTER-ADDR-BY-NAME m",
            ),
        ];
        for (i, (v, want)) in bad.iter().enumerate() {
            let e = parse_answer(v, &["m"]).unwrap_err();
            assert!(e.contains(want), "case {i}: {e:?} lacks {want:?}");
        }
    }

    #[test]
    fn pubsub_payloads() {
        let e = parse_event("+switch-master", "mymaster 192.0.2.11 6379 192.0.2.12 6379").unwrap();
        assert_eq!(e.master, "mymaster");
        assert_eq!(e.to, (Host::parse("192.0.2.12").unwrap(), 6379));
        let e = parse_event(
            "+promoted-slave",
            "slave 192.0.2.13:6379 192.0.2.13 6379 @ mymaster 192.0.2.11 6379",
        )
        .unwrap();
        assert_eq!(
            (e.master.as_str(), e.to.0.to_string().as_str()),
            ("mymaster", "192.0.2.13")
        );
        for (ch, p) in [
            ("+switch-master", ""),
            ("+switch-master", "mymaster 192.0.2.11 6379 192.0.2.12"),
            (
                "+switch-master",
                "mymaster 192.0.2.11 6379 192.0.2.12 6379 extra",
            ),
            ("+switch-master", "mymaster 192.0.2.11 6379 999.0.2.12 6379"),
            ("+switch-master", "mymaster 192.0.2.11 6379 192.0.2.12 0"),
            (
                "+switch-master",
                "mymaster  192.0.2.11 6379 192.0.2.12 6379",
            ),
            (
                "+switch-master",
                "my\nmaster 192.0.2.11 6379 192.0.2.12 6379",
            ),
            ("+switch-master", "-m 192.0.2.11 6379 192.0.2.12 6379"),
            (
                "+promoted-slave",
                "slave 192.0.2.13:6379 192.0.2.13 6379 mymaster 192.0.2.11 6379",
            ),
            (
                "+promoted-slave",
                "sentinel 192.0.2.13:6379 192.0.2.13 6379 @ mymaster 192.0.2.11 6379",
            ),
            ("+sdown", "master mymaster 192.0.2.11 6379"),
        ] {
            let e = parse_event(ch, p);
            assert!(e.is_err(), "{ch} {p:?} accepted: {e:?}");
        }
    }
}

//! Asking Sentinels who the master is: one cached connection per Sentinel,
//! one pipeline per pass, AUTH and TLS as configured. It reports what the
//! Sentinels say; it never touches addresses.
//!
//! [`verdict`] combines answers, [`reply`] reads them, [`event`] reads
//! pub/sub payloads; all three are pure.

pub mod event;
pub mod reply;
pub mod verdict;

pub use event::{parse_event, Event, EventError, Kind, CHANNELS};
pub use verdict::{verdict, Answer, AskError, Report, Verdict};

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use anyhow::{Context, Result};
use redis::aio::MultiplexedConnection;
use redis::{
    AsyncConnectionConfig, ConnectionAddr, IntoConnectionInfo, RedisConnectionInfo, Value,
};

use crate::config::{Config, Endpoint};

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
            timeout: cfg.sentinel_timeout,
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
            let reply =
                match tokio::time::timeout(self.timeout, ask_one(o, names, self.timeout)).await {
                    Ok(Ok(r)) => Ok(r),
                    Ok(Err(e)) => {
                        *o.conn.lock().expect("lock") = None;
                        Err(e)
                    }
                    Err(_) => {
                        *o.conn.lock().expect("lock") = None;
                        let e = format!("no answer within {} ms", self.timeout.as_millis());
                        Err(AskError::Unreachable(e))
                    }
                };
            Answer {
                sentinel: o.endpoint.to_string(),
                reply,
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

/// A failed question: the connection's fault, or the peer's answer.
fn ask_error(e: redis::RedisError) -> AskError {
    if e.is_io_error() || e.is_connection_dropped() || e.is_connection_refusal() || e.is_timeout() {
        AskError::Unreachable(e.to_string())
    } else {
        AskError::Refused(crate::error::printable(&e.to_string()))
    }
}

async fn ask_one(
    o: &One,
    names: &[&str],
    timeout: Duration,
) -> Result<HashMap<String, Option<Report>>, AskError> {
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
                .await
                .map_err(ask_error)?;
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
    let vals: Vec<Value> = pipe.query_async(&mut con).await.map_err(ask_error)?;
    Ok(reply::parse_answer(&vals, names)?)
}

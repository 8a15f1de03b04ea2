//! Asking a data node (Redis or Valkey) its `ROLE`: to see a replica
//! become master the moment it does, and whether a replica still
//! replicates from the master (the fence's witness). AUTH and TLS as
//! configured (`redis_username`, `redis_password`, `[redis_tls]`). It only
//! reads.

use std::time::{Duration, Instant};

use anyhow::{anyhow, Result};
use redis::aio::MultiplexedConnection;
use redis::{AsyncConnectionConfig, Value};

use crate::config::Config;
use crate::hookargs::Host;
use crate::sentinel::reply::text;

/// What a node says it is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Role {
    Master,
    Replica,
    Other(String),
}

/// Pure: the first element of a `ROLE` reply (`master`, `slave`,
/// `sentinel`; the same words in Redis and Valkey, RESP2 and RESP3).
pub fn parse_role(v: &Value) -> Result<Role, String> {
    match v {
        Value::Array(a) => match a.first().and_then(text).as_deref() {
            Some("master") => Ok(Role::Master),
            Some("slave" | "replica") => Ok(Role::Replica),
            Some(other) => Ok(Role::Other(crate::error::printable(other))),
            None => Err("ROLE reply without a role".into()),
        },
        Value::ServerError(e) => Err(crate::error::printable(&e.to_string())),
        _ => Err("ROLE reply is not an array".into()),
    }
}

/// What a replica's `ROLE` says of its master: `slave`, the master's
/// host and port as it connects to them, and its link state
/// (`connect`, `connecting`, `sync`, `connected`, ...).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReplicaOf {
    pub host: String,
    pub port: u16,
    pub state: String,
}

impl ReplicaOf {
    /// Whether this replica is a witness for the master Sentinel names at
    /// `named`: it replicates from that very address and its link is up
    /// (`connected`), so it takes the master's writes as they come. A
    /// replica that was promoted, reconfigured to follow another master,
    /// or lost its link to this one, witnesses nothing.
    pub fn witnesses(&self, named: &(Host, u16)) -> bool {
        self.state == "connected"
            && self.port == named.1
            && Host::parse(&self.host).is_some_and(|h| h == named.0)
    }
}

/// Pure: a replica's `ROLE` reply (`slave`, host, port, state, offset);
/// `None` for a master, a Sentinel, an error or a malformed reply.
pub fn parse_replica_of(v: &Value) -> Option<ReplicaOf> {
    let Value::Array(a) = v else { return None };
    if !matches!(text(a.first()?).as_deref(), Some("slave" | "replica")) {
        return None;
    }
    Some(ReplicaOf {
        host: text(a.get(1)?)?,
        port: text(a.get(2)?)?.parse().ok()?,
        state: text(a.get(3)?)?,
    })
}

/// One data node, with the connection kept between questions.
pub struct Node {
    client: redis::Client,
    timeout: Duration,
    conn: Option<MultiplexedConnection>,
}

impl Node {
    pub fn new(cfg: &Config, addr: &(Host, u16)) -> Result<Node> {
        Ok(Node {
            client: crate::conn::client(&addr.0.to_string(), addr.1, &cfg.redis_auth())?,
            timeout: cfg.sentinel_timeout,
            conn: None,
        })
    }

    /// `ROLE`, on the kept connection or a new one. A failure drops the
    /// connection: Sentinel's `SLAVEOF NO ONE` transaction kills a
    /// replica's normal clients, so the next question reconnects at once.
    pub async fn role(&mut self) -> Result<Role> {
        let v = self.ask_role().await?;
        parse_role(&v).map_err(|e| anyhow!("ROLE: {e}"))
    }

    /// What the node says of its master if it is a replica (`None` if not).
    pub async fn replica_of(&mut self) -> Result<Option<ReplicaOf>> {
        let v = self.ask_role().await?;
        parse_role(&v).map_err(|e| anyhow!("ROLE: {e}"))?;
        Ok(parse_replica_of(&v))
    }

    async fn ask_role(&mut self) -> Result<Value> {
        let conn = match self.conn.clone() {
            Some(c) => c,
            None => {
                let cfg = AsyncConnectionConfig::new()
                    .set_connection_timeout(Some(self.timeout))
                    .set_response_timeout(Some(self.timeout));
                let c = self
                    .client
                    .get_multiplexed_async_connection_with_config(&cfg)
                    .await?;
                self.conn = Some(c.clone());
                c
            }
        };
        let mut conn = conn;
        let r: Result<Value, _> = redis::cmd("ROLE").query_async(&mut conn).await;
        let v = r.map_err(anyhow::Error::from).and_then(|v| match v {
            Value::ServerError(e) => {
                Err(anyhow!("ROLE: {}", crate::error::printable(&e.to_string())))
            }
            v => Ok(v),
        });
        if v.is_err() {
            self.conn = None;
        }
        v
    }

    /// Asks `ROLE` every `every` until the node answers master (returns
    /// when it first did) or `until` passes. Errors are retried (the
    /// promotion drops connections); the last one is returned at the end.
    pub async fn wait_master(&mut self, every: Duration, until: Instant) -> Result<Instant> {
        let mut last = anyhow!("no answer");
        while Instant::now() < until {
            match self.role().await {
                Ok(Role::Master) => return Ok(Instant::now()),
                Ok(_) => {}
                Err(e) => last = e,
            }
            tokio::time::sleep(every).await;
        }
        Err(last.context("not master before the deadline"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sentinel::reply::tests::{fixture, SERVERS};

    #[test]
    fn recorded_roles() {
        for server in SERVERS {
            for proto in ["resp2", "resp3"] {
                let role = |name: &str| parse_role(&fixture(server, &format!("{name}.{proto}")));
                assert_eq!(role("role-master"), Ok(Role::Master), "{server} {proto}");
                assert_eq!(role("role-replica"), Ok(Role::Replica), "{server} {proto}");
                assert_eq!(role("role-after-replicaof-no-one"), Ok(Role::Master));
                assert_eq!(role("sentinel-role"), Ok(Role::Other("sentinel".into())));
            }
        }
        let noauth = redis::parse_redis_value(b"-NOAUTH Authentication required.\r\n").unwrap();
        assert!(parse_role(&noauth)
            .unwrap_err()
            .contains("Authentication required"));
        assert!(parse_role(&Value::Int(1)).is_err());
        assert!(parse_role(&Value::Array(vec![])).is_err());
    }

    #[test]
    fn a_replica_witnesses_the_master_it_replicates_from() {
        let named = (Host::parse("192.0.2.11").unwrap(), 6379);
        for server in SERVERS {
            for proto in ["resp2", "resp3"] {
                let of =
                    |name: &str| parse_replica_of(&fixture(server, &format!("{name}.{proto}")));
                let r = of("role-replica").expect("a replica");
                assert_eq!((r.host.as_str(), r.port), ("192.0.2.11", 6379));
                assert!(r.witnesses(&named), "{server} {proto}: {r:?}");
                assert_eq!(of("role-master"), None);
                assert_eq!(of("sentinel-role"), None);
            }
        }
        let r = |host: &str, port, state: &str| ReplicaOf {
            host: host.into(),
            port,
            state: state.into(),
        };
        #[rustfmt::skip]
        let rows = [
            (r("192.0.2.11", 6379, "connected"), true),
            // Its link is down: it takes none of this master's writes.
            (r("192.0.2.11", 6379, "connect"), false),
            (r("192.0.2.11", 6379, "sync"), false),
            // Reconfigured to follow another master (a failover elsewhere).
            (r("192.0.2.12", 6379, "connected"), false),
            (r("192.0.2.11", 6380, "connected"), false),
            (r("", 6379, "connected"), false),
        ];
        for (role, want) in rows {
            assert_eq!(role.witnesses(&named), want, "{role:?}");
        }
        let short = Value::Array(vec![Value::BulkString(b"slave".to_vec())]);
        assert_eq!(parse_replica_of(&short), None);
    }
}

//! Asking a data node (Redis or Valkey) its `ROLE`, to see a replica
//! become master the moment it does. AUTH and TLS as configured
//! (`redis_username`, `redis_password`, `[redis_tls]`). It only reads.

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
        let role = r
            .map_err(anyhow::Error::from)
            .and_then(|v| parse_role(&v).map_err(|e| anyhow!("ROLE: {e}")));
        if role.is_err() {
            self.conn = None;
        }
        role
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
}

//! The replicas the Sentinels know for a master (`SENTINEL REPLICAS`):
//! the addresses the fence probes. [`parse_replicas`] is pure;
//! [`Sentinels::replicas`] asks every Sentinel at once and merges what
//! they list. It reads; it never touches an address.

use std::time::Duration;

use redis::Value;

use super::reply::{replica_addr, ReplyError};
use super::{ask_error, connection, AskError, Sentinels};
use crate::hookargs::Host;

/// A replica as the Sentinels name it.
pub type Replica = (Host, u16);

/// Pure: the replicas in a `SENTINEL REPLICAS <name>` reply (RESP2 arrays
/// or RESP3 maps), whatever their flags: one Sentinel may see down a
/// replica that the master still reaches.
pub fn parse_replicas(v: &Value) -> Result<Vec<Replica>, ReplyError> {
    let list = match v {
        Value::Array(list) => list,
        Value::ServerError(e) => {
            let said: String = e.to_string().chars().take(200).collect();
            return Err(ReplyError::Refused {
                name: "SENTINEL REPLICAS".into(),
                said: crate::error::printable(&said),
            });
        }
        _ => return Err(ReplyError::Shape("SENTINEL REPLICAS".into())),
    };
    list.iter().map(replica_addr).collect()
}

/// Every replica any of `lists` names, each once, in a stable order.
pub fn merge(lists: impl IntoIterator<Item = Vec<Replica>>) -> Vec<Replica> {
    let mut all: Vec<Replica> = lists.into_iter().flatten().collect();
    all.sort_by_key(|r| (r.0.to_string(), r.1));
    all.dedup();
    all
}

impl Sentinels {
    /// The replicas every Sentinel that answers within the timeout lists
    /// for `name`, merged; empty when none answers.
    pub async fn replicas(&self, name: &str) -> Vec<Replica> {
        let asks = self.all.iter().map(|p| async move {
            let ask = async {
                let mut con = connection(p, self.timeout).await?;
                let v: Value = redis::cmd("SENTINEL")
                    .arg("REPLICAS")
                    .arg(name)
                    .query_async(&mut con)
                    .await
                    .map_err(ask_error)?;
                Ok::<_, AskError>(parse_replicas(&v)?)
            };
            let t: Duration = self.timeout;
            match tokio::time::timeout(t, ask).await {
                Ok(Ok(list)) => list,
                _ => Vec::new(),
            }
        });
        merge(futures::future::join_all(asks).await)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sentinel::reply::tests::{fixture, SERVERS};

    #[test]
    fn recorded_replica_lists() {
        let r = |h: &str| (Host::parse(h).unwrap(), 6379);
        for server in SERVERS {
            for proto in ["resp2", "resp3"] {
                let v = fixture(server, &format!("sentinel-replicas.{proto}"));
                let got = merge([parse_replicas(&v).unwrap()]);
                assert_eq!(got, [r("192.0.2.12"), r("192.0.2.13")], "{server} {proto}");
                let unknown = fixture(server, &format!("sentinel-replicas-unknown.{proto}"));
                assert!(matches!(
                    parse_replicas(&unknown),
                    Err(ReplyError::Refused { .. })
                ));
            }
        }
        assert!(parse_replicas(&Value::Int(3)).is_err());
        assert_eq!(parse_replicas(&Value::Array(vec![])).unwrap(), []);
        assert_eq!(
            merge([
                vec![r("192.0.2.13")],
                vec![r("192.0.2.12"), r("192.0.2.13")]
            ]),
            [r("192.0.2.12"), r("192.0.2.13")]
        );
    }
}

//! Reading Sentinel's replies to the pass's pipeline (`SENTINEL MASTER` and
//! `SENTINEL GET-MASTER-ADDR-BY-NAME` per name), in RESP2 or RESP3. Pure:
//! values in, reports or a typed error out.

use std::collections::HashMap;

use redis::Value;

use super::verdict::Report;
use crate::error::printable;
use crate::hookargs::{parse_port, Host};

/// Why a reply is not a usable answer.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ReplyError {
    #[error("{got} replies for {want} commands")]
    Count { got: usize, want: usize },
    /// An error reply other than "not monitored here": a wrong password,
    /// not a Sentinel. The peer's words, bounded and on one line.
    #[error("{name}: {said}")]
    Refused { name: String, said: String },
    #[error("SENTINEL MASTER is not a map")]
    NotAMap,
    #[error("SENTINEL MASTER has no config-epoch")]
    NoEpoch,
    #[error("config-epoch `{0}`")]
    BadEpoch(String),
    #[error("master address")]
    BadAddress,
    #[error("master port")]
    BadPort,
    #[error("SENTINEL MASTER / GET-MASTER-ADDR-BY-NAME {0}")]
    Shape(String),
}

/// The text of a bulk, simple or verbatim string, or an integer.
pub(crate) fn text(v: &Value) -> Option<String> {
    match v {
        Value::BulkString(b) => String::from_utf8(b.clone()).ok(),
        Value::SimpleString(s) => Some(s.clone()),
        Value::VerbatimString { text, .. } => Some(text.clone()),
        Value::Int(i) => Some(i.to_string()),
        _ => None,
    }
}

/// The value of `key` in a field/value reply: a flat array in RESP2, a
/// map in RESP3. `None` when the reply is neither.
pub(crate) fn field<'a>(v: &'a Value, key: &str) -> Option<Option<&'a Value>> {
    let is_key = |k: &Value| text(k).as_deref() == Some(key);
    match v {
        Value::Array(flat) => Some(flat.chunks_exact(2).find(|c| is_key(&c[0])).map(|c| &c[1])),
        Value::Map(kv) => Some(kv.iter().find(|(k, _)| is_key(k)).map(|(_, v)| v)),
        _ => None,
    }
}

/// The config-epoch in one `SENTINEL MASTER` reply.
fn config_epoch(v: &Value) -> Result<u64, ReplyError> {
    let e = field(v, "config-epoch")
        .ok_or(ReplyError::NotAMap)?
        .and_then(text)
        .ok_or(ReplyError::NoEpoch)?;
    e.parse()
        .map_err(|_| ReplyError::BadEpoch(e.escape_debug().to_string()))
}

/// The `ip` and `port` of one entry of a `SENTINEL REPLICAS` reply.
pub(crate) fn replica_addr(entry: &Value) -> Result<(Host, u16), ReplyError> {
    let host = field(entry, "ip")
        .flatten()
        .and_then(text)
        .and_then(|h| Host::parse(&h))
        .ok_or(ReplyError::BadAddress)?;
    let port = field(entry, "port")
        .flatten()
        .and_then(text)
        .and_then(|p| parse_port(&p))
        .ok_or(ReplyError::BadPort)?;
    Ok((host, port))
}

/// The failover state in a `SENTINEL MASTER` reply, while its Sentinel
/// leads a failover (`failover_in_progress` among the flags).
pub(crate) fn failover_state(v: &Value) -> Option<String> {
    let flags = field(v, "flags")??;
    let in_progress = text(flags)?.split(',').any(|f| f == "failover_in_progress");
    in_progress.then(|| {
        field(v, "failover-state")
            .flatten()
            .and_then(text)
            .unwrap_or_else(|| "unknown".into())
    })
}

/// The pipeline's replies (`SENTINEL MASTER`, then
/// `GET-MASTER-ADDR-BY-NAME`, for each name) to per-name reports. A name
/// this Sentinel does not monitor is `None`; any other error reply fails
/// the whole answer (wrong password, not a Sentinel).
pub fn parse_answer(
    vals: &[Value],
    names: &[&str],
) -> Result<HashMap<String, Option<Report>>, ReplyError> {
    if vals.len() != 2 * names.len() {
        return Err(ReplyError::Count {
            got: vals.len(),
            want: 2 * names.len(),
        });
    }
    let mut out = HashMap::new();
    for (n, pair) in names.iter().zip(vals.chunks(2)) {
        let report = match (&pair[0], &pair[1]) {
            // GET-MASTER-ADDR-BY-NAME answers nil only for a name this
            // Sentinel does not monitor, whatever words MASTER's error uses.
            (Value::ServerError(_), Value::Nil) => None,
            (Value::ServerError(e), _) | (_, Value::ServerError(e)) => {
                let said: String = e.to_string().chars().take(200).collect();
                return Err(ReplyError::Refused {
                    name: n.to_string(),
                    said: printable(&said),
                });
            }
            (m, Value::Array(a)) if a.len() == 2 => {
                let host = text(&a[0])
                    .and_then(|h| Host::parse(&h))
                    .ok_or(ReplyError::BadAddress)?;
                let port = text(&a[1])
                    .and_then(|p| parse_port(&p))
                    .ok_or(ReplyError::BadPort)?;
                let epoch = config_epoch(m)?;
                Some(Report {
                    host,
                    port,
                    epoch,
                    failover: failover_state(m),
                })
            }
            _ => return Err(ReplyError::Shape(n.to_string())),
        };
        out.insert(n.to_string(), report);
    }
    Ok(out)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::sentinel::verdict::tests::rep;

    /// The servers whose replies were recorded in the lab
    /// (`scripts/record-replies.py`, `tests/fixtures/replies/`).
    pub(crate) const SERVERS: [&str; 2] = ["redis-7.0.15", "valkey-8.1.8"];

    /// A recorded reply, exactly as the server sent it.
    pub(crate) fn fixture(server: &str, name: &str) -> Value {
        let path = format!(
            "{}/tests/fixtures/replies/{server}/{name}",
            env!("CARGO_MANIFEST_DIR")
        );
        let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
        redis::parse_redis_value(&bytes).unwrap_or_else(|e| panic!("{path}: {e}"))
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
                epoch: 2,
                failover: None,
            })
        );
        assert_eq!(r["x"], None);
        assert_eq!(
            parse_answer(&vals[..4], &["m", "n", "x"]).unwrap_err(),
            ReplyError::Count { got: 4, want: 6 }
        );
        let refused = |said: &str| ReplyError::Refused {
            name: "m".into(),
            said: said.into(),
        };
        let bad: Vec<(Vec<Value>, ReplyError)> = vec![
            // Not a Sentinel (a data Redis listed by mistake), or no AUTH:
            // an error for both commands fails the whole answer.
            (
                vec![
                    wire("-ERR unknown command 'SENTINEL'\r\n"),
                    wire("-ERR unknown command 'SENTINEL'\r\n"),
                ],
                refused("An error was signalled by the server - ResponseError: unknown command 'SENTINEL'"),
            ),
            (
                vec![
                    vals[0].clone(),
                    wire("*2\r\n$10\r\n192.0.2.12\r\n$1\r\n0\r\n"),
                ],
                ReplyError::BadPort,
            ),
            (
                vec![vals[0].clone(), wire("*2\r\n$7\r\nbad ip!\r\n$4\r\n6379\r\n")],
                ReplyError::BadAddress,
            ),
            (
                vec![wire("*2\r\n$4\r\nname\r\n$1\r\nm\r\n"), vals[1].clone()],
                ReplyError::NoEpoch,
            ),
            (
                vec![wire("*2\r\n$12\r\nconfig-epoch\r\n$2\r\n-1\r\n"), vals[1].clone()],
                ReplyError::BadEpoch("-1".into()),
            ),
            (vec![wire("+OK\r\n"), vals[1].clone()], ReplyError::NotAMap),
            (vec![vals[0].clone(), wire(":1\r\n")], ReplyError::Shape("m".into())),
        ];
        for (i, (v, want)) in bad.iter().enumerate() {
            let e = parse_answer(v, &["m"]).unwrap_err();
            match (&e, want) {
                // The peer's words are the redis crate's rendering: match
                // the variant and the part that is the server's.
                (ReplyError::Refused { name, said }, ReplyError::Refused { .. }) => {
                    assert_eq!(name, "m");
                    assert!(
                        said.contains("unknown command 'SENTINEL'"),
                        "case {i}: {said}"
                    );
                }
                _ => assert_eq!(&e, want, "case {i}"),
            }
        }
        let noauth = parse_answer(
            &[
                wire("-NOAUTH Authentication required.\r\n"),
                wire("-NOAUTH Authentication required.\r\n"),
            ],
            &["m"],
        )
        .unwrap_err();
        assert!(
            matches!(&noauth, ReplyError::Refused { said, .. } if said.contains("Authentication required")),
            "{noauth:?}"
        );
    }

    /// The same pipeline answered by real Sentinels: Redis 7.0.15 and
    /// Valkey 8.1.8, RESP2 and RESP3, a monitored and an unknown name.
    #[test]
    fn recorded_replies_from_redis_and_valkey() {
        for server in SERVERS {
            for proto in ["resp2", "resp3"] {
                let f = |name: &str| fixture(server, &format!("{name}.{proto}"));
                let vals = [
                    f("sentinel-master"),
                    f("sentinel-get-master-addr"),
                    f("sentinel-master-unknown"),
                    f("sentinel-get-master-addr-unknown"),
                ];
                let r = parse_answer(&vals, &["mymaster", "nosuch"]).unwrap();
                let m = r["mymaster"].as_ref().expect("mymaster reported");
                assert_eq!(
                    (m.host.to_string().as_str(), m.port, m.epoch),
                    ("192.0.2.11", 6379, 0),
                    "{server} {proto}"
                );
                assert_eq!(r["nosuch"], None, "{server} {proto}");
                assert_eq!(m.failover, None);
                // The leader's MASTER during a failover shows its state.
                let leading = failover_state(&f("failover-master-wait_promotion"));
                assert_eq!(
                    leading.as_deref(),
                    Some("wait_promotion"),
                    "{server} {proto}"
                );
                assert_eq!(failover_state(&f("failover-master-none")), None);
            }
            // A password-protected Sentinel asked without one, and a data
            // node asked by mistake: the whole answer is refused.
            let f = |name: &str| fixture(server, &format!("{name}.resp2"));
            for (a, b) in [
                ("sentinel-noauth", "sentinel-noauth"),
                ("data-sentinel-master", "data-sentinel-get-master-addr"),
            ] {
                let e = parse_answer(&[f(a), f(b)], &["mymaster"]).unwrap_err();
                assert!(
                    matches!(e, ReplyError::Refused { .. }),
                    "{server} {a}: {e:?}"
                );
            }
        }
    }
}

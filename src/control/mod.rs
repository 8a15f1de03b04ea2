//! The control socket between an unprivileged hook and the privileged
//! watcher: the wire format (one JSON line each way) and its limits. The
//! socket carries requests for a pass, never a placement: whatever a client
//! says, the VIP goes where the Sentinels say (its arguments only count when
//! no Sentinel answers, exactly as for a hook acting itself).
//!
//! [`server`] is the watcher's side, [`client`] the hook's.

pub mod client;
pub mod server;

use std::ffi::OsString;

use serde::{Deserialize, Serialize};

use crate::error::printable;
use crate::hookargs::{self, ArgError, HookCall};

/// A request or reply larger than this is not one of ours.
pub const MAX_MESSAGE: usize = 4096;

/// What a client may ask.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "lowercase", deny_unknown_fields)]
pub enum Request {
    /// Run a pass now for this hook call (Sentinel's seven arguments,
    /// validated again by the watcher) and answer with its outcome.
    Hook { args: Vec<String> },
    /// Is a watcher listening? (`check`.) A struct variant, so that
    /// serde refuses fields it does not know here too.
    Ping {},
}

/// The answer: Sentinel's exit code for the hook, and one line of text.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Reply {
    /// 0 done, 1 transient (Sentinel retries), 2 permanent.
    pub code: u8,
    pub message: String,
}

impl Reply {
    pub fn new(code: u8, message: impl Into<String>) -> Reply {
        Reply {
            code,
            message: crate::error::printable(&message.into()),
        }
    }
}

/// Why a message is not one of ours; one line.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    #[error("message over {MAX_MESSAGE} bytes")]
    Oversize,
    #[error("message is not UTF-8")]
    NotUtf8,
    #[error("more than one line")]
    Lines,
    #[error("malformed request: {0}")]
    Request(String),
    #[error("malformed reply: {0}")]
    Reply(String),
    #[error("reply code {0} is not 0, 1 or 2")]
    Code(u8),
    #[error("read: {0}")]
    Read(String),
}

/// Pure: one message as sent, a JSON line.
pub fn encode<T: Serialize>(m: &T) -> Vec<u8> {
    let mut v = serde_json::to_vec(m).expect("plain data serializes");
    v.push(b'\n');
    v
}

/// Pure: a request as received (without or with its newline). Every
/// failure is one line naming the problem.
pub fn decode_request(bytes: &[u8]) -> Result<Request, WireError> {
    let line = one_line(bytes)?;
    // serde quotes the client's text (an unknown variant, say) as decoded,
    // escapes and all: a one-line error must not carry its newlines.
    serde_json::from_str(line).map_err(|e| WireError::Request(printable(&e.to_string())))
}

/// Pure: a reply as received.
pub fn decode_reply(bytes: &[u8]) -> Result<Reply, WireError> {
    let line = one_line(bytes)?;
    let r: Reply =
        serde_json::from_str(line).map_err(|e| WireError::Reply(printable(&e.to_string())))?;
    if r.code > 2 {
        return Err(WireError::Code(r.code));
    }
    Ok(r)
}

fn one_line(bytes: &[u8]) -> Result<&str, WireError> {
    if bytes.len() > MAX_MESSAGE {
        return Err(WireError::Oversize);
    }
    let text = std::str::from_utf8(bytes).map_err(|_| WireError::NotUtf8)?;
    let text = text.strip_suffix('\n').unwrap_or(text);
    if text.contains('\n') {
        return Err(WireError::Lines);
    }
    Ok(text)
}

/// Pure: the hook call inside a request, validated as the hook itself
/// validates Sentinel's arguments (the client is never trusted).
pub fn hook_call(args: &[String]) -> Result<HookCall, ArgError> {
    let os: Vec<OsString> = args.iter().map(OsString::from).collect();
    hookargs::parse(&os)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEVEN: [&str; 7] = [
        "mymaster",
        "leader",
        "start",
        "192.0.2.11",
        "6379",
        "192.0.2.12",
        "6379",
    ];

    #[test]
    fn round_trips() {
        let r = Request::Hook {
            args: SEVEN.map(String::from).to_vec(),
        };
        let wire = encode(&r);
        assert_eq!(wire.last(), Some(&b'\n'));
        assert_eq!(decode_request(&wire).unwrap(), r);
        assert_eq!(
            decode_request(b"{\"op\":\"ping\"}").unwrap(),
            Request::Ping {}
        );
        let rep = Reply::new(1, "no Sentinel\nanswered");
        assert_eq!(rep.message, "no Sentinel answered");
        assert_eq!(decode_reply(&encode(&rep)).unwrap(), rep);
    }

    #[test]
    fn refuses_what_is_not_a_request() {
        use WireError::*;
        let big = format!("{{\"op\":\"ping\",\"x\":\"{}\"}}", "a".repeat(MAX_MESSAGE));
        // (bytes, the error; for serde's words, a part of them)
        let m = |s: &str| Request(s.into());
        let cases: Vec<(Vec<u8>, WireError)> = vec![
            (b"".to_vec(), m("EOF")),
            (b"ping".to_vec(), m("expected")),
            (
                br#"{"op":"place","vip":"192.0.2.100"}"#.to_vec(),
                m("unknown variant `place`"),
            ),
            (
                br#"{"op":"ping","to":"192.0.2.13"}"#.to_vec(),
                m("unknown field `to`"),
            ),
            (br#"{"op":"hook"}"#.to_vec(), m("missing field `args`")),
            (br#"{"op":"hook","args":[1,2]}"#.to_vec(), m("invalid type")),
            (b"{\"op\":\"ping\"}\n{\"op\":\"ping\"}\n".to_vec(), Lines),
            // Found by the fuzzer: an escaped newline in an unknown variant.
            (
                br#"{"op":"pi#oo26\nekng""op\tjj"#.to_vec(),
                m("unknown variant `pi#oo26 ekng`"),
            ),
            (vec![b'{', 0xff, b'}'], NotUtf8),
            (big.into_bytes(), Oversize),
        ];
        for (bytes, want) in cases {
            let e = decode_request(&bytes).unwrap_err();
            let ok = match (&e, &want) {
                (Request(got), Request(part)) => got.contains(part.as_str()),
                _ => e == want,
            };
            assert!(
                ok,
                "{:?}: {e:?}, want {want:?}",
                String::from_utf8_lossy(&bytes)
            );
            assert!(!e.to_string().contains('\n'));
        }
        assert_eq!(
            decode_reply(br#"{"code":7,"message":"x"}"#).unwrap_err(),
            Code(7)
        );
    }

    #[test]
    fn hook_calls_are_validated_again() {
        assert_eq!(
            hook_call(&SEVEN.map(String::from)).unwrap().master,
            "mymaster"
        );
        let mut bad = SEVEN.map(String::from).to_vec();
        bad[5] = "192.0.2.300".into();
        assert!(matches!(
            hook_call(&bad).unwrap_err(),
            ArgError::Host { arg: "TO_IP", .. }
        ));
        assert_eq!(hook_call(&bad[..3]).unwrap_err(), ArgError::Count(3));
    }
}

//! Plain HTTP GETs from inside a lab namespace, as a host there would send
//! them: a thread enters the namespace (setns), opens the connection and
//! hands the socket back, so the test process needs no HTTP tool and the
//! root namespace never routes lab traffic. It only reads.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use crate::Lab;

/// Connect and whole-exchange limit of one GET.
const TIMEOUT: Duration = Duration::from_secs(5);

/// A TCP connection to `addr` opened from inside network namespace `ns`.
/// The socket keeps the namespace it was created in, whichever thread
/// uses it later; only the short-lived thread that made it changed its own.
pub(crate) fn connect_in(ns: &str, addr: SocketAddr) -> std::io::Result<TcpStream> {
    std::thread::scope(|s| {
        s.spawn(|| {
            crate::netns::enter(ns)?;
            TcpStream::connect_timeout(&addr, TIMEOUT)
        })
        .join()
        .expect("setns thread panicked")
    })
}

/// `GET target` (path and query, already encoded) on `addr` from inside
/// `ns`: the status code and the body.
pub(crate) fn get_in(ns: &str, addr: SocketAddr, target: &str) -> Result<(u16, String), String> {
    let what = format!("GET http://{addr}{target} from {ns}");
    let mut s = connect_in(ns, addr).map_err(|e| format!("{what}: connect: {e}"))?;
    s.set_read_timeout(Some(TIMEOUT))
        .and_then(|()| s.set_write_timeout(Some(TIMEOUT)))
        .map_err(|e| format!("{what}: {e}"))?;
    let req = format!("GET {target} HTTP/1.0\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    s.write_all(req.as_bytes())
        .map_err(|e| format!("{what}: write: {e}"))?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)
        .map_err(|e| format!("{what}: read: {e}"))?;
    let text = String::from_utf8_lossy(&raw);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| format!("{what}: no end of headers in {:?}", cut(&text)))?;
    let code = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| format!("{what}: no status in {:?}", cut(head)))?;
    Ok((code, body.to_string()))
}

/// Percent-encoding of a query-string value (RFC 3986 unreserved kept).
pub fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn cut(s: &str) -> String {
    s.chars().take(200).collect()
}

impl Lab {
    /// `GET target` on `addr` from the client namespace, where a monitoring
    /// host would sit: (status, body).
    pub fn client_http_get(&self, addr: SocketAddr, target: &str) -> Result<(u16, String), String> {
        get_in(&self.ns_client(), addr, target)
    }
}

#[cfg(test)]
mod tests {
    use super::urlencode;

    #[test]
    fn query_values_are_encoded() {
        assert_eq!(
            urlencode("sum by (vip) (x) > 1"),
            "sum%20by%20%28vip%29%20%28x%29%20%3E%201"
        );
        assert_eq!(urlencode("a_b-c.d~"), "a_b-c.d~");
        assert_eq!(urlencode("{a=\"1\"}"), "%7Ba%3D%221%22%7D");
    }
}

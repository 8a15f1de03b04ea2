//! The `/metrics` endpoint: a GET-only HTTP/1.1 responder on a tokio
//! listener, one request per connection. It reads a bounded request head
//! under a deadline and answers with the exposition or an error status; it
//! serves nothing else and never blocks the watcher (few, bounded tasks).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tracing::{debug, warn};

use super::Metrics;

/// Bounds on what one client may cost.
#[derive(Clone, Copy, Debug)]
struct Limits {
    /// A scrape request is a few hundred bytes; anything near this is not one.
    max_head: usize,
    /// The whole request head must arrive within this, and the answer leave
    /// within as much again.
    deadline: Duration,
    /// Scrapers are one or two Prometheus servers; more at once is abuse.
    connections: usize,
}

const LIMITS: Limits = Limits {
    max_head: 8192,
    deadline: Duration::from_secs(5),
    connections: 8,
};

/// `metrics_listen` as the config gives it: an `IP:port` (IPv6 in
/// brackets) with a fixed port. The error is one line, without the key.
pub fn validate_listen(s: &str) -> Result<SocketAddr, String> {
    let a: SocketAddr = s.parse().map_err(|_| {
        format!(
            "`{}` is not IP:port (e.g. 127.0.0.1:9469 or [::1]:9469)",
            s.escape_debug()
        )
    })?;
    if a.port() == 0 {
        return Err(format!("`{s}` needs a port other than 0"));
    }
    Ok(a)
}

/// Binds the listener, with a one-line error naming the address.
pub async fn bind(addr: SocketAddr) -> Result<TcpListener, String> {
    TcpListener::bind(addr)
        .await
        .map_err(|e| format!("metrics_listen {addr}: {e}"))
}

/// Answers scrapes on `listener` until the task is aborted.
pub async fn serve(listener: TcpListener, metrics: Arc<Metrics>) {
    serve_with(listener, metrics, LIMITS).await
}

async fn serve_with(listener: TcpListener, metrics: Arc<Metrics>, limits: Limits) {
    let slots = Arc::new(Semaphore::new(limits.connections));
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                // Out of descriptors, mostly: wait instead of spinning.
                warn!(error = %e, "metrics: accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            debug!(%peer, "metrics: too many connections; closed");
            continue;
        };
        let metrics = metrics.clone();
        tokio::spawn(async move {
            // The head's deadline is inside (it earns a 408); this one
            // bounds the whole exchange, a client that will not read too.
            let whole = 2 * limits.deadline;
            let r = tokio::time::timeout(whole, connection(stream, &metrics, limits)).await;
            if r.is_err() {
                debug!(%peer, "metrics: connection timed out");
            }
            drop(slot);
        });
    }
}

/// What a request head asks for.
#[derive(Debug, PartialEq, Eq)]
enum Ask {
    Metrics { body: bool },
    Status(u16),
}

/// Reads the request head and writes one response; the deadline around it
/// turns a slow client into a 408 here or a dropped connection.
async fn connection(
    mut stream: TcpStream,
    metrics: &Metrics,
    limits: Limits,
) -> std::io::Result<()> {
    let head = read_head(&mut stream, limits.max_head);
    let ask = match tokio::time::timeout(limits.deadline, head).await {
        Ok(Ok(Some(head))) => parse(&head),
        Ok(Ok(None)) => Ask::Status(431),
        // The client went away before finishing its request.
        Ok(Err(_)) => return Ok(()),
        Err(_) => Ask::Status(408),
    };
    let response = match ask {
        Ask::Metrics { body } => {
            let text = metrics.encode();
            let ct = prometheus_client::encoding::prometheus_text::CONTENT_TYPE;
            response(200, &[("Content-Type", ct)], &text, body)
        }
        Ask::Status(405) => response(405, &[("Allow", "GET, HEAD")], "method not allowed\n", true),
        Ask::Status(code) => response(code, &[], &format!("{}\n", reason(code)), true),
    };
    stream.write_all(&response).await?;
    stream.shutdown().await
}

/// The request head, through the blank line; `None` when it exceeds
/// `max` bytes. An early end of stream is an error.
async fn read_head(stream: &mut TcpStream, max: usize) -> std::io::Result<Option<Vec<u8>>> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    loop {
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        // Look for the end from a little before the new bytes: the blank
        // line may straddle two reads.
        let from = buf.len().saturating_sub(3);
        buf.extend_from_slice(&chunk[..n]);
        if let Some(end) = head_end(&buf[from..]) {
            buf.truncate(from + end);
            return Ok(Some(buf));
        }
        if buf.len() > max {
            return Ok(None);
        }
    }
}

/// Where the head ends (after `\r\n\r\n`, or the bare `\n\n` RFC 9112
/// tolerates), if it does in `b`.
fn head_end(b: &[u8]) -> Option<usize> {
    (0..b.len()).find_map(|i| {
        if b[i..].starts_with(b"\r\n\r\n") {
            Some(i + 4)
        } else if b[i..].starts_with(b"\n\n") {
            Some(i + 2)
        } else {
            None
        }
    })
}

/// The request line decides: `GET|HEAD /metrics[?…] HTTP/1.x`.
fn parse(head: &[u8]) -> Ask {
    let line = head.split(|&b| b == b'\n').next().unwrap_or_default();
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let Ok(line) = std::str::from_utf8(line) else {
        return Ask::Status(400);
    };
    let parts: Vec<&str> = line.split(' ').collect();
    let [method, target, version] = parts[..] else {
        return Ask::Status(400);
    };
    if !matches!(version, "HTTP/1.0" | "HTTP/1.1") {
        return Ask::Status(if version.starts_with("HTTP/") {
            505
        } else {
            400
        });
    }
    if method.is_empty() || !method.bytes().all(|b| b.is_ascii_uppercase()) {
        return Ask::Status(400);
    }
    if !target.starts_with('/') {
        return Ask::Status(400);
    }
    let body = match method {
        "GET" => true,
        "HEAD" => false,
        _ => return Ask::Status(405),
    };
    let path = target.split_once('?').map_or(target, |(p, _)| p);
    if path != "/metrics" {
        return Ask::Status(404);
    }
    Ask::Metrics { body }
}

fn reason(code: u16) -> &'static str {
    match code {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        431 => "Request Header Fields Too Large",
        505 => "HTTP Version Not Supported",
        _ => "Error",
    }
}

/// A whole response; a HEAD gets the headers of the GET without the body.
fn response(code: u16, headers: &[(&str, &str)], body: &str, with_body: bool) -> Vec<u8> {
    let mut head = format!("HTTP/1.1 {code} {}\r\n", reason(code));
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    if code != 200 {
        head.push_str("Content-Type: text/plain; charset=utf-8\r\n");
    }
    head.push_str(&format!(
        "Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    ));
    let mut out = head.into_bytes();
    if with_body {
        out.extend_from_slice(body.as_bytes());
    }
    out
}

/// For tests: serves `m` on 127.0.0.1:0 with `deadline` and two
/// connection slots; returns the address.
#[cfg(test)]
pub(super) async fn test_server(m: Arc<Metrics>, deadline: Duration) -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let limits = Limits {
        deadline,
        connections: 2,
        ..LIMITS
    };
    tokio::spawn(serve_with(l, m, limits));
    addr
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listen_addresses() {
        for (s, want) in [
            ("127.0.0.1:9469", "127.0.0.1:9469"),
            ("[::1]:9469", "[::1]:9469"),
            ("0.0.0.0:9469", "0.0.0.0:9469"),
        ] {
            assert_eq!(validate_listen(s).unwrap().to_string(), want);
        }
        for (s, why) in [
            ("localhost:9469", "is not IP:port"),
            ("127.0.0.1", "is not IP:port"),
            ("::1:9469", "is not IP:port"),
            ("127.0.0.1:99999", "is not IP:port"),
            ("", "is not IP:port"),
            ("127.0.0.1:0", "port other than 0"),
            ("1.2.3.4:80\n", "is not IP:port"),
        ] {
            let e = validate_listen(s).unwrap_err();
            assert!(e.contains(why), "{s:?}: {e}");
            assert!(!e.contains('\n'), "{s:?}: {e:?}");
        }
    }

    #[test]
    fn request_lines() {
        let ok = Ask::Metrics { body: true };
        let rows: &[(&[u8], Ask)] = &[
            (b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n", ok),
            (b"GET /metrics HTTP/1.0\n\n", Ask::Metrics { body: true }),
            (
                b"GET /metrics?x=1 HTTP/1.1\r\n\r\n",
                Ask::Metrics { body: true },
            ),
            (
                b"HEAD /metrics HTTP/1.1\r\n\r\n",
                Ask::Metrics { body: false },
            ),
            (b"GET / HTTP/1.1\r\n\r\n", Ask::Status(404)),
            (b"GET /metricsx HTTP/1.1\r\n\r\n", Ask::Status(404)),
            (b"POST /metrics HTTP/1.1\r\n\r\n", Ask::Status(405)),
            (b"DELETE / HTTP/1.1\r\n\r\n", Ask::Status(405)),
            (b"GET /metrics HTTP/2.0\r\n\r\n", Ask::Status(505)),
            (b"GET /metrics\r\n\r\n", Ask::Status(400)),
            (b"GET  /metrics HTTP/1.1\r\n\r\n", Ask::Status(400)),
            (b"get /metrics HTTP/1.1\r\n\r\n", Ask::Status(400)),
            (b"GET metrics HTTP/1.1\r\n\r\n", Ask::Status(400)),
            (b"\xff\xfe /metrics HTTP/1.1\r\n\r\n", Ask::Status(400)),
            (b"\r\n\r\n", Ask::Status(400)),
        ];
        for (head, want) in rows {
            assert_eq!(&parse(head), want, "{:?}", String::from_utf8_lossy(head));
        }
    }

    #[test]
    fn head_ends_at_the_blank_line() {
        assert_eq!(head_end(b"GET / HTTP/1.1\r\n\r\nbody"), Some(18));
        assert_eq!(head_end(b"GET / HTTP/1.1\n\n"), Some(16));
        assert_eq!(head_end(b"GET / HTTP/1.1\r\nHost: x\r\n"), None);
    }

    #[test]
    fn responses_carry_length_and_close() {
        let r = String::from_utf8(response(405, &[("Allow", "GET, HEAD")], "no\n", true)).unwrap();
        assert!(r.starts_with("HTTP/1.1 405 Method Not Allowed\r\n"), "{r}");
        assert!(r.contains("\r\nAllow: GET, HEAD\r\n"), "{r}");
        assert!(
            r.contains("\r\nContent-Length: 3\r\nConnection: close\r\n\r\nno\n"),
            "{r}"
        );
        let head = String::from_utf8(response(200, &[], "abc", false)).unwrap();
        assert!(
            head.ends_with("Content-Length: 3\r\nConnection: close\r\n\r\n"),
            "{head}"
        );
    }
}

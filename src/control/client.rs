//! The hook's end of the control socket: one request, one reply, within a
//! deadline. It tells "no watcher there" (the hook may act itself) from "a
//! watcher took the request and then failed" and never acts on its own.

use std::io;
use std::path::Path;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;
use tokio::time::timeout;

use super::{decode_reply, encode, Reply, Request, MAX_MESSAGE};

/// Why no reply came.
#[derive(Debug)]
pub enum Failure {
    /// Nothing accepted the connection (no socket, nobody listening, or
    /// not allowed to connect).
    NoWatcher(io::Error),
    /// Connected, but no usable reply before the deadline.
    NoReply(String),
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::NoWatcher(e) => write!(f, "no watcher answers ({e})"),
            Failure::NoReply(e) => write!(f, "the watcher did not answer ({e})"),
        }
    }
}

/// Sends `req` to the watcher on `path` and waits up to `deadline` for its
/// reply.
pub async fn request(path: &Path, req: &Request, deadline: Duration) -> Result<Reply, Failure> {
    request_peer(path, req, deadline).await.map(|(r, _)| r)
}

/// [`request`], and the id of the process that answered (`SO_PEERCRED`,
/// as this process's pid namespace sees it; `None` if it cannot).
pub async fn request_peer(
    path: &Path,
    req: &Request,
    deadline: Duration,
) -> Result<(Reply, Option<i32>), Failure> {
    let mut stream = UnixStream::connect(path)
        .await
        .map_err(Failure::NoWatcher)?;
    let pid = stream
        .peer_cred()
        .ok()
        .and_then(|c| c.pid())
        .filter(|p| *p > 0);
    let exchange = async {
        stream.write_all(&encode(req)).await?;
        stream.shutdown().await?;
        let mut buf = Vec::with_capacity(256);
        (&mut stream)
            .take(MAX_MESSAGE as u64 + 1)
            .read_to_end(&mut buf)
            .await?;
        Ok::<_, io::Error>(buf)
    };
    let buf = match timeout(deadline, exchange).await {
        Ok(Ok(b)) => b,
        Ok(Err(e)) => return Err(Failure::NoReply(e.to_string())),
        Err(_) => {
            return Err(Failure::NoReply(format!(
                "nothing within {} s",
                deadline.as_secs()
            )))
        }
    };
    decode_reply(&buf)
        .map(|r| (r, pid))
        .map_err(|e| Failure::NoReply(e.to_string()))
}

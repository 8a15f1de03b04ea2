//! The watcher's end of the control socket: binds it (never over another
//! live watcher's, never over a file that is not a socket), checks each
//! peer's credentials, reads one bounded request within a deadline, and
//! hands hook requests to the watcher's loop. It never runs a pass itself
//! and never decides where a VIP goes.

use std::io;
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context, Result};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{mpsc, oneshot, Semaphore};
use tokio::time::timeout;
use tracing::{info, warn};

use super::{decode_request, encode, hook_call, Reply, Request, WireError, MAX_MESSAGE};
use crate::error::permanent;
use crate::hookargs::HookCall;
use crate::users::{self, Group};

/// A client has this long to send its request: ours sends it at once.
const READ_DEADLINE: Duration = Duration::from_secs(2);
/// Sentinel kills a script after 60 s; the answer must come well before.
pub const ANSWER_DEADLINE: Duration = Duration::from_secs(45);
/// Sentinel runs at most 16 scripts at once; more than this is not Sentinel.
const MAX_CLIENTS: usize = 64;

/// A hook's request, waiting for the outcome of a pass that began asking
/// the Sentinels after `at`.
#[derive(Debug)]
pub struct HookRequest {
    pub call: HookCall,
    /// Who asked, for the log: `uid N (name) pid P`.
    pub peer: String,
    pub at: Instant,
    pub reply: oneshot::Sender<Reply>,
}

/// The bound socket. Dropping it removes the socket file.
pub struct Listener {
    listener: UnixListener,
    path: PathBuf,
    group: Group,
    own_uid: u32,
}

/// Binds `path` for group `group_name`, mode 0660.
pub fn bind(path: &Path, group_name: &str) -> Result<Listener> {
    let group = users::group(group_name)
        .with_context(|| format!("control_socket_group {group_name}"))?
        .ok_or_else(|| {
            permanent(format!(
                "control_socket_group `{group_name}` does not exist (it should be the group Sentinel runs as)"
            ))
        })?;
    if let Some(dir) = path.parent().filter(|d| !d.exists()) {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o755)
            .create(dir)
            .with_context(|| format!("control socket directory {}", dir.display()))?;
    }
    clear_stale(path)?;
    let listener =
        UnixListener::bind(path).with_context(|| format!("control socket {}", path.display()))?;
    // From here on the file is ours: Drop removes it, also on the errors below.
    let l = Listener {
        listener,
        path: path.to_path_buf(),
        group,
        // SAFETY: geteuid has no preconditions.
        own_uid: unsafe { libc::geteuid() },
    };
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o660))
        .with_context(|| format!("chmod {}", path.display()))?;
    std::os::unix::fs::chown(path, None, Some(l.group.gid)).map_err(|e| {
        anyhow!(
            "cannot give {} to group {}: {e} (the watcher's user must be a member of that group)",
            path.display(),
            l.group.name
        )
    })?;
    Ok(l)
}

/// A socket file left by a watcher that died is removed; one that still
/// answers belongs to a running watcher, and anything else is not ours.
fn clear_stale(path: &Path) -> Result<()> {
    let meta = match std::fs::symlink_metadata(path) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(anyhow!("control socket {}: {e}", path.display())),
        Ok(m) => m,
    };
    if !meta.file_type().is_socket() {
        return Err(permanent(format!(
            "control socket {} exists and is not a socket; refusing to replace it",
            path.display()
        )));
    }
    if std::os::unix::net::UnixStream::connect(path).is_ok() {
        return Err(anyhow!(
            "control socket {}: another watcher is listening on it",
            path.display()
        ));
    }
    std::fs::remove_file(path).with_context(|| format!("remove stale {}", path.display()))
}

impl Drop for Listener {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

impl Listener {
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Accepts clients until the task is dropped; hook requests go to `tx`.
    /// `refused` is called for every request turned away (peer, size,
    /// deadline, malformed), so the watcher can count them.
    pub async fn serve<T: From<HookRequest> + Send + 'static>(
        self,
        tx: mpsc::Sender<T>,
        refused: Arc<dyn Fn() + Send + Sync>,
    ) {
        let slots = Arc::new(Semaphore::new(MAX_CLIENTS));
        let me = Arc::new(self);
        loop {
            let stream = match me.listener.accept().await {
                Ok((s, _)) => s,
                Err(e) => {
                    warn!(error = %e, "control socket: accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            let (me, tx, refused) = (me.clone(), tx.clone(), refused.clone());
            match slots.clone().try_acquire_owned() {
                Ok(permit) => {
                    tokio::spawn(async move {
                        if !me.handle(stream, tx).await {
                            refused();
                        }
                        drop(permit);
                    });
                }
                Err(_) => {
                    refused();
                    tokio::spawn(answer(
                        stream,
                        Reply::new(1, "watcher busy: too many clients"),
                    ));
                }
            }
        }
    }

    /// Answers one client; false when its request was refused.
    async fn handle<T: From<HookRequest>>(
        &self,
        mut stream: UnixStream,
        tx: mpsc::Sender<T>,
    ) -> bool {
        let peer = match stream.peer_cred() {
            Ok(c) => c,
            Err(e) => {
                warn!(error = %e, "control socket: no peer credentials");
                return false;
            }
        };
        let name = users::user_name(peer.uid());
        let who = format!(
            "uid {} ({}) pid {}",
            peer.uid(),
            name.as_deref().unwrap_or("?"),
            peer.pid().map_or("?".into(), |p| p.to_string())
        );
        // The request is read (bounded) before any answer, refusals
        // included: closing on unread data would reset the connection
        // and lose the answer.
        let request = match timeout(READ_DEADLINE, read_request(&mut stream)).await {
            Ok(r) => r.map_err(|e| e.to_string()),
            Err(_) => Err(format!("no request within {} s", READ_DEADLINE.as_secs())),
        };
        if !users::peer_allowed(
            peer.uid(),
            peer.gid(),
            name.as_deref(),
            self.own_uid,
            &self.group,
        ) {
            warn!(peer = %who, group = %self.group.name, "control socket: peer refused");
            let why = format!(
                "uid {} is neither root nor in group {}",
                peer.uid(),
                self.group.name
            );
            answer(stream, Reply::new(2, why)).await;
            return false;
        }
        let request = match request {
            Ok(r) => r,
            Err(e) => {
                warn!(peer = %who, error = %e, "control socket: bad request");
                answer(stream, Reply::new(2, e)).await;
                return false;
            }
        };
        let mut ok = true;
        let reply = match request {
            Request::Ping {} => Reply::new(
                0,
                format!(
                    "sentinel-vip {} watcher, pid {}",
                    env!("CARGO_PKG_VERSION"),
                    std::process::id()
                ),
            ),
            Request::Hook { args } => match hook_call(&args) {
                Err(e) => {
                    warn!(peer = %who, error = %e, "control socket: bad hook call");
                    ok = false;
                    Reply::new(2, format!("hook: {e}"))
                }
                Ok(call) => self.ask_pass(call, who, tx).await,
            },
        };
        answer(stream, reply).await;
        ok
    }

    async fn ask_pass<T: From<HookRequest>>(
        &self,
        call: HookCall,
        peer: String,
        tx: mpsc::Sender<T>,
    ) -> Reply {
        let (reply, rx) = oneshot::channel();
        let req = HookRequest {
            call,
            peer,
            at: Instant::now(),
            reply,
        };
        if tx.send(req.into()).await.is_err() {
            return Reply::new(1, "watcher is stopping");
        }
        match timeout(ANSWER_DEADLINE, rx).await {
            Ok(Ok(r)) => r,
            Ok(Err(_)) => Reply::new(1, "watcher is stopping"),
            Err(_) => Reply::new(
                1,
                format!("no pass finished within {} s", ANSWER_DEADLINE.as_secs()),
            ),
        }
    }
}

/// Reads one line of at most [`MAX_MESSAGE`] bytes (or until the client
/// shuts its side) and decodes it.
async fn read_request(stream: &mut UnixStream) -> Result<Request, WireError> {
    let mut buf = Vec::with_capacity(256);
    let mut chunk = [0u8; 1024];
    loop {
        let n = stream
            .read(&mut chunk)
            .await
            .map_err(|e| WireError::Read(e.to_string()))?;
        buf.extend_from_slice(&chunk[..n]);
        if buf.len() > MAX_MESSAGE {
            return Err(WireError::Oversize);
        }
        if n == 0 || buf.contains(&b'\n') {
            break;
        }
    }
    decode_request(&buf)
}

async fn answer(mut stream: UnixStream, reply: Reply) {
    if reply.code != 0 {
        info!(code = reply.code, message = %reply.message, "control socket: answered");
    }
    let _ = timeout(READ_DEADLINE, stream.write_all(&encode(&reply))).await;
    let _ = stream.shutdown().await;
}

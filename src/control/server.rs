//! The watcher's end of the control socket: binds it (never over another
//! live watcher's, never over a file that is not a socket), checks each
//! peer's credentials, reads one bounded request within a deadline, and
//! hands hook requests to the watcher's loop. It never runs a pass itself
//! and never decides where a VIP goes.
//!
//! Who may ask is decided per connection from `SO_PEERCRED`, not by file
//! modes: the socket is 0666, and a peer is served if it is root, the
//! watcher's own user, one of `control_socket_users` (by the name its uid
//! has when it connects) or in `control_socket_group`. So the hook works
//! as whichever user the installed Sentinel unit runs as (`redis`,
//! `valkey`), including a Sentinel package installed after the watcher
//! started, and the watcher needs no membership in Sentinel's group.
//! Refused peers never take one of the served peers' slots.

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
use crate::users;

/// A client has this long to send its request: ours sends it at once.
const READ_DEADLINE: Duration = Duration::from_secs(2);
/// Sentinel kills a script after 60 s; the answer must come well before.
pub const ANSWER_DEADLINE: Duration = Duration::from_secs(45);
/// Sentinel runs at most 16 scripts at once; more than this is not Sentinel.
const MAX_CLIENTS: usize = 64;
/// Refused peers being answered at once; more are dropped unanswered.
const MAX_REFUSALS: usize = 8;
/// How long a refused peer's request is read (so that the answer is not
/// lost to a reset) before the refusal is sent.
const REFUSAL_READ: Duration = Duration::from_millis(100);

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
    users: Vec<String>,
    group: Option<String>,
    own_uid: u32,
}

/// Binds `path`, mode 0666: `users` and `group`'s members may ask (see
/// the module doc), besides root and the watcher's own user.
pub fn bind(path: &Path, users: &[String], group: Option<&str>) -> Result<Listener> {
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
        users: users.to_vec(),
        group: group.map(str::to_string),
        // SAFETY: geteuid has no preconditions.
        own_uid: unsafe { libc::geteuid() },
    };
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o666))
        .with_context(|| format!("chmod {}", path.display()))?;
    if let Some(g) = group {
        if !matches!(users::group(g), Ok(Some(_))) {
            warn!(group = %g, "control_socket_group does not exist (yet); its members are looked up at each connection");
        }
    }
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
        let refusals = Arc::new(Semaphore::new(MAX_REFUSALS));
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
            let peer = match me.peer(&stream) {
                Ok(p) => p,
                Err(why) => {
                    refused();
                    if let Ok(permit) = refusals.clone().try_acquire_owned() {
                        tokio::spawn(async move {
                            refuse(stream, why).await;
                            drop(permit);
                        });
                    }
                    continue;
                }
            };
            match slots.clone().try_acquire_owned() {
                Ok(permit) => {
                    tokio::spawn(async move {
                        if !me.handle(stream, peer, tx).await {
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

    /// Who the peer is (`uid N (name) pid P`, for the log), if it may ask;
    /// else the refusal's one line.
    fn peer(&self, stream: &UnixStream) -> Result<String, String> {
        let peer = stream.peer_cred().map_err(|e| {
            warn!(error = %e, "control socket: no peer credentials");
            format!("no peer credentials: {e}")
        })?;
        let name = users::user_name(peer.uid());
        let who = format!(
            "uid {} ({}) pid {}",
            peer.uid(),
            name.as_deref().unwrap_or("?"),
            peer.pid().map_or("?".into(), |p| p.to_string())
        );
        // Looked up now, not at bind: the group may be created later.
        let group = self
            .group
            .as_deref()
            .and_then(|g| users::group(g).ok().flatten());
        let allowed = users::Allowed {
            users: &self.users,
            group: group.as_ref(),
        };
        if users::peer_allowed(
            peer.uid(),
            peer.gid(),
            name.as_deref(),
            self.own_uid,
            &allowed,
        ) {
            return Ok(who);
        }
        warn!(peer = %who, users = ?self.users, group = ?self.group, "control socket: peer refused");
        let mut why = format!(
            "uid {} ({}) is neither root, the watcher's user, nor in control_socket_users",
            peer.uid(),
            name.as_deref().unwrap_or("no name")
        );
        if let Some(g) = &self.group {
            why.push_str(&format!(" or group {g}"));
        }
        Err(why)
    }

    /// Answers one client; false when its request was refused.
    async fn handle<T: From<HookRequest>>(
        &self,
        mut stream: UnixStream,
        who: String,
        tx: mpsc::Sender<T>,
    ) -> bool {
        let request = match timeout(READ_DEADLINE, read_request(&mut stream)).await {
            Ok(r) => r.map_err(|e| e.to_string()),
            Err(_) => Err(format!("no request within {} s", READ_DEADLINE.as_secs())),
        };
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

/// Refuses a peer: its request is read for a moment (unread data would
/// reset the connection and lose the answer), never decoded.
async fn refuse(mut stream: UnixStream, why: String) {
    let mut sink = [0u8; MAX_MESSAGE];
    let _ = timeout(REFUSAL_READ, stream.read(&mut sink)).await;
    answer(stream, Reply::new(2, why)).await;
}

async fn answer(mut stream: UnixStream, reply: Reply) {
    if reply.code != 0 {
        info!(code = reply.code, message = %reply.message, "control socket: answered");
    }
    let _ = timeout(READ_DEADLINE, stream.write_all(&encode(&reply))).await;
    let _ = stream.shutdown().await;
}

//! Hook mode: Sentinel's `client-reconfig-script`. Validates the seven
//! arguments, then hands the call to the watcher over its control socket
//! (under a hardened Sentinel the hook holds no privilege, and need not be
//! able to read the config), or, with no watcher, the config and both
//! capabilities, runs the pass itself. Either way the pass
//! converges to what the Sentinels say *now* (a retried call can arrive
//! hours late), falling back to the arguments only when no Sentinel
//! answers. Exit codes are Sentinel's: 0 done, 1 retry, 2 never.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{anyhow, Result};
use tracing::{info, warn};

use crate::config::defaults::CONTROL_SOCKET;
use crate::config::{Config, VipConfig};
use crate::control::{client, server::ANSWER_DEADLINE, Request};
use crate::decide::{basis, Basis};
use crate::engine::{ms, placed, resolve, Engine, FirstRound};
use crate::error::{exit_code, one_line, permanent};
use crate::hookargs::{self, HookCall};
use crate::lock;

pub async fn run(args: &[OsString], path: &Path, log: crate::logging::Format) -> Result<()> {
    let t0 = Instant::now();
    // Arguments first: bad ones are refused before anything is read or touched.
    let call = hookargs::parse(args).map_err(|e| permanent(format!("hook: {e}")))?;
    // The config is read when this user may (an invalid one is refused),
    // but a hook that hands off needs none of it: under the packaged
    // layout only the watcher may read it (it may hold passwords), and the
    // watcher knows which masters it keeps.
    let cfg = Config::load_if_readable(path)?;
    crate::logging::init(log, cfg.as_ref().ok().and_then(|c| c.log_file.as_deref()));
    let socket = control_socket(cfg.as_ref().ok());
    let socket = socket.as_path();
    if let Ok(c) = &cfg {
        if !c.has_master(&call.master) {
            info!(master = %call.master, "hook: master not configured here; nothing to do");
            return Ok(());
        }
    }
    // Sentinel's call, as received (valid UTF-8: parsed above), for the
    // watcher to validate again.
    let wire = args
        .iter()
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    let handed = client::request(socket, &Request::Hook { args: wire }, ANSWER_DEADLINE).await;
    let why_direct = match handed {
        Ok(reply) => {
            info!(
                master = %call.master, role = call.role.as_str(), to = %Target(&call),
                code = reply.code, result = %reply.message, elapsed_ms = ms(t0),
                "hook: answered by the watcher"
            );
            return match reply.code {
                0 => Ok(()),
                1 => Err(anyhow!("watcher: {}", reply.message)),
                _ => Err(permanent(format!("watcher: {}", reply.message))),
            };
        }
        Err(f) => format!("{} on {}", f, socket.display()),
    };
    // Transient from here on: Sentinel retries, and the watcher may be
    // back by then.
    let cfg = cfg.map_err(|unreadable| {
        anyhow!("hook: {why_direct}, and without the watcher it needs the config ({unreadable}); start sentinel-vip.service")
    })?;
    let vips: Vec<VipConfig> = cfg.vips_for(&call.master).cloned().collect();
    let missing = crate::caps::missing(vips.iter().any(VipConfig::sends_frames));
    if !missing.is_empty() {
        return Err(anyhow!(
            "hook: {why_direct}, and this process lacks {} to act itself; start sentinel-vip.service",
            missing.join(" and ")
        ));
    }
    info!(master = %call.master, why = %why_direct, "hook: acting itself");
    direct(call, cfg, vips, t0).await
}

/// The environment variable that names the watcher's socket for a hook
/// (and `check`), before the config's `control_socket`.
pub const SOCKET_ENV: &str = "SENTINEL_VIP_CONTROL_SOCKET";

/// Where a hook finds the watcher: `$SENTINEL_VIP_CONTROL_SOCKET`, else
/// the config's `control_socket` if this user may read the config, else
/// the default, which is where the packaged watcher listens.
pub fn control_socket(cfg: Option<&Config>) -> PathBuf {
    std::env::var_os(SOCKET_ENV)
        .filter(|p| !p.is_empty())
        .map(PathBuf::from)
        .or_else(|| cfg.map(|c| c.control_socket.clone()))
        .unwrap_or_else(|| PathBuf::from(CONTROL_SOCKET))
}

/// `TO_IP:TO_PORT` of a call, for the log.
struct Target<'a>(&'a HookCall);

impl std::fmt::Display for Target<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.0.to.0, self.0.to.1)
    }
}

/// For hosts where Sentinel runs unconfined: the hook holds both
/// capabilities and runs the pass itself, under the host lock, for every
/// VIP of the master.
async fn direct(call: HookCall, cfg: Config, vips: Vec<VipConfig>, t0: Instant) -> Result<()> {
    let engine = Engine::new(cfg)?;
    let lock = lock::acquire(&engine.cfg.lock_file).await?;
    let waited = ms(t0);
    let view = engine.gather(&[call.master.as_str()]).await?;
    let (verdict, answer) = view.master(&call.master);
    if let Some(e) = view.unresolved(&call.master) {
        // The Sentinels named a host that did not resolve: their word, not
        // the arguments', is what failed.
        return Err(e.clone().into_error("hook: the master the Sentinels name"));
    }
    let said = if engine.sentinels.is_empty() {
        "no Sentinels configured".to_string()
    } else if verdict.master.is_some() {
        verdict.to_string()
    } else {
        let errors: Vec<String> = view
            .answers
            .iter()
            .filter_map(|a| {
                a.reply
                    .as_ref()
                    .err()
                    .map(|e| format!("{}: {e}", a.sentinel))
            })
            .collect();
        format!("{verdict}; {}", errors.join("; "))
    };
    let master = match basis(verdict.answered, verdict.total, answer) {
        Basis::Sentinels(m) => m,
        // Only with no Sentinel answer do the arguments decide.
        Basis::NoAnswer => {
            warn!(master = %call.master, "hook: no Sentinel answered; acting on the arguments");
            let within = engine.cfg.sentinel_timeout;
            let ips = resolve(&call.to.0, within)
                .await
                .map_err(|e| e.into_error("hook: TO_IP"))?;
            placed(&call.to.0, ips)
        }
        // Transient: Sentinel retries, and a majority may answer then.
        b @ Basis::Minority { .. } => {
            return Err(anyhow!("hook: {} ({said}): {b}; retry", call.master));
        }
    };
    let mut held = Vec::new();
    let mut failed: Option<anyhow::Error> = None;
    for vip in &vips {
        let out = engine.converge(&view, vip, &master, FirstRound::Now).await;
        let result = match &out {
            Ok(o) => format!("{:?} {:?}", o.action, o.change),
            Err(e) => format!("error: {}", one_line(e)),
        };
        info!(
            master = %call.master, vip = %vip.address, role = call.role.as_str(), to = %Target(&call),
            sentinel = %said, decided = ?master, result = %result,
            lock_wait_ms = waited, elapsed_ms = ms(t0),
            "hook"
        );
        match out {
            Ok(o) => held.extend(o.target.map(|t| (vip, t))),
            // The permanent error wins: Sentinel must not retry a refusal.
            Err(e) if failed.as_ref().is_none_or(|f| exit_code(f) < exit_code(&e)) => {
                failed = Some(e)
            }
            Err(_) => {}
        }
    }
    drop(lock);
    let rounds = engine.cfg.announce.count.saturating_sub(1);
    engine.repeat_rounds(&held, rounds).await;
    failed.map_or(Ok(()), Err)
}

//! Hook mode: Sentinel's `client-reconfig-script`. Validates the seven
//! arguments, then hands the call to the watcher over its control socket
//! (under a hardened Sentinel the hook holds no privilege), or, with no
//! watcher and both capabilities, acts itself. Either way the pass
//! converges to what the Sentinels say *now* (a retried call can arrive
//! hours late), falling back to the arguments only when no Sentinel
//! answers. Exit codes are Sentinel's: 0 done, 1 retry, 2 never.

use std::ffi::OsString;
use std::time::Instant;

use anyhow::{anyhow, Result};
use tracing::{info, warn};

use crate::config::Config;
use crate::control::{client, server::ANSWER_DEADLINE, Request};
use crate::decide::Master;
use crate::engine::{local_addrs, ms, resolve, Announce, Engine};
use crate::error::permanent;
use crate::hookargs::{self, HookCall, Role};
use crate::lock;

pub async fn run(
    args: &[OsString],
    config: Result<Config>,
    log: crate::logging::Format,
) -> Result<()> {
    let t0 = Instant::now();
    // Arguments first: bad ones are refused before anything is read or touched.
    let call = hookargs::parse(args).map_err(|e| permanent(format!("hook: {e}")))?;
    let cfg = config?;
    crate::logging::init(log, cfg.log_file.as_deref());
    let role = if call.role == Role::Leader {
        "leader"
    } else {
        "observer"
    };
    let Some(vip) = cfg.vip_for(&call.master).cloned() else {
        info!(master = %call.master, "hook: master not configured here; nothing to do");
        return Ok(());
    };
    let to = format!("{}:{}", call.to.0, call.to.1);
    // Sentinel's call, as received, for the watcher to validate again.
    let args = args
        .iter()
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    let handed = client::request(
        &cfg.control_socket,
        &Request::Hook { args },
        ANSWER_DEADLINE,
    )
    .await;
    let why_direct = match handed {
        Ok(reply) => {
            info!(
                master = %call.master, role, to = %to, code = reply.code, result = %reply.message,
                elapsed_ms = ms(t0), "hook: answered by the watcher"
            );
            return match reply.code {
                0 => Ok(()),
                1 => Err(anyhow!("watcher: {}", reply.message)),
                _ => Err(permanent(format!("watcher: {}", reply.message))),
            };
        }
        Err(f) => format!("{} on {}", f, cfg.control_socket.display()),
    };
    let missing = crate::caps::missing();
    if !missing.is_empty() {
        // Transient: Sentinel retries, and the watcher may be back by then.
        return Err(anyhow!(
            "hook: {why_direct}, and this process lacks {} to act itself; start sentinel-vip.service",
            missing.join(" and ")
        ));
    }
    info!(master = %call.master, why = %why_direct, "hook: acting itself");
    direct(call, cfg, vip, role, to, t0).await
}

/// Today's path for hosts where Sentinel runs unconfined: the hook holds
/// both capabilities and runs the pass itself, under the host lock.
async fn direct(
    call: HookCall,
    cfg: Config,
    vip: crate::config::VipConfig,
    role: &str,
    to: String,
    t0: Instant,
) -> Result<()> {
    let engine = Engine::new(cfg)?;
    let lock = lock::acquire(&engine.cfg.lock_path()).await?;
    let waited = ms(t0);

    // The question to the Sentinels and the netlink dump are independent
    // (nothing else changes addresses while we hold the lock): overlap them.
    let names = [call.master.as_str()];
    let ask = async {
        if engine.sentinels.is_empty() {
            None
        } else {
            Some(engine.masters(&names).await)
        }
    };
    let (asked, snap) = tokio::join!(ask, engine.nl.snapshot());
    let snap = snap?;
    let (said, master) = match asked {
        None => ("no sentinels configured".to_string(), None),
        Some((answers, mut m)) => {
            let (v, master) = m.remove(&call.master).expect("asked for it");
            let said = match &v.master {
                Some(r) => format!(
                    "{}:{} epoch {} ({}/{} answered)",
                    r.host, r.port, r.epoch, v.answered, v.total
                ),
                None => {
                    let errors: Vec<String> = answers
                        .iter()
                        .filter_map(|a| {
                            a.reply
                                .as_ref()
                                .err()
                                .map(|e| format!("{}: {e}", a.sentinel))
                        })
                        .collect();
                    format!(
                        "nothing ({}/{} answered; {})",
                        v.answered,
                        v.total,
                        errors.join("; ")
                    )
                }
            };
            (said, matches!(master, Master::Known(_)).then_some(master))
        }
    };
    let master = match master {
        Some(m) => m,
        // Only with no Sentinel answer do the arguments decide.
        None => {
            warn!(master = %call.master, "hook: no Sentinel answered; acting on the arguments");
            Master::Known(
                resolve(&call.to.0)
                    .await
                    .map_err(|e| permanent(format!("hook: TO_IP: {e}")))?,
            )
        }
    };
    let local = local_addrs(&snap.addrs, &engine.cfg);
    let out = engine
        .converge(&snap, &local, &vip, &master, Announce::Always)
        .await;
    let elapsed = ms(t0);
    drop(lock);
    let changed = match &out {
        Ok(o) => format!("{:?} {:?}", o.action, o.done),
        Err(e) => format!("error: {}", crate::error::one_line(e)),
    };
    info!(
        master = %call.master, role, to = %to,
        sentinel = %said, decided = ?master, result = %changed,
        lock_wait_ms = waited, elapsed_ms = elapsed,
        "hook"
    );
    if let Some(t) = out?.target {
        engine
            .announce_repeats(&[(&vip, t)], engine.cfg.announce.count.saturating_sub(1))
            .await;
    }
    Ok(())
}

//! `reconcile`: one pass for every VIP, as at boot. Exit 2 if any VIP was
//! refused, 1 if any master could not be learnt from a Sentinel majority
//! or a change failed.

use std::time::Instant;

use anyhow::{anyhow, Result};
use tracing::info;

use crate::config::Config;
use crate::decide::{basis, Basis};
use crate::engine::{ms, Engine, FirstRound};
use crate::error::{exit_code, one_line, permanent};
use crate::lock;

pub(super) async fn run(cfg: Config) -> Result<()> {
    let engine = Engine::new(cfg)?;
    let t0 = Instant::now();
    let lock = lock::acquire(&engine.cfg.lock_file).await?;
    let view = engine.gather(&engine.cfg.masters()).await?;
    let mut errors = Vec::new();
    let mut refused = false;
    let mut held = Vec::new();
    for vip in &engine.cfg.vip {
        let (v, m) = view.master(&vip.master);
        if let Some(e) = view.unresolved(&vip.master) {
            let e = e.clone().into_error(&vip.master);
            refused |= exit_code(&e) == 2;
            errors.push(one_line(&e));
            continue;
        }
        let m = match basis(v.answered, v.total, m) {
            Basis::Sentinels(m) => m,
            Basis::NoAnswer => {
                errors.push(format!(
                    "{}: no Sentinel knows it ({}/{} answered)",
                    vip.master, v.answered, v.total
                ));
                continue;
            }
            // At boot a cut-off old master's own Sentinel may still name
            // it: only a majority places the VIP.
            b @ Basis::Minority { .. } => {
                errors.push(format!("{}: {b}", vip.master));
                continue;
            }
        };
        match engine.converge(&view, vip, &m, FirstRound::Now).await {
            Ok(o) => {
                info!(master = %vip.master, sentinel = %v, action = ?o.action, change = ?o.change, "reconcile");
                println!("{}: {} ({:?})", vip.master, vip.address, o.action);
                held.extend(o.target.map(|t| (vip, t)));
            }
            Err(e) => {
                refused |= exit_code(&e) == 2;
                errors.push(one_line(&e));
            }
        }
    }
    drop(lock);
    info!(
        vips = engine.cfg.vip.len(),
        elapsed_ms = ms(t0),
        "reconcile pass done"
    );
    let rounds = engine.cfg.announce.count.saturating_sub(1);
    engine.repeat_rounds(&held, rounds).await;
    match (errors.is_empty(), refused) {
        (true, _) => Ok(()),
        (false, true) => Err(permanent(errors.join("; "))),
        (false, false) => Err(anyhow!(errors.join("; "))),
    }
}

//! `check`: the config, the interfaces, the Sentinels, and which path a
//! hook takes on this host (the watcher's socket, or its own
//! capabilities). Prints one line per finding; non-zero on any problem.
//! It only reads.

use std::time::Duration;

use anyhow::{anyhow, Result};

use crate::config::Config;
use crate::control::{client, Request};
use crate::decide::Presence;
use crate::engine::Engine;

pub(super) async fn run(config: Result<Config>) -> Result<()> {
    let cfg = config?;
    println!(
        "ok   config: {} VIP(s), {} Sentinel(s)",
        cfg.vip.len(),
        cfg.sentinels.len()
    );
    let mut bad = Vec::new();
    hook_path(&cfg, &mut bad).await;
    let engine = Engine::new(cfg)?;
    let names = engine.cfg.masters();
    let view = engine.gather(&names).await?;
    for v in &engine.cfg.vip {
        match view.snap.link(&v.interface) {
            Some(l) if l.mac.is_some() => {
                println!("ok   interface {} for {}", v.interface, v.master)
            }
            Some(_) => bad.push(format!("interface {} has no Ethernet address", v.interface)),
            None => bad.push(format!(
                "interface {} (for {}) does not exist",
                v.interface, v.master
            )),
        }
        if let Presence::Foreign(why) = view.presence(v) {
            bad.push(why);
        }
        if let Some(note) = source_note(&view, v) {
            println!("note {note}");
        }
    }
    for a in &view.answers {
        match &a.reply {
            Ok(r) => {
                for n in &names {
                    match r.get(*n) {
                        Some(Some(rep)) => println!(
                            "ok   sentinel {}: {n} at {}:{} epoch {}",
                            a.sentinel, rep.host, rep.port, rep.epoch
                        ),
                        _ => bad.push(format!("sentinel {} does not monitor {n}", a.sentinel)),
                    }
                }
            }
            Err(e) => bad.push(format!("sentinel {}: {e}", a.sentinel)),
        }
    }
    for n in &names {
        let (v, _) = view.master(n);
        if !v.majority() {
            bad.push(format!(
                "{n}: only {}/{} Sentinels answer for it",
                v.answered, v.total
            ));
        }
    }
    for b in &bad {
        println!("FAIL {b}");
    }
    if bad.is_empty() {
        Ok(())
    } else {
        Err(anyhow!(
            "check: {} problem(s): {}",
            bad.len(),
            bad.join("; ")
        ))
    }
}

/// An IPv4 VIP is never a source address only as a secondary: beside an
/// address of the host's own in the same subnet on that interface.
fn source_note(view: &crate::engine::View, v: &crate::config::VipConfig) -> Option<String> {
    let std::net::IpAddr::V4(vip) = v.address.ip else {
        return None;
    };
    let link = view.snap.link(&v.interface)?;
    let mask = u32::MAX
        .checked_shl(32 - u32::from(v.address.prefix))
        .unwrap_or(0);
    let same_subnet = view.snap.addrs.iter().any(|a| match a.ip {
        std::net::IpAddr::V4(ip) => {
            a.index == link.index && ip != vip && u32::from(ip) & mask == u32::from(vip) & mask
        }
        _ => false,
    });
    (!same_subnet).then(|| {
        format!(
            "{} has no address of this host in its subnet on {}: it would be that subnet's primary address, and the kernel could pick it as a source",
            v.address, v.interface
        )
    })
}

/// Which path a hook run like this process would take: the watcher's
/// socket if a watcher answers, else its own capabilities.
async fn hook_path(cfg: &Config, bad: &mut Vec<String>) {
    let missing = crate::caps::missing();
    let sock = cfg.control_socket.display();
    let ping = client::request(
        &cfg.control_socket,
        &Request::Ping {},
        Duration::from_secs(2),
    )
    .await;
    match (ping, missing.is_empty()) {
        (Ok(r), _) => {
            println!(
                "ok   hook: hands its call to the watcher on {sock} ({})",
                r.message
            );
            if !missing.is_empty() {
                println!(
                    "note this process lacks {} (not needed while the watcher answers)",
                    missing.join(" and ")
                );
            }
        }
        (Err(f), true) => println!(
            "ok   hook: {f} on {sock}; the hook acts itself with CAP_NET_ADMIN and CAP_NET_RAW"
        ),
        (Err(f), false) => bad.push(format!(
            "hook: {f} on {sock} and this process lacks {}: hooks exit 1 until the watcher runs",
            missing.join(" and ")
        )),
    }
}

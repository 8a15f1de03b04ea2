//! The operator commands (`vip`, `announce`, `reconcile`, `check`,
//! `status`) and the dispatch from the parsed command line.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{anyhow, Result};
use serde_json::json;
use tracing::info;

use crate::announce::{Sender, Target};
use crate::cli::{Cli, Command, VipCommand};
use crate::config::{check_label, AnnounceConfig, Cidr, Config, DEFAULT_PATH};
use crate::decide::{Action, Master, Presence};
use crate::engine::{local_addrs, ms, presence, Announce, Engine};
use crate::error::{one_line, permanent};
use crate::lock;
use crate::netlink::{Done, Netlink};

/// The config path: `--config`, else `SENTINEL_VIP_CONFIG`, else the default.
pub fn config_path(cli: &Cli) -> PathBuf {
    cli.config
        .clone()
        .or_else(|| std::env::var_os("SENTINEL_VIP_CONFIG").map(PathBuf::from))
        .unwrap_or_else(|| PathBuf::from(DEFAULT_PATH))
}

/// Runs one parsed command until done; `shutdown` ends the watcher.
pub async fn run(cli: Cli, shutdown: impl std::future::Future<Output = ()>) -> Result<()> {
    let path = config_path(&cli);
    let config = || Config::load(&path);
    let named = cli.config.is_some() || std::env::var_os("SENTINEL_VIP_CONFIG").is_some();
    match cli.command {
        Command::Hook { args } => crate::hook::run(&args, config(), cli.log_format).await,
        Command::Vip(v) => vip(v, optional_config(named, &path)?).await,
        Command::Announce {
            addr,
            dev,
            count,
            interval_ms,
        } => {
            let mut a = optional_config(named, &path)?
                .map(|c| c.announce)
                .unwrap_or_default();
            a.count = count.unwrap_or(a.count);
            a.interval_ms = interval_ms.unwrap_or(a.interval_ms);
            announce_cmd(&addr, &dev, &a).await
        }
        Command::Reconcile => {
            let cfg = config()?;
            crate::logging::init(cli.log_format, cfg.log_file.as_deref());
            reconcile(Engine::new(cfg)?).await
        }
        Command::Check => check(config()).await,
        Command::Status(j) => status(config()?, j.json).await,
        Command::Watch => {
            let cfg = config()?;
            crate::logging::init(cli.log_format, cfg.log_file.as_deref());
            crate::watch::run(path, cfg, shutdown).await
        }
    }
}

/// Manual commands work without a config file; an explicitly named one,
/// or one that exists, must be valid.
fn optional_config(named: bool, path: &std::path::Path) -> Result<Option<Config>> {
    if named || path.exists() {
        Config::load(path).map(Some)
    } else {
        Ok(None)
    }
}

fn parse_cidr(s: &str) -> Result<Cidr> {
    s.parse().map_err(|e: String| permanent(e))
}

async fn vip(cmd: VipCommand, cfg: Option<Config>) -> Result<()> {
    let nl = Netlink::connect()?;
    let snap = nl.snapshot().await?;
    let link_of = |dev: &str| {
        snap.link(dev)
            .cloned()
            .ok_or_else(|| permanent(format!("interface {dev} does not exist")))
    };
    match cmd {
        VipCommand::Add {
            cidr,
            dev,
            label,
            no_announce,
        } => {
            let vip = parse_cidr(&cidr)?;
            if !crate::config::valid_ifname(&dev) {
                return Err(permanent(format!(
                    "`{}` is not an interface name",
                    dev.escape_debug()
                )));
            }
            if let Some(l) = &label {
                check_label(l, &dev, vip.ip).map_err(permanent)?;
            }
            let link = link_of(&dev)?;
            if let Some(a) = snap
                .addrs
                .iter()
                .find(|a| a.ip == vip.ip && (a.index != link.index || a.prefix != vip.prefix))
            {
                return Err(permanent(format!(
                    "{}/{} is already on interface #{}; delete it first",
                    a.ip, a.prefix, a.index
                )));
            }
            // Open the frame socket first: lacking CAP_NET_RAW must stop us
            // before the address is added, not after.
            let sender = if no_announce {
                None
            } else {
                Some(Sender::open().map_err(|e| permanent(e.to_string()))?)
            };
            let done = nl.add(vip, link.index, label.as_deref()).await?;
            println!(
                "{vip} on {dev}: {}",
                if done == Done::Changed {
                    "added"
                } else {
                    "already present"
                }
            );
            if let Some(sender) = sender {
                let a = cfg.map(|c| c.announce).unwrap_or_default();
                let mac = link
                    .mac
                    .ok_or_else(|| permanent(format!("{dev} has no Ethernet address")))?;
                announce_rounds(
                    &sender,
                    &Target {
                        ifindex: link.index,
                        ifname: dev,
                        mac,
                        ip: vip.ip,
                    },
                    &a,
                )
                .await?;
            }
            Ok(())
        }
        VipCommand::Del { cidr, dev, force } => {
            let vip = parse_cidr(&cidr)?;
            let link = link_of(&dev)?;
            let Some(a) = snap
                .addrs
                .iter()
                .find(|a| a.ip == vip.ip && a.index == link.index && a.prefix == vip.prefix)
            else {
                println!("{vip} on {dev}: already absent");
                return Ok(());
            };
            if !a.ours() && !a.secondary && !force {
                return Err(permanent(format!(
                    "{vip} is a primary address of {dev} that sentinel-vip did not add; pass --force to delete it"
                )));
            }
            let done = nl.del(vip, link.index).await?;
            println!(
                "{vip} on {dev}: {}",
                if done == Done::Changed {
                    "deleted"
                } else {
                    "already absent"
                }
            );
            Ok(())
        }
        VipCommand::Show(j) => {
            let rows: Vec<serde_json::Value> = snap
                .addrs
                .iter()
                .filter(|a| {
                    a.ours()
                        || cfg
                            .as_ref()
                            .is_some_and(|c| c.vip.iter().any(|v| v.address.ip == a.ip))
                })
                .map(|a| {
                    let master = cfg
                        .as_ref()
                        .and_then(|c| c.vip.iter().find(|v| v.address.ip == a.ip))
                        .map(|v| v.master.clone());
                    json!({
                        "address": format!("{}/{}", a.ip, a.prefix),
                        "interface": snap.link_by_index(a.index).map(|l| l.name.clone()),
                        "label": a.label,
                        "added_by_sentinel_vip": a.ours(),
                        "master": master,
                    })
                })
                .collect();
            if j.json {
                println!("{}", serde_json::Value::Array(rows));
            } else if rows.is_empty() {
                println!("no VIPs held");
            } else {
                for r in rows {
                    println!(
                        "{} dev {}{}{}",
                        r["address"].as_str().unwrap_or("?"),
                        r["interface"].as_str().unwrap_or("?"),
                        r["master"]
                            .as_str()
                            .map(|m| format!(" master {m}"))
                            .unwrap_or_default(),
                        if r["added_by_sentinel_vip"].as_bool() == Some(true) {
                            ""
                        } else {
                            " (not tagged by sentinel-vip)"
                        },
                    );
                }
            }
            Ok(())
        }
    }
}

async fn announce_rounds(sender: &Sender, t: &Target, a: &AnnounceConfig) -> Result<()> {
    for i in 0..a.count {
        if i > 0 {
            tokio::time::sleep(Duration::from_millis(a.interval_ms)).await;
        }
        sender
            .send_round(t)
            .map_err(|e| anyhow!("announce {} on {}: {e}", t.ip, t.ifname))?;
    }
    Ok(())
}

async fn announce_cmd(addr: &str, dev: &str, a: &AnnounceConfig) -> Result<()> {
    let ip = addr
        .split('/')
        .next()
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| permanent(format!("`{}` is not an IP address", addr.escape_debug())))?;
    if a.count == 0 || a.interval_ms == 0 {
        return Err(permanent("--count and --interval-ms must be positive"));
    }
    let nl = Netlink::connect()?;
    let snap = nl.snapshot().await?;
    let link = snap
        .link(dev)
        .ok_or_else(|| permanent(format!("interface {dev} does not exist")))?;
    // Announcing an address held elsewhere would steal its clients.
    if !snap
        .addrs
        .iter()
        .any(|x| x.ip == ip && x.index == link.index)
    {
        return Err(permanent(format!(
            "{ip} is not on {dev}; announce only addresses this host holds"
        )));
    }
    let mac = link
        .mac
        .ok_or_else(|| permanent(format!("{dev} has no Ethernet address")))?;
    let sender = Sender::open().map_err(|e| permanent(e.to_string()))?;
    announce_rounds(
        &sender,
        &Target {
            ifindex: link.index,
            ifname: dev.to_string(),
            mac,
            ip,
        },
        a,
    )
    .await?;
    println!("announced {ip} on {dev} ({} rounds)", a.count);
    Ok(())
}

/// One reconcile pass over every configured VIP. Exit: 2 if any VIP was
/// refused, 1 if any master could not be learnt or a change failed.
pub async fn reconcile(engine: Engine) -> Result<()> {
    let t0 = Instant::now();
    let lock = lock::acquire(&engine.cfg.lock_path()).await?;
    let names: Vec<&str> = engine.cfg.vip.iter().map(|v| v.master.as_str()).collect();
    let (_, masters) = engine.masters(&names).await;
    let snap = engine.nl.snapshot().await?;
    let local = local_addrs(&snap.addrs, &engine.cfg);
    let mut errors = Vec::new();
    let mut refused = false;
    let mut held = Vec::new();
    for vip in &engine.cfg.vip {
        let (v, m) = &masters[&vip.master];
        if let Master::Unknown { .. } = m {
            errors.push(format!(
                "{}: no Sentinel knows it ({}/{} answered)",
                vip.master, v.answered, v.total
            ));
            continue;
        }
        match engine
            .converge(&snap, &local, vip, m, Announce::Always)
            .await
        {
            Ok(o) => {
                info!(master = %vip.master, sentinel = ?v.master, action = ?o.action, done = ?o.done, "reconcile");
                println!("{}: {} ({:?})", vip.master, vip.address, o.action);
                held.extend(o.target.map(|t| (vip, t)));
            }
            Err(e) => {
                refused |= crate::error::exit_code(&e) == 2;
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
    engine.announce_repeats(&held, rounds).await;
    match (errors.is_empty(), refused) {
        (true, _) => Ok(()),
        (false, true) => Err(permanent(errors.join("; "))),
        (false, false) => Err(anyhow!(errors.join("; "))),
    }
}

async fn check(config: Result<Config>) -> Result<()> {
    let cfg = config?;
    println!(
        "ok   config: {} VIP(s), {} Sentinel(s)",
        cfg.vip.len(),
        cfg.sentinels.len()
    );
    let mut bad = Vec::new();
    // Which path a hook run like this process would take: the watcher's
    // socket if a watcher answers, else its own capabilities.
    let missing = crate::caps::missing();
    let sock = cfg.control_socket.display().to_string();
    let ping = crate::control::client::request(
        &cfg.control_socket,
        &crate::control::Request::Ping {},
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
    let engine = Engine::new(cfg)?;
    let snap = engine.nl.snapshot().await?;
    for v in &engine.cfg.vip {
        match snap.link(&v.interface) {
            Some(l) if l.mac.is_some() => {
                println!("ok   interface {} for {}", v.interface, v.master)
            }
            Some(_) => bad.push(format!("interface {} has no Ethernet address", v.interface)),
            None => bad.push(format!(
                "interface {} (for {}) does not exist",
                v.interface, v.master
            )),
        }
        if let Presence::Foreign(why) = presence(&snap, v) {
            bad.push(why);
        }
    }
    let names: Vec<&str> = engine.cfg.vip.iter().map(|v| v.master.as_str()).collect();
    let (answers, masters) = engine.masters(&names).await;
    for a in &answers {
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
    for (n, (v, _)) in &masters {
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

async fn status(cfg: Config, as_json: bool) -> Result<()> {
    let engine = Engine::new(cfg)?;
    let names: Vec<&str> = engine.cfg.vip.iter().map(|v| v.master.as_str()).collect();
    let ((answers, masters), snap) = tokio::join!(engine.masters(&names), engine.nl.snapshot());
    let snap = snap?;
    let local = local_addrs(&snap.addrs, &engine.cfg);
    let mut all_agree = true;
    let mut rows = Vec::new();
    for v in &engine.cfg.vip {
        let (verdict, master) = &masters[&v.master];
        let pres = presence(&snap, v);
        let held = pres == Presence::Held;
        let master_local =
            matches!(master, Master::Known(ips) if ips.iter().any(|ip| local.contains(ip)));
        let sentinels: Vec<serde_json::Value> = answers
            .iter()
            .map(|a| match &a.reply {
                Ok(r) => match r.get(&v.master).cloned().flatten() {
                    Some(rep) => json!({"sentinel": a.sentinel, "reachable": true, "master": format!("{}:{}", rep.host, rep.port), "config_epoch": rep.epoch}),
                    None => json!({"sentinel": a.sentinel, "reachable": true, "master": null}),
                },
                Err(e) => json!({"sentinel": a.sentinel, "reachable": false, "error": e}),
            })
            .collect();
        let reported: std::collections::HashSet<String> = sentinels
            .iter()
            .filter_map(|s| s["master"].as_str().map(str::to_string))
            .collect();
        let agree = verdict.majority()
            && reported.len() == 1
            && held == master_local
            && matches!(pres, Presence::Absent | Presence::Held);
        all_agree &= agree;
        let action = match master {
            Master::Known(_) if held != master_local => Some(if master_local {
                Action::Acquire
            } else {
                Action::Release
            }),
            _ => None,
        };
        rows.push(json!({
            "master": v.master, "vip": v.address.to_string(), "interface": v.interface,
            "sentinel_master": verdict.master.as_ref().map(|r| format!("{}:{}", r.host, r.port)),
            "config_epoch": verdict.master.as_ref().map(|r| r.epoch),
            "answered": verdict.answered, "sentinels_total": verdict.total,
            "master_is_local": master_local, "vip_held": held,
            "presence": format!("{pres:?}"), "pending": action.map(|a| format!("{a:?}")),
            "agree": agree, "sentinels": sentinels,
        }));
    }
    if as_json {
        println!("{}", serde_json::to_string_pretty(&rows)?);
    } else {
        for r in &rows {
            println!(
                "{} {} master={} epoch={} answered={}/{} local={} held={} {}",
                r["master"].as_str().unwrap_or(""),
                r["vip"].as_str().unwrap_or(""),
                r["sentinel_master"].as_str().unwrap_or("unknown"),
                r["config_epoch"],
                r["answered"],
                r["sentinels_total"],
                r["master_is_local"],
                r["vip_held"],
                if r["agree"].as_bool() == Some(true) {
                    "OK"
                } else {
                    "DISAGREE"
                }
            );
            for s in r["sentinels"].as_array().into_iter().flatten() {
                println!("    {s}");
            }
        }
    }
    if all_agree {
        Ok(())
    } else {
        Err(anyhow!(
            "status: Sentinels, this host and the VIP do not all agree"
        ))
    }
}

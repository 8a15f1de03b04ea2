//! `check`: the config, the interfaces, the Sentinels, which path a hook
//! takes on this host (the watcher's socket, or its own capabilities), the
//! Sentinel units that run hooks here, and whether the running watcher
//! holds more than it needs. Prints one line per finding; non-zero on any
//! problem (a `warn` is not one). It only reads.

mod routed;
mod unit_file;
mod units;
mod watcher;

use std::path::Path;
use std::time::Duration;

use anyhow::{anyhow, Result};

use crate::config::{defaults, Config, Mode, VipConfig};
use crate::control::{client, Request};
use crate::decide::Presence;
use crate::engine::{announce_target, Engine};
use units::Level;

pub(super) async fn run(path: &Path) -> Result<()> {
    let mut bad = Vec::new();
    // Sentinel's user may not read the config (it may hold passwords):
    // the hook needs none of it to hand off, and neither does this part.
    let cfg = match Config::load_if_readable(path) {
        Ok(Ok(cfg)) => {
            println!(
                "ok   config: {} VIP(s), {} Sentinel(s)",
                cfg.vip.len(),
                cfg.sentinels.len()
            );
            Some(cfg)
        }
        Ok(Err(unreadable)) => {
            println!("note {unreadable}: the watcher's only (hooks hand off without it); the checks that need it are skipped");
            None
        }
        // An invalid config is the first thing to fix: exit 2, as for
        // every command that reads it.
        Err(e) => return Err(e),
    };
    hook_path(cfg.as_ref(), &mut bad).await;
    watcher::privileges(&crate::hook::control_socket(cfg.as_ref())).await;
    sentinel_units(cfg.as_ref(), &mut bad);
    let Some(cfg) = cfg else {
        return report(bad);
    };
    let engine = Engine::new(cfg)?;
    let names = engine.cfg.masters();
    let view = engine.gather(&names).await?;
    for v in &engine.cfg.vip {
        let link = view.snap.link(&v.interface);
        match link.map(|l| announce_target(v, l)) {
            Some(Ok(_)) => {
                println!("ok   interface {} for {}", v.interface, v.master)
            }
            Some(Err(why)) => bad.push(why),
            None => bad.push(format!(
                "interface {} (for {}) does not exist",
                v.interface, v.master
            )),
        }
        if let Presence::Foreign(why) = view.presence(v) {
            bad.push(why);
        }
        let note = match v.mode() {
            Mode::Routed => Some(routed::note(v, link.is_some_and(|l| l.loopback))),
            Mode::L2 => link.and_then(|l| source_note(&view.snap.addrs, l.index, &view.local, v)),
        };
        if let Some(note) = note {
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
    report(bad)
}

/// The problems found, one FAIL line each; an error naming them all.
fn report(bad: Vec<String>) -> Result<()> {
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

/// An IPv4 VIP is never a source address only as a secondary: the kernel
/// makes it one only beside a primary address of the host's own on that
/// interface with the same subnet and prefix length (not another VIP).
/// `index` is the VIP's interface; `local`, the host's own addresses.
fn source_note(
    addrs: &[crate::netlink::Addr],
    index: u32,
    local: &std::collections::HashSet<std::net::IpAddr>,
    v: &crate::config::VipConfig,
) -> Option<String> {
    let std::net::IpAddr::V4(vip) = v.address.ip else {
        return None;
    };
    let mask = u32::MAX
        .checked_shl(32 - u32::from(v.address.prefix))
        .unwrap_or(0);
    let same_subnet = addrs.iter().any(|a| match a.ip {
        std::net::IpAddr::V4(ip) => {
            a.index == index
                && !a.secondary
                && a.prefix == v.address.prefix
                && local.contains(&a.ip)
                && ip != vip
                && u32::from(ip) & mask == u32::from(vip) & mask
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
/// socket if a watcher answers, else its own capabilities (with a
/// readable config).
async fn hook_path(cfg: Option<&Config>, bad: &mut Vec<String>) {
    // Without a readable config, assume an l2 VIP: the stricter answer.
    let frames = cfg.is_none_or(|c| c.vip.iter().any(VipConfig::sends_frames));
    let missing = crate::caps::missing(frames);
    let needs: Vec<&str> = crate::caps::needed(frames)
        .iter()
        .map(|(_, n)| *n)
        .collect();
    let needs = needs.join(" and ");
    let socket = crate::hook::control_socket(cfg);
    let sock = socket.display();
    let ping = client::request(&socket, &Request::Ping {}, Duration::from_secs(2)).await;
    match (ping, missing.is_empty() && cfg.is_some()) {
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
            "ok   hook: {f} on {sock}; the hook acts itself with {needs}"
        ),
        (Err(f), false) if !missing.is_empty() => bad.push(format!(
            "hook: {f} on {sock} and this process lacks {}: hooks exit 1 until the watcher runs",
            missing.join(" and ")
        )),
        (Err(f), false) => bad.push(format!(
            "hook: {f} on {sock} and this user cannot read the config: hooks exit 1 until the watcher runs"
        )),
    }
}

/// The Sentinel units on this host, as the watcher configured here (or
/// by default) would serve their hooks.
fn sentinel_units(cfg: Option<&Config>, bad: &mut Vec<String>) {
    let default_users = defaults::CONTROL_USERS.map(String::from);
    let socket = crate::hook::control_socket(cfg);
    let hook = std::env::current_exe()
        .and_then(std::fs::canonicalize)
        .unwrap_or_else(|_| "/usr/lib/sentinel-vip/sentinel-vip".into());
    let w = units::Watcher {
        socket: &socket,
        users: cfg.map_or(&default_users[..], |c| &c.control_socket_users),
        group: cfg.and_then(|c| c.control_socket_group.as_deref()),
        masters: cfg.map(Config::masters),
        hook,
    };
    for (level, text) in units::findings(&w) {
        match level {
            Level::Ok => println!("ok   {text}"),
            Level::Note => println!("note {text}"),
            Level::Fail => bad.push(text),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::source_note;
    use crate::config::Config;
    use crate::netlink::Addr;

    #[test]
    fn a_vip_needs_a_primary_of_the_same_subnet_and_prefix() {
        let cfg = Config::parse(
            "[[vip]]\nmaster = \"m\"\naddress = \"192.0.2.100/24\"\ninterface = \"eth0\"\n\
             [[vip]]\nmaster = \"n\"\naddress = \"192.0.2.101/24\"\ninterface = \"eth0\"\n",
        )
        .unwrap();
        let v = &cfg.vip[0];
        let note = |addrs: &[Addr]| {
            let local = crate::engine::local_addrs(addrs, &cfg);
            source_note(addrs, 2, &local, v).is_some()
        };
        assert!(note(&[]), "no address of its own");
        // One address of the host's: what, address, prefix, link (the
        // VIP's is 2), secondary; and whether `check` notes the VIP could
        // become a source address.
        let rows = [
            ("own /24 primary", "192.0.2.11", 24, 2, false, false),
            // The kernel would make the VIP the /24's primary.
            ("own /16 only", "192.0.2.11", 16, 2, false, true),
            ("/24 on link 3", "192.0.2.11", 24, 3, false, true),
            ("/24 secondary", "192.0.2.11", 24, 2, true, true),
            ("another VIP", "192.0.2.101", 24, 2, false, true),
            ("another subnet", "198.18.0.11", 24, 2, false, true),
        ];
        for (what, ip, prefix, link, secondary, noted) in rows {
            let own = Addr::new_for_test(link, ip, prefix, secondary, None);
            assert_eq!(note(&[own]), noted, "{what}");
        }
    }
}

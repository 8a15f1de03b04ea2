//! `vip add`, `vip del`, `vip show`: an operator's hands on the address,
//! like `ip addr add` + `arping -A`, `ip addr del`, `ip addr show`, with
//! the same refusals as the passes (never the host's own address).

use std::fmt;
use std::path::{Path, PathBuf};

use anyhow::Result;
use serde::Serialize;

use crate::announce::{Sender, Target};
use crate::cli::VipCommand;
use crate::config::{check_label, valid_ifname, Cidr, Config};
use crate::error::permanent;
use crate::netlink::{Change, Link, Netlink, Snapshot};
use crate::{lock, owned};

/// One line of `vip show`.
#[derive(Debug, Serialize)]
struct VipRow {
    address: String,
    interface: Option<String>,
    label: Option<String>,
    added_by_sentinel_vip: bool,
    master: Option<String>,
}

impl fmt::Display for VipRow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} dev {}",
            self.address,
            self.interface.as_deref().unwrap_or("?")
        )?;
        if let Some(m) = &self.master {
            write!(f, " master {m}")?;
        }
        if !self.added_by_sentinel_vip {
            f.write_str(" (not tagged by sentinel-vip)")?;
        }
        Ok(())
    }
}

pub(super) async fn run(cmd: VipCommand, cfg: Option<Config>) -> Result<()> {
    let nl = Netlink::connect()?;
    let lock_file = cfg.as_ref().map_or_else(
        || PathBuf::from(crate::config::defaults::LOCK_FILE),
        |c| c.lock_file.clone(),
    );
    let record = owned::path_for(&lock_file);
    // Changes take the host lock, as passes do (the record is written
    // under it); `show` only reads. Without the capability to change
    // anything, that is the error, not the lock's.
    let _lock = match cmd {
        VipCommand::Show(_) => None,
        _ if crate::caps::missing(false).contains(&"CAP_NET_ADMIN") => {
            return Err(permanent("vip: needs CAP_NET_ADMIN to change addresses"));
        }
        _ => Some(lock::acquire(&lock_file).await?),
    };
    let mut snap = nl.snapshot().await?;
    owned::mark(&mut snap.addrs, &owned::load(&record));
    match cmd {
        VipCommand::Add {
            cidr,
            dev,
            label,
            no_announce,
        } => {
            let hands = Hands {
                nl: &nl,
                snap: &snap,
                record: &record,
            };
            add(hands, cfg, &cidr, &dev, label, no_announce).await
        }
        VipCommand::Del { cidr, dev, force } => {
            let hands = Hands {
                nl: &nl,
                snap: &snap,
                record: &record,
            };
            del(hands, &cidr, &dev, force).await
        }
        VipCommand::Show(j) => {
            show(&snap, cfg.as_ref(), j.json);
            Ok(())
        }
    }
}

/// What `add` and `del` work with: the netlink socket, the dump taken
/// under the lock, the ownership record.
struct Hands<'a> {
    nl: &'a Netlink,
    snap: &'a Snapshot,
    record: &'a Path,
}

fn parse_cidr(s: &str) -> Result<Cidr> {
    s.parse().map_err(|e: String| permanent(e))
}

fn link_of<'a>(snap: &'a Snapshot, dev: &str) -> Result<&'a Link> {
    snap.link(dev)
        .ok_or_else(|| permanent(format!("interface {dev} does not exist")))
}

async fn add(
    h: Hands<'_>,
    cfg: Option<Config>,
    cidr: &str,
    dev: &str,
    label: Option<String>,
    no_announce: bool,
) -> Result<()> {
    let vip = parse_cidr(cidr)?;
    if !valid_ifname(dev) {
        return Err(permanent(format!(
            "`{}` is not an interface name",
            dev.escape_debug()
        )));
    }
    if let Some(l) = &label {
        check_label(l, dev, vip.ip).map_err(permanent)?;
    }
    let (nl, snap) = (h.nl, h.snap);
    let link = link_of(snap, dev)?;
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
        Some(Sender::open()?)
    };
    // Likewise an interface with nothing to announce from (a VIP for a
    // routing daemon on `lo` or a tun device is added with --no-announce).
    let mac = match (&sender, link.ethernet()) {
        (Some(_), None) => {
            return Err(permanent(format!(
                "{dev} has no Ethernet address to announce from; pass --no-announce (a routing daemon announces a VIP there)"
            )))
        }
        (_, mac) => mac,
    };
    let change = nl.add(vip, link.index, label.as_deref()).await?;
    if change == Change::Made {
        owned::added_or_undo(nl, h.record, vip, link.index).await?;
    }
    let said = match change {
        Change::Made => "added",
        Change::AlreadyInPlace => "already present",
    };
    println!("{vip} on {dev}: {said}");
    if let (Some(sender), Some(mac)) = (sender, mac) {
        let a = cfg.map(|c| c.announce).unwrap_or_default();
        let t = Target {
            ifindex: link.index,
            ifname: dev.to_string(),
            mac,
            ip: vip.ip,
        };
        super::announce::rounds(&sender, &t, a.count, a.interval).await?;
    }
    Ok(())
}

async fn del(h: Hands<'_>, cidr: &str, dev: &str, force: bool) -> Result<()> {
    let (nl, snap) = (h.nl, h.snap);
    let vip = parse_cidr(cidr)?;
    let link = link_of(snap, dev)?;
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
    let said = match nl.del(vip, link.index).await? {
        Change::Made => "deleted",
        Change::AlreadyInPlace => "already absent",
    };
    owned::forget(h.record, vip.ip);
    println!("{vip} on {dev}: {said}");
    Ok(())
}

/// Every address sentinel-vip tagged, and every configured VIP found.
fn show(snap: &Snapshot, cfg: Option<&Config>, json: bool) {
    let configured = |ip| cfg.and_then(|c| c.vip.iter().find(|v| v.address.ip == ip));
    let rows: Vec<VipRow> = snap
        .addrs
        .iter()
        .filter(|a| a.ours() || configured(a.ip).is_some())
        .map(|a| VipRow {
            address: format!("{}/{}", a.ip, a.prefix),
            interface: snap.link_by_index(a.index).map(|l| l.name.clone()),
            label: a.label.clone(),
            added_by_sentinel_vip: a.ours(),
            master: configured(a.ip).map(|v| v.master.clone()),
        })
        .collect();
    if json {
        println!("{}", serde_json::to_string(&rows).expect("plain data"));
    } else if rows.is_empty() {
        println!("no VIPs held");
    } else {
        for r in rows {
            println!("{r}");
        }
    }
}

//! `announce`: gratuitous ARP or unsolicited NA rounds for an address this
//! host holds, like `arping -A`. Never for an address held elsewhere: that
//! would steal its clients.

use std::time::Duration;

use anyhow::{anyhow, Result};

use crate::announce::{Sender, Target};
use crate::config::Config;
use crate::error::permanent;
use crate::netlink::Netlink;

pub(super) async fn run(
    addr: &str,
    dev: &str,
    cfg: Option<Config>,
    count: Option<u32>,
    interval_ms: Option<u64>,
) -> Result<()> {
    let a = cfg.map(|c| c.announce).unwrap_or_default();
    let count = count.unwrap_or(a.count);
    let interval = interval_ms.map_or(a.interval, Duration::from_millis);
    let ip = addr
        .split('/')
        .next()
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| permanent(format!("`{}` is not an IP address", addr.escape_debug())))?;
    if count == 0 || interval.is_zero() {
        return Err(permanent("--count and --interval-ms must be positive"));
    }
    let nl = Netlink::connect()?;
    let snap = nl.snapshot().await?;
    let link = snap
        .link(dev)
        .ok_or_else(|| permanent(format!("interface {dev} does not exist")))?;
    if !snap
        .addrs
        .iter()
        .any(|x| x.ip == ip && x.index == link.index)
    {
        return Err(permanent(format!(
            "{ip} is not on {dev}; announce only addresses this host holds"
        )));
    }
    let mac = link.ethernet().ok_or_else(|| {
        permanent(format!(
            "{dev} has no Ethernet address: no ARP/NA can be sent there (a routing daemon announces a VIP on it)"
        ))
    })?;
    let sender = Sender::open()?;
    let t = Target {
        ifindex: link.index,
        ifname: dev.to_string(),
        mac,
        ip,
    };
    rounds(&sender, &t, count, interval).await?;
    println!("announced {ip} on {dev} ({count} rounds)");
    Ok(())
}

/// `count` rounds for `t`, `interval` apart (also `vip add`'s).
pub(super) async fn rounds(s: &Sender, t: &Target, count: u32, interval: Duration) -> Result<()> {
    for i in 0..count {
        if i > 0 {
            tokio::time::sleep(interval).await;
        }
        s.send_round(t)
            .map_err(|e| anyhow!("announce {} on {}: {e}", t.ip, t.ifname))?;
    }
    Ok(())
}

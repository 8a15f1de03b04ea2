//! One reconcile pass, shared by the hook, `reconcile` and the watcher:
//! gather the view (Sentinel answers, one netlink dump), ask [`decide`],
//! apply the action. Policy lives in `decide`; this module only plumbs.

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::time::{Duration, Instant};

use anyhow::{anyhow, Result};
use tracing::{info, warn};

use std::sync::OnceLock;

use crate::announce::{Sender, Target};
use crate::config::{Config, VipConfig};
use crate::decide::{announce_again, decide, Action, Master, Presence, View};
use crate::error::permanent;
use crate::hookargs::Host;
use crate::netlink::{Addr, Done, Netlink, Snapshot};
use crate::sentinel::{verdict, Answer, Sentinels, Verdict};

/// Pure: how the VIP is present in the snapshot.
pub fn presence(s: &Snapshot, vip: &VipConfig) -> Presence {
    let ifindex = s.link(&vip.interface).map(|l| l.index);
    let mut held = false;
    for a in s.addrs.iter().filter(|a| a.ip == vip.address.ip) {
        let ifname = s.link_by_index(a.index).map_or("?", |l| l.name.as_str());
        if Some(a.index) != ifindex || a.prefix != vip.address.prefix {
            return Presence::Foreign(format!(
                "{}/{} is on {ifname}, not the configured {} on {}; remove it by hand",
                a.ip, a.prefix, vip.address, vip.interface
            ));
        }
        if !a.ours() && !a.secondary {
            return Presence::Foreign(format!(
                "{} on {ifname} is a primary address sentinel-vip did not add (the host's own?); refusing to manage it",
                vip.address
            ));
        }
        held = true;
    }
    if held {
        Presence::Held
    } else {
        Presence::Absent
    }
}

/// Pure: this host's addresses on every interface, never counting a VIP.
pub fn local_addrs(addrs: &[Addr], cfg: &Config) -> HashSet<IpAddr> {
    let vips: HashSet<IpAddr> = cfg.vip.iter().map(|v| v.address.ip).collect();
    addrs
        .iter()
        .map(|a| a.ip)
        .filter(|ip| !vips.contains(ip))
        .collect()
}

/// Resolves a Sentinel-style address (`announce-hostnames` gives names).
pub async fn resolve(host: &Host) -> Result<Vec<IpAddr>> {
    match host {
        Host::Ip(ip) => Ok(vec![*ip]),
        Host::Name(n) => {
            let ips: Vec<IpAddr> = tokio::net::lookup_host((n.as_str(), 0))
                .await
                .map_err(|e| anyhow!("resolve {n}: {e}"))?
                .map(|sa| sa.ip())
                .collect();
            if ips.is_empty() {
                Err(anyhow!("resolve {n}: no addresses"))
            } else {
                Ok(ips)
            }
        }
    }
}

/// Whether `converge` sends the first announcement round itself.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Announce {
    /// Also for a VIP already held (the hook and `reconcile`: an operator
    /// or a late retry expects clients to be pointed here again).
    Always,
    OnAcquire,
    /// The caller schedules announcements (the watcher).
    Never,
}

/// The outcome for one VIP, for logs and `status`.
#[derive(Debug)]
pub struct Outcome {
    pub master: String,
    pub action: Action,
    pub done: Option<Done>,
    /// Set when the VIP is held after the pass: the caller may announce more.
    pub target: Option<Target>,
}

pub struct Engine {
    pub cfg: Config,
    pub nl: Netlink,
    pub sentinels: Sentinels,
    /// Opened on first use (it needs CAP_NET_RAW, `status` does not) and
    /// kept: closing an AF_PACKET socket costs an RCU grace period.
    packet: OnceLock<Sender>,
}

impl Engine {
    pub fn new(cfg: Config) -> Result<Engine> {
        let sentinels = Sentinels::new(&cfg)?;
        Ok(Engine {
            nl: Netlink::connect()?,
            sentinels,
            cfg,
            packet: OnceLock::new(),
        })
    }

    /// Sends one announcement round for `t`.
    pub fn announce(&self, t: &Target) -> Result<()> {
        let sender = match self.packet.get() {
            Some(s) => s,
            None => {
                let s = Sender::open().map_err(|e| permanent(e.to_string()))?;
                self.packet.get_or_init(|| s)
            }
        };
        sender
            .send_round(t)
            .map_err(|e| anyhow!("announce {} on {}: {e}", t.ip, t.ifname))
    }

    /// Asks all Sentinels about `names` and turns each verdict into a
    /// [`Master`]. `lost_for` is the caller's measure of silence (watch).
    pub async fn masters(
        &self,
        names: &[&str],
    ) -> (Vec<Answer>, HashMap<String, (Verdict, Master)>) {
        let answers = self.sentinels.ask(names).await;
        let mut out = HashMap::new();
        for n in names {
            let v = verdict(&answers, n);
            let m = match &v.master {
                Some(r) => match resolve(&r.host).await {
                    Ok(ips) => Master::Known(ips),
                    Err(e) => {
                        warn!(master = %n, error = %e, "cannot resolve the master Sentinel names");
                        Master::Unknown { lost_for_ms: None }
                    }
                },
                None => Master::Unknown { lost_for_ms: None },
            };
            out.insert(n.to_string(), (v, m));
        }
        (answers, out)
    }

    /// Decides and applies for one VIP against `snap` (`local` is
    /// [`local_addrs`] of it, computed once per pass, not once per VIP).
    pub async fn converge(
        &self,
        snap: &Snapshot,
        local: &HashSet<IpAddr>,
        vip: &VipConfig,
        master: &Master,
        announce: Announce,
    ) -> Result<Outcome> {
        let pres = presence(snap, vip);
        let action = decide(&View {
            vip: vip.address.ip,
            master,
            local,
            presence: &pres,
            on_sentinel_loss: self.cfg.on_sentinel_loss,
            sentinel_loss_after_ms: self.cfg.sentinel_loss_after_ms,
        });
        let link = snap.link(&vip.interface);
        let mut out = Outcome {
            master: vip.master.clone(),
            action: action.clone(),
            done: None,
            target: None,
        };
        if !matches!(action, Action::Nothing | Action::Refuse(_)) {
            // Fail before touching anything: adding a VIP we then cannot
            // announce would leave clients pointing at the old holder.
            let missing = crate::caps::missing();
            if !missing.is_empty() {
                return Err(permanent(format!(
                    "{}: would {action:?} {} but lacks {}",
                    vip.master,
                    vip.address,
                    missing.join(" and ")
                )));
            }
        }
        match &action {
            Action::Refuse(why) => return Err(permanent(format!("{}: {why}", vip.master))),
            Action::Nothing => {}
            Action::Acquire | Action::Keep => {
                let link = link.ok_or_else(|| {
                    anyhow!("{}: interface {} does not exist", vip.master, vip.interface)
                })?;
                let mac = link.mac.ok_or_else(|| {
                    permanent(format!("interface {} has no Ethernet address", link.name))
                })?;
                if action == Action::Acquire {
                    out.done = Some(
                        self.nl
                            .add(vip.address, link.index, vip.label.as_deref())
                            .await?,
                    );
                }
                let t = Target {
                    ifindex: link.index,
                    ifname: link.name.clone(),
                    mac,
                    ip: vip.address.ip,
                };
                if announce == Announce::Always
                    || (announce == Announce::OnAcquire && action == Action::Acquire)
                {
                    self.announce(&t)?;
                }
                out.target = Some(t);
            }
            Action::Release => {
                // Presence was Held, so the interface exists in the snapshot.
                let index = link
                    .map(|l| l.index)
                    .ok_or_else(|| anyhow!("interface {} vanished", vip.interface))?;
                out.done = Some(self.nl.del(vip.address, index).await?);
            }
        }
        Ok(out)
    }

    /// The remaining announcement rounds of a one-shot run, for every VIP
    /// it holds, `announce.interval_ms` apart. Before each round, one
    /// address dump and one Sentinel question for all of them (never one
    /// per VIP); a VIP gets the round only if [`announce_again`] allows,
    /// and once refused it gets no more.
    pub async fn announce_repeats(&self, held: &[(&VipConfig, Target)], rounds: u32) {
        let interval = Duration::from_millis(self.cfg.announce.interval_ms);
        let mut held: Vec<&(&VipConfig, Target)> = held.iter().collect();
        for _ in 0..rounds {
            if held.is_empty() {
                return;
            }
            tokio::time::sleep(interval).await;
            let names: Vec<&str> = held.iter().map(|(v, _)| v.master.as_str()).collect();
            // With no Sentinels configured every master is Unknown at once.
            let ((_, masters), addrs) = tokio::join!(self.masters(&names), self.nl.addrs());
            let addrs = match addrs {
                Ok(a) => a,
                Err(e) => {
                    warn!(error = %e, "cannot check the VIPs before announcing; stopping");
                    return;
                }
            };
            let local = local_addrs(&addrs, &self.cfg);
            held.retain(|(vip, t)| {
                let present = addrs.iter().any(|a| a.ip == t.ip && a.index == t.ifindex);
                let master = &masters[&vip.master].1;
                let again = announce_again(present, master, &local);
                if !again {
                    info!(vip = %t.ip, present, sentinel = ?master, "VIP no longer ours to announce; stopping");
                }
                again
            });
            for (_, t) in &held {
                if let Err(e) = self.announce(t) {
                    warn!(vip = %t.ip, error = %e, "announce failed");
                }
            }
        }
    }
}

/// Milliseconds since `t`, for logs.
pub fn ms(t: Instant) -> f64 {
    t.elapsed().as_secs_f64() * 1e3
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::netlink::{Addr, Link, ADDR_PROTO};

    fn cfg() -> Config {
        Config::parse(
            "[[vip]]\nmaster = \"m\"\naddress = \"192.0.2.100/24\"\ninterface = \"eth0\"\n",
        )
        .unwrap()
    }

    fn addr(index: u32, ip: &str, prefix: u8, secondary: bool, proto: Option<u8>) -> Addr {
        Addr {
            index,
            ip: ip.parse().unwrap(),
            prefix,
            secondary,
            label: None,
            proto,
        }
    }

    fn snap(addrs: Vec<Addr>) -> Snapshot {
        let link = |index, name: &str| Link {
            index,
            name: name.into(),
            mac: Some([2, 0, 0, 0, 0, index as u8]),
            up: true,
        };
        Snapshot {
            links: vec![link(1, "lo"), link(2, "eth0"), link(3, "eth1")],
            addrs,
        }
    }

    #[test]
    fn presence_cases() {
        let c = cfg();
        let v = &c.vip[0];
        let host = addr(2, "192.0.2.11", 24, false, None);
        let cases = vec![
            (vec![host.clone()], "absent"),
            (
                vec![
                    host.clone(),
                    addr(2, "192.0.2.100", 24, true, Some(ADDR_PROTO)),
                ],
                "held",
            ),
            (
                vec![
                    host.clone(),
                    addr(2, "192.0.2.100", 24, false, Some(ADDR_PROTO)),
                ],
                "held",
            ),
            // Added by an older shell recipe: secondary, untagged.
            (
                vec![host.clone(), addr(2, "192.0.2.100", 24, true, None)],
                "held",
            ),
            // The host's own primary address: never ours.
            (vec![addr(2, "192.0.2.100", 24, false, None)], "foreign"),
            (
                vec![
                    host.clone(),
                    addr(2, "192.0.2.100", 32, true, Some(ADDR_PROTO)),
                ],
                "foreign",
            ),
            (
                vec![
                    host.clone(),
                    addr(3, "192.0.2.100", 24, true, Some(ADDR_PROTO)),
                ],
                "foreign",
            ),
        ];
        for (i, (a, want)) in cases.into_iter().enumerate() {
            let got = match presence(&snap(a), v) {
                Presence::Absent => "absent",
                Presence::Held => "held",
                Presence::Foreign(_) => "foreign",
            };
            assert_eq!(got, want, "case {i}");
        }
    }

    #[test]
    fn local_addresses_skip_vips() {
        let s = snap(vec![
            addr(2, "192.0.2.11", 24, false, None),
            addr(2, "192.0.2.100", 24, true, Some(ADDR_PROTO)),
        ]);
        let l = local_addrs(&s.addrs, &cfg());
        assert!(l.contains(&"192.0.2.11".parse().unwrap()));
        assert!(!l.contains(&"192.0.2.100".parse().unwrap()));
    }
}

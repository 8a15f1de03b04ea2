//! What a pass sees, and the pure readings of it: how a VIP is present,
//! which addresses are this host's own, what [`decide`] says for a VIP.
//! No I/O: a `View` is data gathered by the engine.

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;

use crate::announce::Target;
use crate::config::{Config, Mode, VipConfig};
use crate::decide::{decide, unfit, Action, Facts, Master, Presence};
use crate::hookargs::Host;
use crate::netlink::{Addr, Link, Snapshot};
use crate::resolve::ResolveError;
use crate::sentinel::{Answer, Verdict};

/// One pass's view of the world.
#[derive(Debug)]
pub struct View {
    /// Each configured Sentinel's answer, in config order.
    pub answers: Vec<Answer>,
    /// Per master asked about: the combined verdict and, resolved, where
    /// the master is.
    pub masters: HashMap<String, (Verdict, Master)>,
    /// Masters the Sentinels named by a host name that did not resolve,
    /// and why (logged by [`Engine::gather`](super::Engine::gather)); each
    /// is `Master::Unknown` above.
    pub unresolved: Vec<(String, ResolveError)>,
    /// This host's links and addresses, one dump.
    pub snap: Snapshot,
    /// This host's own addresses, never counting a VIP.
    pub local: HashSet<IpAddr>,
}

impl View {
    /// The verdict and resolved master for `name` (asked about, or the
    /// empty verdict when it was not).
    pub fn master(&self, name: &str) -> (Verdict, Master) {
        self.masters.get(name).cloned().unwrap_or_else(|| {
            let v = crate::sentinel::verdict(&self.answers, name);
            (v, Master::Unknown { lost_for: None })
        })
    }

    /// Why the master `name` the Sentinels named did not resolve, if so.
    pub fn unresolved(&self, name: &str) -> Option<&ResolveError> {
        self.unresolved
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, e)| e)
    }

    /// How `vip` is present in this view.
    pub fn presence(&self, vip: &VipConfig) -> Presence {
        presence(&self.snap, vip)
    }

    /// What to do for `vip` if its master is `master`.
    pub fn decide(&self, cfg: &Config, vip: &VipConfig, master: &Master) -> Action {
        decide(&Facts {
            vip: vip.address.ip,
            master,
            local: &self.local,
            presence: &self.presence(vip),
            would_be_primary: would_be_primary(&self.snap, vip, cfg).as_deref(),
            on_sentinel_loss: cfg.on_sentinel_loss,
            sentinel_loss_after: cfg.sentinel_loss_after,
        })
    }
}

/// How the VIP is present in the snapshot.
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

/// Why adding `vip` now would make it its subnet's primary address on its
/// interface, if it would. The kernel makes a new IPv4 address a secondary
/// only beside a primary of the same prefix length and subnet on the same
/// interface; that primary must be the host's own, not another VIP (when
/// a primary goes, its secondaries go with it unless `promote_secondaries`
/// is set). A /32 is never a secondary (its subnet is itself: the routed
/// form, alone by design), and IPv6 has no primaries (IPv6 VIPs are added
/// deprecated, never a source).
pub fn would_be_primary(s: &Snapshot, vip: &VipConfig, cfg: &Config) -> Option<String> {
    let (IpAddr::V4(v4), prefix) = (vip.address.ip, vip.address.prefix) else {
        return None;
    };
    // A missing interface is apply's to report.
    let link = s.link(&vip.interface)?;
    if prefix >= 32 {
        return None;
    }
    let mask = u32::MAX << (32 - u32::from(prefix));
    let net = u32::from(v4) & mask;
    let beside = s.addrs.iter().any(|a| {
        a.index == link.index
            && !a.secondary
            && a.prefix == prefix
            && !cfg.is_vip(a.ip)
            && matches!(a.ip, IpAddr::V4(h) if u32::from(h) & mask == net)
    });
    (!beside).then(|| {
        format!(
            "no host address in {}/{prefix} on {} yet: the VIP would become its primary (the host's source address); waiting for the host's own",
            std::net::Ipv4Addr::from(net),
            vip.interface
        )
    })
}

/// What announces `vip`, held on `link`: gratuitous ARP / unsolicited NA
/// from the link's MAC (`l2`), or no frame at all (`routed`: the routing
/// daemon announces the host route while the address is there). An `l2`
/// VIP on a link that cannot send frames (the loopback, a tun device) is
/// refused with the fix: its clients would never hear of it.
pub fn announce_target(vip: &VipConfig, link: &Link) -> Result<Option<Target>, String> {
    match vip.mode() {
        Mode::Routed => Ok(None),
        Mode::L2 => match link.ethernet() {
            Some(mac) => Ok(Some(Target {
                ifindex: link.index,
                ifname: link.name.clone(),
                mac,
                ip: vip.address.ip,
            })),
            None => Err(format!(
                "interface {} has no Ethernet address: gratuitous ARP/NA cannot announce {} there; set mode = \"routed\" for a routing daemon to announce it",
                link.name, vip.address
            )),
        },
    }
}

/// Where the master is, from the address Sentinel names for it and what
/// that resolved to.
pub fn placed(named: &Host, ips: Vec<IpAddr>) -> Master {
    match unfit(named) {
        Some(why) => Master::Unfit(why),
        None => Master::Known(ips),
    }
}

/// This host's addresses on every interface, never counting a VIP.
pub fn local_addrs(addrs: &[Addr], cfg: &Config) -> HashSet<IpAddr> {
    addrs
        .iter()
        .map(|a| a.ip)
        .filter(|ip| !cfg.is_vip(*ip))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::netlink::{Link, ADDR_PROTO};

    fn cfg() -> Config {
        Config::parse(
            "[[vip]]\nmaster = \"m\"\naddress = \"192.0.2.100/24\"\ninterface = \"eth0\"\n",
        )
        .unwrap()
    }

    fn addr(index: u32, ip: &str, prefix: u8, secondary: bool, proto: Option<u8>) -> Addr {
        Addr::new_for_test(index, ip, prefix, secondary, proto)
    }

    fn recorded(mut a: Addr) -> Addr {
        a.recorded = true;
        a
    }

    fn snap(addrs: Vec<Addr>) -> Snapshot {
        let link = |index, name: &str| Link {
            index,
            name: name.into(),
            mac: Some([2, 0, 0, 0, 0, index as u8]),
            up: true,
            loopback: index == 1,
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
        let ours = Some(ADDR_PROTO);
        #[rustfmt::skip]
        let cases = vec![
            (vec![host.clone()], "absent"),
            (vec![host.clone(), addr(2, "192.0.2.100", 24, true, ours)], "held"),
            (vec![host.clone(), addr(2, "192.0.2.100", 24, false, ours)], "held"),
            // Added by an older shell recipe: secondary, untagged.
            (vec![host.clone(), addr(2, "192.0.2.100", 24, true, None)], "held"),
            // The host's own primary address: never ours.
            (vec![addr(2, "192.0.2.100", 24, false, None)], "foreign"),
            // A kernel that dropped the tag: the ownership record vouches.
            (vec![recorded(addr(2, "192.0.2.100", 24, false, None))], "held"),
            (vec![host.clone(), addr(2, "192.0.2.100", 32, true, ours)], "foreign"),
            (vec![host.clone(), addr(3, "192.0.2.100", 24, true, ours)], "foreign"),
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

    fn view_of(c: &Config, addrs: Vec<Addr>) -> View {
        let s = snap(addrs);
        View {
            answers: vec![],
            masters: HashMap::new(),
            unresolved: vec![],
            local: local_addrs(&s.addrs, c),
            snap: s,
        }
    }

    /// Issue 22, defect 7: an address no single host can claim (every
    /// host has 127.0.0.1) is refused on every host, not taken by all.
    #[test]
    fn a_master_address_every_host_has_is_refused() {
        let c = cfg();
        let view = view_of(
            &c,
            vec![
                addr(1, "127.0.0.1", 8, false, None),
                addr(1, "127.0.1.1", 8, false, None),
                addr(1, "::1", 128, false, None),
                addr(2, "192.0.2.11", 24, false, None),
            ],
        );
        let ip = |h: &str| h.parse::<IpAddr>().unwrap();
        #[rustfmt::skip]
        let rows: Vec<(&str, Vec<IpAddr>, &str)> = vec![
            ("127.0.0.1", vec![ip("127.0.0.1")], "refuse"),
            ("::1", vec![ip("::1")], "refuse"),
            ("::ffff:127.0.0.1", vec![ip("::ffff:127.0.0.1")], "refuse"),
            ("0.0.0.0", vec![ip("0.0.0.0")], "refuse"),
            ("169.254.0.11", vec![ip("169.254.0.11")], "refuse"),
            ("fe80::11", vec![ip("fe80::11")], "refuse"),
            ("localhost", vec![ip("127.0.0.1"), ip("::1")], "refuse"),
            ("redis.localhost", vec![ip("127.0.0.1")], "refuse"),
            ("192.0.2.11", vec![ip("192.0.2.11")], "acquire"),
            ("192.0.2.12", vec![ip("192.0.2.12")], "nothing"),
            // Debian's /etc/hosts names the host itself 127.0.1.1: with
            // announce-hostnames, the master's own name resolves there.
            ("redis1", vec![ip("127.0.1.1")], "acquire"),
        ];
        for (named, ips, want) in rows {
            let master = placed(&Host::parse(named).unwrap(), ips);
            let got = match view.decide(&c, &c.vip[0], &master) {
                Action::Refuse(why) => {
                    assert!(
                        why.contains(named) && why.contains("replica-announce-ip"),
                        "{why}"
                    );
                    "refuse"
                }
                Action::Acquire => "acquire",
                Action::Nothing => "nothing",
                a => panic!("{named}: {a:?}"),
            };
            assert_eq!(got, want, "Sentinel names {named}");
        }
    }

    /// Issue 22, defect 6: on a multi-homed host whose VIP interface was
    /// flushed, the master is local through another interface; an IPv4
    /// VIP added now would be the subnet's primary (the source address,
    /// and deleting it later takes secondaries with it), so the pass waits
    /// for the host's own address. A /32 (routed) or IPv6 VIP never is a
    /// secondary and is added at once.
    #[test]
    fn an_ipv4_vip_is_added_only_beside_the_hosts_own_address() {
        let text = "[[vip]]\nmaster = \"m\"\naddress = \"192.0.2.100/24\"\ninterface = \"eth0\"\n\
                    [[vip]]\nmaster = \"m\"\naddress = \"192.0.2.101/32\"\ninterface = \"eth0\"\n\
                    [[vip]]\nmaster = \"m\"\naddress = \"2001:2::100/64\"\ninterface = \"eth0\"\n\
                    [[vip]]\nmaster = \"m\"\naddress = \"192.0.2.102/24\"\ninterface = \"eth0\"\n";
        let c = Config::parse(text).unwrap();
        let on_eth1 = addr(3, "198.51.100.11", 24, false, None);
        let here = Master::Known(vec!["198.51.100.11".parse().unwrap()]);
        let got = |addrs: Vec<Addr>, vip: usize| match view_of(&c, addrs).decide(
            &c,
            &c.vip[vip],
            &here,
        ) {
            Action::Acquire => "acquire".to_string(),
            a => format!("{a:?}"),
        };
        #[rustfmt::skip]
        let rows: Vec<(Vec<Addr>, usize, &str)> = vec![
            // eth0 flushed: wait for the host's address.
            (vec![on_eth1.clone()], 0, "Wait"),
            (vec![on_eth1.clone(), addr(2, "192.0.2.11", 24, false, None)], 0, "acquire"),
            // Another prefix, another subnet or a secondary: the VIP would
            // still be a primary.
            (vec![on_eth1.clone(), addr(2, "192.0.2.11", 25, false, None)], 0, "Wait"),
            (vec![on_eth1.clone(), addr(2, "192.0.3.11", 24, false, None)], 0, "Wait"),
            (vec![on_eth1.clone(), addr(3, "192.0.2.11", 24, false, None)], 0, "Wait"),
            // Another VIP is no host address: when it goes, its
            // secondaries would go with it.
            (vec![on_eth1.clone(), addr(2, "192.0.2.102", 24, false, Some(ADDR_PROTO))], 0, "Wait"),
            // A /32 and an IPv6 VIP: alone by design.
            (vec![on_eth1.clone()], 1, "acquire"),
            (vec![on_eth1.clone()], 2, "acquire"),
        ];
        for (i, (addrs, vip, want)) in rows.into_iter().enumerate() {
            let g = got(addrs, vip);
            assert!(g.starts_with(want), "row {i}: {g}, want {want}");
        }
    }

    /// Issue 19: a routed VIP gets no frame; an l2 one gets them from its
    /// link's MAC, and is refused on a link that has none to send from.
    #[test]
    fn which_frames_announce_a_vip() {
        let c = Config::parse(
            "[[vip]]\nmaster = \"m\"\naddress = \"192.0.2.100/24\"\ninterface = \"eth0\"\n\
             [[vip]]\nmaster = \"m\"\naddress = \"203.0.113.100/32\"\ninterface = \"lo\"\n\
             [[vip]]\nmaster = \"m\"\naddress = \"203.0.113.101/32\"\ninterface = \"eth0\"\nmode = \"routed\"\n\
             [[vip]]\nmaster = \"m\"\naddress = \"192.0.2.101/24\"\ninterface = \"tun0\"\n",
        )
        .unwrap();
        let s = snap(vec![]);
        let tun = Link {
            index: 4,
            name: "tun0".into(),
            mac: None,
            up: true,
            loopback: false,
        };
        let lo_zero_mac = Link {
            mac: Some([0; 6]),
            ..s.link("lo").unwrap().clone()
        };
        let eth0 = s.link("eth0").unwrap();
        let got = announce_target(&c.vip[0], eth0).unwrap().unwrap();
        assert_eq!((got.ifindex, got.mac), (2, [2, 0, 0, 0, 0, 2]));
        assert_eq!(announce_target(&c.vip[1], &lo_zero_mac), Ok(None));
        assert_eq!(announce_target(&c.vip[2], eth0), Ok(None));
        let e = announce_target(&c.vip[3], &tun).unwrap_err();
        assert!(e.contains("mode = \"routed\""), "{e}");
        // An l2 VIP the config could not tell was on a loopback (the
        // interface renamed): still no frame from an all-zero MAC.
        let lo_l2 = VipConfig {
            interface: "lo".into(),
            mode_key: Some(Mode::L2),
            ..c.vip[0].clone()
        };
        assert!(announce_target(&lo_l2, &lo_zero_mac).is_err());
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

    #[test]
    fn the_view_decides_per_vip() {
        let c = cfg();
        let s = snap(vec![addr(2, "192.0.2.11", 24, false, None)]);
        let view = View {
            answers: vec![],
            masters: HashMap::new(),
            unresolved: vec![],
            local: local_addrs(&s.addrs, &c),
            snap: s,
        };
        let here = Master::Known(vec!["192.0.2.11".parse().unwrap()]);
        let there = Master::Known(vec!["192.0.2.12".parse().unwrap()]);
        assert_eq!(view.decide(&c, &c.vip[0], &here), Action::Acquire);
        assert_eq!(view.decide(&c, &c.vip[0], &there), Action::Nothing);
        let (v, m) = view.master("m");
        assert_eq!(
            (v.answered, v.total, m),
            (0, 0, Master::Unknown { lost_for: None })
        );
    }
}

//! How a VIP reaches its clients once it is on the master's host: `l2`,
//! gratuitous ARP / unsolicited NA on a shared segment, or `routed`, a
//! host route the host's routing daemon (BIRD, FRR) announces while the
//! address is there. The key, its default and its validation; pure, it
//! never looks at the host.

use std::fmt;

use serde::Deserialize;

use super::Cidr;

/// The interface every Linux network namespace has, and the only one a
/// name alone says cannot carry ARP or NA.
pub const LOOPBACK: &str = "lo";

/// `[[vip]] mode`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Announced with gratuitous ARP (IPv4) or unsolicited neighbour
    /// advertisements (IPv6) out of its interface.
    L2,
    /// Announced by the host's routing daemon as a host route; sentinel-vip
    /// sends no frame for it.
    Routed,
}

impl Mode {
    /// Its spelling in the config, in metrics labels and in `status`.
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::L2 => "l2",
            Mode::Routed => "routed",
        }
    }

    /// The mode of a VIP on `interface` that names none: `routed` on the
    /// loopback interface (it cannot send a frame), `l2` elsewhere. A
    /// dummy interface has a MAC, but an ARP sent there reaches nobody:
    /// it needs `mode = "routed"` spelt out, as the README says.
    pub fn default_for(interface: &str) -> Mode {
        if interface == LOOPBACK {
            Mode::Routed
        } else {
            Mode::L2
        }
    }
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why `mode` cannot serve `address` on `interface`, if it cannot: an
/// `l2` VIP on the loopback interface could never be announced, and a
/// routed VIP must be a host prefix (/32, /128). A shorter prefix on `lo`
/// makes the whole subnet local to the host (the kernel adds a `local`
/// route for it there), and a routing daemon exporting the address's
/// network would announce the subnet from every host that ever held it.
pub fn check_mode(mode: Mode, address: Cidr, interface: &str) -> Result<(), String> {
    let host = if address.ip.is_ipv4() { 32 } else { 128 };
    match mode {
        Mode::L2 if interface == LOOPBACK => Err(format!(
            "`l2` on {LOOPBACK}: the loopback interface sends no ARP or NA; use mode = \"routed\" and let the routing daemon announce it"
        )),
        Mode::Routed if address.prefix != host => Err(format!(
            "`routed` needs a host prefix: {address} must be {}/{host} (a shorter prefix would announce, and make local, the whole subnet)",
            address.ip
        )),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_checks() {
        assert_eq!(Mode::default_for("lo"), Mode::Routed);
        assert_eq!(Mode::default_for("eth0"), Mode::L2);
        assert_eq!(Mode::default_for("dummy0"), Mode::L2);
        let c = |s: &str| s.parse::<Cidr>().unwrap();
        #[rustfmt::skip]
        let rows = [
            (Mode::Routed, "203.0.113.100/32", "lo", None),
            (Mode::Routed, "2001:2::100/128", "lo", None),
            (Mode::Routed, "203.0.113.100/32", "dummy0", None),
            (Mode::Routed, "203.0.113.100/32", "eth0", None),
            (Mode::Routed, "203.0.113.100/24", "lo", Some("host prefix")),
            (Mode::Routed, "2001:2::100/64", "dummy0", Some("2001:2::100/128")),
            (Mode::L2, "192.0.2.100/24", "eth0", None),
            (Mode::L2, "192.0.2.100/32", "eth0", None),
            (Mode::L2, "203.0.113.100/32", "lo", Some("sends no ARP or NA")),
        ];
        for (mode, addr, ifname, want) in rows {
            match (check_mode(mode, c(addr), ifname), want) {
                (Ok(()), None) => {}
                (Err(e), Some(w)) => assert!(e.contains(w) && !e.contains('\n'), "{e}"),
                (got, _) => panic!("{mode} {addr} on {ifname}: {got:?}"),
            }
        }
    }
}

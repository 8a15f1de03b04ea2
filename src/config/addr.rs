//! The values in a config that name things on the network: a VIP with its
//! prefix, a Sentinel endpoint, an interface name, an address label. Pure
//! parsing and validation; nothing here looks at the host.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr};
use std::str::FromStr;

use serde::Deserialize;

use crate::hookargs::valid_hostname;

/// An address with its prefix length, as `ip addr add` takes it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Cidr {
    pub ip: IpAddr,
    pub prefix: u8,
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.ip, self.prefix)
    }
}

impl FromStr for Cidr {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let (ip, prefix) = s
            .split_once('/')
            .ok_or_else(|| format!("address `{s}` needs a prefix length, like 192.0.2.100/24"))?;
        let ip: IpAddr = ip
            .parse()
            .map_err(|_| format!("address `{s}`: `{ip}` is not an IP address"))?;
        let max = if ip.is_ipv4() { 32 } else { 128 };
        let prefix: u8 = match prefix.parse() {
            Ok(p) if p <= max && !prefix.starts_with('+') => p,
            _ => return Err(format!("address `{s}`: prefix length must be 0..={max}")),
        };
        let usable = match ip {
            IpAddr::V4(v4) => {
                let net_or_brd = prefix < 31 && {
                    let host_mask = u32::MAX >> prefix;
                    let bits = u32::from(v4) & host_mask;
                    bits == 0 || bits == host_mask
                };
                !(v4.is_unspecified()
                    || v4.is_loopback()
                    || v4.is_multicast()
                    || v4.is_broadcast()
                    || net_or_brd)
            }
            // Link-local VIPs would need a scope; they cannot follow a master.
            IpAddr::V6(v6) => {
                !(v6.is_unspecified()
                    || v6.is_loopback()
                    || v6.is_multicast()
                    || (v6.segments()[0] & 0xffc0) == 0xfe80)
            }
        };
        if !usable {
            return Err(format!(
                "address `{s}` cannot be a VIP (network, broadcast, loopback, multicast, link-local or unspecified)"
            ));
        }
        Ok(Cidr { ip, prefix })
    }
}

impl<'de> Deserialize<'de> for Cidr {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// A Sentinel to ask: `host:port` or `[v6]:port`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Endpoint {
    pub host: String,
    pub port: u16,
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

impl FromStr for Endpoint {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || format!("sentinel `{s}` must be host:port or [ipv6]:port");
        let (host, port) = if let Some(rest) = s.strip_prefix('[') {
            let (h, p) = rest.split_once("]:").ok_or_else(bad)?;
            h.parse::<std::net::Ipv6Addr>().map_err(|_| bad())?;
            (h, p)
        } else {
            let (h, p) = s.rsplit_once(':').ok_or_else(bad)?;
            if h.parse::<Ipv4Addr>().is_err() && !valid_hostname(h) {
                return Err(bad());
            }
            (h, p)
        };
        let port = crate::hookargs::parse_port(port).ok_or_else(bad)?;
        Ok(Endpoint {
            host: host.to_string(),
            port,
        })
    }
}

impl<'de> Deserialize<'de> for Endpoint {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// Linux interface names: 1..=15 bytes, no `/`, `:` or white space.
pub fn valid_ifname(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 15
        && s != "."
        && s != ".."
        && s.chars()
            .all(|c| c.is_ascii_graphic() && c != '/' && c != ':')
}

/// IPv4 labels follow iproute2's rule (start with the device name) so that
/// `ip addr show label eth0:vip` finds them; IPv6 has no labels.
pub fn check_label(label: &str, ifname: &str, ip: IpAddr) -> Result<(), String> {
    if ip.is_ipv6() {
        return Err(format!("label `{label}`: IPv6 addresses have no labels"));
    }
    if label.len() > 15
        || !label.starts_with(ifname)
        || !label.chars().all(|c| c.is_ascii_graphic())
    {
        return Err(format!(
            "label `{}` must be at most 15 printable characters and start with the interface name `{ifname}`",
            label.escape_debug()
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cidrs() {
        let c: Cidr = "192.0.2.100/24".parse().unwrap();
        assert_eq!((c.to_string().as_str(), c.prefix), ("192.0.2.100/24", 24));
        assert_eq!("2001:2::100/64".parse::<Cidr>().unwrap().prefix, 64);
        for (bad, why) in [
            ("192.0.2.100", "needs a prefix length"),
            ("192.0.2.300/24", "not an IP address"),
            ("192.0.2.100/33", "prefix length must be 0..=32"),
            ("192.0.2.100/+24", "prefix length"),
            ("192.0.2.0/24", "cannot be a VIP"),
            ("192.0.2.255/24", "cannot be a VIP"),
            ("127.0.0.2/8", "cannot be a VIP"),
            ("224.0.0.1/24", "cannot be a VIP"),
            ("fe80::1/64", "cannot be a VIP"),
            ("::/0", "cannot be a VIP"),
        ] {
            let e = bad.parse::<Cidr>().unwrap_err();
            assert!(e.contains(why), "{bad}: {e}");
        }
        // /31 and /32 have no network or broadcast address.
        assert!("192.0.2.0/31".parse::<Cidr>().is_ok());
    }

    #[test]
    fn endpoints() {
        let e: Endpoint = "[2001:2::1]:26379".parse().unwrap();
        assert_eq!((e.host.as_str(), e.port), ("2001:2::1", 26379));
        assert_eq!(e.to_string(), "[2001:2::1]:26379");
        assert_eq!(
            "s1.example:1".parse::<Endpoint>().unwrap().host,
            "s1.example"
        );
        for bad in [
            "192.0.2.1",
            "192.0.2.1:0",
            "bad host:1",
            "[::1:1",
            "[nope]:1",
            "::1:26379",
        ] {
            assert!(bad.parse::<Endpoint>().is_err(), "{bad}");
        }
    }

    #[test]
    fn names_and_labels() {
        assert!(valid_ifname("eth0") && valid_ifname("br-lan.10"));
        for bad in [
            "",
            ".",
            "..",
            "eth0 x",
            "a/b",
            "a:b",
            "averyveryverylongname",
        ] {
            assert!(!valid_ifname(bad), "{bad:?}");
        }
        let v4: IpAddr = "192.0.2.100".parse().unwrap();
        assert!(check_label("eth0:vip", "eth0", v4).is_ok());
        assert!(check_label("wlan0:x", "eth0", v4).is_err());
        assert!(check_label("eth0:vip", "eth0", "2001:2::1".parse().unwrap()).is_err());
    }
}

//! `ip link show` and `ip addr show`: the dumps a pass reads.

use anyhow::{Context, Result};
use futures::TryStreamExt;
use rtnetlink::packet_route::address::{AddressAttribute, AddressFlags, AddressMessage};
use rtnetlink::packet_route::link::{LinkAttribute, LinkFlags};

use super::{Addr, Link, Netlink, Snapshot};

impl Netlink {
    /// `ip link show` and `ip addr show`, in two dumps. One after the
    /// other: the kernel runs one dump at a time per socket (EBUSY).
    pub async fn snapshot(&self) -> Result<Snapshot> {
        let links = self.links().await?;
        let addrs = self.addrs().await?;
        Ok(Snapshot { links, addrs })
    }

    /// `ip link show`.
    pub async fn links(&self) -> Result<Vec<Link>> {
        let mut out = Vec::new();
        let mut s = self.handle.link().get().execute();
        while let Some(m) = s.try_next().await.context("netlink link dump")? {
            let mut link = Link {
                index: m.header.index,
                name: String::new(),
                mac: None,
                up: m.header.flags.contains(LinkFlags::Up),
                loopback: m.header.flags.contains(LinkFlags::Loopback),
            };
            for a in m.attributes {
                match a {
                    LinkAttribute::IfName(n) => link.name = n,
                    LinkAttribute::Address(b) if b.len() == 6 => {
                        link.mac = Some(b.try_into().expect("6 bytes"))
                    }
                    _ => {}
                }
            }
            out.push(link);
        }
        Ok(out)
    }

    /// `ip addr show dev IF to VIP`: the address `vip` on interface
    /// `index`, as the kernel has it now (after an add, to read back what
    /// it kept).
    pub async fn addr(&self, vip: crate::config::Cidr, index: u32) -> Result<Option<Addr>> {
        let mut s = self
            .handle
            .address()
            .get()
            .set_link_index_filter(index)
            .execute();
        // The whole dump, read to its end: one left half-read would make
        // the socket's next dump fail with EBUSY.
        let mut found = None;
        while let Some(m) = s.try_next().await.context("netlink address dump")? {
            if let Some(a) = parse_addr(&m).filter(|a| a.ip == vip.ip && a.prefix == vip.prefix) {
                found = Some(a);
            }
        }
        Ok(found)
    }

    /// `ip addr show`.
    pub async fn addrs(&self) -> Result<Vec<Addr>> {
        let mut out = Vec::new();
        let mut s = self.handle.address().get().execute();
        while let Some(m) = s.try_next().await.context("netlink address dump")? {
            if let Some(a) = parse_addr(&m) {
                out.push(a);
            }
        }
        Ok(out)
    }
}

pub(super) fn parse_addr(m: &AddressMessage) -> Option<Addr> {
    let mut ip = None;
    let mut local = None;
    let mut label = None;
    let mut proto = None;
    let mut cstamp = None;
    let mut flags = u32::from(m.header.flags.bits());
    for a in &m.attributes {
        match a {
            AddressAttribute::Address(x) => ip = Some(*x),
            AddressAttribute::Local(x) => local = Some(*x),
            AddressAttribute::Label(l) => label = Some(l.clone()),
            AddressAttribute::Protocol(p) => proto = Some(u8::from(*p)),
            AddressAttribute::CacheInfo(c) => cstamp = Some(c.cstamp),
            AddressAttribute::Flags(f) => flags = f.bits(),
            _ => {}
        }
    }
    // For IPv4 IFA_LOCAL is the address itself (IFA_ADDRESS is the peer on
    // point-to-point links); IPv6 sends only IFA_ADDRESS.
    Some(Addr {
        index: m.header.index,
        ip: local.or(ip)?,
        prefix: m.header.prefix_len,
        secondary: flags & AddressFlags::Secondary.bits() != 0,
        label,
        proto,
        cstamp,
        recorded: false,
    })
}

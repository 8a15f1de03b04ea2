//! Address and link work through rtnetlink: dumps, add, delete, and the
//! kernel's address/link event stream. It never decides anything and never
//! deletes an address it was not handed exactly (address, prefix, index).

use std::net::IpAddr;

use anyhow::{Context, Result};
use futures::{Stream, StreamExt, TryStreamExt};
use rtnetlink::packet_core::NetlinkMessage;
use rtnetlink::packet_route::address::{
    AddressAttribute, AddressFlags, AddressHeaderFlags, AddressMessage, AddressProtocol,
};
use rtnetlink::packet_route::link::{LinkAttribute, LinkFlags};
use rtnetlink::packet_route::RouteNetlinkMessage;
use rtnetlink::{Handle, MulticastGroup};

use crate::config::Cidr;
use crate::error::permanent;

/// The `proto` we tag our VIPs with (`ip addr show` prints it), so that an
/// address the host had itself is never mistaken for a VIP we added.
pub const ADDR_PROTO: u8 = 0x56;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Link {
    pub index: u32,
    pub name: String,
    pub mac: Option<[u8; 6]>,
    pub up: bool,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Addr {
    pub index: u32,
    pub ip: IpAddr,
    pub prefix: u8,
    pub secondary: bool,
    pub label: Option<String>,
    pub proto: Option<u8>,
}

impl Addr {
    pub fn ours(&self) -> bool {
        self.proto == Some(ADDR_PROTO)
    }
}

/// Both dumps a reconcile pass needs, taken once for all VIPs.
#[derive(Clone, Debug, Default)]
pub struct Snapshot {
    pub links: Vec<Link>,
    pub addrs: Vec<Addr>,
}

impl Snapshot {
    pub fn link(&self, name: &str) -> Option<&Link> {
        self.links.iter().find(|l| l.name == name)
    }
    pub fn link_by_index(&self, index: u32) -> Option<&Link> {
        self.links.iter().find(|l| l.index == index)
    }
}

/// Outcome of an idempotent change.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Done {
    Changed,
    AlreadyDone,
}

#[derive(Clone)]
pub struct Netlink {
    handle: Handle,
}

impl Netlink {
    /// Opens a NETLINK_ROUTE socket; its driver runs on the current runtime.
    pub fn connect() -> Result<Netlink> {
        let (conn, handle, _) = rtnetlink::new_connection().context("netlink socket")?;
        tokio::spawn(conn);
        Ok(Netlink { handle })
    }

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

    /// `ip addr add VIP dev IF [label L] proto 0x56` (plus `nodad` for IPv6,
    /// so the address is usable at once instead of after ~1 s of DAD).
    pub async fn add(&self, vip: Cidr, index: u32, label: Option<&str>) -> Result<Done> {
        let mut req = self.handle.address().add(index, vip.ip, vip.prefix);
        let msg = req.message_mut();
        msg.attributes
            .push(AddressAttribute::Protocol(AddressProtocol::from(
                ADDR_PROTO,
            )));
        if let Some(l) = label {
            msg.attributes.push(AddressAttribute::Label(l.to_string()));
        }
        if vip.ip.is_ipv6() {
            msg.header.flags |= AddressHeaderFlags::Nodad;
            msg.attributes
                .push(AddressAttribute::Flags(AddressFlags::Nodad));
        }
        idempotent(req.execute().await, libc::EEXIST, || format!("add {vip}"))
    }

    /// `ip addr del VIP dev IF`: the kernel matches address, prefix and
    /// interface, so nothing else can go with it.
    pub async fn del(&self, vip: Cidr, index: u32) -> Result<Done> {
        let msg = match vip.ip {
            IpAddr::V4(a) => rtnetlink::AddressMessageBuilder::<std::net::Ipv4Addr>::new()
                .index(index)
                .address(a, vip.prefix)
                .build(),
            IpAddr::V6(a) => rtnetlink::AddressMessageBuilder::<std::net::Ipv6Addr>::new()
                .index(index)
                .address(a, vip.prefix)
                .build(),
        };
        idempotent(
            self.handle.address().del(msg).execute().await,
            libc::EADDRNOTAVAIL,
            || format!("delete {vip}"),
        )
    }
}

fn idempotent(
    r: Result<(), rtnetlink::Error>,
    already: i32,
    what: impl Fn() -> String,
) -> Result<Done> {
    match r {
        Ok(()) => Ok(Done::Changed),
        Err(rtnetlink::Error::NetlinkError(e)) => {
            let errno = e.code.map_or(0, |c| -c.get());
            if errno == already {
                Ok(Done::AlreadyDone)
            } else if errno == libc::EPERM || errno == libc::EACCES {
                Err(permanent(format!(
                    "{}: operation not permitted (needs CAP_NET_ADMIN)",
                    what()
                )))
            } else {
                Err(anyhow::anyhow!(
                    "{}: {}",
                    what(),
                    std::io::Error::from_raw_os_error(errno)
                ))
            }
        }
        Err(e) => Err(anyhow::anyhow!("{}: {e}", what())),
    }
}

fn parse_addr(m: &AddressMessage) -> Option<Addr> {
    let mut ip = None;
    let mut local = None;
    let mut label = None;
    let mut proto = None;
    let mut flags = u32::from(m.header.flags.bits());
    for a in &m.attributes {
        match a {
            AddressAttribute::Address(x) => ip = Some(*x),
            AddressAttribute::Local(x) => local = Some(*x),
            AddressAttribute::Label(l) => label = Some(l.clone()),
            AddressAttribute::Protocol(p) => proto = Some(u8::from(*p)),
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
    })
}

/// What the kernel tells about addresses and links, for the watcher.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    AddrRemoved(IpAddr),
    AddrAdded(IpAddr),
    Link,
}

/// `ip monitor address link`: a stream of kernel events.
pub fn monitor() -> Result<impl Stream<Item = Event>> {
    let (conn, _handle, messages) = rtnetlink::new_multicast_connection(&[
        MulticastGroup::Link,
        MulticastGroup::Ipv4Ifaddr,
        MulticastGroup::Ipv6Ifaddr,
    ])
    .context("netlink monitor socket")?;
    tokio::spawn(conn);
    Ok(
        messages.filter_map(|(m, _): (NetlinkMessage<RouteNetlinkMessage>, _)| {
            use rtnetlink::packet_core::NetlinkPayload::InnerMessage;
            let e = match m.payload {
                InnerMessage(RouteNetlinkMessage::DelAddress(a)) => {
                    parse_addr(&a).map(|a| Event::AddrRemoved(a.ip))
                }
                InnerMessage(RouteNetlinkMessage::NewAddress(a)) => {
                    parse_addr(&a).map(|a| Event::AddrAdded(a.ip))
                }
                InnerMessage(RouteNetlinkMessage::NewLink(_))
                | InnerMessage(RouteNetlinkMessage::DelLink(_)) => Some(Event::Link),
                _ => None,
            };
            futures::future::ready(e)
        }),
    )
}

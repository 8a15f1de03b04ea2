//! `ip monitor address link`: the kernel's events, for the watcher.

use std::net::IpAddr;

use anyhow::{Context, Result};
use futures::{Stream, StreamExt};
use rtnetlink::packet_core::NetlinkMessage;
use rtnetlink::packet_route::RouteNetlinkMessage;
use rtnetlink::MulticastGroup;

use super::dump::parse_addr;

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

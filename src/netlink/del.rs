//! `ip addr del`: exactly the address, prefix and interface given.

use std::net::IpAddr;

use anyhow::Result;

use super::{idempotent, Change, Netlink};
use crate::config::Cidr;

impl Netlink {
    /// `ip addr del VIP dev IF`: the kernel matches address, prefix and
    /// interface, so nothing else can go with it.
    pub async fn del(&self, vip: Cidr, index: u32) -> Result<Change> {
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

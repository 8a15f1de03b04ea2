//! `ip addr add`: the VIP, tagged as ours.

use anyhow::Result;
use rtnetlink::packet_route::address::{
    AddressAttribute, AddressFlags, AddressHeaderFlags, AddressProtocol,
};

use super::{idempotent, Change, Netlink, ADDR_PROTO};
use crate::config::Cidr;

impl Netlink {
    /// `ip addr add VIP dev IF [label L] proto 0x56` (plus `nodad` for IPv6,
    /// so the address is usable at once instead of after ~1 s of DAD).
    pub async fn add(&self, vip: Cidr, index: u32, label: Option<&str>) -> Result<Change> {
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
}

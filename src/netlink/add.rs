//! `ip addr add`: the VIP, tagged as ours, and never a source address.

use anyhow::Result;
use rtnetlink::packet_route::address::{
    AddressAttribute, AddressFlags, AddressHeaderFlags, AddressProtocol, AddressScope, CacheInfo,
};

use super::{idempotent, Change, Netlink, ADDR_PROTO};
use crate::config::Cidr;

impl Netlink {
    /// `ip addr add VIP dev IF [label L] proto 0x56`, plus for IPv6
    /// `nodad preferred_lft 0`: usable at once instead of after ~1 s of
    /// DAD, and deprecated, so that the kernel never picks it as the source
    /// of the host's own connections (RFC 6724 rule 3), which would make
    /// replication, Sentinel's hellos or a cluster see the VIP as this
    /// host's address and follow it when it moves. It still takes
    /// connections. An IPv4 VIP needs nothing: added beside the host's own
    /// address in its subnet it is a secondary, and the kernel chooses
    /// sources among primaries (`check` warns when it would be a primary).
    ///
    /// Scope global (`RT_SCOPE_UNIVERSE`), on every interface, `lo`
    /// included: the kernel keeps an IPv4 address's scope as the request
    /// gives it (only `ip` itself picks `host` for 127.0.0.0/8), and a
    /// routing daemon may skip host- and link-scope addresses. Spelt out
    /// here rather than left to the message's default.
    pub async fn add(&self, vip: Cidr, index: u32, label: Option<&str>) -> Result<Change> {
        let mut req = self.handle.address().add(index, vip.ip, vip.prefix);
        let msg = req.message_mut();
        msg.header.scope = AddressScope::Universe;
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
            let mut life = CacheInfo::default();
            life.ifa_preferred = 0;
            life.ifa_valid = u32::MAX; // forever
            msg.attributes.push(AddressAttribute::CacheInfo(life));
        }
        idempotent(req.execute().await, libc::EEXIST, || format!("add {vip}"))
    }
}

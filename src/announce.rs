//! Gratuitous ARP and unsolicited neighbour advertisement: building the
//! frames (pure) and sending one round through an AF_PACKET socket. It
//! never decides whether this host should announce; callers do.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use pnet_base::MacAddr;
use pnet_packet::arp::{ArpHardwareTypes, ArpOperation, ArpOperations, MutableArpPacket};
use pnet_packet::ethernet::{EtherTypes, EthernetPacket, MutableEthernetPacket};
use pnet_packet::icmpv6::ndp::{MutableNeighborAdvertPacket, NdpOptionTypes, NeighborAdvertFlags};
use pnet_packet::icmpv6::{checksum as icmpv6_checksum, Icmpv6Packet, Icmpv6Types};
use pnet_packet::ip::IpNextHeaderProtocols;
use pnet_packet::ipv6::MutableIpv6Packet;
use socket2::{Domain, SockAddr, SockAddrStorage, Socket, Type};

const ETH: usize = 14;
const ARP: usize = 28;
const IP6: usize = 40;
const NA: usize = 24 + 8; // advertisement + target link-layer address option

/// What to announce and from where.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    pub ifindex: u32,
    pub ifname: String,
    pub mac: [u8; 6],
    pub ip: IpAddr,
}

/// The frames of one announcement round. IPv4: an ARP request and an ARP
/// reply (some devices accept only one form); IPv6: one unsolicited NA.
pub fn round(t: &Target) -> Vec<Vec<u8>> {
    match t.ip {
        IpAddr::V4(ip) => vec![
            garp(t.mac, ip, ArpOperations::Request),
            garp(t.mac, ip, ArpOperations::Reply),
        ],
        IpAddr::V6(ip) => vec![unsolicited_na(t.mac, ip)],
    }
}

/// Sender and target are both the VIP: Linux treats that as gratuitous and
/// skips `locktime` for it. For the reply form the kernel also wants the
/// target hardware address equal to the sender's (as `arping -A` sends it);
/// the request form leaves it zero (RFC 5227 announcement).
pub fn garp(mac: [u8; 6], ip: Ipv4Addr, op: ArpOperation) -> Vec<u8> {
    let mut buf = vec![0u8; ETH + ARP];
    let src = MacAddr::from(mac);
    {
        let mut eth = MutableEthernetPacket::new(&mut buf).expect("ethernet size");
        eth.set_destination(MacAddr::broadcast());
        eth.set_source(src);
        eth.set_ethertype(EtherTypes::Arp);
    }
    let mut arp = MutableArpPacket::new(&mut buf[ETH..]).expect("arp size");
    arp.set_hardware_type(ArpHardwareTypes::Ethernet);
    arp.set_protocol_type(EtherTypes::Ipv4);
    arp.set_hw_addr_len(6);
    arp.set_proto_addr_len(4);
    arp.set_operation(op);
    arp.set_sender_hw_addr(src);
    arp.set_sender_proto_addr(ip);
    arp.set_target_hw_addr(if op == ArpOperations::Reply {
        src
    } else {
        MacAddr::zero()
    });
    arp.set_target_proto_addr(ip);
    buf
}

/// An unsolicited neighbour advertisement to all nodes, Override set and
/// Solicited clear (RFC 4861 7.2.6), so existing entries take the new MAC.
pub fn unsolicited_na(mac: [u8; 6], ip: Ipv6Addr) -> Vec<u8> {
    let all_nodes = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1);
    let mut buf = vec![0u8; ETH + IP6 + NA];
    let src = MacAddr::from(mac);
    {
        let mut eth = MutableEthernetPacket::new(&mut buf).expect("ethernet size");
        eth.set_destination(MacAddr::new(0x33, 0x33, 0, 0, 0, 1));
        eth.set_source(src);
        eth.set_ethertype(EtherTypes::Ipv6);
    }
    {
        let mut ip6 = MutableIpv6Packet::new(&mut buf[ETH..]).expect("ipv6 size");
        ip6.set_version(6);
        ip6.set_payload_length(NA as u16);
        ip6.set_next_header(IpNextHeaderProtocols::Icmpv6);
        // Receivers drop neighbour discovery that may have crossed a router.
        ip6.set_hop_limit(255);
        ip6.set_source(ip);
        ip6.set_destination(all_nodes);
    }
    {
        let mut na = MutableNeighborAdvertPacket::new(&mut buf[ETH + IP6..]).expect("na size");
        na.set_icmpv6_type(Icmpv6Types::NeighborAdvert);
        na.set_flags(NeighborAdvertFlags::Override);
        na.set_target_addr(ip);
    }
    // Target link-layer address option: type 2, length 1 (8 octets), MAC.
    let opt = ETH + IP6 + 24;
    buf[opt] = NdpOptionTypes::TargetLLAddr.0;
    buf[opt + 1] = 1;
    buf[opt + 2..opt + 8].copy_from_slice(&mac);
    let sum = icmpv6_checksum(
        &Icmpv6Packet::new(&buf[ETH + IP6..]).expect("icmpv6 size"),
        &ip,
        &all_nodes,
    );
    buf[ETH + IP6 + 2..ETH + IP6 + 4].copy_from_slice(&sum.to_be_bytes());
    buf
}

/// An AF_PACKET socket for sending announcements on any interface.
///
/// Opened with protocol 0 and never bound, so the kernel delivers no frames
/// to it: it can stay open for the life of the process at no cost. Keeping
/// it open matters, because closing any AF_PACKET socket waits for an RCU
/// grace period (milliseconds) in `packet_release`.
pub struct Sender {
    sock: Socket,
}

impl Sender {
    /// Needs CAP_NET_RAW: without it the error is permanent (a retry has
    /// no more privilege), any other failure transient.
    pub fn open() -> anyhow::Result<Sender> {
        match Socket::new(Domain::PACKET, Type::RAW, None) {
            Ok(sock) => Ok(Sender { sock }),
            Err(e) if e.kind() == io::ErrorKind::PermissionDenied => Err(crate::error::permanent(
                "AF_PACKET socket: operation not permitted (needs CAP_NET_RAW)",
            )),
            Err(e) => Err(anyhow::anyhow!("AF_PACKET socket: {e}")),
        }
    }

    /// Sends one round (see [`round`]) out of the target's interface.
    pub fn send_round(&self, t: &Target) -> io::Result<()> {
        for f in round(t) {
            let eth = EthernetPacket::new(&f).expect("built above");
            let to = link_addr(
                t.ifindex,
                eth.get_ethertype().0,
                eth.get_destination().octets(),
            );
            self.sock.send_to(&f, &to)?;
        }
        Ok(())
    }
}

/// `struct sockaddr_ll` naming the interface, EtherType and destination.
fn link_addr(ifindex: u32, ethertype: u16, dst: [u8; 6]) -> SockAddr {
    let mut storage = SockAddrStorage::zeroed();
    // SAFETY: sockaddr_ll is one of this platform's sockaddr types and fits
    // in the storage; every field is plain data.
    unsafe {
        let ll = storage.view_as::<libc::sockaddr_ll>();
        ll.sll_family = libc::AF_PACKET as u16;
        ll.sll_protocol = ethertype.to_be();
        ll.sll_ifindex = ifindex as i32;
        ll.sll_halen = 6;
        ll.sll_addr[..6].copy_from_slice(&dst);
        SockAddr::new(
            storage,
            std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pnet_packet::arp::ArpPacket;
    use pnet_packet::icmpv6::ndp::NeighborAdvertPacket;
    use pnet_packet::ipv6::Ipv6Packet;
    use pnet_packet::Packet;

    const MAC: [u8; 6] = [0x02, 0x00, 0x5e, 0x10, 0x20, 0x30];

    #[test]
    fn garp_request_and_reply_fields() {
        let ip: Ipv4Addr = "192.0.2.100".parse().unwrap();
        let t = Target {
            ifindex: 2,
            ifname: "eth0".into(),
            mac: MAC,
            ip: ip.into(),
        };
        let frames = round(&t);
        assert_eq!(frames.len(), 2);
        for (f, op) in frames
            .iter()
            .zip([ArpOperations::Request, ArpOperations::Reply])
        {
            assert_eq!(f.len(), 42);
            let eth = EthernetPacket::new(f).unwrap();
            assert_eq!(eth.get_destination(), MacAddr::broadcast());
            assert_eq!(eth.get_source(), MacAddr::from(MAC));
            assert_eq!(eth.get_ethertype(), EtherTypes::Arp);
            let arp = ArpPacket::new(eth.payload()).unwrap();
            assert_eq!(arp.get_hardware_type(), ArpHardwareTypes::Ethernet);
            assert_eq!(arp.get_protocol_type(), EtherTypes::Ipv4);
            assert_eq!((arp.get_hw_addr_len(), arp.get_proto_addr_len()), (6, 4));
            assert_eq!(arp.get_operation(), op);
            assert_eq!(arp.get_sender_hw_addr(), MacAddr::from(MAC));
            assert_eq!(arp.get_sender_proto_addr(), ip);
            assert_eq!(arp.get_target_proto_addr(), ip);
            let tha = if op == ArpOperations::Reply {
                MacAddr::from(MAC)
            } else {
                MacAddr::zero()
            };
            assert_eq!(arp.get_target_hw_addr(), tha);
        }
    }

    #[test]
    fn unsolicited_na_fields_and_checksum() {
        let ip: Ipv6Addr = "2001:db8::100".parse().unwrap();
        let f = unsolicited_na(MAC, ip);
        assert_eq!(f.len(), 86);
        let eth = EthernetPacket::new(&f).unwrap();
        assert_eq!(eth.get_destination(), MacAddr::new(0x33, 0x33, 0, 0, 0, 1));
        assert_eq!(eth.get_ethertype(), EtherTypes::Ipv6);
        let ip6 = Ipv6Packet::new(eth.payload()).unwrap();
        assert_eq!(ip6.get_version(), 6);
        assert_eq!(ip6.get_hop_limit(), 255);
        assert_eq!(ip6.get_next_header(), IpNextHeaderProtocols::Icmpv6);
        assert_eq!(ip6.get_payload_length(), 32);
        assert_eq!(ip6.get_source(), ip);
        assert_eq!(
            ip6.get_destination(),
            "ff02::1".parse::<Ipv6Addr>().unwrap()
        );
        let na = NeighborAdvertPacket::new(ip6.payload()).unwrap();
        assert_eq!(na.get_icmpv6_type(), Icmpv6Types::NeighborAdvert);
        assert_eq!(na.get_flags(), NeighborAdvertFlags::Override);
        assert_eq!(na.get_target_addr(), ip);
        let opts = na.get_options();
        assert_eq!(opts.len(), 1);
        assert_eq!(opts[0].option_type, NdpOptionTypes::TargetLLAddr);
        assert_eq!(opts[0].data, MAC.to_vec());
        let icmp = Icmpv6Packet::new(ip6.payload()).unwrap();
        let dst = ip6.get_destination();
        assert_eq!(icmpv6_checksum(&icmp, &ip, &dst), icmp.get_checksum());
        assert_ne!(icmp.get_checksum(), 0);
    }
}

//! `check`'s word on a routed VIP: that sentinel-vip sends no frame for
//! it, who announces it instead, and whether the kernel could make it a
//! source address. It only formats; it reads nothing.

use crate::config::VipConfig;

/// The note for routed VIP `v`; `on_loopback` when its interface is the
/// loopback. A note, never a problem: the routing daemon's config is not
/// sentinel-vip's to read.
pub(super) fn note(v: &VipConfig, on_loopback: bool) -> String {
    let mut s = format!(
        "{} on {} is routed: no gratuitous ARP/NA is sent for it; the host's routing daemon (BIRD `protocol direct`, FRR `redistribute connected`) must announce it while it is there, and only then (README: Routed networks)",
        v.address, v.interface
    );
    // The kernel picks an IPv4 source by route: from the outgoing
    // interface's own primary addresses first, from `lo` only when that
    // interface has none. A /32 on another interface is a primary of it,
    // and after a flush it may come back before the host's own address.
    if v.address.ip.is_ipv4() && !on_loopback {
        s.push_str(&format!(
            "; on {} the /32 is a primary address, which the kernel may pick as the source of connections leaving {}: `lo` or a dummy interface is safer",
            v.interface, v.interface
        ));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::note;
    use crate::config::Config;

    #[test]
    fn routed_vips_get_a_note_naming_the_daemon() {
        let c = Config::parse(
            "[[vip]]\nmaster = \"m\"\naddress = \"203.0.113.100/32\"\ninterface = \"lo\"\n\
             [[vip]]\nmaster = \"m\"\naddress = \"203.0.113.101/32\"\ninterface = \"eth0\"\nmode = \"routed\"\n",
        )
        .unwrap();
        let lo = note(&c.vip[0], true);
        assert!(
            lo.contains("no gratuitous ARP/NA") && !lo.contains("source"),
            "{lo}"
        );
        let eth = note(&c.vip[1], false);
        assert!(eth.contains("may pick as the source"), "{eth}");
    }
}

//! `sentinel_vip_mode_info`: per VIP, whether the watcher announces it
//! with gratuitous ARP/NA (`l2`) or leaves it to the routing daemon
//! (`routed`). Set from the config at start and on reload; it records,
//! never decides.

use prometheus_client::encoding::EncodeLabelSet;

use super::{Metrics, VipId};
use crate::config::Mode;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct ModeLabels {
    master: String,
    vip: String,
    interface: String,
    mode: &'static str,
}

impl Metrics {
    /// The VIPs configured now, with their modes: one series each, value
    /// 1; those of VIPs no longer configured (or whose mode changed) go.
    pub fn configure_modes(&self, vips: &[(VipId, Mode)]) {
        self.modes.clear();
        for (v, mode) in vips {
            let l = ModeLabels {
                master: v.master.clone(),
                vip: v.vip.to_string(),
                interface: v.interface.clone(),
                mode: mode.as_str(),
            };
            self.modes.get_or_create(&l).set(1);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_series_per_vip_naming_its_mode() {
        let m = Metrics::new();
        let a = VipId::new("m", "192.0.2.100".parse().unwrap(), "eth0");
        let b = VipId::new("m", "203.0.113.100".parse().unwrap(), "lo");
        m.configure_modes(&[(a.clone(), Mode::L2), (b, Mode::Routed)]);
        let text = m.encode();
        for want in [
            r#"sentinel_vip_mode_info{master="m",vip="192.0.2.100",interface="eth0",mode="l2"} 1"#,
            r#"sentinel_vip_mode_info{master="m",vip="203.0.113.100",interface="lo",mode="routed"} 1"#,
        ] {
            assert!(text.lines().any(|l| l == want), "{want} in\n{text}");
        }
        // A reload without the routed VIP drops its series.
        m.configure_modes(&[(a, Mode::L2)]);
        assert!(!m.encode().contains("mode=\"routed\""));
    }
}

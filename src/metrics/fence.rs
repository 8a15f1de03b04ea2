//! The fence's metrics (`on_sentinel_loss = "fence"`): per master, how
//! many Sentinels and how many replicas witness it now, and per VIP how
//! often the fence released it. Recording only; the fence decides.

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use super::{count, MasterLabels, Metrics, VipId, VipLabels};

#[derive(Debug, Default)]
pub(super) struct FenceMetrics {
    sentinels: Family<MasterLabels, Gauge>,
    replicas: Family<MasterLabels, Gauge>,
    releases: Family<VipLabels, Counter>,
}

impl FenceMetrics {
    pub(super) fn register(&self, r: &mut Registry) {
        r.register(
            "sentinel_vip_fence_witness_sentinels",
            "With on_sentinel_loss = fence, on the host holding the master's VIP: Sentinels that answered within fence_after_ms",
            self.sentinels.clone(),
        );
        r.register(
            "sentinel_vip_fence_witness_replicas",
            "With on_sentinel_loss = fence, on the host holding the master's VIP: replicas that answered ROLE as its connected replicas within fence_after_ms",
            self.replicas.clone(),
        );
        r.register(
            "sentinel_vip_fence_releases",
            "VIPs released by the fence: neither a Sentinel majority nor a replica heard for fence_after_ms",
            self.releases.clone(),
        );
    }

    /// At start and after each reload: a release series per VIP from zero,
    /// the series of masters and VIPs no longer configured gone.
    pub(super) fn configure(&self, gone: &[VipId], vips: &[VipId], masters_gone: &[String]) {
        for v in gone {
            self.releases.remove(&VipLabels::from(v));
        }
        for m in masters_gone {
            let l = MasterLabels { master: m.clone() };
            self.sentinels.remove(&l);
            self.replicas.remove(&l);
        }
        for v in vips {
            let _ = self.releases.get_or_create(&VipLabels::from(v));
        }
    }
}

impl Metrics {
    /// The fence's witnesses of `master` now (Sentinels, replicas), or
    /// `None` where the fence does not watch it (the VIP is not held here):
    /// then the series go, rather than read 0.
    pub fn fence_witnesses(&self, master: &str, heard: Option<(usize, usize)>) {
        let l = MasterLabels {
            master: master.to_string(),
        };
        match heard {
            Some((sentinels, replicas)) => {
                self.fence.sentinels.get_or_create(&l).set(count(sentinels));
                self.fence.replicas.get_or_create(&l).set(count(replicas));
            }
            None => {
                self.fence.sentinels.remove(&l);
                self.fence.replicas.remove(&l);
            }
        }
    }

    /// The fence released `vip`: counted, as a release among the actions
    /// too, and no longer held.
    pub fn fence_released(&self, vip: &VipId) {
        let l = VipLabels::from(vip);
        self.fence.releases.get_or_create(&l).inc();
        self.held.get_or_create(&l).set(0);
        self.action(vip, super::ActionKind::Release);
    }
}

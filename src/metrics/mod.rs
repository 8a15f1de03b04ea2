//! Prometheus metrics of the watcher: it records what each pass saw and did
//! (cheap atomic updates), and [`serve`] hands them out at `/metrics` in the
//! Prometheus text format. Ages are computed when scraped, so nothing runs
//! while no one scrapes. It observes only: it never decides, and never
//! touches an address or a Sentinel.

mod facts;
mod fence;
mod mode;
mod serve;

pub use facts::{ActionKind, ErrorKind, Said, Trigger, VipId};
#[cfg(test)]
use serve::test_server;
pub use serve::{bind, serve, validate_listen};

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::IpAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::{Registry, Unit};

/// Pass durations: a pass is a few milliseconds when the Sentinels answer
/// and up to `sentinel_timeout_ms` (at most 60 s) when one does not.
const PASS_BUCKETS: [f64; 14] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 60.0,
];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct VipLabels {
    master: String,
    vip: String,
    interface: String,
}

impl From<&VipId> for VipLabels {
    fn from(v: &VipId) -> VipLabels {
        VipLabels {
            master: v.master.clone(),
            vip: v.vip.to_string(),
            interface: v.interface.clone(),
        }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct AddressLabels {
    master: String,
    vip: String,
    interface: String,
    address: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ActionLabels {
    master: String,
    vip: String,
    interface: String,
    action: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SentinelLabels {
    sentinel: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct MasterLabels {
    master: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PassLabels {
    trigger: &'static str,
    result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TriggerLabels {
    trigger: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabels {
    kind: &'static str,
}

fn pass_histogram() -> Histogram {
    Histogram::new(PASS_BUCKETS)
}

/// The instants behind the age gauges, turned into ages at scrape time.
#[derive(Debug, Default)]
struct Clocks(Mutex<ClockState>);

#[derive(Debug, Default)]
struct ClockState {
    /// Per Sentinel, when it last answered (`None`: not yet).
    answers: BTreeMap<String, Option<Instant>>,
    last_ok_pass: Option<Instant>,
}

/// Seconds since `at`; +Inf for never, which any `> N` alert catches.
fn age(now: Instant, at: Option<Instant>) -> f64 {
    at.map_or(f64::INFINITY, |t| now.duration_since(t).as_secs_f64())
}

impl Collector for Clocks {
    fn encode(&self, mut enc: DescriptorEncoder) -> std::fmt::Result {
        let now = Instant::now();
        let s = lock(&self.0);
        if !s.answers.is_empty() {
            let mut m = enc.encode_descriptor(
                "sentinel_vip_sentinel_last_answer_age",
                "Seconds since this Sentinel last answered a question (+Inf: never since start).",
                Some(&Unit::Seconds),
                prometheus_client::metrics::MetricType::Gauge,
            )?;
            for (sentinel, at) in &s.answers {
                let l = SentinelLabels {
                    sentinel: sentinel.clone(),
                };
                ConstGauge::new(age(now, *at)).encode(m.encode_family(&l)?)?;
            }
        }
        let g = ConstGauge::new(age(now, s.last_ok_pass));
        g.encode(enc.encode_descriptor(
            "sentinel_vip_last_successful_pass_age",
            "Seconds since a pass last completed (+Inf: none since start).",
            Some(&Unit::Seconds),
            g.metric_type(),
        )?)
    }
}

/// A poisoned lock only means a panic elsewhere; the data is still counts.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// What `configure` was last told, to drop the series of what is gone.
#[derive(Debug, Default)]
struct Known {
    vips: HashMap<IpAddr, VipId>,
    /// Per VIP, the labels of its current `sentinel_master_info` series.
    named: HashMap<IpAddr, AddressLabels>,
    masters: HashSet<String>,
}

/// The watcher's metrics; share it as `Arc<Metrics>`. Every method takes
/// `&self` and costs an atomic update and a short lock at most.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    held: Family<VipLabels, Gauge>,
    named: Family<AddressLabels, Gauge>,
    epoch: Family<VipLabels, Gauge>,
    sentinel_up: Family<SentinelLabels, Gauge>,
    majority: Family<MasterLabels, Gauge>,
    answered: Family<MasterLabels, Gauge>,
    configured: Family<MasterLabels, Gauge>,
    passes: Family<PassLabels, Counter>,
    pass_seconds: Family<TriggerLabels, Histogram, fn() -> Histogram>,
    actions: Family<ActionLabels, Counter>,
    announcements: Family<VipLabels, Counter>,
    errors: Family<KindLabels, Counter>,
    /// Per VIP, how it is announced (`mode.rs`).
    modes: Family<mode::ModeLabels, Gauge>,
    fence: fence::FenceMetrics,
    clocks: Arc<Clocks>,
    known: Mutex<Known>,
}

impl Metrics {
    pub fn new() -> Metrics {
        let m = Metrics {
            registry: Registry::default(),
            held: Family::default(),
            named: Family::default(),
            epoch: Family::default(),
            sentinel_up: Family::default(),
            majority: Family::default(),
            answered: Family::default(),
            configured: Family::default(),
            passes: Family::default(),
            pass_seconds: Family::new_with_constructor(pass_histogram),
            actions: Family::default(),
            announcements: Family::default(),
            errors: Family::default(),
            modes: Family::default(),
            fence: fence::FenceMetrics::default(),
            clocks: Arc::default(),
            known: Mutex::default(),
        };
        // Every error kind from zero: `increase()` needs a series to exist
        // before its first increment.
        for k in ErrorKind::ALL {
            let _ = m.errors.get_or_create(&KindLabels { kind: k.as_str() });
        }
        m.register()
    }

    fn register(mut self) -> Metrics {
        let r = &mut self.registry;
        r.register(
            "sentinel_vip_build",
            "Version of the running sentinel-vip",
            Info::new(vec![("version", env!("CARGO_PKG_VERSION"))]),
        );
        r.register(
            "sentinel_vip_held",
            "1 when the VIP is on its interface on this host after the last pass, else 0",
            self.held.clone(),
        );
        r.register(
            "sentinel_vip_sentinel_master_info",
            "The master address (label address) the Sentinels name for this VIP's master, highest config-epoch; absent when no Sentinel that answered knows it",
            self.named.clone(),
        );
        r.register(
            "sentinel_vip_config_epoch",
            "Config-epoch of the master address the Sentinels name for this VIP's master",
            self.epoch.clone(),
        );
        r.register(
            "sentinel_vip_sentinel_up",
            "1 when this Sentinel answered the last pass's question, else 0",
            self.sentinel_up.clone(),
        );
        r.register(
            "sentinel_vip_master_sentinel_majority",
            "1 when more than half of the configured Sentinels answered for this master in the last pass, else 0",
            self.majority.clone(),
        );
        r.register(
            "sentinel_vip_master_sentinels_answered",
            "Sentinels that answered for this master in the last pass and know it",
            self.answered.clone(),
        );
        r.register(
            "sentinel_vip_master_sentinels_configured",
            "Sentinels configured, the denominator of the majority",
            self.configured.clone(),
        );
        r.register(
            "sentinel_vip_passes",
            "Passes run, by trigger and result (ok, failed)",
            self.passes.clone(),
        );
        r.register_with_unit(
            "sentinel_vip_pass_duration",
            "Duration of a pass from taking the lock to the first announcements, by trigger",
            Unit::Seconds,
            self.pass_seconds.clone(),
        );
        r.register(
            "sentinel_vip_actions",
            "Changes made (acquire, release) or refused (refuse, every pass that refused) per VIP",
            self.actions.clone(),
        );
        r.register(
            "sentinel_vip_announcement_rounds",
            "Announcement rounds sent per VIP (each a gratuitous ARP request and reply, or an unsolicited NA)",
            self.announcements.clone(),
        );
        r.register(
            "sentinel_vip_errors",
            "Errors by kind (lock, netlink, sentinel, resolve, announce, notify, control)",
            self.errors.clone(),
        );
        r.register(
            "sentinel_vip_mode_info",
            "How the VIP is announced (label mode): l2, gratuitous ARP/NA from this watcher; routed, a host route the routing daemon announces while the VIP is held",
            self.modes.clone(),
        );
        self.fence.register(r);
        r.register_collector(Box::new(self.clocks.clone()));
        self
    }

    /// At start and after each reload: the VIPs and Sentinels configured
    /// now. Series of those no longer configured go away; new ones start
    /// at zero (not held, no answer yet, no actions), so that "no holder"
    /// and `increase()` alerts have series to work on from the start.
    pub fn configure(&self, vips: &[VipId], sentinels: &[String]) {
        let mut known = lock(&self.known);
        let wanted: HashSet<&VipId> = vips.iter().collect();
        let gone: Vec<VipId> = known
            .vips
            .values()
            .filter(|v| !wanted.contains(v))
            .cloned()
            .collect();
        let masters_gone: Vec<String> = (known.masters.iter())
            .filter(|m| !vips.iter().any(|v| &v.master == *m))
            .cloned()
            .collect();
        self.fence.configure(&gone, vips, &masters_gone);
        for old in gone {
            let l = VipLabels::from(&old);
            self.held.remove(&l);
            self.epoch.remove(&l);
            self.announcements.remove(&l);
            for k in ActionKind::ALL {
                self.actions.remove(&action_labels(&old, k));
            }
            if let Some(a) = known.named.remove(&old.vip) {
                self.named.remove(&a);
            }
            known.vips.remove(&old.vip);
        }
        for v in vips {
            let l = VipLabels::from(v);
            let _ = self.held.get_or_create(&l);
            let _ = self.announcements.get_or_create(&l);
            for k in ActionKind::ALL {
                let _ = self.actions.get_or_create(&action_labels(v, k));
            }
            known.vips.insert(v.vip, v.clone());
        }
        let masters: HashSet<String> = vips.iter().map(|v| v.master.clone()).collect();
        for m in known.masters.difference(&masters) {
            let l = MasterLabels { master: m.clone() };
            self.majority.remove(&l);
            self.answered.remove(&l);
            self.configured.remove(&l);
        }
        known.masters = masters;
        let mut clocks = lock(&self.clocks.0);
        let wanted: HashSet<&String> = sentinels.iter().collect();
        clocks.answers.retain(|s, _| {
            let keep = wanted.contains(s);
            if !keep {
                self.sentinel_up.remove(&SentinelLabels {
                    sentinel: s.clone(),
                });
            }
            keep
        });
        for s in sentinels {
            clocks.answers.entry(s.clone()).or_insert(None);
            let _ = self.sentinel_up.get_or_create(&SentinelLabels {
                sentinel: s.clone(),
            });
        }
    }

    /// A pass ended: `ok` when it completed (whatever it decided), not when
    /// it failed before deciding (lock, netlink dump).
    pub fn pass_done(&self, trigger: Trigger, took: Duration, ok: bool) {
        let result = if ok { "ok" } else { "failed" };
        self.passes
            .get_or_create(&PassLabels {
                trigger: trigger.as_str(),
                result,
            })
            .inc();
        self.pass_seconds
            .get_or_create(&TriggerLabels {
                trigger: trigger.as_str(),
            })
            .observe(took.as_secs_f64());
        if ok {
            lock(&self.clocks.0).last_ok_pass = Some(Instant::now());
        }
    }

    /// After a pass converged `vip`: whether it is held here, and what the
    /// Sentinels said about its master (which also sets that master's
    /// majority, answered and configured gauges).
    pub fn vip_state(&self, vip: &VipId, held: bool, said: &Said) {
        let l = VipLabels::from(vip);
        self.held.get_or_create(&l).set(held.into());
        match said.epoch {
            Some(e) => {
                self.epoch
                    .get_or_create(&l)
                    .set(i64::try_from(e).unwrap_or(i64::MAX));
            }
            None => {
                self.epoch.remove(&l);
            }
        }
        let now = said.master.as_ref().map(|a| AddressLabels {
            master: l.master.clone(),
            vip: l.vip.clone(),
            interface: l.interface.clone(),
            address: a.clone(),
        });
        let mut known = lock(&self.known);
        let old = known.named.get(&vip.vip);
        if old != now.as_ref() {
            // One address series per VIP: the old one goes when it moves.
            if let Some(o) = old {
                self.named.remove(o);
            }
            match now {
                Some(n) => {
                    self.named.get_or_create(&n).set(1);
                    known.named.insert(vip.vip, n);
                }
                None => {
                    known.named.remove(&vip.vip);
                }
            }
        }
        drop(known);
        let m = MasterLabels {
            master: vip.master.clone(),
        };
        self.majority.get_or_create(&m).set(said.majority.into());
        self.answered.get_or_create(&m).set(count(said.answered));
        self.configured
            .get_or_create(&m)
            .set(count(said.configured));
    }

    /// One Sentinel's answer in a pass: `answered` when it replied as a
    /// Sentinel (whether or not it knows the masters). A Sentinel that did
    /// not also counts as an error of kind `sentinel`.
    pub fn sentinel_answer(&self, sentinel: &str, answered: bool) {
        let l = SentinelLabels {
            sentinel: sentinel.to_string(),
        };
        self.sentinel_up.get_or_create(&l).set(answered.into());
        if answered {
            lock(&self.clocks.0)
                .answers
                .insert(sentinel.to_string(), Some(Instant::now()));
        } else {
            lock(&self.clocks.0)
                .answers
                .entry(sentinel.to_string())
                .or_insert(None);
            self.error(ErrorKind::Sentinel);
        }
    }

    /// A pass acquired, released or refused `vip`.
    pub fn action(&self, vip: &VipId, kind: ActionKind) {
        self.actions.get_or_create(&action_labels(vip, kind)).inc();
    }

    /// An announcement round for the VIP `ip` went out (`ok`) or failed
    /// (counted as an error of kind `announce`).
    pub fn announced(&self, ip: IpAddr, ok: bool) {
        if !ok {
            self.error(ErrorKind::Announce);
            return;
        }
        let l = match lock(&self.known).vips.get(&ip) {
            Some(v) => VipLabels::from(v),
            // Not configured (yet): still counted, under the address alone.
            None => VipLabels {
                master: String::new(),
                vip: ip.to_string(),
                interface: String::new(),
            },
        };
        self.announcements.get_or_create(&l).inc();
    }

    pub fn error(&self, kind: ErrorKind) {
        self.errors
            .get_or_create(&KindLabels {
                kind: kind.as_str(),
            })
            .inc();
    }

    /// The Prometheus text exposition (format 0.0.4), ages as of now.
    pub fn encode(&self) -> String {
        let mut out = String::with_capacity(8192);
        prometheus_client::encoding::prometheus_text::encode(&mut out, &self.registry)
            .expect("writing to a String cannot fail");
        out
    }
}

fn action_labels(v: &VipId, kind: ActionKind) -> ActionLabels {
    ActionLabels {
        master: v.master.clone(),
        vip: v.vip.to_string(),
        interface: v.interface.clone(),
        action: kind.as_str(),
    }
}

fn count(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests;

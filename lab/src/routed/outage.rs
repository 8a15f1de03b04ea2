//! One `kill -9` failover in the routed lab, timed from the outside for
//! the tests, the benchmark and the demo: when the promoted replica first
//! answered `ROLE` master, when the router's kernel table first sent the
//! VIP to it, and when each writer had its first write acknowledged and
//! kept. It judges nothing; callers assert or print.

use std::time::Duration;

use super::RouteMonitor;
use crate::client::KeptWriter;
use crate::outage::{kill_with_writers, writes_kept, Killed, Writes};
use crate::Lab;

/// One routed failover; times are epoch seconds.
#[derive(Clone, Debug)]
pub struct RoutedKill {
    pub old: usize,
    pub new: usize,
    pub at: f64,
    /// The first replica to answer `ROLE` master, and when.
    pub role_master: Option<(usize, f64)>,
    /// When the router's kernel table first sent the VIP to the new master.
    pub route: Option<f64>,
    /// Per writer, in the order given.
    pub writes: Vec<Writes>,
}

impl RoutedKill {
    /// Milliseconds from `ROLE` master to `t`.
    pub fn after_role(&self, t: Option<f64>) -> Option<f64> {
        Some((t? - self.role_master?.1) * 1e3)
    }

    /// Milliseconds from the kill to `t`.
    pub fn after_kill(&self, t: Option<f64>) -> Option<f64> {
        Some((t? - self.at) * 1e3)
    }
}

/// Waits for a quiet routed lab, kills the master's server, waits up to
/// `limit` for each writer, then for the VIP and the route on the new
/// master, rejoins every node and reads the writes back.
pub fn kill_routed_master(
    lab: &mut Lab,
    writers: &[&KeptWriter],
    routes: &RouteMonitor,
    limit: Duration,
) -> RoutedKill {
    let old = lab.wait_routed_holder(0, Duration::from_secs(20));
    let Killed {
        at,
        firsts,
        role_master,
    } = kill_with_writers(lab, old, writers, limit);
    let new = lab.wait_routed_holder(old, Duration::from_secs(30));
    let route = routes
        .wait_for(at, Duration::from_secs(1), |e| e.via == Some(new))
        .map(|e| e.at);
    let fin = lab.rejoin_routed();
    let writes = writes_kept(lab, fin, writers, firsts, at, limit);
    RoutedKill {
        old,
        new,
        at,
        role_master,
        route,
        writes,
    }
}

impl Lab {
    /// Every Redis running and replicating Sentinel's master, Sentinel
    /// ready, the VIP on the master alone and routed there; returns it.
    pub fn rejoin_routed(&mut self) -> usize {
        self.rejoin_nodes();
        self.wait_routed_holder(0, Duration::from_secs(15))
    }
}

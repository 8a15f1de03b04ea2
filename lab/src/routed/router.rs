//! The router's side of the routed lab, as the client's packets meet it:
//! which host its kernel table sends the VIP to now, and every change of
//! that route stamped as it happens (`ip -ts monitor route` in the
//! router's namespace). It reads; it changes nothing.

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use serde_json::Value;

use super::{node_of_link_ip, VIP};
use crate::command::ip_in;
use crate::process::Slot;
use crate::timeline::epoch_of;
use crate::{wait_until, Lab};

/// One change of the VIP's route in the router's kernel table.
#[derive(Clone, Debug, PartialEq)]
pub struct RouteEvent {
    /// CLOCK_REALTIME seconds.
    pub at: f64,
    /// The host it now leads to; `None`: the route was deleted.
    pub via: Option<usize>,
}

/// `ip -ts monitor route` in the router's namespace, for as long as it
/// lives.
pub struct RouteMonitor {
    slot: Slot,
    out: PathBuf,
}

static MONITORS: AtomicUsize = AtomicUsize::new(0);

impl RouteMonitor {
    /// Starts the monitor; returns once it runs.
    pub fn start(lab: &Lab) -> RouteMonitor {
        let k = MONITORS.fetch_add(1, Ordering::Relaxed);
        let out = lab.dir.join(format!("routes-{k}.txt"));
        let args = ["ip", "-ts", "monitor", "route"].map(String::from);
        // `-ts` prints local time: UTC makes it the epoch's.
        let slot = lab.spawn_ns(&lab.ns_router(), &args, &[("TZ", "UTC")], &out);
        // The monitor prints nothing until a change; give it a moment to
        // subscribe (it has, once the process has opened its socket).
        std::thread::sleep(Duration::from_millis(100));
        RouteMonitor { slot, out }
    }

    /// Every change of the VIP's route so far, oldest first.
    pub fn events(&self) -> Vec<RouteEvent> {
        std::fs::read_to_string(&self.out)
            .unwrap_or_default()
            .lines()
            .filter_map(parse)
            .collect()
    }

    /// The changes after `t`.
    pub fn after(&self, t: f64) -> Vec<RouteEvent> {
        self.events().into_iter().filter(|e| e.at > t).collect()
    }

    /// The first change after `t` that satisfies `f`, waiting up to
    /// `timeout` for it.
    pub fn wait_for(
        &self,
        t: f64,
        timeout: Duration,
        f: impl Fn(&RouteEvent) -> bool,
    ) -> Option<RouteEvent> {
        let mut found = None;
        wait_until(timeout, Duration::from_millis(5), || {
            found = self.after(t).into_iter().find(|e| f(e));
            found.is_some()
        });
        found
    }

    /// The file it writes, for messages.
    pub fn text(&self) -> String {
        std::fs::read_to_string(&self.out).unwrap_or_default()
    }
}

impl Drop for RouteMonitor {
    fn drop(&mut self) {
        self.slot.kill();
    }
}

/// A monitor line about the VIP's host route:
/// `[2026-12-06T02:50:12.190160] Deleted 203.0.113.100 via 198.18.1.2 dev h1 proto bird metric 32`.
fn parse(line: &str) -> Option<RouteEvent> {
    let (stamp, rest) = line.strip_prefix('[')?.split_once("] ")?;
    let (deleted, rest) = match rest.strip_prefix("Deleted ") {
        Some(r) => (true, r),
        None => (false, rest),
    };
    let mut w = rest.split_whitespace();
    if w.next()? != VIP {
        return None;
    }
    let via = match (w.next(), w.next()) {
        (Some("via"), Some(gw)) => node_of_link_ip(gw),
        _ => None,
    };
    Some(RouteEvent {
        at: epoch_of(stamp)?,
        via: if deleted { None } else { via },
    })
}

impl Lab {
    /// The host the router's kernel table sends the VIP to now, if any.
    pub fn route_via(&self) -> Option<usize> {
        self.route_via_of(VIP)
    }

    /// The same for any address `addr` (the IPv6 VIP).
    pub fn route_via_of(&self, addr: &str) -> Option<usize> {
        let family = if addr.contains(':') { "-6" } else { "-4" };
        let o = ip_in(&self.ns_router(), &[family, "-j", "route", "show", addr]);
        let v: Value = serde_json::from_slice(&o.stdout).ok()?;
        let gw = v.as_array()?.first()?.get("gateway")?.as_str()?.to_string();
        node_of_link_ip(&gw)
    }

    /// Waits until the router sends the VIP to host `n`.
    pub fn wait_route_via(&self, n: usize, timeout: Duration) -> bool {
        self.wait_route_via_of(VIP, n, timeout)
    }

    /// Waits until the router sends `addr` to host `n`.
    pub fn wait_route_via_of(&self, addr: &str, n: usize, timeout: Duration) -> bool {
        wait_until(timeout, Duration::from_millis(20), || {
            self.route_via_of(addr) == Some(n)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn monitor_lines() {
        let add = parse("[2026-12-06T02:50:12.694220] 203.0.113.100 via 198.18.2.2 dev h2 proto bird metric 32 ").unwrap();
        assert_eq!(add.via, Some(2));
        assert!((add.at - 1_796_525_412.694_22).abs() < 1e-3, "{}", add.at);
        let del = parse("[2026-12-06T02:50:12.190160] Deleted 203.0.113.100 via 198.18.1.2 dev h1 proto bird metric 32 ").unwrap();
        assert_eq!(del.via, None);
        assert!(parse("[2026-12-06T02:50:12.190160] 198.18.1.0/24 dev h1 proto kernel").is_none());
        assert!(parse("garbage").is_none());
    }
}

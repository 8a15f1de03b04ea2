//! The throwaway network lab of sentinel-vip's end-to-end tests, chaos
//! suite, demo and benchmark: real `redis-server` and `redis-sentinel` (or
//! Debian 13's and testing's Redis and Valkey builds, see [`Family`]) and sentinel-vip in network namespaces,
//! judged from outside by kernel addresses, captured frames, the client's
//! neighbour table and client writes. It must not depend on the product crate: it drives the binary.
//!
//! Five namespaces joined by a bridge: three Redis hosts (`n1`..`n3`), a
//! client (`cl`) and the namespace holding the bridge (`br`). The bridge
//! lives in its own namespace so that the root namespace's interfaces are
//! never touched, and no namespace has a default route, so no lab traffic
//! can leave the machine. Nodes are numbered 1..=3 everywhere so that
//! messages match the namespace names (`n1` is node 1, the initial master).
//! [`routed`] builds the other topology: the hosts in subnets of their own
//! behind a router namespace, the VIP announced over BGP.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

mod command;
mod daemons;
mod lab;
mod options;
mod process;
mod sentinel;
mod servers;
mod topology;

mod converge;
mod fault;
mod isolate;
mod observe;
pub mod routed;

pub mod acked;
pub mod capture;
pub mod client;
pub mod container;
pub mod delay;
pub mod events;
pub mod extra_vips;
pub mod failovers;
pub mod held;
pub mod hook_calls;
pub mod hook_timing;
mod http;
pub mod loss;
pub mod monitor;
pub mod netns;
pub mod outage;
pub mod prometheus;
pub mod scratch;
pub mod source;
pub mod stats;
pub mod suite;
pub mod timeline;
pub mod trace;
pub mod vm;

pub use capture::{Capture, Frame, FrameKind};
pub use daemons::Paused;
pub use lab::Lab;
pub use options::{Family, LabOptions, Programs};
pub use process::{Privilege, Slot};
pub use topology::Namespace;

/// Name Sentinel monitors the master under.
pub const MASTER_NAME: &str = "mymaster";
/// The IPv4 VIP (TEST-NET-1, RFC 5737) and its prefix length.
pub const VIP4: &str = "192.0.2.100";
pub const VIP4_CIDR: &str = "192.0.2.100/24";
/// The IPv6 VIP (benchmarking range, RFC 5180) and its prefix length.
pub const VIP6: &str = "2001:2::100";
pub const VIP6_CIDR: &str = "2001:2::100/64";
pub const CLIENT_IP: &str = "192.0.2.50";
pub const CLIENT_IP6: &str = "2001:2::50";
pub const REDIS_PORT: u16 = 6379;
pub const SENTINEL_PORT: u16 = 26379;
/// Node numbers, 1-based.
pub const NODES: [usize; 3] = [1, 2, 3];

/// How often the waits of the tests poll the lab. Each poll asks three
/// Sentinels through `ip netns exec`, milliseconds of CPU on a machine
/// whose timing is being measured.
pub const POLL: Duration = Duration::from_millis(100);

/// IPv4 address of node `n` (1..=3).
pub fn node_ip(n: usize) -> String {
    check_node(n);
    format!("192.0.2.1{n}")
}

/// IPv6 address of node `n` (1..=3).
pub fn node_ip6(n: usize) -> String {
    check_node(n);
    format!("2001:2::1{n}")
}

/// Node number whose IPv4 address is `ip`, if any.
pub fn node_of_ip(ip: &str) -> Option<usize> {
    NODES.into_iter().find(|&n| node_ip(n) == ip)
}

fn check_node(n: usize) {
    assert!(NODES.contains(&n), "lab: node {n} does not exist (1..=3)");
}

/// The seven `client-reconfig-script` arguments Sentinel passes for a
/// failover of [`MASTER_NAME`] from node `from` to node `to`.
pub fn hook_args(role: &str, from: usize, to: usize) -> Vec<String> {
    let port = REDIS_PORT.to_string();
    [
        MASTER_NAME,
        role,
        "start",
        &node_ip(from),
        &port,
        &node_ip(to),
        &port,
    ]
    .map(str::to_string)
    .to_vec()
}

/// `hook` and [`hook_args`]: the call as an operator or a test spells it.
pub fn hook_cmd(role: &str, from: usize, to: usize) -> Vec<String> {
    let mut a = vec!["hook".to_string()];
    a.extend(hook_args(role, from, to));
    a
}

/// Whether end-to-end tests should run. They are only skipped on explicit
/// request, never silently because something is missing.
pub fn e2e_enabled() -> bool {
    let skip = std::env::var("SENTINEL_VIP_SKIP_E2E").is_ok_and(|v| v == "1");
    if skip {
        eprintln!("e2e test skipped: SENTINEL_VIP_SKIP_E2E=1 is set");
    }
    !skip
}

/// Polls `f` every `poll` until it returns true or `timeout` has passed.
/// Returns whether it became true (it is evaluated once more at the deadline).
pub fn wait_until(timeout: Duration, poll: Duration, mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if f() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(poll);
    }
}

/// Seconds since the epoch (CLOCK_REALTIME): the clock of tcpdump's
/// timestamps ([`Frame::ts`]) and of sentinel-vip's log lines.
pub fn now_epoch() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock before 1970")
        .as_secs_f64()
}

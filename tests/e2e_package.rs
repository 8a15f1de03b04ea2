//! End-to-end tests of the Debian package on a real systemd: node 3 of the
//! lab is a booted Debian container (lab/src/container/) whose eth0 is the
//! node's, with the built .deb installed by apt with its default options
//! and no network, beside the distribution's own Redis or Valkey server and
//! Sentinel, their units exactly as shipped (only the servers' configs,
//! sentinel.conf and sentinel-vip.toml are edited). Nodes 1 and 2 are
//! ordinary lab nodes running the same server build as the container, with
//! the hook run directly as root.
//!
//! The combinations: Debian 12 with Redis 7.0 (and an upgrade from 0.1's
//! layout), Debian 13 with Redis 8.0, Debian 13 with Valkey 8.1; on Debian
//! 13 also sentinel-vip installed before the Sentinel package, and a host
//! whose Sentinel moves from Redis' to Valkey's. Each shows: the watcher
//! unit's user, capabilities and notify status; the stock Sentinel running
//! the packaged hook, which hands every call to the watcher; failovers to
//! and away from the container moving the VIP (kernel addresses, the
//! client's neighbour entry, writes through the VIP); with the watcher
//! stopped, the hook's exit 1 with its reason and Sentinel's retry; that
//! nothing is left behind.

#[path = "e2e_package/hardening.rs"]
mod hardening;
#[path = "e2e_package/host.rs"]
mod host;
#[path = "e2e_package/phases.rs"]
mod phases;
#[path = "e2e_package/upgrade.rs"]
mod upgrade;

use std::path::Path;
use std::time::Instant;

use host::{find_deb, Host, Kind};
use sentinel_vip_lab::container::{self, Container, Suite, BOOKWORM, TRIXIE};
use sentinel_vip_lab::suite::one_lab_at_a_time;
use sentinel_vip_lab::{e2e_enabled, node_ip, Family, Lab, LabOptions};

/// The node that is a container.
pub const CT: usize = 3;
/// The node never promoted (replica-priority 0), so that every failover
/// goes between node 1 and the container.
pub const NEVER: usize = 2;
pub const HOOK: &str = "/usr/lib/sentinel-vip/sentinel-vip";
/// Every root file system has these; the servers come per case.
const BASE: [&str; 6] = [
    "systemd",
    "systemd-sysv",
    "dbus",
    "iproute2",
    "man-db",
    "bash-completion",
];

/// Which Debian, whose servers, and what happens before the common phases.
#[derive(Clone, Copy)]
struct Case {
    suite: &'static Suite,
    /// The lab's other nodes: the same build as the container's packages.
    family: Family,
    data: Kind,
    sentinel: Kind,
    order: Order,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Order {
    /// The Sentinel packages first, then sentinel-vip (the usual case).
    SentinelFirst,
    /// sentinel-vip first, the Sentinel package later.
    SentinelLater,
    /// Redis' Sentinel, then Valkey's in its place; sentinel-vip untouched.
    Migrate,
}

#[test]
fn debian12_redis() {
    run(Case {
        suite: &BOOKWORM,
        family: Family::Redis,
        data: Kind::Redis,
        sentinel: Kind::Redis,
        order: Order::SentinelFirst,
    });
}

#[test]
fn debian13_redis() {
    run(Case {
        suite: &TRIXIE,
        family: Family::Redis8,
        data: Kind::Redis,
        sentinel: Kind::Redis,
        order: Order::SentinelFirst,
    });
}

#[test]
fn debian13_valkey() {
    run(Case {
        suite: &TRIXIE,
        family: Family::Valkey,
        data: Kind::Valkey,
        sentinel: Kind::Valkey,
        order: Order::SentinelFirst,
    });
}

#[test]
fn debian13_valkey_installed_after() {
    run(Case {
        suite: &TRIXIE,
        family: Family::Valkey,
        data: Kind::Valkey,
        sentinel: Kind::Valkey,
        order: Order::SentinelLater,
    });
}

#[test]
fn debian13_redis_sentinel_replaced_by_valkey() {
    run(Case {
        suite: &TRIXIE,
        family: Family::Redis8,
        data: Kind::Redis,
        sentinel: Kind::Redis,
        order: Order::Migrate,
    });
}

/// The root file system for `suite`: Debian 12's with Redis installed (as
/// the earlier releases of this test had it); Debian 13's with Redis' and
/// Valkey's packages only downloaded, for each case to install.
fn rootfs(suite: &Suite) -> std::path::PathBuf {
    let mut pkgs = BASE.to_vec();
    if *suite == BOOKWORM {
        pkgs.extend(["redis-server", "redis-sentinel"]);
        return container::rootfs_tarball(suite, &pkgs);
    }
    let downloads: Vec<String> = [Kind::Redis, Kind::Valkey]
        .iter()
        .flat_map(|k| k.packages())
        .collect();
    let dl: Vec<&str> = downloads.iter().map(String::as_str).collect();
    container::rootfs_tarball_with(suite, &pkgs, &dl)
}

fn run(case: Case) {
    if !e2e_enabled() {
        return;
    }
    let _one = one_lab_at_a_time();
    let started = Instant::now();
    let deb = find_deb();
    let t = Instant::now();
    let tarball = rootfs(case.suite);
    eprintln!(
        "Debian {} root file system {} ready in {:.1} s",
        case.suite.version,
        tarball.display(),
        t.elapsed().as_secs_f64()
    );
    let (name, dir);
    {
        let programs = case.family.programs();
        let opts = LabOptions {
            external_node: Some(CT),
            programs,
            ..LabOptions::default()
        };
        let mut lab = Lab::new(Path::new(env!("CARGO_BIN_EXE_sentinel-vip")), opts);
        let (out, err) = lab.redis_cli(NEVER, &["CONFIG", "SET", "replica-priority", "0"]);
        assert_eq!(out, "OK", "replica-priority on n{NEVER}: {err}");
        name = format!("{}ct", lab.prefix);
        dir = lab.node_dir(CT).join("container");
        let host = Host {
            ct: Container::boot(&tarball, &dir, &lab.ns(CT), &name),
            data: case.data,
            sentinel: case.sentinel,
        };
        eprintln!(
            "Debian {}, {} {} ({}), Sentinel {}",
            case.suite.version,
            case.family.name(),
            programs.version(),
            case.family.source(),
            case.sentinel.name()
        );
        let t = Instant::now();
        let upgrading = *case.suite == BOOKWORM;
        match case.order {
            Order::SentinelFirst | Order::Migrate => {
                if *case.suite != BOOKWORM {
                    host.install_distribution(case.data);
                }
                if upgrading {
                    upgrade::install_old_layout(&host, &deb);
                } else {
                    host.install(&deb);
                }
                host.configure_data();
                host.configure_watcher();
                host.configure_sentinel(&node_ip(1));
            }
            Order::SentinelLater => {
                host.install(&deb);
                host.configure_watcher();
                host.install_distribution(case.data);
                host.configure_data();
                host.configure_sentinel(&node_ip(1));
            }
        }
        lab.finish_start();
        lab.wait_ready();
        eprintln!(
            "installed and configured, Sentinels ready in {:.1} s",
            t.elapsed().as_secs_f64()
        );
        let mut host = host;
        if upgrading {
            phase("0-upgrade-from-0.1", || upgrade::upgrade(&lab, &host, &deb));
        }
        phase("a-units-and-privileges", || {
            phases::units_and_privileges(&host)
        });
        phase("b-config-is-the-watchers", || {
            phases::config_is_the_watchers(&host)
        });
        if case.order != Order::SentinelLater {
            phase("c-man-and-completion", || phases::man_and_completion(&host));
        }
        phase("d-failovers-handed-to-watcher", || {
            phases::handed_to_watcher(&lab, &host)
        });
        if case.order == Order::Migrate {
            phase("m-sentinel-becomes-valkeys", || {
                phases::migrate_sentinel(&mut lab, &mut host, Kind::Valkey)
            });
            phase("m-failovers-after-migration", || {
                phases::handed_to_watcher(&lab, &host)
            });
        }
        // The slow part (Sentinel's 30 s retry) where it adds something.
        if case.order == Order::SentinelFirst {
            phase("e-without-watcher", || phases::without_watcher(&lab, &host));
            phase("f-no-restarts", || phases::no_restarts(&host));
            // The container holds the VIP after e.
            phase("g-hardened-unit", || hardening::hardened_unit(&lab, &host));
        }
    }
    let left = container::leftovers(&name, &dir);
    assert!(left.is_empty(), "left behind after the run: {left:?}");
    eprintln!("took {:.1} s", started.elapsed().as_secs_f64());
}

fn phase(name: &str, f: impl FnOnce()) {
    let t = Instant::now();
    f();
    eprintln!("phase {name}: ok ({:.1} s)", t.elapsed().as_secs_f64());
}

//! End-to-end tests of routed networks (issue 19): the three Redis hosts
//! each in a subnet of its own behind a router namespace running Debian's
//! BIRD 2, a BIRD (or FRR) on each host with an eBGP session and BFD to
//! the router, the client in another subnet, and the VIP a /32 on `lo` of
//! the master's host, announced by the host's daemon while it is there
//! (with BIRD, a /128 IPv6 VIP of the same master beside it).
//! Judged as the world would: the router's kernel table (what the client's
//! packets follow), BIRD's own table, writes through the VIP, frames
//! captured on every host. Watchers run as the unit runs them; Sentinel's
//! reconfig script is off, so every move is the watchers'. Speeds are
//! printed, and asserted only where the recipe documents a bound (BFD's
//! detection time, `release` within `sentinel_loss_after_ms` and a pass).

#[path = "e2e_routed/faults.rs"]
mod faults;
#[path = "e2e_routed/mixed.rs"]
mod mixed;

use std::path::Path;
use std::sync::MutexGuard;
use std::time::{Duration, Instant};

use sentinel_vip_lab::client::{KeptWriter, Pace, Route};
use sentinel_vip_lab::routed::observe::FrameWatch;
use sentinel_vip_lab::routed::outage::kill_routed_master;
use sentinel_vip_lab::routed::{
    Daemon, RouteMonitor, Routed, CLIENT, VIP, VIP6, VIP6_CIDR, VIP_CIDR,
};
use sentinel_vip_lab::suite::{expect_exit, one_lab_at_a_time, run_scenarios, Step};
use sentinel_vip_lab::LabOptions;
use sentinel_vip_lab::Privilege;
use sentinel_vip_lab::{e2e_enabled, hook_cmd, node_ip, now_epoch, wait_until, Family, Lab};
use sentinel_vip_lab::{MASTER_NAME, NODES};

/// As the systemd unit runs it (the BIRD labs and the mixed config).
const WATCHER: Privilege = Privilege::TwoCaps;

/// What the scenarios share: the captures and the route monitor, running
/// for the whole lab, the privilege its watchers run with, and the
/// figures printed at the end.
pub struct Shared {
    pub frames: FrameWatch,
    pub routes: RouteMonitor,
    pub watcher: Privilege,
    /// Whether the IPv6 VIP is configured too (the BIRD labs).
    pub v6: bool,
    pub figures: Vec<String>,
}

impl Shared {
    pub fn figure(&mut self, line: String) {
        eprintln!("  figure: {line}");
        self.figures.push(line);
    }
}

#[test]
fn routed_bird_redis() {
    routed_end_to_end(Family::Redis);
}

#[test]
fn routed_bird_valkey() {
    routed_end_to_end(Family::Valkey);
}

/// The FRR recipe on the hosts (the router still BIRD): the VIP placed,
/// routed and written to, then a `kill -9` failover. Its watchers hold
/// CAP_NET_ADMIN alone: routed VIPs send no frame, so CAP_NET_RAW is not
/// needed (the BIRD labs run them as the unit does, with both).
#[test]
fn routed_frr_redis() {
    let Some((_one, lab, mut shared, started)) =
        routed_lab(Family::Redis, Daemon::Frr, Privilege::NetAdmin)
    else {
        return;
    };
    let scenarios: [(&str, Step<Shared>); 5] = [
        ("a-route-and-write", route_and_write),
        ("a2-vip-deleted-by-hand", vip_deleted_by_hand),
        ("b-kill-failover", kill_failover),
        ("b2-hook-metrics-notify", hook_metrics_notify),
        ("h-no-frames-for-the-vip", no_frames_for_the_vip),
    ];
    run_scenarios(lab, &mut shared, &scenarios, started);
    report(&shared, "FRR hosts, Redis");
}

/// One VIP on `eth0` (l2) and one on `lo` (routed) for the same master,
/// on the bridge lab.
#[test]
fn mixed_l2_and_routed_vips() {
    mixed::mixed_l2_and_routed();
}

fn routed_end_to_end(family: Family) {
    let Some((_one, lab, mut shared, started)) = routed_lab(family, Daemon::Bird, WATCHER) else {
        return;
    };
    let scenarios: [(&str, Step<Shared>); 10] = [
        ("a-route-and-write", route_and_write),
        ("a2-vip-deleted-by-hand", vip_deleted_by_hand),
        ("b-kill-failover", kill_failover),
        ("b2-hook-metrics-notify", hook_metrics_notify),
        ("c-host-cut-off-silent", faults::host_cut_off_silent),
        (
            "d-release-cut-from-sentinels",
            faults::release_when_cut_from_sentinels,
        ),
        (
            "e-keep-cut-from-sentinels",
            faults::keep_when_cut_from_sentinels,
        ),
        (
            "f-bird-restarted-on-holder",
            faults::daemon_restarted_on_holder,
        ),
        ("g-watcher-restarted", faults::watcher_restarted),
        ("h-no-frames-for-the-vip", no_frames_for_the_vip),
    ];
    run_scenarios(lab, &mut shared, &scenarios, started);
    report(&shared, &format!("BIRD hosts, {}", family.name()));
}

/// A routed lab running `family`'s servers with `daemon` on the hosts,
/// its sessions up, the captures and the route monitor running, and a
/// watcher as `who` on every host; `None` when e2e tests are skipped on
/// purpose.
type Built = (MutexGuard<'static, ()>, Lab, Shared, Instant);

fn routed_lab(family: Family, daemon: Daemon, who: Privilege) -> Option<Built> {
    if !e2e_enabled() {
        return None;
    }
    let one = one_lab_at_a_time();
    let started = Instant::now();
    let programs = family.programs();
    // The BIRD labs keep an IPv6 VIP of the same master beside the IPv4
    // one, announced over the hosts' IPv6 sessions.
    let v6 = daemon == Daemon::Bird;
    let toml_tail = if v6 {
        format!(
            "[[vip]]\nmaster = \"{MASTER_NAME}\"\naddress = \"{VIP6_CIDR}\"\ninterface = \"lo\"\n"
        )
    } else {
        String::new()
    };
    let opts = LabOptions {
        reconfig_script: false,
        programs,
        routed: Some(Routed { hosts: daemon }),
        toml_tail,
        ..LabOptions::default()
    };
    let mut lab = Lab::new(Path::new(env!("CARGO_BIN_EXE_sentinel-vip")), opts);
    lab.wait_ready();
    lab.wait_routing(Duration::from_secs(30));
    let shared = Shared {
        frames: FrameWatch::start(&lab),
        routes: RouteMonitor::start(&lab),
        watcher: who,
        v6,
        figures: Vec::new(),
    };
    for n in NODES {
        lab.rewrite_config(n, &node_top(&lab, n, ""));
        lab.start_watcher(n, who);
    }
    eprintln!(
        "lab {} ({} {}, {} on the hosts, watchers {who:?}) up in {:.1} s",
        lab.prefix,
        family.name(),
        programs.version(),
        daemon.name(),
        started.elapsed().as_secs_f64()
    );
    Some((one, lab, shared, started))
}

/// Host `n`'s top-level config: `/metrics` on its own address, reached
/// from the client's namespace through the router, and notify commands
/// appending `<action> <vip>` to a file the watcher's user may write;
/// then `extra`.
pub fn node_top(lab: &Lab, n: usize, extra: &str) -> String {
    let log = notify_log(lab, n);
    format!(
        "metrics_listen = \"{}:{METRICS_PORT}\"\n\
         on_acquire = ['/bin/sh', '-c', 'echo \"$SENTINEL_VIP_ACTION $SENTINEL_VIP_VIP\" >> {log}']\n\
         on_release = ['/bin/sh', '-c', 'echo \"$SENTINEL_VIP_ACTION $SENTINEL_VIP_VIP\" >> {log}']\n\
         {extra}",
        node_ip(n),
        log = log.display()
    )
}

const METRICS_PORT: u16 = 9469;

/// Where host `n`'s notify commands write: its runtime dir, the
/// watcher's user's.
fn notify_log(lab: &Lab, n: usize) -> std::path::PathBuf {
    lab.node_dir(n).join("run").join("notify.log")
}

fn report(shared: &Shared, what: &str) {
    eprintln!("\nrouted figures ({what}):");
    for f in &shared.figures {
        eprintln!("  {f}");
    }
}

/// (a) The watchers put the VIP on the master's `lo` with global scope;
/// the router's table sends it to the master's host (BIRD holds that one
/// route and no other); a client write through it lands on the master.
/// `status` names the mode, `check` notes it, and the VIP is never the
/// host's source address: routes to the other hosts and the client keep
/// the host's own, and Sentinel's replica and peer lists name no VIP.
fn route_and_write(lab: &mut Lab, sh: &mut Shared) {
    let m = lab.wait_routed_holder(0, Duration::from_secs(15));
    assert_eq!(m, 1, "the initial master");
    let (prefix, scope) = lab.routed_vip_on(m).expect("held");
    assert_eq!((prefix, scope.as_str()), (32, "global"), "the VIP on lo");
    assert_eq!(lab.router_candidates(), vec![m], "BIRD's routes to the VIP");
    lab.routed_write_lands_on(m, "routed-a", "a")
        .unwrap_or_else(|e| panic!("write through the routed VIP: {e}"));
    for n in NODES {
        let o = lab.sv(n, &["status", "--json"]);
        expect_exit(&o, 0, &format!("status on n{n}"));
        let rows: serde_json::Value = serde_json::from_slice(&o.stdout).expect("status --json");
        assert_eq!(rows[0]["mode"], "routed", "status on n{n}");
        assert_eq!(rows[0]["vip_held"], n == m, "status on n{n}");
    }
    let check = String::from_utf8_lossy(&lab.sv(m, &["check"]).stdout).to_string();
    assert!(
        check.contains(&format!(
            "note {VIP}/32 on lo is routed: no gratuitous ARP/NA"
        )),
        "check: {check}"
    );
    // A routed VIP on lo is no problem to `check` (it has no MAC to send
    // from, and needs none).
    let fails: Vec<&str> = check
        .lines()
        .filter(|l| l.starts_with("FAIL") && (l.contains(VIP) || l.contains("interface lo")))
        .collect();
    assert!(fails.is_empty(), "check: {fails:?}");
    for dst in NODES
        .into_iter()
        .filter(|&n| n != m)
        .map(node_ip)
        .chain([CLIENT.to_string()])
    {
        let src = lab.source_towards(m, &dst);
        assert!(
            src != VIP && !src.is_empty(),
            "n{m} speaks to {dst} from {src:?}"
        );
    }
    // Sentinel has had the replicas' and peers' hellos for seconds.
    for n in NODES {
        for what in ["replicas", "sentinels"] {
            let (out, err) = lab.sentinel_cli(n, &["SENTINEL", what, MASTER_NAME]);
            assert!(!out.is_empty(), "SENTINEL {what} on n{n}: {err}");
            assert!(!out.contains(VIP), "n{n}'s Sentinel lists the VIP: {out}");
        }
    }
    sh.figure(format!(
        "(a) VIP on n{m}'s lo, scope {scope}; router via n{m}; status and check name the mode"
    ));
    if sh.v6 {
        ipv6_vip_follows(lab, sh, m, "a");
    }
}

/// The IPv6 VIP (BIRD labs): a /128 with global scope on `lo` of host
/// `m` alone, the router's IPv6 table sends it there (BIRD's `direct`
/// exports the deprecated address like any other), and a client write
/// through it lands on `m`.
fn ipv6_vip_follows(lab: &Lab, sh: &mut Shared, m: usize, case: &str) {
    let routed = lab.wait_route_via_of(VIP6, m, Duration::from_secs(10));
    assert!(
        routed,
        "the router's IPv6 route to {VIP6} leads to n{:?}, not n{m}",
        lab.route_via_of(VIP6)
    );
    assert_eq!(lab.routed_holders_of(VIP6), vec![m], "holders of {VIP6}");
    let (prefix, scope) = lab.routed_addr_on(m, VIP6).expect("held");
    assert_eq!((prefix, scope.as_str()), (128, "global"), "{VIP6} on lo");
    lab.routed_write_via(VIP6, m, &format!("routed6-{case}"), case)
        .unwrap_or_else(|e| panic!("write through the routed IPv6 VIP: {e}"));
    sh.figure(format!(
        "({case}) IPv6: {VIP6}/128 on n{m}'s lo alone, scope {scope}; the router's IPv6 route via n{m}; a write through it landed on n{m}"
    ));
}

/// (a2) Announced only while held: with the holder's watcher stopped,
/// the VIP deleted by hand is withdrawn at the router the moment it goes,
/// and the route is back once the watcher, started again, has put the
/// address back. Then the same delete with the watcher running, which
/// re-adds at once: measured, whether the router ever saw it go.
fn vip_deleted_by_hand(lab: &mut Lab, sh: &mut Shared) {
    let m = lab.wait_routed_holder(0, Duration::from_secs(15));
    lab.watcher(m).stop("TERM", Duration::from_secs(5));
    let del = |lab: &Lab| {
        let o = lab.run_node(m, &["ip", "addr", "del", VIP_CIDR, "dev", "lo"]);
        expect_exit(&o, 0, "ip addr del");
    };
    let t0 = now_epoch();
    del(lab);
    let gone = sh
        .routes
        .wait_for(t0, Duration::from_secs(2), |e| e.via.is_none());
    let t1 = now_epoch();
    lab.start_watcher(m, sh.watcher);
    let back = sh
        .routes
        .wait_for(t1, Duration::from_secs(10), |e| e.via == Some(m));
    let gone = gone.unwrap_or_else(|| {
        panic!(
            "the route stayed while the VIP was gone: {}",
            sh.routes.text()
        )
    });
    let back = back.unwrap_or_else(|| panic!("the route did not come back: {}", sh.routes.text()));
    // The watcher running: it re-adds on the kernel's event.
    let t2 = now_epoch();
    del(lab);
    std::thread::sleep(Duration::from_secs(1));
    let blip = sh.routes.after(t2);
    assert_eq!(
        lab.route_via(),
        Some(m),
        "the route after the blip: {blip:?}"
    );
    assert_eq!(lab.routed_holders(), vec![m]);
    let seen = match (blip.first(), blip.last()) {
        (Some(a), Some(b)) => format!(
            "the router saw it go and come back within {:.1} ms",
            (b.at - a.at) * 1e3
        ),
        _ => "the router saw nothing: the address was back before the daemon sent a withdrawal"
            .into(),
    };
    sh.figure(format!(
        "(a2) the VIP deleted by hand on n{m}, watcher stopped: route withdrawn at the router {:.1} ms after the delete began; the watcher started again: route back {:.0} ms after its start; deleted with the watcher running: {seen}",
        (gone.at - t0) * 1e3,
        (back.at - t1) * 1e3
    ));
}

/// (b) `kill -9` of the master's server: the route moves to the new
/// master's host and writes through the VIP land there. Measured: `ROLE`
/// master → the route at the router, → the first acknowledged write.
fn kill_failover(lab: &mut Lab, sh: &mut Shared) {
    let pace = Pace {
        interval: Duration::from_millis(10),
        timeout: Duration::from_millis(250),
    };
    let vip = KeptWriter::start(lab, "routed-vip", Route::Vip, pace);
    let k = kill_routed_master(lab, &[&vip], &sh.routes, Duration::from_secs(15));
    drop(vip);
    assert_ne!(k.new, k.old);
    let w = &k.writes[0];
    assert!(w.why.is_none(), "the VIP client: {:?}", w.why);
    assert_eq!(w.lost, 0, "acknowledged writes lost");
    let route = k.route.expect("a route event to the new master's host");
    let fin = lab.rejoin_routed();
    lab.routed_write_lands_on(fin, "routed-b", "b")
        .unwrap_or_else(|e| panic!("write after the failover: {e}"));
    if sh.v6 {
        ipv6_vip_follows(lab, sh, fin, "b");
    }
    let ms = |x: Option<f64>| x.map_or("--".into(), |v| format!("{v:.1}"));
    sh.figure(format!(
        "(b) kill -9 n{}: ROLE master -> route at the router {} ms, -> first acknowledged write {} ms; kill -> write {} ms (route n{} -> n{})",
        k.old,
        ms(k.after_role(Some(route))),
        ms(k.after_role(w.first_kept)),
        ms(k.after_kill(w.first_kept)),
        k.old,
        k.new
    ));
}

/// (b2) The rest of the product is unchanged for a routed VIP: a hook
/// with no capability is answered by the watcher, and one holding
/// CAP_NET_ADMIN alone, finding no watcher, acts itself (a routed VIP
/// needs no CAP_NET_RAW); `/metrics` (scraped
/// from the client through the router) names the mode, counts no
/// announcement round and says who holds it; the notify commands ran for
/// the failover of (b): `acquire` on the new master, `release` on the old.
fn hook_metrics_notify(lab: &mut Lab, sh: &mut Shared) {
    let m = lab.wait_routed_holder(0, Duration::from_secs(15));
    let other = NODES.into_iter().find(|&n| n != m).expect("a replica");
    let o = lab.sv_as(m, Privilege::NoCaps, &hook_cmd("observer", other, m));
    expect_exit(&o, 0, "a hook with no capability on the holder");
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("answered by the watcher"), "hook: {err}");
    // No socket there: the hook acts itself, under the host lock, beside
    // the running watcher, and keeps the VIP where it is.
    let nowhere = lab.node_dir(m).join("no-watcher.sock");
    let env = [(
        "SENTINEL_VIP_CONTROL_SOCKET",
        nowhere.to_str().expect("utf-8"),
    )];
    let hook = hook_cmd("observer", other, m);
    let o = lab.sv_env(m, Privilege::NetAdmin, &hook, &env);
    let err = String::from_utf8_lossy(&o.stderr);
    expect_exit(&o, 0, &format!("a hook with CAP_NET_ADMIN alone: {err}"));
    assert!(err.contains("hook: acting itself"), "hook: {err}");
    assert_eq!(
        lab.routed_holders(),
        vec![m],
        "holders after the direct hook"
    );
    let labels = format!("master=\"{MASTER_NAME}\",vip=\"{VIP}\",interface=\"lo\"");
    for n in NODES {
        let addr = format!("{}:{METRICS_PORT}", node_ip(n))
            .parse()
            .expect("addr");
        let (code, body) = lab
            .client_http_get(addr, "/metrics")
            .unwrap_or_else(|e| panic!("scrape n{n}: {e}"));
        assert_eq!(code, 200, "scrape n{n}");
        for (series, want) in [
            (
                format!("sentinel_vip_mode_info{{{labels},mode=\"routed\"}}"),
                "1",
            ),
            (
                format!("sentinel_vip_held{{{labels}}}"),
                if n == m { "1" } else { "0" },
            ),
            (
                format!("sentinel_vip_announcement_rounds_total{{{labels}}}"),
                "0",
            ),
        ] {
            let line = format!("{series} {want}");
            assert!(
                body.lines().any(|l| l == line),
                "n{n} lacks `{line}`:\n{body}"
            );
        }
    }
    let acts = |n: usize| std::fs::read_to_string(notify_log(lab, n)).unwrap_or_default();
    let acquired: Vec<usize> = NODES
        .into_iter()
        .filter(|&n| acts(n).contains(&format!("acquire {VIP}")))
        .collect();
    let released: Vec<usize> = NODES
        .into_iter()
        .filter(|&n| acts(n).contains(&format!("release {VIP}")))
        .collect();
    assert!(
        acquired.contains(&m),
        "no `acquire` notify on the holder n{m}: {acquired:?}"
    );
    assert!(
        released.contains(&1),
        "no `release` notify on the first master: {released:?}"
    );
    sh.figure(format!(
        "(b2) hook handed to the watcher on n{m}, and one with CAP_NET_ADMIN alone acted itself; /metrics: mode=\"routed\", held on n{m} only, 0 announcement rounds; notify acquire on {acquired:?}, release on {released:?}"
    ));
}

/// (h) Over the whole run, no ARP or neighbour advertisement on any
/// host's `lo` or `eth0` named either VIP, while the captures saw the
/// lab's other ARP traffic.
fn no_frames_for_the_vip(_: &mut Lab, sh: &mut Shared) {
    let ok = wait_until(Duration::from_secs(5), Duration::from_millis(100), || {
        sh.frames.frames() > 0
    });
    assert!(ok, "the captures saw no ARP at all: they prove nothing");
    let vip = sh.frames.vip_frames();
    assert!(vip.is_empty(), "frames for the routed VIP: {vip:#?}");
    sh.figure(format!(
        "(h) {} ARP/ICMPv6 frames captured on the hosts over the run, none for a VIP",
        sh.frames.frames()
    ));
}

//! End-to-end tests of the watcher's Prometheus metrics (issue 13), judged
//! by a real Prometheus (Debian's `prometheus`) running in the lab's client
//! namespace and scraping every watcher's `metrics_listen` once a second,
//! asked through its HTTP API; `promtool check metrics` lints a real
//! scrape. Watchers run as the systemd unit runs them (`nobody` with
//! CAP_NET_ADMIN and CAP_NET_RAW); Sentinel's reconfig script is off.

use std::collections::BTreeMap;
use std::io::Write;
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use sentinel_vip_lab::monitor::Monitor;
use sentinel_vip_lab::prometheus::{Prometheus, Series};
use sentinel_vip_lab::suite::{run_scenarios, show, Step};
use sentinel_vip_lab::{e2e_enabled, node_ip, wait_until, Lab, LabOptions, Privilege, NODES, VIP4};

const WATCHER: Privilege = Privilege::TwoCaps;
const PORT: u16 = 9469;
const SCRAPE: Duration = Duration::from_secs(1);
/// The two-holders alert expression. Scrapes of the old and the new
/// holder are not simultaneous, so across a move it can show both at 1
/// until the old one's next scrape: at most one interval.
const TWO_HOLDERS: &str = "sum by (vip) (sentinel_vip_held) > 1";
/// The same without that skew: a host counts only when it held the VIP
/// at every scrape of the last two intervals.
const TWO_HOLDERS_STEADY: &str = "sum by (vip) (min_over_time(sentinel_vip_held[2s])) > 1";
/// The alerts as the README's rules, their `for` scaled to the lab's 1 s
/// scrapes.
const RULES: &str = "groups:\n  - name: sentinel-vip\n    rules:\n      \
    - alert: SentinelVipTwoHolders\n        expr: sum by (vip) (sentinel_vip_held) > 1\n        for: 3s\n      \
    - alert: SentinelVipNoHolder\n        expr: sum by (vip) (sentinel_vip_held) == 0\n        for: 3s\n";

#[derive(Default)]
struct Ctx {
    prom: Option<Prometheus>,
}

impl Ctx {
    fn prom(&self) -> &Prometheus {
        self.prom.as_ref().expect("Prometheus started by step b")
    }
}

#[test]
fn metrics_end_to_end() {
    if !e2e_enabled() {
        return;
    }
    let started = Instant::now();
    let opts = LabOptions {
        reconfig_script: false,
        ..LabOptions::default()
    };
    let lab = Lab::new(Path::new(env!("CARGO_BIN_EXE_sentinel-vip")), opts);
    lab.wait_ready();
    let scenarios: [(&str, Step<Ctx>); 4] = [
        ("a-bad-metrics-listen", bad_metrics_listen),
        ("b-scraped-and-linted", scraped_and_linted),
        ("c-held-follows-a-failover", held_follows_a_failover),
        ("d-passes-and-majority", passes_and_majority),
    ];
    run_scenarios(lab, &mut Ctx::default(), &scenarios, started);
}

fn listen(n: usize) -> String {
    format!("{}:{PORT}", node_ip(n))
}

/// Node of a Prometheus `instance` label (`ip:port`).
fn node_of(s: &Series) -> usize {
    let inst = s.label("instance");
    NODES
        .into_iter()
        .find(|&n| listen(n) == inst)
        .unwrap_or_else(|| panic!("unknown instance {inst:?}"))
}

/// Per node, the value of the one series of `expr` from that node.
fn per_node(p: &Prometheus, expr: &str) -> BTreeMap<usize, f64> {
    let v = p.query(expr).unwrap_or_else(|e| panic!("{e}"));
    let mut m = BTreeMap::new();
    for s in &v {
        assert!(m.insert(node_of(s), s.value).is_none(), "{expr}: {v:?}");
    }
    m
}

/// Which nodes Prometheus currently sees holding the VIP.
fn held_by(p: &Prometheus) -> Vec<usize> {
    let m = per_node(p, &format!("sentinel_vip_held{{vip=\"{VIP4}\"}}"));
    assert_eq!(m.len(), 3, "held series: {m:?}");
    m.into_iter()
        .filter(|(_, v)| *v == 1.0)
        .map(|(n, _)| n)
        .collect()
}

/// (a) A `metrics_listen` that is not IP:port with a port is a one-line
/// config error, exit 2, before anything is touched.
fn bad_metrics_listen(lab: &mut Lab, _: &mut Ctx) {
    let before = lab.all_addrs();
    for bad in [
        "\"localhost:9469\"",
        "\"192.0.2.11\"",
        "\"192.0.2.11:0\"",
        "\"[2001:2::11]:99999\"",
        "9469",
    ] {
        lab.rewrite_config(1, &format!("metrics_listen = {bad}"));
        for cmd in ["watch", "check"] {
            let o = lab.sv_as(1, WATCHER, &[cmd]);
            let err = String::from_utf8_lossy(&o.stderr).trim().to_string();
            assert_eq!(o.status.code(), Some(2), "{cmd} with {bad}: {}", show(&o));
            assert_eq!(err.lines().count(), 1, "{cmd} with {bad}: {err:?}");
            // Line 6 of the lab's config is the key's.
            assert!(err.contains("line 6"), "{cmd} with {bad}: no line: {err}");
            eprintln!("  a: {cmd} {bad}: {err}");
        }
    }
    // Well-formed, but nothing can listen there: an IPv6 address the host
    // lacks (the lab allows non-local IPv4 binds, for Redis), and Redis's
    // own port. The watcher says so and stops before its first pass.
    for addr in ["[2001:2::99]:9469", "192.0.2.11:6379"] {
        lab.rewrite_config(1, &format!("metrics_listen = \"{addr}\""));
        // As the unit runs it: a root watcher would leave a control
        // socket the next step's watcher may not replace.
        let o = lab.sv_as(1, WATCHER, &["watch"]);
        let err = String::from_utf8_lossy(&o.stderr);
        let last = err.trim().lines().last().unwrap_or("");
        eprintln!(
            "  a: watch, {addr} taken or not local: exit {:?}: {last}",
            o.status.code()
        );
        assert!(
            matches!(o.status.code(), Some(1 | 2)),
            "watch: {}",
            show(&o)
        );
        assert!(
            last.contains(&format!("metrics_listen {addr}")),
            "{}",
            show(&o)
        );
    }
    lab.rewrite_config(1, "");
    assert_eq!(lab.all_addrs(), before, "addresses changed");
}

/// (b) Every watcher serves /metrics on its node's address; Prometheus
/// scrapes all three; `promtool check metrics` passes on a real scrape of
/// each; the VIP is held by the master's host alone.
fn scraped_and_linted(lab: &mut Lab, ctx: &mut Ctx) {
    for n in NODES {
        lab.rewrite_config(n, &format!("metrics_listen = \"{}\"", listen(n)));
        lab.start_watcher(n, WATCHER);
    }
    let m = lab.wait_one_holder(Duration::from_secs(10));
    let t = Instant::now();
    let targets: Vec<String> = NODES.iter().map(|&n| listen(n)).collect();
    let prom = Prometheus::start(lab, &targets, SCRAPE, RULES);
    prom.wait_up(3, Duration::from_secs(15));
    eprintln!(
        "  b: Prometheus up, 3 targets scraped, {:.1} s",
        t.elapsed().as_secs_f64()
    );
    for n in NODES {
        let addr: SocketAddr = listen(n).parse().unwrap();
        let (code, text) = lab
            .client_http_get(addr, "/metrics")
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(code, 200, "n{n} /metrics: {text}");
        let held = format!(
            "sentinel_vip_held{{master=\"mymaster\",vip=\"{VIP4}\",interface=\"eth0\"}} {}",
            u8::from(n == m)
        );
        assert!(
            text.contains(&held),
            "n{n} /metrics lacks {held:?}:\n{text}"
        );
        let lint = promtool_check(&text);
        assert!(
            lint.0,
            "promtool check metrics on n{n}'s scrape: {}",
            lint.1
        );
        eprintln!(
            "  b: n{n}: {} lines, {} series; promtool check metrics: ok {:?}",
            text.lines().count(),
            text.lines().filter(|l| !l.starts_with('#')).count(),
            lint.1
        );
    }
    let ok = wait_until(Duration::from_secs(5), Duration::from_millis(200), || {
        held_by(&prom) == vec![m]
    });
    assert!(
        ok,
        "Prometheus sees the VIP held by {:?}, want [{m}]",
        held_by(&prom)
    );
    ctx.prom = Some(prom);
}

/// `promtool check metrics` on `text`: passed, and what it said.
fn promtool_check(text: &str) -> (bool, String) {
    let mut c = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool (Debian package prometheus; scripts/deps.sh installs it)");
    c.stdin
        .take()
        .expect("piped")
        .write_all(text.as_bytes())
        .expect("write to promtool");
    let o = c.wait_with_output().expect("promtool");
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout).trim(),
        String::from_utf8_lossy(&o.stderr).trim()
    );
    (o.status.success() && said.is_empty(), said)
}

/// (c) A failover: Prometheus sees `held` move from the old master's host
/// to the new one's; sampled meanwhile, the two-holders expression is
/// empty whenever every target has been scraped since the move, the
/// kernel never shows two holders, and neither alert ever fires.
fn held_follows_a_failover(lab: &mut Lab, ctx: &mut Ctx) {
    let p = ctx.prom();
    let old = lab.master_node();
    assert_eq!(held_by(p), vec![old]);
    let acquires = per_node(p, "sentinel_vip_actions_total{action=\"acquire\"}");
    let releases = per_node(p, "sentinel_vip_actions_total{action=\"release\"}");
    let mon = Monitor::start(lab);
    let t0 = Instant::now();
    lab.start_failover(2, Duration::from_secs(20));
    // Every 100 ms: the two-holders expression, and who holds per Prometheus.
    let mut samples: Vec<(Duration, Vec<Series>, Vec<usize>)> = Vec::new();
    let mut moved_at = None;
    while t0.elapsed() < Duration::from_secs(25) {
        let two = p.query(TWO_HOLDERS).unwrap_or_else(|e| panic!("{e}"));
        let steady = p
            .query(TWO_HOLDERS_STEADY)
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(
            steady.is_empty(),
            "`{TWO_HOLDERS_STEADY}` at {:?}: {steady:?}",
            t0.elapsed()
        );
        let held = held_by(p);
        let now = t0.elapsed();
        if moved_at.is_none() && held.len() == 1 && held[0] != old {
            moved_at = Some(now);
        }
        samples.push((now, two, held));
        // Three more scrapes after the move, then stop.
        if moved_at.is_some_and(|m| now > m + 3 * SCRAPE) {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let trace = mon.stop();
    let new = lab
        .sentinels_agree()
        .expect("Sentinels agree after the failover");
    let moved_at = moved_at.unwrap_or_else(|| {
        panic!(
            "Prometheus never saw the VIP move off n{old}: last {:?}",
            samples.last()
        )
    });
    assert_ne!(new, old);
    assert_eq!(held_by(p), vec![new], "held after the failover");
    let kernel = trace.windows(new);
    eprintln!(
        "  c: n{old} -> n{new}: Prometheus saw the move {:.1} s after SENTINEL FAILOVER; kernel: two holders {:?}, converged {:?} ({} samples)",
        moved_at.as_secs_f64(),
        kernel.two_holders,
        kernel.converge,
        kernel.samples
    );
    assert_eq!(
        kernel.two_holders,
        Duration::ZERO,
        "the kernel showed two holders"
    );
    // Non-empty only as the scrape skew of the move: the new holder's
    // first scrape after it (1) before the old holder's (0). That lasts
    // less than one scrape interval; anything longer is a second holder.
    let two: Vec<Duration> = samples
        .iter()
        .filter(|s| !s.1.is_empty())
        .map(|s| s.0)
        .collect();
    let stretch = two.last().map_or(Duration::ZERO, |l| *l - two[0]);
    eprintln!(
        "  c: {} samples of `{TWO_HOLDERS}`, {} non-empty, over {stretch:?}{}",
        samples.len(),
        two.len(),
        two.first()
            .map(|f| format!(" from {f:?} (scrape skew: the kernel had no two holders)"))
            .unwrap_or_default()
    );
    assert!(
        stretch < SCRAPE,
        "two holders per Prometheus for {stretch:?}, longer than the skew of one scrape: {:?}",
        samples
            .iter()
            .filter(|s| !s.1.is_empty())
            .collect::<Vec<_>>()
    );
    let fired = p
        .query("count_over_time(ALERTS{alertstate=\"firing\"}[5m])")
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(fired.is_empty(), "alerts fired: {fired:?}");
    let d = |after: &BTreeMap<usize, f64>, before: &BTreeMap<usize, f64>, n| after[&n] - before[&n];
    let acq = per_node(p, "sentinel_vip_actions_total{action=\"acquire\"}");
    let rel = per_node(p, "sentinel_vip_actions_total{action=\"release\"}");
    eprintln!("  c: acquires {acquires:?} -> {acq:?}; releases {releases:?} -> {rel:?}");
    for n in NODES {
        let (want_acq, want_rel) = (u8::from(n == new) as f64, u8::from(n == old) as f64);
        assert_eq!(
            (d(&acq, &acquires, n), d(&rel, &releases, n)),
            (want_acq, want_rel),
            "n{n}'s actions"
        );
    }
    // Faster than waiting for Sentinel to demote the old master itself.
    lab.rejoin_all();
}

/// (d) Pass counters and the Sentinel majority as operators' alerts read
/// them: timer passes once a second, every pass counted in the duration
/// histogram too, a recent successful pass; with two Sentinels killed,
/// majority 0 everywhere (the VIP kept: the fence, the default, still
/// hears both replicas), then 1 again once they are back.
fn passes_and_majority(lab: &mut Lab, ctx: &mut Ctx) {
    let p = ctx.prom();
    let h = lab.master_node();
    let rate = per_node(
        p,
        "sum by (instance) (rate(sentinel_vip_passes_total{trigger=\"timer\",result=\"ok\"}[10s]))",
    );
    let start = per_node(
        p,
        "sentinel_vip_passes_total{trigger=\"start\",result=\"ok\"}",
    );
    let events = per_node(
        p,
        "sum by (instance) (sentinel_vip_passes_total{trigger=~\"event|promotion\"})",
    );
    let diff = per_node(p, "sum by (instance) (sentinel_vip_passes_total) - sum by (instance) (sentinel_vip_pass_duration_seconds_count)");
    let age = per_node(p, "sentinel_vip_last_successful_pass_age_seconds");
    let p99 = per_node(p, "histogram_quantile(0.99, sum by (instance, le) (rate(sentinel_vip_pass_duration_seconds_bucket[1m])))");
    eprintln!("  d: timer passes/s {rate:?}; start {start:?}; event/promotion passes {events:?}; pass age {age:?}; p99 pass s {p99:?}");
    for n in NODES {
        assert!(
            (0.6..=1.4).contains(&rate[&n]),
            "n{n}: {} timer passes/s, reconcile_interval_ms is 1000",
            rate[&n]
        );
        assert_eq!(start[&n], 1.0, "n{n}: one start pass");
        assert!(events[&n] >= 1.0, "n{n}: no pass for the failover's events");
        assert_eq!(diff[&n], 0.0, "n{n}: passes and histogram count differ");
        assert!(
            age[&n] < 3.0,
            "n{n}: last successful pass {} s ago",
            age[&n]
        );
    }
    let majority = |want: f64| {
        wait_until(Duration::from_secs(10), Duration::from_millis(200), || {
            let m = per_node(
                p,
                "sentinel_vip_master_sentinel_majority{master=\"mymaster\"}",
            );
            m.len() == 3 && m.values().all(|&v| v == want)
        })
    };
    assert!(majority(1.0), "majority not 1 on every watcher");
    let killed: Vec<usize> = NODES.into_iter().filter(|&n| n != h).collect();
    let t = Instant::now();
    for &n in &killed {
        lab.kill_sentinel(n);
    }
    assert!(
        majority(0.0),
        "majority not 0 everywhere with two Sentinels killed"
    );
    eprintln!(
        "  d: majority 0 on all three {:.1} s after killing two Sentinels",
        t.elapsed().as_secs_f64()
    );
    let answered = per_node(
        p,
        "sentinel_vip_master_sentinels_answered{master=\"mymaster\"}",
    );
    let up = p
        .query("sentinel_vip_sentinel_up")
        .unwrap_or_else(|e| panic!("{e}"));
    std::thread::sleep(2 * SCRAPE);
    let ages = p
        .query("sentinel_vip_sentinel_last_answer_age_seconds")
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(
        answered.values().all(|&v| v == 1.0),
        "answered: {answered:?}"
    );
    for s in &up {
        let dead = killed
            .iter()
            .any(|&k| s.label("sentinel") == format!("{}:26379", node_ip(k)));
        assert_eq!(s.value, if dead { 0.0 } else { 1.0 }, "{s:?}");
    }
    for s in &ages {
        let dead = killed
            .iter()
            .any(|&k| s.label("sentinel") == format!("{}:26379", node_ip(k)));
        assert!(if dead { s.value >= 2.0 } else { s.value < 2.0 }, "{s:?}");
    }
    assert_eq!(
        lab.holders(),
        vec![h],
        "the VIP must be kept without a majority"
    );
    assert_eq!(held_by(p), vec![h]);
    // The fence (the default) watches on the holder alone: one Sentinel
    // of three heard, both replicas, so it keeps the VIP.
    let witness = |w: &str| {
        let q = format!("sentinel_vip_fence_witness_{w}{{master=\"mymaster\"}}");
        per_node(p, &q).into_iter().collect::<Vec<_>>()
    };
    assert_eq!(witness("sentinels"), [(h, 1.0)], "Sentinel witnesses");
    assert_eq!(witness("replicas"), [(h, 2.0)], "replica witnesses");
    for &n in &killed {
        lab.restart_sentinel(n);
    }
    assert!(
        majority(1.0),
        "majority not back after the Sentinels restarted"
    );
    lab.wait_ready();
}

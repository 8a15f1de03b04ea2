use std::io::Write as _;
use std::process::{Command, Stdio};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::*;

fn vip(master: &str, ip: &str, ifname: &str) -> VipId {
    VipId::new(master, ip.parse().unwrap(), ifname)
}

fn said(master: Option<&str>, epoch: u64, answered: usize, configured: usize) -> Said {
    Said {
        master: master.map(str::to_string),
        epoch: master.map(|_| epoch),
        answered,
        configured,
        majority: answered > configured / 2,
    }
}

const SENTINELS: [&str; 3] = ["192.0.2.11:26379", "192.0.2.12:26379", "[2001:2::13]:26379"];

fn sentinels() -> Vec<String> {
    SENTINELS.iter().map(|s| s.to_string()).collect()
}

/// The value of the one sample `series` (name and labels as written).
fn sample(text: &str, series: &str) -> Option<f64> {
    let mut found = text.lines().filter_map(|l| {
        let v = l.strip_prefix(series)?.strip_prefix(' ')?;
        Some(match v {
            "+Inf" => f64::INFINITY,
            v => v.parse::<f64>().unwrap_or_else(|e| panic!("{l:?}: {e}")),
        })
    });
    let v = found.next();
    assert!(found.next().is_none(), "{series} appears twice");
    v
}

fn count_prefix(text: &str, prefix: &str) -> usize {
    text.lines().filter(|l| l.starts_with(prefix)).count()
}

const V4: &str = r#"{master="mymaster",vip="192.0.2.100",interface="eth0"}"#;
const V6: &str = r#"{master="mymaster",vip="2001:2::100",interface="eth1"}"#;

/// Two VIPs of one master (dual stack), three Sentinels, one pass.
fn one_pass() -> Metrics {
    let m = Metrics::new();
    let (a, b) = (
        vip("mymaster", "192.0.2.100", "eth0"),
        vip("mymaster", "2001:2::100", "eth1"),
    );
    m.configure(&[a.clone(), b.clone()], &sentinels());
    m.sentinel_answer(SENTINELS[0], true);
    m.sentinel_answer(SENTINELS[1], true);
    m.sentinel_answer(SENTINELS[2], false);
    let s = said(Some("192.0.2.12:6379"), 4, 2, 3);
    m.vip_state(&a, true, &s);
    m.vip_state(&b, false, &s);
    m.action(&a, ActionKind::Acquire);
    m.announced(a.vip, true);
    m.announced(a.vip, true);
    m.announced(a.vip, false);
    m.error(ErrorKind::Netlink);
    m.pass_done(Trigger::Event, Duration::from_millis(3), true);
    m.pass_done(Trigger::Timer, Duration::from_millis(700), false);
    m
}

#[test]
fn exposition_has_every_metric() {
    let t = one_pass().encode();
    let rows: &[(String, f64)] = &[
        (
            format!(
                r#"sentinel_vip_build_info{{version="{}"}}"#,
                env!("CARGO_PKG_VERSION")
            ),
            1.0,
        ),
        (format!("sentinel_vip_held{V4}"), 1.0),
        (format!("sentinel_vip_held{V6}"), 0.0),
        (
            r#"sentinel_vip_sentinel_master_info{master="mymaster",vip="192.0.2.100",interface="eth0",address="192.0.2.12:6379"}"#.into(),
            1.0,
        ),
        (format!("sentinel_vip_config_epoch{V4}"), 4.0),
        (format!("sentinel_vip_config_epoch{V6}"), 4.0),
        (r#"sentinel_vip_sentinel_up{sentinel="192.0.2.11:26379"}"#.into(), 1.0),
        (r#"sentinel_vip_sentinel_up{sentinel="[2001:2::13]:26379"}"#.into(), 0.0),
        (
            r#"sentinel_vip_sentinel_last_answer_age_seconds{sentinel="[2001:2::13]:26379"}"#.into(),
            f64::INFINITY,
        ),
        (r#"sentinel_vip_master_sentinel_majority{master="mymaster"}"#.into(), 1.0),
        (r#"sentinel_vip_master_sentinels_answered{master="mymaster"}"#.into(), 2.0),
        (r#"sentinel_vip_master_sentinels_configured{master="mymaster"}"#.into(), 3.0),
        (r#"sentinel_vip_passes_total{trigger="event",result="ok"}"#.into(), 1.0),
        (r#"sentinel_vip_passes_total{trigger="timer",result="failed"}"#.into(), 1.0),
        (r#"sentinel_vip_pass_duration_seconds_bucket{trigger="event",le="0.0025"}"#.into(), 0.0),
        (r#"sentinel_vip_pass_duration_seconds_bucket{trigger="event",le="0.005"}"#.into(), 1.0),
        (r#"sentinel_vip_pass_duration_seconds_bucket{trigger="timer",le="0.5"}"#.into(), 0.0),
        (r#"sentinel_vip_pass_duration_seconds_bucket{trigger="timer",le="1"}"#.into(), 1.0),
        (r#"sentinel_vip_pass_duration_seconds_bucket{trigger="timer",le="+Inf"}"#.into(), 1.0),
        (r#"sentinel_vip_pass_duration_seconds_sum{trigger="timer"}"#.into(), 0.7),
        (r#"sentinel_vip_pass_duration_seconds_count{trigger="event"}"#.into(), 1.0),
        (
            r#"sentinel_vip_actions_total{master="mymaster",vip="192.0.2.100",interface="eth0",action="acquire"}"#.into(),
            1.0,
        ),
        (
            r#"sentinel_vip_actions_total{master="mymaster",vip="192.0.2.100",interface="eth0",action="release"}"#.into(),
            0.0,
        ),
        (format!("sentinel_vip_announcement_rounds_total{V4}"), 2.0),
        (format!("sentinel_vip_announcement_rounds_total{V6}"), 0.0),
        (r#"sentinel_vip_errors_total{kind="sentinel"}"#.into(), 1.0),
        (r#"sentinel_vip_errors_total{kind="announce"}"#.into(), 1.0),
        (r#"sentinel_vip_errors_total{kind="netlink"}"#.into(), 1.0),
        (r#"sentinel_vip_errors_total{kind="notify"}"#.into(), 0.0),
    ];
    for (series, want) in rows {
        assert_eq!(sample(&t, series), Some(*want), "{series} in\n{t}");
    }
    let answered = sample(
        &t,
        r#"sentinel_vip_sentinel_last_answer_age_seconds{sentinel="192.0.2.11:26379"}"#,
    )
    .unwrap();
    assert!((0.0..5.0).contains(&answered), "{answered}");
    let ok = sample(&t, "sentinel_vip_last_successful_pass_age_seconds").unwrap();
    assert!((0.0..5.0).contains(&ok), "{ok}");
    // Each family once, with its help and type, before its samples.
    for family in [
        "sentinel_vip_held",
        "sentinel_vip_sentinel_master_info",
        "sentinel_vip_config_epoch",
        "sentinel_vip_sentinel_up",
        "sentinel_vip_sentinel_last_answer_age_seconds",
        "sentinel_vip_master_sentinel_majority",
        "sentinel_vip_master_sentinels_answered",
        "sentinel_vip_master_sentinels_configured",
        "sentinel_vip_passes_total",
        "sentinel_vip_pass_duration_seconds",
        "sentinel_vip_actions_total",
        "sentinel_vip_announcement_rounds_total",
        "sentinel_vip_errors_total",
        "sentinel_vip_last_successful_pass_age_seconds",
        "sentinel_vip_build_info",
    ] {
        assert_eq!(
            count_prefix(&t, &format!("# HELP {family} ")),
            1,
            "{family}"
        );
        assert_eq!(
            count_prefix(&t, &format!("# TYPE {family} ")),
            1,
            "{family}"
        );
    }
    for l in t.lines().filter(|l| !l.starts_with('#')) {
        let name = l.split(['{', ' ']).next().unwrap();
        let base = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|s| name.strip_suffix(s))
            .filter(|b| b.ends_with("_seconds"))
            .unwrap_or(name);
        assert!(t.contains(&format!("# HELP {base} ")), "{name} has no HELP");
    }
}

#[test]
fn one_master_address_series_per_vip() {
    let m = Metrics::new();
    let a = vip("mymaster", "192.0.2.100", "eth0");
    m.configure(std::slice::from_ref(&a), &sentinels());
    let info = r#"sentinel_vip_sentinel_master_info{master="mymaster",vip="192.0.2.100",interface="eth0",address="#;
    // (what the Sentinels said, the one address series expected)
    let rows = [
        (
            said(Some("192.0.2.12:6379"), 4, 3, 3),
            Some("\"192.0.2.12:6379\"}"),
        ),
        (
            said(Some("192.0.2.13:6379"), 5, 3, 3),
            Some("\"192.0.2.13:6379\"}"),
        ),
        (
            said(Some("192.0.2.13:6379"), 5, 1, 3),
            Some("\"192.0.2.13:6379\"}"),
        ),
        (said(None, 0, 0, 3), None),
        (
            said(Some("[2001:2::12]:6379"), 6, 2, 3),
            Some("\"[2001:2::12]:6379\"}"),
        ),
    ];
    for (s, want) in rows {
        m.vip_state(&a, false, &s);
        let t = m.encode();
        assert_eq!(
            count_prefix(&t, info),
            usize::from(want.is_some()),
            "{s:?}\n{t}"
        );
        if let Some(w) = want {
            assert_eq!(sample(&t, &format!("{info}{w}")), Some(1.0), "{t}");
        }
        let epoch = sample(&t, &format!("sentinel_vip_config_epoch{V4}"));
        assert_eq!(epoch, s.epoch.map(|e| e as f64), "{t}");
        let majority = sample(
            &t,
            r#"sentinel_vip_master_sentinel_majority{master="mymaster"}"#,
        );
        assert_eq!(majority, Some(f64::from(u8::from(s.majority))));
    }
}

#[test]
fn reconfigure_drops_what_is_gone() {
    let m = one_pass();
    let c = vip("cache", "192.0.2.101", "eth0");
    m.configure(std::slice::from_ref(&c), &sentinels()[..1]);
    m.vip_state(&c, true, &said(Some("192.0.2.21:6379"), 1, 1, 1));
    let t = m.encode();
    for gone in ["mymaster", "192.0.2.12:26379", "2001:2::13"] {
        assert!(!t.contains(gone), "{gone} still in\n{t}");
    }
    let c4 = r#"{master="cache",vip="192.0.2.101",interface="eth0"}"#;
    assert_eq!(sample(&t, &format!("sentinel_vip_held{c4}")), Some(1.0));
    assert_eq!(
        sample(&t, &format!("sentinel_vip_announcement_rounds_total{c4}")),
        Some(0.0)
    );
    // Counts that are not per VIP run on.
    assert_eq!(
        sample(&t, r#"sentinel_vip_errors_total{kind="netlink"}"#),
        Some(1.0)
    );
    assert_eq!(
        sample(
            &t,
            r#"sentinel_vip_passes_total{trigger="event",result="ok"}"#
        ),
        Some(1.0)
    );
    // The same VIP moved to another interface: one held series, the new one.
    let moved = vip("cache", "192.0.2.101", "eth1");
    m.configure(std::slice::from_ref(&moved), &sentinels()[..1]);
    let t = m.encode();
    assert_eq!(count_prefix(&t, "sentinel_vip_held{"), 1, "{t}");
    assert_eq!(
        count_prefix(&t, "sentinel_vip_sentinel_master_info{"),
        0,
        "{t}"
    );
    assert!(t.contains(r#"sentinel_vip_held{master="cache",vip="192.0.2.101",interface="eth1"} 0"#));
}

#[test]
fn ages_are_computed_when_scraped() {
    let m = Metrics::new();
    m.configure(&[], &sentinels()[..1]);
    let age = |t: &str| {
        sample(
            t,
            r#"sentinel_vip_sentinel_last_answer_age_seconds{sentinel="192.0.2.11:26379"}"#,
        )
        .unwrap()
    };
    let t = m.encode();
    assert_eq!(age(&t), f64::INFINITY, "never answered");
    assert_eq!(
        sample(&t, "sentinel_vip_last_successful_pass_age_seconds"),
        Some(f64::INFINITY)
    );
    m.sentinel_answer(SENTINELS[0], true);
    m.pass_done(Trigger::Start, Duration::from_millis(1), true);
    std::thread::sleep(Duration::from_millis(120));
    let t = m.encode();
    assert!((0.12..5.0).contains(&age(&t)), "{}", age(&t));
    let pass = sample(&t, "sentinel_vip_last_successful_pass_age_seconds").unwrap();
    assert!((0.12..5.0).contains(&pass), "{pass}");
    // A failed answer or pass does not reset the clocks.
    m.sentinel_answer(SENTINELS[0], false);
    m.pass_done(Trigger::Timer, Duration::from_millis(1), false);
    let t = m.encode();
    assert!(age(&t) >= 0.12, "{}", age(&t));
    assert!(sample(&t, "sentinel_vip_last_successful_pass_age_seconds").unwrap() >= 0.12);
}

/// Debian's promtool (package `prometheus`) lints the exposition as a
/// Prometheus server would parse it.
#[test]
fn promtool_accepts_the_exposition() {
    let m = one_pass();
    let c = vip("cache", "198.18.0.100", "eth0");
    let mut vips = vec![c.clone()];
    vips.extend([vip("mymaster", "192.0.2.100", "eth0")]);
    m.configure(&vips, &sentinels());
    m.vip_state(&c, false, &said(None, 0, 0, 3));
    m.action(&c, ActionKind::Refuse);
    for t in Trigger::ALL {
        m.pass_done(t, Duration::from_micros(400), true);
    }
    let text = m.encode();
    let mut child = match Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
    {
        Ok(c) => c,
        Err(e) => panic!(
            "promtool: {e}: install Debian's `prometheus` package (apt-get install prometheus)"
        ),
    };
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "promtool: {said}\n{text}");
    assert!(
        said.trim().is_empty(),
        "promtool found problems: {said}\n{text}"
    );
}

/// One request on a fresh connection; the whole response.
async fn exchange(addr: std::net::SocketAddr, request: &[u8]) -> String {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(request).await.unwrap();
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out).await;
    String::from_utf8(out).unwrap()
}

#[tokio::test]
async fn serves_metrics_over_http() {
    let m = Arc::new(one_pass());
    let addr = test_server(m.clone(), Duration::from_millis(300)).await;
    let r = exchange(addr, b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n").await;
    let (head, body) = r.split_once("\r\n\r\n").unwrap();
    assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
    assert!(
        head.contains("\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8"),
        "{head}"
    );
    assert!(
        head.contains(&format!("\r\nContent-Length: {}", body.len())),
        "{head}"
    );
    assert!(head.contains("\r\nConnection: close"), "{head}");
    assert_eq!(
        sample(body, &format!("sentinel_vip_held{V4}")),
        Some(1.0),
        "{body}"
    );
    // Values are read at each scrape.
    m.vip_state(
        &vip("mymaster", "192.0.2.100", "eth0"),
        false,
        &said(Some("192.0.2.13:6379"), 5, 3, 3),
    );
    let r = exchange(addr, b"GET /metrics?x=1 HTTP/1.0\n\n").await;
    assert_eq!(
        sample(&r, &format!("sentinel_vip_held{V4}")),
        Some(0.0),
        "{r}"
    );
    let r = exchange(addr, b"HEAD /metrics HTTP/1.1\r\n\r\n").await;
    assert!(
        r.starts_with("HTTP/1.1 200 OK\r\n") && r.ends_with("\r\n\r\n"),
        "{r}"
    );
}

#[tokio::test]
async fn bad_requests_get_an_error_status() {
    let addr = test_server(Arc::new(Metrics::new()), Duration::from_millis(300)).await;
    let rows: &[(&[u8], &str)] = &[
        (b"GET / HTTP/1.1\r\n\r\n", "404 Not Found"),
        (
            b"POST /metrics HTTP/1.1\r\nContent-Length: 2\r\n\r\nab",
            "405 Method Not Allowed",
        ),
        (b"nonsense\r\n\r\n", "400 Bad Request"),
        (
            b"GET /metrics HTTP/2.0\r\n\r\n",
            "505 HTTP Version Not Supported",
        ),
    ];
    for (req, want) in rows {
        let r = exchange(addr, req).await;
        assert!(r.starts_with(&format!("HTTP/1.1 {want}\r\n")), "{r}");
        assert!(!r.contains("sentinel_vip"), "{r}");
    }
    let r = exchange(addr, b"PUT /metrics HTTP/1.1\r\n\r\n").await;
    assert!(r.contains("\r\nAllow: GET, HEAD\r\n"), "{r}");
    // A head that never ends: refused at the size limit.
    let huge = format!("GET /metrics HTTP/1.1\r\nX: {}\r\n", "a".repeat(20_000));
    let r = exchange(addr, huge.as_bytes()).await;
    assert!(
        r.is_empty() || r.starts_with("HTTP/1.1 431 "),
        "either the 431 or a reset if the kernel discarded it: {r}"
    );
    // A client too slow to finish its head: 408 at the deadline.
    let t0 = std::time::Instant::now();
    let r = exchange(addr, b"GET /metrics HTTP/1.1\r\n").await;
    assert!(r.starts_with("HTTP/1.1 408 Request Timeout\r\n"), "{r}");
    assert!(
        t0.elapsed() >= Duration::from_millis(300),
        "{:?}",
        t0.elapsed()
    );
    // A client gone before finishing its request costs nothing more.
    drop(TcpStream::connect(addr).await.unwrap());
    let r = exchange(addr, b"GET /metrics HTTP/1.1\r\n\r\n").await;
    assert!(r.starts_with("HTTP/1.1 200 OK\r\n"), "{r}");
}

#[tokio::test]
async fn idle_connections_cannot_starve_the_scraper() {
    let addr = test_server(Arc::new(Metrics::new()), Duration::from_millis(300)).await;
    // Two slots in the test server: both taken by clients that say nothing.
    let idle = [
        TcpStream::connect(addr).await.unwrap(),
        TcpStream::connect(addr).await.unwrap(),
    ];
    tokio::time::sleep(Duration::from_millis(50)).await;
    let r = exchange(addr, b"GET /metrics HTTP/1.1\r\n\r\n").await;
    assert!(r.is_empty(), "a third connection is closed at once: {r}");
    // At the deadline the idle ones are answered 408 and the slots free.
    for mut s in idle {
        let mut out = String::new();
        let _ = s.read_to_string(&mut out).await;
        assert!(out.starts_with("HTTP/1.1 408 "), "{out}");
    }
    let r = exchange(addr, b"GET /metrics HTTP/1.1\r\n\r\n").await;
    assert!(r.starts_with("HTTP/1.1 200 OK\r\n"), "{r}");
}

/// The fence's series: witnesses only where it watches, a release counter
/// per VIP from zero, and a fence release counted as a release too.
#[test]
fn fence_witnesses_and_releases() {
    let m = one_pass();
    let t = m.encode();
    assert_eq!(
        sample(&t, &format!("sentinel_vip_fence_releases_total{V4}")),
        Some(0.0)
    );
    assert_eq!(count_prefix(&t, "sentinel_vip_fence_witness_"), 0, "{t}");
    m.fence_witnesses("mymaster", Some((1, 2)));
    let t = m.encode();
    let of = |name: &str| format!(r#"sentinel_vip_fence_witness_{name}{{master="mymaster"}}"#);
    assert_eq!(sample(&t, &of("sentinels")), Some(1.0));
    assert_eq!(sample(&t, &of("replicas")), Some(2.0));
    m.fence_released(&vip("mymaster", "192.0.2.100", "eth0"));
    m.fence_witnesses("mymaster", None);
    let t = m.encode();
    assert_eq!(count_prefix(&t, "sentinel_vip_fence_witness_"), 0, "{t}");
    for (series, want) in [
        (format!("sentinel_vip_fence_releases_total{V4}"), 1.0),
        (format!("sentinel_vip_fence_releases_total{V6}"), 0.0),
        (format!("sentinel_vip_held{V4}"), 0.0),
        (
            r#"sentinel_vip_actions_total{master="mymaster",vip="192.0.2.100",interface="eth0",action="release"}"#.into(),
            1.0,
        ),
    ] {
        assert_eq!(sample(&t, &series), Some(want), "{series} in\n{t}");
    }
    m.fence_witnesses("mymaster", Some((3, 2)));
    m.configure(&[vip("cache", "192.0.2.101", "eth0")], &sentinels());
    let t = m.encode();
    assert!(!t.contains("mymaster"), "{t}");
}

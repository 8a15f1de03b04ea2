//! The package test's phase for the watcher's sandbox (issue 21): the unit
//! as installed rates at most [`MAX_EXPOSURE`] by `systemd-analyze
//! security`, and under it a SIGHUP reload, /metrics, and an on_acquire
//! command (holding no capability) all work. Leaves the config as it found
//! it.

use std::fs;
use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use crate::host::Host;
use crate::CT;
use sentinel_vip_lab::held::{Held, SCRIPT};
use sentinel_vip_lab::{node_ip, wait_until, Lab, POLL, VIP4_CIDR};

/// The bound; Debian's own redis-sentinel.service rates 1.2.
const MAX_EXPOSURE: f64 = 2.5;
/// Where the watcher may execute from (ProtectSystem=strict leaves /usr
/// read-only, NoExecPaths spares it) and where it may write.
const SCRIPT_PATH: &str = "/usr/local/lib/sentinel-vip/held";
const RECORD: &str = "/var/log/sentinel-vip/held.rec";
const CONFIG: &str = "/etc/sentinel-vip/sentinel-vip.toml";
const METRICS_PORT: u16 = 9469;
/// README: a command's PATH unless notify_env sets one.
const PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Pure: the overall exposure `systemd-analyze security` printed.
fn overall_exposure(text: &str) -> Option<f64> {
    let line = text
        .lines()
        .find(|l| l.contains("Overall exposure level"))?;
    let (_, score) = line.rsplit_once(": ")?;
    score.split_whitespace().next()?.parse().ok()
}

/// The phase. The container must hold the VIP (be Sentinel's master):
/// deleting it there is the acquire that runs the command.
pub fn hardened_unit(lab: &Lab, host: &Host) {
    let report = host.sh("systemd-analyze security --no-pager sentinel-vip.service 2>&1");
    let exposure = overall_exposure(&report)
        .unwrap_or_else(|| panic!("no overall exposure in systemd-analyze's output:\n{report}"));
    for l in report.lines().filter(|l| l.starts_with('✗')) {
        eprintln!("  {}", l.split_whitespace().collect::<Vec<_>>().join(" "));
    }
    eprintln!("  systemd-analyze security sentinel-vip.service: {exposure}");
    assert!(
        exposure <= MAX_EXPOSURE,
        "exposure {exposure} > {MAX_EXPOSURE}:\n{report}"
    );
    assert_eq!(
        lab.holders(),
        vec![CT],
        "hardened_unit: the container must hold the VIP"
    );

    // The operator's edit: /metrics, a notify command, a variable for it;
    // then `systemctl reload`, which must reload, not restart.
    let script = host.ct.path(SCRIPT_PATH);
    fs::create_dir_all(script.parent().unwrap()).unwrap();
    fs::write(&script, SCRIPT).unwrap();
    fs::set_permissions(&script, fs::Permissions::from_mode(0o755)).unwrap();
    let _ = fs::remove_file(host.ct.path(RECORD));
    let config = host.ct.path(CONFIG);
    let shipped = fs::read_to_string(&config).expect("read sentinel-vip.toml");
    let listen = format!("{}:{METRICS_PORT}", node_ip(CT));
    let top = format!(
        "metrics_listen = \"{listen}\"\nnotify_env = {{ GREETING = \"two words\" }}\n\
         on_acquire = [\"{SCRIPT_PATH}\", \"{RECORD}\"]\n"
    );
    // In place: the file keeps root:sentinel-vip 0640.
    fs::write(&config, format!("{top}{shipped}")).unwrap();
    reload(host);

    let addr: SocketAddr = listen.parse().unwrap();
    let scrape = || match lab.client_http_get(addr, "/metrics") {
        Ok((200, body)) => body,
        other => panic!("GET http://{addr}/metrics from the client: {other:?}"),
    };
    let metric = |body: &str, series: &str| {
        body.lines()
            .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
            .map(str::to_string)
    };
    let up = wait_until(Duration::from_secs(5), POLL, || {
        lab.client_http_get(addr, "/metrics").is_ok()
    });
    assert!(up, "/metrics on {addr} not up 5 s after the reload");
    let body = scrape();
    let held = body
        .lines()
        .find(|l| l.starts_with("sentinel_vip_held{"))
        .unwrap_or_else(|| panic!("no sentinel_vip_held in /metrics:\n{body}"));
    assert!(held.ends_with(" 1"), "the container holds the VIP: {held}");
    eprintln!("  /metrics from the client: {held}");

    host.sh(&format!("ip addr del {VIP4_CIDR} dev eth0"));
    let mut rec = None;
    let recorded = wait_until(Duration::from_secs(10), Duration::from_millis(50), || {
        rec = fs::read_to_string(host.ct.path(RECORD))
            .ok()
            .and_then(|t| Held::parse(&t));
        rec.is_some()
    });
    assert!(
        recorded,
        "on_acquire recorded nothing 10 s after the VIP was deleted"
    );
    let rec = rec.unwrap();
    eprintln!("  on_acquire under the unit: {} {:?}", rec.id, rec.status);
    assert_eq!(
        rec.privilege_problems(),
        Vec::<String>::new(),
        "on_acquire holds"
    );
    assert_eq!(
        rec.status.get("CapBnd").map(String::as_str),
        Some("0000000000003000")
    );
    assert!(
        rec.id.starts_with(&format!(
            "uid={}(sentinel-vip)",
            host.sh("id -u sentinel-vip")
        )),
        "{}",
        rec.id
    );
    assert_eq!(
        rec.unexpected_env(&["GREETING"]),
        Vec::<String>::new(),
        "{:?}",
        rec.env
    );
    assert_eq!(
        (rec.env["PATH"].as_str(), rec.env["GREETING"].as_str()),
        (PATH, "two words")
    );
    assert_eq!(lab.holders(), vec![CT], "the VIP back on the container");
    let done = wait_until(Duration::from_secs(5), POLL, || {
        !journal(host, "notify command done").is_empty()
    });
    assert!(
        done,
        "no `notify command done` in the journal: {:?}",
        journal(host, "notify")
    );
    let notify_errors = metric(&scrape(), "sentinel_vip_errors_total{kind=\"notify\"}");
    assert_eq!(
        notify_errors.as_deref(),
        Some("0"),
        "notify errors in /metrics"
    );

    let check = host.sh("sentinel-vip check 2>&1 || true");
    assert!(
        !check.lines().any(|l| l.starts_with("warn")),
        "`sentinel-vip check` warns of the unit's watcher:\n{check}"
    );
    fs::write(&config, shipped).unwrap();
    reload(host);
}

/// `systemctl reload sentinel-vip`: SIGHUP, the config reloaded (the
/// journal says so), the same process.
fn reload(host: &Host) {
    let pid = host.prop("sentinel-vip", "MainPID");
    let before = journal(host, "config reloaded").len();
    host.sh("systemctl reload sentinel-vip");
    let ok = wait_until(Duration::from_secs(5), POLL, || {
        journal(host, "config reloaded").len() > before
    });
    assert!(
        ok,
        "no `config reloaded` in the journal after systemctl reload"
    );
    assert_eq!(
        host.prop("sentinel-vip", "MainPID"),
        pid,
        "reload restarted the watcher"
    );
}

/// The watcher's journal lines containing `what`.
fn journal(host: &Host, what: &str) -> Vec<String> {
    host.sh("journalctl --no-pager -o cat -u sentinel-vip")
        .lines()
        .filter(|l| l.contains(what))
        .map(str::to_string)
        .collect()
}

#[test]
fn reads_the_overall_exposure() {
    let out = "✗ PrivateNetwork=   Service has access to the host's network   0.5\n\
               \n→ Overall exposure level for sentinel-vip.service: 1.9 OK 🙂\n";
    assert_eq!(overall_exposure(out), Some(1.9));
    assert_eq!(
        overall_exposure("→ Overall exposure level for x.service: 9.6 UNSAFE 😨"),
        Some(9.6)
    );
    assert_eq!(overall_exposure("nothing"), None);
}

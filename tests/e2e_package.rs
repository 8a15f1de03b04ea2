//! End-to-end test of the Debian package on a real systemd: node 3 of the
//! lab is a booted Debian 12 container (lab/src/container/) whose eth0
//! is the node's, with the built .deb installed by apt and the
//! distribution's redis-server and redis-sentinel units exactly as shipped
//! (only redis.conf, sentinel.conf and sentinel-vip.toml are edited). Nodes
//! 1 and 2 are ordinary lab nodes running the hook directly as root.
//!
//! Shows: the watcher unit's user, capabilities and notify status; the
//! stock Sentinel running the packaged hook, which hands every call to the
//! watcher; failovers to and away from the container moving the VIP (kernel
//! addresses, the client's neighbour entry, writes through the VIP); with
//! the watcher stopped, the hook's exit 1 with its reason and Sentinel's
//! retry; man page and bash completion. Then that nothing is left behind.

#[path = "e2e_package/hardening.rs"]
mod hardening;
#[path = "e2e_package/host.rs"]
mod host;

use std::path::Path;
use std::time::{Duration, Instant};

use host::{find_deb, status_field, Host};
use sentinel_vip_lab::container::{self, Container};
use sentinel_vip_lab::{e2e_enabled, wait_until, Lab, LabOptions, MASTER_NAME, POLL, VIP4};

/// The node that is a container.
const CT: usize = 3;
/// The node never promoted (replica-priority 0), so that every failover
/// goes between node 1 and the container.
const NEVER: usize = 2;
const HOOK: &str = "/usr/lib/sentinel-vip/sentinel-vip";
/// CAP_NET_ADMIN (12) and CAP_NET_RAW (13), as /proc/PID/status prints them.
const TWO_CAPS: &str = "0000000000003000";
const ROOTFS_PACKAGES: [&str; 8] = [
    "systemd",
    "systemd-sysv",
    "dbus",
    "redis-server",
    "redis-sentinel",
    "iproute2",
    "man-db",
    "bash-completion",
];
/// What the hook logs when a watcher ran its pass.
const ANSWERED: &str = "answered by the watcher";
const SENTINEL_LOG: &str = "/var/log/redis/redis-sentinel.log";

#[test]
fn debian_package_under_booted_systemd() {
    if !e2e_enabled() {
        return;
    }
    let started = Instant::now();
    let deb = find_deb();
    let t = Instant::now();
    let tarball = container::rootfs_tarball(&container::BOOKWORM, &ROOTFS_PACKAGES);
    eprintln!(
        "root file system {} ready in {:.1} s",
        tarball.display(),
        t.elapsed().as_secs_f64()
    );
    let (name, dir);
    {
        let opts = LabOptions {
            external_node: Some(CT),
            ..LabOptions::default()
        };
        let mut lab = Lab::new(Path::new(env!("CARGO_BIN_EXE_sentinel-vip")), opts);
        let (out, err) = lab.redis_cli(NEVER, &["CONFIG", "SET", "replica-priority", "0"]);
        assert_eq!(out, "OK", "replica-priority on n{NEVER}: {err}");
        name = format!("{}ct", lab.prefix);
        dir = lab.node_dir(CT).join("container");
        let host = Host(Container::boot(&tarball, &dir, &lab.ns(CT), &name));
        let t = Instant::now();
        host.install(&deb);
        host.configure();
        lab.finish_start();
        lab.wait_ready();
        eprintln!(
            "installed and configured, Sentinels ready in {:.1} s",
            t.elapsed().as_secs_f64()
        );

        phase("a-units-and-privileges", || units_and_privileges(&host));
        phase("b-man-and-completion", || man_and_completion(&host));
        phase("c-failovers-handed-to-watcher", || {
            handed_to_watcher(&lab, &host)
        });
        phase("d-without-watcher", || without_watcher(&lab, &host));
        phase("e-no-restarts", || no_restarts(&host));
        phase("f-hardened-unit", || hardening::hardened_unit(&lab, &host));
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

/// (a) The watcher runs as its own user holding exactly the two
/// capabilities, notified systemd; Sentinel runs under its stock unit with
/// the hook line and no privilege at all.
fn units_and_privileges(host: &Host) {
    assert_eq!(host.sh("systemctl is-active sentinel-vip"), "active");
    let status = host.prop("sentinel-vip", "StatusText");
    assert!(
        !status.is_empty(),
        "sentinel-vip.service has no notify STATUS= text"
    );
    eprintln!("  sentinel-vip.service status text: {status:?}");
    // The socket Sentinel's hooks hand their calls to: reachable through
    // the RuntimeDirectory, usable by group redis only.
    assert_eq!(
        host.sh(
            "stat -c '%U %a' /run/sentinel-vip; stat -c '%U:%G %a' /run/sentinel-vip/control.sock"
        ),
        "sentinel-vip 755\nsentinel-vip:redis 660"
    );
    let check = host.sh("runuser -u redis -- sentinel-vip check 2>&1 || true");
    assert!(
        check.contains("hands its call to the watcher on /run/sentinel-vip/control.sock"),
        "`sentinel-vip check` as Sentinel's user:\n{check}"
    );
    let pid = host.prop("sentinel-vip", "MainPID");
    let uid = host.sh("id -u sentinel-vip");
    let uids = status_field(host, &pid, "Uid");
    assert!(
        uids.split_whitespace().all(|u| u == uid),
        "watcher uids {uids:?}, want all {uid}"
    );
    for key in ["CapEff", "CapPrm", "CapBnd", "CapAmb"] {
        assert_eq!(status_field(host, &pid, key), TWO_CAPS, "watcher's {key}");
    }
    let redis_gid = host.sh("getent group redis | cut -d: -f3");
    let groups = status_field(host, &pid, "Groups");
    assert!(
        groups.split_whitespace().any(|g| g == redis_gid),
        "watcher's groups {groups:?} lack redis ({redis_gid})"
    );

    // The distribution's unit, untouched: no drop-in, shipped file intact.
    let unit = "redis-sentinel";
    assert_eq!(host.prop(unit, "ActiveState"), "active");
    assert_eq!(
        host.prop(unit, "FragmentPath"),
        "/lib/systemd/system/redis-sentinel.service"
    );
    assert_eq!(
        host.prop(unit, "DropInPaths"),
        "",
        "redis-sentinel.service must run as shipped"
    );
    let verify = host.sh("dpkg --verify redis-sentinel redis-server redis-tools || true");
    let changed: Vec<&str> = verify
        .lines()
        .filter(|l| !l.contains("/etc/redis/"))
        .collect();
    assert!(
        changed.is_empty(),
        "distribution files changed: {changed:?}"
    );
    assert_eq!(host.prop(unit, "NoNewPrivileges"), "yes");
    assert_eq!(host.prop(unit, "PrivateUsers"), "yes");
    assert_eq!(host.prop(unit, "CapabilityBoundingSet"), "");
    let spid = host.prop(unit, "MainPID");
    assert_eq!(
        status_field(host, &spid, "CapEff"),
        "0000000000000000",
        "Sentinel's CapEff"
    );
    // Sentinel accepted the line at start (it refuses to start otherwise)
    // and kept it through its own config rewrites.
    let conf = host.sh("cat /etc/redis/sentinel.conf");
    let line = format!("sentinel client-reconfig-script {MASTER_NAME} {HOOK}");
    assert!(
        conf.lines().any(|l| l.trim() == line),
        "sentinel.conf lost `{line}`"
    );
}

/// (b) The man page and bash completion work inside the container.
fn man_and_completion(host: &Host) {
    let page = host.sh("man -w sentinel-vip");
    assert_eq!(page, "/usr/share/man/man1/sentinel-vip.1.gz");
    let text = host.sh("MANWIDTH=80 man -P cat sentinel-vip 2>/dev/null");
    for want in ["sentinel-vip", "SUBCOMMANDS", "sentinel-vip-watch(1)", HOOK] {
        assert!(
            text.contains(want),
            "man sentinel-vip lacks {want:?}:\n{text}"
        );
    }
    // What bash does on TAB: bash-completion's default handler loads the
    // packaged file (returning 124, "retry"), then bash calls the function
    // it registered.
    let reply = host.sh(
        "bash -c '. /usr/share/bash-completion/bash_completion; _completion_loader sentinel-vip; \
         spec=$(complete -p sentinel-vip) || exit 1; f=${spec#* -F }; f=${f%% *}; \
         COMP_WORDS=(sentinel-vip re); COMP_CWORD=1; COMP_LINE=\"sentinel-vip re\"; COMP_POINT=15; \
         $f sentinel-vip re sentinel-vip; echo \"${COMPREPLY[*]}\"'",
    );
    assert_eq!(reply, "reconcile", "bash completion of `sentinel-vip re`");
}

/// A failover that must promote `to` (the only eligible replica): waits
/// until the Sentinels agree on `to` and it alone holds the VIP.
fn failover_to(lab: &Lab, to: usize) {
    let t = Instant::now();
    lab.start_failover(1, Duration::from_secs(30));
    let moved = wait_until(Duration::from_secs(30), POLL, || {
        lab.sentinels_agree() == Some(to) && lab.holders() == vec![to]
    });
    assert!(
        moved,
        "failover to n{to}: Sentinels say {:?}, VIP on {:?} after 30 s",
        lab.sentinels_agree(),
        lab.holders()
    );
    eprintln!(
        "  failover to n{to}: VIP moved in {:.1} s",
        t.elapsed().as_secs_f64()
    );
}

/// The client follows: its neighbour entry names `n`'s MAC and a write
/// through the VIP lands on `n`.
fn client_follows(lab: &Lab, n: usize, key: &str) {
    lab.expect_client_mac(VIP4, n);
    lab.client_write_lands_on(n, key, key)
        .unwrap_or_else(|e| panic!("write through the VIP after failover to n{n}: {e}"));
}

/// Waits until the hook has logged `what` more than `before` times.
fn wait_hook_line(host: &Host, what: &str, before: usize, timeout: Duration) -> Vec<String> {
    let mut lines = Vec::new();
    let ok = wait_until(timeout, POLL, || {
        lines = host.hook_lines(what);
        lines.len() > before
    });
    assert!(
        ok,
        "no new hook line with {what:?} within {timeout:?}; journal has {lines:?}"
    );
    lines
}

/// (c) Failovers to the container and away from it: the VIP follows, the
/// hook's call is answered by the watcher, and Sentinel sees no error.
fn handed_to_watcher(lab: &Lab, host: &Host) {
    let o = lab.sv(1, &["reconcile"]);
    assert!(o.status.success(), "reconcile on n1: {o:?}");
    assert_eq!(lab.holders(), vec![1], "VIP on the initial master");
    lab.client_ping()
        .unwrap_or_else(|e| panic!("before failover: {e}"));
    for (to, key) in [(CT, "to-container"), (1, "from-container")] {
        let before = host.hook_lines(ANSWERED).len();
        failover_to(lab, to);
        client_follows(lab, to, key);
        let lines = wait_hook_line(host, ANSWERED, before, Duration::from_secs(10));
        eprintln!("  hook: {}", lines.last().map_or("", String::as_str));
    }
    let log = host.sentinel_log();
    assert!(
        !log.contains("-script-error"),
        "Sentinel logged a script error:\n{log}"
    );
    assert!(
        log.lines()
            .any(|l| l.contains("-script-child") && l.trim_end().ends_with(" 0 0")),
        "Sentinel logged no script exiting 0"
    );
}

/// (d) With the watcher stopped, a failover to the container: the hook
/// exits 1 with one line naming the socket and the missing capabilities,
/// Sentinel keeps the call to retry it, nobody holds the VIP; once the
/// service is back the VIP is placed and the retried call is answered.
fn without_watcher(lab: &Lab, host: &Host) {
    host.sh("systemctl stop sentinel-vip");
    assert_eq!(
        host.sh("systemctl is-active sentinel-vip || true"),
        "inactive"
    );
    assert_eq!(lab.holders(), vec![1], "stopping the watcher moved the VIP");
    let check = host.sh("runuser -u redis -- sentinel-vip check 2>&1 || true");
    assert!(
        check.contains("hooks exit 1 until the watcher runs"),
        "`sentinel-vip check` as Sentinel's user, watcher stopped:\n{check}"
    );
    let refused = "CAP_NET_ADMIN";
    let exit_1 = |log: &str| {
        log.lines()
            .filter(|l| l.contains("-script-child") && l.trim_end().ends_with(" 1 0"))
            .count()
    };
    let errors_before = host.hook_lines(refused).len();
    let exits_before = exit_1(&host.sentinel_log());
    let answered_before = host.hook_lines(ANSWERED).len();
    let t = Instant::now();
    lab.start_failover(1, Duration::from_secs(30));
    let lines = wait_hook_line(host, refused, errors_before, Duration::from_secs(15));
    let first_failure = Instant::now();
    let line = lines.last().cloned().unwrap_or_default();
    eprintln!("  hook without watcher: {line}");
    for want in ["/run/sentinel-vip/control.sock", "CAP_NET_RAW"] {
        assert!(
            line.contains(want),
            "the hook's reason lacks {want:?}: {line}"
        );
    }
    let agreed = wait_until(Duration::from_secs(10), POLL, || {
        lab.sentinels_agree() == Some(CT)
    });
    assert!(agreed, "Sentinels' master: {:?}", lab.sentinels_agree());
    // Sentinel logs each script's exit status; the hook says why in one
    // line per run.
    let logged = wait_until(Duration::from_secs(5), POLL, || {
        exit_1(&host.sentinel_log()) > exits_before
    });
    assert!(logged, "Sentinel did not log the hook's exit 1");
    std::thread::sleep(Duration::from_millis(300));
    let runs = exit_1(&host.sentinel_log()) - exits_before;
    let reasons = host.hook_lines(refused).len() - errors_before;
    assert_eq!(
        reasons, runs,
        "lines naming the reason, per hook run that exited 1"
    );
    // Exit 1 means "retry": Sentinel keeps the job, scheduled (30 s later),
    // and logs -script-error only once it gives up.
    let (text, err) = lab.sentinel_cli(CT, &["SENTINEL", "PENDING-SCRIPTS"]);
    assert!(
        text.contains(HOOK) && text.contains("retry-num"),
        "Sentinel holds no retry of the hook: {text} {err}"
    );
    assert!(
        !host.sentinel_log().contains("-script-error"),
        "Sentinel gave up on the hook already"
    );
    // n1's own hook released the VIP; nobody can place it on the container.
    let released = wait_until(Duration::from_secs(10), POLL, || lab.holders().is_empty());
    assert!(
        released,
        "VIP still on {:?} after the failover",
        lab.holders()
    );
    std::thread::sleep(Duration::from_secs(1));
    assert!(
        lab.holders().is_empty(),
        "VIP placed without the watcher: {:?}",
        lab.holders()
    );
    eprintln!(
        "  no holder {:.1} s after the failover",
        t.elapsed().as_secs_f64()
    );

    host.sh("systemctl start sentinel-vip");
    let placed = wait_until(Duration::from_secs(10), POLL, || lab.holders() == vec![CT]);
    assert!(
        placed,
        "VIP not placed by the restarted watcher: {:?}",
        lab.holders()
    );
    client_follows(lab, CT, "watcher-back");
    // Sentinel's retry, 30 s after the failed run, is answered this time.
    let left = Duration::from_secs(45).saturating_sub(first_failure.elapsed());
    let lines = wait_hook_line(host, ANSWERED, answered_before, left);
    eprintln!(
        "  Sentinel's retry {:.1} s after the failure: {}",
        first_failure.elapsed().as_secs_f64(),
        lines.last().map_or("", String::as_str)
    );
    let done = wait_until(Duration::from_secs(5), POLL, || {
        // redis-cli prints nothing for an empty reply when not on a terminal.
        let (out, err) = lab.sentinel_cli(CT, &["SENTINEL", "PENDING-SCRIPTS"]);
        out.is_empty() && err.is_empty()
    });
    assert!(
        done,
        "Sentinel still holds scripts after the retry succeeded"
    );
    assert!(
        !host.sentinel_log().contains("-script-error"),
        "Sentinel logged a script error"
    );
}

/// How long the watchdog allows between pings (the unit's WatchdogSec=).
const WATCHDOG: Duration = Duration::from_secs(30);

/// (e) Nothing restarted behind our back: the watcher outlives WatchdogSec
/// without a restart (so it kept pinging the watchdog) and Sentinel never
/// crashed.
fn no_restarts(host: &Host) {
    assert_eq!(host.prop("sentinel-vip", "WatchdogUSec"), "30s");
    let active_for = || {
        let since: u64 = host
            .prop("sentinel-vip", "ActiveEnterTimestampMonotonic")
            .parse()
            .unwrap_or(u64::MAX);
        // CLOCK_MONOTONIC, like systemd's timestamp.
        let now = host.sh("cat /proc/uptime");
        let now = now
            .split_whitespace()
            .next()
            .and_then(|s| s.parse::<f64>().ok())
            .unwrap_or(0.0);
        Duration::from_micros(((now * 1e6) as u64).saturating_sub(since))
    };
    let margin = WATCHDOG + Duration::from_secs(3);
    let waited = wait_until(margin, Duration::from_millis(500), || active_for() > margin);
    assert!(waited, "watcher active for only {:?}", active_for());
    assert_eq!(host.sh("systemctl is-active sentinel-vip"), "active");
    assert_eq!(
        host.prop("sentinel-vip", "NRestarts"),
        "0",
        "the watcher was restarted"
    );
    assert_eq!(
        host.prop("redis-sentinel", "NRestarts"),
        "0",
        "Sentinel was restarted"
    );
    eprintln!(
        "  watcher active for {:.1} s with WatchdogSec=30s, no restart",
        active_for().as_secs_f64()
    );
}

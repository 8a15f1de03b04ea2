//! The phases every packaged combination goes through (e2e_package.rs
//! picks which): the units and their privileges, the config readable by
//! the watcher alone, man page and completion, failovers handed to the
//! watcher, Sentinel retrying a hook while the watcher is stopped, no
//! restarts behind our back, and a Sentinel replaced by Valkey's.

use std::time::{Duration, Instant};

use crate::host::{status_field, Host, Kind};
use crate::{CT, HOOK};
use sentinel_vip_lab::{node_ip, wait_until, Lab, MASTER_NAME, POLL, VIP4};

/// CAP_NET_ADMIN (12) and CAP_NET_RAW (13), as /proc/PID/status prints them.
const TWO_CAPS: &str = "0000000000003000";
/// What the hook logs when a watcher ran its pass.
pub const ANSWERED: &str = "answered by the watcher";
const CONFIG: &str = "/etc/sentinel-vip/sentinel-vip.toml";
const SOCKET: &str = "/run/sentinel-vip/control.sock";

/// How many hook lines say the watcher answered.
pub fn hook_answered(host: &Host) -> usize {
    host.hook_lines(ANSWERED).len()
}

/// `sentinel-vip check` as Sentinel's user, whatever its exit.
fn check_as_sentinel(host: &Host) -> String {
    host.sh(&format!(
        "runuser -u {} -- sentinel-vip check 2>&1 || true",
        host.sentinel.user()
    ))
}

/// (a) The watcher runs as its own user holding exactly the two
/// capabilities, notified systemd; Sentinel runs under its stock unit with
/// the hook line and no privilege at all; `check` names that unit.
pub fn units_and_privileges(host: &Host) {
    assert_eq!(host.sh("systemctl is-active sentinel-vip"), "active");
    let status = host.prop("sentinel-vip", "StatusText");
    assert!(
        !status.is_empty(),
        "sentinel-vip.service has no notify STATUS= text"
    );
    eprintln!("  sentinel-vip.service status text: {status:?}");
    // The socket Sentinel's hooks hand their calls to: anyone may connect,
    // the watcher serves by peer credentials.
    assert_eq!(
        host.sh(&format!(
            "stat -c '%U %a' /run/sentinel-vip; stat -c '%U:%G %a' {SOCKET}"
        )),
        "sentinel-vip 755\nsentinel-vip:sentinel-vip 666"
    );
    let unit = host.sentinel.sentinel_unit();
    let check = check_as_sentinel(host);
    let ok_unit = format!(
        "ok   unit {unit}.service (enabled, runs as {}): {} runs {HOOK} for {MASTER_NAME}; it may execute it and connect to {SOCKET}",
        host.sentinel.user(),
        host.sentinel.sentinel_conf()
    );
    for want in [
        format!("hands its call to the watcher on {SOCKET}"),
        format!("note config {CONFIG}: Permission denied"),
        ok_unit.clone(),
    ] {
        assert!(
            check.contains(&want),
            "`sentinel-vip check` as {}: lacks {want:?}:\n{check}",
            host.sentinel.user()
        );
    }
    let as_root = host.sh("sentinel-vip check 2>&1 || true");
    assert!(
        as_root.contains(&ok_unit),
        "`sentinel-vip check` as root:\n{as_root}"
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

    // The distribution's unit, untouched: no drop-in, shipped file intact.
    assert_eq!(host.prop(&unit, "ActiveState"), "active");
    let fragment = host.prop(&unit, "FragmentPath");
    assert!(
        ["/lib", "/usr/lib"]
            .iter()
            .any(|d| fragment == format!("{d}/systemd/system/{unit}.service")),
        "{unit}'s unit file: {fragment}"
    );
    assert_eq!(
        host.prop(&unit, "DropInPaths"),
        "",
        "{unit}.service must run as shipped"
    );
    let k = host.sentinel;
    let verify = host.sh(&format!(
        "dpkg --verify {} {} || true",
        k.packages().join(" "),
        host.data.packages().join(" ")
    ));
    let changed: Vec<&str> = verify
        .lines()
        .filter(|l| !l.contains(&format!("/etc/{}/", k.name())))
        .filter(|l| !l.contains(&format!("/etc/{}/", host.data.name())))
        .filter(|l| !l.contains("is not installed"))
        .collect();
    assert!(
        changed.is_empty(),
        "distribution files changed: {changed:?}"
    );
    assert_eq!(host.prop(&unit, "NoNewPrivileges"), "yes");
    assert_eq!(host.prop(&unit, "PrivateUsers"), "yes");
    assert_eq!(host.prop(&unit, "CapabilityBoundingSet"), "");
    let spid = host.prop(&unit, "MainPID");
    assert_eq!(
        status_field(host, &spid, "CapEff"),
        "0000000000000000",
        "Sentinel's CapEff"
    );
    // Sentinel accepted the line at start (it refuses to start otherwise)
    // and kept it through its own config rewrites.
    let conf = host.sh(&format!("cat {}", k.sentinel_conf()));
    let line = format!("sentinel client-reconfig-script {MASTER_NAME} {HOOK}");
    assert!(
        conf.lines().any(|l| l.trim() == line),
        "sentinel.conf lost `{line}`"
    );
}

/// (b) The config may hold passwords: Sentinel's user cannot read it, and
/// needs not (its hooks hand off without it, phase d).
pub fn config_is_the_watchers(host: &Host) {
    assert_eq!(
        host.sh(&format!("stat -c '%U:%G %a' {CONFIG}")),
        "root:sentinel-vip 640"
    );
    let user = host.sentinel.user();
    let read = host.sh(&format!("runuser -u {user} -- cat {CONFIG} 2>&1 || true"));
    assert!(
        read.contains("Permission denied"),
        "{user} can read the config: {read}"
    );
    // Nobody had to join anybody's group.
    let groups = host.sh("id -nG sentinel-vip");
    assert!(
        !groups.split_whitespace().any(|g| g == "valkey")
            && (host.sentinel != Kind::Valkey || !groups.contains("redis")),
        "sentinel-vip's groups: {groups}"
    );
}

/// (c) The man page and bash completion work inside the container.
pub fn man_and_completion(host: &Host) {
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
pub fn failover_to(lab: &Lab, to: usize) {
    let t = Instant::now();
    if lab.sentinels_agree() == Some(to) && lab.holders() == vec![to] {
        return;
    }
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
pub fn wait_hook_line(host: &Host, what: &str, before: usize, timeout: Duration) -> Vec<String> {
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

/// (d) Failovers to the container and away from it: the VIP follows, the
/// hook's call is answered by the watcher, and Sentinel sees no error.
pub fn handed_to_watcher(lab: &Lab, host: &Host) {
    let o = lab.sv(1, &["reconcile"]);
    assert!(o.status.success(), "reconcile on n1: {o:?}");
    let m = lab.master_node();
    lab.expect_vip_still_on(m, Duration::from_secs(10), "before the failovers");
    lab.client_ping()
        .unwrap_or_else(|e| panic!("before failover: {e}"));
    let away = if m == CT { 1 } else { CT };
    let plan = [(away, "first"), (m, "back")];
    for (to, key) in plan {
        let before = hook_answered(host);
        failover_to(lab, to);
        client_follows(lab, to, &format!("{key}-{}", host.sentinel.name()));
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
    // The watcher's side of the hand-off, naming the Sentinel's user.
    let peer = format!("({})", host.sentinel.user());
    let answered = host.sh("journalctl --no-pager -o cat -u sentinel-vip");
    let line = answered
        .lines()
        .rev()
        .find(|l| l.contains("hook request answered") && l.contains(&peer))
        .unwrap_or_else(|| panic!("the watcher logged no hook request from {peer}:\n{answered}"));
    eprintln!("  watcher: {line}");
}

/// (e) With the watcher stopped, a failover to the container: the hook
/// exits 1 with one line naming the socket, Sentinel keeps the call to
/// retry it, nobody holds the VIP; once the service is back the VIP is
/// placed and the retried call is answered.
pub fn without_watcher(lab: &Lab, host: &Host) {
    failover_to(lab, 1);
    host.sh("systemctl stop sentinel-vip");
    assert_eq!(
        host.sh("systemctl is-active sentinel-vip || true"),
        "inactive"
    );
    assert_eq!(lab.holders(), vec![1], "stopping the watcher moved the VIP");
    let check = check_as_sentinel(host);
    assert!(
        check.contains("hooks exit 1 until the watcher runs"),
        "`sentinel-vip check` as Sentinel's user, watcher stopped:\n{check}"
    );
    let refused = "start sentinel-vip.service";
    let exit_1 = |log: &str| {
        log.lines()
            .filter(|l| l.contains("-script-child") && l.trim_end().ends_with(" 1 0"))
            .count()
    };
    let errors_before = host.hook_lines(refused).len();
    let exits_before = exit_1(&host.sentinel_log());
    let answered_before = hook_answered(host);
    let t = Instant::now();
    lab.start_failover(1, Duration::from_secs(30));
    let lines = wait_hook_line(host, refused, errors_before, Duration::from_secs(15));
    let first_failure = Instant::now();
    let line = lines.last().cloned().unwrap_or_default();
    eprintln!("  hook without watcher: {line}");
    for want in [SOCKET, "needs the config", "Permission denied"] {
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
    client_follows(lab, CT, &format!("watcher-back-{}", host.sentinel.name()));
    // Sentinel's retry, 30 s after the failed run, is answered this time.
    let left = Duration::from_secs(45).saturating_sub(first_failure.elapsed());
    let lines = wait_hook_line(host, ANSWERED, answered_before, left);
    eprintln!(
        "  Sentinel's retry {:.1} s after the failure: {}",
        first_failure.elapsed().as_secs_f64(),
        lines.last().map_or("", String::as_str)
    );
    let done = wait_until(Duration::from_secs(5), POLL, || {
        // The cli prints nothing for an empty reply when not on a terminal.
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

/// (f) Nothing restarted behind our back: the watcher outlives WatchdogSec
/// without a restart (so it kept pinging the watchdog) and Sentinel never
/// crashed.
pub fn no_restarts(host: &Host) {
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
    let unit = host.sentinel.sentinel_unit();
    assert_eq!(host.prop(&unit, "NRestarts"), "0", "Sentinel was restarted");
    eprintln!(
        "  watcher active for {:.1} s with WatchdogSec=30s, no restart",
        active_for().as_secs_f64()
    );
}

/// (m) Redis' Sentinel removed, Valkey's installed and given the same
/// `sentinel monitor` and `client-reconfig-script` lines: nothing of
/// sentinel-vip's changes (config, unit, running watcher), and `check`
/// names the new unit.
pub fn migrate_sentinel(lab: &mut Lab, host: &mut Host, to: Kind) {
    let config = host.sh(&format!("md5sum {CONFIG}"));
    let watcher = host.prop("sentinel-vip", "MainPID");
    let old = host.sentinel;
    host.sh(&format!(
        "systemctl stop {0}; apt-get purge -y -q {0} >/dev/null",
        old.sentinel_unit()
    ));
    // Valkey's Sentinel and its tools; the data server stays Redis'.
    let debs: Vec<String> = [to.sentinel_unit(), format!("{}-tools", to.name())]
        .iter()
        .map(|p| {
            host.sh(&format!(
                "ls {}/{p}_*.deb",
                sentinel_vip_lab::container::DOWNLOADS
            ))
        })
        .collect();
    host.apt_install(&debs);
    host.sentinel = to;
    let master = lab.master_node();
    host.configure_sentinel(&node_ip(master));
    lab.wait_ready();
    assert_eq!(
        host.sh(&format!("md5sum {CONFIG}")),
        config,
        "config changed"
    );
    assert_eq!(
        host.prop("sentinel-vip", "MainPID"),
        watcher,
        "the watcher was restarted"
    );
    let check = check_as_sentinel(host);
    assert!(
        check.contains(&format!("ok   unit {}.service", to.sentinel_unit())),
        "`sentinel-vip check` as {} after the move:\n{check}",
        to.user()
    );
    eprintln!(
        "  {} replaced {}: {}",
        to.sentinel_unit(),
        old.sentinel_unit(),
        host.sh(&format!("{} --version", to.sentinel_unit()))
    );
}

//! End-to-end tests of the watcher's notify commands (issue 13): real
//! scripts (absolute paths in the lab's dir, run as the watcher's user)
//! that append their environment to a file, judged by those records, the
//! watcher's log, the processes left in the namespace, and the VIP's moves
//! as the client's segment sees them (gratuitous ARP, captured), and what
//! a command holds (issue 21: no capability, only its own environment).
//! Watchers run as the systemd unit runs them; Sentinel's reconfig script
//! is off.

#[path = "e2e_notify/privilege.rs"]
mod privilege;

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use sentinel_vip_lab::capture::Capture;
use sentinel_vip_lab::events::Events;
use sentinel_vip_lab::monitor::Monitor;
use sentinel_vip_lab::suite::{run_scenarios, show, Step};
use sentinel_vip_lab::{
    e2e_enabled, hook_cmd, node_ip, now_epoch, wait_until, Lab, LabOptions, Privilege, NODES, VIP4,
};

const WATCHER: Privilege = Privilege::TwoCaps;
/// Passed as an argument, recorded verbatim: no shell ever sees it.
const ODD_ARG: &str = "two words; $(id) `x` *";
/// The hanging command's sleep, to find it among the namespace's processes.
const HANG: &str = "613";

/// The notify script: appends one line with its start time, pid, mode, odd
/// argument and every `SENTINEL_VIP_*` variable, then behaves as its mode
/// says, and appends an `end` line if it gets there.
const SCRIPT: &str = r#"#!/bin/sh
out=$1 mode=$2
rec="start|$(date +%s.%N)|$$|$mode|$3"
for v in MASTER VIP INTERFACE ACTION REASON CONFIG_EPOCH SENTINEL_MASTER SENTINELS_ANSWERED SEQUENCE; do
  eval "val=\${SENTINEL_VIP_$v-<unset>}"
  rec="$rec|$v=$val"
done
printf '%s\n' "$rec" >> "$out"
case $mode in
  slow) sleep 0.2 ;;
  hang) sleep HANG ;;
  hang-fail-ok)
    n=$(cat "$out.count" 2>/dev/null || echo 0); n=$((n + 1)); echo $n > "$out.count"
    case $n in 1) sleep HANG ;; 2) echo "failing on purpose" >&2; exit 3 ;; esac ;;
esac
printf 'end|%s|%s\n' "$(date +%s.%N)" "$SENTINEL_VIP_SEQUENCE" >> "$out"
"#;

/// One run of the script, from its records.
#[derive(Clone, Debug)]
struct Run {
    start: f64,
    end: Option<f64>,
    mode: String,
    arg: String,
    env: BTreeMap<String, String>,
}

impl Run {
    fn seq(&self) -> u64 {
        self.env["SEQUENCE"].parse().expect("numeric SEQUENCE")
    }
    fn action(&self) -> &str {
        &self.env["ACTION"]
    }
}

/// One failover as the client's segment saw it.
#[derive(Clone, Debug)]
struct Move {
    old: usize,
    new: usize,
    /// From the leader's `+failover-state-wait-promotion` to the new
    /// holder's first gratuitous ARP at the client.
    after_promotion: f64,
    two_holders: Duration,
    /// Sentinel's config-epoch before and after.
    epochs: (u64, u64),
}

#[derive(Default)]
struct Ctx {
    baseline: Vec<Move>,
}

#[test]
fn notify_end_to_end() {
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
    for n in NODES {
        let script = script(&lab, n);
        fs::write(&script, SCRIPT.replace("HANG", HANG)).unwrap();
        fs::set_permissions(&script, fs::Permissions::from_mode(0o755)).unwrap();
    }
    let scenarios: [(&str, Step<Ctx>); 6] = [
        ("a-bad-commands", bad_commands),
        ("b-moves-without-commands", moves_without_commands),
        ("c-burst-in-order", burst_in_order),
        ("d-timeout-and-failure", timeout_and_failure),
        (
            "e-hanging-commands-delay-nothing",
            hanging_commands_delay_nothing,
        ),
        (
            "f-commands-hold-no-privilege",
            privilege::commands_hold_no_privilege,
        ),
    ];
    run_scenarios(lab, &mut Ctx::default(), &scenarios, started);
}

fn script(lab: &Lab, n: usize) -> String {
    lab.node_dir(n).join("notify.sh").display().to_string()
}

/// Node `n`'s record file, in a directory the watcher's user may write.
fn records(lab: &Lab, n: usize) -> PathBuf {
    lab.node_dir(n).join("run").join(format!("notify-n{n}.rec"))
}

/// TOML for the top level: every change runs the script in `mode`.
fn commands(lab: &Lab, n: usize, mode: &str, timeout_ms: u64) -> String {
    let argv = |m: &str| {
        format!(
            "[\"{}\", \"{}\", \"{m}\", \"{}\"]",
            script(lab, n),
            records(lab, n).display(),
            ODD_ARG.replace('\\', "\\\\").replace('"', "\\\"")
        )
    };
    format!(
        "notify_timeout_ms = {timeout_ms}\non_acquire = {}\non_release = {}\n",
        argv(mode),
        argv(mode)
    )
}

/// Every node's watcher reloaded with `top` from `f(n)`.
fn reconfigure(lab: &mut Lab, f: impl Fn(&Lab, usize) -> String) {
    for n in NODES {
        lab.rewrite_config(n, &f(lab, n));
        lab.reload_watcher(n);
    }
}

/// The runs node `n`'s script recorded, in file order.
fn runs(lab: &Lab, n: usize) -> Vec<Run> {
    let text = fs::read_to_string(records(lab, n)).unwrap_or_default();
    let mut out: Vec<Run> = Vec::new();
    for line in text.lines() {
        let f: Vec<&str> = line.split('|').collect();
        match f[0] {
            "start" => out.push(Run {
                start: f[1].parse().expect("start time"),
                end: None,
                mode: f[3].to_string(),
                arg: f[4].to_string(),
                env: f[5..]
                    .iter()
                    .filter_map(|kv| kv.split_once('='))
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
            }),
            "end" => {
                let r = out
                    .iter_mut()
                    .rev()
                    .find(|r| r.env["SEQUENCE"] == f[2])
                    .unwrap_or_else(|| panic!("n{n}: end without start: {line}"));
                r.end = Some(f[1].parse().expect("end time"));
            }
            _ => panic!("n{n}: unexpected record {line:?}"),
        }
    }
    out
}

/// Waits until every node's script has recorded `want(n)` runs, all of
/// them ended if `ended`.
fn wait_runs(lab: &Lab, want: impl Fn(usize) -> usize, ended: bool, timeout: Duration) {
    let ok = wait_until(timeout, Duration::from_millis(100), || {
        NODES.iter().all(|&n| {
            let r = runs(lab, n);
            r.len() >= want(n) && (!ended || r.iter().all(|r| r.end.is_some()))
        })
    });
    let seen: Vec<usize> = NODES.iter().map(|&n| runs(lab, n).len()).collect();
    assert!(
        ok,
        "notify runs per node {seen:?}, want {:?}",
        NODES.map(&want)
    );
}

/// (a) A notify command that does not exist, is not executable, or is not
/// an absolute path is a one-line config error naming the key, exit 2, for
/// `hook`, `reconcile` and `watch` alike, and nothing is touched.
fn bad_commands(lab: &mut Lab, _: &mut Ctx) {
    let before = lab.all_addrs();
    let plain = lab.node_dir(1).join("not-executable.sh");
    fs::write(&plain, "#!/bin/sh\n").unwrap();
    fs::set_permissions(&plain, fs::Permissions::from_mode(0o644)).unwrap();
    let good = fs::read_to_string(lab.config_path(1)).unwrap();
    let missing = lab.node_dir(1).join("no-such-script");
    let cases = [
        ("on_acquire", missing.display().to_string(), "No such file"),
        ("on_release", plain.display().to_string(), "not executable"),
        ("on_refuse", "notify.sh".to_string(), "absolute path"),
        (
            "vip.on_acquire",
            plain.display().to_string(),
            "not executable",
        ),
    ];
    let bad = lab.node_dir(1).join("bad.toml");
    let bad_s = bad.display().to_string();
    for (key, program, problem) in cases {
        let text = match key.strip_prefix("vip.") {
            // The last table of the lab's config is the [[vip]].
            Some(k) => format!("{good}{k} = [\"{program}\"]\n"),
            None => format!("{key} = [\"{program}\", \"arg\"]\n{good}"),
        };
        fs::write(&bad, text).unwrap();
        let mut hook = vec!["--config".to_string(), bad_s.clone()];
        hook.extend(hook_cmd("leader", 1, 2));
        let runs: [Vec<String>; 3] = [
            hook,
            vec!["--config".into(), bad_s.clone(), "reconcile".into()],
            vec!["--config".into(), bad_s.clone(), "watch".into()],
        ];
        for args in runs {
            let o = lab.sv(1, &args);
            let what = format!("{} with a bad {key}", args[2]);
            assert_eq!(o.status.code(), Some(2), "{what}: {}", show(&o));
            let err = String::from_utf8_lossy(&o.stderr).trim().to_string();
            assert_eq!(err.lines().count(), 1, "{what}: {err:?}");
            assert!(err.contains(key) && err.contains(problem), "{what}: {err}");
        }
        eprintln!("  a: {key} = {program:?}: exit 2 for hook, reconcile, watch");
    }
    let o = lab.sv(1, &["--config", &bad_s, "watch"]);
    eprintln!("  a: e.g. {}", String::from_utf8_lossy(&o.stderr).trim());
    assert_eq!(lab.all_addrs(), before, "addresses changed");
}

/// One failover through Sentinel `via`, timed from the leader's
/// `+failover-state-wait-promotion` to the new holder's first gratuitous
/// ARP at the client, with the kernel's two-holder time.
fn timed_failover(lab: &mut Lab, via: usize) -> Move {
    let ev = Events::start(lab, &["+failover-state-wait-promotion"], None);
    let cap = Capture::start(lab);
    let t = now_epoch();
    let mon = Monitor::start(lab);
    let before = lab.config_epoch();
    let old = lab.start_failover(via, Duration::from_secs(30));
    let new = lab.wait_vip_moves(old, Duration::from_secs(20));
    let after = lab.config_epoch();
    assert!(after > before, "config-epoch {before} -> {after}");
    let trace = mon.stop();
    let mac = lab.mac(new);
    let frames = cap.stop_when(Duration::from_secs(3), |f| {
        f.iter().any(|f| f.src_mac == mac && f.is_garp_for(VIP4))
    });
    let promo = ev
        .first("+failover-state-wait-promotion", t)
        .expect("no +failover-state-wait-promotion seen");
    let garp = frames
        .iter()
        .find(|f| f.src_mac == mac && f.is_garp_for(VIP4))
        .expect("no gratuitous ARP from the new holder");
    let m = Move {
        old,
        new,
        after_promotion: garp.ts - promo.at,
        two_holders: trace.windows(new).two_holders,
        epochs: (before, after),
    };
    eprintln!(
        "  n{old} -> n{new}: first GARP {:.0} ms after the leader's wait-promotion; two holders {:?}",
        m.after_promotion * 1e3,
        m.two_holders
    );
    m
}

/// (b) The baseline: watchers without notify commands, two failovers.
fn moves_without_commands(lab: &mut Lab, ctx: &mut Ctx) {
    for n in NODES {
        lab.start_watcher(n, WATCHER);
    }
    lab.wait_one_holder(Duration::from_secs(10));
    for via in [2, 3] {
        ctx.baseline.push(timed_failover(lab, via));
    }
}

/// (c) A burst of changes with slow commands (0.2 s each): the VIP deleted
/// by hand four times in a row, then two failovers. Each node's commands
/// ran one at a time, in the order of its changes, with consecutive
/// sequence numbers, the facts of each change in the environment and the
/// odd argument intact.
fn burst_in_order(lab: &mut Lab, _: &mut Ctx) {
    reconfigure(lab, |lab, n| commands(lab, n, "slow", 5000));
    let h = lab.master_node();
    assert_eq!(lab.holders(), vec![h]);
    for _ in 0..4 {
        lab.delete_vip(h);
        let back = wait_until(Duration::from_secs(2), Duration::from_millis(5), || {
            lab.holds(h, VIP4)
        });
        assert!(back, "VIP not back on n{h}");
    }
    let epoch = lab.config_epoch();
    let moves = [timed_failover(lab, 1), timed_failover(lab, 2)];
    // Per node, its changes in order, each with what the Sentinels may
    // have said: for a failover, the old configuration (when the watcher
    // followed the promotion before Sentinel announced it) or the new one.
    type Said = Vec<(String, u64)>;
    let said = |n: usize, e: u64| (format!("{}:6379", node_ip(n)), e);
    let mut changes: BTreeMap<usize, Vec<(&str, Said)>> = BTreeMap::new();
    changes.insert(h, vec![("acquire", vec![said(h, epoch)]); 4]);
    for m in &moves {
        let either = vec![said(m.old, m.epochs.0), said(m.new, m.epochs.1)];
        changes
            .entry(m.old)
            .or_default()
            .push(("release", either.clone()));
        changes.entry(m.new).or_default().push(("acquire", either));
    }
    let count = |n: usize| changes.get(&n).map_or(0, Vec::len);
    wait_runs(lab, count, true, Duration::from_secs(15));
    for n in NODES {
        let r = runs(lab, n);
        let want = changes.get(&n).cloned().unwrap_or_default();
        let got: Vec<&str> = r.iter().map(Run::action).collect();
        let actions: Vec<&str> = want.iter().map(|w| w.0).collect();
        assert_eq!(got, actions, "n{n}'s actions in order");
        let seqs: Vec<u64> = r.iter().map(Run::seq).collect();
        for (i, w) in r.windows(2).enumerate() {
            assert_eq!(seqs[i + 1], seqs[i] + 1, "n{n}: sequence {seqs:?}");
            assert!(w[1].start >= w[0].end.unwrap(), "n{n}: runs overlap: {w:?}");
        }
        for (run, (_, allowed)) in r.iter().zip(&want) {
            assert_eq!(
                run.arg, ODD_ARG,
                "n{n}: the argument reached the script changed"
            );
            assert_eq!(run.mode, "slow");
            let e = &run.env;
            let fixed = (
                e["MASTER"].as_str(),
                e["VIP"].as_str(),
                e["INTERFACE"].as_str(),
            );
            assert_eq!(fixed, ("mymaster", VIP4, "eth0"), "{run:?}");
            assert_eq!(e["SENTINELS_ANSWERED"], "3/3", "{run:?}");
            assert_eq!(e["REASON"], "", "{run:?}");
            let s = (
                e["SENTINEL_MASTER"].clone(),
                e["CONFIG_EPOCH"].parse().unwrap(),
            );
            assert!(
                allowed.contains(&s),
                "n{n}: Sentinels said {s:?}, want one of {allowed:?}"
            );
        }
        let show: Vec<String> = r
            .iter()
            .map(|r| {
                format!(
                    "{}#{} {}@{}",
                    r.action(),
                    r.seq() % 1000,
                    r.env["SENTINEL_MASTER"],
                    r.env["CONFIG_EPOCH"]
                )
            })
            .collect();
        eprintln!("  c: n{n}: {}", show.join(", "));
    }
}

/// Command lines of the processes left in node `n`'s namespace that run
/// the hanging sleep.
fn hanging(lab: &Lab, n: usize) -> Vec<String> {
    let o = std::process::Command::new("ip")
        .args(["netns", "pids", &lab.ns(n)])
        .output()
        .expect("ip netns pids");
    String::from_utf8_lossy(&o.stdout)
        .split_whitespace()
        .filter_map(|p| fs::read(format!("/proc/{p}/cmdline")).ok())
        .map(|c| {
            String::from_utf8_lossy(&c)
                .replace('\0', " ")
                .trim()
                .to_string()
        })
        .filter(|c| c == &format!("sleep {HANG}"))
        .collect()
}

/// (d) With `notify_timeout_ms = 1500`: the VIP deleted by hand three
/// times; the first command hangs and is killed with its process group at
/// the timeout, the second fails (exit 3), the third runs. The VIP comes
/// back at once every time, and the watcher logs each outcome.
fn timeout_and_failure(lab: &mut Lab, _: &mut Ctx) {
    reconfigure(lab, |lab, n| commands(lab, n, "hang-fail-ok", 1500));
    let h = lab.master_node();
    let before = runs(lab, h).len();
    let mut back_ms = Vec::new();
    for _ in 0..3 {
        let t = Instant::now();
        lab.delete_vip(h);
        let back = wait_until(Duration::from_secs(2), Duration::from_millis(5), || {
            lab.holds(h, VIP4)
        });
        assert!(back, "VIP not back on n{h}");
        back_ms.push(t.elapsed().as_millis());
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        !hanging(lab, h).is_empty(),
        "the first command is not hanging"
    );
    let want = |n| if n == h { before + 3 } else { 0 };
    wait_runs(lab, want, false, Duration::from_secs(10));
    let ended = wait_until(Duration::from_secs(2), Duration::from_millis(50), || {
        runs(lab, h).last().is_some_and(|r| r.end.is_some())
    });
    assert!(ended, "the third command did not finish");
    let r = &runs(lab, h)[before..];
    let (hang, fail, ok) = (&r[0], &r[1], &r[2]);
    assert!(
        hang.end.is_none() && fail.end.is_none() && ok.end.is_some(),
        "{r:?}"
    );
    let killed_after = fail.start - hang.start;
    eprintln!(
        "  d: VIP back after {back_ms:?} ms; the hanging command was followed {:.2} s after it started, the third {:.0} ms after the failing one",
        killed_after,
        (ok.start - fail.start) * 1e3
    );
    assert!(killed_after >= 1.4, "the next command ran {killed_after} s after the hanging one started, before the 1.5 s timeout");
    assert!(
        hanging(lab, h).is_empty(),
        "the hanging command's sleep survived: {:?}",
        hanging(lab, h)
    );
    for (run, words) in [(hang, "timed out"), (fail, "exit 3"), (ok, "exit 0")] {
        let seq = format!("sequence={}", run.seq());
        let lines = lab.log_lines(h, &["notify command", &seq, words]);
        assert_eq!(
            lines.len(),
            1,
            "log for {seq} with {words:?}: {:?}",
            lab.log_lines(h, &[&seq])
        );
        eprintln!("  d: {}", lines[0]);
    }
    assert!(lab.watcher(h).running(), "the watcher died");
}

/// (e) Commands that hang (timeout 20 s) on every acquire and release:
/// two failovers in a row still move the VIP as fast as without commands
/// (the second one releases on a host whose acquire command still hangs),
/// never with two holders.
fn hanging_commands_delay_nothing(lab: &mut Lab, ctx: &mut Ctx) {
    reconfigure(lab, |lab, n| commands(lab, n, "hang", 20_000));
    let moves = [timed_failover(lab, 3), timed_failover(lab, 1)];
    let base = &ctx.baseline;
    assert!(!base.is_empty(), "no baseline (step b failed)");
    let worst = |m: &[Move]| m.iter().map(|m| m.after_promotion).fold(0.0, f64::max);
    eprintln!(
        "  e: first GARP after wait-promotion: without commands {:?} ms, with hanging commands {:?} ms",
        base.iter().map(|m| (m.after_promotion * 1e3).round()).collect::<Vec<_>>(),
        moves.iter().map(|m| (m.after_promotion * 1e3).round()).collect::<Vec<_>>()
    );
    assert!(
        worst(&moves) <= worst(base) + 1.0,
        "moves with hanging commands took up to {:.2} s, without {:.2} s",
        worst(&moves),
        worst(base)
    );
    let doubled = |m: &[Move]| m.iter().map(|m| m.two_holders).max().unwrap_or_default();
    assert!(
        doubled(&moves) <= doubled(base) + Duration::from_millis(100),
        "two holders {:?} vs {:?} without commands",
        doubled(&moves),
        doubled(base)
    );
    assert!(
        hanging(lab, moves[0].new).len() + hanging(lab, moves[1].new).len() >= 2,
        "the commands were not hanging meanwhile"
    );
    for n in NODES {
        assert!(lab.watcher(n).running(), "n{n}'s watcher died");
    }
}

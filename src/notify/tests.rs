//! Real commands: tiny shell scripts in a temp dir, run as `/bin/sh
//! script` (a script written and executed at once by a multi-threaded test
//! binary can fail with ETXTBSY when another test forks meanwhile).

use std::collections::HashMap;
use std::time::Instant;

use tokio::sync::mpsc::UnboundedReceiver;

use super::run::Status;
use super::testdir::{dies, Dir};
use super::*;

fn vip(ip: &str) -> VipId {
    VipId::new("mymaster", ip.parse().unwrap(), "eth0")
}

fn said() -> Said {
    Said {
        master: Some("192.0.2.12:6379".into()),
        epoch: Some(7),
        answered: 2,
        configured: 3,
        majority: true,
    }
}

fn on(kind: ActionKind) -> Option<(ActionKind, String)> {
    Some((kind, String::new()))
}

fn all(argv: &[String]) -> Commands {
    Commands {
        on_acquire: Some(argv.to_vec()),
        on_release: Some(argv.to_vec()),
        on_refuse: Some(argv.to_vec()),
    }
}

/// The next `n` finished commands, in the order they finished.
async fn finished(
    rx: &mut UnboundedReceiver<(u64, Outcome)>,
    n: usize,
    within: Duration,
) -> Vec<(u64, Outcome)> {
    let mut got = Vec::new();
    let deadline = tokio::time::Instant::now() + within;
    while got.len() < n {
        match tokio::time::timeout_at(deadline, rx.recv()).await {
            Ok(Some(d)) => got.push(d),
            _ => panic!(
                "{} of {n} commands finished within {within:?}: {got:?}",
                got.len()
            ),
        }
    }
    got
}

#[tokio::test]
async fn a_burst_runs_in_order_per_vip() {
    let d = Dir::new("burst");
    let log = d.path("log");
    // A short sleep while holding the turn: overlapping runs would interleave.
    let body =
        format!("echo \"$SENTINEL_VIP_SEQUENCE $SENTINEL_VIP_ACTION $1\" >> {log}\nsleep 0.02");
    let (a, b) = (vip("192.0.2.100"), vip("2001:2::100"));
    let (mut n, mut done) = Notifier::with_done(None);
    n.configure(
        vec![
            (a.clone(), all(&d.script("rec", &body, &["a"]))),
            (b.clone(), all(&d.script("rec", &body, &["b"]))),
        ],
        Duration::from_secs(10),
    );
    let mut want: HashMap<&str, Vec<String>> = HashMap::new();
    for i in 0..20 {
        let kind = [ActionKind::Acquire, ActionKind::Release][i % 2];
        let s = n.outcome(&a, on(kind), &said()).unwrap();
        want.entry("a")
            .or_default()
            .push(format!("{s} {} a", kind.as_str()));
        if i % 4 == 0 {
            let s = n.outcome(&b, on(kind), &said()).unwrap();
            want.entry("b")
                .or_default()
                .push(format!("{s} {} b", kind.as_str()));
        }
    }
    let runs = finished(&mut done, 25, Duration::from_secs(60)).await;
    assert!(runs.iter().all(|(_, o)| o.status.ok()), "{runs:?}");
    let text = d.read("log");
    for (tag, want) in want {
        let got: Vec<&str> = text
            .lines()
            .filter(|l| l.ends_with(&format!(" {tag}")))
            .collect();
        assert_eq!(got, want, "VIP {tag}, in the order of the changes");
        let seqs: Vec<u64> = got
            .iter()
            .map(|l| l.split(' ').next().unwrap().parse().unwrap())
            .collect();
        assert!(
            seqs.windows(2).all(|w| w[1] == w[0] + 1),
            "consecutive: {seqs:?}"
        );
        // From the wall clock: a restarted watcher continues upwards.
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_micros() as u64;
        assert!(
            seqs[0] > now - 600_000_000 && seqs[0] <= now,
            "{seqs:?} vs {now}"
        );
    }
}

#[tokio::test]
async fn enqueueing_returns_at_once() {
    let d = Dir::new("enqueue");
    let me = d.path("me.pid");
    let argv = d.script("slow", &format!("echo $$ > {me}\nexec sleep 30"), &[]);
    let (mut n, _done) = Notifier::with_done(None);
    let a = vip("192.0.2.100");
    n.configure(vec![(a.clone(), all(&argv))], Duration::from_secs(60));
    let t0 = Instant::now();
    for i in 0..20 {
        let kind = [ActionKind::Acquire, ActionKind::Release][i % 2];
        assert!(n.outcome(&a, on(kind), &said()).is_some());
    }
    let took = t0.elapsed();
    assert!(
        took < Duration::from_millis(100),
        "20 changes took {took:?}"
    );
    // Let the first command start, then leave: drain kills what still runs.
    for _ in 0..100 {
        if !d.read("me.pid").is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let pid = d.pid("me.pid");
    let t0 = Instant::now();
    n.drain(Duration::from_millis(300)).await;
    assert!(
        t0.elapsed() < Duration::from_secs(3),
        "drain took {:?}",
        t0.elapsed()
    );
    assert!(dies(pid).await, "the running command was killed at exit");
}

#[tokio::test]
async fn a_timeout_kills_the_command_and_its_children() {
    let d = Dir::new("timeout");
    let (child, me, next) = (d.path("child.pid"), d.path("me.pid"), d.path("next"));
    let hang = d.script(
        "hang",
        &format!("sleep 300 &\necho $! > {child}\necho $$ > {me}\necho started\nexec sleep 300"),
        &[],
    );
    let after = d.script("after", &format!("touch {next}"), &[]);
    let (mut n, mut done) = Notifier::with_done(None);
    let a = vip("192.0.2.100");
    let cmds = Commands {
        on_acquire: Some(hang),
        on_release: Some(after),
        on_refuse: None,
    };
    n.configure(vec![(a.clone(), cmds)], Duration::from_millis(500));
    let s1 = n.outcome(&a, on(ActionKind::Acquire), &said()).unwrap();
    let s2 = n.outcome(&a, on(ActionKind::Release), &said()).unwrap();
    let runs = finished(&mut done, 2, Duration::from_secs(20)).await;
    let (seq, hung) = &runs[0];
    assert_eq!(*seq, s1);
    assert_eq!(hung.status, Status::TimedOut);
    assert!(
        hung.elapsed >= Duration::from_millis(500) && hung.elapsed < Duration::from_secs(5),
        "{:?}",
        hung.elapsed
    );
    assert_eq!(hung.stdout.to_string(), "started");
    for pid in ["me.pid", "child.pid"] {
        assert!(dies(d.pid(pid)).await, "{pid} still runs");
    }
    assert_eq!(runs[1].0, s2);
    assert_eq!(runs[1].1.status, Status::Exited(0));
    assert!(
        std::path::Path::new(&next).exists(),
        "the later change's command ran"
    );
}

/// Log lines written by the test's subscriber.
#[derive(Clone, Default)]
struct Log(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Log {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        lock(&self.0).extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn failures_are_logged_and_counted_and_the_next_runs() {
    let log = Log::default();
    let w = log.clone();
    let sub = tracing_subscriber::fmt()
        .with_writer(move || w.clone())
        .with_ansi(false)
        .finish();
    // The test runtime is single-threaded: the workers log on this thread.
    let _guard = tracing::subscriber::set_default(sub);
    // With a single dispatcher registered, tracing-core computes a new
    // callsite's interest from the registering thread's default only: a
    // parallel test's thread meeting these callsites first would cache
    // "never" for ours too. A second (silent) dispatcher makes it consult
    // every registered one.
    let _second = tracing::Dispatch::new(tracing::subscriber::NoSubscriber::default());
    let d = Dir::new("fail");
    let fail = d.script(
        "fail",
        "echo partial\necho boom >&2\necho again >&2\nexit 3",
        &[],
    );
    let ok = d.script("ok", "echo fine", &[]);
    let metrics = Arc::new(Metrics::new());
    let (mut n, mut done) = Notifier::with_done(Some(metrics.clone()));
    let a = vip("192.0.2.100");
    let cmds = Commands {
        on_acquire: Some(fail),
        on_release: Some(vec![d.path("missing")]),
        on_refuse: Some(ok),
    };
    n.configure(vec![(a.clone(), cmds)], Duration::from_secs(10));
    n.outcome(&a, on(ActionKind::Acquire), &said()).unwrap();
    n.outcome(&a, on(ActionKind::Release), &said()).unwrap();
    n.outcome(&a, Some((ActionKind::Refuse, "why".into())), &said())
        .unwrap();
    let runs = finished(&mut done, 3, Duration::from_secs(20)).await;
    assert_eq!(runs[0].1.status, Status::Exited(3));
    assert_eq!(runs[0].1.stderr.to_string(), "boom again");
    assert!(
        matches!(&runs[1].1.status, Status::Failed(why) if why.contains("No such file")),
        "{:?}",
        runs[1].1.status
    );
    assert_eq!(runs[2].1.status, Status::Exited(0));
    let text = String::from_utf8(lock(&log.0).clone()).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 3, "{text}");
    for (line, want) in lines.iter().zip([
        [
            "notify command failed",
            "status=exit 3",
            "stdout=\"partial\"",
            "stderr=\"boom again\"",
        ],
        [
            "notify command failed",
            "status=failed: ",
            "No such file",
            "action=\"release\"",
        ],
        [
            "notify command done",
            "status=exit 0",
            "stdout=\"fine\"",
            "action=\"refuse\"",
        ],
    ]) {
        for w in want.iter().chain(&[
            "elapsed_ms=",
            "sequence=",
            "vip=192.0.2.100",
            "master=mymaster",
        ]) {
            assert!(line.contains(w), "{w:?} not in {line}");
        }
    }
    let m = metrics.encode();
    assert!(
        m.contains("sentinel_vip_errors_total{kind=\"notify\"} 2\n"),
        "{m}"
    );
}

#[tokio::test]
async fn the_environment_holds_the_facts_and_argv_no_shell() {
    let d = Dir::new("env");
    let out = d.path("env.out");
    let argv = d.script(
        "show-env",
        &format!("env | grep '^SENTINEL_VIP_' > {out}\nprintf '%s|%s' \"$1\" \"$2\" >> {out}.args"),
        &["$HOME", "a b; true"],
    );
    let (mut n, mut done) = Notifier::with_done(None);
    let a = VipId::new("cache", "2001:2::100".parse().unwrap(), "eth1");
    n.configure(vec![(a.clone(), all(&argv))], Duration::from_secs(10));
    let nobody = Said {
        configured: 3,
        ..Said::default()
    };
    let rows = [
        (
            Some((
                ActionKind::Refuse,
                "Sentinel names the VIP\nitself".to_string(),
            )),
            said(),
        ),
        (on(ActionKind::Release), nobody),
    ];
    for (did, s) in rows {
        let (kind, reason) = did.clone().unwrap();
        let seq = n.outcome(&a, did, &s).unwrap();
        let r = finished(&mut done, 1, Duration::from_secs(20)).await;
        assert_eq!(r[0].1.status, Status::Exited(0), "{r:?}");
        let env: HashMap<String, String> = d
            .read("env.out")
            .lines()
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let want = [
            ("MASTER", "cache".to_string()),
            ("VIP", "2001:2::100".into()),
            ("INTERFACE", "eth1".into()),
            ("ACTION", kind.as_str().into()),
            ("REASON", reason.replace('\n', " ")),
            (
                "CONFIG_EPOCH",
                s.epoch.map(|e| e.to_string()).unwrap_or_default(),
            ),
            ("SENTINEL_MASTER", s.master.clone().unwrap_or_default()),
            ("SENTINELS_ANSWERED", format!("{}/3", s.answered)),
            ("SEQUENCE", seq.to_string()),
        ];
        for (k, v) in want {
            assert_eq!(
                env.get(&format!("SENTINEL_VIP_{k}")),
                Some(&v),
                "{k} in {env:?}"
            );
        }
    }
    assert_eq!(
        d.read("env.out.args"),
        "$HOME|a b; true$HOME|a b; true",
        "arguments verbatim"
    );
}

#[tokio::test]
async fn a_refusal_notifies_once_until_it_ends() {
    let d = Dir::new("refuse");
    let log = d.path("log");
    let argv = d.script(
        "rec",
        &format!("echo \"$SENTINEL_VIP_ACTION $SENTINEL_VIP_REASON\" >> {log}"),
        &[],
    );
    let (mut n, mut done) = Notifier::with_done(None);
    let a = vip("192.0.2.100");
    n.configure(vec![(a.clone(), all(&argv))], Duration::from_secs(10));
    let refuse = |why: &str| Some((ActionKind::Refuse, why.to_string()));
    let rows = [
        (refuse("x"), true),
        (refuse("x"), false),
        (None, false),
        (refuse("x"), true),
        (refuse("y"), true),
        (refuse("y"), false),
        (on(ActionKind::Acquire), true),
        (refuse("y"), true),
    ];
    for (i, (did, queued)) in rows.into_iter().enumerate() {
        assert_eq!(n.outcome(&a, did, &said()).is_some(), queued, "row {i}");
    }
    finished(&mut done, 5, Duration::from_secs(20)).await;
    assert_eq!(
        d.read("log"),
        "refuse x\nrefuse x\nrefuse y\nacquire \nrefuse y\n"
    );
}

#[tokio::test]
async fn a_reload_applies_to_later_changes_only() {
    let d = Dir::new("reload");
    let log = d.path("log");
    let rec = |tag: &str| {
        let body = format!("sleep 0.1\necho \"$SENTINEL_VIP_SEQUENCE $1\" >> {log}");
        all(&d.script(tag, &body, &[tag]))
    };
    let (mut n, mut done) = Notifier::with_done(None);
    let a = vip("192.0.2.100");
    n.configure(vec![(a.clone(), rec("old"))], Duration::from_secs(10));
    let s1 = n.outcome(&a, on(ActionKind::Acquire), &said()).unwrap();
    // Removed: the change still takes a number, runs nothing.
    n.configure(vec![], Duration::from_secs(10));
    assert_eq!(n.outcome(&a, on(ActionKind::Release), &said()), None);
    // Back with another command, while the first may still run.
    n.configure(vec![(a.clone(), rec("new"))], Duration::from_secs(10));
    let s3 = n.outcome(&a, on(ActionKind::Acquire), &said()).unwrap();
    assert_eq!(s3, s1 + 2, "the gap shows the change that ran nothing");
    finished(&mut done, 2, Duration::from_secs(20)).await;
    assert_eq!(d.read("log"), format!("{s1} old\n{s3} new\n"));
}

#[tokio::test]
async fn output_is_bounded_and_a_background_holder_does_not_stall() {
    let d = Dir::new("output");
    let bg = d.path("bg.pid");
    let argv = d.script(
        "chatty",
        &format!("head -c 100000 /dev/zero | tr '\\0' x\nsleep 300 &\necho $! > {bg}"),
        &[],
    );
    let (mut n, mut done) = Notifier::with_done(None);
    let a = vip("192.0.2.100");
    n.configure(vec![(a.clone(), all(&argv))], Duration::from_secs(20));
    n.outcome(&a, on(ActionKind::Acquire), &said()).unwrap();
    let runs = finished(&mut done, 1, Duration::from_secs(20)).await;
    let o = &runs[0].1;
    assert_eq!(o.status, Status::Exited(0));
    assert!(
        o.elapsed < Duration::from_secs(3),
        "held by the background sleep: {:?}",
        o.elapsed
    );
    assert_eq!(o.stdout.bytes.len(), run::CAPTURE);
    assert_eq!(o.stdout.dropped, 100_000 - run::CAPTURE);
    assert!(o
        .stdout
        .to_string()
        .ends_with(" [95904 more bytes dropped]"));
}

#[test]
fn sequences_and_news() {
    assert_eq!(next_seq(None, 1_700_000_000_000_000), 1_700_000_000_000_000);
    assert_eq!(next_seq(None, 0), 1);
    assert_eq!(next_seq(Some(41), 1_700_000_000_000_000), 42);
    let r = |why: &str| (ActionKind::Refuse, why.to_string());
    let acq = (ActionKind::Acquire, String::new());
    #[rustfmt::skip]
    let rows = [
        (None, ActionKind::Refuse, "x", true),
        (Some(r("x")), ActionKind::Refuse, "x", false),
        (Some(r("x")), ActionKind::Refuse, "y", true),
        (Some(r("x")), ActionKind::Acquire, "", true),
        (Some(acq.clone()), ActionKind::Acquire, "", true),
        (Some(acq), ActionKind::Refuse, "x", true),
    ];
    for (last, kind, why, want) in rows {
        assert_eq!(
            is_news(last.as_ref(), kind, why),
            want,
            "{last:?} then {kind:?} {why}"
        );
    }
}

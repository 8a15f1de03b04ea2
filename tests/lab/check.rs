//! Shared judgements for the end-to-end tests: waiting for the VIP to
//! move, reading the client's view, running scenarios on one lab.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::process::Output;
use std::time::{Duration, Instant};

use super::{hook_args, wait_until, Capture, Frame, FrameKind, Lab, NODES, VIP4};

pub const POLL: Duration = Duration::from_millis(100);

/// One step of an end-to-end test, with state shared along the run.
pub type Scenario<S> = fn(&mut Lab, &mut S);

/// Runs each scenario in order on one lab (building a lab is the slow
/// part), isolating failures with `catch_unwind` so every scenario reports;
/// then drops the lab and fails listing what failed.
pub fn run_scenarios<S>(
    mut lab: Lab,
    shared: &mut S,
    scenarios: &[(&str, Scenario<S>)],
    started: Instant,
) {
    let mut failed = Vec::new();
    for (name, scenario) in scenarios {
        let t = Instant::now();
        let result = catch_unwind(AssertUnwindSafe(|| scenario(&mut lab, shared)));
        let took = t.elapsed().as_secs_f64();
        match result {
            Ok(()) => eprintln!("scenario {name}: ok ({took:.1} s)"),
            Err(payload) => {
                // One line per scenario, however the assertion formatted it.
                let msg = panic_message(&*payload).replace('\n', " ");
                eprintln!("scenario {name}: FAILED ({msg}) ({took:.1} s)");
                failed.push(*name);
            }
        }
    }
    // Scenario panics were caught, so Drop will not show the logs by itself.
    if !failed.is_empty() {
        lab.dump_logs();
    }
    drop(lab);
    eprintln!("took {:.1} s", started.elapsed().as_secs_f64());
    assert!(failed.is_empty(), "failed scenarios: {failed:?}");
}

/// Waits until all Sentinels name a master other than `old` and exactly that
/// node holds the VIP; returns it. Panics with what was seen on timeout.
pub fn wait_vip_moves(lab: &Lab, old: usize, timeout: Duration) -> usize {
    wait_vip_alone_on_master(lab, timeout, |m| m != old)
        .unwrap_or_else(|seen| panic!("VIP did not move off n{old} within {timeout:?}: {seen}"))
}

/// Waits for the VIP to sit alone on the master the Sentinels agree on,
/// expected to be `n` still. Judged against Sentinel's answer, not the
/// expectation: on a loaded machine Sentinel may fail over once more on its
/// own (a freshly promoted master can miss down-after-milliseconds), and the
/// VIP must follow that too; that is reported, not failed.
pub fn expect_vip_still_on(lab: &Lab, n: usize, timeout: Duration, what: &str) {
    let m = wait_vip_alone_on_master(lab, timeout, |_| true).unwrap_or_else(|seen| {
        panic!("{what}: VIP not on Sentinel's master alone within {timeout:?}: {seen}")
    });
    if m != n {
        eprintln!(
            "  {what}: Sentinel failed over again on its own (n{n} -> n{m}); the VIP followed"
        );
    }
}

/// Waits until the Sentinels agree on a master that `accept` takes and that
/// node alone holds the VIP; on timeout, says what was seen last.
fn wait_vip_alone_on_master(
    lab: &Lab,
    timeout: Duration,
    accept: impl Fn(usize) -> bool,
) -> Result<usize, String> {
    let mut found = None;
    let ok = wait_until(timeout, POLL, || {
        found = lab.sentinels_agree().filter(|&m| accept(m));
        found.is_some_and(|m| lab.holders() == vec![m])
    });
    match found {
        Some(m) if ok => Ok(m),
        _ => Err(format!(
            "Sentinel says {:?}, holders {:?}",
            lab.sentinels_agree(),
            lab.holders()
        )),
    }
}

/// Malformed hook calls, on every node, with the `hook` word and bare as
/// Sentinel passes them: each must exit 2 with a one-line error and leave
/// every address as it was; a call for a master no `[[vip]]` names exits
/// 0 and changes nothing. Returns the problems found (empty: all good).
pub fn bad_hook_calls(lab: &Lab, master: usize) -> Vec<String> {
    let other = NODES.into_iter().find(|&n| n != master).expect("a replica");
    // A valid call for the current state; each case breaks one thing.
    let valid = hook_args("observer", other, master);
    let with = |i: usize, v: &str| {
        let mut a = valid.clone();
        a[i] = v.to_string();
        a
    };
    let long = "a".repeat(64 * 1024);
    let tab = format!("{}\t", valid[5]);
    let cases: Vec<(&str, Vec<String>)> = vec![
        ("no arguments", vec![]),
        ("6 arguments", valid[..6].to_vec()),
        ("8 arguments", [valid.clone(), vec!["6379".into()]].concat()),
        ("bad FROM_IP", with(3, "999.1.1.1")),
        ("bad TO_IP", with(5, "192.0.2.300")),
        ("port 0", with(6, "0")),
        ("port 65536", with(4, "65536")),
        ("port -1", with(6, "-1")),
        ("port abc", with(6, "abc")),
        ("newline in MASTER", with(0, "my\nmaster")),
        ("newline in TO_IP", with(5, &format!("{}\n", valid[5]))),
        ("tab in TO_IP", with(5, &tab)),
        ("leading - in MASTER", with(0, "-mymaster")),
        ("--help as MASTER", with(0, "--help")),
        ("leading - in TO_IP", with(5, &format!("-{}", valid[5]))),
        ("64 KiB MASTER", with(0, &long)),
        ("64 KiB TO_IP", with(5, &long)),
        ("ROLE boss", with(1, "boss")),
        ("STATE end", with(2, "end")),
    ];
    let before = lab.all_addrs();
    let mut problems = Vec::new();
    for n in NODES {
        for (what, args) in &cases {
            for word in [true, false] {
                // With no word and no arguments it is not a hook call.
                if args.is_empty() && !word {
                    continue;
                }
                let mut a: Vec<&str> = if word { vec!["hook"] } else { vec![] };
                a.extend(args.iter().map(String::as_str));
                let o = lab.sv(n, &a);
                let form = if word { "with `hook`" } else { "bare" };
                let lines = String::from_utf8_lossy(&o.stderr)
                    .trim_end()
                    .lines()
                    .count();
                if o.status.code() != Some(2) || lines != 1 {
                    problems.push(format!(
                        "n{n} hook {what} ({form}): want exit 2 and a one-line error, got {}",
                        show(&o)
                    ));
                }
                let now = lab.all_addrs();
                if now != before {
                    problems.push(format!(
                        "n{n} hook {what} ({form}): addresses changed to {now:?}"
                    ));
                }
            }
        }
        let mut a = vec!["hook".to_string()];
        a.extend(with(0, "othermaster"));
        let o = lab.sv(n, &a);
        if o.status.code() != Some(0) {
            problems.push(format!(
                "n{n} hook for an unknown master: want exit 0, got {}",
                show(&o)
            ));
        }
        if lab.all_addrs() != before {
            problems.push(format!(
                "n{n} hook for an unknown master: addresses changed"
            ));
        }
    }
    problems
}

/// The MAC the client currently resolves the IPv4 VIP to ("" if none).
pub fn client_vip_mac(lab: &Lab) -> String {
    lab.client_neigh(VIP4).map(|(m, _)| m).unwrap_or_default()
}

/// Waits briefly (announcements may trail the address by a moment) for the
/// client's neighbour entry for `addr` to carry node `n`'s MAC.
pub fn expect_client_mac(lab: &Lab, addr: &str, n: usize) {
    let want = lab.mac(n);
    let ok = wait_until(Duration::from_secs(2), POLL, || {
        lab.client_neigh(addr).is_some_and(|(m, _)| m == want)
    });
    assert!(
        ok,
        "client's neighbour entry for {addr} is {:?}, want n{n}'s MAC {want}",
        lab.client_neigh(addr)
    );
}

/// Stops the capture once what it has seen satisfies `done`, or after `max`:
/// announcements may be repeated or trail the address change, and waiting the
/// full time on success would only slow the test down.
pub fn stop_capture_when(
    cap: Capture,
    max: Duration,
    done: impl Fn(&[Frame]) -> bool,
) -> Vec<Frame> {
    let deadline = Instant::now() + max;
    loop {
        std::thread::sleep(Duration::from_millis(300));
        let seen = cap.peek();
        if done(&seen) || Instant::now() >= deadline {
            return cap.stop();
        }
    }
}

/// Whether `frames` hold gratuitous ARP for `addr` from `mac` in both the
/// request and the reply form.
pub fn has_garp_forms(frames: &[Frame], addr: &str, mac: &str) -> bool {
    let from = |kind| {
        frames
            .iter()
            .any(|f| f.kind == kind && f.src_mac == mac && f.is_garp_for(addr))
    };
    from(FrameKind::ArpRequest) && from(FrameKind::ArpReply)
}

pub fn lines<'a>(frames: &[&'a Frame]) -> Vec<&'a str> {
    frames.iter().map(|f| f.line.as_str()).collect()
}

pub fn arp_lines(frames: &[Frame]) -> Vec<&str> {
    frames
        .iter()
        .filter(|f| matches!(f.kind, FrameKind::ArpRequest | FrameKind::ArpReply))
        .map(|f| f.line.as_str())
        .collect()
}

pub fn expect_exit(o: &Output, code: i32, what: &str) {
    assert_eq!(o.status.code(), Some(code), "{what}: {}", show(o));
}

/// A command's outcome for messages, with long output cut.
pub fn show(o: &Output) -> String {
    let cut = |b: &[u8]| {
        let s = String::from_utf8_lossy(b).trim().to_string();
        if s.chars().count() > 300 {
            format!("{}...", s.chars().take(300).collect::<String>())
        } else {
            s
        }
    };
    format!(
        "exit {:?}, stdout {:?}, stderr {:?}",
        o.status.code(),
        cut(&o.stdout),
        cut(&o.stderr)
    )
}

pub fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        s.to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "non-string panic".to_string()
    }
}

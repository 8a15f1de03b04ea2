//! Privileges (case 12): as nobody with only CAP_NET_ADMIN and
//! CAP_NET_RAW everything works; with no capability nothing is touched.

use std::process::Output;
use std::time::Duration;

use sentinel_vip_lab::capture::arp_lines;
use sentinel_vip_lab::suite::{expect_exit, show};
use sentinel_vip_lab::{hook_cmd, Capture, Frame, Lab, Privilege, NODES};

use crate::World;

/// An address no config names, for `vip add`/`vip del`.
const SCRATCH_CIDR: &str = "192.0.2.200/24";
const SCRATCH_IP: &str = "192.0.2.200";

/// (12) With only CAP_NET_ADMIN and CAP_NET_RAW, as nobody, `check`, the
/// hook and `vip add`/`vip del` work; with no capability they refuse
/// (exit 2; `check` non-zero), naming what is missing, and touch nothing.
pub fn privileges(lab: &mut Lab, w: &mut World) {
    let m = lab.ready_for_fault();
    let other = NODES.into_iter().find(|&n| n != m).expect("a replica");
    let mut problems = Vec::new();
    // A hook call that asks for what Sentinel says: the VIP on `m`.
    let hook = |n: usize| hook_cmd("observer", if n == m { other } else { n }, m);
    let add = ["vip", "add", SCRATCH_CIDR, "--dev", "eth0"];
    let del = ["vip", "del", SCRATCH_CIDR, "--dev", "eth0"];
    let two_caps = Privilege::TwoCaps;

    // With the two capabilities.
    for n in NODES {
        let o = lab.sv_as(n, two_caps, &["check"]);
        want_exit(
            &mut problems,
            &o,
            0,
            &format!("check on n{n} with two caps"),
        );
    }
    lab.delete_vip(m);
    for n in NODES {
        let o = lab.sv_as(n, two_caps, &hook(n));
        want_exit(&mut problems, &o, 0, &format!("hook on n{n} with two caps"));
    }
    let restored = lab.holders() == vec![m];
    let cap = Capture::start(lab);
    let o = lab.sv_as(other, two_caps, &add);
    want_exit(&mut problems, &o, 0, "vip add with two caps");
    let added = lab.holds(other, SCRATCH_IP);
    let mac = lab.mac(other);
    let garp = |f: &Frame| f.src_mac == mac && f.is_garp_for(SCRATCH_IP);
    let frames = cap.stop_when(Duration::from_secs(3), |f| f.iter().any(garp));
    let announced = frames.iter().any(garp);
    let o = lab.sv_as(other, two_caps, &del);
    want_exit(&mut problems, &o, 0, "vip del with two caps");
    let deleted = !lab.holds(other, SCRATCH_IP);

    // Without any capability; each attempt is judged on its own snapshot.
    let mut changed = Vec::new();
    // `want`: the exit code, or None for any failure.
    let mut attempt = |lab: &Lab, n: usize, args: &[String], what: &str, want: Option<i32>| {
        let before = lab.all_addrs();
        let o = lab.sv_as(n, Privilege::NoCaps, args);
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
        eprintln!("  {what} as nobody without caps: {}", show(&o));
        let code_ok = match (o.status.code(), want) {
            (Some(c), None) => c != 0 && c != 124,
            (c, w) => c == w,
        };
        if !code_ok || !text.contains("CAP_NET_") {
            problems.push(format!(
                "{what} without capabilities: want a refusal naming the capability, got {}",
                show(&o)
            ));
        }
        if lab.all_addrs() != before {
            changed.push(what.to_string());
        }
    };
    let strings = |a: &[&str]| a.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    attempt(lab, other, &strings(&add), "vip add", Some(2));
    let mut quiet = strings(&add);
    quiet.push("--no-announce".into());
    attempt(lab, other, &quiet, "vip add --no-announce", Some(2));
    attempt(lab, m, &strings(&["check"]), "check", None);
    // Something to refuse to undo: the scratch address on `other`, the VIP
    // gone from the master.
    let scratch = |verb| ["ip", "addr", verb, SCRATCH_CIDR, "dev", "eth0"];
    expect_exit(
        &lab.run_node(other, &scratch("add")),
        0,
        "adding the scratch address",
    );
    lab.delete_vip(m);
    attempt(lab, other, &strings(&del), "vip del", Some(2));
    // No watcher runs here: the hook cannot hand its call over, and exits
    // 1 so that Sentinel retries (the watcher may be back by then).
    attempt(lab, m, &hook(m), "hook with the VIP to add", Some(1));
    // Back to normal, as root.
    expect_exit(
        &lab.run_node(other, &scratch("del")),
        0,
        "deleting the scratch address",
    );
    expect_exit(&lab.sv(m, &["reconcile"]), 0, "reconcile as root");

    w.row.note = "check, hook, vip add/del as nobody, with and without caps".into();
    assert!(
        restored,
        "the hook with two caps did not put the VIP back on n{m}"
    );
    assert!(added, "vip add with two caps did not add {SCRATCH_CIDR}");
    assert!(
        announced,
        "vip add with two caps sent no gratuitous ARP for {SCRATCH_IP}; ARP seen: {:?}",
        arp_lines(&frames)
    );
    assert!(
        deleted,
        "vip del with two caps did not delete {SCRATCH_CIDR}"
    );
    assert!(
        changed.is_empty(),
        "addresses changed without capabilities, by {changed:?}"
    );
    assert!(
        problems.is_empty(),
        "{} problem(s): {}",
        problems.len(),
        problems.join("; ")
    );
    assert_eq!(lab.holders(), vec![m]);
}

fn want_exit(problems: &mut Vec<String>, o: &Output, code: i32, what: &str) {
    if o.status.code() != Some(code) {
        problems.push(format!("{what}: want exit {code}, got {}", show(o)));
    }
}

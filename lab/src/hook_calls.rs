//! The malformed hook calls both the hook end-to-end test and the chaos
//! suite make, judged the same way in both.

use crate::suite::show;
use crate::{hook_args, Lab, NODES};

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

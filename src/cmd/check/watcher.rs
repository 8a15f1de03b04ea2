//! `check`'s finding on the running watcher's privileges: the process that
//! answers on the control socket (its pid from `SO_PEERCRED`), judged from
//! its /proc/PID/status. A watcher needs CAP_NET_ADMIN and CAP_NET_RAW and
//! nothing else; more, or root, is said with a `warn` line. A warning is
//! not a failure: the watcher works, and running it so may be deliberate.
//! It only reads.

use std::path::Path;
use std::time::Duration;

use crate::caps::{names, set, NEEDED_MASK};
use crate::control::{client, Request};

/// Prints a `warn` line per finding, a `note` if the watcher's status
/// cannot be read; nothing when no watcher answers (the hook path says so)
/// or when it holds what it needs and no more.
pub(super) async fn privileges(socket: &Path) {
    let ping = client::request_peer(socket, &Request::Ping {}, Duration::from_secs(2)).await;
    let Ok((_, Some(pid))) = ping else { return };
    match std::fs::read_to_string(format!("/proc/{pid}/status")) {
        Ok(status) => {
            for f in findings(&status) {
                println!("warn watcher (pid {pid}) {f}");
            }
        }
        Err(e) => println!("note watcher (pid {pid}): cannot read /proc/{pid}/status: {e}"),
    }
}

/// Pure: what is more than the watcher needs, from the text of its
/// /proc/PID/status: a uid 0 (real, effective, saved or file system), a
/// capability beyond the two in its effective, permitted or bounding set
/// (ambient ones are always permitted too). Each one line.
fn findings(status: &str) -> Vec<String> {
    let mut out = Vec::new();
    let uids = status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .unwrap_or("");
    if uids.split_whitespace().any(|u| u == "0") {
        out.push(
            "runs as root (uid 0): it needs only its own user with CAP_NET_ADMIN and CAP_NET_RAW, as debian/sentinel-vip.service runs it".to_string(),
        );
    }
    let sets = ["CapEff", "CapPrm", "CapBnd"];
    let extra: Vec<(&str, u64)> = sets
        .iter()
        .map(|k| (*k, set(status, k).unwrap_or(0) & !NEEDED_MASK))
        .filter(|(_, x)| *x != 0)
        .collect();
    if !extra.is_empty() {
        let all = extra.iter().fold(0, |a, (_, x)| a | x);
        let n = names(all);
        let shown = if n.len() > 4 {
            format!("{}, … ({} in all)", n[..4].join(", "), n.len())
        } else {
            n.join(", ")
        };
        let which: Vec<&str> = extra.iter().map(|(k, _)| *k).collect();
        out.push(format!(
            "holds more than CAP_NET_ADMIN and CAP_NET_RAW: {shown} (in {}); a notify command gets none of them, but the watcher itself could use them",
            which.join(", ")
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::findings;

    fn status(uid: &str, eff: &str, prm: &str, bnd: &str) -> String {
        format!(
            "Name:\tsentinel-vip\nUid:\t{uid}\t{uid}\t{uid}\t{uid}\nCapInh:\t0000000000000000\n\
             CapPrm:\t{prm}\nCapEff:\t{eff}\nCapBnd:\t{bnd}\nCapAmb:\t0000000000003000\n"
        )
    }

    #[test]
    fn more_than_two_capabilities_or_root_is_said() {
        const TWO: &str = "0000000000003000";
        const ALL: &str = "000001ffffffffff";
        // (what, status, the findings' telling words)
        let rows: [(&str, String, &[&str]); 7] = [
            ("as the unit runs it", status("107", TWO, TWO, TWO), &[]),
            (
                "one of the two only",
                status("107", "0000000000001000", "0000000000001000", TWO),
                &[],
            ),
            (
                "root, all",
                status("0", ALL, ALL, ALL),
                &["runs as root", "39 in all", "CapEff, CapPrm, CapBnd"],
            ),
            (
                "root, two caps",
                status("0", TWO, TWO, TWO),
                &["runs as root"],
            ),
            (
                "a wider bounding set",
                status("107", TWO, TWO, "0000000000003400"),
                &["CAP_NET_BIND_SERVICE (in CapBnd)"],
            ),
            (
                "sys_admin effective",
                status(
                    "107",
                    "0000000000203000",
                    "0000000000203000",
                    "0000000000203000",
                ),
                &["CAP_SYS_ADMIN (in CapEff, CapPrm, CapBnd)"],
            ),
            (
                "setuid to root only saved",
                status("107", TWO, TWO, TWO).replace("Uid:\t107\t107\t107", "Uid:\t107\t107\t0"),
                &["runs as root"],
            ),
        ];
        for (what, text, words) in rows {
            let f = findings(&text);
            let joined = f.join(" | ");
            assert_eq!(f.is_empty(), words.is_empty(), "{what}: {joined}");
            for w in words {
                assert!(joined.contains(w), "{what}: no {w:?} in {joined}");
            }
            assert!(f.iter().all(|l| !l.contains('\n')), "{what}");
        }
        let root = findings(&status("0", ALL, ALL, ALL));
        assert_eq!(root.len(), 2, "{root:?}");
        assert!(root[1].contains("CAP_CHOWN, CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH, CAP_FOWNER, …"));
    }
}

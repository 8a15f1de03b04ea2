//! Bad input (case 11): malformed hook arguments and configs, a malformed
//! config on SIGHUP, and (in junk.rs) a "Sentinel" that speaks garbage or
//! forges events. Each is refused or ignored and touches nothing.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use sentinel_vip_lab::hook_calls::bad_hook_calls;
use sentinel_vip_lab::monitor::Monitor;
use sentinel_vip_lab::suite::show;
use sentinel_vip_lab::{hook_args, hook_cmd, wait_until, Lab, NODES, POLL, VIP4, VIP4_CIDR};

use crate::junk::junk_sentinel;
use crate::World;

/// (11) Bad input everywhere: malformed hook arguments and configs exit as
/// documented and touch nothing; the watchers shrug off a malformed config
/// on SIGHUP and a "Sentinel" that speaks garbage or forges events.
pub fn bad_input(lab: &mut Lab, w: &mut World) {
    let m = lab.ready_for_fault();
    let before = lab.all_addrs();
    let mon = Monitor::start(lab);
    let mut problems = Vec::new();
    problems.extend(bad_hook_calls(lab, m));
    bad_configs(lab, m, &before, &mut problems);
    junk_reload(lab, &mut problems);
    junk_sentinel(lab, m, &mut problems);
    let trace = mon.stop();
    w.record(&trace, m);
    w.row.note = "hook args, configs, SIGHUP, junk and forged Sentinel".into();
    if lab.all_addrs() != before {
        problems.push(format!(
            "addresses changed: before {before:?}, after {:?}",
            lab.all_addrs()
        ));
    }
    for n in NODES {
        if !lab.watcher(n).running() {
            problems.push(format!("the watcher on n{n} died"));
        }
    }
    if trace.holder_changes() != 0 {
        problems.push(format!("the VIP moved: {:?}", trace.history()));
    }
    assert!(
        problems.is_empty(),
        "{} problem(s): {}",
        problems.len(),
        problems.join("; ")
    );
}

/// Malformed configs: every command that needs one exits 2 (`check`:
/// non-zero); with no Sentinels configured, a TO_IP that cannot be
/// resolved because no name server can be asked (the lab has no route to
/// one) is temporary (exit 1, Sentinel retries), touching nothing; a name
/// a name server says does not exist is permanent (tests/e2e_resolve.rs).
fn bad_configs(lab: &Lab, m: usize, before: &[Vec<(String, u8)>], problems: &mut Vec<String>) {
    let good = fs::read_to_string(lab.config_path(m)).expect("node config");
    let vip_line = format!("address = \"{VIP4_CIDR}\"");
    assert!(good.contains(&vip_line), "unexpected lab config: {good}");
    let bad = [
        ("unknown key", format!("bogus_key = 1\n{good}")),
        (
            "address without prefix",
            good.replace(&vip_line, &format!("address = \"{VIP4}\"")),
        ),
        (
            "broadcast address",
            good.replace(&vip_line, "address = \"192.0.2.255/24\""),
        ),
        (
            "loopback address",
            good.replace(&vip_line, "address = \"127.0.0.9/8\""),
        ),
        ("not TOML", format!("{good}\n[[vip]\n")),
    ];
    let hook = hook_cmd("leader", 1, 2);
    let hook: Vec<&str> = hook.iter().map(String::as_str).collect();
    for (i, (what, text)) in bad.iter().enumerate() {
        let path = lab.node_dir(m).join(format!("bad-{i}.toml"));
        fs::write(&path, text).expect("write scratch config");
        let p = path.display().to_string();
        let cmds: [&[&str]; 5] = [&hook, &["reconcile"], &["watch"], &["status"], &["check"]];
        for cmd in cmds {
            let mut a = vec!["--config", p.as_str()];
            a.extend_from_slice(cmd);
            let o = lab.sv(m, &a);
            let ok = if cmd[0] == "check" || cmd[0] == "status" {
                o.status.code().is_some_and(|c| c != 0 && c != 124)
            } else {
                o.status.code() == Some(2)
            };
            if !ok {
                problems.push(format!("config with {what}, `{}`: {}", cmd[0], show(&o)));
            }
        }
    }
    // Only the arguments can decide, and they name no usable host.
    let none = good
        .lines()
        .map(|l| {
            if l.starts_with("sentinels") {
                "sentinels = []".to_string()
            } else if l.starts_with("control_socket =") {
                // No watcher there: the hook must act on its own config.
                let sock = lab.node_dir(m).join("no-watcher.sock");
                format!("control_socket = \"{}\"", sock.display())
            } else {
                l.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\n");
    let path = lab.node_dir(m).join("no-sentinels.toml");
    fs::write(&path, none).expect("write scratch config");
    let p = path.display().to_string();
    let mut args = vec!["--config".to_string(), p, "hook".into()];
    args.extend(hook_args("leader", 1, 2));
    // TO_IP, the sixth of the hook arguments.
    args[3 + 5] = "no-such-host.invalid".into();
    let o = lab.sv(m, &args);
    if o.status.code() != Some(1) {
        problems.push(format!(
            "TO_IP with no name server to ask, without Sentinels: want exit 1, got {}",
            show(&o)
        ));
    }
    if lab.all_addrs() != before {
        problems.push("bad configs changed addresses".into());
    }
}

/// A malformed config on SIGHUP is logged and ignored; the watcher keeps
/// running on the old one.
fn junk_reload(lab: &mut Lab, problems: &mut Vec<String>) {
    for n in NODES {
        let _restore = Restore::file(&lab.config_path(n));
        let good = fs::read_to_string(lab.config_path(n)).expect("node config");
        fs::write(lab.config_path(n), format!("{good}\nnot = toml = [\n")).expect("write");
        let before = lab.log_count(n, &["not reloaded"]);
        lab.signal_watcher(n, "HUP");
        let logged = wait_until(Duration::from_secs(5), POLL, || {
            lab.log_count(n, &["not reloaded"]) > before
        });
        if !logged {
            problems.push(format!(
                "n{n}: no `config not reloaded` logged after SIGHUP with a malformed config"
            ));
        }
    }
    std::thread::sleep(Duration::from_millis(500));
    for n in NODES {
        if !lab.watcher(n).running() {
            problems.push(format!(
                "n{n}: the watcher died on SIGHUP with a bad config"
            ));
        }
    }
}

/// Puts a file's content back when dropped.
struct Restore {
    path: PathBuf,
    text: String,
}

impl Restore {
    fn file(path: &Path) -> Restore {
        Restore {
            path: path.to_path_buf(),
            text: fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display())),
        }
    }
}

impl Drop for Restore {
    fn drop(&mut self) {
        let _ = fs::write(&self.path, &self.text);
    }
}

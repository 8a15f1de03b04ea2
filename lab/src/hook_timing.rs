//! Timing the hook from exec to exit on one node, for the benchmark's
//! handoff comparison (issue 10): the same call handed to a running
//! watcher by a hook without any capability, or acted on by a root hook
//! with no watcher. It starts and stops that node's watcher; it changes
//! nothing else.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::netns::{kill_group, spawn_in};
use crate::{wait_until, Lab, Privilege};

/// One hook call on one node, ready to run many times.
pub struct HookCall {
    node: usize,
    ns: String,
    config: PathBuf,
    bin: PathBuf,
    args: Vec<String>,
}

/// Runs of both kinds for one config, and what the hook's log says of them.
pub struct Blocks {
    /// Milliseconds, exec to exit, of the runs that exited 0.
    pub handed: Vec<f64>,
    pub direct: Vec<f64>,
    /// Runs the hook logged as answered by the watcher / acted on itself.
    pub answered: usize,
    pub acted: usize,
    /// Runs that failed or hung, one line each.
    pub errors: Vec<String>,
}

impl HookCall {
    /// The hook with Sentinel's seven `args` on node `n`, with the node's
    /// config. Lets an unprivileged hook append to the node's log, as the
    /// lab does for its own unprivileged runs.
    pub fn new(lab: &Lab, n: usize, args: Vec<String>) -> HookCall {
        let f = lab.sv_log_path(n);
        let open = fs::OpenOptions::new().create(true).append(true).open(&f);
        open.and_then(|_| fs::set_permissions(&f, fs::Permissions::from_mode(0o666)))
            .unwrap_or_else(|e| panic!("lab: {}: {e}", f.display()));
        HookCall {
            node: n,
            ns: lab.ns(n),
            config: lab.config_path(n),
            bin: lab.bin().to_path_buf(),
            args,
        }
    }

    /// One run as `who`: milliseconds from spawn to exit when it exits 0.
    /// Spawned with setns in the child (no `ip netns exec`); a run still
    /// going after 10 s is killed.
    pub fn time(&self, who: Privilege) -> Result<f64, String> {
        let mut c = Command::new(&self.bin);
        c.args(&self.args).env("SENTINEL_VIP_CONFIG", &self.config);
        let t = Instant::now();
        let mut child = spawn_in(&self.ns, who, &mut c);
        let mut st = None;
        wait_until(Duration::from_secs(10), Duration::from_micros(100), || {
            st = child.try_wait().ok().flatten();
            st.is_some()
        });
        let ms = t.elapsed().as_secs_f64() * 1e3;
        match st {
            Some(s) if s.success() => Ok(ms),
            Some(s) => Err(format!("{who:?} hook {s}")),
            None => {
                kill_group(&mut child);
                Err(format!("{who:?} hook still running after 10 s"))
            }
        }
    }

    /// Two blocks of `per_block` runs each way: with a watcher on the node
    /// (started afresh, so it reads the config on disk) the hook as nobody
    /// without capabilities, then with none the hook as root. Blocks, as
    /// starting a watcher per run would dominate.
    pub fn blocks(&self, lab: &mut Lab, per_block: usize) -> Blocks {
        let n = self.node;
        let count = |lab: &Lab, w: &str| lab.log_count(n, &[w]);
        let (answered0, acted0) = (
            count(lab, "hook: answered by the watcher"),
            count(lab, "hook: acting itself"),
        );
        let (mut handed, mut direct, mut errors) = (Vec::new(), Vec::new(), Vec::new());
        for _ in 0..2 {
            let ready = count(lab, "subscribed");
            lab.start_watcher(n, Privilege::TwoCaps);
            let up = wait_until(Duration::from_secs(10), Duration::from_millis(50), || {
                count(lab, "subscribed") >= ready + 3
            });
            assert!(
                up,
                "the watcher on n{n} did not subscribe to 3 Sentinels within 10 s"
            );
            // Its first pass done.
            std::thread::sleep(Duration::from_millis(300));
            for _ in 0..per_block {
                let r = self.time(Privilege::NoCaps);
                r.map_or_else(|e| errors.push(e), |t| handed.push(t));
            }
            lab.watcher(n).stop("TERM", Duration::from_secs(5));
            for _ in 0..per_block {
                let r = self.time(Privilege::Root);
                r.map_or_else(|e| errors.push(e), |t| direct.push(t));
            }
        }
        Blocks {
            handed,
            direct,
            answered: count(lab, "hook: answered by the watcher") - answered0,
            acted: count(lab, "hook: acting itself") - acted0,
            errors,
        }
    }
}

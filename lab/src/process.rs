//! Starting things in a node's namespace: the one [`Slot`] type that owns
//! every child the lab starts (redis-server, Sentinel, watcher, a
//! stand-in server), the one privilege-drop builder ([`Privilege`]), and
//! one-shot runs of commands and of sentinel-vip.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

use crate::command::{ip, signal};
use crate::{Lab, NODES};

/// The uid unprivileged runs use (see [`Privilege`]).
pub(crate) const NOBODY: u32 = 65534;

/// A child process the lab started, with the file its output goes to.
/// Stopping, replacing or dropping the slot kills the process.
#[derive(Default)]
pub struct Slot {
    child: Option<Child>,
    out: Option<PathBuf>,
}

impl Slot {
    fn new(child: Child, out: &Path) -> Slot {
        Slot {
            child: Some(child),
            out: Some(out.to_path_buf()),
        }
    }

    /// The process id while the slot holds a process.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Whether the process is still running.
    pub fn running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    /// Sends `signal` (a name such as "TERM"; "0" only checks) and waits up
    /// to `timeout` for the process to exit; returns its exit status, or
    /// `None` if it had to be killed or there was none.
    pub fn stop(&mut self, signal_name: &str, timeout: Duration) -> Option<ExitStatus> {
        let mut child = self.child.take()?;
        signal(child.id(), signal_name);
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Ok(Some(st)) = child.try_wait() {
                return Some(st);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        let _ = child.wait();
        None
    }

    /// SIGKILL: no clean-up runs in the process.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Everything the process (or the last one in this slot) wrote.
    pub fn output(&self) -> String {
        self.out
            .as_ref()
            .and_then(|p| fs::read_to_string(p).ok())
            .unwrap_or_default()
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Who a sentinel-vip run is: root, or `nobody` through setpriv with
/// exactly CAP_NET_ADMIN and CAP_NET_RAW (as the systemd unit runs the
/// watcher), or with CAP_NET_ADMIN alone (all a host of routed VIPs
/// needs), or `nobody` with no capability at all (as a hardened Sentinel
/// runs its scripts), or another user with none.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Privilege {
    Root,
    TwoCaps,
    NetAdmin,
    NoCaps,
    /// This uid (and gid), with no capability.
    NoCapsAs(u32),
}

impl Privilege {
    /// The setpriv words that run a program as this (none for root).
    fn setpriv(self) -> Vec<String> {
        let (uid, caps) = match self {
            Privilege::Root => return Vec::new(),
            Privilege::TwoCaps => (NOBODY, "-all,+net_admin,+net_raw"),
            Privilege::NetAdmin => (NOBODY, "-all,+net_admin"),
            Privilege::NoCaps => (NOBODY, "-all"),
            Privilege::NoCapsAs(uid) => (uid, "-all"),
        };
        let mut words = vec![
            "setpriv".to_string(),
            format!("--reuid={uid}"),
            format!("--regid={uid}"),
            "--clear-groups".into(),
            format!("--inh-caps={caps}"),
            format!("--bounding-set={caps}"),
            "--no-new-privs".into(),
        ];
        if matches!(self, Privilege::TwoCaps | Privilege::NetAdmin) {
            words.push(format!("--ambient-caps={caps}"));
        }
        words
    }
}

impl Lab {
    /// Runs `args` inside namespace `ns`.
    pub fn run(&self, ns: &str, args: &[&str]) -> Output {
        let mut full = vec!["netns", "exec", ns];
        full.extend_from_slice(args);
        ip(&full)
    }

    /// Runs `args` inside node `n`'s namespace.
    pub fn run_node(&self, n: usize, args: &[&str]) -> Output {
        self.run(&self.ns(n), args)
    }

    /// One `reconcile` on every node, as root, its outcome ignored: puts
    /// the VIP where the Sentinels say before a measurement starts.
    pub fn reconcile_all(&self) {
        for n in NODES {
            let _ = self.sv(n, &["reconcile"]);
        }
    }

    /// Runs the sentinel-vip binary as root in node `n`'s namespace with
    /// that node's config in `SENTINEL_VIP_CONFIG`. A 60 s timeout keeps a
    /// hung binary from hanging the test (exit code 124 then), and lets a
    /// hook wait out the watcher's 45 s answer deadline.
    pub fn sv<S: AsRef<str>>(&self, n: usize, args: &[S]) -> Output {
        self.sv_as(n, Privilege::Root, args)
    }

    /// [`Lab::sv`] as `who`.
    pub fn sv_as<S: AsRef<str>>(&self, n: usize, who: Privilege, args: &[S]) -> Output {
        self.sv_env(n, who, args, &[])
    }

    /// [`Lab::sv_as`] with `env` added to the environment.
    pub fn sv_env<S: AsRef<str>>(
        &self,
        n: usize,
        who: Privilege,
        args: &[S],
        env: &[(&str, &str)],
    ) -> Output {
        self.open_for(n, who);
        Command::new("ip")
            .args(["netns", "exec", &self.ns(n), "timeout", "-k", "2", "60"])
            .args(who.setpriv())
            .arg(self.bin())
            .args(args.iter().map(AsRef::as_ref))
            .env("SENTINEL_VIP_CONFIG", self.config_path(n))
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("lab: cannot run sentinel-vip on n{n}: {e}"))
    }

    /// Runs [`Lab::sv_as`] for every (node, arguments) at once; outputs
    /// in order.
    pub fn sv_concurrently(&self, who: Privilege, runs: &[(usize, Vec<String>)]) -> Vec<Output> {
        std::thread::scope(|s| {
            let handles: Vec<_> = runs
                .iter()
                .map(|(n, args)| s.spawn(move || self.sv_as(*n, who, args)))
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().expect("sv thread"))
                .collect()
        })
    }

    /// Lets an unprivileged run append to node `n`'s log. (The lock is the
    /// runtime directory owner's, `nobody`, as the watcher's is.)
    fn open_for(&self, n: usize, who: Privilege) {
        if who == Privilege::Root {
            return;
        }
        let f = self.sv_log_path(n);
        let _ = fs::OpenOptions::new().create(true).append(true).open(&f);
        fs::set_permissions(&f, fs::Permissions::from_mode(0o666))
            .unwrap_or_else(|e| panic!("lab: chmod {}: {e}", f.display()));
    }

    /// Starts `sentinel-vip watch` as `who` on node `n` in its slot (a
    /// watcher still running there is killed first).
    pub fn start_watcher(&mut self, n: usize, who: Privilege) {
        let slot = self.spawn_watcher(n, who);
        self.nodes[n - 1].watcher = slot;
    }

    /// Starts `sentinel-vip watch` as `who` on node `n` outside the node's
    /// slot (a second watcher beside the first). Each watcher's output goes
    /// to its own `dir/n{n}/watcher-K.out`.
    pub fn spawn_watcher(&mut self, n: usize, who: Privilege) -> Slot {
        self.open_for(n, who);
        let mut args = who.setpriv();
        args.extend([self.bin().display().to_string(), "watch".into()]);
        let node = &mut self.nodes[n - 1];
        let k = node.watcher_starts;
        node.watcher_starts += 1;
        let out = self.node_dir(n).join(format!("watcher-{k}.out"));
        self.spawn_with_config(n, &args, &out)
    }

    /// Node `n`'s watcher slot (to stop, signal or read it).
    pub fn watcher(&mut self, n: usize) -> &mut Slot {
        &mut self.nodes[n - 1].watcher
    }

    /// Sends `signal` to node `n`'s watcher, which must be running.
    pub fn signal_watcher(&mut self, n: usize, signal_name: &str) {
        let pid = self
            .watcher(n)
            .pid()
            .unwrap_or_else(|| panic!("no watcher running on n{n}"));
        assert!(signal(pid, signal_name), "kill -{signal_name} {pid} failed");
    }

    /// A program from the node's config environment, started in node `n`'s
    /// namespace (Sentinel hands its environment to the reconfig script;
    /// this is how the hook finds its config).
    pub(crate) fn spawn_with_config(&self, n: usize, args: &[String], out: &Path) -> Slot {
        let cfg = self.config_path(n).display().to_string();
        self.spawn_at(n, args, &[("SENTINEL_VIP_CONFIG", cfg.as_str())], out)
    }

    /// Starts `args` in node `n`'s namespace with `env`, output to `out`
    /// in the node's dir; the slot kills it when dropped.
    pub fn spawn(&self, n: usize, args: &[String], env: &[(&str, &str)], out: &str) -> Slot {
        self.spawn_at(n, args, env, &self.node_dir(n).join(out))
    }

    /// `ip netns exec` execs the command, so the child's pid is the
    /// command's own.
    pub(crate) fn spawn_at(
        &self,
        n: usize,
        args: &[String],
        env: &[(&str, &str)],
        out: &Path,
    ) -> Slot {
        self.spawn_ns(&self.ns(n), args, env, out)
    }

    /// [`Lab::spawn_at`] in any of the lab's namespaces.
    pub(crate) fn spawn_ns(
        &self,
        ns: &str,
        args: &[String],
        env: &[(&str, &str)],
        out: &Path,
    ) -> Slot {
        let f = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(out)
            .unwrap_or_else(|e| panic!("lab: cannot open {}: {e}", out.display()));
        let f2 = f.try_clone().expect("lab: dup log file");
        let mut c = Command::new("ip");
        c.args(["netns", "exec", ns])
            .args(args)
            .stdin(Stdio::null())
            .stdout(f)
            .stderr(f2);
        // Redis logs in local time; UTC makes its timestamps comparable.
        c.env("TZ", "UTC");
        c.envs(env.iter().copied());
        let child = c
            .spawn()
            .unwrap_or_else(|e| panic!("lab: cannot start {args:?} in {ns}: {e}"));
        Slot::new(child, out)
    }

    /// Restarts every watcher with SIGTERM (the VIP stays unless the
    /// config says `on_exit = "release"`), so that the config on disk
    /// applies in full.
    pub fn restart_watchers(&mut self, who: Privilege) {
        for n in NODES {
            self.watcher(n).stop("TERM", Duration::from_secs(5));
            self.start_watcher(n, who);
        }
    }
}

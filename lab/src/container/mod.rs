//! A booted systemd as PID 1 (systemd-nspawn) inside a given network
//! namespace, for tests that must run distribution units as shipped.
//!
//! Owns: a fresh copy of the cached Debian root file system per container
//! (the cache is rootfs.rs's), the container's cgroups, and tearing all of
//! it down (cleanup.rs). It depends only on
//! std and the name of a network namespace under /run/netns: the container
//! never gets the host's network, only that namespace's interfaces. It must
//! not know about the lab's nodes, Redis or sentinel-vip.
//!
//! The host's PID 1 need not be systemd: nspawn runs with `--keep-unit
//! --register=no` (no host bus) in cgroups of its own under
//! /sys/fs/cgroup/systemd and /sys/fs/cgroup/unified, and the container
//! gets the unified hierarchy (`SYSTEMD_NSPAWN_UNIFIED_HIERARCHY=1`).
mod cleanup;
mod rootfs;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use cleanup::{cgroup_pids, ns_pid_is_1, remove_cgroups, unmount_under};
pub use cleanup::{leftovers, reap_stale};
pub use rootfs::{
    debian_mirror, rootfs_tarball, rootfs_tarball_with, Suite, BOOKWORM, DOWNLOADS, FORKY, TRIXIE,
};

/// Cgroup directory names start with this, then `.<owner pid>.<name>`.
const CGROUP_PREFIX: &str = "sentinel-vip-ct";
const HIERARCHIES: [&str; 2] = ["/sys/fs/cgroup/systemd", "/sys/fs/cgroup/unified"];
/// PATH inside the container (`nsenter` keeps the caller's environment
/// otherwise).
const PATH: &str = "/usr/sbin:/usr/bin:/sbin:/bin";

/// A running container. Dropping it (also while unwinding) powers it off,
/// kills whatever is left in its cgroups, removes them and its root file
/// system.
pub struct Container {
    pub name: String,
    /// The container's root directory, as the host sees it.
    root: PathBuf,
    /// Directory holding `root` and the console log; removed on drop.
    dir: PathBuf,
    cgroups: Vec<PathBuf>,
    nspawn: Option<Child>,
    pid1: u32,
    console: PathBuf,
}

impl Container {
    /// Extracts `tarball` into `dir/root` and boots it with the network
    /// namespace `netns` (a name under /run/netns). Returns once the
    /// container's systemd reports the system running; panics with the
    /// reason (and the console's last lines) when it cannot.
    pub fn boot(tarball: &Path, dir: &Path, netns: &str, name: &str) -> Container {
        check_tools(&["systemd-nspawn", "nsenter", "tar", "timeout", "kill"]);
        let ns_path = PathBuf::from("/run/netns").join(netns);
        assert!(
            ns_path.exists(),
            "container: network namespace {} does not exist",
            ns_path.display()
        );
        for h in HIERARCHIES {
            assert!(
                Path::new(h).join("cgroup.procs").exists(),
                "container: cannot boot: cgroup hierarchy {h} is not mounted"
            );
        }
        reap_stale();
        let t = Instant::now();
        let cg_name = format!("{CGROUP_PREFIX}.{}.{name}", std::process::id());
        let mut ct = Container {
            name: name.to_string(),
            root: dir.join("root"),
            dir: dir.to_path_buf(),
            cgroups: HIERARCHIES
                .iter()
                .map(|h| Path::new(h).join(&cg_name))
                .collect(),
            nspawn: None,
            pid1: 0,
            console: dir.join("console.log"),
        };
        fs::create_dir_all(&ct.root)
            .unwrap_or_else(|e| panic!("container: cannot create {}: {e}", ct.root.display()));
        let o = run(Command::new("tar")
            .arg("-C")
            .arg(&ct.root)
            .args(["--numeric-owner", "--xattrs", "-xpf"])
            .arg(tarball));
        assert!(
            o.status.success(),
            "container: cannot extract {}: {}",
            tarball.display(),
            String::from_utf8_lossy(&o.stderr).trim()
        );
        let extracted = t.elapsed();
        for cg in &ct.cgroups {
            fs::create_dir(cg).unwrap_or_else(|e| {
                panic!("container: cannot create cgroup {}: {e}", cg.display())
            });
        }
        let log = fs::File::create(&ct.console).expect("container: create console log");
        let log2 = log.try_clone().expect("container: dup console log");
        // The shell joins the cgroups, then becomes nspawn, so that nspawn
        // and everything it starts live there from the first instruction.
        let enter = ct
            .cgroups
            .iter()
            .map(|cg| format!("echo $$ > '{}/cgroup.procs'", cg.display()))
            .collect::<Vec<_>>()
            .join(" && ");
        let child = Command::new("sh")
            .arg("-c")
            .arg(format!("{enter} && exec \"$@\""))
            .arg("sh")
            .arg("systemd-nspawn")
            .args([
                "--boot",
                "--register=no",
                "--keep-unit",
                "--console=passive",
            ])
            .args(["--link-journal=no", "--resolv-conf=off", "--timezone=off"])
            .arg(format!("--machine={name}"))
            .arg(format!("--network-namespace-path={}", ns_path.display()))
            // nspawn keeps CAP_NET_ADMIN only for --private-network, which
            // cannot be combined with a given namespace; that namespace is
            // the container's own, so network administration stays in it.
            .arg("--capability=CAP_NET_ADMIN")
            .arg("-D")
            .arg(&ct.root)
            .env("SYSTEMD_NSPAWN_UNIFIED_HIERARCHY", "1")
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log2)
            .spawn()
            .unwrap_or_else(|e| panic!("container: cannot start systemd-nspawn: {e}"));
        ct.nspawn = Some(child);
        ct.pid1 = ct.wait_pid1(Duration::from_secs(20));
        // systemd opens its private socket a moment after it starts.
        let deadline = Instant::now() + Duration::from_secs(60);
        let o = loop {
            let o = ct.exec_timeout(60, &["systemctl", "is-system-running", "--wait"]);
            if !o.stdout.is_empty() || Instant::now() >= deadline {
                break o;
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        let state = String::from_utf8_lossy(&o.stdout).trim().to_string();
        if state.is_empty() {
            panic!(
                "container: cannot boot {name}: cannot ask its systemd for the system state ({}): {}\n{}",
                o.status,
                String::from_utf8_lossy(&o.stderr).trim(),
                ct.console_tail(20)
            );
        }
        if state != "running" {
            let failed = ct.sh("systemctl --failed --no-legend --plain; journalctl -b -p warning --no-pager | tail -n 20");
            panic!(
                "container: cannot boot {name}: system state {state:?}, not running; failed units and warnings:\n{}\n{}",
                String::from_utf8_lossy(&failed.stdout),
                ct.console_tail(20)
            );
        }
        eprintln!(
            "container {name}: extracted in {:.1} s, booted in {:.1} s",
            extracted.as_secs_f64(),
            (t.elapsed() - extracted).as_secs_f64()
        );
        ct
    }

    /// The container's root directory as the host sees it (files written
    /// here appear inside).
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Host path of `path` inside the container.
    pub fn path(&self, path: &str) -> PathBuf {
        self.root.join(path.trim_start_matches('/'))
    }

    /// The container's PID 1 as the host sees it.
    pub fn pid1(&self) -> u32 {
        self.pid1
    }

    /// Runs `args` inside the container (all its namespaces, a clean
    /// environment), with a 60 s limit.
    pub fn exec(&self, args: &[&str]) -> Output {
        self.exec_timeout(60, args)
    }

    /// Like [`Container::exec`] with a limit of `secs` (exit 124 when hit).
    pub fn exec_timeout(&self, secs: u32, args: &[&str]) -> Output {
        let pid = self.pid1.to_string();
        let secs = secs.to_string();
        run(Command::new("timeout")
            .args(["-k", "2", &secs, "nsenter", "-t", &pid, "-a", "env", "-i"])
            .arg(format!("PATH={PATH}"))
            .args([
                "LANG=C.UTF-8",
                "HOME=/root",
                "TERM=dumb",
                "DEBIAN_FRONTEND=noninteractive",
            ])
            .args(args))
    }

    /// Runs a shell script inside the container.
    pub fn sh(&self, script: &str) -> Output {
        self.exec(&["sh", "-c", script])
    }

    /// Runs a shell script inside the container; panics unless it exits 0.
    /// Returns its trimmed stdout.
    pub fn must_sh(&self, script: &str) -> String {
        let o = self.sh(script);
        assert!(
            o.status.success(),
            "container {}: `{script}` failed ({}): {} {}",
            self.name,
            o.status,
            String::from_utf8_lossy(&o.stdout).trim(),
            String::from_utf8_lossy(&o.stderr).trim()
        );
        String::from_utf8_lossy(&o.stdout).trim().to_string()
    }

    /// Last `lines` lines of nspawn's own output (the container's console).
    pub fn console_tail(&self, lines: usize) -> String {
        let text = fs::read_to_string(&self.console).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    /// Waits for the container's PID 1 (its pid in its own namespace is 1)
    /// to have become systemd (exec'd, so its root is the container's); panics
    /// if nspawn exits first.
    fn wait_pid1(&mut self, timeout: Duration) -> u32 {
        let deadline = Instant::now() + timeout;
        loop {
            let is_init = |p: u32| {
                ns_pid_is_1(p)
                    && fs::read_to_string(format!("/proc/{p}/comm"))
                        .is_ok_and(|c| c.trim() == "systemd")
            };
            if let Some(p) = cgroup_pids(&self.cgroups).into_iter().find(|&p| is_init(p)) {
                return p;
            }
            if let Some(c) = self.nspawn.as_mut() {
                if let Ok(Some(st)) = c.try_wait() {
                    panic!(
                        "container: cannot boot {}: systemd-nspawn exited ({st}) before PID 1 ran:\n{}",
                        self.name,
                        self.console_tail(30)
                    );
                }
            }
            assert!(
                Instant::now() < deadline,
                "container: cannot boot {}: no PID 1 after {timeout:?}:\n{}",
                self.name,
                self.console_tail(30)
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Container {
    fn drop(&mut self) {
        // nspawn answers SIGTERM by asking the container's systemd to halt:
        // units stop in order (about a second here).
        if let Some(mut c) = self.nspawn.take() {
            let _ = Command::new("kill")
                .args(["-TERM", &c.id().to_string()])
                .status();
            let deadline = Instant::now() + Duration::from_secs(15);
            while Instant::now() < deadline && matches!(c.try_wait(), Ok(None)) {
                std::thread::sleep(Duration::from_millis(50));
            }
            if matches!(c.try_wait(), Ok(None)) {
                eprintln!(
                    "container {}: did not halt within 15 s; killing it",
                    self.name
                );
                let _ = c.kill();
            }
            let _ = c.wait();
        }
        remove_cgroups(&self.cgroups);
        unmount_under(&self.dir);
        if self.dir.exists() {
            let o = run(Command::new("rm")
                .arg("-rf")
                .arg("--one-file-system")
                .arg(&self.dir));
            if !o.status.success() {
                eprintln!(
                    "container {}: cannot remove {}: {}",
                    self.name,
                    self.dir.display(),
                    String::from_utf8_lossy(&o.stderr).trim()
                );
            }
        }
    }
}

// ----- helpers ---------------------------------------------------------------

fn check_tools(tools: &[&str]) {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let missing: Vec<&str> = tools
        .iter()
        .copied()
        .filter(|t| !std::env::split_paths(&path).any(|d| d.join(t).is_file()))
        .collect();
    assert!(
        missing.is_empty(),
        "container: cannot boot a container, missing {missing:?} in PATH \
         (apt-get install systemd-container debootstrap; scripts/deps.sh does)"
    );
}

fn run(c: &mut Command) -> Output {
    c.stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("container: cannot run {c:?}: {e}"))
}

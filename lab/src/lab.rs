//! The [`Lab`] itself: building it, naming its parts, writing each node's
//! configs, its logs, and tearing it all down. What runs in it, what is
//! asked of it and what is done to it live in the sibling modules, each
//! adding methods to `Lab`.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::command::{find_in_path, write_file};
use crate::process::{Slot, NOBODY};
use crate::topology::{lab_dir, reap_stale_labs, unique_prefix, Namespace, OWNER_FILE};
use crate::{check_node, node_ip, LabOptions, Programs, MASTER_NAME, NODES, REDIS_PORT};
use crate::{SENTINEL_PORT, VIP4_CIDR};

/// Sentinel's `failover-timeout`: also how long it waits before trying a
/// failover again after one failed.
const FAILOVER_TIMEOUT: Duration = Duration::from_secs(10);

/// A running lab. Dropping it (also while unwinding from a panic) kills every
/// process in it and deletes its namespaces and, unless `LAB_KEEP` is set, its
/// temp dir.
pub struct Lab {
    /// Unique prefix of every namespace name of this run.
    pub prefix: String,
    /// The per-run temp dir; node `n`'s files are in `dir/n{n}`.
    pub(crate) dir: PathBuf,
    /// The lab's copy of the binary under test (see `write_files`).
    bin: PathBuf,
    pub(crate) opts: LabOptions,
    /// Namespaces created so far, in creation order.
    pub(crate) namespaces: Vec<Namespace>,
    /// Node n's processes at index n-1.
    pub(crate) nodes: Vec<Node>,
    /// The routed lab's BGP daemons (none on the bridge).
    pub(crate) routing: crate::routed::Routing,
}

/// The processes the lab runs on one Redis host. Each node's redis-server
/// and Sentinel are started only by `Lab::start_redis` and
/// `Lab::start_sentinel`.
#[derive(Default)]
pub(crate) struct Node {
    pub(crate) redis: Slot,
    pub(crate) sentinel: Slot,
    pub(crate) watcher: Slot,
    /// Watchers started so far, to give each its own output file.
    pub(crate) watcher_starts: usize,
}

impl Lab {
    /// Builds the lab and starts Redis (replication already established) and
    /// the Sentinels. Call [`Lab::wait_ready`] before relying on Sentinel.
    /// Panics with a clear message on failure, after cleaning up.
    pub fn new(bin: &Path, opts: LabOptions) -> Lab {
        check_preconditions(bin, &opts.programs);
        if let Some(r) = opts.routed {
            crate::routed::check_tools(r);
        }
        reap_stale_labs();
        let prefix = unique_prefix();
        // The struct exists before anything is created, so a panic part-way
        // through setup unwinds through Drop and removes what was made.
        let mut lab = Lab {
            dir: lab_dir(&prefix),
            prefix,
            bin: bin.to_path_buf(),
            opts,
            namespaces: Vec::new(),
            nodes: NODES.iter().map(|_| Node::default()).collect(),
            routing: Default::default(),
        };
        // The dir, with the owner's pid, exists before any namespace so that
        // another run never mistakes a lab being built for an abandoned one.
        fs::create_dir_all(&lab.dir)
            .unwrap_or_else(|e| panic!("lab: cannot create {}: {e}", lab.dir.display()));
        write_file(&lab.dir.join(OWNER_FILE), &std::process::id().to_string());
        if lab.opts.routed.is_some() {
            lab.build_routed_network();
        } else {
            lab.build_network();
        }
        lab.write_files();
        if lab.opts.routed.is_some() {
            lab.start_routing();
        }
        for n in lab.own_nodes() {
            lab.start_redis(n);
        }
        if lab.opts.external_node.is_none() {
            lab.finish_start();
        }
        lab
    }

    /// Waits for replication, then starts the lab's Sentinels. `Lab::new`
    /// does this itself unless a node is external
    /// ([`LabOptions::external_node`]).
    pub fn finish_start(&mut self) {
        self.wait_replication();
        for n in self.own_nodes() {
            self.start_sentinel(n);
        }
    }

    /// Nodes whose Redis and Sentinel the lab runs.
    pub(crate) fn own_nodes(&self) -> Vec<usize> {
        NODES
            .into_iter()
            .filter(|&n| self.opts.external_node != Some(n))
            .collect()
    }

    /// Panics for the external node: the lab neither starts nor restarts
    /// what runs there.
    pub(crate) fn check_own(&self, n: usize) {
        assert!(
            self.opts.external_node != Some(n),
            "lab: n{n}'s Redis and Sentinel run outside the lab"
        );
    }

    // ----- names and paths -------------------------------------------------

    /// Namespace of node `n`.
    pub fn ns(&self, n: usize) -> String {
        check_node(n);
        format!("{}n{n}", self.prefix)
    }

    pub(crate) fn ns_client(&self) -> String {
        format!("{}cl", self.prefix)
    }

    pub(crate) fn ns_bridge(&self) -> String {
        format!("{}br", self.prefix)
    }

    /// Directory of node `n`'s files.
    pub fn node_dir(&self, n: usize) -> PathBuf {
        check_node(n);
        self.dir.join(format!("n{n}"))
    }

    /// Node `n`'s sentinel-vip config file.
    pub fn config_path(&self, n: usize) -> PathBuf {
        self.node_dir(n).join("sentinel-vip.toml")
    }

    /// Node `n`'s sentinel-vip log file (written by the product).
    pub fn sv_log_path(&self, n: usize) -> PathBuf {
        self.node_dir(n).join("sentinel-vip.log")
    }

    /// Node `n`'s control socket (the watcher listens, hooks connect).
    pub fn control_socket(&self, n: usize) -> PathBuf {
        self.node_dir(n).join("run").join("control.sock")
    }

    /// Node `n`'s sentinel-vip lock file: in the node's runtime directory,
    /// as the packaged default is in the watcher's.
    pub fn lock_path(&self, n: usize) -> PathBuf {
        self.node_dir(n).join("run").join("lock")
    }

    /// The IPv4 VIP of this lab: [`VIP4`](crate::VIP4) on the bridge's
    /// `eth0`, or the routed lab's /32 on `lo`.
    pub fn vip4(&self) -> &'static str {
        match self.opts.routed {
            Some(_) => crate::routed::VIP,
            None => crate::VIP4,
        }
    }

    /// The lab's private copy of the sentinel-vip binary.
    pub fn bin(&self) -> &Path {
        &self.bin
    }

    /// `-a <password>` for a client of the data nodes, if they have one.
    pub fn data_auth(&self) -> Vec<&str> {
        match &self.opts.data_password {
            Some(pw) => vec!["--no-auth-warning", "-a", pw.as_str()],
            None => Vec::new(),
        }
    }

    pub fn programs(&self) -> Programs {
        self.opts.programs
    }

    // ----- files -----------------------------------------------------------

    fn write_files(&mut self) {
        // Run a private copy: cargo replaces the binary in target/ whenever
        // anyone rebuilds, and a run (or Sentinel's script path) must not
        // break half-way because of that.
        let bin_dir = self.dir.join("bin");
        fs::create_dir_all(&bin_dir)
            .unwrap_or_else(|e| panic!("lab: cannot create {}: {e}", bin_dir.display()));
        let copy = bin_dir.join("sentinel-vip");
        fs::copy(&self.bin, &copy).unwrap_or_else(|e| {
            panic!(
                "lab: cannot copy {} to {}: {e}",
                self.bin.display(),
                copy.display()
            )
        });
        self.bin = copy;
        for n in NODES {
            let d = self.node_dir(n);
            fs::create_dir_all(d.join("redis"))
                .unwrap_or_else(|e| panic!("lab: cannot create {}: {e}", d.display()));
            // As the unit's RuntimeDirectory=: the watcher's user's
            // (`nobody` here), 0755.
            let run = d.join("run");
            fs::create_dir_all(&run)
                .and_then(|_| fs::set_permissions(&run, fs::Permissions::from_mode(0o755)))
                .and_then(|_| std::os::unix::fs::chown(&run, Some(NOBODY), Some(NOBODY)))
                .unwrap_or_else(|e| panic!("lab: cannot create {}: {e}", run.display()));
            write_file(
                &self.config_path(n),
                &self.sv_config(n, &self.opts.toml_top),
            );
            write_file(&d.join("sentinel.conf"), &self.sentinel_conf(n));
        }
    }

    /// Node `n`'s sentinel-vip config with `toml_top` at the top level.
    fn sv_config(&self, n: usize, toml_top: &str) -> String {
        // The routed VIP's mode is the default for `lo`.
        let (vip, ifname) = match self.opts.routed {
            Some(_) => (crate::routed::VIP_CIDR, "lo"),
            None => (VIP4_CIDR, "eth0"),
        };
        let sentinels = NODES
            .iter()
            .map(|&m| format!("\"{}:{SENTINEL_PORT}\"", node_ip(m)))
            .collect::<Vec<_>>()
            .join(", ");
        // The control socket and the lock in the lab's own dir (never the
        // host's /run), in a directory the unprivileged watcher owns. Hooks
        // run unprivileged as `nobody`, standing for Sentinel's user; root
        // may always ask.
        format!(
            "sentinels = [{sentinels}]\n\
             log_file = \"{}\"\n\
             lock_file = \"{}\"\n\
             control_socket = \"{}\"\n\
             control_socket_users = [\"nobody\"]\n\
             {toml_top}\n\
             [[vip]]\n\
             master = \"{MASTER_NAME}\"\n\
             address = \"{vip}\"\n\
             interface = \"{ifname}\"\n\
             {}\n",
            self.sv_log_path(n).display(),
            self.lock_path(n).display(),
            self.control_socket(n).display(),
            self.opts.toml_tail,
        )
    }

    fn sentinel_conf(&self, n: usize) -> String {
        let d = self.node_dir(n);
        let o = &self.opts;
        let mut c = format!(
            "port {SENTINEL_PORT}\n\
             bind {ip}\n\
             protected-mode no\n\
             daemonize no\n\
             logfile {log}\n\
             dir {dir}\n\
             sentinel monitor {MASTER_NAME} {m} {REDIS_PORT} 2\n\
             sentinel down-after-milliseconds {MASTER_NAME} {}\n\
             sentinel failover-timeout {MASTER_NAME} {}\n\
             sentinel parallel-syncs {MASTER_NAME} 1\n",
            o.down_after.as_millis(),
            FAILOVER_TIMEOUT.as_millis(),
            ip = node_ip(n),
            log = d.join("sentinel.log").display(),
            dir = d.display(),
            m = node_ip(1),
        );
        if o.routed.is_some() {
            // Sentinel would otherwise name itself to its peers by the
            // source address of its link to the master (the host's link
            // to the router), where it does not listen.
            c.push_str(&format!("sentinel announce-ip {}\n", node_ip(n)));
        }
        if o.reconfig_script {
            c.push_str(&format!(
                "sentinel client-reconfig-script {MASTER_NAME} {}\n",
                self.bin.display()
            ));
        }
        if let Some(pw) = &o.data_password {
            c.push_str(&format!("sentinel auth-pass {MASTER_NAME} {pw}\n"));
        }
        c
    }

    /// Rewrites node `n`'s sentinel-vip config with other top-level TOML
    /// (the lab's own `toml_top` no longer applies to it).
    pub fn rewrite_config(&self, n: usize, toml_top: &str) {
        write_file(&self.config_path(n), &self.sv_config(n, toml_top));
    }

    // ----- logs --------------------------------------------------------------

    /// Lines of node `n`'s sentinel-vip log containing every one of `words`.
    pub fn log_lines(&self, n: usize, words: &[&str]) -> Vec<String> {
        fs::read_to_string(self.sv_log_path(n))
            .unwrap_or_default()
            .lines()
            .filter(|l| words.iter().all(|w| l.contains(w)))
            .map(str::to_string)
            .collect()
    }

    /// How many lines of node `n`'s sentinel-vip log contain every one of
    /// `words`.
    pub fn log_count(&self, n: usize, words: &[&str]) -> usize {
        self.log_lines(n, words).len()
    }

    /// Last `lines` lines of a file in node `n`'s dir.
    pub fn tail(&self, n: usize, file: &str, lines: usize) -> String {
        let text = fs::read_to_string(self.node_dir(n).join(file)).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    /// Prints the tail of every node's logs (done automatically when a lab
    /// is dropped during a panic).
    pub(crate) fn dump_logs(&self) {
        for n in NODES {
            for (file, lines) in [("sentinel-vip.log", 40), ("sentinel.log", 15)] {
                eprintln!("----- lab {} n{n} {file} (tail) -----", self.prefix);
                eprintln!("{}", self.tail(n, file, lines));
            }
        }
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.dump_logs();
        }
        for node in &mut self.nodes {
            node.watcher.kill();
            node.sentinel.kill();
            node.redis.kill();
        }
        // Dropping a namespace kills anything else left in it (captures,
        // reconfig scripts Sentinel ran, grandchildren of a spawned
        // process); node namespaces go before the bridge's.
        while let Some(ns) = self.namespaces.pop() {
            drop(ns);
        }
        if std::env::var_os("LAB_KEEP").is_some() {
            eprintln!("lab: LAB_KEEP set, kept {}", self.dir.display());
        } else if self.dir.exists() {
            let _ = fs::remove_dir_all(&self.dir);
        }
    }
}

/// Root, the tools the lab runs, and the binary under test; panics naming
/// everything missing.
fn check_preconditions(bin: &Path, programs: &Programs) {
    let mut missing = Vec::new();
    let root = fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(2).map(|u| u == "0"))
        })
        .unwrap_or(false);
    if !root {
        missing.push("root privileges (network namespaces need them)".to_string());
    }
    let tools = [programs.server, programs.sentinel, programs.cli];
    for tool in tools
        .into_iter()
        .chain(["ip", "tcpdump", "timeout", "sysctl", "kill", "setpriv"])
    {
        // The lab's programs may be absolute paths (Valkey's are).
        let found = if tool.contains('/') {
            Path::new(tool).is_file()
        } else {
            find_in_path(tool).is_some()
        };
        if !found {
            missing.push(format!("`{tool}` in PATH"));
        }
    }
    if !bin.is_file() {
        missing.push(format!("the sentinel-vip binary at {}", bin.display()));
    }
    assert!(
        missing.is_empty(),
        "lab: cannot build the e2e lab, missing: {} (set SENTINEL_VIP_SKIP_E2E=1 to skip e2e tests)",
        missing.join(", ")
    );
}

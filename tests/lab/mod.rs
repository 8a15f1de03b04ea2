//! A throwaway network lab for end-to-end tests of sentinel-vip.
//!
//! Five network namespaces joined by a bridge: three Redis hosts (`n1`..`n3`),
//! each running a real `redis-server` and `redis-sentinel`, a client (`cl`) and
//! the namespace holding the bridge (`br`). The bridge lives in its own
//! namespace so that the root namespace's interfaces are never touched, and no
//! namespace has a default route, so no lab traffic can leave the machine.
//!
//! This file is a plain module: integration tests include it with `mod lab;`
//! and other targets with `#[path = "../tests/lab/mod.rs"] mod lab;`. It must
//! therefore use only std (plus `serde_json`, a normal dependency of the crate)
//! and nothing test-only.
//!
//! Nodes are numbered 1..=3 everywhere so that messages match the namespace
//! names (`n1` is node 1, the initial master).
#![allow(dead_code)]

use std::fs;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::Value;

pub mod check;
pub mod container;
pub mod monitor;
pub mod timeline;

/// Name Sentinel monitors the master under.
pub const MASTER_NAME: &str = "mymaster";
/// The IPv4 VIP (TEST-NET-1, RFC 5737) and its prefix length.
pub const VIP4: &str = "192.0.2.100";
pub const VIP4_CIDR: &str = "192.0.2.100/24";
/// The IPv6 VIP (benchmarking range, RFC 5180) and its prefix length.
pub const VIP6: &str = "2001:2::100";
pub const VIP6_CIDR: &str = "2001:2::100/64";
pub const CLIENT_IP: &str = "192.0.2.50";
pub const CLIENT_IP6: &str = "2001:2::50";
pub const REDIS_PORT: u16 = 6379;
pub const SENTINEL_PORT: u16 = 26379;
/// Node numbers, 1-based.
pub const NODES: [usize; 3] = [1, 2, 3];

/// IPv4 address of node `n` (1..=3).
pub fn node_ip(n: usize) -> String {
    check_node(n);
    format!("192.0.2.1{n}")
}

/// IPv6 address of node `n` (1..=3).
pub fn node_ip6(n: usize) -> String {
    check_node(n);
    format!("2001:2::1{n}")
}

/// The seven `client-reconfig-script` arguments Sentinel passes for a
/// failover of [`MASTER_NAME`] from node `from` to node `to`.
pub fn hook_args(role: &str, from: usize, to: usize) -> Vec<String> {
    let port = REDIS_PORT.to_string();
    [
        MASTER_NAME,
        role,
        "start",
        &node_ip(from),
        &port,
        &node_ip(to),
        &port,
    ]
    .map(str::to_string)
    .to_vec()
}

/// `hook` and [`hook_args`]: the call as an operator or a test spells it.
pub fn hook_cmd(role: &str, from: usize, to: usize) -> Vec<String> {
    let mut a = vec!["hook".to_string()];
    a.extend(hook_args(role, from, to));
    a
}

/// Node number whose IPv4 address is `ip`, if any.
pub fn node_of_ip(ip: &str) -> Option<usize> {
    NODES.into_iter().find(|&n| node_ip(n) == ip)
}

fn check_node(n: usize) {
    assert!(NODES.contains(&n), "lab: node {n} does not exist (1..=3)");
}

/// Whether end-to-end tests should run. They are only skipped on explicit
/// request, never silently because something is missing.
pub fn e2e_enabled() -> bool {
    let skip = std::env::var("SENTINEL_VIP_SKIP_E2E").is_ok_and(|v| v == "1");
    if skip {
        eprintln!("e2e test skipped: SENTINEL_VIP_SKIP_E2E=1 is set");
    }
    !skip
}

/// Polls `f` every `poll` until it returns true or `timeout` has passed.
/// Returns whether it became true (it is evaluated once more at the deadline).
pub fn wait_until(timeout: Duration, poll: Duration, mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if f() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(poll);
    }
}

/// Seconds since the epoch (CLOCK_REALTIME), comparable to [`Frame::ts`].
pub fn now_epoch() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock before 1970")
        .as_secs_f64()
}

/// Knobs for tests that need a lab different from the default one.
#[derive(Clone, Debug)]
pub struct LabOptions {
    /// Register the sentinel-vip binary as Sentinel's `client-reconfig-script`.
    pub reconfig_script: bool,
    /// Sentinel's `down-after-milliseconds` for the master.
    pub down_after_ms: u64,
    /// Sentinel's `failover-timeout` for the master.
    pub failover_timeout_ms: u64,
    /// TOML inserted before the `[[vip]]` table (so top-level keys land at
    /// the top level rather than inside the table).
    pub toml_top: String,
    /// TOML appended after the `[[vip]]` table (keys for that table, or
    /// further tables).
    pub toml_tail: String,
    /// A node whose Redis and Sentinel run elsewhere, e.g. in a container
    /// joined to its namespace (`container.rs`): the lab builds its network
    /// but starts neither, and `Lab::new` returns before waiting for
    /// replication; start them, then call [`Lab::finish_start`].
    pub external_node: Option<usize>,
}

impl Default for LabOptions {
    fn default() -> Self {
        LabOptions {
            reconfig_script: true,
            down_after_ms: 1000,
            failover_timeout_ms: 10000,
            toml_top: String::new(),
            toml_tail: String::new(),
            external_node: None,
        }
    }
}

/// A running lab. Dropping it (also while unwinding from a panic) kills every
/// process in it and deletes its namespaces and, unless `LAB_KEEP` is set, its
/// temp dir.
pub struct Lab {
    /// Unique prefix of every namespace name of this run.
    pub prefix: String,
    /// The per-run temp dir; node `n`'s files are in `dir/n{n}`.
    pub dir: PathBuf,
    /// The lab's copy of the binary under test (see `write_files`).
    bin: PathBuf,
    opts: LabOptions,
    /// Namespaces created so far, in creation order.
    namespaces: Vec<String>,
    /// redis-server per node (index n-1); `None` while killed.
    redis: Vec<Option<Child>>,
    sentinels: Vec<Option<Child>>,
    /// Anything else started through [`Lab::spawn_sv`].
    spawned: Vec<Option<Child>>,
}

/// Handle to a process started with [`Lab::spawn_sv`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SpawnId(usize);

/// How [`Lab::spawn_watcher`] runs the watcher.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RunAs {
    Root,
    TwoCaps,
    NoCaps,
}

impl Lab {
    /// Builds the lab and starts Redis (replication already established) and
    /// the Sentinels. Call [`Lab::wait_ready`] before relying on Sentinel.
    /// Panics with a clear message on failure, after cleaning up.
    pub fn new(bin: &Path, opts: LabOptions) -> Lab {
        check_preconditions(bin);
        reap_stale_labs();
        let prefix = unique_prefix();
        let dir = std::env::temp_dir().join(format!("sentinel-vip-lab-{prefix}"));
        // The struct exists before anything is created, so a panic part-way
        // through setup unwinds through Drop and removes what was made.
        let mut lab = Lab {
            prefix,
            dir,
            bin: bin.to_path_buf(),
            opts,
            namespaces: Vec::new(),
            redis: vec![None, None, None],
            sentinels: vec![None, None, None],
            spawned: Vec::new(),
        };
        // The dir, with the owner's pid, exists before any namespace so that
        // another run never mistakes a lab being built for an abandoned one.
        fs::create_dir_all(&lab.dir)
            .unwrap_or_else(|e| panic!("lab: cannot create {}: {e}", lab.dir.display()));
        write_file(&lab.dir.join(OWNER_FILE), &std::process::id().to_string());
        lab.setup_network();
        lab.write_files();
        for n in lab.own_nodes() {
            lab.start_redis(n);
        }
        if lab.opts.external_node.is_none() {
            lab.finish_start();
        }
        lab
    }

    /// Waits for replication, then starts the lab's Sentinels. `Lab::new`
    /// does this itself unless a node is external (see
    /// [`LabOptions::external_node`]).
    pub fn finish_start(&mut self) {
        self.wait_replication();
        for n in self.own_nodes() {
            self.start_sentinel(n);
        }
    }

    /// Nodes whose Redis and Sentinel the lab runs.
    fn own_nodes(&self) -> Vec<usize> {
        NODES
            .into_iter()
            .filter(|&n| self.opts.external_node != Some(n))
            .collect()
    }

    // ----- names and paths -------------------------------------------------

    /// Namespace of node `n`.
    pub fn ns(&self, n: usize) -> String {
        check_node(n);
        format!("{}n{n}", self.prefix)
    }

    pub fn ns_client(&self) -> String {
        format!("{}cl", self.prefix)
    }

    pub fn ns_bridge(&self) -> String {
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

    /// The lab's private copy of the sentinel-vip binary.
    pub fn bin(&self) -> &Path {
        &self.bin
    }

    // ----- setup -----------------------------------------------------------

    fn setup_network(&mut self) {
        let br = self.ns_bridge();
        self.add_ns(&br);
        // The bridge namespace needs no IPv6; disabling it keeps its router
        // solicitations and MLD reports out of the captures.
        sysctl(&br, "net.ipv6.conf.all.disable_ipv6=1");
        sysctl(&br, "net.ipv6.conf.default.disable_ipv6=1");
        // Multicast snooping could drop neighbour solicitations to groups the
        // bridge has not seen joined; flooding is what a dumb switch does.
        must(ip(&[
            "-n",
            &br,
            "link",
            "add",
            "br0",
            "type",
            "bridge",
            "mcast_snooping",
            "0",
        ]));
        must(ip(&["-n", &br, "link", "set", "br0", "up"]));

        let mut hosts: Vec<(String, String, String, String)> = NODES
            .iter()
            .map(|&n| {
                (
                    self.ns(n),
                    format!("vn{n}"),
                    format!("{}/24", node_ip(n)),
                    format!("{}/64", node_ip6(n)),
                )
            })
            .collect();
        hosts.push((
            self.ns_client(),
            "vcl".into(),
            format!("{CLIENT_IP}/24"),
            format!("{CLIENT_IP6}/64"),
        ));
        for (ns, port, v4, v6) in hosts {
            self.add_ns(&ns);
            // Created from inside the bridge namespace so the root namespace
            // never sees either end.
            must(ip(&[
                "-n", &br, "link", "add", &port, "type", "veth", "peer", "name", "eth0", "netns",
                &ns,
            ]));
            must(ip(&[
                "-n", &br, "link", "set", &port, "master", "br0", "up",
            ]));
            must(ip(&["-n", &ns, "link", "set", "lo", "up"]));
            // Without DAD, IPv6 addresses are usable at once, and a moved VIP
            // is not refused as a duplicate.
            for key in ["all", "default", "eth0"] {
                sysctl(&ns, &format!("net.ipv6.conf.{key}.accept_dad=0"));
            }
            // Redis listens on the VIP on every node (see start_redis); the
            // bind must succeed while the node does not hold the VIP.
            sysctl(&ns, "net.ipv4.ip_nonlocal_bind=1");
            must(ip(&["-n", &ns, "addr", "add", &v4, "dev", "eth0"]));
            must(ip(&["-n", &ns, "addr", "add", &v6, "dev", "eth0", "nodad"]));
            must(ip(&["-n", &ns, "link", "set", "eth0", "up"]));
        }
    }

    fn add_ns(&mut self, name: &str) {
        assert!(name.len() <= 15, "lab: namespace name {name} too long");
        must(ip(&["netns", "add", name]));
        self.namespaces.push(name.to_string());
    }

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
            let run = d.join("run");
            fs::create_dir_all(&run)
                .and_then(|_| fs::set_permissions(&run, fs::Permissions::from_mode(0o1777)))
                .unwrap_or_else(|e| panic!("lab: cannot create {}: {e}", run.display()));
            write_file(&self.config_path(n), &self.sv_config(n));
            write_file(&d.join("sentinel.conf"), &self.sentinel_conf(n));
        }
    }

    fn sv_config(&self, n: usize) -> String {
        let d = self.node_dir(n);
        let sentinels = NODES
            .iter()
            .map(|&m| format!("\"{}:{SENTINEL_PORT}\"", node_ip(m)))
            .collect::<Vec<_>>()
            .join(", ");
        // The control socket in the lab's own dir (never the host's /run),
        // in a directory the unprivileged watcher may create it in; group
        // nogroup is the one `nobody` has, and root may use any.
        format!(
            "sentinels = [{sentinels}]\n\
             log_file = \"{}\"\n\
             lock_file = \"{}\"\n\
             control_socket = \"{}\"\n\
             control_socket_group = \"nogroup\"\n\
             {}\n\
             [[vip]]\n\
             master = \"{MASTER_NAME}\"\n\
             address = \"{VIP4_CIDR}\"\n\
             interface = \"eth0\"\n\
             {}\n",
            self.sv_log_path(n).display(),
            d.join("sentinel-vip.lock").display(),
            self.control_socket(n).display(),
            self.opts.toml_top,
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
            o.down_after_ms,
            o.failover_timeout_ms,
            ip = node_ip(n),
            log = d.join("sentinel.log").display(),
            dir = d.display(),
            m = node_ip(1),
        );
        if o.reconfig_script {
            c.push_str(&format!(
                "sentinel client-reconfig-script {MASTER_NAME} {}\n",
                self.bin.display()
            ));
        }
        c
    }

    fn start_redis(&mut self, n: usize) {
        self.check_own(n);
        let d = self.node_dir(n);
        let rdir = d.join("redis");
        let ip = node_ip(n);
        let mut args: Vec<String> = vec![
            "redis-server".into(),
            "--port".into(),
            REDIS_PORT.to_string(),
            // The VIP too, so clients can reach whichever node holds it
            // (possible before it does thanks to ip_nonlocal_bind). The node
            // address comes first: Redis binds outgoing connections to it.
            "--bind".into(),
            ip.clone(),
            VIP4.into(),
            "--protected-mode".into(),
            "no".into(),
            "--save".into(),
            "".into(),
            "--appendonly".into(),
            "no".into(),
            // The default 5 s delay before a diskless full sync would only
            // slow the lab down, at start and after each failover.
            "--repl-diskless-sync-delay".into(),
            "0".into(),
            "--dir".into(),
            rdir.display().to_string(),
            "--daemonize".into(),
            "no".into(),
            "--logfile".into(),
            d.join("redis.log").display().to_string(),
        ];
        if n != 1 {
            args.extend(["--replicaof".into(), node_ip(1), REDIS_PORT.to_string()]);
        }
        let child = self.spawn_in(&self.ns(n), &args, &[], &d.join("redis.out"));
        self.redis[n - 1] = Some(child);
        let ok = wait_until(Duration::from_secs(10), Duration::from_millis(50), || {
            self.redis_cli(n, &["PING"]).0 == "PONG"
        });
        assert!(
            ok,
            "lab: redis-server on n{n} did not answer PING within 10 s"
        );
    }

    /// Waits until the master has both replicas online, so that the
    /// Sentinels' first INFO already lists them (otherwise they would only
    /// learn of them at the next 10 s INFO refresh).
    fn wait_replication(&self) {
        let ok = wait_until(Duration::from_secs(20), Duration::from_millis(100), || {
            let (out, _) = self.redis_cli(1, &["INFO", "replication"]);
            out.lines()
                .filter(|l| l.starts_with("slave") && l.contains("state=online"))
                .count()
                == 2
        });
        assert!(ok, "lab: replicas did not sync with n1 within 20 s");
    }

    fn start_sentinel(&mut self, n: usize) {
        self.check_own(n);
        let d = self.node_dir(n);
        let args = vec![
            "redis-sentinel".to_string(),
            d.join("sentinel.conf").display().to_string(),
        ];
        // Sentinel hands its environment to the reconfig script; this is how
        // the hook finds its config.
        let cfg = self.config_path(n).display().to_string();
        let env = [("SENTINEL_VIP_CONFIG", cfg.as_str())];
        let child = self.spawn_in(&self.ns(n), &args, &env, &d.join("sentinel.out"));
        self.sentinels[n - 1] = Some(child);
    }

    /// Starts `args` in namespace `ns` with output to `out`. `ip netns exec`
    /// execs the command, so the child's pid is the command's own.
    fn spawn_in(&self, ns: &str, args: &[String], env: &[(&str, &str)], out: &Path) -> Child {
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
        for (k, v) in env {
            c.env(k, v);
        }
        c.spawn()
            .unwrap_or_else(|e| panic!("lab: cannot start {args:?} in {ns}: {e}"))
    }

    /// Waits (up to 60 s) until every Sentinel agrees on the master, sees two
    /// healthy replicas and knows the two other Sentinels.
    pub fn wait_ready(&self) {
        let start = Instant::now();
        let mut last = String::new();
        let ok = wait_until(
            Duration::from_secs(60),
            Duration::from_millis(200),
            || match self.sentinel_state() {
                Ok(()) => true,
                Err(e) => {
                    last = e;
                    false
                }
            },
        );
        assert!(
            ok,
            "lab: Sentinels not ready after 60 s; last observation: {last}"
        );
        eprintln!(
            "lab {}: Sentinels ready after {:.1} s",
            self.prefix,
            start.elapsed().as_secs_f64()
        );
    }

    fn sentinel_state(&self) -> Result<(), String> {
        let mut masters = Vec::new();
        for n in NODES {
            let master = self.sentinel_master(n)?;
            // Healthy: connected, replicating, and from the master Sentinel
            // names (a restarted node first points at a stale master).
            let replicas = self.sentinel_json(n, &["SENTINEL", "replicas", MASTER_NAME])?;
            let healthy = entries(&replicas)
                .iter()
                .filter(|r| {
                    field(r, "flags") == "slave"
                        && field(r, "master-link-status") == "ok"
                        && field(r, "master-host") == master
                })
                .count();
            if healthy != 2 {
                return Err(format!(
                    "sentinel n{n} sees {healthy} healthy replicas of {master}"
                ));
            }
            let peers = self.sentinel_json(n, &["SENTINEL", "sentinels", MASTER_NAME])?;
            let known = entries(&peers)
                .iter()
                .filter(|p| field(p, "flags") == "sentinel")
                .count();
            if known != 2 {
                return Err(format!("sentinel n{n} knows {known} other sentinels"));
            }
            masters.push(master);
        }
        if masters.iter().any(|m| *m != masters[0]) {
            return Err(format!("sentinels disagree on the master: {masters:?}"));
        }
        Ok(())
    }

    // ----- running things --------------------------------------------------

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

    /// Runs the sentinel-vip binary in node `n`'s namespace with that node's
    /// config in `SENTINEL_VIP_CONFIG`. A 30 s timeout keeps a hung binary
    /// from hanging the test (exit code 124 then).
    pub fn sv<S: AsRef<std::ffi::OsStr>>(&self, n: usize, args: &[S]) -> Output {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.ns(n), "timeout", "-k", "2", "30"])
            .arg(&self.bin)
            .args(args)
            .env("SENTINEL_VIP_CONFIG", self.config_path(n))
            .stdin(Stdio::null());
        c.output()
            .unwrap_or_else(|e| panic!("lab: cannot run sentinel-vip on n{n}: {e}"))
    }

    /// Starts the sentinel-vip binary in the background in node `n`'s
    /// namespace (e.g. a daemon mode); output goes to `dir/n{n}/spawn-K.out`.
    /// The process is killed with the lab unless stopped earlier.
    pub fn spawn_sv(&mut self, n: usize, args: &[&str]) -> SpawnId {
        let id = self.spawned.len();
        let out = self.node_dir(n).join(format!("spawn-{id}.out"));
        let mut full = vec![self.bin.display().to_string()];
        full.extend(args.iter().map(|s| s.to_string()));
        let cfg = self.config_path(n).display().to_string();
        let child = self.spawn_in(
            &self.ns(n),
            &full,
            &[("SENTINEL_VIP_CONFIG", cfg.as_str())],
            &out,
        );
        self.spawned.push(Some(child));
        SpawnId(id)
    }

    /// Starts `sentinel-vip watch` on node `n`. With
    /// [`RunAs::TwoCaps`] it runs as `nobody` holding exactly
    /// CAP_NET_ADMIN and CAP_NET_RAW (as the systemd unit runs it); with
    /// [`RunAs::NoCaps`] as `nobody` with no capability at all.
    pub fn spawn_watcher(&mut self, n: usize, how: RunAs) -> SpawnId {
        let d = self.node_dir(n);
        // The unprivileged watcher must append to its log and open the lock.
        for f in [self.sv_log_path(n), d.join("sentinel-vip.lock")] {
            let _ = fs::OpenOptions::new().create(true).append(true).open(&f);
            let _ = fs::set_permissions(&f, fs::Permissions::from_mode(0o666));
        }
        let caps = match how {
            RunAs::Root => None,
            RunAs::TwoCaps => Some("-all,+net_admin,+net_raw"),
            RunAs::NoCaps => Some("-all"),
        };
        let mut args: Vec<String> = Vec::new();
        if let Some(c) = caps {
            args.extend(
                [
                    "setpriv".to_string(),
                    "--reuid=65534".into(),
                    "--regid=65534".into(),
                    "--clear-groups".into(),
                    format!("--inh-caps={c}"),
                    format!("--bounding-set={c}"),
                    "--no-new-privs".into(),
                ]
                .into_iter()
                .chain((c != "-all").then(|| format!("--ambient-caps={c}"))),
            );
        }
        args.push(self.bin.display().to_string());
        args.push("watch".into());
        let id = self.spawned.len();
        let out = d.join(format!("spawn-{id}.out"));
        let cfg = self.config_path(n).display().to_string();
        let child = self.spawn_in(
            &self.ns(n),
            &args,
            &[("SENTINEL_VIP_CONFIG", cfg.as_str())],
            &out,
        );
        self.spawned.push(Some(child));
        SpawnId(id)
    }

    /// The pid of a spawned process (to signal it directly).
    pub fn spawned_pid(&self, id: SpawnId) -> Option<u32> {
        self.spawned[id.0].as_ref().map(|c| c.id())
    }

    /// Rewrites node `n`'s sentinel-vip config with extra top-level TOML.
    pub fn rewrite_config(&mut self, n: usize, toml_top: &str) {
        let saved = std::mem::replace(&mut self.opts.toml_top, toml_top.to_string());
        write_file(&self.config_path(n), &self.sv_config(n));
        self.opts.toml_top = saved;
    }

    /// Restarts every Sentinel at once (kill, then start again with the
    /// config files Sentinel itself rewrote).
    pub fn restart_sentinels(&mut self) {
        for n in NODES {
            if let Some(mut c) = self.sentinels[n - 1].take() {
                let _ = c.kill();
                let _ = c.wait();
            }
        }
        for n in self.own_nodes() {
            self.start_sentinel(n);
        }
    }

    fn check_own(&self, n: usize) {
        assert!(
            self.opts.external_node != Some(n),
            "lab: n{n}'s Redis and Sentinel run outside the lab"
        );
    }

    /// Kills node `n`'s Sentinel (SIGKILL) and leaves it down.
    pub fn kill_sentinel(&mut self, n: usize) {
        check_node(n);
        if let Some(mut c) = self.sentinels[n - 1].take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Restarts node `n`'s Sentinel alone (kill if running, then start it
    /// again with the config file Sentinel itself rewrote).
    pub fn restart_sentinel(&mut self, n: usize) {
        self.kill_sentinel(n);
        self.start_sentinel(n);
    }

    /// Whether node `n`'s Sentinel child is still running.
    pub fn sentinel_running(&mut self, n: usize) -> bool {
        check_node(n);
        match self.sentinels[n - 1].as_mut() {
            Some(c) => matches!(c.try_wait(), Ok(None)),
            None => false,
        }
    }

    /// The pid of node `n`'s redis-server while the lab has one (to signal
    /// it directly, e.g. SIGSTOP).
    pub fn redis_pid(&self, n: usize) -> Option<u32> {
        check_node(n);
        self.redis[n - 1].as_ref().map(|c| c.id())
    }

    /// Sends `signal` (a name such as "TERM") to a spawned process and waits
    /// up to `timeout` for it to exit; returns its exit status, or `None` if
    /// it had to be killed.
    pub fn stop_spawned(
        &mut self,
        id: SpawnId,
        signal: &str,
        timeout: Duration,
    ) -> Option<std::process::ExitStatus> {
        let mut child = self.spawned[id.0].take()?;
        let _ = Command::new("kill")
            .args([&format!("-{signal}"), &child.id().to_string()])
            .status();
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

    /// Whether a spawned process is still running.
    pub fn spawned_running(&mut self, id: SpawnId) -> bool {
        match self.spawned[id.0].as_mut() {
            Some(c) => matches!(c.try_wait(), Ok(None)),
            None => false,
        }
    }

    /// redis-cli against node `n`'s redis-server, from inside its namespace.
    /// Returns (trimmed stdout, trimmed stderr).
    pub fn redis_cli(&self, n: usize, args: &[&str]) -> (String, String) {
        let ip = node_ip(n);
        let port = REDIS_PORT.to_string();
        let mut full = vec!["timeout", "3", "redis-cli", "-h", &ip, "-p", &port];
        full.extend_from_slice(args);
        out_err(&self.run_node(n, &full))
    }

    /// redis-cli against node `n`'s Sentinel. (stdout, stderr) as above.
    pub fn sentinel_cli(&self, n: usize, args: &[&str]) -> (String, String) {
        let ip = node_ip(n);
        let port = SENTINEL_PORT.to_string();
        let mut full = vec!["timeout", "3", "redis-cli", "-h", &ip, "-p", &port];
        full.extend_from_slice(args);
        out_err(&self.run_node(n, &full))
    }

    /// A Sentinel command's reply as JSON (redis-cli --json).
    pub fn sentinel_json(&self, n: usize, args: &[&str]) -> Result<Value, String> {
        let mut full = vec!["--json"];
        full.extend_from_slice(args);
        let (out, err) = self.sentinel_cli(n, &full);
        serde_json::from_str(&out)
            .map_err(|e| format!("sentinel n{n} {args:?}: unparsable reply {out:?} {err:?}: {e}"))
    }

    /// The master's IP according to node `n`'s Sentinel.
    pub fn sentinel_master(&self, n: usize) -> Result<String, String> {
        let v = self.sentinel_json(n, &["SENTINEL", "get-master-addr-by-name", MASTER_NAME])?;
        v.get(0)
            .and_then(Value::as_str)
            .map(str::to_string)
            .ok_or_else(|| format!("sentinel n{n}: no master address in {v}"))
    }

    /// The master's IP according to the first Sentinel that answers.
    pub fn master(&self) -> String {
        let mut errs = Vec::new();
        for n in NODES {
            match self.sentinel_master(n) {
                Ok(ip) => return ip,
                Err(e) => errs.push(e),
            }
        }
        panic!("lab: no Sentinel named the master: {errs:?}");
    }

    /// The master's node number according to Sentinel.
    pub fn master_node(&self) -> usize {
        let ip = self.master();
        node_of_ip(&ip).unwrap_or_else(|| panic!("lab: Sentinel names unknown master {ip}"))
    }

    /// The master's node number if all three Sentinels answer and agree.
    pub fn sentinels_agree(&self) -> Option<usize> {
        let ips: Vec<String> = NODES
            .iter()
            .map(|&n| self.sentinel_master(n).ok())
            .collect::<Option<_>>()?;
        if ips.iter().all(|ip| *ip == ips[0]) {
            node_of_ip(&ips[0])
        } else {
            None
        }
    }

    /// Forces a failover (`SENTINEL FAILOVER`) through the first Sentinel
    /// that accepts it.
    pub fn sentinel_failover(&self) {
        let mut errs = Vec::new();
        for n in NODES {
            let (out, err) = self.sentinel_cli(n, &["SENTINEL", "FAILOVER", MASTER_NAME]);
            if out == "OK" {
                return;
            }
            errs.push(format!("n{n}: {out} {err}"));
        }
        panic!("lab: SENTINEL FAILOVER refused: {errs:?}");
    }

    /// SIGKILLs node `n`'s redis-server.
    pub fn kill_redis(&mut self, n: usize) {
        check_node(n);
        if let Some(mut c) = self.redis[n - 1].take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts node `n`'s redis-server again with its original arguments (so
    /// n2 and n3 come back as replicas of n1's address, n1 as a master);
    /// Sentinel then reconfigures it as a replica of the current master.
    pub fn restart_redis(&mut self, n: usize) {
        self.kill_redis(n);
        self.start_redis(n);
    }

    /// Whether node `n`'s redis-server child is still running.
    pub fn redis_running(&mut self, n: usize) -> bool {
        check_node(n);
        match self.redis[n - 1].as_mut() {
            Some(c) => matches!(c.try_wait(), Ok(None)),
            None => false,
        }
    }

    // ----- observing the network -------------------------------------------

    /// Every address on node `n`'s eth0 as (address, prefix length), in the
    /// kernel's order.
    pub fn addrs(&self, n: usize) -> Vec<(String, u8)> {
        addrs_of(&self.ns(n))
    }

    pub fn holds(&self, n: usize, addr: &str) -> bool {
        self.addrs(n).iter().any(|(a, _)| a == addr)
    }

    /// Whether node `n` holds `addr` (e.g. [`VIP4`]) on eth0.
    pub fn holds_vip(&self, n: usize, addr: &str) -> bool {
        self.holds(n, addr)
    }

    /// Nodes holding the IPv4 VIP.
    pub fn holders(&self) -> Vec<usize> {
        self.holders_of(VIP4)
    }

    /// Nodes holding `addr`.
    pub fn holders_of(&self, addr: &str) -> Vec<usize> {
        NODES.into_iter().filter(|&n| self.holds(n, addr)).collect()
    }

    /// Every node's address list, for before/after comparisons.
    pub fn all_addrs(&self) -> Vec<Vec<(String, u8)>> {
        NODES.iter().map(|&n| self.addrs(n)).collect()
    }

    /// MAC address of node `n`'s eth0.
    pub fn mac(&self, n: usize) -> String {
        mac_of(&self.ns(n))
    }

    pub fn client_mac(&self) -> String {
        mac_of(&self.ns_client())
    }

    /// The node whose eth0 has `mac`.
    pub fn node_of_mac(&self, mac: &str) -> Option<usize> {
        NODES.into_iter().find(|&n| self.mac(n) == mac)
    }

    /// The client's neighbour entry for `ip` as (lladdr, state); lladdr is
    /// empty for entries without one (INCOMPLETE, FAILED), and several
    /// states are joined with ','.
    pub fn client_neigh(&self, ip_addr: &str) -> Option<(String, String)> {
        let out = must(ip(&[
            "-j",
            "-n",
            &self.ns_client(),
            "neigh",
            "show",
            ip_addr,
        ]));
        let v: Value = serde_json::from_slice(&out.stdout).ok()?;
        let e = v.as_array()?.iter().find(|e| e["dst"] == ip_addr)?;
        let mac = e["lladdr"].as_str().unwrap_or("").to_string();
        let state = match &e["state"] {
            Value::Array(a) => a
                .iter()
                .filter_map(Value::as_str)
                .collect::<Vec<_>>()
                .join(","),
            Value::String(s) => s.clone(),
            _ => String::new(),
        };
        Some((mac, state))
    }

    // ----- the client --------------------------------------------------------

    /// redis-cli from the client namespace to `host`:6379, with a 2 s limit
    /// (redis-cli itself would wait much longer on an unreachable host).
    pub fn client_cli_to(&self, host: &str, args: &[&str]) -> Output {
        let port = REDIS_PORT.to_string();
        let mut full = vec!["timeout", "2", "redis-cli", "-h", host, "-p", &port];
        full.extend_from_slice(args);
        self.run(&self.ns_client(), &full)
    }

    /// redis-cli from the client to the IPv4 VIP.
    pub fn client_cli(&self, args: &[&str]) -> Output {
        self.client_cli_to(VIP4, args)
    }

    /// PING through the VIP (also makes the client resolve the VIP's MAC).
    pub fn client_ping(&self) -> Result<(), String> {
        let (out, err) = out_err(&self.client_cli(&["PING"]));
        if out == "PONG" {
            Ok(())
        } else {
            Err(format!("PING via VIP: {out} {err}"))
        }
    }

    /// `SET key val` through the VIP. Only a master accepts it (replicas
    /// answer READONLY), so success means the VIP leads to a master.
    pub fn client_write(&self, key: &str, val: &str) -> Result<String, String> {
        let o = self.client_cli(&["SET", key, val]);
        let (out, err) = out_err(&o);
        // redis-cli exits 0 on error replies, so the text decides.
        if out == "OK" {
            Ok(out)
        } else {
            Err(format!(
                "SET via VIP: status {:?}, stdout {out:?}, stderr {err:?}",
                o.status.code()
            ))
        }
    }

    /// Which node answers on the VIP: `CONFIG GET bind` returns the node's
    /// own address first.
    pub fn client_node_via_vip(&self) -> Result<usize, String> {
        let (out, err) = out_err(&self.client_cli(&["CONFIG", "GET", "bind"]));
        let mut lines = out.lines();
        if lines.next() != Some("bind") {
            return Err(format!("CONFIG GET bind via VIP: {out:?} {err:?}"));
        }
        let first = lines
            .next()
            .and_then(|l| l.split_whitespace().next())
            .unwrap_or("");
        node_of_ip(first).ok_or_else(|| format!("CONFIG GET bind via VIP: unknown bind {out:?}"))
    }

    /// Writes through the VIP and checks the write landed on node `n`: the
    /// node answering on the VIP is `n`, and `n` itself returns the value.
    pub fn client_write_lands_on(&self, n: usize, key: &str, val: &str) -> Result<(), String> {
        self.client_write(key, val)?;
        let via = self.client_node_via_vip()?;
        if via != n {
            return Err(format!("VIP answered by n{via}, expected n{n}"));
        }
        let (got, err) = self.redis_cli(n, &["GET", key]);
        if got != val {
            return Err(format!("n{n} has {key}={got:?} ({err}), expected {val:?}"));
        }
        Ok(())
    }

    // ----- diagnostics -------------------------------------------------------

    /// Last `lines` lines of a file in node `n`'s dir.
    pub fn tail(&self, n: usize, file: &str, lines: usize) -> String {
        let text = fs::read_to_string(self.node_dir(n).join(file)).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    /// Prints the tail of every node's logs (done automatically when a lab
    /// is dropped during a panic).
    pub fn dump_logs(&self) {
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
        let children = self
            .redis
            .iter_mut()
            .chain(self.sentinels.iter_mut())
            .chain(self.spawned.iter_mut());
        for mut c in children.filter_map(Option::take) {
            let _ = c.kill();
            let _ = c.wait();
        }
        // Anything else in the lab: captures, reconfig scripts Sentinel ran,
        // grandchildren of a spawned process.
        for ns in &self.namespaces {
            kill_all_in(ns);
        }
        // Reverse order: node namespaces before the bridge's.
        for ns in self.namespaces.iter().rev() {
            delete_ns(ns);
        }
        if std::env::var_os("LAB_KEEP").is_some() {
            eprintln!("lab: LAB_KEEP set, kept {}", self.dir.display());
        } else if self.dir.exists() {
            let _ = fs::remove_dir_all(&self.dir);
        }
    }
}

// ----- frame capture ---------------------------------------------------------

/// What a captured frame is, as far as the tests care.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FrameKind {
    ArpRequest,
    ArpReply,
    NeighborAdvert,
    NeighborSolicit,
    Other,
}

/// One frame seen by tcpdump in the client namespace.
#[derive(Clone, Debug, PartialEq)]
pub struct Frame {
    /// Capture time, seconds since the epoch (CLOCK_REALTIME).
    pub ts: f64,
    pub src_mac: String,
    pub dst_mac: String,
    pub kind: FrameKind,
    /// ARP request: the address asked for ("who-has"); ARP reply: the
    /// address announced ("X is-at"); neighbour advertisement/solicitation:
    /// the target address.
    pub ip: Option<String>,
    /// ARP request: the sender's address ("tell"); ARP reply: same as `ip`.
    pub sender_ip: Option<String>,
    /// The line as tcpdump printed it, for messages.
    pub line: String,
}

impl Frame {
    /// A gratuitous ARP for `addr` in either form: a broadcast request whose
    /// sender and target are both `addr`, or a broadcast reply announcing it.
    /// Broadcast matters: an ordinary reply to the client's own (unicast)
    /// probe also says "`addr` is-at", but announces nothing to the segment.
    pub fn is_garp_for(&self, addr: &str) -> bool {
        let ip_is = self.ip.as_deref() == Some(addr) && self.dst_mac == "ff:ff:ff:ff:ff:ff";
        match self.kind {
            FrameKind::ArpRequest => ip_is && self.sender_ip.as_deref() == Some(addr),
            FrameKind::ArpReply => ip_is,
            _ => false,
        }
    }

    /// An unsolicited neighbour advertisement for `addr`: sent to the
    /// all-nodes multicast group (MAC 33:33:00:00:00:01).
    pub fn is_unsolicited_na_for(&self, addr: &str) -> bool {
        self.kind == FrameKind::NeighborAdvert
            && self.ip.as_deref() == Some(addr)
            && self.dst_mac == "33:33:00:00:00:01"
    }
}

/// Parses one line of `tcpdump -n -e -tt` output (tcpdump 4.99), e.g.
/// `1795424354.838895891 26:4a:2a:35:1c:1a > ff:ff:ff:ff:ff:ff, ethertype ARP
/// (0x0806), length 42: Request who-has 192.0.2.100 tell 192.0.2.100, length 28`.
/// Returns `None` for lines that are not frames (e.g. -v continuation lines).
pub fn parse_tcpdump_line(line: &str) -> Option<Frame> {
    let mut words = line.split_whitespace();
    let ts: f64 = words.next()?.parse().ok()?;
    let src_mac = words.next()?.to_string();
    if words.next()? != ">" {
        return None;
    }
    let dst_mac = words.next()?.trim_end_matches(',').to_string();
    let word_after = |marker: &str| {
        line.split_once(marker).and_then(|(_, rest)| {
            rest.split_whitespace()
                .next()
                .map(|w| w.trim_end_matches(',').to_string())
        })
    };
    let (kind, ip, sender_ip) = if line.contains("ethertype ARP") {
        if line.contains(" Request who-has ") {
            (
                FrameKind::ArpRequest,
                word_after(" who-has "),
                word_after(" tell "),
            )
        } else if line.contains(" Reply ") && line.contains(" is-at ") {
            let ip = word_after(" Reply ");
            (FrameKind::ArpReply, ip.clone(), ip)
        } else {
            (FrameKind::Other, None, None)
        }
    } else if line.contains("ICMP6, neighbor advertisement") {
        (FrameKind::NeighborAdvert, word_after(" tgt is "), None)
    } else if line.contains("ICMP6, neighbor solicitation") {
        (FrameKind::NeighborSolicit, word_after(" who has "), None)
    } else {
        (FrameKind::Other, None, None)
    };
    Some(Frame {
        ts,
        src_mac,
        dst_mac,
        kind,
        ip,
        sender_ip,
        line: line.to_string(),
    })
}

/// tcpdump running in the client namespace, capturing ARP and ICMPv6.
pub struct Capture {
    child: Option<Child>,
    out: PathBuf,
}

impl Capture {
    /// Starts tcpdump on the client's eth0 and returns once it is capturing.
    pub fn start(lab: &Lab) -> Capture {
        let n = CAPTURES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let out = lab.dir.join(format!("capture-{n}.txt"));
        let err = lab.dir.join(format!("capture-{n}.err"));
        let f = fs::File::create(&out).expect("lab: create capture file");
        let e = fs::File::create(&err).expect("lab: create capture err file");
        let child = Command::new("ip")
            .args(["netns", "exec", &lab.ns_client()])
            .args([
                "tcpdump",
                "-i",
                "eth0",
                "-n",
                "-e",
                "-l",
                "-tt",
                "--time-stamp-precision=nano",
                "-U",
                "arp or icmp6",
            ])
            .stdin(Stdio::null())
            .stdout(f)
            .stderr(e)
            .spawn()
            .expect("lab: cannot start tcpdump");
        let mut cap = Capture {
            child: Some(child),
            out,
        };
        // Frames sent before tcpdump has attached would be missed.
        let ok = wait_until(Duration::from_secs(10), Duration::from_millis(20), || {
            fs::read_to_string(&err).is_ok_and(|s| s.contains("listening on"))
        });
        if !ok {
            let msg = fs::read_to_string(&err).unwrap_or_default();
            cap.kill();
            panic!("lab: tcpdump did not start listening within 10 s: {msg}");
        }
        cap
    }

    /// Stops tcpdump and returns every frame it saw.
    pub fn stop(mut self) -> Vec<Frame> {
        if let Some(mut c) = self.child.take() {
            // SIGINT lets tcpdump flush; -U already writes each packet.
            let _ = Command::new("kill")
                .args(["-INT", &c.id().to_string()])
                .status();
            let exited = wait_until(Duration::from_secs(3), Duration::from_millis(20), || {
                matches!(c.try_wait(), Ok(Some(_)))
            });
            if !exited {
                let _ = c.kill();
            }
            let _ = c.wait();
        }
        self.peek()
    }

    /// The frames captured so far, without stopping.
    pub fn peek(&self) -> Vec<Frame> {
        let text = fs::read_to_string(&self.out).unwrap_or_default();
        text.lines().filter_map(parse_tcpdump_line).collect()
    }

    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Capture {
    fn drop(&mut self) {
        self.kill();
    }
}

static CAPTURES: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

// ----- helpers -----------------------------------------------------------------

fn check_preconditions(bin: &Path) {
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
    for tool in [
        "redis-server",
        "redis-sentinel",
        "redis-cli",
        "ip",
        "tcpdump",
        "timeout",
        "sysctl",
        "kill",
    ] {
        if find_in_path(tool).is_none() {
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

/// Name of the file in a lab's temp dir holding the pid of the test process.
const OWNER_FILE: &str = "owner.pid";
/// Suffixes of a lab's namespace names, after the 8-char prefix.
const NS_SUFFIXES: [&str; 5] = ["br", "n1", "n2", "n3", "cl"];

/// Removes labs left behind by runs that died without unwinding (a killed
/// test process): their namespaces and Redis processes would otherwise pile
/// up across runs. A lab is abandoned when its temp dir names an owner pid
/// that no longer exists; labs without that file are left alone, as they may
/// belong to someone else.
fn reap_stale_labs() {
    let list = ip(&["netns", "list"]);
    let list = String::from_utf8_lossy(&list.stdout);
    // Lines look like "svlab12cn1 (id: 3)" or just the name.
    let names: Vec<&str> = list
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|n| {
            n.len() == 10 && n.starts_with("svl") && NS_SUFFIXES.iter().any(|s| n.ends_with(s))
        })
        .collect();
    let mut prefixes: Vec<&str> = names.iter().map(|n| &n[..8]).collect();
    prefixes.sort_unstable();
    prefixes.dedup();
    for p in prefixes {
        let dir = std::env::temp_dir().join(format!("sentinel-vip-lab-{p}"));
        let Ok(owner) = fs::read_to_string(dir.join(OWNER_FILE)) else {
            continue;
        };
        let owner = owner.trim();
        if owner.is_empty() || Path::new("/proc").join(owner).exists() {
            continue;
        }
        eprintln!("lab: removing abandoned lab {p} (its test process {owner} is gone)");
        let mine: Vec<&str> = names.iter().copied().filter(|n| n.starts_with(p)).collect();
        for ns in &mine {
            kill_all_in(ns);
        }
        for ns in &mine {
            delete_ns(ns);
        }
        let _ = fs::remove_dir_all(&dir);
    }
}

/// SIGKILLs every process in namespace `ns`, until none is left (killed
/// processes may have forked meanwhile).
fn kill_all_in(ns: &str) {
    for _ in 0..50 {
        let pids = ip(&["netns", "pids", ns]);
        let pids = String::from_utf8_lossy(&pids.stdout).to_string();
        let pids: Vec<&str> = pids.split_whitespace().collect();
        if pids.is_empty() {
            return;
        }
        let _ = Command::new("kill").arg("-9").args(&pids).output();
        std::thread::sleep(Duration::from_millis(20));
    }
    eprintln!("lab: processes still running in namespace {ns}");
}

fn delete_ns(ns: &str) {
    let o = ip(&["netns", "del", ns]);
    if !o.status.success() {
        eprintln!(
            "lab: cannot delete namespace {ns}: {}",
            String::from_utf8_lossy(&o.stderr).trim()
        );
    }
}

fn find_in_path(tool: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(tool))
        .find(|p| p.is_file())
}

/// `svl` + 5 base-36 chars from pid and time, so concurrent and successive
/// runs do not collide; the longest name (`{p}br`) stays well under 15.
fn unique_prefix() -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let mut x = (u128::from(std::process::id()) << 32) ^ nanos;
    // Mix, so that the low digits differ even for close timestamps.
    x = x.wrapping_mul(0x9E37_79B9_7F4A_7C15_F39C_C060_5CED_C835);
    let mut x = (x >> 64) as u64;
    let digits = b"0123456789abcdefghijklmnopqrstuvwxyz";
    let mut s = String::from("svl");
    for _ in 0..5 {
        s.push(digits[(x % 36) as usize] as char);
        x /= 36;
    }
    s
}

/// Runs `ip ARGS`.
fn ip(args: &[&str]) -> Output {
    Command::new("ip")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("lab: cannot run ip {args:?}: {e}"))
}

/// Panics unless the command succeeded; returns its output.
fn must(o: Output) -> Output {
    assert!(
        o.status.success(),
        "lab: command failed ({}): {}",
        o.status,
        String::from_utf8_lossy(&o.stderr).trim()
    );
    o
}

fn sysctl(ns: &str, setting: &str) {
    let o = ip(&["netns", "exec", ns, "sysctl", "-qw", setting]);
    assert!(
        o.status.success(),
        "lab: sysctl {setting} in {ns} failed: {}",
        String::from_utf8_lossy(&o.stderr).trim()
    );
}

fn out_err(o: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&o.stdout).trim().to_string(),
        String::from_utf8_lossy(&o.stderr).trim().to_string(),
    )
}

fn write_file(path: &Path, text: &str) {
    let mut f = fs::File::create(path)
        .unwrap_or_else(|e| panic!("lab: cannot create {}: {e}", path.display()));
    f.write_all(text.as_bytes())
        .unwrap_or_else(|e| panic!("lab: cannot write {}: {e}", path.display()));
}

fn addrs_of(ns: &str) -> Vec<(String, u8)> {
    let o = must(ip(&["-j", "-n", ns, "addr", "show", "dev", "eth0"]));
    let v: Value = serde_json::from_slice(&o.stdout)
        .unwrap_or_else(|e| panic!("lab: unparsable `ip -j addr` output in {ns}: {e}"));
    v.as_array()
        .into_iter()
        .flatten()
        .flat_map(|link| link["addr_info"].as_array().cloned().unwrap_or_default())
        .filter_map(|a| {
            let local = a["local"].as_str()?.to_string();
            let prefix = u8::try_from(a["prefixlen"].as_u64()?).ok()?;
            Some((local, prefix))
        })
        .collect()
}

fn mac_of(ns: &str) -> String {
    let o = must(ip(&["-j", "-n", ns, "link", "show", "dev", "eth0"]));
    let v: Value = serde_json::from_slice(&o.stdout)
        .unwrap_or_else(|e| panic!("lab: unparsable `ip -j link` output in {ns}: {e}"));
    v[0]["address"]
        .as_str()
        .unwrap_or_else(|| panic!("lab: no MAC for eth0 in {ns}"))
        .to_string()
}

/// The entries of a `SENTINEL replicas|sentinels` reply as key/value maps.
/// Accepts RESP3 maps (JSON objects) and RESP2 flat key/value arrays.
fn entries(reply: &Value) -> Vec<serde_json::Map<String, Value>> {
    reply
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|e| match e {
            Value::Object(m) => Some(m.clone()),
            Value::Array(a) => Some(
                a.chunks(2)
                    .filter_map(|kv| Some((kv[0].as_str()?.to_string(), kv.get(1)?.clone())))
                    .collect(),
            ),
            _ => None,
        })
        .collect()
}

fn field<'a>(entry: &'a serde_json::Map<String, Value>, key: &str) -> &'a str {
    entry.get(key).and_then(Value::as_str).unwrap_or("")
}

// Harness-less targets (demo, bench) compile this module without its
// #[test] functions.
#[cfg(test)]
#[allow(unused_imports)]
mod tests {
    use super::*;

    #[test]
    fn parses_tcpdump_499_lines() {
        let f = |l: &str| parse_tcpdump_line(l).expect("frame");

        let req = f("1795424354.838895891 26:4a:2a:35:1c:1a > ff:ff:ff:ff:ff:ff, ethertype ARP (0x0806), length 42: Request who-has 192.0.2.100 tell 192.0.2.100, length 28");
        assert_eq!(req.kind, FrameKind::ArpRequest);
        assert_eq!(req.src_mac, "26:4a:2a:35:1c:1a");
        assert_eq!(req.dst_mac, "ff:ff:ff:ff:ff:ff");
        assert_eq!(req.ip.as_deref(), Some("192.0.2.100"));
        assert_eq!(req.sender_ip.as_deref(), Some("192.0.2.100"));
        assert!((req.ts - 1795424354.838_895_9).abs() < 1e-6);
        assert!(req.is_garp_for("192.0.2.100"));

        // A non-zero target hardware address is printed in parentheses.
        let req2 = f("1795424359.564569030 26:4a:2a:35:1c:1a > ff:ff:ff:ff:ff:ff, ethertype ARP (0x0806), length 42: Request who-has 192.0.2.100 (ff:ff:ff:ff:ff:ff) tell 192.0.2.100, length 28");
        assert!(req2.is_garp_for("192.0.2.100"));

        // An ordinary request is not gratuitous.
        let ask = f("1795424354.877347299 26:4a:2a:35:1c:1a > ff:ff:ff:ff:ff:ff, ethertype ARP (0x0806), length 42: Request who-has 192.0.2.2 tell 192.0.2.1, length 28");
        assert_eq!(ask.kind, FrameKind::ArpRequest);
        assert!(!ask.is_garp_for("192.0.2.2"));

        let rep = f("1795424354.838923151 26:4a:2a:35:1c:1a > ff:ff:ff:ff:ff:ff, ethertype ARP (0x0806), length 42: Reply 192.0.2.100 is-at 26:4a:2a:35:1c:1a, length 28");
        assert_eq!(rep.kind, FrameKind::ArpReply);
        assert_eq!(rep.ip.as_deref(), Some("192.0.2.100"));
        assert!(rep.is_garp_for("192.0.2.100"));

        // -v adds a header description before the operation.
        let repv = f("1795424361.375267302 26:4a:2a:35:1c:1a > ff:ff:ff:ff:ff:ff, ethertype ARP (0x0806), length 42: Ethernet (len 6), IPv4 (len 4), Reply 192.0.2.100 is-at 26:4a:2a:35:1c:1a, length 28");
        assert!(repv.is_garp_for("192.0.2.100"));

        // A reply to someone's question is not an announcement.
        let answer = f("1795424549.783877172 c6:d5:77:8f:2c:20 > ee:b4:84:e4:b6:ea, ethertype ARP (0x0806), length 42: Reply 192.0.2.100 is-at c6:d5:77:8f:2c:20, length 28");
        assert_eq!(answer.kind, FrameKind::ArpReply);
        assert!(!answer.is_garp_for("192.0.2.100"));

        let na = f("1795424354.839067922 26:4a:2a:35:1c:1a > 33:33:00:00:00:01, ethertype IPv6 (0x86dd), length 86: fe80::244a:2aff:fe35:1c1a > ff02::1: ICMP6, neighbor advertisement, tgt is 2001:2::100, length 32");
        assert_eq!(na.kind, FrameKind::NeighborAdvert);
        assert_eq!(na.ip.as_deref(), Some("2001:2::100"));
        assert!(na.is_unsolicited_na_for("2001:2::100"));

        let solicited = f("1795424354.882055619 9a:f6:d4:e0:46:dd > 26:4a:2a:35:1c:1a, ethertype IPv6 (0x86dd), length 86: 2001:2::2 > 2001:2::1: ICMP6, neighbor advertisement, tgt is 2001:2::2, length 32");
        assert!(!solicited.is_unsolicited_na_for("2001:2::2"));

        let ns = f("1795424354.882027879 26:4a:2a:35:1c:1a > 33:33:ff:00:00:02, ethertype IPv6 (0x86dd), length 86: 2001:2::1 > ff02::1:ff00:2: ICMP6, neighbor solicitation, who has 2001:2::2, length 32");
        assert_eq!(ns.kind, FrameKind::NeighborSolicit);
        assert_eq!(ns.ip.as_deref(), Some("2001:2::2"));

        let rs = f("1795424345.623101501 9a:f6:d4:e0:46:dd > 33:33:00:00:00:02, ethertype IPv6 (0x86dd), length 70: fe80::98f6:d4ff:fee0:46dd > ff02::2: ICMP6, router solicitation, length 16");
        assert_eq!(rs.kind, FrameKind::Other);
        assert_eq!(rs.ip, None);

        assert_eq!(
            parse_tcpdump_line(
                "\t  destination link-address option (2), length 8 (1): 26:4a:2a:35:1c:1a"
            ),
            None
        );
        assert_eq!(parse_tcpdump_line(""), None);
    }

    #[test]
    fn prefix_is_short_and_safe() {
        let p = unique_prefix();
        assert_eq!(p.len(), 8);
        assert!(p.chars().all(|c| c.is_ascii_alphanumeric()));
    }
}

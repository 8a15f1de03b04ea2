//! Each node's data server and Sentinel as processes (Redis' or Valkey's,
//! as `Programs` names them): started, killed, restarted, paused. Only `start_redis` and `start_sentinel` start them,
//! so a node whose Redis runs elsewhere changes these two places only.

use std::time::Duration;

use crate::command::signal;
use crate::{check_node, node_ip, wait_until, Lab, NODES, REDIS_PORT};

impl Lab {
    pub(crate) fn start_redis(&mut self, n: usize) {
        self.check_own(n);
        let d = self.node_dir(n);
        let ip = node_ip(n);
        // The routed lab's IPv6 VIP as well (ip_nonlocal_bind for IPv6
        // is on there).
        let vip6 = self.opts.routed.map(|_| crate::routed::VIP6.to_string());
        let mut args: Vec<String> = vec![
            self.programs().server.into(),
            "--port".into(),
            REDIS_PORT.to_string(),
            // The VIP too, so clients can reach whichever node holds it
            // (possible before it does thanks to ip_nonlocal_bind). The node
            // address comes first: Redis binds outgoing connections to it.
            "--bind".into(),
            ip,
            self.vip4().into(),
        ];
        args.extend(vip6);
        args.extend([
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
            d.join("redis").display().to_string(),
            "--daemonize".into(),
            "no".into(),
            "--logfile".into(),
            d.join("redis.log").display().to_string(),
        ]);
        if n != 1 {
            args.extend(["--replicaof".into(), node_ip(1), REDIS_PORT.to_string()]);
        }
        if self.opts.routed.is_some() {
            // Its link to the master leaves from the host's link address;
            // the master (and so Sentinel) must know it by the address it
            // listens on, as the README tells operators.
            args.extend(["--replica-announce-ip".into(), node_ip(n)]);
        }
        if let Some(pw) = &self.opts.data_password {
            args.extend([
                "--requirepass".into(),
                pw.clone(),
                "--masterauth".into(),
                pw.clone(),
            ]);
        }
        let slot = self.spawn_at(n, &args, &[], &d.join("redis.out"));
        self.nodes[n - 1].redis = slot;
        let ok = wait_until(Duration::from_secs(10), Duration::from_millis(50), || {
            self.redis_cli(n, &["PING"]).0 == "PONG"
        });
        assert!(
            ok,
            "lab: redis-server on n{n} did not answer PING within 10 s"
        );
    }

    pub(crate) fn start_sentinel(&mut self, n: usize) {
        self.check_own(n);
        let d = self.node_dir(n);
        let args = self.programs().sentinel_command(&d.join("sentinel.conf"));
        let slot = self.spawn_with_config(n, &args, &d.join("sentinel.out"));
        self.nodes[n - 1].sentinel = slot;
    }

    /// SIGKILLs node `n`'s redis-server.
    pub fn kill_redis(&mut self, n: usize) {
        check_node(n);
        self.nodes[n - 1].redis.kill();
    }

    /// Starts node `n`'s redis-server again with its original arguments (so
    /// n2 and n3 come back as replicas of n1's address, n1 as a master);
    /// Sentinel then reconfigures it as a replica of the current master.
    pub fn restart_redis(&mut self, n: usize) {
        self.kill_redis(n);
        self.start_redis(n);
    }

    /// Whether node `n`'s redis-server is still running.
    pub fn redis_running(&mut self, n: usize) -> bool {
        check_node(n);
        self.nodes[n - 1].redis.running()
    }

    /// Stops node `n`'s redis-server (SIGSTOP) until the returned guard is
    /// dropped, so that a failing case never leaves Redis stopped.
    pub fn pause_redis(&self, n: usize) -> Paused {
        check_node(n);
        let pid = self.nodes[n - 1]
            .redis
            .pid()
            .unwrap_or_else(|| panic!("no redis-server running on n{n}"));
        assert!(signal(pid, "STOP"), "kill -STOP {pid} failed");
        Paused(pid)
    }

    /// Lets every redis-server run again (after a case that may have
    /// failed while one was paused).
    pub(crate) fn resume_all_redis(&self) {
        for node in &self.nodes {
            if let Some(pid) = node.redis.pid() {
                signal(pid, "CONT");
            }
        }
    }

    /// Kills node `n`'s Sentinel (SIGKILL) and leaves it down.
    pub fn kill_sentinel(&mut self, n: usize) {
        check_node(n);
        self.nodes[n - 1].sentinel.kill();
    }

    /// Restarts node `n`'s Sentinel alone (kill if running, then start it
    /// again with the config file Sentinel itself rewrote).
    pub fn restart_sentinel(&mut self, n: usize) {
        self.kill_sentinel(n);
        self.start_sentinel(n);
    }

    /// Restarts every Sentinel at once (all killed, then all started).
    pub fn restart_sentinels(&mut self) {
        for n in NODES {
            self.kill_sentinel(n);
        }
        for n in self.own_nodes() {
            self.start_sentinel(n);
        }
    }

    /// Whether node `n`'s Sentinel is still running.
    pub(crate) fn sentinel_running(&mut self, n: usize) -> bool {
        self.nodes[n - 1].sentinel.running()
    }
}

/// A paused redis-server; SIGCONT when dropped.
pub struct Paused(u32);

impl Drop for Paused {
    fn drop(&mut self) {
        signal(self.0, "CONT");
    }
}

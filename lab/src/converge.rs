//! Waiting for the lab to reach a state, and the epilogues every failover
//! case shares: the VIP alone on Sentinel's master, the client following
//! it, every node back as a replica. Each wait panics on timeout with
//! what it saw last.

use std::time::Duration;

use crate::{node_ip, wait_until, Lab, NODES, POLL, REDIS_PORT};

impl Lab {
    /// Waits until every Sentinel names the same master and exactly that node
    /// holds the VIP; returns it.
    pub fn wait_one_holder(&self, timeout: Duration) -> usize {
        self.wait_vip_alone_on_master(timeout, |_| true)
            .unwrap_or_else(|seen| {
                panic!("no single holder that is Sentinel's master within {timeout:?}: {seen}")
            })
    }

    /// Waits until all Sentinels name a master other than `old` and exactly
    /// that node holds the VIP; returns it.
    pub fn wait_vip_moves(&self, old: usize, timeout: Duration) -> usize {
        self.wait_vip_alone_on_master(timeout, |m| m != old)
            .unwrap_or_else(|seen| panic!("VIP did not move off n{old} within {timeout:?}: {seen}"))
    }

    /// Waits for the VIP to sit alone on the master the Sentinels agree on,
    /// expected to be `n` still. Judged against Sentinel's answer, not the
    /// expectation: on a loaded machine Sentinel may fail over once more on
    /// its own (a freshly promoted master can miss down-after-milliseconds),
    /// and the VIP must follow that too; that is reported, not failed.
    pub fn expect_vip_still_on(&self, n: usize, timeout: Duration, what: &str) {
        let m = self
            .wait_vip_alone_on_master(timeout, |_| true)
            .unwrap_or_else(|seen| {
                panic!("{what}: VIP not on Sentinel's master alone within {timeout:?}: {seen}")
            });
        if m != n {
            eprintln!(
                "  {what}: Sentinel failed over again on its own (n{n} -> n{m}); the VIP followed"
            );
        }
    }

    /// Waits until [`Lab::vip_alone_on_master`] finds a master; on timeout,
    /// says what was seen last.
    fn wait_vip_alone_on_master(
        &self,
        timeout: Duration,
        accept: impl Fn(usize) -> bool,
    ) -> Result<usize, String> {
        let mut found = None;
        wait_until(timeout, POLL, || {
            found = self.vip_alone_on_master(&accept);
            found.is_some()
        });
        found.ok_or_else(|| {
            format!(
                "Sentinels say {:?}, holders {:?}",
                self.sentinels_agree(),
                self.holders()
            )
        })
    }

    /// Waits until every Sentinel names a master other than `old`.
    pub fn wait_new_master(&self, old: usize, timeout: Duration) -> usize {
        let mut new = None;
        let ok = wait_until(timeout, POLL, || {
            new = self.sentinels_agree().filter(|&m| m != old);
            new.is_some()
        });
        assert!(
            ok,
            "Sentinels did not agree on a master other than n{old} within {timeout:?}"
        );
        new.expect("set when ok")
    }

    /// Waits until Sentinel has settled (see [`Lab::settled_master`]).
    fn wait_settled(&self, timeout: Duration) -> usize {
        let mut m = None;
        let ok = wait_until(timeout, POLL, || {
            m = self.settled_master();
            m.is_some()
        });
        assert!(ok, "Sentinel did not settle on a master within {timeout:?}");
        m.expect("set when ok")
    }

    /// Waits up to `timeout` for the client's entry for the IPv4 VIP to
    /// carry node `n`'s MAC; returns whether it did.
    pub fn client_follows(&self, n: usize, timeout: Duration) -> bool {
        wait_until(timeout, POLL, || self.client_vip_mac() == self.mac(n))
    }

    /// Waits briefly (announcements may trail the address by a moment) for the
    /// client's neighbour entry for `addr` to carry node `n`'s MAC.
    pub fn expect_client_mac(&self, addr: &str, n: usize) {
        let want = self.mac(n);
        let ok = wait_until(Duration::from_secs(2), POLL, || {
            self.client_neigh(addr).is_some_and(|(m, _)| m == want)
        });
        assert!(
            ok,
            "client's neighbour entry for {addr} is {:?}, want n{n}'s MAC {want}",
            self.client_neigh(addr)
        );
    }

    /// A quiet lab to inject a fault into: one holder, the master, and a
    /// client whose neighbour entry points at it (gratuitous ARP only
    /// updates an entry the client already has). Returns the master.
    pub fn ready_for_fault(&self) -> usize {
        let m = self.wait_one_holder(Duration::from_secs(15));
        self.client_ping()
            .unwrap_or_else(|e| panic!("before the fault: {e}"));
        self.expect_client_mac(crate::VIP4, m);
        m
    }

    /// After a failover to `holder`: the client's entry given time to
    /// follow, two quiet seconds in which a flap would show, then every
    /// node rejoined ([`Lab::rejoin_all`]). Returns the final master.
    pub fn settle_after_failover(&mut self, holder: usize) -> usize {
        self.client_follows(holder, Duration::from_secs(5));
        std::thread::sleep(Duration::from_secs(2));
        self.rejoin_all()
    }

    /// Every Redis running and replicating from Sentinel's master, Sentinel
    /// ready, and the VIP on that master alone, the client pointed at it;
    /// returns the master. Sentinel gets the nodes there by itself too, but
    /// only after its 10 s INFO period plus a grace period per stale node;
    /// pointing them at the master saves that (~15 s a failover) without
    /// changing what the cases judge, which came before. Only once Sentinel
    /// has settled, and only nodes that do not replicate the master already:
    /// re-pointing a node Sentinel is promoting fights Sentinel (seen: an
    /// observer's second failover right after the first, undone by this).
    pub fn rejoin_all(&mut self) -> usize {
        self.rejoin_nodes();
        let m = self.wait_one_holder(Duration::from_secs(15));
        self.client_follows(m, Duration::from_secs(5));
        m
    }

    /// The data nodes' half of [`Lab::rejoin_all`], for any topology:
    /// every Redis running and replicating Sentinel's master, Sentinel
    /// ready.
    pub(crate) fn rejoin_nodes(&mut self) {
        for n in NODES {
            if !self.redis_running(n) {
                self.restart_redis(n);
            }
        }
        let m = self.wait_settled(Duration::from_secs(60));
        let (master_ip, port) = (node_ip(m), REDIS_PORT.to_string());
        for n in NODES {
            let (role, _) = self.redis_cli(n, &["ROLE"]);
            let mut lines = role.lines();
            let (kind, host) = (lines.next().unwrap_or(""), lines.next().unwrap_or(""));
            let target = match (n == m, kind) {
                (true, "master") => continue,
                // Restarted with its original arguments, it may be a replica.
                (true, _) => vec!["REPLICAOF", "NO", "ONE"],
                (false, "slave") if host == master_ip => continue,
                (false, _) => vec!["REPLICAOF", master_ip.as_str(), port.as_str()],
            };
            let (out, err) = self.redis_cli(n, &target);
            assert!(out.starts_with("OK"), "n{n} {target:?}: {out} {err}");
        }
        self.wait_ready();
    }

    /// SIGHUPs node `n`'s watcher and waits until it has logged the reload.
    pub fn reload_watcher(&mut self, n: usize) {
        let before = self.log_count(n, &["config reloaded"]);
        self.signal_watcher(n, "HUP");
        let ok = wait_until(Duration::from_secs(5), POLL, || {
            self.log_count(n, &["config reloaded"]) > before
        });
        assert!(ok, "the watcher on n{n} logged no reload after SIGHUP");
    }
}

//! FRR on a routed lab's hosts, the README's FRR recipe: zebra, bgpd and
//! bfdd started directly (no watchfrr, no frr.service) in the host's
//! namespace with per-daemon configs, pid files, vty sockets and the
//! zebra socket in the lab's dir. FRR also keeps a scratch dir per
//! process under /var/tmp/frr; each daemon runs in a mount namespace of
//! its own (`ip netns exec` makes one) where the lab's dir is mounted on
//! /var/tmp, so nothing is left on the host, whatever ends the run.

use std::path::{Path, PathBuf};

use super::{gateway_ip, link_ip, BFD_INTERVAL_MS, BFD_MULTIPLIER, HOLD_S, ROUTER_AS, VIP_CIDR};
use crate::command::write_file;
use crate::process::Slot;
use crate::{wait_until, Lab};

/// The user FRR's package runs its daemons as (its vty group is
/// `frrvty`, which root is not in).
const FRR_USER: &str = "frr";

/// Host `n`'s bgpd config: the VIPs (a prefix-list) redistributed from
/// connected routes through a route-map, and the same route-map out to
/// the router, which `frr defaults traditional` requires on an eBGP
/// session (`bgp ebgp-requires-policy`). An explicit router-id: left to
/// zebra, it is the highest address on `lo`, which the VIP would be.
pub(crate) fn bgpd_conf(n: usize) -> String {
    let gw = gateway_ip(n);
    format!(
        "frr defaults traditional\n\
         hostname n{n}\n\
         log timestamp precision 6\n\
         ip prefix-list VIPS seq 5 permit {VIP_CIDR}\n\
         route-map VIPS permit 10\n match ip address prefix-list VIPS\nexit\n\
         router bgp {local}\n \
           bgp router-id {id}\n \
           neighbor {gw} remote-as {ROUTER_AS}\n \
           neighbor {gw} bfd\n \
           neighbor {gw} timers 1 {HOLD_S}\n \
           neighbor {gw} timers connect 1\n \
           address-family ipv4 unicast\n  \
             redistribute connected route-map VIPS\n  \
             neighbor {gw} route-map VIPS out\n \
           exit-address-family\n\
         exit\n",
        local = ROUTER_AS + n as u32,
        id = link_ip(n),
    )
}

/// Host `n`'s bfdd config: the session to the router, 100 ms × 3.
pub(crate) fn bfdd_conf(n: usize) -> String {
    format!(
        "bfd\n peer {gw}\n  receive-interval {BFD_INTERVAL_MS}\n  transmit-interval {BFD_INTERVAL_MS}\n  detect-multiplier {BFD_MULTIPLIER}\n exit\nexit\n",
        gw = gateway_ip(n)
    )
}

impl Lab {
    fn frr_dir(&self, n: usize) -> PathBuf {
        self.node_dir(n).join("frr")
    }

    /// zebra, then bgpd and bfdd once zebra's socket is there.
    pub(crate) fn start_host_frr(&self, n: usize) -> Vec<Slot> {
        let d = self.frr_dir(n);
        std::fs::create_dir_all(&d)
            .unwrap_or_else(|e| panic!("lab: cannot create {}: {e}", d.display()));
        let uid = frr_uid();
        chown(&d, uid);
        write_file(&d.join("zebra.conf"), &format!("hostname n{n}\n"));
        write_file(&d.join("bgpd.conf"), &bgpd_conf(n));
        write_file(&d.join("bfdd.conf"), &bfdd_conf(n));
        let zserv = d.join("zserv.api");
        let _ = std::fs::remove_file(&zserv);
        let mut slots = vec![self.frr_daemon(n, &d, "zebra", &[])];
        let ok = wait_until(
            std::time::Duration::from_secs(10),
            std::time::Duration::from_millis(20),
            || zserv.exists(),
        );
        assert!(
            ok,
            "lab: zebra on n{n} made no socket: {}",
            slots[0].output()
        );
        let ctl = d.join("bfdd.sock").display().to_string();
        slots.push(self.frr_daemon(n, &d, "bfdd", &["--bfdctl", &ctl]));
        slots.push(self.frr_daemon(n, &d, "bgpd", &[]));
        slots
    }

    /// One FRR daemon in the foreground, its files in `d`, `/var/tmp`
    /// replaced by `d` in its own mount namespace.
    fn frr_daemon(&self, n: usize, d: &Path, name: &str, extra: &[&str]) -> Slot {
        let p = |f: &str| d.join(f).display().to_string();
        let mut cmd = format!(
            "mount --bind {dir} /var/tmp && exec /usr/lib/frr/{name} -f {conf} -i {pid} -z {zserv} --vty_socket {dir} -u {FRR_USER} -g {FRR_USER} -P 0 --log file:{log}",
            dir = d.display(),
            conf = p(&format!("{name}.conf")),
            pid = p(&format!("{name}.pid")),
            zserv = p("zserv.api"),
            log = p(&format!("{name}.log")),
        );
        for e in extra {
            cmd.push(' ');
            cmd.push_str(e);
        }
        let args = ["sh".to_string(), "-c".into(), cmd];
        self.spawn_ns(&self.ns(n), &args, &[], &d.join(format!("{name}.out")))
    }

    /// `vtysh -c CMD` against host `n`'s FRR.
    pub fn host_vtysh(&self, n: usize, cmd: &str) -> String {
        let d = self.frr_dir(n).display().to_string();
        let o = self.run_node(n, &["/usr/bin/vtysh", "--vty_socket", &d, "-c", cmd]);
        String::from_utf8_lossy(&o.stdout).to_string()
    }
}

/// The uid of FRR's user; panics naming scripts/deps.sh when FRR is not
/// installed.
fn frr_uid() -> u32 {
    let o = std::process::Command::new("id")
        .args(["-u", FRR_USER])
        .output()
        .unwrap_or_else(|e| panic!("lab: cannot run id: {e}"));
    String::from_utf8_lossy(&o.stdout)
        .trim()
        .parse()
        .unwrap_or_else(|_| {
            panic!("lab: no user `{FRR_USER}`: FRR is not installed (scripts/deps.sh installs frr)")
        })
}

fn chown(d: &Path, uid: u32) {
    std::os::unix::fs::chown(d, Some(uid), None)
        .unwrap_or_else(|e| panic!("lab: chown {}: {e}", d.display()));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_recipe_carries_a_policy_and_bfd() {
        let b = bgpd_conf(3);
        for want in [
            "frr defaults traditional",
            "ip prefix-list VIPS seq 5 permit 203.0.113.100/32",
            "bgp router-id 198.18.3.2",
            "neighbor 198.18.3.1 remote-as 65000",
            "neighbor 198.18.3.1 bfd",
            "redistribute connected route-map VIPS",
            "neighbor 198.18.3.1 route-map VIPS out",
        ] {
            assert!(b.contains(want), "{want} in\n{b}");
        }
        assert!(bfdd_conf(3).contains("peer 198.18.3.1\n  receive-interval 100"));
    }
}

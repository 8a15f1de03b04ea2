//! BIRD 2 in the routed lab: the configs the lab writes (the router's, and
//! each host's, which is the README's recipe), starting `bird` in a
//! namespace, and asking it over its control socket with `birdc`. BIRD
//! runs in the foreground, owned by a Slot; its socket, pid file and log
//! live in the lab's dir, never under /run.

use std::path::PathBuf;
use std::process::Command;

use super::{gateway_ip, gateway_ip6, link_ip, link_ip6, router_port};
use super::{Daemon, BFD_INTERVAL_MS, BFD_MULTIPLIER, HOLD_S, ROUTER_AS, VIP6_CIDR, VIP_CIDR};
use crate::command::{out_err, write_file};
use crate::process::Slot;
use crate::{Lab, NODES};

/// Debian's bird2 binaries (`check_tools` requires them), by path: the
/// test's PATH may lack /usr/sbin.
pub(crate) const BIRD: &str = "/usr/sbin/bird";
pub(crate) const BIRDC: &str = "/usr/sbin/birdc";

/// BGP timers for the lab's sessions: keepalives every second under a
/// short hold time, and reconnecting within a second or two after a
/// session fell (BIRD's defaults wait 5 s to connect and 60 s after an
/// error, which would slow every healed case down, not change it).
const TIMERS: &str = "hold time {HOLD}; keepalive time 1;\n    connect delay time 1; connect retry time 1; error wait time 1, 5;";

fn timers() -> String {
    TIMERS.replace("{HOLD}", &HOLD_S.to_string())
}

/// BFD on every session: `BFD_INTERVAL_MS` × `BFD_MULTIPLIER`.
fn bfd(ifaces: &str) -> String {
    format!(
        "protocol bfd {{\n  interface \"{ifaces}\" {{\n    min rx interval {BFD_INTERVAL_MS} ms; min tx interval {BFD_INTERVAL_MS} ms; multiplier {BFD_MULTIPLIER};\n  }};\n}}\n"
    )
}

/// Host `n`'s BIRD: the README's recipe with the lab's addresses. The VIPs
/// held on `lo` are exported, and nothing else (not the host's own
/// address beside them on `lo`, nor `::1`); IPv6 ones over a session of
/// their own, to the router's IPv6 address.
pub(crate) fn host_conf(n: usize) -> String {
    format!(
        "# BIRD 2 on a Redis host: announce a VIP while, and only while, it is on lo.\n\
         router id {id};\n\
         log stderr all;\n\
         define VIPS = [ {VIP_CIDR} ];\n\
         define VIPS6 = [ {VIP6_CIDR} ];\n\
         protocol device {{ }}\n\
         # A route per address on lo, from the kernel's address events: it\n\
         # comes with the add and goes with the delete.\n\
         protocol direct vips {{\n  ipv4;\n  ipv6;\n  interface \"lo\";\n}}\n\
         {bfd}{v4}{v6}",
        id = link_ip(n),
        bfd = bfd("eth0"),
        v4 = uplink(n, "uplink", &gateway_ip(n), "ipv4", "VIPS"),
        v6 = uplink(n, "uplink6", &gateway_ip6(n), "ipv6", "VIPS6"),
    )
}

/// Host `n`'s session `name` to the router at `gw`, exporting over its
/// `channel` the VIPs on `lo` that are in the prefix set `set`.
fn uplink(n: usize, name: &str, gw: &str, channel: &str, set: &str) -> String {
    format!(
        "protocol bgp {name} {{\n  \
           local as {local};\n  \
           neighbor {gw} as {ROUTER_AS};\n  \
           bfd on;\n  \
           {timers}\n  \
           {channel} {{\n    import none;\n    export where proto = \"vips\" && net ~ {set};\n  }};\n\
         }}\n",
        local = ROUTER_AS + n as u32,
        timers = timers(),
    )
}

/// The router's BIRD: a session per host (and per family, when the hosts
/// run BIRD), accepting only host routes of the VIPs' ranges, the best
/// one exported to this namespace's kernel table (what the client's
/// packets follow).
pub(crate) fn router_conf(hosts: Daemon) -> String {
    let mut c = format!(
        "# The lab's router: eBGP with each Redis host, BFD on every session.\n\
         router id 198.18.0.1;\n\
         log stderr all;\n\
         protocol device {{ }}\n\
         protocol kernel {{\n  ipv4 {{ import none; export all; }};\n}}\n\
         protocol kernel {{\n  ipv6 {{ import none; export all; }};\n}}\n\
         {bfd}\
         filter from_hosts {{\n  if net ~ [ 203.0.113.0/24{{32,32}} ] then accept;\n  reject;\n}}\n\
         filter from_hosts6 {{\n  if net ~ [ 2001:2::/48{{128,128}} ] then accept;\n  reject;\n}}\n\
         template bgp host {{\n  \
           local as {ROUTER_AS};\n  \
           bfd on;\n  \
           {timers}\n  \
           ipv4 {{ import filter from_hosts; export none; }};\n\
         }}\n\
         template bgp host6 {{\n  \
           local as {ROUTER_AS};\n  \
           bfd on;\n  \
           {timers}\n  \
           ipv6 {{ import filter from_hosts6; export none; }};\n\
         }}\n",
        bfd = bfd("h*"),
        timers = timers(),
    );
    for n in NODES {
        let (port, asn) = (router_port(n), ROUTER_AS + n as u32);
        c.push_str(&format!(
            "protocol bgp {port} from host {{ neighbor {} as {asn}; }}\n",
            link_ip(n),
        ));
        if hosts == Daemon::Bird {
            c.push_str(&format!(
                "protocol bgp {port}v6 from host6 {{ neighbor {} as {asn}; }}\n",
                link_ip6(n),
            ));
        }
    }
    c
}

impl Lab {
    /// The dir of the router's files.
    pub(crate) fn router_dir(&self) -> PathBuf {
        self.dir.join("router")
    }

    fn bird_ctl(&self, dir: &std::path::Path) -> PathBuf {
        dir.join("bird.ctl")
    }

    /// Starts `bird` in the foreground in namespace `ns` with `conf`,
    /// its files in `dir`; waits until its socket answers.
    fn start_bird(&self, ns: &str, dir: &std::path::Path, conf: &str) -> Slot {
        std::fs::create_dir_all(dir)
            .unwrap_or_else(|e| panic!("lab: cannot create {}: {e}", dir.display()));
        let path = dir.join("bird.conf");
        write_file(&path, conf);
        let ctl = self.bird_ctl(dir);
        let _ = std::fs::remove_file(&ctl);
        let args: Vec<String> = [
            BIRD,
            "-f",
            "-c",
            &path.display().to_string(),
            "-s",
            &ctl.display().to_string(),
            "-P",
            &dir.join("bird.pid").display().to_string(),
        ]
        .map(String::from)
        .to_vec();
        let mut slot = self.spawn_ns(ns, &args, &[], &dir.join("bird.out"));
        let up = crate::wait_until(
            std::time::Duration::from_secs(10),
            std::time::Duration::from_millis(20),
            || birdc(&ctl, &["show", "status"]).is_ok(),
        );
        if !up {
            slot.kill();
            panic!(
                "lab: bird in {ns} did not answer on {}: {}",
                ctl.display(),
                slot.output()
            );
        }
        slot
    }

    pub(crate) fn start_router_bird(&self) -> Slot {
        let conf = router_conf(self.host_daemon());
        self.start_bird(&self.ns_router(), &self.router_dir(), &conf)
    }

    pub(crate) fn start_host_bird(&self, n: usize) -> Slot {
        self.start_bird(&self.ns(n), &self.node_dir(n).join("bird"), &host_conf(n))
    }

    /// `birdc` against the router's BIRD.
    pub fn router_birdc(&self, args: &[&str]) -> Result<String, String> {
        birdc(&self.bird_ctl(&self.router_dir()), args)
    }

    /// Whether the router's sessions with host `n` (IPv4's, and IPv6's
    /// when the hosts run BIRD) are established and their BFD sessions up.
    pub(crate) fn session_up(&self, n: usize) -> bool {
        let port = router_port(n);
        let mut sessions = vec![(port.clone(), link_ip(n))];
        if self.host_daemon() == Daemon::Bird {
            sessions.push((format!("{port}v6"), link_ip6(n)));
        }
        let bfd = self
            .router_birdc(&["show", "bfd", "sessions"])
            .unwrap_or_default();
        sessions.iter().all(|(proto, peer)| {
            let bgp = self
                .router_birdc(&["show", "protocols", proto])
                .is_ok_and(|o| o.contains("Established"));
            bgp && bfd
                .lines()
                .any(|l| l.starts_with(&format!("{peer} ")) && l.contains(" Up "))
        })
    }

    /// The hosts whose route to the VIP the router's BIRD holds now (best
    /// or not), by the session it came from.
    pub fn router_candidates(&self) -> Vec<usize> {
        let out = self
            .router_birdc(&["show", "route", "for", VIP_CIDR])
            .unwrap_or_default();
        NODES
            .into_iter()
            .filter(|&n| out.contains(&format!("[{} ", router_port(n))))
            .collect()
    }
}

/// `birdc -s CTL ARGS`: its output, or why it failed (BIRD answers
/// errors on stdout with a code; the socket missing is birdc's exit).
pub(crate) fn birdc(ctl: &std::path::Path, args: &[&str]) -> Result<String, String> {
    let o = Command::new(BIRDC)
        .arg("-s")
        .arg(ctl)
        .args(args)
        .output()
        .map_err(|e| format!("birdc: {e}"))?;
    let (out, err) = out_err(&o);
    if o.status.success() {
        Ok(out)
    } else {
        Err(format!("birdc {args:?}: {out} {err}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The host's config exports the VIPs' prefix set from lo only, with
    /// BFD on the session; the router imports host routes of the range.
    #[test]
    fn configs_say_what_the_recipe_says() {
        let h = host_conf(2);
        for want in [
            "router id 198.18.2.2;",
            "define VIPS = [ 203.0.113.100/32 ];",
            "interface \"lo\";",
            "neighbor 198.18.2.1 as 65000;",
            "local as 65002;",
            "bfd on;",
            "export where proto = \"vips\" && net ~ VIPS;",
            "min rx interval 100 ms",
        ] {
            assert!(h.contains(want), "{want} in\n{h}");
        }
        for want in [
            "define VIPS6 = [ 2001:2::100/128 ];",
            "neighbor 2001:2:0:2::1 as 65000;",
            "export where proto = \"vips\" && net ~ VIPS6;",
        ] {
            assert!(h.contains(want), "{want} in\n{h}");
        }
        let r = router_conf(Daemon::Bird);
        assert!(r.contains("protocol bgp h3 from host { neighbor 198.18.3.2 as 65003; }"));
        assert!(r.contains("protocol bgp h3v6 from host6 { neighbor 2001:2:0:3::2 as 65003; }"));
        assert!(r.contains("export all;") && r.contains("203.0.113.0/24{32,32}"));
        assert!(r.contains("2001:2::/48{128,128}"));
        assert!(
            !router_conf(Daemon::Frr).contains("h3v6"),
            "FRR hosts carry IPv4 only"
        );
        assert_eq!(super::super::VIP, "203.0.113.100");
    }
}

//! Which source address a host's own traffic carries, judged from both
//! ends: the kernel's choice (`ip route get`) on the host, and what a peer
//! in the client namespace sees of a connection the host opens (a Redis
//! server there reports each client's address). Nothing here adds or
//! removes an address.

use std::fs;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::Value;

use crate::command::{ip_in, out_err};
use crate::extra_vips::CLIENT_IP2;
use crate::{wait_until, Lab, CLIENT_IP, CLIENT_IP6};

/// The port of the client's peer Redis (not the lab's 6379).
pub const PEER_PORT: u16 = 6390;

/// The client's addresses a host can connect to: IPv4, IPv6, and the
/// second network's (present once [`Lab::add_second_network`] ran).
pub fn client_addrs() -> [&'static str; 3] {
    [CLIENT_IP, CLIENT_IP6, CLIENT_IP2]
}

impl Lab {
    /// Runs `args` in the client namespace.
    pub fn run_client(&self, args: &[&str]) -> std::process::Output {
        self.run(&self.ns_client(), args)
    }

    /// The source address node `n`'s kernel picks for traffic to `dst`.
    pub fn route_src(&self, n: usize, dst: &str) -> String {
        let o = ip_in(&self.ns(n), &["-j", "route", "get", dst]);
        let v: Value = serde_json::from_slice(&o.stdout).unwrap_or(Value::Null);
        v[0]["prefsrc"]
            .as_str()
            .unwrap_or_else(|| {
                panic!(
                    "lab: no prefsrc in `ip route get {dst}` on n{n}: {}",
                    String::from_utf8_lossy(&o.stdout)
                )
            })
            .to_string()
    }

    /// One ping from node `n` to `dst` (IPv4 or IPv6); whether it was
    /// answered.
    pub fn ping_from(&self, n: usize, dst: &str) -> bool {
        self.run_node(n, &["ping", "-n", "-c", "1", "-W", "2", dst])
            .status
            .success()
    }

    /// The address the client's peer Redis sees a connection from node `n`
    /// to `dst` come from (`CLIENT INFO`, asked on that connection).
    pub fn peer_sees(&self, n: usize, dst: &str) -> Result<String, String> {
        let port = PEER_PORT.to_string();
        let cli = self.programs().cli;
        let o = self.run_node(
            n,
            &[
                "timeout", "3", cli, "-h", dst, "-p", &port, "CLIENT", "INFO",
            ],
        );
        let (out, err) = out_err(&o);
        let addr = out
            .split_whitespace()
            .find_map(|w| w.strip_prefix("addr="))
            .ok_or_else(|| format!("CLIENT INFO from n{n} to {dst}: {out:?} {err:?}"))?;
        Ok(strip_port(addr).to_string())
    }
}

/// `ip:port` or `[ip6]:port` (Redis prints IPv6 either way) to the IP.
pub fn strip_port(addr: &str) -> &str {
    let Some((ip, _port)) = addr.rsplit_once(':') else {
        return addr;
    };
    ip.trim_start_matches('[').trim_end_matches(']')
}

/// A Redis server in the client namespace on [`PEER_PORT`], listening on
/// the client's addresses: a peer that reports where connections come
/// from. Stopped when dropped.
pub struct Peer {
    child: Option<Child>,
}

impl Peer {
    pub fn start(lab: &Lab) -> Peer {
        let dir = lab.dir.join("peer");
        fs::create_dir_all(&dir)
            .unwrap_or_else(|e| panic!("lab: cannot create {}: {e}", dir.display()));
        let out = fs::File::create(dir.join("redis.out")).expect("lab: create peer output");
        let child = Command::new("ip")
            .args(["netns", "exec", &lab.ns_client(), lab.programs().server])
            .arg("--port")
            .arg(PEER_PORT.to_string())
            .arg("--bind")
            .args(client_addrs())
            .args(["--save", "", "--appendonly", "no", "--protected-mode", "no"])
            .arg("--dir")
            .arg(&dir)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("lab: cannot start the peer redis-server: {e}"));
        let peer = Peer { child: Some(child) };
        let port = PEER_PORT.to_string();
        let cli = lab.programs().cli;
        let up = wait_until(Duration::from_secs(10), Duration::from_millis(50), || {
            let args = ["timeout", "2", cli, "-h", CLIENT_IP, "-p", &port, "PING"];
            out_err(&lab.run(&lab.ns_client(), &args)).0 == "PONG"
        });
        assert!(up, "lab: the client's peer redis-server did not answer");
        peer
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::strip_port;

    #[test]
    fn ports_are_stripped() {
        assert_eq!(strip_port("192.0.2.11:43210"), "192.0.2.11");
        assert_eq!(strip_port("[2001:2::11]:43210"), "2001:2::11");
        assert_eq!(strip_port("2001:2::11:43210"), "2001:2::11");
    }
}

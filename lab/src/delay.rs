//! A delay line between the lab's Redis hosts, for the slow-network cases:
//! every IPv4 packet a node sends to another node waits a fixed time
//! before the kernel sends it on. The kernel here has no `netem`, so the
//! packets go to a netfilter queue (iptables' `NFQUEUE` target, OUTPUT
//! hook of each node's namespace) and one thread of this process gives
//! each its verdict, `ACCEPT`, once it has waited: the packet itself never
//! leaves the kernel, its order is kept, and traffic to and from the
//! client is not touched. It only adds the rules it removes again, in the
//! lab's node namespaces, and reads nothing but the queue's metadata.

use std::collections::VecDeque;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::command::find_in_path;
use crate::{netns, node_ip, Lab, NODES};

/// The queue number in each node's namespace (queues are per namespace).
const QUEUE: u16 = 0;
/// Packets one queue may hold: 100 ms of the lab's traffic is a few
/// hundred; a full queue would drop packets, not delay them.
const QUEUE_MAXLEN: u32 = 65_536;

// linux/netfilter/nfnetlink.h and nfnetlink_queue.h.
const NETLINK_NETFILTER: libc::c_int = 12;
const NFNL_SUBSYS_QUEUE: u16 = 3;
const NFQNL_MSG_PACKET: u16 = 0;
const NFQNL_MSG_VERDICT: u16 = 1;
const NFQNL_MSG_CONFIG: u16 = 2;
const NFQA_PACKET_HDR: u16 = 1;
const NFQA_VERDICT_HDR: u16 = 2;
const NFQA_CFG_CMD: u16 = 1;
const NFQA_CFG_PARAMS: u16 = 2;
const NFQA_CFG_QUEUE_MAXLEN: u16 = 3;
const NFQNL_CFG_CMD_BIND: u8 = 1;
const NFQNL_COPY_META: u8 = 1;
const NF_ACCEPT: u32 = 1;
const NLMSG_ERROR: u16 = 2;
const NLM_F_REQUEST: u16 = 1;
const NLM_F_ACK: u16 = 4;

/// The delay line, running until dropped (which removes the rules and
/// lets every packet still held go at once).
pub struct SlowNetwork {
    ns: Vec<String>,
    stop: Arc<AtomicBool>,
    handle: Option<JoinHandle<u64>>,
    pub delay: Duration,
}

impl Lab {
    /// Adds `delay` to every IPv4 packet between any two of the three
    /// nodes, each way (a round trip between two nodes takes `2 × delay`
    /// more); the client's traffic is not delayed. Panics, saying why, if
    /// it cannot (no `iptables`, no queue).
    pub fn slow_network(&self, delay: Duration) -> SlowNetwork {
        assert!(
            find_in_path("iptables").is_some(),
            "`iptables` is needed for the NFQUEUE delay line (the kernel has no netem): apt-get install iptables"
        );
        let ns: Vec<String> = NODES.iter().map(|&n| self.ns(n)).collect();
        let stop = Arc::new(AtomicBool::new(false));
        let (tx, rx) = mpsc::channel();
        let (names, flag) = (ns.clone(), stop.clone());
        let handle = std::thread::spawn(move || {
            let socks: io::Result<Vec<OwnedFd>> = names
                .iter()
                .map(|n| netns::enter(n).and_then(|()| bind_queue()))
                .collect();
            match socks {
                Ok(s) => {
                    let _ = tx.send(Ok(()));
                    run(&s, delay, &flag)
                }
                Err(e) => {
                    let _ = tx.send(Err(e.to_string()));
                    0
                }
            }
        });
        let ready = rx.recv().unwrap_or_else(|_| Err("its thread died".into()));
        let line = SlowNetwork {
            ns,
            stop,
            handle: Some(handle),
            delay,
        };
        if let Err(why) = ready {
            panic!("delay line: cannot bind the netfilter queue: {why}");
        }
        for n in NODES {
            for peer in NODES.into_iter().filter(|&p| p != n) {
                let args = rule("-A", peer);
                let args: Vec<&str> = args.iter().map(String::as_str).collect();
                let o = self.run_node(n, &args);
                assert!(
                    o.status.success(),
                    "delay line on n{n}: iptables: {}",
                    String::from_utf8_lossy(&o.stderr).trim()
                );
            }
        }
        line
    }

    /// The median of `count` `PING` round trips from node `from` to node
    /// `to`'s data server, over one connection: what the delay line adds,
    /// measured.
    pub fn ping_rtt(&self, from: usize, to: usize, count: usize) -> Duration {
        let ns = self.ns(from);
        let url = match &self.opts.data_password {
            Some(pw) => format!("redis://:{pw}@{}:6379/", node_ip(to)),
            None => format!("redis://{}:6379/", node_ip(to)),
        };
        let t = std::thread::spawn(move || -> Result<Duration, String> {
            netns::enter(&ns).map_err(|e| e.to_string())?;
            let c = redis::Client::open(url).map_err(|e| e.to_string())?;
            let mut c = c
                .get_connection_with_timeout(Duration::from_secs(5))
                .map_err(|e| e.to_string())?;
            let mut v: Vec<Duration> = (0..count.max(1))
                .map(|_| {
                    let t = Instant::now();
                    redis::cmd("PING")
                        .query::<String>(&mut c)
                        .map(|_| t.elapsed())
                })
                .collect::<Result<_, _>>()
                .map_err(|e| e.to_string())?;
            v.sort();
            Ok(v[v.len() / 2])
        });
        t.join()
            .expect("the PING thread panicked")
            .unwrap_or_else(|e| panic!("PING n{from} -> n{to}: {e}"))
    }
}

/// The iptables arguments adding (`-A`) or deleting (`-D`) the rule that
/// queues a node's packets to `peer`.
fn rule(op: &str, peer: usize) -> Vec<String> {
    let peer = format!("{}/32", node_ip(peer));
    [
        "iptables",
        "-w",
        "-t",
        "mangle",
        op,
        "OUTPUT",
        "-d",
        &peer,
        "-j",
        "NFQUEUE",
        "--queue-num",
    ]
    .iter()
    .map(|s| s.to_string())
    .chain([QUEUE.to_string()])
    .collect()
}

impl SlowNetwork {
    /// Stops delaying: the rules go first, then every held packet is let
    /// go; returns how many packets were delayed.
    pub fn stop(mut self) -> u64 {
        self.finish()
    }

    fn finish(&mut self) -> u64 {
        for (i, ns) in self.ns.iter().enumerate() {
            for peer in NODES.into_iter().filter(|&p| p != i + 1) {
                let mut args = vec!["netns".to_string(), "exec".into(), ns.clone()];
                args.extend(rule("-D", peer));
                let _ = std::process::Command::new("ip").args(&args).output();
            }
        }
        self.stop.store(true, Ordering::Relaxed);
        self.handle.take().map_or(0, |h| h.join().unwrap_or(0))
    }
}

impl Drop for SlowNetwork {
    fn drop(&mut self) {
        if self.handle.is_some() {
            self.finish();
        }
    }
}

/// A netlink socket bound to queue [`QUEUE`] of the calling thread's
/// namespace, copying metadata only.
fn bind_queue() -> io::Result<OwnedFd> {
    // SAFETY: plain syscalls; the fd is owned at once.
    let fd = unsafe {
        libc::socket(
            libc::AF_NETLINK,
            libc::SOCK_RAW | libc::SOCK_CLOEXEC,
            NETLINK_NETFILTER,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fd was just returned by socket(2).
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    // SAFETY: an all-zero sockaddr_nl is valid; nl_pid 0 lets the kernel pick.
    let mut sa: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
    sa.nl_family = libc::AF_NETLINK as u16;
    let len = std::mem::size_of::<libc::sockaddr_nl>() as u32;
    // SAFETY: sa is a valid sockaddr_nl of `len` bytes.
    if unsafe {
        libc::bind(
            fd.as_raw_fd(),
            &sa as *const _ as *const libc::sockaddr,
            len,
        )
    } != 0
    {
        return Err(io::Error::last_os_error());
    }
    let big: libc::c_int = 8 << 20;
    // SAFETY: an int option. Root may exceed rmem_max (FORCE).
    unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVBUFFORCE,
            &big as *const _ as *const libc::c_void,
            4,
        );
    }
    let mut params = 0xffffu32.to_be_bytes().to_vec();
    params.push(NFQNL_COPY_META);
    let config: [(u16, Vec<u8>); 3] = [
        (NFQA_CFG_CMD, vec![NFQNL_CFG_CMD_BIND, 0, 0, 0]),
        (NFQA_CFG_PARAMS, params),
        (NFQA_CFG_QUEUE_MAXLEN, QUEUE_MAXLEN.to_be_bytes().to_vec()),
    ];
    for (kind, payload) in config {
        send(
            &fd,
            &message(NFQNL_MSG_CONFIG, NLM_F_REQUEST | NLM_F_ACK, kind, &payload),
        )?;
        expect_ack(&fd)?;
    }
    Ok(fd)
}

/// One nfnetlink queue message with one attribute.
fn message(kind: u16, flags: u16, attr: u16, payload: &[u8]) -> Vec<u8> {
    let mut b = vec![0u8; 16];
    b.extend([libc::AF_UNSPEC as u8, 0]);
    b.extend(QUEUE.to_be_bytes());
    b.extend(((4 + payload.len()) as u16).to_ne_bytes());
    b.extend(attr.to_ne_bytes());
    b.extend(payload);
    while !b.len().is_multiple_of(4) {
        b.push(0);
    }
    let len = b.len() as u32;
    b[0..4].copy_from_slice(&len.to_ne_bytes());
    b[4..6].copy_from_slice(&((NFNL_SUBSYS_QUEUE << 8) | kind).to_ne_bytes());
    b[6..8].copy_from_slice(&flags.to_ne_bytes());
    b
}

fn send(fd: &OwnedFd, msg: &[u8]) -> io::Result<()> {
    // SAFETY: an all-zero sockaddr_nl addresses the kernel.
    let mut sa: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
    sa.nl_family = libc::AF_NETLINK as u16;
    // SAFETY: msg and sa are valid for the lengths given.
    let r = unsafe {
        libc::sendto(
            fd.as_raw_fd(),
            msg.as_ptr() as *const libc::c_void,
            msg.len(),
            0,
            &sa as *const _ as *const libc::sockaddr,
            std::mem::size_of::<libc::sockaddr_nl>() as u32,
        )
    };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Reads one datagram (non-blocking if `wait` is false): `Ok(None)` when
/// there is none.
fn recv(fd: &OwnedFd, buf: &mut [u8], wait: bool) -> io::Result<Option<usize>> {
    let flags = if wait { 0 } else { libc::MSG_DONTWAIT };
    // SAFETY: buf is valid for its length.
    let r = unsafe {
        libc::recv(
            fd.as_raw_fd(),
            buf.as_mut_ptr() as *mut libc::c_void,
            buf.len(),
            flags,
        )
    };
    if r < 0 {
        let e = io::Error::last_os_error();
        return match e.kind() {
            io::ErrorKind::WouldBlock => Ok(None),
            _ => Err(e),
        };
    }
    Ok(Some(r as usize))
}

/// The netlink messages in one datagram: (type, the bytes after the
/// 16-byte header).
fn messages(mut b: &[u8]) -> Vec<(u16, &[u8])> {
    let mut out = Vec::new();
    while b.len() >= 16 {
        let len = u32::from_ne_bytes(b[0..4].try_into().expect("4 bytes")) as usize;
        if len < 16 || len > b.len() {
            break;
        }
        let kind = u16::from_ne_bytes([b[4], b[5]]);
        out.push((kind, &b[16..len]));
        b = &b[len.next_multiple_of(4).min(b.len())..];
    }
    out
}

/// Waits for the kernel's answer to a request sent with `NLM_F_ACK`.
fn expect_ack(fd: &OwnedFd) -> io::Result<()> {
    let mut buf = vec![0u8; 8192];
    let n = recv(fd, &mut buf, true)?.unwrap_or(0);
    for (kind, body) in messages(&buf[..n]) {
        if kind == NLMSG_ERROR && body.len() >= 4 {
            let code = i32::from_ne_bytes(body[0..4].try_into().expect("4 bytes"));
            if code != 0 {
                return Err(io::Error::from_raw_os_error(-code));
            }
            return Ok(());
        }
    }
    Err(io::Error::other("no acknowledgement from nfnetlink_queue"))
}

/// The packet id of a queued-packet message (after its 16-byte netlink
/// header), if it has one.
fn packet_id(body: &[u8]) -> Option<u32> {
    let mut a = body.get(4..)?;
    while a.len() >= 4 {
        let len = u16::from_ne_bytes([a[0], a[1]]) as usize;
        let kind = u16::from_ne_bytes([a[2], a[3]]) & 0x3fff;
        if len < 4 || len > a.len() {
            return None;
        }
        if kind == NFQA_PACKET_HDR && len >= 8 {
            return Some(u32::from_be_bytes(a[4..8].try_into().expect("4 bytes")));
        }
        a = &a[len.next_multiple_of(4).min(a.len())..];
    }
    None
}

/// Holds every queued packet `delay`, then accepts it, until `stop`;
/// then accepts what is left. Returns how many packets it delayed.
fn run(socks: &[OwnedFd], delay: Duration, stop: &AtomicBool) -> u64 {
    let mut held: VecDeque<(usize, u32, Instant)> = VecDeque::new();
    let mut buf = vec![0u8; 1 << 16];
    let mut count = 0u64;
    let accept = |i: usize, id: u32| {
        let mut v = NF_ACCEPT.to_be_bytes().to_vec();
        v.extend(id.to_be_bytes());
        let _ = send(
            &socks[i],
            &message(NFQNL_MSG_VERDICT, NLM_F_REQUEST, NFQA_VERDICT_HDR, &v),
        );
    };
    loop {
        let stopping = stop.load(Ordering::Relaxed);
        let now = Instant::now();
        while let Some(&(i, id, due)) = held.front() {
            if due > now && !stopping {
                break;
            }
            accept(i, id);
            held.pop_front();
        }
        if stopping {
            return count;
        }
        let wait = held
            .front()
            .map_or(Duration::from_millis(20), |h| {
                h.2.saturating_duration_since(now)
            })
            .min(Duration::from_millis(20));
        let mut fds: Vec<libc::pollfd> = socks
            .iter()
            .map(|s| libc::pollfd {
                fd: s.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            })
            .collect();
        let ts = libc::timespec {
            tv_sec: 0,
            tv_nsec: wait.as_nanos() as libc::c_long,
        };
        // SAFETY: fds is a valid array of pollfd; no signal mask change.
        unsafe { libc::ppoll(fds.as_mut_ptr(), fds.len() as _, &ts, std::ptr::null()) };
        for (i, p) in fds.iter().enumerate() {
            if p.revents == 0 {
                continue;
            }
            while let Ok(Some(n)) = recv(&socks[i], &mut buf, false) {
                let at = Instant::now();
                for (kind, body) in messages(&buf[..n]) {
                    if kind == (NFNL_SUBSYS_QUEUE << 8) | NFQNL_MSG_PACKET {
                        if let Some(id) = packet_id(body) {
                            held.push_back((i, id, at + delay));
                            count += 1;
                        }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_and_packet_ids() {
        let m = message(NFQNL_MSG_VERDICT, NLM_F_REQUEST, NFQA_VERDICT_HDR, &[0; 8]);
        assert_eq!(m.len(), 16 + 4 + 4 + 8);
        assert_eq!(
            u32::from_ne_bytes(m[0..4].try_into().unwrap()) as usize,
            m.len()
        );
        assert_eq!(u16::from_ne_bytes([m[4], m[5]]), (3 << 8) | 1);
        // A queued packet: nfgenmsg, then NFQA_PACKET_HDR (id 7, proto, hook).
        let mut body = vec![2, 0, 0, 0];
        body.extend(11u16.to_ne_bytes());
        body.extend(NFQA_PACKET_HDR.to_ne_bytes());
        body.extend([0, 0, 0, 7, 8, 0, 3, 0]);
        let mut dgram = vec![0u8; 16];
        dgram.extend(&body);
        let len = dgram.len() as u32;
        dgram[0..4].copy_from_slice(&len.to_ne_bytes());
        let got = messages(&dgram);
        assert_eq!(got.len(), 1);
        assert_eq!(packet_id(got[0].1), Some(7));
        assert_eq!(packet_id(&[0, 0]), None);
    }
}

//! Frames on the client's segment: tcpdump in the client namespace
//! capturing ARP and ICMPv6, its lines parsed into [`Frame`]s, and the
//! judgements tests make of them (gratuitous ARP in both forms,
//! unsolicited neighbour advertisements).

use std::fs;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crate::command::signal;
use crate::{wait_until, Lab};

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
    pub(crate) dst_mac: String,
    pub kind: FrameKind,
    /// ARP request: the address asked for ("who-has"); ARP reply: the
    /// address announced ("X is-at"); neighbour advertisement/solicitation:
    /// the target address.
    pub(crate) ip: Option<String>,
    /// ARP request: the sender's address ("tell"); ARP reply: same as `ip`.
    pub(crate) sender_ip: Option<String>,
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

    /// An IP frame's (source, destination) addresses, as tcpdump printed
    /// them after the link-layer header (with a port for TCP and UDP).
    pub fn ip_pair(&self) -> Option<(String, String)> {
        let (_, rest) = self.line.split_once(" length ")?;
        let (_, rest) = rest.split_once(": ")?;
        let mut w = rest.split_whitespace();
        let src = w.next()?;
        (w.next()? == ">").then_some(())?;
        let dst = w.next()?.trim_end_matches(':');
        Some((src.to_string(), dst.to_string()))
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
fn parse_tcpdump_line(line: &str) -> Option<Frame> {
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
        Capture::start_on(lab, "eth0", "arp or icmp6")
    }

    /// Starts tcpdump on the client's `iface` with capture filter `filter`
    /// and returns once it is capturing.
    pub fn start_on(lab: &Lab, iface: &str, filter: &str) -> Capture {
        let n = CAPTURES.fetch_add(1, Ordering::Relaxed);
        let out = lab.dir.join(format!("capture-{n}.txt"));
        let err = lab.dir.join(format!("capture-{n}.err"));
        let f = fs::File::create(&out).expect("lab: create capture file");
        let e = fs::File::create(&err).expect("lab: create capture err file");
        let child = Command::new("ip")
            .args(["netns", "exec", &lab.ns_client()])
            .args([
                "tcpdump",
                "-i",
                iface,
                "-n",
                "-e",
                "-l",
                "-tt",
                "--time-stamp-precision=nano",
                "-U",
                filter,
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
            signal(c.id(), "INT");
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

    /// Stops the capture once what it has seen satisfies `done`, or after
    /// `max`: announcements may be repeated or trail the address change,
    /// and waiting the full time on success would only slow the test down.
    pub fn stop_when(self, max: Duration, done: impl Fn(&[Frame]) -> bool) -> Vec<Frame> {
        let deadline = Instant::now() + max;
        loop {
            std::thread::sleep(Duration::from_millis(300));
            let seen = self.peek();
            if done(&seen) || Instant::now() >= deadline {
                return self.stop();
            }
        }
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

static CAPTURES: AtomicUsize = AtomicUsize::new(0);

/// Whether `frames` hold gratuitous ARP for `addr` from `mac` in both the
/// request and the reply form.
pub fn has_garp_forms(frames: &[Frame], addr: &str, mac: &str) -> bool {
    let from = |kind| {
        frames
            .iter()
            .any(|f| f.kind == kind && f.src_mac == mac && f.is_garp_for(addr))
    };
    from(FrameKind::ArpRequest) && from(FrameKind::ArpReply)
}

/// The lines of `frames`, for messages.
pub fn frame_lines<'a>(frames: impl IntoIterator<Item = &'a Frame>) -> Vec<&'a str> {
    frames.into_iter().map(|f| f.line.as_str()).collect()
}

/// The lines of the ARP frames among `frames`, for messages.
pub fn arp_lines(frames: &[Frame]) -> Vec<&str> {
    frame_lines(
        frames
            .iter()
            .filter(|f| matches!(f.kind, FrameKind::ArpRequest | FrameKind::ArpReply)),
    )
}

#[cfg(test)]
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

        let ping = f("1795424360.000000001 26:4a:2a:35:1c:1a > 9a:f6:d4:e0:46:dd, ethertype IPv4 (0x0800), length 98: 192.0.2.11 > 192.0.2.50: ICMP echo request, id 7, seq 1, length 64");
        assert_eq!(ping.kind, FrameKind::Other);
        assert_eq!(
            ping.ip_pair(),
            Some(("192.0.2.11".into(), "192.0.2.50".into()))
        );
        let ping6 = f("1795424360.000000002 26:4a:2a:35:1c:1a > 9a:f6:d4:e0:46:dd, ethertype IPv6 (0x86dd), length 118: 2001:2::11 > 2001:2::50: ICMP6, echo request, id 9, seq 1, length 64");
        assert_eq!(
            ping6.ip_pair(),
            Some(("2001:2::11".into(), "2001:2::50".into()))
        );
        assert_eq!(req.ip_pair(), None);
    }
}

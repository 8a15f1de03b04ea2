//! The facts the watcher reports to [`Metrics`](super::Metrics) and to the
//! notify commands: which VIP, what was done, what the Sentinels said, why a
//! pass ran. Plain values with fixed spellings (they become label values and
//! environment variables); no I/O and no policy.

use std::fmt;
use std::net::IpAddr;

use crate::config::VipConfig;
use crate::sentinel::{Report, Verdict};

/// One `[[vip]]`: its labels in every per-VIP metric and its notify key.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct VipId {
    pub master: String,
    pub vip: IpAddr,
    pub interface: String,
}

impl VipId {
    pub fn new(master: &str, vip: IpAddr, interface: &str) -> VipId {
        VipId {
            master: master.to_string(),
            vip,
            interface: interface.to_string(),
        }
    }
}

impl From<&VipConfig> for VipId {
    fn from(v: &VipConfig) -> VipId {
        VipId::new(&v.master, v.address.ip, &v.interface)
    }
}

impl fmt::Display for VipId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {} on {}", self.master, self.vip, self.interface)
    }
}

/// A change a pass made (or refused to make) for one VIP. `Keep` and
/// `Nothing` are not changes and have no kind.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ActionKind {
    Acquire,
    Release,
    Refuse,
}

impl ActionKind {
    pub const ALL: [ActionKind; 3] = [ActionKind::Acquire, ActionKind::Release, ActionKind::Refuse];

    pub fn as_str(self) -> &'static str {
        match self {
            ActionKind::Acquire => "acquire",
            ActionKind::Release => "release",
            ActionKind::Refuse => "refuse",
        }
    }

    /// The kind of a decided action, with the refusal's reason; `None`
    /// for `Keep` and `Nothing`.
    pub fn of(a: &crate::decide::Action) -> Option<(ActionKind, String)> {
        use crate::decide::Action;
        match a {
            Action::Acquire => Some((ActionKind::Acquire, String::new())),
            Action::Release => Some((ActionKind::Release, String::new())),
            Action::Refuse(why) => Some((ActionKind::Refuse, why.clone())),
            Action::Keep | Action::Nothing | Action::Wait(_) => None,
        }
    }
}

/// What the Sentinels said about one master in one pass.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Said {
    /// `ip:port` (`[ip6]:port`, or `name:port` with announce-hostnames)
    /// of the master with the highest config-epoch, if any Sentinel knew it.
    pub master: Option<String>,
    pub epoch: Option<u64>,
    pub answered: usize,
    pub configured: usize,
    pub majority: bool,
}

impl From<&Verdict> for Said {
    fn from(v: &Verdict) -> Said {
        Said {
            master: v.master.as_ref().map(address),
            epoch: v.master.as_ref().map(|r| r.epoch),
            answered: v.answered,
            configured: v.total,
            majority: v.majority(),
        }
    }
}

/// `ip:port`, with IPv6 in brackets so that the port stays apart.
fn address(r: &Report) -> String {
    match &r.host {
        crate::hookargs::Host::Ip(IpAddr::V6(ip)) => format!("[{ip}]:{}", r.port),
        h => format!("{h}:{}", r.port),
    }
}

/// Why a pass ran (the `trigger` label).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Trigger {
    /// A Sentinel pub/sub event.
    Event,
    Timer,
    /// A kernel address or link event.
    Kernel,
    /// A (re)subscription to a Sentinel: anything published meanwhile is lost.
    Reconnect,
    /// A hook handed its call over the control socket.
    ControlSocket,
    Promotion,
    Start,
    Reload,
}

impl Trigger {
    #[cfg(test)]
    pub const ALL: [Trigger; 8] = [
        Trigger::Event,
        Trigger::Timer,
        Trigger::Kernel,
        Trigger::Reconnect,
        Trigger::ControlSocket,
        Trigger::Promotion,
        Trigger::Start,
        Trigger::Reload,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Trigger::Event => "event",
            Trigger::Timer => "timer",
            Trigger::Kernel => "kernel",
            Trigger::Reconnect => "reconnect",
            Trigger::ControlSocket => "control_socket",
            Trigger::Promotion => "promotion",
            Trigger::Start => "start",
            Trigger::Reload => "reload",
        }
    }

    /// The trigger spelled as [`as_str`](Trigger::as_str) does.
    #[cfg(test)]
    pub fn parse(s: &str) -> Option<Trigger> {
        Trigger::ALL.into_iter().find(|t| t.as_str() == s)
    }
}

/// What failed (the `kind` label of the error counter). A closed set, so a
/// message can never become a label and the series stay few.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// The lock file could not be taken.
    Lock,
    /// A netlink dump, add or delete failed.
    Netlink,
    /// A Sentinel did not answer, or answered what is not a Sentinel's reply.
    Sentinel,
    /// The master's name could not be resolved.
    Resolve,
    /// An announcement round could not be sent.
    Announce,
    /// A notify command failed, timed out or could not start.
    Notify,
    /// The control socket failed to answer a hook.
    Control,
}

impl ErrorKind {
    pub const ALL: [ErrorKind; 7] = [
        ErrorKind::Lock,
        ErrorKind::Netlink,
        ErrorKind::Sentinel,
        ErrorKind::Resolve,
        ErrorKind::Announce,
        ErrorKind::Notify,
        ErrorKind::Control,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::Lock => "lock",
            ErrorKind::Netlink => "netlink",
            ErrorKind::Sentinel => "sentinel",
            ErrorKind::Resolve => "resolve",
            ErrorKind::Announce => "announce",
            ErrorKind::Notify => "notify",
            ErrorKind::Control => "control",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hookargs::Host;

    fn report(h: &str, epoch: u64) -> Option<Report> {
        Some(Report {
            host: Host::parse(h).unwrap(),
            port: 6379,
            epoch,
            failover: None,
        })
    }

    #[test]
    fn said_from_a_verdict() {
        let rows = [
            (report("192.0.2.12", 4), 2, 3, "192.0.2.12:6379", true),
            (report("2001:2::12", 5), 1, 3, "[2001:2::12]:6379", false),
            (
                report("redis-b.example", 6),
                3,
                3,
                "redis-b.example:6379",
                true,
            ),
        ];
        for (master, answered, total, addr, majority) in rows {
            let epoch = master.as_ref().unwrap().epoch;
            let s = Said::from(&Verdict {
                master,
                answered,
                total,
                failover: None,
            });
            assert_eq!(s.master.as_deref(), Some(addr));
            assert_eq!(s.epoch, Some(epoch));
            assert_eq!(
                (s.answered, s.configured, s.majority),
                (answered, total, majority)
            );
        }
        let none = Said::from(&Verdict {
            master: None,
            answered: 0,
            total: 3,
            failover: None,
        });
        assert_eq!(
            none,
            Said {
                configured: 3,
                ..Said::default()
            }
        );
    }

    #[test]
    fn spellings_are_fixed_and_round_trip() {
        let triggers: Vec<&str> = Trigger::ALL.iter().map(|t| t.as_str()).collect();
        assert_eq!(
            triggers,
            [
                "event",
                "timer",
                "kernel",
                "reconnect",
                "control_socket",
                "promotion",
                "start",
                "reload"
            ]
        );
        for t in Trigger::ALL {
            assert_eq!(Trigger::parse(t.as_str()), Some(t));
        }
        assert_eq!(Trigger::parse("Timer"), None);
        let kinds: Vec<&str> = ActionKind::ALL.iter().map(|k| k.as_str()).collect();
        assert_eq!(kinds, ["acquire", "release", "refuse"]);
        use crate::decide::Action;
        assert_eq!(ActionKind::of(&Action::Keep), None);
        assert_eq!(ActionKind::of(&Action::Nothing), None);
        assert_eq!(
            ActionKind::of(&Action::Refuse("why".into())),
            Some((ActionKind::Refuse, "why".to_string()))
        );
        assert_eq!(
            ActionKind::of(&Action::Acquire),
            Some((ActionKind::Acquire, String::new()))
        );
    }
}

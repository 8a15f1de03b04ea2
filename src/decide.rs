//! The decision core: given what Sentinel reports, which addresses are local
//! and what this host holds, return what to do. No I/O, no clocks, no
//! globals: everything it needs arrives in the [`Facts`], so it is tested
//! as a table, without root.

use std::collections::HashSet;
use std::fmt;
use std::net::IpAddr;
use std::time::Duration;

use crate::config::Policy;
use crate::hookargs::Host;

/// How the configured VIP is present on this host.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Presence {
    Absent,
    /// On the configured interface with the configured prefix, and ours:
    /// tagged by us, or a secondary address (as older recipes added it).
    Held,
    /// Present in a form that must not be touched: another prefix, another
    /// interface, or a primary address we did not add (the host's own).
    Foreign(String),
}

/// Where Sentinel says the master is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Master {
    /// The master's addresses (a hostname may resolve to several).
    Known(Vec<IpAddr>),
    /// The replica a failover's leader is promoting, confirmed by that
    /// leader and by its own `ROLE`, before the Sentinels announce it.
    /// Placed like `Known`; `epoch` is the lowest its failover can have:
    /// Sentinel answers of that epoch or newer take over.
    Promoted { ips: Vec<IpAddr>, epoch: u64 },
    /// An address no single host can claim ([`unfit`] says why): refused
    /// on every host, where taking it would make every host the holder.
    Unfit(String),
    /// No answer to trust; `lost_for` is how long a Sentinel majority has
    /// been silent (`None`: not measured, as in one-shot commands).
    Unknown { lost_for: Option<Duration> },
}

impl Master {
    /// The master's addresses, when it is placed (known or promoted).
    pub fn ips(&self) -> Option<&[IpAddr]> {
        match self {
            Master::Known(ips) | Master::Promoted { ips, .. } => Some(ips),
            Master::Unknown { .. } | Master::Unfit(_) => None,
        }
    }

    /// Whether the master is one of this host's own addresses. The one
    /// place that says what "local" means.
    pub fn is_local(&self, local: &HashSet<IpAddr>) -> bool {
        self.ips()
            .is_some_and(|ips| ips.iter().any(|ip| local.contains(ip)))
    }
}

/// Everything [`decide`] looks at, for one VIP.
pub struct Facts<'a> {
    pub vip: IpAddr,
    pub master: &'a Master,
    /// This host's addresses on every interface, never counting any VIP.
    pub local: &'a HashSet<IpAddr>,
    pub presence: &'a Presence,
    /// Why adding the VIP now would make it its subnet's primary address
    /// on its interface (no host address of that subnet there yet), if it
    /// would.
    pub would_be_primary: Option<&'a str>,
    pub on_sentinel_loss: Policy,
    pub sentinel_loss_after: Duration,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// The master is here and the VIP is not: add it and announce it.
    Acquire,
    /// The master is here and the VIP already is: keep it (announcing again
    /// is the caller's choice).
    Keep,
    /// The master is elsewhere and the VIP is here: delete it.
    Release,
    /// Nothing here to change.
    Nothing,
    /// The master is here, but the VIP cannot be added yet (say why): an
    /// IPv4 VIP added before the host's own address in its subnet would be
    /// the primary, the host's source address, and deleting it later would
    /// take the host's secondaries with it. A later pass takes it.
    Wait(String),
    /// Acting would be wrong whatever the retry: say why, touch nothing.
    Refuse(String),
}

pub fn decide(v: &Facts) -> Action {
    if let Presence::Foreign(why) = v.presence {
        return Action::Refuse(why.clone());
    }
    let held = *v.presence == Presence::Held;
    match v.master {
        Master::Unfit(why) => Action::Refuse(why.clone()),
        m if m.ips().is_some_and(|ips| ips.contains(&v.vip)) => Action::Refuse(format!(
            "Sentinel names the VIP {} itself as the master address; set replica-announce-ip on the Redis servers",
            v.vip
        )),
        Master::Known(_) | Master::Promoted { .. } => match (v.master.is_local(v.local), held) {
            (true, true) => Action::Keep,
            (true, false) => match v.would_be_primary {
                Some(why) => Action::Wait(why.to_string()),
                None => Action::Acquire,
            },
            (false, true) => Action::Release,
            (false, false) => Action::Nothing,
        },
        Master::Unknown { lost_for } => {
            let lost = lost_for.is_some_and(|d| d >= v.sentinel_loss_after);
            if held && lost && v.on_sentinel_loss == Policy::Release {
                Action::Release
            } else {
                Action::Nothing
            }
        }
    }
}

/// What a one-shot run (a hook acting itself, `reconcile`) may act on
/// for one master, from the Sentinels' combined answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Basis {
    /// The Sentinels' master.
    Sentinels(Master),
    /// No Sentinel knows the master (none answered, or none is
    /// configured): a hook's arguments decide; `reconcile` has nothing.
    NoAnswer,
    /// Some answered, not a majority of those configured.
    Minority { answered: usize, total: usize },
}

/// The basis of a one-shot run: `answered` Sentinels of `total` know the
/// master, whose combined answer is `master`. "Nothing is announced
/// unless a Sentinel majority confirms" holds here too: a rebooted old
/// master still cut off, whose own Sentinel still names it, must not take
/// the VIP back, and a late retry must not move it on one Sentinel's
/// word. A minority can be right (the others down, not cut off), so the
/// run touches nothing and fails transiently: Sentinel retries the hook,
/// and a watcher or a retry with a majority converges. With no answer at
/// all the hook's arguments decide, as the README says: they are the word
/// of a Sentinel that saw the failover a majority voted for.
pub fn basis(answered: usize, total: usize, master: Master) -> Basis {
    match master {
        Master::Unknown { .. } => Basis::NoAnswer,
        m if answered > total / 2 => Basis::Sentinels(m),
        _ => Basis::Minority { answered, total },
    }
}

impl fmt::Display for Basis {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Basis::Sentinels(m) => write!(f, "{m:?}"),
            Basis::NoAnswer => f.write_str("no Sentinel answered"),
            Basis::Minority { answered, total } => write!(
                f,
                "only {answered} of {total} Sentinels answered: a minority places, releases and announces nothing"
            ),
        }
    }
}

/// Whether a later announcement round may go out for a VIP a one-shot run
/// (hook, `reconcile`) took or kept: it must still be here, and when the
/// Sentinels answer a majority must still place its master here. A
/// failover during the rounds leaves the VIP on the old host until that
/// host's own hook runs (seconds later for an observer); a round sent
/// meanwhile would pull clients back from the new master until its next
/// round. With no answer, the run's own basis stands (it may have acted
/// on its arguments); a minority's answer confirms nothing.
pub fn announce_again(present: bool, basis: &Basis, local: &HashSet<IpAddr>) -> bool {
    present
        && match basis {
            Basis::Sentinels(m) => m.is_local(local),
            Basis::NoAnswer => true,
            Basis::Minority { .. } => false,
        }
}

/// Why the address Sentinel names for a master cannot say which host it
/// is on, if it cannot: one every host has (loopback, `localhost`), or
/// none (unspecified, multicast, broadcast, link-local, which needs an
/// interface Sentinel does not give). Taking the VIP wherever such an
/// address is local would put it on every host. A name that resolves to a
/// loopback address is fine: Debian's `/etc/hosts` maps the host's own
/// name to 127.0.1.1, and only the master itself resolves its name so.
/// A private address every host shares (a Docker bridge's 172.17.0.1)
/// cannot be told from the host's own by one host: that needs
/// `replica-announce-ip` set right, as the README says.
pub fn unfit(named: &Host) -> Option<String> {
    let kind = match named {
        Host::Ip(ip) => match ip.to_canonical() {
            a if a.is_loopback() => "a loopback address, which every host has",
            a if a.is_unspecified() => "the unspecified address",
            a if a.is_multicast() => "a multicast address",
            IpAddr::V4(a) if a.is_broadcast() => "the broadcast address",
            IpAddr::V4(a) if a.is_link_local() => "a link-local address",
            IpAddr::V6(a) if a.segments()[0] & 0xffc0 == 0xfe80 => "a link-local address",
            _ => return None,
        },
        Host::Name(n) => {
            let n = n.trim_end_matches('.').to_ascii_lowercase();
            if n != "localhost" && !n.ends_with(".localhost") {
                return None;
            }
            "a name for loopback, which every host has"
        }
    };
    Some(format!(
        "Sentinel names {named} as the master address, {kind}; set replica-announce-ip on the Redis servers to each host's own address"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    /// Issue 22, defect 4: a minority's answer places nothing, whatever
    /// it says; only with no answer at all do a hook's arguments decide.
    #[test]
    fn a_one_shot_run_acts_on_a_majority_only() {
        let here = Master::Known(vec![ip("192.0.2.11")]);
        let none = Master::Unknown { lost_for: None };
        let minority = |answered, total| Basis::Minority { answered, total };
        #[rustfmt::skip]
        let rows = [
            (3, 3, here.clone(), Basis::Sentinels(here.clone())),
            (2, 3, here.clone(), Basis::Sentinels(here.clone())),
            (1, 3, here.clone(), minority(1, 3)),
            (2, 4, here.clone(), minority(2, 4)),
            (3, 5, here.clone(), Basis::Sentinels(here.clone())),
            (0, 3, none.clone(), Basis::NoAnswer),
            // No Sentinels configured: the arguments.
            (0, 0, none.clone(), Basis::NoAnswer),
            (1, 3, Master::Unfit("lo".into()), minority(1, 3)),
            (2, 3, Master::Unfit("lo".into()), Basis::Sentinels(Master::Unfit("lo".into()))),
        ];
        for (answered, total, m, want) in rows {
            assert_eq!(
                basis(answered, total, m.clone()),
                want,
                "{answered}/{total} {m:?}"
            );
        }
    }

    #[test]
    fn table() {
        let vip = ip("192.0.2.100");
        let local: HashSet<IpAddr> = [ip("192.0.2.11"), ip("2001:db8::11")].into();
        let here = Master::Known(vec![ip("192.0.2.11")]);
        let here6 = Master::Known(vec![ip("192.0.2.99"), ip("2001:db8::11")]);
        let there = Master::Known(vec![ip("192.0.2.12")]);
        let is_vip = Master::Known(vec![vip]);
        let promoted_here = Master::Promoted {
            ips: vec![ip("192.0.2.11")],
            epoch: 5,
        };
        let promoted_there = Master::Promoted {
            ips: vec![ip("192.0.2.12")],
            epoch: 5,
        };
        let silent = |ms: Option<u64>| Master::Unknown {
            lost_for: ms.map(Duration::from_millis),
        };
        let (a, h) = (Presence::Absent, Presence::Held);
        let f = Presence::Foreign("192.0.2.100/32 on eth1".into());
        use Action::*;
        use Policy::{Keep as K, Release as R};
        let refuse_vip = |a: &Action| matches!(a, Refuse(m) if m.contains("replica-announce-ip"));
        #[rustfmt::skip]
        let rows: Vec<(Master, &Presence, Policy, Action)> = vec![
            (here.clone(), &a, K, Acquire),
            (here.clone(), &h, K, Keep),
            (here6.clone(), &a, K, Acquire),
            (there.clone(), &h, K, Release),
            (there.clone(), &a, K, Nothing),
            (here.clone(), &f, K, Refuse("192.0.2.100/32 on eth1".into())),
            (there.clone(), &f, R, Refuse("192.0.2.100/32 on eth1".into())),
            (silent(None), &h, R, Nothing),
            (silent(Some(500)), &h, R, Nothing),
            (silent(Some(1000)), &h, R, Release),
            (silent(Some(99_999)), &h, K, Nothing),
            (silent(Some(99_999)), &a, R, Nothing),
            // A promotion followed before Sentinel announces it: placed
            // like a known master.
            (promoted_here.clone(), &a, K, Acquire),
            (promoted_here.clone(), &h, K, Keep),
            (promoted_there.clone(), &h, K, Release),
            (promoted_there.clone(), &a, K, Nothing),
            (promoted_here.clone(), &f, K, Refuse("192.0.2.100/32 on eth1".into())),
            // An address every host has: refused wherever the VIP is.
            (Master::Unfit("loopback".into()), &a, K, Refuse("loopback".into())),
            (Master::Unfit("loopback".into()), &h, R, Refuse("loopback".into())),
        ];
        for (i, (m, p, pol, want)) in rows.into_iter().enumerate() {
            let v = Facts {
                vip,
                master: &m,
                local: &local,
                presence: p,
                would_be_primary: None,
                on_sentinel_loss: pol,
                sentinel_loss_after: Duration::from_millis(1000),
            };
            assert_eq!(decide(&v), want, "row {i}");
        }
        let s = |m: &Master| Basis::Sentinels(m.clone());
        let minority = Basis::Minority {
            answered: 1,
            total: 3,
        };
        for (present, b, want) in [
            (true, s(&here), true),
            (true, s(&here6), true),
            (true, Basis::NoAnswer, true),
            (true, s(&there), false),
            (false, s(&here), false),
            (false, Basis::NoAnswer, false),
            (true, s(&promoted_here), true),
            (true, s(&promoted_there), false),
            (true, minority, false),
        ] {
            assert_eq!(announce_again(present, &b, &local), want, "{present} {b:?}");
        }
        let promoted_vip = Master::Promoted {
            ips: vec![vip],
            epoch: 5,
        };
        // The master here, the VIP not yet: it waits for the host's own
        // address rather than become the primary; held, it is kept.
        for (p, want) in [(&a, Wait("no host address".into())), (&h, Keep)] {
            let v = Facts {
                vip,
                master: &here,
                local: &local,
                presence: p,
                would_be_primary: Some("no host address"),
                on_sentinel_loss: K,
                sentinel_loss_after: Duration::from_millis(1000),
            };
            assert_eq!(decide(&v), want);
        }
        for (p, m) in [(&a, &is_vip), (&h, &is_vip), (&a, &promoted_vip)] {
            let v = Facts {
                vip,
                master: m,
                local: &local,
                presence: p,
                would_be_primary: None,
                on_sentinel_loss: K,
                sentinel_loss_after: Duration::from_millis(1000),
            };
            assert!(refuse_vip(&decide(&v)));
        }
    }
}

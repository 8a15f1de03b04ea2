//! Sentinel's pub/sub payloads, parsed and judged. Pure. A payload is a
//! hint that a pass should run, never a fact to act on: a hostile or broken
//! peer may publish anything, so only well-formed ones get that far.

use std::fmt;

use crate::hookargs::{parse_port, valid_master_name, Host};

/// What an event announces.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// `+switch-master`: every Sentinel, once it has the new configuration.
    SwitchMaster,
    /// `+promoted-slave`: the leader saw the replica report itself master.
    PromotedSlave,
}

/// The channels the watcher subscribes to, with what each announces.
pub const CHANNELS: [(&str, Kind); 2] = [
    ("+switch-master", Kind::SwitchMaster),
    ("+promoted-slave", Kind::PromotedSlave),
];

/// A well-formed event: which master, and the address it names (the new
/// master, or the replica being promoted).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Event {
    pub kind: Kind,
    pub master: String,
    pub addr: (Host, u16),
}

/// Why a payload was ignored; values shown escaped.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum EventError {
    #[error("unexpected channel `{}`", .0.escape_debug())]
    Channel(String),
    #[error("+switch-master wants 5 fields, got {0}")]
    SwitchFields(usize),
    #[error("{0} wants `slave <ip>:<port> <ip> <port> @ <name> <ip> <port>`")]
    InstanceFields(&'static str),
    #[error("bad address `{}`", .0.escape_debug())]
    Address(String),
    #[error("bad port `{}`", .0.escape_debug())]
    Port(String),
    #[error("bad master name `{}`", .0.escape_debug())]
    MasterName(String),
}

impl fmt::Display for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ch = CHANNELS
            .iter()
            .find(|(_, k)| *k == self.kind)
            .map_or("?", |(c, _)| c);
        write!(f, "{ch} {} {}:{}", self.master, self.addr.0, self.addr.1)
    }
}

fn host(s: &str) -> Result<Host, EventError> {
    Host::parse(s).ok_or_else(|| EventError::Address(s.into()))
}

fn port(s: &str) -> Result<u16, EventError> {
    parse_port(s).ok_or_else(|| EventError::Port(s.into()))
}

fn name(s: &str) -> Result<String, EventError> {
    if valid_master_name(s) {
        Ok(s.into())
    } else {
        Err(EventError::MasterName(s.into()))
    }
}

/// Parses a payload from one of [`CHANNELS`].
/// `+switch-master`: `<name> <old-ip> <old-port> <new-ip> <new-port>`.
/// A replica's event (sentinel.c's `%@`):
/// `slave <ip>:<port> <ip> <port> @ <name> <master-ip> <master-port>`.
pub fn parse_event(channel: &str, payload: &str) -> Result<Event, EventError> {
    let kind = CHANNELS
        .iter()
        .find(|(c, _)| *c == channel)
        .map(|(_, k)| *k)
        .ok_or_else(|| EventError::Channel(channel.into()))?;
    let f: Vec<&str> = payload.split(' ').collect();
    match kind {
        Kind::SwitchMaster => {
            if f.len() != 5 {
                return Err(EventError::SwitchFields(f.len()));
            }
            host(f[1])?;
            port(f[2])?;
            Ok(Event {
                kind,
                master: name(f[0])?,
                addr: (host(f[3])?, port(f[4])?),
            })
        }
        Kind::PromotedSlave => {
            if f.len() != 8 || f[0] != "slave" || f[4] != "@" {
                return Err(EventError::InstanceFields("+promoted-slave"));
            }
            host(f[6])?;
            port(f[7])?;
            Ok(Event {
                kind,
                master: name(f[5])?,
                addr: (host(f[2])?, port(f[3])?),
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn well_formed_payloads() {
        let e = parse_event("+switch-master", "mymaster 192.0.2.11 6379 192.0.2.12 6379").unwrap();
        assert_eq!(e.kind, Kind::SwitchMaster);
        assert_eq!(e.master, "mymaster");
        assert_eq!(e.addr, (Host::parse("192.0.2.12").unwrap(), 6379));
        assert_eq!(e.to_string(), "+switch-master mymaster 192.0.2.12:6379");
        let e = parse_event(
            "+promoted-slave",
            "slave 192.0.2.13:6379 192.0.2.13 6379 @ mymaster 192.0.2.11 6379",
        )
        .unwrap();
        assert_eq!(e.kind, Kind::PromotedSlave);
        assert_eq!(
            (e.master.as_str(), e.addr.0.to_string().as_str()),
            ("mymaster", "192.0.2.13")
        );
    }

    #[test]
    fn malformed_payloads_name_the_problem() {
        use EventError::*;
        let sw = "+switch-master";
        let pr = "+promoted-slave";
        #[rustfmt::skip]
        let cases: Vec<(&str, &str, EventError)> = vec![
            (sw, "", SwitchFields(1)),
            (sw, "mymaster 192.0.2.11 6379 192.0.2.12", SwitchFields(4)),
            (sw, "mymaster 192.0.2.11 6379 192.0.2.12 6379 extra", SwitchFields(6)),
            (sw, "mymaster 192.0.2.11 6379 999.0.2.12 6379", Address("999.0.2.12".into())),
            (sw, "mymaster 192.0.2.11 6379 192.0.2.12 0", Port("0".into())),
            (sw, "mymaster  192.0.2.11 6379 192.0.2.12 6379", SwitchFields(6)),
            (sw, "my\nmaster 192.0.2.11 6379 192.0.2.12 6379", MasterName("my\nmaster".into())),
            (sw, "-m 192.0.2.11 6379 192.0.2.12 6379", MasterName("-m".into())),
            (pr, "slave 192.0.2.13:6379 192.0.2.13 6379 mymaster 192.0.2.11 6379", InstanceFields(pr)),
            (pr, "sentinel 192.0.2.13:6379 192.0.2.13 6379 @ mymaster 192.0.2.11 6379", InstanceFields(pr)),
            ("+sdown", "master mymaster 192.0.2.11 6379", Channel("+sdown".into())),
        ];
        for (ch, p, want) in cases {
            let e = parse_event(ch, p).unwrap_err();
            assert_eq!(e, want, "{ch} {p:?}");
            assert!(!e.to_string().contains('\n'), "{e}");
        }
    }
}

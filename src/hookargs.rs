//! Validation of the seven arguments Sentinel passes to its
//! `client-reconfig-script`, and of the names and ports inside them. Pure:
//! it parses and judges, it does not resolve names or touch the network.

use std::ffi::OsString;
use std::fmt;
use std::net::IpAddr;

/// Anything longer is not something Sentinel sends; refusing it early keeps
/// a hostile 64 KiB argument out of logs and resolvers.
const MAX_ARG: usize = 255;

/// An address as Sentinel reports it: an IP, or a hostname when Sentinel
/// runs with `announce-hostnames yes`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Host {
    Ip(IpAddr),
    Name(String),
}

impl fmt::Display for Host {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Host::Ip(ip) => write!(f, "{ip}"),
            Host::Name(n) => f.write_str(n),
        }
    }
}

impl Host {
    pub fn parse(s: &str) -> Option<Host> {
        if let Ok(ip) = s.parse::<IpAddr>() {
            return Some(Host::Ip(ip));
        }
        // A dotted-quad look-alike that failed to parse is a bad IP, not a name.
        if s.split('.').all(|p| p.chars().all(|c| c.is_ascii_digit())) {
            return None;
        }
        valid_hostname(s).then(|| Host::Name(s.to_string()))
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    Leader,
    Observer,
}

/// A validated `client-reconfig-script` call.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HookCall {
    pub master: String,
    pub role: Role,
    pub from: (Host, u16),
    pub to: (Host, u16),
}

/// The seven arguments, in Sentinel's order.
const NAMES: [&str; 7] = [
    "MASTER",
    "ROLE",
    "STATE",
    "FROM_IP",
    "FROM_PORT",
    "TO_IP",
    "TO_PORT",
];

/// Why a call was refused: always permanent (a retry would pass the same
/// arguments). Each names the argument; values are shown escaped.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ArgError {
    #[error("hook takes 7 arguments (MASTER ROLE STATE FROM_IP FROM_PORT TO_IP TO_PORT), got {0}")]
    Count(usize),
    #[error("{0} is not valid UTF-8")]
    NotUtf8(&'static str),
    #[error("{arg} is {len} bytes long (at most {MAX_ARG})")]
    TooLong { arg: &'static str, len: usize },
    #[error("{arg} contains control character {c:?}")]
    Control { arg: &'static str, c: char },
    #[error("MASTER `{}` is not a valid master name", .0.escape_debug())]
    Master(String),
    #[error("ROLE `{0}` must be leader or observer")]
    Role(String),
    #[error("STATE `{0}` must be start")]
    State(String),
    #[error("{arg} `{value}` is not an IP address or hostname")]
    Host { arg: &'static str, value: String },
    #[error("{arg} `{value}` must be a port 1..=65535")]
    Port { arg: &'static str, value: String },
}

/// Parses exactly seven arguments; the error is one line naming the
/// argument.
pub fn parse(args: &[OsString]) -> Result<HookCall, ArgError> {
    if args.len() != 7 {
        return Err(ArgError::Count(args.len()));
    }
    let mut s: Vec<&str> = Vec::with_capacity(7);
    for (a, arg) in args.iter().zip(NAMES) {
        let v = a.to_str().ok_or(ArgError::NotUtf8(arg))?;
        if v.len() > MAX_ARG {
            return Err(ArgError::TooLong { arg, len: v.len() });
        }
        if let Some(c) = v.chars().find(|c| c.is_control()) {
            return Err(ArgError::Control { arg, c });
        }
        s.push(v);
    }
    if !valid_master_name(s[0]) {
        return Err(ArgError::Master(s[0].to_string()));
    }
    let role = match s[1] {
        "leader" => Role::Leader,
        "observer" => Role::Observer,
        r => return Err(ArgError::Role(r.to_string())),
    };
    // Sentinel documents `start` as the only state it passes.
    if s[2] != "start" {
        return Err(ArgError::State(s[2].to_string()));
    }
    let host = |i: usize| {
        Host::parse(s[i]).ok_or_else(|| ArgError::Host {
            arg: NAMES[i],
            value: s[i].to_string(),
        })
    };
    let port = |i: usize| {
        parse_port(s[i]).ok_or_else(|| ArgError::Port {
            arg: NAMES[i],
            value: s[i].to_string(),
        })
    };
    Ok(HookCall {
        master: s[0].to_string(),
        role,
        from: (host(3)?, port(4)?),
        to: (host(5)?, port(6)?),
    })
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Leader => "leader",
            Role::Observer => "observer",
        }
    }
}

/// Decimal 1..=65535 with no sign, space or leading zeros beyond one digit.
pub fn parse_port(s: &str) -> Option<u16> {
    if s.is_empty()
        || s.len() > 5
        || !s.bytes().all(|b| b.is_ascii_digit())
        || (s.len() > 1 && s.starts_with('0'))
    {
        return None;
    }
    s.parse::<u16>().ok().filter(|p| *p > 0)
}

/// Sentinel master names are single tokens in sentinel.conf; a leading `-`
/// would read as an option to any tool a name is passed on to.
pub fn valid_master_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= MAX_ARG
        && !s.starts_with('-')
        && s.chars()
            .all(|c| !c.is_control() && !c.is_whitespace() && c != '"' && c != '\'')
}

/// RFC 1123 host names (underscores tolerated, as internal DNS often has them).
pub fn valid_hostname(s: &str) -> bool {
    let s = s.strip_suffix('.').unwrap_or(s);
    !s.is_empty()
        && s.len() <= 253
        && s.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(v: &[&str]) -> Vec<OsString> {
        v.iter().map(OsString::from).collect()
    }

    const OK: [&str; 7] = [
        "mymaster",
        "leader",
        "start",
        "192.0.2.11",
        "6379",
        "192.0.2.12",
        "6379",
    ];

    #[test]
    fn accepts_sentinel_forms() {
        let c = parse(&args(&OK)).unwrap();
        assert_eq!(c.master, "mymaster");
        assert_eq!(c.role, Role::Leader);
        assert_eq!(c.to, (Host::Ip("192.0.2.12".parse().unwrap()), 6379));
        let mut v = OK;
        v[1] = "observer";
        v[5] = "redis-2.example";
        v[3] = "2001:db8::11";
        let c = parse(&args(&v)).unwrap();
        assert_eq!(c.role, Role::Observer);
        assert_eq!(c.to.0, Host::Name("redis-2.example".into()));
        assert_eq!(c.from.0, Host::Ip("2001:db8::11".parse().unwrap()));
    }

    #[test]
    fn rejects_each_kind_of_bad_argument() {
        use ArgError::*;
        let long = "a".repeat(65536);
        let host = |arg, v: &str| Host {
            arg,
            value: v.into(),
        };
        let port = |arg, v: &str| Port {
            arg,
            value: v.into(),
        };
        #[rustfmt::skip]
        let cases: Vec<(usize, &str, ArgError)> = vec![
            (0, "", Master("".into())),
            (0, "my\nmaster", Control { arg: "MASTER", c: '\n' }),
            (0, "-x", Master("-x".into())),
            (0, long.as_str(), TooLong { arg: "MASTER", len: 65536 }),
            (1, "boss", Role("boss".into())),
            (2, "end", State("end".into())),
            (3, "999.1.1.1", host("FROM_IP", "999.1.1.1")),
            (5, "192.0.2.12\t", Control { arg: "TO_IP", c: '\t' }),
            (5, "-192.0.2.12", host("TO_IP", "-192.0.2.12")),
            (5, "bad host", host("TO_IP", "bad host")),
            (5, "1.2.3", host("TO_IP", "1.2.3")),
            (4, "0", port("FROM_PORT", "0")),
            (6, "70000", port("TO_PORT", "70000")),
            (6, "abc", port("TO_PORT", "abc")),
            (6, "+80", port("TO_PORT", "+80")),
            (6, "080", port("TO_PORT", "080")),
            (6, "", port("TO_PORT", "")),
        ];
        for (i, val, want) in cases {
            let mut v: Vec<String> = OK.iter().map(|s| s.to_string()).collect();
            v[i] = val.to_string();
            let e = parse(&v.iter().map(OsString::from).collect::<Vec<_>>()).unwrap_err();
            assert_eq!(e, want, "arg {i}={val:?}");
            let line = e.to_string();
            assert!(
                !line.contains('\n') && line.len() < 300,
                "one short line: {line:?}"
            );
        }
        assert_eq!(parse(&args(&OK[..6])).unwrap_err(), Count(6));
        let mut eight = OK.to_vec();
        eight.push("x");
        assert_eq!(parse(&args(&eight)).unwrap_err(), Count(8));
        assert!(Count(6).to_string().contains("got 6"));
    }

    #[test]
    fn non_utf8_is_refused() {
        use std::os::unix::ffi::OsStringExt;
        let mut v = args(&OK);
        v[0] = OsString::from_vec(vec![0x66, 0xff]);
        assert_eq!(parse(&v).unwrap_err(), ArgError::NotUtf8("MASTER"));
    }

    #[test]
    fn ports() {
        assert_eq!(parse_port("1"), Some(1));
        assert_eq!(parse_port("65535"), Some(65535));
        for bad in ["0", "65536", "-1", " 1", "1 ", "00", "99999999"] {
            assert!(parse_port(bad).is_none(), "{bad}");
        }
    }
}

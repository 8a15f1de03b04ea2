//! The TOML configuration: parsing and every validation a value needs before
//! it may reach the kernel. It reads one file and touches nothing else.

use std::collections::HashSet;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use serde::Deserialize;

use crate::error::permanent;
use crate::hookargs::{valid_hostname, valid_master_name};

/// Where the config is looked for when neither `--config` nor
/// `SENTINEL_VIP_CONFIG` names one.
pub const DEFAULT_PATH: &str = "/etc/sentinel-vip/sentinel-vip.toml";
/// `/run/lock` is world-writable tmpfs on Debian-family systems, so the
/// unprivileged Sentinel user can create the lock; it is emptied at boot,
/// like the VIPs themselves.
pub const DEFAULT_LOCK: &str = "/run/lock/sentinel-vip.lock";
/// Where the watcher listens for hooks (systemd's `RuntimeDirectory=`).
pub const DEFAULT_CONTROL_SOCKET: &str = "/run/sentinel-vip/control.sock";
/// The group Sentinel runs as on Debian and Ubuntu: it may use the socket.
pub const DEFAULT_CONTROL_GROUP: &str = "redis";

/// An address with its prefix length, as `ip addr add` takes it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Cidr {
    pub ip: IpAddr,
    pub prefix: u8,
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.ip, self.prefix)
    }
}

impl FromStr for Cidr {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let (ip, prefix) = s
            .split_once('/')
            .ok_or_else(|| format!("address `{s}` needs a prefix length, like 192.0.2.100/24"))?;
        let ip: IpAddr = ip
            .parse()
            .map_err(|_| format!("address `{s}`: `{ip}` is not an IP address"))?;
        let max = if ip.is_ipv4() { 32 } else { 128 };
        let prefix: u8 = match prefix.parse() {
            Ok(p) if p <= max && !prefix.starts_with('+') => p,
            _ => return Err(format!("address `{s}`: prefix length must be 0..={max}")),
        };
        let usable = match ip {
            IpAddr::V4(v4) => {
                let net_or_brd = prefix < 31 && {
                    let host_mask = u32::MAX >> prefix;
                    let bits = u32::from(v4) & host_mask;
                    bits == 0 || bits == host_mask
                };
                !(v4.is_unspecified()
                    || v4.is_loopback()
                    || v4.is_multicast()
                    || v4.is_broadcast()
                    || net_or_brd)
            }
            // Link-local VIPs would need a scope; they cannot follow a master.
            IpAddr::V6(v6) => {
                !(v6.is_unspecified()
                    || v6.is_loopback()
                    || v6.is_multicast()
                    || (v6.segments()[0] & 0xffc0) == 0xfe80)
            }
        };
        if !usable {
            return Err(format!(
                "address `{s}` cannot be a VIP (network, broadcast, loopback, multicast, link-local or unspecified)"
            ));
        }
        Ok(Cidr { ip, prefix })
    }
}

impl<'de> Deserialize<'de> for Cidr {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// A Sentinel to ask: `host:port` or `[v6]:port`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Endpoint {
    pub host: String,
    pub port: u16,
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

impl FromStr for Endpoint {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || format!("sentinel `{s}` must be host:port or [ipv6]:port");
        let (host, port) = if let Some(rest) = s.strip_prefix('[') {
            let (h, p) = rest.split_once("]:").ok_or_else(bad)?;
            h.parse::<std::net::Ipv6Addr>().map_err(|_| bad())?;
            (h, p)
        } else {
            let (h, p) = s.rsplit_once(':').ok_or_else(bad)?;
            if h.parse::<Ipv4Addr>().is_err() && !valid_hostname(h) {
                return Err(bad());
            }
            (h, p)
        };
        let port = crate::hookargs::parse_port(port).ok_or_else(bad)?;
        Ok(Endpoint {
            host: host.to_string(),
            port,
        })
    }
}

impl<'de> Deserialize<'de> for Endpoint {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// What to do with a held VIP when a Sentinel majority stops answering.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Policy {
    #[default]
    Keep,
    Release,
}

/// One `[[vip]]` table: the VIP that follows one Sentinel master name.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct VipConfig {
    pub master: String,
    pub address: Cidr,
    pub interface: String,
    pub label: Option<String>,
}

/// `[announce]`: how gratuitous ARP / unsolicited NA is sent.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct AnnounceConfig {
    /// Rounds sent after taking the VIP; each round is an ARP request and an
    /// ARP reply (some devices only accept one of the two forms).
    pub count: u32,
    /// Spacing of rounds; above Linux's 1 s neighbour `locktime`, or the
    /// repeats would be ignored by clients that took the first one.
    pub interval_ms: u64,
    /// While holding, the watcher re-announces this often, so that after a
    /// split brain heals the true holder wins the clients' tables back.
    pub refresh_interval_ms: u64,
}

impl Default for AnnounceConfig {
    fn default() -> Self {
        AnnounceConfig {
            count: 3,
            interval_ms: 1100,
            refresh_interval_ms: 5000,
        }
    }
}

/// TLS settings for the connections to Sentinel.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq, Default)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// PEM bundle of the CA that signed the Sentinels' certificates; the
    /// system roots are used when absent.
    pub ca_file: Option<PathBuf>,
    /// Client certificate and key (PEM) for Sentinels with `tls-auth-clients`.
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
}

#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default)]
    pub sentinels: Vec<Endpoint>,
    pub sentinel_username: Option<String>,
    pub sentinel_password: Option<String>,
    /// Present (even empty) = speak TLS to every Sentinel.
    pub sentinel_tls: Option<TlsConfig>,
    #[serde(default = "default_sentinel_timeout")]
    pub sentinel_timeout_ms: u64,
    pub log_file: Option<PathBuf>,
    pub lock_file: Option<PathBuf>,
    /// The watcher's Unix socket, through which unprivileged hooks ask it
    /// for a pass.
    #[serde(default = "default_control_socket")]
    pub control_socket: PathBuf,
    /// Group that may use the socket (mode 0660).
    #[serde(default = "default_control_group")]
    pub control_socket_group: String,
    #[serde(default = "default_reconcile_interval")]
    pub reconcile_interval_ms: u64,
    #[serde(default)]
    pub on_sentinel_loss: Policy,
    #[serde(default = "default_loss_after")]
    pub sentinel_loss_after_ms: u64,
    #[serde(default)]
    pub on_exit: Policy,
    #[serde(default)]
    pub announce: AnnounceConfig,
    #[serde(default)]
    pub vip: Vec<VipConfig>,
}

fn default_sentinel_timeout() -> u64 {
    300
}
fn default_control_socket() -> PathBuf {
    PathBuf::from(DEFAULT_CONTROL_SOCKET)
}
fn default_control_group() -> String {
    DEFAULT_CONTROL_GROUP.to_string()
}
fn default_reconcile_interval() -> u64 {
    1000
}
fn default_loss_after() -> u64 {
    10_000
}

impl Config {
    /// Reads and validates `path`; every failure is permanent (exit 2).
    pub fn load(path: &Path) -> anyhow::Result<Config> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| permanent(format!("config {}: {e}", path.display())))?;
        Config::parse(&text).map_err(|e| permanent(format!("config {}: {e}", path.display())))
    }

    /// Parses TOML text; the error is one line naming the key or value.
    pub fn parse(text: &str) -> Result<Config, String> {
        let cfg: Config = toml::from_str(text).map_err(|e| {
            let line = e
                .span()
                .map(|s| text[..s.start.min(text.len())].matches('\n').count() + 1);
            let msg = e.message().trim().replace('\n', " ");
            match line {
                Some(l) => format!("line {l}: {msg}"),
                None => msg,
            }
        })?;
        cfg.validate()?;
        Ok(cfg)
    }

    fn validate(&self) -> Result<(), String> {
        if self.vip.is_empty() {
            return Err("no [[vip]] table: nothing to manage".into());
        }
        let mut masters = HashSet::new();
        let mut addrs = HashSet::new();
        for v in &self.vip {
            if !valid_master_name(&v.master) {
                return Err(format!(
                    "vip.master `{}` is not a valid master name",
                    v.master.escape_debug()
                ));
            }
            if !masters.insert(v.master.as_str()) {
                return Err(format!("vip.master `{}` appears twice", v.master));
            }
            if !addrs.insert(v.address.ip) {
                return Err(format!("vip.address {} appears twice", v.address.ip));
            }
            if !valid_ifname(&v.interface) {
                return Err(format!(
                    "vip.interface `{}` is not a valid interface name",
                    v.interface.escape_debug()
                ));
            }
            if let Some(l) = &v.label {
                check_label(l, &v.interface, v.address.ip)?;
            }
        }
        let a = &self.announce;
        if !(1..=100).contains(&a.count) {
            return Err(format!("announce.count {} must be 1..=100", a.count));
        }
        if a.interval_ms == 0 || a.interval_ms * u64::from(a.count - 1) > 50_000 {
            return Err(format!(
                "announce.interval_ms {} must be > 0 and all rounds must fit in 50 s (Sentinel kills scripts after 60 s)",
                a.interval_ms
            ));
        }
        if a.refresh_interval_ms != 0 && a.refresh_interval_ms < 100 {
            return Err("announce.refresh_interval_ms must be 0 (off) or >= 100".into());
        }
        if !(10..=60_000).contains(&self.sentinel_timeout_ms) {
            return Err("sentinel_timeout_ms must be 10..=60000".into());
        }
        if !(50..=3_600_000).contains(&self.reconcile_interval_ms) {
            return Err("reconcile_interval_ms must be 50..=3600000".into());
        }
        if self.sentinel_loss_after_ms < 100 {
            return Err("sentinel_loss_after_ms must be >= 100".into());
        }
        let sock = self.control_socket.as_os_str().len();
        if !self.control_socket.is_absolute() || sock > 107 {
            return Err(format!(
                "control_socket `{}` must be an absolute path of at most 107 bytes",
                self.control_socket.display()
            ));
        }
        let g = &self.control_socket_group;
        if g.is_empty()
            || g.len() > 32
            || g.starts_with('-')
            || !g
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "_-.".contains(c))
        {
            return Err(format!(
                "control_socket_group `{}` is not a group name",
                g.escape_debug()
            ));
        }
        if self.sentinel_password.is_none() && self.sentinel_username.is_some() {
            return Err("sentinel_username needs sentinel_password".into());
        }
        if let Some(t) = &self.sentinel_tls {
            if t.cert_file.is_some() != t.key_file.is_some() {
                return Err("sentinel_tls.cert_file and key_file go together".into());
            }
        }
        Ok(())
    }

    pub fn vip_for(&self, master: &str) -> Option<&VipConfig> {
        self.vip.iter().find(|v| v.master == master)
    }

    pub fn lock_path(&self) -> PathBuf {
        self.lock_file
            .clone()
            .unwrap_or_else(|| PathBuf::from(DEFAULT_LOCK))
    }

    pub fn sentinel_timeout(&self) -> Duration {
        Duration::from_millis(self.sentinel_timeout_ms)
    }
}

/// Linux interface names: 1..=15 bytes, no `/`, `:` or white space.
pub fn valid_ifname(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 15
        && s != "."
        && s != ".."
        && s.chars()
            .all(|c| c.is_ascii_graphic() && c != '/' && c != ':')
}

/// IPv4 labels follow iproute2's rule (start with the device name) so that
/// `ip addr show label eth0:vip` finds them; IPv6 has no labels.
pub fn check_label(label: &str, ifname: &str, ip: IpAddr) -> Result<(), String> {
    if ip.is_ipv6() {
        return Err(format!("label `{label}`: IPv6 addresses have no labels"));
    }
    if label.len() > 15
        || !label.starts_with(ifname)
        || !label.chars().all(|c| c.is_ascii_graphic())
    {
        return Err(format!(
            "label `{}` must be at most 15 printable characters and start with the interface name `{ifname}`",
            label.escape_debug()
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
sentinels = ["192.0.2.11:26379", "[2001:db8::1]:26379", "sentinel-a.example:26379"]
log_file = "/var/log/sentinel-vip.log"
[[vip]]
master = "mymaster"
address = "192.0.2.100/24"
interface = "eth0"
label = "eth0:vip"
[[vip]]
master = "cache"
address = "2001:db8::100/64"
interface = "eth0"
[announce]
count = 2
"#;

    #[test]
    fn good_config_parses_with_defaults() {
        let c = Config::parse(GOOD).unwrap();
        assert_eq!(c.sentinels.len(), 3);
        assert_eq!(c.sentinels[1].host, "2001:db8::1");
        assert_eq!(c.sentinels[2].port, 26379);
        assert_eq!(c.vip[0].address.to_string(), "192.0.2.100/24");
        assert_eq!(c.vip[1].address.prefix, 64);
        assert_eq!(c.announce.count, 2);
        assert_eq!(c.announce.interval_ms, 1100);
        assert_eq!(c.on_exit, Policy::Keep);
        assert_eq!(c.on_sentinel_loss, Policy::Keep);
        assert_eq!(c.reconcile_interval_ms, 1000);
        assert_eq!(c.control_socket, PathBuf::from(DEFAULT_CONTROL_SOCKET));
        assert_eq!(c.control_socket_group, "redis");
        assert_eq!(c.vip_for("cache").unwrap().interface, "eth0");
        assert!(c.vip_for("other").is_none());
    }

    fn err(text: &str) -> String {
        Config::parse(text).unwrap_err()
    }

    const VIP: &str =
        "[[vip]]\nmaster = \"m\"\naddress = \"192.0.2.100/24\"\ninterface = \"eth0\"\n";

    #[test]
    fn bad_configs_name_the_problem() {
        let cases: &[(String, &str)] = &[
            (format!("colour = 1\n{VIP}"), "unknown field `colour`"),
            (format!("{VIP}flavour = 2\n"), "unknown field `flavour`"),
            (
                VIP.replace("192.0.2.100/24", "192.0.2.100"),
                "needs a prefix length",
            ),
            (
                VIP.replace("192.0.2.100/24", "192.0.2.300/24"),
                "not an IP address",
            ),
            (VIP.replace("/24", "/33"), "prefix length must be 0..=32"),
            (
                VIP.replace("192.0.2.100/24", "192.0.2.0/24"),
                "cannot be a VIP",
            ),
            (
                VIP.replace("192.0.2.100/24", "224.0.0.1/24"),
                "cannot be a VIP",
            ),
            (
                VIP.replace("192.0.2.100/24", "fe80::1/64"),
                "cannot be a VIP",
            ),
            (format!("{VIP}{VIP}"), "appears twice"),
            (VIP.replace("eth0", "eth0 x"), "not a valid interface name"),
            (
                VIP.replace("eth0", "averyveryverylongname"),
                "not a valid interface name",
            ),
            (VIP.replace("\"m\"", "\"-m\""), "not a valid master name"),
            (format!("{VIP}label = \"wlan0:x\"\n"), "must be at most 15"),
            (
                format!("sentinels = [\"192.0.2.1\"]\n{VIP}"),
                "must be host:port",
            ),
            (
                format!("sentinels = [\"192.0.2.1:0\"]\n{VIP}"),
                "must be host:port",
            ),
            (
                format!("sentinels = [\"bad host:1\"]\n{VIP}"),
                "must be host:port",
            ),
            (
                format!("on_exit = \"maybe\"\n{VIP}"),
                "unknown variant `maybe`",
            ),
            (format!("{VIP}[announce]\ncount = 0\n"), "announce.count"),
            (
                format!("{VIP}[announce]\ninterval_ms = 40000\n"),
                "fit in 50 s",
            ),
            (
                format!("control_socket = \"run/x.sock\"\n{VIP}"),
                "absolute path",
            ),
            (
                format!("control_socket = \"/{}\"\n{VIP}", "a".repeat(107)),
                "at most 107 bytes",
            ),
            (
                format!("control_socket_group = \"-r\"\n{VIP}"),
                "not a group name",
            ),
            (
                format!("control_socket_group = \"a b\"\n{VIP}"),
                "not a group name",
            ),
            ("sentinels = []\n".to_string(), "no [[vip]]"),
            ("sentinels = [\n".to_string(), "line"),
        ];
        for (text, want) in cases {
            let e = err(text);
            assert!(
                e.contains(want),
                "config {text:?}: error {e:?} lacks {want:?}"
            );
            assert!(!e.contains('\n'), "error must be one line: {e:?}");
        }
    }

    #[test]
    fn duplicate_address_across_masters_is_refused() {
        let two = format!("{VIP}{}", VIP.replace("\"m\"", "\"n\""));
        assert!(err(&two).contains("vip.address 192.0.2.100 appears twice"));
    }

    #[test]
    fn unknown_key_names_line() {
        let e = err(&format!("{VIP}bogus = 1\n"));
        assert!(e.starts_with("line 5:"), "{e}");
    }
}

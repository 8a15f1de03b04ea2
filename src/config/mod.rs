//! The TOML configuration: parsing, defaults (each defined once, here) and
//! every validation a value needs before it may reach the kernel. It reads
//! one file and touches nothing else.

mod addr;
mod env;
mod mode;

pub use addr::{check_label, valid_ifname, Cidr, Endpoint};
pub use mode::{check_mode, Mode, LOOPBACK};

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Deserializer};

use crate::error::permanent;
use crate::hookargs::valid_master_name;

/// Where the config is looked for when neither `--config` nor
/// `SENTINEL_VIP_CONFIG` names one.
pub const DEFAULT_PATH: &str = "/etc/sentinel-vip/sentinel-vip.toml";

/// The defaults of every optional key.
pub mod defaults {
    use std::time::Duration;

    /// In the watcher's runtime directory (tmpfs, emptied at boot like the
    /// VIPs), its owner's alone: in a world-writable directory such as
    /// `/run/lock`, any user could open it and stall every pass.
    pub const LOCK_FILE: &str = "/run/sentinel-vip/lock";
    /// Where the watcher listens for hooks (systemd's `RuntimeDirectory=`).
    pub const CONTROL_SOCKET: &str = "/run/sentinel-vip/control.sock";
    /// The users the distributions' Sentinel units run as: Redis' (Debian,
    /// Ubuntu, RHEL) and Valkey's (Debian 13, Fedora, RHEL 10, Ubuntu).
    /// Looked up when a hook connects, so a Sentinel package installed
    /// after the watcher started needs nothing more.
    pub const CONTROL_USERS: [&str; 2] = ["redis", "valkey"];
    pub const SENTINEL_TIMEOUT: Duration = Duration::from_millis(300);
    pub const RECONCILE_INTERVAL: Duration = Duration::from_millis(1000);
    pub const SENTINEL_LOSS_AFTER: Duration = Duration::from_millis(10_000);
    /// What `on_sentinel_loss` is when unset: the fence, which in the lab
    /// lost 56 acknowledged writes where `keep` lost 389 to a partition,
    /// and released nothing in a 30 s Sentinel outage, with every replica
    /// down, or on a network 100 ms slower each way (README, "The fence").
    pub const ON_SENTINEL_LOSS: super::Policy = super::Policy::Fence;
    /// `on_sentinel_loss = "fence"`: how long a holder may hear neither a
    /// Sentinel majority nor a replica before it releases. Three replies'
    /// worth of a 100 ms round trip; well under Sentinel's usual
    /// `down-after-milliseconds`, so that it acts before a failover can.
    pub const FENCE_AFTER: Duration = Duration::from_millis(300);
    pub const ANNOUNCE_COUNT: u32 = 3;
    /// Above Linux's 1 s neighbour `locktime`, or clients that took the
    /// first round would ignore the repeats.
    pub const ANNOUNCE_INTERVAL: Duration = Duration::from_millis(1100);
    pub const ANNOUNCE_REFRESH: Duration = Duration::from_millis(5000);
    /// Watch mode moves the VIP when the replica a failover's leader is
    /// promoting first answers `ROLE` master (see README for the trade-off).
    pub const FOLLOW_PROMOTION: bool = true;
    /// How long after the leader's hint the replica has to answer master.
    pub const FOLLOW_PROMOTION_DEADLINE: Duration = Duration::from_millis(3000);
    /// A notify command's time before it is killed: a cloud provider's CLI
    /// call takes seconds; a minute would leave later changes waiting long.
    pub const NOTIFY_TIMEOUT: Duration = Duration::from_secs(30);
}

/// Why a config was refused; one line, naming the line or the key.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// Not TOML, an unknown key, or a value of the wrong form.
    #[error("{}{message}", line.map(|l| format!("line {l}: ")).unwrap_or_default())]
    Syntax {
        line: Option<usize>,
        message: String,
    },
    #[error("no [[vip]] table: nothing to manage")]
    NoVip,
    /// A well-formed value that is not allowed.
    #[error("{key} {problem}")]
    Invalid { key: &'static str, problem: String },
}

fn invalid(key: &'static str, problem: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key,
        problem: problem.into(),
    }
}

/// What to do with a held VIP when a Sentinel majority stops answering
/// (`on_sentinel_loss`), or when the watcher exits (`on_exit`: keep or
/// release only).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Policy {
    #[default]
    Keep,
    /// Release after `sentinel_loss_after_ms` without a majority.
    Release,
    /// Release after `fence_after_ms` without a majority and without any
    /// replica of the master answering as its replica (watch mode).
    Fence,
}

/// One `[[vip]]` table: a VIP that follows one Sentinel master name (a
/// master may have several, on other interfaces or address families).
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct VipConfig {
    pub master: String,
    pub address: Cidr,
    pub interface: String,
    pub label: Option<String>,
    /// As written; [`VipConfig::mode`] says what applies.
    #[serde(rename = "mode")]
    pub mode_key: Option<Mode>,
    /// Notify commands for this VIP, each an argument vector; unset ones
    /// fall back to the top-level ones.
    pub on_acquire: Option<Vec<String>>,
    pub on_release: Option<Vec<String>>,
    pub on_refuse: Option<Vec<String>>,
}

impl VipConfig {
    /// How this VIP is announced: its `mode`, else the default for its
    /// interface (routed on `lo`, l2 elsewhere).
    pub fn mode(&self) -> Mode {
        self.mode_key
            .unwrap_or_else(|| Mode::default_for(&self.interface))
    }

    /// Whether this VIP is announced with frames (gratuitous ARP/NA),
    /// which takes CAP_NET_RAW; a routed one is only an address.
    pub fn sends_frames(&self) -> bool {
        self.mode() == Mode::L2
    }
}

/// `[announce]`: how gratuitous ARP / unsolicited NA is sent.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct AnnounceConfig {
    /// Rounds sent after taking the VIP; each round is an ARP request and an
    /// ARP reply (some devices only accept one of the two forms).
    pub count: u32,
    /// Spacing of rounds.
    #[serde(rename = "interval_ms", deserialize_with = "millis")]
    pub interval: Duration,
    /// While holding, the watcher re-announces this often, so that after a
    /// split brain heals the true holder wins the clients' tables back.
    /// Zero: never.
    #[serde(rename = "refresh_interval_ms", deserialize_with = "millis")]
    pub refresh: Duration,
}

impl Default for AnnounceConfig {
    fn default() -> Self {
        AnnounceConfig {
            count: defaults::ANNOUNCE_COUNT,
            interval: defaults::ANNOUNCE_INTERVAL,
            refresh: defaults::ANNOUNCE_REFRESH,
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
    /// Per question to each Sentinel.
    #[serde(
        rename = "sentinel_timeout_ms",
        default = "sentinel_timeout",
        deserialize_with = "millis"
    )]
    pub sentinel_timeout: Duration,
    pub log_file: Option<PathBuf>,
    #[serde(default = "lock_file")]
    pub lock_file: PathBuf,
    /// The watcher's Unix socket, through which unprivileged hooks ask it
    /// for a pass.
    #[serde(default = "control_socket")]
    pub control_socket: PathBuf,
    /// Users whose hooks may ask for a pass (by `SO_PEERCRED`, the name
    /// looked up at connect time), besides root and the watcher's own.
    #[serde(default = "control_users")]
    pub control_socket_users: Vec<String>,
    /// A group whose members may ask too (optional; earlier releases
    /// authorised Sentinel by group alone).
    pub control_socket_group: Option<String>,
    /// The watcher's timer pass.
    #[serde(
        rename = "reconcile_interval_ms",
        default = "reconcile_interval",
        deserialize_with = "millis"
    )]
    pub reconcile_interval: Duration,
    #[serde(default = "on_sentinel_loss")]
    pub on_sentinel_loss: Policy,
    #[serde(
        rename = "sentinel_loss_after_ms",
        default = "sentinel_loss_after",
        deserialize_with = "millis"
    )]
    pub sentinel_loss_after: Duration,
    #[serde(
        rename = "fence_after_ms",
        default = "fence_after",
        deserialize_with = "millis"
    )]
    pub fence_after: Duration,
    #[serde(default)]
    pub on_exit: Policy,
    #[serde(default)]
    pub announce: AnnounceConfig,
    /// Watch mode: follow a failover's promotion as the leader runs it.
    #[serde(default = "follow_promotion")]
    pub follow_promotion: bool,
    #[serde(
        rename = "follow_promotion_deadline_ms",
        default = "follow_promotion_deadline",
        deserialize_with = "millis"
    )]
    pub follow_promotion_deadline: Duration,
    /// Login for the data nodes (asked `ROLE` when following a promotion).
    pub redis_username: Option<String>,
    pub redis_password: Option<String>,
    /// Present (even empty) = speak TLS to the data nodes.
    pub redis_tls: Option<TlsConfig>,
    /// Watch mode: serve Prometheus metrics here (`IP:port`).
    #[serde(default, deserialize_with = "listen")]
    pub metrics_listen: Option<std::net::SocketAddr>,
    /// Notify commands for every `[[vip]]` that sets none of its own.
    pub on_acquire: Option<Vec<String>>,
    pub on_release: Option<Vec<String>>,
    pub on_refuse: Option<Vec<String>>,
    #[serde(
        rename = "notify_timeout_ms",
        default = "notify_timeout",
        deserialize_with = "millis"
    )]
    pub notify_timeout: Duration,
    /// Variables every notify command gets besides `PATH`, `LANG`, `TZ`
    /// and the facts; nothing else of the watcher's environment reaches it.
    #[serde(default)]
    pub notify_env: BTreeMap<String, String>,
    #[serde(default)]
    pub vip: Vec<VipConfig>,
}

// serde wants functions for defaults; each returns its constant.
fn sentinel_timeout() -> Duration {
    defaults::SENTINEL_TIMEOUT
}
fn reconcile_interval() -> Duration {
    defaults::RECONCILE_INTERVAL
}
fn sentinel_loss_after() -> Duration {
    defaults::SENTINEL_LOSS_AFTER
}
fn on_sentinel_loss() -> Policy {
    defaults::ON_SENTINEL_LOSS
}
fn fence_after() -> Duration {
    defaults::FENCE_AFTER
}
fn follow_promotion() -> bool {
    defaults::FOLLOW_PROMOTION
}
fn follow_promotion_deadline() -> Duration {
    defaults::FOLLOW_PROMOTION_DEADLINE
}
fn notify_timeout() -> Duration {
    defaults::NOTIFY_TIMEOUT
}
fn lock_file() -> PathBuf {
    PathBuf::from(defaults::LOCK_FILE)
}
fn control_socket() -> PathBuf {
    PathBuf::from(defaults::CONTROL_SOCKET)
}
fn control_users() -> Vec<String> {
    defaults::CONTROL_USERS.map(String::from).to_vec()
}

/// `metrics_listen`: an `IP:port` to listen on, with a one-line reason
/// when it is not one.
fn listen<'de, D: Deserializer<'de>>(d: D) -> Result<Option<std::net::SocketAddr>, D::Error> {
    let s = String::deserialize(d)?;
    crate::metrics::validate_listen(&s)
        .map(Some)
        .map_err(serde::de::Error::custom)
}

/// A user or group name as useradd(8) and groupadd(8) take it: 1..=32
/// bytes of letters, digits, `_`, `-` and `.`, not starting with `-`.
pub fn valid_account_name(s: &str) -> bool {
    let ok = |c: char| c.is_ascii_alphanumeric() || "_-.".contains(c);
    !s.is_empty() && s.len() <= 32 && !s.starts_with('-') && s.chars().all(ok)
}

/// `*_ms` keys: whole milliseconds in the file, a `Duration` in the program.
fn millis<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    u64::deserialize(d).map(Duration::from_millis)
}

impl Config {
    /// Reads and validates `path`, and the files it names (the notify
    /// commands); every failure is permanent (exit 2).
    pub fn load(path: &Path) -> anyhow::Result<Config> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| permanent(format!("config {}: {e}", path.display())))?;
        Config::from_file(path, &text)
    }

    /// Like [`Config::load`] for a caller that can do without the config
    /// (the hook, handing its call to the watcher; `check` as Sentinel's
    /// user): `Ok(Err(why))` when the file is missing or not readable by
    /// this user (the config may hold passwords and need only be the
    /// watcher's); an invalid one is still refused.
    pub fn load_if_readable(path: &Path) -> anyhow::Result<Result<Config, String>> {
        use std::io::ErrorKind::{NotFound, PermissionDenied};
        match std::fs::read_to_string(path) {
            Ok(text) => Config::from_file(path, &text).map(Ok),
            Err(e) if matches!(e.kind(), NotFound | PermissionDenied) => {
                Ok(Err(format!("config {}: {e}", path.display())))
            }
            Err(e) => Err(permanent(format!("config {}: {e}", path.display()))),
        }
    }

    /// The text of the file at `path`, validated with the files it names.
    fn from_file(path: &Path, text: &str) -> anyhow::Result<Config> {
        Config::parse(text)
            .and_then(|c| c.check_commands().map(|()| c))
            .map_err(|e| permanent(format!("config {}: {e}", path.display())))
    }

    /// Every notify command must be an executable file: a typo found at
    /// the next failover is found too late. Not in `parse`, which looks
    /// at nothing but the text.
    pub fn check_commands(&self) -> Result<(), ConfigError> {
        let top = [
            ("on_acquire", &self.on_acquire),
            ("on_release", &self.on_release),
            ("on_refuse", &self.on_refuse),
        ];
        let per_vip = self.vip.iter().flat_map(|v| {
            [
                ("vip.on_acquire", &v.on_acquire),
                ("vip.on_release", &v.on_release),
                ("vip.on_refuse", &v.on_refuse),
            ]
        });
        for (key, argv) in top.into_iter().chain(per_vip) {
            if let Some(argv) = argv {
                crate::notify::check_command(argv).map_err(|e| invalid(key, e))?;
            }
        }
        Ok(())
    }

    /// Parses TOML text; the error is one line naming the line or the key.
    pub fn parse(text: &str) -> Result<Config, ConfigError> {
        let cfg: Config = toml::from_str(text).map_err(|e| ConfigError::Syntax {
            line: e
                .span()
                .map(|s| text[..s.start.min(text.len())].matches('\n').count() + 1),
            // The file's own text may be quoted: one line, no control
            // characters (terminal escapes) in what operators read.
            message: crate::error::printable(e.message().trim()),
        })?;
        cfg.validate()?;
        Ok(cfg)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        if self.vip.is_empty() {
            return Err(ConfigError::NoVip);
        }
        let mut addrs = HashSet::new();
        for v in &self.vip {
            if !valid_master_name(&v.master) {
                return Err(invalid(
                    "vip.master",
                    format!("`{}` is not a valid master name", v.master.escape_debug()),
                ));
            }
            if !addrs.insert(v.address.ip) {
                return Err(invalid(
                    "vip.address",
                    format!("{} appears twice", v.address.ip),
                ));
            }
            if !valid_ifname(&v.interface) {
                return Err(invalid(
                    "vip.interface",
                    format!(
                        "`{}` is not a valid interface name",
                        v.interface.escape_debug()
                    ),
                ));
            }
            if let Some(l) = &v.label {
                check_label(l, &v.interface, v.address.ip).map_err(|e| invalid("vip.label", e))?;
            }
            check_mode(v.mode(), v.address, &v.interface).map_err(|e| invalid("vip.mode", e))?;
        }
        let a = &self.announce;
        if !(1..=100).contains(&a.count) {
            return Err(invalid(
                "announce.count",
                format!("{} must be 1..=100", a.count),
            ));
        }
        if a.interval.is_zero() || a.interval * (a.count - 1) > Duration::from_secs(50) {
            return Err(invalid(
                "announce.interval_ms",
                format!(
                    "{} must be > 0 and all rounds must fit in 50 s (Sentinel kills scripts after 60 s)",
                    a.interval.as_millis()
                ),
            ));
        }
        if !a.refresh.is_zero() && a.refresh < Duration::from_millis(100) {
            return Err(invalid(
                "announce.refresh_interval_ms",
                "must be 0 (off) or >= 100",
            ));
        }
        let ms = |d: Duration| d.as_millis();
        if !(10..=60_000).contains(&ms(self.sentinel_timeout)) {
            return Err(invalid("sentinel_timeout_ms", "must be 10..=60000"));
        }
        if !(50..=3_600_000).contains(&ms(self.reconcile_interval)) {
            return Err(invalid("reconcile_interval_ms", "must be 50..=3600000"));
        }
        if ms(self.sentinel_loss_after) < 100 {
            return Err(invalid("sentinel_loss_after_ms", "must be >= 100"));
        }
        if !(100..=60_000).contains(&ms(self.fence_after)) {
            return Err(invalid("fence_after_ms", "must be 100..=60000"));
        }
        if self.on_exit == Policy::Fence {
            return Err(invalid("on_exit", "must be \"keep\" or \"release\""));
        }
        let sock = &self.control_socket;
        if !sock.is_absolute() || sock.as_os_str().len() > 107 {
            return Err(invalid(
                "control_socket",
                format!(
                    "`{}` must be an absolute path of at most 107 bytes",
                    sock.display()
                ),
            ));
        }
        for u in &self.control_socket_users {
            if !valid_account_name(u) {
                return Err(invalid(
                    "control_socket_users",
                    format!("`{}` is not a user name", u.escape_debug()),
                ));
            }
        }
        if let Some(g) = self
            .control_socket_group
            .as_ref()
            .filter(|g| !valid_account_name(g))
        {
            return Err(invalid(
                "control_socket_group",
                format!("`{}` is not a group name", g.escape_debug()),
            ));
        }
        if self.sentinel_password.is_none() && self.sentinel_username.is_some() {
            return Err(invalid("sentinel_username", "needs sentinel_password"));
        }
        if self.redis_password.is_none() && self.redis_username.is_some() {
            return Err(invalid("redis_username", "needs redis_password"));
        }
        for (key, tls) in [
            ("sentinel_tls.cert_file", &self.sentinel_tls),
            ("redis_tls.cert_file", &self.redis_tls),
        ] {
            if tls
                .as_ref()
                .is_some_and(|t| t.cert_file.is_some() != t.key_file.is_some())
            {
                return Err(invalid(key, "and key_file go together"));
            }
        }
        if !(100..=60_000).contains(&ms(self.follow_promotion_deadline)) {
            return Err(invalid(
                "follow_promotion_deadline_ms",
                "must be 100..=60000",
            ));
        }
        // Zero would kill every command at once; a day outlives any use.
        if !(100..=86_400_000).contains(&ms(self.notify_timeout)) {
            return Err(invalid("notify_timeout_ms", "must be 100..=86400000"));
        }
        for (name, value) in &self.notify_env {
            env::check_env(name, value).map_err(|e| invalid("notify_env", e))?;
        }
        Ok(())
    }

    /// The `[[vip]]` tables that follow `master` (none, one or several).
    pub fn vips_for<'a>(&'a self, master: &'a str) -> impl Iterator<Item = &'a VipConfig> + 'a {
        self.vip.iter().filter(move |v| v.master == master)
    }

    /// Whether any `[[vip]]` follows `master`.
    pub fn has_master(&self, master: &str) -> bool {
        self.vips_for(master).next().is_some()
    }

    /// `vip`'s notify commands: its own, else the top-level ones.
    pub fn commands(&self, vip: &VipConfig) -> crate::notify::Commands {
        crate::notify::Commands {
            on_acquire: vip.on_acquire.clone().or_else(|| self.on_acquire.clone()),
            on_release: vip.on_release.clone().or_else(|| self.on_release.clone()),
            on_refuse: vip.on_refuse.clone().or_else(|| self.on_refuse.clone()),
        }
    }

    /// The master names to ask the Sentinels about, each once.
    pub fn masters(&self) -> Vec<&str> {
        let mut seen = HashSet::new();
        self.vip
            .iter()
            .map(|v| v.master.as_str())
            .filter(|m| seen.insert(*m))
            .collect()
    }

    /// How to log in to the Sentinels.
    pub fn sentinel_auth(&self) -> crate::conn::Auth<'_> {
        crate::conn::Auth {
            username: self.sentinel_username.as_deref(),
            password: self.sentinel_password.as_deref(),
            tls: self.sentinel_tls.as_ref(),
            what: "sentinel_tls",
        }
    }

    /// How to log in to the data nodes.
    pub fn redis_auth(&self) -> crate::conn::Auth<'_> {
        crate::conn::Auth {
            username: self.redis_username.as_deref(),
            password: self.redis_password.as_deref(),
            tls: self.redis_tls.as_ref(),
            what: "redis_tls",
        }
    }

    /// Whether `ip` is one of the configured VIPs.
    pub fn is_vip(&self, ip: std::net::IpAddr) -> bool {
        self.vip.iter().any(|v| v.address.ip == ip)
    }
}

#[cfg(test)]
mod tests;

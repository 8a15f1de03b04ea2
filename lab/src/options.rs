//! What a test may choose about its lab: Sentinel's timing, whether the
//! hook is Sentinel's script, extra sentinel-vip config, and which server
//! family (Redis or Valkey) runs. Only data; the lab reads it while
//! building.

use std::path::Path;
use std::time::Duration;

/// Knobs for tests that need a lab different from the default one.
#[derive(Clone, Debug)]
pub struct LabOptions {
    /// Register the sentinel-vip binary as Sentinel's `client-reconfig-script`.
    pub reconfig_script: bool,
    /// Sentinel's `down-after-milliseconds` for the master.
    pub down_after: Duration,
    /// TOML inserted before the `[[vip]]` table (so top-level keys land at
    /// the top level rather than inside the table).
    pub toml_top: String,
    /// TOML appended after the `[[vip]]` table (keys for that table, or
    /// further tables).
    pub toml_tail: String,
    /// The server, Sentinel and client programs (Redis unless a test
    /// sets `Family::Valkey.programs()`).
    pub programs: Programs,
    /// `requirepass` (and `masterauth`) of every data node, given to the
    /// Sentinels (`auth-pass`) and to every client the lab runs.
    pub data_password: Option<String>,
    /// A node whose Redis and Sentinel run elsewhere, e.g. in a container
    /// joined to its namespace (`container`): the lab builds its network
    /// but starts neither, and `Lab::new` returns before waiting for
    /// replication; start them, then call `Lab::finish_start`.
    pub external_node: Option<usize>,
    /// The routed topology instead of the bridge (issue 19): hosts in
    /// subnets of their own behind a router, the VIP a /32 on `lo`
    /// announced over BGP (see `crate::routed`).
    pub routed: Option<crate::routed::Routed>,
}

impl Default for LabOptions {
    fn default() -> Self {
        LabOptions {
            reconfig_script: true,
            down_after: Duration::from_secs(1),
            toml_top: String::new(),
            toml_tail: String::new(),
            programs: Programs::REDIS,
            data_password: None,
            external_node: None,
            routed: None,
        }
    }
}

/// A server build the lab can run: the same protocol, the same Sentinel,
/// the same `client-reconfig-script`; only the programs differ.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Family {
    /// Debian 12's `redis-server`, `redis-sentinel`, `redis-cli` (7.0), from PATH.
    Redis,
    /// Debian 13's Redis 8.0 packages (see `crate::servers`).
    Redis8,
    /// Debian 13's Valkey 8.1 packages.
    Valkey,
    /// Debian testing's Valkey 9 packages.
    Valkey9,
}

/// The Debian 13 packages the lab's Redis 8 and Valkey 8.1 come from.
const TRIXIE_SERVERS: [&str; 2] = ["redis-server", "valkey-server"];
/// The Debian testing packages its Valkey 9 comes from.
const FORKY_SERVERS: [&str; 1] = ["valkey-server"];

impl Family {
    /// Every build the suite proves, Debian 12's Redis first.
    pub const ALL: [Family; 4] = [
        Family::Redis,
        Family::Redis8,
        Family::Valkey,
        Family::Valkey9,
    ];

    /// How tests, rows and filters name it: `redis`, `redis8`, `valkey`,
    /// `valkey9`.
    pub fn name(self) -> &'static str {
        match self {
            Family::Redis => "redis",
            Family::Redis8 => "redis8",
            Family::Valkey => "valkey",
            Family::Valkey9 => "valkey9",
        }
    }

    /// Where its packages come from, for reports: "Debian 13".
    pub fn source(self) -> &'static str {
        match self {
            Family::Redis => "Debian 12",
            Family::Redis8 | Family::Valkey => "Debian 13",
            Family::Valkey9 => "Debian testing",
        }
    }

    /// Its programs. Panics, saying why, when they cannot be had: a test
    /// asked to run against a build must fail, never fall back to another.
    pub fn programs(self) -> Programs {
        let (suite, packages, prefix): (_, &[&str], _) = match self {
            Family::Redis => return Programs::REDIS,
            Family::Redis8 => (&crate::container::TRIXIE, &TRIXIE_SERVERS, "redis"),
            Family::Valkey => (&crate::container::TRIXIE, &TRIXIE_SERVERS, "valkey"),
            Family::Valkey9 => (&crate::container::FORKY, &FORKY_SERVERS, "valkey"),
        };
        let b = crate::servers::debian(suite, packages, prefix);
        Programs {
            family: self,
            server: b.server,
            // Sentinel mode of the server binary (what the packages'
            // `*-sentinel` links run).
            sentinel: b.server,
            sentinel_mode: &["--sentinel"],
            cli: b.cli,
        }
    }
}

/// The one place that names the programs the lab runs, so that another
/// server family speaking the same protocol can be swapped in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Programs {
    pub family: Family,
    /// The data server (`--port`, `--bind`, `--replicaof`, ... options):
    /// a name looked up in PATH, or an absolute path.
    pub server: &'static str,
    /// The Sentinel, started with its config file, then `sentinel_mode`.
    pub(crate) sentinel: &'static str,
    pub(crate) sentinel_mode: &'static [&'static str],
    /// The command-line client (`-h`, `-p`, `--json`, `-r`, `-i`).
    pub cli: &'static str,
}

impl Programs {
    pub(crate) const REDIS: Programs = Programs {
        family: Family::Redis,
        server: "redis-server",
        sentinel: "redis-sentinel",
        sentinel_mode: &[],
        cli: "redis-cli",
    };

    /// The command line that runs a Sentinel on config file `conf`.
    pub fn sentinel_command(&self, conf: &Path) -> Vec<String> {
        let mut c = vec![self.sentinel.to_string(), conf.display().to_string()];
        c.extend(self.sentinel_mode.iter().map(|w| w.to_string()));
        c
    }

    /// The server's version as it reports it (`v=` of `--version`), for
    /// saying what a run proved; "?" if it does not say.
    pub fn version(&self) -> String {
        std::process::Command::new(self.server)
            .arg("--version")
            .output()
            .ok()
            .and_then(|o| {
                String::from_utf8_lossy(&o.stdout)
                    .split_whitespace()
                    .find_map(|w| w.strip_prefix("v=").map(str::to_string))
            })
            .unwrap_or_else(|| "?".into())
    }
}

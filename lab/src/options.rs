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
        }
    }
}

/// A server family the lab can run: the same protocol, the same Sentinel,
/// the same `client-reconfig-script`; only the programs differ.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Family {
    /// Debian's `redis-server`, `redis-sentinel`, `redis-cli`, from PATH.
    Redis,
    /// The pinned build `scripts/valkey.sh` installs (see `crate::valkey`).
    Valkey,
}

impl Family {
    /// Every family the suite proves, Redis first.
    pub const ALL: [Family; 2] = [Family::Redis, Family::Valkey];

    /// `redis` or `valkey`: how tests, rows and filters name it.
    pub fn name(self) -> &'static str {
        match self {
            Family::Redis => "redis",
            Family::Valkey => "valkey",
        }
    }

    /// Its programs. Panics, saying why, when Valkey cannot be had: a
    /// test asked to run against it must fail, never fall back to Redis.
    pub fn programs(self) -> Programs {
        match self {
            Family::Redis => Programs::REDIS,
            Family::Valkey => {
                let (server, cli) = crate::valkey::binaries().unwrap_or_else(|e| {
                    panic!(
                        "lab: cannot run Valkey: {e} \
                         (make deps installs it; SENTINEL_VIP_SKIP_E2E=1 skips e2e tests)"
                    )
                });
                Programs {
                    family: self,
                    server,
                    // Valkey ships no separate Sentinel binary.
                    sentinel: server,
                    sentinel_mode: &["--sentinel"],
                    cli,
                }
            }
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

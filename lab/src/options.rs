//! What a test may choose about its lab: Sentinel's timing, whether the
//! hook is Sentinel's script, extra sentinel-vip config, and which Redis
//! programs run. Only data; the lab reads it while building.

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
    /// The server, Sentinel and client programs.
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

/// The one place that names the Redis programs the lab runs, so that
/// another server family speaking the same protocol can be swapped in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Programs {
    /// The data server (`--port`, `--bind`, `--replicaof`, ... options).
    pub server: &'static str,
    /// The Sentinel, started with its config file as only argument.
    pub(crate) sentinel: &'static str,
    /// The command-line client (`-h`, `-p`, `--json`, `-r`, `-i`).
    pub cli: &'static str,
}

impl Programs {
    pub(crate) const REDIS: Programs = Programs {
        server: "redis-server",
        sentinel: "redis-sentinel",
        cli: "redis-cli",
    };
}

//! The commands, one file each (hook and watch are modes of their own, at
//! the crate's top), and the dispatch from the parsed command line. This
//! file only routes: it finds the config and hands each command its part.

mod announce;
mod check;
mod reconcile;
mod status;
mod vip;

use std::future::Future;
use std::path::{Path, PathBuf};

use anyhow::Result;

use crate::cli::{Cli, Command};
use crate::config::{Config, DEFAULT_PATH};

/// The config path: `--config`, else `SENTINEL_VIP_CONFIG`, else the default.
fn config_path(cli: &Cli) -> PathBuf {
    cli.config
        .clone()
        .or_else(|| std::env::var_os("SENTINEL_VIP_CONFIG").map(PathBuf::from))
        .unwrap_or_else(|| PathBuf::from(DEFAULT_PATH))
}

/// Runs one parsed command until done; `shutdown` ends the watcher.
pub async fn run(cli: Cli, shutdown: impl Future<Output = ()>) -> Result<()> {
    let path = config_path(&cli);
    let config = || Config::load(&path);
    let named = cli.config.is_some() || std::env::var_os("SENTINEL_VIP_CONFIG").is_some();
    let logged = |cfg: &Config| crate::logging::init(cli.log_format, cfg.log_file.as_deref());
    match cli.command {
        Command::Hook { args } => crate::hook::run(&args, &path, cli.log_format).await,
        Command::Vip(v) => vip::run(v, optional_config(named, &path)?).await,
        Command::Announce {
            addr,
            dev,
            count,
            interval_ms,
        } => {
            let cfg = optional_config(named, &path)?;
            announce::run(&addr, &dev, cfg, count, interval_ms).await
        }
        Command::Reconcile => {
            let cfg = config()?;
            logged(&cfg);
            reconcile::run(cfg).await
        }
        Command::Check => check::run(&path).await,
        Command::Status(j) => status::run(config()?, j.json).await,
        Command::Watch => {
            let cfg = config()?;
            logged(&cfg);
            crate::watch::run(path, cfg, shutdown).await
        }
    }
}

/// Manual commands work without a config file; an explicitly named one,
/// or one that exists, must be valid.
fn optional_config(named: bool, path: &Path) -> Result<Option<Config>> {
    if named || path.exists() {
        Config::load(path).map(Some)
    } else {
        Ok(None)
    }
}

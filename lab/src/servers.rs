//! Which server family the labs of this process run, Redis (the default)
//! or the pinned Valkey of `scripts/valkey.sh`, for the benchmark. Until
//! [`crate::Programs`] can name Valkey, Valkey is reached through PATH: a
//! private directory put first in PATH holds `redis-server` and
//! `redis-cli` as links to `valkey-server` and `valkey-cli`, and
//! `redis-sentinel` as a two-line script that execs `valkey-server <conf>
//! --sentinel` (same pid, so the lab's kill and pause reach Valkey). It
//! changes this process's PATH and nothing else; call it only while no
//! lab exists.

use std::ffi::OsString;
use std::fs;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// The family a run measures, as selected by [`Server::select`].
pub struct Server {
    /// `redis` or `valkey`.
    pub name: String,
    /// The server's own `--version` line, as found in PATH.
    pub version: String,
    /// The directory of links, removed on drop.
    shim: Option<PathBuf>,
}

/// PATH as this process started with it.
fn original_path() -> &'static OsString {
    static PATH: OnceLock<OsString> = OnceLock::new();
    PATH.get_or_init(|| std::env::var_os("PATH").unwrap_or_default())
}

impl Server {
    /// Makes `name` (`redis` or `valkey`) the family that labs started from
    /// now on run; `repo` is the checkout holding `scripts/valkey.sh`.
    /// Errors are one line saying what is missing.
    pub fn select(name: &str, repo: &Path) -> Result<Server, String> {
        let base = original_path().clone();
        let shim = match name {
            "redis" => None,
            "valkey" => Some(valkey_shim(repo)?),
            other => return Err(format!("unknown server {other:?} (redis or valkey)")),
        };
        let mut dirs: Vec<PathBuf> = shim.iter().cloned().collect();
        dirs.extend(std::env::split_paths(&base));
        let path = std::env::join_paths(dirs).map_err(|e| format!("PATH: {e}"))?;
        // Read by every `ip netns exec` child the lab starts from here on.
        std::env::set_var("PATH", &path);
        let version = Command::new("redis-server")
            .arg("--version")
            .output()
            .map_err(|e| format!("cannot run redis-server from PATH: {e}"))?;
        let version = String::from_utf8_lossy(&version.stdout).trim().to_string();
        let want = if name == "redis" { "Redis " } else { "Valkey " };
        if !version.starts_with(want) {
            return Err(format!("redis-server in PATH says {version:?}"));
        }
        Ok(Server {
            name: name.to_string(),
            version,
            shim,
        })
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(d) = self.shim.take() {
            std::env::set_var("PATH", original_path());
            let _ = fs::remove_dir_all(d);
        }
    }
}

/// Installs (or finds cached) the pinned Valkey and builds the directory
/// of links to it.
fn valkey_shim(repo: &Path) -> Result<PathBuf, String> {
    let script = repo.join("scripts/valkey.sh");
    let out = Command::new(&script)
        .output()
        .map_err(|e| format!("cannot run {}: {e}", script.display()))?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        return Err(err.lines().last().unwrap_or("failed").to_string());
    }
    let bin = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
    let dir = std::env::temp_dir().join(format!("sentinel-vip-valkey-{}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    let made = (|| -> std::io::Result<()> {
        fs::create_dir_all(&dir)?;
        symlink(bin.join("valkey-server"), dir.join("redis-server"))?;
        symlink(bin.join("valkey-cli"), dir.join("redis-cli"))?;
        let sentinel = dir.join("redis-sentinel");
        let server = bin.join("valkey-server");
        fs::write(
            &sentinel,
            format!("#!/bin/sh\nexec '{}' \"$@\" --sentinel\n", server.display()),
        )?;
        fs::set_permissions(&sentinel, fs::Permissions::from_mode(0o755))
    })();
    made.map_err(|e| format!("cannot build {}: {e}", dir.display()))?;
    Ok(dir)
}

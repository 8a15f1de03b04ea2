//! Where the pinned Valkey the lab runs beside Redis lives. Only
//! `scripts/valkey.sh` installs it and checks it (version, checksums,
//! Sentinel mode); this asks the script once per process for its bin
//! directory. It must not look anywhere else (PATH, a distribution's
//! valkey): the suite proves one known build, or fails saying why.

use std::path::Path;
use std::process::Command;
use std::sync::OnceLock;

/// The script, in the checkout this crate was built from.
const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../scripts/valkey.sh");

/// (`valkey-server`, `valkey-cli`) as absolute paths, or one line saying
/// why there are none.
pub(crate) fn binaries() -> Result<(&'static str, &'static str), &'static str> {
    static FOUND: OnceLock<Result<(String, String), String>> = OnceLock::new();
    match FOUND.get_or_init(find) {
        Ok((server, cli)) => Ok((server.as_str(), cli.as_str())),
        Err(e) => Err(e.as_str()),
    }
}

fn find() -> Result<(String, String), String> {
    let script = Path::new(SCRIPT);
    // Installs on first use (a fresh checkout without `make deps`), else
    // only re-hashes the cached binaries: tens of milliseconds.
    let out = Command::new(script)
        .output()
        .map_err(|e| format!("cannot run {}: {e}", script.display()))?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        return Err(err.trim().lines().last().unwrap_or("failed").to_string());
    }
    let dir = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let (server, cli) = (format!("{dir}/valkey-server"), format!("{dir}/valkey-cli"));
    for p in [&server, &cli] {
        if !Path::new(p).is_file() {
            return Err(format!(
                "{} printed {dir}, which has no {p}",
                script.display()
            ));
        }
    }
    eprintln!("lab: Valkey from {dir} (scripts/valkey.sh)");
    Ok((server, cli))
}

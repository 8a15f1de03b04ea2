//! The server builds the lab runs besides the host's own Redis (Debian
//! 12's, from PATH): Debian 13's Redis 8.0 and Valkey 8.1 and Debian
//! testing's Valkey 9, each from the distribution's own packages in a
//! cached Debian root file system (`container::rootfs_tarball`, extracted
//! once under /var/cache/sentinel-vip-lab/roots). They run on this host,
//! in the lab's namespaces, through that root's own dynamic loader and
//! libraries (a newer glibc than the host's), so no chroot, mount or
//! container is needed and every path they see is the lab's. Owns the
//! extracted roots and the small launchers in their `bin/`; it must not
//! look anywhere else for a server (PATH, a wheel): the suite proves the
//! builds it names, or fails saying why.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Mutex, OnceLock};

use crate::container::{rootfs_tarball, Suite};

const ROOTS: &str = "/var/cache/sentinel-vip-lab/roots";
/// Where the dynamic loader and libraries live in a Debian root (x86_64).
const LIBDIRS: [&str; 2] = ["usr/lib/x86_64-linux-gnu", "lib/x86_64-linux-gnu"];
const LOADER: &str = "usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2";

/// The launchers of one distribution build: absolute paths.
pub(crate) struct Build {
    pub server: &'static str,
    pub cli: &'static str,
}

/// `<prefix>-server` and `<prefix>-cli` ("redis", "valkey") from `suite`'s
/// `packages`, built (debootstrap, extraction) on first use and cached.
/// Panics saying why when they cannot be had or do not run here.
pub(crate) fn debian(suite: &Suite, packages: &[&str], prefix: &str) -> Build {
    // One build per process and root; other processes wait on the lock.
    static DONE: OnceLock<Mutex<Vec<(String, PathBuf)>>> = OnceLock::new();
    let key = format!("{} {}", suite.name, packages.join(","));
    let done = DONE.get_or_init(|| Mutex::new(Vec::new()));
    let dir = {
        let mut d = done.lock().unwrap_or_else(|e| e.into_inner());
        match d.iter().find(|(k, _)| *k == key) {
            Some((_, p)) => p.clone(),
            None => {
                let p = extracted(suite, packages);
                d.push((key, p.clone()));
                p
            }
        }
    };
    let launcher = |name: &str| -> &'static str {
        let path = dir.join("bin").join(name);
        assert!(
            path.is_file(),
            "lab: {} has no launcher {name} (is {prefix} in {packages:?}?)",
            dir.display()
        );
        Box::leak(path.display().to_string().into_boxed_str())
    };
    Build {
        server: launcher(&format!("{prefix}-server")),
        cli: launcher(&format!("{prefix}-cli")),
    }
}

/// The extracted root of `suite` with `packages`, and a launcher in its
/// `bin/` for each program of the root's /usr/bin that runs here.
fn extracted(suite: &Suite, packages: &[&str]) -> PathBuf {
    let tarball = rootfs_tarball(suite, packages);
    let stem = tarball
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let dir = Path::new(ROOTS).join(&stem);
    if dir.join("bin").is_dir() {
        return dir;
    }
    fs::create_dir_all(ROOTS).unwrap_or_else(|e| panic!("lab: cannot create {ROOTS}: {e}"));
    // Extracted aside and renamed into place under a lock: a half-made or
    // concurrent extraction is never seen.
    let script = r#"set -eu
tar=$1 dir=$2 loader=$3 libs=$4
[ -d "$dir/bin" ] && exit 0
work=$(mktemp -d "$dir.XXXXXX")
trap 'rm -rf --one-file-system "$work"' EXIT
mkdir "$work/root" "$work/bin"
tar -C "$work/root" --numeric-owner -xf "$tar"
for p in "$work"/root/usr/bin/redis-* "$work"/root/usr/bin/valkey-*; do
  [ -e "$p" ] || continue
  n=${p##*/}
  printf '#!/bin/sh\n# %s from %s, through its own loader and libraries.\nexec %s --inhibit-cache --library-path %s --argv0 %s %s "$@"\n' \
    "$n" "$tar" "$dir/root/$loader" "$libs" "$n" "$dir/root/usr/bin/$n" > "$work/bin/$n"
  chmod 755 "$work/bin/$n"
done
mv "$work" "$dir"
trap - EXIT
"#;
    let libs = LIBDIRS
        .iter()
        .map(|l| dir.join("root").join(l).display().to_string())
        .collect::<Vec<_>>()
        .join(":");
    let lock = Path::new(ROOTS).join(".lock");
    let o = Command::new("flock")
        .args(["-o", "-w", "600"])
        .arg(&lock)
        .args(["sh", "-c", script, "sh"])
        .arg(&tarball)
        .arg(&dir)
        .args([LOADER, libs.as_str()])
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("lab: cannot run flock/tar: {e}"));
    assert!(
        o.status.success() && dir.join("bin").is_dir(),
        "lab: cannot extract {} into {}: {}",
        tarball.display(),
        dir.display(),
        String::from_utf8_lossy(&o.stderr).trim()
    );
    let _ = fs::set_permissions(&dir, fs::Permissions::from_mode(0o755));
    dir
}

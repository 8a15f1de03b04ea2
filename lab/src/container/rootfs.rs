//! The containers' root file system: a debootstrap (minbase) of Debian
//! [`SUITE`] plus the packages a test names, cached as a tarball under
//! /var/cache so that only the first run downloads anything. Owns the cache
//! and its lock; boots nothing.

use std::fs;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Instant;

use super::check_tools;

/// Debian release the container runs (the issue's target: Debian 12).
pub const SUITE: &str = "bookworm";
const CACHE_DIR: &str = "/var/cache/sentinel-vip-test";

/// The cached root file system for `packages` (debootstrap minbase of
/// [`SUITE`] plus those), built when missing. The tarball is keyed by the
/// suite and package list, built under a lock so that concurrent runs build
/// it once, and renamed into place only when complete.
pub fn rootfs_tarball(packages: &[&str]) -> PathBuf {
    check_tools(&["debootstrap", "tar", "flock"]);
    let mut pkgs: Vec<&str> = packages.to_vec();
    pkgs.sort_unstable();
    pkgs.dedup();
    let list = pkgs.join(",");
    let key = fnv1a(format!("{SUITE} {list}").as_bytes());
    let tarball = PathBuf::from(CACHE_DIR).join(format!("rootfs-{SUITE}-{key:016x}.tar"));
    if tarball.is_file() {
        return tarball;
    }
    let mirror = debian_mirror();
    fs::create_dir_all(CACHE_DIR)
        .unwrap_or_else(|e| panic!("container: cannot create {CACHE_DIR}: {e}"));
    let t = Instant::now();
    eprintln!(
        "container: building the {SUITE} root file system from {mirror} (once; cached as {})",
        tarball.display()
    );
    // A failed build leaves no mounts (debootstrap mounts /proc and /sys in
    // its target) and no half-written tarball.
    let script = r#"set -eu
tar=$1 mirror=$2 pkgs=$3 suite=$4
[ -s "$tar" ] && exit 0
work=$(mktemp -d "${tar%/*}/build.XXXXXX")
cleanup() {
  grep -o " $work/[^ ]*" /proc/self/mountinfo | sort -r | xargs -r -n1 umount -l 2>/dev/null || true
  rm -rf --one-file-system "$work"
}
trap cleanup EXIT
if ! debootstrap --variant=minbase --include="$pkgs" "$suite" "$work/root" "$mirror" >"$work/log" 2>&1; then
  tail -n 30 "$work/log" >&2
  exit 1
fi
tar -C "$work/root" --numeric-owner --xattrs -cf "$work/rootfs.tar" .
mv "$work/rootfs.tar" "$tar"
"#;
    let lock = PathBuf::from(CACHE_DIR).join("build.lock");
    // -o: only flock holds the lock, so that a debootstrap child outliving
    // a killed run cannot keep it.
    let o = Command::new("flock")
        .args(["-o", "-w", "900"])
        .arg(&lock)
        .args(["sh", "-c", script, "sh"])
        .arg(&tarball)
        .args([mirror.as_str(), list.as_str(), SUITE])
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("container: cannot run flock/debootstrap: {e}"));
    assert!(
        o.status.success() && tarball.is_file(),
        "container: cannot build the {SUITE} root file system with debootstrap from {mirror} ({}): {}",
        o.status,
        String::from_utf8_lossy(&o.stderr).trim()
    );
    eprintln!(
        "container: root file system built in {:.1} s",
        t.elapsed().as_secs_f64()
    );
    tarball
}

/// The Debian mirror in the host's apt sources (deb822 `.sources` files or
/// sources.list): the first `deb` source that is not the security archive.
pub fn debian_mirror() -> String {
    let mut texts = Vec::new();
    if let Ok(t) = fs::read_to_string("/etc/apt/sources.list") {
        texts.push(t);
    }
    if let Ok(rd) = fs::read_dir("/etc/apt/sources.list.d") {
        let mut paths: Vec<PathBuf> = rd.filter_map(|e| e.ok().map(|e| e.path())).collect();
        paths.sort();
        for p in paths
            .iter()
            .filter(|p| p.extension().is_some_and(|e| e == "sources" || e == "list"))
        {
            if let Ok(t) = fs::read_to_string(p) {
                texts.push(t);
            }
        }
    }
    let mut uris = Vec::new();
    for t in &texts {
        for line in t.lines().map(str::trim) {
            if let Some(rest) = line.strip_prefix("URIs:") {
                uris.extend(rest.split_whitespace().map(str::to_string));
            } else if let Some(rest) = line.strip_prefix("deb ") {
                // `deb [options] URI suite components`
                let rest = match rest.trim_start().strip_prefix('[') {
                    Some(r) => r.split_once(']').map_or("", |(_, r)| r),
                    None => rest,
                };
                uris.extend(rest.split_whitespace().next().map(str::to_string));
            }
        }
    }
    uris.into_iter()
        .find(|u| u.starts_with("http") && !u.contains("security"))
        .unwrap_or_else(|| {
            panic!("container: no Debian mirror in /etc/apt/sources.list or /etc/apt/sources.list.d (debootstrap needs one)")
        })
}

/// 64-bit FNV-1a: a cache key that is stable across Rust releases (std's
/// hashers promise no such thing).
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

//! Debian root file systems: a debootstrap (minbase) of a [`Suite`] plus
//! the packages a caller names, and optionally further packages only
//! downloaded (their dependencies installed) so that a test can install
//! them later without a network. Cached as a tarball under /var/cache so
//! that only the first run downloads anything. Owns the cache and its
//! lock; boots nothing and runs nothing from the root.

use std::fs;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Instant;

use super::check_tools;

/// A Debian release to bootstrap.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Suite {
    pub name: &'static str,
    /// Its version, as people name it ("12", "13", "testing").
    pub version: &'static str,
    /// The debootstrap script, when the host's debootstrap has none of the
    /// suite's own name (a newer testing release bootstraps like sid).
    script: Option<&'static str>,
}

/// Debian 12, the host's own release.
pub const BOOKWORM: Suite = Suite {
    name: "bookworm",
    version: "12",
    script: None,
};
/// Debian 13, the current stable release.
pub const TRIXIE: Suite = Suite {
    name: "trixie",
    version: "13",
    script: None,
};
/// Debian testing (14 to be).
pub const FORKY: Suite = Suite {
    name: "forky",
    version: "testing",
    script: Some("sid"),
};

const CACHE_DIR: &str = "/var/cache/sentinel-vip-test";
/// Where the downloaded-only packages are, inside the root.
pub const DOWNLOADS: &str = "/var/tmp/sentinel-vip-debs";

/// The cached root file system of `suite` with `packages` installed, built
/// when missing.
pub fn rootfs_tarball(suite: &Suite, packages: &[&str]) -> PathBuf {
    rootfs_tarball_with(suite, packages, &[])
}

/// Like [`rootfs_tarball`], and with `downloads` as .deb files in
/// [`DOWNLOADS`] inside the root, their dependencies installed, so that
/// `apt install` of them needs no network. The tarball is keyed by the
/// suite and both lists, built under a lock so that concurrent runs build
/// it once, and renamed into place only when complete.
pub fn rootfs_tarball_with(suite: &Suite, packages: &[&str], downloads: &[&str]) -> PathBuf {
    check_tools(&["debootstrap", "tar", "flock", "chroot"]);
    let sorted = |l: &[&str]| {
        let mut v = l.to_vec();
        v.sort_unstable();
        v.dedup();
        v.join(",")
    };
    let (list, dl) = (sorted(packages), sorted(downloads));
    let suite_name = suite.name;
    let key = fnv1a(format!("{suite_name} {list} {dl}").as_bytes());
    let tarball = PathBuf::from(CACHE_DIR).join(format!("rootfs-{suite_name}-{key:016x}.tar"));
    if tarball.is_file() {
        return tarball;
    }
    let mirror = debian_mirror();
    fs::create_dir_all(CACHE_DIR)
        .unwrap_or_else(|e| panic!("container: cannot create {CACHE_DIR}: {e}"));
    let t = Instant::now();
    eprintln!(
        "container: building the {suite_name} root file system from {mirror} (once; cached as {})",
        tarball.display()
    );
    // A failed build leaves no mounts (debootstrap mounts /proc and /sys in
    // its target) and no half-written tarball. Packages only downloaded:
    // what `apt-get install` would add for them is installed now (services
    // are never started in the root: debootstrap's and our policy-rc.d),
    // then the packages themselves are fetched with `apt-get download`.
    let script = r#"set -eu
tar=$1 mirror=$2 pkgs=$3 suite=$4 script=$5 downloads=$6 dldir=$7
[ -s "$tar" ] && exit 0
work=$(mktemp -d "${tar%/*}/build.XXXXXX")
cleanup() {
  grep -o " $work/[^ ]*" /proc/self/mountinfo | sort -r | xargs -r -n1 umount -l 2>/dev/null || true
  rm -rf --one-file-system "$work"
}
trap cleanup EXIT
if ! debootstrap --variant=minbase --include="$pkgs" "$suite" "$work/root" "$mirror" $script >"$work/log" 2>&1; then
  tail -n 30 "$work/log" >&2
  exit 1
fi
if [ -n "$downloads" ]; then
  r=$work/root
  want=$(echo "$downloads" | tr ',' ' ')
  printf '#!/bin/sh
exit 101
' > "$r/usr/sbin/policy-rc.d"
  chmod 755 "$r/usr/sbin/policy-rc.d"
  deps=$(chroot "$r" apt-get install -s -y --no-install-recommends $want | awk '/^Inst /{print $2}' | grep -vxF "$(echo "$downloads" | tr ',' '
')" || true)
  if [ -n "$deps" ] && ! chroot "$r" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $deps >"$work/log" 2>&1; then
    tail -n 30 "$work/log" >&2
    exit 1
  fi
  mkdir -p "$r$dldir"
  if ! chroot "$r" sh -c "cd $dldir && apt-get download $want" >"$work/log" 2>&1; then
    tail -n 30 "$work/log" >&2
    exit 1
  fi
  rm -f "$r/usr/sbin/policy-rc.d"
  chroot "$r" apt-get clean
fi
tar -C "$work/root" --numeric-owner --xattrs -cf "$work/rootfs.tar" .
mv "$work/rootfs.tar" "$tar"
"#;
    let lock = PathBuf::from(CACHE_DIR).join("build.lock");
    let script_path = suite
        .script
        .map(|s| format!("/usr/share/debootstrap/scripts/{s}"))
        .unwrap_or_default();
    // -o: only flock holds the lock, so that a debootstrap child outliving
    // a killed run cannot keep it.
    let o = Command::new("flock")
        .args(["-o", "-w", "900"])
        .arg(&lock)
        .args(["sh", "-c", script, "sh"])
        .arg(&tarball)
        .args([
            mirror.as_str(),
            list.as_str(),
            suite_name,
            &script_path,
            &dl,
            DOWNLOADS,
        ])
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("container: cannot run flock/debootstrap: {e}"));
    assert!(
        o.status.success() && tarball.is_file(),
        "container: cannot build the {suite_name} root file system with debootstrap from {mirror} ({}): {}",
        o.status,
        String::from_utf8_lossy(&o.stderr).trim()
    );
    eprintln!(
        "container: {suite_name} root file system built in {:.1} s",
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

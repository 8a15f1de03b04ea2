#!/usr/bin/env bash
# Installs what the lab needs and is missing: real Redis and Sentinel,
# iproute2 for the namespaces, tcpdump to see frames as a client would,
# iputils-ping for the client's first contact, nftables for the chaos
# suite's blocked connections and partitions, iptables for its NFQUEUE
# delay line (the slow-network case; nftables' own queue statement is not
# in every kernel, xt NFQUEUE is), systemd-container (systemd-nspawn) and
# debootstrap for the package test's booted Debian container, prometheus
# (its promtool checks the metrics; its server scrapes the lab's
# watchers), qemu and busybox for the old-kernel VM (its kernel comes
# from scripts/old-kernel.sh), bird2 and frr for the routed lab (BGP
# routers and hosts in namespaces, tests/e2e_routed.rs). The other server
# builds the lab runs (Debian 13's Redis 8.0 and Valkey 8.1, Debian
# testing's Valkey 9) come from Debian's packages in root file systems
# debootstrap builds on first use and caches under /var/cache
# (lab/src/servers.rs). Root only (apt).
set -euo pipefail
here=$(dirname "$0")
pkgs=(redis-server redis-sentinel iproute2 tcpdump iputils-ping nftables iptables systemd-container debootstrap prometheus)
# The old-kernel VM test (tests/e2e_old_kernel.rs): qemu boots Debian 11's
# 5.10 kernel (scripts/old-kernel.sh fetches it with curl) from an
# initramfs holding busybox-static's busybox.
pkgs+=(qemu-system-x86)
pkgs+=(busybox-static curl)
# The routed lab (tests/e2e_routed.rs): BIRD 2 on the router and the
# hosts, FRR for its recipe. The lab starts its own daemons in namespaces
# with configs it writes; the packages' own services never run (below).
pkgs+=(bird2 frr)
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
    # No service may start while installing: BIRD's and FRR's would run
    # in the root namespace with the packages' configs (BIRD's kernel
    # protocol, FRR's zebra). invoke-rc.d asks policy-rc.d; 101 = refused.
    # An existing policy (a container's) is left as it is.
    policy=/usr/sbin/policy-rc.d
    if [ ! -e "$policy" ]; then
      printf '#!/bin/sh\nexit 101\n' >"$policy" && chmod 755 "$policy"
      trap 'rm -f "$policy"' EXIT
    fi
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  fi
  # The Debian packages start services where an init system runs; the lab
  # starts its own instances in namespaces and needs nothing listening here.
  # Without systemd as PID 1 (a CI container), the packages' init scripts
  # started them instead.
  for svc in redis-server redis-sentinel prometheus bird frr; do
    if command -v systemctl >/dev/null 2>&1 && systemctl is-active -q "$svc" 2>/dev/null; then
      systemctl stop "$svc" || true
    elif [ -x "/etc/init.d/$svc" ]; then
      "/etc/init.d/$svc" stop >/dev/null 2>&1 || true
    fi
  done
  # Nor at the next boot: a BIRD or FRR in the root namespace would speak
  # for this host's routing table.
  if command -v systemctl >/dev/null 2>&1; then
    systemctl disable -q bird frr 2>/dev/null || true
  fi
fi
# Cached after the first run (then it only re-checks the hashes); the
# test asks the same script where the kernel is.
if ! "$here/old-kernel.sh" >/dev/null; then
  echo "scripts/deps.sh: the old kernel could not be fetched (the line above says why); make test boots it under qemu" >&2
  exit 1
fi

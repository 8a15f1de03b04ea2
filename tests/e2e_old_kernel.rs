//! sentinel-vip on a kernel that drops `IFA_PROTO` (issue 22, defect 1):
//! Debian 11's 5.10, booted under qemu (TCG) from an initramfs holding
//! busybox and the binary under test, with no network device. Kernels
//! before 5.18 (RHEL 9's 5.14, Ubuntu 22.04's 5.15) do not keep the tag
//! sentinel-vip adds its VIPs with, so a VIP that is not an IPv4
//! secondary (every IPv6 VIP, a /32 alone in its prefix, as on `lo` for
//! routed networks) must be known as ours another way: the ownership
//! record, checked against the kernel.
//!
//! In the guest, two hosts (the first network namespace and one of its
//! own, each with a dummy interface, `lo` and the lab's addresses): hooks
//! trusting their arguments (`sentinels = []`) take an IPv6 VIP and a /32
//! on `lo`, find them again as their own, and move them to the other host
//! and back as the arguments name it; `vip add`/`vip del` do the same by
//! hand;
//! and the host's own address equal to a VIP, or a VIP deleted and added
//! again by hand, is refused, never deleted. The guest prints one line per
//! step, which this test reads.

use std::path::Path;
use std::time::{Duration, Instant};

use sentinel_vip_lab::e2e_enabled;
use sentinel_vip_lab::vm::{self, Entry};

/// TCG boots the kernel in seconds; the binary runs slowly under it.
const DEADLINE: Duration = Duration::from_secs(240);

/// Host A's config (the default lock and record, in /run/sentinel-vip);
/// host B's adds its own `lock_file` and `control_socket`.
const CONFIG: &str = r#"sentinels = []
[announce]
count = 1
[[vip]]
master = "m6"
address = "2001:2::100/64"
interface = "d0"
[[vip]]
master = "m32"
address = "192.0.2.100/32"
interface = "lo"
[[vip]]
master = "mown"
address = "192.0.2.201/32"
interface = "lo"
"#;

/// The guest's `/init` after busybox installed itself: set up, run every
/// step (`step NAME COMMAND…` prints `@@ NAME rc=N` and the output), dump
/// the addresses, power off.
const SCRIPT: &str = r#"
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
mount -t tmpfs run /run
echo "@@ kernel $(uname -r)"
insmod /lib/modules/dummy.ko || echo "@@ insmod failed"
# Host A: this namespace. Host B: a network namespace of its own, with
# its own runtime directory (its config's lock_file).
unshare -n sleep 600 &
B=$!
sleep 0.2
inb() { nsenter -t $B -n "$@"; }
for x in "" inb; do
  $x ip link set lo up
  $x ip link add d0 type dummy
  $x ip link set d0 up
done
ip addr add 192.0.2.11/24 dev d0
ip -6 addr add 2001:2::11/64 dev d0
inb ip addr add 192.0.2.12/24 dev d0
inb ip -6 addr add 2001:2::12/64 dev d0
# Host A's own address, equal to the configured VIP of "mown".
ip addr add 192.0.2.201/32 dev lo
A="/sv/sentinel-vip --config /sv/a.toml"
SB="inb /sv/sentinel-vip --config /sv/b.toml"
step() {
  name=$1
  shift
  out=$("$@" 2>&1)
  rc=$?
  echo "@@ $name rc=$rc"
  echo "$out" | sed 's/^/@@ | /'
}
# hook NAME HOST MASTER TO_IP: Sentinel's call on that host.
hook() { n=$1; h=$2; shift 2; step "$n" $h hook "$1" leader start 192.0.2.99 6379 "$2" 6379; }
hook v6-take "$A" m6 2001:2::11
step record cat /run/sentinel-vip/lock.owned
hook v6-again "$A" m6 2001:2::11
step show $A vip show --json
hook v6-away "$A" m6 2001:2::12
hook v6-in "$SB" m6 2001:2::12
hook v6-b-again "$SB" m6 2001:2::12
hook v6-b-away "$SB" m6 2001:2::11
hook lo-take "$A" m32 192.0.2.11
hook lo-again "$A" m32 192.0.2.11
hook lo-away "$A" m32 192.0.2.12
hook lo-in "$SB" m32 192.0.2.12
hook lo-b-again "$SB" m32 192.0.2.12
hook lo-b-away "$SB" m32 192.0.2.11
step vip-add $A vip add 2001:2::200/128 --dev d0
step vip-del $A vip del 2001:2::200/128 --dev d0
hook own-release "$A" mown 192.0.2.12
hook again-take "$A" m32 192.0.2.11
ip addr del 192.0.2.100/32 dev lo
sleep 0.1
ip addr add 192.0.2.100/32 dev lo
hook readded-release "$A" m32 192.0.2.12
echo "@@ addrs"
ip -o addr show | sed 's/^/@@ a /'
inb ip -o addr show | sed 's/^/@@ b /'
echo "@@ done"
kill $B
poweroff -f
"#;
/// One step's exit code and output lines, from the console.
fn step<'a>(console: &'a str, name: &str) -> Option<(i32, Vec<&'a str>)> {
    let head = format!("@@ {name} rc=");
    let mut lines = console.lines().skip_while(|l| !l.starts_with(&head));
    let rc = lines.next()?.strip_prefix(&head)?.trim().parse().ok()?;
    let out = lines
        .map_while(|l| l.strip_prefix("@@ | "))
        .collect::<Vec<_>>();
    Some((rc, out))
}

#[test]
fn vips_on_a_kernel_without_ifa_proto() {
    if !e2e_enabled() {
        return;
    }
    let t0 = Instant::now();
    if let Err(e) = vm::tools() {
        panic!("cannot run the old-kernel VM: {e}");
    }
    let (kernel, dummy) =
        vm::old_kernel().unwrap_or_else(|e| panic!("cannot have the old kernel: {e}"));
    let scratch = std::env::temp_dir().join(format!("sv-old-kernel-{}", std::process::id()));
    std::fs::create_dir_all(&scratch).unwrap();
    let bin = Path::new(env!("CARGO_BIN_EXE_sentinel-vip"));
    let mut files = vm::program(bin, &scratch).unwrap_or_else(|e| panic!("{e}"));
    files.push(Entry::Dir("lib/modules"));
    files.push(Entry::File(
        "lib/modules/dummy.ko".into(),
        std::fs::read(&dummy).unwrap(),
        0o644,
    ));
    let b =
        format!("lock_file = \"/run/b/lock\"\ncontrol_socket = \"/run/b/control.sock\"\n{CONFIG}");
    files.push(Entry::File("sv/a.toml".into(), CONFIG.into(), 0o644));
    files.push(Entry::File("sv/b.toml".into(), b.into_bytes(), 0o644));
    let initrd = vm::initramfs(SCRIPT, files).unwrap_or_else(|e| panic!("{e}"));
    let booted = vm::boot(&kernel, &initrd, &scratch, DEADLINE);
    let _ = std::fs::remove_dir_all(&scratch);
    let console = booted.unwrap_or_else(|e| panic!("{e}"));
    let ours: String = console
        .lines()
        .filter(|l| l.contains("@@"))
        .map(|l| format!("{l}\n"))
        .collect();
    vm::show(&ours);
    eprintln!(
        "old-kernel VM: booted, ran and powered off in {:.1} s",
        t0.elapsed().as_secs_f64()
    );
    assert!(
        console.contains("@@ kernel 5.10."),
        "not the old kernel: {ours}"
    );
    assert!(
        console.contains("@@ done"),
        "the guest's script did not finish: {ours}"
    );
    // (step, exit code, a word its output must hold)
    #[rustfmt::skip]
    let want: [(&str, i32, &str); 18] = [
        ("v6-take", 0, "Acquire"),
        // The kernel dropped the tag, so the VIP is in the record.
        ("record", 0, "2001:2::100/64"),
        ("v6-again", 0, "Keep"),
        ("show", 0, r#""added_by_sentinel_vip":true"#),
        // A failover to host B, and back.
        ("v6-away", 0, "Release"),
        ("v6-in", 0, "Acquire"),
        ("v6-b-again", 0, "Keep"),
        ("v6-b-away", 0, "Release"),
        ("lo-take", 0, "Acquire"),
        ("lo-again", 0, "Keep"),
        ("lo-away", 0, "Release"),
        ("lo-in", 0, "Acquire"),
        ("lo-b-again", 0, "Keep"),
        ("lo-b-away", 0, "Release"),
        ("vip-add", 0, "added"),
        ("vip-del", 0, "deleted"),
        // The host's own address: never ours, never deleted.
        ("own-release", 2, "did not add"),
        // Deleted and added again by hand: no longer the one we added.
        ("readded-release", 2, "did not add"),
    ];
    let mut problems = Vec::new();
    for (name, rc, word) in want {
        match step(&console, name) {
            None => problems.push(format!("{name}: no result")),
            Some((got, out)) => {
                let text = out.join(" ");
                if got != rc || !text.contains(word) {
                    problems.push(format!(
                        "{name}: exit {got} (want {rc}, with {word:?}): {text}"
                    ));
                }
            }
        }
    }
    let on = |host: &str, addr: &str| {
        let mark = format!("@@ {host} ");
        console
            .lines()
            .filter_map(|l| l.split_once(&mark).map(|(_, rest)| rest))
            .any(|l| l.contains(addr))
    };
    #[rustfmt::skip]
    let end = [
        ("a", "2001:2::100/64", false),
        ("a", "2001:2::200/128", false),
        ("a", "192.0.2.201/32", true),
        ("a", "192.0.2.100/32", true),
        ("b", "2001:2::100/64", false),
        ("b", "192.0.2.100/32", false),
    ];
    for (host, addr, present) in end {
        if on(host, addr) != present {
            problems.push(format!(
                "at the end {addr} on host {host}: {}, want {present}",
                !present
            ));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

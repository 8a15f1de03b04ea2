//! Capabilities as /proc/PID/status shows them: which of the two the tool
//! needs this process lacks, and what a process holds beyond them. It
//! reads /proc and nothing else.

/// (bit, name) of the capabilities address work and raw frames need.
pub const NEEDED: [(u32, &str); 2] = [(12, "CAP_NET_ADMIN"), (13, "CAP_NET_RAW")];

/// [`NEEDED`] as a mask.
pub const NEEDED_MASK: u64 = 1 << 12 | 1 << 13;

/// Linux's capability names by bit (capability.h; 40 is the last, 6.x).
const NAMES: [&str; 41] = [
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_DAC_READ_SEARCH",
    "CAP_FOWNER",
    "CAP_FSETID",
    "CAP_KILL",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETPCAP",
    "CAP_LINUX_IMMUTABLE",
    "CAP_NET_BIND_SERVICE",
    "CAP_NET_BROADCAST",
    "CAP_NET_ADMIN",
    "CAP_NET_RAW",
    "CAP_IPC_LOCK",
    "CAP_IPC_OWNER",
    "CAP_SYS_MODULE",
    "CAP_SYS_RAWIO",
    "CAP_SYS_CHROOT",
    "CAP_SYS_PTRACE",
    "CAP_SYS_PACCT",
    "CAP_SYS_ADMIN",
    "CAP_SYS_BOOT",
    "CAP_SYS_NICE",
    "CAP_SYS_RESOURCE",
    "CAP_SYS_TIME",
    "CAP_SYS_TTY_CONFIG",
    "CAP_MKNOD",
    "CAP_LEASE",
    "CAP_AUDIT_WRITE",
    "CAP_AUDIT_CONTROL",
    "CAP_SETFCAP",
    "CAP_MAC_OVERRIDE",
    "CAP_MAC_ADMIN",
    "CAP_SYSLOG",
    "CAP_WAKE_ALARM",
    "CAP_BLOCK_SUSPEND",
    "CAP_AUDIT_READ",
    "CAP_PERFMON",
    "CAP_BPF",
    "CAP_CHECKPOINT_RESTORE",
];

/// What VIPs of which some (`frames`) or none are announced with frames
/// need: CAP_NET_ADMIN for the addresses, and CAP_NET_RAW (the frame
/// socket, [`NEEDED`]'s second) only for frames; a routed VIP is only an
/// address.
pub fn needed(frames: bool) -> &'static [(u32, &'static str)] {
    if frames {
        &NEEDED
    } else {
        &NEEDED[..1]
    }
}

/// Names of the [`needed`] capabilities missing from the effective set.
pub fn missing(frames: bool) -> Vec<&'static str> {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    missing_from(&status, frames)
}

/// Pure: the same from the text of /proc/PID/status.
pub fn missing_from(status: &str, frames: bool) -> Vec<&'static str> {
    let eff = set(status, "CapEff").unwrap_or(0);
    needed(frames)
        .iter()
        .filter(|(bit, _)| eff & (1 << bit) == 0)
        .map(|(_, n)| *n)
        .collect()
}

/// Pure: the set `key` (`CapEff`, `CapPrm`, `CapBnd`, …) of a
/// /proc/PID/status text, if it has one.
pub fn set(status: &str, key: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix(':'))
        .and_then(|h| u64::from_str_radix(h.trim(), 16).ok())
}

/// Pure: the names of the capabilities in `mask`, by bit; a bit this
/// table does not know as `cap_N`.
pub fn names(mask: u64) -> Vec<String> {
    (0..64)
        .filter(|b| mask & (1 << b) != 0)
        .map(|b| NAMES.get(b).map_or(format!("cap_{b}"), |n| n.to_string()))
        .collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn reads_effective_set() {
        // (CapEff, frames sent, missing)
        let rows: [(&str, bool, &[&str]); 8] = [
            ("000001ffffffffff", true, &[]),
            ("0000000000003000", true, &[]),
            ("0000000000001000", true, &["CAP_NET_RAW"]),
            ("0000000000002000", true, &["CAP_NET_ADMIN"]),
            ("0000000000000000", true, &["CAP_NET_ADMIN", "CAP_NET_RAW"]),
            // Routed VIPs only: the address is all, CAP_NET_RAW unasked.
            ("0000000000001000", false, &[]),
            ("0000000000002000", false, &["CAP_NET_ADMIN"]),
            ("0000000000000000", false, &["CAP_NET_ADMIN"]),
        ];
        for (eff, frames, want) in rows {
            let status = format!("CapEff:\t{eff}\n");
            assert_eq!(super::missing_from(&status, frames), want, "{eff} {frames}");
        }
        assert_eq!(super::missing_from("Name: x\n", true).len(), 2);
    }

    #[test]
    fn reads_any_set_and_names_its_bits() {
        let status = "CapInh:\t0000000000000000\nCapPrm:\t0000000000003000\n\
                      CapEff:\t0000000000003000\nCapBnd:\t000001ffffffffff\n";
        assert_eq!(super::set(status, "CapPrm"), Some(super::NEEDED_MASK));
        assert_eq!(super::set(status, "CapInh"), Some(0));
        assert_eq!(super::set(status, "CapBnd"), Some((1 << 41) - 1));
        assert_eq!(super::set(status, "CapAmb"), None);
        assert_eq!(super::set("CapEffX:\t1\n", "CapEff"), None);
        assert_eq!(
            super::names(super::NEEDED_MASK),
            ["CAP_NET_ADMIN", "CAP_NET_RAW"]
        );
        assert_eq!(
            super::names(1 | 1 << 40 | 1 << 41),
            ["CAP_CHOWN", "CAP_CHECKPOINT_RESTORE", "cap_41"]
        );
        assert_eq!(super::names((1 << 41) - 1).len(), 41);
    }
}

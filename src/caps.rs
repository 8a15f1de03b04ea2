//! Which of the two capabilities the tool needs this process lacks. It
//! reads /proc/self/status and nothing else.

/// (bit, name) of the capabilities address work and raw frames need.
pub const NEEDED: [(u32, &str); 2] = [(12, "CAP_NET_ADMIN"), (13, "CAP_NET_RAW")];

/// Names of the needed capabilities missing from the effective set.
pub fn missing() -> Vec<&'static str> {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    missing_from(&status)
}

/// Pure: the same from the text of /proc/PID/status.
pub fn missing_from(status: &str) -> Vec<&'static str> {
    let eff = status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|h| u64::from_str_radix(h.trim(), 16).ok())
        .unwrap_or(0);
    NEEDED
        .iter()
        .filter(|(bit, _)| eff & (1 << bit) == 0)
        .map(|(_, n)| *n)
        .collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn reads_effective_set() {
        assert!(super::missing_from("CapEff:\t000001ffffffffff\n").is_empty());
        assert_eq!(
            super::missing_from("CapEff:\t0000000000001000\n"),
            ["CAP_NET_RAW"]
        );
        assert_eq!(
            super::missing_from("CapEff:\t0000000000002000\n"),
            ["CAP_NET_ADMIN"]
        );
        assert_eq!(super::missing_from("Name: x\n").len(), 2);
    }
}

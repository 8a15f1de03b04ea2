//! Maps failures to the exit codes Sentinel understands; owns no other policy.
//!
//! Sentinel retries a script that exits 1 (up to ten times, delays doubling
//! from 30 s) and never retries one that exits 2 or more. So anything that a
//! retry cannot fix (bad arguments, bad config, a refused request) must be
//! marked [`Permanent`]; everything else is treated as transient.

use std::fmt;

/// Marks an error that a retry cannot fix: exit code 2.
#[derive(Debug)]
pub struct Permanent(pub String);

impl fmt::Display for Permanent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Permanent {}

/// Builds a permanent (exit 2) error.
pub fn permanent(msg: impl Into<String>) -> anyhow::Error {
    anyhow::Error::new(Permanent(msg.into()))
}

/// 2 when any error in the chain is [`Permanent`], else 1 (worth a retry).
pub fn exit_code(err: &anyhow::Error) -> i32 {
    if err.chain().any(|e| e.is::<Permanent>()) {
        2
    } else {
        1
    }
}

/// One line, whatever the error carries: Sentinel and journald read lines.
pub fn one_line(err: &anyhow::Error) -> String {
    let mut s = String::new();
    for (i, e) in err.chain().enumerate() {
        if i > 0 {
            s.push_str(": ");
        }
        s.push_str(&e.to_string());
    }
    printable(&s)
}

/// Control characters (newlines, terminal escapes) as spaces: for text
/// that reaches logs from outside, such as a peer's error reply.
pub fn printable(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use anyhow::Context;

    #[test]
    fn permanent_anywhere_in_chain_exits_2() {
        let e = Err::<(), _>(permanent("bad port"))
            .context("hook")
            .unwrap_err();
        assert_eq!(exit_code(&e), 2);
        assert_eq!(one_line(&e), "hook: bad port");
        let t = anyhow::anyhow!("connection refused\nsecond line");
        assert_eq!(exit_code(&t), 1);
        assert_eq!(one_line(&t), "connection refused second line");
    }
}

//! What a notify command holds, as it sees itself: a script that records
//! its own capability sets, `NoNewPrivs`, `id` and environment, and the
//! judge of that record. Used under the lab's watchers and under the
//! packaged unit alike; it reads, never changes anything.

use std::collections::BTreeMap;

/// The script: `$1` is the record file (written aside, then renamed, so
/// that a reader never sees half of it). `/proc/$$` is the command's own
/// process, as the watcher started it (a `/proc/self` read by `grep` would
/// show grep's, which execve may have changed).
pub const SCRIPT: &str = r#"#!/bin/sh
out=$1
{
  grep -E '^(Cap(Inh|Prm|Eff|Bnd|Amb)|NoNewPrivs):' /proc/$$/status
  echo "id: $(id)"
  env | sed 's/^/env: /'
  echo end
} > "$out.tmp" && mv "$out.tmp" "$out"
"#;

/// The capability sets that must be empty. `CapBnd` may still hold what
/// the watcher's bounding set held: with the others empty and
/// no_new_privs set, nothing can raise a capability from it.
pub const EMPTY_SETS: [&str; 4] = ["CapInh", "CapPrm", "CapEff", "CapAmb"];

/// Variables a shell sets for itself: not given by the watcher.
const SHELL_OWN: [&str; 3] = ["PWD", "SHLVL", "_"];

/// One record of [`SCRIPT`].
#[derive(Clone, Debug, Default)]
pub struct Held {
    /// `CapInh` … `NoNewPrivs`, as /proc/PID/status prints them.
    pub status: BTreeMap<String, String>,
    /// `id`'s line.
    pub id: String,
    pub env: BTreeMap<String, String>,
}

impl Held {
    /// Parses a complete record (ending in `end`); `None` while it is not.
    pub fn parse(text: &str) -> Option<Held> {
        if text.lines().last() != Some("end") {
            return None;
        }
        let mut h = Held::default();
        for line in text.lines() {
            if let Some(v) = line.strip_prefix("id: ") {
                h.id = v.to_string();
            } else if let Some(kv) = line.strip_prefix("env: ") {
                let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
                h.env.insert(k.to_string(), v.to_string());
            } else if let Some((k, v)) = line.split_once(':') {
                h.status.insert(k.to_string(), v.trim().to_string());
            }
        }
        Some(h)
    }

    /// What the command should not have held: a capability in a set
    /// other than the bounding one, no_new_privs unset.
    pub fn privilege_problems(&self) -> Vec<String> {
        let mut bad: Vec<String> = EMPTY_SETS
            .iter()
            .filter(|k| self.status.get(**k).map(String::as_str) != Some("0000000000000000"))
            .map(|k| format!("{k} {:?}", self.status.get(*k)))
            .collect();
        if self.status.get("NoNewPrivs").map(String::as_str) != Some("1") {
            bad.push(format!("NoNewPrivs {:?}", self.status.get("NoNewPrivs")));
        }
        bad
    }

    /// Variables the command got that are none of: `PATH`, `LANG`, `TZ`,
    /// the `SENTINEL_VIP_*` facts, `admin` (the config's `notify_env`), or
    /// the shell's own.
    pub fn unexpected_env(&self, admin: &[&str]) -> Vec<String> {
        self.env
            .keys()
            .filter(|k| {
                let fact = k
                    .strip_prefix("SENTINEL_VIP_")
                    .is_some_and(|f| FACTS.contains(&f));
                !(fact
                    || ["PATH", "LANG", "TZ"].contains(&k.as_str())
                    || SHELL_OWN.contains(&k.as_str())
                    || admin.contains(&k.as_str()))
            })
            .cloned()
            .collect()
    }
}

/// The facts of README's table, without the `SENTINEL_VIP_` prefix.
pub const FACTS: [&str; 9] = [
    "MASTER",
    "VIP",
    "INTERFACE",
    "ACTION",
    "REASON",
    "CONFIG_EPOCH",
    "SENTINEL_MASTER",
    "SENTINELS_ANSWERED",
    "SEQUENCE",
];

#[cfg(test)]
mod tests {
    use super::*;

    const RECORD: &str = "CapInh:\t0000000000000000\nCapPrm:\t0000000000000000\n\
        CapEff:\t0000000000000000\nCapBnd:\t0000000000003000\nCapAmb:\t0000000000000000\n\
        NoNewPrivs:\t1\nid: uid=65534(nobody) gid=65534(nogroup) groups=65534(nogroup)\n\
        env: PATH=/usr/bin:/bin\nenv: PWD=/\nenv: SENTINEL_VIP_VIP=192.0.2.100\n\
        env: GREETING=a=b\nenv: SENTINEL_VIP_CONFIG=/x.toml\nend\n";

    #[test]
    fn judges_a_record() {
        assert!(Held::parse("CapInh:\t0\n").is_none(), "incomplete");
        let h = Held::parse(RECORD).unwrap();
        assert_eq!(
            h.id,
            "uid=65534(nobody) gid=65534(nogroup) groups=65534(nogroup)"
        );
        assert_eq!(h.env["GREETING"], "a=b");
        assert!(
            h.privilege_problems().is_empty(),
            "{:?}",
            h.privilege_problems()
        );
        assert_eq!(h.unexpected_env(&["GREETING"]), ["SENTINEL_VIP_CONFIG"]);
        assert_eq!(h.unexpected_env(&[]), ["GREETING", "SENTINEL_VIP_CONFIG"]);
        let held = RECORD
            .replace("CapAmb:\t0000000000000000", "CapAmb:\t0000000000003000")
            .replace("NoNewPrivs:\t1", "NoNewPrivs:\t0");
        let p = Held::parse(&held).unwrap().privilege_problems();
        assert_eq!(p.len(), 2, "{p:?}");
        assert!(
            p[0].starts_with("CapAmb") && p[1].starts_with("NoNewPrivs"),
            "{p:?}"
        );
    }
}

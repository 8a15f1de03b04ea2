//! Reading a systemd service unit as systemd would run it, for the few
//! settings that decide whether a Sentinel's hook can reach the watcher:
//! the user, the command line, the exec and path restrictions, the socket
//! families. Pure: the caller reads the files; nothing here looks at the
//! host, and nothing is ever written.

use std::path::{Component, Path, PathBuf};

/// A service's settings that matter to its `client-reconfig-script`,
/// merged from its unit file and drop-ins in the order systemd reads them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Service {
    /// `User=`; `None` runs as root.
    pub user: Option<String>,
    pub dynamic_user: bool,
    /// The words of the last `ExecStart=` (prefixes such as `-` or `!`
    /// removed).
    pub exec_start: Vec<String>,
    pub exec_paths: Vec<PathBuf>,
    pub no_exec_paths: Vec<PathBuf>,
    pub inaccessible_paths: Vec<PathBuf>,
    /// `RestrictAddressFamilies=`: `None` when unrestricted, else whether
    /// it is an allow-list (no `~`) and its families.
    pub families: Option<(bool, Vec<String>)>,
}

impl Service {
    /// Applies one file's `[Service]` section (a unit file or a drop-in)
    /// on top of what was read before; `instance` replaces `%i`/`%I`.
    pub fn apply(&mut self, text: &str, instance: &str) {
        let mut in_service = false;
        for line in logical_lines(text) {
            let line = line.trim();
            if line.starts_with('[') {
                in_service = line == "[Service]";
                continue;
            }
            if !in_service || line.is_empty() || line.starts_with(['#', ';']) {
                continue;
            }
            let Some((key, value)) = line.split_once('=') else {
                continue;
            };
            let value = value.trim().replace("%i", instance).replace("%I", instance);
            self.set(key.trim(), &value);
        }
    }

    fn set(&mut self, key: &str, value: &str) {
        let paths = |v: &str| -> Vec<PathBuf> {
            v.split_whitespace()
                .map(|w| PathBuf::from(w.trim_start_matches(['-', '+'])))
                .collect()
        };
        // List settings: an empty assignment resets, others append.
        let list = |old: &mut Vec<PathBuf>| {
            if value.is_empty() {
                old.clear();
            } else {
                old.extend(paths(value));
            }
        };
        match key {
            "User" => self.user = (!value.is_empty()).then(|| value.to_string()),
            "DynamicUser" => self.dynamic_user = matches!(value, "yes" | "true" | "1" | "on"),
            "ExecStart" => {
                self.exec_start = value
                    .split_whitespace()
                    .map(str::to_string)
                    .collect::<Vec<_>>();
                if let Some(first) = self.exec_start.first_mut() {
                    *first = first
                        .trim_start_matches(['-', '@', ':', '+', '!'])
                        .to_string();
                }
            }
            "ExecPaths" => list(&mut self.exec_paths),
            "NoExecPaths" => list(&mut self.no_exec_paths),
            "InaccessiblePaths" | "InaccessibleDirectories" => list(&mut self.inaccessible_paths),
            "RestrictAddressFamilies" => {
                if value.is_empty() {
                    self.families = None;
                    return;
                }
                let (allow, rest) = match value.strip_prefix('~') {
                    Some(r) => (false, r),
                    None => (true, value),
                };
                let words = rest.split_whitespace().map(str::to_string);
                match &mut self.families {
                    // The same kind of list again: merged.
                    Some((a, fams)) if *a == allow => fams.extend(words),
                    // Switching kinds: the latest assignment stands (close
                    // enough to systemd's merge for the one family asked).
                    _ => self.families = Some((allow, words.collect())),
                }
            }
            _ => {}
        }
    }

    /// The user the service runs as, by name (`root` when unset).
    pub fn user_name(&self) -> &str {
        self.user.as_deref().unwrap_or("root")
    }

    /// Whether processes of this service may create AF_UNIX sockets.
    pub fn unix_sockets(&self) -> bool {
        match &self.families {
            None => true,
            Some((true, fams)) => fams.iter().any(|f| f == "AF_UNIX"),
            Some((false, fams)) => !fams.iter().any(|f| f == "AF_UNIX"),
        }
    }

    /// The Sentinel config file its command line names: the first
    /// argument ending in `.conf`.
    pub fn config_file(&self) -> Option<&str> {
        self.exec_start
            .iter()
            .skip(1)
            .find(|w| w.ends_with(".conf"))
            .map(String::as_str)
    }

    /// Whether the service may execute `path` (already resolved to the file
    /// the kernel would run): systemd mounts each listed path exec or
    /// noexec, nested, so the longest listed prefix decides; `ExecPaths=`
    /// wins a tie.
    pub fn may_exec(&self, path: &Path) -> bool {
        let deepest = |list: &[PathBuf]| {
            list.iter()
                .filter(|p| path.starts_with(p))
                .map(|p| depth(p))
                .max()
        };
        match (deepest(&self.exec_paths), deepest(&self.no_exec_paths)) {
            (_, None) => true,
            (None, Some(_)) => false,
            (Some(e), Some(n)) => e >= n,
        }
    }

    /// Whether `path` is hidden from the service.
    pub fn hides(&self, path: &Path) -> bool {
        self.inaccessible_paths.iter().any(|p| path.starts_with(p))
    }
}

fn depth(p: &Path) -> usize {
    p.components()
        .filter(|c| matches!(c, Component::Normal(_)))
        .count()
}

/// Lines with systemd's backslash continuations joined.
fn logical_lines(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    for l in text.lines() {
        match l.strip_suffix('\\') {
            Some(part) => {
                cur.push_str(part);
                cur.push(' ');
            }
            None => {
                cur.push_str(l);
                out.push(std::mem::take(&mut cur));
            }
        }
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

/// The `client-reconfig-script` lines of a Sentinel config: (master,
/// script) pairs, as Sentinel reads them (case-insensitive keywords,
/// optional double quotes).
pub fn reconfig_scripts(conf: &str) -> Vec<(String, String)> {
    conf.lines()
        .filter_map(|l| {
            let w: Vec<&str> = l.split_whitespace().map(|w| w.trim_matches('"')).collect();
            match w.as_slice() {
                [s, k, master, script, ..]
                    if s.eq_ignore_ascii_case("sentinel")
                        && k.eq_ignore_ascii_case("client-reconfig-script") =>
                {
                    Some((master.to_string(), script.to_string()))
                }
                _ => None,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Debian 13's valkey-sentinel.service, the parts that matter.
    const VALKEY: &str = "[Unit]\nDescription=Advanced key-value store\n\n[Service]\n\
        Type=notify\nExecStart=/usr/bin/valkey-sentinel /etc/valkey/sentinel.conf --supervised systemd --daemonize no\n\
        User=valkey\nGroup=valkey\nPrivateUsers=true\n\
        RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX\n\
        ReadWritePaths=-/var/lib/valkey\n\
        # comment\nNoExecPaths=/\nExecPaths=/usr/bin/valkey-sentinel /usr/lib /lib\n\n[Install]\nWantedBy=multi-user.target\n";

    const TEMPLATE: &str = "[Service]\nUser=redis\n\
        ExecStart=/usr/bin/redis-sentinel /etc/redis/sentinel-%i.conf --supervised systemd\n\
        RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX\nNoExecPaths=/\nExecPaths=/usr/bin/redis-sentinel /usr/lib /lib\n";

    fn service(files: &[&str], instance: &str) -> Service {
        let mut s = Service::default();
        for f in files {
            s.apply(f, instance);
        }
        s
    }

    #[test]
    fn reads_the_stock_units() {
        let s = service(&[VALKEY], "");
        assert_eq!(s.user_name(), "valkey");
        assert_eq!(s.config_file(), Some("/etc/valkey/sentinel.conf"));
        assert!(s.unix_sockets());
        let t = service(&[TEMPLATE], "eu");
        assert_eq!(t.config_file(), Some("/etc/redis/sentinel-eu.conf"));
        assert_eq!(
            service(&["[Service]\nExecStart=/x\n"], "").user_name(),
            "root"
        );
    }

    #[test]
    fn exec_paths() {
        let s = service(&[VALKEY], "");
        #[rustfmt::skip]
        let rows = [
            ("/usr/lib/sentinel-vip/sentinel-vip", true),
            ("/lib/x86_64-linux-gnu/libc.so.6", true),
            ("/usr/bin/valkey-sentinel", true),
            ("/usr/local/bin/sentinel-vip", false),
            ("/usr/bin/sentinel-vip", false),
            ("/opt/sentinel-vip", false),
        ];
        for (path, want) in rows {
            assert_eq!(s.may_exec(Path::new(path)), want, "{path}");
        }
        // An admin's drop-in opening /opt; and one resetting the lists.
        let opened = service(&[VALKEY, "[Service]\nExecPaths=-/opt\n"], "");
        assert!(opened.may_exec(Path::new("/opt/sentinel-vip")));
        let reset = service(&[VALKEY, "[Service]\nNoExecPaths=\nExecPaths=\n"], "");
        assert!(reset.may_exec(Path::new("/usr/local/bin/sentinel-vip")));
        // Nothing listed: everything executes.
        assert!(Service::default().may_exec(Path::new("/anywhere")));
        // A deeper NoExecPaths inside an ExecPaths.
        let deep = service(
            &[VALKEY, "[Service]\nNoExecPaths=/usr/lib/sentinel-vip\n"],
            "",
        );
        assert!(!deep.may_exec(Path::new("/usr/lib/sentinel-vip/sentinel-vip")));
    }

    #[test]
    fn address_families() {
        #[rustfmt::skip]
        let rows = [
            ("", true),
            ("RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX\n", true),
            ("RestrictAddressFamilies=AF_INET AF_INET6\n", false),
            ("RestrictAddressFamilies=AF_INET\nRestrictAddressFamilies=AF_UNIX\n", true),
            ("RestrictAddressFamilies=~AF_UNIX\n", false),
            ("RestrictAddressFamilies=~AF_PACKET\n", true),
            ("RestrictAddressFamilies=AF_INET\nRestrictAddressFamilies=\n", true),
        ];
        for (lines, want) in rows {
            let s = service(&[&format!("[Service]\n{lines}")], "");
            assert_eq!(s.unix_sockets(), want, "{lines:?}");
        }
    }

    #[test]
    fn continuation_lines_and_other_sections() {
        let s = service(
            &["[Service]\nExecPaths=/usr/bin/x \\\n  /usr/lib\n[Install]\nUser=nobody\n"],
            "",
        );
        assert_eq!(
            s.exec_paths,
            [PathBuf::from("/usr/bin/x"), PathBuf::from("/usr/lib")]
        );
        assert_eq!(s.user, None, "keys outside [Service] are not the service's");
        let hidden = service(&["[Service]\nInaccessiblePaths=-/run/sentinel-vip\n"], "");
        assert!(hidden.hides(Path::new("/run/sentinel-vip/control.sock")));
        assert!(!hidden.hides(Path::new("/run/sentinel")));
    }

    #[test]
    fn reconfig_script_lines() {
        let conf = "port 26379\nsentinel monitor mymaster 192.0.2.11 6379 2\n\
            sentinel client-reconfig-script mymaster /usr/lib/sentinel-vip/sentinel-vip\n\
            SENTINEL CLIENT-RECONFIG-SCRIPT \"cache\" \"/usr/local/bin/x\"\n\
            # sentinel client-reconfig-script old /bin/false\n";
        assert_eq!(
            reconfig_scripts(conf),
            [
                (
                    "mymaster".into(),
                    "/usr/lib/sentinel-vip/sentinel-vip".into()
                ),
                ("cache".into(), "/usr/local/bin/x".into())
            ]
        );
    }
}

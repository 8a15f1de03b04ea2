//! The container as a Redis host for e2e_package.rs: finding the built
//! .deb, installing it (and the distribution's Redis or Valkey packages)
//! with apt's default options and no network, the operator's edits to the
//! server's and Sentinel's configs and to sentinel-vip.toml, and reading
//! the units' state and logs. It changes nothing in the distribution's
//! units.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use crate::{CT, HOOK};
use sentinel_vip_lab::container::{Container, DOWNLOADS};
use sentinel_vip_lab::{
    node_ip, wait_until, MASTER_NAME, NODES, REDIS_PORT, SENTINEL_PORT, VIP4, VIP4_CIDR,
};

/// Whose server or Sentinel a unit is: the paths, names and user of
/// Debian's packages of it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Redis,
    Valkey,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::Redis => "redis",
            Kind::Valkey => "valkey",
        }
    }
    /// The user (and group) its units run as.
    pub fn user(self) -> &'static str {
        self.name()
    }
    pub fn server_unit(self) -> String {
        format!("{}-server", self.name())
    }
    pub fn sentinel_unit(self) -> String {
        format!("{}-sentinel", self.name())
    }
    pub fn server_conf(self) -> String {
        match self {
            Kind::Redis => "/etc/redis/redis.conf".into(),
            Kind::Valkey => "/etc/valkey/valkey.conf".into(),
        }
    }
    pub fn sentinel_conf(self) -> String {
        format!("/etc/{}/sentinel.conf", self.name())
    }
    pub fn sentinel_log(self) -> String {
        format!("/var/log/{0}/{0}-sentinel.log", self.name())
    }
    pub fn cli(self) -> String {
        format!("{}-cli", self.name())
    }
    /// The packages of its server and Sentinel.
    pub fn packages(self) -> [String; 3] {
        ["server", "sentinel", "tools"].map(|p| format!("{}-{p}", self.name()))
    }
}

/// The .deb `make deb` built: `$SENTINEL_VIP_DEB`, else the newest in
/// target/debian. Refused when older than the sources it packages.
pub fn find_deb() -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let deb = match std::env::var_os("SENTINEL_VIP_DEB") {
        Some(p) => PathBuf::from(p),
        None => {
            let target =
                std::env::var_os("CARGO_TARGET_DIR").map_or(root.join("target"), PathBuf::from);
            let debs = target.join("debian");
            fs::read_dir(&debs)
                .into_iter()
                .flatten()
                .flatten()
                .map(|e| e.path())
                .filter(|p| {
                    p.file_name().is_some_and(|n| {
                        n.to_string_lossy().starts_with("sentinel-vip_")
                            && n.to_string_lossy().ends_with(".deb")
                    })
                })
                .max_by_key(|p| mtime(p))
                .unwrap_or_else(|| {
                    panic!(
                        "no sentinel-vip .deb in {}: run `make deb` first (make test does)",
                        debs.display()
                    )
                })
        }
    };
    assert!(
        deb.is_file(),
        "no .deb at {}: run `make deb` first",
        deb.display()
    );
    let newest = [
        "src",
        "debian",
        "sentinel",
        "xtask/src",
        "Cargo.toml",
        "Cargo.lock",
    ]
    .iter()
    .flat_map(|p| files_under(&root.join(p)))
    .max_by_key(|p| mtime(p));
    if let Some(src) = newest {
        assert!(
            mtime(&deb) >= mtime(&src),
            "{} is older than {}: run `make deb` again",
            deb.display(),
            src.display()
        );
    }
    deb
}

fn files_under(p: &Path) -> Vec<PathBuf> {
    if p.is_file() {
        return vec![p.to_path_buf()];
    }
    fs::read_dir(p)
        .into_iter()
        .flatten()
        .flatten()
        .flat_map(|e| files_under(&e.path()))
        .collect()
}

fn mtime(p: &Path) -> SystemTime {
    fs::metadata(p)
        .and_then(|m| m.modified())
        .unwrap_or(SystemTime::UNIX_EPOCH)
}

/// The container as a Redis host: whose data server and whose Sentinel it
/// runs (a host may move from Redis' Sentinel to Valkey's). On a panic it
/// shows the units' logs before the container goes away.
pub struct Host {
    pub ct: Container,
    pub data: Kind,
    pub sentinel: Kind,
}

impl Drop for Host {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let (d, s) = (self.data.server_unit(), self.sentinel.sentinel_unit());
            let o = self.ct.sh(&format!(
                "systemctl --no-pager status sentinel-vip {d} {s}; \
                 journalctl --no-pager -n 60 -u sentinel-vip -u {s}; tail -n 30 {}",
                self.sentinel.sentinel_log()
            ));
            eprintln!(
                "----- container {} -----\n{}",
                self.ct.name,
                String::from_utf8_lossy(&o.stdout)
            );
        }
    }
}

impl Host {
    pub fn sh(&self, script: &str) -> String {
        self.ct.must_sh(script)
    }

    /// One property of a unit (`systemctl show -p P --value`).
    pub fn prop(&self, unit: &str, p: &str) -> String {
        self.sh(&format!("systemctl show -p {p} --value {unit}"))
    }

    /// `apt install ./x.deb ...` with apt's default options (Recommends
    /// included) in a container without network: anything apt would
    /// fetch fails the install.
    pub fn apt_install(&self, debs: &[String]) {
        let mut args = vec!["apt-get", "install", "-y"];
        args.extend(debs.iter().map(String::as_str));
        let o = self.ct.exec_timeout(180, &args);
        assert!(
            o.status.success(),
            "apt-get install {debs:?} in the container (no network; apt's defaults): {}",
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .chain(String::from_utf8_lossy(&o.stderr).lines())
                .collect::<Vec<_>>()
                .join(" | ")
        );
    }

    /// The distribution's packages of `kind`, from the .debs the root file
    /// system holds (downloaded when it was built).
    pub fn install_distribution(&self, kind: Kind) {
        let debs: Vec<String> = kind
            .packages()
            .iter()
            .map(|p| {
                self.sh(&format!("ls {DOWNLOADS}/{p}_*.deb"))
                    .lines()
                    .next()
                    .unwrap_or_else(|| panic!("no {p} .deb in {DOWNLOADS}"))
                    .to_string()
            })
            .collect();
        self.apt_install(&debs);
    }

    /// `apt install ./sentinel-vip_*.deb`, then what the package did (and
    /// did not do) on its own.
    pub fn install(&self, deb: &Path) {
        let inside = "/var/tmp/sentinel-vip.deb";
        fs::copy(deb, self.ct.path(inside)).expect("copy the .deb into the container");
        self.apt_install(&[inside.to_string()]);
        assert_eq!(self.sh("readlink -f /usr/bin/sentinel-vip"), HOOK);
        assert_eq!(
            self.sh("stat -c '%U:%G %a' /etc/sentinel-vip/sentinel-vip.toml"),
            "root:sentinel-vip 640",
            "the config may hold passwords: the watcher's alone"
        );
        let conffiles = self.sh("dpkg-query -W -f='${Conffiles}' sentinel-vip");
        assert!(
            conffiles.contains("/etc/sentinel-vip/sentinel-vip.toml"),
            "conffiles: {conffiles}"
        );
        // No Sentinel pulled in: whichever the host has (or will have).
        for k in [Kind::Redis, Kind::Valkey] {
            if k != self.sentinel {
                let st = self.sh(&format!(
                    "dpkg-query -W -f='${{Status}}' {} 2>/dev/null || true",
                    k.sentinel_unit()
                ));
                assert!(
                    !st.contains("ok installed"),
                    "{} was installed: {st}",
                    k.sentinel_unit()
                );
            }
        }
        // Not enabled, not started: an unedited config must not act.
        assert_eq!(
            self.sh("systemctl is-enabled sentinel-vip || true"),
            "disabled"
        );
        assert_eq!(
            self.sh("systemctl is-active sentinel-vip || true"),
            "inactive"
        );
    }

    /// sentinel-vip's config, as the operator writes it (only `sentinels`
    /// and `[[vip]]`), then `systemctl enable --now`.
    pub fn configure_watcher(&self) {
        let sentinels = NODES
            .iter()
            .map(|&n| format!("\"{}:{SENTINEL_PORT}\"", node_ip(n)))
            .collect::<Vec<_>>()
            .join(", ");
        // Written in place: the file keeps the owner and mode dpkg gave it.
        fs::write(
            self.ct.path("/etc/sentinel-vip/sentinel-vip.toml"),
            format!(
                "sentinels = [{sentinels}]\n\n[[vip]]\nmaster = \"{MASTER_NAME}\"\n\
                 address = \"{VIP4_CIDR}\"\ninterface = \"eth0\"\n"
            ),
        )
        .expect("write sentinel-vip.toml");
        // As the README says, without blocking on the start job, so that a
        // watcher that never notifies READY=1 fails here, saying so.
        self.sh("systemctl enable --now --no-block sentinel-vip 2>&1");
        let active = wait_until(Duration::from_secs(20), Duration::from_millis(100), || {
            self.sh("systemctl is-active sentinel-vip || true") == "active"
        });
        assert!(
            active,
            "sentinel-vip.service not active 20 s after `systemctl enable --now` \
             (Type=notify: did the watcher send READY=1?): {}",
            self.sh("systemctl --no-pager status sentinel-vip || true")
        );
    }

    /// The data server's config edited like the lab's other nodes, then
    /// restarted until it is a synced replica of node 1.
    pub fn configure_data(&self) {
        let ip = node_ip(CT);
        let master = node_ip(1);
        append(
            &self.ct.path(&self.data.server_conf()),
            &format!(
                "\n# e2e_package: a lab node (as the lab starts the others)\n\
                 bind {ip} {VIP4}\nprotected-mode no\nsave \"\"\nappendonly no\n\
                 repl-diskless-sync-delay 0\nreplicaof {master} {REDIS_PORT}\n"
            ),
        );
        self.sh(&format!("systemctl restart {}", self.data.server_unit()));
        let cli = self.data.cli();
        let synced = wait_until(Duration::from_secs(20), Duration::from_millis(100), || {
            self.sh(&format!("{cli} -h {ip} INFO replication || true"))
                .contains("master_link_status:up")
        });
        assert!(
            synced,
            "the container's data server did not sync with n1 within 20 s"
        );
    }

    /// Sentinel's config: its own per-master lines replaced by the lab's
    /// (the stock file monitors 127.0.0.1), its global settings as
    /// shipped, plus the hook line; then Sentinel restarted. The master is
    /// whichever the lab's Sentinels name now.
    pub fn configure_sentinel(&self, master: &str) {
        let sconf = self.ct.path(&self.sentinel.sentinel_conf());
        let old = fs::read_to_string(&sconf).expect("read sentinel.conf");
        let keep_global = [
            "deny-scripts-reconfig",
            "resolve-hostnames",
            "announce-hostnames",
        ];
        let mut conf: String = old
            .lines()
            .filter(|l| {
                let w: Vec<String> = l.split_whitespace().map(str::to_lowercase).collect();
                match w.first().map(String::as_str) {
                    Some("bind" | "protected-mode" | "loglevel") => false,
                    Some("sentinel") => w.get(1).is_some_and(|k| keep_global.contains(&k.as_str())),
                    _ => true,
                }
            })
            .map(|l| format!("{l}\n"))
            .collect();
        let ip = node_ip(CT);
        conf.push_str(&format!(
            "\n# e2e_package: as the lab's other Sentinels, plus the hook\n\
             bind {ip}\nprotected-mode no\n\
             # debug: Sentinel logs each script's exit (-script-child)\nloglevel debug\n\
             sentinel monitor {MASTER_NAME} {master} {REDIS_PORT} 2\n\
             sentinel down-after-milliseconds {MASTER_NAME} 1000\n\
             sentinel failover-timeout {MASTER_NAME} 10000\n\
             sentinel parallel-syncs {MASTER_NAME} 1\n\
             sentinel client-reconfig-script {MASTER_NAME} {HOOK}\n"
        ));
        // Written in place: the file keeps the owner and mode the package gave it.
        fs::write(&sconf, conf).expect("write sentinel.conf");
        self.sh(&format!(
            "systemctl restart {}",
            self.sentinel.sentinel_unit()
        ));
    }

    /// The hook's lines in the journal that contain `what` (Sentinel's
    /// stderr, hence its scripts', goes to the journal).
    pub fn hook_lines(&self, what: &str) -> Vec<String> {
        self.sh(&format!(
            "journalctl --no-pager -o cat -u {}",
            self.sentinel.sentinel_unit()
        ))
        .lines()
        .filter(|l| l.contains(what))
        .map(str::to_string)
        .collect()
    }

    pub fn sentinel_log(&self) -> String {
        fs::read_to_string(self.ct.path(&self.sentinel.sentinel_log())).unwrap_or_default()
    }
}

fn append(path: &Path, text: &str) {
    use std::io::Write;
    let mut f = fs::OpenOptions::new()
        .append(true)
        .open(path)
        .unwrap_or_else(|e| panic!("open {}: {e}", path.display()));
    f.write_all(text.as_bytes()).expect("append");
}

/// A process's status line `key` (e.g. "CapEff") inside the container.
pub fn status_field(host: &Host, pid: &str, key: &str) -> String {
    host.sh(&format!("grep '^{key}:' /proc/{pid}/status"))
        .split_once(':')
        .map(|(_, v)| v.trim().to_string())
        .unwrap_or_default()
}

//! End-to-end: sentinel-vip talks to a Sentinel that requires a password
//! and TLS with client certificates (real Sentinels of every server build
//! the lab runs, Debian's builds with TLS; certificates made by openssl
//! for this run), in a network namespace of its own (not the three-node
//! lab: one host is both master and Sentinel).

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use sentinel_vip_lab::suite::one_lab_at_a_time;
use sentinel_vip_lab::{e2e_enabled, Family, Namespace, Programs, MASTER_NAME, VIP4_CIDR};

const IP: &str = "192.0.2.11";

/// The namespace, processes and files of this test; removed on drop, also
/// when the test panics.
struct Host {
    ns: Namespace,
    dir: PathBuf,
    children: Vec<Child>,
}

impl Drop for Host {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
        if std::thread::panicking() {
            for f in ["sentinel.log", "sv.log"] {
                eprintln!(
                    "--- {f}\n{}",
                    fs::read_to_string(self.dir.join(f)).unwrap_or_default()
                );
            }
        }
        let _ = fs::remove_dir_all(&self.dir);
    }
}

fn run(args: &[&str]) -> Output {
    Command::new(args[0])
        .args(&args[1..])
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("{args:?}: {e}"))
}

fn ok(args: &[&str]) {
    let o = run(args);
    assert!(
        o.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
}

impl Host {
    fn new(p: &Programs, tls: bool) -> Host {
        let sentinel = p.sentinel_command(Path::new(""));
        let mut tools = vec!["ip", p.server, sentinel[0].as_str()];
        if tls {
            tools.push("openssl");
        }
        for tool in tools {
            assert!(
                run(&["sh", "-c", &format!("command -v '{tool}'")])
                    .status
                    .success(),
                "e2e_auth_tls needs `{tool}` (scripts/deps.sh installs it)"
            );
        }
        // One letter per family: the two tests never share a name.
        let tag = format!(
            "svt{}{}",
            &p.family.name()[..1],
            std::process::id() % 100_000
        );
        let dir = std::env::temp_dir().join(format!("sentinel-vip-{tag}"));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        let h = Host {
            ns: Namespace::add(&tag),
            dir,
            children: Vec::new(),
        };
        for cmd in [
            vec!["link", "set", "lo", "up"],
            // A veth pair with both ends here: this kernel has no dummy
            // driver, and nothing must leave the namespace.
            vec![
                "link", "add", "eth0", "type", "veth", "peer", "name", "eth1",
            ],
            vec!["addr", "add", &format!("{IP}/24"), "dev", "eth0"],
            vec!["link", "set", "eth0", "up"],
            vec!["link", "set", "eth1", "up"],
        ] {
            ok(&[&["ip", "-n", h.ns.name()][..], &cmd].concat());
        }
        h
    }

    fn path(&self, f: &str) -> String {
        self.dir.join(f).display().to_string()
    }

    fn spawn(&mut self, args: &[&str]) {
        let out = fs::File::create(self.dir.join("spawn.out")).unwrap();
        let c = Command::new("ip")
            .args(["netns", "exec", self.ns.name()])
            .args(args)
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .unwrap();
        self.children.push(c);
    }

    /// A CA, a server certificate for the Sentinel's IP, a client certificate.
    fn certificates(&self) {
        let d = |f: &str| self.path(f);
        ok(&[
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            &d("ca.key"),
            "-out",
            &d("ca.crt"),
            "-days",
            "2",
            "-subj",
            "/CN=lab-ca",
        ]);
        // Both v3 (with extensions): webpki refuses v1 certificates.
        fs::write(
            self.dir.join("server.ext"),
            format!("subjectAltName=IP:{IP}\nextendedKeyUsage=serverAuth\n"),
        )
        .unwrap();
        fs::write(self.dir.join("client.ext"), "extendedKeyUsage=clientAuth\n").unwrap();
        for name in ["server", "client"] {
            ok(&[
                "openssl",
                "req",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-keyout",
                &d(&format!("{name}.key")),
                "-out",
                &d(&format!("{name}.csr")),
                "-subj",
                &format!("/CN={name}"),
            ]);
            let mut a = vec!["openssl", "x509", "-req", "-in"];
            let (csr, crt, ca, cakey, e) = (
                d(&format!("{name}.csr")),
                d(&format!("{name}.crt")),
                d("ca.crt"),
                d("ca.key"),
                d(&format!("{name}.ext")),
            );
            a.extend([
                csr.as_str(),
                "-CA",
                &ca,
                "-CAkey",
                &cakey,
                "-CAcreateserial",
                "-out",
                &crt,
                "-days",
                "2",
            ]);
            a.extend(["-extfile", &e]);
            ok(&a);
        }
    }

    fn sv(&self, config: &str, args: &[&str]) -> Output {
        Command::new("ip")
            .args([
                "netns",
                "exec",
                self.ns.name(),
                "timeout",
                "20",
                env!("CARGO_BIN_EXE_sentinel-vip"),
            ])
            .args(args)
            .env("SENTINEL_VIP_CONFIG", self.path(config))
            .stdin(Stdio::null())
            .output()
            .unwrap()
    }

    fn vip_held(&self) -> bool {
        String::from_utf8_lossy(
            &run(&[
                "ip",
                "-n",
                self.ns.name(),
                "-o",
                "addr",
                "show",
                "dev",
                "eth0",
            ])
            .stdout,
        )
        .contains(VIP4_CIDR)
    }
}

fn config(h: &Host, password: &str, tls: bool) -> String {
    let mut c = format!(
        "sentinels = [\"{IP}:26379\"]\nsentinel_password = \"{password}\"\nlog_file = \"{}\"\nlock_file = \"{}\"\n",
        h.path("sv.log"),
        h.path("sv.lock")
    );
    if tls {
        c += &format!(
            "[sentinel_tls]\nca_file = \"{}\"\ncert_file = \"{}\"\nkey_file = \"{}\"\n",
            h.path("ca.crt"),
            h.path("client.crt"),
            h.path("client.key")
        );
    }
    c + &format!(
        "[[vip]]\nmaster = \"{MASTER_NAME}\"\naddress = \"{VIP4_CIDR}\"\ninterface = \"eth0\"\n"
    )
}

#[test]
fn sentinel_with_password_and_tls() {
    sentinel_with_password(Family::Redis, true);
}

#[test]
fn redis8_sentinel_with_password_and_tls() {
    sentinel_with_password(Family::Redis8, true);
}

#[test]
fn valkey_sentinel_with_password_and_tls() {
    sentinel_with_password(Family::Valkey, true);
}

#[test]
fn valkey9_sentinel_with_password_and_tls() {
    sentinel_with_password(Family::Valkey9, true);
}

/// A Sentinel of `family` requiring a password, and with `tls` TLS with
/// client certificates.
fn sentinel_with_password(family: Family, tls: bool) {
    if !e2e_enabled() {
        return;
    }
    let _one = one_lab_at_a_time();
    let p = family.programs();
    assert!(Path::new("/proc/self/ns/net").exists());
    assert_eq!(
        run(&["id", "-u"]).stdout,
        b"0\n",
        "e2e_auth_tls needs root for network namespaces (or SENTINEL_VIP_SKIP_E2E=1)"
    );
    let mut h = Host::new(&p, tls);
    if tls {
        h.certificates();
    }
    let redis_dir = h.path("");
    h.spawn(&[
        p.server,
        "--port",
        "6379",
        "--bind",
        IP,
        "--save",
        "",
        "--dir",
        &redis_dir,
        "--logfile",
        &h.path("redis.log"),
    ]);
    let listen = if tls {
        format!(
            "port 0\ntls-port 26379\ntls-cert-file {}\ntls-key-file {}\ntls-ca-cert-file {}\ntls-auth-clients yes\n",
            h.path("server.crt"),
            h.path("server.key"),
            h.path("ca.crt")
        )
    } else {
        "port 26379\n".to_string()
    };
    let sconf = format!(
        "{listen}bind {IP}\ndir {}\nlogfile {}\nrequirepass s3cret\nsentinel monitor {MASTER_NAME} {IP} 6379 1\n",
        h.path(""),
        h.path("sentinel.log"),
    );
    fs::write(h.dir.join("sentinel.conf"), sconf).unwrap();
    let sc = p.sentinel_command(&h.dir.join("sentinel.conf"));
    h.spawn(&sc.iter().map(String::as_str).collect::<Vec<_>>());
    // The right password (over TLS if the Sentinel speaks it), a wrong
    // one, and with TLS, the right one in plain TCP.
    let mut bad = vec!["badpw.toml"];
    fs::write(h.dir.join("good.toml"), config(&h, "s3cret", tls)).unwrap();
    fs::write(h.dir.join("badpw.toml"), config(&h, "wrong", tls)).unwrap();
    if tls {
        fs::write(h.dir.join("plain.toml"), config(&h, "s3cret", false)).unwrap();
        bad.push("plain.toml");
    }
    // Wait until the Sentinel answers (over TLS) with the password.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let o = h.sv("good.toml", &["status", "--json"]);
        if String::from_utf8_lossy(&o.stdout).contains("\"reachable\": true") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "Sentinel never answered (TLS: {tls}): {} {}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
        std::thread::sleep(Duration::from_millis(200));
    }

    // Wrong password or no TLS: the Sentinel does not answer, so nothing is
    // known and nothing changes (exit 1: a retry may succeed).
    for bad in bad {
        let o = h.sv(bad, &["reconcile"]);
        assert_eq!(
            o.status.code(),
            Some(1),
            "{bad}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        assert!(!h.vip_held(), "{bad} must not place the VIP");
    }
    let o = h.sv("badpw.toml", &["check"]);
    assert!(!o.status.success());
    let out = String::from_utf8_lossy(&o.stdout).to_lowercase();
    assert!(
        out.contains("fail") && (out.contains("auth") || out.contains("password")),
        "check must say why: {out}"
    );

    // The right password (over TLS): the master (this host) takes the VIP
    // and status agrees.
    let o = h.sv("good.toml", &["reconcile"]);
    assert!(
        o.status.success(),
        "reconcile: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(h.vip_held(), "VIP not placed");
    let o = h.sv("good.toml", &["status", "--json"]);
    assert!(
        o.status.success(),
        "status: {}",
        String::from_utf8_lossy(&o.stdout)
    );
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("status --json");
    assert_eq!(v[0]["sentinel_master"], format!("{IP}:6379"));
    assert_eq!(v[0]["vip_held"], true);
    assert_eq!(v[0]["agree"], true);
}

//! The config's parsing and validation, as tables of texts and verdicts.

use super::*;

const GOOD: &str = r#"
sentinels = ["192.0.2.11:26379", "[2001:db8::1]:26379", "sentinel-a.example:26379"]
log_file = "/var/log/sentinel-vip.log"
[[vip]]
master = "mymaster"
address = "192.0.2.100/24"
interface = "eth0"
label = "eth0:vip"
[[vip]]
master = "cache"
address = "2001:db8::100/64"
interface = "eth0"
[announce]
count = 2
"#;

#[test]
fn good_config_parses_with_defaults() {
    let c = Config::parse(GOOD).unwrap();
    assert_eq!(c.sentinels.len(), 3);
    assert_eq!(c.sentinels[1].host, "2001:db8::1");
    assert_eq!(c.sentinels[2].port, 26379);
    assert_eq!(c.vip[0].address.to_string(), "192.0.2.100/24");
    assert_eq!(c.vip[1].address.prefix, 64);
    assert_eq!(c.announce.count, 2);
    assert_eq!(c.announce.interval, defaults::ANNOUNCE_INTERVAL);
    assert_eq!(c.announce.refresh, defaults::ANNOUNCE_REFRESH);
    assert_eq!(c.on_exit, Policy::Keep);
    assert_eq!(c.on_sentinel_loss, defaults::ON_SENTINEL_LOSS);
    assert_eq!(c.fence_after, Duration::from_millis(300));
    let f = Config::parse(&format!(
        "on_sentinel_loss = \"fence\"\nfence_after_ms = 500\n{VIP}"
    ))
    .unwrap();
    assert_eq!(
        (f.on_sentinel_loss, f.fence_after),
        (Policy::Fence, Duration::from_millis(500))
    );
    assert_eq!(c.reconcile_interval, Duration::from_millis(1000));
    assert_eq!(c.sentinel_timeout, Duration::from_millis(300));
    assert_eq!(c.sentinel_loss_after, Duration::from_secs(10));
    assert_eq!(c.lock_file, PathBuf::from(defaults::LOCK_FILE));
    // Issue 22, defect 2: the watcher's runtime directory, beside its
    // socket; never a world-writable one like /run/lock.
    assert_eq!(c.lock_file.parent(), c.control_socket.parent());
    assert_eq!(c.control_socket, PathBuf::from(defaults::CONTROL_SOCKET));
    assert_eq!(c.control_socket_users, ["redis", "valkey"]);
    assert_eq!(c.control_socket_group, None);
    let g = Config::parse(&format!(
        "control_socket_group = \"valkey\"\ncontrol_socket_users = []\n{VIP}"
    ))
    .unwrap();
    assert_eq!(
        (
            g.control_socket_group.as_deref(),
            g.control_socket_users.len()
        ),
        (Some("valkey"), 0)
    );
    assert!(c.follow_promotion);
    assert_eq!(c.follow_promotion_deadline, Duration::from_secs(3));
    assert_eq!(c.vips_for("cache").next().unwrap().interface, "eth0");
    assert!(!c.has_master("other"));
    assert_eq!(c.metrics_listen, None);
    assert_eq!(c.notify_timeout, defaults::NOTIFY_TIMEOUT);
    assert!(c.notify_env.is_empty());
    assert_eq!(c.masters(), ["mymaster", "cache"]);
    assert!(c.is_vip("2001:db8::100".parse().unwrap()));
    let ms = Config::parse(&format!("sentinel_timeout_ms = 25\n{VIP}")).unwrap();
    assert_eq!(ms.sentinel_timeout, Duration::from_millis(25));
    let env = Config::parse(&format!(
        "notify_env = {{ AWS_REGION = \"eu-west-1\", TOKEN = \"a b=c\" }}\n{VIP}"
    ))
    .unwrap();
    assert_eq!(env.notify_env["TOKEN"], "a b=c");
    assert_eq!(env.notify_env.len(), 2);
}

fn err(text: &str) -> ConfigError {
    Config::parse(text).unwrap_err()
}

const VIP: &str = "[[vip]]\nmaster = \"m\"\naddress = \"192.0.2.100/24\"\ninterface = \"eth0\"\n";

/// Values of the wrong form: refused by the parser, with the line.
#[test]
fn syntax_errors_name_the_line() {
    let cases: &[(String, usize, &str)] = &[
        (format!("colour = 1\n{VIP}"), 1, "unknown field `colour`"),
        (format!("{VIP}flavour = 2\n"), 5, "unknown field `flavour`"),
        (VIP.replace("/24", ""), 3, "needs a prefix length"),
        (VIP.replace(".100/", ".300/"), 3, "not an IP address"),
        (VIP.replace("/24", "/33"), 3, "prefix length must be 0..=32"),
        (VIP.replace(".100/", ".0/"), 3, "cannot be a VIP"),
        (
            format!("sentinels = [\"192.0.2.1\"]\n{VIP}"),
            1,
            "must be host:port",
        ),
        (
            format!("on_exit = \"maybe\"\n{VIP}"),
            1,
            "unknown variant `maybe`",
        ),
        (
            format!("sentinel_timeout_ms = -1\n{VIP}"),
            1,
            "invalid value",
        ),
        ("sentinels = [\n".to_string(), 1, "unclosed array"),
    ];
    for (text, line, want) in cases {
        match err(text) {
            ConfigError::Syntax { line: l, message } => {
                assert_eq!(l, Some(*line), "{text:?}: {message}");
                assert!(
                    message.contains(want),
                    "{text:?}: {message:?} lacks {want:?}"
                );
            }
            e => panic!("{text:?}: want a syntax error, got {e:?}"),
        }
    }
}

/// Well-formed values that are not allowed: refused naming the key.
#[test]
fn invalid_values_name_the_key() {
    let cases: &[(String, &str, &str)] = &[
        (
            format!("{VIP}{VIP}"),
            "vip.address",
            "192.0.2.100 appears twice",
        ),
        (
            format!("{VIP}{}", VIP.replace("\"m\"", "\"n\"")),
            "vip.address",
            "192.0.2.100 appears twice",
        ),
        (
            VIP.replace("eth0", "eth0 x"),
            "vip.interface",
            "not a valid",
        ),
        (
            VIP.replace("\"m\"", "\"-m\""),
            "vip.master",
            "not a valid master name",
        ),
        (
            format!("{VIP}label = \"wlan0:x\"\n"),
            "vip.label",
            "must be at most 15",
        ),
        // Issue 19: a VIP on lo is routed unless told otherwise, and a
        // routed VIP is a host prefix.
        (
            VIP.replace("eth0", "lo"),
            "vip.mode",
            "`routed` needs a host prefix",
        ),
        (
            format!(
                "{}mode = \"l2\"\n",
                VIP.replace("eth0", "lo").replace("/24", "/32")
            ),
            "vip.mode",
            "`l2` on lo",
        ),
        (
            format!("{VIP}mode = \"routed\"\n"),
            "vip.mode",
            "192.0.2.100/32",
        ),
        (
            format!("{VIP}[announce]\ncount = 0\n"),
            "announce.count",
            "1..=100",
        ),
        (
            format!("{VIP}[announce]\ninterval_ms = 40000\n"),
            "announce.interval_ms",
            "fit in 50 s",
        ),
        (
            format!("{VIP}[announce]\nrefresh_interval_ms = 5\n"),
            "announce.refresh_interval_ms",
            ">= 100",
        ),
        (
            format!("sentinel_timeout_ms = 5\n{VIP}"),
            "sentinel_timeout_ms",
            "10..=60000",
        ),
        (
            format!("reconcile_interval_ms = 1\n{VIP}"),
            "reconcile_interval_ms",
            "50..=",
        ),
        (
            format!("sentinel_loss_after_ms = 1\n{VIP}"),
            "sentinel_loss_after_ms",
            ">= 100",
        ),
        (
            format!("fence_after_ms = 50\n{VIP}"),
            "fence_after_ms",
            "100..=60000",
        ),
        (
            format!("on_exit = \"fence\"\n{VIP}"),
            "on_exit",
            "\"keep\" or \"release\"",
        ),
        (
            format!("control_socket = \"run/x.sock\"\n{VIP}"),
            "control_socket",
            "absolute",
        ),
        (
            format!("control_socket = \"/{}\"\n{VIP}", "a".repeat(107)),
            "control_socket",
            "at most 107 bytes",
        ),
        (
            format!("control_socket_group = \"-r\"\n{VIP}"),
            "control_socket_group",
            "not a group",
        ),
        (
            format!("control_socket_group = \"a b\"\n{VIP}"),
            "control_socket_group",
            "not a group",
        ),
        (
            format!("control_socket_users = [\"redis\", \"\"]\n{VIP}"),
            "control_socket_users",
            "not a user",
        ),
        (
            format!("control_socket_users = [\"red is\"]\n{VIP}"),
            "control_socket_users",
            "not a user",
        ),
        (
            format!("notify_timeout_ms = 0\n{VIP}"),
            "notify_timeout_ms",
            "100..=86400000",
        ),
        (
            format!("notify_timeout_ms = 86400001\n{VIP}"),
            "notify_timeout_ms",
            "100..=86400000",
        ),
        (
            format!("notify_env = {{ SENTINEL_VIP_VIP = \"x\" }}\n{VIP}"),
            "notify_env",
            "facts of each change",
        ),
        (
            format!("notify_env = {{ \"A B\" = \"x\" }}\n{VIP}"),
            "notify_env",
            "not a variable name",
        ),
        (
            format!("follow_promotion_deadline_ms = 50\n{VIP}"),
            "follow_promotion_deadline_ms",
            "100..=60000",
        ),
        (
            format!("sentinel_username = \"u\"\n{VIP}"),
            "sentinel_username",
            "needs",
        ),
        (
            format!("{VIP}[sentinel_tls]\ncert_file = \"/c\"\n"),
            "sentinel_tls.cert_file",
            "go together",
        ),
    ];
    for (text, key, want) in cases {
        match err(text) {
            ConfigError::Invalid { key: k, problem } => {
                assert_eq!(k, *key, "{text:?}: {problem}");
                assert!(
                    problem.contains(want),
                    "{text:?}: {problem:?} lacks {want:?}"
                );
            }
            e => panic!("{text:?}: want an invalid {key}, got {e:?}"),
        }
    }
    assert_eq!(err("sentinels = []\n"), ConfigError::NoVip);
}

#[test]
fn several_vips_per_master_and_their_commands() {
    let two = format!(
        "on_release = [\"/bin/true\", \"released\"]\n{VIP}on_acquire = [\"/bin/echo\"]\n{}",
        VIP.replace("192.0.2.100/24", "2001:2::100/64")
    );
    let c = Config::parse(&two).unwrap();
    assert_eq!(c.vips_for("m").count(), 2);
    assert_eq!(c.masters(), ["m"], "asked about once");
    let (a, b) = (c.commands(&c.vip[0]), c.commands(&c.vip[1]));
    assert_eq!(a.on_acquire, Some(vec!["/bin/echo".to_string()]));
    assert_eq!(b.on_acquire, None);
    assert_eq!(a.on_release, b.on_release, "the top-level default");
    assert!(c.check_commands().is_ok());
    let missing = two.replace("/bin/echo", "/nonexistent/notify");
    let e = Config::parse(&missing)
        .unwrap()
        .check_commands()
        .unwrap_err();
    assert!(
        matches!(
            e,
            ConfigError::Invalid {
                key: "vip.on_acquire",
                ..
            }
        ),
        "{e}"
    );
    let not_executable = concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.toml");
    let e = Config::parse(&two.replace("/bin/true", not_executable))
        .unwrap()
        .check_commands()
        .unwrap_err();
    assert!(
        matches!(
            e,
            ConfigError::Invalid {
                key: "on_release",
                ..
            }
        ),
        "{e}"
    );
    let listen = Config::parse(&format!("metrics_listen = \"[::1]:9469\"\n{VIP}")).unwrap();
    assert_eq!(listen.metrics_listen.unwrap().port(), 9469);
}

#[test]
fn errors_are_one_line() {
    for text in [
        format!("colour = 1\n{VIP}"),
        format!("{VIP}{VIP}"),
        String::new(),
    ] {
        let e = err(&text).to_string();
        assert!(!e.contains('\n'), "{e:?}");
    }
    assert!(err(&format!("{VIP}bogus = 1\n"))
        .to_string()
        .starts_with("line 5:"));
}

/// Issue 19: the mode of each VIP, spelt out or by its interface, and a
/// mixed config (one VIP on eth0, one on lo).
#[test]
fn modes_by_key_and_by_interface() {
    let c = Config::parse(&format!(
        "{VIP}[[vip]]\nmaster = \"m\"\naddress = \"203.0.113.100/32\"\ninterface = \"lo\"\n\
         [[vip]]\nmaster = \"m\"\naddress = \"2001:2::100/128\"\ninterface = \"dummy0\"\nmode = \"routed\"\n\
         [[vip]]\nmaster = \"m\"\naddress = \"192.0.2.101/32\"\ninterface = \"eth0\"\nmode = \"l2\"\n"
    ))
    .unwrap();
    let modes: Vec<Mode> = c.vip.iter().map(VipConfig::mode).collect();
    assert_eq!(modes, [Mode::L2, Mode::Routed, Mode::Routed, Mode::L2]);
    let e = err(&format!("{VIP}mode = \"bgp\"\n"));
    assert!(e.to_string().contains("unknown variant `bgp`"), "{e}");
}

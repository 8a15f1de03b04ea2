//! The command line: derived clap types, plus the rewrite that lets
//! sentinel.conf name the binary itself (seven arguments, no subcommand).

use std::ffi::OsString;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::logging::Format;

#[derive(Parser, Debug)]
#[command(
    name = "sentinel-vip",
    version,
    about = "Keeps a virtual IP on the host Redis Sentinel names as master"
)]
pub struct Cli {
    /// Config file [env: SENTINEL_VIP_CONFIG; default /etc/sentinel-vip/sentinel-vip.toml]
    #[arg(long, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Log format on stderr and in log_file.
    #[arg(long, global = true, value_enum, default_value_t = Format::Text)]
    pub log_format: Format,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Sentinel's client-reconfig-script: MASTER ROLE STATE FROM_IP FROM_PORT TO_IP TO_PORT
    Hook {
        #[arg(num_args = 0.., allow_hyphen_values = true, trailing_var_arg = true, value_name = "ARG")]
        args: Vec<OsString>,
    },
    /// Add, delete or list VIPs by hand.
    #[command(subcommand)]
    Vip(VipCommand),
    /// Send gratuitous ARP (IPv4) or unsolicited neighbour advertisements (IPv6) for an address this host holds.
    Announce {
        addr: String,
        #[arg(long, value_name = "IFACE")]
        dev: String,
        /// Rounds to send [default: announce.count, or 3]
        #[arg(long)]
        count: Option<u32>,
        /// Milliseconds between rounds [default: announce.interval_ms, or 1100]
        #[arg(long)]
        interval_ms: Option<u64>,
    },
    /// One shot: ask the Sentinels where each master is, hold the VIPs whose master is local, release the others.
    Reconcile,
    /// Validate the config, interfaces, capabilities and Sentinels; exit non-zero on any problem. Warns (exit unchanged) when the running watcher has more than CAP_NET_ADMIN and CAP_NET_RAW, or runs as root.
    Check,
    /// For each VIP: what each Sentinel reports, whether the master is local and the VIP held, and which replicas still replicate from the master (the fence's witnesses); exit 1 on disagreement.
    Status(JsonFlag),
    /// Run the watcher: follow Sentinel pub/sub and the kernel, keep every VIP where its master is.
    Watch,
}

#[derive(Args, Debug)]
pub struct JsonFlag {
    #[arg(long)]
    pub json: bool,
}

#[derive(Subcommand, Debug)]
pub enum VipCommand {
    /// Add ADDR/PREFIX to IFACE and announce it (like `ip addr add` + `arping -A`).
    Add {
        cidr: String,
        #[arg(long, value_name = "IFACE")]
        dev: String,
        #[arg(long)]
        label: Option<String>,
        #[arg(long)]
        no_announce: bool,
    },
    /// Delete ADDR/PREFIX from IFACE (like `ip addr del`); an interface's own primary address needs --force.
    Del {
        cidr: String,
        #[arg(long, value_name = "IFACE")]
        dev: String,
        #[arg(long)]
        force: bool,
    },
    /// List the VIPs this host holds.
    Show(JsonFlag),
}

const SUBCOMMANDS: [&str; 8] = [
    "hook",
    "vip",
    "announce",
    "reconcile",
    "check",
    "status",
    "watch",
    "help",
];

/// Parses the command line. Sentinel's call — seven arguments, bare (so
/// sentinel.conf can name the binary itself) or after `hook` — skips clap:
/// building clap's parser costs about 0.3 ms of every failover, and the hook
/// validates its arguments itself. Everything else goes through clap.
pub fn parse(argv: Vec<OsString>) -> Result<Cli, clap::Error> {
    let mut config = None;
    let mut log_format = Format::Text;
    let mut i = 1;
    while i < argv.len() {
        let a = argv[i].to_string_lossy();
        let (key, value) = match a.split_once('=') {
            Some((k, v)) if k == "--config" || k == "--log-format" => {
                (k.to_string(), Some(OsString::from(v)))
            }
            _ if a == "--config" || a == "--log-format" => {
                (a.to_string(), argv.get(i + 1).cloned())
            }
            _ => break,
        };
        i += if a.contains('=') { 1 } else { 2 };
        match (key.as_str(), value) {
            ("--config", Some(v)) => config = Some(PathBuf::from(v)),
            ("--log-format", Some(v)) if v == "text" => log_format = Format::Text,
            ("--log-format", Some(v)) if v == "json" => log_format = Format::Json,
            // Let clap say what is wrong.
            _ => return Cli::try_parse_from(argv),
        }
    }
    let rest = &argv[i.min(argv.len())..];
    let first = rest.first().map(|a| a.to_string_lossy().into_owned());
    let hook_args = match first.as_deref() {
        Some("hook") if rest.len() == 8 => Some(&rest[1..]),
        // Not a subcommand: Sentinel's bare form (a wrong count is then the
        // hook's one-line error). A leading `-` is an option unless the
        // count says Sentinel sent it; the hook refuses it as a name.
        Some(a) if !SUBCOMMANDS.contains(&a) && (!a.starts_with('-') || rest.len() == 7) => {
            Some(rest)
        }
        _ => None,
    };
    match hook_args {
        Some(args) => Ok(Cli {
            config,
            log_format,
            command: Command::Hook {
                args: args.to_vec(),
            },
        }),
        None => Cli::try_parse_from(argv),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn os(v: &[&str]) -> Vec<OsString> {
        v.iter().map(OsString::from).collect()
    }

    fn hook_args(argv: &[&str]) -> Option<Vec<OsString>> {
        match parse(os(argv)).ok()?.command {
            Command::Hook { args } => Some(args),
            _ => None,
        }
    }

    #[test]
    fn sentinel_forms_become_hook() {
        let seven = [
            "mymaster",
            "leader",
            "start",
            "192.0.2.11",
            "6379",
            "192.0.2.12",
            "6379",
        ];
        fn with<'a>(pre: &[&'a str], seven: &[&'a str]) -> Vec<&'a str> {
            [&["sv"], pre, seven].concat()
        }
        assert_eq!(hook_args(&with(&[], &seven)).unwrap(), os(&seven));
        assert_eq!(hook_args(&with(&["hook"], &seven)).unwrap(), os(&seven));
        let c = parse(os(&with(
            &["--config", "/x.toml", "--log-format=json"],
            &seven,
        )))
        .unwrap();
        assert_eq!(c.config.unwrap().to_str(), Some("/x.toml"));
        assert_eq!(c.log_format, Format::Json);
        // A hostile leading dash still reaches the hook parser (which refuses it).
        let dash = [
            "sv",
            "-m",
            "leader",
            "start",
            "192.0.2.11",
            "6379",
            "192.0.2.12",
            "6379",
        ];
        assert_eq!(hook_args(&dash).unwrap().len(), 7);
        // Wrong counts still go to the hook, for its one-line error.
        assert_eq!(hook_args(&["sv", "mymaster", "leader"]).unwrap().len(), 2);
        assert_eq!(hook_args(&["sv", "hook", "a"]).unwrap().len(), 1);
        assert!(parse(os(&["sv", "--log-format", "xml", "reconcile"])).is_err());
        assert!(matches!(
            parse(os(&["sv", "reconcile"])).unwrap().command,
            Command::Reconcile
        ));
        assert!(
            parse(os(&["sv", "--help"])).is_err(),
            "help is clap's (printed, exit 0)"
        );
    }

    #[test]
    fn subcommands_parse() {
        let c = Cli::try_parse_from([
            "sv",
            "vip",
            "add",
            "192.0.2.100/24",
            "--dev",
            "eth0",
            "--no-announce",
        ])
        .unwrap();
        assert!(matches!(
            c.command,
            Command::Vip(VipCommand::Add {
                no_announce: true,
                ..
            })
        ));
        let c = Cli::try_parse_from(["sv", "status", "--json", "--config", "/c"]).unwrap();
        assert!(matches!(
            c.command,
            Command::Status(JsonFlag { json: true })
        ));
        assert_eq!(c.config.unwrap().to_str(), Some("/c"));
    }
}

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
    /// Validate the config, interfaces, capabilities and Sentinels; exit non-zero on any problem.
    Check,
    /// For each VIP: what each Sentinel reports, whether the master is local and the VIP held; exit 1 on disagreement.
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

/// Inserts `hook` when the first positional argument is not a subcommand:
/// Sentinel calls the script with exactly its seven arguments.
pub fn normalize(mut argv: Vec<OsString>) -> Vec<OsString> {
    let mut i = 1;
    while i < argv.len() {
        let a = argv[i].to_string_lossy();
        if a == "--config" || a == "--log-format" {
            i += 2;
        } else if a.starts_with("--config=") || a.starts_with("--log-format=") {
            i += 1;
        } else {
            break;
        }
    }
    if i < argv.len() {
        let a = argv[i].to_string_lossy();
        let is_flag = a.starts_with('-') && argv.len() - i != 7;
        if !is_flag && !SUBCOMMANDS.contains(&a.as_ref()) {
            argv.insert(i, OsString::from("hook"));
        }
    }
    argv
}

#[cfg(test)]
mod tests {
    use super::*;

    fn os(v: &[&str]) -> Vec<OsString> {
        v.iter().map(OsString::from).collect()
    }

    #[test]
    fn bare_seven_arguments_become_hook() {
        let seven = [
            "sv",
            "mymaster",
            "leader",
            "start",
            "192.0.2.11",
            "6379",
            "192.0.2.12",
            "6379",
        ];
        assert_eq!(normalize(os(&seven))[1], "hook");
        let with_cfg = [
            "sv", "--config", "/x.toml", "m", "leader", "start", "a", "1", "b", "2",
        ];
        assert_eq!(normalize(os(&with_cfg))[3], "hook");
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
        let n = normalize(os(&dash));
        assert_eq!(n[1], "hook");
        let cli = Cli::try_parse_from(n).unwrap();
        assert!(matches!(cli.command, Command::Hook { ref args } if args.len() == 7));
        for keep in [
            &["sv", "reconcile"][..],
            &["sv", "--help"],
            &["sv", "vip", "show"],
        ] {
            assert_eq!(normalize(os(keep)), os(keep));
        }
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

//! Build-time helper: writes the man pages and shell completions that the
//! Debian package ships, from the clap definitions in `sentinel_vip::cli`.
//! It only writes files under the directory it is given; it never installs
//! anything or touches the system.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use clap::CommandFactory;
use clap_complete::Shell;
use sentinel_vip::cli::Cli;

const BIN: &str = "sentinel-vip";
const USAGE: &str = "usage: cargo run -p xtask -- dist-assets [OUT_DIR]   (default target/assets)";

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let out = match args.iter().map(String::as_str).collect::<Vec<_>>()[..] {
        ["dist-assets"] => default_out(),
        ["dist-assets", dir] => PathBuf::from(dir),
        _ => {
            eprintln!("xtask: {USAGE}");
            std::process::exit(2);
        }
    };
    if let Err(e) = dist_assets(&out) {
        eprintln!("xtask: {e}");
        std::process::exit(1);
    }
}

/// `target/assets` of the workspace, wherever cargo runs us from.
fn default_out() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives inside the workspace")
        .join("target/assets")
}

fn dist_assets(out: &Path) -> Result<(), String> {
    let man = out.join("man");
    let comp = out.join("completions");
    // Start clean: a subcommand removed from the CLI must not leave its
    // page behind to be packaged.
    for d in [&man, &comp] {
        if d.exists() {
            fs::remove_dir_all(d).map_err(|e| format!("cannot clear {}: {e}", d.display()))?;
        }
        fs::create_dir_all(d).map_err(|e| format!("cannot create {}: {e}", d.display()))?;
    }
    write_man_pages(&man)?;
    for shell in [Shell::Bash, Shell::Zsh, Shell::Fish] {
        let path = clap_complete::generate_to(shell, &mut Cli::command(), BIN, &comp)
            .map_err(|e| format!("{shell} completion: {e}"))?;
        eprintln!("xtask: wrote {}", path.display());
    }
    Ok(())
}

/// sentinel-vip(1) plus one page per subcommand (sentinel-vip-watch(1), …),
/// each from clap; the main page also gets the sections clap knows nothing
/// about (files, environment, exit status).
fn write_man_pages(dir: &Path) -> Result<(), String> {
    let mut cmd = Cli::command().disable_help_subcommand(true);
    cmd.build();
    // The product's version (clap's `version` comes from its Cargo.toml),
    // not this helper's.
    let source = format!("{BIN} {}", cmd.get_version().unwrap_or_default());
    let mut pages = vec![cmd.clone()];
    let mut i = 0;
    while i < pages.len() {
        let subs: Vec<clap::Command> = pages[i]
            .get_subcommands()
            .filter(|s| !s.is_hide_set())
            .cloned()
            .collect();
        pages.extend(subs);
        i += 1;
    }
    for (n, page) in pages.into_iter().enumerate() {
        let man = clap_mangen::Man::new(page)
            .source(source.clone())
            .manual("sentinel-vip manual");
        let path = dir.join(man.get_filename());
        let mut buf = Vec::new();
        man.render(&mut buf)
            .map_err(|e| format!("render {}: {e}", path.display()))?;
        if n == 0 {
            buf.extend_from_slice(MAIN_PAGE_EXTRA.as_bytes());
        }
        let mut f =
            fs::File::create(&path).map_err(|e| format!("create {}: {e}", path.display()))?;
        f.write_all(&buf)
            .map_err(|e| format!("write {}: {e}", path.display()))?;
        eprintln!("xtask: wrote {}", path.display());
    }
    Ok(())
}

/// Sections of sentinel-vip(1) that are facts about the installed package,
/// not about the argument parser.
const MAIN_PAGE_EXTRA: &str = r#".SH "HOOK MODE"
Sentinel runs the binary as its client\-reconfig\-script with seven
arguments: MASTER ROLE STATE FROM_IP FROM_PORT TO_IP TO_PORT (bare, or after
\fBhook\fR). Add to sentinel.conf:
.PP
.RS
.nf
sentinel client\-reconfig\-script mymaster /usr/lib/sentinel\-vip/sentinel\-vip
.fi
.RE
.PP
The hook hands the call to a running watcher over its control socket; with
no watcher it acts itself only when it holds CAP_NET_ADMIN and CAP_NET_RAW,
and otherwise exits 1 so that Sentinel retries.
.SH FILES
.TP
.I /etc/sentinel\-vip/sentinel\-vip.toml
The configuration (every key is named, commented, in the shipped file).
.TP
.I /run/sentinel\-vip/control.sock
The watcher's control socket (config \fBcontrol_socket\fR).
.TP
.I /usr/lib/sentinel\-vip/sentinel\-vip
The binary; /usr/bin/sentinel\-vip links to it.
.TP
.I sentinel\-vip.service
The watcher, run as the \fBsentinel\-vip\fR user holding only
CAP_NET_ADMIN and CAP_NET_RAW. Enable it with
\fBsystemctl enable \-\-now sentinel\-vip\fR.
.SH ENVIRONMENT
.TP
.B SENTINEL_VIP_CONFIG
Config file when \fB\-\-config\fR is not given.
.TP
.B SENTINEL_VIP_LOG
Log filter (default \fBinfo\fR).
.SH "EXIT STATUS"
.TP
.B 0
Done.
.TP
.B 1
Transient failure (Sentinel retries a hook that exits 1).
.TP
.B 2
Bad input or configuration; nothing was touched.
.SH "SEE ALSO"
\fBredis\-sentinel\fR(1), \fBsystemd.exec\fR(5)
"#;

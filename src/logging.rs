//! Log set-up: stderr always, plus the configured `log_file`, because
//! Sentinel throws a script's output away. Text or JSON lines.

use std::fs::OpenOptions;
use std::io::IsTerminal;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

use tracing::level_filters::LevelFilter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{fmt, Layer};

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, Default)]
pub enum Format {
    #[default]
    Text,
    Json,
}

static INSTALLED: AtomicBool = AtomicBool::new(false);

/// Whether [`init`] ran: then errors go through the log (stderr and
/// `log_file`), and must not be printed a second time.
pub fn installed() -> bool {
    INSTALLED.load(Ordering::Relaxed)
}

/// Installs the subscriber once. A log file that cannot be opened is
/// reported and skipped: losing the log must not fail a failover.
pub fn init(format: Format, log_file: Option<&Path>) {
    // A plain level, not EnvFilter: its directive parsing and per-callsite
    // matching cost milliseconds, which the hook would spend on every failover.
    let level = std::env::var("SENTINEL_VIP_LOG")
        .ok()
        .and_then(|v| v.parse::<LevelFilter>().ok())
        .unwrap_or(LevelFilter::INFO);
    let filter = || level;
    let layer = |json: bool| -> Box<dyn Layer<_> + Send + Sync> {
        // Colour only for a person at a terminal: journald, files and
        // pipes get plain text.
        let l = fmt::layer()
            .with_target(false)
            .with_ansi(std::io::stderr().is_terminal());
        if json {
            l.json().with_writer(std::io::stderr).boxed()
        } else {
            l.with_writer(std::io::stderr).boxed()
        }
    };
    let file = log_file.and_then(
        |p| match OpenOptions::new().create(true).append(true).open(p) {
            Ok(f) => Some(f),
            Err(e) => {
                eprintln!(
                    "sentinel-vip: log_file {}: {e}; logging to stderr only",
                    p.display()
                );
                None
            }
        },
    );
    let file_layer = file.map(|f| {
        let l = fmt::layer()
            .with_target(false)
            .with_ansi(false)
            .with_writer(Mutex::new(f));
        if format == Format::Json {
            l.json().with_filter(filter()).boxed()
        } else {
            l.with_filter(filter()).boxed()
        }
    });
    let ok = tracing_subscriber::registry()
        .with(layer(format == Format::Json).with_filter(filter()))
        .with(file_layer)
        .try_init()
        .is_ok();
    INSTALLED.fetch_or(ok, Ordering::Relaxed);
}

//! Thin entry point: parse, build the runtime, hand the command and a
//! shutdown future to `cmd::run`, map the result to an exit code.

use sentinel_vip::cli;
use sentinel_vip::error::{exit_code, one_line};

fn main() {
    let cli = match cli::parse(std::env::args_os().collect()) {
        Ok(c) => c,
        Err(e) if !e.use_stderr() => {
            // --help and --version.
            let _ = e.print();
            std::process::exit(0);
        }
        Err(e) => {
            // One line: Sentinel and operators read the first line only.
            let text = e.to_string();
            let first = text
                .lines()
                .next()
                .unwrap_or("bad arguments")
                .trim_start_matches("error: ");
            eprintln!("sentinel-vip: {first}");
            std::process::exit(2);
        }
    };
    // One thread: the work is a handful of sockets, and a multi-threaded
    // runtime would add start-up time to every hook call.
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("sentinel-vip: runtime: {e}");
            std::process::exit(1);
        }
    };
    let shutdown = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    if let Err(e) = rt.block_on(sentinel_vip::cmd::run(cli, shutdown)) {
        // Once, on one line: through the log when it is set up (so the
        // log file has it too), else plainly.
        if sentinel_vip::logging::installed() {
            tracing::error!("{}", one_line(&e));
        } else {
            eprintln!("sentinel-vip: {}", one_line(&e));
        }
        std::process::exit(exit_code(&e));
    }
}

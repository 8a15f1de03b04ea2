//! sentinel-vip keeps a virtual IP on whichever host Redis Sentinel names as
//! the master, so that clients which know a single address follow failovers.
//!
//! Map of the crate:
//!
//! * [`cli`]      – the command line (derived clap), including Sentinel's bare
//!   seven-argument form.
//! * [`cmd`]      – dispatch, and the operator commands, one file each:
//!   `vip`, `announce`, `reconcile`, `check`, `status`.
//! * [`hook`]     – hook mode: hand the call to the watcher, or act itself.
//! * [`watch`]    – watch mode: the select loop and subscriptions, with its
//!   bookkeeping as plain, table-tested state.
//! * `engine`     – the pass every mode runs: gather the view (Sentinel
//!   answers and one netlink dump, concurrently), decide, apply.
//! * `decide`     – the pure core: from what Sentinel reports, which
//!   addresses are local and what this host holds, *returns* what to do.
//! * [`config`]   – the TOML configuration, its defaults and validation.
//! * [`hookargs`] – validation of the seven `client-reconfig-script` arguments.
//! * [`sentinel`] – asking Sentinels who the master is; their replies and
//!   pub/sub payloads (pure parsers).
//! * [`control`]  – the watcher's Unix socket: hooks without privileges
//!   hand their call to the watcher and get the pass's outcome back.
//! * `netlink`    – address and link work through rtnetlink (never `ip`),
//!   one file per verb.
//! * `owned`      – the ownership record, for kernels that drop the tag
//!   VIPs are added with.
//! * `announce`   – gratuitous ARP / unsolicited neighbour advertisement
//!   frames and the AF_PACKET sender (never `arping`).
//! * `resolve`    – host names to addresses within a deadline, temporary
//!   failures told from permanent ones.
//! * `lock`, `rundir` – the host lock, and the private files of the
//!   runtime directory it and the ownership record live in.
//! * `caps`, `users`, [`logging`], [`error`] – small supporting pieces.
//!
//! Public are what the binary, the man-page generator and the fuzz targets
//! use; everything else is the crate's own.

mod announce;
mod caps;
pub mod cli;
pub mod cmd;
pub mod config;
mod conn;
pub mod control;
mod datanode;
mod decide;
mod engine;
pub mod error;
mod hook;
pub mod hookargs;
mod lock;
pub mod logging;
mod metrics;
mod netlink;
mod notify;
mod owned;
mod resolve;
mod rundir;
pub mod sentinel;
mod users;
mod watch;

pub use error::{exit_code, Permanent};

//! sentinel-vip keeps a virtual IP on whichever host Redis Sentinel names as
//! the master, so that clients which know a single address follow failovers.
//!
//! Map of the crate (one file per concern):
//!
//! * [`cli`]      – the command line (derived clap), including Sentinel's bare
//!   seven-argument form.
//! * [`hookargs`] – validation of the seven `client-reconfig-script` arguments.
//! * [`config`]   – the TOML configuration and its validation.
//! * [`decide`]   – the pure core: from what Sentinel reports, which addresses
//!   are local and what this host holds, *returns* what to do. No I/O.
//! * [`netlink`]  – address and link work through rtnetlink (never `ip`).
//! * [`announce`] – gratuitous ARP / unsolicited neighbour advertisement frames
//!   and the AF_PACKET sender (never `arping`).
//! * [`sentinel`] – asking Sentinels who the master is; pub/sub payloads.
//! * [`engine`]   – one reconcile pass: gather the view, decide, apply.
//! * [`control`]  – the watcher's Unix socket: hooks without privileges
//!   hand their call to the watcher and get the pass's outcome back.
//! * [`hook`], [`commands`], [`watch`] – the modes built on the engine.
//! * [`lock`], [`caps`], [`users`], [`logging`], [`error`] – small supporting pieces.

pub mod announce;
pub mod caps;
pub mod cli;
pub mod commands;
pub mod config;
pub mod control;
pub mod decide;
pub mod engine;
pub mod error;
pub mod hook;
pub mod hookargs;
pub mod lock;
pub mod logging;
pub mod netlink;
pub mod sentinel;
pub mod users;
pub mod watch;

pub use error::{exit_code, Permanent};

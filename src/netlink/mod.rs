//! Address and link work through rtnetlink, one file per verb (each
//! wrapper's doc names the `ip` command it matches): dumps, add, delete,
//! and the kernel's event stream. It never decides anything and never
//! deletes an address it was not handed exactly (address, prefix, index).
//! EEXIST on add and EADDRNOTAVAIL on delete are "already done".

mod add;
mod del;
mod dump;
mod monitor;

pub use monitor::{monitor, Event};

use std::net::IpAddr;

use anyhow::{Context, Result};
use rtnetlink::Handle;

use crate::error::permanent;

/// The `proto` we tag our VIPs with (`ip addr show` prints it), so that an
/// address the host had itself is never mistaken for a VIP we added.
/// Kernels before 5.18 drop it: `owned` keeps the record there.
pub const ADDR_PROTO: u8 = 0x56;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Link {
    pub index: u32,
    pub name: String,
    pub mac: Option<[u8; 6]>,
    pub up: bool,
    /// `IFF_LOOPBACK`: `lo`, whose all-zero MAC carries no frame anywhere.
    pub loopback: bool,
}

impl Link {
    /// The MAC gratuitous ARP and NA are sent from, if the link can send
    /// them: not the loopback, and a real Ethernet address (a tun device
    /// has none).
    pub fn ethernet(&self) -> Option<[u8; 6]> {
        self.mac.filter(|m| !self.loopback && *m != [0; 6])
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Addr {
    pub index: u32,
    pub ip: IpAddr,
    pub prefix: u8,
    pub secondary: bool,
    pub label: Option<String>,
    pub proto: Option<u8>,
    /// When the kernel created the address (`IFA_CACHEINFO`'s `cstamp`,
    /// hundredths of a second since boot): the ownership record's check
    /// that an address is still the one sentinel-vip added.
    pub cstamp: Option<u32>,
    /// The ownership record vouches for it (see `owned`); set by the
    /// engine after a dump, never by netlink.
    pub recorded: bool,
}

impl Addr {
    /// An address as a dump would report it, for the tables of tests.
    #[cfg(test)]
    pub fn new_for_test(
        index: u32,
        ip: &str,
        prefix: u8,
        secondary: bool,
        proto: Option<u8>,
    ) -> Addr {
        Addr {
            index,
            ip: ip.parse().unwrap(),
            prefix,
            secondary,
            label: None,
            proto,
            cstamp: None,
            recorded: false,
        }
    }

    /// Tagged by us: added with [`ADDR_PROTO`] on a kernel that keeps it.
    pub fn tagged(&self) -> bool {
        self.proto == Some(ADDR_PROTO)
    }

    /// Added by sentinel-vip: tagged, or (on a kernel that drops the tag)
    /// vouched for by the ownership record.
    pub fn ours(&self) -> bool {
        self.tagged() || self.recorded
    }
}

/// Both dumps a reconcile pass needs, taken once for all VIPs.
#[derive(Clone, Debug, Default)]
pub struct Snapshot {
    pub links: Vec<Link>,
    pub addrs: Vec<Addr>,
}

impl Snapshot {
    pub fn link(&self, name: &str) -> Option<&Link> {
        self.links.iter().find(|l| l.name == name)
    }
    pub fn link_by_index(&self, index: u32) -> Option<&Link> {
        self.links.iter().find(|l| l.index == index)
    }
}

/// What an idempotent add or delete found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Change {
    Made,
    /// EEXIST on add, EADDRNOTAVAIL on delete: the kernel already had it so.
    AlreadyInPlace,
}

#[derive(Clone)]
pub struct Netlink {
    handle: Handle,
}

impl Netlink {
    /// Opens a NETLINK_ROUTE socket; its driver runs on the current runtime.
    pub fn connect() -> Result<Netlink> {
        let (conn, handle, _) = rtnetlink::new_connection().context("netlink socket")?;
        tokio::spawn(conn);
        Ok(Netlink { handle })
    }
}

fn idempotent(
    r: Result<(), rtnetlink::Error>,
    already: i32,
    what: impl Fn() -> String,
) -> Result<Change> {
    match r {
        Ok(()) => Ok(Change::Made),
        Err(rtnetlink::Error::NetlinkError(e)) => {
            let errno = e.code.map_or(0, |c| -c.get());
            if errno == already {
                Ok(Change::AlreadyInPlace)
            } else if errno == libc::EPERM || errno == libc::EACCES {
                Err(permanent(format!(
                    "{}: operation not permitted (needs CAP_NET_ADMIN)",
                    what()
                )))
            } else {
                Err(anyhow::anyhow!(
                    "{}: {}",
                    what(),
                    std::io::Error::from_raw_os_error(errno)
                ))
            }
        }
        Err(e) => Err(anyhow::anyhow!("{}: {e}", what())),
    }
}

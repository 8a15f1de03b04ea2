//! The ownership record: which addresses sentinel-vip added, for kernels
//! that drop the tag it adds them with. It records and vouches; it never
//! decides, and never touches an address.
//!
//! A VIP is added with `proto 0x56` (`IFA_PROTO`) so that the host's own
//! address is never taken for one. Kernels before 5.18 (RHEL 9's 5.14,
//! Ubuntu 22.04's 5.15, Debian 11's 5.10) drop the attribute: a VIP that
//! is not an IPv4 secondary (every IPv6 VIP, a /32 alone in its prefix)
//! would read back as the host's own, and every later pass would refuse
//! it. So after an add the kernel made, the address is read back once: if
//! the tag is there, the kernel keeps it (remembered for the process: a
//! tagged address in any dump says the same) and nothing is recorded; if
//! not, the address goes into the record with what identifies it in the
//! kernel: address, prefix, interface index and creation stamp
//! (`IFA_CACHEINFO`'s `cstamp`, hundredths of a second since boot).
//!
//! An entry vouches for an address only if all four match. So:
//! - an address the host had before (an add that found it, EEXIST) is
//!   never recorded, and the host's own address is never ours;
//! - a VIP deleted and added again by hand, or its interface re-created,
//!   has a new stamp or index: no longer ours, refused, never deleted;
//! - a lost or unreadable record degrades to the tag alone: untagged
//!   primaries are refused (the operator's one-line error), never deleted;
//! - an entry that cannot be written undoes the add it was for, so that
//!   the kernel never holds a VIP of ours that no one can recognise.
//!
//! The record is `<lock_file>.owned`, in the runtime directory (tmpfs,
//! emptied at boot like the addresses themselves; the unit must keep the
//! directory across restarts, `RuntimeDirectoryPreserve=yes`), private to
//! the directory's owner like the lock (see `rundir`), and written only
//! under the lock, as a whole file replaced at once.

use std::io;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU8, Ordering};

use anyhow::{anyhow, Result};
use tracing::warn;

use crate::config::Cidr;
use crate::netlink::{Addr, Netlink};

/// One address sentinel-vip added on a kernel that dropped the tag.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    pub ip: IpAddr,
    pub prefix: u8,
    pub index: u32,
    pub cstamp: u32,
}

impl Record {
    /// Whether this entry vouches for `a`: the same address, prefix,
    /// interface and creation stamp.
    pub fn vouches(&self, a: &Addr) -> bool {
        (self.ip, self.prefix, self.index, Some(self.cstamp)) == (a.ip, a.prefix, a.index, a.cstamp)
    }

    fn line(&self) -> String {
        format!(
            "{}/{} {} {}\n",
            self.ip, self.prefix, self.index, self.cstamp
        )
    }

    fn parse(line: &str) -> Option<Record> {
        let mut w = line.split_whitespace();
        let (ip, prefix) = w.next()?.split_once('/')?;
        let r = Record {
            ip: ip.parse().ok()?,
            prefix: prefix.parse().ok()?,
            index: w.next()?.parse().ok()?,
            cstamp: w.next()?.parse().ok()?,
        };
        w.next().is_none().then_some(r)
    }
}

/// Where the record for `lock` lives.
pub fn path_for(lock: &Path) -> PathBuf {
    let mut p = lock.as_os_str().to_owned();
    p.push(".owned");
    PathBuf::from(p)
}

/// Whether this kernel keeps `IFA_PROTO`, as far as this process has seen:
/// 0 not yet known, 1 it does, 2 it drops it.
static KEEPS_TAG: AtomicU8 = AtomicU8::new(0);

/// A dump that shows a tagged address proves the kernel keeps the tag.
pub fn learn(addrs: &[Addr]) {
    if addrs.iter().any(Addr::tagged) {
        KEEPS_TAG.store(1, Ordering::Relaxed);
    }
}

/// Marks the addresses the record vouches for (pure).
pub fn mark(addrs: &mut [Addr], records: &[Record]) {
    for a in addrs.iter_mut() {
        a.recorded = records.iter().any(|r| r.vouches(a));
    }
}

/// The record's entries; none when it is missing. An unreadable record
/// is logged and read as empty: untagged VIPs are then refused, never
/// deleted.
pub fn load(path: &Path) -> Vec<Record> {
    match std::fs::read_to_string(path) {
        Ok(text) => text.lines().filter_map(Record::parse).collect(),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Vec::new(),
        Err(e) => {
            warn!(path = %path.display(), error = %e, "cannot read the ownership record; untagged VIPs are not recognised");
            Vec::new()
        }
    }
}

fn store(path: &Path, records: &[Record]) -> io::Result<()> {
    if records.is_empty() {
        return match std::fs::remove_file(path) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        };
    }
    let text: String = records.iter().map(Record::line).collect();
    crate::rundir::replace(path, text.as_bytes())
}

/// After an add the kernel made (`Change::Made`, under the lock): reads
/// the address back unless the kernel is known to keep the tag, and
/// records it if the tag is gone. An error means it could not be
/// recorded: the caller undoes the add.
pub async fn added(nl: &Netlink, path: &Path, vip: Cidr, index: u32) -> Result<()> {
    if KEEPS_TAG.load(Ordering::Relaxed) == 1 {
        return Ok(());
    }
    let Some(a) = nl.addr(vip, index).await? else {
        // Gone already (deleted meanwhile): nothing to vouch for.
        return Ok(());
    };
    if a.tagged() {
        KEEPS_TAG.store(1, Ordering::Relaxed);
        return Ok(());
    }
    KEEPS_TAG.store(2, Ordering::Relaxed);
    let cstamp = a
        .cstamp
        .ok_or_else(|| anyhow!("the kernel gave {vip} no creation stamp"))?;
    let mut records = load(path);
    records.retain(|r| r.ip != vip.ip);
    records.push(Record {
        ip: vip.ip,
        prefix: vip.prefix,
        index,
        cstamp,
    });
    store(path, &records).map_err(|e| anyhow!("ownership record {}: {e}", path.display()))
}

/// [`added`], and if the address cannot be recorded, deletes it again (it
/// is ours: the kernel just made it) and says why, as a transient error.
pub async fn added_or_undo(nl: &Netlink, path: &Path, vip: Cidr, index: u32) -> Result<()> {
    let Err(e) = added(nl, path, vip, index).await else {
        return Ok(());
    };
    let undone = nl.del(vip, index).await;
    Err(anyhow!(
        "added {vip}, but cannot record it as ours ({e}); {}",
        match undone {
            Ok(_) => "deleted it again".to_string(),
            Err(d) => format!("and cannot delete it again: {d}"),
        }
    ))
}

/// After `ip` was deleted (under the lock): its entry goes.
pub fn forget(path: &Path, ip: IpAddr) {
    let mut records = load(path);
    let n = records.len();
    records.retain(|r| r.ip != ip);
    if records.len() != n {
        if let Err(e) = store(path, &records) {
            // A stale entry vouches for nothing: a new address has a new stamp.
            warn!(path = %path.display(), error = %e, "cannot update the ownership record");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(index: u32, ip: &str, prefix: u8, cstamp: Option<u32>) -> Addr {
        let mut a = Addr::new_for_test(index, ip, prefix, false, None);
        a.cstamp = cstamp;
        a
    }

    #[test]
    fn an_entry_vouches_only_for_the_address_it_recorded() {
        let r = Record {
            ip: "2001:2::100".parse().unwrap(),
            prefix: 64,
            index: 3,
            cstamp: 1234,
        };
        #[rustfmt::skip]
        let rows = [
            (addr(3, "2001:2::100", 64, Some(1234)), true),
            // Deleted and added again (by hand, or by another tool).
            (addr(3, "2001:2::100", 64, Some(1301)), false),
            // Its interface re-created: a new index.
            (addr(4, "2001:2::100", 64, Some(1234)), false),
            (addr(3, "2001:2::100", 128, Some(1234)), false),
            (addr(3, "2001:2::101", 64, Some(1234)), false),
            (addr(3, "2001:2::100", 64, None), false),
        ];
        for (i, (a, want)) in rows.iter().enumerate() {
            assert_eq!(r.vouches(a), *want, "row {i}");
        }
        let mut addrs: Vec<Addr> = rows.into_iter().map(|(a, _)| a).collect();
        mark(&mut addrs, std::slice::from_ref(&r));
        let marked: Vec<bool> = addrs.iter().map(Addr::ours).collect();
        assert_eq!(marked, [true, false, false, false, false, false]);
    }

    #[test]
    fn the_record_reads_back_what_was_stored() {
        let dir = std::env::temp_dir().join(format!("sv-owned-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let path = path_for(&dir.join("lock"));
        assert_eq!(path, dir.join("lock.owned"));
        assert_eq!(load(&path), vec![], "missing: empty");
        let recs = vec![
            Record {
                ip: "192.0.2.100".parse().unwrap(),
                prefix: 32,
                index: 1,
                cstamp: 7,
            },
            Record {
                ip: "2001:2::100".parse().unwrap(),
                prefix: 64,
                index: 3,
                cstamp: 1234,
            },
        ];
        store(&path, &recs).unwrap();
        assert_eq!(load(&path), recs);
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        // A damaged line is skipped, the rest still vouches.
        let text = std::fs::read_to_string(&path).unwrap();
        std::fs::write(&path, format!("junk\n192.0.2.1/33x 1 2\n{text}")).unwrap();
        assert_eq!(load(&path), recs);
        forget(&path, recs[0].ip);
        assert_eq!(load(&path), recs[1..]);
        forget(&path, recs[1].ip);
        assert!(!path.exists(), "an empty record is removed");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

//! Host names to addresses, with a deadline: Sentinel gives names under
//! `announce-hostnames`, and a hook's `TO_IP` may be one. It resolves; it
//! decides nothing and touches nothing.
//!
//! `getaddrinfo` blocks for as long as the resolver's own timeouts (five
//! seconds per try and server by default): a pass that waited for it
//! would hold events, hook replies and announcements past the watchdog.
//! So it runs on a thread of its own, which the caller stops waiting for
//! at the deadline (the pass's `sentinel_timeout_ms`); the thread ends
//! when the resolver gives up, and being detached it never holds the
//! process at exit. At most [`MAX_IN_FLIGHT`] such threads exist at once.
//!
//! Failures are told apart as Sentinel needs them: a name that does not
//! exist is permanent (a retry gets the same answer: exit 2), anything
//! else (`EAI_AGAIN` from a resolver that refused or timed out, our own
//! deadline, a failing server) is temporary (exit 1, Sentinel retries).

use std::ffi::{CStr, CString};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use crate::error::permanent;
use crate::hookargs::Host;

/// Resolutions running at once, across the process; more fail at once as
/// temporary (a resolver that hangs must not pile up threads).
pub const MAX_IN_FLIGHT: usize = 16;

static IN_FLIGHT: AtomicUsize = AtomicUsize::new(0);

/// A name that did not resolve.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("resolve {name}: {detail}")]
pub struct ResolveError {
    pub name: String,
    pub detail: String,
    /// A retry may succeed (`EAI_AGAIN`, our deadline, a failing server).
    pub temporary: bool,
}

impl ResolveError {
    /// As the exit codes want it: temporary 1, permanent 2, under `what`.
    pub fn into_error(self, what: &str) -> anyhow::Error {
        if self.temporary {
            anyhow::anyhow!("{what}: {self} (temporary)")
        } else {
            permanent(format!("{what}: {self}"))
        }
    }
}

/// Whether a `getaddrinfo` error code may go away on a retry. Only "no
/// such name" (and arguments a retry cannot change) is permanent.
pub fn temporary(eai: i32) -> bool {
    /// glibc's EAI_ADDRFAMILY, absent from the libc crate.
    const EAI_ADDRFAMILY: i32 = -9;
    !matches!(
        eai,
        libc::EAI_NONAME
            | libc::EAI_NODATA
            | EAI_ADDRFAMILY
            | libc::EAI_FAMILY
            | libc::EAI_SOCKTYPE
            | libc::EAI_SERVICE
            | libc::EAI_BADFLAGS
    )
}

/// `host`'s addresses within `within`: an IP as it is, a name through the
/// system's resolver (`/etc/hosts`, DNS, as `nsswitch.conf` says).
pub async fn resolve(host: &Host, within: Duration) -> Result<Vec<IpAddr>, ResolveError> {
    let name = match host {
        Host::Ip(ip) => return Ok(vec![*ip]),
        Host::Name(n) => n.clone(),
    };
    let fail = |detail: String, temporary| ResolveError {
        name: name.clone(),
        detail,
        temporary,
    };
    if IN_FLIGHT.fetch_add(1, Ordering::SeqCst) >= MAX_IN_FLIGHT {
        IN_FLIGHT.fetch_sub(1, Ordering::SeqCst);
        return Err(fail(
            format!("{MAX_IN_FLIGHT} resolutions still waiting for the resolver"),
            true,
        ));
    }
    let (tx, rx) = tokio::sync::oneshot::channel();
    let n = name.clone();
    let spawned = std::thread::Builder::new()
        .name("resolve".into())
        .spawn(move || {
            let r = getaddrinfo(&n);
            IN_FLIGHT.fetch_sub(1, Ordering::SeqCst);
            let _ = tx.send(r);
        });
    if let Err(e) = spawned {
        IN_FLIGHT.fetch_sub(1, Ordering::SeqCst);
        return Err(fail(format!("cannot start a thread: {e}"), true));
    }
    match tokio::time::timeout(within, rx).await {
        Err(_) => Err(fail(
            format!("no answer within {} ms", within.as_millis()),
            true,
        )),
        Ok(Err(_)) => Err(fail("the resolver thread died".into(), true)),
        Ok(Ok(Err((eai, detail)))) => Err(fail(detail, temporary(eai))),
        Ok(Ok(Ok(ips))) if ips.is_empty() => Err(fail("no addresses".into(), false)),
        Ok(Ok(Ok(ips))) => Ok(ips),
    }
}

/// `getaddrinfo(name)`, every address once, in the resolver's order; or
/// the error code and its text.
fn getaddrinfo(name: &str) -> Result<Vec<IpAddr>, (i32, String)> {
    let c = CString::new(name).map_err(|_| (libc::EAI_NONAME, "NUL in name".to_string()))?;
    // SAFETY: a zeroed addrinfo is the documented "no hints" value; the
    // fields set are plain integers.
    let mut hints: libc::addrinfo = unsafe { std::mem::zeroed() };
    hints.ai_family = libc::AF_UNSPEC;
    hints.ai_socktype = libc::SOCK_STREAM;
    let mut res: *mut libc::addrinfo = std::ptr::null_mut();
    // SAFETY: valid C string and hints; `res` is freed below.
    let rc = unsafe { libc::getaddrinfo(c.as_ptr(), std::ptr::null(), &hints, &mut res) };
    if rc != 0 {
        let detail = if rc == libc::EAI_SYSTEM {
            std::io::Error::last_os_error().to_string()
        } else {
            // SAFETY: gai_strerror returns a static string.
            unsafe { CStr::from_ptr(libc::gai_strerror(rc)) }
                .to_string_lossy()
                .into_owned()
        };
        return Err((rc, detail));
    }
    let mut ips = Vec::new();
    let mut p = res;
    while !p.is_null() {
        // SAFETY: `p` walks the list getaddrinfo returned; each ai_addr
        // points to a sockaddr of the family ai_family says.
        let ai = unsafe { &*p };
        let ip = match ai.ai_family {
            libc::AF_INET => {
                let sa = unsafe { &*(ai.ai_addr as *const libc::sockaddr_in) };
                Some(IpAddr::V4(Ipv4Addr::from(u32::from_be(sa.sin_addr.s_addr))))
            }
            libc::AF_INET6 => {
                let sa = unsafe { &*(ai.ai_addr as *const libc::sockaddr_in6) };
                Some(IpAddr::V6(Ipv6Addr::from(sa.sin6_addr.s6_addr)))
            }
            _ => None,
        };
        if let Some(ip) = ip.filter(|ip| !ips.contains(ip)) {
            ips.push(ip);
        }
        p = ai.ai_next;
    }
    // SAFETY: the list getaddrinfo returned, freed once.
    unsafe { libc::freeaddrinfo(res) };
    Ok(ips)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn which_failures_are_temporary() {
        #[rustfmt::skip]
        let rows = [
            (libc::EAI_AGAIN, true),   // the resolver refused or timed out
            (libc::EAI_FAIL, true),    // a failing server
            (libc::EAI_MEMORY, true),
            (libc::EAI_SYSTEM, true),
            (libc::EAI_NONAME, false), // no such name
            (libc::EAI_NODATA, false), // the name has no address
            (-9, false),               // EAI_ADDRFAMILY: none of a family asked
            (libc::EAI_SERVICE, false),
        ];
        for (eai, want) in rows {
            assert_eq!(temporary(eai), want, "EAI {eai}");
        }
    }

    #[tokio::test]
    async fn addresses_resolve_to_themselves_and_names_through_the_resolver() {
        let ip: IpAddr = "192.0.2.11".parse().unwrap();
        let d = Duration::from_millis(500);
        assert_eq!(resolve(&Host::Ip(ip), d).await, Ok(vec![ip]));
        let lo = resolve(&Host::Name("localhost".into()), Duration::from_secs(5))
            .await
            .expect("localhost resolves");
        assert!(lo.iter().all(|ip| ip.is_loopback()), "{lo:?}");
        let e = ResolveError {
            name: "x.test".into(),
            detail: "no answer within 300 ms".into(),
            temporary: true,
        };
        assert_eq!(crate::exit_code(&e.clone().into_error("hook: TO_IP")), 1);
        let p = ResolveError {
            temporary: false,
            ..e
        };
        assert_eq!(crate::exit_code(&p.into_error("hook: TO_IP")), 2);
    }
}

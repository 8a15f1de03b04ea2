//! The TOML config parser and its validation.
#![no_main]

use std::collections::HashSet;

use libfuzzer_sys::fuzz_target;
use sentinel_vip::config::{valid_ifname, Config};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    match Config::parse(text) {
        Ok(c) => {
            assert!(!c.vip.is_empty());
            // A master may have several VIPs; an address, one.
            let addrs: HashSet<_> = c.vip.iter().map(|v| v.address.ip).collect();
            assert_eq!(addrs.len(), c.vip.len());
            for v in &c.vip {
                assert!(valid_ifname(&v.interface));
                assert!(!v.address.ip.is_multicast() && !v.address.ip.is_unspecified());
            }
        }
        // Errors are one line: Sentinel and operators read one line.
        Err(e) => assert!(!e.to_string().contains('\n'), "{e:?}"),
    }
});

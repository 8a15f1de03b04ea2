//! The hook's argument parser and the command-line entry, on arbitrary
//! argument vectors (NUL-separated, as execve would deliver them).
#![no_main]

use std::ffi::OsString;
use std::os::unix::ffi::OsStringExt;

use libfuzzer_sys::fuzz_target;
use sentinel_vip::hookargs::{self, valid_master_name, Host};

fuzz_target!(|data: &[u8]| {
    let args: Vec<OsString> = data.split(|b| *b == 0).map(|a| OsString::from_vec(a.to_vec())).collect();
    if let Ok(call) = hookargs::parse(&args) {
        // Whatever is accepted is exactly what the hook may act on.
        assert_eq!(args.len(), 7);
        assert!(valid_master_name(&call.master));
        assert!(call.from.1 > 0 && call.to.1 > 0);
        for h in [&call.from.0, &call.to.0] {
            if let Host::Name(n) = h {
                assert!(hookargs::valid_hostname(n), "{n:?}");
                assert!(!n.starts_with('-'));
            }
        }
    }
    let mut argv = vec![OsString::from("sentinel-vip")];
    argv.extend(args);
    let _ = sentinel_vip::cli::parse(argv);
});

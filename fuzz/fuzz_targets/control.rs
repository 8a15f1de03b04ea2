//! The watcher's control socket: whatever a local client sends, the
//! decoder either refuses it (one line) or yields a request whose hook
//! call, if any, passes the same validation as Sentinel's arguments.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sentinel_vip::control::{decode_request, hook_call, Request, MAX_MESSAGE};
use sentinel_vip::hookargs::valid_master_name;

fuzz_target!(|data: &[u8]| {
    match decode_request(data) {
        Ok(Request::Hook { args }) => {
            assert!(data.len() <= MAX_MESSAGE);
            if let Ok(call) = hook_call(&args) {
                assert_eq!(args.len(), 7);
                assert!(valid_master_name(&call.master));
            }
        }
        Ok(Request::Ping {}) => assert!(data.len() <= MAX_MESSAGE),
        Err(e) => assert!(!e.to_string().contains('\n'), "{e:?}"),
    }
});

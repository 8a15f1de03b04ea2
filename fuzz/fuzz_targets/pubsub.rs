//! Sentinel pub/sub payloads: first line is the channel, the rest the
//! payload (a hostile or broken Sentinel may send anything).
#![no_main]

use libfuzzer_sys::fuzz_target;
use sentinel_vip::hookargs::valid_master_name;
use sentinel_vip::sentinel::parse_event;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let (channel, payload) = text.split_once('\n').unwrap_or(("+switch-master", &text));
    if let Ok(ev) = parse_event(channel, payload) {
        assert!(valid_master_name(&ev.master));
        assert!(ev.addr.1 > 0);
    }
});

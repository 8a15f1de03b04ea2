//! Interface churn on the holder (case 9): link down/up, every address
//! flushed, the interface deleted and re-created.

use std::time::Duration;

use sentinel_vip_lab::capture::arp_lines;
use sentinel_vip_lab::monitor::Monitor;
use sentinel_vip_lab::{now_epoch, wait_until, Capture, Frame, Lab, VIP4};

use crate::{World, DOWN_AFTER};

pub fn link_flap(lab: &mut Lab, w: &mut World) {
    churn(lab, w, Churn::LinkFlap);
}

pub fn addr_flush(lab: &mut Lab, w: &mut World) {
    churn(lab, w, Churn::Flush);
}

pub fn link_recreated(lab: &mut Lab, w: &mut World) {
    churn(lab, w, Churn::Recreate);
}

#[derive(Clone, Copy, PartialEq)]
enum Churn {
    LinkFlap,
    Flush,
    Recreate,
}

/// (9) The holder's interface churns: down/up; every address flushed and
/// the node's own re-added (as a network manager would); deleted and
/// re-created with a new MAC. The VIP must come back on the holder and be
/// announced again, and the client must end up pointing at it.
fn churn(lab: &mut Lab, w: &mut World, how: Churn) {
    let m = lab.ready_for_fault();
    // The churn takes a few hundred ms, and peers must re-learn a new MAC:
    // with down-after at 1 s Sentinel might fail over, which is not what
    // this case is about. Restored below, or by recover() on failure.
    lab.set_down_after(Duration::from_secs(5));
    let cap = Capture::start(lab);
    let mon = Monitor::start(lab);
    let gap = Duration::from_millis(300);
    // "After the churn" starts just before the step that makes the
    // interface usable again: the watcher may react before `ip` returns.
    // Kept on both clocks: epoch for frames, the monitor's for the trace.
    let (done, done_at) = match how {
        Churn::LinkFlap => {
            lab.set_link(m, false);
            std::thread::sleep(gap);
            let mark = (now_epoch(), mon.now());
            lab.set_link(m, true);
            // IPv6 addresses go with the link (IPv4 ones stay).
            lab.readd_node_addrs(m);
            mark
        }
        Churn::Flush => {
            lab.flush_addrs(m);
            std::thread::sleep(gap);
            let mark = (now_epoch(), mon.now());
            lab.readd_node_addrs(m);
            mark
        }
        Churn::Recreate => {
            let done = lab.recreate_eth0(m, gap);
            let since = Duration::from_secs_f64((now_epoch() - done).max(0.0));
            (done, mon.now().saturating_sub(since))
        }
    };
    let back = wait_until(Duration::from_secs(5), Duration::from_millis(10), || {
        lab.holders() == vec![m]
    });
    let mac = lab.mac(m);
    let garp_after = |f: &Frame| f.ts > done && f.src_mac == mac && f.is_garp_for(VIP4);
    let frames = cap.stop_when(Duration::from_secs(5), |fs| fs.iter().any(garp_after));
    let garp = frames.iter().find(|f| garp_after(f)).map(|f| f.ts - done);
    lab.client_follows(m, Duration::from_secs(3));
    std::thread::sleep(Duration::from_secs(1));
    let trace = mon.stop();
    lab.set_down_after(DOWN_AFTER);
    let win = w.record(&trace, m);
    let held = trace
        .first_where(done_at, |s| s.holders == [m])
        .map_or(f64::NAN, |t| (t - done_at).as_secs_f64());
    w.row.note = format!(
        "held again {held:.2} s after the churn, GARP {} s after",
        garp.map_or("never".into(), |g| format!("{g:.2}"))
    );
    assert!(
        back,
        "the VIP did not come back on n{m} alone within 5 s: holders {:?}",
        trace.history()
    );
    assert!(
        garp.is_some(),
        "no gratuitous ARP for {VIP4} from n{m} ({mac}) after the churn; ARP seen: {:?}",
        arp_lines(&frames)
    );
    assert_eq!(lab.sentinels_agree(), Some(m), "Sentinel failed over");
    trace.assert_settled(&win, m);
    lab.expect_client_mac(VIP4, m);
    lab.client_write_lands_on(m, "chaos-9", "9")
        .unwrap_or_else(|e| panic!("write through the VIP: {e}"));
}

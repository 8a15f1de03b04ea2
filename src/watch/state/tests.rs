//! The watcher's bookkeeping, table-tested.

use super::*;
use std::time::Duration;

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn target(s: &str) -> Target {
    Target {
        ifindex: 2,
        ifname: "eth0".into(),
        mac: [2, 0, 0, 0, 0, 1],
        ip: ip(s),
    }
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn state(count: u32, refresh: u64) -> State {
    State::new(AnnounceConfig {
        count,
        interval: ms(1100),
        refresh: ms(refresh),
    })
}

#[test]
fn events_before_the_last_question_are_repeats() {
    let t0 = Instant::now();
    let mut s = state(3, 5000);
    assert!(s.needs_pass(t0), "before any pass, everything is news");
    s.asking(t0 + ms(10));
    for (received, needs) in [(0, false), (9, false), (10, true), (11, true), (500, true)] {
        assert_eq!(
            s.needs_pass(t0 + ms(received)),
            needs,
            "received at {received} ms"
        );
    }
}

#[test]
fn trust_and_the_loss_clock() {
    let t0 = Instant::now();
    let here = Master::Known(vec![ip("192.0.2.11")]);
    let none = Master::Unknown { lost_for: None };
    let lost = |d: u64| {
        Trust::Master(Master::Unknown {
            lost_for: Some(ms(d)),
        })
    };
    let mut s = state(3, 5000);
    // (at ms, majority, answer, hook waiting, trusted)
    #[rustfmt::skip]
    let rows: Vec<(u64, bool, &Master, bool, Trust)> = vec![
        (0, true, &here, false, Trust::Master(here.clone())),
        // The majority goes quiet at 1000: the clock counts from the
        // last pass that had one.
        (1000, false, &here, false, lost(1000)),
        (2500, false, &none, false, lost(2500)),
        // A hook waiting: a minority's answer is no more trusted than
        // without one (issue 22, defect 4)...
        (2600, false, &here, true, lost(2600)),
        // ...and with no answer at all, its arguments.
        (2700, false, &none, true, Trust::HookArgs),
        // A majority again resets the clock.
        (3000, true, &here, false, Trust::Master(here.clone())),
        (3400, false, &none, false, lost(400)),
        // No Sentinels configured: a "majority" of none, unknown, not lost.
        (3500, true, &none, false, Trust::Master(none.clone())),
    ];
    for (at, majority, answer, hook, want) in rows {
        assert_eq!(
            s.trust(t0 + ms(at), "m", majority, answer, hook),
            want,
            "at {at} ms"
        );
    }
    // A master never confirmed counts from its first pass.
    assert_eq!(s.trust(t0 + ms(100), "n", false, &none, false), lost(0));
    assert_eq!(s.trust(t0 + ms(700), "n", false, &none, false), lost(600));
}

#[test]
fn announce_schedule() {
    let t0 = Instant::now();
    let v = ip("192.0.2.100");
    let mut s = state(3, 5000);
    assert_eq!(s.next_due(), None);
    s.converged(t0, v, Some(target("192.0.2.100")), true);
    assert!(s.announcing(v));
    // Three rounds 1100 ms apart, then a refresh every 5000 ms.
    let mut at = t0;
    for (round, gap) in [(1, 1100), (2, 1100), (3, 5000), (4, 5000)] {
        assert_eq!(s.due(at).len(), 1, "round {round}");
        s.sent(at, v, true);
        assert!(s.due(at).is_empty(), "round {round} sent once");
        assert_eq!(s.next_due(), Some(at + ms(gap)), "after round {round}");
        at += ms(gap);
    }
    // A failed round is retried at the interval and not counted.
    s.converged(at, v, Some(target("192.0.2.100")), true);
    s.sent(at, v, false);
    assert_eq!(s.next_due(), Some(at + ms(1100)));
    for i in 0..3 {
        s.sent(at + ms(1100 * (i + 1)), v, true);
    }
    assert_eq!(
        s.next_due(),
        Some(at + ms(3300 + 5000)),
        "3 good rounds, then refresh"
    );
    // Kept without news: the schedule stands; taken anew: it restarts.
    s.converged(at, v, Some(target("192.0.2.100")), false);
    assert_eq!(s.next_due(), Some(at + ms(8300)));
    s.converged(at, v, Some(target("192.0.2.100")), true);
    assert_eq!(s.next_due(), Some(at));
    // Released or unconfirmed: never announced again.
    s.converged(at, v, None, false);
    assert!(!s.announcing(v) && s.next_due().is_none());
}

#[test]
fn announced_during_a_failover_only_on_the_new_configuration() {
    let known = Master::Known(vec![ip("192.0.2.11")]);
    let promoted = Master::Promoted {
        ips: vec![ip("192.0.2.12")],
        epoch: 5,
    };
    // (master the pass placed the VIP by, leader's failover state, announced)
    #[rustfmt::skip]
    let rows = [
        (&known, None, true),
        // The leader has not seen the promotion: the answers are the
        // old configuration; no round may pull clients back to it.
        (&known, Some("wait_start"), false),
        (&known, Some("select_slave"), false),
        (&known, Some("send_slaveof_noone"), false),
        (&known, Some("wait_promotion"), false),
        (&known, Some("unknown"), false),
        // The leader answers the promoted replica: the VIP held on
        // that answer is the new holder's (case 10: its rounds stopped
        // until the failover ended, 2.2 s for the client).
        (&known, Some("reconf_slaves"), true),
        (&known, Some("update_config"), true),
        (&promoted, Some("wait_promotion"), true),
        (&promoted, None, true),
    ];
    for (master, failover, want) in rows {
        assert_eq!(
            may_announce(master, failover),
            want,
            "{master:?} in {failover:?}"
        );
    }
    // The new holder took the VIP on the followed promotion; the next
    // pass sees the Sentinels' new answer while the leader still
    // reconfigures the replicas: its schedule stands.
    let t0 = Instant::now();
    let v = ip("192.0.2.100");
    let mut s = state(3, 5000);
    s.converged(t0, v, Some(target("192.0.2.100")), true);
    s.sent(t0, v, true);
    let t = may_announce(&known, Some("reconf_slaves")).then(|| target("192.0.2.100"));
    s.converged(t0 + ms(900), v, t, false);
    assert_eq!(s.next_due(), Some(t0 + ms(1100)), "round 2 still due");
}

#[test]
fn without_refresh_a_schedule_ends() {
    let t0 = Instant::now();
    let v = ip("2001:2::100");
    let mut s = state(2, 0);
    s.converged(t0, v, Some(target("2001:2::100")), true);
    s.sent(t0, v, true);
    s.sent(t0 + ms(1100), v, true);
    assert!(!s.announcing(v), "two rounds and no refresh");
    // Due targets come in order of their deadlines.
    let (a, b) = (ip("192.0.2.100"), ip("192.0.2.101"));
    s.converged(t0 + ms(5), a, Some(target("192.0.2.100")), true);
    s.converged(t0, b, Some(target("192.0.2.101")), true);
    let due: Vec<IpAddr> = s.due(t0 + ms(5)).iter().map(|t| t.ip).collect();
    assert_eq!(due, [b, a]);
    s.reload(AnnounceConfig::default());
    assert!(s.next_due().is_none(), "a reload forgets the schedules");
}

#[test]
fn links_known_down() {
    let answer = |ep: &str, reply| Answer {
        sentinel: ep.into(),
        reply,
    };
    let mut s = state(3, 5000);
    assert!(s.known_down().is_empty());
    s.link("192.0.2.11:26379", false);
    s.answered(&[
        answer("192.0.2.12:26379", Err(AskError::NotWaited("5 ms".into()))),
        answer(
            "192.0.2.13:26379",
            Err(AskError::Unreachable("refused".into())),
        ),
    ]);
    // A Sentinel only slower than the grace is not down: the next
    // pass gives it the grace again, so that it is heard as soon as
    // it answers in time (issue 22, defect 3).
    let down = |s: &State| {
        let mut d: Vec<String> = s.known_down().iter().cloned().collect();
        d.sort();
        d
    };
    assert_eq!(down(&s), ["192.0.2.11:26379", "192.0.2.13:26379"]);
    // Not waited for again: whatever it was, it stays.
    s.answered(&[answer(
        "192.0.2.13:26379",
        Err(AskError::NotWaited("5 ms".into())),
    )]);
    assert_eq!(down(&s), ["192.0.2.11:26379", "192.0.2.13:26379"]);
    // An answer, even a refusal, proves the link; so does a subscription.
    s.answered(&[
        answer("192.0.2.12:26379", Ok(HashMap::new())),
        answer("192.0.2.13:26379", Err(AskError::Refused("NOAUTH".into()))),
    ]);
    s.link("192.0.2.11:26379", true);
    assert!(s.known_down().is_empty());
}

/// Issue 22, defect 1: a VIP held and announced, then refused by a
/// later pass (or whose release failed), gets no more rounds: after a
/// failover the old holder must not keep pulling clients back.
#[test]
fn a_vip_the_last_pass_refused_is_not_announced() {
    let t0 = Instant::now();
    let v = ip("2001:2::100");
    let mut s = state(3, 5000);
    s.converged(t0, v, Some(target("2001:2::100")), true);
    for i in 0..3 {
        s.sent(t0 + ms(1100 * i), v, true);
    }
    assert!(s.announcing(v));
    s.failed(v);
    assert!(!s.announcing(v), "still announced after a refusal");
    assert!(s.due(t0 + ms(60_000)).is_empty(), "a round still due");
}

#[test]
fn a_wait_is_logged_when_news() {
    let (v, w) = (ip("192.0.2.100"), ip("192.0.2.101"));
    let mut s = state(3, 5000);
    #[rustfmt::skip]
    let rows = [
        (v, Some("no host address"), true),
        (v, Some("no host address"), false),
        (w, Some("no host address"), true),
        (v, Some("another reason"), true),
        (v, None, false),
        (v, Some("another reason"), true),
    ];
    for (i, (ip, why, news)) in rows.into_iter().enumerate() {
        assert_eq!(s.waiting(ip, why), news, "row {i}");
    }
}

#[test]
fn kernel_events_that_change_the_view_cause_a_pass() {
    let vip = ip("192.0.2.100");
    let own = ip("192.0.2.11");
    let is_vip = |a| a == vip;
    let rows = [
        (Event::AddrRemoved(vip), KernelCue::Pass),
        (Event::AddrAdded(vip), KernelCue::Ignore),
        // The host's own address back after a flush: the master may be
        // local again.
        (Event::AddrAdded(own), KernelCue::Pass),
        (Event::AddrRemoved(own), KernelCue::Pass),
        (Event::Link, KernelCue::PassAndAnnounce),
    ];
    for (e, want) in rows {
        assert_eq!(kernel_cue(&e, is_vip), want, "{e:?}");
    }
}

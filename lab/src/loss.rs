//! Acknowledged writes lost in a partition, Jepsen-style (issue 20): the
//! master's host cut off from the other Redis/Sentinel hosts but not from
//! the client, while an [`IdWriter`] appends unique ids through the VIP;
//! then the heal, and every acknowledged id the final master lacks is a
//! lost write. [`cut_off_peers`] runs one partition for the chaos suite
//! and the benchmark; [`bench`] compares the loss policies in one lab.
//! It measures; the callers judge.

use std::path::Path;
use std::time::Duration;

use crate::acked::{tally, IdWriter, Tally};
use crate::client::Pace;
use crate::monitor::Monitor;
use crate::stats::median;
use crate::suite::catch;
use crate::trace::Trace;
use crate::{now_epoch, wait_until, Lab, LabOptions, Privilege, Programs, NODES, POLL};

/// The client of the measurements: a write every 5 ms, 250 ms
/// timeouts, reconnecting at once.
pub const PACE: Pace = Pace {
    interval: Duration::from_millis(5),
    timeout: Duration::from_millis(250),
};

/// One partition, as the world saw it. Times are from the cut.
pub struct Cut {
    pub old: usize,
    /// The master the majority promoted, which took the VIP.
    pub new: usize,
    /// The master once every node rejoined.
    pub fin: usize,
    /// When the cut-off node stopped holding the VIP (`None`: never).
    pub released: Option<Duration>,
    /// When the new master first held it.
    pub taken: Option<Duration>,
    /// Holders just before the heal.
    pub during: Vec<usize>,
    /// From the heal to one holder, the new master, with the client on it.
    pub settled: Option<Duration>,
    /// The writes from the cut to the end.
    pub tally: Tally,
    /// The monitor's trace, from the cut (t = 0) on.
    pub trace: Trace,
}

/// Cuts the master's host off from its peers (not from the client) for
/// `hold` while a writer appends to `key` through the VIP; heals, waits
/// for one holder and every node back, and reads back what the final
/// master kept. Panics, saying what it saw, if the lab does not get there.
pub fn cut_off_peers(lab: &mut Lab, key: &str, pace: Pace, hold: Duration) -> Cut {
    let old = lab.ready_for_fault();
    let writer = IdWriter::start(lab, key, pace);
    let ok = writer.wait_acks(now_epoch(), 100, Duration::from_secs(10));
    assert!(
        ok,
        "the writer got no 100 writes through: {}",
        writer.last_error()
    );
    // A second of writing before the cut: the rate the loss is judged by.
    std::thread::sleep(Duration::from_secs(1));
    let mon = Monitor::start(lab);
    let cut_at = mon.now();
    let cut_epoch = now_epoch();
    lab.isolate(old);
    let mut new = None;
    let took_over = wait_until(Duration::from_secs(30), POLL, || {
        new = lab.majority_master(old);
        new.is_some_and(|n| lab.holds(n, crate::VIP4))
    });
    let rest = (cut_at + hold).saturating_sub(mon.now());
    std::thread::sleep(rest);
    let during = lab.holders();
    lab.unisolate(old);
    let healed = mon.now();
    let settled = new.filter(|_| took_over).and_then(|new| {
        wait_until(Duration::from_secs(10), Duration::from_millis(20), || {
            lab.holders() == vec![new] && lab.client_vip_mac() == lab.mac(new)
        })
        .then(|| mon.now() - healed)
    });
    // Writes on the new master for a while; the old one is demoted.
    std::thread::sleep(Duration::from_secs(2));
    let trace = mon.stop().slice(cut_at, Duration::MAX);
    let new = new.filter(|_| took_over).unwrap_or_else(|| {
        panic!(
            "the majority's new master did not take the VIP within 30 s of the cut: holders {:?}",
            trace.history()
        )
    });
    let fin = lab.rejoin_all();
    let attempts = writer.stop();
    let kept = lab.ids_on(fin, key);
    let end = attempts.last().map_or(cut_epoch, |a| a.done);
    let released = trace.first_where(Duration::ZERO, |s| !s.holders.contains(&old));
    let taken = trace.first_where(Duration::ZERO, |s| s.holders.contains(&new));
    Cut {
        old,
        new,
        fin,
        released,
        taken,
        during,
        settled,
        tally: tally(&attempts, &kept, cut_epoch, end),
        trace,
    }
}

impl Cut {
    /// One line for a report.
    pub fn line(&self) -> String {
        let s =
            |d: Option<Duration>| d.map_or("never".into(), |d| format!("{:.2} s", d.as_secs_f64()));
        let t = &self.tally;
        format!(
            "n{} -> n{}: {} acknowledged writes lost (of {:.0}/s), longest without an acknowledged write {:.2} s, {} failed; n{} released at {}, n{} took the VIP at {}",
            self.old,
            self.new,
            t.lost.len(),
            t.rate_before,
            t.unavailable,
            t.failed,
            self.old,
            s(self.released),
            self.new,
            s(self.taken)
        )
    }
}

/// The policies the benchmark compares, with their top-level TOML.
const POLICIES: [(&str, &str); 3] = [
    ("keep", "on_sentinel_loss = \"keep\"\n"),
    (
        "release after 1 s",
        "on_sentinel_loss = \"release\"\nsentinel_loss_after_ms = 1000\n",
    ),
    ("fence (300 ms)", "on_sentinel_loss = \"fence\"\n"),
];

/// The benchmark's part: `rounds` partitions per policy, interleaved, in
/// one lab of watchers with `follow_promotion`; a line per partition, then
/// per policy the medians of the acknowledged writes lost and of the
/// longest time without an acknowledged write.
pub fn bench(bin: &Path, programs: Programs, rounds: usize, hold: Duration) {
    let opts = LabOptions {
        reconfig_script: false,
        programs,
        toml_tail: "[announce]\nrefresh_interval_ms = 1000\n".into(),
        ..LabOptions::default()
    };
    let mut lab = Lab::new(bin, opts);
    lab.wait_ready();
    let mut got: Vec<Vec<Cut>> = POLICIES.iter().map(|_| Vec::new()).collect();
    for round in 1..=rounds {
        for (i, (name, top)) in POLICIES.iter().enumerate() {
            let r = catch(|| {
                for n in NODES {
                    lab.rewrite_config(n, top);
                }
                lab.restart_watchers(Privilege::TwoCaps);
                lab.wait_one_holder(Duration::from_secs(15));
                let key = format!("loss:{round}:{i}");
                cut_off_peers(&mut lab, &key, PACE, hold)
            });
            match r {
                Ok(c) => {
                    println!("  {name} #{round}: {}", c.line());
                    got[i].push(c);
                }
                Err(why) => {
                    println!("  {name} #{round}: round failed: {why}");
                    catch(|| {
                        lab.heal();
                        lab.rejoin_all();
                    })
                    .unwrap_or_else(|e| panic!("the lab did not recover: {e}"));
                }
            }
        }
    }
    println!(
        "  medians per policy (partitions of {:.0} s):",
        hold.as_secs_f64()
    );
    let mut medians = Vec::new();
    for ((name, _), cuts) in POLICIES.iter().zip(&got) {
        let mut lost: Vec<f64> = cuts.iter().map(|c| c.tally.lost.len() as f64).collect();
        medians.push(median(&mut lost));
        let mut gap: Vec<f64> = cuts.iter().map(|c| c.tally.unavailable * 1e3).collect();
        let mut rel: Vec<f64> = (cuts.iter())
            .filter_map(|c| Some(c.released?.as_secs_f64() * 1e3))
            .collect();
        println!(
            "  {name:<20} lost acknowledged writes {:>6.0}   longest without an acknowledged write {:>6.0} ms   cut-off holder released after {:>6.0} ms   n={}",
            median(&mut lost),
            median(&mut gap),
            median(&mut rel),
            cuts.len()
        );
    }
    println!(
        "  ratio of lost acknowledged writes, fence/keep: {:.2}, fence/release: {:.2}",
        medians[2] / medians[0],
        medians[2] / medians[1]
    );
}

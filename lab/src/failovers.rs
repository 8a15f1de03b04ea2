//! A series of `kill -9` failovers for the benchmark's outage comparison
//! (issue 11): who moves the VIP ([`Mode`]), one lab per kind of mode
//! with a client through the VIP and a Sentinel-aware client writing
//! through the very same failovers, a line per failover and the summary.
//! It measures and prints; it judges nothing.

use std::path::Path;
use std::time::Duration;

use crate::client::{KeptWriter, Pace, Route};
use crate::outage::{kill_master, Kill};
use crate::stats::{median, summary};
use crate::suite::catch;
use crate::timeline::{first_log, Promotions};
use crate::{wait_until, Capture, Lab, LabOptions, Privilege, Programs, NODES};

/// Who moves the VIP.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Watchers with `follow_promotion = true`.
    Follow,
    /// Watchers with `follow_promotion = false`.
    NoFollow,
    /// Sentinel's `client-reconfig-script`, no watcher.
    Hook,
}

impl Mode {
    pub const ALL: [Mode; 3] = [Mode::Follow, Mode::NoFollow, Mode::Hook];

    pub fn label(self) -> &'static str {
        match self {
            Mode::Follow => "(a) VIP, watch, follow_promotion = true",
            Mode::NoFollow => "(b) VIP, watch, follow_promotion = false",
            Mode::Hook => "(c) VIP, hook mode (no watcher)",
        }
    }

    /// `(a)`, `(b)` or `(c)`.
    pub fn tag(self) -> &'static str {
        &self.label()[..3]
    }

    /// The modes named in `list` (`a,c`).
    pub fn picked(list: &str) -> Vec<Mode> {
        let want = |m: Mode| list.split(',').any(|p| p.trim() == &m.tag()[1..2]);
        Mode::ALL.into_iter().filter(|&m| want(m)).collect()
    }
}

/// One failover of the series.
pub struct Round {
    pub mode: Mode,
    pub kill: Kill,
    /// Whether a watcher logged following the promotion.
    pub followed: bool,
}

/// The VIP client is `writes[0]` of each [`Kill`], the Sentinel-aware one
/// `writes[1]`.
const VIP: usize = 0;
const SENTINEL: usize = 1;

/// `kills` failovers per mode: the watch modes alternate in one lab
/// without Sentinel's script, hook mode runs in a second lab with it.
pub fn run(bin: &Path, programs: Programs, modes: &[Mode], kills: usize, pace: Pace) -> Vec<Round> {
    let mut rounds = Vec::new();
    let watch: Vec<Mode> = modes.iter().copied().filter(|&m| m != Mode::Hook).collect();
    if !watch.is_empty() {
        in_one_lab(bin, programs, &watch, kills, pace, &mut rounds);
    }
    if modes.contains(&Mode::Hook) {
        in_one_lab(bin, programs, &[Mode::Hook], kills, pace, &mut rounds);
    }
    rounds
}

fn in_one_lab(
    bin: &Path,
    programs: Programs,
    modes: &[Mode],
    kills: usize,
    pace: Pace,
    out: &mut Vec<Round>,
) {
    let hook = modes == [Mode::Hook];
    let opts = LabOptions {
        reconfig_script: hook,
        programs,
        ..LabOptions::default()
    };
    let mut lab = Lab::new(bin, opts);
    lab.wait_ready();
    lab.reconcile_all();
    let cap = Capture::start(&lab);
    let promotions = Promotions::start(&lab);
    let vip = KeptWriter::start(&lab, "vip", Route::Vip, pace);
    let sentinel = KeptWriter::start(&lab, "sentinel", Route::Sentinel, pace);
    for round in 1..=kills {
        for &mode in modes {
            let r = catch(|| {
                if !hook {
                    watch_with(&mut lab, mode == Mode::Follow);
                }
                let limit = Duration::from_secs(15);
                kill_master(&mut lab, &[&vip, &sentinel], &cap, &promotions, limit)
            });
            let kill = match r {
                Ok(k) => k,
                Err(why) => {
                    println!("  {} #{round}: round failed: {why}", mode.tag());
                    catch(|| {
                        lab.heal();
                        lab.rejoin_all();
                    })
                    .unwrap_or_else(|e| panic!("the lab did not recover: {e}"));
                    continue;
                }
            };
            let followed = NODES.into_iter().any(|n| {
                first_log(&lab, n, &["the replica answers ROLE master"], kill.at).is_some()
            });
            print_round(mode, round, &kill);
            out.push(Round {
                mode,
                kill,
                followed,
            });
        }
    }
}

/// Node configs with `follow_promotion` set, every watcher restarted (as
/// the systemd unit runs it) and subscribed to the three Sentinels again.
fn watch_with(lab: &mut Lab, follow: bool) {
    let before: Vec<usize> = NODES.map(|n| lab.log_count(n, &["subscribed"])).to_vec();
    for n in NODES {
        lab.rewrite_config(n, &format!("follow_promotion = {follow}\n"));
    }
    lab.restart_watchers(Privilege::TwoCaps);
    for n in NODES {
        let ok = wait_until(Duration::from_secs(10), Duration::from_millis(50), || {
            lab.log_count(n, &["subscribed"]) >= before[n - 1] + 3
        });
        assert!(
            ok,
            "the watcher on n{n} did not subscribe to 3 Sentinels within 10 s"
        );
    }
}

fn print_round(mode: Mode, round: usize, k: &Kill) {
    let t = |x: Option<f64>| x.map_or("--".into(), |x| format!("{:.1}", k.ms(x)));
    let w = |i: usize| {
        let wr = &k.writes[i];
        match &wr.why {
            Some(why) => format!("none ({why})"),
            None if wr.lost > 0 => format!("{} ({} lost before)", t(wr.first_kept), wr.lost),
            None => t(wr.first_kept),
        }
    };
    println!(
        "  {} #{round} n{}->n{}: VIP client {} ms, Sentinel client {} ms; ROLE master {}, +promoted-slave {}, GARP {} ms after the kill",
        mode.tag(),
        k.old,
        k.new,
        w(VIP),
        w(SENTINEL),
        t(k.role_master.map(|r| r.1)),
        t(k.promoted_event),
        t(k.garp)
    );
}

/// Medians per mode, the ratios to the Sentinel-aware client, promotion
/// to first gratuitous ARP, and what was checked.
pub fn report(modes: &[Mode], rounds: &[Round]) {
    let kept = |k: &Kill, w: usize| k.writes[w].first_kept.map(|t| k.ms(t));
    let of = |m: Mode| rounds.iter().filter(move |r| r.mode == m).map(|r| &r.kill);
    let target = |m: Mode, t: &'static str| if m == Mode::Follow { t } else { "" };
    println!("  kill -> first acknowledged write on the new master:");
    let mut medians = Vec::new();
    for &m in modes {
        let mut v: Vec<f64> = of(m).filter_map(|k| kept(k, VIP)).collect();
        medians.push((m, summary(m.label(), &mut v)));
    }
    let mut d: Vec<f64> = rounds
        .iter()
        .filter_map(|r| kept(&r.kill, SENTINEL))
        .collect();
    let dm = summary("(d) Sentinel-aware, redis-rs (every failover)", &mut d);
    for (m, med) in medians {
        let mut paired: Vec<f64> = of(m)
            .filter_map(|k| Some(kept(k, VIP)? / kept(k, SENTINEL)?))
            .collect();
        println!(
            "  ratio {}/(d): {:.2} of the medians, {:.2} median of per-failover ratios{}",
            m.tag(),
            med / dm,
            median(&mut paired),
            target(m, " (target <= 0.70)")
        );
    }
    println!("  promotion (the replica first answering ROLE master, polled every 1 ms) -> first gratuitous ARP at the client:");
    for &m in modes {
        let mut v: Vec<f64> = of(m)
            .filter_map(|k| Some((k.garp? - k.role_master?.1) * 1e3))
            .collect();
        summary(
            &format!("{}{}", m.label(), target(m, " (target <= 5)")),
            &mut v,
        );
    }
    println!("  promotion (ROLE master) -> first acknowledged write through the VIP:");
    for &m in modes {
        let mut v: Vec<f64> = of(m)
            .filter_map(|k| Some((k.writes[VIP].first_kept? - k.role_master?.1) * 1e3))
            .collect();
        summary(m.label(), &mut v);
    }
    let all = || rounds.iter().map(|r| &r.kill);
    let mut role: Vec<f64> = all().filter_map(|k| Some(k.ms(k.role_master?.1))).collect();
    let mut event: Vec<f64> = all()
        .filter_map(|k| Some((k.promoted_event? - k.role_master?.1) * 1e3))
        .collect();
    println!("  for reference, every failover above:");
    summary("kill -> ROLE master", &mut role);
    summary("ROLE master -> +promoted-slave (Sentinel's)", &mut event);
    let writes = || all().flat_map(|k| &k.writes);
    let followed = modes
        .iter()
        .filter(|&&m| m != Mode::Hook)
        .map(|&m| {
            let yes = rounds.iter().filter(|r| r.mode == m && r.followed).count();
            format!(
                "; watchers logged following the promotion in {yes}/{} {} rounds",
                of(m).count(),
                m.tag()
            )
        })
        .collect::<String>();
    println!(
        "  acknowledged writes lost: {}; client-failovers without a kept write: {}{followed}",
        writes().map(|w| w.lost).sum::<usize>(),
        writes().filter(|w| w.why.is_some()).count(),
    );
}

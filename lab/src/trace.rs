//! What a [`crate::monitor::Monitor`] saw, and the windows a failover is
//! judged by: time with two holders, with no holder, until one holder for
//! good, until the client points at it for good. Pure: no lab access, so
//! the arithmetic is unit-tested.

use std::time::Duration;

use crate::NODES;

/// One observation.
#[derive(Clone, Debug, PartialEq)]
pub struct Sample {
    /// Time since the monitor started.
    pub at: Duration,
    /// Nodes holding the IPv4 VIP on eth0, ascending.
    pub holders: Vec<usize>,
    /// Each node's eth0 MAC (index n-1); "" while it has no eth0. Sampled
    /// because re-creating an interface changes it.
    pub(crate) macs: Vec<String>,
    /// The MAC the client's neighbour entry for the VIP carries; `None`
    /// without an entry or without an address in it (INCOMPLETE, FAILED).
    pub(crate) neigh: Option<String>,
}

impl Sample {
    /// The node the client's neighbour entry points at, if any.
    pub fn neigh_node(&self) -> Option<usize> {
        let mac = self.neigh.as_deref()?;
        NODES.into_iter().find(|&n| self.macs[n - 1] == mac)
    }
}

/// The windows a trace yields for an expected final holder.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Windows {
    /// Total time during which two or more nodes held the VIP.
    pub two_holders: Duration,
    /// Total time during which no node held it.
    pub no_holder: Duration,
    /// From the start until exactly the expected node held it for good
    /// (until the end of the trace); `None` if it did not at the end.
    pub converge: Option<Duration>,
    /// From the start until the client's entry pointed at the expected
    /// node for good; `None` if it did not at the end.
    pub client: Option<Duration>,
    /// Samples taken, and the largest gap between two: the resolution of
    /// the numbers above.
    pub samples: usize,
    pub max_gap: Duration,
}

impl Windows {
    /// Several runs summed up: total time with two or no holders, the
    /// slowest convergence (`None` if any did not converge).
    pub fn worst(all: &[Windows]) -> Windows {
        let max = |f: fn(&Windows) -> Option<Duration>| {
            all.iter()
                .map(f)
                .try_fold(Duration::ZERO, |acc, v| v.map(|v| acc.max(v)))
        };
        Windows {
            two_holders: all.iter().map(|w| w.two_holders).sum(),
            no_holder: all.iter().map(|w| w.no_holder).sum(),
            converge: max(|w| w.converge),
            client: max(|w| w.client),
            samples: all.iter().map(|w| w.samples).sum(),
            max_gap: all.iter().map(|w| w.max_gap).max().unwrap_or_default(),
        }
    }
}

/// Everything a monitor saw.
#[derive(Clone, Debug, Default)]
pub struct Trace {
    pub(crate) samples: Vec<Sample>,
    /// Time of the last sample.
    pub end: Duration,
}

impl Trace {
    /// Each sample with how long its state lasted (until the next sample).
    fn spans(&self) -> impl Iterator<Item = (&Sample, Duration)> {
        self.samples.iter().enumerate().map(|(i, s)| {
            let next = self.samples.get(i + 1).map_or(self.end, |n| n.at);
            (s, next.saturating_sub(s.at))
        })
    }

    /// Total time during which `f` held.
    fn time_where(&self, f: impl Fn(&Sample) -> bool) -> Duration {
        self.spans().filter(|(s, _)| f(s)).map(|(_, d)| d).sum()
    }

    /// Start of the final stretch during which `f` held up to the end;
    /// `None` if it does not hold at the end.
    fn settled_from(&self, f: impl Fn(&Sample) -> bool) -> Option<Duration> {
        let mut from = None;
        for s in &self.samples {
            from = if f(s) { from.or(Some(s.at)) } else { None };
        }
        from
    }

    /// First time at or after `after` at which `f` held.
    pub fn first_where(&self, after: Duration, f: impl Fn(&Sample) -> bool) -> Option<Duration> {
        self.samples
            .iter()
            .find(|s| s.at >= after && f(s))
            .map(|s| s.at)
    }

    /// Samples at or after `after` for which `f` fails (for messages).
    pub fn violations(&self, after: Duration, f: impl Fn(&Sample) -> bool) -> Vec<&Sample> {
        self.samples
            .iter()
            .filter(|s| s.at >= after && !f(s))
            .collect()
    }

    /// How often the set of holders changed.
    pub fn holder_changes(&self) -> usize {
        self.samples
            .windows(2)
            .filter(|w| w[0].holders != w[1].holders)
            .count()
    }

    /// The holder sets in order, without repeats, with the time each began
    /// in seconds: a compact history for messages.
    pub fn history(&self) -> Vec<(f64, Vec<usize>)> {
        let mut h: Vec<(f64, Vec<usize>)> = Vec::new();
        for s in &self.samples {
            if h.last().is_none_or(|(_, last)| *last != s.holders) {
                h.push((s.at.as_secs_f64(), s.holders.clone()));
            }
        }
        h
    }

    /// The part of the trace from `from` to `to`, with times counted from
    /// `from`; the state at `from` (the sample before it) opens it.
    pub fn slice(&self, from: Duration, to: Duration) -> Trace {
        let first = self.samples.iter().rposition(|s| s.at <= from).unwrap_or(0);
        let samples = self.samples[first..]
            .iter()
            .enumerate()
            .filter(|(i, s)| *i == 0 || (s.at > from && s.at <= to))
            .map(|(_, s)| Sample {
                at: s.at.saturating_sub(from),
                ..s.clone()
            })
            .collect();
        Trace {
            samples,
            end: to.min(self.end).saturating_sub(from),
        }
    }

    /// The windows, judged against `holder` as the rightful final holder.
    pub fn windows(&self, holder: usize) -> Windows {
        let max_gap = self
            .samples
            .windows(2)
            .map(|w| w[1].at.saturating_sub(w[0].at))
            .max()
            .unwrap_or_default();
        Windows {
            two_holders: self.time_where(|s| s.holders.len() >= 2),
            no_holder: self.time_where(|s| s.holders.is_empty()),
            converge: self.settled_from(|s| s.holders == [holder]),
            client: self.settled_from(|s| s.neigh_node() == Some(holder)),
            samples: self.samples.len(),
            max_gap,
        }
    }

    /// A series of failovers, each judged on its own stretch of the trace:
    /// failover i began at `failovers[i].0` with `failovers[i].1` as master;
    /// its stretch ends where the next begins, and its rightful holder is
    /// the master the next one started from (`last` for the final one).
    pub fn per_failover(&self, failovers: &[(Duration, usize)], last: usize) -> Vec<Windows> {
        failovers
            .iter()
            .enumerate()
            .map(|(i, &(from, _))| {
                let (to, rightful) = failovers.get(i + 1).copied().unwrap_or((self.end, last));
                self.slice(from, to).windows(rightful)
            })
            .collect()
    }

    /// The trace ends with exactly `holder` holding the VIP and the client
    /// pointing at it (`w`: this trace's windows for `holder`).
    pub fn assert_settled(&self, w: &Windows, holder: usize) {
        assert!(
            w.converge.is_some(),
            "the VIP did not end on n{holder} alone; holders over time (s): {:?}",
            self.history()
        );
        assert!(
            w.client.is_some(),
            "the client's entry for the VIP did not end on n{holder}: last sample {:?}",
            self.samples.last()
        );
    }

    /// Not a single sample with another holder than `m`, nor with the
    /// client's entry elsewhere.
    pub fn assert_never_moved(&self, m: usize) {
        let off = self.violations(Duration::ZERO, |s| s.holders == [m]);
        assert!(
            off.is_empty(),
            "the VIP left n{m} alone in {} sample(s); holders over time (s): {:?}",
            off.len(),
            self.history()
        );
        let away = self.violations(Duration::ZERO, |s| s.neigh_node() == Some(m));
        assert!(
            away.is_empty(),
            "the client's entry left n{m} in {} sample(s), first {:?}",
            away.len(),
            away.first()
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(s: f64) -> Duration {
        Duration::from_secs_f64(s)
    }

    fn s(t: f64, holders: &[usize], neigh: Option<&str>) -> Sample {
        Sample {
            at: secs(t),
            holders: holders.to_vec(),
            macs: vec!["m1".into(), "m2".into(), "m3".into()],
            neigh: neigh.map(str::to_string),
        }
    }

    fn trace() -> Trace {
        Trace {
            samples: vec![
                s(0.0, &[1], Some("m1")),
                s(1.0, &[], Some("m1")),
                s(1.5, &[2], Some("m1")),
                s(2.0, &[1, 2], Some("m2")),
                s(2.5, &[2], Some("m2")),
                s(3.0, &[2], Some("m2")),
            ],
            end: secs(3.0),
        }
    }

    #[test]
    fn windows_from_a_failover() {
        let t = trace();
        let w = t.windows(2);
        assert_eq!(w.no_holder, secs(0.5));
        assert_eq!(w.two_holders, secs(0.5));
        assert_eq!(w.converge, Some(secs(2.5)));
        assert_eq!(w.client, Some(secs(2.0)));
        assert_eq!(t.holder_changes(), 4);
        assert_eq!(w.max_gap, secs(1.0));
        assert_eq!(t.windows(1).converge, None);
        assert_eq!(t.history().len(), 5);

        let part = t.slice(secs(1.2), secs(2.6));
        assert_eq!(part.samples[0].holders, Vec::<usize>::new());
        assert_eq!(part.end, secs(1.4));
        let pw = part.windows(2);
        assert_eq!(pw.converge, Some(secs(1.3)));
        let both = Windows::worst(&[w.clone(), pw]);
        assert_eq!(both.converge, Some(secs(2.5)));
        assert_eq!(Windows::worst(&[w, t.windows(1)]).converge, None);
    }

    #[test]
    fn each_failover_judged_on_its_stretch() {
        // n1 -> n2 from 0.8 s, then n2 -> ... from 2.2 s, ending on n2.
        let t = trace();
        let per = t.per_failover(&[(secs(0.8), 1), (secs(2.2), 2)], 2);
        assert_eq!(per.len(), 2);
        // First stretch, 0.8..2.2, judged against n2 (where the second began).
        assert_eq!(per[0].no_holder, secs(0.5));
        assert_eq!(per[0].converge, None, "two holders at its end");
        // Second stretch, 2.2..3.0.
        assert_eq!(per[1].converge, Some(secs(0.3)));
        assert_eq!(per[1].two_holders, secs(0.3));
    }
}

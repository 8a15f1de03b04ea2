//! What the Sentinels' answers say about a master, combined: pure, no
//! I/O. The rule is Sentinel's own: the highest config-epoch wins.

use std::collections::HashMap;
use std::fmt;

use super::reply::ReplyError;
use crate::hookargs::Host;

/// One Sentinel's view of one master.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Report {
    pub host: Host,
    pub port: u16,
    pub epoch: u64,
}

/// Why a Sentinel gave no usable answer.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AskError {
    /// The connection failed (refused, dropped, timed out): only then is
    /// this Sentinel's pub/sub subscription suspect too.
    #[error("{0}")]
    Unreachable(String),
    /// An answer over a working connection that is not a Sentinel's (a
    /// wrong password, a data Redis listed by mistake).
    #[error("{0}")]
    Refused(String),
    #[error("unexpected reply: {0}")]
    Reply(#[from] ReplyError),
}

/// One Sentinel's answer for all the names asked: per name, its report, or
/// `None` when that Sentinel does not monitor the name.
#[derive(Clone, Debug)]
pub struct Answer {
    pub sentinel: String,
    pub reply: Result<HashMap<String, Option<Report>>, AskError>,
}

impl Answer {
    pub fn unreachable(&self) -> bool {
        matches!(self.reply, Err(AskError::Unreachable(_)))
    }

    /// This Sentinel's report on `name`, if it gave one.
    pub fn report(&self, name: &str) -> Option<&Report> {
        self.reply.as_ref().ok()?.get(name)?.as_ref()
    }
}

/// What the answers say about one master.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verdict {
    /// The report with the highest config-epoch: Sentinel is
    /// last-failover-wins, and a newer epoch always supersedes older ones.
    pub master: Option<Report>,
    /// Sentinels that answered and know the master.
    pub answered: usize,
    pub total: usize,
}

impl Verdict {
    /// More than half of the configured Sentinels answered (or none is
    /// configured, so none can be missing).
    pub fn majority(&self) -> bool {
        self.total == 0 || self.answered > self.total / 2
    }
}

/// For logs and replies: `192.0.2.12:6379 epoch 4 (3/3 answered)`.
impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.master {
            Some(r) => write!(f, "{}:{} epoch {} ", r.host, r.port, r.epoch)?,
            None => f.write_str("no master known ")?,
        }
        write!(f, "({}/{} answered)", self.answered, self.total)
    }
}

/// Pure: combines the answers for `name`. Ties in epoch (an observer that
/// caught up and the leader) go to the address most Sentinels report.
pub fn verdict(answers: &[Answer], name: &str) -> Verdict {
    let reports: Vec<&Report> = answers.iter().filter_map(|a| a.report(name)).collect();
    let count = |r: &Report| {
        reports
            .iter()
            .filter(|o| o.host == r.host && o.port == r.port)
            .count()
    };
    let master = reports
        .iter()
        .max_by(|a, b| {
            (a.epoch, count(a), b.host.to_string()).cmp(&(b.epoch, count(b), a.host.to_string()))
        })
        .map(|r| (*r).clone());
    Verdict {
        master,
        answered: reports.len(),
        total: answers.len(),
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn rep(h: &str, epoch: u64) -> Option<Report> {
        Some(Report {
            host: Host::parse(h).unwrap(),
            port: 6379,
            epoch,
        })
    }

    pub(crate) fn ans(name: &str, r: Option<Report>) -> Answer {
        Answer {
            sentinel: "s".into(),
            reply: Ok([(name.to_string(), r)].into()),
        }
    }

    #[test]
    fn highest_epoch_wins() {
        let a = vec![
            ans("m", rep("192.0.2.11", 3)),
            ans("m", rep("192.0.2.12", 4)),
            Answer {
                sentinel: "down".into(),
                reply: Err(AskError::Unreachable("refused".into())),
            },
        ];
        let v = verdict(&a, "m");
        assert_eq!(v.master, rep("192.0.2.12", 4));
        assert_eq!((v.answered, v.total), (2, 3));
        assert!(v.majority());
        assert_eq!(v.to_string(), "192.0.2.12:6379 epoch 4 (2/3 answered)");
        assert!(a[2].unreachable() && !a[0].unreachable());
        let v = verdict(&a, "other");
        assert_eq!(v.master, None);
        assert!(!v.majority());
        assert_eq!(v.to_string(), "no master known (0/3 answered)");
    }

    #[test]
    fn epoch_tie_goes_to_most_reported() {
        let a = vec![
            ans("m", rep("192.0.2.13", 5)),
            ans("m", rep("192.0.2.12", 5)),
            ans("m", rep("192.0.2.12", 5)),
        ];
        assert_eq!(verdict(&a, "m").master, rep("192.0.2.12", 5));
    }

    #[test]
    fn no_sentinels_is_a_majority_of_none() {
        let v = verdict(&[], "m");
        assert!(v.majority() && v.master.is_none());
    }
}

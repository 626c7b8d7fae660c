//! Refused calls in the audit log without letting a caller flood it.
//!
//! Every refused call (Denied, InvalidArgument, NotLoggedIn, ...) is an
//! audit event, and each used to be a line: 20,000 refused calls in a
//! second and a half made 18,000 lines, and two such callers slowed
//! everyone's Verify twelvefold. Now the first `BURST` refusals of a
//! caller (by uid) in a minute are logged as they are, the rest are
//! counted and logged as one summary line a minute, as key refusals are
//! (S7). Failures of the daemon itself (`Failed`) are always logged.

use std::collections::HashMap;

/// Refusals of one caller logged verbatim per minute.
pub const BURST: u32 = 20;
/// Callers tracked at once; past that, refusals of callers not yet seen
/// this minute are counted under one summary (uid `OTHERS`).
pub const MAX_CALLERS: usize = 4096;
/// The uid the overflow is summarised under.
pub const OTHERS: u32 = u32::MAX;

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct Count {
    logged: u32,
    suppressed: u64,
}

/// Per-caller counts for the current minute; the daemon takes the
/// summaries once a minute, which starts the next.
#[derive(Debug, Default)]
pub struct RefusalLog {
    counts: HashMap<u32, Count>,
}

impl RefusalLog {
    pub fn new() -> RefusalLog {
        RefusalLog::default()
    }

    /// Whether this refusal by `uid` is logged as a line of its own.
    pub fn admit(&mut self, uid: u32) -> bool {
        let key = if self.counts.contains_key(&uid) || self.counts.len() < MAX_CALLERS {
            uid
        } else {
            OTHERS
        };
        let count = self.counts.entry(key).or_default();
        if key != OTHERS && count.logged < BURST {
            count.logged += 1;
            true
        } else {
            count.suppressed += 1;
            false
        }
    }

    /// (uid, refusals not logged) for every caller that had some, and a
    /// fresh minute for everyone.
    pub fn take_summaries(&mut self) -> Vec<(u32, u64)> {
        let mut out: Vec<(u32, u64)> = self
            .counts
            .drain()
            .filter(|(_, c)| c.suppressed > 0)
            .map(|(uid, c)| (uid, c.suppressed))
            .collect();
        out.sort_unstable();
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_is_logged_then_counted_and_summarised_once() {
        let mut log = RefusalLog::new();
        let logged = (0..500).filter(|_| log.admit(1000)).count();
        assert_eq!(logged, BURST as usize);
        // Another caller has a burst of its own.
        assert!(log.admit(1001));
        assert_eq!(log.take_summaries(), vec![(1000, 500 - u64::from(BURST))]);
        // A new minute: verbatim again, and nothing left to summarise.
        assert!(log.admit(1000));
        assert_eq!(log.take_summaries(), vec![]);
    }

    #[test]
    fn many_callers_stay_bounded_and_none_is_lost() {
        let mut log = RefusalLog::new();
        for uid in 0..(MAX_CALLERS as u32 + 100) {
            log.admit(uid);
        }
        assert!(log.counts.len() <= MAX_CALLERS + 1);
        // Callers seen before the table filled keep their own counts.
        for _ in 0..BURST {
            log.admit(5);
        }
        let summaries = log.take_summaries();
        assert_eq!(summaries, vec![(5, 1), (OTHERS, 100)]);
    }
}

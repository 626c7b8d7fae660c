//! Throttling of invalid attempts per (caller uid, remote host), S7.
//! Only refusals are delayed, never answers to valid keys, so an attacker
//! flooding from one address cannot lock out a key's owner. The first
//! failures of a source are logged one by one; after that they are counted
//! and logged as one summary line a minute.

use crate::config::ThrottleConfig;
use std::collections::HashMap;

/// Longest remote host kept as part of a source key.
const MAX_RHOST: usize = 128;
/// Sources remembered at most; the quietest are forgotten first.
const MAX_SOURCES: usize = 10_000;
const BASE_DELAY_MS: u64 = 250;

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Source {
    pub uid: u32,
    pub rhost: String,
}

impl Source {
    pub fn new(uid: u32, rhost: &str) -> Source {
        Source {
            uid,
            rhost: rhost.chars().take(MAX_RHOST).collect(),
        }
    }
}

#[derive(Debug, Default)]
struct State {
    failures: u32,
    last_failure: i64,
    /// Failures not logged one by one since the last summary.
    unlogged: u32,
}

/// What to do with one refusal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    pub delay_ms: u64,
    /// Log this refusal on its own line; otherwise it goes into a summary.
    pub log_line: bool,
}

/// A summary line: `count` refusals from `source` were not logged one by one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Summary {
    pub source: Source,
    pub count: u32,
    pub failures: u32,
}

pub struct Throttle {
    cfg: ThrottleConfig,
    sources: HashMap<Source, State>,
}

impl Throttle {
    pub fn new(cfg: ThrottleConfig) -> Throttle {
        Throttle {
            cfg,
            sources: HashMap::new(),
        }
    }

    /// Records a refusal at `now` (seconds) and says how long to delay it.
    pub fn failure(&mut self, source: Source, now: i64) -> Decision {
        if self.sources.len() >= MAX_SOURCES && !self.sources.contains_key(&source) {
            self.forget_quietest();
        }
        let forget = self.cfg.forget_after_secs as i64;
        let state = self.sources.entry(source).or_default();
        if now - state.last_failure >= forget {
            state.failures = 0;
        }
        state.failures = state.failures.saturating_add(1);
        state.last_failure = now;
        let over = state.failures.saturating_sub(self.cfg.free_failures);
        let log_line = over == 0;
        if !log_line {
            state.unlogged += 1;
        }
        let delay_ms = if over == 0 {
            0
        } else {
            BASE_DELAY_MS
                .saturating_mul(1u64 << (over - 1).min(20))
                .min(self.cfg.max_delay_ms)
        };
        Decision { delay_ms, log_line }
    }

    /// Summaries of the refusals not logged since the last call, and the
    /// sources that have been quiet long enough are forgotten.
    pub fn summaries(&mut self, now: i64) -> Vec<Summary> {
        let forget = self.cfg.forget_after_secs as i64;
        let mut out = Vec::new();
        for (source, state) in self.sources.iter_mut() {
            if state.unlogged > 0 {
                out.push(Summary {
                    source: source.clone(),
                    count: state.unlogged,
                    failures: state.failures,
                });
                state.unlogged = 0;
            }
        }
        self.sources.retain(|_, s| now - s.last_failure < forget);
        out
    }

    /// Sources whose refusals are delayed now: past their free failures,
    /// and not quiet long enough to start afresh.
    pub fn delayed_sources(&self, now: i64) -> usize {
        let forget = self.cfg.forget_after_secs as i64;
        self.sources
            .values()
            .filter(|s| s.failures > self.cfg.free_failures && now - s.last_failure < forget)
            .count()
    }

    fn forget_quietest(&mut self) {
        if let Some(oldest) = self
            .sources
            .iter()
            .min_by_key(|(_, s)| s.last_failure)
            .map(|(k, _)| k.clone())
        {
            self.sources.remove(&oldest);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn throttle() -> Throttle {
        Throttle::new(ThrottleConfig {
            free_failures: 3,
            max_delay_ms: 2000,
            forget_after_secs: 600,
        })
    }

    #[test]
    fn free_failures_then_growing_delay_capped() {
        let mut t = throttle();
        let src = || Source::new(0, "10.0.0.9");
        let delays: Vec<u64> = (0..8).map(|_| t.failure(src(), 100).delay_ms).collect();
        assert_eq!(delays, vec![0, 0, 0, 250, 500, 1000, 2000, 2000]);
    }

    #[test]
    fn sources_are_separate() {
        let mut t = throttle();
        for _ in 0..10 {
            t.failure(Source::new(0, "10.0.0.9"), 100);
        }
        assert_eq!(t.failure(Source::new(0, "10.0.0.8"), 100).delay_ms, 0);
        assert_eq!(t.failure(Source::new(33, "10.0.0.9"), 100).delay_ms, 0);
    }

    /// Delayed from the first failure past the free ones, until the
    /// source has been quiet for forget_after exactly.
    #[test]
    fn a_source_counts_as_throttled_only_past_its_free_failures_and_while_remembered() {
        let mut t = throttle();
        for _ in 0..3 {
            t.failure(Source::new(0, "h"), 100);
        }
        assert_eq!(
            t.delayed_sources(100),
            0,
            "free failures are not throttling"
        );
        t.failure(Source::new(0, "h"), 100);
        assert_eq!(t.delayed_sources(100), 1);
        assert_eq!(t.delayed_sources(100 + 599), 1);
        assert_eq!(
            t.delayed_sources(100 + 600),
            0,
            "forgotten after forget_after"
        );
    }

    #[test]
    fn quiet_sources_start_afresh() {
        let mut t = throttle();
        for _ in 0..10 {
            t.failure(Source::new(0, "h"), 100);
        }
        assert_eq!(t.failure(Source::new(0, "h"), 800).delay_ms, 0);
    }

    #[test]
    fn excess_failures_are_summarised_once() {
        let mut t = throttle();
        let logged = (0..10)
            .filter(|_| t.failure(Source::new(0, "h"), 100).log_line)
            .count();
        assert_eq!(logged, 3);
        let s = t.summaries(160);
        assert_eq!(s.len(), 1);
        assert_eq!((s[0].count, s[0].failures), (7, 10));
        assert!(t.summaries(220).is_empty());
        // Forgotten after the quiet period.
        t.summaries(1000);
        assert!(t.sources.is_empty());
    }

    /// An attacker's delay is not reset by other sources failing, nor by
    /// the table filling up: the quietest sources go first, not the busiest.
    #[test]
    fn a_throttled_source_stays_throttled_while_others_come_and_go() {
        let mut t = throttle();
        let attacker = || Source::new(1000, "10.6.6.6");
        for _ in 0..8 {
            t.failure(attacker(), 100);
        }
        for i in 0..500 {
            t.failure(Source::new(0, &format!("other{i}")), 101);
        }
        assert_eq!(t.failure(attacker(), 102).delay_ms, 2000);
        // A full table: newcomers push out the quiet, never the attacker
        // who keeps failing.
        for i in 0..(MAX_SOURCES + 200) {
            t.failure(Source::new(0, &format!("crowd{i}")), 103);
            if i % 1000 == 0 {
                t.failure(attacker(), 104);
            }
        }
        assert_eq!(t.sources.len(), MAX_SOURCES);
        assert_eq!(t.failure(attacker(), 105).delay_ms, 2000);
    }

    #[test]
    fn the_minute_summary_does_not_reset_throttling() {
        let mut t = throttle();
        let start = 1_700_000_000;
        for _ in 0..8 {
            t.failure(Source::new(0, "h"), start);
        }
        assert_eq!(t.summaries(start + 60).len(), 1);
        assert_eq!(t.failure(Source::new(0, "h"), start + 70).delay_ms, 2000);
        assert_eq!(t.summaries(start + 120)[0].count, 1);
        assert_eq!(t.failure(Source::new(0, "h"), start + 130).delay_ms, 2000);
        // Quiet for exactly the forget time: forgotten at that summary.
        t.summaries(start + 130 + 599);
        assert_eq!(t.sources.len(), 1);
        t.summaries(start + 130 + 600);
        assert!(t.sources.is_empty());
    }

    #[test]
    fn memory_is_bounded() {
        let mut t = throttle();
        for i in 0..(MAX_SOURCES + 50) {
            t.failure(Source::new(0, &format!("h{i}")), i as i64);
        }
        assert!(t.sources.len() <= MAX_SOURCES);
        let long = "x".repeat(10_000);
        assert_eq!(Source::new(0, &long).rhost.len(), MAX_RHOST);
    }
}

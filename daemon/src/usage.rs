//! Last-used times and use history kept in memory and written in batches,
//! so that a successful Verify never waits for a disk write: each key's
//! record is written at most once a minute, and everything pending is
//! written on shutdown. The buffer keeps the distinct (service, remote
//! host) pairs each key was used from meanwhile (at most [`USE_HISTORY`]
//! a key, the newest first), for its use history; the newest of them is
//! its last use.

use crate::store::{KeyUse, UsePair, USE_HISTORY};
use std::collections::HashMap;
use std::sync::Mutex;

#[derive(Default)]
pub struct UsageBuffer {
    pending: Mutex<Pending>,
}

/// What a flush takes, and puts back if its write fails.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Pending {
    /// The pairs each key was used from, newest last use first.
    pub pairs: HashMap<String, Vec<UsePair>>,
}

/// A key's last use: the newest of its pairs.
fn last_use(pairs: &[UsePair]) -> Option<KeyUse> {
    pairs.first().map(|p| KeyUse {
        key_id: p.key_id.clone(),
        at: p.last,
        service: p.service.clone(),
        rhost: p.rhost.clone(),
        host: p.host.clone(),
    })
}

impl Pending {
    /// Each key's last use.
    pub fn last_uses(&self) -> Vec<KeyUse> {
        self.pairs.values().filter_map(|p| last_use(p)).collect()
    }

    /// Merges `p` in; the pair touched last goes first among pairs last
    /// used in the same second (the sort keeps their order).
    fn add_pair(&mut self, p: UsePair) {
        let pairs = match self.pairs.get_mut(&p.key_id) {
            Some(pairs) => pairs,
            None => self.pairs.entry(p.key_id.clone()).or_default(),
        };
        let merged = match pairs
            .iter()
            .position(|q| q.service == p.service && q.rhost == p.rhost)
        {
            Some(i) => {
                let mut q = pairs.remove(i);
                q.first = q.first.min(p.first);
                if p.last >= q.last {
                    q.last = p.last;
                    q.host = p.host;
                }
                q
            }
            None => p,
        };
        pairs.insert(0, merged);
        pairs.sort_by_key(|p| std::cmp::Reverse(p.last));
        pairs.truncate(USE_HISTORY);
    }
}

impl UsageBuffer {
    pub fn record(&self, u: KeyUse) {
        self.lock().add_pair(UsePair {
            key_id: u.key_id,
            service: u.service,
            rhost: u.rhost,
            first: u.at,
            last: u.at,
            host: u.host,
        });
    }

    /// The newest use not yet written, to show fresh data in listings.
    pub fn pending(&self, key_id: &str) -> Option<KeyUse> {
        last_use(self.lock().pairs.get(key_id)?)
    }

    /// The pairs of `key_id` not yet written, newest first.
    pub fn pending_pairs(&self, key_id: &str) -> Vec<UsePair> {
        self.lock().pairs.get(key_id).cloned().unwrap_or_default()
    }

    pub fn take(&self) -> Pending {
        std::mem::take(&mut *self.lock())
    }

    /// Puts back what a failed write took, merged with what arrived
    /// meanwhile, which stays the newer (first) in a tie of seconds.
    pub fn restore(&self, taken: Pending) {
        let mut pending = self.lock();
        let since = std::mem::replace(&mut *pending, taken);
        // Oldest first: each pair added goes before those of its second.
        for p in since.pairs.into_values().flat_map(|p| p.into_iter().rev()) {
            pending.add_pair(p);
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Pending> {
        self.pending.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// A key's use history: the store's pairs merged with those not yet
/// written, newest last use first, at most [`USE_HISTORY`].
pub fn merged_history(stored: Vec<UsePair>, pending: Vec<UsePair>) -> Vec<UsePair> {
    let mut all = Pending::default();
    // Oldest first, the pending after the stored: each pair added goes
    // before those last used in the same second.
    for p in stored.into_iter().rev().chain(pending.into_iter().rev()) {
        all.add_pair(p);
    }
    all.pairs.into_values().next().unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn u(id: &str, at: i64) -> KeyUse {
        from(id, at, "")
    }

    fn from(id: &str, at: i64, rhost: &str) -> KeyUse {
        KeyUse {
            key_id: id.into(),
            at,
            service: "sshd".into(),
            rhost: rhost.into(),
            host: String::new(),
        }
    }

    #[test]
    fn keeps_the_newest_per_key_and_restores_without_overwriting() {
        let b = UsageBuffer::default();
        b.record(u("a", 1));
        b.record(u("a", 2));
        b.record(u("b", 1));
        let taken = b.take();
        let mut uses: Vec<KeyUse> = taken.last_uses();
        uses.sort_by(|x, y| x.key_id.cmp(&y.key_id));
        assert_eq!(uses, vec![u("a", 2), u("b", 1)]);
        b.record(u("a", 3));
        b.restore(taken);
        assert_eq!(b.pending("a"), Some(u("a", 3)));
        assert_eq!(b.pending("b"), Some(u("b", 1)));
        // One pair for a, first seen at 1, last at 3.
        let pairs = b.pending_pairs("a");
        assert_eq!(pairs.len(), 1);
        assert_eq!((pairs[0].first, pairs[0].last), (1, 3));
    }

    #[test]
    fn each_distinct_pair_is_kept_with_its_first_and_last_use_newest_ten() {
        let b = UsageBuffer::default();
        b.record(from("k", 5, "10.0.0.1"));
        b.record(from("k", 7, "10.0.0.2"));
        b.record(from("k", 9, "10.0.0.1"));
        let pairs = b.pending_pairs("k");
        let seen: Vec<(&str, i64, i64)> = pairs
            .iter()
            .map(|p| (p.rhost.as_str(), p.first, p.last))
            .collect();
        assert_eq!(seen, vec![("10.0.0.1", 5, 9), ("10.0.0.2", 7, 7)]);
        for i in 0..20 {
            b.record(from("k", 100 + i, &format!("192.0.2.{i}")));
        }
        let pairs = b.pending_pairs("k");
        assert_eq!(pairs.len(), USE_HISTORY);
        assert_eq!(pairs[0].rhost, "192.0.2.19");
        assert_eq!(pairs[USE_HISTORY - 1].rhost, "192.0.2.10");
        assert!(b.pending_pairs("other").is_empty());
    }

    #[test]
    fn history_merges_what_is_stored_with_what_is_pending() {
        let pair = |rhost: &str, first, last| UsePair {
            key_id: "k".into(),
            service: "sshd".into(),
            rhost: rhost.into(),
            first,
            last,
            host: String::new(),
        };
        let merged = merged_history(
            vec![pair("a", 1, 10), pair("b", 2, 3)],
            vec![pair("b", 20, 30), pair("c", 15, 15)],
        );
        assert_eq!(
            merged,
            vec![pair("b", 2, 30), pair("c", 15, 15), pair("a", 1, 10)]
        );
        assert!(merged_history(vec![], vec![]).is_empty());
        // Pairs last used in the same second keep the order they came in.
        let same = merged_history(
            vec![pair("a", 1, 5), pair("b", 1, 5)],
            vec![pair("c", 5, 5), pair("d", 5, 5)],
        );
        let order: Vec<&str> = same.iter().map(|p| p.rhost.as_str()).collect();
        assert_eq!(order, ["c", "d", "a", "b"]);
    }
}

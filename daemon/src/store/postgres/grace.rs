//! `offline_grace`: keys this host verified online within the grace,
//! accepted while the database cannot be reached. Only keys remembered
//! while revocations were being heard (LISTEN) are kept; a revocation
//! heard evicts its key; the whole cache goes when the notification
//! channel connects again (what was sent meanwhile is lost); and nothing
//! is answered past the grace or past a key's own expiry.

use crate::store::KeyRecord;
use std::collections::HashMap;
use std::time::{Duration, Instant};

/// Keys remembered at most; past it the oldest goes.
pub const MAX_REMEMBERED: usize = 10_000;

pub struct GraceCache {
    grace: Duration,
    keys: HashMap<[u8; 32], (KeyRecord, Instant)>,
}

impl GraceCache {
    pub fn new(grace: Duration) -> GraceCache {
        GraceCache {
            grace,
            keys: HashMap::new(),
        }
    }

    /// A key just verified online: remembered while it is active.
    pub fn remember(&mut self, key: &KeyRecord, at: Instant) {
        if self.grace.is_zero() {
            return;
        }
        if key.revoked.is_some() {
            self.keys.remove(&key.hash);
            return;
        }
        if self.keys.len() >= MAX_REMEMBERED && !self.keys.contains_key(&key.hash) {
            let oldest = self
                .keys
                .iter()
                .min_by_key(|(_, (_, t))| *t)
                .map(|(h, _)| *h);
            if let Some(h) = oldest {
                self.keys.remove(&h);
            }
        }
        self.keys.insert(key.hash, (key.clone(), at));
    }

    fn usable(&self, entry: &(KeyRecord, Instant), now: Instant, wall: i64) -> bool {
        let (key, at) = entry;
        now.saturating_duration_since(*at) < self.grace && key.expires.is_none_or(|e| e > wall)
    }

    pub fn by_hash(&self, hash: &[u8; 32], now: Instant, wall: i64) -> Option<KeyRecord> {
        self.keys
            .get(hash)
            .filter(|e| self.usable(e, now, wall))
            .map(|(k, _)| k.clone())
    }

    pub fn by_id(&self, id: &str, now: Instant, wall: i64) -> Option<KeyRecord> {
        self.keys
            .values()
            .find(|(k, _)| k.id == id)
            .filter(|e| self.usable(e, now, wall))
            .map(|(k, _)| k.clone())
    }

    /// A revocation (or deletion) heard.
    pub fn forget_id(&mut self, id: &str) {
        self.keys.retain(|_, (k, _)| k.id != id);
    }

    pub fn clear(&mut self) {
        self.keys.clear();
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    #[cfg(test)]
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::contract_tests::key;
    use crate::store::Revocation;

    const GRACE: Duration = Duration::from_secs(60);

    #[test]
    fn a_key_verified_within_the_grace_is_answered_and_then_not() {
        let t0 = Instant::now();
        let mut c = GraceCache::new(GRACE);
        let k = key("k00000000001", 1000, 0);
        c.remember(&k, t0);
        assert_eq!(
            c.by_hash(&k.hash, t0 + Duration::from_secs(59), 100),
            Some(k.clone())
        );
        assert_eq!(
            c.by_id(&k.id, t0 + Duration::from_secs(59), 100),
            Some(k.clone())
        );
        assert_eq!(c.by_hash(&k.hash, t0 + GRACE, 100), None);
        assert_eq!(c.by_id(&k.id, t0 + GRACE, 100), None);
        assert_eq!(c.by_hash(&[9; 32], t0, 100), None);
    }

    #[test]
    fn never_past_a_keys_expiry() {
        let t0 = Instant::now();
        let mut c = GraceCache::new(GRACE);
        let mut k = key("k00000000001", 1000, 0);
        k.expires = Some(500);
        c.remember(&k, t0);
        assert!(c.by_hash(&k.hash, t0, 499).is_some());
        assert!(c.by_hash(&k.hash, t0, 500).is_none());
        assert!(c.by_id(&k.id, t0, 500).is_none());
    }

    #[test]
    fn revocations_evict_and_nothing_is_kept_without_a_grace() {
        let t0 = Instant::now();
        let mut c = GraceCache::new(GRACE);
        let a = key("k00000000001", 1000, 0);
        let b = key("k00000000002", 1000, 0);
        c.remember(&a, t0);
        c.remember(&b, t0);
        c.forget_id(&a.id);
        assert_eq!(c.by_hash(&a.hash, t0, 0), None);
        assert!(c.by_hash(&b.hash, t0, 0).is_some());
        // Seen revoked online: gone too.
        let mut revoked = b.clone();
        revoked.revoked = Some(Revocation {
            at: 1,
            by_uid: 0,
            reason: "x".into(),
        });
        c.remember(&revoked, t0);
        assert!(c.is_empty());
        c.remember(&a, t0);
        c.clear();
        assert!(c.is_empty());
        let mut none = GraceCache::new(Duration::ZERO);
        none.remember(&a, t0);
        assert!(none.is_empty());
    }

    #[test]
    fn memory_is_bounded_and_the_oldest_goes_first() {
        let t0 = Instant::now();
        let mut c = GraceCache::new(GRACE);
        let first = key("first0000000", 1000, 0);
        c.remember(&first, t0);
        for i in 1..MAX_REMEMBERED {
            let mut k = key("k00000000001", 1000, 0);
            k.hash = [0; 32];
            k.hash[..8].copy_from_slice(&(i as u64).to_le_bytes());
            c.remember(&k, t0 + Duration::from_millis(i as u64));
        }
        assert_eq!(c.len(), MAX_REMEMBERED);
        let last = key("last00000000", 1000, 0);
        c.remember(&last, t0 + Duration::from_secs(30));
        assert_eq!(c.len(), MAX_REMEMBERED);
        assert!(c.by_hash(&first.hash, t0, 0).is_none());
        assert!(c
            .by_hash(&last.hash, t0 + Duration::from_secs(30), 0)
            .is_some());
        // Remembering a key again does not push another out.
        c.remember(&last, t0 + Duration::from_secs(31));
        assert_eq!(c.len(), MAX_REMEMBERED);
    }
}

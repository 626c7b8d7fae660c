//! Last-used times kept in memory and written in batches, so that a
//! successful Verify never waits for a disk write: each key's record is
//! written at most once a minute, and everything pending is written on
//! shutdown.

use crate::store::KeyUse;
use std::collections::HashMap;
use std::sync::Mutex;

#[derive(Default)]
pub struct UsageBuffer {
    pending: Mutex<HashMap<String, KeyUse>>,
}

impl UsageBuffer {
    pub fn record(&self, u: KeyUse) {
        self.lock().insert(u.key_id.clone(), u);
    }

    /// The newest use not yet written, to show fresh data in listings.
    pub fn pending(&self, key_id: &str) -> Option<KeyUse> {
        self.lock().get(key_id).cloned()
    }

    pub fn take(&self) -> Vec<KeyUse> {
        self.lock().drain().map(|(_, u)| u).collect()
    }

    /// Puts back uses whose write failed, unless newer ones arrived.
    pub fn restore(&self, uses: Vec<KeyUse>) {
        let mut pending = self.lock();
        for u in uses {
            pending.entry(u.key_id.clone()).or_insert(u);
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, KeyUse>> {
        self.pending.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn u(id: &str, at: i64) -> KeyUse {
        KeyUse {
            key_id: id.into(),
            at,
            service: "sshd".into(),
            rhost: String::new(),
            host: String::new(),
        }
    }

    #[test]
    fn keeps_the_newest_per_key_and_restores_without_overwriting() {
        let b = UsageBuffer::default();
        b.record(u("a", 1));
        b.record(u("a", 2));
        b.record(u("b", 1));
        let mut taken = b.take();
        taken.sort_by(|x, y| x.key_id.cmp(&y.key_id));
        assert_eq!(taken, vec![u("a", 2), u("b", 1)]);
        b.record(u("a", 3));
        b.restore(taken);
        assert_eq!(b.pending("a"), Some(u("a", 3)));
        assert_eq!(b.pending("b"), Some(u("b", 1)));
    }
}

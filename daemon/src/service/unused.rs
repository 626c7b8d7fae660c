//! Long-lived keys that nobody used for the site's `revoke_unused` period
//! (never, 30, 90 or 365 days) are revoked with the reason `unused`: a key
//! forgotten in a script or a leaked file stops working on its own, as
//! GitHub does for tokens unused for a year. The daemon looks at every
//! active key once an hour, and at a key's Verify.

use super::{KeyService, Line};
use crate::store::{KeyKind, KeyRecord, Policy};

/// The revocation's reason, and a refused login's.
pub const UNUSED: &str = "unused";

/// How often every key is looked at.
pub const SWEEP_EVERY_SECS: i64 = 3600;

/// Keys revoked in one write.
const BATCH: usize = 500;

/// True when `key` went unused for the policy's period by `now`: counted
/// from its last use anywhere (`last_used`), or its making if never used.
/// Session keys have their own ends and never count.
pub fn unused_for_too_long(
    key: &KeyRecord,
    last_used: Option<i64>,
    policy: &Policy,
    now: i64,
) -> bool {
    if policy.revoke_unused_days == 0 || key.kind != KeyKind::LongLived || key.revoked.is_some() {
        return false;
    }
    let since = last_used.unwrap_or(key.created).max(key.created);
    now.saturating_sub(since) >= i64::from(policy.revoke_unused_days) * 86_400
}

impl KeyService {
    /// At a Verify. A fleet's lookup does not bring the key's uses from
    /// other hosts, so there only the hourly look decides.
    pub(super) fn went_unused(&self, key: &KeyRecord, policy: &Policy, now: i64) -> bool {
        // Most sites never revoke unused keys: no look at the key's last
        // use on their logins.
        policy.revoke_unused_days != 0
            && !self.store.shared()
            && unused_for_too_long(key, self.last_use(key).map(|u| u.at), policy, now)
    }

    /// The hourly look, when an hour has passed since the last one.
    pub fn revoke_unused_if_due(&self) {
        use std::sync::atomic::Ordering;
        let now = self.host.now();
        let last = self.unused_swept.load(Ordering::SeqCst);
        if last != 0 && now.saturating_sub(last) < SWEEP_EVERY_SECS {
            return;
        }
        self.unused_swept.store(now, Ordering::SeqCst);
        self.revoke_unused();
    }

    /// Revokes every active long-lived key unused for the policy's period;
    /// the ids revoked.
    pub fn revoke_unused(&self) -> Vec<String> {
        let Ok(policy) = self.store.policy() else {
            return vec![];
        };
        if policy.revoke_unused_days == 0 {
            return vec![];
        }
        let keys = match self.store.list_active(None) {
            Ok(keys) => keys,
            Err(e) => {
                eprintln!("apikeyd: could not look for unused keys: {e}");
                return vec![];
            }
        };
        let now = self.host.now();
        let ids: Vec<String> = keys
            .iter()
            .filter(|k| unused_for_too_long(k, self.last_use(k).map(|u| u.at), &policy, now))
            .map(|k| k.id.clone())
            .collect();
        ids.chunks(BATCH)
            .flat_map(|batch| self.revoke_unused_keys(batch, &policy))
            .collect()
    }

    /// Revokes `ids` as unused (the daemon's own act), one audit line.
    pub(crate) fn revoke_unused_keys(&self, ids: &[String], policy: &Policy) -> Vec<String> {
        let by = self.revoke_by_daemon(UNUSED);
        let line = Line::new("revoke")
            .field("reason", UNUSED)
            .num("unused_days", i64::from(policy.revoke_unused_days));
        match self.store.revoke(ids, by) {
            Ok(revoked) if revoked.is_empty() => revoked,
            Ok(revoked) => {
                self.audit
                    .log(&line.field("key", &revoked.join(",")).field("outcome", "ok"));
                revoked
            }
            Err(e) => {
                self.audit.log(
                    &line
                        .field("key", &ids.join(","))
                        .field("outcome", "Failed")
                        .field("error", &e.to_string())
                        .warn(),
                );
                vec![]
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::service_tests::world;
    use crate::store::Store;

    const DAY: i64 = 86_400;

    fn policy(days: u32) -> Policy {
        Policy {
            revoke_unused_days: days,
            ..Policy::default()
        }
    }

    #[test]
    fn a_key_counts_as_unused_from_its_last_use_or_its_making() {
        let mut k = crate::store::contract_tests::key("k00000000001", 1000, 100 * DAY);
        let now = 130 * DAY;
        assert!(!unused_for_too_long(&k, None, &policy(0), now));
        assert!(unused_for_too_long(&k, None, &policy(30), now));
        assert!(!unused_for_too_long(&k, None, &policy(30), now - 1));
        assert!(!unused_for_too_long(&k, Some(101 * DAY), &policy(30), now));
        assert!(unused_for_too_long(&k, Some(100 * DAY), &policy(30), now));
        k.kind = KeyKind::Session;
        assert!(!unused_for_too_long(&k, None, &policy(30), now));
    }

    /// With an injected clock: a Verify finds a key that went unused and
    /// refuses it, revoked; the hourly look revokes the rest, audited; a
    /// key used in time lives on; the look runs at most once an hour.
    #[test]
    fn unused_keys_are_revoked_at_verify_and_hourly() {
        use std::sync::atomic::Ordering;
        let w = world();
        w.allow_users();
        let (used, used_info) = w.svc.generate(&w.alice(), "used", "", &[], "").unwrap();
        let (_, idle_info) = w.svc.generate(&w.alice(), "idle", "", &[], "").unwrap();
        let (late, late_info) = w.svc.generate(&w.alice(), "late", "", &[], "").unwrap();
        w.svc
            .set_settings_with(&w.root(), &[("revoke_unused", "30d")])
            .unwrap();
        let start = w.host.now.load(Ordering::SeqCst);
        w.svc.revoke_unused_if_due();
        assert_eq!(w.svc.unused_swept.load(Ordering::SeqCst), start);
        w.advance(20 * DAY);
        assert!(w.verify(used.as_str(), "alice").is_ok());
        w.svc.flush_usage().unwrap();
        w.advance(10 * DAY);
        // A Verify does not wait for the look.
        assert!(w.verify(late.as_str(), "alice").is_err());
        let revoked = |id: &str| w.store.by_id(id).unwrap().unwrap().revoked;
        let r = revoked(&late_info.id).unwrap();
        assert_eq!((r.by_uid, r.reason.as_str()), (0, UNUSED));
        assert!(revoked(&idle_info.id).is_none());
        w.svc.revoke_unused_if_due();
        assert_eq!(revoked(&idle_info.id).unwrap().reason, UNUSED);
        assert!(revoked(&used_info.id).is_none());
        assert!(w.verify(used.as_str(), "alice").is_ok());
        // Not again within the hour.
        let swept = w.svc.unused_swept.load(Ordering::SeqCst);
        w.advance(SWEEP_EVERY_SECS - 1);
        w.svc.revoke_unused_if_due();
        assert_eq!(w.svc.unused_swept.load(Ordering::SeqCst), swept);
        w.advance(1);
        w.svc.revoke_unused_if_due();
        assert_eq!(
            w.svc.unused_swept.load(Ordering::SeqCst),
            swept + SWEEP_EVERY_SECS
        );
        // Never: nothing is revoked however old.
        w.svc
            .set_settings_with(&w.root(), &[("revoke_unused", "never")])
            .unwrap();
        w.advance(400 * DAY);
        assert!(w.svc.revoke_unused().is_empty());
        assert!(w.verify(used.as_str(), "alice").is_ok());
    }
}

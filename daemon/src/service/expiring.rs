//! Keys close to their expiry (`warn_before`, 7 days by default): a login
//! with one is told so (OpenSessionWith's answer, which pam_apikey shows
//! as a PAM text message), listings and status mark them, and the audit
//! log has one `key-expiring` line per key and day it is used, so a
//! script's owner can be found before the script breaks.

use super::{settings::extra_of, Caller, KeyService, Line, Result};
use crate::store::{KeyCounts, KeyRecord, Policy, StoreResult};
use apikey_proto::timefmt::rfc3339;
use apikey_proto::{StatusExtra, StatusInfo};
use std::collections::HashSet;

/// Seconds from `now` until `expires` (Unix seconds, 0 for never) when
/// that is within `warn_before`; `None` for a key that expires later,
/// never, or already has, and always when `warn_before` is 0 (off).
pub fn expires_within(expires: i64, now: i64, warn_before: u64) -> Option<u64> {
    if expires == 0 {
        return None;
    }
    let left = u64::try_from(expires.saturating_sub(now)).ok()?;
    (left > 0 && left <= warn_before).then_some(left)
}

/// The keys announced in the audit log today (UTC), so that a key used
/// every minute is announced once a day. Holds no more than the keys
/// used today; a restarted daemon announces them once more.
#[derive(Debug, Default)]
pub struct Announced {
    day: i64,
    keys: HashSet<String>,
}

impl Announced {
    /// True the first time `key` is asked about on the day of `now`.
    pub fn first_today(&mut self, key: &str, now: i64) -> bool {
        let day = now.div_euclid(86_400);
        if day != self.day {
            self.day = day;
            self.keys.clear();
        }
        self.keys.insert(key.to_string())
    }
}

impl KeyService {
    /// `expires_within` with the site's `warn_before`.
    pub(super) fn expires_soon(&self, expires: i64, now: i64) -> Option<u64> {
        expires_within(expires, now, self.cfg.warn_before_secs)
    }

    /// The keys of `owner` (everyone's for `None`) counted by the store,
    /// for the metrics and a caller's status: expiring soon means an
    /// effective expiry (the policy's cap applied) within `warn_before`.
    pub(super) fn key_counts(
        &self,
        owner: Option<u32>,
        policy: &Policy,
        now: i64,
    ) -> StoreResult<KeyCounts> {
        let warn_before = i64::try_from(self.cfg.warn_before_secs).unwrap_or(i64::MAX);
        let soon_until = now.saturating_add(warn_before);
        self.store
            .key_counts(owner, now, soon_until, policy.expiry.seconds())
    }

    /// `Status`, with the caller's keys that expire soon and what the
    /// settings struct cannot hold (StatusWith). Like Status, it answers
    /// while the store fails (that is when it is most needed): then
    /// without the count.
    pub fn status_with(&self, c: &Caller) -> Result<(StatusInfo, StatusExtra)> {
        let status = self.status(c)?;
        let policy = self.policy()?;
        let expiring_soon = self
            .key_counts(Some(c.uid), &policy, self.host.now())
            .ok()
            .map(|k| u32::try_from(k.expiring_soon).unwrap_or(u32::MAX));
        Ok((
            status,
            StatusExtra {
                warn_before: self.cfg.warn_before_secs,
                expiring_soon,
                settings: extra_of(&policy),
            },
        ))
    }

    /// After a key was accepted for a login: the day's line for a key
    /// close to its expiry (`expires`, the effective one).
    pub(super) fn announce_if_expiring(
        &self,
        key: &KeyRecord,
        expires: i64,
        service: &str,
        rhost: &str,
        now: i64,
    ) {
        let Some(left) = self.expires_soon(expires, now) else {
            return;
        };
        let first = self
            .expiry_announced
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .first_today(&key.id, now);
        if first {
            self.audit.log(
                &Line::new("key-expiring")
                    .field("user", &key.owner_name)
                    .field("key", &key.id)
                    .field("expires", &rfc3339(expires))
                    .num(
                        "days_left",
                        i64::try_from(left / 86_400).unwrap_or(i64::MAX),
                    )
                    .field("service", service)
                    .field("rhost", rhost),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: i64 = 86_400;

    #[test]
    fn only_keys_ending_within_the_window_are_soon() {
        let now = 1_000 * DAY;
        let week = 7 * DAY as u64;
        assert_eq!(
            expires_within(now + 3 * DAY, now, week),
            Some(3 * DAY as u64)
        );
        assert_eq!(expires_within(now + 7 * DAY, now, week), Some(week));
        assert_eq!(expires_within(now + 7 * DAY + 1, now, week), None);
        assert_eq!(expires_within(now + 1, now, week), Some(1));
        // Already over, or never: nothing to warn about.
        assert_eq!(expires_within(now, now, week), None);
        assert_eq!(expires_within(now - DAY, now, week), None);
        assert_eq!(expires_within(0, now, week), None);
        // warn_before = 0s turns warnings off.
        assert_eq!(expires_within(now + 1, now, 0), None);
        assert_eq!(expires_within(i64::MIN, i64::MAX, week), None);
    }

    /// The caller's keys within the window, however many pages they take;
    /// none is none.
    #[test]
    fn status_counts_every_key_of_the_caller_that_expires_soon() {
        use crate::service_tests::{world, ALICE};
        let w = world();
        let now = 1_700_000_000;
        let soon = |i: usize, expires: i64| {
            let mut k = crate::store::contract_tests::key(&format!("e{i:011}"), ALICE, now - DAY);
            k.owner_name = "alice".into();
            k.expires = Some(expires);
            k
        };
        let count = |w: &crate::service_tests::World| w.svc.status_with(&w.alice()).unwrap().1;
        w.store.insert_batch(&[soon(0, now + 30 * DAY)]).unwrap();
        assert_eq!(count(&w).expiring_soon, Some(0));
        // More than a page (1000) of them, and one that is not.
        let many: Vec<_> = (1..=1001).map(|i| soon(i, now + 2 * DAY)).collect();
        w.store.insert_batch(&many).unwrap();
        assert_eq!(count(&w).expiring_soon, Some(1001));
        assert_eq!(count(&w).warn_before, 7 * DAY as u64);
    }

    #[test]
    fn a_key_is_announced_once_a_day() {
        let mut a = Announced::default();
        let day = 20_000 * DAY;
        assert!(a.first_today("k1", day + 10));
        assert!(!a.first_today("k1", day + DAY - 1));
        assert!(a.first_today("k2", day + 20));
        // The next day (UTC) starts afresh, and forgets the day before.
        assert!(a.first_today("k1", day + DAY));
        assert!(!a.first_today("k1", day + DAY + 5));
        assert_eq!(a.keys.len(), 1);
    }
}

//! Recent successful key logins, remembered for a short while so that
//! OpenSession can tell a session was opened with a key even when the PAM
//! module's own hand-over of the key id was lost or tampered with (S6).
//! The memory only ever adds a key id to a session, never removes one, so
//! a wrong match errs on the side of a session counting as key-opened.

use std::collections::VecDeque;
use std::sync::Mutex;

/// How long a Verify counts as the authentication of a session opened
/// after it: PAM's account and session stages follow authentication within
/// seconds, but a slow NSS or a second factor can take a while.
pub const REMEMBER_SECS: i64 = 120;
/// At most this many remembered logins; the oldest go first.
pub const MAX_REMEMBERED: usize = 4096;

#[derive(Debug, Clone, PartialEq, Eq)]
struct KeyLogin {
    at: i64,
    owner: String,
    /// False when Verify named no user (user mapping): the PAM user of the
    /// session may then be the mapping name rather than the owner.
    named: bool,
    service: String,
    rhost: String,
    key_id: String,
}

#[derive(Default)]
pub struct RecentKeyLogins {
    /// Oldest first.
    logins: Mutex<VecDeque<KeyLogin>>,
}

impl RecentKeyLogins {
    pub fn record(
        &self,
        now: i64,
        owner: &str,
        named: bool,
        service: &str,
        rhost: &str,
        key_id: &str,
    ) {
        let mut logins = self.lock();
        forget_old(&mut logins, now);
        while logins.len() >= MAX_REMEMBERED {
            logins.pop_front();
        }
        logins.push_back(KeyLogin {
            at: now,
            owner: owner.to_string(),
            named,
            service: service.to_string(),
            rhost: rhost.to_string(),
            key_id: key_id.to_string(),
        });
    }

    /// Takes the oldest recent key login that matches a session being
    /// opened for `user` on `service` from `rhost` (and, when given, made
    /// with `key_id`); returns its key id. Taking it means each key login
    /// marks one session, so a password login from the same place soon
    /// after is not marked, while two key logins still mark two sessions.
    /// A login that named its user is preferred to a mapped one.
    pub fn take(
        &self,
        now: i64,
        user: &str,
        service: &str,
        rhost: &str,
        key_id: Option<&str>,
    ) -> Option<String> {
        let mut logins = self.lock();
        forget_old(&mut logins, now);
        let fits = |l: &KeyLogin| {
            l.service == service && l.rhost == rhost && key_id.is_none_or(|k| l.key_id == k)
        };
        let at = logins
            .iter()
            .position(|l| fits(l) && l.owner == user)
            .or_else(|| logins.iter().position(|l| fits(l) && !l.named))?;
        logins.remove(at).map(|l| l.key_id)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, VecDeque<KeyLogin>> {
        self.logins.lock().unwrap_or_else(|p| p.into_inner())
    }
}

fn forget_old(logins: &mut VecDeque<KeyLogin>, now: i64) {
    while logins
        .front()
        .is_some_and(|l| now.saturating_sub(l.at) > REMEMBER_SECS)
    {
        logins.pop_front();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_login_marks_one_matching_session_within_the_window() {
        let r = RecentKeyLogins::default();
        r.record(100, "alice", true, "sshd", "10.0.0.1", "k1");
        assert_eq!(r.take(101, "bob", "sshd", "10.0.0.1", None), None);
        assert_eq!(r.take(101, "alice", "vsftpd", "10.0.0.1", None), None);
        assert_eq!(r.take(101, "alice", "sshd", "10.0.0.2", None), None);
        assert_eq!(
            r.take(100 + REMEMBER_SECS, "alice", "sshd", "10.0.0.1", None),
            Some("k1".into())
        );
        assert_eq!(r.take(101, "alice", "sshd", "10.0.0.1", None), None);
        r.record(200, "alice", true, "sshd", "10.0.0.1", "k1");
        assert_eq!(
            r.take(201 + REMEMBER_SECS, "alice", "sshd", "10.0.0.1", None),
            None
        );
    }

    #[test]
    fn two_key_logins_mark_two_sessions() {
        let r = RecentKeyLogins::default();
        r.record(1, "alice", true, "sshd", "", "k1");
        r.record(2, "alice", true, "sshd", "", "k2");
        assert_eq!(
            r.take(3, "alice", "sshd", "", Some("k2")),
            Some("k2".into())
        );
        assert_eq!(r.take(3, "alice", "sshd", "", Some("k2")), None);
        assert_eq!(r.take(3, "alice", "sshd", "", None), Some("k1".into()));
    }

    #[test]
    fn a_mapped_login_matches_any_user_after_a_named_one() {
        let r = RecentKeyLogins::default();
        r.record(1, "alice", false, "vsftpd", "h", "mapped");
        r.record(2, "bob", true, "vsftpd", "h", "named");
        assert_eq!(r.take(3, "bob", "vsftpd", "h", None), Some("named".into()));
        assert_eq!(r.take(3, "ftp", "vsftpd", "h", None), Some("mapped".into()));
    }

    #[test]
    fn memory_is_bounded() {
        let r = RecentKeyLogins::default();
        for i in 0..MAX_REMEMBERED + 10 {
            r.record(5, "alice", true, "sshd", "", &i.to_string());
        }
        assert_eq!(r.lock().len(), MAX_REMEMBERED);
        assert_eq!(r.take(5, "alice", "sshd", "", None), Some("10".into()));
    }
}

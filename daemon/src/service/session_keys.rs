//! Session keys (S5, S6): keys bound to the caller's login session that
//! authenticate as the uid the caller runs as, and end with that session.

use super::*;
use crate::policy::{SessionEnd, SessionFacts};
use crate::store::SessionBinding;

/// Revocation reason of a session key that reached its lifetime cap.
const LIFETIME_REASON: &str = "session-key-lifetime";
/// Revocation reason of a session key whose session logind removed.
const LOGIND_REASON: &str = "logind-session-removed";

impl KeyService {
    pub fn create_session_key(&self, c: &Caller, name: &str) -> Result<(Token, KeyInfo)> {
        let outcome = self.create_session_key_inner(c, name);
        let line = Line::new("session-key")
            .num("caller_uid", c.uid)
            .num("caller_pid", c.pid);
        let line = match &outcome {
            Ok((_, info)) => line
                .field("user", &info.user)
                .field("key", &info.id)
                .field("outcome", "ok"),
            Err(e) => line
                .field("user", &self.caller_name(c))
                .field("key", "")
                .field("outcome", e.short_name())
                .warn(),
        };
        self.audit_outcome(c.uid, &line, outcome.as_ref().err());
        outcome
    }

    fn create_session_key_inner(&self, c: &Caller, name: &str) -> Result<(Token, KeyInfo)> {
        check_name(name)?;
        let policy = self.policy()?;
        let proc_id = self.proc_identity(c)?;
        let (Some(audit_session), Some(loginuid)) = (proc_id.sessionid, proc_id.loginuid) else {
            return Err(KeysError::NoSession(
                "this process is not part of a login session (it has no audit session), so a \
                 session key would have nothing to end with; use 'apikey generate' for a \
                 long-lived key"
                    .into(),
            ));
        };
        self.require_non_key_login(&proc_id)?;
        if !self.is_admin(c) && !policy.allow_user_keys {
            return Err(KeysError::PolicyForbids(
                "the site policy does not let users create API keys; ask an administrator".into(),
            ));
        }
        // The uid the caller runs as now: under su, the user it became.
        let owner = self.account_by_uid(c.uid)?;
        self.check_may_hold_keys(owner.uid, &owner.name)?;
        let now = self.host.now();
        let boot_id = self.host.boot_id();
        // The registered session of the login itself, the oldest still
        // open in this audit session: closing it ends the key. A su or sudo
        // session registered inside it later never does (S5).
        let handle = self
            .store
            .sessions_of(&boot_id, audit_session)
            .map_err(store_error)?
            .into_iter()
            .find(|s| s.closed.is_none() && s.loginuid == Some(loginuid))
            .map(|s| s.handle);
        let expires = now.saturating_add(self.cfg.session_key_max_lifetime_secs as i64);
        let (token, mut record) =
            self.new_record(c, Some(loginuid), &owner, name, vec![], now, Some(expires))?;
        record.kind = KeyKind::Session;
        record.binding = Some(SessionBinding {
            boot_id,
            audit_session,
            loginuid,
            handle,
        });
        self.store
            .insert(&record, self.cfg.max_keys_per_user, now)
            .map_err(store_error)?;
        Ok((token, self.info(&record, &policy)))
    }

    /// S6: keys are made only in a login session registered as opened
    /// without a key, so a stolen key cannot be turned into fresh ones,
    /// not even when its session's registration failed.
    pub(super) fn require_non_key_login(&self, proc_id: &ProcIdentity) -> Result<()> {
        let sessions = match proc_id.sessionid {
            Some(audit_session) => self
                .store
                .sessions_of(&self.host.boot_id(), audit_session)
                .map_err(store_error)?,
            None => Vec::new(),
        };
        let weighed: Vec<policy::RegisteredLogin<'_>> = sessions
            .iter()
            .map(|s| policy::RegisteredLogin {
                loginuid: s.loginuid,
                key_opened: s.key_id.is_some(),
                auth: s.auth.as_deref(),
            })
            .collect();
        policy::may_make_keys_in(&weighed, proc_id.loginuid)
    }

    /// The session checks of a login with a session key; a key found ended
    /// is revoked for good on the spot.
    pub(super) fn check_session_alive(
        &self,
        key: &KeyRecord,
        policy: &Policy,
        now: i64,
    ) -> std::result::Result<(), &'static str> {
        let Some(binding) = &key.binding else {
            return Err("session-key-unbound");
        };
        self.session_state(key, binding, policy, now)
            .map_err(|end| {
                self.end_session_keys(std::slice::from_ref(&key.id), end.as_str());
                end.as_str()
            })
    }

    fn session_state(
        &self,
        key: &KeyRecord,
        binding: &SessionBinding,
        policy: &Policy,
        now: i64,
    ) -> std::result::Result<(), SessionEnd> {
        let boot_id = self.host.boot_id();
        // A store error is no evidence that the session closed.
        let handle_closed = binding
            .handle
            .as_deref()
            .is_some_and(|h| matches!(self.store.session(h), Ok(Some(s)) if s.closed.is_some()));
        let last_activity = self
            .usage
            .pending(&key.id)
            .map(|u| u.at)
            .or(key.last_used.as_ref().map(|u| u.at))
            .unwrap_or(key.created)
            .max(key.created);
        let facts = SessionFacts {
            boot_id: &boot_id,
            now,
            last_activity,
            idle_timeout_secs: policy.session_timeout_secs,
            handle_closed,
            // Only asked of this boot's sessions: ids of another are reused.
            session_alive: binding.boot_id != boot_id
                || self.host.audit_session_alive(binding.audit_session),
        };
        policy::session_key_state(binding, &facts)
    }

    /// Ends every session key whose session is over: at start-up (keys of
    /// an earlier boot) and once a minute (idle, gone, lifetime).
    pub fn sweep_session_keys(&self) {
        let (Ok(keys), Ok(policy)) = (self.store.active_session_keys(), self.policy()) else {
            // Nothing is ended on a guess; Verify checks each key anyway.
            return;
        };
        let now = self.host.now();
        for key in keys {
            let reason = match &key.binding {
                None => Some(SessionEnd::Gone.as_str()),
                Some(_) if key.expires.is_some_and(|e| now >= e) => Some(LIFETIME_REASON),
                Some(b) => self
                    .session_state(&key, b, &policy, now)
                    .err()
                    .map(SessionEnd::as_str),
            };
            if let Some(reason) = reason {
                self.end_session_keys(std::slice::from_ref(&key.id), reason);
            }
        }
    }

    /// Deletes keys that ended more than `retention` ago and session
    /// records no process can act for any more (see [`Prune`]); called
    /// every minute, so the store's size follows the keys and sessions
    /// that matter, not the logins ever made.
    pub fn prune_store(&self) {
        // Read before the look at /proc: a login registered in this second
        // or later may be missing from it, and is kept.
        let now = self.host.now();
        let Some(live_sessions) = self.host.live_audit_sessions() else {
            return;
        };
        let what = crate::store::Prune {
            ended_before: now.saturating_sub(self.cfg.retention_secs as i64),
            boot_id: self.host.boot_id(),
            live_sessions,
            opened_before: now,
        };
        match self.store.prune(&what) {
            Ok((0, 0)) => {}
            Ok((keys, sessions)) => self.audit.log(
                &Line::new("prune")
                    .num("keys", i64::try_from(keys).unwrap_or(i64::MAX))
                    .num("sessions", i64::try_from(sessions).unwrap_or(i64::MAX)),
            ),
            Err(e) => eprintln!("apikeyd: could not prune the key store: {e}"),
        }
    }

    /// logind said session `id` is gone. Its ids are the kernel's audit
    /// session ids where the kernel audits logins; others ("c1") bind no
    /// session key. A signal not from logind's owner only gets logged.
    pub fn logind_session_removed(&self, id: &str, sender: &str, from_logind: bool) {
        if !from_logind {
            let line = Line::new("logind-signal")
                .field("sender", sender)
                .field("session", id)
                .field("outcome", "ignored-not-logind")
                .warn();
            self.audit.log(&line);
            return;
        }
        let Ok(audit_session) = id.parse::<u32>() else {
            return;
        };
        let boot_id = self.host.boot_id();
        let Ok(keys) = self.store.active_session_keys() else {
            return;
        };
        let ids: Vec<String> = keys
            .into_iter()
            .filter(|k| {
                k.binding
                    .as_ref()
                    .is_some_and(|b| b.boot_id == boot_id && b.audit_session == audit_session)
            })
            .map(|k| k.id)
            .collect();
        if !ids.is_empty() {
            self.end_session_keys(&ids, LOGIND_REASON);
        }
    }

    /// close_session of the login a session key was bound to.
    pub(super) fn end_keys_of_session(&self, handle: &str) {
        let by = RevokeBy {
            uid: 0,
            at: self.host.now(),
            reason: SessionEnd::Closed.as_str(),
        };
        match self.store.revoke_bound_to(handle, by) {
            Ok(ids) if ids.is_empty() => {}
            Ok(ids) => self.audit_session_key_end(&ids, SessionEnd::Closed.as_str(), "ok"),
            Err(_) => self.audit_session_key_end(&[], SessionEnd::Closed.as_str(), "Failed"),
        }
    }

    fn end_session_keys(&self, ids: &[String], reason: &str) {
        let by = RevokeBy {
            uid: 0,
            at: self.host.now(),
            reason,
        };
        let outcome = match self.store.revoke(ids, by) {
            Ok(_) => "ok",
            Err(_) => "Failed",
        };
        self.audit_session_key_end(ids, reason, outcome);
    }

    fn audit_session_key_end(&self, ids: &[String], reason: &str, outcome: &str) {
        let line = Line::new("session-key-end")
            .field("key", &ids.join(","))
            .field("reason", reason)
            .field("outcome", outcome);
        self.audit.log(&line);
    }

    /// Session keys the caller owns, for `apikey status`.
    pub(super) fn session_keys_of(&self, uid: u32) -> u32 {
        self.store
            .list_active(Some(uid))
            .map(|keys| keys.iter().filter(|k| k.kind == KeyKind::Session).count() as u32)
            .unwrap_or(0)
    }
}

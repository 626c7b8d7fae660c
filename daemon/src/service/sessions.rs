//! Login sessions the PAM module registers (open_session/close_session),
//! and the session keys bound to them.

use super::*;

impl KeyService {
    /// Registers the caller's own login session for the PAM module's
    /// open_session; returns the handle that closes it. `auth` is how the
    /// module saw the login authenticated (`login_auth`).
    #[allow(clippy::too_many_arguments)]
    pub fn open_session(
        &self,
        c: &Caller,
        user: &str,
        service: &str,
        rhost: &str,
        tty: &str,
        key_id: &str,
        auth: &str,
    ) -> Result<String> {
        self.open_session_with(c, user, service, rhost, tty, key_id, auth)
            .map(|(handle, _)| handle)
    }

    /// [`open_session`](Self::open_session) (OpenSessionWith) that also
    /// answers, for a login made with a key close to its expiry, the
    /// seconds it has left (0 otherwise), for the module to tell the user.
    #[allow(clippy::too_many_arguments)]
    pub fn open_session_with(
        &self,
        c: &Caller,
        user: &str,
        service: &str,
        rhost: &str,
        tty: &str,
        key_id: &str,
        auth: &str,
    ) -> Result<(String, u32)> {
        let mut note = OpenNote::default();
        let request = SessionRequest {
            user,
            service,
            rhost,
            tty,
            key_id,
            auth,
        };
        let outcome = self
            .open_session_inner(c, &request, &mut note)
            .map(|handle| (handle, note.key_expires_in));
        let mut line = Line::new("session-open")
            .num("caller_uid", c.uid)
            .num("caller_pid", c.pid)
            .field("user", loggable_user(user))
            .field("service", service)
            .field("rhost", rhost)
            .field("tty", tty);
        line = match &note.key_id {
            Some(id) => line
                .field("key", id)
                .field("key_from", note.key_from.unwrap_or("-")),
            None if key_id.is_empty() => line.field("key", "-"),
            None => line.field("key", key_id),
        };
        line = line.field(
            "auth",
            match (&note.auth, auth) {
                (Some(a), _) => a,
                (None, "") => "-",
                (None, claimed) => claimed,
            },
        );
        let proc_id = note.proc_id.as_ref();
        line = opt_num(line, "audit_session", proc_id.and_then(|p| p.sessionid));
        line = opt_num(line, "loginuid", proc_id.and_then(|p| p.loginuid));
        line = match &outcome {
            Ok((handle, _)) => line
                .field("handle", &handle[..LOGGED_HANDLE_CHARS])
                .field("outcome", "ok"),
            Err(e) => line.field("outcome", e.short_name()).warn(),
        };
        self.audit_outcome(c.uid, &line, outcome.as_ref().err());
        outcome
    }

    fn open_session_inner(
        &self,
        c: &Caller,
        request: &SessionRequest<'_>,
        note: &mut OpenNote,
    ) -> Result<String> {
        let SessionRequest {
            user,
            service,
            rhost,
            tty,
            key_id,
            auth,
        } = *request;
        may_manage_sessions(c)?;
        check_session_fields(request)?;
        if let Ok(leaked) = Token::parse(user.as_bytes()) {
            // As in Verify (S11): a key in the user name field is spent.
            self.revoke_leaked(&leaked);
            return Err(KeysError::InvalidArgument(
                "the user name is an API key; that key is now revoked".into(),
            ));
        }
        // The session is the caller's own: its audit session and login uid
        // come from /proc, never from an argument (S4).
        // su and sudo register their sessions set-uid root (see
        // uids_acceptable): the one place that exception applies.
        let proc_id = self
            .host
            .proc_identity(c.pid, c.uid, true)
            .map_err(|e| KeysError::Denied(format!("cannot confirm who the caller is: {e}")))?;
        note.proc_id = Some(proc_id);
        // A name that does not resolve (a transient NSS failure, an account
        // deleted mid-login) is still recorded, with uid NULL: PAM has let
        // the login through already and refusing here would not stop it;
        // it would only lose the record S5 and S6 rely on.
        let uid = match self.host.account_by_name(user) {
            Lookup::Found(a) => Some(a.uid),
            Lookup::Gone | Lookup::Unavailable(_) => None,
        };
        let now = self.host.now();
        let key = if key_id.is_empty() {
            let found = self.key_logins.take(now, user, service, rhost, None);
            note.key_from = found.as_ref().map(|_| "recent-verify");
            found
        } else {
            let key = self.check_session_key(key_id, user, uid)?;
            note.key_expires_in = self.login_key_expires_in(&key, now);
            // The hand-over worked; the memory of that login is spent.
            self.key_logins
                .take(now, user, service, rhost, Some(key_id));
            note.key_from = Some("pam");
            Some(key_id.to_string())
        };
        note.key_id = key.clone();
        // A key found by either path outweighs whatever else the module
        // reported: the session counts as opened with a key (S6).
        let auth = if key.is_some() {
            Some(login_auth::KEY.to_string())
        } else {
            Some(auth.to_string()).filter(|a| !a.is_empty())
        };
        note.auth = auth.clone();
        let handle =
            new_session_handle().map_err(|e| KeysError::Failed(format!("no randomness: {e}")))?;
        // No disk reserve check: like a revocation, this record is security
        // state (S5, S6), small, and written only at the rate of logins.
        self.store
            .open_session(&SessionRecord {
                handle: handle.clone(),
                boot_id: self.host.boot_id(),
                audit_session: proc_id.sessionid,
                loginuid: proc_id.loginuid,
                caller_pid: c.pid,
                uid,
                user: user.to_string(),
                service: service.to_string(),
                rhost: rhost.to_string(),
                tty: tty.to_string(),
                key_id: key,
                opened: now,
                closed: None,
                close_reason: None,
                auth,
            })
            .map_err(store_error)?;
        Ok(handle)
    }

    /// A key the PAM module says it authenticated `user` with must be one
    /// it could have verified: anything else is a bug in the module or a
    /// forgery, and is refused rather than recorded.
    fn check_session_key(&self, key_id: &str, user: &str, uid: Option<u32>) -> Result<KeyRecord> {
        let refuse = |why: &str| {
            Err(KeysError::InvalidArgument(format!(
                "key {key_id} {why}; a session can only be marked with a key that logged its \
                 user in"
            )))
        };
        let Some(key) = self.key_by_id(key_id)? else {
            return refuse("does not exist");
        };
        if key.revoked.is_some() {
            return refuse("is revoked");
        }
        if key.owner_name != user || uid.is_some_and(|u| u != key.owner_uid) {
            return refuse("belongs to another user");
        }
        Ok(key)
    }

    /// Seconds `key` has left when within `warn_before`, else 0. A policy
    /// that cannot be read now costs the warning, not the session.
    fn login_key_expires_in(&self, key: &KeyRecord, now: i64) -> u32 {
        let Ok(policy) = self.policy() else {
            return 0;
        };
        self.expires_soon(super::warned_expiry(key, &policy), now)
            .map_or(0, |left| u32::try_from(left).unwrap_or(u32::MAX))
    }

    /// Ends the session `handle` names, for the PAM module's close_session.
    pub fn close_session(&self, c: &Caller, handle: &str) -> Result<()> {
        let outcome = self.close_session_inner(c, handle);
        let shown: String = handle.chars().take(LOGGED_HANDLE_CHARS).collect();
        let mut line = Line::new("session-close")
            .num("caller_uid", c.uid)
            .num("caller_pid", c.pid)
            .field("handle", &shown);
        line = match &outcome {
            Ok(r) => opt_num(
                line.field("user", loggable_user(&r.user))
                    .field("service", &r.service)
                    .field("rhost", &r.rhost)
                    .field("key", r.key_id.as_deref().unwrap_or("-")),
                "audit_session",
                r.audit_session,
            )
            .field("outcome", "ok"),
            Err(e) => line.field("outcome", e.short_name()).warn(),
        };
        self.audit_outcome(c.uid, &line, outcome.as_ref().err());
        outcome.map(|_| ())
    }

    fn close_session_inner(&self, c: &Caller, handle: &str) -> Result<SessionRecord> {
        may_manage_sessions(c)?;
        if !is_session_handle(handle) {
            return Err(KeysError::InvalidArgument(format!(
                "'{}' is not a session handle",
                printable(handle, 30)
            )));
        }
        let not_found = || KeysError::NotFound("no open session has that handle".into());
        let record = self
            .store
            .session(handle)
            .map_err(store_error)?
            .filter(|r| r.closed.is_none())
            .ok_or_else(not_found)?;
        let now = self.host.now();
        // Two closes racing: the store lets exactly one of them succeed.
        if !self
            .store
            .close_session(handle, now, CLOSED_BY_PAM)
            .map_err(store_error)?
        {
            return Err(not_found());
        }
        self.end_keys_of_session(handle);
        Ok(record)
    }
}

/// The arguments of an OpenSession.
#[derive(Clone, Copy)]
struct SessionRequest<'a> {
    user: &'a str,
    service: &'a str,
    rhost: &'a str,
    tty: &'a str,
    key_id: &'a str,
    auth: &'a str,
}

/// What the audit line of an OpenSession says beyond the request itself.
#[derive(Default)]
struct OpenNote {
    proc_id: Option<ProcIdentity>,
    key_id: Option<String>,
    key_from: Option<&'static str>,
    /// What was recorded as the session's authentication.
    auth: Option<String>,
    /// See [`KeyService::open_session_with`].
    key_expires_in: u32,
}

/// Sessions belong to the PAM stacks of host services, which run as root;
/// the bus policy says the same (S12).
fn may_manage_sessions(c: &Caller) -> Result<()> {
    if c.uid == 0 {
        Ok(())
    } else {
        Err(KeysError::Denied(
            "only root (a PAM stack) may open or close login sessions".into(),
        ))
    }
}

fn check_session_fields(request: &SessionRequest<'_>) -> Result<()> {
    let SessionRequest {
        user,
        service,
        rhost,
        tty,
        key_id,
        auth,
    } = *request;
    if user.is_empty() {
        return Err(KeysError::InvalidArgument(
            "a session needs the user it is for".into(),
        ));
    }
    check_field("user", user)?;
    check_field("remote host", rhost)?;
    check_field("terminal", tty)?;
    if !is_valid_service(service) {
        return Err(KeysError::InvalidArgument(format!(
            "'{}' is not a PAM service name",
            printable(service, 64)
        )));
    }
    if !key_id.is_empty() && !is_key_id(key_id) {
        return Err(KeysError::InvalidArgument(format!(
            "'{}' is not a key id",
            printable(key_id, 20)
        )));
    }
    if !login_auth::is_valid(auth) {
        return Err(KeysError::InvalidArgument(format!(
            "'{}' is not a list of authentication methods",
            printable(auth, 40)
        )));
    }
    Ok(())
}

/// An id that may be unset (audit session, login uid): `-` when it is.
fn opt_num(line: Line, name: &str, n: Option<u32>) -> Line {
    match n {
        Some(n) => line.num(name, n),
        None => line.field(name, "-"),
    }
}

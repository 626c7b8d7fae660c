//! What each bus method does, as plain functions of the caller's facts, so
//! the whole behaviour is testable without a bus. The bus layer only
//! gathers the caller's credentials and maps results.

use crate::audit::{Audit, Line};
use crate::config::Config;
use crate::host::{Host, Lookup, ProcIdentity, ShadowState};
use crate::key_logins::RecentKeyLogins;
use crate::metrics::Outcome;
use crate::policy::{self, ListTarget, LoginState, VerifierScope};
use crate::store::{
    KeyKind, KeyRecord, KeyUse, Policy, RevokeBy, SessionRecord, Store, StoreError, UsePair,
};
use crate::throttle::{Source, Throttle};
use crate::usage::UsageBuffer;

mod expiring;
mod exposition;
mod session_keys;
mod sessions;
mod settings;
mod show;
pub mod token_holder;
mod unused;
use apikey_proto::login_auth;
use apikey_proto::services::{is_valid_service, printable};
use apikey_proto::token::{
    is_key_id, is_key_shaped, is_session_handle, new_key_id, new_session_handle,
};
use apikey_proto::{Expiry, GenerateOptions, KeyExtra, KeyInfo, KeysError, StatusInfo, Token};
use std::sync::{Arc, Mutex};

/// Longest key name.
pub const MAX_NAME: usize = 200;
/// Longest user name or remote host accepted in a request.
pub const MAX_FIELD: usize = 256;
/// Ids in one Revoke call.
pub const MAX_IDS: usize = 1000;
/// How much of a session handle the audit log shows: enough to match an
/// open with its close, too little to close the session with.
pub const LOGGED_HANDLE_CHARS: usize = 6;
/// Why a session closed, when the PAM handle that opened it closed it.
pub const CLOSED_BY_PAM: &str = "pam-close";

/// The caller as the bus daemon reports it: never from an argument.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    pub uid: u32,
    pub pid: u32,
    pub gids: Vec<u32>,
}

/// Where a check runs. `MayBlock`: on a thread that may wait (NSS, file
/// reads, store writes and their fsync). `Inline`: on an async worker of
/// the bus, where only the host's `quick_` answers, the store's reads and
/// memory may be used; anything else stops the check with
/// [`NeedsBlocking`] before it has any effect.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    MayBlock,
    Inline,
}

/// An inline check stopped before logging, throttling or writing anything:
/// the call must run again on a thread that may block.
#[derive(Debug)]
struct NeedsBlocking;

/// A key lookup's answer, made before the check that uses it.
pub type FoundKey = crate::store::StoreResult<Option<KeyRecord>>;

/// One Verify's arguments, and its key's lookup when already made.
struct Attempt<'a> {
    token: &'a [u8],
    user: &'a str,
    service: &'a str,
    rhost: &'a str,
    found: Option<&'a FoundKey>,
}

/// What an inline check answers: the answer, or "run it on the blocking pool".
type Inline<T> = std::result::Result<T, NeedsBlocking>;

/// An answer held back by `delay_ms`: a refused Verify's, or a token
/// holder's call that named no key (S7).
pub struct Delayed<T> {
    pub result: Result<T>,
    pub delay_ms: u64,
}

impl<T> Delayed<T> {
    /// An answer given at once.
    pub fn now(result: Result<T>) -> Self {
        Delayed {
            result,
            delay_ms: 0,
        }
    }

    /// The same answer, its value changed by `f`; the same delay.
    pub fn map<U>(self, f: impl FnOnce(T) -> U) -> Delayed<U> {
        Delayed {
            result: self.result.map(f),
            delay_ms: self.delay_ms,
        }
    }
}

/// A Verify's answer: the key's owner and id.
pub type VerifyAnswer = Delayed<(String, String)>;

pub struct KeyService {
    cfg: Config,
    store: Arc<dyn Store>,
    host: Arc<dyn Host>,
    audit: Audit,
    throttle: Mutex<Throttle>,
    usage: UsageBuffer,
    key_logins: RecentKeyLogins,
    refusals: Mutex<crate::refusal_log::RefusalLog>,
    /// Set while key lookups fail in the store: said once, loudly, when it
    /// starts and once when it ends, not at every login.
    store_failing: std::sync::atomic::AtomicBool,
    /// What the last failure said, for `status`.
    store_problem: Mutex<String>,
    /// When unused keys were last looked for (`unused.rs`); 0: not yet.
    unused_swept: std::sync::atomic::AtomicI64,
    /// Keys whose closeness to expiry was logged today (`expiring.rs`).
    expiry_announced: Mutex<expiring::Announced>,
    /// What the metrics count since the start (`exposition.rs`).
    counters: crate::metrics::Counters,
    /// When the service started (Unix seconds).
    started: i64,
    /// The metrics textfile could not be written (said once).
    metrics_file_failing: std::sync::atomic::AtomicBool,
}

type Result<T> = std::result::Result<T, KeysError>;

impl KeyService {
    pub fn new(cfg: Config, store: Arc<dyn Store>, host: Arc<dyn Host>, audit: Audit) -> Self {
        let throttle = Mutex::new(Throttle::new(cfg.throttle.clone()));
        let started = host.now();
        KeyService {
            cfg,
            store,
            host,
            audit,
            throttle,
            usage: UsageBuffer::default(),
            key_logins: RecentKeyLogins::default(),
            refusals: Mutex::new(crate::refusal_log::RefusalLog::new()),
            store_failing: Default::default(),
            store_problem: Mutex::new(String::new()),
            unused_swept: Default::default(),
            expiry_announced: Default::default(),
            counters: Default::default(),
            started,
            metrics_file_failing: Default::default(),
        }
    }

    pub fn generate(
        &self,
        c: &Caller,
        name: &str,
        expires: &str,
        services: &[String],
        user: &str,
    ) -> Result<(Token, KeyInfo)> {
        self.generate_with(
            c,
            name,
            expires,
            services,
            user,
            &GenerateOptions::default(),
        )
        .map(|(token, info, _)| (token, info))
    }

    /// `generate` with options (GenerateWith): fleet mode's `hosts`.
    pub fn generate_with(
        &self,
        c: &Caller,
        name: &str,
        expires: &str,
        services: &[String],
        user: &str,
        options: &GenerateOptions,
    ) -> Result<(Token, KeyInfo, KeyExtra)> {
        let outcome = self.generate_inner(c, name, expires, services, user, options);
        let mut line = Line::new("generate")
            .num("caller_uid", c.uid)
            .num("caller_pid", c.pid);
        if !options.hosts.is_empty() {
            line = line.field("hosts", &options.hosts.join(","));
        }
        if !options.from.is_empty() {
            line = line.field("from", &options.from.join(","));
        }
        line = match &outcome {
            Ok((_, info, _)) => line
                .field("user", &info.user)
                .field("key", &info.id)
                .field("outcome", "ok"),
            Err(e) => line
                .field("user", if user.is_empty() { "" } else { user })
                .field("key", "")
                .field("outcome", e.short_name())
                .warn(),
        };
        self.audit_outcome(c.uid, &line, outcome.as_ref().err());
        outcome
    }

    fn generate_inner(
        &self,
        c: &Caller,
        name: &str,
        expires: &str,
        services: &[String],
        user: &str,
        options: &GenerateOptions,
    ) -> Result<(Token, KeyInfo, KeyExtra)> {
        check_name(name)?;
        let hosts = policy::key_hosts(&options.hosts, self.cfg.fleet.is_some())?;
        let sources = policy::key_sources(&options.from)?;
        let requested = parse_expiry(expires)?;
        let policy = self.policy()?;
        policy::may_make_key_from(&policy, &sources)?;
        let admin = self.is_admin(c);
        let proc_id = self.proc_identity(c)?;
        let login = policy::login_state(c.uid, proc_id.loginuid);
        if user.is_empty() {
            policy::may_generate_own(login, admin, &policy)?;
        } else {
            check_field("user", user)?;
            policy::may_generate_for_other(login, admin)?;
        }
        self.require_non_key_login(&proc_id)?;
        let owner = if user.is_empty() {
            self.account_by_uid(c.uid)?
        } else {
            self.account_by_name(user)?
        };
        self.check_may_hold_keys(owner.uid, &owner.name)?;
        let scope = policy::key_scope(services, &self.cfg.key_services)?;
        let now = self.host.now();
        let key_expires = policy::new_key_expiry(now, requested, policy.expiry)?;
        let (token, mut record) =
            self.new_record(c, proc_id.loginuid, &owner, name, scope, now, key_expires)?;
        record.hosts = hosts;
        record.sources = sources;
        self.store
            .insert(&record, self.cfg.max_keys_per_user, now)
            .map_err(store_error)?;
        record.made_on = self.host_name().to_string();
        let (info, extra) = self.info_and_extra(&record, &policy);
        Ok((token, info, extra))
    }

    #[allow(clippy::too_many_arguments)]
    fn new_record(
        &self,
        c: &Caller,
        loginuid: Option<u32>,
        owner: &crate::host::Account,
        name: &str,
        services: Vec<String>,
        now: i64,
        expires: Option<i64>,
    ) -> Result<(Token, KeyRecord)> {
        self.check_disk()?;
        let rng_failed = |e: rand::rngs::SysError| KeysError::Failed(format!("no randomness: {e}"));
        let token = Token::generate().map_err(rng_failed)?;
        let record = KeyRecord {
            id: new_key_id().map_err(rng_failed)?,
            hash: token.hash(),
            kind: KeyKind::LongLived,
            owner_uid: owner.uid,
            owner_name: owner.name.clone(),
            created_by_uid: c.uid,
            created_by_loginuid: loginuid,
            name: name.to_string(),
            services,
            hosts: vec![],
            sources: vec![],
            made_on: String::new(),
            created: now,
            expires,
            last_used: None,
            revoked: None,
            binding: None,
        };
        Ok((token, record))
    }

    /// Every key a listing shows, in one reply: active keys that have not
    /// expired. Bounded, since one bus message cannot carry a large site's
    /// keys: past [`LIST_MAX`] the caller is told to page (ListPage).
    pub fn list(&self, c: &Caller, user: &str, all: bool, sessions: bool) -> Result<Vec<KeyInfo>> {
        let (mut q, policy) = self.list_query(c, user, all, sessions, &[])?;
        q.limit = LIST_MAX;
        let (keys, more) = self.store.list_page(&q).map_err(store_error)?;
        if more {
            return Err(KeysError::Failed(format!(
                "more than {LIST_MAX} keys to list; ask for them a page at a time (ListPage, \
                 as apikey list does)"
            )));
        }
        Ok(keys.iter().map(|(_, k)| self.info(k, &policy)).collect())
    }

    /// One page of a listing (see [`Self::list`]), from position `after`
    /// ("" for the start), with `show` adding "expired" or "revoked" keys;
    /// returns the keys and the position to ask after next ("" when done).
    #[allow(clippy::too_many_arguments)]
    pub fn list_page(
        &self,
        c: &Caller,
        user: &str,
        all: bool,
        sessions: bool,
        show: &[String],
        after: &str,
        limit: u32,
    ) -> Result<(Vec<KeyInfo>, String)> {
        let Page { keys, more, policy } = self.page(c, user, all, sessions, show, after, limit)?;
        let infos = keys
            .iter()
            .map(|(position, key)| (*position, self.info(key, &policy)));
        Ok(fill_page(infos, more, PAGE_BYTES, encoded_size))
    }

    /// `list_page` with each key's extras (ListPageWith).
    #[allow(clippy::too_many_arguments)]
    pub fn list_page_with(
        &self,
        c: &Caller,
        user: &str,
        all: bool,
        sessions: bool,
        show: &[String],
        after: &str,
        limit: u32,
    ) -> Result<(Vec<(KeyInfo, KeyExtra)>, String)> {
        let Page { keys, more, policy } = self.page(c, user, all, sessions, show, after, limit)?;
        let infos = keys
            .iter()
            .map(|(position, key)| (*position, self.info_and_extra(key, &policy)));
        Ok(fill_page(infos, more, PAGE_BYTES, encoded_size_with))
    }

    /// The stored keys of one page, whether more follow, and the policy
    /// they are shown under.
    #[allow(clippy::too_many_arguments)]
    fn page(
        &self,
        c: &Caller,
        user: &str,
        all: bool,
        sessions: bool,
        show: &[String],
        after: &str,
        limit: u32,
    ) -> Result<Page> {
        let (mut q, policy) = self.list_query(c, user, all, sessions, show)?;
        q.after = match after {
            "" => 0,
            text => text.parse::<i64>().ok().filter(|n| *n > 0).ok_or_else(|| {
                KeysError::InvalidArgument(format!(
                    "'{}' is not a position a listing gave",
                    printable(text, 40)
                ))
            })?,
        };
        q.limit = limit.clamp(1, PAGE_MAX);
        let (keys, more) = self.store.list_page(&q).map_err(store_error)?;
        Ok(Page { keys, more, policy })
    }

    /// Who may list what, for both kinds of listing; with the policy it
    /// was decided by, which the listed keys are shown under.
    fn list_query(
        &self,
        c: &Caller,
        user: &str,
        all: bool,
        sessions: bool,
        show: &[String],
    ) -> Result<(crate::store::ListQuery, Policy)> {
        let admin = self.is_admin(c);
        let policy = self.policy()?;
        let target = match (user.is_empty(), all) {
            (true, true) => ListTarget::All,
            (true, false) => ListTarget::Own,
            (false, false) => {
                check_field("user", user)?;
                ListTarget::User(self.account_by_name(user)?.uid)
            }
            (false, true) => {
                return Err(KeysError::InvalidArgument(
                    "give either a user or all, not both".into(),
                ))
            }
        };
        policy::may_list(c.uid, admin, target, &policy)?;
        if sessions && !admin {
            return Err(KeysError::Denied(
                "only administrators may list session keys".into(),
            ));
        }
        let owner = match target {
            ListTarget::Own => Some(c.uid),
            ListTarget::User(uid) => Some(uid),
            ListTarget::All => None,
        };
        let mut q = crate::store::ListQuery {
            owner,
            sessions,
            long_lived: true,
            expired: false,
            revoked: false,
            now: self.host.now(),
            after: 0,
            limit: PAGE_MAX,
        };
        for what in show {
            match what.as_str() {
                "expired" => q.expired = true,
                "revoked" => q.revoked = true,
                other => {
                    return Err(KeysError::InvalidArgument(format!(
                        "'{}' is not something a listing can show (expired, revoked)",
                        printable(other, 40)
                    )))
                }
            }
        }
        Ok((q, policy))
    }

    pub fn revoke(&self, c: &Caller, ids: &[String]) -> Result<Vec<String>> {
        let mut owners = Vec::new();
        let outcome = self.revoke_inner(c, ids, &mut owners);
        owners.sort();
        owners.dedup();
        self.audit_revoke(c, &owners.join(","), &ids.join(","), &outcome);
        outcome
    }

    /// `owners` collects the owners' names, for the audit line.
    fn revoke_inner(
        &self,
        c: &Caller,
        ids: &[String],
        owners: &mut Vec<String>,
    ) -> Result<Vec<String>> {
        if ids.is_empty() || ids.len() > MAX_IDS {
            return Err(KeysError::InvalidArgument(format!(
                "give between 1 and {MAX_IDS} key ids"
            )));
        }
        let admin = self.is_admin(c);
        // All or nothing: every id is checked before anything is revoked.
        for id in ids {
            let key = self
                .key_by_id(id)?
                .ok_or_else(|| KeysError::NotFound(format!("no key with id {id}")))?;
            owners.push(key.owner_name.clone());
            if !policy::may_revoke(c.uid, admin, key.owner_uid) {
                return Err(KeysError::Denied(format!(
                    "key {id} belongs to another user"
                )));
            }
            if let Some(r) = &key.revoked {
                return Err(KeysError::AlreadyRevoked(format!(
                    "key {id} was already revoked on {} {}",
                    apikey_proto::timefmt::rfc3339(r.at),
                    self.revoked_by_text(r)
                )));
            }
        }
        self.store
            .revoke(ids, self.revoke_by(c, "revoked"))
            .map_err(store_error)
    }

    pub fn revoke_all(&self, c: &Caller, user: &str) -> Result<Vec<String>> {
        let outcome = (|| {
            let uid = if user.is_empty() {
                c.uid
            } else {
                check_field("user", user)?;
                let target = self.account_by_name(user)?;
                if !policy::may_revoke(c.uid, self.is_admin(c), target.uid) {
                    return Err(KeysError::Denied(
                        "only administrators may revoke other users' keys".into(),
                    ));
                }
                target.uid
            };
            self.store
                .revoke_owner(Some(uid), self.revoke_by(c, "revoked-all"))
                .map_err(store_error)
        })();
        let owner = match user {
            "" => self.caller_name(c),
            named => named.to_string(),
        };
        self.audit_revoke(c, &owner, "all", &outcome);
        outcome
    }

    pub fn revoke_site(&self, c: &Caller) -> Result<Vec<String>> {
        let outcome = if self.is_admin(c) {
            self.store
                .revoke_owner(None, self.revoke_by(c, "revoked-site"))
                .map_err(store_error)
        } else {
            Err(KeysError::Denied(
                "only administrators may revoke every key on the host".into(),
            ))
        };
        self.audit_revoke(c, "*", "site", &outcome);
        outcome
    }

    /// Writes a consistent copy of the key store into `out`, a file the
    /// caller opened (administrators); returns its size in bytes. The copy
    /// holds every key's hash and record, never a token.
    pub fn backup(&self, c: &Caller, out: &mut std::fs::File) -> Result<u64> {
        let outcome = if !self.is_admin(c) {
            Err(KeysError::Denied(
                "only administrators may back up the key store".into(),
            ))
        } else {
            check_backup_target(out).and_then(|_| self.store.backup_into(out).map_err(store_error))
        };
        let mut line = Line::new("backup")
            .num("caller_uid", c.uid)
            .num("caller_pid", c.pid);
        line = match &outcome {
            Ok(bytes) => line
                .num("bytes", i64::try_from(*bytes).unwrap_or(i64::MAX))
                .field("outcome", "ok"),
            Err(e) => line.field("outcome", e.short_name()).warn(),
        };
        self.audit_outcome(c.uid, &line, outcome.as_ref().err());
        outcome
    }

    /// Folds the store's write-ahead log into its main file: at a clean
    /// stop, so that a copy of the main file alone is the whole store.
    pub fn checkpoint_store(&self) -> std::result::Result<(), StoreError> {
        self.store.checkpoint()
    }

    pub fn rotate(&self, c: &Caller, id: &str) -> Result<(Token, KeyInfo)> {
        let outcome = self.rotate_inner(c, id);
        let mut line = Line::new("rotate")
            .num("caller_uid", c.uid)
            .num("caller_pid", c.pid)
            .field("old_key", id);
        line = match &outcome {
            Ok((_, info)) => line
                .field("user", &info.user)
                .field("key", &info.id)
                .field("outcome", "ok"),
            Err(e) => line.field("outcome", e.short_name()).warn(),
        };
        self.audit_outcome(c.uid, &line, outcome.as_ref().err());
        outcome
    }

    /// Rotate obeys every rule of generate (S6): the same login checks as a
    /// new key for that owner, and the policy as it is now.
    fn rotate_inner(&self, c: &Caller, id: &str) -> Result<(Token, KeyInfo)> {
        let old = self
            .key_by_id(id)?
            .filter(|k| k.revoked.is_none() && k.kind == KeyKind::LongLived)
            .ok_or_else(|| KeysError::NotFound(format!("no active key with id {id}")))?;
        let admin = self.is_admin(c);
        let policy = self.policy()?;
        let proc_id = self.proc_identity(c)?;
        let login = policy::login_state(c.uid, proc_id.loginuid);
        if old.owner_uid == c.uid {
            policy::may_generate_own(login, admin, &policy)?;
        } else {
            policy::may_generate_for_other(login, admin)?;
        }
        self.require_non_key_login(&proc_id)?;
        let owner = self.account_by_uid(old.owner_uid)?;
        if owner.name != old.owner_name {
            return Err(KeysError::NotFound(format!(
                "the owner of key {id} was renamed; its keys are void"
            )));
        }
        self.check_may_hold_keys(owner.uid, &owner.name)?;
        policy::may_make_key_from(&policy, &old.sources)?;
        let now = self.host.now();
        let lifetime = old.expires.map(|e| e - old.created);
        let own_expiry = lifetime.map(|l| now + l);
        let expires = policy::effective_expiry(now, own_expiry, policy.expiry);
        let (token, mut record) = self.new_record(
            c,
            proc_id.loginuid,
            &owner,
            &old.name,
            old.services.clone(),
            now,
            expires,
        )?;
        // The new key works where the old one did, no wider.
        record.hosts = old.hosts.clone();
        record.sources = old.sources.clone();
        self.store
            .replace(id, &record, self.revoke_by(c, "rotated"))
            .map_err(|e| match e {
                StoreError::NotActive => KeysError::NotFound(format!("no active key with id {id}")),
                other => store_error(other),
            })?;
        Ok((token, self.info(&record, &policy)))
    }

    /// The PAM services keys may be scoped to (`key_services`): what
    /// `generate --services` may narrow. Not a secret; anyone may ask.
    pub fn key_services(&self) -> Vec<String> {
        self.cfg.key_services.clone()
    }

    pub fn status(&self, c: &Caller) -> Result<StatusInfo> {
        let user = match self.host.account_by_uid(c.uid) {
            Lookup::Found(a) => a.name,
            _ => String::new(),
        };
        let login = self
            .host
            .proc_identity(c.pid, c.uid, false)
            .map(|p| policy::login_state(c.uid, p.loginuid))
            .unwrap_or(LoginState::NotLoggedIn);
        Ok(StatusInfo {
            version: env!("CARGO_PKG_VERSION").into(),
            uid: c.uid,
            user,
            admin: self.is_admin(c),
            verifier: self.verifier_scope(c) != VerifierScope::None,
            logged_in: login != LoginState::NotLoggedIn,
            impersonating: login == LoginState::Impersonating,
            session_keys: self.session_keys_of(c.uid),
            settings: self.get_settings()?,
            store: if self.store_failing.load(std::sync::atomic::Ordering::SeqCst) {
                self.store_problem
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .clone()
            } else {
                String::new()
            },
        })
    }

    /// Checks a key for a login. Never writes on the success path (the
    /// last-used time is buffered); refusals are delayed per source.
    pub fn verify(
        &self,
        c: &Caller,
        token: &[u8],
        user: &str,
        service: &str,
        rhost: &str,
    ) -> VerifyAnswer {
        self.verify_found(c, None, token, user, service, rhost)
    }

    /// [`verify`](Self::verify) with the key's lookup already made (by
    /// [`try_verify_async`](Self::try_verify_async)), or not (`None`).
    pub fn verify_found(
        &self,
        c: &Caller,
        found: Option<&FoundKey>,
        token: &[u8],
        user: &str,
        service: &str,
        rhost: &str,
    ) -> VerifyAnswer {
        let attempt = Attempt {
            token,
            user,
            service,
            rhost,
            found,
        };
        match self.verify_in(Mode::MayBlock, c, &attempt) {
            Ok(answer) => answer,
            // MayBlock never stops; answer as for any internal error.
            Err(NeedsBlocking) => {
                VerifyAnswer::now(Err(KeysError::Failed("internal error".into())))
            }
        }
    }

    /// [`verify`](Self::verify) for an async worker: the same answer, or
    /// `None` when the check needs something that may block (an NSS call,
    /// reading changed account files, revoking, a session key's state);
    /// then nothing happened yet and the caller runs `verify` on a thread
    /// that may block.
    pub fn try_verify_inline(
        &self,
        c: &Caller,
        token: &[u8],
        user: &str,
        service: &str,
        rhost: &str,
    ) -> Option<VerifyAnswer> {
        let attempt = Attempt {
            token,
            user,
            service,
            rhost,
            found: None,
        };
        self.verify_in(Mode::Inline, c, &attempt).ok()
    }

    /// Verify on an async worker when the store's lookup waits on the
    /// network (fleet mode): the key is looked up by a future of the
    /// worker's runtime, so no thread hand-off is waited for, then checked
    /// as inline. `Err` when the rest needs a thread that may block, with
    /// the lookup's answer when there was one (for
    /// [`verify_found`](Self::verify_found)).
    pub async fn try_verify_async(
        &self,
        c: &Caller,
        token: &[u8],
        user: &str,
        service: &str,
        rhost: &str,
    ) -> std::result::Result<VerifyAnswer, Option<Box<FoundKey>>> {
        // A local store's lookup never waits on the network: nothing to await.
        if !self.store.shared() {
            return Err(None);
        }
        let found = match Token::parse(token) {
            Ok(t) => self.store.by_hash_async(&t.hash()).await.ok_or(None)?,
            // Refused before any lookup: nothing to look up.
            Err(_) => Ok(None),
        };
        let attempt = Attempt {
            token,
            user,
            service,
            rhost,
            found: Some(&found),
        };
        match self.verify_in(Mode::Inline, c, &attempt) {
            Ok(answer) => Ok(answer),
            Err(NeedsBlocking) => Err(Some(Box::new(found))),
        }
    }

    fn verify_in(&self, mode: Mode, c: &Caller, a: &Attempt<'_>) -> Inline<VerifyAnswer> {
        let (user, service, rhost) = (a.user, a.service, a.rhost);
        // A user name that is a key, or looks like one (a key with a typo
        // is still most of a key), must not reach the log (S11).
        let user_for_log = loggable_user(user);
        self.may_go_on(mode, a.found.is_some())?;
        let scope = self.verifier_scope_in(mode, c)?;
        if let Err(e) = policy::may_verify_for(&scope, service)
            .and_then(|_| check_verify_fields(user, service, rhost))
        {
            let line = Line::new("verify")
                .num("caller_uid", c.uid)
                .field("user", user_for_log)
                .field("service", service)
                .field("rhost", rhost)
                .field("outcome", e.short_name())
                .warn();
            self.audit_outcome(c.uid, &line, Some(&e));
            self.counters.verified(service, Outcome::Invalid);
            return Ok(VerifyAnswer::now(Err(e)));
        }
        let now = self.host.now();
        let line = Line::new("verify")
            .num("caller_uid", c.uid)
            .field("user", user_for_log)
            .field("service", service)
            .field("rhost", rhost);
        match self.verify_inner(mode, a, now)? {
            Ok((key, expires)) => {
                self.audit
                    .log(&line.field("key", &key.id).field("outcome", "ok"));
                self.counters.verified(service, Outcome::Ok);
                self.announce_if_expiring(&key, expires, service, rhost, now);
                // Without a service there is no login to match a session to.
                if !service.is_empty() {
                    self.key_logins.record(
                        now,
                        &key.owner_name,
                        !user.is_empty(),
                        service,
                        rhost,
                        &key.id,
                    );
                }
                Ok(VerifyAnswer::now(Ok((key.owner_name, key.id))))
            }
            // A store that cannot be read is not a wrong key: answered as
            // "cannot check" (the module returns PAM_AUTHINFO_UNAVAIL, so
            // passwords still work below it), not counted against the
            // source, and never cached as a refusal.
            Err((STORE_ERROR, key_id)) => {
                self.audit.log(&verify_refusal(
                    line,
                    key_id.as_deref(),
                    "unavailable",
                    STORE_ERROR,
                ));
                self.counters.verified(service, Outcome::Unavailable);
                Ok(VerifyAnswer::now(Err(KeysError::Failed(
                    "the key store cannot be read; keys cannot be checked now".into(),
                ))))
            }
            Err((reason, key_id)) => {
                self.counters.verified(service, Outcome::Refused);
                Ok(self.refuse(
                    Source::new(c.uid, rhost),
                    now,
                    &verify_refusal(line, key_id.as_deref(), "refused", reason),
                    KeysError::Refused("the key was not accepted".into()),
                ))
            }
        }
    }

    /// A refusal counted against `source` (S7): its line logged unless the
    /// throttle has it summarised, its answer delayed as the throttle says.
    fn refuse<T>(&self, source: Source, now: i64, line: &Line, error: KeysError) -> Delayed<T> {
        let decision = self
            .throttle
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .failure(source, now);
        if decision.log_line {
            self.audit.log(line);
        }
        Delayed {
            result: Err(error),
            delay_ms: decision.delay_ms,
        }
    }

    /// One loud line when key lookups start failing in the store.
    fn note_store_failure(&self, e: &StoreError) {
        use std::sync::atomic::Ordering;
        *self.store_problem.lock().unwrap_or_else(|p| p.into_inner()) =
            format!("key lookups fail: {e}");
        if !self.store_failing.swap(true, Ordering::SeqCst) {
            self.audit.log(
                &Line::new("store-failing")
                    .field("error", &e.to_string())
                    .field(
                        "effect",
                        "key logins answer unavailable until the store can be read",
                    )
                    .warn(),
            );
        }
    }

    /// And one when they work again.
    fn note_store_ok(&self) {
        use std::sync::atomic::Ordering;
        if self.store_failing.load(Ordering::Relaxed)
            && self.store_failing.swap(false, Ordering::SeqCst)
        {
            self.audit.log(&Line::new("store-recovered"));
        }
    }

    /// The key record and its effective expiry on success; on refusal the
    /// reason and, where known, the key id, for the log only.
    fn verify_inner(&self, mode: Mode, a: &Attempt<'_>, now: i64) -> Inline<Checked> {
        let (user, service, rhost) = (a.user, a.service, a.rhost);
        if let Ok(leaked) = Token::parse(user.as_bytes()) {
            if mode == Mode::Inline {
                return Err(NeedsBlocking);
            }
            // A user name that is itself a valid key has been typed into the
            // wrong field and is now in other logs: revoke it (S11).
            let id = self.revoke_leaked(&leaked);
            return Ok(Err(("user-name-is-a-key", id)));
        }
        let token = match Token::parse(a.token) {
            Ok(t) => t,
            Err(e) => return Ok(Err((token_refusal(e), None))),
        };
        let looked_up;
        let found = match a.found {
            Some(found) => found,
            None => {
                looked_up = self.store.by_hash(&token.hash());
                &looked_up
            }
        };
        let key = match found {
            Ok(Some(k)) => k.clone(),
            Ok(None) => return Ok(Err(("unknown-key", None))),
            // A lookup already made is not made again: its failure is the answer.
            Err(_) if mode == Mode::Inline && a.found.is_none() => return Err(NeedsBlocking),
            Err(e) => {
                self.note_store_failure(e);
                return Ok(Err((STORE_ERROR, None)));
            }
        };
        self.note_store_ok();
        let expires = match self.accept_key(mode, &key, user, service, rhost, now)? {
            Ok(expires) => expires,
            Err(r) => return Ok(Err((r, Some(key.id.clone())))),
        };
        self.usage.record(KeyUse {
            key_id: key.id.clone(),
            at: now,
            service: service.to_string(),
            rhost: rhost.to_string(),
            host: self.host_name().to_string(),
        });
        Ok(Ok((key, expires)))
    }

    /// Everything a stored key must pass to log `user` in to `service`
    /// from `rhost`: its own state and scope, then its owner's account.
    /// Accepted, its effective expiry (Unix seconds, 0 for never).
    // The login's facts, one each, as Verify and CheckKey have them.
    #[allow(clippy::too_many_arguments)]
    fn accept_key(
        &self,
        mode: Mode,
        key: &KeyRecord,
        user: &str,
        service: &str,
        rhost: &str,
        now: i64,
    ) -> Inline<std::result::Result<i64, &'static str>> {
        let policy = match mode {
            // Not while a save holds the policy through its fsync.
            Mode::Inline => self.store.policy_if_at_hand().ok_or(NeedsBlocking)?,
            Mode::MayBlock => match self.store.policy() {
                Ok(policy) => policy,
                Err(e) => {
                    self.note_store_failure(&e);
                    return Ok(Err(STORE_ERROR));
                }
            },
        };
        if let Err(r) = policy::check_key(key, now, &policy, &self.cfg.key_services, user, service)
        {
            return Ok(Err(r.as_str()));
        }
        if self.went_unused(key, &policy, now) {
            // Revoked for good: that writes, which an async worker must not.
            if mode == Mode::Inline {
                return Err(NeedsBlocking);
            }
            self.revoke_unused_keys(std::slice::from_ref(&key.id), &policy);
            return Ok(Err(unused::UNUSED));
        }
        if !policy::host_in_scope(&key.hosts, self.host_name()) {
            return Ok(Err("host-not-allowed"));
        }
        if !apikey_proto::sources::allows(&key.sources, rhost) {
            return Ok(Err("source-not-allowed"));
        }
        if key.kind == KeyKind::Session {
            // Its session's state may take a scan of /proc and a revocation.
            if mode == Mode::Inline {
                return Err(NeedsBlocking);
            }
            if let Err(r) = self.check_session_alive(key, &policy, now) {
                return Ok(Err(r));
            }
        }
        Ok(self
            .check_owner_account(mode, key, now)?
            .map(|()| warned_expiry(key, &policy)))
    }

    /// The account step of a key login (pam_apikey's acct_mgmt): the key
    /// that authenticated moments ago, by id, must still be good, so a
    /// revocation in between stops the login. Same callers as Verify.
    pub fn check_key(
        &self,
        c: &Caller,
        id: &str,
        user: &str,
        service: &str,
        rhost: &str,
    ) -> Result<()> {
        match self.check_key_in(Mode::MayBlock, c, id, user, service, rhost) {
            Ok(answer) => answer,
            Err(NeedsBlocking) => Err(KeysError::Failed("internal error".into())),
        }
    }

    /// [`check_key`](Self::check_key) for an async worker, as
    /// [`try_verify_inline`](Self::try_verify_inline) is for Verify.
    pub fn try_check_key_inline(
        &self,
        c: &Caller,
        id: &str,
        user: &str,
        service: &str,
        rhost: &str,
    ) -> Option<Result<()>> {
        self.check_key_in(Mode::Inline, c, id, user, service, rhost)
            .ok()
    }

    fn check_key_in(
        &self,
        mode: Mode,
        c: &Caller,
        id: &str,
        user: &str,
        service: &str,
        rhost: &str,
    ) -> Inline<Result<()>> {
        self.may_go_on(mode, false)?;
        let scope = self.verifier_scope_in(mode, c)?;
        if let Err(e) = policy::may_verify_for(&scope, service)
            .and_then(|_| check_verify_fields(user, service, rhost))
        {
            return Ok(Err(e));
        }
        let now = self.host.now();
        let outcome = match self.key_by_id(id) {
            Err(e) => return Ok(Err(e)),
            Ok(None) => Err("unknown-key"),
            Ok(Some(key)) => self
                .accept_key(mode, &key, user, service, rhost, now)?
                .map(|_expires| ()),
        };
        let line = Line::new("account-check")
            .num("caller_uid", c.uid)
            .field("user", loggable_user(user))
            .field("service", service)
            .field("rhost", rhost)
            .field("key", id);
        Ok(match outcome {
            Ok(()) => {
                self.audit.log(&line.field("outcome", "ok"));
                Ok(())
            }
            Err(reason) => {
                self.audit.log(
                    &line
                        .field("outcome", "refused")
                        .field("reason", reason)
                        .warn(),
                );
                Err(KeysError::Refused("the key is no longer accepted".into()))
            }
        })
    }

    /// S8: the account must still exist under the same name, be neither
    /// locked nor expired, and be allowed to hold keys. A definitely gone or
    /// renamed account has its keys revoked for good; a lookup that fails
    /// only refuses.
    /// Inline, only the host's quick answers are used, and a gone or
    /// renamed account (whose keys are then revoked) is left to MayBlock.
    fn check_owner_account(
        &self,
        mode: Mode,
        key: &KeyRecord,
        now: i64,
    ) -> Inline<std::result::Result<(), &'static str>> {
        let today = now.div_euclid(86400);
        let mut quick_state = None;
        let found = match mode {
            // Fleet keys belong to user names: the account here is the one
            // with that name, whatever its uid, and one missing here is
            // only not on this host (no revocation for the whole fleet).
            Mode::MayBlock if self.store.shared() => {
                match self.host.account_by_name(&key.owner_name) {
                    Lookup::Gone => return Ok(Err("no-such-account-here")),
                    other => other,
                }
            }
            Mode::MayBlock => self.host.account_by_uid(key.owner_uid),
            Mode::Inline => match self.host.quick_account_state(key.owner_uid, today) {
                Some((a, state)) if a.name == key.owner_name => {
                    quick_state = Some(state);
                    Lookup::Found(a)
                }
                _ => return Err(NeedsBlocking),
            },
        };
        let account = match found {
            Lookup::Found(a) => a,
            Lookup::Gone => {
                self.revoke_owner_for_good(key, "account-deleted");
                return Ok(Err("account-deleted"));
            }
            Lookup::Unavailable(_) => return Ok(Err("account-lookup-failed")),
        };
        if account.name != key.owner_name {
            self.revoke_owner_for_good(key, "account-renamed");
            return Ok(Err("account-renamed"));
        }
        if !policy::may_hold_keys(
            account.uid,
            &account.name,
            self.host.uid_min(),
            &self.cfg.allow_system_accounts,
        ) {
            return Ok(Err("system-account"));
        }
        let state = match quick_state {
            Some(state) => Ok(state),
            None => self.host.shadow_state(&account.name, today),
        };
        Ok(match state {
            Ok(ShadowState::Usable) => Ok(()),
            Ok(ShadowState::Locked) => Err("account-locked"),
            Ok(ShadowState::Expired) => Err("account-expired"),
            Err(_) => Err("shadow-unreadable"),
        })
    }

    fn revoke_owner_for_good(&self, key: &KeyRecord, reason: &str) {
        let by = RevokeBy {
            uid: 0,
            at: self.host.now(),
            reason,
        };
        // Every key issued under that uid and name is void, not just this one.
        let ids = match self.store.list_active(Some(key.owner_uid)) {
            Ok(keys) => keys
                .into_iter()
                .filter(|k| k.owner_name == key.owner_name)
                .map(|k| k.id)
                .collect::<Vec<_>>(),
            Err(_) => vec![key.id.clone()],
        };
        let result = self.store.revoke(&ids, by);
        let line = Line::new("revoke")
            .field("reason", reason)
            .field("user", &key.owner_name)
            .num("uid", key.owner_uid)
            .field("keys", &ids.join(","))
            .field("outcome", if result.is_ok() { "ok" } else { "Failed" })
            .warn();
        self.audit.log(&line);
    }

    fn revoke_leaked(&self, token: &Token) -> Option<String> {
        let key = self.store.by_hash(&token.hash()).ok().flatten()?;
        let by = self.revoke_by_daemon("leaked-as-user-name");
        let result = self.store.revoke(std::slice::from_ref(&key.id), by);
        let line = Line::new("revoke")
            .field("reason", "leaked-as-user-name")
            .field("user", &key.owner_name)
            .field("key", &key.id)
            .field("outcome", if result.is_ok() { "ok" } else { "Failed" })
            .warn();
        self.audit.log(&line);
        Some(key.id)
    }

    /// Writes buffered last-used records; called once a minute and at exit.
    pub fn flush_usage(&self) -> std::result::Result<usize, StoreError> {
        let taken = self.usage.take();
        let uses = taken.last_uses();
        // Oldest first, so that the store's later rows are the newer uses.
        let pairs: Vec<UsePair> = taken
            .pairs
            .values()
            .flat_map(|p| p.iter().rev())
            .cloned()
            .collect();
        // A failed write puts everything back: last uses written already
        // are written again, which changes nothing (they never go back).
        let written = self
            .store
            .record_uses(&uses)
            .and_then(|()| self.store.record_use_pairs(&pairs));
        if let Err(e) = written {
            self.usage.restore(taken);
            return Err(e);
        }
        Ok(uses.len())
    }

    /// Returns once every audit line logged so far has been written;
    /// false if syslog took none for [`crate::audit::FLUSH_WAIT`].
    pub fn flush_audit(&self) -> bool {
        self.audit.flush()
    }

    /// Logs the outcome line of a call by `uid`: always when it succeeded
    /// or the daemon failed, and for a refusal only within the caller's
    /// burst (see [`crate::refusal_log`]); the rest become a summary.
    pub(crate) fn audit_outcome(&self, uid: u32, line: &Line, error: Option<&KeysError>) {
        let refused = error.is_some_and(|e| !matches!(e, KeysError::Failed(_)));
        if refused
            && !self
                .refusals
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .admit(uid)
        {
            return;
        }
        self.audit.log(line);
    }

    /// One line per caller whose refusals were not all logged this minute;
    /// called once a minute and on the way out.
    pub fn log_refusal_summaries(&self) {
        let summaries = self
            .refusals
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take_summaries();
        for (uid, count) in summaries {
            let line = Line::new("refusal-summary")
                .num("caller_uid", uid)
                .num("refused_unlogged", count as i64)
                .warn();
            self.audit.log(&line);
        }
    }

    /// Logs one summary line per source whose refusals were not logged
    /// one by one; called once a minute.
    pub fn log_throttle_summaries(&self) {
        let now = self.host.now();
        let summaries = self
            .throttle
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .summaries(now);
        for s in summaries {
            let line = Line::new("verify-summary")
                .num("caller_uid", s.source.uid)
                .field("rhost", &s.source.rhost)
                .num("refused_unlogged", s.count)
                .num("failures_in_a_row", s.failures)
                .warn();
            self.audit.log(&line);
        }
    }

    /// `user` is whose keys (`*` for the whole site), `requested` the ids
    /// asked for or `all`/`site`; `key` lists what was actually revoked.
    fn audit_revoke(&self, c: &Caller, user: &str, requested: &str, outcome: &Result<Vec<String>>) {
        let line = Line::new("revoke")
            .num("caller_uid", c.uid)
            .num("caller_pid", c.pid)
            .field("user", user)
            .field("requested", requested);
        let line = match outcome {
            Ok(ids) => line.field("key", &ids.join(",")).field("outcome", "ok"),
            Err(e) => line
                .field("key", "")
                .field("outcome", e.short_name())
                .warn(),
        };
        self.audit_outcome(c.uid, &line, outcome.as_ref().err());
    }

    /// "by alice", "by root (revoked-site)", "by the daemon (account-gone)":
    /// who ended a key, for the owner asking to revoke it again.
    fn revoked_by_text(&self, r: &crate::store::Revocation) -> String {
        let who = printable(&self.user_name(r.by_uid), 64);
        match r.reason.as_str() {
            "revoked" => format!("by {who}"),
            "revoked-all" | "revoked-site" | "rotated" => {
                format!("by {who} ({})", printable(&r.reason, 40))
            }
            // Revocations the daemon made itself (account gone, leaked).
            other => format!("by the daemon ({})", printable(other, 40)),
        }
    }

    fn caller_name(&self, c: &Caller) -> String {
        self.user_name(c.uid)
    }

    /// The account's name, or "uid N" when it has none.
    fn user_name(&self, uid: u32) -> String {
        match self.host.account_by_uid(uid) {
            Lookup::Found(a) => a.name,
            _ => format!("uid {uid}"),
        }
    }

    /// A key's last use: this host's not yet written, or the store's (in
    /// a fleet, maybe another host's and later), whichever is later.
    fn last_use(&self, k: &KeyRecord) -> Option<KeyUse> {
        match (self.usage.pending(&k.id), &k.last_used) {
            (Some(p), Some(s)) if s.at > p.at => Some(s.clone()),
            (Some(p), _) => Some(p),
            (None, s) => s.clone(),
        }
    }

    fn info(&self, k: &KeyRecord, policy: &Policy) -> KeyInfo {
        self.info_with(k, policy, self.last_use(k))
    }

    /// [`info`](Self::info) with the key's last use already looked up.
    fn info_with(&self, k: &KeyRecord, policy: &Policy, last: Option<KeyUse>) -> KeyInfo {
        let (last_used, last_service, last_rhost) = match last {
            Some(u) => (u.at, u.service, u.rhost),
            None => (0, String::new(), String::new()),
        };
        KeyInfo {
            id: k.id.clone(),
            user: k.owner_name.clone(),
            uid: k.owner_uid,
            name: k.name.clone(),
            services: k.services.clone(),
            created: k.created,
            expires: policy::effective_expiry(k.created, k.expires, policy.expiry).unwrap_or(0),
            last_used,
            last_service,
            last_rhost,
            created_by_uid: k.created_by_uid,
            session: k.kind == KeyKind::Session,
            revoked: k.revoked.as_ref().map_or(0, |r| r.at),
        }
    }

    /// A key as ListPageWith shows it: its [`KeyInfo`] and what it has
    /// beyond that, from one look at its last use.
    fn info_and_extra(&self, k: &KeyRecord, policy: &Policy) -> (KeyInfo, KeyExtra) {
        let last = self.last_use(k);
        let expires_soon = k.revoked.is_none()
            && self
                .expires_soon(warned_expiry(k, policy), self.host.now())
                .is_some();
        let extra = KeyExtra {
            made_on: k.made_on.clone(),
            hosts: k.hosts.clone(),
            last_host: last.as_ref().map(|u| u.host.clone()).unwrap_or_default(),
            from: k.sources.clone(),
            expires_soon,
        };
        (self.info_with(k, policy, last), extra)
    }

    fn revoke_by<'a>(&self, c: &Caller, reason: &'a str) -> RevokeBy<'a> {
        RevokeBy {
            uid: c.uid,
            at: self.host.now(),
            reason,
        }
    }

    /// A revocation that is the daemon's own act (recorded as root's).
    fn revoke_by_daemon<'a>(&self, reason: &'a str) -> RevokeBy<'a> {
        RevokeBy {
            uid: 0,
            at: self.host.now(),
            reason,
        }
    }

    /// Looks up a key by an id the caller gave, which is checked first.
    fn key_by_id(&self, id: &str) -> Result<Option<KeyRecord>> {
        if !is_key_id(id) {
            return Err(KeysError::InvalidArgument(format!(
                "'{}' is not a key id",
                printable(id, 20)
            )));
        }
        self.store.by_id(id).map_err(store_error)
    }

    fn policy(&self) -> Result<Policy> {
        self.store.policy().map_err(store_error)
    }

    fn is_admin(&self, c: &Caller) -> bool {
        let gids: Vec<u32> = self
            .cfg
            .admin_groups
            .iter()
            .filter_map(|g| self.host.group_gid(g))
            .collect();
        policy::is_admin(c.uid, &c.gids, &gids)
    }

    /// This host's name in the fleet; empty on a single host.
    fn host_name(&self) -> &str {
        self.cfg.fleet.as_ref().map_or("", |f| f.host.as_str())
    }

    /// Inline, a check starts only if the audit lines it may log will not
    /// wait for a stalled syslog and its lookups will not wait on the
    /// network (a shared store): an async worker of the bus must never
    /// block, or every call on the bus stops with it.
    /// `looked_up`: the key's lookup was made already (by a future).
    fn may_go_on(&self, mode: Mode, looked_up: bool) -> Inline<()> {
        match mode {
            Mode::Inline if !self.audit.has_room() || (self.store.shared() && !looked_up) => {
                Err(NeedsBlocking)
            }
            _ => Ok(()),
        }
    }

    fn verifier_scope(&self, c: &Caller) -> VerifierScope {
        match self.verifier_scope_in(Mode::MayBlock, c) {
            Ok(scope) => scope,
            Err(NeedsBlocking) => VerifierScope::None,
        }
    }

    /// Inline, a verifier group the local files do not name stops the
    /// check (it may take an NSS call to resolve).
    fn verifier_scope_in(&self, mode: Mode, c: &Caller) -> Inline<VerifierScope> {
        if c.uid == 0 {
            return Ok(VerifierScope::Any);
        }
        let mut groups: Vec<(u32, Vec<String>)> = Vec::new();
        for (g, p) in &self.cfg.verifier_groups {
            let gid = match mode {
                Mode::MayBlock => self.host.group_gid(g),
                Mode::Inline => Some(self.host.quick_group_gid(g).ok_or(NeedsBlocking)?),
            };
            if let Some(gid) = gid {
                groups.push((gid, p.clone()));
            }
        }
        Ok(policy::verifier_scope(c.uid, &c.gids, &groups))
    }

    fn proc_identity(&self, c: &Caller) -> Result<crate::host::ProcIdentity> {
        // Anything unreadable means refusal (S4).
        self.host
            .proc_identity(c.pid, c.uid, false)
            .map_err(|e| KeysError::Denied(format!("cannot confirm who the caller is: {e}")))
    }

    fn account_by_uid(&self, uid: u32) -> Result<crate::host::Account> {
        match self.host.account_by_uid(uid) {
            Lookup::Found(a) => Ok(a),
            Lookup::Gone => Err(KeysError::NotFound(format!("uid {uid} has no account"))),
            Lookup::Unavailable(e) => Err(KeysError::Failed(format!("account lookup failed: {e}"))),
        }
    }

    fn account_by_name(&self, name: &str) -> Result<crate::host::Account> {
        match self.host.account_by_name(name) {
            Lookup::Found(a) => Ok(a),
            Lookup::Gone => Err(KeysError::NotFound(format!(
                "no user named '{}'",
                printable(name, 64)
            ))),
            Lookup::Unavailable(e) => Err(KeysError::Failed(format!("account lookup failed: {e}"))),
        }
    }

    fn check_may_hold_keys(&self, uid: u32, name: &str) -> Result<()> {
        if policy::may_hold_keys(
            uid,
            name,
            self.host.uid_min(),
            &self.cfg.allow_system_accounts,
        ) {
            Ok(())
        } else {
            Err(KeysError::PolicyForbids(format!(
                "'{}' is root or a system account; add it to allow_system_accounts to give it keys",
                printable(name, 64)
            )))
        }
    }

    fn check_disk(&self) -> Result<()> {
        match self.store.free_space() {
            Some(free) if free < self.cfg.min_free_disk_bytes => {
                Err(KeysError::QuotaExceeded(format!(
                    "the disk holding the key store has only {} MiB free (minimum {} MiB); \
                 no new keys until space is freed",
                    free >> 20,
                    self.cfg.min_free_disk_bytes >> 20
                )))
            }
            _ => Ok(()),
        }
    }
}

/// A backup goes into an empty regular file: never a pipe or a device
/// (the daemon would block on it, or write where it should not), never
/// over an existing file's contents.
fn check_backup_target(out: &std::fs::File) -> Result<()> {
    let meta = out
        .metadata()
        .map_err(|e| KeysError::InvalidArgument(format!("cannot inspect the file given: {e}")))?;
    if !meta.is_file() {
        return Err(KeysError::InvalidArgument(
            "a backup goes into a regular file".into(),
        ));
    }
    if meta.len() != 0 {
        return Err(KeysError::InvalidArgument(
            "the file given is not empty; a backup goes into a new file".into(),
        ));
    }
    Ok(())
}

/// Keys in one reply of List; more must be paged.
pub const LIST_MAX: u32 = 5000;
/// Keys in one page of ListPage: a page of the longest records stays well
/// under a mebibyte on the bus.
pub const PAGE_MAX: u32 = 1000;

/// What a page of ListPage may take on the bus, about.
pub const PAGE_BYTES: usize = 512 * 1024;

/// One page of stored keys, whether more follow, and the policy they are
/// shown under.
struct Page {
    keys: Vec<(i64, KeyRecord)>,
    more: bool,
    policy: Policy,
}

/// The keys of a page that fit in `budget` bytes on the bus (one always
/// does), and the position to ask after next: the last key's when the
/// store has `more` or the page was cut short, "" when the listing is done.
fn fill_page<T>(
    keys: impl ExactSizeIterator<Item = (i64, T)>,
    more: bool,
    budget: usize,
    size: impl Fn(&T) -> usize,
) -> (Vec<T>, String) {
    let offered = keys.len();
    let mut page = Vec::with_capacity(offered);
    let mut bytes = 0;
    let mut last = None;
    for (position, info) in keys {
        bytes += size(&info);
        if bytes > budget && !page.is_empty() {
            break;
        }
        page.push(info);
        last = Some(position);
    }
    let cut_short = page.len() < offered;
    let next = match last {
        Some(position) if more || cut_short => position.to_string(),
        _ => String::new(),
    };
    (page, next)
}

/// A record and the dictionary beside it (ListPageWith).
fn encoded_size_with((info, extra): &(KeyInfo, KeyExtra)) -> usize {
    encoded_size(info) + extra.encoded_size()
}

/// About what a key's record takes in a bus message: its strings with
/// their length words and padding, and the fixed fields.
fn encoded_size(k: &KeyInfo) -> usize {
    let text = |s: &str| s.len() + 8;
    text(&k.id)
        + text(&k.user)
        + text(&k.name)
        + k.services.iter().map(|s| text(s)).sum::<usize>()
        + text(&k.last_service)
        + text(&k.last_rhost)
        + 96
}

/// What Verify's check of a key found: the key and its effective expiry
/// (Unix seconds, 0 for never), or why it was refused and, where known,
/// which key it was (for the log only).
type Checked = std::result::Result<(KeyRecord, i64), (&'static str, Option<String>)>;

/// The expiry a login with `key` may be warned about (Unix seconds, 0 for
/// none): the effective one of a long-lived key. A session key ends with
/// its session by design; warning of that would be noise.
fn warned_expiry(key: &KeyRecord, policy: &Policy) -> i64 {
    match key.kind {
        KeyKind::Session => 0,
        KeyKind::LongLived => {
            policy::effective_expiry(key.created, key.expires, policy.expiry).unwrap_or(0)
        }
    }
}

/// Why a token that does not parse is refused, as the audit log says it.
fn token_refusal(e: apikey_proto::TokenError) -> &'static str {
    match e {
        apikey_proto::TokenError::BadChecksum => "bad-checksum",
        _ => "malformed",
    }
}

/// A Verify's audit line for a key it did not accept.
fn verify_refusal(line: Line, key_id: Option<&str>, outcome: &str, reason: &str) -> Line {
    line.field("key", key_id.unwrap_or("-"))
        .field("outcome", outcome)
        .field("reason", reason)
        .warn()
}

/// The refusal reason of a Verify the store could not answer.
const STORE_ERROR: &str = "store-error";

fn store_error(e: StoreError) -> KeysError {
    match e {
        StoreError::TooManyKeys(n) => KeysError::QuotaExceeded(format!(
            "this user already has {n} active keys, the most allowed (max_keys_per_user); \
             revoke some first"
        )),
        StoreError::DiskFull => {
            KeysError::Failed("the disk holding the key store is full; nothing was changed".into())
        }
        StoreError::NotActive => KeysError::NotFound("the key is not active".into()),
        StoreError::Denied(m) => KeysError::Denied(m),
        StoreError::Failed(m) => KeysError::Failed(format!("the key store failed: {m}")),
    }
}

fn check_name(name: &str) -> Result<()> {
    if name.chars().count() > MAX_NAME {
        return Err(KeysError::InvalidArgument(format!(
            "the key name is longer than {MAX_NAME} characters"
        )));
    }
    if name.chars().any(char::is_control) {
        return Err(KeysError::InvalidArgument(
            "the key name contains control characters".into(),
        ));
    }
    Ok(())
}

fn check_field(what: &str, value: &str) -> Result<()> {
    if value.len() > MAX_FIELD || value.chars().any(char::is_control) {
        return Err(KeysError::InvalidArgument(format!(
            "the {what} is longer than {MAX_FIELD} bytes or contains control characters"
        )));
    }
    Ok(())
}

/// A user name as the audit log may show it: anything typed into the user
/// field that looks like a key stays out of the log (S11); a valid key is
/// named by id in its revocation line instead.
fn loggable_user(user: &str) -> &str {
    if is_key_shaped(user.as_bytes()) {
        "(an API key)"
    } else {
        user
    }
}

fn check_verify_fields(user: &str, service: &str, rhost: &str) -> Result<()> {
    check_field("user", user)?;
    check_field("remote host", rhost)?;
    if !service.is_empty() && !is_valid_service(service) {
        return Err(KeysError::InvalidArgument(format!(
            "'{}' is not a PAM service name",
            printable(service, 64)
        )));
    }
    Ok(())
}

fn parse_expiry(text: &str) -> Result<Option<Expiry>> {
    if text.is_empty() {
        return Ok(None);
    }
    text.parse().map(Some).map_err(KeysError::InvalidArgument)
}

#[cfg(test)]
mod page_tests {
    use super::*;

    fn key(n: i64) -> (i64, KeyInfo) {
        let info = KeyInfo {
            id: format!("{n:012}"),
            user: String::new(),
            uid: 0,
            name: String::new(),
            services: Vec::new(),
            created: 0,
            expires: 0,
            last_used: 0,
            last_service: String::new(),
            last_rhost: String::new(),
            created_by_uid: 0,
            session: false,
            revoked: 0,
        };
        (n * 10, info)
    }

    fn page(n: i64, more: bool, budget: usize) -> (Vec<i64>, String) {
        let (keys, next) = fill_page(
            (1..=n).map(key).collect::<Vec<_>>().into_iter(),
            more,
            budget,
            encoded_size,
        );
        let ids = keys.iter().map(|k| k.id.parse().unwrap()).collect();
        (ids, next)
    }

    /// What a record takes on the bus: each string with its length word
    /// and padding (8), and 96 for the fixed fields.
    #[test]
    fn a_records_size_counts_its_strings() {
        let (_, mut info) = key(1);
        info.user = "alice".into();
        info.name = "laptop".into();
        info.services = vec!["sshd*".into(), "vsftpd".into()];
        info.last_service = "sshd".into();
        info.last_rhost = "10.0.0.1".into();
        assert_eq!(encoded_size(&info), 20 + 13 + 14 + 13 + 14 + 12 + 16 + 96);
    }

    /// A fleet key's extras count against the page's budget too.
    #[test]
    fn a_keys_extras_take_room_in_its_page() {
        let info = key(1).1;
        let big = KeyExtra {
            made_on: "adm-1".into(),
            hosts: (0..64).map(|i| format!("web-{i}.example.org")).collect(),
            last_host: "web-3".into(),
            from: (0..32).map(|i| format!("2001:db8:{i}::/48")).collect(),
            expires_soon: true,
        };
        let size = encoded_size_with(&(info.clone(), big.clone()));
        assert_eq!(size, encoded_size(&info) + big.encoded_size());
        let keys = |extra: &KeyExtra| {
            (1..=4)
                .map(|i| (i, (key(i).1, extra.clone())))
                .collect::<Vec<_>>()
                .into_iter()
        };
        let budget = 4 * encoded_size(&info) + 8 * 4;
        let (plain, _) = fill_page(keys(&KeyExtra::default()), false, budget, encoded_size_with);
        assert_eq!(plain.len(), 4);
        let (cut, next) = fill_page(keys(&big), false, budget, encoded_size_with);
        assert!(cut.len() < 4, "{}", cut.len());
        assert_eq!(next, cut.len().to_string());
    }

    /// Pages are cut where the next key would pass the byte budget, never
    /// before the first key, and say where the next page starts.
    #[test]
    fn a_page_holds_what_fits_and_says_where_to_go_on() {
        let one = encoded_size(&key(1).1);
        // Exactly three fit; the listing is done when the store has no more.
        assert_eq!(page(3, false, 3 * one), (vec![1, 2, 3], String::new()));
        assert_eq!(page(3, true, 3 * one), (vec![1, 2, 3], "30".into()));
        // A fourth key is cut and comes on the next page.
        assert_eq!(page(5, false, 3 * one), (vec![1, 2, 3], "30".into()));
        assert_eq!(
            page(5, false, 3 * one + one / 2),
            (vec![1, 2, 3], "30".into())
        );
        // One key always fits, however small the budget.
        assert_eq!(page(1, false, 1), (vec![1], String::new()));
        assert_eq!(page(2, false, 1), (vec![1], "10".into()));
        assert_eq!(page(0, true, 1), (vec![], String::new()));
    }
}

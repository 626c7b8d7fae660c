//! The key store behind a small interface, so that a second backend (a
//! shared PostgreSQL database for fleets) can be added without touching
//! the bus layer or the policy code.

#[cfg(test)]
pub(crate) mod contract_tests;
pub mod fleet;
mod migrations;
pub mod postgres;
pub mod sqlite;

use apikey_proto::Expiry;
use std::fmt;

pub use sqlite::SqliteStore;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyKind {
    LongLived,
    Session,
}

impl KeyKind {
    fn as_str(self) -> &'static str {
        match self {
            KeyKind::LongLived => "long",
            KeyKind::Session => "session",
        }
    }

    fn from_str(s: &str) -> Option<KeyKind> {
        match s {
            "long" => Some(KeyKind::LongLived),
            "session" => Some(KeyKind::Session),
            _ => None,
        }
    }
}

/// One key as stored. `hash` is SHA-256 of the token; the token itself is
/// never stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyRecord {
    pub id: String,
    pub hash: [u8; 32],
    pub kind: KeyKind,
    pub owner_uid: u32,
    /// The owner's user name at generation: a key of a renamed account dies.
    pub owner_name: String,
    pub created_by_uid: u32,
    pub created_by_loginuid: Option<u32>,
    pub name: String,
    /// Service patterns; empty means every service the site allows.
    pub services: Vec<String>,
    /// Fleet mode: the host names or globs the key works on; empty means
    /// every host.
    pub hosts: Vec<String>,
    /// The networks (canonical CIDR) logins with the key may come from;
    /// empty means anywhere (see `apikey_proto::sources`).
    pub sources: Vec<String>,
    /// Fleet mode: the host the key was made on; empty on a single host.
    pub made_on: String,
    pub created: i64,
    /// The key's own expiry; the policy may cap it further.
    pub expires: Option<i64>,
    pub last_used: Option<KeyUse>,
    pub revoked: Option<Revocation>,
    /// Session keys only: the login session the key lives and dies with.
    pub binding: Option<SessionBinding>,
}

/// What a session key is bound to (S5).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionBinding {
    pub boot_id: String,
    pub audit_session: u32,
    pub loginuid: u32,
    /// The registered login session (OpenSession) the key ends with, when
    /// the login went through pam_apikey's session hook.
    pub handle: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyUse {
    pub key_id: String,
    pub at: i64,
    pub service: String,
    pub rhost: String,
    /// Fleet mode: the host it was used on; empty on a single host.
    pub host: String,
}

/// A (service, remote host) pair a key was used from, with the first and
/// last time: its use history keeps the newest [`USE_HISTORY`] pairs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsePair {
    pub key_id: String,
    pub service: String,
    pub rhost: String,
    pub first: i64,
    pub last: i64,
    /// Fleet mode: the host of the last use; empty on a single host.
    pub host: String,
}

/// What the metrics count in a store.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct KeyCounts {
    /// Long-lived keys neither revoked nor past their effective expiry.
    pub long_lived: u64,
    /// Session keys neither revoked nor past their expiry.
    pub sessions: u64,
    /// Active long-lived keys whose effective expiry is at most
    /// `soon_until`.
    pub expiring_soon: u64,
}

/// Pairs kept per key (GitLab shows a token's last IPs; ten tell where a
/// key is in use without growing with its traffic).
pub const USE_HISTORY: usize = 10;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Revocation {
    pub at: i64,
    pub by_uid: u32,
    pub reason: String,
}

/// Who revokes, when and why: kept with the key for the audit trail.
#[derive(Debug, Clone, Copy)]
pub struct RevokeBy<'a> {
    pub uid: u32,
    pub at: i64,
    pub reason: &'a str,
}

/// A login session the PAM module registered (OpenSession). Kept after it
/// closes: processes of a session can outlive its close (nohup, a
/// daemonised job) and still carry its audit session id, so what the
/// session was opened with must stay answerable for that id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionRecord {
    /// Random and unguessable: whoever holds it may close the session.
    pub handle: String,
    /// Audit session ids restart with every boot; the pair is the identity.
    pub boot_id: String,
    /// The opener's audit session id (`/proc/PID/sessionid`), if set.
    pub audit_session: Option<u32>,
    /// The opener's login uid, if set.
    pub loginuid: Option<u32>,
    pub caller_pid: u32,
    /// The account logging in as NSS resolved it; `None` when it did not
    /// resolve at the time (the session happens anyway, see OpenSession).
    pub uid: Option<u32>,
    pub user: String,
    pub service: String,
    pub rhost: String,
    pub tty: String,
    /// The key the session was authenticated with; `None` for any other
    /// credential.
    pub key_id: Option<String>,
    pub opened: i64,
    pub closed: Option<i64>,
    pub close_reason: Option<String>,
    /// How the login was authenticated, as the PAM module reported it
    /// (`password`, `key`, sshd's methods such as `publickey`); `None` for
    /// no authentication it saw (cron, systemd --user) and for sessions
    /// registered before this was recorded.
    pub auth: Option<String>,
}

/// The site policy as the daemon uses it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    pub allow_user_keys: bool,
    pub expiry: Expiry,
    pub users_see_own: bool,
    pub session_timeout_secs: u64,
    /// Every new long-lived key must name its networks (`--from`).
    pub require_from: bool,
    /// Long-lived keys unused for this many days are revoked; 0: never.
    pub revoke_unused_days: u32,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            allow_user_keys: false,
            expiry: Expiry::Never,
            users_see_own: true,
            session_timeout_secs: 30 * 60,
            require_from: false,
            revoke_unused_days: 0,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreError {
    /// The owner already has `max_keys_per_user` active keys.
    TooManyKeys(u32),
    /// The disk is full: nothing was written.
    DiskFull,
    /// Rotate named a key that does not exist or is no longer active.
    NotActive,
    /// The shared store's grants refuse this host the change (fleet mode:
    /// only issuer hosts make keys).
    Denied(String),
    /// Anything else: the store could not complete the operation.
    Failed(String),
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StoreError::TooManyKeys(n) => write!(f, "the user already has {n} active keys"),
            StoreError::DiskFull => f.write_str("the disk holding the key store is full"),
            StoreError::NotActive => f.write_str("the key is not active"),
            StoreError::Denied(m) => write!(f, "refused by the key store: {m}"),
            StoreError::Failed(m) => write!(f, "key store error: {m}"),
        }
    }
}

impl std::error::Error for StoreError {}

pub type StoreResult<T> = Result<T, StoreError>;

/// The policy from its stored `settings` rows; settings of a newer
/// version are kept in the store and ignored here.
pub fn policy_from_settings(
    rows: impl IntoIterator<Item = (String, String)>,
) -> StoreResult<Policy> {
    let mut policy = Policy::default();
    for (name, value) in rows {
        let bad = || StoreError::Failed(format!("stored setting {name} = '{value}' is invalid"));
        match name.as_str() {
            "allow_user_keys" => policy.allow_user_keys = parse_yes_no(&value).ok_or_else(bad)?,
            "expiry" => policy.expiry = value.parse().map_err(|_| bad())?,
            "users_see_own" => policy.users_see_own = parse_yes_no(&value).ok_or_else(bad)?,
            "session_timeout" => policy.session_timeout_secs = value.parse().map_err(|_| bad())?,
            "require_from" => policy.require_from = parse_yes_no(&value).ok_or_else(bad)?,
            "revoke_unused" => {
                policy.revoke_unused_days =
                    apikey_proto::extra::revoke_unused_days(&value).ok_or_else(bad)?
            }
            _ => {}
        }
    }
    Ok(policy)
}

/// The rows [`policy_from_settings`] reads back.
pub fn policy_settings(policy: &Policy) -> [(&'static str, String); 6] {
    let yes_no = |b: bool| yes_no(b).to_string();
    [
        ("allow_user_keys", yes_no(policy.allow_user_keys)),
        ("expiry", policy.expiry.to_string()),
        ("users_see_own", yes_no(policy.users_see_own)),
        ("session_timeout", policy.session_timeout_secs.to_string()),
        ("require_from", yes_no(policy.require_from)),
        (
            "revoke_unused",
            apikey_proto::extra::revoke_unused_choice(policy.revoke_unused_days),
        ),
    ]
}

/// How a yes/no setting is written.
pub(crate) fn yes_no(b: bool) -> &'static str {
    if b {
        "yes"
    } else {
        "no"
    }
}

pub(crate) fn parse_yes_no(s: &str) -> Option<bool> {
    match s {
        "yes" => Some(true),
        "no" => Some(false),
        _ => None,
    }
}

/// What one page of a listing holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ListQuery {
    pub owner: Option<u32>,
    pub sessions: bool,
    /// Long-lived keys too (fleet mode lists the local store's session
    /// keys alone).
    pub long_lived: bool,
    /// Keys past their expiry (not revoked) too.
    pub expired: bool,
    /// Revoked keys too.
    pub revoked: bool,
    /// Expired means expiring at or before this time.
    pub now: i64,
    pub after: i64,
    pub limit: u32,
}

/// What [`Store::prune`] may delete.
#[derive(Debug, Clone)]
pub struct Prune {
    /// Keys revoked, or expired, before this time.
    pub ended_before: i64,
    /// This boot's id: sessions of other boots are over.
    pub boot_id: String,
    /// The audit sessions some process belongs to now. A session of this
    /// boot outside them has no process left to act for it (S5, S6 look
    /// only at the caller's own audit session), so its row can go, unless
    /// it was opened at or after `opened_before` (the look at /proc may
    /// have missed it) or an active session key is bound to it.
    pub live_sessions: std::collections::HashSet<u32>,
    pub opened_before: i64,
}

/// What [`Store::by_hash_async`] resolves to.
pub type LookupFuture<'a> = std::pin::Pin<
    Box<dyn std::future::Future<Output = Option<StoreResult<Option<KeyRecord>>>> + Send + 'a>,
>;

/// Every write is durable before it returns: a caller told "done" keeps
/// its revocation through a crash or a power cut.
pub trait Store: Send + Sync {
    /// True when keys are shared with other hosts (fleet mode): owners are
    /// user names, an account missing here is not an account deleted
    /// everywhere, and key lookups may wait on the network, so an async
    /// worker awaits them ([`by_hash_async`](Self::by_hash_async)) rather
    /// than calling them.
    fn shared(&self) -> bool {
        false
    }
    /// Adds a key unless its owner already has `max_active` active keys
    /// (checked in the same transaction).
    fn insert(&self, key: &KeyRecord, max_active: u32, now: i64) -> StoreResult<()>;
    fn by_hash(&self, hash: &[u8; 32]) -> StoreResult<Option<KeyRecord>>;
    /// [`by_hash`](Self::by_hash) for an async worker, where the lookup
    /// waits on the network (a shared store): the same answer, or `None`
    /// when it would need a call that blocks (then `by_hash` on a thread
    /// that may). A local store answers inline and never needs this.
    fn by_hash_async<'a>(&'a self, _hash: &'a [u8; 32]) -> LookupFuture<'a> {
        Box::pin(std::future::ready(None))
    }
    fn by_id(&self, id: &str) -> StoreResult<Option<KeyRecord>>;
    /// Unrevoked keys, of one owner or all.
    fn list_active(&self, owner: Option<u32>) -> StoreResult<Vec<KeyRecord>>;
    /// Up to `q.limit` keys of a listing, in the order they were stored,
    /// after the position `q.after` (0: from the start), each with its
    /// position; and whether more follow.
    fn list_page(&self, q: &ListQuery) -> StoreResult<(Vec<(i64, KeyRecord)>, bool)>;
    /// Revokes those of `ids` still active; returns the ids revoked.
    fn revoke(&self, ids: &[String], by: RevokeBy<'_>) -> StoreResult<Vec<String>>;
    /// Revokes every active key of `owner`, or of everyone.
    fn revoke_owner(&self, owner: Option<u32>, by: RevokeBy<'_>) -> StoreResult<Vec<String>>;
    /// Revokes `old_id` and inserts `new` in one transaction.
    fn replace(&self, old_id: &str, new: &KeyRecord, by: RevokeBy<'_>) -> StoreResult<()>;
    fn record_uses(&self, uses: &[KeyUse]) -> StoreResult<()>;
    /// Adds to each key's use history (first and last times merged with
    /// what is there), keeping the newest [`USE_HISTORY`] pairs per key;
    /// pairs of keys that are gone are passed over.
    fn record_use_pairs(&self, pairs: &[UsePair]) -> StoreResult<()>;
    /// A key's use history, newest last use first, at most
    /// [`USE_HISTORY`] pairs.
    fn use_history(&self, key_id: &str) -> StoreResult<Vec<UsePair>>;
    /// The keys of `owner` (or everyone's) counted at `now`, for the
    /// metrics and a caller's status: a long-lived key's effective expiry
    /// is the earlier of its own and `cap` seconds after it was made (the
    /// site's `--expires`, `None` for never).
    fn key_counts(
        &self,
        owner: Option<u32>,
        now: i64,
        soon_until: i64,
        cap: Option<i64>,
    ) -> StoreResult<KeyCounts>;
    /// The bytes the store takes on this host's disk, where it has files.
    fn size_bytes(&self) -> Option<u64> {
        None
    }
    /// When a write last succeeded (Unix seconds) since the store was
    /// opened; `None` before the first.
    fn last_write(&self) -> Option<i64> {
        None
    }
    fn policy(&self) -> StoreResult<Policy>;
    /// The policy if it can be had without waiting (cached, and no save
    /// in progress); `None` otherwise. For threads that must not block.
    fn policy_if_at_hand(&self) -> Option<Policy> {
        None
    }
    fn save_policy(&self, policy: &Policy) -> StoreResult<()>;
    /// Records a newly opened login session.
    fn open_session(&self, session: &SessionRecord) -> StoreResult<()>;
    /// Marks the session closed; false when the handle is unknown or the
    /// session was already closed (the first close wins).
    fn close_session(&self, handle: &str, at: i64, reason: &str) -> StoreResult<bool>;
    fn session(&self, handle: &str) -> StoreResult<Option<SessionRecord>>;
    /// Registered sessions of one audit session, oldest first.
    fn sessions_of(&self, boot_id: &str, audit_session: u32) -> StoreResult<Vec<SessionRecord>>;
    /// Session keys not yet revoked.
    fn active_session_keys(&self) -> StoreResult<Vec<KeyRecord>>;
    /// Revokes the active session keys bound to the session `handle`.
    fn revoke_bound_to(&self, handle: &str, by: RevokeBy<'_>) -> StoreResult<Vec<String>>;
    /// Bytes free for the store, where the backend can tell.
    fn free_space(&self) -> Option<u64> {
        None
    }
    /// Deletes what nothing needs any more, in small transactions, and
    /// gives the room back to the file system: keys revoked or expired
    /// before `ended_before`, and registered sessions no process can
    /// belong to (see [`Prune`]). Returns how many of each went.
    fn prune(&self, _what: &Prune) -> StoreResult<(u64, u64)> {
        Ok((0, 0))
    }
    /// Folds everything written into the main file, so that a copy of it
    /// alone holds every key (at a clean stop).
    fn checkpoint(&self) -> StoreResult<()> {
        Ok(())
    }
    /// Writes a consistent copy of the whole store into `out` (an empty
    /// file) while others go on reading and writing; returns its size in
    /// bytes.
    fn backup_into(&self, _out: &mut std::fs::File) -> StoreResult<u64> {
        Err(StoreError::Failed(
            "this key store cannot be backed up".into(),
        ))
    }
}

//! Fleet mode's store: long-lived keys and the site policy in the shared
//! PostgreSQL database; login sessions and session keys in the host's own
//! SQLite store. A session key is bound to one host's boot and login
//! session (S5) and dies with it, so no other host could ever accept it:
//! keeping it local keeps the session path off the network and its keys
//! out of every other host's reach. Long-lived keys in the local store
//! (from before fleet mode) are not used; `apikeyd --migrate-to-fleet`
//! copies them into the database.

use super::postgres::PgKeys;
use super::{
    KeyCounts, KeyKind, KeyRecord, KeyUse, ListQuery, LookupFuture, Policy, Prune, RevokeBy,
    SessionRecord, SqliteStore, Store, StoreError, StoreResult, UsePair,
};

/// Listing positions of local session keys start here, after any
/// position the shared table can reach in practice.
pub const LOCAL_POSITIONS: i64 = 1 << 48;

pub struct FleetStore {
    pub keys: PgKeys,
    pub local: SqliteStore,
}

fn session_only(key: Option<KeyRecord>) -> Option<KeyRecord> {
    key.filter(|k| k.kind == KeyKind::Session)
}

impl Store for FleetStore {
    fn shared(&self) -> bool {
        true
    }

    fn insert(&self, key: &KeyRecord, max_active: u32, now: i64) -> StoreResult<()> {
        match key.kind {
            KeyKind::Session => self.local.insert(key, max_active, now),
            KeyKind::LongLived => self.keys.insert(key, max_active, now),
        }
    }

    fn by_hash(&self, hash: &[u8; 32]) -> StoreResult<Option<KeyRecord>> {
        match session_only(self.local.by_hash(hash)?) {
            Some(k) => Ok(Some(k)),
            None => self.keys.by_hash(hash),
        }
    }

    fn by_hash_async<'a>(&'a self, hash: &'a [u8; 32]) -> LookupFuture<'a> {
        Box::pin(async move {
            match self.local.by_hash(hash).map(session_only) {
                Ok(Some(k)) => Some(Ok(Some(k))),
                Ok(None) => self.keys.by_hash_async(hash).await,
                Err(e) => Some(Err(e)),
            }
        })
    }

    fn by_id(&self, id: &str) -> StoreResult<Option<KeyRecord>> {
        match session_only(self.local.by_id(id)?) {
            Some(k) => Ok(Some(k)),
            None => self.keys.by_id(id),
        }
    }

    fn list_active(&self, owner: Option<u32>) -> StoreResult<Vec<KeyRecord>> {
        let mut keys = self.keys.list_active(owner)?;
        keys.extend(
            self.local
                .list_active(owner)?
                .into_iter()
                .filter(|k| k.kind == KeyKind::Session),
        );
        Ok(keys)
    }

    /// The shared keys first, then (when asked for) this host's session
    /// keys, at positions from [`LOCAL_POSITIONS`] on.
    fn list_page(&self, q: &ListQuery) -> StoreResult<(Vec<(i64, KeyRecord)>, bool)> {
        let mut page = vec![];
        if q.after < LOCAL_POSITIONS {
            let (shared, more) = self.keys.list_page(q)?;
            if more || !q.sessions {
                return Ok((shared, more));
            }
            page = shared;
        }
        let room = q.limit - page.len() as u32;
        let local_q = ListQuery {
            after: (q.after - LOCAL_POSITIONS).max(0),
            limit: room,
            long_lived: false,
            ..*q
        };
        let (local, more) = match room {
            0 => {
                let probe = ListQuery {
                    limit: 1,
                    ..local_q
                };
                let (found, _) = self.local.list_page(&probe)?;
                (vec![], !found.is_empty())
            }
            _ => self.local.list_page(&local_q)?,
        };
        page.extend(local.into_iter().map(|(p, k)| (p + LOCAL_POSITIONS, k)));
        Ok((page, more))
    }

    fn revoke(&self, ids: &[String], by: RevokeBy<'_>) -> StoreResult<Vec<String>> {
        let mut done = self.local.revoke(ids, by)?;
        let rest: Vec<String> = ids.iter().filter(|i| !done.contains(i)).cloned().collect();
        done.extend(self.keys.revoke(&rest, by)?);
        Ok(done)
    }

    fn revoke_owner(&self, owner: Option<u32>, by: RevokeBy<'_>) -> StoreResult<Vec<String>> {
        let mut done = self.keys.revoke_owner(owner, by)?;
        done.extend(self.local.revoke_owner(owner, by)?);
        Ok(done)
    }

    fn replace(&self, old_id: &str, new: &KeyRecord, by: RevokeBy<'_>) -> StoreResult<()> {
        self.keys.replace(old_id, new, by)
    }

    /// Each store takes the uses of its own keys and passes over the rest.
    fn record_uses(&self, uses: &[KeyUse]) -> StoreResult<()> {
        self.local.record_uses(uses)?;
        self.keys.record_uses(uses)
    }

    /// As `record_uses`: each store keeps the history of its own keys.
    fn record_use_pairs(&self, pairs: &[UsePair]) -> StoreResult<()> {
        self.local.record_use_pairs(pairs)?;
        self.keys.record_use_pairs(pairs)
    }

    /// A session key's history is in the local store, any other's in
    /// the database.
    fn use_history(&self, key_id: &str) -> StoreResult<Vec<UsePair>> {
        let local = self.local.use_history(key_id)?;
        if !local.is_empty() {
            return Ok(local);
        }
        self.keys.use_history(key_id)
    }

    /// Long-lived keys are the fleet's, session keys this host's own.
    fn key_counts(
        &self,
        owner: Option<u32>,
        now: i64,
        soon_until: i64,
        cap: Option<i64>,
    ) -> StoreResult<KeyCounts> {
        let fleet = self.keys.key_counts(owner, now, soon_until, cap)?;
        let local = self.local.key_counts(owner, now, soon_until, cap)?;
        Ok(KeyCounts {
            sessions: local.sessions,
            ..fleet
        })
    }

    /// The local store's files (session keys, sessions).
    fn size_bytes(&self) -> Option<u64> {
        self.local.size_bytes()
    }

    fn last_write(&self) -> Option<i64> {
        self.local.last_write().max(self.keys.last_write())
    }

    fn policy(&self) -> StoreResult<Policy> {
        self.keys.policy()
    }

    fn policy_if_at_hand(&self) -> Option<Policy> {
        self.keys.policy_if_at_hand()
    }

    fn save_policy(&self, policy: &Policy) -> StoreResult<()> {
        self.keys.save_policy(policy)
    }

    fn open_session(&self, session: &SessionRecord) -> StoreResult<()> {
        self.local.open_session(session)
    }

    fn close_session(&self, handle: &str, at: i64, reason: &str) -> StoreResult<bool> {
        self.local.close_session(handle, at, reason)
    }

    fn session(&self, handle: &str) -> StoreResult<Option<SessionRecord>> {
        self.local.session(handle)
    }

    fn sessions_of(&self, boot_id: &str, audit_session: u32) -> StoreResult<Vec<SessionRecord>> {
        self.local.sessions_of(boot_id, audit_session)
    }

    fn active_session_keys(&self) -> StoreResult<Vec<KeyRecord>> {
        self.local.active_session_keys()
    }

    fn revoke_bound_to(&self, handle: &str, by: RevokeBy<'_>) -> StoreResult<Vec<String>> {
        self.local.revoke_bound_to(handle, by)
    }

    fn free_space(&self) -> Option<u64> {
        self.local.free_space()
    }

    fn prune(&self, what: &Prune) -> StoreResult<(u64, u64)> {
        self.local.prune(what)
    }

    fn checkpoint(&self) -> StoreResult<()> {
        self.local.checkpoint()
    }

    fn backup_into(&self, _out: &mut std::fs::File) -> StoreResult<u64> {
        Err(StoreError::Failed(
            "in fleet mode the keys are in PostgreSQL: back them up with pg_dump or the \
             database's own backups"
                .into(),
        ))
    }
}

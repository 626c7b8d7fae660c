//! One key in full (ShowKey, `apikey show ID`): its details, what it has
//! beyond them, and its use history, written and not yet written.

use super::{store_error, Caller, KeyService, Result};
use crate::policy::{self, ListTarget};
use crate::store::UsePair;
use crate::usage::merged_history;
use apikey_proto::{KeyExtra, KeyInfo, KeysError};

impl KeyService {
    /// To whoever may list the key: its owner (unless the site hides
    /// users' keys from them) and administrators. Another user's key is
    /// "not found" to anyone else, so ids are not confirmed to strangers.
    pub fn show(&self, c: &Caller, id: &str) -> Result<(KeyInfo, KeyExtra, Vec<UsePair>)> {
        let admin = self.is_admin(c);
        let key = self
            .key_by_id(id)?
            .filter(|k| admin || k.owner_uid == c.uid)
            .ok_or_else(|| KeysError::NotFound(format!("no key with id {id}")))?;
        let policy = self.policy()?;
        policy::may_list(c.uid, admin, ListTarget::User(key.owner_uid), &policy)?;
        let stored = self.store.use_history(&key.id).map_err(store_error)?;
        let history = merged_history(stored, self.usage.pending_pairs(&key.id));
        let (info, extra) = self.info_and_extra(&key, &policy);
        Ok((info, extra, history))
    }
}

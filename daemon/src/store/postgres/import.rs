//! `apikeyd --migrate-to-fleet`: a host's own long-lived keys, their
//! revocations and last uses, and (where the fleet has none yet) its
//! policy, copied into the fleet database. Run again, it copies only what
//! is not there yet.

use super::{describe, PgKeys};
use crate::store::{KeyKind, KeyRecord, Policy};

/// What one import did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Imported {
    /// Keys added, of which revoked.
    pub added: usize,
    pub added_revoked: usize,
    /// Keys the fleet had already (an earlier run).
    pub already: usize,
    /// Keys left out: (id, why).
    pub skipped: Vec<(String, String)>,
    /// Whether the host's policy became the fleet's.
    pub policy_copied: bool,
}

/// A key of the host's store as the fleet will hold it: owned by the
/// name its owner's uid has now (a key of a deleted or renamed account
/// is dead on its host and stays behind).
pub fn owner_for_fleet(key: &KeyRecord, name_now: Option<&str>) -> Result<String, String> {
    if key.kind != KeyKind::LongLived {
        return Err("a session key, bound to this host".into());
    }
    match name_now {
        None => Err(format!("uid {} has no account any more", key.owner_uid)),
        Some(name) if name != key.owner_name => Err(format!(
            "uid {} was renamed from {} to {name}",
            key.owner_uid, key.owner_name
        )),
        Some(name) => Ok(name.to_string()),
    }
}

impl PgKeys {
    /// Copies `keys` made on this host (its configured name) and, when the
    /// fleet has no policy yet, `policy`. Needs a role that may act as
    /// apikey_owner: the rows keep their revocations and this host's name.
    pub fn import(&self, keys: &[KeyRecord], policy: &Policy) -> Result<Imported, String> {
        let mut plan = Vec::new();
        let mut done = Imported::default();
        for k in keys {
            let name_now = self.accounts.name_of(k.owner_uid);
            match owner_for_fleet(k, name_now.as_deref()) {
                Ok(owner) => plan.push((k, owner)),
                Err(why) => done.skipped.push((k.id.clone(), why)),
            }
        }
        let rows: Vec<_> = plan
            .iter()
            .map(|(k, owner)| {
                (
                    *k,
                    owner.clone(),
                    self.actor_name(k.created_by_uid),
                    k.revoked.as_ref().map(|r| self.actor_name(r.by_uid)),
                    k.created_by_loginuid.map(|uid| self.actor_name(uid)),
                )
            })
            .collect();
        let host = self.host.clone();
        let (added, added_revoked, policy_copied) = self
            .write(async |tx| {
                let fail =
                    |e: tokio_postgres::Error| crate::store::StoreError::Failed(describe(&e));
                let owner: bool = tx
                    .query_one(
                        "SELECT pg_has_role(current_user, 'apikey_owner', 'MEMBER')",
                        &[],
                    )
                    .await
                    .map_err(fail)?
                    .get(0);
                if !owner {
                    return Err(crate::store::StoreError::Denied(
                        "--migrate-to-fleet needs a database role that is a member of \
                         apikey_owner (docs/fleet.md, \"Moving a host's keys\")"
                            .into(),
                    ));
                }
                tx.batch_execute("SET LOCAL ROLE apikey_owner")
                    .await
                    .map_err(fail)?;
                let (mut added, mut revoked) = (0, 0);
                for (k, owner, created_by, revoked_by, login) in &rows {
                    let r = k.revoked.as_ref();
                    let n = tx
                        .execute(
                            "INSERT INTO apikey.keys (id, hash, owner, created_by, made_on, name, \
                             services, hosts, created, expires, revoked, revoked_by, revoked_on, \
                             revoke_reason, created_by_login, sources) VALUES ($1, $2, $3, $4, \
                             $5, $6, $7, '{}', $8, $9, $10, $11, \
                             CASE WHEN $10::bigint IS NULL THEN NULL ELSE $5 END, $12, $13, \
                             $14) ON CONFLICT DO NOTHING",
                            &[
                                &k.id,
                                &&k.hash[..],
                                owner,
                                created_by,
                                &host,
                                &k.name,
                                &k.services,
                                &k.created,
                                &k.expires,
                                &r.map(|r| r.at),
                                revoked_by,
                                &r.map(|r| r.reason.as_str()),
                                login,
                                &k.sources,
                            ],
                        )
                        .await
                        .map_err(fail)?;
                    added += n as usize;
                    revoked += usize::from(n == 1 && r.is_some());
                    if let (1, Some(u)) = (n, &k.last_used) {
                        tx.execute(
                            "INSERT INTO apikey.key_uses (key_id, host, at, service, rhost) \
                             VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING",
                            &[&k.id, &host, &u.at, &u.service, &u.rhost],
                        )
                        .await
                        .map_err(fail)?;
                    }
                }
                let has_policy: bool = tx
                    .query_one("SELECT EXISTS (SELECT 1 FROM apikey.settings)", &[])
                    .await
                    .map_err(fail)?
                    .get(0);
                if !has_policy {
                    for (name, value) in crate::store::policy_settings(policy) {
                        tx.execute(
                            "INSERT INTO apikey.settings (name, value) VALUES ($1, $2)",
                            &[&name, &value],
                        )
                        .await
                        .map_err(fail)?;
                    }
                }
                Ok((added, revoked, !has_policy))
            })
            .map_err(|e| match e {
                crate::store::StoreError::Denied(m) | crate::store::StoreError::Failed(m) => m,
                other => other.to_string(),
            })?;
        done.added = added;
        done.added_revoked = added_revoked;
        done.already = plan.len() - added;
        done.policy_copied = policy_copied;
        Ok(done)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::contract_tests::key;

    #[test]
    fn keys_go_to_the_fleet_under_their_owners_name_of_now() {
        let k = key("k00000000001", 1000, 0);
        assert_eq!(owner_for_fleet(&k, Some("user1000")), Ok("user1000".into()));
        let e = owner_for_fleet(&k, Some("alice")).unwrap_err();
        assert_eq!(e, "uid 1000 was renamed from user1000 to alice");
        let e = owner_for_fleet(&k, None).unwrap_err();
        assert_eq!(e, "uid 1000 has no account any more");
        let mut s = k.clone();
        s.kind = KeyKind::Session;
        assert!(owner_for_fleet(&s, Some("user1000"))
            .unwrap_err()
            .contains("session"));
    }
}

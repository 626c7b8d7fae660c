//! What every store must do, run against each backend: SQLite here, and
//! PostgreSQL (through the fleet store) in `postgres::tests`.

use super::*;
use apikey_proto::{Expiry, Token};

/// Makes an empty store.
pub type Fresh<'a> = &'a dyn Fn() -> Box<dyn Store>;
/// A key as the store gives it back (the fleet store fills in the host).
pub type AsStored<'a> = &'a dyn Fn(KeyRecord) -> KeyRecord;

pub fn key(id: &str, owner: u32, created: i64) -> KeyRecord {
    KeyRecord {
        id: id.into(),
        hash: Token::generate().unwrap().hash(),
        kind: KeyKind::LongLived,
        owner_uid: owner,
        owner_name: format!("user{owner}"),
        created_by_uid: owner,
        created_by_loginuid: Some(owner),
        name: "ci".into(),
        services: vec!["sshd*".into()],
        hosts: vec![],
        sources: vec![],
        made_on: String::new(),
        created,
        expires: None,
        last_used: None,
        revoked: None,
        binding: None,
    }
}

pub fn by(at: i64) -> RevokeBy<'static> {
    RevokeBy {
        uid: 0,
        at,
        reason: "test",
    }
}

pub fn all(fresh: Fresh<'_>, stored: AsStored<'_>) {
    insert_then_find_by_hash_and_id(&*fresh(), stored);
    quota_counts_only_active_keys(&*fresh());
    revoke_reports_only_what_it_changed(&*fresh());
    replace_is_atomic(&*fresh());
    uses_never_move_backwards(&*fresh());
    policy_round_trips_with_defaults(&*fresh());
}

fn insert_then_find_by_hash_and_id(s: &dyn Store, stored: AsStored<'_>) {
    let k = key("aaaaaaaaaaaa", 1000, 10);
    s.insert(&k, 5, 10).unwrap();
    assert_eq!(s.by_hash(&k.hash).unwrap(), Some(stored(k.clone())));
    assert_eq!(s.by_id("aaaaaaaaaaaa").unwrap(), Some(stored(k)));
    // The networks a key may be used from come back as they went in.
    let mut limited = key("limited00001", 1000, 10);
    limited.sources = vec!["10.1.0.0/16".into(), "2001:db8::/32".into()];
    s.insert(&limited, 5, 10).unwrap();
    assert_eq!(
        s.by_hash(&limited.hash).unwrap(),
        Some(stored(limited.clone()))
    );
    assert_eq!(s.by_id(&limited.id).unwrap(), Some(stored(limited)));
    assert_eq!(s.by_id("bbbbbbbbbbbb").unwrap(), None);
    assert_eq!(s.by_hash(&[7; 32]).unwrap(), None);
}

fn quota_counts_only_active_keys(s: &dyn Store) {
    s.insert(&key("k00000000001", 1000, 0), 2, 0).unwrap();
    let mut expiring = key("k00000000002", 1000, 0);
    expiring.expires = Some(50);
    s.insert(&expiring, 2, 0).unwrap();
    assert_eq!(
        s.insert(&key("k00000000003", 1000, 0), 2, 10),
        Err(StoreError::TooManyKeys(2))
    );
    // Once the second has expired there is room again.
    s.insert(&key("k00000000003", 1000, 0), 2, 60).unwrap();
    // Another owner is unaffected.
    s.insert(&key("k00000000004", 1001, 0), 2, 60).unwrap();
}

fn revoke_reports_only_what_it_changed(s: &dyn Store) {
    for (i, owner) in [1000, 1000, 1001].into_iter().enumerate() {
        s.insert(&key(&format!("k0000000000{i}"), owner, 0), 9, 0)
            .unwrap();
    }
    let ids = vec!["k00000000000".to_string(), "nothere00000".to_string()];
    assert_eq!(s.revoke(&ids, by(5)).unwrap(), vec!["k00000000000"]);
    assert_eq!(s.revoke(&ids, by(6)).unwrap(), Vec::<String>::new());
    let r = s.by_id("k00000000000").unwrap().unwrap().revoked.unwrap();
    assert_eq!((r.at, r.by_uid, r.reason.as_str()), (5, 0, "test"));
    assert_eq!(s.revoke_owner(Some(1000), by(7)).unwrap().len(), 1);
    assert_eq!(s.list_active(None).unwrap().len(), 1);
    assert_eq!(s.revoke_owner(None, by(8)).unwrap(), vec!["k00000000002"]);
    assert!(s.list_active(None).unwrap().is_empty());
}

fn replace_is_atomic(s: &dyn Store) {
    s.insert(&key("old000000000", 1000, 0), 9, 0).unwrap();
    let new = key("new000000000", 1000, 1);
    s.replace("old000000000", &new, by(1)).unwrap();
    assert!(s.by_id("old000000000").unwrap().unwrap().revoked.is_some());
    assert!(s.by_id("new000000000").unwrap().unwrap().revoked.is_none());
    // Replacing a revoked key changes nothing.
    let newer = key("newer0000000", 1000, 2);
    assert_eq!(
        s.replace("old000000000", &newer, by(2)),
        Err(StoreError::NotActive)
    );
    assert_eq!(s.by_id("newer0000000").unwrap(), None);
}

fn uses_never_move_backwards(s: &dyn Store) {
    s.insert(&key("k00000000001", 1000, 0), 9, 0).unwrap();
    let used = |at, svc: &str| KeyUse {
        key_id: "k00000000001".into(),
        at,
        service: svc.into(),
        rhost: "10.0.0.1".into(),
        host: String::new(),
    };
    s.record_uses(&[used(20, "sshd")]).unwrap();
    s.record_uses(&[used(10, "vsftpd")]).unwrap();
    // A use of a key that is not (or no longer) there is passed over.
    let mut gone = used(30, "sshd");
    gone.key_id = "gone00000000".into();
    s.record_uses(&[gone]).unwrap();
    let last = s.by_id("k00000000001").unwrap().unwrap().last_used.unwrap();
    assert_eq!(
        (last.at, last.service.as_str(), last.rhost.as_str()),
        (20, "sshd", "10.0.0.1")
    );
}

fn policy_round_trips_with_defaults(s: &dyn Store) {
    assert_eq!(s.policy().unwrap(), Policy::default());
    let p = Policy {
        allow_user_keys: true,
        expiry: Expiry::Days(30),
        users_see_own: false,
        session_timeout_secs: 600,
        require_from: true,
        revoke_unused_days: 90,
    };
    s.save_policy(&p).unwrap();
    assert_eq!(s.policy().unwrap(), p);
}

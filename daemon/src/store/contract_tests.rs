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
    use_history_keeps_the_newest_pairs_merged(&*fresh());
    keys_are_counted_as_the_metrics_say(&*fresh());
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

fn use_history_keeps_the_newest_pairs_merged(s: &dyn Store) {
    s.insert(&key("k00000000002", 1000, 0), 9, 0).unwrap();
    let pair = |rhost: &str, first, last| UsePair {
        key_id: "k00000000002".into(),
        service: "sshd".into(),
        rhost: rhost.into(),
        first,
        last,
        host: String::new(),
    };
    s.record_use_pairs(&[pair("10.0.0.1", 5, 9), pair("10.0.0.2", 7, 7)])
        .unwrap();
    // The same pair again: its first use stays, its last moves on.
    s.record_use_pairs(&[pair("10.0.0.1", 20, 30)]).unwrap();
    let seen = |s: &dyn Store| -> Vec<(String, i64, i64)> {
        s.use_history("k00000000002")
            .unwrap()
            .into_iter()
            .map(|p| (p.rhost, p.first, p.last))
            .collect()
    };
    assert_eq!(
        seen(s),
        vec![("10.0.0.1".into(), 5, 30), ("10.0.0.2".into(), 7, 7)]
    );
    // Twenty more pairs: the newest ten are kept.
    let more: Vec<UsePair> = (0..20)
        .map(|i| pair(&format!("192.0.2.{i}"), 100 + i, 100 + i))
        .collect();
    s.record_use_pairs(&more).unwrap();
    let kept = seen(s);
    assert_eq!(kept.len(), USE_HISTORY);
    assert_eq!(kept[0], ("192.0.2.19".into(), 119, 119));
    assert_eq!(kept[USE_HISTORY - 1], ("192.0.2.10".into(), 110, 110));
    // Pairs of a key that is not there are passed over.
    let mut gone = pair("10.0.0.9", 1, 1);
    gone.key_id = "gone00000000".into();
    s.record_use_pairs(&[gone]).unwrap();
    assert!(s.use_history("gone00000000").unwrap().is_empty());
}

fn keys_are_counted_as_the_metrics_say(s: &dyn Store) {
    let now = 1_000_000;
    let mut soon = key("soon00000001", 1000, now - 10);
    soon.expires = Some(now + 100);
    let mut gone = key("gone00000001", 1000, now - 10);
    gone.expires = Some(now - 1);
    let old = key("old000000001", 1000, now - 5_000);
    let revoked = key("revoked00001", 1000, now - 10);
    for k in [
        &soon,
        &gone,
        &old,
        &revoked,
        &key("fresh0000001", 1000, now - 10),
    ] {
        s.insert(k, 99, now).unwrap();
    }
    s.revoke(std::slice::from_ref(&revoked.id), by(now))
        .unwrap();
    let counts = s.key_counts(None, now, now + 1_000, None).unwrap();
    assert_eq!((counts.long_lived, counts.expiring_soon), (3, 1));
    // A policy of 5,000 s caps the old key (made 5,000 s ago: over) and
    // brings the fresh one within 5,000 s.
    let capped = s.key_counts(None, now, now + 5_000, Some(5_000)).unwrap();
    assert_eq!((capped.long_lived, capped.expiring_soon), (2, 2));
    // One owner's: all of these are user1000's, none user1001's.
    assert_eq!(
        s.key_counts(Some(1000), now, now + 1_000, None).unwrap(),
        counts
    );
    let none = s.key_counts(Some(1001), now, now + 1_000, None).unwrap();
    assert_eq!((none.long_lived, none.expiring_soon), (0, 0));
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

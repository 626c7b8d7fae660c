//! What the key service decides differently when its store is shared by a
//! fleet, against SQLite standing in for the shared store: owners are
//! names, and an account missing on this host is not deleted everywhere.

use crate::audit::Audit;
use crate::config::Config;
use crate::service::KeyService;
use crate::service_tests::{world, ALICE};
use crate::store::{
    KeyRecord, KeyUse, ListQuery, LookupFuture, Policy, RevokeBy, SessionRecord, SqliteStore,
    Store, StoreError, StoreResult,
};
use apikey_proto::KeysError;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

/// A store that says it is shared, otherwise the SQLite store it wraps;
/// its lookups can also be awaited (as the database's are), counted, and
/// made to fail.
struct Shared(Arc<SqliteStore>, AtomicUsize, AtomicBool);

impl Store for Shared {
    fn shared(&self) -> bool {
        true
    }
    fn by_hash_async<'a>(&'a self, hash: &'a [u8; 32]) -> LookupFuture<'a> {
        self.1.fetch_add(1, Ordering::SeqCst);
        let answer = match self.2.load(Ordering::SeqCst) {
            true => Err(StoreError::Failed("the database is down".into())),
            false => self.0.by_hash(hash),
        };
        Box::pin(async move {
            tokio::task::yield_now().await;
            Some(answer)
        })
    }
    fn insert(&self, key: &KeyRecord, max_active: u32, now: i64) -> StoreResult<()> {
        self.0.insert(key, max_active, now)
    }
    fn by_hash(&self, hash: &[u8; 32]) -> StoreResult<Option<KeyRecord>> {
        self.1.fetch_add(1, Ordering::SeqCst);
        self.0.by_hash(hash)
    }
    fn by_id(&self, id: &str) -> StoreResult<Option<KeyRecord>> {
        self.0.by_id(id)
    }
    fn list_active(&self, owner: Option<u32>) -> StoreResult<Vec<KeyRecord>> {
        self.0.list_active(owner)
    }
    fn list_page(&self, q: &ListQuery) -> StoreResult<(Vec<(i64, KeyRecord)>, bool)> {
        self.0.list_page(q)
    }
    fn revoke(&self, ids: &[String], by: RevokeBy<'_>) -> StoreResult<Vec<String>> {
        self.0.revoke(ids, by)
    }
    fn revoke_owner(&self, owner: Option<u32>, by: RevokeBy<'_>) -> StoreResult<Vec<String>> {
        self.0.revoke_owner(owner, by)
    }
    fn replace(&self, old_id: &str, new: &KeyRecord, by: RevokeBy<'_>) -> StoreResult<()> {
        self.0.replace(old_id, new, by)
    }
    fn record_uses(&self, uses: &[KeyUse]) -> StoreResult<()> {
        self.0.record_uses(uses)
    }
    fn record_use_pairs(&self, pairs: &[crate::store::UsePair]) -> StoreResult<()> {
        self.0.record_use_pairs(pairs)
    }
    fn use_history(&self, key_id: &str) -> StoreResult<Vec<crate::store::UsePair>> {
        self.0.use_history(key_id)
    }
    fn key_counts(
        &self,
        owner: Option<u32>,
        now: i64,
        soon_until: i64,
        cap: Option<i64>,
    ) -> StoreResult<crate::store::KeyCounts> {
        self.0.key_counts(owner, now, soon_until, cap)
    }
    fn policy(&self) -> StoreResult<Policy> {
        self.0.policy()
    }
    fn policy_if_at_hand(&self) -> Option<Policy> {
        self.0.policy_if_at_hand()
    }
    fn save_policy(&self, policy: &Policy) -> StoreResult<()> {
        self.0.save_policy(policy)
    }
    fn open_session(&self, session: &SessionRecord) -> StoreResult<()> {
        self.0.open_session(session)
    }
    fn close_session(&self, handle: &str, at: i64, reason: &str) -> StoreResult<bool> {
        self.0.close_session(handle, at, reason)
    }
    fn session(&self, handle: &str) -> StoreResult<Option<SessionRecord>> {
        self.0.session(handle)
    }
    fn sessions_of(&self, boot_id: &str, audit_session: u32) -> StoreResult<Vec<SessionRecord>> {
        self.0.sessions_of(boot_id, audit_session)
    }
    fn active_session_keys(&self) -> StoreResult<Vec<KeyRecord>> {
        self.0.active_session_keys()
    }
    fn revoke_bound_to(&self, handle: &str, by: RevokeBy<'_>) -> StoreResult<Vec<String>> {
        self.0.revoke_bound_to(handle, by)
    }
}

/// A key of alice's made on this host, then the same host seen through a
/// shared store.
fn shared_world() -> (crate::service_tests::World, KeyService, String, String) {
    let (w, shared, _, token, id) = counted_world();
    (w, shared, token, id)
}

/// [`shared_world`] with the shared store at hand.
fn counted_world() -> (
    crate::service_tests::World,
    KeyService,
    Arc<Shared>,
    String,
    String,
) {
    let w = world();
    w.allow_users();
    let (token, info) = w.svc.generate(&w.alice(), "", "", &[], "").unwrap();
    let store = Arc::new(Shared(
        w.store.clone(),
        AtomicUsize::new(0),
        AtomicBool::new(false),
    ));
    let shared = KeyService::new(
        Config::default(),
        store.clone(),
        w.host.clone(),
        Audit::open(std::path::Path::new("/nonexistent/apikey-test-log"), None),
    );
    (w, shared, store, token.as_str().to_string(), info.id)
}

fn verify(svc: &KeyService, w: &crate::service_tests::World, token: &str) -> bool {
    svc.verify(&w.root(), token.as_bytes(), "alice", "sshd", "10.0.0.1")
        .result
        .is_ok()
}

#[test]
fn a_fleet_key_belongs_to_its_owners_name_whatever_the_uid_here() {
    let (w, shared, token, _) = shared_world();
    assert!(verify(&shared, &w, &token));
    // alice has another uid on this host than where the key was made.
    let mut accounts = w.host.accounts.lock().unwrap();
    let name = accounts.remove(&ALICE).unwrap();
    accounts.insert(4242, name);
    drop(accounts);
    assert!(verify(&shared, &w, &token));
}

#[test]
fn an_owner_missing_here_is_refused_here_and_the_key_lives_on() {
    let (w, shared, token, id) = shared_world();
    w.host.accounts.lock().unwrap().remove(&ALICE);
    assert!(!verify(&shared, &w, &token));
    assert_eq!(w.store.by_id(&id).unwrap().unwrap().revoked, None);
    // A single host's store revokes it for good instead.
    assert!(!verify(&w.svc, &w, &token));
    assert!(w.store.by_id(&id).unwrap().unwrap().revoked.is_some());
}

/// A key's last use is the later of this host's (not yet written) and the
/// store's, which in a fleet may be another host's; a tie is this host's.
#[test]
fn the_last_use_shown_is_the_latest_of_any_host() {
    let (w, _, token, id) = shared_world();
    let now = w.host.now.load(std::sync::atomic::Ordering::SeqCst);
    let elsewhere = |at: i64| KeyUse {
        key_id: id.clone(),
        at,
        service: "sshd".into(),
        rhost: "10.9.9.9".into(),
        host: String::new(),
    };
    let shown = || {
        let keys = w.svc.list(&w.admin(), "", true, false).unwrap();
        let k = keys.into_iter().find(|k| k.id == id).unwrap();
        (k.last_used, k.last_rhost)
    };
    // Used here now (10.0.0.1), and elsewhere ten seconds later.
    assert!(verify(&w.svc, &w, &token));
    w.store.record_uses(&[elsewhere(now + 10)]).unwrap();
    assert_eq!(shown(), (now + 10, "10.9.9.9".to_string()));
    // Used here later still.
    w.advance(20);
    assert!(verify(&w.svc, &w, &token));
    assert_eq!(shown(), (now + 20, "10.0.0.1".to_string()));
    // Elsewhere at the same second as here: here's is shown.
    w.store.record_uses(&[elsewhere(now + 20)]).unwrap();
    assert_eq!(shown(), (now + 20, "10.0.0.1".to_string()));
}

fn on_worker(
    svc: &KeyService,
    w: &crate::service_tests::World,
    token: &str,
) -> Result<crate::service::VerifyAnswer, Option<Box<crate::service::FoundKey>>> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(svc.try_verify_async(&w.root(), token.as_bytes(), "alice", "sshd", "10.0.0.1"))
}

/// A fleet Verify whose every other step has a quick answer is answered
/// on the bus worker that awaited the lookup: accepted, refused with the
/// source's delay, or unavailable, each from one lookup.
#[test]
fn a_fleet_verify_is_answered_where_its_lookup_was_awaited() {
    let (w, shared, store, token, id) = counted_world();
    w.host.quick.store(true, Ordering::SeqCst);
    let answer = on_worker(&shared, &w, &token).ok().unwrap();
    assert_eq!(answer.result.ok(), Some(("alice".to_string(), id.clone())));
    assert_eq!(store.1.load(Ordering::SeqCst), 1);
    let mut wrong = token.clone();
    wrong.replace_range(10..12, "zz");
    let mut refused = vec![];
    for _ in 0..12 {
        let answer = on_worker(&shared, &w, &wrong).ok().unwrap();
        assert!(matches!(answer.result, Err(KeysError::Refused(_))));
        refused.push(answer.delay_ms);
    }
    assert_eq!(
        refused[9..],
        [0, 250, 500],
        "past the free failures, delayed"
    );
    store.2.store(true, Ordering::SeqCst);
    let before = store.1.load(Ordering::SeqCst);
    let answer = on_worker(&shared, &w, &token).ok().unwrap();
    assert!(
        matches!(&answer.result, Err(KeysError::Failed(m)) if m.contains("cannot be read")),
        "{:?}",
        answer.result
    );
    assert_eq!(
        store.1.load(Ordering::SeqCst),
        before + 1,
        "one lookup, not a second"
    );
}

/// What needs a thread that may block (here the owner's account, which
/// the local files do not answer) gets the lookup already made, and the
/// answer is the blocking path's.
#[test]
fn a_fleet_verify_that_must_block_takes_its_lookup_along() {
    let (w, shared, store, token, id) = counted_world();
    w.host.quick.store(false, Ordering::SeqCst);
    let Err(Some(found)) = on_worker(&shared, &w, &token) else {
        panic!("the owner's account needs an NSS call here");
    };
    let answer = shared.verify_found(
        &w.root(),
        Some(&found),
        token.as_bytes(),
        "alice",
        "sshd",
        "10.0.0.1",
    );
    assert_eq!(answer.result.ok(), Some(("alice".to_string(), id)));
    assert_eq!(store.1.load(Ordering::SeqCst), 1);
    // A revocation is seen however the lookup was made.
    w.store
        .revoke_owner(None, crate::store::contract_tests::by(1))
        .unwrap();
    w.host.quick.store(true, Ordering::SeqCst);
    let answer = on_worker(&shared, &w, &token).ok().unwrap();
    assert!(matches!(answer.result, Err(KeysError::Refused(_))));
}

//! The key service against an in-memory store and a scripted host with an
//! injected clock: expiry, policy and account rules without sleeping.

use crate::audit::Audit;
use crate::config::Config;
use crate::host::{Account, Host, Lookup, ProcIdentity, ShadowState};
use crate::service::{Caller, KeyService};
use crate::store::{SqliteStore, Store};
use apikey_proto::KeysError;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex};

#[derive(Default)]
pub(crate) struct FakeHost {
    pub(crate) now: AtomicI64,
    pub(crate) procs: Mutex<HashMap<u32, ProcIdentity>>,
    pub(crate) accounts: Mutex<HashMap<u32, String>>,
    pub(crate) shadow: Mutex<HashMap<String, ShadowState>>,
    pub(crate) nss_down: Mutex<bool>,
    /// Another boot id than BOOT_ID: a reboot happened.
    pub(crate) rebooted: Mutex<Option<String>>,
    /// Audit sessions no process belongs to any more.
    pub(crate) dead_sessions: Mutex<Vec<u32>>,
    /// The `quick_` answers are given (as a host with files-first NSS
    /// whose files have not just changed); otherwise they are all `None`.
    pub(crate) quick: AtomicBool,
}

const ADMIN_GID: u32 = 900;
pub(crate) const ALICE: u32 = 1000;
pub(crate) const BOB: u32 = 1001;
const BOOT_ID: &str = "0f6c5a8e-3b1d-4c2a-9e7f-1a2b3c4d5e6f";

impl Host for FakeHost {
    fn now(&self) -> i64 {
        self.now.load(Ordering::SeqCst)
    }
    fn proc_identity(
        &self,
        pid: u32,
        _uid: u32,
        _setuid_root_ok: bool,
    ) -> Result<ProcIdentity, String> {
        self.procs
            .lock()
            .unwrap()
            .get(&pid)
            .copied()
            .ok_or("gone".into())
    }
    fn account_by_uid(&self, uid: u32) -> Lookup<Account> {
        if *self.nss_down.lock().unwrap() {
            return Lookup::Unavailable("nss down".into());
        }
        match self.accounts.lock().unwrap().get(&uid) {
            Some(name) => Lookup::Found(Account {
                uid,
                name: name.clone(),
            }),
            None => Lookup::Gone,
        }
    }
    fn account_by_name(&self, name: &str) -> Lookup<Account> {
        let accounts = self.accounts.lock().unwrap();
        match accounts.iter().find(|(_, n)| *n == name) {
            Some((uid, n)) => Lookup::Found(Account {
                uid: *uid,
                name: n.clone(),
            }),
            None => Lookup::Gone,
        }
    }
    fn shadow_state(&self, name: &str, _today: i64) -> Result<ShadowState, String> {
        Ok(self
            .shadow
            .lock()
            .unwrap()
            .get(name)
            .copied()
            .unwrap_or(ShadowState::Usable))
    }
    fn group_gid(&self, name: &str) -> Option<u32> {
        (name == "apikey-admin").then_some(ADMIN_GID)
    }
    fn quick_account_state(&self, uid: u32, today: i64) -> Option<(Account, ShadowState)> {
        match self.account_by_uid(uid) {
            Lookup::Found(a) if self.quick.load(Ordering::SeqCst) => {
                let state = self.shadow_state(&a.name, today).ok()?;
                Some((a, state))
            }
            _ => None,
        }
    }
    fn quick_group_gid(&self, name: &str) -> Option<u32> {
        self.quick
            .load(Ordering::SeqCst)
            .then(|| self.group_gid(name))?
    }
    fn uid_min(&self) -> u32 {
        1000
    }
    fn boot_id(&self) -> String {
        self.rebooted
            .lock()
            .unwrap()
            .clone()
            .unwrap_or_else(|| BOOT_ID.into())
    }
    fn audit_session_alive(&self, sessionid: u32) -> bool {
        !self.dead_sessions.lock().unwrap().contains(&sessionid)
    }
    fn live_audit_sessions(&self) -> Option<std::collections::HashSet<u32>> {
        let dead = self.dead_sessions.lock().unwrap();
        Some(
            self.procs
                .lock()
                .unwrap()
                .values()
                .filter_map(|p| p.sessionid)
                .filter(|s| !dead.contains(s))
                .collect(),
        )
    }
}

pub(crate) struct World {
    pub(crate) host: Arc<FakeHost>,
    pub(crate) store: Arc<SqliteStore>,
    pub(crate) svc: KeyService,
    /// Sessions `register_login` wrote behind the service's back.
    registered: std::sync::atomic::AtomicUsize,
}

pub(crate) fn world() -> World {
    world_with(SqliteStore::open_in_memory())
}

/// The same world over a store of its own kind (one in a file, say).
pub(crate) fn world_with(store: SqliteStore) -> World {
    world_logging_to(store, Audit::stderr())
}

/// A world over a store in a file of `dir` (`keys.db`).
pub(crate) fn world_in(dir: &std::path::Path) -> World {
    world_with(SqliteStore::open(&dir.join("keys.db")).unwrap())
}

/// A world whose audit lines go to `audit`.
pub(crate) fn world_logging_to(store: SqliteStore, audit: Audit) -> World {
    world_configured(store, audit, Config::default())
}

/// A world whose daemon reads `cfg`.
pub(crate) fn world_configured(store: SqliteStore, audit: Audit, cfg: Config) -> World {
    let host = Arc::new(FakeHost::default());
    host.now.store(1_700_000_000, Ordering::SeqCst);
    {
        let mut a = host.accounts.lock().unwrap();
        a.insert(0, "root".into());
        a.insert(ALICE, "alice".into());
        a.insert(BOB, "bob".into());
        a.insert(999, "svc".into());
    }
    let store = Arc::new(store);
    let svc = KeyService::new(cfg, store.clone(), host.clone(), audit);
    World {
        host,
        store,
        svc,
        registered: Default::default(),
    }
}

impl World {
    /// A caller process of `uid` logged in as `loginuid`, in the audit
    /// session that login made (numbered after the login uid).
    pub(crate) fn caller(&self, uid: u32, loginuid: Option<u32>, gids: &[u32]) -> Caller {
        self.caller_in(uid, loginuid, loginuid, gids)
    }

    /// A caller in audit session `session` (None: outside any), which the
    /// PAM module registered as opened with a password when it has a login
    /// uid (the evidence S6 asks for).
    pub(crate) fn caller_in(
        &self,
        uid: u32,
        loginuid: Option<u32>,
        session: Option<u32>,
        gids: &[u32],
    ) -> Caller {
        if let (Some(loginuid), Some(session)) = (loginuid, session) {
            self.register_login(loginuid, session, "password");
        }
        self.caller_unregistered(uid, loginuid, session, gids)
    }

    /// A caller in an audit session no login registered: cron, a
    /// systemd --user service, a login whose OpenSession failed.
    pub(crate) fn caller_unregistered(
        &self,
        uid: u32,
        loginuid: Option<u32>,
        session: Option<u32>,
        gids: &[u32],
    ) -> Caller {
        let pid = 10_000 + uid + loginuid.unwrap_or(7) * 3 + session.unwrap_or(11) * 7919;
        self.host.procs.lock().unwrap().insert(
            pid,
            ProcIdentity {
                loginuid,
                sessionid: session,
            },
        );
        Caller {
            uid,
            pid,
            gids: gids.to_vec(),
        }
    }

    /// What pam_apikey's session hook records for a login of `loginuid`
    /// in audit session `session` authenticated by `auth`, unless one is
    /// there already.
    pub(crate) fn register_login(&self, loginuid: u32, session: u32, auth: &str) {
        let known = self.store.sessions_of(BOOT_ID, session).unwrap();
        if known
            .iter()
            .any(|s| s.loginuid == Some(loginuid) && s.auth.as_deref() == Some(auth))
        {
            return;
        }
        let user = self.host.accounts.lock().unwrap().get(&loginuid).cloned();
        self.store
            .open_session(&crate::store::SessionRecord {
                handle: apikey_proto::token::new_session_handle().unwrap(),
                boot_id: BOOT_ID.into(),
                audit_session: Some(session),
                loginuid: Some(loginuid),
                caller_pid: 1,
                uid: Some(loginuid),
                user: user.unwrap_or_default(),
                service: "login".into(),
                rhost: String::new(),
                tty: "tty1".into(),
                key_id: None,
                opened: self.host.now(),
                closed: None,
                close_reason: None,
                auth: Some(auth.into()),
            })
            .unwrap();
        self.registered.fetch_add(1, Ordering::SeqCst);
    }

    /// Session rows OpenSession wrote.
    pub(crate) fn opened_rows(&self) -> i64 {
        self.store.session_rows() - self.registered.load(Ordering::SeqCst) as i64
    }

    pub(crate) fn alice(&self) -> Caller {
        self.caller(ALICE, Some(ALICE), &[ALICE])
    }

    pub(crate) fn admin(&self) -> Caller {
        self.caller(BOB, Some(BOB), &[ADMIN_GID])
    }

    pub(crate) fn root(&self) -> Caller {
        self.caller(0, None, &[0])
    }

    pub(crate) fn allow_users(&self) {
        self.svc
            .set_settings(&self.root(), "yes", "", "", "")
            .unwrap();
    }

    pub(crate) fn advance(&self, secs: i64) {
        self.host.now.fetch_add(secs, Ordering::SeqCst);
    }

    pub(crate) fn verify(&self, token: &str, user: &str) -> Result<(String, String), KeysError> {
        self.svc
            .verify(&self.root(), token.as_bytes(), user, "sshd", "10.0.0.1")
            .result
    }
}

fn none() -> Vec<String> {
    vec![]
}

#[test]
fn generate_then_verify_then_revoke() {
    let w = world();
    w.allow_users();
    let (token, info) = w
        .svc
        .generate(&w.alice(), "laptop", "", &none(), "")
        .unwrap();
    assert_eq!(info.user, "alice");
    assert_eq!(
        w.verify(token.as_str(), "alice").unwrap(),
        ("alice".into(), info.id.clone())
    );
    assert!(w.verify(token.as_str(), "bob").is_err());
    // The alias spelling is the same key.
    assert!(w.verify(&token.alias(), "alice").is_ok());
    w.svc
        .revoke(&w.alice(), std::slice::from_ref(&info.id))
        .unwrap();
    assert!(matches!(
        w.verify(token.as_str(), "alice"),
        Err(KeysError::Refused(_))
    ));
}

#[test]
fn revoking_a_revoked_key_says_when_and_by_whom_and_changes_nothing() {
    let w = world();
    w.allow_users();
    let (_, mine) = w.svc.generate(&w.alice(), "", "", &none(), "").unwrap();
    let (_, other) = w.svc.generate(&w.alice(), "", "", &none(), "").unwrap();
    w.svc
        .revoke(&w.alice(), std::slice::from_ref(&mine.id))
        .unwrap();
    let when = w
        .store
        .by_id(&mine.id)
        .unwrap()
        .unwrap()
        .revoked
        .unwrap()
        .at;
    match w
        .svc
        .revoke(&w.alice(), &[other.id.clone(), mine.id.clone()])
    {
        Err(KeysError::AlreadyRevoked(m)) => assert_eq!(
            m,
            format!(
                "key {} was already revoked on {} by alice",
                mine.id,
                apikey_proto::timefmt::rfc3339(when)
            )
        ),
        other => panic!("expected AlreadyRevoked, got {other:?}"),
    }
    // All or nothing: the other key was not revoked either.
    assert!(w.store.by_id(&other.id).unwrap().unwrap().revoked.is_none());
    // Someone else's revoked key is Denied, not described.
    assert!(matches!(
        w.svc.revoke(
            &w.caller(BOB, Some(BOB), &[BOB]),
            std::slice::from_ref(&mine.id)
        ),
        Err(KeysError::Denied(_))
    ));
}

#[test]
fn the_token_is_never_stored() {
    let w = world();
    w.allow_users();
    let (token, info) = w.svc.generate(&w.alice(), "", "", &none(), "").unwrap();
    let rec = w.store.by_id(&info.id).unwrap().unwrap();
    assert_eq!(rec.hash, token.hash());
    assert!(!format!("{rec:?}").contains(&token.as_str()[7..]));
}

#[test]
fn policy_off_means_admins_only() {
    let w = world();
    assert!(matches!(
        w.svc.generate(&w.alice(), "", "", &none(), ""),
        Err(KeysError::PolicyForbids(_))
    ));
    assert!(w.svc.generate(&w.admin(), "", "", &none(), "").is_ok());
}

#[test]
fn login_rules() {
    let w = world();
    w.allow_users();
    let not_logged_in = w.caller(ALICE, None, &[]);
    assert!(matches!(
        w.svc.generate(&not_logged_in, "", "", &none(), ""),
        Err(KeysError::NotLoggedIn(_))
    ));
    let su_to_alice = w.caller(ALICE, Some(BOB), &[]);
    assert!(matches!(
        w.svc.generate(&su_to_alice, "", "", &none(), ""),
        Err(KeysError::Impersonating(_))
    ));
    // An administrator under sudo may make a key for a service account...
    w.host
        .accounts
        .lock()
        .unwrap()
        .insert(1500, "backup-bot".into());
    let sudo_admin = w.caller(0, Some(BOB), &[0]);
    let (_, info) = w
        .svc
        .generate(&sudo_admin, "", "", &none(), "backup-bot")
        .unwrap();
    assert_eq!(info.uid, 1500);
    assert_eq!(
        w.store
            .by_id(&info.id)
            .unwrap()
            .unwrap()
            .created_by_loginuid,
        Some(BOB)
    );
    // ...but not from outside any login session, and a user cannot at all.
    assert!(matches!(
        w.svc.generate(&w.root(), "", "", &none(), "backup-bot"),
        Err(KeysError::NotLoggedIn(_))
    ));
    assert!(matches!(
        w.svc.generate(&w.alice(), "", "", &none(), "bob"),
        Err(KeysError::Denied(_))
    ));
    // An unreadable /proc entry is a refusal.
    let ghost = Caller {
        uid: ALICE,
        pid: 1,
        gids: vec![],
    };
    assert!(matches!(
        w.svc.generate(&ghost, "", "", &none(), ""),
        Err(KeysError::Denied(_))
    ));
}

#[test]
fn no_keys_for_root_or_system_accounts_unless_named() {
    let w = world();
    let root_logged_in = w.caller(0, Some(0), &[0]);
    assert!(matches!(
        w.svc.generate(&root_logged_in, "", "", &none(), ""),
        Err(KeysError::PolicyForbids(_))
    ));
    assert!(matches!(
        w.svc.generate(&w.admin(), "", "", &none(), "svc"),
        Err(KeysError::PolicyForbids(_))
    ));
}

#[test]
fn expiry_and_tightened_policy_without_sleeping() {
    let w = world();
    w.allow_users();
    let (t7, _) = w.svc.generate(&w.alice(), "", "7d", &none(), "").unwrap();
    let (forever, _) = w.svc.generate(&w.alice(), "", "", &none(), "").unwrap();
    w.advance(7 * 86400 - 1);
    assert!(w.verify(t7.as_str(), "alice").is_ok());
    w.advance(1);
    assert!(w.verify(t7.as_str(), "alice").is_err());
    assert!(w.verify(forever.as_str(), "alice").is_ok());
    // Tightening the policy to 7 days caps the older key too.
    w.svc.set_settings(&w.root(), "", "7d", "", "").unwrap();
    assert!(w.verify(forever.as_str(), "alice").is_err());
    // Asking for longer than the policy is refused.
    assert!(matches!(
        w.svc.generate(&w.alice(), "", "30d", &none(), ""),
        Err(KeysError::PolicyForbids(_))
    ));
    let list = w.svc.list(&w.alice(), "", false, false).unwrap();
    assert!(list.iter().all(|k| k.expires > 0));
}

#[test]
fn authorization_matrix_for_listing_and_revoking() {
    let w = world();
    w.allow_users();
    let bob = w.caller(BOB, Some(BOB), &[BOB]);
    let (_, bobs) = w.svc.generate(&bob, "", "", &none(), "").unwrap();
    let (_, alices) = w.svc.generate(&w.alice(), "", "", &none(), "").unwrap();
    assert!(matches!(
        w.svc.list(&w.alice(), "bob", false, false),
        Err(KeysError::Denied(_))
    ));
    assert!(matches!(
        w.svc.list(&w.alice(), "", true, false),
        Err(KeysError::Denied(_))
    ));
    assert!(matches!(
        w.svc.revoke(&w.alice(), std::slice::from_ref(&bobs.id)),
        Err(KeysError::Denied(_))
    ));
    assert!(matches!(
        w.svc.revoke_all(&w.alice(), "bob"),
        Err(KeysError::Denied(_))
    ));
    assert!(matches!(
        w.svc.revoke_site(&w.alice()),
        Err(KeysError::Denied(_))
    ));
    assert!(matches!(
        w.svc.set_settings(&w.alice(), "no", "", "", ""),
        Err(KeysError::Denied(_))
    ));
    assert!(matches!(
        w.svc.verify(&w.alice(), b"x", "", "sshd", "").result,
        Err(KeysError::Denied(_))
    ));
    // Hidden keys can still be revoked by their owner.
    w.svc.set_settings(&w.root(), "", "", "no", "").unwrap();
    assert!(matches!(
        w.svc.list(&w.alice(), "", false, false),
        Err(KeysError::PolicyForbids(_))
    ));
    assert_eq!(w.svc.revoke_all(&w.alice(), "").unwrap(), vec![alices.id]);
    // Administrators see and revoke everything.
    assert_eq!(w.svc.list(&w.admin(), "", true, false).unwrap().len(), 1);
    assert_eq!(w.svc.revoke_site(&w.admin()).unwrap(), vec![bobs.id]);
}

#[test]
fn bad_input_writes_nothing() {
    let w = world();
    w.allow_users();
    let long = "n".repeat(201);
    for (name, expires, services) in [
        (long.as_str(), "", none()),
        ("a\x1bb", "", none()),
        ("", "8d", none()),
        ("", "", vec!["su".to_string()]),
        ("", "", vec!["bad name".to_string()]),
    ] {
        assert!(w
            .svc
            .generate(&w.alice(), name, expires, &services, "")
            .is_err());
    }
    assert!(matches!(
        w.svc.revoke(&w.alice(), &["nothere00000".into()]),
        Err(KeysError::NotFound(_))
    ));
    assert!(matches!(
        w.svc.revoke(&w.alice(), &["'; DROP TABLE keys".into()]),
        Err(KeysError::InvalidArgument(_))
    ));
    assert!(w.store.list_active(None).unwrap().is_empty());
    let huge = vec![b'a'; 1 << 20];
    assert!(w
        .svc
        .verify(&w.root(), &huge, "alice", "sshd", "")
        .result
        .is_err());
}

#[test]
fn quota_per_user() {
    let w = world();
    w.allow_users();
    let cfg = Config {
        max_keys_per_user: 2,
        ..Config::default()
    };
    let svc = KeyService::new(cfg, w.store.clone(), w.host.clone(), Audit::stderr());
    svc.generate(&w.alice(), "", "", &none(), "").unwrap();
    svc.generate(&w.alice(), "", "", &none(), "").unwrap();
    assert!(matches!(
        svc.generate(&w.alice(), "", "", &none(), ""),
        Err(KeysError::QuotaExceeded(_))
    ));
}

#[test]
fn scope_and_services() {
    let w = world();
    w.allow_users();
    let (t, _) = w
        .svc
        .generate(&w.alice(), "", "", &["nginx*".to_string()], "")
        .unwrap();
    let v = |service: &str| {
        w.svc
            .verify(&w.root(), t.as_str().as_bytes(), "alice", service, "")
            .result
    };
    assert!(v("nginx").is_ok());
    assert!(v("sshd").is_err());
    assert!(v("su").is_err());
    // Validity without scope is root's question only.
    assert!(v("").is_ok());
}

#[test]
fn accounts_that_go_away() {
    let w = world();
    w.allow_users();
    let (t, info) = w.svc.generate(&w.alice(), "", "", &none(), "").unwrap();
    // Locked: refused while locked, fine after unlocking.
    w.host
        .shadow
        .lock()
        .unwrap()
        .insert("alice".into(), ShadowState::Locked);
    assert!(w.verify(t.as_str(), "alice").is_err());
    w.host.shadow.lock().unwrap().clear();
    assert!(w.verify(t.as_str(), "alice").is_ok());
    // A transient NSS failure refuses but never revokes.
    *w.host.nss_down.lock().unwrap() = true;
    assert!(w.verify(t.as_str(), "alice").is_err());
    *w.host.nss_down.lock().unwrap() = false;
    assert!(w.verify(t.as_str(), "alice").is_ok());
    // Renamed: the key is void for good, even if the name comes back.
    w.host
        .accounts
        .lock()
        .unwrap()
        .insert(ALICE, "alicia".into());
    assert!(w.verify(t.as_str(), "").is_err());
    w.host
        .accounts
        .lock()
        .unwrap()
        .insert(ALICE, "alice".into());
    assert!(w.verify(t.as_str(), "alice").is_err());
    assert!(w.store.by_id(&info.id).unwrap().unwrap().revoked.is_some());
}

#[test]
fn a_user_name_that_is_a_key_revokes_it() {
    let w = world();
    w.allow_users();
    let (t, info) = w.svc.generate(&w.alice(), "", "", &none(), "").unwrap();
    assert!(w.verify("apikey|whatever", t.as_str()).is_err());
    let rec = w.store.by_id(&info.id).unwrap().unwrap();
    assert_eq!(rec.revoked.unwrap().reason, "leaked-as-user-name");
}

#[test]
fn rotate_replaces_and_obeys_generate_rules() {
    let w = world();
    w.allow_users();
    let (old, info) = w
        .svc
        .generate(&w.alice(), "ci", "30d", &["sshd".into()], "")
        .unwrap();
    w.advance(100);
    let (new, rotated) = w.svc.rotate(&w.alice(), &info.id).unwrap();
    assert!(w.verify(old.as_str(), "alice").is_err());
    assert!(w.verify(new.as_str(), "alice").is_ok());
    assert_eq!(
        (rotated.name.as_str(), rotated.services.clone()),
        ("ci", vec!["sshd".to_string()])
    );
    assert_eq!(rotated.expires - rotated.created, 30 * 86400);
    let su = w.caller(ALICE, Some(BOB), &[]);
    assert!(matches!(
        w.svc.rotate(&su, &rotated.id),
        Err(KeysError::Impersonating(_))
    ));
    let bob = w.caller(BOB, Some(BOB), &[BOB]);
    assert!(matches!(
        w.svc.rotate(&bob, &rotated.id),
        Err(KeysError::Denied(_))
    ));
}

#[test]
fn last_use_is_buffered_then_written() {
    let w = world();
    w.allow_users();
    let (t, info) = w.svc.generate(&w.alice(), "", "", &none(), "").unwrap();
    w.verify(t.as_str(), "alice").unwrap();
    assert!(w
        .store
        .by_id(&info.id)
        .unwrap()
        .unwrap()
        .last_used
        .is_none());
    let listed = w.svc.list(&w.alice(), "", false, false).unwrap();
    assert_eq!(listed[0].last_service, "sshd");
    assert_eq!(listed[0].last_rhost, "10.0.0.1");
    assert_eq!(w.svc.flush_usage().unwrap(), 1);
    assert!(w
        .store
        .by_id(&info.id)
        .unwrap()
        .unwrap()
        .last_used
        .is_some());
}

/// `show`: a key's distinct (service, remote host) pairs, first and last,
/// from the store and from uses not yet written; to its owner and to
/// administrators, and to nobody else.
#[test]
fn a_keys_use_history_is_shown_to_its_owner_and_administrators() {
    let w = world();
    w.allow_users();
    let (t, info) = w.svc.generate(&w.alice(), "ci", "", &none(), "").unwrap();
    let login = |service: &str, rhost: &str| {
        w.svc
            .verify(&w.root(), t.as_str().as_bytes(), "alice", service, rhost)
            .result
            .unwrap();
    };
    login("sshd", "10.0.0.1");
    w.advance(60);
    login("sshd", "10.0.0.2");
    w.advance(60);
    login("sshd", "10.0.0.1");
    assert_eq!(w.svc.flush_usage().unwrap(), 1);
    w.advance(60);
    login("vsftpd", "10.0.0.3");
    let (shown, _, history) = w.svc.show(&w.alice(), &info.id).unwrap();
    assert_eq!(shown.id, info.id);
    let t0 = 1_700_000_000;
    let seen: Vec<(&str, &str, i64, i64)> = history
        .iter()
        .map(|p| (p.service.as_str(), p.rhost.as_str(), p.first, p.last))
        .collect();
    assert_eq!(
        seen,
        vec![
            ("vsftpd", "10.0.0.3", t0 + 180, t0 + 180),
            ("sshd", "10.0.0.1", t0, t0 + 120),
            ("sshd", "10.0.0.2", t0 + 60, t0 + 60),
        ]
    );
    assert_eq!(w.svc.show(&w.admin(), &info.id).unwrap().2, history);
    // Another user learns nothing, not even that the id exists.
    let bob = w.caller(BOB, Some(BOB), &[BOB]);
    assert!(matches!(
        w.svc.show(&bob, &info.id),
        Err(KeysError::NotFound(_))
    ));
    assert!(matches!(
        w.svc.show(&w.alice(), "nokey0000000"),
        Err(KeysError::NotFound(_))
    ));
    assert!(matches!(
        w.svc.show(&w.alice(), "not an id"),
        Err(KeysError::InvalidArgument(_))
    ));
    // A site that hides keys from their owners hides this too.
    w.svc.set_settings(&w.root(), "", "", "no", "").unwrap();
    assert!(matches!(
        w.svc.show(&w.alice(), &info.id),
        Err(KeysError::PolicyForbids(_))
    ));
}

#[test]
fn refusals_are_throttled_valid_keys_never() {
    let w = world();
    w.allow_users();
    let (t, _) = w.svc.generate(&w.alice(), "", "", &none(), "").unwrap();
    let bad = apikey_proto::Token::generate().unwrap();
    let mut delays = vec![];
    for _ in 0..15 {
        delays.push(
            w.svc
                .verify(&w.root(), bad.as_str().as_bytes(), "alice", "sshd", "evil")
                .delay_ms,
        );
    }
    assert_eq!(delays[0], 0);
    assert!(delays[14] > 0);
    let good = w
        .svc
        .verify(&w.root(), t.as_str().as_bytes(), "alice", "sshd", "evil");
    assert!(good.result.is_ok());
    assert_eq!(good.delay_ms, 0);
}

const PAM_PID: u32 = 4242;

impl World {
    /// A PAM stack (root) whose process is in audit session `sessionid`
    /// of `loginuid`, as after pam_loginuid.
    pub(crate) fn pam_stack(&self, loginuid: Option<u32>, sessionid: Option<u32>) -> Caller {
        self.host.procs.lock().unwrap().insert(
            PAM_PID,
            ProcIdentity {
                loginuid,
                sessionid,
            },
        );
        Caller {
            uid: 0,
            pid: PAM_PID,
            gids: vec![0],
        }
    }

    pub(crate) fn open(&self, c: &Caller, user: &str, key_id: &str) -> Result<String, KeysError> {
        self.svc
            .open_session(c, user, "sshd", "10.0.0.1", "ssh", key_id, "password")
    }

    fn session(&self, handle: &str) -> crate::store::SessionRecord {
        self.store.session(handle).unwrap().expect("recorded")
    }
}

#[test]
fn a_session_is_recorded_with_the_callers_own_audit_identity() {
    let w = world();
    let pam = w.pam_stack(Some(ALICE), Some(77));
    let handle = w.open(&pam, "alice", "").unwrap();
    assert!(apikey_proto::token::is_session_handle(&handle));
    let r = w.session(&handle);
    assert_eq!(r.boot_id, BOOT_ID);
    assert_eq!((r.audit_session, r.loginuid), (Some(77), Some(ALICE)));
    assert_eq!((r.caller_pid, r.uid), (PAM_PID, Some(ALICE)));
    assert_eq!(
        (r.user.as_str(), r.service.as_str(), r.rhost.as_str()),
        ("alice", "sshd", "10.0.0.1")
    );
    assert_eq!((r.tty.as_str(), r.key_id.as_deref()), ("ssh", None));
    assert_eq!((r.opened, r.closed), (1_700_000_000, None));

    w.advance(60);
    w.svc.close_session(&pam, &handle).unwrap();
    let r = w.session(&handle);
    assert_eq!(r.closed, Some(1_700_000_060));
    assert_eq!(r.close_reason.as_deref(), Some("pam-close"));
    // Closing twice, or a handle never given out, finds nothing.
    assert!(matches!(
        w.svc.close_session(&pam, &handle),
        Err(KeysError::NotFound(_))
    ));
    let unknown = apikey_proto::token::new_session_handle().unwrap();
    assert!(matches!(
        w.svc.close_session(&pam, &unknown),
        Err(KeysError::NotFound(_))
    ));
    assert!(matches!(
        w.svc.close_session(&pam, "x\n"),
        Err(KeysError::InvalidArgument(_))
    ));
}

#[test]
fn a_caller_outside_any_login_session_records_no_audit_ids() {
    let w = world();
    let handle = w.open(&w.pam_stack(None, None), "alice", "").unwrap();
    let r = w.session(&handle);
    assert_eq!((r.audit_session, r.loginuid), (None, None));
}

#[test]
fn nested_sessions_close_only_themselves() {
    let w = world();
    let pam = w.pam_stack(Some(ALICE), Some(5));
    let outer = w.open(&pam, "alice", "").unwrap();
    let inner = w.open(&pam, "bob", "").unwrap();
    assert_ne!(outer, inner);
    w.svc.close_session(&pam, &inner).unwrap();
    assert_eq!(w.session(&outer).closed, None);
}

#[test]
fn sessions_are_root_only() {
    let w = world();
    let handle = w
        .open(&w.pam_stack(Some(ALICE), Some(5)), "alice", "")
        .unwrap();
    for who in [w.alice(), w.admin(), w.caller(ALICE, Some(0), &[0])] {
        assert!(matches!(
            w.open(&who, "alice", ""),
            Err(KeysError::Denied(_))
        ));
        assert!(matches!(
            w.svc.close_session(&who, &handle),
            Err(KeysError::Denied(_))
        ));
    }
    // Root whose /proc entry cannot be read is refused too (S4).
    let vanished = Caller {
        uid: 0,
        pid: 1,
        gids: vec![0],
    };
    assert!(matches!(
        w.open(&vanished, "alice", ""),
        Err(KeysError::Denied(_))
    ));
    assert_eq!(w.opened_rows(), 1);
    assert_eq!(w.session(&handle).closed, None);
}

#[test]
fn bad_session_fields_are_refused_and_nothing_is_written() {
    let w = world();
    let pam = w.pam_stack(Some(ALICE), Some(5));
    let long = "a".repeat(257);
    let cases: &[(&str, &str, &str, &str, &str)] = &[
        ("", "sshd", "", "", ""),
        ("ali\nce", "sshd", "", "", ""),
        (&long, "sshd", "", "", ""),
        ("alice", "", "", "", ""),
        ("alice", "ss hd", "", "", ""),
        ("alice", "sshd\0", "", "", ""),
        ("alice", "sshd", "host\x1b[2J", "", ""),
        ("alice", "sshd", &long, "", ""),
        ("alice", "sshd", "", "pts/\r1", ""),
        ("alice", "sshd", "", &long, ""),
        ("alice", "sshd", "", "", "short"),
        ("alice", "sshd", "", "", "'; DROP TABLE"),
    ];
    for (user, service, rhost, tty, key_id) in cases {
        let got = w
            .svc
            .open_session(&pam, user, service, rhost, tty, key_id, "");
        assert!(
            matches!(got, Err(KeysError::InvalidArgument(_))),
            "{user:?} {service:?} {rhost:?} {tty:?} {key_id:?}: {got:?}"
        );
    }
    let long_auth = "a".repeat(129);
    for auth in ["PASSWORD", "pass word", "password,", "x\n", &long_auth] {
        let got = w.svc.open_session(&pam, "alice", "sshd", "", "", "", auth);
        assert!(
            matches!(got, Err(KeysError::InvalidArgument(_))),
            "{auth:?}: {got:?}"
        );
    }
    // 256 bytes is still fine.
    let most = "h".repeat(256);
    w.svc
        .open_session(&pam, "alice", "sshd", &most, &most, "", "")
        .unwrap();
    assert_eq!(w.opened_rows(), 1);
}

#[test]
fn a_key_in_the_user_field_is_refused_and_revoked() {
    let w = world();
    w.allow_users();
    let (t, info) = w.svc.generate(&w.alice(), "", "", &none(), "").unwrap();
    let pam = w.pam_stack(Some(ALICE), Some(5));
    assert!(matches!(
        w.open(&pam, t.as_str(), ""),
        Err(KeysError::InvalidArgument(_))
    ));
    let rec = w.store.by_id(&info.id).unwrap().unwrap();
    assert_eq!(rec.revoked.unwrap().reason, "leaked-as-user-name");
    assert_eq!(w.opened_rows(), 0);
}

#[test]
fn a_user_that_does_not_resolve_is_recorded_without_uid() {
    let w = world();
    let handle = w
        .open(&w.pam_stack(Some(ALICE), Some(5)), "ldap-user", "")
        .unwrap();
    assert_eq!(w.session(&handle).uid, None);
    assert_eq!(w.session(&handle).user, "ldap-user");
}

#[test]
fn the_key_named_must_be_a_live_key_of_that_user() {
    let w = world();
    w.allow_users();
    let bob = w.caller(BOB, Some(BOB), &[BOB]);
    let (_, bobs) = w.svc.generate(&bob, "", "", &none(), "").unwrap();
    let (_, alices) = w.svc.generate(&w.alice(), "", "", &none(), "").unwrap();
    let (_, revoked) = w.svc.generate(&w.alice(), "", "", &none(), "").unwrap();
    w.svc
        .revoke(&w.alice(), std::slice::from_ref(&revoked.id))
        .unwrap();
    let pam = w.pam_stack(Some(ALICE), Some(5));
    for id in [bobs.id.as_str(), revoked.id.as_str(), "nothere00000"] {
        assert!(
            matches!(
                w.open(&pam, "alice", id),
                Err(KeysError::InvalidArgument(_))
            ),
            "{id}"
        );
    }
    assert_eq!(w.opened_rows(), 0);
    let handle = w.open(&pam, "alice", &alices.id).unwrap();
    assert_eq!(w.session(&handle).key_id, Some(alices.id.clone()));
    // The name is alice's, the uid behind it is no longer the key's.
    {
        let mut accounts = w.host.accounts.lock().unwrap();
        accounts.remove(&ALICE);
        accounts.insert(2000, "alice".into());
    }
    assert!(matches!(
        w.open(&pam, "alice", &alices.id),
        Err(KeysError::InvalidArgument(_))
    ));
}

#[test]
fn a_recent_key_login_marks_the_session_it_opens() {
    let w = world();
    w.allow_users();
    let (t, info) = w.svc.generate(&w.alice(), "", "", &none(), "").unwrap();
    let pam = w.pam_stack(Some(ALICE), Some(5));
    // The module lost the key id between authenticate and open_session.
    w.verify(t.as_str(), "alice").unwrap();
    w.advance(30);
    let keyed = w.open(&pam, "alice", "").unwrap();
    assert_eq!(w.session(&keyed).key_id.as_deref(), Some(info.id.as_str()));
    // One key login marks one session: a password login after it is not.
    let password = w.open(&pam, "alice", "").unwrap();
    assert_eq!(w.session(&password).key_id, None);

    // Only the same user, service and remote host, and only for a while.
    w.verify(t.as_str(), "alice").unwrap();
    let other = |user: &str, service: &str, rhost: &str| {
        let h = w
            .svc
            .open_session(&pam, user, service, rhost, "", "", "")
            .unwrap();
        w.session(&h).key_id
    };
    assert_eq!(other("bob", "sshd", "10.0.0.1"), None);
    assert_eq!(other("alice", "vsftpd", "10.0.0.1"), None);
    assert_eq!(other("alice", "sshd", "10.0.0.2"), None);
    w.advance(121);
    assert_eq!(other("alice", "sshd", "10.0.0.1"), None);

    // A hand-over that worked spends the memory of its login.
    w.verify(t.as_str(), "alice").unwrap();
    let handed = w.open(&pam, "alice", &info.id).unwrap();
    assert_eq!(w.session(&handed).key_id.as_deref(), Some(info.id.as_str()));
    assert_eq!(w.session(&w.open(&pam, "alice", "").unwrap()).key_id, None);

    // Refused verifies, and validity checks without a service, mark nothing.
    assert!(w.verify(t.as_str(), "bob").is_err());
    w.svc
        .verify(&w.root(), t.as_str().as_bytes(), "alice", "", "10.0.0.1")
        .result
        .unwrap();
    assert_eq!(w.session(&w.open(&pam, "alice", "").unwrap()).key_id, None);
}

#[test]
fn the_account_step_sees_a_revocation_made_after_authentication() {
    let w = world();
    w.allow_users();
    let (t, info) = w.svc.generate(&w.alice(), "", "", &none(), "").unwrap();
    w.verify(t.as_str(), "alice").unwrap();
    let check = |user: &str| {
        w.svc
            .check_key(&w.root(), &info.id, user, "sshd", "10.0.0.1")
    };
    assert!(check("alice").is_ok());
    assert!(matches!(check("bob"), Err(KeysError::Refused(_))));
    assert!(matches!(
        w.svc.check_key(&w.alice(), &info.id, "alice", "sshd", ""),
        Err(KeysError::Denied(_))
    ));
    w.svc
        .revoke(&w.alice(), std::slice::from_ref(&info.id))
        .unwrap();
    assert!(matches!(check("alice"), Err(KeysError::Refused(_))));
    assert!(matches!(
        w.svc
            .check_key(&w.root(), "nothere00000", "alice", "sshd", ""),
        Err(KeysError::Refused(_))
    ));
}

/// Verify on an async worker: the same answers as on the blocking pool
/// where it can answer, and no effect at all where it cannot.
mod inline {
    use super::*;

    fn inline(w: &World, token: &str, user: &str) -> Option<Result<(String, String), KeysError>> {
        w.svc
            .try_verify_inline(&w.root(), token.as_bytes(), user, "sshd", "10.0.0.1")
            .map(|a| a.result)
    }

    fn alice_key(w: &World) -> (String, String) {
        w.allow_users();
        let (token, info) = w
            .svc
            .generate(&w.alice(), "laptop", "", &none(), "")
            .unwrap();
        (token.as_str().to_string(), info.id)
    }

    #[test]
    fn answers_as_the_blocking_path_does() {
        let w = world();
        w.host.quick.store(true, Ordering::SeqCst);
        let (token, id) = alice_key(&w);
        assert_eq!(
            inline(&w, &token, "alice").unwrap().unwrap(),
            ("alice".into(), id.clone())
        );
        assert!(w.svc.list(&w.alice(), "", false, false).unwrap()[0].last_used > 0);
        assert!(matches!(
            inline(&w, &token, "bob"),
            Some(Err(KeysError::Refused(_)))
        ));
        let junk = "apikey|0000000000000000000000000000000000000000000000";
        assert!(matches!(inline(&w, junk, "alice"), Some(Err(_))));
        // S8: a lock is refused inline too, and is no revocation.
        w.host
            .shadow
            .lock()
            .unwrap()
            .insert("alice".into(), ShadowState::Locked);
        assert!(matches!(inline(&w, &token, "alice"), Some(Err(_))));
        w.host.shadow.lock().unwrap().clear();
        assert!(inline(&w, &token, "alice").unwrap().is_ok());
        // CheckKey, the account step, likewise.
        let check = |user: &str| {
            w.svc
                .try_check_key_inline(&w.root(), &id, user, "sshd", "10.0.0.1")
        };
        assert!(matches!(check("alice"), Some(Ok(()))));
        assert!(matches!(check("bob"), Some(Err(KeysError::Refused(_)))));
    }

    #[test]
    fn without_quick_answers_it_hands_over_untouched() {
        let w = world();
        let (token, _) = alice_key(&w);
        assert!(inline(&w, &token, "alice").is_none());
        // Nothing was recorded: no last-used time yet.
        assert_eq!(
            w.svc.list(&w.alice(), "", false, false).unwrap()[0].last_used,
            0
        );
        assert!(w.verify(&token, "alice").is_ok());
    }

    #[test]
    fn anything_that_revokes_is_left_to_the_blocking_path() {
        let w = world();
        w.host.quick.store(true, Ordering::SeqCst);
        let (token, _) = alice_key(&w);
        // A user name that is a valid key: revoked, but not inline.
        assert!(inline(&w, "x", &token).is_none());
        assert!(inline(&w, &token, "alice").unwrap().is_ok());
        // A deleted account: not inline either; then revoked for good.
        w.host.accounts.lock().unwrap().remove(&ALICE);
        assert!(inline(&w, &token, "alice").is_none());
        assert!(w.store.list_active(Some(ALICE)).unwrap().len() == 1);
        assert!(w.verify(&token, "alice").is_err());
        assert!(w.store.list_active(Some(ALICE)).unwrap().is_empty());
        // A renamed one likewise.
        let w = world();
        w.host.quick.store(true, Ordering::SeqCst);
        let (token, _) = alice_key(&w);
        w.host
            .accounts
            .lock()
            .unwrap()
            .insert(ALICE, "alicia".into());
        assert!(inline(&w, &token, "alice").is_none());
        assert!(w.store.list_active(Some(ALICE)).unwrap().len() == 1);
    }

    #[test]
    fn session_keys_and_unresolved_verifier_groups_hand_over() {
        let w = world();
        w.host.quick.store(true, Ordering::SeqCst);
        w.allow_users();
        let (token, _) = w.svc.create_session_key(&w.alice(), "s").unwrap();
        assert!(inline(&w, token.as_str(), "alice").is_none());
        assert!(w.verify(token.as_str(), "alice").is_ok());

        let mut cfg = Config::default();
        cfg.verifier_groups
            .insert("apikey-auth".into(), vec!["nginx*".into()]);
        let svc = KeyService::new(cfg, w.store.clone(), w.host.clone(), Audit::stderr());
        let www = w.caller(33, None, &[77]);
        // The fake host resolves only apikey-admin: the group needs NSS.
        assert!(svc
            .try_verify_inline(&www, b"x", "alice", "nginx", "")
            .is_none());
        assert!(!svc.status(&www).unwrap().verifier);
    }
}

/// ListPageWith lists what ListPage does, each key with its extras.
#[test]
fn listing_with_extras_lists_the_same_keys() {
    let w = world();
    w.allow_users();
    for name in ["a", "b"] {
        w.svc.generate(&w.alice(), name, "", &none(), "").unwrap();
    }
    let admin = w.admin();
    let (plain, next) = w
        .svc
        .list_page(&admin, "", true, false, &none(), "", 10)
        .unwrap();
    let (with, next_with) = w
        .svc
        .list_page_with(&admin, "", true, false, &none(), "", 10)
        .unwrap();
    assert_eq!((next.as_str(), next_with.as_str()), ("", ""));
    assert_eq!(with.len(), 2);
    for ((info, extra), same) in with.iter().zip(&plain) {
        assert_eq!(info, same);
        // A single host's keys have nothing beyond KeyInfo.
        assert_eq!(extra, &apikey_proto::KeyExtra::default());
    }
}

/// ListPage pages through every key once, a page at most `limit` long,
/// and ends with an empty position; a position no listing gave is refused.
#[test]
fn listing_by_pages_gives_every_key_once() {
    let w = world();
    w.allow_users();
    let mut made: Vec<String> = (0..7)
        .map(|i| {
            let name = format!("k{i}");
            w.svc
                .generate(&w.alice(), &name, "", &none(), "")
                .unwrap()
                .1
                .id
        })
        .collect();
    let admin = w.admin();
    let (mut seen, mut after, mut pages) = (Vec::new(), String::new(), 0);
    loop {
        let (page, next) = w
            .svc
            .list_page(&admin, "", true, false, &none(), &after, 3)
            .unwrap();
        assert!(!page.is_empty() && page.len() <= 3, "{page:?}");
        seen.extend(page.into_iter().map(|k| k.id));
        pages += 1;
        if next.is_empty() {
            break;
        }
        after = next;
    }
    assert_eq!(pages, 3);
    seen.sort();
    made.sort();
    assert_eq!(seen, made);
    let (whole, next) = w
        .svc
        .list_page(&admin, "", true, false, &none(), "", 7)
        .unwrap();
    assert_eq!((whole.len(), next.as_str()), (7, ""));
    // Twenty records are a few kilobytes: one page, far from its budget.
    for _ in 0..13 {
        w.svc.generate(&w.alice(), "more", "", &none(), "").unwrap();
    }
    let (whole, next) = w
        .svc
        .list_page(&admin, "", true, false, &none(), "", 20)
        .unwrap();
    assert_eq!((whole.len(), next.as_str()), (20, ""));
    for bad in ["0", "-3", "x", "1e3"] {
        assert!(
            matches!(
                w.svc.list_page(&admin, "", true, false, &none(), bad, 3),
                Err(KeysError::InvalidArgument(_))
            ),
            "{bad}"
        );
    }
}

/// Revoke takes between 1 and MAX_IDS ids.
#[test]
fn revoke_takes_a_bounded_list_of_ids() {
    let w = world();
    let ids = |n: usize| -> Vec<String> { (0..n).map(|i| format!("{i:012}")).collect() };
    for n in [0, crate::service::MAX_IDS + 1] {
        assert!(
            matches!(
                w.svc.revoke(&w.root(), &ids(n)),
                Err(KeysError::InvalidArgument(_))
            ),
            "{n} ids"
        );
    }
    assert!(matches!(
        w.svc.revoke(&w.root(), &ids(crate::service::MAX_IDS)),
        Err(KeysError::NotFound(_))
    ));
}

/// A backup is a whole, consistent store in the file the administrator
/// gave; anyone else gets nothing written.
#[test]
fn backups_are_for_administrators_and_hold_the_store() {
    let dir = tempfile::tempdir().unwrap();
    let w = world_in(dir.path());
    w.allow_users();
    w.svc.generate(&w.alice(), "one", "", &none(), "").unwrap();
    let path = dir.path().join("copy.db");
    let mut refused = std::fs::File::create(&path).unwrap();
    assert!(matches!(
        w.svc.backup(&w.alice(), &mut refused),
        Err(KeysError::Denied(_))
    ));
    assert_eq!(std::fs::metadata(&path).unwrap().len(), 0);
    let mut out = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&path)
        .unwrap();
    // Never over a file's contents, never into a device.
    std::fs::write(dir.path().join("used"), b"data").unwrap();
    let mut used = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(dir.path().join("used"))
        .unwrap();
    let mut device = std::fs::OpenOptions::new()
        .write(true)
        .open("/dev/null")
        .unwrap();
    for target in [&mut used, &mut device] {
        assert!(matches!(
            w.svc.backup(&w.admin(), target),
            Err(KeysError::InvalidArgument(_))
        ));
    }
    assert_eq!(std::fs::read(dir.path().join("used")).unwrap(), b"data");
    let bytes = w.svc.backup(&w.admin(), &mut out).unwrap();
    drop(out);
    assert!(bytes > 0);
    assert_eq!(std::fs::metadata(&path).unwrap().len(), bytes);
    let copy = rusqlite::Connection::open(&path).unwrap();
    let keys: i64 = copy
        .query_row("SELECT count(*) FROM keys", [], |r| r.get(0))
        .unwrap();
    assert_eq!(keys, 1);
}

/// A checkpoint leaves the write-ahead log empty: the main file alone is
/// the whole store.
#[test]
fn a_checkpoint_folds_the_log_into_the_store() {
    let dir = tempfile::tempdir().unwrap();
    let w = world_in(dir.path());
    w.allow_users();
    w.svc.generate(&w.alice(), "one", "", &none(), "").unwrap();
    let wal = || std::fs::metadata(dir.path().join("keys.db-wal")).map_or(0, |m| m.len());
    assert!(wal() > 0);
    w.svc.checkpoint_store().unwrap();
    assert_eq!(wal(), 0);
}

#[test]
fn only_an_active_key_is_rotated() {
    let w = world();
    w.allow_users();
    let (_, info) = w.svc.generate(&w.alice(), "", "", &none(), "").unwrap();
    w.svc
        .revoke(&w.alice(), std::slice::from_ref(&info.id))
        .unwrap();
    assert!(matches!(
        w.svc.rotate(&w.alice(), &info.id),
        Err(KeysError::NotFound(_))
    ));
}

#[test]
fn the_services_keys_may_name_are_the_sites() {
    let w = world();
    assert_eq!(w.svc.key_services(), Config::default().key_services);
    assert!(!w.svc.key_services().is_empty());
}

/// The session timeout is a duration of at least a minute.
#[test]
fn session_timeouts_start_at_a_minute() {
    let w = world();
    let set = |t: &str| w.svc.set_settings(&w.root(), "", "", "", t);
    assert_eq!(set("60s").unwrap().session_timeout, 60);
    assert!(matches!(set("59s"), Err(KeysError::InvalidArgument(_))));
    assert!(matches!(set("0s"), Err(KeysError::InvalidArgument(_))));
}

/// What `apikey status` reports about its caller.
#[test]
fn status_describes_the_caller() {
    let w = world();
    let alice = w.svc.status(&w.alice()).unwrap();
    assert_eq!(
        (
            alice.user.as_str(),
            alice.logged_in,
            alice.impersonating,
            alice.admin
        ),
        ("alice", true, false, false)
    );
    let su = w.svc.status(&w.caller(ALICE, Some(BOB), &[])).unwrap();
    assert!(su.logged_in && su.impersonating);
    let daemon = w.svc.status(&w.caller(ALICE, None, &[])).unwrap();
    assert!(!daemon.logged_in && !daemon.impersonating);
    assert_eq!(alice.session_keys, 0);
    let nobody = w.svc.status(&w.caller(4242, Some(4242), &[])).unwrap();
    assert_eq!(nobody.user, "");
    assert!(w.svc.status(&w.admin()).unwrap().admin);
}

/// A key's name may be 200 characters long, not one more.
#[test]
fn names_are_capped_at_their_documented_length() {
    let w = world();
    w.allow_users();
    let longest = "é".repeat(crate::service::MAX_NAME);
    assert!(w
        .svc
        .generate(&w.alice(), &longest, "", &none(), "")
        .is_ok());
    assert!(matches!(
        w.svc
            .generate(&w.alice(), &format!("{longest}x"), "", &none(), ""),
        Err(KeysError::InvalidArgument(_))
    ));
}

/// No new key while the store's disk is below the configured minimum.
#[test]
fn new_keys_wait_for_free_disk_space() {
    let dir = tempfile::tempdir().unwrap();
    let with_minimum = |min: u64| {
        let cfg = Config {
            min_free_disk_bytes: min,
            ..Config::default()
        };
        let db = dir.path().join(format!("keys-{min}.db"));
        world_configured(SqliteStore::open(&db).unwrap(), Audit::stderr(), cfg)
    };
    let full = with_minimum(u64::MAX);
    full.allow_users();
    assert!(matches!(
        full.svc.generate(&full.alice(), "", "", &none(), ""),
        Err(KeysError::QuotaExceeded(m)) if m.contains("no new keys until space is freed")
    ));
    let roomy = with_minimum(0);
    roomy.allow_users();
    assert!(roomy
        .svc
        .generate(&roomy.alice(), "", "", &none(), "")
        .is_ok());
}

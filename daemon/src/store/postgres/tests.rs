//! The shared store against a throwaway PostgreSQL cluster: the store
//! contract, two hosts on one database, what the grants and row-level
//! security refuse, and a database that stops and comes back.

use super::*;
use crate::store::contract_tests::{self, by, key};
use crate::store::fleet::FleetStore;
use crate::store::{SqliteStore, Store, UsePair};
use apikey_test_pg::{fleet_database, Cluster, SUPERUSER};
use std::path::Path;

/// Owners are `userN` with uid N on every host of these tests.
struct NumberedUsers;

impl Accounts for NumberedUsers {
    fn uid_of(&self, name: &str) -> Option<u32> {
        match name {
            "root" => Some(0),
            _ => name.strip_prefix("user")?.parse().ok(),
        }
    }
    fn name_of(&self, uid: u32) -> Option<String> {
        Some(match uid {
            0 => "root".into(),
            n => format!("user{n}"),
        })
    }
    /// Users from uid 60000 on are known only to NSS, not to the files.
    fn quick_uid_of(&self, name: &str) -> Option<u32> {
        self.uid_of(name).filter(|&uid| uid < 60000)
    }
}

const ISSUER: (&str, &str, bool) = ("host-a", "apikeyd_a", true);
const VERIFIER: (&str, &str, bool) = ("host-b", "apikeyd_b", false);

fn packaging() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../packaging"))
}

/// The shared store as host `host` connecting by `text`.
fn open_as(text: &str, host: &str, timeout: Duration, grace: Duration) -> Result<PgKeys, String> {
    PgKeys::open(
        Settings {
            conninfo: conninfo::parse(text)?,
            password: None,
            host: host.into(),
            timeout,
            offline_grace: grace,
        },
        Arc::new(NumberedUsers),
    )
}

fn keys_as(cluster: &Cluster, (host, role, _): (&str, &str, bool), timeout_ms: u64) -> PgKeys {
    let text = cluster.conninfo(role, "apikey");
    open_as(
        &text,
        host,
        Duration::from_millis(timeout_ms),
        Duration::ZERO,
    )
    .unwrap()
}

/// `fleet_database`'s migration step, as the owner's role.
fn migrate(owner: &str) -> Result<i32, String> {
    open_as(owner, "migrator", Duration::from_secs(10), Duration::ZERO)?
        .upgrade_schema(Duration::from_secs(30))
}

fn fleet_as(cluster: &Cluster, who: (&str, &str, bool)) -> FleetStore {
    FleetStore {
        keys: keys_as(cluster, who, 2000),
        local: SqliteStore::open_in_memory(),
    }
}

/// A cluster with the fleet schema and hosts A (issuer) and B; `None`
/// when the test may skip.
fn cluster() -> Option<Cluster> {
    if !apikey_test_skip::proceed_unless(apikey_test_pg::unmet().as_deref()) {
        return None;
    }
    let cluster = Cluster::start().unwrap();
    fleet_database(&cluster, packaging(), &[ISSUER, VERIFIER], |owner| {
        assert_eq!(migrate(owner)?, schema::known());
        Ok(())
    })
    .unwrap();
    Some(cluster)
}

fn as_made_on_a(mut k: KeyRecord) -> KeyRecord {
    k.made_on = "host-a".into();
    k
}

#[test]
fn the_store_contract_holds_on_postgresql() {
    let Some(cluster) = cluster() else { return };
    let fresh = || -> Box<dyn Store> {
        cluster
            .psql_as(
                SUPERUSER,
                "apikey",
                "TRUNCATE apikey.keys, apikey.key_uses, apikey.key_use_pairs, apikey.settings",
            )
            .unwrap();
        Box::new(fleet_as(&cluster, ISSUER))
    };
    contract_tests::all(&fresh, &as_made_on_a);
}

#[test]
fn a_key_made_on_one_host_works_on_another_until_either_revokes_it() {
    let Some(cluster) = cluster() else { return };
    let (a, b) = (fleet_as(&cluster, ISSUER), fleet_as(&cluster, VERIFIER));
    let k = key("shared000001", 1000, 10);
    a.insert(&k, 9, 10).unwrap();
    assert_eq!(b.by_hash(&k.hash).unwrap(), Some(as_made_on_a(k.clone())));
    // Revoked on B: A sees it at its very next lookup.
    assert_eq!(
        b.revoke(std::slice::from_ref(&k.id), by(20)).unwrap(),
        vec![k.id.clone()]
    );
    let seen = a.by_hash(&k.hash).unwrap().unwrap().revoked.unwrap();
    assert_eq!((seen.at, seen.reason.as_str()), (20, "test"));
    let row = cluster
        .psql_as(
            SUPERUSER,
            "apikey",
            "SELECT revoked_on, revoked_by FROM apikey.keys",
        )
        .unwrap();
    assert_eq!(row, "host-b|root");
    // Uses are kept per host; a listing shows the latest of any host.
    let used = |at, rhost: &str, host: &str| KeyUse {
        key_id: k.id.clone(),
        at,
        service: "sshd".into(),
        rhost: rhost.into(),
        host: host.into(),
    };
    a.record_uses(&[used(30, "10.0.0.1", "host-a")]).unwrap();
    b.record_uses(&[used(40, "10.0.0.2", "host-b")]).unwrap();
    a.record_uses(&[used(35, "10.0.0.3", "host-a")]).unwrap();
    assert_eq!(
        a.by_id(&k.id).unwrap().unwrap().last_used,
        Some(used(40, "10.0.0.2", "host-b"))
    );
    let uses = cluster
        .psql_as(
            SUPERUSER,
            "apikey",
            "SELECT host, at FROM apikey.key_uses ORDER BY host",
        )
        .unwrap();
    assert_eq!(uses, "host-a|35\nhost-b|40");
    // The use history merges the hosts' rows: a pair's first use on any
    // host, its last, and where that last one was.
    let pair = |rhost: &str, first, last| UsePair {
        key_id: k.id.clone(),
        service: "sshd".into(),
        rhost: rhost.into(),
        first,
        last,
        host: String::new(),
    };
    a.record_use_pairs(&[pair("10.0.0.1", 30, 35), pair("10.0.0.3", 33, 33)])
        .unwrap();
    b.record_use_pairs(&[pair("10.0.0.1", 25, 40)]).unwrap();
    let history: Vec<(String, i64, i64, String)> = b
        .use_history(&k.id)
        .unwrap()
        .into_iter()
        .map(|p| (p.rhost, p.first, p.last, p.host))
        .collect();
    assert_eq!(
        history,
        vec![
            ("10.0.0.1".into(), 25, 40, "host-b".into()),
            ("10.0.0.3".into(), 33, 33, "host-a".into()),
        ]
    );
}

#[test]
fn only_issuer_hosts_make_keys_or_change_the_policy() {
    let Some(cluster) = cluster() else { return };
    let b = fleet_as(&cluster, VERIFIER);
    let e = b.insert(&key("bkey00000001", 1000, 0), 9, 0).unwrap_err();
    assert_eq!(
        e,
        StoreError::Denied("this host may not make keys; keys are made on host-a".into())
    );
    let e = b.save_policy(&Policy::default()).unwrap_err();
    assert!(
        matches!(&e, StoreError::Denied(m) if m.contains("host-a")),
        "{e:?}"
    );
    // Session keys are B's own, in its local store.
    let mut session = key("sess00000001", 1000, 0);
    session.kind = KeyKind::Session;
    b.insert(&session, 9, 0).unwrap();
    assert_eq!(b.by_hash(&session.hash).unwrap().unwrap().id, session.id);
    assert_eq!(
        cluster
            .psql_as(SUPERUSER, "apikey", "SELECT count(*) FROM apikey.keys")
            .unwrap(),
        "0"
    );
}

/// A root compromise of an ordinary host gives its database role, not
/// more: straight from psql, it can neither add a key, nor bring a revoked
/// one back, nor change one, nor write another host's uses.
#[test]
fn the_database_refuses_an_ordinary_hosts_role_whatever_it_sends() {
    let Some(cluster) = cluster() else { return };
    let a = fleet_as(&cluster, ISSUER);
    a.insert(&key("akey00000001", 1000, 0), 9, 0).unwrap();
    a.insert(&key("akey00000002", 1000, 0), 9, 0).unwrap();
    a.revoke(&["akey00000002".to_string()], by(5)).unwrap();
    a.record_uses(&[KeyUse {
        key_id: "akey00000001".into(),
        at: 7,
        service: "sshd".into(),
        rhost: "".into(),
        host: "host-a".into(),
    }])
    .unwrap();
    let b = VERIFIER.1;
    for (sql, words) in [
        (
            "INSERT INTO apikey.keys (id, hash, owner, created_by, made_on, name, services, \
             hosts, created) VALUES ('evil00000001', sha256('x'), 'user1000', 'root', \
             'host-b', '', '{}', '{}', 0)",
            "permission denied",
        ),
        ("UPDATE apikey.keys SET expires = NULL", "permission denied"),
        (
            "UPDATE apikey.keys SET hosts = '{host-b}'",
            "permission denied",
        ),
        (
            "UPDATE apikey.keys SET revoked = 1, revoked_on = 'host-a' WHERE id = 'akey00000001'",
            "row-level security",
        ),
        (
            "INSERT INTO apikey.settings VALUES ('allow_user_keys', 'yes')",
            "permission denied",
        ),
        ("DELETE FROM apikey.keys", "permission denied"),
        (
            "SELECT apikey.add_host('host-c', 'apikeyd_b')",
            "permission denied",
        ),
        (
            "INSERT INTO apikey.key_uses VALUES ('akey00000001', 'host-a', 9, 'sshd', '')",
            "row-level security",
        ),
        (
            "INSERT INTO apikey.key_use_pairs VALUES \
             ('akey00000001', 'host-a', 'sshd', '192.0.2.66', 1, 9)",
            "row-level security",
        ),
    ] {
        let e = cluster.psql_as(b, "apikey", sql).unwrap_err();
        assert!(e.contains(words), "{sql}: {e}");
    }
    // Bringing a revoked key back, or updating another host's use, finds
    // no row it may touch.
    cluster
        .psql_as(
            b,
            "apikey",
            "UPDATE apikey.keys SET revoked = NULL, revoked_on = NULL WHERE id = 'akey00000002'",
        )
        .unwrap();
    assert_eq!(
        cluster
            .psql_as(
                SUPERUSER,
                "apikey",
                "SELECT revoked FROM apikey.keys WHERE id = 'akey00000002'"
            )
            .unwrap(),
        "5"
    );
    cluster
        .psql_as(
            b,
            "apikey",
            "UPDATE apikey.key_uses SET at = 99 WHERE host = 'host-a'",
        )
        .unwrap();
    assert_eq!(
        cluster
            .psql_as(SUPERUSER, "apikey", "SELECT at FROM apikey.key_uses")
            .unwrap(),
        "7"
    );
    // Nor erase another host's history of a key.
    a.record_use_pairs(&[UsePair {
        key_id: "akey00000001".into(),
        service: "sshd".into(),
        rhost: "10.0.0.1".into(),
        first: 7,
        last: 7,
        host: String::new(),
    }])
    .unwrap();
    cluster
        .psql_as(b, "apikey", "DELETE FROM apikey.key_use_pairs")
        .unwrap();
    assert_eq!(
        cluster
            .psql_as(
                SUPERUSER,
                "apikey",
                "SELECT host, rhost FROM apikey.key_use_pairs"
            )
            .unwrap(),
        "host-a|10.0.0.1"
    );
    // What it may do: revoke, as itself.
    cluster
        .psql_as(
            b,
            "apikey",
            "UPDATE apikey.keys SET revoked = 9, revoked_on = 'host-b' WHERE id = 'akey00000001'",
        )
        .unwrap();
    // A role the administrator never registered sees no keys at all.
    cluster
        .psql_as(
            SUPERUSER,
            "apikey",
            "CREATE ROLE stray LOGIN IN ROLE apikey_host",
        )
        .unwrap();
    assert_eq!(
        cluster
            .psql_as("stray", "apikey", "SELECT count(*) FROM apikey.keys")
            .unwrap(),
        "0"
    );
}

#[test]
fn a_stopped_database_answers_unavailable_at_once_and_is_used_again_when_back() {
    let Some(mut cluster) = cluster() else { return };
    let a = FleetStore {
        keys: keys_as(&cluster, ISSUER, 1000),
        local: SqliteStore::open_in_memory(),
    };
    let k = key("akey00000001", 1000, 0);
    a.insert(&k, 9, 0).unwrap();
    cluster.stop().unwrap();
    let started = Instant::now();
    let e = a.by_hash(&k.hash).unwrap_err();
    assert!(matches!(e, StoreError::Failed(_)), "{e:?}");
    assert!(
        started.elapsed() < Duration::from_millis(1000),
        "{:?}",
        started.elapsed()
    );
    // Local session keys and sessions go on.
    assert!(a.active_session_keys().unwrap().is_empty());
    cluster.restart().unwrap();
    assert_eq!(a.by_hash(&k.hash).unwrap().unwrap().id, k.id);
}

/// Schema 3: a daemon that says it knows an earlier schema (or nothing)
/// does not see a key limited to networks, which it would not check; this
/// one does, with its networks.
#[test]
fn a_key_with_networks_is_hidden_from_daemons_that_would_not_check_them() {
    let Some(cluster) = cluster() else { return };
    let a = fleet_as(&cluster, ISSUER);
    let mut limited = key("limited00001", 1000, 0);
    limited.sources = vec!["10.1.0.0/16".into()];
    a.insert(&limited, 9, 0).unwrap();
    a.insert(&key("open00000001", 1000, 0), 9, 0).unwrap();
    let seen = |knows: &str| {
        cluster
            .psql_as(
                VERIFIER.1,
                "apikey",
                &format!("{knows} SELECT string_agg(id, ',' ORDER BY id) FROM apikey.keys"),
            )
            .unwrap()
    };
    assert_eq!(seen(""), "open00000001");
    assert_eq!(seen("SET apikey.knows = 2;"), "open00000001");
    assert_eq!(seen("SET apikey.knows = 3;"), "limited00001,open00000001");
    let b = fleet_as(&cluster, VERIFIER);
    assert_eq!(
        b.by_hash(&limited.hash).unwrap().unwrap().sources,
        limited.sources
    );
}

/// The login path's lookup awaited on the daemon's runtime: the same
/// answers as the blocking one, through the same connections; a row whose
/// names the local files do not hold left to a thread that may block; a
/// stopped database an error at once, not a wait.
#[test]
fn a_lookup_awaited_on_the_daemons_runtime_answers_as_a_blocking_one() {
    let Some(mut cluster) = cluster() else { return };
    let daemon = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let a = fleet_as(&cluster, ISSUER);
    let b = FleetStore {
        keys: keys_as(&cluster, VERIFIER, 1000).lookups_on(daemon.handle().clone()),
        local: SqliteStore::open_in_memory(),
    };
    let k = key("awaited00001", 1000, 10);
    let far = key("awaited00002", 60001, 10);
    a.insert(&k, 9, 10).unwrap();
    a.insert(&far, 9, 10).unwrap();
    let mut session = key("sess00000001", 1000, 0);
    session.kind = KeyKind::Session;
    b.insert(&session, 9, 0).unwrap();
    let awaited = |hash: [u8; 32]| daemon.block_on(async { b.by_hash_async(&hash).await });
    assert_eq!(awaited(k.hash), Some(Ok(Some(as_made_on_a(k.clone())))));
    assert_eq!(awaited([7; 32]), Some(Ok(None)));
    assert_eq!(awaited(session.hash), Some(Ok(Some(session.clone()))));
    assert_eq!(awaited(far.hash), None);
    assert_eq!(b.by_hash(&far.hash).unwrap().unwrap().owner_uid, 60001);
    // Revoked on A: refused on B at its next lookup, awaited or not.
    a.revoke(std::slice::from_ref(&k.id), by(20)).unwrap();
    let revoked = |found: Option<StoreResult<Option<KeyRecord>>>| {
        found.unwrap().unwrap().unwrap().revoked.map(|r| r.at)
    };
    assert_eq!(revoked(awaited(k.hash)), Some(20));
    assert_eq!(revoked(Some(b.by_hash(&k.hash))), Some(20));
    cluster.stop().unwrap();
    let started = Instant::now();
    assert!(
        matches!(awaited(k.hash), Some(Err(StoreError::Failed(_)))),
        "a stopped database is an error"
    );
    assert!(started.elapsed() < Duration::from_millis(1000));
    cluster.restart().unwrap();
    assert_eq!(revoked(awaited(k.hash)), Some(20));
}

#[test]
fn a_host_whose_role_is_not_registered_or_misnamed_is_told_so() {
    let Some(cluster) = cluster() else { return };
    let misnamed = keys_as(&cluster, ("host-z", VERIFIER.1, false), 2000);
    let e = misnamed.connect_now(Duration::from_secs(5)).unwrap_err();
    assert!(e.contains("registered as host 'host-b'"), "{e}");
    cluster
        .psql_as(
            SUPERUSER,
            "apikey",
            "CREATE ROLE stray LOGIN IN ROLE apikey_host",
        )
        .unwrap();
    let stray = keys_as(&cluster, ("host-s", "stray", false), 2000);
    let e = stray.connect_now(Duration::from_secs(5)).unwrap_err();
    assert!(e.contains("not in apikey.hosts"), "{e}");
    // And every call says the same until it is fixed.
    let e = stray.by_hash(&[1; 32]).unwrap_err();
    assert!(
        matches!(&e, StoreError::Failed(m) if m.contains("not in apikey.hosts")),
        "{e:?}"
    );
}

#[test]
fn a_schema_newer_than_this_daemon_can_use_is_refused() {
    let Some(cluster) = cluster() else { return };
    let next = schema::known() + 1;
    cluster
        .psql_as(
            SUPERUSER,
            "apikey",
            &format!("UPDATE apikey.schema_version SET version = {next}, compatible_from = {next}"),
        )
        .unwrap();
    let e = keys_as(&cluster, ISSUER, 2000)
        .connect_now(Duration::from_secs(5))
        .unwrap_err();
    assert!(e.contains(&format!("at version {next}")), "{e}");
    // One that older daemons can still use is used.
    cluster
        .psql_as(
            SUPERUSER,
            "apikey",
            &format!(
                "UPDATE apikey.schema_version SET compatible_from = {}",
                schema::known()
            ),
        )
        .unwrap();
    keys_as(&cluster, ISSUER, 2000)
        .connect_now(Duration::from_secs(5))
        .unwrap();
}

/// TLS as libpq means it: verify-full checks the chain and the name,
/// verify-ca the chain only, and a server the CA did not sign is refused.
#[test]
fn tls_checks_the_server_as_libpq_does() {
    if !apikey_test_skip::proceed_unless(apikey_test_pg::unmet().as_deref()) {
        return;
    }
    let cluster = Cluster::start_with_tls().unwrap();
    fleet_database(&cluster, packaging(), &[ISSUER], |owner| {
        migrate(owner).map(|_| ())
    })
    .unwrap();
    let cas = cluster.tls.as_ref().unwrap();
    let connect = |host: &str, mode: &str, ca: &Path| {
        let text = format!(
            "host={host} port={} user=apikeyd_a dbname=apikey sslmode={mode} sslrootcert={}",
            cluster.port,
            ca.display()
        );
        let keys = keys_as_text(&text);
        keys.connect_now(Duration::from_secs(5)).map(|_| keys)
    };
    // A lookup keeps its connection open, to be looked at.
    let keys = connect("localhost", "verify-full", &cas.ca).unwrap();
    assert_eq!(keys.by_hash(&[0; 32]).unwrap(), None);
    let encrypted = cluster
        .psql_as(
            SUPERUSER,
            "apikey",
            "SELECT bool_and(s.ssl) FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid) \
             WHERE a.usename = 'apikeyd_a'",
        )
        .unwrap();
    assert_eq!(encrypted, "t");
    let e = connect("localhost", "verify-full", &cas.other_ca)
        .map(|_| ())
        .unwrap_err();
    assert!(e.contains("certificate verify failed"), "{e}");
    // The certificate names localhost, not the address.
    let e = connect("127.0.0.1", "verify-full", &cas.ca)
        .map(|_| ())
        .unwrap_err();
    assert!(e.contains("certificate verify failed"), "{e}");
    assert!(connect("127.0.0.1", "verify-ca", &cas.ca).is_ok());
    // require with a root certificate checks the chain, as libpq's does.
    let e = connect("127.0.0.1", "require", &cas.other_ca)
        .map(|_| ())
        .unwrap_err();
    assert!(e.contains("certificate verify failed"), "{e}");
}

fn keys_as_text(text: &str) -> PgKeys {
    open_as(text, ISSUER.0, Duration::from_secs(5), Duration::ZERO).unwrap()
}

#[test]
fn a_sandboxed_daemon_is_told_how_to_let_it_reach_the_database() {
    for why in [
        "error connecting to server: Address family not supported by protocol (os error 97)",
        "error connecting to server: Operation not permitted (os error 1)",
    ] {
        assert!(reach_failure(why).contains("fleet-network.conf"), "{why}");
    }
    let refused = reach_failure("error connecting to server: Connection refused (os error 111)");
    assert_eq!(
        refused,
        "cannot reach the fleet database: error connecting to server: Connection refused (os error 111)"
    );
}

/// `--migrate-to-fleet`: a host's keys arrive with their revocations and
/// last uses, as made on that host, once however often it runs.
#[test]
fn a_hosts_own_keys_move_into_the_fleet_once() {
    let Some(cluster) = cluster() else { return };
    let local = SqliteStore::open_in_memory();
    let active = key("old000000001", 1000, 5);
    let revoked = key("old000000002", 1001, 6);
    let mut renamed = key("old000000003", 1002, 7);
    renamed.owner_name = "someone-else".into();
    for k in [&active, &revoked, &renamed] {
        local.insert(k, 9, 0).unwrap();
    }
    local
        .revoke(std::slice::from_ref(&revoked.id), by(8))
        .unwrap();
    local
        .record_uses(&[KeyUse {
            key_id: active.id.clone(),
            at: 9,
            service: "sshd".into(),
            rhost: "10.0.0.1".into(),
            host: String::new(),
        }])
        .unwrap();
    let policy = Policy {
        allow_user_keys: true,
        ..Policy::default()
    };
    let all: Vec<KeyRecord> = [&active, &revoked, &renamed]
        .iter()
        .map(|k| local.by_id(&k.id).unwrap().unwrap())
        .collect();
    let migrator = keys_as(&cluster, ("host-old", "apikey_migrator", false), 5000);
    migrator.upgrade_schema(Duration::from_secs(10)).unwrap();
    migrator.skip_registration();
    let done = migrator.import(&all, &policy).unwrap();
    assert_eq!((done.added, done.added_revoked, done.already), (2, 1, 0));
    assert_eq!(
        done.skipped,
        vec![(
            renamed.id.clone(),
            "uid 1002 was renamed from someone-else to user1002".to_string()
        )]
    );
    assert!(done.policy_copied);
    let again = migrator.import(&all, &Policy::default()).unwrap();
    assert_eq!(
        (again.added, again.already, again.policy_copied),
        (0, 2, false)
    );

    let b = fleet_as(&cluster, VERIFIER);
    let moved = b.by_hash(&active.hash).unwrap().unwrap();
    assert_eq!(
        (moved.made_on.as_str(), moved.owner_name.as_str()),
        ("host-old", "user1000")
    );
    let used = b.by_id(&active.id).unwrap().unwrap().last_used.unwrap();
    assert_eq!((used.at, used.host.as_str()), (9, "host-old"));
    let r = b.by_id(&revoked.id).unwrap().unwrap().revoked.unwrap();
    assert_eq!((r.at, r.by_uid, r.reason.as_str()), (8, 0, "test"));
    assert!(b.policy().unwrap().allow_user_keys);
    // An ordinary host's role cannot do it.
    let plain = keys_as(&cluster, VERIFIER, 5000);
    let e = plain.import(&all, &policy).unwrap_err();
    assert!(e.contains("member of apikey_owner"), "{e}");
}

/// Waits up to 5 s for `what` of `keys`' listener to hold.
fn until(keys: &PgKeys, what: impl Fn((bool, usize)) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while !what(keys.hearing()) {
        assert!(Instant::now() < deadline, "listener: {:?}", keys.hearing());
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// offline_grace: keys verified online are accepted through an outage,
/// except one whose revocation was heard; after the listener connects
/// again nothing from before is trusted.
#[test]
fn keys_verified_recently_outlive_an_outage_but_not_a_revocation() {
    let Some(mut cluster) = cluster() else { return };
    let a = fleet_as(&cluster, ISSUER);
    let b = open_as(
        &cluster.conninfo(VERIFIER.1, "apikey"),
        VERIFIER.0,
        Duration::from_millis(500),
        Duration::from_secs(60),
    )
    .unwrap();
    b.listen();
    until(&b, |(listening, _)| listening);
    let (kept, revoked) = (key("kept00000001", 1000, 0), key("gone00000001", 1000, 0));
    a.insert(&kept, 9, 0).unwrap();
    a.insert(&revoked, 9, 0).unwrap();
    assert!(b.by_hash(&kept.hash).unwrap().is_some());
    assert!(b.by_id(&revoked.id).unwrap().is_some());
    assert_eq!(b.policy().unwrap(), Policy::default());
    until(&b, |(_, n)| n == 2);
    a.revoke(std::slice::from_ref(&revoked.id), by(5)).unwrap();
    until(&b, |(_, n)| n == 1);

    cluster.stop().unwrap();
    assert_eq!(b.by_hash(&kept.hash).unwrap().unwrap().id, kept.id);
    assert_eq!(b.by_id(&kept.id).unwrap().unwrap().id, kept.id);
    assert!(matches!(
        b.by_hash(&revoked.hash),
        Err(StoreError::Failed(_))
    ));
    assert!(matches!(b.by_hash(&[3; 32]), Err(StoreError::Failed(_))));
    assert_eq!(b.policy().unwrap(), Policy::default());

    // Back, the listener connects again and forgets what it remembered.
    cluster.restart().unwrap();
    until(&b, |(listening, n)| listening && n == 0);
    cluster.stop().unwrap();
    assert!(matches!(b.by_hash(&kept.hash), Err(StoreError::Failed(_))));
}

/// A policy change made on one host is heard at once on another.
#[test]
fn a_policy_change_is_heard_at_once() {
    let Some(cluster) = cluster() else { return };
    let a = fleet_as(&cluster, ISSUER);
    let b = keys_as(&cluster, VERIFIER, 2000);
    b.listen();
    until(&b, |(listening, _)| listening);
    assert!(!b.policy().unwrap().allow_user_keys);
    let changed = Policy {
        allow_user_keys: true,
        ..Policy::default()
    };
    a.save_policy(&changed).unwrap();
    let deadline = Instant::now() + Duration::from_secs(2);
    while b.policy().unwrap() != changed {
        assert!(Instant::now() < deadline, "the change was not heard");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// The database password comes from a file only the daemon (or root) can
/// read, alone on its line.
#[test]
fn the_password_file_must_be_private_and_hold_one_line() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db-password");
    let write = |text: &str, mode: u32| {
        std::fs::write(&path, text).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
    };
    write("s3cret\n", 0o600);
    assert_eq!(read_password_file(&path).unwrap().as_str(), "s3cret");
    write("s3cret", 0o400);
    assert_eq!(read_password_file(&path).unwrap().as_str(), "s3cret");
    for (text, mode, words) in [
        ("s3cret\n", 0o640, "others can read it"),
        ("s3cret\n", 0o604, "others can read it"),
        ("", 0o600, "alone, on one line"),
        ("\n", 0o600, "alone, on one line"),
        ("one\ntwo\n", 0o600, "alone, on one line"),
    ] {
        write(text, mode);
        let e = read_password_file(&path).unwrap_err();
        assert!(e.contains(words), "{text:?} {mode:o}: {e}");
        assert!(!e.contains("s3cret") && !e.contains("two"), "{e}");
    }
    let link = dir.path().join("link");
    std::os::unix::fs::symlink(&path, &link).unwrap();
    assert!(read_password_file(&link)
        .unwrap_err()
        .contains("not a regular file"));
    let e = read_password_file(&dir.path().join("missing")).unwrap_err();
    assert!(e.contains("missing"), "{e}");
    // Someone else's file, however private, is refused (root gives it away).
    if apikey_test_skip::proceed_unless(apikey_test_skip::unmet_root()) {
        write("s3cret\n", 0o600);
        std::os::unix::fs::chown(&path, Some(4242), None).unwrap();
        let e = read_password_file(&path).unwrap_err();
        assert!(e.contains("belongs to uid 4242"), "{e}");
    }
}

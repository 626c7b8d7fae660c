//! Looking after the key store: a clean stop leaves the whole store in its
//! main file, an emptied store file is never taken for a new store, a
//! backup taken while the daemon serves restores every key and
//! revocation, and a store that fails at runtime makes key logins answer
//! "cannot check" rather than "wrong key".

use std::io::{Seek, SeekFrom, Write};
use std::os::unix::fs::PermissionsExt;

use apikey_proto::KeysError;
use apikey_tests::prelude::*;
use apikey_tests::{tmp, Daemon, DaemonConfig, PrivateBus};

const RHOST: &str = "192.0.2.7";
const LOG_WAIT: Duration = Duration::from_secs(5);

fn keys_in(db: &std::path::Path) -> Vec<(String, bool)> {
    let conn =
        rusqlite::Connection::open_with_flags(db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .expect("open the copy");
    let mut stmt = conn
        .prepare("SELECT id, revoked IS NOT NULL FROM keys ORDER BY id")
        .expect("query keys");
    stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .expect("read keys")
        .collect::<Result<_, _>>()
        .expect("rows")
}

/// Before: after a SIGTERM the keys were still in keys.db-wal (3.4 MB
/// there, 4 KB in keys.db), and a copy of keys.db alone held none.
#[test]
fn a_clean_stop_leaves_the_whole_store_in_its_main_file() {
    require!(Need::World, Need::LoginUid);
    let mut world = World::new();
    world.allow_user_keys();
    let alice = TestUser::create("alice");
    let made: Vec<String> = (0..3).map(|_| world.new_key(&alice, &[]).1).collect();
    let db = world.daemon().db_path().to_path_buf();
    world.daemon_mut().stop();
    let wal = db.with_extension("db-wal");
    let wal_len = std::fs::metadata(&wal).map(|m| m.len()).unwrap_or(0);
    assert_eq!(wal_len, 0, "{} still holds {wal_len} bytes", wal.display());
    let copy_dir = tmp::temp_dir("copy");
    let copy = copy_dir.path().join("keys.db");
    std::fs::copy(&db, &copy).unwrap();
    let mut ids: Vec<String> = keys_in(&copy).into_iter().map(|(id, _)| id).collect();
    let mut want = made;
    ids.sort();
    want.sort();
    assert_eq!(ids, want);
}

/// Before: a key store truncated to 0 bytes was taken as a new, empty
/// store with the default policy, silently forgetting every revocation.
#[test]
fn an_emptied_store_file_stops_the_daemon_at_start() {
    require!(Need::World);
    let dir = tmp::temp_dir("test");
    let db = dir.path().join("keys.db");
    std::fs::write(&db, b"").unwrap();
    std::fs::set_permissions(&db, std::fs::Permissions::from_mode(0o600)).unwrap();
    let config = DaemonConfig {
        database: Some(db.clone()),
        ..DaemonConfig::default()
    };
    let bus = PrivateBus::start();
    let err = match Daemon::try_start(&bus, &config) {
        Ok(_) => panic!("apikeyd started on an empty store file"),
        Err(e) => e,
    };
    assert!(
        err.status.is_some_and(|s| !s.success()),
        "apikeyd did not exit: {err}"
    );
    assert!(
        err.stderr.contains(&db.display().to_string()) && err.stderr.contains("empty"),
        "stderr does not name the file and the reason: {err}"
    );
    assert_eq!(
        std::fs::metadata(&db).unwrap().len(),
        0,
        "the file was changed"
    );
    // Where there is no file, a new store is made, and only the store.
    let fresh = dir.path().join("new.db");
    let config = DaemonConfig {
        database: Some(fresh.clone()),
        ..DaemonConfig::default()
    };
    let daemon = Daemon::start(&bus, &config);
    assert!(std::fs::metadata(&fresh).unwrap().len() > 0);
    assert!(!dir.path().join("new.db.new").exists());
    drop(daemon);
}

/// `apikey backup` while the daemon serves; the copy, started as another
/// daemon's store, has every key and every revocation.
#[test]
fn a_backup_taken_while_serving_restores_every_key_and_revocation() {
    require!(Need::World, Need::LoginUid);
    let world = World::new();
    world.allow_user_keys();
    let alice = TestUser::create("alice");
    let (kept, _) = world.new_key(&alice, &[]);
    let (revoked, revoked_id) = world.new_key(&alice, &[]);
    world.as_user(&alice).apikey(&["revoke", &revoked_id]).ok();

    let dir = tmp::temp_dir("backup");
    // Not for users: refused, and nothing is left under the name.
    let theirs = alice.home().join("alice.db");
    let out = world
        .as_user(&alice)
        .apikey(&["backup", &theirs.to_string_lossy()]);
    assert_ne!(out.code(), 0, "{}", out.stdout);
    assert!(out.stderr.contains("administrators"), "{}", out.stderr);
    assert!(!theirs.exists(), "a refused backup left a file");

    let file = dir.path().join("keys-backup.db");
    let out = world.as_root().apikey(&["backup", &file.to_string_lossy()]);
    out.ok();
    assert!(out.stderr.contains("copied"), "{}", out.stderr);
    let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "the backup is mode {mode:o}");
    // Never over an existing file.
    let again = world.as_root().apikey(&["backup", &file.to_string_lossy()]);
    assert_ne!(again.code(), 0);
    world.log().expect(
        "the backup's audit line",
        |l| l.contains("event=backup ") && l.contains("outcome=\"ok\""),
        LOG_WAIT,
    );

    // Restored as the store of a fresh daemon.
    let restored_dir = tmp::temp_dir("restored");
    let restored = restored_dir.path().join("keys.db");
    std::fs::copy(&file, &restored).unwrap();
    let other = World::with_config(|c| c.database = Some(restored.clone()));
    let proxy = other.proxy_as_root();
    let (owner, _) = other
        .block_on(proxy.verify(&kept, alice.name(), "sshd", RHOST))
        .expect("the kept key works from the restored store");
    assert_eq!(owner, alice.name());
    assert!(matches!(
        other.block_on(proxy.verify(&revoked, alice.name(), "sshd", RHOST)),
        Err(KeysError::Refused(_))
    ));
    assert!(
        other.settings().allow_user_keys,
        "the policy was not restored"
    );
}

/// Before: with the store's pages overwritten at runtime, Verify answered
/// Refused (a wrong key, PAM_AUTH_ERR) and the daemon went on as if
/// healthy. Now: "cannot check" (Failed, which the module returns as
/// PAM_AUTHINFO_UNAVAIL so passwords still work below it), said loudly
/// once.
#[test]
fn a_store_that_fails_at_runtime_answers_unavailable() {
    require!(Need::World, Need::LoginUid);
    let world = World::new();
    world.allow_user_keys();
    let alice = TestUser::create("alice");
    let (token, _) = world.new_key(&alice, &[]);
    let proxy = world.proxy_as_root();
    world
        .block_on(proxy.verify(&token, alice.name(), "sshd", RHOST))
        .expect("the key works");

    // Everything into the main file, then its pages overwritten behind
    // the daemon's back (page 1, the header, is left: the file still
    // opens).
    let db = world.daemon().db_path().to_path_buf();
    let outside = rusqlite::Connection::open(&db).expect("open the store");
    outside
        .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))
        .expect("checkpoint");
    let page: i64 = outside
        .query_row("PRAGMA page_size", [], |r| r.get(0))
        .unwrap();
    let page = page as u64;
    drop(outside);
    let len = std::fs::metadata(&db).unwrap().len();
    let mut f = std::fs::OpenOptions::new().write(true).open(&db).unwrap();
    f.seek(SeekFrom::Start(page)).unwrap();
    f.write_all(&vec![0xA5; (len - page) as usize]).unwrap();
    f.sync_all().unwrap();
    drop(f);

    for _ in 0..3 {
        match world.block_on(proxy.verify(&token, alice.name(), "sshd", RHOST)) {
            Err(KeysError::Failed(m)) => assert!(m.contains("key store"), "{m}"),
            other => panic!("a failing store answered {other:?}"),
        }
    }
    world.log().expect(
        "the store-failing line",
        |l| l.contains("event=store-failing "),
        LOG_WAIT,
    );
    world.log().expect(
        "a verify line that says unavailable",
        |l| {
            l.contains("event=verify ")
                && l.contains("outcome=\"unavailable\"")
                && l.contains("reason=\"store-error\"")
        },
        LOG_WAIT,
    );
    let loud = world
        .log()
        .lines()
        .iter()
        .filter(|l| l.contains("event=store-failing "))
        .count();
    assert_eq!(loud, 1, "said once, not at every login");
    // And `apikey status` says what is wrong.
    let status = world.as_root().apikey(&["status"]);
    status.ok();
    assert!(
        status
            .stdout
            .lines()
            .any(|l| l.starts_with("Key store:") && l.contains("FAILING")),
        "{}",
        status.stdout
    );
    let json = world.as_root().apikey(&["status", "--json"]).ok().json();
    assert_ne!(json["store"], "ok", "{json}");
    // What cannot be counted without the store is not made up.
    assert!(json.get("expiring_soon").is_none(), "{json}");
    assert_eq!(
        world
            .as_user(&alice)
            .apikey(&["status", "--json"])
            .ok()
            .json()["store"],
        json["store"]
    );
}

/// An idle daemon stops at once: nothing it does at a clean stop waits on
/// a timer. Before, a SIGTERM took 1.2-1.8 s.
#[test]
fn an_idle_daemon_stops_promptly() {
    require!(Need::World);
    let mut world = World::new();
    world.allow_user_keys();
    let mut took = Vec::new();
    for _ in 0..3 {
        let started = std::time::Instant::now();
        let status = world.daemon_mut().stop();
        took.push(started.elapsed());
        assert!(status.success(), "{status:?}");
        world.daemon_mut().restart();
    }
    took.sort();
    eprintln!("clean stops took {took:?}");
    // The median of three, so one neighbour's burst does not decide it.
    assert!(
        took[1] < Duration::from_millis(500),
        "an idle daemon took {:?} to stop (all: {took:?})",
        took[1]
    );
}

/// Before: writes queued behind another process's write lock each waited
/// their own 5 s after the one ahead of them (a revoke answered after
/// 11.2 s). Now one budget covers a write's whole wait.
#[test]
fn writes_behind_another_processs_lock_share_one_wait() {
    require!(Need::World, Need::LoginUid);
    let world = World::new();
    world.allow_user_keys();
    let alice = TestUser::create("alice");
    let ids: Vec<String> = (0..3).map(|_| world.new_key(&alice, &[]).1).collect();
    let holder = rusqlite::Connection::open(world.daemon().db_path()).expect("open the store");
    holder
        .execute_batch("BEGIN IMMEDIATE")
        .expect("take the write lock");
    let proxy = world.proxy_as_root();
    let started = std::time::Instant::now();
    let one: Vec<[&str; 1]> = ids.iter().map(|id| [id.as_str()]).collect();
    let (a, b, c) = world.block_on(async {
        tokio::join!(
            proxy.revoke(&one[0]),
            proxy.revoke(&one[1]),
            proxy.revoke(&one[2]),
        )
    });
    let took = started.elapsed();
    for r in [a, b, c] {
        match r {
            Err(KeysError::Failed(m)) => assert!(m.contains("write lock"), "{m}"),
            other => panic!("a revocation behind a held lock answered {other:?}"),
        }
    }
    // One wait of 5 s for all three, not 5 s each (15 s).
    assert!(
        took < Duration::from_secs(9),
        "three writes behind the lock took {took:?}"
    );
    holder.execute_batch("ROLLBACK").unwrap();
    let revoked = world
        .block_on(proxy.revoke(&[ids[0].as_str()]))
        .expect("the lock is gone");
    assert_eq!(revoked, [ids[0].clone()]);
}

/// `apikey list --all` on a million keys: every key listed, page by page,
/// the daemon's memory staying small. Before, one List of 102 k keys took
/// the daemon from 10 to 108 MB, and at 260 k keys the reply exceeded what
/// the bus carries and the daemon lost its connection.
#[test]
fn a_million_keys_are_listed_a_page_at_a_time() {
    require!(Need::World, Need::Program("sh"), Need::Program("wc"));
    const KEYS: i64 = 1_000_000;
    let world = World::new();
    let alice = TestUser::create("alice");
    // Seeded behind the daemon's back (it reads them as any other rows).
    let conn = rusqlite::Connection::open(world.daemon().db_path()).expect("open the store");
    conn.execute(
        "WITH RECURSIVE n(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM n WHERE x < ?1) \
         INSERT INTO keys (id, hash, kind, owner_uid, owner_name, created_by_uid, name, \
                           services, created) \
         SELECT printf('K%011d', x), randomblob(32), 'long', ?2, ?3, 0, 'seeded', '', \
                1700000000 + x FROM n",
        rusqlite::params![KEYS, alice.uid(), alice.name()],
    )
    .expect("seed the keys");
    drop(conn);
    let pid = world.daemon().pid();
    let out = world.as_root().timeout(Duration::from_secs(600)).run(
        "sh",
        &[
            "-c",
            r#""$0" list --all | wc -l"#,
            &world.apikey_bin().to_string_lossy(),
        ],
    );
    out.ok();
    assert_eq!(
        out.stdout_trimmed(),
        (KEYS + 1).to_string(),
        "every key and the header: {}",
        out.stderr
    );
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let peak_kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM");
    eprintln!("daemon peak RSS while listing {KEYS} keys: {peak_kib} KiB");
    assert!(
        peak_kib < 40 * 1024,
        "the daemon's memory peaked at {peak_kib} KiB"
    );
    // One reply carries them all no more: List says to page.
    match world.block_on(world.proxy_as_root().list("", true, false)) {
        Err(KeysError::Failed(m)) => assert!(m.contains("page"), "{m}"),
        other => panic!(
            "List of a million keys answered {:?}",
            other.map(|k| k.len())
        ),
    }
}

//! Bad input of every kind gets a clear, typed refusal and changes
//! nothing: malformed arguments, hostile tokens, exhausted quotas, broken
//! configuration, an unusable store and a full disk.

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Instant;

use apikey_tests::client::{call, HeldCaller};
use apikey_tests::prelude::*;
use apikey_tests::{tmp, tmpfs_wrapper, StartError};

const RHOST: &str = "192.0.2.7";

/// Rows in the store's `keys` table, revoked ones included.
fn row_count(world: &World) -> i64 {
    world
        .daemon()
        .open_db_readonly()
        .query_row("SELECT count(*) FROM keys", [], |r| r.get(0))
        .expect("count keys")
}

/// An administrator in a login session, on the world's bus: may make keys
/// for other accounts, so every refusal below is about the input alone.
fn admin(world: &World) -> As {
    world.as_root().logged_in()
}

fn generate_for(
    world: &World,
    user: &TestUser,
    name: &str,
    expires: &str,
    services: &str,
) -> Reply {
    call(
        &admin(world),
        &["generate", name, expires, services, user.name()],
    )
}

#[track_caller]
fn assert_answers(world: &World) {
    let proxy = world.proxy_as_root();
    if let Err(e) = world.block_on(proxy.status()) {
        panic!(
            "the daemon stopped answering: {e}\n{}",
            world.daemon().stderr_text()
        );
    }
}

/// Key names end up in listings, logs and web pages: length and control
/// characters are limited at the source.
#[test]
fn overlong_names_and_control_characters_are_refused() {
    require!(Need::World);
    let world = World::new();
    let svc = TestUser::create("svc");
    let at_limit = "n".repeat(200);
    let ok = generate_for(&world, &svc, &at_limit, "", "");
    ok.expect_ok();
    let rows = row_count(&world);
    let bad_names = [
        "n".repeat(201),
        "é".repeat(201),
        "x".repeat(100_000),
        "tab\there".to_string(),
        "line\nbreak".to_string(),
        "bell\x07".to_string(),
        "\x1b[31mred".to_string(),
        "del\x7f".to_string(),
        "c1\u{85}next".to_string(),
    ];
    for name in &bad_names {
        let reply = generate_for(&world, &svc, name, "", "");
        if name.len() > 1024 {
            // Refused by the bus layer while decoding (bus_args.rs).
            match reply {
                apikey_tests::Reply::Err { name: error, .. } => {
                    assert_eq!(error, "org.freedesktop.DBus.Error.InvalidArgs")
                }
                other => panic!("{other:?}"),
            }
            continue;
        }
        let message = reply.expect_err("InvalidArgument");
        assert!(message.contains("name"), "{name:?}: {message}");
    }
    assert_eq!(row_count(&world), rows, "a refused name was written");

    // The command line passes such names on and reports the refusal.
    let alice = TestUser::create("alice");
    let proxy = world.proxy_as_root();
    world
        .block_on(proxy.set_settings("yes", "", "", ""))
        .expect("SetSettings");
    for name in ["n".repeat(201), "line\nbreak".to_string()] {
        let out = world
            .as_user(&alice)
            .logged_in()
            .apikey(&["generate", "--name", &name]);
        assert!(
            matches!(out.code(), 1 | 2),
            "{name:?}: exit {}\n{}",
            out.code(),
            out.stderr
        );
        assert!(out.stdout.is_empty(), "{name:?}: {}", out.stdout);
        assert!(
            out.stderr.starts_with("apikey: ") || out.code() == 2,
            "{}",
            out.stderr
        );
    }
    assert_eq!(row_count(&world), rows, "a refused name was written");
}

/// A scope is a security boundary: anything that is not a plain service
/// name or prefix, or lies outside `key_services`, must not become one.
#[test]
fn bad_service_lists_are_refused() {
    require!(Need::World);
    let world = World::new();
    let svc = TestUser::create("svc");
    generate_for(&world, &svc, "good", "", "sshd,nginx-api*").expect_ok();
    let rows = row_count(&world);
    for services in [
        "bad name",
        "*",
        "ssh*d",
        "sshd,",
        "../sshd",
        "sshd\n",
        "vsftpd*x",
        &"s".repeat(65),
    ] {
        generate_for(&world, &svc, "n", "", services).expect_err("InvalidArgument");
    }
    // Well-formed, but outside what the site allows keys for.
    for services in ["su", "login", "ftp", "ss*", "sshd,sudo"] {
        generate_for(&world, &svc, "n", "", services).expect_err("PolicyForbids");
    }
    assert_eq!(row_count(&world), rows, "a refused scope was written");

    let alice = TestUser::create("alice");
    let proxy = world.proxy_as_root();
    world
        .block_on(proxy.set_settings("yes", "", "", ""))
        .expect("SetSettings");
    let out = world
        .as_user(&alice)
        .logged_in()
        .apikey(&["generate", "--services", "bad name"]);
    assert!(
        matches!(out.code(), 1 | 2),
        "exit {}: {}",
        out.code(),
        out.stderr
    );
    assert!(out.stdout.is_empty());
    assert_eq!(row_count(&world), rows, "a refused scope was written");
}

/// Only the documented expiries exist; anything else must not silently
/// become "never".
#[test]
fn unknown_expiries_are_refused() {
    require!(Need::World);
    let world = World::new();
    let svc = TestUser::create("svc");
    for expires in ["8d", "forever", "30", "-1d", "NEVER", "30d "] {
        generate_for(&world, &svc, "n", expires, "").expect_err("InvalidArgument");
    }
    assert_eq!(row_count(&world), 0, "a refused expiry was written");
    let proxy = world.proxy_as_root();
    let before = world.block_on(proxy.get_settings()).unwrap();
    match world.block_on(proxy.set_settings("", "8d", "", "")) {
        Err(KeysError::InvalidArgument(_)) => {}
        other => panic!("SetSettings with expiry 8d: {other:?}"),
    }
    match world.block_on(proxy.set_settings("maybe", "", "", "")) {
        Err(KeysError::InvalidArgument(_)) => {}
        other => panic!("SetSettings with allow_user_keys maybe: {other:?}"),
    }
    assert_eq!(world.block_on(proxy.get_settings()).unwrap(), before);

    let alice = TestUser::create("alice");
    let out = world
        .as_user(&alice)
        .logged_in()
        .apikey(&["generate", "--expires", "8d"]);
    out.assert_code(2);
    assert_eq!(row_count(&world), 0);
}

/// Revoke is all or nothing: one bad id in a list revokes none.
#[test]
fn unknown_and_malformed_ids_are_refused_by_revoke() {
    require!(Need::World);
    let world = World::new();
    let svc = TestUser::create("svc");
    let (id, token) = match generate_for(&world, &svc, "n", "", "")
        .expect_ok()
        .as_slice()
    {
        [id, token] => (id.clone(), token.clone()),
        other => panic!("{other:?}"),
    };
    let proxy = world.proxy_as_root();
    let revoke = |ids: &[&str]| world.block_on(proxy.revoke(ids));
    match revoke(&["AAAAAAAAAAAA"]) {
        Err(KeysError::NotFound(_)) => {}
        other => panic!("unknown id: {other:?}"),
    }
    match revoke(&[&id, "AAAAAAAAAAAA"]) {
        Err(KeysError::NotFound(_)) => {}
        other => panic!("a known and an unknown id: {other:?}"),
    }
    let long_id = "a".repeat(4096);
    let many: Vec<String> = (0..1001).map(|i| format!("{i:0>12}")).collect();
    let many: Vec<&str> = many.iter().map(String::as_str).collect();
    for ids in [
        &[][..],
        &["short"][..],
        &["abc|defghijk"][..],
        &["'; DROP TABLE keys; --"][..],
        &[id.as_str(), "%"][..],
        &[long_id.as_str()][..],
        &many[..],
    ] {
        match revoke(ids) {
            Err(KeysError::InvalidArgument(_)) => {}
            // An id past 1 KiB is refused while it is decoded.
            Err(KeysError::ZBus(zbus::Error::FDO(e)))
                if ids.iter().any(|i| i.len() > 1024)
                    && matches!(*e, zbus::fdo::Error::InvalidArgs(_)) => {}
            other => panic!("{:?}: {other:?}", ids.iter().take(2).collect::<Vec<_>>()),
        }
    }
    match world.block_on(proxy.rotate("not an id")) {
        Err(KeysError::InvalidArgument(_)) => {}
        other => panic!("rotate of a malformed id: {other:?}"),
    }
    world
        .as_root()
        .apikey(&["revoke", "AAAAAAAAAAAA"])
        .assert_code(1);
    let out = world.as_root().apikey(&["revoke", "not-an-id"]);
    assert!(matches!(out.code(), 1 | 2), "exit {}", out.code());

    // Nothing was revoked along the way.
    let (owner, key) = world
        .block_on(proxy.verify(&token, svc.name(), "sshd", RHOST))
        .expect("the key survived every refused revoke");
    assert_eq!((owner.as_str(), key.as_str()), (svc.name(), id.as_str()));
    assert_eq!(row_count(&world), 1);
}

/// Whatever arrives as a token (typos, junk, a megabyte) is refused with
/// the one Verify error, and the daemon serves the next caller.
#[test]
fn malformed_tokens_are_refused_and_the_daemon_keeps_answering() {
    require!(Need::World);
    let world = World::with_config(|c| c.throttle.free_failures = 1000);
    let svc = TestUser::create("svc");
    let token = generate_for(&world, &svc, "n", "", "").expect_ok()[1].clone();
    let mut bad_checksum = token.clone().into_bytes();
    let last = bad_checksum.len() - 1;
    bad_checksum[last] = if bad_checksum[last] == b'0' {
        b'1'
    } else {
        b'0'
    };
    let bad_checksum = String::from_utf8(bad_checksum).unwrap();
    let mut huge = String::from("apikey|");
    huge.push_str(&"a".repeat(1 << 20));
    let proxy = world.proxy_as_root();
    for bad in [
        String::new(),
        "hunter2".to_string(),
        "apikey|".to_string(),
        "apikey|short".to_string(),
        bad_checksum,
        format!("{token}x"),
        format!(" {token}"),
        format!("{token}\n"),
        token.replace('|', "-"),
        format!("apikey|{}", "é".repeat(23)),
        huge,
    ] {
        let started = Instant::now();
        match world.block_on(proxy.verify(&bad, svc.name(), "sshd", RHOST)) {
            Err(KeysError::Refused(_)) => {}
            // Past 1 KiB an argument is refused while it is decoded,
            // before the daemon's code sees it (bus_args.rs).
            Err(KeysError::ZBus(zbus::Error::FDO(e)))
                if bad.len() > 1024 && matches!(*e, zbus::fdo::Error::InvalidArgs(_)) => {}
            other => panic!(
                "{:?}...: {other:?}",
                &bad.chars().take(60).collect::<String>()
            ),
        }
        assert!(started.elapsed() < Duration::from_secs(5));
    }
    assert_answers(&world);

    // The command line refuses junk on stdin before calling at all.
    let verify = |stdin: Vec<u8>| {
        world
            .as_root()
            .stdin(stdin)
            .apikey(&["verify", "--user", svc.name(), "--service", "sshd"])
    };
    for stdin in [
        b"\xff\xfe\xfd".to_vec(),
        [b"apikey|".as_slice(), &[0xc3, 0x28][..], &[b'a'; 44][..]].concat(),
        vec![b'a'; 1 << 20],
        b"apikey_".to_vec(),
        Vec::new(),
    ] {
        let out = verify(stdin);
        out.assert_code(1);
        assert!(out.stderr.starts_with("apikey: "), "{}", out.stderr);
        assert!(out.stdout.is_empty(), "{}", out.stdout);
    }
    assert_answers(&world);
    verify(token.into_bytes()).ok();
}

/// `max_keys_per_user` stops a runaway script from filling the store.
#[test]
fn keys_past_the_quota_are_refused_and_nothing_is_written() {
    require!(Need::World);
    let world = World::with_config(|c| c.max_keys_per_user = 3);
    let svc = TestUser::create("svc");
    let mut ids = Vec::new();
    for i in 0..3 {
        ids.push(generate_for(&world, &svc, &format!("k{i}"), "", "").expect_ok()[0].clone());
    }
    let rows = row_count(&world);
    let message = generate_for(&world, &svc, "one too many", "", "").expect_err("QuotaExceeded");
    assert!(
        message.contains('3'),
        "the message says what the limit is: {message}"
    );
    assert_eq!(row_count(&world), rows, "a key past the quota was written");

    // Another account has a quota of its own.
    let other = TestUser::create("other");
    generate_for(&world, &other, "k", "", "").expect_ok();

    // The command line reports it as a refusal.
    let alice = TestUser::create("alice");
    let proxy = world.proxy_as_root();
    world
        .block_on(proxy.set_settings("yes", "", "", ""))
        .expect("SetSettings");
    for _ in 0..3 {
        world.as_user(&alice).logged_in().apikey(&["generate"]).ok();
    }
    let out = world.as_user(&alice).logged_in().apikey(&["generate"]);
    out.assert_code(1);
    assert!(out.stdout.is_empty(), "{}", out.stdout);

    // Revoking makes room again.
    world
        .block_on(proxy.revoke(&[ids[0].as_str()]))
        .expect("Revoke");
    generate_for(&world, &svc, "after revoke", "", "").expect_ok();
}

fn expect_start_failure(config: &DaemonConfig) -> StartError {
    let bus = PrivateBus::start();
    let started = Instant::now();
    match Daemon::try_start(&bus, config) {
        Ok(_) => panic!("apikeyd started with {config:#?}"),
        Err(e) => {
            let status = e
                .status
                .unwrap_or_else(|| panic!("apikeyd hung instead of exiting: {e}"));
            assert!(!status.success(), "{e}");
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "apikeyd took {:?} to give up",
                started.elapsed()
            );
            e
        }
    }
}

/// Asserts stderr names `<dir>/apikeyd.toml:<line>:`, a reason, and the
/// offending key where the reason is about the key rather than its value.
#[track_caller]
fn assert_names_file_and_line(err: &StartError, line: usize, key: Option<&str>) {
    let marker = format!("/apikeyd.toml:{line}:");
    let at = err
        .stderr
        .find(&marker)
        .unwrap_or_else(|| panic!("stderr does not name the file and line {line}: {err}"));
    let path_start = err.stderr[..at].rfind(' ').map_or(0, |i| i + 1);
    assert!(
        err.stderr[path_start..].starts_with("/tmp/"),
        "the file is not named by its full path: {err}"
    );
    let reason = err.stderr[at + marker.len()..].lines().next().unwrap_or("");
    assert!(!reason.trim().is_empty(), "no reason given: {err}");
    if let Some(key) = key {
        assert!(
            err.stderr.contains(key),
            "stderr does not name {key}: {err}"
        );
    }
}

/// A typo in a security setting must stop the daemon, not silently fall
/// back to a default.
#[test]
fn a_config_with_an_unknown_key_is_refused_with_file_and_line() {
    require!(Need::World);
    let config = DaemonConfig {
        extra_toml: "allow_root = true".into(),
        ..DaemonConfig::default()
    };
    let text = config.to_toml(
        Path::new("/d/keys.db"),
        Path::new("/d/log.sock"),
        Path::new("/d/pam.sock"),
    );
    let line = text
        .lines()
        .position(|l| l.starts_with("allow_root"))
        .expect("the key is in the file")
        + 1;
    let err = expect_start_failure(&config);
    assert_names_file_and_line(&err, line, Some("allow_root"));
}

#[test]
fn config_values_of_the_wrong_shape_are_refused_with_file_and_line() {
    require!(Need::World);
    // Type errors are told by line and expected type; errors about what a
    // well-typed value means name the key too.
    let cases = [
        ("max_keys_per_user = \"x\"", None),
        ("max_keys_per_user = -1", None),
        ("min_free_disk_mb = 1.5", None),
        ("admin_groups = \"apikey-admin\"", None),
        ("max_keys_per_user = 0", Some("max_keys_per_user")),
        (
            "session_key_max_lifetime = \"12 hours\"",
            Some("session_key_max_lifetime"),
        ),
        ("key_services = [\"sshd\", \"su\"]", Some("key_services")),
    ];
    for (bad, key) in cases {
        let config = DaemonConfig {
            file_text: Some(format!(
                "# apikeyd configuration\n\nallow_system_accounts = []\n{bad}\n"
            )),
            ..DaemonConfig::default()
        };
        let err = expect_start_failure(&config);
        assert_names_file_and_line(&err, 4, key);
    }
}

/// A store the daemon cannot use is reported at start, by name and
/// reason, and left as it was for the administrator to look at.
fn expect_store_refused(db: &Path, reason_words: &[&str]) -> StartError {
    let config = DaemonConfig {
        database: Some(db.to_path_buf()),
        ..DaemonConfig::default()
    };
    let err = expect_start_failure(&config);
    assert!(
        err.stderr.contains(&db.display().to_string()),
        "stderr does not name {}: {err}",
        db.display()
    );
    let lower = err.stderr.to_lowercase();
    assert!(
        reason_words.iter().any(|w| lower.contains(w)),
        "stderr does not say why (one of {reason_words:?}): {err}"
    );
    err
}

#[test]
fn a_corrupt_store_is_refused_and_left_alone() {
    require!(Need::World);
    let dir = tmp::temp_dir("test");
    let db = dir.path().join("keys.db");
    let mut garbage = vec![0u8; 64 * 1024];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut garbage))
        .expect("random bytes");
    std::fs::write(&db, &garbage).unwrap();
    std::fs::set_permissions(&db, std::fs::Permissions::from_mode(0o600)).unwrap();
    expect_store_refused(&db, &["not a database", "corrupt", "malformed"]);
    assert_eq!(
        std::fs::read(&db).unwrap(),
        garbage,
        "the store was changed"
    );
}

#[test]
fn a_store_that_is_a_directory_is_refused() {
    require!(Need::World);
    let dir = tmp::temp_dir("test");
    let db = dir.path().join("keys.db");
    std::fs::create_dir(&db).unwrap();
    expect_store_refused(&db, &["directory"]);
    assert!(db.is_dir());
}

/// Two daemons on one store would each believe they are the only writer:
/// a store locked by another process is refused, promptly.
#[test]
fn a_store_locked_by_another_process_is_refused_within_seconds() {
    require!(Need::World);
    let dir = tmp::temp_dir("test");
    let db = dir.path().join("keys.db");
    let holder = rusqlite::Connection::open(&db).expect("create the store");
    holder
        .execute_batch("CREATE TABLE t (x INTEGER); BEGIN EXCLUSIVE; INSERT INTO t VALUES (1);")
        .expect("take the lock");
    std::fs::set_permissions(&db, std::fs::Permissions::from_mode(0o600)).unwrap();
    expect_store_refused(&db, &["locked", "busy"]);
    holder.execute_batch("ROLLBACK").unwrap();
}

/// Fills the tmpfs mounted (for the daemon only) on `dir` through
/// `/proc/<pid>/root`, until less than `leave` bytes are free. Returns the
/// filler's path.
fn fill(pid: u32, dir: &Path, leave: u64) -> PathBuf {
    let inside = PathBuf::from(format!("/proc/{pid}/root")).join(dir.strip_prefix("/").unwrap());
    let filler = inside.join("filler");
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&filler)
        .unwrap_or_else(|e| panic!("{}: {e}", filler.display()));
    let chunk = vec![0x5au8; 64 * 1024];
    loop {
        let free = free_bytes(&inside);
        if free < leave {
            break;
        }
        let room = (free - leave + 1).min(chunk.len() as u64) as usize;
        match file.write_all(&chunk[..room.max(1)]) {
            Ok(()) => {}
            Err(e) if e.raw_os_error() == Some(libc::ENOSPC) => break,
            Err(e) => panic!("write {}: {e}", filler.display()),
        }
    }
    if leave == 0 {
        // The last partial page: byte by byte until nothing fits.
        while file.write_all(&[0]).is_ok() {}
    }
    filler
}

fn free_bytes(dir: &Path) -> u64 {
    let st = nix::sys::statvfs::statvfs(dir).expect("statvfs");
    st.blocks_available() as u64 * st.fragment_size() as u64
}

/// A snapshot of the store in the daemon's tmpfs, opened outside it (SQLite
/// resolves `/proc/<pid>/root` to our own root, so it cannot open the file
/// in place). Taken between calls, when the daemon writes nothing.
fn store_snapshot(pid: u32, dir: &Path) -> (tempfile::TempDir, rusqlite::Connection) {
    let inside = PathBuf::from(format!("/proc/{pid}/root")).join(dir.strip_prefix("/").unwrap());
    let copy = tmp::temp_dir("test");
    for name in ["keys.db", "keys.db-wal"] {
        if inside.join(name).exists() {
            std::fs::copy(inside.join(name), copy.path().join(name)).unwrap();
        }
    }
    let conn = rusqlite::Connection::open(copy.path().join("keys.db")).unwrap();
    (copy, conn)
}

fn integrity_of(pid: u32, dir: &Path) -> String {
    let (_copy, conn) = store_snapshot(pid, dir);
    conn.query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap()
}

fn rows_in(pid: u32, dir: &Path) -> i64 {
    let (_copy, conn) = store_snapshot(pid, dir);
    conn.query_row("SELECT count(*) FROM keys", [], |r| r.get(0))
        .unwrap()
}

/// A world whose store is on a 4 MiB tmpfs of the daemon's own.
fn world_on_small_disk(min_free_disk_mb: u64) -> (tempfile::TempDir, PathBuf, World) {
    let parent = tmp::temp_dir("test");
    let store = parent.path().join("store");
    std::fs::create_dir(&store).unwrap();
    let (db, wrapper) = (store.join("keys.db"), tmpfs_wrapper(&store, "4m"));
    let world = World::with_config(move |c| {
        c.database = Some(db);
        c.wrapper = wrapper;
        c.min_free_disk_mb = min_free_disk_mb;
    });
    (parent, store, world)
}

/// New keys stop while there is still room, so that revocations, which
/// must always work, still find some.
#[test]
fn a_nearly_full_disk_refuses_new_keys_but_not_revocations() {
    require!(
        Need::World,
        Need::Program("unshare"),
        Need::Program("mount")
    );
    let (_parent, store, world) = world_on_small_disk(2);
    let pid = world.daemon().pid();
    let svc = TestUser::create("svc");
    // One login, registered while there is room.
    let mut admin = HeldCaller::start(&admin(&world));
    let mut generate_for = |_: &World, user: &TestUser, name: &str, _: &str, _: &str| {
        admin.call(&["generate", name, "", "", user.name()])
    };
    let first = generate_for(&world, &svc, "first", "", "").expect_ok();
    let second = generate_for(&world, &svc, "second", "", "").expect_ok();

    let filler = fill(pid, &store, 1 << 20);
    let inside = filler.parent().unwrap().to_path_buf();
    assert!(free_bytes(&inside) < 2 << 20);
    let rows = rows_in(pid, &store);
    let message = generate_for(&world, &svc, "no room", "", "").expect_err("QuotaExceeded");
    assert!(message.contains("disk"), "{message}");
    assert_eq!(
        rows_in(pid, &store),
        rows,
        "a key was written past the reserve"
    );

    let proxy = world.proxy_as_root();
    let revoked = world
        .block_on(proxy.revoke(&[first[0].as_str()]))
        .expect("revocation below the reserve");
    assert_eq!(revoked, [first[0].clone()]);
    assert!(matches!(
        world.block_on(proxy.verify(&first[1], svc.name(), "sshd", RHOST)),
        Err(KeysError::Refused(_))
    ));
    world
        .block_on(proxy.verify(&second[1], svc.name(), "sshd", RHOST))
        .expect("a valid key works on a nearly full disk");

    // Completely full: still a typed refusal, still no crash.
    fill(pid, &store, 0);
    assert_eq!(free_bytes(&inside), 0);
    match generate_for(&world, &svc, "none at all", "", "") {
        Reply::Err { name, .. }
            if name.ends_with(".QuotaExceeded") || name.ends_with(".Failed") => {}
        other => panic!("generate on a full disk: {other:?}"),
    }
    world
        .block_on(proxy.verify(&second[1], svc.name(), "sshd", RHOST))
        .expect("a valid key works on a full disk");
    assert_answers(&world);

    std::fs::remove_file(&filler).unwrap();
    generate_for(&world, &svc, "room again", "", "").expect_ok();
    assert_eq!(integrity_of(pid, &store), "ok");
    assert_eq!(rows_in(pid, &store), rows + 1);
}

/// With no reserve configured, a write that hits a full disk fails as a
/// whole (Failed, nothing half-written) and the daemon carries on.
#[test]
fn a_full_disk_fails_writes_cleanly_and_recovers() {
    require!(
        Need::World,
        Need::Program("unshare"),
        Need::Program("mount")
    );
    let (_parent, store, mut world) = world_on_small_disk(0);
    let pid = world.daemon().pid();
    let svc = TestUser::create("svc");
    // One login, registered while there is room.
    let mut admin = HeldCaller::start(&admin(&world));
    let mut generate_for = |_: &World, user: &TestUser, name: &str, _: &str, _: &str| {
        admin.call(&["generate", name, "", "", user.name()])
    };
    let kept = generate_for(&world, &svc, "kept", "", "").expect_ok();
    let rows = rows_in(pid, &store);

    let filler = fill(pid, &store, 0);
    let message = generate_for(&world, &svc, "no room", "", "").expect_err("Failed");
    assert!(message.contains("full"), "{message}");
    assert!(
        world.daemon_mut().is_running(),
        "{}",
        world.daemon().stderr_text()
    );
    let proxy = world.proxy_as_root();
    world
        .block_on(proxy.verify(&kept[1], svc.name(), "sshd", RHOST))
        .expect("a valid key works on a full disk");
    assert_answers(&world);

    std::fs::remove_file(&filler).unwrap();
    assert_eq!(rows_in(pid, &store), rows, "the failed write left a row");
    generate_for(&world, &svc, "room again", "", "").expect_ok();
    assert_eq!(integrity_of(pid, &store), "ok");
    assert_eq!(rows_in(pid, &store), rows + 1);
}

/// Revocation is always possible: one key, a user's and the whole site's
/// are revoked on a disk another process filled to the last byte, in the
/// room the daemon kept for them. Before, each was answered "the disk is
/// full; nothing was changed" while the leaked key went on working.
#[test]
fn revocations_succeed_on_a_disk_filled_by_another_process() {
    require!(
        Need::World,
        Need::Program("unshare"),
        Need::Program("mount")
    );
    let (_parent, store, world) = world_on_small_disk(0);
    let pid = world.daemon().pid();
    let (svc, other) = (TestUser::create("svc"), TestUser::create("other"));
    let mut admin = HeldCaller::start(&admin(&world));
    let mut generate_for = |user: &TestUser| {
        admin
            .call(&["generate", "k", "", "", user.name()])
            .expect_ok()
    };
    let (one, users) = (generate_for(&svc), [generate_for(&svc), generate_for(&svc)]);
    let site = generate_for(&other);

    let filler = fill(pid, &store, 0);
    let inside = filler.parent().unwrap().to_path_buf();
    assert_eq!(free_bytes(&inside), 0);
    let proxy = world.proxy_as_root();
    let refused = |token: &str, user: &TestUser| {
        matches!(
            world.block_on(proxy.verify(token, user.name(), "sshd", RHOST)),
            Err(KeysError::Refused(_))
        )
    };
    assert_eq!(
        world
            .block_on(proxy.revoke(&[one[0].as_str()]))
            .expect("revoke one key on a full disk"),
        [one[0].clone()]
    );
    assert!(refused(&one[1], &svc));
    let mut revoked = world
        .block_on(proxy.revoke_all(svc.name()))
        .expect("revoke a user's keys on a full disk");
    revoked.sort();
    let mut want = vec![users[0][0].clone(), users[1][0].clone()];
    want.sort();
    assert_eq!(revoked, want);
    assert!(users.iter().all(|k| refused(&k[1], &svc)));
    assert_eq!(
        world
            .block_on(proxy.revoke_site())
            .expect("revoke the site on a full disk"),
        [site[0].clone()]
    );
    assert!(refused(&site[1], &other));
    assert_eq!(integrity_of(pid, &store), "ok");

    // Room again: the reserve is taken back at the next revocation.
    std::fs::remove_file(&filler).unwrap();
    let again = generate_for(&svc);
    world.block_on(proxy.revoke(&[again[0].as_str()])).unwrap();
    let reserve = format!(
        "/proc/{pid}/root{}",
        store.join("keys.db-reserve").display()
    );
    assert!(
        std::fs::metadata(&reserve).map(|m| m.len()).unwrap_or(0) > 0,
        "the reserve was not taken again"
    );
}

/// A key anywhere in a logged field is masked, not just a user name that
/// starts with one (S11): before, `user="x apikey|..."` was logged whole.
#[test]
fn a_key_inside_any_logged_field_never_reaches_the_log() {
    require!(Need::World);
    let world = World::new();
    world.allow_user_keys();
    let alice = TestUser::create("alice");
    let (token, _) = world.new_key(&alice, &[]);
    let secret = &token["apikey|".len()..];
    let typo = format!("{}x", &token[..token.len() - 1]);
    for user in [
        format!("x {token}"),
        format!("{}:{token}", alice.name()),
        format!("x {typo}"),
    ] {
        world.as_root().stdin(format!("{token}\n")).apikey(&[
            "verify",
            "--user",
            &user,
            "--service",
            "sshd",
        ]);
    }
    world.log().expect(
        "the refusals are logged",
        |l| l.contains("event=verify") && l.contains("(an API key)"),
        Duration::from_secs(5),
    );
    let lines = world.log().lines();
    for l in &lines {
        assert!(!l.contains(secret), "the key reached the log: {l}");
        assert!(
            !l.contains(&typo["apikey|".len()..]),
            "the mistyped key reached the log: {l}"
        );
    }
}

/// Arguments are bounded while zbus decodes them, before any check: 16
/// calls with a million-string list each (8 MB messages) cost the daemon
/// little, and a valid Verify from another client is answered meanwhile.
/// Before, such lists were decoded whole (about 60 MB each) and the
/// memory stayed with the daemon.
#[test]
fn oversized_arguments_are_refused_while_decoded_and_cost_no_memory() {
    require!(Need::World);
    let world = World::new();
    world.allow_user_keys();
    let bob = TestUser::create("bob");
    let (bobs_key, _) = world.new_key(&bob, &[]);
    let pid = world.daemon().pid();
    let before = apikey_tests::daemon::vm_kib(pid, "VmRSS:");

    let conn = world.root_connection();
    let flood = world.block_on(async move {
        let ids: Vec<String> = (0..1_000_000).map(|i| (i % 10).to_string()).collect();
        let mut calls = Vec::new();
        for _ in 0..16 {
            let conn = conn.clone();
            let ids = ids.clone();
            calls.push(tokio::spawn(async move {
                let proxy = Keys1Proxy::new(&conn).await.unwrap();
                let ids: Vec<&str> = ids.iter().map(String::as_str).collect();
                proxy.revoke(&ids).await
            }));
        }
        calls
    });
    // Served while the flood is in flight.
    let started = Instant::now();
    world
        .as_root()
        .stdin(format!("{bobs_key}\n"))
        .apikey(&["verify", "--user", bob.name(), "--service", "sshd"])
        .ok();
    let verify_took = started.elapsed();
    let results = world.block_on(async move {
        let mut out = Vec::new();
        for call in flood {
            out.push(call.await.unwrap());
        }
        out
    });
    for r in &results {
        let e = r.as_ref().expect_err("a million ids are refused");
        assert!(format!("{e:?}").contains("InvalidArgs"), "{e:?}");
    }
    let peak = apikey_tests::daemon::vm_kib(pid, "VmHWM:");
    std::thread::sleep(Duration::from_millis(500));
    let after = apikey_tests::daemon::vm_kib(pid, "VmRSS:");
    eprintln!(
        "daemon RSS {before} KiB before, peak {peak} KiB, {after} KiB after; Verify in {verify_took:?}"
    );
    assert!(peak < 64 * 1024, "peak RSS {peak} KiB");
    assert!(after < 32 * 1024, "RSS after {after} KiB");
    assert!(verify_took < Duration::from_secs(5), "{verify_took:?}");
    // And the daemon still answers.
    world
        .as_root()
        .stdin(format!("{bobs_key}\n"))
        .apikey(&["verify", "--user", bob.name(), "--service", "sshd"])
        .ok();
}

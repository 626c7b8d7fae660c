//! A key's life, end to end: made, used, listed, rotated, capped by the
//! policy, voided with its account, refused past the quota, throttled
//! under attack, written into `.netrc`, revoked.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::time::Instant;

use apikey_proto::Token;
use apikey_tests::prelude::*;

const REFUSED: i32 = 1;
const USAGE: i32 = 2;
const UNREACHABLE: i32 = 69;
const DAY: i64 = 86400;

/// The token a successful `generate` or `rotate` printed: alone, and
/// key-shaped.
#[track_caller]
fn token_of(out: &Output) -> String {
    out.ok();
    let token = out.stdout_trimmed().to_string();
    assert!(
        Token::parse(token.as_bytes()).is_ok(),
        "{}: stdout is not a key alone:\n{}",
        out.description,
        out.stdout
    );
    assert_eq!(out.stdout.lines().count(), 1, "{}", out.stdout);
    token
}

fn generate(world: &World, user: &TestUser, args: &[&str]) -> String {
    token_of(
        &world
            .as_user(user)
            .logged_in()
            .apikey(&[&["generate"][..], args].concat()),
    )
}

/// `apikey verify` as root, the token on stdin, as a login to `service`.
fn verify(world: &World, token: &str, user: &str, service: &str) -> Output {
    world.as_root().stdin(format!("{token}\n")).apikey(&[
        "verify",
        "--user",
        user,
        "--service",
        service,
    ])
}

#[track_caller]
fn accepted(world: &World, token: &str, user: &str, service: &str) -> bool {
    let out = verify(world, token, user, service);
    match out.code() {
        0 => true,
        REFUSED => false,
        _ => panic!("unexpected verify result: {out:?}"),
    }
}

#[track_caller]
fn assert_refused(out: &Output, mentions: &str) {
    out.assert_code(REFUSED);
    assert!(
        out.stderr.starts_with("apikey: ") && out.stderr.trim_end().lines().count() == 1,
        "{}: expected one line 'apikey: <reason>' on stderr, got:\n{}",
        out.description,
        out.stderr
    );
    assert!(
        out.stderr.to_lowercase().contains(&mentions.to_lowercase()),
        "{}: stderr should mention '{mentions}':\n{}",
        out.description,
        out.stderr
    );
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// Rows in the store for `uid`, active or not.
fn rows_of(world: &World, uid: u32) -> (i64, i64) {
    world
        .daemon()
        .open_db_readonly()
        .query_row(
            "SELECT COUNT(*), COUNT(*) FILTER (WHERE revoked IS NULL) FROM keys \
             WHERE owner_uid = ?1",
            [uid],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap()
}

#[test]
fn generate_verify_revoke() {
    require!(Need::World);
    let world = World::new();
    let alice = TestUser::create("alice");
    world.allow_user_keys();
    let out = world
        .as_user(&alice)
        .logged_in()
        .apikey(&["generate", "--name", "laptop"]);
    let token = token_of(&out);
    assert!(
        out.stderr.contains("not be shown again"),
        "the one-time warning goes to stderr:\n{}",
        out.stderr
    );
    let keys = world.keys_of(alice.name());
    assert_eq!(keys.len(), 1);
    let id = keys[0].id.clone();
    assert!(!token.contains(&id), "the public id is part of the secret");

    let out = verify(&world, &token, alice.name(), "sshd");
    let stdout = &out.ok().stdout;
    assert!(
        stdout.contains(&id) && stdout.contains(alice.name()),
        "{stdout}"
    );
    // Both spellings are the same key.
    let alias = Token::parse(token.as_bytes()).unwrap().alias();
    assert!(accepted(&world, &alias, alice.name(), "sshd"));

    world
        .as_user(&alice)
        .logged_in()
        .apikey(&["revoke", &id])
        .ok();
    // Again: the CLI says why, and the audit log says the same.
    let again = world.as_user(&alice).logged_in().apikey(&["revoke", &id]);
    again.assert_code(REFUSED);
    assert!(
        again
            .stderr
            .contains(&format!("key {id} was already revoked on "))
            && again.stderr.contains(&format!(" by {}", alice.name())),
        "{}",
        again.stderr
    );
    world.log().expect(
        "the second revoke audited as AlreadyRevoked",
        |l| {
            l.contains("event=revoke")
                && l.contains(&format!("requested=\"{id}\""))
                && l.contains("outcome=\"AlreadyRevoked\"")
        },
        Duration::from_secs(5),
    );
    let started = Instant::now();
    let out = verify(&world, &token, alice.name(), "sshd");
    assert_refused(&out, "refused");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "a first refusal is not throttled"
    );
    assert!(!accepted(&world, &alias, alice.name(), "sshd"));
    assert!(world.keys_of(alice.name()).is_empty());

    let refusal = world.log().expect(
        "for the revoked key",
        |l| l.contains("event=verify") && l.contains(&id) && l.contains("revoked"),
        Duration::from_secs(5),
    );
    assert!(refusal.contains("outcome=\"refused\""), "{refusal}");
    assert!(
        !world
            .log()
            .contains(&token[apikey_proto::token::PREFIX.len()..]),
        "the token reached the audit log"
    );
}

#[test]
fn rotate_replaces_the_key_and_keeps_its_name_and_scope() {
    require!(Need::World);
    let world = World::new();
    let alice = TestUser::create("alice");
    world.allow_user_keys();
    let old = generate(
        &world,
        &alice,
        &["--name", "ci", "--services", "sshd,nginx*"],
    );
    let before = world.keys_of(alice.name()).remove(0);
    assert!(accepted(&world, &old, alice.name(), "sshd"));

    let new = token_of(
        &world
            .as_user(&alice)
            .logged_in()
            .apikey(&["rotate", &before.id]),
    );
    assert_ne!(new, old);

    assert!(!accepted(&world, &old, alice.name(), "sshd"));
    assert!(accepted(&world, &new, alice.name(), "sshd"));
    assert!(accepted(&world, &new, alice.name(), "nginx"));
    assert!(
        !accepted(&world, &new, alice.name(), "vsftpd"),
        "scope kept"
    );

    let keys = world.keys_of(alice.name());
    assert_eq!(keys.len(), 1, "{keys:?}");
    let after = &keys[0];
    assert_ne!(after.id, before.id);
    assert_eq!(after.name, "ci");
    let mut services = after.services.clone();
    services.sort();
    assert_eq!(services, vec!["nginx*".to_string(), "sshd".to_string()]);

    // The old id is gone for good.
    world
        .as_user(&alice)
        .logged_in()
        .apikey(&["rotate", &before.id])
        .assert_code(REFUSED);
}

#[test]
fn a_tightened_expiry_policy_caps_existing_keys() {
    require!(Need::World);
    let mut world = World::new();
    let alice = TestUser::create("alice");
    world.allow_user_keys();
    let token = generate(&world, &alice, &[]);
    let id = world.keys_of(alice.name())[0].id.clone();
    assert_eq!(world.keys_of(alice.name())[0].expires, 0, "policy never");

    world.age_key(&id, 10 * DAY);
    assert!(
        accepted(&world, &token, alice.name(), "sshd"),
        "a ten-day-old key under 'never'"
    );

    world
        .as_root()
        .apikey(&["settings", "--expires", "7d"])
        .ok();
    assert!(
        !accepted(&world, &token, alice.name(), "sshd"),
        "created ten days ago, the policy now says seven"
    );
    let key = world.keys_of(alice.name()).remove(0);
    assert_eq!(key.expires, key.created + 7 * DAY);
    assert!(key.expires < now());

    let out = world.as_user(&alice).logged_in().apikey(&["list"]);
    let row = out
        .ok()
        .stdout
        .lines()
        .find(|l| l.starts_with(&id))
        .unwrap_or_else(|| panic!("no row for {id}:\n{}", out.stdout))
        .to_string();
    assert!(row.contains("expired"), "{row}");

    // Longer than the policy: refused; as long or shorter: fine.
    let out = world
        .as_user(&alice)
        .logged_in()
        .apikey(&["generate", "--expires", "30d"]);
    assert_refused(&out, "7d");
    assert!(out.stdout.is_empty(), "{}", out.stdout);
    world
        .as_user(&alice)
        .logged_in()
        .apikey(&["generate", "--expires", "never"])
        .assert_code(REFUSED);
    assert_eq!(world.keys_of(alice.name()).len(), 1);
    let fresh = generate(&world, &alice, &["--expires", "7d"]);
    assert!(accepted(&world, &fresh, alice.name(), "sshd"));
    let fresh = generate(&world, &alice, &[]);
    assert!(accepted(&world, &fresh, alice.name(), "sshd"));
    let keys = world.keys_of(alice.name());
    assert_eq!(keys.len(), 3);
    for key in &keys {
        assert_eq!(key.expires, key.created + 7 * DAY, "{key:?}");
    }
}

#[test]
fn locked_and_expired_accounts_are_refused() {
    require!(Need::World);
    let world = World::new();
    let alice = TestUser::create("alice");
    world.allow_user_keys();
    let token = generate(&world, &alice, &[]);
    // A bare "!" (no password) is usual for such accounts and no lock.
    assert!(accepted(&world, &token, alice.name(), "sshd"));

    alice.set_password("correct horse battery staple");
    assert!(accepted(&world, &token, alice.name(), "sshd"));
    alice.lock();
    assert!(!accepted(&world, &token, alice.name(), "sshd"), "locked");
    alice.unlock();
    assert!(accepted(&world, &token, alice.name(), "sshd"), "unlocked");

    alice.expire();
    assert!(!accepted(&world, &token, alice.name(), "sshd"), "expired");
    alice.unexpire();
    assert!(accepted(&world, &token, alice.name(), "sshd"));
    // Refused, not revoked: the account came back and so did the key.
    assert_eq!(world.keys_of(alice.name()).len(), 1);
}

/// The daemon answers account checks from /etc/passwd and /etc/shadow as
/// it last parsed them while those files keep their stamp (a file changed
/// in the last 2 s is parsed again on every lookup anyway). Once the files
/// have settled, a lock or an expiry must still be seen on the very next
/// login, and lifting it likewise.
#[test]
fn a_lock_is_seen_at_once_after_the_account_files_settled() {
    require!(Need::World);
    let world = World::new();
    let carol = TestUser::create("carol");
    world.allow_user_keys();
    carol.set_password("correct horse battery staple");
    let token = generate(&world, &carol, &[]);
    let settle = || std::thread::sleep(std::time::Duration::from_millis(2500));
    settle();
    assert!(accepted(&world, &token, carol.name(), "sshd"));
    assert!(accepted(&world, &token, carol.name(), "sshd"));
    carol.lock();
    assert!(!accepted(&world, &token, carol.name(), "sshd"), "locked");
    world.log().expect(
        "refusing the locked account",
        |l| l.contains(carol.name()) && l.contains("reason=\"account-locked\""),
        std::time::Duration::from_secs(5),
    );
    settle();
    assert!(
        !accepted(&world, &token, carol.name(), "sshd"),
        "still locked"
    );
    carol.unlock();
    assert!(accepted(&world, &token, carol.name(), "sshd"), "unlocked");
    settle();
    assert!(accepted(&world, &token, carol.name(), "sshd"));
    carol.expire();
    assert!(!accepted(&world, &token, carol.name(), "sshd"), "expired");
    carol.unexpire();
    assert!(accepted(&world, &token, carol.name(), "sshd"));
}

#[test]
fn a_deleted_account_has_its_keys_revoked_for_good() {
    require!(Need::World);
    let world = World::new();
    let bob = TestUser::create("bob");
    world.allow_user_keys();
    let token = generate(&world, &bob, &[]);
    let second = generate(&world, &bob, &["--services", "nginx"]);
    let name = bob.name().to_string();
    let uid = bob.uid();
    assert!(accepted(&world, &token, &name, "sshd"));

    drop(bob);
    assert!(!accepted(&world, &token, &name, "sshd"));

    let db = world.daemon().open_db_readonly();
    let mut stmt = db
        .prepare("SELECT revoked, revoke_reason FROM keys WHERE owner_uid = ?1")
        .unwrap();
    let rows: Vec<(Option<i64>, Option<String>)> = stmt
        .query_map([uid], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(rows.len(), 2);
    for (revoked, reason) in &rows {
        assert!(revoked.is_some(), "every key of the account: {rows:?}");
        // A parallel test may already hold bob's uid under another name.
        assert!(
            reason.as_deref().is_some_and(|r| r.starts_with("account-")),
            "{rows:?}"
        );
    }
    assert!(!accepted(&world, &second, &name, "nginx"));
}

#[test]
fn the_quota_stops_the_third_key_and_writes_nothing() {
    require!(Need::World);
    let world = World::with_config(|c| c.max_keys_per_user = 2);
    let alice = TestUser::create("alice");
    let bob = TestUser::create("bob");
    world.allow_user_keys();
    generate(&world, &alice, &[]);
    generate(&world, &alice, &[]);

    let out = world.as_user(&alice).logged_in().apikey(&["generate"]);
    assert_refused(&out, "max_keys_per_user");
    assert!(out.stdout.is_empty(), "{}", out.stdout);
    assert_eq!(rows_of(&world, alice.uid()), (2, 2));

    // Per user, and active keys only.
    generate(&world, &bob, &[]);
    let first = world.keys_of(alice.name())[0].id.clone();
    world
        .as_user(&alice)
        .logged_in()
        .apikey(&["revoke", &first])
        .ok();
    generate(&world, &alice, &[]);
    assert_eq!(rows_of(&world, alice.uid()), (3, 2));
}

#[test]
fn a_flood_of_bad_keys_does_not_lock_out_a_valid_one() {
    require!(Need::World);
    const RHOST: &str = "203.0.113.9";
    const FREE: usize = 3;
    const WARM_UP: usize = FREE + 2;
    const FLOOD: usize = 35;
    let world = World::with_config(|c| {
        c.throttle.free_failures = FREE as u32;
        c.throttle.max_delay = "1s".into();
    });
    let alice = TestUser::create("alice");
    world.allow_user_keys();
    let token = generate(&world, &alice, &[]);
    let user = alice.name().to_string();
    let attacker = world.proxy_as_root();
    let owner = world.proxy_as_root();
    let bystander = world.proxy_as_root();
    let bad = || Token::generate().unwrap().as_str().to_string();

    let (warm_up, flood, valid, elsewhere) = world.block_on(async {
        // In sequence first, so the source is past its free failures
        // before anything else is measured.
        let mut warm_up = Vec::new();
        for _ in 0..WARM_UP {
            let started = Instant::now();
            let r = attacker.verify(&bad(), &user, "sshd", RHOST).await;
            warm_up.push((started.elapsed(), r));
        }
        let mut flood = tokio::task::JoinSet::new();
        for _ in 0..FLOOD {
            let (attacker, user, token) = (attacker.clone(), user.clone(), bad());
            flood.spawn(async move {
                let started = Instant::now();
                let r = attacker.verify(&token, &user, "sshd", RHOST).await;
                (started.elapsed(), r)
            });
        }
        // Each of those now waits out its delay of up to a second.
        tokio::time::sleep(Duration::from_millis(100)).await;
        let mut valid = Vec::new();
        for _ in 0..3 {
            let started = Instant::now();
            let r = owner.verify(&token, &user, "sshd", RHOST).await;
            valid.push((started.elapsed(), r));
        }
        let started = Instant::now();
        let r = bystander
            .verify(&bad(), &user, "sshd", "198.51.100.7")
            .await;
        let elsewhere = (started.elapsed(), r);
        let flood = flood.join_all().await;
        (warm_up, flood, valid, elsewhere)
    });

    for (elapsed, r) in warm_up.iter().chain(&flood) {
        assert!(matches!(r, Err(KeysError::Refused(_))), "{r:?}");
        assert!(*elapsed < Duration::from_secs(5), "{elapsed:?}");
    }
    for (elapsed, r) in &valid {
        let (owner, _) = r.as_ref().expect("the valid key works during the flood");
        assert_eq!(owner, &user);
        assert!(
            *elapsed < Duration::from_millis(150),
            "a valid key was answered after {elapsed:?} during the flood"
        );
    }
    for (i, (elapsed, _)) in warm_up.iter().enumerate().skip(FREE) {
        assert!(
            *elapsed >= Duration::from_millis(200),
            "invalid attempt {} was answered after {elapsed:?}",
            i + 1
        );
    }
    let slow = flood
        .iter()
        .filter(|(e, _)| *e >= Duration::from_millis(200))
        .count();
    assert_eq!(slow, FLOOD, "{flood:?}");
    let (elapsed, r) = &elsewhere;
    assert!(matches!(r, Err(KeysError::Refused(_))), "{r:?}");
    assert!(
        *elapsed < Duration::from_millis(150),
        "another source was answered after {elapsed:?}"
    );

    // Past the first few, refusals go into a summary, not a line each.
    let refused_from = |l: &str| {
        l.contains("event=verify ")
            && l.contains(&format!("rhost=\"{RHOST}\""))
            && l.contains("outcome=\"refused\"")
    };
    world.log().expect(
        "for the first refusals",
        refused_from,
        Duration::from_secs(5),
    );
    let logged = world
        .log()
        .lines()
        .iter()
        .filter(|l| refused_from(l))
        .count();
    assert!(
        logged < WARM_UP + FLOOD,
        "{logged} refusals logged one by one"
    );
}

fn netrc_of(user: &TestUser) -> String {
    std::fs::read_to_string(user.home().join(".netrc")).expect("read ~/.netrc")
}

/// The words of the one line for `host`; panics unless there is exactly one.
fn netrc_entry(text: &str, host: &str) -> Vec<String> {
    let lines: Vec<&str> = text
        .lines()
        .filter(|l| l.split_whitespace().nth(1) == Some(host))
        .collect();
    assert_eq!(lines.len(), 1, "one entry for {host}:\n{text}");
    lines[0].split_whitespace().map(str::to_string).collect()
}

#[test]
fn generate_writes_netrc_and_prints_no_secret() {
    require!(Need::World);
    let world = World::new();
    let alice = TestUser::create("alice");
    world.allow_user_keys();
    let as_alice = world.as_user(&alice).logged_in();
    // Other entries are left alone.
    let netrc = alice.home().join(".netrc");
    std::fs::write(&netrc, "machine other.test login someone password kept\n").unwrap();
    std::os::unix::fs::chown(&netrc, Some(alice.uid()), Some(alice.gid())).unwrap();
    std::fs::set_permissions(&netrc, std::fs::Permissions::from_mode(0o600)).unwrap();

    let out = as_alice.apikey(&["generate", "--netrc", "example.test"]);
    out.ok();
    assert!(out.stdout.is_empty(), "{}", out.stdout);
    assert!(!out.stderr.contains("apikey|"), "{}", out.stderr);

    let meta = std::fs::symlink_metadata(&netrc).unwrap();
    assert!(meta.file_type().is_file());
    assert_eq!(meta.mode() & 0o7777, 0o600);
    assert_eq!(meta.uid(), alice.uid());
    let text = netrc_of(&alice);
    let entry = netrc_entry(&text, "example.test");
    assert_eq!(
        entry[..5],
        ["machine", "example.test", "login", alice.name(), "password"]
    );
    let first = entry[5].clone();
    assert!(first.starts_with("apikey|"), "{text}");
    assert!(accepted(&world, &first, alice.name(), "sshd"));
    assert_eq!(
        netrc_entry(&text, "other.test"),
        [
            "machine",
            "other.test",
            "login",
            "someone",
            "password",
            "kept"
        ]
    );

    // Again: the entry is replaced, not added.
    as_alice
        .apikey(&["generate", "--netrc", "example.test"])
        .ok();
    let text = netrc_of(&alice);
    let second = netrc_entry(&text, "example.test")[5].clone();
    assert_ne!(second, first);
    assert!(accepted(&world, &second, alice.name(), "sshd"));
    assert_eq!(text.matches("machine example.test").count(), 1, "{text}");

    as_alice
        .apikey(&[
            "generate",
            "--netrc",
            "example.test",
            "--netrc-login",
            "apikey",
        ])
        .ok();
    let text = netrc_of(&alice);
    let entry = netrc_entry(&text, "example.test");
    assert_eq!(
        entry[..5],
        ["machine", "example.test", "login", "apikey", "password"]
    );
    assert!(accepted(&world, &entry[5], alice.name(), "sshd"));
    assert_eq!(std::fs::metadata(&netrc).unwrap().mode() & 0o7777, 0o600);
    // No temporary file left behind.
    let leftovers: Vec<String> = std::fs::read_dir(alice.home())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(".netrc") && n != ".netrc")
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

#[test]
fn generate_refuses_a_netrc_that_is_a_symlink_and_keeps_no_key() {
    require!(Need::World);
    let world = World::new();
    let alice = TestUser::create("alice");
    let svc = TestUser::create("svc");
    world.allow_user_keys();
    let as_alice = world.as_user(&alice).logged_in();
    generate(&world, &alice, &[]);
    as_alice
        .run(
            "sh",
            &[
                "-c",
                "printf 'machine other.test login a password b\\n' > elsewhere \
                 && chmod 600 elsewhere && ln -s elsewhere .netrc",
            ],
        )
        .ok();
    let target = alice.home().join("elsewhere");
    let before = std::fs::read_to_string(&target).unwrap();

    let out = as_alice.apikey(&["generate", "--netrc", "example.test"]);
    assert_refused(&out, ".netrc");
    assert!(!out.stdout.contains("apikey|"), "{}", out.stdout);
    assert_eq!(std::fs::read_to_string(&target).unwrap(), before);
    assert!(std::fs::symlink_metadata(alice.home().join(".netrc"))
        .unwrap()
        .file_type()
        .is_symlink());
    assert_eq!(
        world.keys_of(alice.name()).len(),
        1,
        "a key that reached no file must not stay valid"
    );

    // A second name for the file, or a file of someone else's: the same.
    let netrc = alice.home().join(".netrc");
    std::fs::remove_file(&netrc).unwrap();
    std::fs::hard_link(&target, &netrc).unwrap();
    assert_refused(
        &as_alice.apikey(&["generate", "--netrc", "example.test"]),
        ".netrc",
    );
    assert_eq!(std::fs::read_to_string(&target).unwrap(), before);
    std::fs::remove_file(&netrc).unwrap();
    std::fs::write(&netrc, "machine other.test login a password b\n").unwrap();
    std::fs::set_permissions(&netrc, std::fs::Permissions::from_mode(0o644)).unwrap();
    assert_refused(
        &as_alice.apikey(&["generate", "--netrc", "example.test"]),
        ".netrc",
    );
    assert_eq!(world.keys_of(alice.name()).len(), 1);

    // Usage errors, before any key is made.
    world
        .as_root()
        .logged_in()
        .apikey(&["generate", "--user", svc.name(), "--netrc", "example.test"])
        .assert_code(USAGE);
    as_alice
        .apikey(&["generate", "--netrc-login", "apikey"])
        .assert_code(USAGE);
    assert!(world.keys_of(svc.name()).is_empty());
    assert_eq!(world.keys_of(alice.name()).len(), 1);
}

/// Byte offsets where the header's columns start.
fn column_starts(header: &str) -> Vec<(String, usize)> {
    let mut out = Vec::new();
    let mut at = 0;
    for name in [
        "ID",
        "USER",
        "NAME",
        "SERVICES",
        "CREATED",
        "EXPIRES",
        "LAST USED",
    ] {
        let found = header[at..]
            .find(name)
            .unwrap_or_else(|| panic!("no {name} after column {at} in {header:?}"));
        out.push((name.to_string(), at + found));
        at += found + name.len();
    }
    out
}

#[test]
fn list_shows_an_aligned_table_and_json() {
    require!(Need::World);
    let world = World::new();
    let alice = TestUser::create("alice");
    world.allow_user_keys();
    let used = generate(&world, &alice, &["--name", "build", "--services", "sshd"]);
    generate(&world, &alice, &["--name", "a-much-longer-key-name"]);
    let keys = world.keys_of(alice.name());
    let id_named = |name: &str| {
        keys.iter()
            .find(|k| k.name == name)
            .unwrap_or_else(|| panic!("no key named {name}: {keys:?}"))
            .id
            .clone()
    };
    let (used_id, idle_id) = (id_named("build"), id_named("a-much-longer-key-name"));
    assert!(accepted(&world, &used, alice.name(), "sshd"));

    let out = world.as_user(&alice).logged_in().apikey(&["list"]);
    let lines: Vec<&str> = out.ok().stdout.lines().collect();
    assert_eq!(lines.len(), 3, "{}", out.stdout);
    let columns = column_starts(lines[0]);
    let header_words: Vec<&str> = columns.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        lines[0]
            .split("  ")
            .map(str::trim)
            .filter(|w| !w.is_empty())
            .collect::<Vec<_>>(),
        header_words,
        "{}",
        lines[0]
    );
    for row in &lines[1..] {
        for (name, at) in &columns[1..] {
            let bytes = row.as_bytes();
            assert!(
                bytes.len() > *at && bytes[at - 1] == b' ' && bytes[*at] != b' ',
                "column {name} does not start at {at}:\n{}",
                out.stdout
            );
        }
    }
    let cell = |row: &str, column: &str| -> String {
        let i = columns.iter().position(|(n, _)| n == column).unwrap();
        let start = columns[i].1;
        let end = columns.get(i + 1).map_or(row.len(), |c| c.1);
        row[start..end.min(row.len())].trim().to_string()
    };
    let used_row = lines.iter().find(|l| l.starts_with(&used_id)).unwrap();
    let idle_row = lines.iter().find(|l| l.starts_with(&idle_id)).unwrap();
    assert_eq!(cell(used_row, "USER"), alice.name());
    assert_eq!(cell(used_row, "NAME"), "build");
    assert_eq!(cell(used_row, "SERVICES"), "sshd");
    assert_eq!(cell(idle_row, "NAME"), "a-much-longer-key-name");
    assert!(cell(used_row, "LAST USED").contains("sshd"), "{used_row}");
    assert!(!cell(idle_row, "LAST USED").contains("sshd"), "{idle_row}");

    let out = world
        .as_user(&alice)
        .logged_in()
        .apikey(&["list", "--json"]);
    let json = out.ok().json();
    let rows = json.as_array().expect("a JSON array");
    assert_eq!(rows.len(), 2, "{json}");
    let used_json = rows
        .iter()
        .find(|r| r["id"] == used_id.as_str())
        .unwrap_or_else(|| panic!("{used_id} missing from {json}"));
    assert_eq!(used_json["user"], alice.name());
    assert_eq!(used_json["name"], "build");
    assert_eq!(used_json["last_service"], "sshd");
    assert!(rows.iter().any(|r| r["id"] == idle_id.as_str()), "{json}");
    assert!(!out.stdout.contains("apikey|"), "{}", out.stdout);
}

#[test]
fn status_tells_who_the_caller_is_and_when_the_daemon_is_gone() {
    require!(Need::World);
    let mut world = World::new();
    let alice = TestUser::create("alice");
    let bob = TestUser::create("bob");

    let out = world
        .as_user(&alice)
        .logged_in()
        .apikey(&["status", "--json"]);
    let status = out.ok().json();
    assert_eq!(status["user"], alice.name(), "{status}");
    assert_eq!(status["admin"], false, "{status}");
    assert_eq!(status["logged_in"], true, "{status}");
    assert_eq!(status["impersonating"], false, "{status}");

    let status = world
        .as_user(&bob)
        .logged_in_as(alice.uid())
        .apikey(&["status", "--json"])
        .ok()
        .json();
    assert_eq!(status["user"], bob.name(), "{status}");
    assert_eq!(status["impersonating"], true, "{status}");
    let status = world
        .as_user(&alice)
        .apikey(&["status", "--json"])
        .ok()
        .json();
    assert_eq!(status["logged_in"], false, "{status}");
    let status = world.as_root().apikey(&["status", "--json"]).ok().json();
    assert_eq!(status["admin"], true, "{status}");

    world.daemon_mut().stop();
    let out = world.as_user(&alice).logged_in().apikey(&["status"]);
    out.assert_code(UNREACHABLE);
    assert!(out.stderr.starts_with("apikey: "), "{}", out.stderr);
    world
        .as_user(&alice)
        .logged_in()
        .apikey(&["generate"])
        .assert_code(UNREACHABLE);

    world.daemon_mut().restart();
    world.as_user(&alice).logged_in().apikey(&["status"]).ok();
}

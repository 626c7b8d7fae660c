//! What the store and the audit trail promise across stops, crashes and
//! time: acknowledged writes stay written, the token is kept nowhere, the
//! files are private, and every event leaves a well-formed syslog line.

use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use apikey_tests::prelude::*;
use apikey_tests::syslog::AUTHPRIV;
use apikey_tests::tmp;

const RHOST: &str = "192.0.2.7";
const INFO: u8 = 6;
const WARNING: u8 = 4;

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// `apikey generate --json` (or `rotate ID --json`) by `user`, logged in:
/// (id, token).
fn cli_key(world: &World, user: &TestUser, args: &[&str]) -> (String, String) {
    let mut argv = args.to_vec();
    argv.push("--json");
    let out = world.as_user(user).logged_in().apikey(&argv);
    let json = out.ok().json();
    let field = |name: &str| {
        json[name]
            .as_str()
            .unwrap_or_else(|| panic!("no {name} in {}", out.stdout))
            .to_string()
    };
    (field("id"), field("token"))
}

/// The parts of a token that must never be stored or logged: the 46
/// characters after the prefix, the alias spelling, and halves of the
/// random part (in case something logs a truncated token).
fn secret_needles(token: &str) -> Vec<String> {
    let body = token
        .strip_prefix("apikey|")
        .unwrap_or_else(|| panic!("not a canonical token: {token}"));
    assert_eq!(body.len(), 46, "{token}");
    vec![
        body.to_string(),
        format!("apikey_{body}"),
        body[..20].to_string(),
        body[20..40].to_string(),
    ]
}

fn find_bytes(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// Every file of the store as it is on disk right now.
fn store_files(db: &Path) -> Vec<(String, Vec<u8>)> {
    ["", "-wal", "-shm", "-journal"]
        .iter()
        .filter_map(|suffix| {
            let path = format!("{}{suffix}", db.display());
            std::fs::read(&path).ok().map(|bytes| (path, bytes))
        })
        .collect()
}

/// Every place a token was found: the store's files (raw bytes), the
/// audit log, the daemon's stderr.
fn secret_leaks(world: &World, tokens: &[&str], when: &str) -> Vec<String> {
    let files = store_files(world.daemon().db_path());
    assert!(
        files
            .iter()
            .any(|(p, b)| p.ends_with("keys.db") && !b.is_empty()),
        "{when}: the store file is missing or empty"
    );
    let lines = world.log().lines();
    let stderr = world.daemon().stderr_text();
    let mut leaks = BTreeSet::new();
    for token in tokens {
        for needle in secret_needles(token) {
            for (path, bytes) in &files {
                if find_bytes(bytes, needle.as_bytes()) {
                    leaks.insert(format!("{when}: a token is in {path}"));
                }
            }
            for line in lines.iter().filter(|l| l.contains(&needle)) {
                leaks.insert(format!("{when}: a token is in the audit log: {line}"));
            }
            for line in stderr.lines().filter(|l| l.contains(&needle)) {
                leaks.insert(format!("{when}: a token is in the daemon's stderr: {line}"));
            }
        }
    }
    leaks.into_iter().collect()
}

/// `name=value` and `name="escaped value"` pairs of an audit line, values
/// unescaped (`\"` and `\\`; `\xNN` is kept as written).
fn audit_fields(text: &str) -> Vec<(String, String)> {
    let mut fields = Vec::new();
    let mut chars = text.chars().peekable();
    loop {
        while chars.peek() == Some(&' ') {
            chars.next();
        }
        let mut name = String::new();
        for c in chars.by_ref() {
            if c == '=' {
                break;
            }
            name.push(c);
        }
        if name.is_empty() {
            return fields;
        }
        let mut value = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            while let Some(c) = chars.next() {
                match c {
                    '\\' => {
                        if let Some(next) = chars.next() {
                            if next != '"' && next != '\\' {
                                value.push('\\');
                            }
                            value.push(next);
                        }
                    }
                    '"' => break,
                    c => value.push(c),
                }
            }
        } else {
            while let Some(c) = chars.peek() {
                if *c == ' ' {
                    break;
                }
                value.push(*c);
                chars.next();
            }
        }
        fields.push((name, value));
    }
}

/// The first audit line whose fields satisfy `pred`, waiting for it.
fn audit_line(
    world: &World,
    what: &str,
    pred: impl Fn(&BTreeMap<String, String>) -> bool,
) -> SyslogLine {
    let raw = world.log().expect(
        what,
        |l| {
            let msg = SyslogLine::parse(l);
            pred(&audit_fields(&msg.text).into_iter().collect())
        },
        Duration::from_secs(5),
    );
    SyslogLine::parse(&raw)
}

fn field_is(fields: &BTreeMap<String, String>, name: &str, value: &str) -> bool {
    fields.get(name).is_some_and(|v| v == value)
}

/// What every authentication attempt's line carries (SPEC: user, key id,
/// service, remote host and outcome, plus who asked).
const VERIFY_FIELDS: &[&str] = &[
    "event",
    "caller_uid",
    "user",
    "key",
    "service",
    "rhost",
    "outcome",
];

/// What every key event's line carries: who asked, whose key, which key.
const KEY_EVENT_FIELDS: &[&str] = &[
    "event",
    "caller_uid",
    "caller_pid",
    "user",
    "key",
    "outcome",
];

/// A settings change names who made it and the resulting policy.
const SETTINGS_FIELDS: &[&str] = &[
    "event",
    "caller_uid",
    "caller_pid",
    "allow_user_keys",
    "expiry",
    "outcome",
];

/// Problems with one audit line, empty when it is as documented.
fn audit_line_problems(
    world: &World,
    what: &str,
    line: &SyslogLine,
    severity: u8,
    required: &[&str],
) -> Vec<String> {
    let mut problems = Vec::new();
    if line.facility() != Some(AUTHPRIV) || line.severity() != Some(severity) {
        problems.push(format!(
            "{what}: priority {:?}, expected {} (authpriv, severity {severity})",
            line.priority,
            (AUTHPRIV << 3) | severity
        ));
    }
    if line.ident != "apikeyd" || line.pid != Some(world.daemon().pid()) {
        problems.push(format!(
            "{what}: tag {}[{:?}], expected apikeyd[{}]",
            line.ident,
            line.pid,
            world.daemon().pid()
        ));
    }
    let fields: BTreeMap<String, String> = audit_fields(&line.text).into_iter().collect();
    let missing: Vec<&str> = required
        .iter()
        .copied()
        .filter(|f| !fields.contains_key(*f))
        .collect();
    if !missing.is_empty() {
        problems.push(format!(
            "{what}: no {} in: {}",
            missing.join(", "),
            line.text
        ));
    }
    problems
}

/// A stop is routine (upgrades, reboots): nothing may be lost or undone.
#[test]
fn restart_keeps_keys_revocations_and_settings() {
    require!(Need::World);
    let mut world = World::new();
    let alice = TestUser::create("alice");
    let proxy = world.proxy_as_root();
    let settings = world
        .block_on(proxy.set_settings("yes", "90d", "no", "45m"))
        .expect("SetSettings");
    let (kept_id, kept_token) = cli_key(
        &world,
        &alice,
        &["generate", "--name", "kept", "--services", "sshd,vsftpd"],
    );
    let (gone_id, gone_token) = cli_key(&world, &alice, &["generate", "--name", "gone"]);
    let revoked = world
        .block_on(proxy.revoke(&[gone_id.as_str()]))
        .expect("Revoke");
    assert_eq!(revoked, std::slice::from_ref(&gone_id));
    let before = world
        .block_on(proxy.list(alice.name(), false, false))
        .expect("List");
    assert_eq!(before.len(), 1);
    drop(proxy);

    let status = world.daemon_mut().stop();
    assert!(status.success(), "apikeyd exited with {status}");
    world.daemon_mut().restart();

    let proxy = world.proxy_as_root();
    assert_eq!(world.block_on(proxy.get_settings()).unwrap(), settings);
    let after = world
        .block_on(proxy.list(alice.name(), false, false))
        .expect("List after restart");
    assert_eq!(after, before, "the key records changed across a restart");
    assert_eq!(after[0].id, kept_id);
    assert_eq!(after[0].services, ["sshd", "vsftpd"]);
    let (owner, id) = world
        .block_on(proxy.verify(&kept_token, alice.name(), "sshd", RHOST))
        .expect("the kept key still works");
    assert_eq!(
        (owner.as_str(), id.as_str()),
        (alice.name(), kept_id.as_str())
    );
    match world.block_on(proxy.verify(&gone_token, alice.name(), "sshd", RHOST)) {
        Err(KeysError::Refused(_)) => {}
        other => panic!("a revoked key works again after a restart: {other:?}"),
    }
    let (revoked_at, by_uid, reason): (Option<i64>, Option<u32>, Option<String>) = world
        .daemon()
        .open_db_readonly()
        .query_row(
            "SELECT revoked, revoked_by_uid, revoke_reason FROM keys WHERE id = ?1",
            [&gone_id],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .unwrap();
    assert!(revoked_at.is_some_and(|t| t > 0));
    assert_eq!(by_uid, Some(0));
    assert!(reason.is_some_and(|r| !r.is_empty()));
}

/// What a crash-test stream was told: every acknowledged key (id →
/// token), every acknowledged revocation, and the keys whose fate is
/// legitimately open (a Revoke cut by the crash between commit and answer).
#[derive(Default)]
struct Acknowledged {
    tokens: BTreeMap<String, String>,
    revoked: BTreeSet<String>,
    in_doubt: BTreeSet<String>,
}

impl Acknowledged {
    /// Takes in one stream's output (see akt-bus `stream`).
    fn record(&mut self, stdout: &str) {
        let mut last_gen = None;
        let mut end = None;
        for line in stdout.lines() {
            let f: Vec<&str> = line.split('\t').collect();
            match f.as_slice() {
                ["gen", id, token] => {
                    self.tokens.insert(id.to_string(), token.to_string());
                    last_gen = Some(id.to_string());
                }
                ["rev", id] => {
                    self.revoked.insert(id.to_string());
                }
                ["end", ..] => end = Some(line.to_string()),
                _ => panic!("unexpected stream output: {line}"),
            }
        }
        let end = end.unwrap_or_else(|| panic!("the stream did not end:\n{stdout}"));
        assert!(
            !end.contains("org.apikey.Keys1.Error"),
            "the stream ended on a refusal, not the crash: {end}"
        );
        if let Some(id) = last_gen.filter(|id| !self.revoked.contains(id)) {
            self.in_doubt.insert(id);
        }
    }

    /// The store after a restart holds exactly what was acknowledged, and
    /// the daemon acts on it.
    fn check(&self, world: &World, owner: &TestUser) {
        let db = world.daemon().open_db_readonly();
        let integrity: String = db
            .query_row("PRAGMA integrity_check", [], |r| r.get(0))
            .unwrap();
        assert_eq!(integrity, "ok");
        let rows: BTreeMap<String, Option<i64>> = db
            .prepare("SELECT id, revoked FROM keys")
            .unwrap()
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        let proxy = world.proxy_as_root();
        let active: BTreeSet<String> = world
            .block_on(proxy.list(owner.name(), false, false))
            .expect("List")
            .into_iter()
            .map(|k| k.id)
            .collect();
        for (id, token) in &self.tokens {
            let revoked = self.revoked.contains(id);
            match rows.get(id) {
                None => panic!("acknowledged key {id} is gone after the crash"),
                Some(None) if revoked => {
                    panic!("the acknowledged revocation of {id} is undone after the crash")
                }
                Some(Some(_)) if !revoked && !self.in_doubt.contains(id) => {
                    panic!("key {id} is revoked, but no revocation was asked for")
                }
                _ => {}
            }
            if self.in_doubt.contains(id) {
                continue;
            }
            let answer = world.block_on(proxy.verify(token, owner.name(), "sshd", RHOST));
            if revoked {
                assert!(!active.contains(id), "revoked key {id} is listed");
                assert!(
                    matches!(answer, Err(KeysError::Refused(_))),
                    "revoked key {id}: {answer:?}"
                );
            } else {
                assert!(active.contains(id), "key {id} is not listed");
                assert_eq!(answer.expect("a kept key verifies").1, *id);
            }
        }
    }
}

fn generated_ok(world: &World) -> usize {
    world
        .log()
        .lines()
        .iter()
        .filter(|l| l.contains("event=generate") && l.contains("outcome=\"ok\""))
        .count()
}

/// "Done" means on disk: a crash right after an answer must not lose the
/// key the caller was given, nor resurrect a key it was told is revoked.
#[test]
fn acknowledged_writes_survive_kill9_mid_stream() {
    require!(Need::World);
    let mut world = World::with_config(|c| {
        c.max_keys_per_user = 1_000_000;
        // The many refused verifies of the checks must be answered at once.
        c.throttle.free_failures = 1_000_000;
    });
    let svc = TestUser::create("svc");
    let mut acked = Acknowledged::default();
    // Crashes at different depths of the store's history (and of its WAL).
    for (round, writes) in [80, 150, 250].into_iter().enumerate() {
        // An administrator in a login session makes keys for a service
        // account, as fast as the daemon answers.
        let writer = world
            .as_root()
            .logged_in()
            .timeout(Duration::from_secs(120));
        let svc_name = svc.name().to_string();
        let stream = std::thread::spawn(move || {
            writer.run(
                &apikey_tests::bins::akt_bus().to_string_lossy(),
                &["stream", &svc_name],
            )
        });
        let target = generated_ok(&world) + writes;
        let deadline = Instant::now() + Duration::from_secs(60);
        while generated_ok(&world) < target {
            assert!(
                Instant::now() < deadline,
                "round {round}: too slow a stream\n{}",
                world.daemon().stderr_text()
            );
            std::thread::sleep(Duration::from_millis(5));
        }
        world.daemon_mut().kill9();
        let out = stream.join().expect("stream thread");
        out.ok();
        acked.record(&out.stdout);
        world.daemon_mut().restart();
        acked.check(&world, &svc);
    }
    // 80 + 150 + 250 generates were logged before the kills; the reply to
    // the one in flight at each kill may never have reached the client,
    // so it is not acknowledged.
    assert!(acked.tokens.len() >= 477, "{} keys", acked.tokens.len());
    assert!(
        acked.revoked.len() >= 200,
        "{} revocations",
        acked.revoked.len()
    );
}

/// The token is shown once; a copy anywhere on disk or in a log is a
/// password lying around.
#[test]
fn tokens_reach_neither_the_store_nor_the_logs() {
    require!(Need::World);
    let mut world = World::new();
    let alice = TestUser::create("alice");
    world.allow_user_keys();
    let proxy = world.proxy_as_root();
    let refused = |answer: Result<(String, String), KeysError>, what: &str| match answer {
        Err(KeysError::Refused(_)) => {}
        other => panic!("{what}: {other:?}"),
    };

    let (id1, t1) = cli_key(&world, &alice, &["generate", "--services", "sshd"]);
    let alias1 = format!("apikey_{}", &t1["apikey|".len()..]);
    world
        .block_on(proxy.verify(&t1, alice.name(), "sshd", RHOST))
        .expect("verify ok");
    world
        .as_root()
        .stdin(format!("{alias1}\n"))
        .apikey(&["verify", "--user", alice.name(), "--service", "sshd"])
        .ok();
    refused(
        world.block_on(proxy.verify(&t1, "root", "sshd", RHOST)),
        "someone else's name",
    );
    refused(
        world.block_on(proxy.verify(&alias1, alice.name(), "vsftpd", RHOST)),
        "a service outside the key's scope",
    );
    world
        .as_root()
        .stdin(t1.clone())
        .apikey(&["verify", "--user", "root", "--service", "sshd"])
        .assert_code(1);

    let (id2, t2) = cli_key(&world, &alice, &["rotate", &id1]);
    assert_ne!(id2, id1);
    refused(
        world.block_on(proxy.verify(&t1, alice.name(), "sshd", RHOST)),
        "the rotated-away key",
    );
    world
        .block_on(proxy.verify(&t2, alice.name(), "sshd", RHOST))
        .expect("the new key works");

    // A key typed into the user name field is revoked as leaked, and
    // logged by its id.
    let (id3, t3) = cli_key(&world, &alice, &["generate"]);
    let alias3 = format!("apikey_{}", &t3["apikey|".len()..]);
    refused(
        world.block_on(proxy.verify(&t2, &alias3, "sshd", RHOST)),
        "a key as the user name",
    );
    refused(
        world.block_on(proxy.verify(&t3, alice.name(), "sshd", RHOST)),
        "the leaked key",
    );
    world.log().expect(
        "naming the leaked key by id",
        |l| l.contains("leaked") && l.contains(&id3),
        Duration::from_secs(5),
    );

    world.as_user(&alice).apikey(&["revoke", &id2]).ok();
    refused(
        world.block_on(proxy.verify(&t2, alice.name(), "sshd", RHOST)),
        "the revoked key",
    );
    drop(proxy);

    let tokens = [t1.as_str(), t2.as_str(), t3.as_str()];
    let mut leaks = secret_leaks(&world, &tokens, "while the daemon runs");
    // Shutdown writes buffered last-used times and checkpoints the WAL.
    let status = world.daemon_mut().stop();
    assert!(status.success(), "apikeyd exited with {status}");
    leaks.extend(secret_leaks(&world, &tokens, "after shutdown"));
    assert!(leaks.is_empty(), "{}", leaks.join("\n"));
}

/// Every authentication attempt is logged with who, which key, where
/// from, for which service and the outcome (SPEC: syslog, authpriv,
/// ident apikeyd).
#[test]
fn verify_audit_lines_name_every_field() {
    require!(Need::World);
    let world = World::new();
    let alice = TestUser::create("alice");
    world.allow_user_keys();
    let (id, token) = cli_key(&world, &alice, &["generate"]);
    let proxy = world.proxy_as_root();
    world
        .block_on(proxy.verify(&token, alice.name(), "sshd", RHOST))
        .expect("verify ok");
    let other_host = "198.51.100.9";
    assert!(world
        .block_on(proxy.verify(&token, "root", "sshd", other_host))
        .is_err());

    let ok = audit_line(&world, "for the good verify", |f| {
        field_is(f, "event", "verify") && field_is(f, "rhost", RHOST)
    });
    let bad = audit_line(&world, "for the refused verify", |f| {
        field_is(f, "event", "verify") && field_is(f, "rhost", other_host)
    });
    let mut problems = audit_line_problems(&world, "verify ok", &ok, INFO, VERIFY_FIELDS);
    problems.extend(audit_line_problems(
        &world,
        "verify refused",
        &bad,
        WARNING,
        VERIFY_FIELDS,
    ));
    assert!(problems.is_empty(), "{}", problems.join("\n"));

    let ok: BTreeMap<_, _> = audit_fields(&ok.text).into_iter().collect();
    assert_eq!(ok["user"], alice.name());
    assert_eq!(ok["key"], id);
    assert_eq!(ok["service"], "sshd");
    assert_eq!(ok["outcome"], "ok");
    assert_eq!(ok["caller_uid"], "0");
    let bad: BTreeMap<_, _> = audit_fields(&bad.text).into_iter().collect();
    assert_eq!(bad["user"], "root");
    assert_eq!(bad["key"], id, "a refused known key is named by its id");
    assert_ne!(bad["outcome"], "ok");
}

/// Key events are audited with the same fields as authentications, so one
/// parser (and one grep) finds everything that happened to a key or user.
#[test]
fn key_event_audit_lines_name_every_field() {
    require!(Need::World);
    let world = World::new();
    let alice = TestUser::create("alice");
    world.allow_user_keys();
    let (id, _token) = cli_key(&world, &alice, &["generate", "--services", "sshd"]);
    let proxy = world.proxy_as_root();
    world
        .block_on(proxy.revoke(&[id.as_str()]))
        .expect("Revoke");
    world
        .block_on(proxy.set_settings("", "30d", "", ""))
        .expect("SetSettings");

    let generate = audit_line(&world, "for the generate", |f| {
        field_is(f, "event", "generate") && field_is(f, "outcome", "ok")
    });
    let revoke = audit_line(&world, "for the revoke", |f| {
        field_is(f, "event", "revoke") && f.values().any(|v| v.contains(&id))
    });
    let settings = audit_line(&world, "for the settings change", |f| {
        field_is(f, "event", "settings") && field_is(f, "outcome", "ok")
    });
    let uid = alice.uid().to_string();
    assert!(
        generate.text.contains(&format!("caller_uid={uid}")) && generate.text.contains(&id),
        "{}",
        generate.text
    );
    assert!(revoke.text.contains("caller_uid=0"), "{}", revoke.text);
    assert!(settings.text.contains("caller_uid=0"), "{}", settings.text);

    let mut problems = audit_line_problems(&world, "generate", &generate, INFO, KEY_EVENT_FIELDS);
    problems.extend(audit_line_problems(
        &world,
        "revoke",
        &revoke,
        INFO,
        KEY_EVENT_FIELDS,
    ));
    problems.extend(audit_line_problems(
        &world,
        "settings",
        &settings,
        INFO,
        SETTINGS_FIELDS,
    ));
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// A user name is chosen by whoever logs in: it must not be able to add a
/// line or a field to the audit log (S11).
#[test]
fn forged_user_names_are_escaped_in_the_log() {
    require!(Need::World);
    let world = World::new();
    let proxy = world.proxy_as_root();
    let token = "apikey|0000000000000000000000000000000000000000000000";
    let attempts = [
        ("203.0.113.1", "x\nevent=forged outcome=\"ok\""),
        ("203.0.113.2", "x\" event=\"forged\" outcome=\"ok"),
        ("203.0.113.3", "x\\\" event=forged \\"),
        ("203.0.113.4", "x\r\x1b[2Kevent=forged"),
    ];
    for (rhost, user) in attempts {
        let answer = world.block_on(proxy.verify(token, user, "sshd", rhost));
        assert!(
            matches!(
                answer,
                Err(KeysError::Refused(_)) | Err(KeysError::InvalidArgument(_))
            ),
            "{user:?}: {answer:?}"
        );
    }
    for (rhost, user) in attempts {
        let line = audit_line(&world, &format!("for the attempt from {rhost}"), |f| {
            field_is(f, "rhost", rhost)
        });
        let fields = audit_fields(&line.text);
        let events: Vec<&str> = fields
            .iter()
            .filter(|(n, _)| n == "event")
            .map(|(_, v)| v.as_str())
            .collect();
        assert_eq!(events, ["verify"], "{user:?} forged a field: {}", line.raw);
        let outcomes: Vec<&str> = fields
            .iter()
            .filter(|(n, _)| n == "outcome")
            .map(|(_, v)| v.as_str())
            .collect();
        assert_eq!(outcomes.len(), 1, "{}", line.raw);
        assert_ne!(
            outcomes[0], "ok",
            "{user:?} forged an outcome: {}",
            line.raw
        );
    }
    for raw in world.log().lines() {
        assert!(
            !raw.contains(['\n', '\r', '\x1b']),
            "a control character reached the log: {raw:?}"
        );
        let msg = SyslogLine::parse(&raw);
        assert_eq!(msg.ident, "apikeyd", "a line with a forged tag: {raw:?}");
        assert!(
            !msg.text.starts_with("event=forged"),
            "a forged line: {raw:?}"
        );
    }
    // The name is not dropped either: it is what the log is for.
    for (rhost, user) in attempts {
        let line = audit_line(&world, &format!("for {rhost}"), |f| {
            field_is(f, "rhost", rhost)
        });
        let fields: BTreeMap<_, _> = audit_fields(&line.text).into_iter().collect();
        let logged = fields.get("user").unwrap_or_else(|| {
            panic!(
                "the attempt as {user:?} is logged without the user: {}",
                line.text
            )
        });
        let expected: String = user
            .chars()
            .map(|c| {
                if c.is_control() {
                    format!("\\x{:02x}", c as u32)
                } else {
                    c.to_string()
                }
            })
            .collect();
        assert_eq!(*logged, expected, "{}", line.text);
    }
}

/// The store holds who has keys and their hashes: only the daemon may read
/// it, and a directory others can write to would let them swap the file.
#[test]
fn store_files_are_private_when_the_daemon_creates_them() {
    require!(Need::World);
    let parent = tmp::temp_dir("test");
    let db = parent.path().join("store").join("keys.db");
    let db_for_config = db.clone();
    let world = World::with_config(move |c| c.database = Some(db_for_config));
    let alice = TestUser::create("alice");
    world.allow_user_keys();
    cli_key(&world, &alice, &["generate"]);
    let mode = |p: &Path| {
        let meta = std::fs::metadata(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
        assert_eq!(meta.uid(), 0, "{} is not root's", p.display());
        meta.permissions().mode() & 0o7777
    };
    assert_eq!(mode(db.parent().unwrap()), 0o700, "the store's directory");
    assert_eq!(mode(&db), 0o600, "keys.db");
    assert_eq!(mode(&db.with_extension("db-wal")), 0o600, "keys.db-wal");
    assert_eq!(mode(&db.with_extension("db-shm")), 0o600, "keys.db-shm");
}

#[test]
fn a_store_directory_writable_by_others_is_refused() {
    require!(Need::World);
    let parent = tmp::temp_dir("test");
    let open = parent.path().join("open");
    std::fs::create_dir(&open).unwrap();
    std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o777)).unwrap();
    let bus = PrivateBus::start();
    let config = DaemonConfig {
        database: Some(open.join("keys.db")),
        ..DaemonConfig::default()
    };
    let err = match Daemon::try_start(&bus, &config) {
        Ok(_) => panic!("apikeyd started on a store in a world-writable directory"),
        Err(e) => e,
    };
    assert!(
        err.status.is_some_and(|s| !s.success()),
        "expected a failing exit: {err}"
    );
    assert!(
        err.stderr.contains(&open.display().to_string()),
        "stderr does not name the directory: {err}"
    );
    assert!(err.stderr.contains("writable"), "{err}");
    assert!(
        !open.join("keys.db").exists(),
        "the store was created anyway"
    );
}

/// Last-used times are buffered in memory; a clean stop must not drop
/// them, or `apikey list` lies about which keys are in use.
#[test]
fn last_used_survives_shutdown() {
    require!(Need::World);
    let mut world = World::new();
    let alice = TestUser::create("alice");
    world.allow_user_keys();
    let (id, token) = cli_key(&world, &alice, &["generate", "--services", "sshd"]);
    let before = now();
    let proxy = world.proxy_as_root();
    world
        .block_on(proxy.verify(&token, alice.name(), "sshd", RHOST))
        .expect("verify");
    drop(proxy);
    let after = now();

    let status = world.daemon_mut().stop();
    assert!(status.success(), "apikeyd exited with {status}");
    let (used, service, rhost): (Option<i64>, Option<String>, Option<String>) = world
        .daemon()
        .open_db_readonly()
        .query_row(
            "SELECT last_used, last_service, last_rhost FROM keys WHERE id = ?1",
            [&id],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .unwrap();
    let used = used.expect("last_used was not written at shutdown");
    assert!(
        (before..=after).contains(&used),
        "{used} not in {before}..={after}"
    );
    assert_eq!(service.as_deref(), Some("sshd"));
    assert_eq!(rhost.as_deref(), Some(RHOST));
}

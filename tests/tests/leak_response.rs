//! The leak response, end to end: a key revoked by someone who holds it
//! but does not own it (`apikey revoke --token`), and `apikey scan` over a
//! tree with live, revoked, mistyped, unknown and binary-embedded keys, a
//! symbolic-link loop and a link out of the tree.

use std::os::unix::fs::PermissionsExt;

use apikey_proto::Token;
use apikey_tests::prelude::*;

const REFUSED: i32 = 1;

/// `apikey verify` as root: is `token` accepted for `user` on sshd?
fn accepted(world: &World, token: &str, user: &str) -> bool {
    let out = world.as_root().stdin(format!("{token}\n")).apikey(&[
        "verify",
        "--user",
        user,
        "--service",
        "sshd",
    ]);
    match out.code() {
        0 => true,
        REFUSED => false,
        _ => panic!("unexpected verify result: {out:?}"),
    }
}

/// Everything under `dir` (links themselves, not what they name) to `user`.
fn give_tree(dir: &std::path::Path, user: &TestUser) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        std::os::unix::fs::lchown(&path, Some(user.uid()), Some(user.gid())).unwrap();
        if std::fs::symlink_metadata(&path).unwrap().is_dir() {
            give_tree(&path, user);
        }
    }
}

#[test]
fn a_leaked_key_is_revoked_by_whoever_holds_it() {
    require!(Need::World);
    let world = World::new();
    let (alice, bob) = (TestUser::create("alice"), TestUser::create("bob"));
    world.allow_user_keys();
    let (token, id) = world.new_key(&alice, &[]);
    // bob found alice's key in a paste; he has no login session to show.
    let out = world
        .as_user(&bob)
        .stdin(format!("{token}\n"))
        .apikey(&["revoke", "--token"]);
    assert_eq!(out.ok().stdout, format!("revoked key {id}\n"));
    assert!(!accepted(&world, &token, alice.name()));
    let line = world.log().expect(
        "the revocation, with who made it",
        |l| l.contains("event=revoke-by-token") && l.contains(&id),
        Duration::from_secs(5),
    );
    assert!(
        line.contains(&format!("caller_uid={}", bob.uid()))
            && line.contains(&format!("user=\"{}\"", alice.name()))
            && line.contains("reason=\"leaked\"")
            && line.contains("outcome=\"ok\""),
        "{line}"
    );
    let out = world
        .as_user(&bob)
        .stdin(format!("{token}\n"))
        .apikey(&["revoke", "--token", "--json"]);
    let json: serde_json::Value = serde_json::from_str(&out.ok().stdout).unwrap();
    assert_eq!(json, serde_json::json!({ "id": id, "revoked_now": false }));
    // A token that is no key here is refused, and says so.
    let unknown = Token::generate().unwrap();
    let out = world
        .as_user(&bob)
        .stdin(format!("{}\n", unknown.as_str()))
        .apikey(&["revoke", "--token"]);
    out.assert_code(REFUSED);
    assert_eq!(out.stderr, "apikey: no key has this token\n");
    for secret in [&token[7..], &unknown.as_str()[7..]] {
        assert!(
            !world.log().contains(secret),
            "a token reached the audit log"
        );
    }
}

#[test]
fn scan_reports_each_key_found_and_revokes_the_live_ones() {
    require!(Need::World);
    let world = World::new();
    let alice = TestUser::create("alice");
    world.allow_user_keys();
    let (live, live_id) = world.new_key(&alice, &[]);
    let (embedded, embedded_id) = world.new_key(&alice, &[]);
    let (revoked, revoked_id) = world.new_key(&alice, &[]);
    let (outside, outside_id) = world.new_key(&alice, &[]);
    world
        .as_user(&alice)
        .logged_in()
        .apikey(&["revoke", &revoked_id])
        .ok();
    let unknown = Token::generate().unwrap();
    let mistyped = {
        let mut t = live.clone();
        let last = t.pop().unwrap();
        t.push(if last == '0' { '1' } else { '0' });
        t
    };

    let tree = alice.home().join("project");
    let elsewhere = alice.home().join("elsewhere");
    for dir in [&tree, &tree.join("deploy"), &elsewhere] {
        std::fs::create_dir_all(dir).unwrap();
    }
    let write = |path: &std::path::Path, bytes: &[u8]| std::fs::write(path, bytes).unwrap();
    write(
        &tree.join("deploy/.env"),
        format!("# deploy\nUSER=alice\nAPIKEY={live}\n").as_bytes(),
    );
    write(
        &tree.join("notes.md"),
        format!(
            "old: {revoked}\ntypo: {mistyped}\nfixture: {}\n",
            unknown.as_str()
        )
        .as_bytes(),
    );
    let mut blob = vec![0u8, 159, 146, 150, b'\n', 0xff];
    blob.extend_from_slice(embedded.replacen('|', "_", 1).as_bytes());
    blob.extend_from_slice(&[0, 1, 2]);
    write(&tree.join("cache.bin"), &blob);
    write(&elsewhere.join("key"), outside.as_bytes());
    std::os::unix::fs::symlink(&tree, tree.join("deploy/loop")).unwrap();
    std::os::unix::fs::symlink(&elsewhere, tree.join("elsewhere")).unwrap();
    std::os::unix::fs::symlink(elsewhere.join("key"), tree.join("key-link")).unwrap();
    // A file alice cannot read is named, and the scan goes on.
    write(&tree.join("locked"), b"");
    std::fs::set_permissions(tree.join("locked"), std::fs::Permissions::from_mode(0o000)).unwrap();
    give_tree(alice.home(), &alice);

    let t = tree.display().to_string();
    let out = world
        .as_user(&alice)
        .apikey(&["scan", &t])
        .assert_code(REFUSED)
        .clone();
    assert_eq!(
        out.stdout,
        format!(
            "{t}/cache.bin:2: key {embedded_id} (active)\n\
             {t}/deploy/.env:3: key {live_id} (active)\n\
             {t}/notes.md:1: key {revoked_id} (revoked)\n\
             {t}/notes.md:3: a key this host does not know\n"
        )
    );
    assert!(
        out.stderr.contains(&format!(
            "apikey: cannot read {t}/locked: Permission denied"
        )),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr.ends_with("apikey: 4 key(s) found in files\n"),
        "{}",
        out.stderr
    );
    for secret in [&live, &embedded, &revoked, &outside] {
        assert!(!out.stdout.contains(&secret[7..]) && !out.stderr.contains(&secret[7..]));
    }

    let out = world
        .as_user(&alice)
        .apikey(&["scan", "--revoke", "--json", &t])
        .assert_code(REFUSED)
        .clone();
    let json: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    let states: Vec<(String, String)> = json["found"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            (
                f["id"].as_str().unwrap_or("-").to_string(),
                f["state"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let pair = |id: &str, state: &str| (id.to_string(), state.to_string());
    assert_eq!(
        states,
        [
            pair(&embedded_id, "revoked-now"),
            pair(&live_id, "revoked-now"),
            pair(&revoked_id, "revoked"),
            pair("-", "unknown"),
        ]
    );
    assert_eq!(json["links_not_followed"], 3);
    assert!(!accepted(&world, &live, alice.name()));
    assert!(!accepted(&world, &embedded, alice.name()));
    // Reached only through links: not scanned, not revoked.
    assert!(accepted(&world, &outside, alice.name()));
    assert!(world
        .keys_of(alice.name())
        .iter()
        .any(|k| k.id == outside_id));

    // Nothing found: success, silently.
    let clean = alice.home().join("clean");
    std::fs::create_dir(&clean).unwrap();
    std::fs::write(clean.join("readme"), format!("typo: {mistyped}\n")).unwrap();
    let out = world
        .as_user(&alice)
        .apikey(&["scan", &clean.display().to_string()]);
    assert_eq!((out.ok().stdout.as_str(), out.stderr.as_str()), ("", ""));
}

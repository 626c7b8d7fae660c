//! Who may do what, end to end: the real CLI run as real users against the
//! real daemon. Each refusal is paired with the same request made by
//! someone entitled to it, so that a test cannot pass merely because the
//! request itself is broken.

use apikey_proto::KeyInfo;
use apikey_tests::prelude::*;

/// Exit statuses of the CLI contract.
const REFUSED: i32 = 1;
const USAGE: i32 = 2;
const DENIED: i32 = 77;

fn all_keys(world: &World) -> Vec<KeyInfo> {
    world
        .block_on(world.proxy_as_root().list("", true, false))
        .expect("List(all) as root")
}

/// The token a successful `generate` printed: alone, and key-shaped.
#[track_caller]
fn token_of(out: &Output) -> String {
    out.ok();
    let token = out.stdout_trimmed().to_string();
    assert!(
        apikey_proto::Token::parse(token.as_bytes()).is_ok(),
        "{}: stdout is not a key alone:\n{}",
        out.description,
        out.stdout
    );
    assert_eq!(out.stdout.lines().count(), 1, "{}", out.stdout);
    token
}

/// A key for `user` made the way an administrator makes one for an
/// account: root in a login session of its own, with `--user`.
fn key_for(world: &World, user: &TestUser) -> String {
    token_of(
        &world
            .as_root()
            .logged_in()
            .apikey(&["generate", "--user", user.name()]),
    )
}

/// `apikey verify` by `who`, the token on stdin.
fn verify_by(who: &As, token: &str, args: &[&str]) -> Output {
    who.clone()
        .stdin(format!("{token}\n"))
        .apikey(&[&["verify"][..], args].concat())
}

/// Root's verdict on a token for `user` at sshd: the reference check.
fn root_accepts(world: &World, token: &str, user: &str) -> bool {
    let out = verify_by(
        &world.as_root(),
        token,
        &["--user", user, "--service", "sshd"],
    );
    match out.code() {
        0 => true,
        REFUSED => false,
        _ => panic!("unexpected verify result: {out:?}"),
    }
}

#[track_caller]
fn assert_refused(out: &Output, code: i32, mentions: &str) {
    out.assert_code(code);
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

fn ids(json: &serde_json::Value) -> Vec<String> {
    json.as_array()
        .unwrap_or_else(|| panic!("not a JSON array: {json}"))
        .iter()
        .map(|k| k["id"].as_str().expect("key id").to_string())
        .collect()
}

fn world_with_admins(admins: &TestGroup) -> World {
    let name = admins.name().to_string();
    World::with_config(|c| c.admin_groups = vec![name])
}

#[test]
fn a_regular_user_may_not_touch_other_users_keys_or_the_site() {
    require!(Need::World);
    let admins = TestGroup::create();
    let world = world_with_admins(&admins);
    let alice = TestUser::create("alice");
    let bob = TestUser::create("bob");
    let bob_token = key_for(&world, &bob);
    let bob_id = world.keys_of(bob.name())[0].id.clone();
    let as_alice = world.as_user(&alice).logged_in();

    let out = as_alice.apikey(&["list", "--user", bob.name()]);
    out.assert_code(DENIED);
    assert!(!out.stdout.contains(&bob_id), "leaked: {}", out.stdout);
    as_alice
        .apikey(&["list", "--user", bob.name(), "--json"])
        .assert_code(DENIED);
    let out = as_alice.apikey(&["list", "--all"]);
    out.assert_code(DENIED);
    assert!(!out.stdout.contains(&bob_id), "leaked: {}", out.stdout);

    as_alice.apikey(&["revoke", &bob_id]).assert_code(DENIED);
    as_alice
        .apikey(&["revoke", "--all", "--user", bob.name()])
        .assert_code(DENIED);
    as_alice
        .apikey(&["revoke", "--all", "--site", "--yes"])
        .assert_code(DENIED);

    // A valid key and a service in range: only the caller is wrong.
    let out = verify_by(
        &as_alice,
        &bob_token,
        &["--user", bob.name(), "--service", "sshd"],
    );
    assert_refused(&out, DENIED, "verif");
    verify_by(&as_alice, &bob_token, &[]).assert_code(DENIED);
    verify_by(&as_alice, &bob_token, &["--service", "nginx"]).assert_code(DENIED);

    assert_refused(
        &as_alice.apikey(&["settings", "--allow-user-keys", "yes"]),
        DENIED,
        "administrator",
    );
    as_alice
        .apikey(&["settings", "--expires", "7d"])
        .assert_code(DENIED);
    as_alice
        .apikey(&["settings", "--users-see-own", "no"])
        .assert_code(DENIED);
    // Reading the policy is for everyone.
    as_alice.apikey(&["settings"]).ok();

    // Nothing of the above had an effect.
    assert_eq!(world.keys_of(bob.name()).len(), 1);
    assert!(root_accepts(&world, &bob_token, bob.name()));
    let settings = world.settings();
    assert!(!settings.allow_user_keys);
    assert_eq!(settings.expires, "never");
    assert!(settings.users_see_own);
    assert!(
        !world
            .log()
            .contains(&bob_token[apikey_proto::token::PREFIX.len()..]),
        "the token reached the audit log"
    );
}

/// Everything a regular user was refused above, done by `admin`; each
/// step checked through the daemon, not through the CLI's own report.
/// Verifying is not an administrator's right but a verifier's (uid 0 and
/// `verifier_groups`), so `verifier` says which one `admin` is.
fn an_administrator_may_do_all_of_it(
    world: &World,
    admin: &As,
    verifier: bool,
    bob: &TestUser,
    alice: &TestUser,
) {
    let bob_token = key_for(world, bob);
    let bob_id = world.keys_of(bob.name())[0].id.clone();

    let out = admin.apikey(&["list", "--user", bob.name(), "--json"]);
    assert_eq!(ids(&out.ok().json()), vec![bob_id.clone()]);
    let out = admin.apikey(&["list", "--user", bob.name()]);
    assert!(out.ok().stdout.contains(&bob_id), "{}", out.stdout);
    let out = admin.apikey(&["list", "--all", "--json"]);
    assert!(ids(&out.ok().json()).contains(&bob_id), "{}", out.stdout);

    let out = verify_by(
        admin,
        &bob_token,
        &["--user", bob.name(), "--service", "sshd"],
    );
    if verifier {
        assert!(out.ok().stdout.contains(&bob_id), "{}", out.stdout);
        verify_by(admin, &bob_token, &[]).ok();
    } else {
        out.assert_code(DENIED);
    }

    admin
        .apikey(&["settings", "--allow-user-keys", "yes", "--expires", "90d"])
        .ok();
    let settings = world.settings();
    assert!(settings.allow_user_keys);
    assert_eq!(settings.expires, "90d");

    admin.apikey(&["revoke", &bob_id]).ok();
    assert!(!root_accepts(world, &bob_token, bob.name()));
    assert!(world.keys_of(bob.name()).is_empty());

    let first = key_for(world, bob);
    let second = key_for(world, bob);
    let alices = key_for(world, alice);
    admin
        .apikey(&["revoke", "--all", "--user", bob.name()])
        .ok();
    assert!(!root_accepts(world, &first, bob.name()));
    assert!(!root_accepts(world, &second, bob.name()));
    // Only bob's.
    assert!(root_accepts(world, &alices, alice.name()));

    let bobs = key_for(world, bob);
    // Without a terminal to ask on, --site needs --yes.
    let refused = admin.apikey(&["revoke", "--all", "--site"]);
    refused.assert_code(1);
    assert!(refused.stderr.contains("give --yes"), "{}", refused.stderr);
    assert!(root_accepts(world, &bobs, bob.name()), "nothing revoked");
    admin.apikey(&["revoke", "--all", "--site", "--yes"]).ok();
    assert!(all_keys(world).is_empty(), "{:?}", all_keys(world));
    assert!(!root_accepts(world, &bobs, bob.name()));
    assert!(!root_accepts(world, &alices, alice.name()));
}

#[test]
fn a_member_of_an_admin_group_may_do_all_of_it() {
    require!(Need::World);
    let admins = TestGroup::create();
    let world = world_with_admins(&admins);
    let alice = TestUser::create("alice");
    let bob = TestUser::create("bob");
    let carol = TestUser::create("carol");
    admins.add_member(&carol);
    let as_carol = world.as_user(&carol).logged_in();
    let status = as_carol.apikey(&["status", "--json"]).ok().json();
    assert_eq!(status["admin"], true, "{status}");
    an_administrator_may_do_all_of_it(&world, &as_carol, false, &bob, &alice);
}

#[test]
fn root_may_do_all_of_it() {
    require!(Need::World);
    let admins = TestGroup::create();
    let world = world_with_admins(&admins);
    let alice = TestUser::create("alice");
    let bob = TestUser::create("bob");
    // Not in a login session: none of this needs one.
    an_administrator_may_do_all_of_it(&world, &world.as_root(), true, &bob, &alice);
}

#[test]
fn users_need_the_policy_to_generate_but_administrators_do_not() {
    require!(Need::World);
    let admins = TestGroup::create();
    let world = world_with_admins(&admins);
    let alice = TestUser::create("alice");
    let carol = TestUser::create("carol");
    admins.add_member(&carol);

    let out = world.as_user(&alice).logged_in().apikey(&["generate"]);
    assert_refused(&out, REFUSED, "policy");
    assert!(!out.stdout.contains("apikey"), "{}", out.stdout);
    assert!(all_keys(&world).is_empty());

    let token = token_of(&world.as_user(&carol).logged_in().apikey(&["generate"]));
    assert!(root_accepts(&world, &token, carol.name()));

    world
        .as_root()
        .apikey(&["settings", "--allow-user-keys", "yes"])
        .ok();
    let token = token_of(&world.as_user(&alice).logged_in().apikey(&["generate"]));
    assert!(root_accepts(&world, &token, alice.name()));
    assert_eq!(world.keys_of(alice.name()).len(), 1);
}

#[test]
fn a_verifier_group_verifies_only_for_its_services() {
    require!(Need::World);
    let verifiers = TestGroup::create();
    let group = verifiers.name().to_string();
    let world = World::with_config(|c| c.verifier_groups = vec![(group, vec!["nginx*".into()])]);
    let alice = TestUser::create("alice");
    let www = TestUser::create("www");
    let bob = TestUser::create("bob");
    verifiers.add_member(&www);
    world.allow_user_keys();
    let token = token_of(&world.as_user(&alice).logged_in().apikey(&["generate"]));
    let id = world.keys_of(alice.name())[0].id.clone();

    // A verifier is a service, not a logged-in person.
    let as_www = world.as_user(&www);
    let status = as_www.apikey(&["status", "--json"]).ok().json();
    assert_eq!(status["verifier"], true, "{status}");
    assert_eq!(status["admin"], false, "{status}");

    let out = verify_by(
        &as_www,
        &token,
        &["--user", alice.name(), "--service", "nginx"],
    );
    assert!(out.ok().stdout.contains(&id), "{}", out.stdout);
    verify_by(
        &as_www,
        &token,
        &["--user", alice.name(), "--service", "nginx-api"],
    )
    .ok();

    let out = verify_by(
        &as_www,
        &token,
        &["--user", alice.name(), "--service", "sshd"],
    );
    assert_refused(&out, DENIED, "sshd");
    // Validity without a scope is for root alone.
    verify_by(&as_www, &token, &["--user", alice.name()]).assert_code(DENIED);
    verify_by(&as_www, &token, &[]).assert_code(DENIED);

    // Group rights come from the group, not from being some user.
    verify_by(
        &world.as_user(&bob),
        &token,
        &["--user", alice.name(), "--service", "nginx"],
    )
    .assert_code(DENIED);

    // A verifier's answers are those of a login check: a wrong owner is a
    // refusal, not a denial.
    verify_by(
        &as_www,
        &token,
        &["--user", bob.name(), "--service", "nginx"],
    )
    .assert_code(REFUSED);
}

#[test]
fn hidden_keys_can_still_be_revoked_by_their_owner() {
    require!(Need::World);
    let world = World::new();
    let alice = TestUser::create("alice");
    world.allow_user_keys();
    world
        .as_root()
        .apikey(&["settings", "--users-see-own", "no"])
        .ok();
    let as_alice = world.as_user(&alice).logged_in();
    let tokens: Vec<String> = (0..3)
        .map(|_| token_of(&as_alice.apikey(&["generate"])))
        .collect();

    let out = as_alice.apikey(&["list"]);
    assert_refused(&out, REFUSED, "policy");
    assert!(out.stdout.is_empty(), "{}", out.stdout);
    as_alice.apikey(&["list", "--json"]).assert_code(REFUSED);

    // By id, learnt elsewhere (the note at generation, the audit log).
    let first_id = world.keys_of(alice.name())[0].id.clone();
    as_alice.apikey(&["revoke", &first_id]).ok();
    assert_eq!(world.keys_of(alice.name()).len(), 2);

    as_alice.apikey(&["revoke", "--all"]).ok();
    assert!(world.keys_of(alice.name()).is_empty());
    for token in &tokens {
        assert!(!root_accepts(&world, token, alice.name()));
    }
}

#[test]
fn keys_come_only_from_a_login_session_of_ones_own() {
    require!(Need::World);
    let world = World::new();
    let alice = TestUser::create("alice");
    let bob = TestUser::create("bob");
    world.allow_user_keys();

    // cron, a service, a container shell: no loginuid at all.
    let out = world.as_user(&alice).apikey(&["generate"]);
    assert_refused(&out, REFUSED, "login session");
    assert!(out.stdout.is_empty(), "{}", out.stdout);

    // alice logged in, then became bob (su/sudo/runuser).
    let out = world
        .as_user(&bob)
        .logged_in_as(alice.uid())
        .apikey(&["generate"]);
    assert_refused(&out, REFUSED, "sudo");
    assert!(out.stdout.is_empty(), "{}", out.stdout);
    // Nor through --user, the other door to a new key (rotate: below).
    world
        .as_user(&bob)
        .logged_in_as(alice.uid())
        .apikey(&["generate", "--user", alice.name()])
        .assert_code(DENIED);
    assert!(all_keys(&world).is_empty(), "{:?}", all_keys(&world));

    // Premise: the same users get keys when logged in as themselves.
    token_of(&world.as_user(&alice).logged_in().apikey(&["generate"]));
    token_of(&world.as_user(&bob).logged_in().apikey(&["generate"]));
    let bob_id = world.keys_of(bob.name())[0].id.clone();
    world
        .as_user(&bob)
        .logged_in_as(alice.uid())
        .apikey(&["rotate", &bob_id])
        .assert_code(REFUSED);
    assert_eq!(world.keys_of(bob.name())[0].id, bob_id, "rotated anyway");
}

#[test]
fn an_administrator_under_sudo_makes_keys_for_a_service_account() {
    require!(Need::World);
    let world = World::new();
    let alice = TestUser::create("alice");
    let svc = TestUser::create("svcacct");
    // `sudo apikey ...` by alice: root with alice's login uid.
    let sudo = world.as_root().logged_in_as(alice.uid());

    assert_refused(&sudo.apikey(&["generate"]), REFUSED, "sudo");

    let token = token_of(&sudo.apikey(&["generate", "--user", svc.name(), "--name", "deploy"]));
    let keys = world.keys_of(svc.name());
    assert_eq!(keys.len(), 1, "{keys:?}");
    let key = &keys[0];
    assert_eq!((key.user.as_str(), key.uid), (svc.name(), svc.uid()));
    assert_eq!(key.name, "deploy");
    assert_eq!(key.created_by_uid, 0);

    let out = sudo.apikey(&["list", "--user", svc.name()]);
    assert!(out.ok().stdout.contains(&key.id), "{}", out.stdout);
    let out = sudo.apikey(&["list", "--user", svc.name(), "--json"]);
    assert_eq!(ids(&out.ok().json()), vec![key.id.clone()]);

    // The record names who made it: root, acting for alice.
    assert_eq!(world.key_maker(&key.id), (0, Some(alice.uid())));

    assert!(root_accepts(&world, &token, svc.name()));
    assert!(!root_accepts(&world, &token, alice.name()));

    // --user is an administrator's door only, logged in or not.
    world
        .as_user(&alice)
        .logged_in()
        .apikey(&["generate", "--user", svc.name()])
        .assert_code(DENIED);
    // It needs a login session, even for root.
    assert_refused(
        &world.as_root().apikey(&["generate", "--user", svc.name()]),
        REFUSED,
        "login session",
    );
    assert_eq!(world.keys_of(svc.name()).len(), 1);
}

#[test]
fn root_gets_no_keys_unless_allowed() {
    require!(Need::World);
    let mut world = World::new();
    let out = world.as_root().logged_in().apikey(&["generate"]);
    assert_refused(&out, REFUSED, "allow_system_accounts");
    assert!(out.stdout.is_empty(), "{}", out.stdout);
    assert!(all_keys(&world).is_empty());

    world.reconfigure(|c| c.allow_system_accounts = vec!["root".into()]);
    let token = token_of(&world.as_root().logged_in().apikey(&["generate"]));
    assert_eq!(world.keys_of("root").len(), 1);
    assert!(root_accepts(&world, &token, "root"));
}

#[test]
fn a_key_narrowed_to_nginx_works_only_there() {
    require!(Need::World);
    let world = World::new();
    let alice = TestUser::create("alice");
    world.allow_user_keys();
    let as_alice = world.as_user(&alice).logged_in();
    let token = token_of(&as_alice.apikey(&["generate", "--services", "nginx"]));
    let keys = world.keys_of(alice.name());
    assert_eq!(keys[0].services, vec!["nginx".to_string()]);

    let root = world.as_root();
    let at = |service: &str| {
        verify_by(
            &root,
            &token,
            &["--user", alice.name(), "--service", service],
        )
    };
    at("nginx").ok();
    at("sshd").assert_code(REFUSED);
    at("vsftpd").assert_code(REFUSED);
    at("nginx-api").assert_code(REFUSED);
    at("su").assert_code(REFUSED);

    // su is never a key service, whatever the request or the site says.
    let out = as_alice.apikey(&["generate", "--services", "su"]);
    assert_refused(&out, REFUSED, "su");
    assert!(out.stdout.is_empty(), "{}", out.stdout);
    as_alice
        .apikey(&["generate", "--services", "nginx,su"])
        .assert_code(REFUSED);
    as_alice
        .apikey(&["generate", "--services", "bad service"])
        .assert_code(USAGE);
    assert_eq!(world.keys_of(alice.name()).len(), 1);
}

/// A caller's refused calls cannot flood the audit log: the first ones of
/// a minute are logged as they are, the rest are counted in one summary
/// line, and valid calls from others are answered meanwhile. Before, each
/// refusal was a line (18,105 lines for 20,000 calls).
#[test]
fn a_flood_of_refused_calls_is_summarised_not_logged_line_by_line() {
    require!(Need::World);
    let mut world = World::new();
    world.allow_user_keys();
    let alice = TestUser::create("alice");
    let bob = TestUser::create("bob");
    let (bobs_key, _) = world.new_key(&bob, &[]);
    const CALLS: usize = 300;
    let alice_uid = alice.uid();
    // Denied each time: alice is no administrator.
    let out = world.as_user(&alice).run(
        "sh",
        &[
            "-c",
            "n=0; for _ in $(seq $2); do \"$1\" settings --allow-user-keys yes 2>/dev/null || n=$((n+1)); done; echo $n",
            "sh",
            &world.apikey_bin().display().to_string(),
            &CALLS.to_string(),
        ],
    );
    assert_eq!(out.ok().stdout_trimmed(), CALLS.to_string());
    // Others are served meanwhile and after.
    let ok = world.as_root().stdin(format!("{bobs_key}\n")).apikey(&[
        "verify",
        "--user",
        bob.name(),
        "--service",
        "sshd",
    ]);
    ok.ok();
    world.daemon_mut().stop();
    let lines = world.log().lines();
    let mine = format!("caller_uid={alice_uid}");
    let verbatim = lines
        .iter()
        .filter(|l| l.contains("event=settings") && l.contains(&mine))
        .count();
    assert_eq!(verbatim, 20, "the first refusals of the minute, verbatim");
    let summary = lines
        .iter()
        .find(|l| l.contains("event=refusal-summary") && l.contains(&mine))
        .unwrap_or_else(|| panic!("no summary:\n{}", lines.join("\n")));
    assert!(
        summary.contains(&format!("refused_unlogged={}", CALLS - 20)),
        "{summary}"
    );
}

//! OpenSSH's sshd with pam_apikey in its PAM stack, and the real OpenSSH
//! client logging in through sshpass, by keyboard-interactive and by
//! password: a key logs its owner in, and nothing else does.
//!
//! The key travels in `SSHPASS` (`sshpass -e`), never in argv. sshpass
//! exits 5 when asked for the password a second time, which is how a
//! refusal shows: ssh asks again after a failed attempt. It also proves
//! the stack asks only once for an accepted password.

use apikey_tests::prelude::*;
use apikey_tests::services::{Sshd, SANDBOX_PROGRAM};

/// The PAM service (and argv[0]) of the test sshd; it matches the
/// default `key_services` entry `sshd*`.
const SERVICE: &str = "sshd-apikey";
const METHODS: [&str; 2] = ["keyboard-interactive", "password"];
/// sshpass: "invalid password", i.e. the server asked again.
const SSHPASS_REFUSED: i32 = 5;
const LOG_WAIT: Duration = Duration::from_secs(10);
const DAY: i64 = 86400;

macro_rules! require_sshd {
    () => {
        require!(
            Need::World,
            Need::Program("sshd"),
            Need::Program("ssh"),
            Need::Program("ssh-keygen"),
            Need::Program("sshpass"),
            Need::Program(SANDBOX_PROGRAM),
        )
    };
}

/// The stack docs/pam.md shows for sshd, as an edit of this machine's
/// own /etc/pam.d/sshd (its includes come along): a key ends
/// authentication (good) or the whole attempt (bad); any other password
/// goes on to common-auth without a second prompt.
fn stack(daemon: &apikey_tests::daemon::Daemon, extra: &str) -> String {
    apikey_tests::pam::documented_stack("sshd", &apikey_tests::pam::module(daemon, extra))
}

/// A world whose users may make keys, and an sshd using `stack`.
fn site(world: &World) -> (PamServices, Sshd) {
    world
        .as_root()
        .apikey(&["settings", "--allow-user-keys", "yes"])
        .ok();
    let pam = PamServices::new();
    pam.add_machine_includes();
    pam.add(SERVICE, &stack(world.daemon(), ""));
    let sshd = Sshd::start(&pam, SERVICE);
    (pam, sshd)
}

fn generate(world: &World, user: &TestUser) -> String {
    let out = world.as_user(user).logged_in().apikey(&["generate"]);
    out.ok();
    out.stdout_trimmed().to_string()
}

fn key_id(world: &World, user: &TestUser) -> String {
    let keys = world
        .block_on(world.proxy_as_root().list(user.name(), false, false))
        .expect("List as root");
    assert_eq!(keys.len(), 1, "{keys:?}");
    keys[0].id.clone()
}

/// `ssh login@127.0.0.1 id -un` as `client`, answering every password
/// prompt with `password`.
fn ssh(sshd: &Sshd, client: &TestUser, method: &str, login: &str, password: &str) -> Output {
    let mut args = vec!["-e".to_string()];
    args.extend(sshd.ssh_args(method, login, &["id", "-un"]));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    As::user(client)
        .env("SSHPASS", password)
        .timeout(Duration::from_secs(90))
        .run("sshpass", &args)
}

#[track_caller]
fn assert_logged_in(out: &Output, sshd: &Sshd, who: &str) {
    if out.code() != 0 || out.stdout_trimmed() != who {
        panic!(
            "{}: expected a login as {who}, got exit {}\nstdout:\n{}\nstderr:\n{}\nsshd log:\n{}",
            out.description,
            out.code(),
            out.stdout,
            out.stderr,
            sshd.log_text()
        );
    }
}

#[track_caller]
fn assert_refused(out: &Output, sshd: &Sshd) {
    if out.code() != SSHPASS_REFUSED || !out.stdout.is_empty() {
        panic!(
            "{}: expected a refusal (sshpass exit {SSHPASS_REFUSED}, no output), got exit {}\n\
             stdout:\n{}\nstderr:\n{}\nsshd log:\n{}",
            out.description,
            out.code(),
            out.stdout,
            out.stderr,
            sshd.log_text()
        );
    }
}

fn verify_lines(world: &World) -> Vec<String> {
    world
        .log()
        .lines()
        .into_iter()
        .filter(|l| l.contains("event=verify "))
        .collect()
}

#[test]
fn a_key_logs_its_owner_in_and_the_login_is_audited() {
    require_sshd!();
    let world = World::new();
    // No password at all: an account may log in with keys only.
    let alice = TestUser::create("alice");
    let (_pam, sshd) = site(&world);
    let token = generate(&world, &alice);
    let id = key_id(&world, &alice);

    for method in METHODS {
        let out = ssh(&sshd, &alice, method, alice.name(), &token);
        assert_logged_in(&out, &sshd, alice.name());
    }
    // The `apikey_` spelling is the same key.
    let alias = apikey_proto::Token::parse(token.as_bytes())
        .expect("a key")
        .alias();
    let out = ssh(&sshd, &alice, "password", alice.name(), &alias);
    assert_logged_in(&out, &sshd, alice.name());

    let ok: Vec<String> = verify_lines(&world)
        .into_iter()
        .filter(|l| l.contains("outcome=\"ok\""))
        .collect();
    assert_eq!(ok.len(), 3, "one verify per login:\n{ok:#?}");
    for line in &ok {
        for field in [
            format!("service=\"{SERVICE}\""),
            "rhost=\"127.0.0.1\"".to_string(),
            format!("user=\"{}\"", alice.name()),
            format!("key=\"{id}\""),
            "caller_uid=0".to_string(),
        ] {
            assert!(line.contains(&field), "{field} missing from {line}");
        }
    }
    // The session is registered as opened with the key, even by
    // keyboard-interactive, where authentication ran in a child of sshd.
    let is_open = |l: &String| {
        l.contains("event=session-open")
            && l.contains(&format!("key=\"{id}\""))
            && l.contains("outcome=\"ok\"")
    };
    let deadline = std::time::Instant::now() + LOG_WAIT;
    while world.log().lines().iter().filter(|l| is_open(l)).count() < 3
        && std::time::Instant::now() < deadline
    {
        std::thread::sleep(Duration::from_millis(50));
    }
    let opened: Vec<String> = world.log().lines().into_iter().filter(is_open).collect();
    assert_eq!(opened.len(), 3, "{:#?}", world.log().lines());
    let opened = &opened[0];
    assert!(
        opened.contains(&format!("service=\"{SERVICE}\"")),
        "{opened}"
    );
    assert!(
        !world
            .log()
            .contains(&token[apikey_proto::token::PREFIX.len()..]),
        "the token reached the audit log"
    );
}

#[test]
fn another_users_key_is_refused() {
    require_sshd!();
    let world = World::new();
    let alice = TestUser::create("alice");
    let bob = TestUser::create("bob");
    let (_pam, sshd) = site(&world);
    let bobs = generate(&world, &bob);
    let bobs_id = key_id(&world, &bob);

    for method in METHODS {
        let out = ssh(&sshd, &alice, method, alice.name(), &bobs);
        assert_refused(&out, &sshd);
    }
    world.log().expect(
        "a refused verify of bob's key for alice",
        |l| {
            l.contains("event=verify ")
                && l.contains(&format!("user=\"{}\"", alice.name()))
                && l.contains(&format!("key=\"{bobs_id}\""))
                && l.contains("outcome=\"refused\"")
        },
        LOG_WAIT,
    );
    assert!(
        !verify_lines(&world)
            .iter()
            .any(|l| l.contains("outcome=\"ok\"")),
        "{:#?}",
        verify_lines(&world)
    );
    // Bob's key still works for bob.
    let out = ssh(&sshd, &bob, "password", bob.name(), &bobs);
    assert_logged_in(&out, &sshd, bob.name());
}

#[test]
fn a_revoked_key_is_refused_on_the_next_attempt() {
    require_sshd!();
    let world = World::new();
    let alice = TestUser::create("alice");
    let (_pam, sshd) = site(&world);
    let token = generate(&world, &alice);
    let id = key_id(&world, &alice);
    let out = ssh(&sshd, &alice, "keyboard-interactive", alice.name(), &token);
    assert_logged_in(&out, &sshd, alice.name());

    world
        .as_user(&alice)
        .logged_in()
        .apikey(&["revoke", &id])
        .ok();
    for method in METHODS {
        let out = ssh(&sshd, &alice, method, alice.name(), &token);
        assert_refused(&out, &sshd);
    }
    world.log().expect(
        "a verify refused as revoked",
        |l| {
            l.contains("event=verify ")
                && l.contains(&format!("key=\"{id}\""))
                && l.contains("revoked")
                && l.contains(&format!("service=\"{SERVICE}\""))
        },
        LOG_WAIT,
    );
}

#[test]
fn an_expired_key_is_refused() {
    require_sshd!();
    let mut world = World::new();
    let alice = TestUser::create("alice");
    let (_pam, sshd) = site(&world);
    let token = generate(&world, &alice);
    let id = key_id(&world, &alice);

    // Ten days old under a seven-day policy: the store is edited behind
    // a stopped daemon, sshd keeps running.
    world.age_key(&id, 10 * DAY);
    let out = ssh(&sshd, &alice, "password", alice.name(), &token);
    assert_logged_in(&out, &sshd, alice.name());

    world
        .as_root()
        .apikey(&["settings", "--expires", "7d"])
        .ok();
    for method in METHODS {
        let out = ssh(&sshd, &alice, method, alice.name(), &token);
        assert_refused(&out, &sshd);
    }
    world.log().expect(
        "a verify refused as expired",
        |l| {
            l.contains("event=verify ")
                && l.contains(&format!("key=\"{id}\""))
                && l.contains("expired")
        },
        LOG_WAIT,
    );
}

/// A key three days from its expiry (under `warn_before`, 7 days by
/// default): the login says so, as sshd shows pam_motd's text, by both
/// methods; the audit log has one `key-expiring` line for the day; a key
/// far from its expiry says nothing.
#[test]
fn a_login_with_a_key_close_to_its_expiry_is_warned() {
    require_sshd!();
    let mut world = World::new();
    let alice = TestUser::create("alice");
    let (_pam, sshd) = site(&world);
    let token = generate(&world, &alice);
    let id = key_id(&world, &alice);

    // sshd shows the session's PAM messages where it shows the message
    // of the day: at an interactive login on a terminal (-tt, no
    // command; `ssh host command` runs quietly).
    let ssh_tty = |method: &str| {
        let mut args = vec!["-e".to_string()];
        args.extend(sshd.ssh_args(method, alice.name(), &[]));
        let at = args.iter().position(|a| a.ends_with("@127.0.0.1")).unwrap();
        args.insert(at, "-tt".into());
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        As::user(&alice)
            .env("SSHPASS", &token)
            .stdin("id -un; exit\n")
            .timeout(Duration::from_secs(90))
            .run("sshpass", &args)
    };
    let out = ssh_tty("password");
    assert_eq!(
        out.code(),
        0,
        "{}\n{}\n{}",
        out.stdout,
        out.stderr,
        sshd.log_text()
    );
    assert!(
        !out.stdout.contains("expires"),
        "a new key without an expiry: {}",
        out.stdout
    );

    // Four days old under a seven-day policy: three days left.
    world.age_key(&id, 4 * DAY);
    world
        .as_root()
        .apikey(&["settings", "--expires", "7d"])
        .ok();
    for method in METHODS {
        let out = ssh_tty(method);
        assert_eq!(
            out.code(),
            0,
            "{method}: {}\n{}\n{}",
            out.stdout,
            out.stderr,
            sshd.log_text()
        );
        let warning = format!("the API key you logged in with ({id}) expires in 3 days, at ");
        assert!(
            out.stdout.contains(&warning) && out.stdout.contains(&format!("apikey rotate {id}")),
            "{method}: no warning in what the client shows:\n{}\nstderr:\n{}\nsshd log:\n{}",
            out.stdout,
            out.stderr,
            sshd.log_text()
        );
        assert!(out.stdout.contains(alice.name()), "{}", out.stdout);
    }
    let expiring =
        |l: &str| l.contains("event=key-expiring ") && l.contains(&format!("key=\"{id}\""));
    world.log().expect(
        "the day's key-expiring line",
        |l| expiring(l) && (l.contains("days_left=2") || l.contains("days_left=3")),
        LOG_WAIT,
    );
    let lines = world.log().lines();
    assert_eq!(
        lines.iter().filter(|l| expiring(l)).count(),
        1,
        "one line a day, not one a login:\n{}",
        lines.join("\n")
    );
    // `list` marks it, `status` counts it, for its owner.
    let list = world.as_user(&alice).apikey(&["list"]);
    list.ok();
    assert!(list.stdout.contains("in 3 days (soon)"), "{}", list.stdout);
    let status = world.as_user(&alice).apikey(&["status", "--json"]);
    status.ok();
    let v: serde_json::Value = serde_json::from_str(&status.stdout).expect("status JSON");
    assert_eq!(v["expiring_soon"], 1, "{v}");
    assert_eq!(v["warn_before"], "7d", "{v}");
}

#[test]
fn user_mapping_is_refused_inside_sshd() {
    require_sshd!();
    let world = World::new();
    let alice = TestUser::create("alice");
    // An existing account as the mapping name: without it sshd itself
    // never hands the module the password of an unknown user (it swaps
    // in a known-bad one), so the module's own refusal would go untested.
    let carol = TestUser::create("carol");
    world
        .as_root()
        .apikey(&["settings", "--allow-user-keys", "yes"])
        .ok();
    let token = generate(&world, &alice);
    let pam = PamServices::new();
    pam.add_machine_includes();
    pam.add(SERVICE, &stack(world.daemon(), "map_user"));
    pam.add(
        "sshd-mapped",
        &stack(world.daemon(), &format!("map_user={}", carol.name())),
    );
    let sshd = Sshd::start(&pam, SERVICE);
    let mapped = Sshd::start(&pam, "sshd-mapped");

    for method in METHODS {
        // LabKey's `login apikey`: no such account here.
        let out = ssh(&sshd, &alice, method, "apikey", &token);
        assert_refused(&out, &sshd);
        let out = ssh(&mapped, &alice, method, carol.name(), &token);
        assert_refused(&out, &mapped);
    }
    assert!(
        verify_lines(&world).is_empty(),
        "a mapped key must be refused before it is offered to the daemon:\n{:#?}",
        verify_lines(&world)
    );
    // The same stacks still log the owner in under her own name.
    let out = ssh(&sshd, &alice, "keyboard-interactive", alice.name(), &token);
    assert_logged_in(&out, &sshd, alice.name());
    let out = ssh(&mapped, &alice, "password", alice.name(), &token);
    assert_logged_in(&out, &mapped, alice.name());
}

#[test]
fn the_account_password_still_works_with_one_prompt() {
    require_sshd!();
    let world = World::new();
    let alice = TestUser::create("alice");
    let password = "correct-Horse-7-battery";
    alice.set_password(password);
    let (_pam, sshd) = site(&world);

    for method in METHODS {
        let out = ssh(&sshd, &alice, method, alice.name(), password);
        assert_logged_in(&out, &sshd, alice.name());
        let out = ssh(&sshd, &alice, method, alice.name(), "wrong-password");
        assert_refused(&out, &sshd);
    }
    assert!(
        verify_lines(&world).is_empty(),
        "a password that is not a key never reaches the daemon:\n{:#?}",
        verify_lines(&world)
    );
}

/// Hostile passwords over the network: each is refused cleanly, and the
/// same sshd (the same module in the same listener) serves the next login.
#[test]
fn junk_passwords_are_refused_and_sshd_keeps_serving() {
    require_sshd!();
    let world = World::new();
    let alice = TestUser::create("alice");
    let (_pam, sshd) = site(&world);
    let key = generate(&world, &alice);
    let bad_checksum = {
        let mut k = key.clone().into_bytes();
        let i = k.len() - 1;
        k[i] = if k[i] == b'0' { b'1' } else { b'0' };
        String::from_utf8(k).unwrap()
    };
    // ssh reads the password from a terminal, whose line is at most 4 KiB
    // (the 1 MiB case goes through pamtester); 4,000 bytes is still 75
    // times what a key can be.
    let huge_key_shaped = format!("apikey|{}", "A".repeat(4000));
    let huge_plain = "x".repeat(4000);
    let not_utf8_like = "apikey|\u{fffd}\u{202e}\u{0}".replace('\0', "");
    for method in METHODS {
        for junk in [
            "",
            bad_checksum.as_str(),
            huge_key_shaped.as_str(),
            huge_plain.as_str(),
            not_utf8_like.as_str(),
            "apikey|",
        ] {
            let out = ssh(&sshd, &alice, method, alice.name(), junk);
            assert_refused(&out, &sshd);
        }
        let out = ssh(&sshd, &alice, method, alice.name(), &key);
        assert_logged_in(&out, &sshd, alice.name());
    }
    // Only the good key reached the daemon: the rest were refused by the
    // module's own checks (shape, length, checksum) or by pam_unix.
    let lines = verify_lines(&world);
    assert_eq!(lines.len(), METHODS.len(), "{lines:#?}");
    assert!(
        lines.iter().all(|l| l.contains("outcome=\"ok\"")),
        "{lines:#?}"
    );
}

//! The Cockpit page end to end: a real cockpit-ws and bridge serving the
//! built page, Debian's Chromium clicking through it (playwright-core,
//! `cockpit/test/browser/drive.mjs`), the real daemon on a private bus,
//! and keys that then log in through the real `pam_apikey.so` in
//! pamtester. Screenshots of each screen land in target/cockpit-screens.
//!
//! The page decides nothing: each test checks what the daemon stored or
//! refused, not only what the page showed.

use apikey_proto::Token;
use apikey_tests::cockpit::{browse, CockpitWs};
use apikey_tests::pam;
use apikey_tests::prelude::*;
use apikey_tests::services::SANDBOX_PROGRAM;

/// A service `key_services` allows by default.
const SERVICE: &str = "sshd-cockpit";

macro_rules! require_cockpit {
    () => {
        require!(
            Need::World,
            Need::Cockpit,
            Need::Program(SANDBOX_PROGRAM),
            Need::Program("pamtester"),
            Need::Program("timeout")
        )
    };
}

/// A PAM stack in which only a key can log in, as `SERVICE`.
fn key_only_stack(world: &World) -> PamServices {
    let module = pam::module(world.daemon(), "");
    let services = PamServices::new();
    services.add(
        SERVICE,
        &format!("auth [success=done default=die] {module}\naccount required {module}\n"),
    );
    services
}

/// True when `key` logs `user` in through pam_apikey.
fn logs_in(world: &World, services: &PamServices, user: &str, key: &str) -> bool {
    logs_in_from(world, services, user, key, "")
}

/// [`logs_in`], the login coming from `rhost` (none if empty).
fn logs_in_from(world: &World, services: &PamServices, user: &str, key: &str, rhost: &str) -> bool {
    let rhost = format!("rhost={rhost}");
    let mut args = vec![SERVICE, user, "authenticate", "acct_mgmt"];
    if rhost != "rhost=" {
        args.splice(0..0, ["-I", rhost.as_str()]);
    }
    let out = world
        .as_root()
        .pam(services)
        .stdin(format!("{key}\n"))
        .run("pamtester", &args);
    match out.code() {
        0 => true,
        1 => false,
        _ => panic!("pamtester failed oddly: {}\n{}", out.stdout, out.stderr),
    }
}

/// A world, alice, and her web console session; users may make keys if
/// `allow`. Dropped in reverse: the console before alice and the world.
fn alices_console(allow: bool) -> (World, TestUser, CockpitWs) {
    let world = World::new();
    if allow {
        world.allow_user_keys();
    }
    let alice = TestUser::create("alice");
    let ws = CockpitWs::start(world.bus(), Some(&alice));
    (world, alice, ws)
}

#[test]
fn a_user_generates_a_key_copies_it_and_logs_in_with_it() {
    require_cockpit!();
    let (world, alice, ws) = alices_console(true);

    let seen = browse(&ws.page_url(), "generate", &["laptop", "sshd*"]);
    let key = seen.str("shown").to_string();
    assert!(Token::parse(key.as_bytes()).is_ok(), "not a key: {key}");
    assert_eq!(
        seen.str("clipboard"),
        key,
        "the clipboard holds exactly the key"
    );
    assert_eq!(seen.str("button"), "Copied!");
    assert_eq!(
        seen.str("netrc"),
        format!("machine 127.0.0.1 login {} password {key}", alice.name())
    );
    assert!(seen.str("warning").contains("will not be shown again"));
    assert_eq!(seen.answer["listed"], true);

    let keys = world.keys_of(alice.name());
    assert_eq!(keys.len(), 1);
    assert_eq!(keys[0].id, seen.str("id"));
    assert_eq!(keys[0].name, "laptop");
    // The site's key_services are offered; the one ticked is the scope.
    assert_eq!(
        seen.answer["services_offered"],
        serde_json::json!(world.config().key_services)
    );
    assert_eq!(keys[0].services, vec!["sshd*".to_string()]);
    assert_eq!(seen.answer["ticked_after"], 0, "the form is cleared");
    // Name, ID, Services, Created (with its time zone), Expires, Last used.
    let row: Vec<String> = serde_json::from_value(seen.answer["row"].clone()).unwrap();
    assert_eq!(row[2], "sshd*", "{row:?}");
    assert!(
        row[3].ends_with(" UTC") && row[3].len() == "2026-12-03 19:20 UTC".len(),
        "times name their zone: {row:?}"
    );

    let services = key_only_stack(&world);
    assert!(logs_in(&world, &services, alice.name(), &key));
    let mut wrong = key.clone().into_bytes();
    let last = wrong.len() - 1;
    wrong[last] = if wrong[last] == b'a' { b'b' } else { b'a' };
    let wrong = String::from_utf8(wrong).unwrap();
    assert!(!logs_in(&world, &services, alice.name(), &wrong));
    assert!(
        !world.log().contains(&key),
        "the daemon logged the key it generated"
    );
    drop(ws);
}

#[test]
fn the_menu_of_the_web_console_has_an_api_keys_entry_that_opens_the_page() {
    require_cockpit!();
    let (_world, alice, ws) = alices_console(false);

    let seen = browse(&ws.shell_url(), "shell", &[]);
    assert!(seen.str("url").ends_with("/apikey"), "{}", seen.answer);
    assert!(seen
        .str("whoami")
        .starts_with(&format!("Signed in as {} (user)", alice.name())));
}

#[test]
fn a_session_key_from_the_web_console_ends_with_its_session() {
    require_cockpit!();
    let (world, alice, ws) = alices_console(true);
    let services = key_only_stack(&world);

    let seen = browse(&ws.page_url(), "session", &["console"]);
    let key = seen.str("shown").to_string();
    assert_eq!(seen.str("kind"), "Session key");
    assert!(logs_in(&world, &services, alice.name(), &key));
    assert!(
        world.keys_of(alice.name()).is_empty(),
        "a session key is not listed among long-lived keys"
    );

    // The web console session ends: its processes, the whole audit
    // session, are gone.
    let log = ws.log_text();
    drop(ws);
    assert!(
        !logs_in(&world, &services, alice.name(), &key),
        "the session key outlived its session; cockpit-ws log:\n{log}"
    );
}

#[test]
fn a_user_revokes_her_own_keys_even_when_the_policy_hides_them() {
    require_cockpit!();
    let (world, alice, ws) = alices_console(true);
    let (first, first_id) = world.new_key(&alice, &["--name", "first"]);
    let (second, _) = world.new_key(&alice, &["--name", "second"]);
    let services = key_only_stack(&world);

    let seen = browse(&ws.page_url(), "revoke_own", &[&first_id]);
    assert!(seen.str("question").contains(&first_id));
    assert_eq!(seen.str("alert"), format!("Revoked {first_id}."));
    assert!(!logs_in(&world, &services, alice.name(), &first));
    assert!(logs_in(&world, &services, alice.name(), &second));

    world
        .block_on(world.proxy_as_root().set_settings("", "", "no", ""))
        .expect("hide users' keys");
    let seen = browse(&ws.page_url(), "revoke_all_own", &[]);
    assert_eq!(seen.str("alert"), "Revoked 1 key.");
    assert!(!logs_in(&world, &services, alice.name(), &second));
    assert!(world.keys_of(alice.name()).is_empty());
}

/// An administrator sees the daemon's activity: logins accepted and
/// refused since it started, keys, the store; as the metrics count them.
#[test]
fn an_administrator_sees_the_key_logins_and_the_store_at_a_glance() {
    require_cockpit!();
    let world = World::new();
    world.allow_user_keys();
    let alice = TestUser::create("alice");
    let (key, _) = world.new_key(&alice, &["--name", "ci", "--expires", "7d"]);
    world.new_key(&alice, &["--name", "other"]);
    let services = key_only_stack(&world);
    assert!(logs_in(&world, &services, alice.name(), &key));
    assert!(logs_in(&world, &services, alice.name(), &key));
    let unknown = apikey_proto::Token::generate().unwrap();
    assert!(!logs_in(&world, &services, alice.name(), unknown.as_str()));
    let admin = CockpitWs::start(world.bus(), None);
    let seen = browse(&admin.page_url(), "activity", &[]).answer;
    assert!(
        seen["Key logins since the daemon started"]
            .as_str()
            .unwrap()
            .starts_with("2 accepted, 1 refused, 0 unavailable"),
        "{seen}"
    );
    assert_eq!(seen["Active API keys"], "2", "{seen}");
    assert_eq!(seen["Expiring within 7d"], "1", "{seen}");
    assert!(
        seen["Key store"].as_str().unwrap().starts_with("answering"),
        "{seen}"
    );
    // The audit lines themselves: Cockpit's journal viewer, apikeyd's only.
    assert_eq!(
        seen["audit_log"], "/system/logs#/?tag=apikeyd&priority=info",
        "{seen}"
    );
}

/// A key that ends within `warn_before` (7 days) is marked in the user's
/// list, and counted in a note above it; a key ending later is not.
#[test]
fn a_user_sees_which_of_her_keys_expire_soon() {
    require_cockpit!();
    let (world, alice, ws) = alices_console(true);
    let (_, soon) = world.new_key(&alice, &["--name", "weekly", "--expires", "7d"]);
    let (_, later) = world.new_key(&alice, &["--name", "monthly", "--expires", "30d"]);
    let seen = browse(&ws.page_url(), "expiring", &[&soon]).answer;
    assert!(
        seen["expires"]
            .as_str()
            .unwrap()
            .ends_with("(expires soon)"),
        "{seen}"
    );
    assert_eq!(seen["marked"], true, "{seen}");
    assert_eq!(seen["soon_cells"], 1, "{seen}");
    assert!(
        seen["note"]
            .as_str()
            .unwrap()
            .starts_with("1 key of yours expires soon."),
        "{seen}"
    );
    let seen = browse(&ws.page_url(), "expiring", &[&later]).answer;
    assert!(
        !seen["expires"].as_str().unwrap().contains("soon"),
        "{seen}"
    );
    assert_eq!(seen["marked"], false, "{seen}");
}

/// Where a key was used from, on demand: each remote host once, newest
/// first, with the service; hidden again with the same button.
#[test]
fn a_user_sees_where_her_key_was_used_from() {
    require_cockpit!();
    let (world, alice, ws) = alices_console(true);
    let (key, id) = world.new_key(&alice, &["--name", "ci"]);
    let services = key_only_stack(&world);
    for rhost in ["192.0.2.20", "2001:db8::20", "192.0.2.20"] {
        assert!(logs_in_from(&world, &services, alice.name(), &key, rhost));
    }
    let seen = browse(&ws.page_url(), "history", &[&id]).answer;
    let rows = seen["rows"].as_array().expect("rows");
    assert_eq!(rows.len(), 2, "{seen}");
    let rhosts: Vec<&str> = rows.iter().map(|r| r[1].as_str().unwrap()).collect();
    // Newest first: 192.0.2.20 was used again after 2001:db8::20.
    assert_eq!(rhosts, ["192.0.2.20", "2001:db8::20"], "{seen}");
    assert!(
        rows.iter()
            .all(|r| r[0].as_str().unwrap().starts_with("sshd")),
        "{seen}"
    );
    assert_eq!(seen["expanded"], "true", "{seen}");
    assert_eq!(seen["collapsed"], "false", "{seen}");
}

#[test]
fn a_user_makes_a_key_usable_only_from_some_networks() {
    require_cockpit!();
    let (world, alice, ws) = alices_console(true);
    let services = key_only_stack(&world);
    let seen = browse(
        &ws.page_url(),
        "generate_from",
        &["ci", "10.1.0.0/16, 192.0.2.7"],
    );
    let (key, id) = (seen.str("shown").to_string(), seen.str("id").to_string());
    assert_eq!(
        seen.str("services"),
        "All allowed, from 10.1.0.0/16, 192.0.2.7/32 only"
    );
    assert_eq!(seen.str("field_after"), "");
    assert!(logs_in_from(
        &world,
        &services,
        alice.name(),
        &key,
        "10.1.200.3"
    ));
    assert!(logs_in_from(
        &world,
        &services,
        alice.name(),
        &key,
        "192.0.2.7"
    ));
    assert!(!logs_in_from(
        &world,
        &services,
        alice.name(),
        &key,
        "192.0.2.8"
    ));
    assert!(!logs_in(&world, &services, alice.name(), &key));
    assert!(world.keys_of(alice.name()).iter().any(|k| k.id == id));
}

#[test]
fn a_user_revokes_somebody_elses_leaked_key_from_the_page() {
    require_cockpit!();
    let (world, _alice, ws) = alices_console(true);
    let bob = TestUser::create("bob");
    let (leaked, leaked_id) = world.new_key(&bob, &["--name", "pasted"]);
    let services = key_only_stack(&world);
    assert!(logs_in(&world, &services, bob.name(), &leaked));

    let seen = browse(&ws.page_url(), "revoke_leaked", &[&leaked]);
    assert_eq!(seen.str("first"), format!("Revoked {leaked_id}."));
    assert_eq!(seen.answer["cleared"], true);
    assert_eq!(seen.str("type"), "password");
    assert_eq!(
        seen.str("again"),
        format!("{leaked_id} was already revoked.")
    );
    assert!(!logs_in(&world, &services, bob.name(), &leaked));
}

#[test]
fn a_user_the_policy_does_not_allow_sees_why_and_the_daemon_refuses_too() {
    require_cockpit!();
    let (world, alice, ws) = alices_console(false);

    let seen = browse(&ws.page_url(), "forbidden", &[]);
    assert_eq!(
        seen.str("message"),
        "Your administrator does not let users create API keys."
    );
    assert_eq!(seen.answer["form_visible"], false);
    assert_eq!(seen.answer["admin_visible"], false);
    assert_eq!(
        seen.str("console_generate"),
        "org.apikey.Keys1.Error.PolicyForbids"
    );
    assert!(world.keys_of(alice.name()).is_empty());
}

#[test]
fn a_user_is_refused_the_administrators_methods_called_from_the_console() {
    require_cockpit!();
    let (world, _alice, ws) = alices_console(true);
    let bob = TestUser::create("bob");
    let (bob_key, bob_id) = world.new_key(&bob, &["--name", "bob's"]);
    let before = world.settings();

    let seen = browse(&ws.page_url(), "console", &[&bob_id]);
    assert_eq!(seen.answer["admin_visible"], false);
    assert_eq!(seen.answer["activity_visible"], false);
    for call in [
        "set_settings",
        "list_all",
        "revoke_other",
        "revoke_site",
        "metrics",
    ] {
        assert_eq!(
            seen.str(call),
            "org.apikey.Keys1.Error.Denied",
            "{call} from a user's console"
        );
    }
    let after = world.settings();
    assert_eq!(before, after, "the settings did not change");
    assert!(logs_in(
        &world,
        &key_only_stack(&world),
        bob.name(),
        &bob_key
    ));
}

#[test]
fn an_administrator_changes_the_settings_and_they_take_effect() {
    require_cockpit!();
    let world = World::new();
    let alice = TestUser::create("alice");
    world
        .as_user(&alice)
        .logged_in()
        .apikey(&["generate"])
        .assert_code(1);
    let admin = CockpitWs::start(world.bus(), None);

    let seen = browse(
        &admin.page_url(),
        "settings",
        &["yes", "30d", "no", "45m", "no", "90d"],
    );
    assert_eq!(seen.str("alert"), "Settings saved.");
    assert_eq!(seen.answer["allow"], true);
    assert_eq!(seen.str("expires"), "30d");
    assert_eq!(seen.answer["see_own"], false);
    assert_eq!(seen.str("timeout"), "45m");
    assert_eq!(seen.answer["require_from"], false);
    assert_eq!(seen.str("revoke_unused"), "90d");
    let (_, extra) = world
        .block_on(world.proxy_as_root().get_settings_with())
        .unwrap();
    let extra = apikey_proto::SettingsExtra::from_dict(&extra);
    assert_eq!(
        (extra.require_from, extra.revoke_unused.as_str()),
        (false, "90d")
    );
    let stored = world.settings();
    assert!(stored.allow_user_keys);
    assert_eq!(stored.expires, "30d");
    assert!(!stored.users_see_own);
    assert_eq!(stored.session_timeout, 45 * 60);
    // Networks required: the page saves it, and the daemon refuses a key
    // without them.
    let seen = browse(
        &admin.page_url(),
        "settings",
        &["yes", "30d", "no", "45m", "yes", "90d"],
    );
    assert_eq!(seen.answer["require_from"], true);
    world
        .as_user(&alice)
        .logged_in()
        .apikey(&["generate"])
        .assert_code(1);
    world
        .block_on(
            world
                .proxy_as_root()
                .set_settings_with([("require_from", "no")].into_iter().collect()),
        )
        .unwrap();

    // In effect: alice may now make keys, for 30 days at most, and her
    // page offers no longer expiry.
    let ws = CockpitWs::start(world.bus(), Some(&alice));
    let mine = browse(&ws.page_url(), "generate", &["ci"]);
    assert_eq!(mine.answer["expiries"], serde_json::json!(["7d", "30d"]));
    assert_eq!(mine.answer["listed"], false, "users do not see their keys");
    assert_eq!(mine.answer["hidden_message"], true);
    let keys = world.keys_of(alice.name());
    assert_eq!(keys.len(), 1);
    assert!(keys[0].expires > 0 && keys[0].expires - keys[0].created <= 30 * 86400);
    world
        .as_user(&alice)
        .logged_in()
        .apikey(&["list"])
        .assert_code(1);
}

#[test]
fn an_administrator_deletes_two_of_three_keys_and_exactly_those_stop_working() {
    require_cockpit!();
    let world = World::new();
    world.allow_user_keys();
    let alice = TestUser::create("alice");
    let bob = TestUser::create("bob");
    let alices: Vec<(String, String)> = ["one", "two", "three"]
        .iter()
        .map(|name| world.new_key(&alice, &["--name", name]))
        .collect();
    let (bob_key, _) = world.new_key(&bob, &["--name", "bob's"]);
    let services = key_only_stack(&world);
    let admin = CockpitWs::start(world.bus(), None);

    let all = browse(&admin.page_url(), "select_all", &[]);
    assert_eq!(all.answer["rows"], 4);
    assert_eq!(all.str("count_text"), "4 selected");
    assert_eq!(all.answer["delete_enabled"], true);
    assert_eq!(all.answer["delete_enabled_after"], false);

    let seen = browse(
        &admin.page_url(),
        "delete",
        &[alice.name(), &alices[0].1, &alices[1].1],
    );
    let mut shown: Vec<String> =
        serde_json::from_value(seen.answer["shown_before"].clone()).expect("ids shown before");
    shown.sort();
    let mut expected: Vec<String> = alices.iter().map(|(_, id)| id.clone()).collect();
    expected.sort();
    assert_eq!(shown, expected, "the filter shows alice's keys only");
    let columns: Vec<String> = serde_json::from_value(seen.answer["columns"].clone()).unwrap();
    for column in ["User", "Services", "Last used"] {
        assert!(columns.iter().any(|c| c == column), "{columns:?}");
    }
    assert_eq!(
        seen.str("question"),
        format!("Delete 2 keys of {}?", alice.name())
    );
    assert_eq!(seen.str("alert"), "Deleted 2 keys.");

    assert!(!logs_in(&world, &services, alice.name(), &alices[0].0));
    assert!(!logs_in(&world, &services, alice.name(), &alices[1].0));
    assert!(logs_in(&world, &services, alice.name(), &alices[2].0));
    assert!(logs_in(&world, &services, bob.name(), &bob_key));
    let left: Vec<String> = world
        .keys_of(alice.name())
        .into_iter()
        .map(|k| k.id)
        .collect();
    assert_eq!(left, vec![alices[2].1.clone()]);
}

#[test]
fn the_page_says_so_when_the_daemon_is_down() {
    require_cockpit!();
    let mut world = World::new();
    world.daemon_mut().stop();
    let alice = TestUser::create("alice");
    let ws = CockpitWs::start(world.bus(), Some(&alice));

    let seen = browse(&ws.page_url(), "down", &[]);
    assert!(
        seen.str("alert").contains("(apikeyd) is not running"),
        "{}",
        seen.answer
    );
}

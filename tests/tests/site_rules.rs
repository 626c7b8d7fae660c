//! The site rules of `apikey settings` beyond LabKey's, end to end with
//! the real daemon and CLI: keys unused for the period are revoked (at a
//! login, and by the look at start and hourly; time moved by ageing keys
//! in the store), and a site may require every new key to name its
//! networks.

use apikey_tests::prelude::*;

const DAY: i64 = 86_400;

#[test]
fn keys_unused_for_the_period_are_revoked_at_login_and_by_the_hourly_look() {
    require!(Need::World);
    let mut world = World::new();
    let alice = TestUser::create("alice");
    world.allow_user_keys();
    let (stale, stale_id) = world.new_key(&alice, &["--name", "stale"]);
    let (_, idle_id) = world.new_key(&alice, &["--name", "idle"]);
    let (fresh, _) = world.new_key(&alice, &["--name", "fresh"]);
    let out = world
        .as_root()
        .apikey(&["settings", "--revoke-unused", "30d", "--json"]);
    let shown: serde_json::Value = serde_json::from_str(&out.ok().stdout).unwrap();
    assert_eq!(shown["revoke_unused"], "30d");
    assert_eq!(shown["require_from"], false);

    // Each restart (ageing restarts the daemon) runs the look at start.
    world.age_key(&stale_id, 31 * DAY);
    assert!(
        !world.keys_of(alice.name()).iter().any(|k| k.id == stale_id),
        "revoked by the look at start, before any login with it"
    );
    let verify = |token: &str| {
        world
            .as_root()
            .stdin(format!("{token}\n"))
            .apikey(&["verify", "--user", alice.name(), "--service", "sshd"])
            .code()
    };
    assert_eq!(verify(&fresh), 0);
    assert_eq!(verify(&stale), 1, "revoked by the look at start");
    let line = world.log().expect(
        "the revocation as unused",
        |l| l.contains("event=revoke") && l.contains(&stale_id) && l.contains("reason=\"unused\""),
        Duration::from_secs(5),
    );
    assert!(line.contains("unused_days=30"), "{line}");
    assert!(world.keys_of(alice.name()).iter().any(|k| k.id == idle_id));

    // Never is never.
    world
        .as_root()
        .apikey(&["settings", "--revoke-unused", "never"])
        .ok();
    world.age_key(&idle_id, 400 * DAY);
    assert!(world.keys_of(alice.name()).iter().any(|k| k.id == idle_id));
    let out = world.as_root().apikey(&["settings"]);
    assert!(
        out.ok()
            .stdout
            .contains("Revoke keys unused for:         never"),
        "{}",
        out.stdout
    );
}

#[test]
fn a_site_may_require_every_new_key_to_name_its_networks() {
    require!(Need::World);
    let world = World::new();
    let alice = TestUser::create("alice");
    world.allow_user_keys();
    world
        .as_user(&alice)
        .apikey(&["settings", "--require-from", "yes"])
        .assert_code(77);
    world
        .as_root()
        .apikey(&["settings", "--require-from", "yes"])
        .ok();
    let out = world.as_user(&alice).logged_in().apikey(&["generate"]);
    out.assert_code(1);
    assert!(out.stderr.contains("--from"), "{}", out.stderr);
    let (_, id) = world.new_key(&alice, &["--from", "10.1.0.0/16"]);
    assert_eq!(world.keys_of(alice.name()).len(), 1);
    assert_eq!(world.keys_of(alice.name())[0].id, id);
    world.log().expect(
        "the settings line names both rules",
        |l| {
            l.contains("event=settings")
                && l.contains("require_from=\"yes\"")
                && l.contains("revoke_unused=\"never\"")
        },
        Duration::from_secs(5),
    );
}

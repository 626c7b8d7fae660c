//! Fleet mode end to end: two real daemons on two private buses, as two
//! hosts of one fleet sharing keys through a real PostgreSQL cluster, and
//! the real module in pamtester logging in against each.

mod pam_common;

use std::time::Instant;

use apikey_tests::fleet::{
    etc_with_uid, etc_wrapper, fleet_cluster, migrator_conninfo, run_as_migrator, Fleet, HOST_B,
};
use apikey_tests::prelude::*;
use pam_common::login;
use pam_common::pamtester::*;

/// The `reason` of host `world`'s last refused verify line.
fn last_refusal(world: &World) -> String {
    pam_common::verify_lines(world)
        .into_iter()
        .rev()
        .find(|l| l.get("outcome").map(String::as_str) == Some("refused"))
        .and_then(|l| l.get("reason").cloned())
        .unwrap_or_default()
}

#[test]
fn a_key_made_on_one_host_logs_in_on_another_until_either_host_revokes_it() {
    require!(
        Need::World,
        Need::Postgres,
        Need::Program("pamtester"),
        Need::Program("bwrap")
    );
    let mut fleet = Fleet::start("1s", |_| {});
    let alice = TestUser::create("alice");
    let (key, id) = fleet.a.new_key(&alice, &[]);
    login(&fleet.a, &alice, &key).ok();
    // Uses are kept to the second: host-b's comes later.
    std::thread::sleep(Duration::from_millis(1100));
    login(&fleet.b, &alice, &key).ok();

    // What host-b wrote of its use reaches the database at its next flush
    // (a clean stop flushes); host-a lists it with the host it was on.
    fleet.b.daemon_mut().restart();
    let listed = fleet.a.as_root().apikey(&["list", "--all", "--json"]);
    listed.ok();
    let keys = listed.json();
    let k = keys
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["id"] == id.as_str())
        .unwrap_or_else(|| panic!("{id} not listed:\n{keys}"));
    assert_eq!(k["made_on"], "host-a", "{k}");
    assert_eq!(k["last_host"], "host-b", "{k}");
    assert_eq!(k["hosts"], serde_json::json!([]), "{k}");

    // Revoked on host-b, refused on host-a at the very next attempt.
    fleet.b.as_root().apikey(&["revoke", &id]).ok();
    login(&fleet.a, &alice, &key).refused();
    assert_eq!(last_refusal(&fleet.a), "revoked");
    assert_eq!(
        fleet.psql(&format!(
            "SELECT revoked_on FROM apikey.keys WHERE id = '{id}'"
        )),
        "host-b"
    );
}

#[test]
fn a_key_limited_to_hosts_works_on_those_alone() {
    require!(
        Need::World,
        Need::Postgres,
        Need::Program("pamtester"),
        Need::Program("bwrap")
    );
    let fleet = Fleet::start("1s", |_| {});
    let alice = TestUser::create("alice");
    let (key, id) = fleet.a.new_key(&alice, &["--hosts", "host-a,web-*"]);
    login(&fleet.a, &alice, &key).ok();
    login(&fleet.b, &alice, &key).refused();
    assert_eq!(last_refusal(&fleet.b), "host-not-allowed");
    let listed = fleet.b.as_root().apikey(&["list", "--all"]);
    listed.ok();
    let row = listed
        .stdout
        .lines()
        .find(|l| l.starts_with(&id))
        .unwrap_or_else(|| panic!("{id} not listed:\n{}", listed.stdout));
    assert!(row.contains("host-a,web-*"), "{row}");
    assert!(listed.stdout.lines().next().unwrap().contains("MADE ON"));
    // Hosts need a fleet: a single host's daemon refuses them.
    let single = World::new();
    single
        .as_root()
        .apikey(&["settings", "--allow-user-keys", "yes"])
        .ok();
    let out = single
        .as_user(&alice)
        .logged_in()
        .apikey(&["generate", "--hosts", "web-1"]);
    assert_ne!(out.code(), 0);
    assert!(out.stderr.contains("needs fleet mode"), "{}", out.stderr);
}

#[test]
fn an_ordinary_host_makes_no_keys_and_says_where_they_are_made() {
    require!(
        Need::World,
        Need::Postgres,
        Need::Program("pamtester"),
        Need::Program("bwrap")
    );
    let fleet = Fleet::start("1s", |_| {});
    let alice = TestUser::create("alice");
    let out = fleet.b.as_user(&alice).logged_in().apikey(&["generate"]);
    out.assert_code(77);
    assert!(
        out.stderr.contains("keys are made on host-a"),
        "{}",
        out.stderr
    );
    let out = fleet.b.as_root().apikey(&["settings", "--expires", "30d"]);
    out.assert_code(77);
    // Its session keys are its own, in its own store.
    let session = fleet.b.as_user(&alice).logged_in().apikey(&["session"]);
    session.ok();
    assert_eq!(fleet.psql("SELECT count(*) FROM apikey.keys"), "0");
}

/// Keys belong to user names: alice's key works on a host where her
/// account has another uid.
#[test]
fn an_owner_is_a_user_name_whatever_its_uid_on_each_host() {
    require!(
        Need::World,
        Need::Postgres,
        Need::Program("pamtester"),
        Need::Program("bwrap"),
        Need::Program("unshare")
    );
    let alice = TestUser::create("alice");
    let scratch = tempfile::tempdir().unwrap();
    let other_uid = alice.uid() + 40_000;
    let etc = etc_with_uid(scratch.path(), alice.name(), other_uid);
    let fleet = Fleet::start("1s", |c| c.wrapper = etc_wrapper(&etc));
    let (key, id) = fleet.a.new_key(&alice, &[]);
    let b = fleet.b.proxy_as_root();
    let (owner, key_id) = fleet
        .b
        .block_on(b.verify(&key, alice.name(), SSHD, "10.0.0.9"))
        .unwrap();
    assert_eq!(
        (owner.as_str(), key_id.as_str()),
        (alice.name(), id.as_str())
    );
    let listed = fleet.b.keys_of(alice.name());
    let seen_by_b =
        std::fs::read_to_string(format!("/proc/{}/root/etc/passwd", fleet.b.daemon().pid()))
            .unwrap_or_default()
            .lines()
            .filter(|l| l.starts_with(&format!("{}:", alice.name())))
            .collect::<Vec<_>>()
            .join("\n");
    assert!(
        listed.iter().any(|k| k.id == id && k.uid == other_uid),
        "{listed:?}\nhost-b's passwd: {seen_by_b}\nhost-b's log:\n{}",
        fleet.b.daemon().stderr_text()
    );
    let on_a = fleet.a.keys_of(alice.name());
    assert!(on_a.iter().any(|k| k.id == id && k.uid == alice.uid()));
}

#[test]
fn a_database_that_is_down_or_frozen_costs_key_logins_at_most_the_timeout() {
    require!(
        Need::World,
        Need::Postgres,
        Need::Program("pamtester"),
        Need::Program("bwrap")
    );
    let mut fleet = Fleet::start("500ms", |_| {});
    let alice = TestUser::create("alice");
    let password = "akt-Pw-fleet-4kq";
    alice.set_password(password);
    let (key, _) = fleet.a.new_key(&alice, &[]);
    login(&fleet.b, &alice, &key).ok();
    let b = fleet.b.proxy_as_root();

    // Stopped: refused connections answer at once.
    fleet.cluster.stop().unwrap();
    let started = Instant::now();
    let e = fleet
        .b
        .block_on(b.verify(&key, alice.name(), SSHD, ""))
        .unwrap_err();
    let took = started.elapsed();
    assert!(matches!(e, KeysError::Failed(_)), "{e:?}");
    assert!(took < Duration::from_millis(500), "{took:?}");
    login(&fleet.b, &alice, &key).fails_with(AUTHINFO_UNAVAIL);
    login(&fleet.b, &alice, password).ok();

    // Back: keys work again, no restart.
    fleet.cluster.restart().unwrap();
    login(&fleet.b, &alice, &key).ok();

    // Frozen: the server takes the query and never answers; the daemon's
    // own deadline answers.
    let frozen = fleet.backends_of(HOST_B.1);
    assert!(!frozen.is_empty());
    for pid in &frozen {
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(*pid),
            nix::sys::signal::Signal::SIGSTOP,
        )
        .unwrap();
    }
    // The daemon keeps a few connections for lookups: one call after
    // another meets each frozen one (unavailable, within the timeout)
    // while new ones, served by new server processes, work.
    let mut unavailable = 0;
    for _ in 0..6 {
        let started = Instant::now();
        let answer = fleet.b.block_on(b.verify(&key, alice.name(), SSHD, ""));
        let took = started.elapsed();
        assert!(
            took < Duration::from_millis(600),
            "a frozen database held a verify {took:?} (timeout 500ms): {answer:?}"
        );
        match answer {
            Err(KeysError::Failed(_)) => unavailable += 1,
            Ok(_) => {}
            other => panic!("{other:?}"),
        }
    }
    for pid in &frozen {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(*pid),
            nix::sys::signal::Signal::SIGCONT,
        );
    }
    assert!(unavailable > 0, "no call met a frozen connection");
    // The frozen connection was left behind; the next call has a new one.
    login(&fleet.b, &alice, &key).ok();
    let stderr = fleet.b.daemon().stderr_text();
    assert!(!stderr.contains("panicked"), "{stderr}");
}

/// A single host's keys move into the fleet with `apikeyd
/// --migrate-to-fleet`, and log in on the fleet's hosts afterwards.
#[test]
fn a_single_hosts_keys_move_into_the_fleet() {
    require!(
        Need::World,
        Need::Postgres,
        Need::Program("pamtester"),
        Need::Program("bwrap")
    );
    let alice = TestUser::create("alice");
    let mut single = World::new();
    single
        .as_root()
        .apikey(&["settings", "--allow-user-keys", "yes"])
        .ok();
    let (key, id) = single.new_key(&alice, &["--services", "sshd*"]);
    let (gone, gone_id) = single.new_key(&alice, &[]);
    single.as_root().apikey(&["revoke", &gone_id]).ok();
    single.daemon_mut().stop();
    let db = single.daemon().db_path().to_string_lossy().into_owned();

    let cluster = fleet_cluster();
    let migrate = |cluster: &apikey_tests::fleet::Cluster| {
        run_as_migrator(
            &migrator_conninfo(cluster),
            "old-host",
            &["--database", &db, "--migrate-to-fleet"],
        )
        .unwrap()
    };
    let said = migrate(&cluster);
    assert!(
        said.contains("copied 2 keys of host old-host into the fleet (1 of them revoked)"),
        "{said}"
    );
    assert!(said.contains("this host's is the fleet's now"), "{said}");
    let said = migrate(&cluster);
    assert!(
        said.contains("copied 0 keys") && said.contains("2 were there already"),
        "{said}"
    );

    let fleet = Fleet::start_on(cluster, "1s", |_| {});
    login(&fleet.b, &alice, &key).ok();
    login(&fleet.a, &alice, &gone).refused();
    let listed = fleet
        .a
        .as_root()
        .apikey(&["list", "--all", "--revoked", "--json"]);
    listed.ok();
    let keys = listed.json();
    let moved = keys
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["id"] == id.as_str())
        .unwrap_or_else(|| panic!("{id} not listed: {keys}"));
    assert_eq!(moved["made_on"], "old-host");
    assert_eq!(moved["services"], serde_json::json!(["sshd*"]));
}

/// offline_grace: through an outage host-b still accepts a key it
/// verified a moment ago, but not one revoked on host-a just before.
#[test]
fn with_offline_grace_a_recent_key_outlives_an_outage_and_a_revoked_one_does_not() {
    require!(
        Need::World,
        Need::Postgres,
        Need::Program("pamtester"),
        Need::Program("bwrap")
    );
    let mut fleet = Fleet::start("500ms", |c| {
        c.extra_toml.push_str("offline_grace = \"1m\"\n")
    });
    let alice = TestUser::create("alice");
    let (kept, _) = fleet.a.new_key(&alice, &[]);
    let (gone, gone_id) = fleet.a.new_key(&alice, &[]);
    login(&fleet.b, &alice, &kept).ok();
    login(&fleet.b, &alice, &gone).ok();
    fleet.a.as_root().apikey(&["revoke", &gone_id]).ok();
    // The revocation reaches host-b by notification within milliseconds.
    std::thread::sleep(Duration::from_millis(500));
    fleet.cluster.stop().unwrap();
    login(&fleet.b, &alice, &kept).ok();
    login(&fleet.b, &alice, &gone).fails_with(AUTHINFO_UNAVAIL);
    // host-a has no grace: unavailable.
    login(&fleet.a, &alice, &kept).fails_with(AUTHINFO_UNAVAIL);
    fleet.cluster.restart().unwrap();
    login(&fleet.a, &alice, &kept).ok();
}

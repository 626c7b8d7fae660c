//! A rolling upgrade of a fleet: two releases side by side on one
//! database. The earlier release is this build acting as one that knew
//! the fleet schema up to version 1 only (APIKEYD_TEST_SCHEMA_KNOWN, read
//! by debug builds alone); the later one knows versions 2 to 4, which keep
//! the earlier release working.

mod pam_common;

use apikey_tests::fleet::{
    fleet_cluster_at, migrator_conninfo, release_knowing, run_as_migrator, Fleet, SUPERUSER,
};
use apikey_tests::prelude::*;
use pam_common::pamtester::*;
use pam_common::{login, login_from};

#[test]
fn two_releases_share_one_database_through_a_rolling_upgrade() {
    require!(
        Need::World,
        Need::Postgres,
        Need::Program("pamtester"),
        Need::Program("bwrap")
    );
    // Before: schema 1, both hosts on the earlier release.
    let cluster = fleet_cluster_at(Some(1));
    let schema = |c: &apikey_tests::fleet::Cluster| {
        c.psql_as(
            SUPERUSER,
            "apikey",
            "SELECT version || '/' || compatible_from FROM apikey.schema_version",
        )
        .unwrap()
    };
    assert_eq!(schema(&cluster), "1/1");
    let mut fleet = Fleet::start_both_on(cluster, "1s", |c| c.env.push(release_knowing(1)));
    let alice = TestUser::create("alice");
    let (before, _) = fleet.a.new_key(&alice, &[]);
    login(&fleet.b, &alice, &before).ok();

    // The schema first; the earlier release goes on with it.
    let said = run_as_migrator(
        &migrator_conninfo(&fleet.cluster),
        "migrator",
        &["--upgrade-fleet-schema"],
    )
    .unwrap();
    assert_eq!(said, "the fleet schema is at version 4");
    assert_eq!(schema(&fleet.cluster), "4/1");
    login(&fleet.b, &alice, &before).ok();

    // Then host-a moves to the later release; host-b stays behind.
    fleet.a.reconfigure(|c| c.env.clear());
    let (after, after_id) = fleet.a.new_key(&alice, &[]);
    login(&fleet.b, &alice, &after).ok();
    login(&fleet.a, &alice, &before).ok();
    // Revoked on the earlier release, refused on the later, and back.
    fleet.b.as_root().apikey(&["revoke", &after_id]).ok();
    login(&fleet.a, &alice, &after).refused();
    let (third, third_id) = fleet.a.new_key(&alice, &[]);
    fleet.a.as_root().apikey(&["revoke", &third_id]).ok();
    login(&fleet.b, &alice, &third).refused();
    // A key limited to networks, which the earlier release would not
    // check, is not even seen there; the later release checks it.
    let (limited, _) = fleet.a.new_key(&alice, &["--from", "10.1.0.0/16"]);
    login_from(&fleet.a, &alice, &limited, "10.1.2.3").ok();
    login_from(&fleet.a, &alice, &limited, "192.0.2.1").refused();
    login_from(&fleet.b, &alice, &limited, "10.1.2.3").refused();
    // Use history (schema 4) is written by the later release alone, at
    // its next write of last uses (here: when it stops).
    login(&fleet.b, &alice, &before).ok();
    fleet.a.daemon_mut().restart();
    fleet.b.daemon_mut().restart();
    let writers = fleet
        .cluster
        .psql_as(
            SUPERUSER,
            "apikey",
            "SELECT string_agg(DISTINCT host, ',') FROM apikey.key_use_pairs",
        )
        .unwrap();
    assert_eq!(writers, "host-a");

    // A release that knows less than the schema needs is refused by it:
    // what the later schema would say to an older daemon after a migration
    // that does not keep it working.
    fleet
        .cluster
        .psql_as(
            SUPERUSER,
            "apikey",
            "UPDATE apikey.schema_version SET compatible_from = 2",
        )
        .unwrap();
    fleet.b.daemon_mut().restart();
    login(&fleet.b, &alice, &before).fails_with(AUTHINFO_UNAVAIL);
    let log = fleet.b.daemon().stderr_text();
    assert!(
        log.contains("the fleet schema is at version 4, which needs an apikeyd that knows version 2 or later; this one knows up to 1: upgrade it"),
        "{log}"
    );
}

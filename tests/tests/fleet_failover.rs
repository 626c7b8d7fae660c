//! Fleet mode through a failover: a primary and a synchronous streaming
//! standby, both named in the daemons' connection string; the primary
//! dies, the standby is promoted, and the daemons go on with it, with no
//! acknowledged key or revocation lost.

mod pam_common;

use std::time::Instant;

use apikey_tests::fleet::Fleet;
use apikey_tests::prelude::*;
use pam_common::login;
use pam_common::pamtester::*;

#[test]
fn a_failover_loses_no_acknowledged_key_or_revocation_and_the_hosts_follow_it() {
    require!(
        Need::World,
        Need::Postgres,
        Need::Program("pamtester"),
        Need::Program("bwrap")
    );
    let mut fleet = Fleet::start_replicated("1s");
    let alice = TestUser::create("alice");
    // Acknowledged: every key generate printed, every revocation revoke
    // reported; the primary dies right after the last one.
    let keys: Vec<(String, String)> = (0..12).map(|_| fleet.a.new_key(&alice, &[])).collect();
    let revoked: Vec<&str> = keys.iter().step_by(2).map(|(_, id)| id.as_str()).collect();
    for id in &revoked {
        fleet.b.as_root().apikey(&["revoke", id]).ok();
    }
    fleet.cluster.stop().unwrap();
    let standby = fleet.standby.as_ref().unwrap();
    standby.promote().unwrap();

    // Both hosts follow within 5 s, without a restart.
    let started = Instant::now();
    let kept = &keys[1].0;
    loop {
        let answer = fleet
            .b
            .block_on(fleet.b.proxy_as_root().verify(kept, alice.name(), SSHD, ""));
        if answer.is_ok() {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "host-b did not follow the failover: {answer:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    login(&fleet.a, &alice, kept).ok();
    login(&fleet.a, &alice, &keys[0].0).refused();

    // Counted on the new primary: every key, every revocation.
    let count = |sql: &str| {
        standby
            .psql_as(apikey_tests::fleet::SUPERUSER, "apikey", sql)
            .unwrap()
    };
    let ids = keys
        .iter()
        .map(|(_, id)| format!("'{id}'"))
        .collect::<Vec<_>>();
    let ids = ids.join(",");
    assert_eq!(
        count(&format!(
            "SELECT count(*) FROM apikey.keys WHERE id IN ({ids})"
        )),
        "12"
    );
    assert_eq!(
        count(&format!(
            "SELECT count(*) FROM apikey.keys WHERE id IN ({ids}) AND revoked IS NOT NULL"
        )),
        revoked.len().to_string()
    );
    // And the new primary takes new keys and revocations.
    let (new_key, new_id) = fleet.a.new_key(&alice, &[]);
    login(&fleet.b, &alice, &new_key).ok();
    fleet.b.as_root().apikey(&["revoke", &new_id]).ok();
    login(&fleet.a, &alice, &new_key).refused();
}

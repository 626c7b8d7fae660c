//! A key's use history end to end: logins through the real module in
//! pamtester from several remote hosts, then `apikey show` by the key's
//! owner (text and JSON) before and after the daemon wrote them to its
//! store, and what another user and an administrator are told.

mod pam_common;

use apikey_tests::prelude::*;
use pam_common::{login_from, Site};

type Pair = (String, String, String, String);

/// (service, rhost, first, last) of each pair `show --json` gives `who`.
fn pairs(who: As, id: &str) -> Vec<Pair> {
    let out = who.apikey(&["show", id, "--json"]);
    let v: serde_json::Value = serde_json::from_str(&out.ok().stdout).expect("show --json");
    assert_eq!(v["id"], id, "{v}");
    v["uses"]
        .as_array()
        .expect("uses")
        .iter()
        .map(|u| {
            let text = |k: &str| u[k].as_str().unwrap_or("-").to_string();
            (text("service"), text("rhost"), text("first"), text("last"))
        })
        .collect()
}

#[test]
fn show_lists_the_remote_hosts_a_key_was_used_from() {
    require!(
        Need::World,
        Need::Program("pamtester"),
        Need::Program("bwrap")
    );
    let Site {
        mut world,
        alice,
        bob,
        alice_key,
        alice_key_id,
        ..
    } = Site::new();
    let (alice, id, key) = (&alice, alice_key_id.as_str(), alice_key.as_str());
    let out = world.as_user(alice).apikey(&["show", id]);
    assert!(
        out.ok().stdout.ends_with("Used from:  nowhere yet\n"),
        "{}",
        out.stdout
    );
    for rhost in ["192.0.2.10", "192.0.2.11", "2001:db8::7", "192.0.2.10"] {
        login_from(&world, alice, key, rhost).ok();
    }
    // A refused attempt is no use of the key.
    login_from(&world, alice, "apikey|not-a-key", "192.0.2.99").refused();
    let before = pairs(world.as_user(alice), id);
    let mut rhosts: Vec<&str> = before.iter().map(|p| p.1.as_str()).collect();
    rhosts.sort_unstable();
    assert_eq!(
        rhosts,
        ["192.0.2.10", "192.0.2.11", "2001:db8::7"],
        "{before:?}"
    );
    // Newest last use first (RFC 3339 in UTC sorts as text), each pair's
    // first use no later than its last.
    assert!(before.windows(2).all(|w| w[0].3 >= w[1].3), "{before:?}");
    assert!(before.iter().all(|p| p.2 <= p.3), "{before:?}");
    assert!(before.iter().all(|p| p.0.starts_with("sshd")), "{before:?}");
    let sorted = |mut p: Vec<Pair>| {
        p.sort();
        p
    };

    // Written at stop, read back from the store by the next daemon.
    world.daemon_mut().restart();
    assert_eq!(
        sorted(pairs(world.as_user(alice), id)),
        sorted(before.clone())
    );
    let text = world.as_user(alice).apikey(&["show", id]);
    let text = &text.ok().stdout;
    assert!(
        text.contains("Used from (newest first):\n  SERVICE ") && text.contains(" 2001:db8::7 "),
        "{text}"
    );

    // bob is told there is no such key; root sees it.
    let out = world.as_user(&bob).apikey(&["show", id]);
    assert_eq!(out.code(), 1, "{}", out.stderr);
    assert_eq!(out.stderr, format!("apikey: no key with id {id}\n"));
    assert_eq!(sorted(pairs(world.as_root(), id)), sorted(before));
}

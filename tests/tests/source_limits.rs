//! Keys limited to networks (`apikey generate --from`), end to end: the
//! real module in pamtester with the remote host a network service would
//! set, a key from inside its network accepted and from anywhere else
//! refused (a host name and a local login included), a key without
//! limits accepted from anywhere, and `apikey list` showing the limits.

mod pam_common;

use apikey_tests::prelude::*;
use pam_common::pamtester::{Pamtester, SSHD};
use pam_common::{key_or_password_stack, wait_for_verify, Site};

#[test]
fn a_key_limited_to_a_network_logs_in_from_there_only() {
    require!(
        Need::World,
        Need::Program("pamtester"),
        Need::Program("bwrap")
    );
    let site = Site::new();
    let (limited, limited_id) = site
        .world
        .new_key(&site.alice, &["--from", "10.1.0.0/16,2001:db8::/32"]);
    let services = PamServices::new();
    services.add(SSHD, &key_or_password_stack(&site.module("")));
    let from = |rhost: &str, key: &str| {
        Pamtester::new(&services, site.world.dir())
            .rhost(rhost)
            .login(SSHD, site.alice.name(), key)
    };
    from("10.1.2.3", &limited).ok();
    from("2001:db8::10", &limited).ok();
    from("127.0.0.1", &limited).refused();
    from("client.example.org", &limited).refused();
    Pamtester::new(&services, site.world.dir())
        .login(SSHD, site.alice.name(), &limited)
        .refused();
    let lines = wait_for_verify(&site.world, &[("key", limited_id.as_str()), ("rhost", "")]);
    let refused_from: Vec<&str> = lines
        .iter()
        .filter(|f| f.get("reason").map(String::as_str) == Some("source-not-allowed"))
        .map(|f| f["rhost"].as_str())
        .collect();
    assert_eq!(refused_from, ["127.0.0.1", "client.example.org", ""]);
    // A key without limits works from anywhere.
    from("127.0.0.1", &site.alice_key).ok();
    from("client.example.org", &site.alice_key).ok();

    let out = site.world.as_user(&site.alice).apikey(&["list", "--json"]);
    let keys: serde_json::Value = serde_json::from_str(&out.ok().stdout).unwrap();
    let of = |id: &str| {
        keys.as_array()
            .unwrap()
            .iter()
            .find(|k| k["id"] == id)
            .cloned()
    };
    assert_eq!(
        of(&limited_id).unwrap()["from"],
        serde_json::json!(["10.1.0.0/16", "2001:db8::/32"])
    );
    assert!(of(&site.alice_key_id).unwrap().get("from").is_none());
    let out = site.world.as_user(&site.alice).apikey(&["list"]);
    let table = &out.ok().stdout;
    assert!(table.lines().next().unwrap().contains(" FROM "), "{table}");
    assert!(
        table.contains("10.1.0.0/16,2001:db8::/32") && table.contains("anywhere"),
        "{table}"
    );
}

#[test]
fn a_network_that_cannot_be_read_is_a_usage_error_and_makes_no_key() {
    require!(Need::World);
    let world = World::new();
    let alice = TestUser::create("alice");
    world.allow_user_keys();
    for bad in ["10.1.2.3/16", "10.0.0.0/8,,10.1.0.0/16", "intranet"] {
        let out = world
            .as_user(&alice)
            .logged_in()
            .apikey(&["generate", "--from", bad]);
        out.assert_code(2);
        assert!(out.stdout.is_empty());
    }
    assert!(world.keys_of(alice.name()).is_empty());
}

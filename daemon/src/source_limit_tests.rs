//! Keys limited to networks (`--from`): accepted from an address inside
//! one of them, refused from anywhere else (a host name and a local login
//! included), at Verify and again at the account step.

use crate::service_tests::{world, World};
use apikey_proto::{GenerateOptions, KeysError};

fn limited_key(w: &World, from: &[&str]) -> Result<(String, String), KeysError> {
    let options = GenerateOptions {
        from: from.iter().map(|s| s.to_string()).collect(),
        ..GenerateOptions::default()
    };
    let (token, info, extra) = w.svc.generate_with(&w.alice(), "", "", &[], "", &options)?;
    assert_eq!(extra.from, options.from, "given in canonical form");
    Ok((token.as_str().to_string(), info.id))
}

fn verify_from(w: &World, token: &str, rhost: &str) -> bool {
    w.svc
        .verify(&w.root(), token.as_bytes(), "alice", "sshd", rhost)
        .result
        .is_ok()
}

#[test]
fn a_limited_key_logs_in_from_inside_its_networks_only() {
    let w = world();
    w.allow_users();
    let (token, id) = limited_key(&w, &["10.1.0.0/16", "2001:db8::/32"]).unwrap();
    for inside in ["10.1.0.1", "10.1.255.254", "2001:db8::7", "::ffff:10.1.2.3"] {
        assert!(verify_from(&w, &token, inside), "{inside}");
    }
    for outside in [
        "127.0.0.1",
        "10.2.0.1",
        "",
        "client.example.org",
        "2001:db9::1",
    ] {
        assert!(!verify_from(&w, &token, outside), "{outside}");
    }
    // The account step checks again: a key that passed elsewhere is
    // refused for a login from outside.
    let check = |rhost: &str| w.svc.check_key(&w.root(), &id, "alice", "sshd", rhost);
    assert!(check("10.1.0.1").is_ok());
    assert!(matches!(check("192.0.2.1"), Err(KeysError::Refused(_))));
    // A key without limits is used from anywhere.
    let (open, _, _) = w
        .svc
        .generate_with(&w.alice(), "", "", &[], "", &GenerateOptions::default())
        .unwrap();
    assert!(verify_from(&w, open.as_str(), "127.0.0.1"));
    assert!(verify_from(&w, open.as_str(), ""));
}

#[test]
fn networks_the_daemon_cannot_read_are_refused_before_a_key_is_made() {
    let w = world();
    w.allow_users();
    for bad in [
        &["10.1.2.3/16"][..],
        &["example.org"],
        &[""],
        &["10.0.0.0/33"],
    ] {
        let e = limited_key(&w, bad).unwrap_err();
        assert!(matches!(e, KeysError::InvalidArgument(_)), "{bad:?}: {e:?}");
    }
    let many: Vec<String> = (0..33).map(|i| format!("10.0.{i}.0/24")).collect();
    let many: Vec<&str> = many.iter().map(String::as_str).collect();
    assert!(limited_key(&w, &many).is_err());
    assert!(w.svc.list(&w.alice(), "", false, false).unwrap().is_empty());
    // Written otherwise, a network is stored in one form.
    let options = GenerateOptions {
        from: vec![
            "192.0.2.7".into(),
            "10.1.0.0/016".into(),
            "192.0.2.7/32".into(),
        ],
        ..GenerateOptions::default()
    };
    let (_, _, extra) = w
        .svc
        .generate_with(&w.alice(), "", "", &[], "", &options)
        .unwrap();
    assert_eq!(extra.from, ["192.0.2.7/32", "10.1.0.0/16"]);
}

#[test]
fn a_site_that_requires_networks_refuses_new_keys_without_them() {
    let w = world();
    w.allow_users();
    let (_, old) = w.svc.generate(&w.alice(), "old", "", &[], "").unwrap();
    let (_, limited_id) = limited_key(&w, &["10.1.0.0/16"]).unwrap();
    let e = w
        .svc
        .set_settings_with(&w.alice(), &[("require_from", "yes")])
        .unwrap_err();
    assert!(matches!(e, KeysError::Denied(_)), "{e:?}");
    let (_, extra) = w
        .svc
        .set_settings_with(&w.root(), &[("require_from", "yes")])
        .unwrap();
    assert!(extra.require_from);
    let e = w.svc.generate(&w.alice(), "", "", &[], "").unwrap_err();
    assert!(
        matches!(&e, KeysError::PolicyForbids(m) if m.contains("--from")),
        "{e:?}"
    );
    limited_key(&w, &["192.0.2.0/24"]).unwrap();
    // A key rotated is a new key: one without networks cannot be; one
    // with them keeps them.
    let e = w.svc.rotate(&w.alice(), &old.id).unwrap_err();
    assert!(matches!(e, KeysError::PolicyForbids(_)), "{e:?}");
    let (token, _) = w.svc.rotate(&w.alice(), &limited_id).unwrap();
    assert!(verify_from(&w, token.as_str(), "10.1.0.9"));
    assert!(!verify_from(&w, token.as_str(), "127.0.0.1"));
}

//! Session keys against the scripted host: binding, every way they end,
//! and S6, with an injected clock instead of sleeping.

use crate::host::Host;
use crate::service_tests::{world, World, ALICE, BOB};
use crate::store::Store;
use apikey_proto::KeysError;

const LOGIN: Option<u32> = Some(42);

#[test]
fn no_audit_session_no_session_key() {
    let w = world();
    w.allow_users();
    let outside = w.caller_in(ALICE, None, None, &[]);
    assert!(matches!(
        w.svc.create_session_key(&outside, "x"),
        Err(KeysError::NoSession(_))
    ));
}

#[test]
fn a_session_key_logs_in_as_the_uid_the_caller_runs_as() {
    let w = world();
    w.allow_users();
    let alice = w.caller_in(ALICE, Some(ALICE), LOGIN, &[]);
    let (t, info) = w.svc.create_session_key(&alice, "notebook").unwrap();
    assert!(info.session);
    assert_eq!(w.verify(t.as_str(), "alice").unwrap().1, info.id);
    // Inside alice's login, su to bob: a key for bob, bound to alice's login.
    let su_bob = w.caller_in(BOB, Some(ALICE), LOGIN, &[]);
    let (tb, bobs) = w.svc.create_session_key(&su_bob, "").unwrap();
    assert_eq!(bobs.user, "bob");
    assert!(w.verify(tb.as_str(), "bob").is_ok());
    // Long-lived keys stay refused while impersonating.
    assert!(matches!(
        w.svc.generate(&su_bob, "", "", &[], ""),
        Err(KeysError::Impersonating(_))
    ));
    // Hidden from owners' listings; administrators ask for them.
    assert!(w.svc.list(&alice, "", false, false).unwrap().is_empty());
    assert_eq!(w.svc.list(&w.admin(), "", true, true).unwrap().len(), 2);
    assert!(matches!(
        w.svc.list(&alice, "", false, true),
        Err(KeysError::Denied(_))
    ));
    assert_eq!(w.svc.status(&alice).unwrap().session_keys, 1);
}

#[test]
fn closing_the_login_ends_its_keys_but_a_nested_close_does_not() {
    let w = world();
    w.allow_users();
    // sshd registers alice's login in audit session 42...
    let sshd = w.caller_unregistered(0, Some(ALICE), LOGIN, &[0]);
    let login = w
        .svc
        .open_session(&sshd, "alice", "sshd", "10.0.0.1", "", "", "password")
        .unwrap();
    let alice = w.caller_unregistered(ALICE, Some(ALICE), LOGIN, &[]);
    let (t, _) = w.svc.create_session_key(&alice, "").unwrap();
    // ...then su registers a nested session in the same audit session.
    let su = w.caller_unregistered(0, Some(ALICE), LOGIN, &[0]);
    let nested = w
        .svc
        .open_session(&su, "bob", "su", "", "pts/1", "", "password")
        .unwrap();
    w.svc.close_session(&su, &nested).unwrap();
    assert!(
        w.verify(t.as_str(), "alice").is_ok(),
        "su closing must not end alice's key"
    );
    w.svc.close_session(&sshd, &login).unwrap();
    assert!(matches!(
        w.verify(t.as_str(), "alice"),
        Err(KeysError::Refused(_))
    ));
}

#[test]
fn idle_timeout_and_lifetime_without_sleeping() {
    let w = world();
    w.allow_users();
    w.svc.set_settings(&w.root(), "", "", "", "10m").unwrap();
    let alice = w.caller_in(ALICE, Some(ALICE), LOGIN, &[]);
    let (used, _) = w.svc.create_session_key(&alice, "").unwrap();
    let (idle, _) = w.svc.create_session_key(&alice, "").unwrap();
    // Each use restarts the idle clock.
    for _ in 0..3 {
        w.advance(9 * 60);
        assert!(w.verify(used.as_str(), "alice").is_ok());
    }
    assert!(
        w.verify(idle.as_str(), "alice").is_err(),
        "unused for 27 minutes"
    );
    // Never longer than session_key_max_lifetime (12h), however busy.
    for _ in 0..100 {
        w.advance(9 * 60);
        let _ = w.verify(used.as_str(), "alice");
    }
    assert!(w.verify(used.as_str(), "alice").is_err());
}

#[test]
fn a_reboot_or_a_vanished_session_ends_them() {
    let w = world();
    w.allow_users();
    let alice = w.caller_in(ALICE, Some(ALICE), LOGIN, &[]);
    let (a, a_info) = w.svc.create_session_key(&alice, "").unwrap();
    let other = w.caller_in(ALICE, Some(ALICE), Some(43), &[]);
    let (b, _) = w.svc.create_session_key(&other, "").unwrap();
    w.host.dead_sessions.lock().unwrap().push(43);
    assert!(w.verify(b.as_str(), "alice").is_err());
    assert!(w.verify(a.as_str(), "alice").is_ok());
    *w.host.rebooted.lock().unwrap() = Some("another-boot".into());
    w.svc.sweep_session_keys();
    let rec = w.store.by_id(&a_info.id).unwrap().unwrap();
    assert_eq!(rec.revoked.unwrap().reason, "session-key-reboot");
    // Revoked for good: the old boot id coming back changes nothing.
    *w.host.rebooted.lock().unwrap() = None;
    assert!(w.verify(a.as_str(), "alice").is_err());
}

#[test]
fn revoke_all_ends_session_keys_too() {
    let w = world();
    w.allow_users();
    let alice = w.caller_in(ALICE, Some(ALICE), LOGIN, &[]);
    let (t, info) = w.svc.create_session_key(&alice, "").unwrap();
    assert_eq!(w.svc.revoke_all(&alice, "").unwrap(), vec![info.id]);
    assert!(w.verify(t.as_str(), "alice").is_err());
}

#[test]
fn a_session_opened_with_a_key_cannot_make_keys() {
    let w = world();
    w.allow_users();
    let (long, info) = w.svc.generate(&w.alice(), "", "", &[], "").unwrap();
    w.verify(long.as_str(), "alice").unwrap();
    // sshd logs alice in with that key; her shell is audit session 44.
    let sshd = w.caller_in(0, Some(ALICE), Some(44), &[0]);
    w.svc
        .open_session(&sshd, "alice", "sshd", "10.0.0.1", "", &info.id, "")
        .unwrap();
    let shell = w.caller_in(ALICE, Some(ALICE), Some(44), &[]);
    assert!(matches!(
        w.svc.generate(&shell, "", "", &[], ""),
        Err(KeysError::Denied(_))
    ));
    assert!(matches!(
        w.svc.create_session_key(&shell, ""),
        Err(KeysError::Denied(_))
    ));
    assert!(matches!(
        w.svc.rotate(&shell, &info.id),
        Err(KeysError::Denied(_))
    ));
    // Even under su inside it.
    let su_bob = w.caller_in(BOB, Some(ALICE), Some(44), &[]);
    assert!(matches!(
        w.svc.create_session_key(&su_bob, ""),
        Err(KeysError::Denied(_))
    ));
}

#[test]
fn policy_still_decides_who_gets_keys() {
    let w = world();
    let alice = w.caller_in(ALICE, Some(ALICE), LOGIN, &[]);
    assert!(matches!(
        w.svc.create_session_key(&alice, ""),
        Err(KeysError::PolicyForbids(_))
    ));
    let root = w.caller_in(0, Some(0), LOGIN, &[0]);
    assert!(matches!(
        w.svc.create_session_key(&root, ""),
        Err(KeysError::PolicyForbids(_))
    ));
}

#[test]
fn keys_need_a_registered_non_key_login() {
    let w = world();
    w.allow_users();
    // A crontab written from a key login runs in an audit session of its
    // own, with loginuid set and nothing registered.
    let cron = w.caller_unregistered(ALICE, Some(ALICE), Some(45), &[]);
    for refused in [
        w.svc.generate(&cron, "", "", &[], "").map(|_| ()),
        w.svc.create_session_key(&cron, "").map(|_| ()),
    ] {
        assert!(
            matches!(&refused, Err(KeysError::NotLoggedIn(m)) if m.contains("no record")),
            "{refused:?}"
        );
    }
    // A key login whose registration failed is the same to the daemon;
    // one registered with nothing seen (su, a stack without the mark) too.
    let sshd = w.caller_unregistered(0, Some(ALICE), Some(46), &[0]);
    w.svc
        .open_session(&sshd, "alice", "sshd", "10.0.0.1", "", "", "")
        .unwrap();
    let bare = w.caller_unregistered(ALICE, Some(ALICE), Some(46), &[]);
    assert!(matches!(
        w.svc.generate(&bare, "", "", &[], ""),
        Err(KeysError::NotLoggedIn(_))
    ));
    // sshd's own methods count, publickey included.
    w.svc
        .open_session(&sshd, "alice", "sshd", "10.0.0.1", "", "", "publickey")
        .unwrap();
    assert!(w.svc.generate(&bare, "", "", &[], "").is_ok());
}

#[test]
fn a_key_the_daemon_remembers_outweighs_the_modules_word() {
    let w = world();
    w.allow_users();
    let (t, _) = w.svc.generate(&w.alice(), "", "", &[], "").unwrap();
    // The module lost the key mark and reports a password; the daemon's
    // memory of the key login says otherwise.
    w.verify(t.as_str(), "alice").unwrap();
    let sshd = w.caller_unregistered(0, Some(ALICE), Some(47), &[0]);
    let h = w
        .svc
        .open_session(&sshd, "alice", "sshd", "10.0.0.1", "", "", "password")
        .unwrap();
    assert_eq!(
        w.store.session(&h).unwrap().unwrap().auth.as_deref(),
        Some("key")
    );
    let shell = w.caller_unregistered(ALICE, Some(ALICE), Some(47), &[]);
    assert!(matches!(
        w.svc.generate(&shell, "", "", &[], ""),
        Err(KeysError::Denied(_))
    ));
}

#[test]
fn ended_keys_go_after_the_retention_and_live_ones_stay() {
    let w = world();
    w.allow_users();
    let day = 86_400;
    let alice = w.alice();
    let (_, gone) = w.svc.generate(&alice, "", "", &[], "").unwrap();
    let (_, expiring) = w.svc.generate(&alice, "", "7d", &[], "").unwrap();
    let (_, recent) = w.svc.generate(&alice, "", "", &[], "").unwrap();
    let (_, active) = w.svc.generate(&alice, "", "", &[], "").unwrap();
    w.svc
        .revoke(&alice, std::slice::from_ref(&gone.id))
        .unwrap();
    w.advance(80 * day);
    w.svc
        .revoke(&alice, std::slice::from_ref(&recent.id))
        .unwrap();
    w.advance(18 * day);
    w.svc.prune_store();
    let kept = |id: &str| w.store.by_id(id).unwrap().is_some();
    assert!(!kept(&gone.id), "revoked 98 days ago");
    assert!(!kept(&expiring.id), "expired 91 days ago");
    assert!(kept(&recent.id), "revoked 18 days ago");
    assert!(kept(&active.id));
}

#[test]
fn session_records_go_when_no_process_can_act_for_them() {
    let w = world();
    w.allow_users();
    let open = |session: u32| {
        let sshd = w.caller_unregistered(0, Some(ALICE), Some(session), &[0]);
        w.svc
            .open_session(&sshd, "alice", "sshd", "10.0.0.1", "", "", "password")
            .unwrap()
    };
    let (live, dead, keyed) = (open(50), open(51), open(53));
    // A session key bound to session 53 keeps its record while it lives.
    let shell = w.caller_unregistered(ALICE, Some(ALICE), Some(53), &[]);
    let (_, key) = w.svc.create_session_key(&shell, "").unwrap();
    w.host.dead_sessions.lock().unwrap().extend([51, 53]);
    w.advance(10);
    // Registered just now, after the look at /proc: kept.
    let fresh = open(54);
    w.host.dead_sessions.lock().unwrap().push(54);
    w.svc.prune_store();
    let kept = |h: &str| w.store.session(h).unwrap().is_some();
    assert!(kept(&live), "a session with a process in it");
    assert!(!kept(&dead), "no process left");
    assert!(kept(&keyed), "an active session key is bound to it");
    assert!(kept(&fresh), "opened after the look at /proc");
    // Its key ended (the sweep sees the session gone): the record goes too.
    w.svc.sweep_session_keys();
    assert!(w.store.by_id(&key.id).unwrap().unwrap().revoked.is_some());
    w.advance(10);
    w.svc.prune_store();
    assert!(!kept(&keyed) && !kept(&fresh));
    // Every session of an earlier boot is over.
    *w.host.rebooted.lock().unwrap() = Some("another-boot".into());
    w.svc.prune_store();
    assert!(!kept(&live));
}

#[test]
fn listings_hide_ended_keys_unless_asked_and_page_through_the_rest() {
    let w = world();
    w.allow_users();
    let alice = w.alice();
    let (_, revoked) = w.svc.generate(&alice, "", "", &[], "").unwrap();
    let (_, expired) = w.svc.generate(&alice, "", "7d", &[], "").unwrap();
    let active: Vec<String> = (0..3)
        .map(|_| w.svc.generate(&alice, "", "", &[], "").unwrap().1.id)
        .collect();
    w.svc
        .revoke(&alice, std::slice::from_ref(&revoked.id))
        .unwrap();
    w.advance(8 * 86_400);
    let ids = |keys: Vec<apikey_proto::KeyInfo>| keys.into_iter().map(|k| k.id).collect::<Vec<_>>();
    assert_eq!(ids(w.svc.list(&alice, "", false, false).unwrap()), active);
    let show = |what: &[&str]| -> Vec<String> {
        let show: Vec<String> = what.iter().map(|s| s.to_string()).collect();
        ids(w
            .svc
            .list_page(&alice, "", false, false, &show, "", 100)
            .unwrap()
            .0)
    };
    assert_eq!(
        show(&["expired"]),
        [&[expired.id.clone()][..], &active].concat()
    );
    assert_eq!(
        show(&["revoked"]),
        [&[revoked.id.clone()][..], &active].concat()
    );
    assert_eq!(show(&["revoked", "expired"]).len(), 5);
    // One key a page: the positions chain through every key, once each.
    let mut after = String::new();
    let mut seen = Vec::new();
    loop {
        let (page, next) = w
            .svc
            .list_page(&alice, "", false, false, &[], &after, 1)
            .unwrap();
        assert!(page.len() <= 1);
        seen.extend(ids(page));
        if next.is_empty() {
            break;
        }
        after = next;
    }
    assert_eq!(seen, active);
    for (show, after) in [
        (vec!["deleted".to_string()], ""),
        (vec![], "x"),
        (vec![], "-5"),
    ] {
        assert!(matches!(
            w.svc.list_page(&alice, "", false, false, &show, after, 10),
            Err(KeysError::InvalidArgument(_))
        ));
    }
}

/// Rotation is for long-lived keys: a session key is never turned into one.
#[test]
fn a_session_key_is_not_rotated() {
    let w = world();
    w.allow_users();
    let alice = w.caller_in(ALICE, Some(ALICE), LOGIN, &[]);
    let (_, info) = w.svc.create_session_key(&alice, "").unwrap();
    assert!(matches!(
        w.svc.rotate(&alice, &info.id),
        Err(KeysError::NotFound(_))
    ));
    assert_eq!(w.svc.list(&w.admin(), "", true, true).unwrap().len(), 1);
}

fn revoked_why(w: &World, id: &str) -> Option<String> {
    w.store
        .by_id(id)
        .unwrap()
        .and_then(|k| k.revoked)
        .map(|r| r.reason)
}

/// logind's word that a session ended ends that session's keys, and only
/// when logind says it: another session's keys and a signal from anyone
/// else change nothing.
#[test]
fn logind_ends_the_keys_of_the_session_it_names() {
    let w = world();
    w.allow_users();
    let in_42 = w.caller_in(ALICE, Some(ALICE), Some(42), &[]);
    let in_43 = w.caller_in(ALICE, Some(ALICE), Some(43), &[]);
    let (_, a) = w.svc.create_session_key(&in_42, "").unwrap();
    let (_, b) = w.svc.create_session_key(&in_43, "").unwrap();
    w.svc.logind_session_removed("42", ":1.66", false);
    assert_eq!(revoked_why(&w, &a.id), None);
    w.svc.logind_session_removed("c7", ":1.1", true);
    w.svc.logind_session_removed("42", ":1.1", true);
    assert_eq!(
        revoked_why(&w, &a.id).as_deref(),
        Some("logind-session-removed")
    );
    assert_eq!(revoked_why(&w, &b.id), None);
}

/// The minute's sweep ends a session key at its lifetime's end even while
/// its session lives on.
#[test]
fn the_sweep_ends_keys_at_their_lifetime() {
    let w = world();
    w.allow_users();
    w.svc.set_settings(&w.root(), "", "", "", "24h").unwrap();
    let alice = w.caller_in(ALICE, Some(ALICE), LOGIN, &[]);
    let (_, info) = w.svc.create_session_key(&alice, "").unwrap();
    w.svc.sweep_session_keys();
    assert_eq!(revoked_why(&w, &info.id), None);
    // Idle all along, but the idle timeout is longer than the lifetime.
    w.advance(12 * 3600 - 60);
    w.svc.sweep_session_keys();
    assert_eq!(revoked_why(&w, &info.id), None);
    w.advance(60);
    w.svc.sweep_session_keys();
    assert_eq!(
        revoked_why(&w, &info.id).as_deref(),
        Some("session-key-lifetime")
    );
}

/// A session key is bound to its own login's registered session: not to
/// another login's open one in the same audit session, nor to a closed one.
#[test]
fn a_session_key_binds_to_its_own_logins_session() {
    let w = world();
    w.allow_users();
    // Registered first in audit session 42: a login of another uid.
    w.register_login(BOB, 42, "password");
    let alice = w.caller_in(ALICE, Some(ALICE), LOGIN, &[]);
    let (_, info) = w.svc.create_session_key(&alice, "").unwrap();
    let own = w
        .store
        .sessions_of(&w.host.boot_id(), 42)
        .unwrap()
        .into_iter()
        .find(|s| s.loginuid == Some(ALICE))
        .unwrap()
        .handle;
    let key = w.store.by_id(&info.id).unwrap().unwrap();
    assert_eq!(key.binding.unwrap().handle, Some(own));
}

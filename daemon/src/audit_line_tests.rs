//! What the key service writes to the audit log, read back from a syslog
//! socket the test owns: the fields operators search for, what is kept
//! out (S11), and how refusals are limited and summarised (S7).

use crate::audit::Audit;
use crate::service_tests::{World, ALICE};
use crate::store::{SqliteStore, Store};
use apikey_proto::KeysError;
use std::os::unix::net::UnixDatagram;
use std::sync::atomic::Ordering;
use std::time::Duration;

struct Logged {
    dir: tempfile::TempDir,
    socket: UnixDatagram,
    w: World,
}

fn logged() -> Logged {
    logged_over(|_| SqliteStore::open_in_memory())
}

/// A world logging to a syslog socket of its own, over the store `store`
/// opens in the test's directory.
fn logged_over(store: impl FnOnce(&std::path::Path) -> SqliteStore) -> Logged {
    logged_configured(store, crate::config::Config::default())
}

fn logged_configured(
    store: impl FnOnce(&std::path::Path) -> SqliteStore,
    cfg: crate::config::Config,
) -> Logged {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("log");
    let socket = UnixDatagram::bind(&path).unwrap();
    socket.set_nonblocking(true).unwrap();
    // A stalled syslog is given up on in a fifth of a second, not five.
    let audit = Audit::open(&path, None).with_flush_wait(Duration::from_millis(200));
    let w = crate::service_tests::world_configured(store(dir.path()), audit, cfg);
    Logged { dir, socket, w }
}

impl Logged {
    /// The lines written since the last call, without their syslog header:
    /// all of them, once the audit thread has written everything logged so
    /// far. Its writes block while a few datagrams wait unread
    /// (net.unix.max_dgram_qlen), so the socket is read between flushes.
    fn lines(&self) -> Vec<String> {
        let mut got = Vec::new();
        let mut buf = [0u8; 8192];
        for _ in 0..100 {
            let flushed = self.w.svc.flush_audit();
            while let Ok(n) = self.socket.recv(&mut buf) {
                let text = String::from_utf8_lossy(&buf[..n]).into_owned();
                let at = text.find("event=").expect("an audit line");
                got.push(text[at..].to_string());
            }
            if flushed {
                return got;
            }
        }
        panic!("the audit thread never finished writing");
    }

    /// The lines of `event` among [`lines`](Self::lines).
    fn events(&self, event: &str) -> Vec<String> {
        let head = format!("event={event} ");
        self.lines()
            .into_iter()
            .filter(|l| l.starts_with(&head) || *l == head.trim_end())
            .collect()
    }
}

#[test]
fn settings_generate_and_revoke_are_logged_with_who_and_what() {
    let l = logged();
    let w = &l.w;
    w.svc
        .set_settings(&w.root(), "yes", "30d", "no", "")
        .unwrap();
    let settings = l.events("settings");
    assert_eq!(settings.len(), 1, "{settings:?}");
    assert!(
        settings[0].contains(r#"allow_user_keys="yes" expiry="30d" users_see_own="no""#),
        "{settings:?}"
    );
    let (_, info) = w.svc.generate(&w.alice(), "ci", "", &[], "").unwrap();
    let revoked = w.svc.revoke_all(&w.alice(), "").unwrap();
    assert_eq!(revoked, vec![info.id.clone()]);
    let lines = l.events("revoke");
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(
        lines[0].contains(&format!(
            r#"user="alice" requested="all" key="{}" outcome="ok""#,
            info.id
        )),
        "{lines:?}"
    );
}

/// In a fleet, a key limited to hosts says so in its line; a key for
/// every host's line has no hosts.
#[test]
fn a_key_limited_to_hosts_is_logged_with_them() {
    let cfg = crate::config::Config {
        fleet: Some(crate::config::FleetConfig {
            conninfo: crate::store::postgres::conninfo::parse("host=db").unwrap(),
            password_file: None,
            host: "web-1".into(),
            timeout_ms: 1000,
            offline_grace_secs: 0,
        }),
        ..crate::config::Config::default()
    };
    let l = logged_configured(|_| SqliteStore::open_in_memory(), cfg);
    let w = &l.w;
    w.allow_users();
    let hosts = apikey_proto::GenerateOptions {
        hosts: vec!["web-*".into(), "db-1".into()],
        from: vec!["10.1.0.0/16".into()],
    };
    let (_, info, extra) = w
        .svc
        .generate_with(&w.alice(), "", "", &[], "", &hosts)
        .unwrap();
    assert_eq!(extra.made_on, "web-1");
    assert_eq!(extra.hosts, hosts.hosts);
    w.svc.generate(&w.alice(), "", "", &[], "").unwrap();
    let lines = l.events("generate");
    assert_eq!(lines.len(), 2, "{lines:?}");
    assert!(
        lines[0].contains(&format!(
            r#"hosts="web-*,db-1" from="10.1.0.0/16" user="alice" key="{}""#,
            info.id
        )),
        "{lines:?}"
    );
    assert!(
        !lines[1].contains("hosts=") && !lines[1].contains("from="),
        "{lines:?}"
    );
}

/// A user field that looks like a key never reaches the log (S11).
#[test]
fn a_key_shaped_user_name_is_not_logged() {
    let l = logged();
    let w = &l.w;
    let typo = "apikey|NotAValidKeyButKeyShaped";
    let answer = w
        .svc
        .verify(&w.root(), b"hunter2", typo, "sshd", "10.0.0.1");
    assert!(answer.result.is_err());
    let lines = l.events("verify");
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(lines[0].contains(r#"user="(an API key)""#), "{lines:?}");
    assert!(!lines[0].contains("NotAValid"), "{lines:?}");
}

/// Bad fields are refused before anything is looked up.
#[test]
fn verify_checks_its_fields() {
    let l = logged();
    let w = &l.w;
    for (user, service, rhost) in [
        ("alice", "sshd", "10.0.0.1\nforged=1"),
        ("al\u{7}ice", "sshd", ""),
        ("alice", "no such service", ""),
    ] {
        let answer = w.svc.verify(&w.root(), b"apikey|x", user, service, rhost);
        assert!(
            matches!(answer.result, Err(KeysError::InvalidArgument(_))),
            "{user:?} {service:?} {rhost:?}: {:?}",
            answer.result
        );
    }
}

/// Refusals of one caller are logged up to a burst, then summarised;
/// what succeeds is always logged.
#[test]
fn refusals_past_the_burst_become_a_summary() {
    let l = logged();
    let w = &l.w;
    let calls = crate::refusal_log::BURST as usize + 5;
    for _ in 0..calls {
        assert!(matches!(
            w.svc.revoke_all(&w.alice(), "bob"),
            Err(KeysError::Denied(_))
        ));
    }
    w.allow_users();
    w.svc.generate(&w.alice(), "", "", &[], "").unwrap();
    let lines = l.lines();
    let refused = lines
        .iter()
        .filter(|l| l.contains(r#"outcome="Denied""#))
        .count();
    assert_eq!(refused, crate::refusal_log::BURST as usize, "{lines:?}");
    assert_eq!(
        lines
            .iter()
            .filter(|l| l.starts_with("event=generate "))
            .count(),
        1,
        "{lines:?}"
    );
    w.svc.log_refusal_summaries();
    let summary = l.events("refusal-summary");
    assert_eq!(
        summary,
        [format!(
            "event=refusal-summary caller_uid={ALICE} refused_unlogged=5"
        )]
    );
}

/// Key refusals from one source past the free ones (10 by default) are
/// summarised too.
#[test]
fn throttled_verify_refusals_are_summarised() {
    let l = logged();
    let w = &l.w;
    let unknown = apikey_proto::Token::generate().unwrap();
    for _ in 0..13 {
        let bad = w.svc.verify(
            &w.root(),
            unknown.as_str().as_bytes(),
            "alice",
            "sshd",
            "10.6.6.6",
        );
        assert!(bad.result.is_err());
    }
    l.lines();
    w.svc.log_throttle_summaries();
    let summary = l.events("verify-summary");
    assert_eq!(summary.len(), 1, "{summary:?}");
    assert!(
        summary[0].contains(r#"rhost="10.6.6.6""#)
            && summary[0].contains("refused_unlogged=3 failures_in_a_row=13"),
        "{summary:?}"
    );
}

/// A syslog that takes nothing: the audit queue fills, async workers
/// hand their checks over rather than wait on it, and a flush gives up.
#[test]
fn a_stalled_syslog_is_never_waited_on_by_an_async_worker() {
    let l = logged();
    let w = &l.w;
    w.allow_users();
    let (token, _) = w.svc.generate(&w.alice(), "", "", &[], "").unwrap();
    w.host
        .quick
        .store(true, std::sync::atomic::Ordering::SeqCst);
    let inline = || {
        w.svc
            .try_verify_inline(&w.root(), token.as_str().as_bytes(), "alice", "sshd", "")
            .is_some()
    };
    assert!(inline());
    assert!(w.svc.flush_audit());
    // Nothing reads the socket from here on: its queue fills, then the
    // audit thread's.
    for _ in 0..crate::audit::QUEUE_LINES / 2 + 1024 {
        w.svc.set_settings(&w.root(), "yes", "", "", "").unwrap();
    }
    assert!(!inline(), "an async worker went on with a full audit queue");
    assert!(!w.svc.flush_audit());
}

/// A session key refused names the caller in its line.
#[test]
fn a_refused_session_key_names_its_caller() {
    let l = logged();
    let w = &l.w;
    w.allow_users();
    let outside = w.caller_in(ALICE, None, None, &[]);
    assert!(w.svc.create_session_key(&outside, "").is_err());
    let lines = l.events("session-key");
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(lines[0].contains(r#"user="alice" key="""#), "{lines:?}");
}

/// A session's line names the key it was opened with: "-" for none, the
/// id claimed when the claim was refused.
#[test]
fn a_session_line_names_its_key_or_none() {
    let l = logged();
    let w = &l.w;
    let pam = w.pam_stack(Some(ALICE), Some(5));
    w.open(&pam, "alice", "").unwrap();
    assert!(w.open(&pam, "alice", "nothere00000").is_err());
    let lines = l.events("session-open");
    assert_eq!(lines.len(), 2, "{lines:?}");
    assert!(lines[0].contains(r#"key="-""#), "{lines:?}");
    assert!(lines[1].contains(r#"key="nothere00000""#), "{lines:?}");
}

/// Closing a login ends the session keys bound to it, with one line that
/// names them; closing a login without any logs no such line.
#[test]
fn the_end_of_a_logins_session_keys_is_logged() {
    let l = logged();
    let w = &l.w;
    w.allow_users();
    let pam = w.pam_stack(Some(ALICE), Some(42));
    let handle = w.open(&pam, "alice", "").unwrap();
    let alice = w.caller_unregistered(ALICE, Some(ALICE), Some(42), &[]);
    let (_, key) = w.svc.create_session_key(&alice, "").unwrap();
    let other = w.open(&pam, "alice", "").unwrap();
    l.lines();
    w.svc.close_session(&pam, &other).unwrap();
    assert_eq!(l.events("session-key-end"), Vec::<String>::new());
    w.svc.close_session(&pam, &handle).unwrap();
    assert_eq!(
        l.events("session-key-end"),
        [format!(
            r#"event=session-key-end key="{}" reason="session-closed" outcome="ok""#,
            key.id
        )]
    );
}

/// A store that cannot answer key lookups: logins are answered as
/// unavailable, status says why, and the audit log says so once when it
/// starts and once when it ends.
#[test]
fn a_failing_store_is_reported_once_and_its_recovery_too() {
    let l = logged_over(|dir| SqliteStore::open(&dir.join("keys.db")).unwrap());
    let w = &l.w;
    w.allow_users();
    let (token, _) = w.svc.generate(&w.alice(), "", "", &[], "").unwrap();
    l.lines();
    w.host.quick.store(true, Ordering::SeqCst);
    let inline = || {
        w.svc
            .try_verify_inline(
                &w.root(),
                token.as_str().as_bytes(),
                "alice",
                "sshd",
                "10.0.0.1",
            )
            .map(|a| a.result.is_ok())
    };
    assert_eq!(inline(), Some(true));
    let side = rusqlite::Connection::open(l.dir.path().join("keys.db")).unwrap();
    side.execute_batch("ALTER TABLE keys RENAME TO keys_away")
        .unwrap();
    // An async worker hands a failing lookup over rather than answer it.
    assert_eq!(inline(), None);
    for _ in 0..3 {
        assert!(w.verify(token.as_str(), "alice").is_err());
    }
    assert!(w
        .svc
        .status(&w.alice())
        .unwrap()
        .store
        .contains("key lookups fail"));
    assert_eq!(l.events("store-failing").len(), 1);
    side.execute_batch("ALTER TABLE keys_away RENAME TO keys")
        .unwrap();
    for _ in 0..3 {
        assert!(w.verify(token.as_str(), "alice").is_ok());
    }
    assert_eq!(w.svc.status(&w.alice()).unwrap().store, "");
    assert_eq!(l.events("store-recovered").len(), 1);
}

/// Unused keys revoked by the daemon: one line for the keys of one look,
/// naming them and the period; a look that revokes nothing says nothing.
#[test]
fn unused_keys_revoked_are_logged_once_each_look() {
    let l = logged();
    let w = &l.w;
    w.allow_users();
    let (_, a) = w.svc.generate(&w.alice(), "", "", &[], "").unwrap();
    let (_, b) = w.svc.generate(&w.alice(), "", "", &[], "").unwrap();
    w.svc
        .set_settings_with(&w.root(), &[("revoke_unused", "30d")])
        .unwrap();
    l.lines();
    w.advance(30 * 86400);
    let mut revoked = w.svc.revoke_unused();
    revoked.sort();
    let mut ids = vec![a.id.clone(), b.id.clone()];
    ids.sort();
    assert_eq!(revoked, ids);
    let lines = l.events("revoke");
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(
        lines[0].contains(r#"reason="unused" unused_days=30"#)
            && lines[0].contains(&a.id)
            && lines[0].contains(&b.id)
            && lines[0].contains(r#"outcome="ok""#),
        "{lines:?}"
    );
    assert!(w.svc.revoke_unused().is_empty());
    assert!(l.events("revoke").is_empty());
    // Keys revoked meanwhile (by another host, say) are not logged again.
    let policy = w.store.policy().unwrap();
    assert!(w
        .svc
        .revoke_unused_keys(std::slice::from_ref(&a.id), &policy)
        .is_empty());
    assert!(l.events("revoke").is_empty());
}

/// A token holder's refusals say why, as Verify's do.
#[test]
fn a_token_holders_refusals_name_the_reason() {
    let l = logged();
    let w = &l.w;
    let good = apikey_proto::Token::generate().unwrap();
    let mut typo = good.as_str().to_string();
    let last = typo.pop().unwrap();
    typo.push(if last == 'a' { 'b' } else { 'a' });
    w.svc.revoke_by_token(&w.alice(), typo.as_bytes());
    w.svc.revoke_by_token(&w.alice(), b"apikey|short");
    w.svc.inspect_token(&w.alice(), good.as_str().as_bytes());
    let reasons: Vec<String> = l
        .lines()
        .iter()
        .filter(|l| l.contains("outcome=\"refused\""))
        .map(|l| l[l.find("reason=").unwrap()..].to_string())
        .collect();
    assert_eq!(
        reasons,
        [
            r#"reason="bad-checksum""#,
            r#"reason="malformed""#,
            r#"reason="unknown-key""#
        ]
    );
}

/// A key used within `warn_before` of its expiry: one `key-expiring` line
/// a day however often it is used, its session told how long it has, the
/// listing and the owner's status marking it; a key expiring later, and
/// session keys, are not announced.
#[test]
fn keys_close_to_their_expiry_are_announced_once_a_day() {
    const DAY: i64 = 86_400;
    let l = logged();
    let w = &l.w;
    w.allow_users();
    let (soon, soon_info) = w.svc.generate(&w.alice(), "ci", "7d", &[], "").unwrap();
    let (later, later_info) = w.svc.generate(&w.alice(), "", "30d", &[], "").unwrap();
    l.lines();
    let status = |w: &World| w.svc.status_with(&w.alice()).unwrap().1;
    w.advance(3 * DAY + DAY / 2);
    for _ in 0..3 {
        assert!(w.verify(soon.as_str(), "alice").is_ok());
        assert!(w.verify(later.as_str(), "alice").is_ok());
    }
    let lines = l.events("key-expiring");
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(
        lines[0].contains(&format!(r#"user="alice" key="{}" expires="#, soon_info.id))
            && lines[0].contains(r#"days_left=3 service="sshd" rhost="10.0.0.1""#),
        "{lines:?}"
    );
    assert_eq!(status(w).expiring_soon, Some(1));
    assert_eq!(status(w).warn_before, 7 * DAY as u64);
    let (listed, _) = w
        .svc
        .list_page_with(&w.alice(), "", false, false, &[], "", 100)
        .unwrap();
    let soon_of = |id: &str| {
        listed
            .iter()
            .find(|(k, _)| k.id == id)
            .unwrap()
            .1
            .expires_soon
    };
    assert!(soon_of(&soon_info.id));
    assert!(!soon_of(&later_info.id));
    // Its login session is told how long it has left.
    let pam = w.pam_stack(Some(ALICE), Some(42));
    let (_, left) = w
        .svc
        .open_session_with(&pam, "alice", "sshd", "10.0.0.1", "ssh", &soon_info.id, "")
        .unwrap();
    assert_eq!(i64::from(left), 7 * DAY - 3 * DAY - DAY / 2);
    let (_, left) = w
        .svc
        .open_session_with(&pam, "alice", "sshd", "10.0.0.1", "ssh", &later_info.id, "")
        .unwrap();
    assert_eq!(left, 0);
    // The next day, one more line.
    w.advance(DAY);
    assert!(w.verify(soon.as_str(), "alice").is_ok());
    assert!(w.verify(soon.as_str(), "alice").is_ok());
    assert_eq!(l.events("key-expiring").len(), 1);
}

//! The decisions against a scripted PAM handle and daemon.

use crate::args::Args;
use crate::core::{self, KEY_ID_ENV};
use crate::daemon::{Daemon, DaemonError, OpenedSession};
use crate::pam::{Code, Level, Pam};
use apikey_proto::Token;
use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use zeroize::Zeroizing;

#[derive(Default)]
struct FakePam {
    service: String,
    user: Vec<u8>,
    rhost: String,
    authtok: Option<Vec<u8>>,
    env: HashMap<String, String>,
    data: HashMap<String, String>,
    delay: Option<u32>,
    sshd: bool,
    accounts: Vec<String>,
    /// libpam refuses pam_set_item(PAM_USER).
    set_user_fails: bool,
    logs: RefCell<Vec<String>>,
    /// What the user was shown (PAM_TEXT_INFO).
    shown: Vec<String>,
}

impl Pam for FakePam {
    fn service(&self) -> Option<String> {
        Some(self.service.clone())
    }
    fn user(&mut self) -> Option<Vec<u8>> {
        Some(self.user.clone())
    }
    fn rhost(&self) -> Option<String> {
        Some(self.rhost.clone())
    }
    fn tty(&self) -> Option<String> {
        None
    }
    fn authtok(&mut self) -> Option<Zeroizing<Vec<u8>>> {
        self.authtok.clone().map(Zeroizing::new)
    }
    fn clear_authtok(&mut self) {
        self.authtok = None;
    }
    fn set_user(&mut self, name: &str) -> bool {
        if self.set_user_fails {
            return false;
        }
        self.user = name.as_bytes().to_vec();
        true
    }
    fn getenv(&self, name: &str) -> Option<String> {
        self.env.get(name).cloned()
    }
    fn putenv(&mut self, name: &str, value: &str) {
        self.env.insert(name.into(), value.into());
    }
    fn set_data(&mut self, key: &str, value: String) {
        self.data.insert(key.into(), value);
    }
    fn get_data(&self, key: &str) -> Option<String> {
        self.data.get(key).cloned()
    }
    fn fail_delay(&mut self, micros: u32) {
        self.delay = Some(micros);
    }
    fn log(&self, _level: Level, message: &str) {
        self.logs.borrow_mut().push(message.into());
    }
    fn info(&mut self, text: &str) {
        self.shown.push(text.into());
    }
    fn host_is_sshd(&self) -> bool {
        self.sshd
    }
    fn account_exists(&self, name: &str) -> bool {
        self.accounts.iter().any(|a| a == name)
    }
    fn uid_of(&self, _name: &str) -> Option<u32> {
        None
    }
}

/// Records every call; answers with a scripted verify result.
#[derive(Clone)]
struct FakeDaemon {
    calls: Rc<RefCell<Vec<String>>>,
    verify: Result<(String, String), DaemonError>,
    check: Result<(), DaemonError>,
    open: Result<OpenedSession, DaemonError>,
    close: Result<(), DaemonError>,
}

impl Daemon for FakeDaemon {
    fn verify(
        &mut self,
        token: &str,
        user: &str,
        service: &str,
        rhost: &str,
    ) -> Result<(String, String), DaemonError> {
        let shown = if token.is_empty() { "" } else { "<key>" };
        self.calls
            .borrow_mut()
            .push(format!("verify {shown} {user} {service} {rhost}"));
        self.verify.clone()
    }
    fn check_key(
        &mut self,
        id: &str,
        user: &str,
        service: &str,
        _rhost: &str,
    ) -> Result<(), DaemonError> {
        self.calls
            .borrow_mut()
            .push(format!("check {id} {user} {service}"));
        self.check.clone()
    }
    fn open_session(
        &mut self,
        user: &str,
        service: &str,
        rhost: &str,
        _tty: &str,
        key_id: &str,
        auth: &str,
    ) -> Result<OpenedSession, DaemonError> {
        self.calls.borrow_mut().push(format!(
            "open {user} {service} {rhost} {key_id} auth={auth}"
        ));
        self.open.clone()
    }
    fn close_session(&mut self, handle: &str) -> Result<(), DaemonError> {
        self.calls.borrow_mut().push(format!("close {handle}"));
        self.close.clone()
    }
}

struct Setup {
    pam: FakePam,
    daemon: FakeDaemon,
    args: Args,
}

fn setup(service: &str, user: &str, password: &[u8]) -> Setup {
    Setup {
        pam: FakePam {
            service: service.into(),
            user: user.as_bytes().to_vec(),
            rhost: "192.0.2.1".into(),
            authtok: Some(password.to_vec()),
            ..FakePam::default()
        },
        daemon: FakeDaemon {
            calls: Rc::default(),
            verify: Ok(("alice".into(), "Kid000000001".into())),
            check: Ok(()),
            open: Ok(OpenedSession {
                handle: "handle-1".into(),
                key_expires_in: 0,
            }),
            close: Ok(()),
        },
        args: Args::default(),
    }
}

impl Setup {
    fn run(&mut self, hook: fn(&mut dyn Pam, &Args, &mut dyn Daemon) -> Code) -> Code {
        hook(&mut self.pam, &self.args, &mut self.daemon)
    }
    /// The session hooks, which take no arguments.
    fn run_session(&mut self, hook: fn(&mut dyn Pam, &mut dyn Daemon) -> Code) -> Code {
        hook(&mut self.pam, &mut self.daemon)
    }
    fn calls(&self) -> Vec<String> {
        self.daemon.calls.borrow().clone()
    }
    /// Calls that reached the daemon (the link connects at the first).
    fn connects(&self) -> u32 {
        self.calls().len() as u32
    }
}

fn key() -> Token {
    Token::generate().unwrap()
}

#[test]
fn a_password_is_left_for_the_modules_below() {
    let mut s = setup("sshd", "alice", b"hunter2");
    assert_eq!(s.run(core::authenticate), Code::Ignore);
    assert_eq!(s.pam.authtok.as_deref(), Some(&b"hunter2"[..]));
    assert_eq!(s.connects(), 0);
}

#[test]
fn a_valid_key_logs_in_and_stops_here() {
    let k = key();
    let mut s = setup("sshd", "alice", k.as_str().as_bytes());
    assert_eq!(s.run(core::authenticate), Code::Success);
    assert_eq!(s.calls(), vec!["verify <key> alice sshd 192.0.2.1"]);
    assert_eq!(
        s.pam.authtok, None,
        "the key must not reach the next module"
    );
    assert_eq!(
        s.pam.env.get(KEY_ID_ENV).map(String::as_str),
        Some("Kid000000001")
    );
    assert_eq!(s.pam.delay, None);
    assert!(!s
        .pam
        .logs
        .borrow()
        .iter()
        .any(|l| l.contains(&k.as_str()[7..])));
}

#[test]
fn the_alias_spelling_works_too() {
    let k = key();
    let mut s = setup("vsftpd", "alice", k.alias().as_bytes());
    assert_eq!(s.run(core::authenticate), Code::Success);
}

#[test]
fn every_refusal_looks_the_same() {
    let k = key();
    let mut typo = k.as_str().as_bytes().to_vec();
    typo[20] = if typo[20] == b'a' { b'b' } else { b'a' };
    let mut refused = setup("sshd", "alice", k.as_str().as_bytes());
    refused.daemon.verify = Err(DaemonError::Refused);
    let mut bad_checksum = setup("sshd", "alice", &typo);
    let mut su = setup("su", "root", k.as_str().as_bytes());
    let mut sudo = setup("sudo", "alice", k.as_str().as_bytes());
    for (name, s) in [
        ("refused", &mut refused),
        ("typo", &mut bad_checksum),
        ("su", &mut su),
        ("sudo", &mut sudo),
    ] {
        assert_eq!(s.run(core::authenticate), Code::AuthErr, "{name}");
        assert_eq!(s.pam.delay, Some(core::FAIL_DELAY_MICROS), "{name}");
        assert_eq!(
            s.pam.authtok, None,
            "{name}: the key must not reach pam_unix"
        );
    }
    assert_eq!(bad_checksum.connects() + su.connects() + sudo.connects(), 0);
}

#[test]
fn s2_services_ignore_passwords_without_asking_the_daemon() {
    let mut s = setup("sudo", "alice", b"hunter2");
    assert_eq!(s.run(core::authenticate), Code::Ignore);
    assert_eq!(s.connects(), 0);
}

#[test]
fn an_unreachable_daemon_is_not_a_refusal() {
    let mut s = setup("sshd", "alice", key().as_str().as_bytes());
    s.daemon.verify = Err(DaemonError::Unavailable("down".into()));
    assert_eq!(s.run(core::authenticate), Code::AuthinfoUnavail);
    assert_eq!(s.pam.authtok, None);
}

#[test]
fn mapping_sets_the_owner_where_it_is_allowed() {
    let mut s = setup("vsftpd", "apikey", key().as_str().as_bytes());
    s.args.map_user = Some("apikey".into());
    assert_eq!(s.run(core::authenticate), Code::Success);
    assert_eq!(s.calls(), vec!["verify <key>  vsftpd 192.0.2.1"]);
    assert_eq!(s.pam.user, b"alice");
}

#[test]
fn mapping_is_refused_in_sshd_and_over_a_real_account() {
    let mut sshd = setup("anything", "apikey", key().as_str().as_bytes());
    sshd.args.map_user = Some("apikey".into());
    sshd.pam.sshd = true;
    let mut shadowed = setup("vsftpd", "apikey", key().as_str().as_bytes());
    shadowed.args.map_user = Some("apikey".into());
    shadowed.pam.accounts = vec!["apikey".into()];
    for s in [&mut sshd, &mut shadowed] {
        assert_eq!(s.run(core::authenticate), Code::AuthErr);
        assert_eq!(s.connects(), 0);
        assert_eq!(s.pam.user, b"apikey");
    }
}

#[test]
fn misconfiguration_refuses_keys_but_keeps_passwords_working() {
    let mut with_key = setup("sshd", "alice", key().as_str().as_bytes());
    with_key.args = Args::parse([&b"timeout=forever"[..]]);
    assert_eq!(with_key.run(core::authenticate), Code::AuthErr);
    assert_eq!(with_key.connects(), 0);
    let mut with_password = setup("sshd", "alice", b"hunter2");
    with_password.args = Args::parse([&b"timeout=forever"[..]]);
    assert_eq!(with_password.run(core::authenticate), Code::Ignore);
}

#[test]
fn a_user_name_that_is_a_key_is_reported_and_refused() {
    let leaked = key();
    let mut s = setup("sshd", leaked.as_str(), b"hunter2");
    s.daemon.verify = Err(DaemonError::Refused);
    assert_eq!(s.run(core::authenticate), Code::AuthErr);
    let calls = s.calls();
    assert_eq!(calls.len(), 1);
    assert!(calls[0].starts_with("verify  apikey|"), "{calls:?}");
    let logged = |s: &Setup, what: &str| s.pam.logs.borrow().iter().any(|l| l.contains(what));
    assert!(logged(&s, "it was reported as leaked"));
    let mut unreported = setup("sshd", leaked.as_str(), b"hunter2");
    unreported.daemon.verify = Err(DaemonError::Unavailable("down".into()));
    assert_eq!(unreported.run(core::authenticate), Code::AuthErr);
    assert!(logged(&unreported, "it could not be reported"));
    assert!(!s
        .pam
        .logs
        .borrow()
        .iter()
        .any(|l| l.contains(&leaked.as_str()[7..])));
}

#[test]
fn account_step_denies_the_unmapped_name() {
    let mut s = setup("vsftpd", "apikey", b"");
    assert_eq!(s.run(core::acct_mgmt), Code::PermDenied);
    s.pam.accounts = vec!["apikey".into()];
    assert_eq!(s.run(core::acct_mgmt), Code::Ignore);
    assert_eq!(s.connects(), 0);
    let mut plain = setup("sshd", "alice", b"");
    assert_eq!(core::setcred(&mut plain.pam), Code::Ignore);
}

#[test]
fn account_step_rechecks_the_key() {
    let mut keyed = setup("sshd", "alice", b"");
    keyed
        .pam
        .env
        .insert(KEY_ID_ENV.into(), "Kid000000001".into());
    assert_eq!(keyed.run(core::acct_mgmt), Code::Success);
    assert_eq!(keyed.calls(), vec!["check Kid000000001 alice sshd"]);
    assert_eq!(core::setcred(&mut keyed.pam), Code::Success);
    // Revoked between authenticate and acct_mgmt.
    keyed.daemon.check = Err(DaemonError::Refused);
    assert_eq!(keyed.run(core::acct_mgmt), Code::PermDenied);
    keyed.daemon.check = Err(DaemonError::Unavailable("down".into()));
    assert_eq!(keyed.run(core::acct_mgmt), Code::AuthinfoUnavail);
}

#[test]
fn sessions_carry_the_key_across_sshd_fork_and_close_only_their_own() {
    let mut s = setup("sshd", "alice", b"");
    // authenticate ran in another process: only the environment is left.
    s.pam.env.insert(KEY_ID_ENV.into(), "Kid000000001".into());
    assert_eq!(s.run_session(core::open_session), Code::Success);
    assert_eq!(s.run_session(core::close_session), Code::Success);
    assert_eq!(
        s.calls(),
        vec![
            "open alice sshd 192.0.2.1 Kid000000001 auth=key",
            "close handle-1"
        ]
    );
    let mut other = setup("sshd", "alice", b"");
    assert_eq!(other.run_session(core::close_session), Code::Ignore);
    assert!(other.calls().is_empty());
    // Nothing to warn of: nothing shown.
    assert!(s.pam.shown.is_empty());
}

#[test]
fn a_login_with_a_key_close_to_its_expiry_is_told_so() {
    let mut s = setup("sshd", "alice", b"");
    s.pam.env.insert(KEY_ID_ENV.into(), "Kid000000001".into());
    s.daemon.open = Ok(OpenedSession {
        handle: "handle-1".into(),
        key_expires_in: 3 * 86_400,
    });
    assert_eq!(s.run_session(core::open_session), Code::Success);
    assert_eq!(
        s.pam.get_data(core::SESSION_DATA).as_deref(),
        Some("handle-1")
    );
    assert_eq!(s.pam.shown.len(), 1, "{:?}", s.pam.shown);
    let shown = &s.pam.shown[0];
    assert!(
        shown.contains("(Kid000000001) expires in 3 days, at 20"),
        "{shown}"
    );
    assert!(shown.contains("apikey rotate Kid000000001"), "{shown}");
}

/// Whatever the daemon answers, a login without a key hears of none.
#[test]
fn a_login_without_a_key_is_told_of_no_expiry() {
    let mut s = setup("sshd", "alice", b"");
    s.daemon.open = Ok(OpenedSession {
        handle: "handle-1".into(),
        key_expires_in: 3 * 86_400,
    });
    assert_eq!(s.run_session(core::open_session), Code::Success);
    assert!(s.pam.shown.is_empty(), "{:?}", s.pam.shown);
}

#[test]
fn the_expiry_warning_names_the_key_the_time_left_and_the_time() {
    let now = 1_765_000_000; // 2025-12-06T05:46:40Z
    assert_eq!(
        core::expiry_warning("Kid000000001", now, 2 * 3600),
        "apikey: the API key you logged in with (Kid000000001) expires in 2 hours, at \
         2025-12-06T07:46:40Z. Replace it before then, e.g. with: apikey rotate Kid000000001"
    );
    assert!(core::expiry_warning("k", now, 7 * 86_400).contains("expires in 7 days"));
}

#[test]
fn a_session_reports_how_its_login_was_authenticated() {
    let opened = |s: &mut Setup| {
        assert_eq!(s.run_session(core::open_session), Code::Success);
        s.calls().pop().unwrap()
    };
    // A password this module passed on to the modules below.
    let mut password = setup("login", "alice", b"hunter2");
    assert_eq!(password.run(core::authenticate), Code::Ignore);
    assert_eq!(
        opened(&mut password),
        "open alice login 192.0.2.1  auth=password"
    );
    // A key, even where sshd's list says only keyboard-interactive.
    let mut key = setup("sshd", "alice", key().as_str().as_bytes());
    key.pam.sshd = true;
    key.pam.env.insert(
        core::SSH_AUTH_INFO_ENV.into(),
        "keyboard-interactive/pam\n".into(),
    );
    assert_eq!(key.run(core::authenticate), Code::Success);
    assert_eq!(
        opened(&mut key),
        "open alice sshd 192.0.2.1 Kid000000001 auth=key"
    );
    // sshd's methods, its public key dropped; only inside sshd.
    let mut publickey = setup("sshd", "alice", b"");
    publickey.pam.env.insert(
        core::SSH_AUTH_INFO_ENV.into(),
        "publickey ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIB\n".into(),
    );
    assert_eq!(opened(&mut publickey), "open alice sshd 192.0.2.1  auth=");
    publickey.pam.sshd = true;
    assert_eq!(
        opened(&mut publickey),
        "open alice sshd 192.0.2.1  auth=publickey"
    );
    // Nothing seen: a session stack reached without the auth step (cron),
    // or a mark this module did not write.
    let mut cron = setup("cron", "alice", b"");
    assert_eq!(opened(&mut cron), "open alice cron 192.0.2.1  auth=");
    cron.pam
        .data
        .insert(core::AUTH_DATA.into(), "publickey".into());
    assert_eq!(opened(&mut cron), "open alice cron 192.0.2.1  auth=");
}

/// Found by fuzzing (pam_inputs): with a key as the user name, the
/// module refused before it cleared PAM_AUTHTOK, so a key-shaped password
/// an earlier module had set stayed for the modules below (S10).
#[test]
fn a_key_in_the_user_name_leaves_no_password_behind() {
    let mut s = setup("vsftpd", key().as_str(), key().as_str().as_bytes());
    s.daemon.verify = Err(DaemonError::Refused);
    assert_eq!(s.run(core::authenticate), Code::AuthErr);
    assert_eq!(s.pam.authtok, None, "a key stayed in PAM_AUTHTOK");
    assert!(s.pam.delay.is_some());
}

/// S15: whatever refused the key, the caller waits the same fail delay,
/// and nothing of the key is left for the modules below.
#[test]
fn every_refusal_path_takes_the_fail_delay() {
    let mapped = |s: &mut Setup| s.args.map_user = Some("apikey".into());
    let cases: Vec<(&str, Setup, Code)> = vec![
        (
            "daemon says no",
            {
                let mut s = setup("sshd", "alice", key().as_str().as_bytes());
                s.daemon.verify = Err(DaemonError::Refused);
                s
            },
            Code::AuthErr,
        ),
        (
            "daemon unavailable",
            {
                let mut s = setup("sshd", "alice", key().as_str().as_bytes());
                s.daemon.verify = Err(DaemonError::Unavailable("down".into()));
                s
            },
            Code::AuthinfoUnavail,
        ),
        (
            "user name is a key",
            setup("sshd", key().as_str(), b"hunter2"),
            Code::AuthErr,
        ),
        (
            "user name not UTF-8",
            {
                let mut s = setup("sshd", "alice", key().as_str().as_bytes());
                s.pam.user = b"al\xffice".to_vec();
                s
            },
            Code::AuthErr,
        ),
        (
            "module misconfigured",
            {
                let mut s = setup("sshd", "alice", key().as_str().as_bytes());
                s.args = Args::parse([&b"timeout=forever"[..]]);
                s
            },
            Code::AuthErr,
        ),
        (
            "mapping inside sshd",
            {
                let mut s = setup("sshd", "apikey", key().as_str().as_bytes());
                mapped(&mut s);
                s.pam.sshd = true;
                s
            },
            Code::AuthErr,
        ),
        (
            "owner cannot be set",
            {
                let mut s = setup("vsftpd", "apikey", key().as_str().as_bytes());
                mapped(&mut s);
                s.pam.set_user_fails = true;
                s
            },
            Code::AuthErr,
        ),
        (
            "never-key service",
            setup("su", "root", key().as_str().as_bytes()),
            Code::AuthErr,
        ),
    ];
    for (name, mut s, code) in cases {
        assert_eq!(s.run(core::authenticate), code, "{name}");
        assert_eq!(s.pam.delay, Some(core::FAIL_DELAY_MICROS), "{name}");
        assert_eq!(s.pam.authtok, None, "{name}");
        assert_eq!(s.pam.env.get(KEY_ID_ENV), None, "{name}: no key id");
        assert_eq!(s.pam.get_data(core::KEY_ID_DATA), None, "{name}");
        assert_eq!(core::setcred(&mut s.pam), Code::Ignore, "{name}");
    }
}

/// Under map_user a key whose owner libpam would not take as PAM_USER
/// must not log in as the mapping name.
#[test]
fn a_mapped_login_whose_owner_cannot_be_set_is_refused() {
    let mut s = setup("vsftpd", "apikey", key().as_str().as_bytes());
    s.args.map_user = Some("apikey".into());
    s.pam.set_user_fails = true;
    assert_eq!(s.run(core::authenticate), Code::AuthErr);
    assert_eq!(s.pam.user, b"apikey");
    assert!(s
        .pam
        .logs
        .borrow()
        .iter()
        .any(|l| l.contains("could not set the user")));
}

#[test]
fn a_session_the_daemon_did_not_register_is_an_error() {
    let mut s = setup("sshd", "alice", b"");
    s.daemon.open = Err(DaemonError::Unavailable("down".into()));
    assert_eq!(s.run_session(core::open_session), Code::SessionErr);
    assert_eq!(s.pam.get_data(core::SESSION_DATA), None);
    s.daemon.open = Err(DaemonError::Refused);
    assert_eq!(s.run_session(core::open_session), Code::SessionErr);
    // Nothing registered, nothing to close.
    assert_eq!(s.run_session(core::close_session), Code::Ignore);
    assert_eq!(s.connects(), 2);

    let mut opened = setup("sshd", "alice", b"");
    assert_eq!(opened.run_session(core::open_session), Code::Success);
    opened.daemon.close = Err(DaemonError::Unavailable("down".into()));
    assert_eq!(opened.run_session(core::close_session), Code::SessionErr);

    let mut not_utf8 = setup("sshd", "alice", b"");
    not_utf8.pam.user = b"al\xffice".to_vec();
    assert_eq!(not_utf8.run_session(core::open_session), Code::SessionErr);
    assert_eq!(not_utf8.connects(), 0);
}

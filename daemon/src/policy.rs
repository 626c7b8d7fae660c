//! Authorization and key-validity decisions as small pure functions: every
//! input (uids, groups, policy, time) is passed in, so each rule is tested
//! on its own and the bus layer only gathers facts.

use crate::store::{KeyKind, KeyRecord, Policy, SessionBinding};
use apikey_proto::hosts::{is_host_pattern, HOST_PATTERN_RULE};
use apikey_proto::login_auth;
use apikey_proto::services::{any_matches, is_never_key_service, is_valid_pattern, pattern_within};
use apikey_proto::{Expiry, KeysError};

/// Where a caller stands with respect to login sessions (S4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoginState {
    /// loginuid unset: a daemon, a cron job, a container shell.
    NotLoggedIn,
    /// Logged in as someone else: acting through su/sudo/runuser.
    Impersonating,
    LoggedIn,
}

pub fn login_state(uid: u32, loginuid: Option<u32>) -> LoginState {
    match loginuid {
        None => LoginState::NotLoggedIn,
        Some(l) if l == uid => LoginState::LoggedIn,
        Some(_) => LoginState::Impersonating,
    }
}

/// uid 0 and members of the administrator groups. Group rights count only
/// when the group is among the connection's own groups (S4).
pub fn is_admin(uid: u32, caller_gids: &[u32], admin_gids: &[u32]) -> bool {
    uid == 0 || caller_gids.iter().any(|g| admin_gids.contains(g))
}

/// What a caller may verify: root anything, members of verifier groups the
/// services their groups list (S3), others nothing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VerifierScope {
    Any,
    Services(Vec<String>),
    None,
}

pub fn verifier_scope(
    uid: u32,
    caller_gids: &[u32],
    groups: &[(u32, Vec<String>)],
) -> VerifierScope {
    if uid == 0 {
        return VerifierScope::Any;
    }
    let patterns: Vec<String> = groups
        .iter()
        .filter(|(gid, _)| caller_gids.contains(gid))
        .flat_map(|(_, p)| p.iter().cloned())
        .collect();
    if patterns.is_empty() {
        VerifierScope::None
    } else {
        VerifierScope::Services(patterns)
    }
}

/// May this verifier ask about `service`? An empty service (validity
/// only, no scope check) is for root alone.
pub fn may_verify_for(scope: &VerifierScope, service: &str) -> Result<(), KeysError> {
    match scope {
        VerifierScope::Any => Ok(()),
        VerifierScope::None => Err(KeysError::Denied(
            "only root and members of a verifier group may verify keys".into(),
        )),
        VerifierScope::Services(_) if service.is_empty() => Err(KeysError::Denied(
            "only root may verify a key without naming a service".into(),
        )),
        VerifierScope::Services(p) if any_matches(p, service) => Ok(()),
        VerifierScope::Services(_) => Err(KeysError::Denied(format!(
            "your verifier group may not verify keys for service '{service}'"
        ))),
    }
}

/// A long-lived key for oneself: logged in as oneself, and either an
/// administrator or allowed by the policy.
pub fn may_generate_own(login: LoginState, admin: bool, policy: &Policy) -> Result<(), KeysError> {
    check_login(login)?;
    if !admin && !policy.allow_user_keys {
        return Err(KeysError::PolicyForbids(
            "the site policy does not let users create API keys; ask an administrator".into(),
        ));
    }
    Ok(())
}

/// A key for another account (`--user`): administrators only, from a login
/// session, which may be a sudo inside one.
pub fn may_generate_for_other(login: LoginState, admin: bool) -> Result<(), KeysError> {
    if !admin {
        return Err(KeysError::Denied(
            "only administrators may create keys for another user".into(),
        ));
    }
    if login == LoginState::NotLoggedIn {
        return Err(not_logged_in());
    }
    Ok(())
}

fn check_login(login: LoginState) -> Result<(), KeysError> {
    match login {
        LoginState::LoggedIn => Ok(()),
        LoginState::NotLoggedIn => Err(not_logged_in()),
        LoginState::Impersonating => Err(KeysError::Impersonating(
            "you are acting as another user (su/sudo/runuser); log in as this user to create \
             a key, or as an administrator use --user"
                .into(),
        )),
    }
}

fn not_logged_in() -> KeysError {
    KeysError::NotLoggedIn(
        "API keys are only issued inside a login session, and this process has none (no \
         login uid): log in with your password (ssh, the console, Cockpit) and run it there; \
         shells from su -l, sudo -i, cron or docker exec are not login sessions"
            .into(),
    )
}

/// A login session the PAM module registered in the caller's audit
/// session, as S6 weighs it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RegisteredLogin<'a> {
    pub loginuid: Option<u32>,
    /// Opened with a key, by the module's word or the daemon's memory.
    pub key_opened: bool,
    /// How the module saw it authenticated (`login_auth`).
    pub auth: Option<&'a str>,
}

/// S6: keys (long-lived or session) are made only where the caller's
/// audit session holds positive evidence of a login that was not made
/// with a key: a session of the caller's login uid that pam_apikey
/// registered as opened by a password or by sshd's own methods. A session
/// opened with a key anywhere in it refuses outright; no registration at
/// all (OpenSession failed or stalled, cron, systemd --user, a stack
/// without the session hook) refuses too, rather than counting as clean.
pub fn may_make_keys_in(
    sessions: &[RegisteredLogin<'_>],
    loginuid: Option<u32>,
) -> Result<(), KeysError> {
    let key_opened =
        |s: &RegisteredLogin<'_>| s.key_opened || s.auth.is_some_and(login_auth::is_key_login);
    if sessions.iter().any(key_opened) {
        return Err(KeysError::Denied(
            "this login session was opened with an API key; keys cannot be used to make \
             more keys (log in with your password to create one)"
                .into(),
        ));
    }
    let evidence = sessions.iter().any(|s| {
        loginuid.is_some()
            && s.loginuid == loginuid
            && s.auth.is_some_and(login_auth::is_non_key_login)
    });
    if evidence {
        return Ok(());
    }
    Err(KeysError::NotLoggedIn(
        "apikey has no record of a password login for this session: keys are made only in a \
         login session that pam_apikey registered as opened with a password (or ssh public \
         key); cron jobs, systemd --user services and logins whose registration failed do \
         not count. Log in again with your password and run it there"
            .into(),
    ))
}

/// Accounts that may hold keys: regular users, and uid 0 or system
/// accounts only when the configuration names them (S8).
pub fn may_hold_keys(uid: u32, name: &str, uid_min: u32, allowed_system: &[String]) -> bool {
    (uid != 0 && uid >= uid_min) || allowed_system.iter().any(|a| a == name)
}

/// The expiry time of a new key. A caller may ask for a shorter expiry
/// than the policy, never a longer one.
pub fn new_key_expiry(
    now: i64,
    requested: Option<Expiry>,
    policy: Expiry,
) -> Result<Option<i64>, KeysError> {
    let chosen = match requested {
        Some(r) if r > policy => {
            return Err(KeysError::PolicyForbids(format!(
                "the site policy lets keys live at most {policy}; ask for {policy} or less"
            )))
        }
        Some(r) => r,
        None => policy,
    };
    Ok(chosen.seconds().map(|s| now + s))
}

/// The earlier of the key's own expiry and created + policy: tightening
/// the policy also caps existing keys.
pub fn effective_expiry(created: i64, own: Option<i64>, policy: Expiry) -> Option<i64> {
    let cap = policy.seconds().map(|s| created + s);
    match (own, cap) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// The scope recorded for a new key: every requested pattern must be
/// well-formed and inside the site's `key_services`.
pub fn key_scope(requested: &[String], site: &[String]) -> Result<Vec<String>, KeysError> {
    for p in requested {
        if !is_valid_pattern(p) {
            return Err(KeysError::InvalidArgument(format!(
                "'{}' is not a service name or a prefix ending in '*'",
                apikey_proto::services::printable(p, 64)
            )));
        }
        if !pattern_within(p, site) {
            return Err(KeysError::PolicyForbids(format!(
                "service '{p}' is outside the services this site allows keys for ({})",
                site.join(", ")
            )));
        }
    }
    let mut scope = requested.to_vec();
    scope.sort();
    scope.dedup();
    Ok(scope)
}

/// Why a stored key does not log someone in. Only the audit log sees it
/// (S15).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyRefusal {
    Revoked,
    Expired,
    SessionKey,
    ServiceNotAllowed,
    OutOfScope,
    WrongUser,
}

impl KeyRefusal {
    pub fn as_str(self) -> &'static str {
        match self {
            KeyRefusal::Revoked => "revoked",
            KeyRefusal::Expired => "expired",
            KeyRefusal::SessionKey => "session-key",
            KeyRefusal::ServiceNotAllowed => "service-not-allowed",
            KeyRefusal::OutOfScope => "out-of-scope",
            KeyRefusal::WrongUser => "wrong-user",
        }
    }
}

/// The checks on the key itself (the account is checked separately).
/// `user` empty accepts any owner; `service` empty skips the scope checks.
pub fn check_key(
    key: &KeyRecord,
    now: i64,
    policy: &Policy,
    site_services: &[String],
    user: &str,
    service: &str,
) -> Result<(), KeyRefusal> {
    if key.revoked.is_some() {
        return Err(KeyRefusal::Revoked);
    }
    if key.kind == KeyKind::Session && key.binding.is_none() {
        // A session key with no session cannot end with one: never valid.
        return Err(KeyRefusal::SessionKey);
    }
    if effective_expiry(key.created, key.expires, policy.expiry).is_some_and(|e| now >= e) {
        return Err(KeyRefusal::Expired);
    }
    if !user.is_empty() && user != key.owner_name {
        return Err(KeyRefusal::WrongUser);
    }
    if !service.is_empty() {
        if is_never_key_service(service) || !any_matches(site_services, service) {
            return Err(KeyRefusal::ServiceNotAllowed);
        }
        if !key.services.is_empty() && !any_matches(&key.services, service) {
            return Err(KeyRefusal::OutOfScope);
        }
    }
    Ok(())
}

/// Why a session key has ended (S5).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionEnd {
    /// Made in an earlier boot: audit session ids have been reused since.
    Reboot,
    /// The registered login session it was bound to was closed.
    Closed,
    /// Unused for longer than the idle timeout.
    Idle,
    /// No process of its audit session is left.
    Gone,
}

impl SessionEnd {
    pub fn as_str(self) -> &'static str {
        match self {
            SessionEnd::Reboot => "session-key-reboot",
            SessionEnd::Closed => "session-closed",
            SessionEnd::Idle => "session-key-idle",
            SessionEnd::Gone => "session-gone",
        }
    }
}

/// What is known about a session key's session right now.
#[derive(Debug, Clone, Copy)]
pub struct SessionFacts<'a> {
    pub boot_id: &'a str,
    pub now: i64,
    /// Creation or last successful use, whichever is later.
    pub last_activity: i64,
    pub idle_timeout_secs: u64,
    /// The bound registered session has been closed.
    pub handle_closed: bool,
    /// Some process still belongs to the audit session.
    pub session_alive: bool,
}

/// Whether a session key still lives. Its lifetime cap is its `expires`,
/// checked with every key's expiry.
pub fn session_key_state(
    binding: &SessionBinding,
    facts: &SessionFacts<'_>,
) -> Result<(), SessionEnd> {
    if binding.boot_id != facts.boot_id {
        return Err(SessionEnd::Reboot);
    }
    if facts.handle_closed {
        return Err(SessionEnd::Closed);
    }
    if facts.now - facts.last_activity >= facts.idle_timeout_secs as i64 {
        return Err(SessionEnd::Idle);
    }
    if !facts.session_alive {
        return Err(SessionEnd::Gone);
    }
    Ok(())
}

/// Who may see which keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListTarget {
    Own,
    User(u32),
    All,
}

pub fn may_list(
    caller_uid: u32,
    admin: bool,
    target: ListTarget,
    policy: &Policy,
) -> Result<(), KeysError> {
    let own = match target {
        ListTarget::Own => true,
        ListTarget::User(uid) => uid == caller_uid,
        ListTarget::All => false,
    };
    if admin {
        return Ok(());
    }
    if !own {
        return Err(KeysError::Denied(
            "only administrators may list other users' keys".into(),
        ));
    }
    if !policy.users_see_own {
        return Err(KeysError::PolicyForbids(
            "the site policy does not show users their keys; you can still revoke them \
             all with 'apikey revoke --all'"
                .into(),
        ));
    }
    Ok(())
}

/// Owners may always revoke their own keys, whatever the policy says
/// about seeing them; administrators may revoke any.
pub fn may_revoke(caller_uid: u32, admin: bool, owner_uid: u32) -> bool {
    admin || caller_uid == owner_uid
}

pub fn may_change_settings(admin: bool) -> Result<(), KeysError> {
    if admin {
        Ok(())
    } else {
        Err(KeysError::Denied(
            "only administrators may change the site policy".into(),
        ))
    }
}

/// Most host patterns one key may carry.
pub const MAX_KEY_HOSTS: usize = 64;

/// A site that requires networks on every key (`require_from`) refuses a
/// new long-lived key without them.
pub fn may_make_key_from(policy: &Policy, sources: &[String]) -> Result<(), KeysError> {
    match policy.require_from && sources.is_empty() {
        true => Err(KeysError::PolicyForbids(
            "the site requires every new key to name the networks it may be used from \
             (--from)"
                .into(),
        )),
        false => Ok(()),
    }
}

/// The networks of a new key (`--from`), in the form they are stored.
pub fn key_sources(networks: &[String]) -> Result<Vec<String>, KeysError> {
    if networks.is_empty() {
        return Ok(vec![]);
    }
    apikey_proto::sources::canonical_list(networks).map_err(KeysError::InvalidArgument)
}

/// The hosts a new key asks to be limited to (`--hosts`), checked: only
/// in fleet mode (a single host's keys work there alone), each a host name
/// or a glob of one.
pub fn key_hosts(patterns: &[String], fleet: bool) -> Result<Vec<String>, KeysError> {
    if patterns.is_empty() {
        return Ok(vec![]);
    }
    if !fleet {
        return Err(KeysError::InvalidArgument(
            "--hosts needs fleet mode: this host's own keys work on this host only".into(),
        ));
    }
    if patterns.len() > MAX_KEY_HOSTS {
        return Err(KeysError::InvalidArgument(format!(
            "at most {MAX_KEY_HOSTS} host patterns per key"
        )));
    }
    if let Some(p) = patterns.iter().find(|p| !is_host_pattern(p)) {
        return Err(KeysError::InvalidArgument(format!(
            "'{}' {HOST_PATTERN_RULE}",
            apikey_proto::services::printable(p, 40)
        )));
    }
    let mut kept: Vec<String> = vec![];
    for p in patterns {
        if !kept.contains(p) {
            kept.push(p.clone());
        }
    }
    Ok(kept)
}

/// Whether a key limited to `patterns` (host names or globs with `*`
/// and `?`; none: every host) works on `host`. Host names compare without
/// regard to case, as DNS names do.
pub fn host_in_scope(patterns: &[String], host: &str) -> bool {
    patterns.is_empty()
        || patterns
            .iter()
            .any(|p| glob_matches(&p.to_ascii_lowercase(), &host.to_ascii_lowercase()))
}

fn glob_matches(pattern: &str, name: &str) -> bool {
    let (p, n) = (pattern.as_bytes(), name.as_bytes());
    // The classic one-star backtracking walk: linear in practice.
    let (mut pi, mut ni) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ni < n.len() {
        match p.get(pi) {
            Some(b'*') => {
                star = Some((pi, ni));
                pi += 1;
            }
            Some(&c) if c == b'?' || c == n[ni] => {
                pi += 1;
                ni += 1;
            }
            _ => match star {
                Some((sp, sn)) => {
                    pi = sp + 1;
                    ni = sn + 1;
                    star = Some((sp, sn + 1));
                }
                None => return false,
            },
        }
    }
    p[pi..].iter().all(|&c| c == b'*')
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Revocation;

    fn policy(allow: bool, expiry: Expiry) -> Policy {
        Policy {
            allow_user_keys: allow,
            expiry,
            ..Policy::default()
        }
    }

    fn key() -> KeyRecord {
        KeyRecord {
            id: "k00000000001".into(),
            hash: [0; 32],
            kind: KeyKind::LongLived,
            owner_uid: 1000,
            owner_name: "alice".into(),
            created_by_uid: 1000,
            created_by_loginuid: Some(1000),
            name: String::new(),
            services: vec![],
            hosts: vec![],
            sources: vec![],
            made_on: String::new(),
            created: 1_000_000,
            expires: None,
            last_used: None,
            revoked: None,
            binding: None,
        }
    }

    fn v(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn login_states() {
        assert_eq!(login_state(1000, None), LoginState::NotLoggedIn);
        assert_eq!(login_state(1000, Some(1000)), LoginState::LoggedIn);
        assert_eq!(login_state(1001, Some(1000)), LoginState::Impersonating);
        assert_eq!(login_state(0, Some(1000)), LoginState::Impersonating);
    }

    #[test]
    fn admins_are_root_and_members_of_admin_groups() {
        assert!(is_admin(0, &[], &[]));
        assert!(is_admin(1000, &[100, 900], &[900]));
        assert!(!is_admin(1000, &[100], &[900]));
    }

    #[test]
    fn generating_needs_a_login_and_the_policy() {
        let off = policy(false, Expiry::Never);
        let on = policy(true, Expiry::Never);
        assert!(may_generate_own(LoginState::LoggedIn, false, &on).is_ok());
        assert!(matches!(
            may_generate_own(LoginState::LoggedIn, false, &off),
            Err(KeysError::PolicyForbids(_))
        ));
        assert!(may_generate_own(LoginState::LoggedIn, true, &off).is_ok());
        assert!(matches!(
            may_generate_own(LoginState::Impersonating, true, &on),
            Err(KeysError::Impersonating(_))
        ));
        assert!(matches!(
            may_generate_own(LoginState::NotLoggedIn, true, &on),
            Err(KeysError::NotLoggedIn(_))
        ));
    }

    fn login(loginuid: u32, key_opened: bool, auth: Option<&str>) -> RegisteredLogin<'_> {
        RegisteredLogin {
            loginuid: Some(loginuid),
            key_opened,
            auth,
        }
    }

    #[test]
    fn keys_need_positive_evidence_of_a_non_key_login() {
        let password = login(1000, false, Some("password"));
        let publickey = login(1000, false, Some("publickey"));
        assert!(may_make_keys_in(&[password], Some(1000)).is_ok());
        assert!(may_make_keys_in(&[publickey], Some(1000)).is_ok());
        // A su/sudo session registered later in the same audit session
        // adds nothing and takes nothing away.
        let su = login(1000, false, None);
        assert!(may_make_keys_in(&[password, su], Some(1000)).is_ok());
        let not_logged_in = |r: Result<(), KeysError>| matches!(r, Err(KeysError::NotLoggedIn(_)));
        // No registration at all: a failed OpenSession, cron, systemd --user.
        assert!(not_logged_in(may_make_keys_in(&[], Some(1000))));
        assert!(not_logged_in(may_make_keys_in(&[su], Some(1000))));
        // Registered before the method was recorded, or with nothing seen.
        assert!(not_logged_in(may_make_keys_in(
            &[login(1000, false, Some(""))],
            Some(1000)
        )));
        // Another login uid's session is not the caller's evidence.
        assert!(not_logged_in(may_make_keys_in(&[password], Some(1001))));
        assert!(not_logged_in(may_make_keys_in(&[password], None)));
        let no_loginuid = RegisteredLogin {
            loginuid: None,
            ..password
        };
        assert!(not_logged_in(may_make_keys_in(&[no_loginuid], None)));
    }

    #[test]
    fn a_key_anywhere_in_the_session_refuses_whatever_else_it_holds() {
        let password = login(1000, false, Some("password"));
        for key in [
            login(1000, true, Some("key")),
            login(1000, true, Some("password")),
            login(1000, false, Some("key")),
            login(1001, true, None),
        ] {
            let r = may_make_keys_in(&[password, key], Some(1000));
            assert!(
                matches!(&r, Err(KeysError::Denied(m)) if m.contains("opened with an API key")),
                "{key:?}: {r:?}"
            );
        }
    }

    #[test]
    fn keys_for_others_are_for_admins_in_a_login_session() {
        assert!(may_generate_for_other(LoginState::Impersonating, true).is_ok());
        assert!(may_generate_for_other(LoginState::LoggedIn, true).is_ok());
        assert!(matches!(
            may_generate_for_other(LoginState::LoggedIn, false),
            Err(KeysError::Denied(_))
        ));
        assert!(matches!(
            may_generate_for_other(LoginState::NotLoggedIn, true),
            Err(KeysError::NotLoggedIn(_))
        ));
    }

    #[test]
    fn system_accounts_hold_keys_only_when_named() {
        assert!(may_hold_keys(1000, "alice", 1000, &[]));
        assert!(!may_hold_keys(0, "root", 1000, &[]));
        assert!(!may_hold_keys(999, "backup", 1000, &[]));
        assert!(may_hold_keys(999, "backup", 1000, &v(&["backup"])));
        assert!(may_hold_keys(0, "root", 1000, &v(&["root"])));
    }

    #[test]
    fn expiry_never_longer_than_policy() {
        let now = 1000;
        assert_eq!(new_key_expiry(now, None, Expiry::Never).unwrap(), None);
        assert_eq!(
            new_key_expiry(now, None, Expiry::Days(7)).unwrap(),
            Some(now + 7 * 86400)
        );
        assert_eq!(
            new_key_expiry(now, Some(Expiry::Days(7)), Expiry::Days(30)).unwrap(),
            Some(now + 7 * 86400)
        );
        assert!(new_key_expiry(now, Some(Expiry::Never), Expiry::Days(30)).is_err());
        assert!(new_key_expiry(now, Some(Expiry::Days(90)), Expiry::Days(30)).is_err());
        // Exactly the site's maximum is allowed; a day more is not.
        assert_eq!(
            new_key_expiry(now, Some(Expiry::Days(30)), Expiry::Days(30)).unwrap(),
            Some(now + 30 * 86400)
        );
        assert_eq!(
            new_key_expiry(now, Some(Expiry::Never), Expiry::Never).unwrap(),
            None
        );
        let e = new_key_expiry(now, Some(Expiry::Days(31)), Expiry::Days(30)).unwrap_err();
        assert!(matches!(e, KeysError::PolicyForbids(_)), "{e:?}");
    }

    #[test]
    fn tightened_policy_caps_old_keys() {
        assert_eq!(effective_expiry(100, None, Expiry::Never), None);
        assert_eq!(effective_expiry(100, Some(500), Expiry::Never), Some(500));
        assert_eq!(
            effective_expiry(100, None, Expiry::Days(7)),
            Some(100 + 604800)
        );
        assert_eq!(effective_expiry(100, Some(500), Expiry::Days(7)), Some(500));
    }

    #[test]
    fn key_checks() {
        let p = policy(true, Expiry::Never);
        let site = v(&["sshd*", "nginx*"]);
        let k = key();
        assert_eq!(check_key(&k, 2_000_000, &p, &site, "alice", "sshd"), Ok(()));
        assert_eq!(check_key(&k, 2_000_000, &p, &site, "", ""), Ok(()));
        assert_eq!(
            check_key(&k, 2_000_000, &p, &site, "bob", "sshd"),
            Err(KeyRefusal::WrongUser)
        );
        assert_eq!(
            check_key(&k, 2_000_000, &p, &site, "alice", "vsftpd"),
            Err(KeyRefusal::ServiceNotAllowed)
        );
        let site_su = v(&["s*"]);
        assert_eq!(
            check_key(&k, 2_000_000, &p, &site_su, "alice", "su"),
            Err(KeyRefusal::ServiceNotAllowed)
        );
        let mut scoped = key();
        scoped.services = v(&["nginx*"]);
        assert_eq!(
            check_key(&scoped, 2_000_000, &p, &site, "alice", "sshd"),
            Err(KeyRefusal::OutOfScope)
        );
        let mut expiring = key();
        expiring.expires = Some(1_500_000);
        assert_eq!(
            check_key(&expiring, 1_500_000, &p, &site, "alice", "sshd"),
            Err(KeyRefusal::Expired)
        );
        let capped = policy(true, Expiry::Days(7));
        assert_eq!(
            check_key(&k, 1_000_000 + 7 * 86400, &capped, &site, "alice", "sshd"),
            Err(KeyRefusal::Expired)
        );
        let mut revoked = key();
        revoked.revoked = Some(Revocation {
            at: 1,
            by_uid: 0,
            reason: String::new(),
        });
        assert_eq!(
            check_key(&revoked, 1_000_001, &p, &site, "alice", "sshd"),
            Err(KeyRefusal::Revoked)
        );
    }

    #[test]
    fn session_keys_end_in_every_documented_way() {
        let binding = SessionBinding {
            boot_id: "boot-a".into(),
            audit_session: 7,
            loginuid: 1000,
            handle: Some("h".into()),
        };
        let live = SessionFacts {
            boot_id: "boot-a",
            now: 1000,
            last_activity: 900,
            idle_timeout_secs: 1800,
            handle_closed: false,
            session_alive: true,
        };
        assert_eq!(session_key_state(&binding, &live), Ok(()));
        let ended = |f: SessionFacts<'_>| session_key_state(&binding, &f).unwrap_err();
        assert_eq!(
            ended(SessionFacts {
                boot_id: "boot-b",
                ..live
            }),
            SessionEnd::Reboot
        );
        assert_eq!(
            ended(SessionFacts {
                handle_closed: true,
                ..live
            }),
            SessionEnd::Closed
        );
        assert_eq!(
            ended(SessionFacts {
                now: 900 + 1800,
                ..live
            }),
            SessionEnd::Idle
        );
        assert_eq!(
            session_key_state(
                &binding,
                &SessionFacts {
                    now: 900 + 1799,
                    ..live
                }
            ),
            Ok(())
        );
        assert_eq!(
            ended(SessionFacts {
                session_alive: false,
                ..live
            }),
            SessionEnd::Gone
        );
        let mut unbound = key();
        unbound.kind = KeyKind::Session;
        assert_eq!(
            check_key(&unbound, 1_000_001, &Policy::default(), &[], "", ""),
            Err(KeyRefusal::SessionKey)
        );
    }

    #[test]
    fn scope_narrowing() {
        let site = v(&["sshd*", "nginx*"]);
        assert_eq!(
            key_scope(&v(&["nginx", "nginx"]), &site).unwrap(),
            v(&["nginx"])
        );
        assert!(matches!(
            key_scope(&v(&["vsftpd"]), &site),
            Err(KeysError::PolicyForbids(_))
        ));
        assert!(matches!(
            key_scope(&v(&["bad name"]), &site),
            Err(KeysError::InvalidArgument(_))
        ));
    }

    /// The reasons the audit log gives; operators search for them.
    #[test]
    fn refusal_reasons_are_the_documented_words() {
        let words: Vec<&str> = [
            KeyRefusal::Revoked,
            KeyRefusal::Expired,
            KeyRefusal::SessionKey,
            KeyRefusal::ServiceNotAllowed,
            KeyRefusal::OutOfScope,
            KeyRefusal::WrongUser,
        ]
        .into_iter()
        .map(KeyRefusal::as_str)
        .collect();
        assert_eq!(
            words,
            [
                "revoked",
                "expired",
                "session-key",
                "service-not-allowed",
                "out-of-scope",
                "wrong-user"
            ]
        );
    }

    #[test]
    fn verifiers_are_bounded() {
        let groups = vec![(50, v(&["nginx*"]))];
        assert_eq!(verifier_scope(0, &[], &groups), VerifierScope::Any);
        assert_eq!(verifier_scope(33, &[7], &groups), VerifierScope::None);
        let www = verifier_scope(33, &[50], &groups);
        assert!(may_verify_for(&www, "nginx").is_ok());
        assert!(matches!(
            may_verify_for(&www, "sshd"),
            Err(KeysError::Denied(_))
        ));
        assert!(matches!(
            may_verify_for(&www, ""),
            Err(KeysError::Denied(_))
        ));
        assert!(may_verify_for(&VerifierScope::Any, "").is_ok());
        assert!(may_verify_for(&VerifierScope::None, "nginx").is_err());
        // Even a group allowed every service must name one.
        let everything = VerifierScope::Services(v(&["*"]));
        assert!(may_verify_for(&everything, "vsftpd").is_ok());
        assert!(matches!(
            may_verify_for(&everything, ""),
            Err(KeysError::Denied(m)) if m == "only root may verify a key without naming a service"
        ));
    }

    #[test]
    fn listing_and_revoking() {
        let see = Policy::default();
        let hide = Policy {
            users_see_own: false,
            ..Policy::default()
        };
        assert!(may_list(1000, false, ListTarget::Own, &see).is_ok());
        assert!(may_list(1000, false, ListTarget::User(1000), &see).is_ok());
        assert!(matches!(
            may_list(1000, false, ListTarget::User(1001), &see),
            Err(KeysError::Denied(_))
        ));
        assert!(matches!(
            may_list(1000, false, ListTarget::All, &see),
            Err(KeysError::Denied(_))
        ));
        assert!(matches!(
            may_list(1000, false, ListTarget::Own, &hide),
            Err(KeysError::PolicyForbids(_))
        ));
        assert!(may_list(1000, true, ListTarget::All, &hide).is_ok());
        assert!(may_revoke(1000, false, 1000));
        assert!(!may_revoke(1000, false, 1001));
        assert!(may_revoke(1000, true, 1001));
        assert!(may_change_settings(false).is_err());
    }

    #[test]
    fn host_patterns_are_for_fleets_and_must_be_host_names() {
        assert_eq!(key_hosts(&[], false).unwrap(), Vec::<String>::new());
        assert!(matches!(key_hosts(&v(&["web-1"]), false),
            Err(KeysError::InvalidArgument(m)) if m.contains("fleet mode")));
        assert_eq!(
            key_hosts(&v(&["web-*", "db-1", "web-*", "h?.example.org"]), true).unwrap(),
            v(&["web-*", "db-1", "h?.example.org"])
        );
        for bad in ["", "web 1", "web/1", "we\nb", "é"] {
            assert!(
                matches!(
                    key_hosts(&v(&[bad]), true),
                    Err(KeysError::InvalidArgument(_))
                ),
                "{bad:?}"
            );
        }
        let many: Vec<String> = (0..=MAX_KEY_HOSTS).map(|i| format!("h{i}")).collect();
        assert!(key_hosts(&many[..MAX_KEY_HOSTS], true).is_ok());
        assert!(key_hosts(&many, true).is_err());
    }

    #[test]
    fn hosts_are_matched_by_name_or_glob() {
        let scope = |p: &[&str]| p.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert!(host_in_scope(&[], "anything"));
        let s = scope(&["web-*", "db-1"]);
        for yes in ["web-1", "web-", "WEB-12", "db-1", "DB-1"] {
            assert!(host_in_scope(&s, yes), "{yes}");
        }
        for no in ["db-10", "db-", "xweb-1", "web", ""] {
            assert!(!host_in_scope(&s, no), "{no}");
        }
        let s = scope(&["*.example.org", "h?st", "a*b*c"]);
        assert!(host_in_scope(&s, "x.example.org"));
        assert!(!host_in_scope(&s, "example.org"));
        assert!(host_in_scope(&s, "host"));
        assert!(!host_in_scope(&s, "hoost"));
        assert!(host_in_scope(&s, "abbbc"));
        assert!(host_in_scope(&s, "abxbc"));
        assert!(!host_in_scope(&s, "abxbd"));
    }
}

//! The module's decisions, as plain functions over the `Pam` and `Daemon`
//! traits; the `extern "C"` layer only adapts types.

use crate::args::{Args, DEFAULT_MAP_NAME};
use crate::daemon::{Daemon, DaemonError};
use crate::pam::{Code, Level, Pam};
use apikey_proto::login_auth;
use apikey_proto::services::{is_never_key_service, printable};
use apikey_proto::token::{is_key_shaped, Token};

/// pam_set_data key and PAM environment variable carrying the id (not the
/// secret) of the key that authenticated this login. The environment
/// survives sshd's keyboard-interactive child, where pam_set_data does not.
pub const KEY_ID_DATA: &str = "pam_apikey_key_id";
pub const KEY_ID_ENV: &str = "PAM_APIKEY_KEY_ID";
/// pam_set_data key holding the handle OpenSession returned.
pub const SESSION_DATA: &str = "pam_apikey_session";
/// pam_set_data key marking a login whose password this module saw was
/// not a key and left to the modules below (S6's evidence).
pub const AUTH_DATA: &str = "pam_apikey_auth";
/// What sshd puts in the PAM environment before the session and account
/// steps: the methods the login completed, one per line.
pub const SSH_AUTH_INFO_ENV: &str = "SSH_AUTH_INFO_0";
/// Failure delay, as pam_unix uses: every refusal costs the caller the
/// same time (S15).
pub const FAIL_DELAY_MICROS: u32 = 2_000_000;

pub fn authenticate(pam: &mut dyn Pam, args: &Args, daemon: &mut dyn Daemon) -> Code {
    let service = pam.service().unwrap_or_default();
    if !is_never_key_service(&service) && report_leaked_user_name(pam, &service, daemon) {
        // Whatever an earlier module left as the password (a key, likely,
        // typed in the right field too) goes no further either (S10).
        pam.clear_authtok();
        pam.fail_delay(FAIL_DELAY_MICROS);
        return Code::AuthErr;
    }
    let Some(password) = pam.authtok() else {
        return Code::AuthErr;
    };
    if !is_key_shaped(&password) {
        // Leave it as PAM_AUTHTOK for the password modules below; if they
        // let the login in, its session was opened by a password.
        pam.set_data(AUTH_DATA, login_auth::PASSWORD.into());
        return Code::Ignore;
    }
    // From here on the password is a key: it must stop here (S10).
    pam.clear_authtok();
    let result = authenticate_key(pam, args, &service, &password, daemon);
    refuse_unless_ok(pam, result)
}

/// A key typed into the user-name field is now in other logs: have the
/// daemon revoke it (S11), and refuse the login. True when it was a key.
fn report_leaked_user_name(pam: &mut dyn Pam, service: &str, daemon: &mut dyn Daemon) -> bool {
    let Some(user) = pam.user() else {
        return false;
    };
    if Token::parse(&user).is_err() {
        return false;
    }
    let user = String::from_utf8_lossy(&user).into_owned();
    let rhost = pam.rhost().unwrap_or_default();
    // The daemon recognises the user name as a key before looking at the
    // (empty) token, revokes it and refuses.
    let reported = daemon.verify("", &user, service, &rhost);
    pam.log(
        Level::Warning,
        match reported {
            Err(DaemonError::Refused) => "the user name is an API key; it was reported as leaked",
            _ => "the user name is an API key; it could not be reported",
        },
    );
    true
}

/// The one path every refusal takes (S15): the same code and delay.
fn refuse_unless_ok(pam: &mut dyn Pam, result: Result<(), Refusal>) -> Code {
    match result {
        Ok(()) => Code::Success,
        Err(Refusal::Unavailable(why)) => {
            pam.log(Level::Err, &format!("cannot verify the key: {why}"));
            pam.fail_delay(FAIL_DELAY_MICROS);
            Code::AuthinfoUnavail
        }
        Err(Refusal::No(why)) => {
            pam.log(Level::Warning, &format!("key refused: {why}"));
            pam.fail_delay(FAIL_DELAY_MICROS);
            Code::AuthErr
        }
    }
}

enum Refusal {
    No(String),
    Unavailable(String),
}

fn authenticate_key(
    pam: &mut dyn Pam,
    args: &Args,
    service: &str,
    password: &[u8],
    daemon: &mut dyn Daemon,
) -> Result<(), Refusal> {
    if is_never_key_service(service) {
        // S2: never offered to the daemon, never passed on.
        return Err(Refusal::No(format!("service {service} never accepts keys")));
    }
    if let Some(problem) = args.errors.first() {
        return Err(Refusal::No(format!("module configuration: {problem}")));
    }
    let token = Token::parse(password).map_err(|e| Refusal::No(e.to_string()))?;
    let user = pam
        .user()
        .ok_or_else(|| Refusal::No("no user name".into()))?;
    let user = String::from_utf8(user).map_err(|_| Refusal::No("user name is not UTF-8".into()))?;
    let mapped = args.map_user.as_deref() == Some(user.as_str());
    if mapped {
        check_mapping(pam, &user).map_err(Refusal::No)?;
    }
    let rhost = pam.rhost().unwrap_or_default();
    // With mapping the daemon accepts any owner and tells us whose it is.
    let claimed = if mapped { "" } else { user.as_str() };
    let (owner, key_id) = match daemon.verify(token.as_str(), claimed, service, &rhost) {
        Ok(found) => found,
        Err(DaemonError::Refused) => {
            let why = if Token::parse(user.as_bytes()).is_ok() {
                "the user name is itself a key; the daemon revoked it".to_string()
            } else {
                format!("for user {}", printable(&user, 64))
            };
            return Err(Refusal::No(why));
        }
        Err(DaemonError::Unavailable(m)) => return Err(Refusal::Unavailable(m)),
    };
    if mapped && !pam.set_user(&owner) {
        return Err(Refusal::No(
            "could not set the user to the key's owner".into(),
        ));
    }
    pam.set_data(KEY_ID_DATA, key_id.clone());
    pam.putenv(KEY_ID_ENV, &key_id);
    pam.log(
        Level::Info,
        &format!("key {key_id} accepted for {}", printable(&owner, 64)),
    );
    Ok(())
}

/// S9: mapping would lie inside sshd (it ignores a changed PAM_USER and
/// logs the client in under the name it sent) and where an account of
/// that name exists (the login would run as that account).
fn check_mapping(pam: &dyn Pam, name: &str) -> Result<(), String> {
    if pam.host_is_sshd() {
        return Err(format!("map_user is refused inside sshd (user {name})"));
    }
    if pam.account_exists(name) {
        return Err(format!(
            "map_user is refused: an account named {name} exists"
        ));
    }
    Ok(())
}

/// The key id this module authenticated with, from pam_set_data or, across
/// sshd's fork, from the PAM environment.
fn authenticated_key(pam: &dyn Pam) -> Option<String> {
    pam.get_data(KEY_ID_DATA)
        .or_else(|| pam.getenv(KEY_ID_ENV))
        .filter(|id| apikey_proto::token::is_key_id(id))
}

/// Denies a user name that is still the mapping name: nothing should log
/// in as "apikey" unless such an account really exists (S9). After a key
/// login, asks the daemon whether that key is still good, so a key revoked
/// between authentication and this step does not get in.
pub fn acct_mgmt(pam: &mut dyn Pam, args: &Args, daemon: &mut dyn Daemon) -> Code {
    let map_name = args.map_user.as_deref().unwrap_or(DEFAULT_MAP_NAME);
    let user = pam.user().unwrap_or_default();
    if user == map_name.as_bytes() && !pam.account_exists(map_name) {
        pam.log(
            Level::Warning,
            &format!("denied: the user name is still the mapping name {map_name}"),
        );
        return Code::PermDenied;
    }
    let Some(key_id) = authenticated_key(pam) else {
        return Code::Ignore;
    };
    let user = String::from_utf8_lossy(&user).into_owned();
    let service = pam.service().unwrap_or_default();
    let rhost = pam.rhost().unwrap_or_default();
    match daemon.check_key(&key_id, &user, &service, &rhost) {
        Ok(()) => Code::Success,
        Err(DaemonError::Refused) => {
            pam.log(
                Level::Warning,
                &format!("denied: key {key_id} is no longer accepted"),
            );
            Code::PermDenied
        }
        Err(DaemonError::Unavailable(why)) => {
            pam.log(Level::Err, &format!("cannot check key {key_id}: {why}"));
            Code::AuthinfoUnavail
        }
    }
}

/// Registers the login session with the daemon (every service, S2
/// notwithstanding): who, from where, and with which key if any.
pub fn open_session(pam: &mut dyn Pam, daemon: &mut dyn Daemon) -> Code {
    let user = match pam.user().map(String::from_utf8) {
        Some(Ok(u)) => u,
        _ => return Code::SessionErr,
    };
    let service = pam.service().unwrap_or_default();
    let rhost = pam.rhost().unwrap_or_default();
    let tty = pam.tty().unwrap_or_default();
    let key_id = authenticated_key(pam).unwrap_or_default();
    let auth = session_auth(pam, &key_id);
    let result = daemon.open_session(&user, &service, &rhost, &tty, &key_id, &auth);
    match result {
        Ok(opened) => {
            pam.set_data(SESSION_DATA, opened.handle);
            // Only a login this module let in with a key is told of one.
            if opened.key_expires_in > 0 && !key_id.is_empty() {
                let now = apikey_proto::timefmt::now();
                pam.info(&expiry_warning(&key_id, now, opened.key_expires_in));
            }
            Code::Success
        }
        Err(e) => {
            pam.log(
                Level::Err,
                &format!("could not register the session: {e:?}"),
            );
            Code::SessionErr
        }
    }
}

/// What a user who logged in with key `key_id`, `left` seconds before it
/// expires, is told (the daemon decided it is close enough to say so).
pub fn expiry_warning(key_id: &str, now: i64, left: u32) -> String {
    let expires = now.saturating_add(i64::from(left));
    format!(
        "apikey: the API key you logged in with ({key_id}) expires {}, at {}. \
         Replace it before then, e.g. with: apikey rotate {key_id}",
        apikey_proto::timefmt::relative(now, expires),
        apikey_proto::timefmt::rfc3339(expires),
    )
}

/// How this login was authenticated, for the daemon's S6 record: a key
/// if this module took one; else, inside sshd, the methods sshd says it
/// completed (publickey logins never reach the auth stack); else a
/// password if this module passed one on; else nothing seen (a session
/// stack reached without this module's auth step, as cron's).
fn session_auth(pam: &dyn Pam, key_id: &str) -> String {
    if !key_id.is_empty() {
        return login_auth::KEY.into();
    }
    if pam.host_is_sshd() {
        let methods = pam
            .getenv(SSH_AUTH_INFO_ENV)
            .map(|info| login_auth::ssh_methods(&info))
            .unwrap_or_default();
        if !methods.is_empty() {
            return methods;
        }
    }
    match pam.get_data(AUTH_DATA) {
        Some(a) if a == login_auth::PASSWORD => a,
        _ => String::new(),
    }
}

/// Ends the session this PAM handle opened, and only that one.
pub fn close_session(pam: &mut dyn Pam, daemon: &mut dyn Daemon) -> Code {
    let Some(handle) = pam.get_data(SESSION_DATA) else {
        return Code::Ignore;
    };
    match daemon.close_session(&handle) {
        Ok(()) => Code::Success,
        Err(e) => {
            pam.log(Level::Err, &format!("could not end the session: {e:?}"));
            Code::SessionErr
        }
    }
}

/// Succeeds quietly when this module authenticated the user.
pub fn setcred(pam: &mut dyn Pam) -> Code {
    if authenticated_key(pam).is_some() {
        Code::Success
    } else {
        Code::Ignore
    }
}

//! One module per subcommand, and what they share: printing, the JSON
//! form of a key, and handing out a new key.

mod backup;
mod generate;
mod list;
mod revoke;
mod rotate;
mod scan;
mod session;
mod settings;
mod show;
mod status;
mod verify;

use crate::args::Cmd;
use crate::exit::CliError;
use crate::text::{json_safe, safe, FIELD};
use crate::timefmt::{rfc3339, rfc3339_opt};
use apikey_proto::{KeyExtra, KeyInfo, Keys1Proxy, Token};
use serde::Serialize;
use std::io::Write;
use zeroize::Zeroizing;

pub async fn dispatch(cmd: Cmd) -> Result<(), CliError> {
    match cmd {
        Cmd::Generate(a) => generate::run(a).await,
        Cmd::Session(a) => session::run(a).await,
        Cmd::List(a) => list::run(a).await,
        Cmd::Revoke(a) => revoke::run(a).await,
        Cmd::Rotate(a) => rotate::run(a).await,
        Cmd::Show(a) => show::run(a).await,
        Cmd::Settings(a) => settings::run(a).await,
        Cmd::Status(a) => status::run(a).await,
        Cmd::Verify(a) => verify::run(a).await,
        Cmd::Backup(a) => backup::run(a).await,
        Cmd::Scan(a) => scan::run(a).await,
    }
}

/// Writes to standard output and flushes, so that a full disk or a closed
/// pipe is an error here rather than a panic or a silent loss.
pub(crate) fn write_stdout(text: &str) -> std::io::Result<()> {
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes())?;
    out.flush()
}

pub(crate) fn print(text: &str) -> Result<(), CliError> {
    write_stdout(text)
        .map_err(|e| CliError::Failed(format!("cannot write to standard output: {e}")))
}

/// Prints one JSON document and a newline.
pub(crate) fn print_json<T: Serialize + ?Sized>(value: &T) -> Result<(), CliError> {
    let json = serde_json::to_string(value)
        .map_err(|e| CliError::Failed(format!("cannot encode JSON: {e}")))?;
    print(&format!("{}\n", json_safe(&json)))
}

/// A remark on standard error, in the same form as an error line.
pub(crate) fn note(text: &str) {
    eprintln!("apikey: {text}");
}

/// A key as the JSON output shows it: times in RFC 3339 UTC, null for
/// "never" / "not yet".
#[derive(Serialize, Debug, PartialEq)]
pub(crate) struct KeyJson<'a> {
    pub id: &'a str,
    pub user: &'a str,
    pub uid: u32,
    pub name: &'a str,
    pub services: &'a [String],
    pub session: bool,
    pub created: Option<String>,
    pub expires: Option<String>,
    pub last_used: Option<String>,
    pub last_service: Option<&'a str>,
    pub last_rhost: Option<&'a str>,
    pub created_by_uid: u32,
    pub revoked: Option<String>,
    /// Fleet mode only: where the key was made, the hosts it works on,
    /// the host of its last use.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub made_on: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hosts: Option<&'a [String]>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_host: Option<&'a str>,
    /// The networks logins with the key may come from; absent: anywhere.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub from: Option<&'a [String]>,
    /// The key expires within the site's `warn_before`.
    pub expires_soon: bool,
}

impl<'a> KeyJson<'a> {
    /// With what a fleet adds; nothing more on a single host.
    pub fn with_extra(k: &'a KeyInfo, e: &'a KeyExtra) -> Self {
        let non_empty = |s: &'a str| (!s.is_empty()).then_some(s);
        KeyJson {
            made_on: non_empty(&e.made_on),
            hosts: (!e.made_on.is_empty()).then_some(e.hosts.as_slice()),
            last_host: non_empty(&e.last_host),
            from: (!e.from.is_empty()).then_some(e.from.as_slice()),
            expires_soon: e.expires_soon,
            ..KeyJson::new(k)
        }
    }

    pub fn new(k: &'a KeyInfo) -> Self {
        let non_empty = |s: &'a str| (!s.is_empty()).then_some(s);
        KeyJson {
            id: &k.id,
            user: &k.user,
            uid: k.uid,
            name: &k.name,
            services: &k.services,
            session: k.session,
            created: rfc3339_opt(k.created),
            expires: rfc3339_opt(k.expires),
            last_used: rfc3339_opt(k.last_used),
            last_service: non_empty(&k.last_service),
            last_rhost: non_empty(&k.last_rhost),
            created_by_uid: k.created_by_uid,
            revoked: rfc3339_opt(k.revoked),
            made_on: None,
            hosts: None,
            last_host: None,
            from: None,
            expires_soon: false,
        }
    }
}

/// A JSON object made of `first` (members already encoded, e.g.
/// `"token":"..."`) followed by the members of the key. Built by hand so
/// the token lives only in memory that is wiped.
pub(crate) fn key_object(
    first: &str,
    info: &KeyInfo,
    extra: &KeyExtra,
) -> Result<Zeroizing<String>, CliError> {
    let rest = serde_json::to_string(&KeyJson::with_extra(info, extra))
        .map_err(|e| CliError::Failed(format!("cannot encode JSON: {e}")))?;
    let rest = json_safe(&rest);
    let mut out = Zeroizing::new(String::with_capacity(first.len() + rest.len() + 2));
    out.push('{');
    out.push_str(first);
    out.push(',');
    out.push_str(&rest[1..]);
    out.push('\n');
    Ok(out)
}

/// Checks the token the daemon sent, so that nothing but a well-formed
/// key is ever printed or written to a file.
pub(crate) async fn accept_token(
    proxy: &Keys1Proxy<'_>,
    raw: String,
    info: &KeyInfo,
) -> Result<Token, CliError> {
    let raw = Zeroizing::new(raw);
    match Token::parse(raw.as_bytes()) {
        Ok(token) => Ok(token),
        Err(_) => Err(abandon(
            proxy,
            &info.id,
            "the daemon sent a malformed key".to_string(),
        )
        .await),
    }
}

/// Prints a new key: the token alone on a line, or the JSON object. A key
/// that could not be handed over is revoked: nobody has it.
pub(crate) async fn hand_over(
    proxy: &Keys1Proxy<'_>,
    token: &Token,
    info: &KeyInfo,
    extra: &KeyExtra,
    json: bool,
) -> Result<(), CliError> {
    let text = if json {
        // Base62 and '|': nothing in a token needs escaping in JSON.
        let mut first = Zeroizing::new(String::with_capacity(64));
        first.push_str("\"token\":\"");
        first.push_str(token.as_str());
        first.push('"');
        key_object(&first, info, extra)?
    } else {
        let mut line = Zeroizing::new(String::with_capacity(token.as_str().len() + 1));
        line.push_str(token.as_str());
        line.push('\n');
        line
    };
    if let Err(e) = write_stdout(&text) {
        return Err(abandon(
            proxy,
            &info.id,
            format!("cannot write the key to standard output ({e})"),
        )
        .await);
    }
    Ok(())
}

/// Revokes a key just made that the caller could not receive, and says
/// so; if even that fails, says how to do it by hand.
pub(crate) async fn abandon(proxy: &Keys1Proxy<'_>, id: &str, reason: String) -> CliError {
    let shown = safe(id, FIELD);
    match proxy.revoke(&[id]).await {
        Ok(_) => CliError::Failed(format!("{reason}; key {shown} was revoked")),
        Err(e) => CliError::Failed(format!(
            "{reason}; revoking key {shown} failed too ({}): revoke it with 'apikey revoke {shown}'",
            CliError::Daemon(e).message()
        )),
    }
}

/// "never", or the exact time.
pub(crate) fn expiry_text(expires: i64) -> String {
    if expires == 0 {
        "never".to_string()
    } else {
        rfc3339(expires)
    }
}

/// Said after a new key is handed over; with the hosts of a fleet key
/// limited to some, and the networks of a key limited to them.
pub(crate) fn new_key_note(info: &KeyInfo, extra: &KeyExtra) -> String {
    let limit = |items: &[String], what: &str| match items.is_empty() {
        true => String::new(),
        false => {
            let shown: Vec<String> = items.iter().map(|i| safe(i, FIELD)).collect();
            format!(" {what} {} and", shown.join(","))
        }
    };
    format!(
        "key {} for {}{}{} expires {}; it will not be shown again.",
        safe(&info.id, FIELD),
        safe(&info.user, FIELD),
        limit(&extra.hosts, "works on hosts"),
        limit(&extra.from, "is usable only from"),
        expiry_text(info.expires)
    )
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub fn sample_key() -> KeyInfo {
        KeyInfo {
            id: "3fZk9QpLm2Xa".into(),
            user: "alice".into(),
            uid: 1000,
            name: "backup".into(),
            services: vec!["sshd".into(), "nginx*".into()],
            created: 1_700_000_000,
            expires: 1_702_592_000,
            last_used: 0,
            last_service: String::new(),
            last_rhost: String::new(),
            created_by_uid: 1000,
            session: false,
            revoked: 0,
        }
    }

    #[test]
    fn key_json_uses_nulls_and_rfc3339() {
        let k = sample_key();
        let v: serde_json::Value =
            serde_json::from_str(&serde_json::to_string(&KeyJson::new(&k)).unwrap()).unwrap();
        assert_eq!(v["id"], "3fZk9QpLm2Xa");
        assert_eq!(v["created"], "2023-11-14T22:13:20Z");
        assert_eq!(v["expires"], "2023-12-14T22:13:20Z");
        assert!(v["last_used"].is_null());
        assert!(v["last_service"].is_null());
        assert!(v["revoked"].is_null());
        assert_eq!(v["services"], serde_json::json!(["sshd", "nginx*"]));
    }

    #[test]
    fn key_object_puts_first_members_first() {
        let k = sample_key();
        let text = key_object("\"token\":\"apikey|x\"", &k, &KeyExtra::default()).unwrap();
        assert!(text.starts_with("{\"token\":\"apikey|x\",\"id\":\"3fZk9QpLm2Xa\""));
        assert!(text.ends_with("}\n"));
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["token"], "apikey|x");
        assert_eq!(v["user"], "alice");
        // A single host's key says nothing of hosts.
        assert!(v.get("made_on").is_none() && v.get("hosts").is_none());
    }

    #[test]
    fn a_fleet_keys_hosts_are_in_its_json_and_its_note() {
        let k = sample_key();
        let mut e = KeyExtra {
            made_on: "adm-1".into(),
            ..KeyExtra::default()
        };
        let v: serde_json::Value =
            serde_json::from_str(&key_object("\"token\":null", &k, &e).unwrap()).unwrap();
        assert_eq!(v["made_on"], "adm-1");
        assert_eq!(v["hosts"], serde_json::json!([]));
        assert!(v.get("last_host").is_none());
        e.hosts = vec!["web-*".into(), "db\u{1b}1".into()];
        e.last_host = "web-2".into();
        let v: serde_json::Value =
            serde_json::from_str(&key_object("\"token\":null", &k, &e).unwrap()).unwrap();
        assert_eq!(v["hosts"], serde_json::json!(["web-*", "db\u{1b}1"]));
        assert_eq!(v["last_host"], "web-2");
        assert_eq!(
            new_key_note(&k, &e),
            "key 3fZk9QpLm2Xa for alice works on hosts web-*,db\\x1b1 and expires \
             2023-12-14T22:13:20Z; it will not be shown again."
        );
        assert!(v.get("from").is_none());
        e.from = vec!["10.1.0.0/16".into()];
        let v: serde_json::Value =
            serde_json::from_str(&key_object("\"token\":null", &k, &e).unwrap()).unwrap();
        assert_eq!(v["from"], serde_json::json!(["10.1.0.0/16"]));
        assert_eq!(
            new_key_note(&k, &e),
            "key 3fZk9QpLm2Xa for alice works on hosts web-*,db\\x1b1 and is usable only from \
             10.1.0.0/16 and expires 2023-12-14T22:13:20Z; it will not be shown again."
        );
    }

    #[test]
    fn note_after_generation() {
        let mut k = sample_key();
        assert_eq!(
            new_key_note(&k, &KeyExtra::default()),
            "key 3fZk9QpLm2Xa for alice expires 2023-12-14T22:13:20Z; it will not be shown again."
        );
        k.expires = 0;
        k.user = "ev\u{1b}[1mil".into();
        assert_eq!(
            new_key_note(&k, &KeyExtra::default()),
            "key 3fZk9QpLm2Xa for ev\\x1b[1mil expires never; it will not be shown again."
        );
    }
}

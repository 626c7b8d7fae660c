//! `apikey scan`: keys found in files (see `crate::scan`), each asked of
//! the daemon once, and revoked with `--revoke`; the keys themselves are
//! never printed.

use super::{note, print, print_json};
use crate::args::ScanArgs;
use crate::client;
use crate::exit::CliError;
use crate::scan::{scan, Scan};
use crate::text::{safe, FIELD, SENTENCE};
use apikey_proto::{Keys1Proxy, KeysError, Token};
use serde::Serialize;
use std::collections::HashMap;

/// What the daemon says of a key found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Its id, and `active`, `expired` or `revoked`.
    Known(String, String),
    /// Revoked by this scan.
    RevokedNow(String),
    /// No key of this host (or fleet) has it.
    Unknown,
    /// The daemon could not be asked.
    NotChecked,
}

impl Verdict {
    fn id(&self) -> Option<&str> {
        match self {
            Verdict::Known(id, _) | Verdict::RevokedNow(id) => Some(id),
            _ => None,
        }
    }

    fn state(&self) -> &str {
        match self {
            Verdict::Known(_, state) => state,
            Verdict::RevokedNow(_) => "revoked-now",
            Verdict::Unknown => "unknown",
            Verdict::NotChecked => "not-checked",
        }
    }

    /// The report line's end, after `PATH:LINE: `.
    pub fn text(&self) -> String {
        match self {
            Verdict::Known(id, state) => {
                format!("key {} ({})", safe(id, FIELD), safe(state, FIELD))
            }
            Verdict::RevokedNow(id) => format!("key {} (active; revoked now)", safe(id, FIELD)),
            Verdict::Unknown => "a key this host does not know".into(),
            Verdict::NotChecked => "a key (not checked: the daemon could not be asked)".into(),
        }
    }
}

#[derive(Serialize)]
struct FoundJson<'a> {
    path: String,
    line: u64,
    id: Option<&'a str>,
    state: &'a str,
}

#[derive(Serialize)]
struct UnreadableJson {
    path: String,
    error: String,
}

pub async fn run(args: ScanArgs) -> Result<(), CliError> {
    let paths = match args.paths.is_empty() {
        // The home from the account database, not $HOME (which a sudo may
        // have kept from another user).
        true => vec![crate::netrc::home_dir()
            .map_err(|e| CliError::Failed(format!("{e}; name the paths to scan")))?],
        false => args.paths,
    };
    let result = scan(&paths);
    for u in &result.unreadable {
        note(&format!(
            "cannot read {}: {}",
            shown(&u.path),
            safe(&u.error, SENTENCE)
        ));
    }
    let verdicts = ask(&result, args.revoke).await;
    let found: Vec<(&crate::scan::Found, &Verdict)> = result
        .found
        .iter()
        .map(|f| (f, &verdicts[&f.token.hash()]))
        .collect();
    if args.json {
        print_json(&serde_json::json!({
            "found": found.iter().map(|(f, v)| FoundJson {
                path: f.path.to_string_lossy().into_owned(),
                line: f.line,
                id: v.id(),
                state: v.state(),
            }).collect::<Vec<_>>(),
            "unreadable": result.unreadable.iter().map(|u| UnreadableJson {
                path: u.path.to_string_lossy().into_owned(),
                error: u.error.clone(),
            }).collect::<Vec<_>>(),
            "files": result.files,
            "links_not_followed": result.links,
        }))?;
    } else {
        let mut out = String::new();
        for (f, v) in &found {
            out.push_str(&format!("{}:{}: {}\n", shown(&f.path), f.line, v.text()));
        }
        print(&out)?;
    }
    outcome(&found.iter().map(|(_, v)| *v).collect::<Vec<_>>())
}

/// The exit: nothing found is success; keys found are a failure (1), or
/// the daemon's absence (69) when it could not be asked about them.
pub fn outcome(verdicts: &[&Verdict]) -> Result<(), CliError> {
    if verdicts.is_empty() {
        return Ok(());
    }
    let n = verdicts.len();
    if verdicts.iter().any(|v| **v == Verdict::NotChecked) {
        return Err(CliError::Unreachable(format!(
            "{n} key(s) found, not all of them checked"
        )));
    }
    Err(CliError::Failed(format!("{n} key(s) found in files")))
}

/// Each distinct key asked of the daemon once (and revoked if asked to).
async fn ask(result: &Scan, revoke: bool) -> HashMap<[u8; 32], Verdict> {
    let mut verdicts = HashMap::new();
    if result.found.is_empty() {
        return verdicts;
    }
    let proxy = client::connect().await.ok();
    for f in &result.found {
        let hash = f.token.hash();
        if verdicts.contains_key(&hash) {
            continue;
        }
        let verdict = match &proxy {
            Some(p) => verdict(p, &f.token, revoke).await,
            None => Verdict::NotChecked,
        };
        verdicts.insert(hash, verdict);
    }
    verdicts
}

async fn verdict(proxy: &Keys1Proxy<'_>, token: &Token, revoke: bool) -> Verdict {
    let (id, state) = match proxy.inspect_token(token.as_str()).await {
        Ok(answer) => answer,
        Err(KeysError::NotFound(_)) => return Verdict::Unknown,
        Err(_) => return Verdict::NotChecked,
    };
    if revoke && state == "active" {
        match proxy.revoke_by_token(token.as_str()).await {
            Ok((id, true)) => return Verdict::RevokedNow(id),
            Ok((id, false)) => return Verdict::Known(id, "revoked".into()),
            Err(e) => note(&format!(
                "key {} was not revoked: {}",
                safe(&id, FIELD),
                CliError::from(e).message()
            )),
        }
    }
    Verdict::Known(id, state)
}

fn shown(path: &std::path::Path) -> String {
    safe(&path.to_string_lossy(), SENTENCE)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_found_fail_the_scan_and_an_unasked_daemon_says_so() {
        assert!(outcome(&[]).is_ok());
        let active = Verdict::Known("3fZk9QpLm2Xa".into(), "active".into());
        let e = outcome(&[&active, &Verdict::Unknown]).unwrap_err();
        assert_eq!(
            (e.exit_code(), e.message()),
            (1, "2 key(s) found in files".into())
        );
        let e = outcome(&[&active, &Verdict::NotChecked]).unwrap_err();
        assert_eq!(e.exit_code(), 69);
    }

    #[test]
    fn a_report_names_the_key_and_its_state_never_the_token() {
        let v = Verdict::RevokedNow("3fZk9QpLm2Xa".into());
        assert_eq!(v.text(), "key 3fZk9QpLm2Xa (active; revoked now)");
        assert_eq!((v.id(), v.state()), (Some("3fZk9QpLm2Xa"), "revoked-now"));
        assert_eq!(Verdict::Unknown.text(), "a key this host does not know");
        let odd = Verdict::Known("a\u{1b}[2J".into(), "x\ny".into());
        assert!(!odd.text().contains('\u{1b}') && !odd.text().contains('\n'));
    }
}

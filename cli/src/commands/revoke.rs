//! `apikey revoke`

use super::print;
use crate::args::RevokeArgs;
use crate::client;
use crate::exit::CliError;
use crate::text::{safe, FIELD};
use std::io::{BufRead, IsTerminal, Write};

/// What `revoke --all --site` does before anything is revoked (S13:
/// revoking everything is deliberate).
#[derive(Debug, PartialEq, Eq)]
pub enum SiteConfirmation {
    /// `--yes`: go ahead.
    Proceed,
    /// A person at a terminal: ask, naming what would go.
    Ask,
    /// No terminal and no `--yes`: refuse; a script must say it.
    Refuse,
}

pub fn site_confirmation(yes: bool, stdin_is_terminal: bool) -> SiteConfirmation {
    match (yes, stdin_is_terminal) {
        (true, _) => SiteConfirmation::Proceed,
        (false, true) => SiteConfirmation::Ask,
        (false, false) => SiteConfirmation::Refuse,
    }
}

/// The question, naming how many keys of how many users would go.
pub fn site_question(keys: &[apikey_proto::KeyInfo]) -> String {
    let mut users: Vec<&str> = keys.iter().map(|k| k.user.as_str()).collect();
    users.sort_unstable();
    users.dedup();
    let plural =
        |n: usize, one: &str, many: &str| format!("{n} {}", if n == 1 { one } else { many });
    format!(
        "Revoke {} of {} on this host? Every login with them stops working. Type 'yes' to revoke: ",
        plural(keys.len(), "key", "keys"),
        plural(users.len(), "user", "users")
    )
}

/// Only the word itself confirms.
pub fn confirmed(answer: &str) -> bool {
    answer.trim().eq_ignore_ascii_case("yes")
}

pub async fn run(args: RevokeArgs) -> Result<(), CliError> {
    let mut ids: Vec<&str> = Vec::with_capacity(args.ids.len());
    for id in &args.ids {
        if !ids.contains(&id.as_str()) {
            ids.push(id);
        }
    }
    if args.token {
        return by_token(args.json).await;
    }
    let proxy = client::connect().await?;
    let revoked = if !args.all {
        proxy.revoke(&ids).await?
    } else if args.site {
        match site_confirmation(args.yes, std::io::stdin().is_terminal()) {
            SiteConfirmation::Proceed => {}
            SiteConfirmation::Refuse => {
                return Err(CliError::Failed(
                    "revoke --all --site revokes every key on the host; without a terminal to \
                     ask on, give --yes. Nothing was revoked"
                        .into(),
                ))
            }
            SiteConfirmation::Ask => {
                let keys = proxy.list("", true, true).await?;
                if keys.is_empty() {
                    print("revoked 0 key(s)\n")?;
                    return Ok(());
                }
                eprint!("{}", site_question(&keys));
                let _ = std::io::stderr().flush();
                let mut answer = String::new();
                let _ = std::io::stdin().lock().read_line(&mut answer);
                if !confirmed(&answer) {
                    return Err(CliError::Failed(
                        "not confirmed; nothing was revoked".into(),
                    ));
                }
            }
        }
        proxy.revoke_site().await?
    } else {
        proxy.revoke_all(args.user.as_deref().unwrap_or("")).await?
    };
    print(&summary(&revoked))?;

    let missed: Vec<String> = ids
        .iter()
        .filter(|id| !revoked.iter().any(|r| r == *id))
        .map(|id| safe(id, FIELD))
        .collect();
    if missed.is_empty() {
        Ok(())
    } else {
        Err(CliError::Failed(format!(
            "not revoked: {}",
            missed.join(" ")
        )))
    }
}

/// `revoke --token`: the key on standard input, whoever owns it.
async fn by_token(json: bool) -> Result<(), CliError> {
    let token = super::verify::key_from_stdin()?;
    let proxy = client::connect().await?;
    let (id, now) = proxy.revoke_by_token(token.as_str()).await?;
    drop(token);
    if json {
        return super::print_json(&serde_json::json!({ "id": id, "revoked_now": now }));
    }
    print(&match now {
        true => format!("revoked key {}\n", safe(&id, FIELD)),
        false => format!("key {} was already revoked\n", safe(&id, FIELD)),
    })
}

/// `revoked N key(s)`, then one id a line.
pub fn summary(revoked: &[String]) -> String {
    let mut out = format!("revoked {} key(s)\n", revoked.len());
    for id in revoked {
        out.push_str(&safe(id, FIELD));
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(user: &str) -> apikey_proto::KeyInfo {
        apikey_proto::KeyInfo {
            user: user.into(),
            ..super::super::tests::sample_key()
        }
    }

    #[test]
    fn the_site_wide_revoke_asks_a_person_and_refuses_a_script_without_yes() {
        assert_eq!(site_confirmation(true, false), SiteConfirmation::Proceed);
        assert_eq!(site_confirmation(true, true), SiteConfirmation::Proceed);
        assert_eq!(site_confirmation(false, true), SiteConfirmation::Ask);
        assert_eq!(site_confirmation(false, false), SiteConfirmation::Refuse);
    }

    #[test]
    fn the_question_names_keys_and_users_and_only_yes_confirms() {
        let keys = [key("alice"), key("bob"), key("alice")];
        assert!(site_question(&keys).starts_with("Revoke 3 keys of 2 users on this host?"));
        assert!(site_question(&keys[..1]).starts_with("Revoke 1 key of 1 user on"));
        for yes in ["yes\n", "YES", " yes "] {
            assert!(confirmed(yes), "{yes:?}");
        }
        for no in ["", "\n", "y", "no", "yes please", "ye"] {
            assert!(!confirmed(no), "{no:?}");
        }
    }

    #[test]
    fn summary_lists_ids() {
        assert_eq!(summary(&[]), "revoked 0 key(s)\n");
        assert_eq!(
            summary(&["3fZk9QpLm2Xa".into(), "x\ny".into()]),
            "revoked 2 key(s)\n3fZk9QpLm2Xa\nx\\x0ay\n"
        );
    }
}

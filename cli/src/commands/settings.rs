//! `apikey settings`

use super::{print, print_json};
use crate::args::SettingsArgs;
use crate::client;
use crate::exit::CliError;
use crate::text::{safe, FIELD};
use apikey_proto::duration::format_duration;
use apikey_proto::Settings;
use serde::Serialize;

pub async fn run(args: SettingsArgs) -> Result<(), CliError> {
    let proxy = client::connect().await?;
    let settings = if args.changes_anything() {
        let timeout = args.session_timeout.map(format_duration);
        proxy
            .set_settings(
                args.allow_user_keys.map_or("", |v| v.as_str()),
                args.expires.as_deref().unwrap_or(""),
                args.users_see_own.map_or("", |v| v.as_str()),
                timeout.as_deref().unwrap_or(""),
            )
            .await?
    } else {
        proxy.get_settings().await?
    };
    if args.json {
        print_json(&SettingsJson::new(&settings))
    } else {
        print(&render(&settings))
    }
}

#[derive(Serialize, Debug)]
pub(crate) struct SettingsJson {
    allow_user_keys: bool,
    expires: String,
    users_see_own: bool,
    /// As written on the command line, e.g. "30m".
    session_timeout: String,
    session_timeout_seconds: u64,
}

impl SettingsJson {
    pub fn new(s: &Settings) -> Self {
        SettingsJson {
            allow_user_keys: s.allow_user_keys,
            expires: s.expires.clone(),
            users_see_own: s.users_see_own,
            session_timeout: format_duration(s.session_timeout),
            session_timeout_seconds: s.session_timeout,
        }
    }
}

pub(crate) fn yes_no(b: bool) -> &'static str {
    if b {
        "yes"
    } else {
        "no"
    }
}

/// Label/value lines, values in one column.
pub(crate) fn lines(pairs: &[(&str, String)]) -> String {
    let w = pairs.iter().map(|(l, _)| l.len()).max().unwrap_or(0);
    pairs
        .iter()
        .map(|(label, value)| format!("{label}:{}{value}\n", " ".repeat(w - label.len() + 2)))
        .collect()
}

pub(crate) fn policy_pairs(s: &Settings) -> Vec<(&'static str, String)> {
    vec![
        (
            "Let users create API keys",
            yes_no(s.allow_user_keys).to_string(),
        ),
        ("Expire API keys", safe(&s.expires, FIELD)),
        (
            "Users see their own keys",
            yes_no(s.users_see_own).to_string(),
        ),
        ("Session idle timeout", format_duration(s.session_timeout)),
    ]
}

pub fn render(s: &Settings) -> String {
    lines(&policy_pairs(s))
}

#[cfg(test)]
mod tests {
    use super::*;

    pub fn sample() -> Settings {
        Settings {
            allow_user_keys: true,
            expires: "30d".into(),
            users_see_own: false,
            session_timeout: 1800,
        }
    }

    #[test]
    fn renders_policy() {
        assert_eq!(
            render(&sample()),
            "\
Let users create API keys:  yes
Expire API keys:            30d
Users see their own keys:   no
Session idle timeout:       30m
"
        );
    }

    #[test]
    fn json_form() {
        let v = serde_json::to_value(SettingsJson::new(&sample())).unwrap();
        assert_eq!(
            v,
            serde_json::json!({
                "allow_user_keys": true,
                "expires": "30d",
                "users_see_own": false,
                "session_timeout": "30m",
                "session_timeout_seconds": 1800
            })
        );
    }
}

//! `apikey settings`

use super::{print, print_json};
use crate::args::SettingsArgs;
use crate::client;
use crate::exit::CliError;
use crate::text::{safe, FIELD};
use apikey_proto::duration::format_duration;
use apikey_proto::{Settings, SettingsExtra};
use serde::Serialize;
use std::collections::HashMap;

pub async fn run(args: SettingsArgs) -> Result<(), CliError> {
    let proxy = client::connect().await?;
    let changes = args.changes();
    let answer = match changes.is_empty() {
        true => proxy.get_settings_with().await,
        false => {
            let by_name: HashMap<&str, &str> =
                changes.iter().map(|(k, v)| (*k, v.as_str())).collect();
            proxy.set_settings_with(by_name).await
        }
    };
    let (settings, extra) = match answer {
        Ok((s, extra)) => (s, Some(SettingsExtra::from_dict(&extra))),
        // A daemon that predates the settings beyond the struct.
        Err(e) if client::is_unknown_method(&e) && !args.changes_beyond_settings() => {
            (older_daemon(&proxy, &args).await?, None)
        }
        Err(e) => return Err(e.into()),
    };
    if args.json {
        print_json(&SettingsJson::with_extra(&settings, extra.as_ref()))
    } else {
        let mut pairs = policy_pairs(&settings);
        pairs.extend(extra_pairs(extra.as_ref()));
        print(&lines(&pairs))
    }
}

/// The struct's settings, read or changed by the calls every daemon has.
async fn older_daemon(
    proxy: &apikey_proto::Keys1Proxy<'_>,
    args: &SettingsArgs,
) -> Result<Settings, CliError> {
    if !args.changes_anything() {
        return Ok(proxy.get_settings().await?);
    }
    let timeout = args.session_timeout.map(format_duration);
    Ok(proxy
        .set_settings(
            args.allow_user_keys.map_or("", |v| v.as_str()),
            args.expires.as_deref().unwrap_or(""),
            args.users_see_own.map_or("", |v| v.as_str()),
            timeout.as_deref().unwrap_or(""),
        )
        .await?)
}

pub(crate) fn extra_pairs(extra: Option<&SettingsExtra>) -> Vec<(&'static str, String)> {
    match extra {
        None => vec![],
        Some(e) => vec![
            (
                "Keys must name their networks",
                yes_no(e.require_from).to_string(),
            ),
            ("Revoke keys unused for", safe(&e.revoke_unused, FIELD)),
        ],
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
    /// Absent from a daemon that predates them.
    #[serde(skip_serializing_if = "Option::is_none")]
    require_from: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    revoke_unused: Option<String>,
}

impl SettingsJson {
    pub fn with_extra(s: &Settings, extra: Option<&SettingsExtra>) -> Self {
        SettingsJson {
            allow_user_keys: s.allow_user_keys,
            expires: s.expires.clone(),
            users_see_own: s.users_see_own,
            session_timeout: format_duration(s.session_timeout),
            session_timeout_seconds: s.session_timeout,
            require_from: extra.map(|e| e.require_from),
            revoke_unused: extra.map(|e| e.revoke_unused.clone()),
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
            lines(&policy_pairs(&sample())),
            "\
Let users create API keys:  yes
Expire API keys:            30d
Users see their own keys:   no
Session idle timeout:       30m
"
        );
    }

    #[test]
    fn the_settings_beyond_the_struct_are_shown_when_the_daemon_has_them() {
        let extra = SettingsExtra {
            require_from: true,
            revoke_unused: "90d".into(),
        };
        let mut pairs = policy_pairs(&sample());
        pairs.extend(extra_pairs(Some(&extra)));
        assert_eq!(
            lines(&pairs),
            "\
Let users create API keys:      yes
Expire API keys:                30d
Users see their own keys:       no
Session idle timeout:           30m
Keys must name their networks:  yes
Revoke keys unused for:         90d
"
        );
        assert!(extra_pairs(None).is_empty());
        let v = serde_json::to_value(SettingsJson::with_extra(&sample(), Some(&extra))).unwrap();
        assert_eq!(
            (v["require_from"].clone(), v["revoke_unused"].clone()),
            (true.into(), "90d".into())
        );
    }

    #[test]
    fn json_form() {
        let v = serde_json::to_value(SettingsJson::with_extra(&sample(), None)).unwrap();
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

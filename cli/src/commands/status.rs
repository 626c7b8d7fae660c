//! `apikey status`

use super::settings::{extra_pairs, lines, policy_pairs, yes_no, SettingsJson};
use super::{print, print_json};
use crate::args::StatusArgs;
use crate::client;
use crate::exit::CliError;
use crate::text::{safe, FIELD};
use apikey_proto::duration::format_duration;
use apikey_proto::{StatusExtra, StatusInfo};
use serde::Serialize;

pub async fn run(args: StatusArgs) -> Result<(), CliError> {
    let proxy = client::connect().await?;
    if args.prometheus {
        return match proxy.metrics().await {
            Ok(text) => print(&text),
            Err(e) if client::is_unknown_method(&e) => Err(CliError::Failed(
                "the running apikeyd predates --prometheus; restart it after the upgrade".into(),
            )),
            Err(e) => Err(e.into()),
        };
    }
    let (status, extra) = match proxy.status_with().await {
        Ok((status, extra)) => (status, Some(StatusExtra::from_dict(&extra))),
        // A daemon that predates StatusWith.
        Err(e) if client::is_unknown_method(&e) => (proxy.status().await?, None),
        Err(e) => return Err(e.into()),
    };
    if args.json {
        print_json(&StatusJson::new(&status, extra.as_ref()))
    } else {
        print(&render(&status, extra.as_ref()))
    }
}

#[derive(Serialize, Debug)]
struct StatusJson<'a> {
    daemon: &'static str,
    version: &'a str,
    user: &'a str,
    uid: u32,
    admin: bool,
    verifier: bool,
    logged_in: bool,
    impersonating: bool,
    session_keys: u32,
    /// The caller's active keys that expire within `warn_before`; absent
    /// from a daemon that predates them.
    #[serde(skip_serializing_if = "Option::is_none")]
    expiring_soon: Option<u32>,
    /// As in the configuration, e.g. "7d"; "0s": no warnings.
    #[serde(skip_serializing_if = "Option::is_none")]
    warn_before: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    warn_before_seconds: Option<u64>,
    settings: SettingsJson,
    /// "ok", or what is wrong with the key store.
    store: &'a str,
}

impl<'a> StatusJson<'a> {
    fn new(s: &'a StatusInfo, extra: Option<&StatusExtra>) -> Self {
        StatusJson {
            daemon: "answers",
            version: &s.version,
            user: &s.user,
            uid: s.uid,
            admin: s.admin,
            verifier: s.verifier,
            logged_in: s.logged_in,
            impersonating: s.impersonating,
            session_keys: s.session_keys,
            expiring_soon: extra.and_then(|e| e.expiring_soon),
            warn_before: extra.map(|e| format_duration(e.warn_before)),
            warn_before_seconds: extra.map(|e| e.warn_before),
            settings: SettingsJson::with_extra(&s.settings, extra.map(|e| &e.settings)),
            store: if s.store.is_empty() { "ok" } else { &s.store },
        }
    }
}

pub fn render(s: &StatusInfo, extra: Option<&StatusExtra>) -> String {
    let mut pairs = vec![
        (
            "Daemon",
            format!("answers (apikeyd {})", safe(&s.version, FIELD)),
        ),
        ("User", format!("{} (uid {})", safe(&s.user, FIELD), s.uid)),
        ("Administrator", yes_no(s.admin).to_string()),
        ("Verifier", yes_no(s.verifier).to_string()),
        ("In a login session", yes_no(s.logged_in).to_string()),
        (
            "Impersonating (su/sudo)",
            yes_no(s.impersonating).to_string(),
        ),
        ("Your session keys", s.session_keys.to_string()),
        (
            "Key store",
            if s.store.is_empty() {
                "ok".to_string()
            } else {
                format!(
                    "FAILING: {} (key logins answer unavailable)",
                    safe(&s.store, 200)
                )
            },
        ),
    ];
    if let Some(e) = extra {
        pairs.insert(pairs.len() - 1, expiring_pair(e));
    }
    pairs.extend(policy_pairs(&s.settings));
    pairs.extend(extra_pairs(extra.map(|e| &e.settings)));
    lines(&pairs)
}

/// "Your keys expiring within 7d: 2" (warnings may be off).
fn expiring_pair(e: &StatusExtra) -> (&'static str, String) {
    let value = match (e.warn_before, e.expiring_soon) {
        (0, _) => "not counted (warn_before = 0s)".to_string(),
        (_, None) => "unknown (the key store cannot be read)".to_string(),
        (w, Some(n)) => format!("{n} within {}", format_duration(w)),
    };
    ("Your keys expiring soon", value)
}

#[cfg(test)]
mod tests {
    use super::*;
    use apikey_proto::Settings;

    fn sample() -> StatusInfo {
        StatusInfo {
            version: "0.1.0".into(),
            uid: 1000,
            user: "alice".into(),
            admin: false,
            verifier: true,
            logged_in: true,
            impersonating: false,
            session_keys: 0,
            settings: Settings {
                allow_user_keys: false,
                expires: "never".into(),
                users_see_own: true,
                session_timeout: 1800,
            },
            store: String::new(),
        }
    }

    #[test]
    fn renders_status() {
        assert_eq!(
            render(&sample(), None),
            "\
Daemon:                     answers (apikeyd 0.1.0)
User:                       alice (uid 1000)
Administrator:              no
Verifier:                   yes
In a login session:         yes
Impersonating (su/sudo):    no
Your session keys:          0
Key store:                  ok
Let users create API keys:  no
Expire API keys:            never
Users see their own keys:   yes
Session idle timeout:       30m
"
        );
    }

    fn extra() -> StatusExtra {
        StatusExtra {
            warn_before: 7 * 86_400,
            expiring_soon: Some(2),
            settings: apikey_proto::SettingsExtra {
                require_from: true,
                revoke_unused: "90d".into(),
            },
        }
    }

    #[test]
    fn renders_what_a_newer_daemon_adds() {
        let text = render(&sample(), Some(&extra()));
        assert!(
            text.contains("Your session keys:              0\nYour keys expiring soon:        2 within 7d\nKey store:"),
            "{text}"
        );
        assert!(
            text.contains("Keys must name their networks:  yes\n"),
            "{text}"
        );
        assert!(
            text.ends_with("Revoke keys unused for:         90d\n"),
            "{text}"
        );
        let off = StatusExtra {
            warn_before: 0,
            ..extra()
        };
        assert!(render(&sample(), Some(&off)).contains("not counted (warn_before = 0s)"));
        let failing = StatusExtra {
            expiring_soon: None,
            ..extra()
        };
        assert!(
            render(&sample(), Some(&failing)).contains("unknown (the key store cannot be read)")
        );
    }

    #[test]
    fn json_form() {
        let s = sample();
        let v = serde_json::to_value(StatusJson::new(&s, None)).unwrap();
        assert_eq!(v["daemon"], "answers");
        assert_eq!(v["uid"], 1000);
        assert_eq!(v["verifier"], true);
        assert_eq!(v["settings"]["session_timeout"], "30m");
        assert!(v.get("expiring_soon").is_none());
        let e = extra();
        let v = serde_json::to_value(StatusJson::new(&s, Some(&e))).unwrap();
        assert_eq!(v["expiring_soon"], 2);
        assert_eq!(v["warn_before"], "7d");
        assert_eq!(v["warn_before_seconds"], 604_800);
        assert_eq!(v["settings"]["revoke_unused"], "90d");
        assert_eq!(v["settings"]["require_from"], true);
    }
}

//! `apikey status`

use super::settings::{lines, policy_pairs, yes_no, SettingsJson};
use super::{print, print_json};
use crate::args::StatusArgs;
use crate::client;
use crate::exit::CliError;
use crate::text::{safe, FIELD};
use apikey_proto::StatusInfo;
use serde::Serialize;

pub async fn run(args: StatusArgs) -> Result<(), CliError> {
    let proxy = client::connect().await?;
    let status = proxy.status().await?;
    if args.json {
        print_json(&StatusJson::new(&status))
    } else {
        print(&render(&status))
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
    settings: SettingsJson,
    /// "ok", or what is wrong with the key store.
    store: &'a str,
}

impl<'a> StatusJson<'a> {
    fn new(s: &'a StatusInfo) -> Self {
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
            settings: SettingsJson::new(&s.settings),
            store: if s.store.is_empty() { "ok" } else { &s.store },
        }
    }
}

pub fn render(s: &StatusInfo) -> String {
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
    pairs.extend(policy_pairs(&s.settings));
    lines(&pairs)
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
            render(&sample()),
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

    #[test]
    fn json_form() {
        let s = sample();
        let v = serde_json::to_value(StatusJson::new(&s)).unwrap();
        assert_eq!(v["daemon"], "answers");
        assert_eq!(v["uid"], 1000);
        assert_eq!(v["verifier"], true);
        assert_eq!(v["settings"]["session_timeout"], "30m");
    }
}

//! `apikey show ID`

use super::list::{expires_cell, last_used_cell, render, services_cell};
use super::settings::lines;
use super::{print, print_json, KeyJson};
use crate::args::ShowArgs;
use crate::client;
use crate::exit::CliError;
use crate::text::{safe, FIELD};
use crate::timefmt::{now, relative, rfc3339, rfc3339_opt};
use apikey_proto::{KeyExtra, KeyInfo, UseInfo};
use serde::Serialize;

pub async fn run(args: ShowArgs) -> Result<(), CliError> {
    let proxy = client::connect().await?;
    let (info, extra, history) = match proxy.show_key(&args.id).await {
        Ok((info, extra, history)) => (info, KeyExtra::from_dict(&extra), history),
        Err(e) if client::is_unknown_method(&e) => {
            return Err(CliError::Failed(
                "the running apikeyd predates 'apikey show'; restart it after the upgrade".into(),
            ))
        }
        Err(e) => return Err(e.into()),
    };
    if args.json {
        print_json(&ShowJson {
            key: KeyJson::with_extra(&info, &extra),
            uses: history.iter().map(UseJson::new).collect(),
        })
    } else {
        print(&render_key(&info, &extra, &history, now()))
    }
}

#[derive(Serialize)]
struct ShowJson<'a> {
    #[serde(flatten)]
    key: KeyJson<'a>,
    uses: Vec<UseJson<'a>>,
}

#[derive(Serialize, Debug, PartialEq)]
struct UseJson<'a> {
    service: &'a str,
    /// null for a local login (no remote host).
    rhost: Option<&'a str>,
    first: String,
    last: String,
    /// Fleet mode: the host of the last use.
    #[serde(skip_serializing_if = "Option::is_none")]
    host: Option<&'a str>,
}

impl<'a> UseJson<'a> {
    fn new(u: &'a UseInfo) -> Self {
        UseJson {
            service: &u.service,
            rhost: (!u.rhost.is_empty()).then_some(u.rhost.as_str()),
            first: rfc3339(u.first),
            last: rfc3339(u.last),
            host: (!u.host.is_empty()).then_some(u.host.as_str()),
        }
    }
}

/// The key's details as label/value lines, then its history as a table.
/// Every value from the daemon is escaped and capped (S11).
fn render_key(k: &KeyInfo, e: &KeyExtra, history: &[UseInfo], now: i64) -> String {
    let when = |t: i64| match rfc3339_opt(t) {
        Some(exact) => format!("{exact} ({})", relative(now, t)),
        None => "never".to_string(),
    };
    let mut pairs = vec![
        ("ID", safe(&k.id, FIELD)),
        ("User", format!("{} (uid {})", safe(&k.user, FIELD), k.uid)),
        (
            "Name",
            match k.name.is_empty() {
                true => "-".to_string(),
                false => safe(&k.name, FIELD),
            },
        ),
        (
            "Kind",
            match k.session {
                true => "session key".to_string(),
                false => "key".to_string(),
            },
        ),
        ("Services", services_cell(&k.services)),
    ];
    if !e.made_on.is_empty() {
        pairs.push(("Hosts", services_cell(&e.hosts)));
        pairs.push(("Made on", safe(&e.made_on, FIELD)));
    }
    pairs.push((
        "From",
        match e.from.is_empty() {
            true => "anywhere".to_string(),
            false => safe(&e.from.join(", "), FIELD * 4),
        },
    ));
    pairs.push(("Created", when(k.created)));
    pairs.push((
        "Expires",
        match k.expires {
            0 => "never".to_string(),
            t => format!(
                "{} ({}{})",
                rfc3339(t),
                expires_cell(k, false, now),
                match e.expires_soon && k.revoked == 0 {
                    true => "; soon",
                    false => "",
                }
            ),
        },
    ));
    if k.revoked != 0 {
        pairs.push(("Revoked", when(k.revoked)));
    }
    pairs.push(("Last used", last_used_cell(k, &e.last_host, now)));
    let mut out = lines(&pairs);
    if history.is_empty() {
        out.push_str("Used from:  nowhere yet\n");
        return out;
    }
    out.push_str("Used from (newest first):\n");
    let fleet = history.iter().any(|u| !u.host.is_empty());
    let mut header = vec!["SERVICE", "REMOTE HOST", "FIRST USED", "LAST USED"];
    if fleet {
        header.push("LAST ON");
    }
    let mut rows = vec![header.iter().map(|h| h.to_string()).collect::<Vec<_>>()];
    for u in history {
        let mut row = vec![
            safe(&u.service, FIELD),
            match u.rhost.is_empty() {
                true => "(local)".to_string(),
                false => safe(&u.rhost, FIELD),
            },
            rfc3339(u.first),
            rfc3339(u.last),
        ];
        if fleet {
            row.push(safe(&u.host, FIELD));
        }
        rows.push(row);
    }
    for line in render(&rows, &mut None).lines() {
        out.push_str("  ");
        out.push_str(line);
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::super::tests::sample_key;
    use super::*;

    const NOW: i64 = 1_700_000_000 + 180;

    fn used(service: &str, rhost: &str, first: i64, last: i64) -> UseInfo {
        UseInfo {
            service: service.into(),
            rhost: rhost.into(),
            first,
            last,
            host: String::new(),
        }
    }

    #[test]
    fn a_key_and_its_history() {
        let mut k = sample_key();
        k.last_used = NOW - 60;
        k.last_service = "sshd".into();
        k.last_rhost = "10.0.0.1".into();
        let history = [
            used("sshd", "10.0.0.1", NOW - 7200, NOW - 60),
            used("vsftpd\u{202e}", "", NOW - 3600, NOW - 3600),
        ];
        let text = render_key(&k, &KeyExtra::default(), &history, NOW);
        let expected = "\
ID:         3fZk9QpLm2Xa
User:       alice (uid 1000)
Name:       backup
Kind:       key
Services:   sshd,nginx*
From:       anywhere
Created:    2023-11-14T22:13:20Z (3 minutes ago)
Expires:    2023-12-14T22:13:20Z (in 30 days)
Last used:  1 minute ago (sshd from 10.0.0.1)
Used from (newest first):
  SERVICE         REMOTE HOST  FIRST USED            LAST USED
  sshd            10.0.0.1     2023-11-14T20:16:20Z  2023-11-14T22:15:20Z
  vsftpd\\u{202e}  (local)      2023-11-14T21:16:20Z  2023-11-14T21:16:20Z
";
        assert_eq!(text, expected);
        let empty = render_key(&k, &KeyExtra::default(), &[], NOW);
        assert!(empty.ends_with("Used from:  nowhere yet\n"), "{empty}");
    }

    #[test]
    fn a_fleet_keys_history_says_where_each_pair_was_last_seen() {
        let k = sample_key();
        let e = KeyExtra {
            made_on: "adm-1".into(),
            hosts: vec!["web-*".into()],
            from: vec!["10.1.0.0/16".into()],
            expires_soon: true,
            ..KeyExtra::default()
        };
        let mut u = used("sshd", "10.1.2.3", NOW - 60, NOW - 30);
        u.host = "web-2".into();
        let text = render_key(&k, &e, &[u.clone()], NOW);
        assert!(
            text.contains("Hosts:      web-*\nMade on:    adm-1\nFrom:       10.1.0.0/16\n"),
            "{text}"
        );
        assert!(text.contains("(in 30 days; soon)"), "{text}");
        assert!(text.contains("LAST ON\n"), "{text}");
        assert!(text.trim_end().ends_with("web-2"), "{text}");
        let v = serde_json::to_value(ShowJson {
            key: KeyJson::with_extra(&k, &e),
            uses: vec![UseJson::new(&u)],
        })
        .unwrap();
        assert_eq!(v["id"], "3fZk9QpLm2Xa");
        assert_eq!(v["expires_soon"], true);
        assert_eq!(v["uses"][0]["rhost"], "10.1.2.3");
        assert_eq!(v["uses"][0]["host"], "web-2");
        assert_eq!(v["uses"][0]["first"], "2023-11-14T22:15:20Z");
        let local = used("cron", "", 1, 2);
        let v = serde_json::to_value(UseJson::new(&local)).unwrap();
        assert!(v["rhost"].is_null() && v.get("host").is_none(), "{v}");
    }
}

//! `apikey list`

use super::{note, print, KeyJson};
use crate::args::ListArgs;
use crate::client;
use crate::exit::CliError;
use crate::text::{json_safe, safe, width, FIELD};
use crate::timefmt::{now, relative};
use apikey_proto::{KeyExtra, KeyInfo, Keys1Proxy};

/// Keys asked for per page; the daemon may send fewer (it also caps a
/// page's size in bytes).
const PAGE: u32 = 1000;

/// Streams the listing page by page, so neither the daemon nor this
/// process ever holds a large site's keys at once.
pub async fn run(args: ListArgs) -> Result<(), CliError> {
    let proxy = client::connect().await?;
    let mut show = Vec::new();
    if args.expired {
        show.push("expired");
    }
    if args.revoked {
        show.push("revoked");
    }
    let user = args.user.as_deref().unwrap_or("");
    let now = now();
    let mut after = String::new();
    let mut widths: Option<Vec<usize>> = None;
    // Decided by the first page: a fleet's keys have their hosts, and a
    // FROM column appears when a key is limited to networks.
    let mut fleet: Option<bool> = None;
    let mut from: Option<bool> = None;
    let mut listed = 0usize;
    if args.json {
        print("[")?;
    }
    loop {
        let (keys, next) = page(&proxy, user, args.all, args.sessions, &show, &after).await?;
        if args.json {
            let mut text = String::new();
            for (k, e) in &keys {
                let json = serde_json::to_string(&KeyJson::with_extra(k, e))
                    .map_err(|e| CliError::Failed(format!("cannot encode JSON: {e}")))?;
                if listed > 0 {
                    text.push(',');
                }
                text.push_str(&json_safe(&json));
                listed += 1;
            }
            print(&text)?;
        } else if !keys.is_empty() {
            let with_header = widths.is_none();
            let fleet =
                *fleet.get_or_insert_with(|| keys.iter().any(|(_, e)| !e.made_on.is_empty()));
            let from = *from.get_or_insert_with(|| keys.iter().any(|(_, e)| !e.from.is_empty()));
            let columns = Columns {
                kind: args.sessions,
                fleet,
                from,
            };
            let rows = rows(&keys, now, columns, with_header);
            print(&render(&rows, &mut widths))?;
            listed += keys.len();
        }
        if next.is_empty() {
            break;
        }
        after = next;
    }
    if args.json {
        return print("]\n");
    }
    if listed == 0 {
        note("no keys");
    }
    Ok(())
}

/// One page with each key's extras; from a daemon that predates
/// ListPageWith, without them.
async fn page(
    proxy: &Keys1Proxy<'_>,
    user: &str,
    all: bool,
    sessions: bool,
    show: &[&str],
    after: &str,
) -> Result<(Vec<(KeyInfo, KeyExtra)>, String), CliError> {
    match proxy
        .list_page_with(user, all, sessions, show, after, PAGE)
        .await
    {
        Ok((keys, next)) => Ok((
            keys.into_iter()
                .map(|(k, e)| (k, KeyExtra::from_dict(&e)))
                .collect(),
            next,
        )),
        Err(e) if client::is_unknown_method(&e) => {
            let (keys, next) = proxy
                .list_page(user, all, sessions, show, after, PAGE)
                .await?;
            Ok((
                keys.into_iter().map(|k| (k, KeyExtra::default())).collect(),
                next,
            ))
        }
        Err(e) => Err(e.into()),
    }
}

/// The optional columns: the kind (with session keys), in a fleet the
/// host a key was made on and the hosts it works on, and the networks keys
/// are limited to.
#[derive(Clone, Copy)]
struct Columns {
    kind: bool,
    fleet: bool,
    from: bool,
}

/// The aligned table. Every cell is escaped and capped first (S11), and
/// the widths are those of the escaped text, so a hostile name cannot
/// break the columns.
#[cfg(test)]
fn table(keys: &[KeyInfo], now: i64, with_kind: bool) -> String {
    let keys: Vec<(KeyInfo, KeyExtra)> = keys
        .iter()
        .map(|k| (k.clone(), KeyExtra::default()))
        .collect();
    let columns = Columns {
        kind: with_kind,
        fleet: false,
        from: false,
    };
    render(&rows(&keys, now, columns, true), &mut None)
}

fn rows(
    keys: &[(KeyInfo, KeyExtra)],
    now: i64,
    columns: Columns,
    with_header: bool,
) -> Vec<Vec<String>> {
    let mut header = vec!["ID", "USER", "NAME"];
    if columns.kind {
        header.push("KIND");
    }
    header.push("SERVICES");
    if columns.fleet {
        header.extend(["HOSTS", "MADE ON"]);
    }
    if columns.from {
        header.push("FROM");
    }
    header.extend(["CREATED", "EXPIRES", "LAST USED"]);
    let mut rows: Vec<Vec<String>> = Vec::with_capacity(keys.len() + 1);
    if with_header {
        rows.push(header.iter().map(|h| h.to_string()).collect());
    }
    for (k, e) in keys {
        let mut row = vec![
            safe(&k.id, FIELD),
            safe(&k.user, FIELD),
            if k.name.is_empty() {
                "-".to_string()
            } else {
                safe(&k.name, FIELD)
            },
        ];
        if columns.kind {
            row.push(if k.session { "session" } else { "key" }.to_string());
        }
        row.push(services_cell(&k.services));
        if columns.fleet {
            row.push(services_cell(&e.hosts));
            row.push(match e.made_on.is_empty() {
                true => "-".to_string(),
                false => safe(&e.made_on, FIELD),
            });
        }
        if columns.from {
            row.push(match e.from.is_empty() {
                true => "anywhere".to_string(),
                false => safe(&e.from.join(","), FIELD * 4),
            });
        }
        row.push(relative(now, k.created));
        row.push(expires_cell(k, e.expires_soon, now));
        row.push(last_used_cell(k, &e.last_host, now));
        rows.push(row);
    }
    rows
}

/// The rows, aligned to the widths of the first page (which `widths`
/// keeps), widened where a later page needs it.
pub(super) fn render(rows: &[Vec<String>], widths: &mut Option<Vec<usize>>) -> String {
    let Some(columns) = rows.first().map(Vec::len) else {
        return String::new();
    };
    let widths = widths.get_or_insert_with(|| vec![0; columns]);
    for (c, w) in widths.iter_mut().enumerate() {
        *w = (*w).max(rows.iter().map(|r| width(&r[c])).max().unwrap_or(0));
    }
    let mut out = String::new();
    for row in rows {
        let mut line = String::new();
        for (c, cell) in row.iter().enumerate() {
            line.push_str(cell);
            if c + 1 < columns {
                line.push_str(&" ".repeat(widths[c] - width(cell) + 2));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// `*` for an empty scope: every service the site allows (or every host
/// of the fleet).
pub(super) fn services_cell(services: &[String]) -> String {
    if services.is_empty() {
        "*".to_string()
    } else {
        services
            .iter()
            .map(|s| safe(s, FIELD))
            .collect::<Vec<_>>()
            .join(",")
    }
}

/// When the key ends; "(soon)" marks one the daemon says expires within
/// the site's `warn_before`.
pub(super) fn expires_cell(k: &KeyInfo, soon: bool, now: i64) -> String {
    if k.revoked != 0 {
        format!("revoked {}", relative(now, k.revoked))
    } else if k.expires != 0 && k.expires <= now {
        format!("expired {}", relative(now, k.expires))
    } else if soon {
        format!("{} (soon)", relative(now, k.expires))
    } else {
        relative(now, k.expires)
    }
}

pub(super) fn last_used_cell(k: &KeyInfo, host: &str, now: i64) -> String {
    if k.last_used == 0 {
        return "never".to_string();
    }
    let mut when = relative(now, k.last_used);
    if !host.is_empty() {
        when = format!("{when} on {}", safe(host, FIELD));
    }
    match (k.last_service.is_empty(), k.last_rhost.is_empty()) {
        (true, true) => when,
        (false, true) => format!("{when} ({})", safe(&k.last_service, FIELD)),
        (true, false) => format!("{when} (from {})", safe(&k.last_rhost, FIELD)),
        (false, false) => format!(
            "{when} ({} from {})",
            safe(&k.last_service, FIELD),
            safe(&k.last_rhost, FIELD)
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::sample_key;
    use super::*;

    const NOW: i64 = 1_700_000_000 + 180;

    #[test]
    fn aligned_table() {
        let a = sample_key();
        let mut b = sample_key();
        b.id = "Zz00Zz00Zz00".into();
        b.user = "bob".into();
        b.name = String::new();
        b.services = vec![];
        b.expires = 0;
        b.last_used = NOW - 180;
        b.last_service = "sshd".into();
        b.last_rhost = "10.1.2.3".into();
        let text = table(&[a, b], NOW, false);
        let expected = "\
ID            USER   NAME    SERVICES     CREATED        EXPIRES     LAST USED
3fZk9QpLm2Xa  alice  backup  sshd,nginx*  3 minutes ago  in 30 days  never
Zz00Zz00Zz00  bob    -       *            3 minutes ago  never       3 minutes ago (sshd from 10.1.2.3)
";
        assert_eq!(text, expected);
    }

    #[test]
    fn hostile_fields_are_escaped_and_capped() {
        let mut k = sample_key();
        k.name = "\u{1b}[2J\u{1b}[Hfake\nline".into();
        k.user = "u".repeat(200);
        k.last_used = NOW - 10;
        k.last_service = "ssh\u{202e}d".into();
        let text = table(&[k], NOW, true);
        assert!(!text.contains('\u{1b}'));
        assert!(!text.contains('\u{202e}'));
        assert_eq!(text.lines().count(), 2);
        assert!(text.contains("\\x1b[2J\\x1b[Hfake\\x0aline"));
        assert!(text.contains(&format!("{}...", "u".repeat(64))));
        assert!(text.contains("just now (ssh\\u{202e}d)"));
        assert!(text.lines().next().unwrap().contains("KIND"));
        assert!(text.contains("  key  "));
    }

    #[test]
    fn expired_and_revoked() {
        let mut k = sample_key();
        k.expires = NOW + 3 * 86400;
        assert_eq!(expires_cell(&k, false, NOW), "in 3 days");
        assert_eq!(expires_cell(&k, true, NOW), "in 3 days (soon)");
        k.expires = NOW - 2 * 86400;
        assert_eq!(expires_cell(&k, true, NOW), "expired 2 days ago");
        k.revoked = NOW - 3600;
        assert_eq!(expires_cell(&k, true, NOW), "revoked 1 hour ago");
        k.last_used = NOW - 7200;
        k.last_rhost = "host".into();
        assert_eq!(last_used_cell(&k, "", NOW), "2 hours ago (from host)");
        assert_eq!(
            last_used_cell(&k, "web-1", NOW),
            "2 hours ago on web-1 (from host)"
        );
    }

    #[test]
    fn a_fleets_table_has_the_hosts() {
        let a = sample_key();
        let mut b = sample_key();
        b.id = "Zz00Zz00Zz00".into();
        b.last_used = NOW - 180;
        b.last_service = "sshd".into();
        let keys = vec![
            (
                a,
                KeyExtra {
                    made_on: "adm-1".into(),
                    ..KeyExtra::default()
                },
            ),
            (
                b,
                KeyExtra {
                    made_on: "adm-2".into(),
                    hosts: vec!["web-*".into(), "db-1".into()],
                    last_host: "web-3".into(),
                    from: vec!["10.1.0.0/16".into(), "2001:db8::/32".into()],
                    expires_soon: false,
                },
            ),
        ];
        let columns = Columns {
            kind: false,
            fleet: true,
            from: false,
        };
        let text = render(&rows(&keys, NOW, columns, true), &mut None);
        let expected = "\
ID            USER   NAME    SERVICES     HOSTS       MADE ON  CREATED        EXPIRES     LAST USED
3fZk9QpLm2Xa  alice  backup  sshd,nginx*  *           adm-1    3 minutes ago  in 30 days  never
Zz00Zz00Zz00  alice  backup  sshd,nginx*  web-*,db-1  adm-2    3 minutes ago  in 30 days  3 minutes ago on web-3 (sshd)
";
        assert_eq!(text, expected);
        let columns = Columns {
            kind: false,
            fleet: false,
            from: true,
        };
        let text = render(&rows(&keys, NOW, columns, true), &mut None);
        let expected = "\
ID            USER   NAME    SERVICES     FROM                       CREATED        EXPIRES     LAST USED
3fZk9QpLm2Xa  alice  backup  sshd,nginx*  anywhere                   3 minutes ago  in 30 days  never
Zz00Zz00Zz00  alice  backup  sshd,nginx*  10.1.0.0/16,2001:db8::/32  3 minutes ago  in 30 days  3 minutes ago on web-3 (sshd)
";
        assert_eq!(text, expected);
    }
}

//! The fleet schema's versions. Migrations are numbered and append-only;
//! each runs in one transaction as `apikey_owner`, by whichever daemon
//! first finds the schema behind and whose role may act as the owner, while
//! it holds an advisory lock (other daemons wait for it, then find the
//! work done). Each also says from which version on daemons can still use
//! the schema it leaves: a migration that only adds keeps older daemons
//! running beside newer ones (a rolling upgrade); a daemon refuses a
//! schema that no longer serves it, with a clear message.

use tokio_postgres::Client;

pub struct Migration {
    pub version: i32,
    /// The oldest daemon (by the newest version it knows) that can use
    /// the schema this migration leaves.
    pub compatible_from: i32,
    pub sql: &'static str,
}

pub const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        compatible_from: 1,
        sql: include_str!("../../../../packaging/fleet/migrations/001-keys.sql"),
    },
    Migration {
        version: 2,
        compatible_from: 1,
        sql: include_str!("../../../../packaging/fleet/migrations/002-notify.sql"),
    },
    // Older daemons keep working: keys they would not check are hidden
    // from them (see the file).
    Migration {
        version: 3,
        compatible_from: 1,
        sql: include_str!("../../../../packaging/fleet/migrations/003-sources.sql"),
    },
    // Only adds a table that older daemons never touch.
    Migration {
        version: 4,
        compatible_from: 1,
        sql: include_str!("../../../../packaging/fleet/migrations/004-use-history.sql"),
    },
];

/// The newest version this daemon knows (read once: every query that
/// names a column of a later version asks).
pub fn known() -> i32 {
    static KNOWN: std::sync::OnceLock<i32> = std::sync::OnceLock::new();
    *KNOWN.get_or_init(|| {
        let newest = MIGRATIONS.last().map_or(0, |m| m.version);
        test_known().map_or(newest, |v| v.min(newest))
    })
}

/// Debug builds (the tests') may act as an earlier release that knew
/// migrations up to `APIKEYD_TEST_SCHEMA_KNOWN` only, to run two releases
/// side by side on one database; release builds never do.
fn test_known() -> Option<i32> {
    if !cfg!(debug_assertions) {
        return None;
    }
    std::env::var("APIKEYD_TEST_SCHEMA_KNOWN")
        .ok()?
        .parse()
        .ok()
}

/// One key for every apikey daemon's migrations: "apikey" and 1.
const LOCK: i64 = 0x6170_696b_6579_0001;

const VERSION_TABLE: &str = "CREATE TABLE IF NOT EXISTS apikey.schema_version (\
     one boolean PRIMARY KEY DEFAULT true CHECK (one), \
     version integer NOT NULL, compatible_from integer NOT NULL); \
     GRANT SELECT ON apikey.schema_version TO apikey_host;";

#[derive(Debug, PartialEq, Eq)]
pub enum Plan {
    Use,
    Migrate { from: i32 },
    Refuse(String),
}

/// What to do with the schema found: `found` is (version, compatible
/// from), `None` before the first migration.
pub fn plan(found: Option<(i32, i32)>, known: i32, may_migrate: bool) -> Plan {
    let owner_hint = "start apikeyd first on a host whose database role is a member of \
                      apikey_owner (docs/fleet.md, \"Schema upgrades\")";
    match found {
        None if may_migrate => Plan::Migrate { from: 0 },
        None => Plan::Refuse(format!(
            "the fleet schema has no tables yet and this host's role may not create them; \
             {owner_hint}"
        )),
        Some((version, _)) if version == known => Plan::Use,
        Some((version, compatible_from)) if version > known => match compatible_from <= known {
            true => Plan::Use,
            false => Plan::Refuse(format!(
                "the fleet schema is at version {version}, which needs an apikeyd that knows \
                 version {compatible_from} or later; this one knows up to {known}: upgrade it"
            )),
        },
        Some((version, _)) if may_migrate => Plan::Migrate { from: version },
        Some((version, _)) => Plan::Refuse(format!(
            "the fleet schema is at version {version} and this apikeyd needs {known}; {owner_hint}"
        )),
    }
}

pub async fn bring_up_to_date(client: &Client) -> Result<(), String> {
    let fail = |e: tokio_postgres::Error| super::describe(&e);
    let schema: Option<String> = client
        .query_one("SELECT to_regnamespace('apikey')::text", &[])
        .await
        .map_err(fail)?
        .get(0);
    if schema.is_none() {
        return Err("the database has no apikey schema: run \
             /usr/share/apikey/fleet/roles.sql in it as a superuser first (docs/fleet.md)"
            .into());
    }
    client
        .execute("SELECT pg_advisory_lock($1)", &[&LOCK])
        .await
        .map_err(fail)?;
    let result = migrate_under_lock(client).await;
    let _ = client
        .execute("SELECT pg_advisory_unlock($1)", &[&LOCK])
        .await;
    result
}

async fn migrate_under_lock(client: &Client) -> Result<(), String> {
    let fail = |e: tokio_postgres::Error| super::describe(&e);
    let has_table: bool = client
        .query_one(
            "SELECT to_regclass('apikey.schema_version') IS NOT NULL",
            &[],
        )
        .await
        .map_err(fail)?
        .get(0);
    let found = match has_table {
        false => None,
        true => client
            .query_opt(
                "SELECT version, compatible_from FROM apikey.schema_version",
                &[],
            )
            .await
            .map_err(fail)?
            .map(|r| (r.get(0), r.get(1))),
    };
    let may_migrate: bool = client
        .query_one(
            "SELECT coalesce(to_regrole('apikey_owner') IS NOT NULL \
             AND pg_has_role(current_user, 'apikey_owner', 'MEMBER'), false)",
            &[],
        )
        .await
        .map_err(fail)?
        .get(0);
    let from = match plan(found, known(), may_migrate) {
        Plan::Use => return Ok(()),
        Plan::Refuse(why) => return Err(why),
        Plan::Migrate { from } => from,
    };
    for m in MIGRATIONS
        .iter()
        .filter(|m| m.version > from && m.version <= known())
    {
        let batch = format!(
            "BEGIN; SET LOCAL ROLE apikey_owner; {VERSION_TABLE} {sql}; \
             INSERT INTO apikey.schema_version (version, compatible_from) VALUES ({v}, {c}) \
             ON CONFLICT (one) DO UPDATE SET version = excluded.version, \
             compatible_from = excluded.compatible_from; COMMIT;",
            sql = m.sql,
            v = m.version,
            c = m.compatible_from
        );
        if let Err(e) = client.batch_execute(&batch).await {
            let _ = client.batch_execute("ROLLBACK").await;
            return Err(format!(
                "fleet schema migration {} failed: {}",
                m.version,
                super::describe(&e)
            ));
        }
        eprintln!("apikeyd: the fleet schema is now at version {}", m.version);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migrations_are_numbered_from_one_without_gaps() {
        for (i, m) in MIGRATIONS.iter().enumerate() {
            assert_eq!(m.version, i as i32 + 1);
            assert!(m.compatible_from <= m.version);
        }
        assert_eq!(known(), MIGRATIONS.len() as i32);
    }

    #[test]
    fn a_schema_is_used_migrated_or_refused() {
        assert_eq!(plan(None, 2, true), Plan::Migrate { from: 0 });
        assert!(matches!(plan(None, 2, false), Plan::Refuse(m) if m.contains("apikey_owner")));
        assert_eq!(plan(Some((2, 1)), 2, false), Plan::Use);
        assert_eq!(plan(Some((1, 1)), 2, true), Plan::Migrate { from: 1 });
        assert!(
            matches!(plan(Some((1, 1)), 2, false), Plan::Refuse(m) if m.contains("version 1 and this apikeyd needs 2"))
        );
        // A newer schema that older daemons can still use, and one they cannot.
        assert_eq!(plan(Some((3, 2)), 2, false), Plan::Use);
        assert_eq!(plan(Some((3, 2)), 2, true), Plan::Use);
        assert!(
            matches!(plan(Some((3, 3)), 2, true), Plan::Refuse(m) if m.contains("knows up to 2: upgrade"))
        );
    }
}

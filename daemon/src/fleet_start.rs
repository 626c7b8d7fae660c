//! Starting in fleet mode: the settings of `[fleet]` made into the shared
//! store, and the first connection tried at once so that a wrong schema,
//! registration or password is said at start, not at the first login.

use crate::config::FleetConfig;
use crate::store::fleet::FleetStore;
use crate::store::postgres::{self, Accounts, PgKeys, Settings};
use crate::store::SqliteStore;
use std::sync::Arc;
use std::time::Duration;

/// How long the start waits for the database (another host's migration
/// may hold the schema lock meanwhile).
const START_WAIT: Duration = Duration::from_secs(30);

/// Key lookups for logins are made on `runtime`, the daemon's (see
/// [`PgKeys::lookups_on`]).
pub fn open(
    fleet: &FleetConfig,
    local: SqliteStore,
    accounts: Arc<dyn Accounts>,
    runtime: &tokio::runtime::Runtime,
) -> Result<FleetStore, String> {
    let keys = shared_keys(fleet, accounts, Duration::from_millis(fleet.timeout_ms))?
        .lookups_on(runtime.handle().clone());
    keys.listen();
    // Down now is not wrong: logins with keys answer unavailable (passwords
    // keep working) until the database is back, without a restart.
    match keys.connect_now(START_WAIT) {
        Ok(()) => eprintln!(
            "apikeyd: fleet mode: keys are shared through the database as host {}",
            fleet.host
        ),
        Err(e) => eprintln!(
            "apikeyd: WARNING: fleet mode: {e}; key logins answer unavailable until this is fixed"
        ),
    }
    Ok(FleetStore { keys, local })
}

/// `apikeyd --upgrade-fleet-schema`: the version the schema is at after.
pub fn upgrade_schema(fleet: &FleetConfig) -> Result<i32, String> {
    let keys = shared_keys(fleet, Arc::new(crate::host::SystemHost::new()), TOOL_WAIT)?;
    keys.upgrade_schema(START_WAIT)
}

/// How long one database call of a tool (not a login) may take.
const TOOL_WAIT: Duration = Duration::from_secs(600);

/// `apikeyd --migrate-to-fleet`: this host's long-lived keys (active,
/// expired and revoked, with their last uses) and, where the fleet has
/// none, its policy, copied into the fleet database as made on this host;
/// what happened, in a few lines.
pub fn migrate_to_fleet(fleet: &FleetConfig, local: &SqliteStore) -> Result<String, String> {
    use crate::store::{ListQuery, Store};
    let mut keys = Vec::new();
    let mut after = 0;
    loop {
        let q = ListQuery {
            owner: None,
            sessions: false,
            long_lived: true,
            expired: true,
            revoked: true,
            now: 0,
            after,
            limit: 1000,
        };
        let (page, more) = local.list_page(&q).map_err(|e| e.to_string())?;
        after = page.last().map_or(after, |(p, _)| *p);
        keys.extend(page.into_iter().map(|(_, k)| k));
        if !more {
            break;
        }
    }
    let policy = local.policy().map_err(|e| e.to_string())?;
    let shared = shared_keys(fleet, Arc::new(crate::host::SystemHost::new()), TOOL_WAIT)?;
    shared.upgrade_schema(START_WAIT)?;
    shared.skip_registration();
    let done = shared.import(&keys, &policy)?;
    let mut report = format!(
        "copied {} keys of host {} into the fleet ({} of them revoked); {} were there already",
        done.added, fleet.host, done.added_revoked, done.already
    );
    for (id, why) in &done.skipped {
        report.push_str(&format!("\nleft out key {id}: {why}"));
    }
    report.push_str(match done.policy_copied {
        true => "\nthe fleet had no policy: this host's is the fleet's now",
        false => "\nthe fleet's policy is kept (this host's was not copied)",
    });
    Ok(report)
}

fn shared_keys(
    fleet: &FleetConfig,
    accounts: Arc<dyn Accounts>,
    timeout: Duration,
) -> Result<PgKeys, String> {
    let password = fleet
        .password_file
        .as_deref()
        .map(postgres::read_password_file)
        .transpose()?;
    PgKeys::open(
        Settings {
            conninfo: fleet.conninfo.clone(),
            password,
            host: fleet.host.clone(),
            timeout,
            offline_grace: Duration::from_secs(fleet.offline_grace_secs),
        },
        accounts,
    )
}

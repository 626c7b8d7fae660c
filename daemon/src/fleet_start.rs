//! Starting in fleet mode: the settings of `[fleet]` made into the shared
//! store, and the first connection tried at once so that a wrong schema,
//! registration or password is said at start, not at the first login.

use crate::config::FleetConfig;
use crate::store::fleet::FleetStore;
use crate::store::postgres::{self, conninfo, Accounts, PgKeys, Settings};
use crate::store::SqliteStore;
use std::sync::Arc;
use std::time::Duration;

/// How long the start waits for the database (another host's migration
/// may hold the schema lock meanwhile).
const START_WAIT: Duration = Duration::from_secs(30);

pub fn open(
    fleet: &FleetConfig,
    local: SqliteStore,
    accounts: Arc<dyn Accounts>,
) -> Result<FleetStore, String> {
    let keys = shared_keys(fleet, accounts)?;
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
    let keys = shared_keys(fleet, Arc::new(crate::host::SystemHost::new()))?;
    keys.upgrade_schema(START_WAIT)
}

fn shared_keys(fleet: &FleetConfig, accounts: Arc<dyn Accounts>) -> Result<PgKeys, String> {
    let conninfo = conninfo::parse(&fleet.database).map_err(|e| format!("database {e}"))?;
    let password = fleet
        .password_file
        .as_deref()
        .map(postgres::read_password_file)
        .transpose()?;
    PgKeys::open(
        Settings {
            conninfo,
            password,
            host: fleet.host.clone(),
            timeout: Duration::from_millis(fleet.timeout_ms),
        },
        accounts,
    )
}

//! The connection to `apikeyd` on the system bus.
//!
//! The command line follows `DBUS_SYSTEM_BUS_ADDRESS`, unlike the PAM
//! module (S1): it runs as the user who set the environment and gains
//! nothing from a daemon of the user's own, so honouring it only helps
//! testing.

use crate::exit::{unreachable, CliError};
use apikey_proto::Keys1Proxy;
use zbus::proxy::CacheProperties;

pub async fn connect() -> Result<Keys1Proxy<'static>, CliError> {
    let conn = zbus::Connection::system()
        .await
        .map_err(|e| unreachable(&e))?;
    // The interface has no properties; not caching them saves a round trip.
    Keys1Proxy::builder(&conn)
        .cache_properties(CacheProperties::No)
        .build()
        .await
        .map_err(|e| unreachable(&e))
}

/// A single-threaded runtime: every command is one or two calls in a row.
/// The daemon predates the method called (a package upgrade whose daemon
/// has not restarted yet): the caller falls back to the older method.
pub fn is_unknown_method(e: &apikey_proto::KeysError) -> bool {
    match e {
        apikey_proto::KeysError::ZBus(zbus::Error::FDO(e)) => {
            matches!(**e, zbus::fdo::Error::UnknownMethod(_))
        }
        apikey_proto::KeysError::ZBus(zbus::Error::MethodError(name, _, _)) => {
            name.as_str() == "org.freedesktop.DBus.Error.UnknownMethod"
        }
        _ => false,
    }
}

pub fn runtime() -> Result<tokio::runtime::Runtime, CliError> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| CliError::Failed(format!("cannot start the async runtime: {e}")))
}

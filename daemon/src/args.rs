//! Command line of `apikeyd`.

use std::path::PathBuf;

/// The apikey key store daemon: owns the keys and serves org.apikey.Keys1
/// on the system bus (or the bus named by DBUS_SYSTEM_BUS_ADDRESS).
#[derive(Debug, clap::Parser)]
#[command(name = "apikeyd", version, about, long_about = None)]
pub struct Args {
    /// Configuration file; a missing file means the built-in defaults.
    #[arg(long, value_name = "FILE", default_value = crate::config::DEFAULT_CONFIG)]
    pub config: PathBuf,
    /// Key store, overriding `database` in the configuration file.
    #[arg(long, value_name = "FILE")]
    pub database: Option<PathBuf>,
}

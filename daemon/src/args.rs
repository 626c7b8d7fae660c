//! Command line of `apikeyd`.

use std::path::PathBuf;

const LONG_ABOUT: &str = "\
apikeyd owns the API key store of this host and serves the D-Bus interface \
org.apikey.Keys1 on the system bus (or on the bus named by \
DBUS_SYSTEM_BUS_ADDRESS). Users and administrators reach it with apikey(1); \
pam_apikey.so asks it to verify keys at login. It is normally started by \
systemd or by D-Bus activation.";

const AFTER_LONG_HELP: &str = "\
Files:
  /etc/apikey/apikeyd.toml   configuration; a missing file means the defaults,
                             a malformed one or an unknown key stops start-up
                             with the file, line and reason
  /var/lib/apikey/keys.db    the key store (SQLite, WAL, mode 0600)

Signals:
  SIGTERM, SIGINT            release the bus name, write buffered last-used
                             times, exit 0

Exit status:
  0 on a clean stop; 69 the bus is unavailable or the name is taken;
  73 the key store cannot be opened (unreadable, locked, corrupt, unsafe
  directory); 78 configuration error.";

/// The apikey key store daemon.
#[derive(Debug, clap::Parser)]
#[command(
    name = "apikeyd",
    version,
    about = "The apikey key store daemon",
    long_about = LONG_ABOUT,
    after_long_help = AFTER_LONG_HELP
)]
pub struct Args {
    /// Configuration file; a missing file means the built-in defaults.
    #[arg(long, value_name = "FILE", default_value = crate::config::DEFAULT_CONFIG)]
    pub config: PathBuf,
    /// Key store, overriding `database` in the configuration file.
    #[arg(long, value_name = "FILE")]
    pub database: Option<PathBuf>,
}

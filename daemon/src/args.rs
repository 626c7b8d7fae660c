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

Bus loss:
  when the connection to the bus breaks (dbus-daemon restarted), the
  daemon logs it, connects again as soon as the bus answers and owns its
  name again; under systemd (Type=notify) the unit stays active meanwhile.

Signals:
  SIGTERM, SIGINT            release the bus name, write buffered last-used
                             times, exit 0

Exit status:
  0 on a clean stop; 69 the bus is unavailable or the name is taken, or
  the bus went away and did not come back within a minute;
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
    /// Started as root, become this account first: its uid and gid, the
    /// group shadow where it exists and no other, no new privileges. For
    /// D-Bus activation and starts without systemd (the unit sets the
    /// account itself)
    #[arg(long, value_name = "USER")]
    pub run_as: Option<String>,
    /// Append the daemon's messages (and audit lines, when no syslog
    /// listens) to FILE, opened before --run-as takes effect
    #[arg(long, value_name = "FILE")]
    pub log: Option<PathBuf>,
    /// Stop the daemon that owns org.apikey.Keys1 and wait for it to exit
    /// (where no service manager does it: containers, `make stop`). The
    /// process is pinned before it is signalled, so a pid the bus reported
    /// and another process took since is never signalled.
    #[arg(long, conflicts_with_all = ["pam_references"])]
    pub stop: bool,
    /// List the lines of /etc/pam.d and /etc/pam.conf that need
    /// pam_apikey.so, and exit 1 if there are any: removing the module
    /// would fail every login of those services. Package removal and
    /// `make uninstall` run it after taking the packaged profile out.
    #[arg(long)]
    pub pam_references: bool,
    /// Fleet mode: bring the database's schema up to date, as the
    /// configuration's [fleet] settings connect (a role that is a member
    /// of apikey_owner), print the version it is at and exit. Daemons
    /// whose role may also do it at start; the others wait for it
    #[arg(long, conflicts_with_all = ["stop", "pam_references"])]
    pub upgrade_fleet_schema: bool,
    /// Fleet mode: copy this host's own long-lived keys (with their
    /// revocations and last uses) and, if the fleet has none, its policy
    /// into the fleet database, as made on this host; owners by the names
    /// their uids have now. Connect as a role that is a member of
    /// apikey_owner. Running it again copies only what is missing
    #[arg(long, conflicts_with_all = ["stop", "pam_references", "upgrade_fleet_schema"])]
    pub migrate_to_fleet: bool,
}

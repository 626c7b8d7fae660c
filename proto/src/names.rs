//! Well-known names on the bus.

/// Bus name owned by `apikeyd`, and the name of its interface.
pub const BUS_NAME: &str = "org.apikey.Keys1";
pub const INTERFACE: &str = "org.apikey.Keys1";
pub const OBJECT_PATH: &str = "/org/apikey/Keys1";
/// Prefix of every error the daemon returns.
pub const ERROR_PREFIX: &str = "org.apikey.Keys1.Error";
/// The system bus socket compiled into clients that must not trust the
/// environment (S1).
pub const SYSTEM_BUS_ADDRESS: &str = "unix:path=/run/dbus/system_bus_socket";
/// apikeyd's socket for pam_apikey's login calls (peer-to-peer D-Bus),
/// beside the bus.
pub const PAM_SOCKET: &str = "/run/apikey/pam.sock";

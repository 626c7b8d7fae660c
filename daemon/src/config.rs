//! `/etc/apikey/apikeyd.toml`. A missing file means defaults; anything
//! malformed or unknown is refused with the file, line and reason, because
//! a typo in a security setting must not silently become a default.

use apikey_proto::duration::parse_duration;
use apikey_proto::services::{is_never_key_service, is_valid_pattern};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

pub const DEFAULT_CONFIG: &str = "/etc/apikey/apikeyd.toml";
pub const DEFAULT_DATABASE: &str = "/var/lib/apikey/keys.db";
pub use apikey_proto::names::PAM_SOCKET as DEFAULT_PAM_SOCKET;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawConfig {
    database: PathBuf,
    admin_groups: Vec<String>,
    key_services: Vec<String>,
    allow_system_accounts: Vec<String>,
    max_keys_per_user: u32,
    session_key_max_lifetime: String,
    syslog_socket: PathBuf,
    journal_socket: PathBuf,
    pam_socket: PathBuf,
    min_free_disk_mb: u64,
    retention: String,
    warn_before: String,
    throttle: RawThrottle,
    verifier_groups: BTreeMap<String, Vec<String>>,
    fleet: Option<RawFleet>,
    metrics: RawMetrics,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawMetrics {
    textfile: PathBuf,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFleet {
    database: String,
    #[serde(default)]
    password_file: PathBuf,
    #[serde(default)]
    host: String,
    #[serde(default = "default_fleet_timeout")]
    timeout: String,
    #[serde(default = "default_offline_grace")]
    offline_grace: String,
}

fn default_offline_grace() -> String {
    "0s".into()
}

/// The longest `offline_grace`: a revocation missed during an outage
/// must not live on for long.
pub const MAX_OFFLINE_GRACE_SECS: u64 = 15 * 60;

/// The longest `warn_before`: a warning a year ahead is no warning.
pub const MAX_WARN_BEFORE_SECS: u64 = 365 * 86_400;

fn default_fleet_timeout() -> String {
    "1s".into()
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawThrottle {
    free_failures: u32,
    max_delay: String,
    forget_after: String,
}

impl Default for RawConfig {
    fn default() -> Self {
        RawConfig {
            database: DEFAULT_DATABASE.into(),
            admin_groups: vec!["apikey-admin".into()],
            key_services: vec!["sshd*".into(), "vsftpd*".into(), "nginx*".into()],
            allow_system_accounts: vec![],
            max_keys_per_user: 100,
            session_key_max_lifetime: "12h".into(),
            syslog_socket: "/dev/log".into(),
            journal_socket: crate::journal::DEFAULT_SOCKET.into(),
            pam_socket: DEFAULT_PAM_SOCKET.into(),
            min_free_disk_mb: 64,
            retention: "90d".into(),
            warn_before: "7d".into(),
            throttle: RawThrottle::default(),
            verifier_groups: BTreeMap::from([("apikey-auth".into(), vec!["nginx*".into()])]),
            fleet: None,
            metrics: RawMetrics::default(),
        }
    }
}

impl Default for RawThrottle {
    fn default() -> Self {
        RawThrottle {
            free_failures: 10,
            max_delay: "2s".into(),
            forget_after: "15m".into(),
        }
    }
}

/// Limits on invalid attempts per (caller uid, remote host), S7.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ThrottleConfig {
    /// Failures answered without delay.
    pub free_failures: u32,
    pub max_delay_ms: u64,
    /// A source with no failure for this long starts afresh.
    pub forget_after_secs: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    pub database: PathBuf,
    pub admin_groups: Vec<String>,
    pub key_services: Vec<String>,
    pub allow_system_accounts: Vec<String>,
    pub max_keys_per_user: u32,
    pub session_key_max_lifetime_secs: u64,
    pub syslog_socket: PathBuf,
    /// journald's native socket: audit lines go there, with their fields,
    /// when it exists; `None` ("" in the file): syslog only.
    pub journal_socket: Option<PathBuf>,
    /// Where pam_apikey's login calls are served; `None` (an empty string
    /// in the file) serves them on the bus only.
    pub pam_socket: Option<PathBuf>,
    /// Writes that add keys stop with QuotaExceeded below this much free space.
    pub min_free_disk_bytes: u64,
    /// Revoked and expired keys are deleted this long after they ended.
    pub retention_secs: u64,
    /// A key used this close to its expiry is announced: to the user at
    /// login, in listings and status, and once a day in the audit log.
    pub warn_before_secs: u64,
    pub throttle: ThrottleConfig,
    pub verifier_groups: BTreeMap<String, Vec<String>>,
    /// Keys shared by many hosts in PostgreSQL; `None`: this host's own
    /// SQLite store only.
    pub fleet: Option<FleetConfig>,
    /// node_exporter's textfile collector: the file the metrics are
    /// written to every minute; `None`: not written.
    pub metrics_textfile: Option<PathBuf>,
}

/// `[fleet]`: where the shared store is and how this host appears in it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FleetConfig {
    /// The libpq-style URL or key=value string, without a password, as
    /// read (checked once, here).
    pub conninfo: crate::store::postgres::conninfo::ConnInfo,
    /// The database password, in a file only the daemon may read.
    pub password_file: Option<PathBuf>,
    /// This host's name in the fleet; the system's host name by default.
    pub host: String,
    /// Every database call answers within this; unavailable otherwise.
    pub timeout_ms: u64,
    /// While the database cannot be reached, keys verified online this
    /// recently are still accepted (0: never).
    pub offline_grace_secs: u64,
}

#[derive(Debug)]
pub struct ConfigError {
    pub file: PathBuf,
    pub line: Option<usize>,
    pub reason: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(line) => write!(f, "{}:{line}: {}", self.file.display(), self.reason),
            None => write!(f, "{}: {}", self.file.display(), self.reason),
        }
    }
}

impl std::error::Error for ConfigError {}

impl Default for Config {
    fn default() -> Self {
        validate(RawConfig::default()).expect("built-in defaults are valid")
    }
}

impl Config {
    /// Reads the file; a file that does not exist means defaults.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        match std::fs::read_to_string(path) {
            Ok(text) => Config::parse(&text, path),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Config::default()),
            Err(e) => Err(ConfigError {
                file: path.into(),
                line: None,
                reason: format!("cannot read: {e}"),
            }),
        }
    }

    pub fn parse(text: &str, path: &Path) -> Result<Config, ConfigError> {
        let raw: RawConfig = toml::from_str(text).map_err(|e| ConfigError {
            file: path.into(),
            line: e.span().map(|s| line_of(text, s.start)),
            reason: e.message().trim().to_string(),
        })?;
        validate(raw).map_err(|(key, reason)| ConfigError {
            file: path.into(),
            line: find_key_line(text, key),
            reason: format!("{key}: {reason}"),
        })
    }
}

fn line_of(text: &str, offset: usize) -> usize {
    text[..offset.min(text.len())].matches('\n').count() + 1
}

fn find_key_line(text: &str, key: &str) -> Option<usize> {
    let leaf = key.rsplit('.').next().unwrap_or(key);
    text.lines()
        .position(|l| {
            let l = l.trim_start();
            l.starts_with(leaf) && l[leaf.len()..].trim_start().starts_with('=')
        })
        .map(|i| i + 1)
}

fn validate(raw: RawConfig) -> Result<Config, (&'static str, String)> {
    check_patterns(&raw.key_services).map_err(|e| ("key_services", e))?;
    for (group, patterns) in &raw.verifier_groups {
        check_patterns(patterns).map_err(|e| ("verifier_groups", format!("{group}: {e}")))?;
    }
    if raw.max_keys_per_user == 0 {
        return Err(("max_keys_per_user", "must be at least 1".into()));
    }
    let lifetime = parse_duration(&raw.session_key_max_lifetime)
        .map_err(|e| ("session_key_max_lifetime", e))?;
    if lifetime == 0 {
        return Err(("session_key_max_lifetime", "must be longer than 0s".into()));
    }
    let max_delay = parse_duration(&raw.throttle.max_delay).map_err(|e| ("max_delay", e))?;
    let forget = parse_duration(&raw.throttle.forget_after).map_err(|e| ("forget_after", e))?;
    let retention = parse_duration(&raw.retention).map_err(|e| ("retention", e))?;
    if retention < 86_400 {
        return Err(("retention", "must be at least 1d".into()));
    }
    let warn_before = parse_duration(&raw.warn_before).map_err(|e| ("warn_before", e))?;
    if warn_before > MAX_WARN_BEFORE_SECS {
        return Err(("warn_before", "must be at most 365d".into()));
    }
    if !raw.database.is_absolute() {
        return Err(("database", "must be an absolute path".into()));
    }
    if !raw.journal_socket.as_os_str().is_empty() && !raw.journal_socket.is_absolute() {
        return Err((
            "journal_socket",
            "must be an absolute path, or \"\" to log to syslog only".into(),
        ));
    }
    let textfile = &raw.metrics.textfile;
    if !textfile.as_os_str().is_empty()
        && (!textfile.is_absolute() || textfile.extension().is_none_or(|e| e != "prom"))
    {
        return Err((
            "textfile",
            "must be an absolute path ending in .prom (node_exporter reads *.prom only)".into(),
        ));
    }
    if !raw.pam_socket.as_os_str().is_empty() && !raw.pam_socket.is_absolute() {
        return Err((
            "pam_socket",
            "must be an absolute path, or \"\" to serve logins on the bus only".into(),
        ));
    }
    Ok(Config {
        database: raw.database,
        admin_groups: raw.admin_groups,
        key_services: raw.key_services,
        allow_system_accounts: raw.allow_system_accounts,
        max_keys_per_user: raw.max_keys_per_user,
        session_key_max_lifetime_secs: lifetime,
        syslog_socket: raw.syslog_socket,
        journal_socket: Some(raw.journal_socket).filter(|p| !p.as_os_str().is_empty()),
        pam_socket: Some(raw.pam_socket).filter(|p| !p.as_os_str().is_empty()),
        min_free_disk_bytes: raw.min_free_disk_mb.saturating_mul(1 << 20),
        retention_secs: retention,
        warn_before_secs: warn_before,
        throttle: ThrottleConfig {
            free_failures: raw.throttle.free_failures,
            max_delay_ms: max_delay.saturating_mul(1000),
            forget_after_secs: forget.max(1),
        },
        verifier_groups: raw.verifier_groups,
        fleet: raw.fleet.map(validate_fleet).transpose()?,
        metrics_textfile: Some(raw.metrics.textfile).filter(|p| !p.as_os_str().is_empty()),
    })
}

fn validate_fleet(raw: RawFleet) -> Result<FleetConfig, (&'static str, String)> {
    let conninfo =
        crate::store::postgres::conninfo::parse(&raw.database).map_err(|e| ("database", e))?;
    if !raw.password_file.as_os_str().is_empty() && !raw.password_file.is_absolute() {
        return Err(("password_file", "must be an absolute path".into()));
    }
    let host = match raw.host.is_empty() {
        true => nix::unistd::gethostname()
            .ok()
            .and_then(|h| h.into_string().ok())
            .unwrap_or_default(),
        false => raw.host,
    };
    if !apikey_proto::hosts::is_host_name(&host) {
        return Err((
            "host",
            format!(
                "'{}' is not a host name (letters, digits, '-', '_' and '.', at most 253)",
                apikey_proto::services::printable(&host, 40)
            ),
        ));
    }
    let timeout = parse_millis(&raw.timeout).map_err(|e| ("timeout", e))?;
    if !(10..=60_000).contains(&timeout) {
        return Err(("timeout", "must be between 10ms and 60s".into()));
    }
    let offline_grace = parse_duration(&raw.offline_grace).map_err(|e| ("offline_grace", e))?;
    if offline_grace > MAX_OFFLINE_GRACE_SECS {
        return Err(("offline_grace", "must be at most 15m".into()));
    }
    Ok(FleetConfig {
        conninfo,
        password_file: Some(raw.password_file).filter(|p| !p.as_os_str().is_empty()),
        host,
        timeout_ms: timeout,
        offline_grace_secs: offline_grace,
    })
}

/// A duration that may also be written in milliseconds (`250ms`).
fn parse_millis(text: &str) -> Result<u64, String> {
    match text.trim().strip_suffix("ms") {
        Some(digits) => digits
            .parse()
            .map_err(|_| format!("'{text}' is not a duration such as 500ms or 2s")),
        None => parse_duration(text).map(|s| s.saturating_mul(1000)),
    }
}

fn check_patterns(patterns: &[String]) -> Result<(), String> {
    for p in patterns {
        if !is_valid_pattern(p) {
            return Err(format!(
                "'{}' is not a service name or a prefix ending in '*'",
                apikey_proto::services::printable(p, 40)
            ));
        }
        if is_never_key_service(p.trim_end_matches('*')) {
            return Err(format!(
                "'{p}' names a service that never accepts keys (su, sudo, login, ...)"
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const SPEC_EXAMPLE: &str = r#"
database = "/var/lib/apikey/keys.db"
admin_groups = ["apikey-admin"]
# PAM services that may accept keys: a name, or a prefix ending in '*'
key_services = ["sshd*", "vsftpd*", "nginx*"]
# accounts with uid 0 or a system uid that may hold keys
allow_system_accounts = []
max_keys_per_user = 100
session_key_max_lifetime = "12h"
# where audit lines go; tests point it at a socket of their own
syslog_socket = "/dev/log"

# non-root verifiers: group = the services its members may name
[verifier_groups]
apikey-auth = ["nginx*"]
"#;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse(text, Path::new("/etc/apikey/apikeyd.toml"))
    }

    #[test]
    fn the_pam_socket_is_a_path_or_nothing() {
        assert_eq!(
            Config::default().pam_socket.as_deref(),
            Some(Path::new("/run/apikey/pam.sock"))
        );
        assert_eq!(parse("pam_socket = \"\"").unwrap().pam_socket, None);
        let e = parse("pam_socket = \"pam.sock\"").unwrap_err();
        assert!(e.to_string().contains("absolute"), "{e}");
    }

    #[test]
    fn the_documented_example_is_the_default() {
        assert_eq!(parse(SPEC_EXAMPLE).unwrap(), Config::default());
    }

    #[test]
    fn the_shipped_file_is_all_defaults() {
        let shipped = include_str!("../../packaging/apikey/apikeyd.toml");
        assert_eq!(parse(shipped).unwrap(), Config::default());
        // Uncommenting every option gives the defaults too.
        let uncommented: String = shipped
            .lines()
            .map(|l| {
                l.strip_prefix('#')
                    .filter(|r| !r.starts_with(' '))
                    .unwrap_or(l)
            })
            .collect::<Vec<_>>()
            .join("\n");
        assert_eq!(parse(&uncommented).unwrap(), Config::default());
    }

    #[test]
    fn the_journal_is_used_unless_turned_off_and_metrics_are_written_only_if_asked() {
        let d = Config::default();
        assert_eq!(
            d.journal_socket.as_deref(),
            Some(Path::new("/run/systemd/journal/socket"))
        );
        assert_eq!(d.metrics_textfile, None);
        assert_eq!(parse("journal_socket = \"\"").unwrap().journal_socket, None);
        let c = parse("[metrics]\ntextfile = \"/var/lib/prometheus/node-exporter/apikey.prom\"")
            .unwrap();
        assert_eq!(
            c.metrics_textfile.as_deref(),
            Some(Path::new("/var/lib/prometheus/node-exporter/apikey.prom"))
        );
        for bad in ["apikey.prom", "/var/lib/x/apikey.txt", "/var/lib/x/apikey"] {
            let err = parse(&format!("[metrics]\ntextfile = \"{bad}\"")).unwrap_err();
            assert!(err.reason.contains("textfile"), "{bad}: {err}");
        }
        assert!(parse("journal_socket = \"journal.sock\"").is_err());
        assert!(parse("[metrics]\nport = 9100").is_err());
    }

    #[test]
    fn warn_before_is_a_week_unless_set_and_at_most_a_year() {
        assert_eq!(Config::default().warn_before_secs, 7 * 86_400);
        assert_eq!(
            parse("warn_before = \"3d\"").unwrap().warn_before_secs,
            3 * 86_400
        );
        // 0s turns the warnings off.
        assert_eq!(parse("warn_before = \"0s\"").unwrap().warn_before_secs, 0);
        assert_eq!(
            parse("warn_before = \"365d\"").unwrap().warn_before_secs,
            MAX_WARN_BEFORE_SECS
        );
        for bad in ["366d", "7", "a week"] {
            let err = parse(&format!("warn_before = \"{bad}\"")).unwrap_err();
            assert!(err.reason.contains("warn_before"), "{bad}: {err}");
        }
    }

    #[test]
    fn retention_is_at_least_a_day() {
        assert_eq!(Config::default().retention_secs, 90 * 86_400);
        assert_eq!(
            parse("retention = \"30d\"").unwrap().retention_secs,
            30 * 86_400
        );
        for bad in ["12h", "0d", "forever", ""] {
            assert!(parse(&format!("retention = \"{bad}\"")).is_err(), "{bad}");
        }
    }

    #[test]
    fn missing_file_means_defaults() {
        let c = Config::load(Path::new("/nonexistent/apikeyd.toml")).unwrap();
        assert_eq!(c, Config::default());
    }

    #[test]
    fn unknown_key_names_file_and_line() {
        let err = parse("max_keys_per_user = 5\nallow_root = true\n").unwrap_err();
        let text = err.to_string();
        assert!(text.starts_with("/etc/apikey/apikeyd.toml:2:"), "{text}");
        assert!(text.contains("allow_root"), "{text}");
    }

    #[test]
    fn wrong_type_names_the_line() {
        let err = parse("\n\nmax_keys_per_user = \"many\"\n").unwrap_err();
        assert_eq!(err.line, Some(3), "{err}");
    }

    #[test]
    fn bad_values_are_refused_with_their_line() {
        let err = parse("key_services = [\"sshd\", \"su\"]\n").unwrap_err();
        assert_eq!(err.line, Some(1));
        assert!(err.reason.contains("never accepts keys"), "{err}");
        let err = parse("a = 1\n").unwrap_err();
        assert!(err.reason.contains("unknown field"), "{err}");
        let err = parse("session_key_max_lifetime = \"12 hours\"\n").unwrap_err();
        assert!(err.reason.contains("session_key_max_lifetime"), "{err}");
        assert!(parse("database = \"relative.db\"\n").is_err());
        assert!(parse("[verifier_groups]\nwww = [\"*\"]\n").is_err());
    }

    #[test]
    fn throttle_table_is_read() {
        let c = parse("[throttle]\nfree_failures = 3\nmax_delay = \"2s\"\n").unwrap();
        assert_eq!(c.throttle.free_failures, 3);
        assert_eq!(c.throttle.max_delay_ms, 2000);
        assert_eq!(c.throttle.forget_after_secs, 900);
    }

    #[test]
    fn a_fleet_section_is_read_and_checked() {
        let c = parse(
            "[fleet]\ndatabase = \"host=db1,db2 dbname=apikey user=apikeyd_web1 \
             sslmode=verify-full sslrootcert=/etc/apikey/ca.pem\"\n\
             password_file = \"/etc/apikey/db-password\"\nhost = \"web-1\"\ntimeout = \"250ms\"\n",
        )
        .unwrap();
        let fleet = c.fleet.unwrap();
        assert_eq!(fleet.host, "web-1");
        assert_eq!(fleet.timeout_ms, 250);
        assert_eq!(
            fleet.password_file.as_deref(),
            Some(Path::new("/etc/apikey/db-password"))
        );
        // Defaults: the system's host name, one second, no password file.
        let c = parse("[fleet]\ndatabase = \"postgresql://db/apikey\"\n").unwrap();
        let fleet = c.fleet.unwrap();
        assert_eq!(fleet.timeout_ms, 1000);
        assert_eq!(fleet.offline_grace_secs, 0);
        assert_eq!(fleet.password_file, None);
        let c = parse("[fleet]\ndatabase = \"host=db\"\noffline_grace = \"15m\"\n").unwrap();
        assert_eq!(c.fleet.unwrap().offline_grace_secs, 900);
        assert!(
            apikey_proto::hosts::is_host_name(&fleet.host),
            "{}",
            fleet.host
        );
        assert_eq!(Config::default().fleet, None);
        for (text, words) in [
            ("[fleet]\n", "missing field `database`"),
            (
                "[fleet]\ndatabase = \"host=db password=x\"\n",
                "password_file",
            ),
            (
                "[fleet]\ndatabase = \"host=db\"\nhost = \"web 1\"\n",
                "not a host name",
            ),
            (
                "[fleet]\ndatabase = \"host=db\"\ntimeout = \"5ms\"\n",
                "between 10ms and 60s",
            ),
            (
                "[fleet]\ndatabase = \"host=db\"\ntimeout = \"2m\"\n",
                "between 10ms and 60s",
            ),
            (
                "[fleet]\ndatabase = \"host=db\"\ntimeout = \"xms\"\n",
                "500ms",
            ),
            (
                "[fleet]\ndatabase = \"host=db\"\npassword_file = \"pw\"\n",
                "absolute",
            ),
            (
                "[fleet]\ndatabase = \"host=db\"\nreplicas = 2\n",
                "unknown field `replicas`",
            ),
            (
                "[fleet]\ndatabase = \"host=db\"\noffline_grace = \"16m\"\n",
                "at most 15m",
            ),
            (
                "[fleet]\ndatabase = \"host=db\"\noffline_grace = \"1\"\n",
                "needs a unit",
            ),
        ] {
            let e = parse(text).unwrap_err().to_string();
            assert!(e.contains(words), "{text}: {e}");
        }
    }
}

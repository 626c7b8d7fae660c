//! Values that travel on the bus. Times are Unix seconds; 0 means "none"
//! (never expires, never used, not revoked), as D-Bus has no optional type.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;
use zbus::Type;

/// One (service, remote host) pair of a key's use history (`ShowKey`):
/// the first and last use from it (Unix seconds), and in a fleet the host
/// of the last (empty on a single host).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Type)]
pub struct UseInfo {
    pub service: String,
    pub rhost: String,
    pub first: i64,
    pub last: i64,
    pub host: String,
}

/// One key as `List` shows it. Never contains the secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Type)]
pub struct KeyInfo {
    pub id: String,
    /// Owner's user name at generation.
    pub user: String,
    pub uid: u32,
    pub name: String,
    /// Service patterns the key may log in to; empty means every service
    /// the site allows.
    pub services: Vec<String>,
    pub created: i64,
    /// Effective expiry: the earlier of the key's own and the policy cap.
    pub expires: i64,
    pub last_used: i64,
    pub last_service: String,
    pub last_rhost: String,
    pub created_by_uid: u32,
    /// True for session keys (only administrators see these).
    pub session: bool,
    pub revoked: i64,
}

/// Key expiry choices offered by the policy and by `generate --expires`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Expiry {
    Days(u32),
    Never,
}

impl Expiry {
    pub const CHOICES: [&'static str; 5] = ["never", "7d", "30d", "90d", "365d"];

    /// Seconds until expiry, `None` for never.
    pub fn seconds(self) -> Option<i64> {
        match self {
            Expiry::Never => None,
            Expiry::Days(d) => Some(i64::from(d) * 86400),
        }
    }
}

impl FromStr for Expiry {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "never" => Ok(Expiry::Never),
            "7d" => Ok(Expiry::Days(7)),
            "30d" => Ok(Expiry::Days(30)),
            "90d" => Ok(Expiry::Days(90)),
            "365d" => Ok(Expiry::Days(365)),
            _ => Err(format!(
                "expiry must be one of never, 7d, 30d, 90d, 365d (got '{}')",
                crate::services::printable(s, 20)
            )),
        }
    }
}

impl fmt::Display for Expiry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Expiry::Never => f.write_str("never"),
            Expiry::Days(d) => write!(f, "{d}d"),
        }
    }
}

/// The site policy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Type)]
pub struct Settings {
    /// "Let users create API keys".
    pub allow_user_keys: bool,
    /// "never", "7d", "30d", "90d" or "365d".
    pub expires: String,
    pub users_see_own: bool,
    /// Idle timeout of session keys, in seconds.
    pub session_timeout: u64,
}

/// What `Status` tells the caller about itself and the daemon.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Type)]
pub struct StatusInfo {
    pub version: String,
    pub uid: u32,
    pub user: String,
    pub admin: bool,
    pub verifier: bool,
    pub logged_in: bool,
    pub impersonating: bool,
    /// Active session keys the caller owns.
    pub session_keys: u32,
    pub settings: Settings,
    /// Empty while the key store answers; otherwise what is wrong with it
    /// (key logins then answer "unavailable").
    pub store: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expiry_round_trips_and_orders() {
        for c in Expiry::CHOICES {
            assert_eq!(c.parse::<Expiry>().unwrap().to_string(), c);
        }
        assert!(Expiry::Days(7) < Expiry::Days(30));
        assert!(Expiry::Days(365) < Expiry::Never);
        assert!("8d".parse::<Expiry>().is_err());
    }
}

//! What a key has beyond [`KeyInfo`](crate::KeyInfo), as a dictionary
//! (`a{sv}`) beside it: `KeyInfo`'s struct signature is part of the
//! published interface and cannot grow, while a dictionary can, and a
//! client ignores the entries it does not know.
//!
//! Entries (absent when empty):
//! - `made_on` (s): fleet mode, the host the key was made on;
//! - `hosts` (as): fleet mode, the host names or globs the key works on;
//! - `last_host` (s): fleet mode, the host of the last use;
//! - `from` (as): the networks logins with the key may come from;
//! - `expires_soon` (b): the key expires within the site's `warn_before`.

use std::collections::HashMap;
use zbus::{OwnedVariant as OwnedValue, Variant as Value};

/// The dictionary as it travels.
pub type ExtraDict = HashMap<String, OwnedValue>;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeyExtra {
    pub made_on: String,
    pub hosts: Vec<String>,
    pub last_host: String,
    pub from: Vec<String>,
    pub expires_soon: bool,
}

fn owned(v: Value<'_>) -> OwnedValue {
    // Strings and arrays of strings hold no file descriptors: cannot fail.
    v.try_into().expect("a value without file descriptors")
}

impl KeyExtra {
    pub fn to_dict(&self) -> ExtraDict {
        let mut d = ExtraDict::new();
        if !self.made_on.is_empty() {
            d.insert("made_on".into(), owned(Value::from(self.made_on.as_str())));
        }
        if !self.hosts.is_empty() {
            d.insert("hosts".into(), owned(Value::from(self.hosts.clone())));
        }
        if !self.last_host.is_empty() {
            d.insert(
                "last_host".into(),
                owned(Value::from(self.last_host.as_str())),
            );
        }
        if !self.from.is_empty() {
            d.insert("from".into(), owned(Value::from(self.from.clone())));
        }
        if self.expires_soon {
            d.insert("expires_soon".into(), owned(Value::from(true)));
        }
        d
    }

    /// Entries of the wrong type are taken as absent, unknown ones ignored.
    pub fn from_dict(d: &ExtraDict) -> KeyExtra {
        let text = |k: &str| {
            d.get(k)
                .and_then(|v| String::try_from(v.clone()).ok())
                .unwrap_or_default()
        };
        let list = |k: &str| {
            d.get(k)
                .and_then(|v| Vec::<String>::try_from(v.clone()).ok())
                .unwrap_or_default()
        };
        KeyExtra {
            made_on: text("made_on"),
            hosts: list("hosts"),
            last_host: text("last_host"),
            from: list("from"),
            expires_soon: d
                .get("expires_soon")
                .and_then(|v| bool::try_from(v.clone()).ok())
                .unwrap_or(false),
        }
    }

    /// About what the dictionary takes in a bus message.
    pub fn encoded_size(&self) -> usize {
        let entry = |s: usize| s + 32;
        let mut n = 8;
        if !self.made_on.is_empty() {
            n += entry(self.made_on.len());
        }
        if !self.hosts.is_empty() {
            n += entry(self.hosts.iter().map(|h| h.len() + 8).sum());
        }
        if !self.last_host.is_empty() {
            n += entry(self.last_host.len());
        }
        if !self.from.is_empty() {
            n += entry(self.from.iter().map(|h| h.len() + 8).sum());
        }
        if self.expires_soon {
            n += entry(4);
        }
        n
    }
}

/// Options of `GenerateWith` (`a{sv}`): `hosts` (as), `from` (as).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GenerateOptions {
    pub hosts: Vec<String>,
    /// Networks in CIDR notation, canonical (see [`crate::sources`]).
    pub from: Vec<String>,
}

impl GenerateOptions {
    pub fn to_dict(&self) -> ExtraDict {
        let mut d = ExtraDict::new();
        if !self.hosts.is_empty() {
            d.insert("hosts".into(), owned(Value::from(self.hosts.clone())));
        }
        if !self.from.is_empty() {
            d.insert("from".into(), owned(Value::from(self.from.clone())));
        }
        d
    }

    /// Unknown options are refused, not ignored: an option a daemon does
    /// not know would otherwise make a key wider than asked.
    pub fn from_dict(d: &ExtraDict) -> Result<GenerateOptions, String> {
        let mut opts = GenerateOptions::default();
        for (name, value) in d {
            match name.as_str() {
                "hosts" => {
                    opts.hosts = Vec::<String>::try_from(value.clone())
                        .map_err(|_| "option hosts must be an array of strings (as)".to_string())?
                }
                "from" => {
                    opts.from = Vec::<String>::try_from(value.clone())
                        .map_err(|_| "option from must be an array of strings (as)".to_string())?
                }
                other => {
                    return Err(format!(
                        "unknown option '{}'",
                        crate::services::printable(other, 40)
                    ))
                }
            }
        }
        Ok(opts)
    }
}

/// How long a long-lived key may go unused before the daemon revokes it
/// (`settings --revoke-unused`).
pub const REVOKE_UNUSED_CHOICES: [&str; 4] = ["never", "30d", "90d", "365d"];

/// Days of a [`REVOKE_UNUSED_CHOICES`] entry (written as an
/// [`Expiry`](crate::Expiry) is); 0 for never.
pub fn revoke_unused_days(choice: &str) -> Option<u32> {
    if !REVOKE_UNUSED_CHOICES.contains(&choice) {
        return None;
    }
    match choice.parse().ok()? {
        crate::Expiry::Never => Some(0),
        crate::Expiry::Days(d) => Some(d),
    }
}

/// The choice that is `days`.
pub fn revoke_unused_choice(days: u32) -> String {
    match days {
        0 => crate::Expiry::Never,
        d => crate::Expiry::Days(d),
    }
    .to_string()
}

/// The site policy beyond [`Settings`](crate::Settings), whose struct
/// signature cannot grow: `GetSettingsWith` and `SetSettingsWith` give it
/// as a dictionary beside that struct. Entries: `require_from` (b),
/// `revoke_unused` (s).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SettingsExtra {
    /// Every new long-lived key must name its networks (`--from`).
    pub require_from: bool,
    /// One of [`REVOKE_UNUSED_CHOICES`].
    pub revoke_unused: String,
}

impl Default for SettingsExtra {
    fn default() -> Self {
        SettingsExtra {
            require_from: false,
            revoke_unused: "never".into(),
        }
    }
}

impl SettingsExtra {
    pub fn to_dict(&self) -> ExtraDict {
        let mut d = ExtraDict::new();
        d.insert("require_from".into(), owned(Value::from(self.require_from)));
        d.insert(
            "revoke_unused".into(),
            owned(Value::from(self.revoke_unused.as_str())),
        );
        d
    }

    /// Entries of the wrong type, or absent (an older daemon), are the
    /// defaults.
    pub fn from_dict(d: &ExtraDict) -> SettingsExtra {
        let default = SettingsExtra::default();
        SettingsExtra {
            require_from: d
                .get("require_from")
                .and_then(|v| bool::try_from(v.clone()).ok())
                .unwrap_or(default.require_from),
            revoke_unused: d
                .get("revoke_unused")
                .and_then(|v| String::try_from(v.clone()).ok())
                .unwrap_or(default.revoke_unused),
        }
    }
}

/// What `StatusWith` tells beyond [`StatusInfo`](crate::StatusInfo),
/// whose struct signature cannot grow. Entries: `warn_before` (t,
/// seconds; 0 when warnings are off), `expiring_soon` (u, the caller's
/// active keys that expire within it; absent while the store cannot be
/// read), and [`SettingsExtra`]'s.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StatusExtra {
    pub warn_before: u64,
    pub expiring_soon: Option<u32>,
    pub settings: SettingsExtra,
}

impl StatusExtra {
    pub fn to_dict(&self) -> ExtraDict {
        let mut d = self.settings.to_dict();
        d.insert("warn_before".into(), owned(Value::from(self.warn_before)));
        if let Some(n) = self.expiring_soon {
            d.insert("expiring_soon".into(), owned(Value::from(n)));
        }
        d
    }

    /// Entries of the wrong type, or absent, are 0, none or the defaults.
    pub fn from_dict(d: &ExtraDict) -> StatusExtra {
        StatusExtra {
            warn_before: d
                .get("warn_before")
                .and_then(|v| u64::try_from(v.clone()).ok())
                .unwrap_or(0),
            expiring_soon: d
                .get("expiring_soon")
                .and_then(|v| u32::try_from(v.clone()).ok()),
            settings: SettingsExtra::from_dict(d),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extras_travel_and_empty_ones_stay_home() {
        let e = KeyExtra {
            made_on: "adm-1".into(),
            hosts: vec!["web-*".into(), "db-1".into()],
            last_host: "web-3".into(),
            from: vec!["10.1.0.0/16".into()],
            expires_soon: true,
        };
        let d = e.to_dict();
        assert_eq!(d.len(), 5);
        assert_eq!(KeyExtra::from_dict(&d), e);
        assert!(KeyExtra::default().to_dict().is_empty());
        assert_eq!(KeyExtra::from_dict(&ExtraDict::new()), KeyExtra::default());
        assert!(e.encoded_size() > KeyExtra::default().encoded_size() + 30);
    }

    /// The estimate a page is filled by is never below what the
    /// dictionary takes on the bus, and never far above.
    #[test]
    fn the_size_estimate_covers_the_encoding_closely() {
        let encoded = |e: &KeyExtra| {
            let ctxt = zbus::wire::serialized::Context::new(zbus::wire::Endian::Little, 0);
            zbus::wire::to_bytes(ctxt, &e.to_dict()).unwrap().len()
        };
        let full = KeyExtra {
            made_on: "adm-1".into(),
            hosts: vec!["web-*".into(), "db-1".into()],
            last_host: "web-3".into(),
            from: vec!["10.1.0.0/16".into(), "2001:db8::/32".into()],
            expires_soon: true,
        };
        let cases = [
            KeyExtra {
                expires_soon: true,
                ..KeyExtra::default()
            },
            KeyExtra::default(),
            KeyExtra {
                made_on: "adm-1".into(),
                ..KeyExtra::default()
            },
            KeyExtra {
                hosts: full.hosts.clone(),
                ..KeyExtra::default()
            },
            KeyExtra {
                last_host: "a-rather-longer-host-name.example.org".into(),
                ..KeyExtra::default()
            },
            KeyExtra {
                from: (0..32).map(|i| format!("2001:db8:{i}::/48")).collect(),
                ..KeyExtra::default()
            },
            KeyExtra {
                hosts: (0..64).map(|i| format!("host-{i}.example.org")).collect(),
                ..full.clone()
            },
            full,
        ];
        for e in &cases {
            let (estimate, actual) = (e.encoded_size(), encoded(e));
            assert!(
                actual <= estimate && estimate <= actual + actual / 4 + 16,
                "{e:?}: estimated {estimate}, encoded {actual}"
            );
        }
    }

    #[test]
    fn settings_beyond_the_struct_travel_and_default_when_absent() {
        let e = SettingsExtra {
            require_from: true,
            revoke_unused: "90d".into(),
        };
        assert_eq!(SettingsExtra::from_dict(&e.to_dict()), e);
        assert_eq!(
            SettingsExtra::from_dict(&ExtraDict::new()),
            SettingsExtra::default()
        );
        for (choice, days) in [("never", 0), ("30d", 30), ("90d", 90), ("365d", 365)] {
            assert_eq!(revoke_unused_days(choice), Some(days));
            assert_eq!(revoke_unused_choice(days), choice);
        }
        assert_eq!(revoke_unused_days("7d"), None);
    }

    #[test]
    fn status_beyond_the_struct_travels() {
        let e = StatusExtra {
            warn_before: 7 * 86_400,
            expiring_soon: Some(2),
            settings: SettingsExtra {
                require_from: true,
                revoke_unused: "30d".into(),
            },
        };
        assert_eq!(StatusExtra::from_dict(&e.to_dict()), e);
        assert_eq!(
            StatusExtra::from_dict(&ExtraDict::new()),
            StatusExtra::default()
        );
        let mut odd = e.to_dict();
        odd.insert("expiring_soon".into(), owned(Value::from("2")));
        assert_eq!(StatusExtra::from_dict(&odd).expiring_soon, None);
    }

    #[test]
    fn strange_entries_are_absent_and_unknown_options_refused() {
        let mut d = ExtraDict::new();
        d.insert("made_on".into(), owned(Value::from(7u32)));
        d.insert("future".into(), owned(Value::from("x")));
        assert_eq!(KeyExtra::from_dict(&d), KeyExtra::default());
        let o = GenerateOptions {
            hosts: vec!["web-*".into()],
            from: vec!["10.0.0.0/8".into()],
        };
        assert_eq!(GenerateOptions::from_dict(&o.to_dict()), Ok(o));
        let mut unknown = ExtraDict::new();
        unknown.insert("expires_at".into(), owned(Value::from("10.0.0.0/8")));
        assert!(GenerateOptions::from_dict(&unknown)
            .unwrap_err()
            .contains("'expires_at'"));
        let mut bad = ExtraDict::new();
        bad.insert("from".into(), owned(Value::from("10.0.0.0/8")));
        assert!(GenerateOptions::from_dict(&bad)
            .unwrap_err()
            .contains("from must be"));
        let mut bad = ExtraDict::new();
        bad.insert("hosts".into(), owned(Value::from("web-1")));
        assert!(GenerateOptions::from_dict(&bad)
            .unwrap_err()
            .contains("(as)"));
    }
}

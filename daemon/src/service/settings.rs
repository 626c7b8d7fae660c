//! The site policy: read and changed as a whole (`GetSettings`,
//! `SetSettings`, whose signatures are fixed) or by name
//! (`GetSettingsWith`, `SetSettingsWith`, for what the `Settings` struct
//! cannot hold); each setting's text is read in one place.

use super::{store_error, Caller, KeyService, Result};
use crate::audit::Line;
use crate::policy;
use crate::store::{yes_no, Policy};
use apikey_proto::duration::parse_duration;
use apikey_proto::extra::{revoke_unused_choice, revoke_unused_days, REVOKE_UNUSED_CHOICES};
use apikey_proto::{KeysError, Settings, SettingsExtra};

/// Changes by name, in the order given.
pub type Changes<'a> = [(&'a str, &'a str)];

impl KeyService {
    pub fn get_settings(&self) -> Result<Settings> {
        Ok(settings_of(&self.policy()?))
    }

    pub fn get_settings_with(&self) -> Result<(Settings, SettingsExtra)> {
        let p = self.policy()?;
        Ok((settings_of(&p), extra_of(&p)))
    }

    /// `SetSettings`: each argument empty leaves that setting as it is.
    pub fn set_settings(
        &self,
        c: &Caller,
        allow_user_keys: &str,
        expires: &str,
        users_see_own: &str,
        session_timeout: &str,
    ) -> Result<Settings> {
        let changes: Vec<(&str, &str)> = [
            ("allow_user_keys", allow_user_keys),
            ("expires", expires),
            ("users_see_own", users_see_own),
            ("session_timeout", session_timeout),
        ]
        .into_iter()
        .filter(|(_, v)| !v.is_empty())
        .collect();
        self.change_settings(c, &changes).map(|p| settings_of(&p))
    }

    pub fn set_settings_with(
        &self,
        c: &Caller,
        changes: &Changes<'_>,
    ) -> Result<(Settings, SettingsExtra)> {
        self.change_settings(c, changes)
            .map(|p| (settings_of(&p), extra_of(&p)))
    }

    /// Applies every change or none (administrators), saves, and logs the
    /// policy that results.
    fn change_settings(&self, c: &Caller, changes: &Changes<'_>) -> Result<Policy> {
        let outcome = (|| -> Result<Policy> {
            policy::may_change_settings(self.is_admin(c))?;
            let mut p = self.policy()?;
            for (name, value) in changes {
                apply(&mut p, name, value)?;
            }
            self.store.save_policy(&p).map_err(store_error)?;
            Ok(p)
        })();
        let mut line = Line::new("settings")
            .num("caller_uid", c.uid)
            .num("caller_pid", c.pid);
        line = match &outcome {
            Ok(p) => line
                .field("allow_user_keys", yes_no(p.allow_user_keys))
                .field("expiry", &p.expiry.to_string())
                .field("users_see_own", yes_no(p.users_see_own))
                .num("session_timeout", p.session_timeout_secs as i64)
                .field("require_from", yes_no(p.require_from))
                .field("revoke_unused", &revoke_unused_choice(p.revoke_unused_days))
                .field("outcome", "ok"),
            Err(e) => line.field("outcome", e.short_name()).warn(),
        };
        self.audit_outcome(c.uid, &line, outcome.as_ref().err());
        outcome
    }
}

/// One setting from its text, as `apikey settings` takes it.
pub fn apply(p: &mut Policy, name: &str, value: &str) -> Result<()> {
    match name {
        "allow_user_keys" => p.allow_user_keys = parse_yes_no(name, value)?,
        "users_see_own" => p.users_see_own = parse_yes_no(name, value)?,
        "require_from" => p.require_from = parse_yes_no(name, value)?,
        "expires" => p.expiry = value.parse().map_err(KeysError::InvalidArgument)?,
        "revoke_unused" => {
            p.revoke_unused_days = revoke_unused_days(value).ok_or_else(|| {
                KeysError::InvalidArgument(format!(
                    "revoke_unused takes one of {}",
                    REVOKE_UNUSED_CHOICES.join(", ")
                ))
            })?
        }
        "session_timeout" => {
            let secs = parse_duration(value).map_err(KeysError::InvalidArgument)?;
            if secs < 60 {
                return Err(KeysError::InvalidArgument(
                    "the session idle timeout must be at least 1m".into(),
                ));
            }
            p.session_timeout_secs = secs;
        }
        other => {
            return Err(KeysError::InvalidArgument(format!(
                "there is no setting '{}'",
                apikey_proto::services::printable(other, 40)
            )))
        }
    }
    Ok(())
}

pub(super) fn settings_of(p: &Policy) -> Settings {
    Settings {
        allow_user_keys: p.allow_user_keys,
        expires: p.expiry.to_string(),
        users_see_own: p.users_see_own,
        session_timeout: p.session_timeout_secs,
    }
}

pub(super) fn extra_of(p: &Policy) -> SettingsExtra {
    SettingsExtra {
        require_from: p.require_from,
        revoke_unused: revoke_unused_choice(p.revoke_unused_days),
    }
}

fn parse_yes_no(what: &str, text: &str) -> Result<bool> {
    crate::store::parse_yes_no(text)
        .ok_or_else(|| KeysError::InvalidArgument(format!("{what} takes yes or no")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_setting_is_read_from_its_text_and_bad_text_says_why() {
        let mut p = Policy::default();
        for (name, value) in [
            ("allow_user_keys", "yes"),
            ("users_see_own", "no"),
            ("require_from", "yes"),
            ("expires", "90d"),
            ("revoke_unused", "365d"),
            ("session_timeout", "2h"),
        ] {
            apply(&mut p, name, value).unwrap();
        }
        assert!(p.allow_user_keys && !p.users_see_own && p.require_from);
        assert_eq!(p.expiry.to_string(), "90d");
        assert_eq!((p.revoke_unused_days, p.session_timeout_secs), (365, 7200));
        for (name, value, says) in [
            ("require_from", "true", "yes or no"),
            ("revoke_unused", "7d", "never, 30d, 90d, 365d"),
            ("session_timeout", "30s", "at least 1m"),
            ("expires", "8d", ""),
            ("colour", "blue", "no setting 'colour'"),
        ] {
            let e = apply(&mut p, name, value).unwrap_err();
            assert!(
                matches!(&e, KeysError::InvalidArgument(m) if m.contains(says)),
                "{e:?}"
            );
        }
        assert_eq!(extra_of(&p).revoke_unused, "365d");
    }
}

//! Client side of `org.apikey.Keys1`, used by the command line and tests.

use crate::errors::KeysError;
use crate::extra::ExtraDict;
use crate::types::{KeyInfo, Settings, StatusInfo};

#[zbus::proxy(
    interface = "org.apikey.Keys1",
    default_service = "org.apikey.Keys1",
    default_path = "/org/apikey/Keys1"
)]
pub trait Keys1 {
    /// A new long-lived key. Empty `name`/`expires`/`user` and an empty
    /// `services` list take the defaults. Returns the token (shown once)
    /// and the key's record.
    fn generate(
        &self,
        name: &str,
        expires: &str,
        services: &[&str],
        user: &str,
    ) -> Result<(String, KeyInfo), KeysError>;

    /// `generate` with options (`a{sv}`, see [`GenerateOptions`]
    /// (crate::GenerateOptions)); the key's record comes with its extras
    /// ([`KeyExtra`](crate::KeyExtra)).
    fn generate_with(
        &self,
        name: &str,
        expires: &str,
        services: &[&str],
        user: &str,
        options: ExtraDict,
    ) -> Result<(String, KeyInfo, ExtraDict), KeysError>;

    /// A session key: bound to the caller's login session and authenticating
    /// as the uid the caller runs as; it ends with that session.
    fn create_session_key(&self, name: &str) -> Result<(String, KeyInfo), KeysError>;

    /// Keys visible to the caller: its own (`user` empty, `all` false),
    /// one user's (`user`), or every key (`all`). Session keys only with
    /// `sessions` and only for administrators.
    fn list(&self, user: &str, all: bool, sessions: bool) -> Result<Vec<KeyInfo>, KeysError>;

    /// One page of a listing (as `list`, which shows neither expired nor
    /// revoked keys unless `show` names "expired" or "revoked"), from
    /// position `after` ("" to start); returns the keys and the position
    /// to ask after next, "" after the last page. `limit` caps the keys
    /// in a page (the daemon also caps its size in bytes).
    fn list_page(
        &self,
        user: &str,
        all: bool,
        sessions: bool,
        show: &[&str],
        after: &str,
        limit: u32,
    ) -> Result<(Vec<KeyInfo>, String), KeysError>;

    /// `list_page` with each key's extras ([`KeyExtra`](crate::KeyExtra)).
    #[allow(clippy::too_many_arguments)]
    fn list_page_with(
        &self,
        user: &str,
        all: bool,
        sessions: bool,
        show: &[&str],
        after: &str,
        limit: u32,
    ) -> Result<(Vec<(KeyInfo, ExtraDict)>, String), KeysError>;

    /// Revokes the given key ids; returns the ids revoked.
    fn revoke(&self, ids: &[&str]) -> Result<Vec<String>, KeysError>;

    /// Revokes every key of `user` (empty: the caller); returns the ids.
    fn revoke_all(&self, user: &str) -> Result<Vec<String>, KeysError>;

    /// Revokes every key on the host (administrators).
    fn revoke_site(&self) -> Result<Vec<String>, KeysError>;

    /// Revokes the key `token` is, whoever owns it (anyone holding a key
    /// may revoke it: possession is the proof). Returns its id and whether
    /// this call revoked it (false: it was revoked already). A token that
    /// is no key is refused (`NotFound`) after the caller's delay, as a
    /// refused login is.
    fn revoke_by_token(&self, token: &str) -> Result<(String, bool), KeysError>;

    /// One key (by id) with its extras and its use history: the last
    /// distinct (service, remote host) pairs it was used from, newest
    /// first. To whoever may list it; another user's key is NotFound to
    /// anyone but an administrator.
    fn show_key(&self, id: &str) -> Result<(KeyInfo, ExtraDict, Vec<crate::UseInfo>), KeysError>;

    /// Which key `token` is and whether it works: `active`, `expired` or
    /// `revoked`. Any caller, throttled as RevokeByToken.
    fn inspect_token(&self, token: &str) -> Result<(String, String), KeysError>;

    /// Writes a consistent copy of the key store into `file`, an empty
    /// file the caller opened for writing (administrators); returns the
    /// bytes written.
    fn backup(&self, file: zbus::Fd<'_>) -> Result<u64, KeysError>;

    /// Replaces a key with a new one of the same owner, name and scope.
    fn rotate(&self, id: &str) -> Result<(String, KeyInfo), KeysError>;

    /// The services keys may be scoped to (the site's `key_services`).
    fn key_services(&self) -> Result<Vec<String>, KeysError>;

    fn get_settings(&self) -> Result<Settings, KeysError>;

    /// Each argument empty leaves that setting unchanged; the booleans
    /// take "yes"/"no", `expires` one of never/7d/30d/90d/365d,
    /// `session_timeout` a duration such as 30m.
    fn set_settings(
        &self,
        allow_user_keys: &str,
        expires: &str,
        users_see_own: &str,
        session_timeout: &str,
    ) -> Result<Settings, KeysError>;

    /// The policy, and beside it what the `Settings` struct cannot hold
    /// (see `SettingsExtra`).
    fn get_settings_with(&self) -> Result<(Settings, ExtraDict), KeysError>;

    /// Changes settings by name (administrators), each value as text as
    /// `apikey settings` takes it: `allow_user_keys`, `users_see_own`,
    /// `require_from` (yes/no), `expires` (never/7d/30d/90d/365d),
    /// `revoke_unused` (never/30d/90d/365d), `session_timeout` (a duration
    /// such as 30m). An unknown name is refused and nothing changes.
    fn set_settings_with(
        &self,
        changes: std::collections::HashMap<&str, &str>,
    ) -> Result<(Settings, ExtraDict), KeysError>;

    fn status(&self) -> Result<StatusInfo, KeysError>;

    /// Status, and beside it what the `StatusInfo` struct cannot hold
    /// (see `StatusExtra`).
    fn status_with(&self) -> Result<(StatusInfo, ExtraDict), KeysError>;

    /// Counters and gauges in Prometheus' text exposition format
    /// (administrators).
    fn metrics(&self) -> Result<String, KeysError>;

    /// Checks a key for a login. `user` empty accepts any owner (user
    /// mapping); `service` empty (root only) checks validity, not scope.
    /// Returns the owner's user name and the key id.
    fn verify(
        &self,
        token: &str,
        user: &str,
        service: &str,
        rhost: &str,
    ) -> Result<(String, String), KeysError>;

    /// The account step of a key login: is key `id` still good for `user`
    /// on `service`? Same callers as Verify; `Refused` when not.
    fn check_key(&self, id: &str, user: &str, service: &str, rhost: &str) -> Result<(), KeysError>;

    /// Registers the caller's own login session (root only; the PAM
    /// module's open_session). The daemon reads the audit session and
    /// login uid from the caller's /proc entry. `key_id` names the key the
    /// session was authenticated with, empty for any other credential;
    /// `auth` says how the module saw it authenticated (`login_auth`).
    /// Returns an opaque handle that only this PAM handle knows, so that a
    /// nested su/sudo session can never end its parent.
    fn open_session(
        &self,
        user: &str,
        service: &str,
        rhost: &str,
        tty: &str,
        key_id: &str,
        auth: &str,
    ) -> Result<String, KeysError>;

    /// Ends the session `handle` names (root only; close_session).
    fn close_session(&self, handle: &str) -> Result<(), KeysError>;
}

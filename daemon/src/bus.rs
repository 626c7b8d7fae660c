//! The `org.apikey.Keys1` interface: a thin layer that takes the caller's
//! identity from the bus daemon (never from an argument), runs the request
//! on a blocking thread (store writes fsync, NSS may wait on the network)
//! and maps the result. Verify and CheckKey first try to answer on the
//! async worker itself, which they do only when nothing in the check can
//! block (see `KeyService::try_verify_inline`); otherwise they take the
//! blocking pool like every other call.

use crate::bus_args::{Ids, Short};
use crate::service::{Caller, KeyService, VerifyAnswer};
use apikey_proto::{KeyInfo, KeysError, Settings, StatusInfo};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use zbus::fdo::DBusProxy;
use zbus::message::Header;
use zbus::names::BusName;

/// Unique names are never reused by a bus, so credentials can be cached
/// per name; the cache is bounded and simply emptied when full.
const MAX_CACHED_CALLERS: usize = 4096;

pub struct Keys1 {
    svc: Arc<KeyService>,
    dbus: DBusProxy<'static>,
    callers: Mutex<HashMap<String, Caller>>,
}

type Reply<T> = Result<T, KeysError>;

/// The out arguments of GetSettings and SetSettings, and of Status. zbus
/// sends a returned struct as its fields, one argument each, but would
/// introspect it as one struct argument; returning the fields as a tuple
/// makes the introspection say what the wire carries, with names. The
/// bytes on the bus are the same either way. (The methods spell the
/// tuples out: the interface macro reads the syntax, not these aliases.)
type SettingsArgs = (bool, String, bool, u64);
type StatusArgs = (String, u32, String, bool, bool, bool, bool, u32, Settings);

fn settings_args(s: Settings) -> SettingsArgs {
    (
        s.allow_user_keys,
        s.expires,
        s.users_see_own,
        s.session_timeout,
    )
}

fn status_args(s: StatusInfo) -> StatusArgs {
    (
        s.version,
        s.uid,
        s.user,
        s.admin,
        s.verifier,
        s.logged_in,
        s.impersonating,
        s.session_keys,
        s.settings,
    )
}

impl Keys1 {
    pub fn new(svc: Arc<KeyService>, dbus: DBusProxy<'static>) -> Keys1 {
        Keys1 {
            svc,
            dbus,
            callers: Mutex::new(HashMap::new()),
        }
    }

    async fn caller(&self, header: &Header<'_>) -> Reply<Caller> {
        let sender = header
            .sender()
            .ok_or_else(|| KeysError::Denied("the message has no sender".into()))?;
        if let Some(c) = self.lock().get(sender.as_str()) {
            return Ok(c.clone());
        }
        let creds = self
            .dbus
            .get_connection_credentials(BusName::from(sender.to_owned()))
            .await
            .map_err(|e| KeysError::Denied(format!("the bus did not identify the caller: {e}")))?;
        let (Some(uid), Some(pid)) = (creds.unix_user_id(), creds.process_id()) else {
            return Err(KeysError::Denied(
                "the bus did not report the caller's uid and pid".into(),
            ));
        };
        let caller = Caller {
            uid,
            pid,
            gids: creds.unix_group_ids().cloned().unwrap_or_default(),
        };
        let mut cache = self.lock();
        if cache.len() >= MAX_CACHED_CALLERS {
            cache.clear();
        }
        cache.insert(sender.to_string(), caller.clone());
        Ok(caller)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Caller>> {
        self.callers.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Runs `f` with the caller on the blocking pool.
    async fn run<T: Send + 'static>(
        &self,
        header: &Header<'_>,
        f: impl FnOnce(&KeyService, &Caller) -> Reply<T> + Send + 'static,
    ) -> Reply<T> {
        let caller = self.caller(header).await?;
        let svc = self.svc.clone();
        tokio::task::spawn_blocking(move || f(&svc, &caller))
            .await
            .map_err(|e| KeysError::Failed(format!("internal error: {e}")))?
    }
}

#[zbus::interface(name = "org.apikey.Keys1")]
impl Keys1 {
    async fn generate(
        &self,
        #[zbus(header)] header: Header<'_>,
        name: Short,
        expires: Short,
        services: Ids,
        user: Short,
    ) -> Result<(String, KeyInfo), KeysError> {
        self.run(&header, move |s, c| {
            s.generate(c, &name, &expires, &services, &user)
                .map(|(token, info)| (token.as_str().to_string(), info))
        })
        .await
    }

    async fn create_session_key(
        &self,
        #[zbus(header)] header: Header<'_>,
        name: Short,
    ) -> Result<(String, KeyInfo), KeysError> {
        self.run(&header, move |s, c| {
            s.create_session_key(c, &name)
                .map(|(token, info)| (token.as_str().to_string(), info))
        })
        .await
    }

    async fn list(
        &self,
        #[zbus(header)] header: Header<'_>,
        user: Short,
        all: bool,
        sessions: bool,
    ) -> Result<Vec<KeyInfo>, KeysError> {
        self.run(&header, move |s, c| s.list(c, &user, all, sessions))
            .await
    }

    async fn revoke(
        &self,
        #[zbus(header)] header: Header<'_>,
        ids: Ids,
    ) -> Result<Vec<String>, KeysError> {
        self.run(&header, move |s, c| s.revoke(c, &ids)).await
    }

    async fn revoke_all(
        &self,
        #[zbus(header)] header: Header<'_>,
        user: Short,
    ) -> Result<Vec<String>, KeysError> {
        self.run(&header, move |s, c| s.revoke_all(c, &user)).await
    }

    async fn revoke_site(
        &self,
        #[zbus(header)] header: Header<'_>,
    ) -> Result<Vec<String>, KeysError> {
        self.run(&header, move |s, c| s.revoke_site(c)).await
    }

    async fn rotate(
        &self,
        #[zbus(header)] header: Header<'_>,
        id: Short,
    ) -> Result<(String, KeyInfo), KeysError> {
        self.run(&header, move |s, c| {
            s.rotate(c, &id)
                .map(|(token, info)| (token.as_str().to_string(), info))
        })
        .await
    }

    #[zbus(out_args("services"))]
    async fn key_services(
        &self,
        #[zbus(header)] header: Header<'_>,
    ) -> Result<Vec<String>, KeysError> {
        self.run(&header, move |s, _| Ok(s.key_services())).await
    }

    #[zbus(out_args("allow_user_keys", "expires", "users_see_own", "session_timeout"))]
    async fn get_settings(
        &self,
        #[zbus(header)] header: Header<'_>,
    ) -> Result<(bool, String, bool, u64), KeysError> {
        self.run(&header, move |s, _| s.get_settings().map(settings_args))
            .await
    }

    #[zbus(out_args("allow_user_keys", "expires", "users_see_own", "session_timeout"))]
    async fn set_settings(
        &self,
        #[zbus(header)] header: Header<'_>,
        allow_user_keys: Short,
        expires: Short,
        users_see_own: Short,
        session_timeout: Short,
    ) -> Result<(bool, String, bool, u64), KeysError> {
        self.run(&header, move |s, c| {
            s.set_settings(
                c,
                &allow_user_keys,
                &expires,
                &users_see_own,
                &session_timeout,
            )
            .map(settings_args)
        })
        .await
    }

    #[zbus(out_args(
        "version",
        "uid",
        "user",
        "admin",
        "verifier",
        "logged_in",
        "impersonating",
        "session_keys",
        "settings"
    ))]
    #[allow(clippy::type_complexity)]
    async fn status(
        &self,
        #[zbus(header)] header: Header<'_>,
    ) -> Result<(String, u32, String, bool, bool, bool, bool, u32, Settings), KeysError> {
        self.run(&header, move |s, c| s.status(c).map(status_args))
            .await
    }

    async fn check_key(
        &self,
        #[zbus(header)] header: Header<'_>,
        id: Short,
        user: Short,
        service: Short,
        rhost: Short,
    ) -> Result<(), KeysError> {
        let caller = self.caller(&header).await?;
        let inline = answer_inline(|| {
            self.svc
                .try_check_key_inline(&caller, &id, &user, &service, &rhost)
        });
        if let Some(answer) = inline {
            return answer.unwrap_or_else(Err);
        }
        self.run(&header, move |s, c| {
            s.check_key(c, &id, &user, &service, &rhost)
        })
        .await
    }

    async fn verify(
        &self,
        #[zbus(header)] header: Header<'_>,
        token: Short,
        user: Short,
        service: Short,
        rhost: Short,
    ) -> Result<(String, String), KeysError> {
        let token = zeroize::Zeroizing::new(token.0);
        let caller = self.caller(&header).await?;
        let inline = answer_inline(|| {
            self.svc
                .try_verify_inline(&caller, token.as_bytes(), &user, &service, &rhost)
        });
        let answer = match inline {
            Some(Ok(answer)) => answer,
            Some(Err(e)) => VerifyAnswer {
                result: Err(e),
                delay_ms: 0,
            },
            None => {
                let svc = self.svc.clone();
                tokio::task::spawn_blocking(move || {
                    svc.verify(&caller, token.as_bytes(), &user, &service, &rhost)
                })
                .await
                .map_err(|e| KeysError::Failed(format!("internal error: {e}")))?
            }
        };
        if answer.delay_ms > 0 {
            // Delays only refusals, and without holding a thread (S7).
            tokio::time::sleep(Duration::from_millis(answer.delay_ms)).await;
        }
        answer.result
    }

    async fn open_session(
        &self,
        #[zbus(header)] header: Header<'_>,
        user: Short,
        service: Short,
        rhost: Short,
        tty: Short,
        key_id: Short,
    ) -> Result<String, KeysError> {
        self.run(&header, move |s, c| {
            s.open_session(c, &user, &service, &rhost, &tty, &key_id)
        })
        .await
    }

    async fn close_session(
        &self,
        #[zbus(header)] header: Header<'_>,
        handle: Short,
    ) -> Result<(), KeysError> {
        self.run(&header, move |s, c| s.close_session(c, &handle))
            .await
    }
}

/// Runs a check on the bus's worker. A panic in it is answered as an
/// internal error, as a panic on the blocking pool is, rather than leaving
/// the caller (a login) waiting for its timeout.
fn answer_inline<T>(check: impl FnOnce() -> Option<T>) -> Option<Result<T, KeysError>> {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(check)) {
        Ok(answer) => answer.map(Ok),
        Err(_) => Some(Err(KeysError::Failed("internal error".into()))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_panic_on_the_worker_is_answered_as_an_internal_error() {
        assert!(answer_inline(|| None::<u32>).is_none());
        assert!(matches!(answer_inline(|| Some(7)), Some(Ok(7))));
        let panicked = answer_inline::<u32>(|| panic!("a bug in a check"));
        assert!(
            matches!(&panicked, Some(Err(KeysError::Failed(m))) if m == "internal error"),
            "{panicked:?}"
        );
    }
}

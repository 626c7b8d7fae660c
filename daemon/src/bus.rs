//! The `org.apikey.Keys1` interface: a thin layer that takes the caller's
//! identity from the bus daemon (never from an argument), runs the request
//! on a blocking thread (store writes fsync, NSS may wait on the network)
//! and maps the result. Verify and CheckKey first try to answer on the
//! async worker itself, which they do only when nothing in the check can
//! block (see `KeyService::try_verify_inline`); otherwise they take the
//! blocking pool like every other call.

use crate::bus_args::{Ids, SettingChanges, Short};
use crate::caller_binding::{self, Births, Noted, ProcessId};
use crate::login_calls;
use crate::service::{Caller, KeyService};
use apikey_proto::{ExtraDict, GenerateOptions, KeyInfo, KeysError, Settings, StatusInfo, UseInfo};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use zbus::fdo::DBusProxy;
use zbus::message::Header;
use zbus::names::BusName;

fn sender_of<'h>(header: &'h Header<'_>) -> Reply<&'h zbus::names::UniqueName<'h>> {
    header
        .sender()
        .ok_or_else(|| KeysError::Denied("the message has no sender".into()))
}

/// How long a first call waits for the watcher to note its connection.
const WATCHER_CATCH_UP: Duration = Duration::from_millis(500);

/// Unique names are never reused by a bus, so credentials can be cached
/// per name; the cache is bounded and simply emptied when full.
const MAX_CACHED_CALLERS: usize = 4096;

pub struct Keys1 {
    svc: Arc<KeyService>,
    dbus: DBusProxy<'static>,
    callers: Mutex<HashMap<String, Caller>>,
    /// The process noted for each connection (see [`watch_births`]).
    births: Births,
}

type Reply<T> = Result<T, KeysError>;

/// The out arguments of GetSettings and SetSettings, and of Status. zbus
/// sends a returned struct as its fields, one argument each, but would
/// introspect it as one struct argument; returning the fields as a tuple
/// makes the introspection say what the wire carries, with names. The
/// bytes on the bus are the same either way. (The methods spell the
/// tuples out: the interface macro reads the syntax, not these aliases.)
type SettingsArgs = (bool, String, bool, u64);
type StatusArgs = (
    String,
    u32,
    String,
    bool,
    bool,
    bool,
    bool,
    u32,
    Settings,
    String,
);

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
        s.store,
    )
}

impl Keys1 {
    /// `births` is fed by [`watch_births`], which notes each connection's
    /// process when the bus announces the connection.
    pub fn new(svc: Arc<KeyService>, dbus: DBusProxy<'static>, births: Births) -> Keys1 {
        Keys1 {
            svc,
            dbus,
            callers: Mutex::new(HashMap::new()),
            births,
        }
    }

    /// The caller as the bus identifies it, for calls whose checks read
    /// the caller's process: refused when the process that made the
    /// connection is gone (its pid may be another process's by now).
    async fn bound_caller(&self, header: &Header<'_>) -> Reply<Caller> {
        let caller = self.caller(header).await?;
        let process = self
            .process_of(sender_of(header)?.as_str(), caller.pid)
            .await?;
        if !caller_binding::still_the_same(process, caller_binding::start_time(process.pid)) {
            return Err(KeysError::Denied(format!(
                "the process that made this connection (pid {}) has exited; its pid may \
                 belong to another process now",
                process.pid
            )));
        }
        Ok(caller)
    }

    /// The caller as the bus identifies it. Verify and CheckKey stop here:
    /// their checks use the uid and groups only.
    async fn caller(&self, header: &Header<'_>) -> Reply<Caller> {
        let sender = sender_of(header)?;
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

    /// The process noted for the connection when the bus announced it (a
    /// map lookup once noted). A first call may arrive before the watcher
    /// has dealt with the announcement: it waits for it a little. A connection the watcher
    /// never saw (made before it started) is noted now; one whose process
    /// had already gone when it was announced is refused.
    async fn process_of(&self, sender: &str, pid: u32) -> Reply<ProcessId> {
        let deadline = tokio::time::Instant::now() + WATCHER_CATCH_UP;
        while self.births.get(sender).is_none()
            && self.births.pending(sender)
            && tokio::time::Instant::now() < deadline
        {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let gone = || {
            KeysError::Denied(format!(
                "the process that made this connection (pid {pid}) had exited by the time \
                 the bus announced it; a connection handed on is not believed"
            ))
        };
        match self.births.get(sender) {
            Some(Noted::Process(p)) if p.pid == pid => Ok(p),
            Some(_) => Err(gone()),
            None => {
                let start_time = caller_binding::start_time(pid).ok_or_else(gone)?;
                match self
                    .births
                    .note(sender, Noted::Process(ProcessId { pid, start_time }))
                {
                    Noted::Process(p) if p.pid == pid => Ok(p),
                    _ => Err(gone()),
                }
            }
        }
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
        let caller = self.bound_caller(header).await?;
        login_calls::blocking(&self.svc, caller, f).await
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

    #[allow(clippy::too_many_arguments)]
    async fn generate_with(
        &self,
        #[zbus(header)] header: Header<'_>,
        name: Short,
        expires: Short,
        services: Ids,
        user: Short,
        options: ExtraDict,
    ) -> Result<(String, KeyInfo, ExtraDict), KeysError> {
        let options = GenerateOptions::from_dict(&options).map_err(KeysError::InvalidArgument)?;
        self.run(&header, move |s, c| {
            s.generate_with(c, &name, &expires, &services, &user, &options)
                .map(|(token, info, extra)| (token.as_str().to_string(), info, extra.to_dict()))
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

    #[zbus(out_args("keys", "next"))]
    #[allow(clippy::too_many_arguments)]
    async fn list_page(
        &self,
        #[zbus(header)] header: Header<'_>,
        user: Short,
        all: bool,
        sessions: bool,
        show: Ids,
        after: Short,
        limit: u32,
    ) -> Result<(Vec<KeyInfo>, String), KeysError> {
        self.run(&header, move |s, c| {
            s.list_page(c, &user, all, sessions, &show, &after, limit)
        })
        .await
    }

    #[zbus(out_args("keys", "next"))]
    #[allow(clippy::too_many_arguments)]
    async fn list_page_with(
        &self,
        #[zbus(header)] header: Header<'_>,
        user: Short,
        all: bool,
        sessions: bool,
        show: Ids,
        after: Short,
        limit: u32,
    ) -> Result<(Vec<(KeyInfo, ExtraDict)>, String), KeysError> {
        self.run(&header, move |s, c| {
            s.list_page_with(c, &user, all, sessions, &show, &after, limit)
                .map(|(keys, next)| {
                    let keys = keys
                        .into_iter()
                        .map(|(info, extra)| (info, extra.to_dict()))
                        .collect();
                    (keys, next)
                })
        })
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

    #[zbus(out_args("id", "revoked"))]
    async fn revoke_by_token(
        &self,
        #[zbus(header)] header: Header<'_>,
        token: Short,
    ) -> Result<(String, bool), KeysError> {
        let token = zeroize::Zeroizing::new(token.0);
        let caller = self.caller(&header).await?;
        login_calls::token_holder(&self.svc, caller, move |s, c| {
            s.revoke_by_token(c, token.as_bytes())
        })
        .await
    }

    #[zbus(out_args("id", "state"))]
    async fn inspect_token(
        &self,
        #[zbus(header)] header: Header<'_>,
        token: Short,
    ) -> Result<(String, String), KeysError> {
        let token = zeroize::Zeroizing::new(token.0);
        let caller = self.caller(&header).await?;
        login_calls::token_holder(&self.svc, caller, move |s, c| {
            s.inspect_token(c, token.as_bytes())
                .map(|(id, state)| (id, state.to_string()))
        })
        .await
    }

    #[zbus(out_args("key", "extra", "history"))]
    async fn show_key(
        &self,
        #[zbus(header)] header: Header<'_>,
        id: Short,
    ) -> Result<(KeyInfo, ExtraDict, Vec<UseInfo>), KeysError> {
        self.run(&header, move |s, c| {
            s.show(c, &id).map(|(info, extra, history)| {
                let history = history
                    .into_iter()
                    .map(|p| UseInfo {
                        service: p.service,
                        rhost: p.rhost,
                        first: p.first,
                        last: p.last,
                        host: p.host,
                    })
                    .collect();
                (info, extra.to_dict(), history)
            })
        })
        .await
    }

    // The caller's file to write the copy into, as a descriptor: the
    // daemon cannot, and must not, open paths of the caller's choosing.
    #[zbus(out_args("bytes"))]
    async fn backup(
        &self,
        #[zbus(header)] header: Header<'_>,
        file: zbus::OwnedFd,
    ) -> Result<u64, KeysError> {
        let mut out = std::fs::File::from(std::os::fd::OwnedFd::from(file));
        self.run(&header, move |s, c| s.backup(c, &mut out)).await
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

    #[zbus(out_args("settings", "extra"))]
    async fn get_settings_with(
        &self,
        #[zbus(header)] header: Header<'_>,
    ) -> Result<(Settings, ExtraDict), KeysError> {
        self.run(&header, move |s, _| {
            s.get_settings_with()
                .map(|(st, extra)| (st, extra.to_dict()))
        })
        .await
    }

    #[zbus(out_args("settings", "extra"))]
    async fn set_settings_with(
        &self,
        #[zbus(header)] header: Header<'_>,
        changes: SettingChanges,
    ) -> Result<(Settings, ExtraDict), KeysError> {
        self.run(&header, move |s, c| {
            let changes: Vec<(&str, &str)> = changes
                .0
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect();
            s.set_settings_with(c, &changes)
                .map(|(st, extra)| (st, extra.to_dict()))
        })
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
        "settings",
        "store"
    ))]
    // The tuple spelled out, not StatusArgs: zbus makes one out argument
    // of each element of a tuple it can see.
    #[allow(clippy::type_complexity)]
    async fn status(
        &self,
        #[zbus(header)] header: Header<'_>,
    ) -> Result<
        (
            String,
            u32,
            String,
            bool,
            bool,
            bool,
            bool,
            u32,
            Settings,
            String,
        ),
        KeysError,
    > {
        self.run(&header, move |s, c| s.status(c).map(status_args))
            .await
    }

    #[zbus(out_args("status", "extra"))]
    async fn status_with(
        &self,
        #[zbus(header)] header: Header<'_>,
    ) -> Result<(StatusInfo, ExtraDict), KeysError> {
        self.run(&header, move |s, c| {
            s.status_with(c).map(|(st, extra)| (st, extra.to_dict()))
        })
        .await
    }

    // The metrics in Prometheus' text format (administrators).
    #[zbus(out_args("exposition"))]
    async fn metrics(&self, #[zbus(header)] header: Header<'_>) -> Result<String, KeysError> {
        self.run(&header, move |s, c| s.metrics(c)).await
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
        login_calls::check_key(&self.svc, caller, id.0, user.0, service.0, rhost.0).await
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
        login_calls::verify(&self.svc, caller, token, user.0, service.0, rhost.0).await
    }

    // The bus method's arguments, one each; the service takes them whole.
    #[allow(clippy::too_many_arguments)]
    async fn open_session(
        &self,
        #[zbus(header)] header: Header<'_>,
        user: Short,
        service: Short,
        rhost: Short,
        tty: Short,
        key_id: Short,
        auth: Short,
    ) -> Result<String, KeysError> {
        self.run(&header, move |s, c| {
            s.open_session(c, &user, &service, &rhost, &tty, &key_id, &auth)
        })
        .await
    }

    // As OpenSession; its arguments, one each.
    #[allow(clippy::too_many_arguments)]
    #[zbus(out_args("handle", "expires_in"))]
    async fn open_session_with(
        &self,
        #[zbus(header)] header: Header<'_>,
        user: Short,
        service: Short,
        rhost: Short,
        tty: Short,
        key_id: Short,
        auth: Short,
    ) -> Result<(String, u32), KeysError> {
        self.run(&header, move |s, c| {
            s.open_session_with(c, &user, &service, &rhost, &tty, &key_id, &auth)
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

/// Notes the process behind every new connection on the bus as the bus
/// announces it (NameOwnerChanged for a unique name), and forgets names
/// that are gone. It listens on a connection of its own, so that a flood
/// of announcements backs up there and not in front of calls; the pids
/// are asked through `dbus`, the serving connection. Ends when either
/// connection ends.
pub async fn watch_births(dbus: DBusProxy<'static>, births: Births) {
    use futures_util::StreamExt;
    let watcher = match zbus::connection::Builder::system().build().await {
        Ok(c) => c,
        Err(e) => {
            eprintln!("apikeyd: cannot watch new connections ({e}); callers are bound at their first call");
            return;
        }
    };
    let rule = zbus::MatchRule::builder()
        .msg_type(zbus::message::Type::Signal)
        .sender("org.freedesktop.DBus")
        .interface("org.freedesktop.DBus")
        .member("NameOwnerChanged")
        .build();
    let stream = match rule {
        Ok(rule) => {
            zbus::MessageStream::for_match_rule(rule, &watcher, std::num::NonZeroUsize::new(4096))
                .await
        }
        Err(e) => Err(e),
    };
    let mut stream = match stream {
        Ok(s) => s,
        Err(e) => {
            eprintln!("apikeyd: cannot watch new connections ({e}); callers are bound at their first call");
            return;
        }
    };
    births.set_watching(true);
    // Connections made before the watch began, noted now.
    if let Ok(names) = dbus.list_names().await {
        for name in names.iter().filter(|n| n.starts_with(':')) {
            note_birth(&dbus, &births, name.as_str()).await;
            births.seen(name.as_str());
        }
    }
    while let Some(Ok(msg)) = stream.next().await {
        // The bus itself sends these; the rule names it as the sender.
        let Ok((name, _old, new)) = msg.body().deserialize::<(String, String, String)>() else {
            continue;
        };
        if !name.starts_with(':') {
            continue;
        }
        if new.is_empty() {
            births.forget(&name);
        } else {
            note_birth(&dbus, &births, &name).await;
        }
        births.seen(&name);
    }
    births.set_watching(false);
}

async fn note_birth(dbus: &DBusProxy<'static>, births: &Births, name: &str) {
    let Ok(bus_name) = BusName::try_from(name) else {
        return;
    };
    // A name that is already gone again has nothing to note.
    if let Ok(pid) = dbus.get_connection_unix_process_id(bus_name).await {
        let noted = match caller_binding::start_time(pid) {
            Some(start_time) => Noted::Process(ProcessId { pid, start_time }),
            None => Noted::Gone,
        };
        births.note(name, noted);
    }
}

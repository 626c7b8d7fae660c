//! Everything one end-to-end test needs, started in one call:
//! a scratch dir, a log sink, a private bus and a daemon on it.
//!
//! ```no_run
//! use apikey_tests::prelude::*;
//!
//! #[test]
//! fn alice_gets_a_key() {
//!     require!(Need::World);
//!     let world = World::with_config(|c| c.max_keys_per_user = 5);
//!     let alice = TestUser::create("alice");
//!     let out = world.as_user(&alice).logged_in().apikey(&["generate"]);
//!     out.ok();
//!     let status = world.block_on(world.proxy_as_root().status()).unwrap();
//!     assert!(status.admin);
//! }
//! ```
//!
//! Use plain `#[test]`s: a `World` owns a Tokio runtime, which cannot be
//! created or dropped inside another one.

use std::future::Future;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use apikey_proto::Keys1Proxy;
use tempfile::TempDir;

use crate::bins;
use crate::bus::PrivateBus;
use crate::daemon::{Daemon, DaemonConfig};
use crate::run::As;
use crate::syslog::LogSink;
use crate::users::TestUser;

/// Fields drop in this order: the daemon before its bus, the runtime
/// (and with it any connection tasks) before the sockets' directories go.
pub struct World {
    daemon: Daemon,
    bus: PrivateBus,
    rt: tokio::runtime::Runtime,
    log: LogSink,
    apikey_bin: PathBuf,
    dir: TempDir,
}

impl World {
    /// The default configuration, logging to the world's sink.
    pub fn new() -> World {
        World::with_config(|_| {})
    }

    /// The default configuration changed by `edit` before the daemon starts.
    pub fn with_config(edit: impl FnOnce(&mut DaemonConfig)) -> World {
        let dir = crate::tmp::temp_dir("world");
        // Test users may be given files here.
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))
            .expect("chmod world dir");
        let log = LogSink::bind(dir.path());
        let mut config = DaemonConfig {
            syslog_socket: Some(log.path().to_path_buf()),
            ..DaemonConfig::default()
        };
        edit(&mut config);
        let apikey_bin = apikey_for_users(dir.path());
        let bus = PrivateBus::start();
        let daemon = Daemon::start(&bus, &config);
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("tokio runtime");
        World {
            daemon,
            bus,
            rt,
            log,
            apikey_bin,
            dir,
        }
    }

    pub fn bus(&self) -> &PrivateBus {
        &self.bus
    }

    pub fn bus_mut(&mut self) -> &mut PrivateBus {
        &mut self.bus
    }

    pub fn daemon(&self) -> &Daemon {
        &self.daemon
    }

    /// For stop / kill9 / restart.
    pub fn daemon_mut(&mut self) -> &mut Daemon {
        &mut self.daemon
    }

    /// The audit log as the daemon sent it.
    pub fn log(&self) -> &LogSink {
        &self.log
    }

    /// A scratch directory (mode 0755) removed with the world.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    pub fn config(&self) -> &DaemonConfig {
        self.daemon.config()
    }

    /// Changes the configuration and restarts the daemon on the same store.
    pub fn reconfigure(&mut self, edit: impl FnOnce(&mut DaemonConfig)) {
        let mut config = self.daemon.config().clone();
        edit(&mut config);
        self.daemon.reconfigure(&config);
    }

    /// Runs a future on the world's runtime (where its proxies live).
    pub fn block_on<F: Future>(&self, future: F) -> F::Output {
        self.rt.block_on(future)
    }

    /// A new bus connection as the test process: root, not in a login
    /// session (its loginuid is unset).
    pub fn root_connection(&self) -> zbus::Connection {
        let address = self.bus.address().to_string();
        self.rt
            .block_on(async move { crate::bus::connect(&address).await })
            .expect("connect to the private bus")
    }

    /// A proxy for `org.apikey.Keys1` over a fresh root connection. Call
    /// methods with `world.block_on(proxy.status())`.
    /// Makes key `id` `secs` seconds older (its creation and any recorded
    /// use), by editing the store behind a stopped daemon, then restarts
    /// the daemon on it: how tests reach expiry and idle times without
    /// waiting. The key must not have an expiry of its own.
    pub fn age_key(&mut self, id: &str, secs: i64) {
        if let Some(cluster) = self.daemon().fleet_cluster() {
            let changed = cluster
                .psql_as(
                    crate::fleet::SUPERUSER,
                    "apikey",
                    &format!(
                        "UPDATE apikey.keys SET created = created - {secs} \
                         WHERE id = '{id}' AND expires IS NULL RETURNING id; \
                         UPDATE apikey.key_uses SET at = at - {secs} WHERE key_id = '{id}'"
                    ),
                )
                .expect("age the key");
            assert_eq!(changed, id, "no key {id} without an expiry of its own");
            return;
        }
        self.daemon_mut().stop();
        {
            let db = rusqlite::Connection::open(self.daemon().db_path()).expect("open the store");
            let changed = db
                .execute(
                    "UPDATE keys SET created = created - ?1, \
                     last_used = last_used - ?1 WHERE id = ?2 AND expires IS NULL",
                    rusqlite::params![secs, id],
                )
                .expect("age the key");
            assert_eq!(changed, 1, "no key {id} without an expiry of its own");
        }
        self.daemon_mut().restart();
    }

    /// Who made key `id`, as stored: the maker's uid and the login uid it
    /// acted for (either backend).
    pub fn key_maker(&self, id: &str) -> (u32, Option<u32>) {
        if let Some(cluster) = self.daemon().fleet_cluster() {
            let row = cluster
                .psql_as(
                    crate::fleet::SUPERUSER,
                    "apikey",
                    &format!(
                        "SELECT created_by, coalesce(created_by_login, '') \
                         FROM apikey.keys WHERE id = '{id}'"
                    ),
                )
                .expect("read the key's maker");
            let (by, login) = row.split_once('|').expect("one row");
            let uid = |name: &str| {
                nix::unistd::User::from_name(name)
                    .ok()
                    .flatten()
                    .map(|u| u.uid.as_raw())
            };
            return (uid(by).expect("the maker's account"), uid(login));
        }
        self.daemon()
            .open_db_readonly()
            .query_row(
                "SELECT created_by_uid, created_by_loginuid FROM keys WHERE id = ?1",
                [id],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .expect("read the key's maker")
    }

    /// "Let users create API keys", set through the bus as root.
    pub fn allow_user_keys(&self) {
        let settings = self
            .block_on(self.proxy_as_root().set_settings("yes", "", "", ""))
            .expect("SetSettings as root");
        assert!(settings.allow_user_keys);
    }

    /// The site settings as the daemon reports them to root.
    pub fn settings(&self) -> apikey_proto::Settings {
        self.block_on(self.proxy_as_root().get_settings())
            .expect("GetSettings as root")
    }

    /// Active long-lived keys of `user` as the daemon reports them to
    /// root: independent of the CLI under test.
    pub fn keys_of(&self, user: &str) -> Vec<apikey_proto::KeyInfo> {
        self.block_on(self.proxy_as_root().list(user, false, false))
            .unwrap_or_else(|e| panic!("List({user}) as root: {e}"))
    }

    pub fn proxy_as_root(&self) -> Keys1Proxy<'static> {
        let conn = self.root_connection();
        self.rt
            .block_on(Keys1Proxy::new(&conn))
            .expect("create Keys1 proxy")
    }

    /// The `apikey` CLI as test users can execute it: the built one, or a
    /// copy in the world's directory when the checkout is private.
    pub fn apikey_bin(&self) -> &Path {
        &self.apikey_bin
    }

    /// Runs things as `user`, on this world's bus, with the built CLI.
    pub fn as_user(&self, user: &TestUser) -> As {
        As::user(user)
            .bus(self.bus.address())
            .apikey_bin(&self.apikey_bin)
    }

    /// Runs things as root, on this world's bus.
    pub fn as_root(&self) -> As {
        As::root()
            .bus(self.bus.address())
            .apikey_bin(&self.apikey_bin)
    }

    /// A key made with `apikey generate ARGS` by `user` in a login
    /// session of its own, and its id.
    pub fn new_key(&self, user: &TestUser, args: &[&str]) -> (String, String) {
        let before = self.keys_of(user.name());
        let out = self
            .as_user(user)
            .logged_in()
            .apikey(&[&["generate"], args].concat());
        out.ok();
        let token = out.stdout_trimmed().to_string();
        assert!(
            apikey_proto::Token::parse(token.as_bytes()).is_ok(),
            "generate printed no key:\n{}",
            out.stdout
        );
        let id = self
            .keys_of(user.name())
            .into_iter()
            .map(|k| k.id)
            .find(|id| !before.iter().any(|k| &k.id == id))
            .expect("the new key is listed");
        (token, id)
    }
}

impl Default for World {
    fn default() -> Self {
        World::new()
    }
}

/// The built CLI, or a copy of it in `dir` when test users could not
/// execute it where it is (a checkout under a private directory).
pub fn apikey_for_users(dir: &Path) -> PathBuf {
    let built = bins::apikey();
    if bins::usable_by_others(&built) {
        return built;
    }
    let copy = dir.join("apikey");
    std::fs::copy(&built, &copy).expect("copy apikey for test users");
    std::fs::set_permissions(&copy, std::fs::Permissions::from_mode(0o755))
        .expect("chmod apikey copy");
    copy
}

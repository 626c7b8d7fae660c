//! Fleet mode's shared key store: long-lived keys, their last uses and the
//! site policy in PostgreSQL, so that one key works on many hosts and one
//! revocation stops it on all of them at the next attempt.
//!
//! The [`Store`](super::Store) interface is synchronous and called from
//! threads that may block; this store drives tokio-postgres on a runtime
//! of its own and bounds every call by the configured timeout, so a
//! stopped or frozen database makes a login wait at most that long.
//! The login path's lookup is also offered as a future
//! ([`PgKeys::by_hash_async`]); its connections then live on the daemon's
//! runtime ([`PgKeys::lookups_on`]), so a Verify answered on a bus worker
//! waits for the database without handing itself to another thread.
//! A call that timed out drops its connection (a frozen backend would hold
//! it forever); the next call connects afresh, which is also how a
//! failover to a standby is followed.
//!
//! Owners are user names (uids may differ between hosts): each record's
//! uids are this host's, looked up through [`Accounts`] when read, or
//! [`NO_LOCAL_UID`] where the name has no account here.

pub mod conninfo;
mod grace;
pub mod import;
mod readers;
mod schema;
mod tls;

use super::{
    policy_from_settings, policy_settings, KeyCounts, KeyKind, KeyRecord, KeyUse, ListQuery,
    Policy, Revocation, RevokeBy, StoreError, StoreResult, UsePair, USE_HISTORY,
};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio_postgres::{Client, Row, Statement};

/// The uid of a key's owner or creator whose name has no account here:
/// `(uid_t)-1`, which no account can have.
pub const NO_LOCAL_UID: u32 = u32::MAX;

/// This host's accounts, by name and by uid.
pub trait Accounts: Send + Sync {
    fn uid_of(&self, name: &str) -> Option<u32>;
    fn name_of(&self, uid: u32) -> Option<String>;
    /// `uid_of`'s answer where it needs no NSS call and no file read;
    /// `None` otherwise (then `uid_of`, on a thread that may block).
    fn quick_uid_of(&self, name: &str) -> Option<u32>;
}

/// How long the policy read is used before it is read again, in case a
/// change was not heard (the listener reconnecting, a schema 1 database).
const POLICY_TTL: Duration = Duration::from_secs(5);

/// Connections for lookups.
const READERS: usize = 4;

/// How soon a broken notification connection is made again.
const LISTEN_RETRY: Duration = Duration::from_secs(1);

const KEY_COLUMNS: &str = "k.id, k.hash, k.owner, k.created_by, k.made_on, k.name, \
    k.services, k.hosts, k.created, k.expires, k.revoked, k.revoked_by, k.revoked_on, \
    k.revoke_reason";

/// The latest use on any host, for listings.
const LAST_USE: &str = "LEFT JOIN LATERAL (SELECT u.at, u.service, u.rhost, u.host \
    FROM apikey.key_uses u WHERE u.key_id = k.id ORDER BY u.at DESC LIMIT 1) u ON true";

/// The password in `path`, which must be a regular file that only the
/// daemon's user (or root) owns and can read.
pub fn read_password_file(path: &std::path::Path) -> Result<zeroize::Zeroizing<String>, String> {
    use std::os::unix::fs::MetadataExt;
    let fail = |e: String| format!("password_file {}: {e}", path.display());
    let meta = std::fs::symlink_metadata(path).map_err(|e| fail(e.to_string()))?;
    if !meta.is_file() {
        return Err(fail("is not a regular file".into()));
    }
    let me = nix::unistd::geteuid().as_raw();
    if meta.uid() != me && meta.uid() != 0 {
        return Err(fail(format!(
            "belongs to uid {}, not to the daemon (uid {me}) or root",
            meta.uid()
        )));
    }
    if meta.mode() & 0o077 != 0 {
        return Err(fail(format!(
            "is mode {:o}: others can read it; chmod 600 (or 400)",
            meta.mode() & 0o777
        )));
    }
    let text =
        zeroize::Zeroizing::new(std::fs::read_to_string(path).map_err(|e| fail(e.to_string()))?);
    // One line; a trailing newline is not part of the password.
    let password = text.strip_suffix('\n').unwrap_or(&text);
    if password.is_empty() || password.contains('\n') {
        return Err(fail("must hold the password alone, on one line".into()));
    }
    Ok(zeroize::Zeroizing::new(password.to_string()))
}

pub struct Settings {
    pub conninfo: conninfo::ConnInfo,
    pub password: Option<zeroize::Zeroizing<String>>,
    pub host: String,
    pub timeout: Duration,
    /// How long a key verified online may be accepted while the database
    /// cannot be reached (`offline_grace`; zero: never).
    pub offline_grace: Duration,
}

/// What the notification listener shares with the calls.
struct Heard {
    /// Keys verified online, for `offline_grace`.
    grace: Mutex<grace::GraceCache>,
    /// True while LISTEN is in place: only then are keys remembered.
    listening: std::sync::atomic::AtomicBool,
    /// The policy as last read, and when; cleared by a change heard.
    policy: Mutex<Option<(Policy, Instant)>>,
    /// The last policy read, kept through an outage for `offline_grace`.
    last_policy: Mutex<Option<(Policy, Instant)>>,
}

fn locked<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

pub struct PgKeys {
    runtime: tokio::runtime::Runtime,
    /// Where the lookup connections are made and driven: the daemon's
    /// runtime once given (a lookup awaited there is answered by the
    /// worker that polls its socket), this store's own until then.
    lookups: tokio::runtime::Handle,
    config: tokio_postgres::Config,
    tls: tls::Connector,
    timeout: Duration,
    host: String,
    /// Lookups' connections, the quietest taken (see `readers`);
    /// tokio-postgres pipelines the queries of each, and several let the
    /// server use more than one core.
    live: Vec<tokio::sync::Mutex<Option<Arc<Live>>>>,
    loads: readers::Loads,
    /// Held by one write for its whole transaction.
    writer: tokio::sync::Mutex<Option<Client>>,
    accounts: Arc<dyn Accounts>,
    heard: Arc<Heard>,
    offline_grace: Duration,
    /// The schema and this host's registration were found in order.
    ready: std::sync::atomic::AtomicBool,
    /// When a write last committed (Unix seconds; 0: none yet).
    last_write: std::sync::atomic::AtomicI64,
}

/// One open connection and the statement of the login path.
struct Live {
    client: Client,
    by_hash: Statement,
}

impl PgKeys {
    /// A store that connects at its first call (and after every lost
    /// connection), so a daemon started while the database is down serves
    /// everything else and answers key logins as unavailable until it is up.
    pub fn open(settings: Settings, accounts: Arc<dyn Accounts>) -> Result<PgKeys, String> {
        let mut config: tokio_postgres::Config = settings
            .conninfo
            .rest
            .parse()
            .map_err(|e| format!("the database string cannot be read: {e}"))?;
        if let Some(p) = &settings.password {
            config.password(p.as_bytes());
        }
        if config.get_application_name().is_none() {
            config.application_name("apikeyd");
        }
        // Which keys this daemon can check (schema 3's row-level security
        // hides keys with networks from daemons that would not check them).
        let knows = format!("-c apikey.knows={}", schema::known());
        let options = match config.get_options() {
            Some(given) => format!("{given} {knows}"),
            None => knows,
        };
        config.options(options);
        config.connect_timeout(settings.timeout);
        config.ssl_mode(tls::postgres_mode(settings.conninfo.tls.mode));
        let tls = tls::Connector::new(&settings.conninfo.tls)?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("apikeyd-pg")
            .enable_all()
            .build()
            .map_err(|e| format!("cannot start the database client: {e}"))?;
        Ok(PgKeys {
            lookups: runtime.handle().clone(),
            runtime,
            config,
            tls,
            timeout: settings.timeout,
            host: settings.host,
            live: (0..READERS)
                .map(|_| tokio::sync::Mutex::new(None))
                .collect(),
            loads: readers::Loads::new(READERS),
            writer: tokio::sync::Mutex::new(None),
            accounts,
            heard: Arc::new(Heard {
                grace: Mutex::new(grace::GraceCache::new(settings.offline_grace)),
                listening: std::sync::atomic::AtomicBool::new(false),
                policy: Mutex::new(None),
                last_policy: Mutex::new(None),
            }),
            offline_grace: settings.offline_grace,
            ready: std::sync::atomic::AtomicBool::new(false),
            last_write: Default::default(),
        })
    }

    /// Makes the lookup connections on `runtime` (the daemon's, whose
    /// workers await [`by_hash_async`](Self::by_hash_async)) from now on.
    /// Blocking calls still work through them while that runtime runs.
    pub fn lookups_on(mut self, runtime: tokio::runtime::Handle) -> PgKeys {
        self.lookups = runtime;
        self
    }

    /// Hears revocations and policy changes as other hosts commit them
    /// (schema 2's notifications), on a connection of its own that is made
    /// again whenever it breaks. Everything remembered for the grace goes
    /// at each new connection: what was sent meanwhile is lost.
    pub fn listen(&self) {
        let heard = self.heard.clone();
        let tls = self.tls.clone();
        let config = self.config.clone();
        let runtime = self.runtime.handle().clone();
        self.runtime.spawn(async move {
            let mut said = false;
            loop {
                match tls.connect_listening(&config).await {
                    Ok((client, mut notes, driver)) => {
                        runtime.spawn(driver);
                        let listening = client
                            .batch_execute("LISTEN apikey_revoked; LISTEN apikey_policy")
                            .await;
                        if listening.is_ok() {
                            locked(&heard.grace).clear();
                            *locked(&heard.policy) = None;
                            heard
                                .listening
                                .store(true, std::sync::atomic::Ordering::SeqCst);
                            said = false;
                            while let Some(note) = notes.recv().await {
                                heard.hear(note.channel(), note.payload());
                            }
                        }
                        heard
                            .listening
                            .store(false, std::sync::atomic::Ordering::SeqCst);
                    }
                    Err(e) if !said => {
                        eprintln!(
                            "apikeyd: fleet mode: not hearing revocations now ({}); trying again",
                            describe(&e)
                        );
                        said = true;
                    }
                    Err(_) => {}
                }
                tokio::time::sleep(LISTEN_RETRY).await;
            }
        });
    }

    /// Connects now, bringing the schema up to date where this host's role
    /// may, and checks this host is registered under its configured name;
    /// waits up to `wait` (another host's migration may hold the lock).
    pub fn connect_now(&self, wait: Duration) -> Result<(), String> {
        self.on_new_connection(wait, async |client| self.make_ready(client).await)
    }

    /// `f` on a connection of its own, made now, all within `wait`.
    fn on_new_connection<T>(
        &self,
        wait: Duration,
        f: impl AsyncFnOnce(&Client) -> Result<T, String>,
    ) -> Result<T, String> {
        self.runtime.block_on(async {
            let work = async {
                let (client, connection) = self
                    .connect_raw()
                    .await
                    .map_err(|e| reach_failure(&describe(&e)))?;
                self.runtime.spawn(connection);
                f(&client).await
            };
            tokio::time::timeout(wait, work).await.unwrap_or_else(|_| {
                Err(format!(
                    "the fleet database did not answer within {} s",
                    wait.as_secs()
                ))
            })
        })
    }

    /// Brings the schema up to date and nothing else (`apikeyd
    /// --upgrade-fleet-schema`, run with the schema owner's role before
    /// the hosts are registered); the version it is at.
    pub fn upgrade_schema(&self, wait: Duration) -> Result<i32, String> {
        self.on_new_connection(wait, async |client| {
            schema::bring_up_to_date(client).await?;
            client
                .query_one("SELECT version FROM apikey.schema_version", &[])
                .await
                .map(|r| r.get::<_, i32>(0))
                .map_err(|e| describe(&e))
        })
    }

    /// For tools run with the owner's role (`--migrate-to-fleet`), after
    /// [`upgrade_schema`](Self::upgrade_schema): the role is no host's, and
    /// this store's host name is the one the rows are written for.
    pub fn skip_registration(&self) {
        self.ready.store(true, std::sync::atomic::Ordering::SeqCst);
    }

    async fn make_ready(&self, client: &Client) -> Result<(), String> {
        use std::sync::atomic::Ordering;
        if self.ready.load(Ordering::SeqCst) {
            return Ok(());
        }
        schema::bring_up_to_date(client).await?;
        let registered: Option<String> = client
            .query_one("SELECT apikey.my_host()", &[])
            .await
            .map_err(|e| describe(&e))?
            .get(0);
        match registered {
            Some(name) if name == self.host => {
                self.ready.store(true, Ordering::SeqCst);
                Ok(())
            }
            Some(name) => Err(format!(
                "this host's database role is registered as host '{name}', but [fleet] host \
                 names it '{}'",
                self.host
            )),
            None => Err(format!(
                "this host's database role is not in apikey.hosts; as the schema owner run \
                 SELECT apikey.add_host('{}', '<this host's role>') (docs/fleet.md)",
                self.host
            )),
        }
    }

    async fn connect_raw(&self) -> Result<(Client, tls::Driver), tokio_postgres::Error> {
        self.tls.connect(&self.config).await
    }

    /// Lookup connection `turn`, or a new one in its place.
    async fn live(&self, turn: usize) -> StoreResult<Arc<Live>> {
        let mut slot = self.live[turn].lock().await;
        if let Some(live) = slot.as_ref().filter(|l| !l.client.is_closed()) {
            return Ok(live.clone());
        }
        *slot = None;
        // Made by a task of the lookups' runtime, so its socket is watched
        // by that runtime's workers whoever asked.
        let (tls, config) = (self.tls.clone(), self.config.clone());
        let client = self
            .lookups
            .spawn(async move {
                let (client, connection) = tls.connect(&config).await?;
                tokio::spawn(connection);
                Ok(client)
            })
            .await
            .map_err(|e| StoreError::Failed(format!("cannot connect: {e}")))?
            .map_err(unavailable)?;
        self.make_ready(&client).await.map_err(StoreError::Failed)?;
        let by_hash = client.prepare(&by_hash_sql()).await.map_err(unavailable)?;
        let live = Arc::new(Live { client, by_hash });
        *slot = Some(live.clone());
        Ok(live)
    }

    /// Runs one lookup within the timeout; one that did not answer in
    /// time leaves its connection behind.
    fn read<T, F>(&self, f: impl FnOnce(Arc<Live>) -> F) -> StoreResult<T>
    where
        F: std::future::Future<Output = Result<T, tokio_postgres::Error>>,
    {
        self.runtime.block_on(self.read_async(f))
    }

    /// [`read`](Self::read) as a future, for whichever runtime awaits it.
    async fn read_async<T, F>(&self, f: impl FnOnce(Arc<Live>) -> F) -> StoreResult<T>
    where
        F: std::future::Future<Output = Result<T, tokio_postgres::Error>>,
    {
        let turn = self.loads.take();
        let work = async {
            let live = self.live(turn.index).await?;
            f(live).await.map_err(store_error)
        };
        match tokio::time::timeout(self.timeout, work).await {
            Ok(result) => result,
            Err(_) => {
                *self.live[turn.index].lock().await = None;
                Err(self.late())
            }
        }
    }

    /// Runs `f` in a transaction of the writer connection, committed
    /// before this returns (the database's own durability: with a
    /// synchronous standby, on both), within the timeout.
    fn write<T>(
        &self,
        f: impl AsyncFnOnce(&tokio_postgres::Transaction<'_>) -> StoreResult<T>,
    ) -> StoreResult<T> {
        self.runtime.block_on(async {
            let mut slot = self.writer.lock().await;
            let work = async {
                if slot.as_ref().is_none_or(|c| c.is_closed()) {
                    let (client, connection) = self.connect_raw().await.map_err(unavailable)?;
                    self.runtime.spawn(connection);
                    self.make_ready(&client).await.map_err(StoreError::Failed)?;
                    *slot = Some(client);
                }
                let client = slot.as_mut().expect("connected above");
                let tx = client.transaction().await.map_err(store_error)?;
                let value = f(&tx).await?;
                tx.commit().await.map_err(store_error)?;
                self.last_write.store(
                    apikey_proto::timefmt::now(),
                    std::sync::atomic::Ordering::Relaxed,
                );
                Ok(value)
            };
            match tokio::time::timeout(self.timeout, work).await {
                Ok(result) => result,
                Err(_) => {
                    *slot = None;
                    Err(self.late())
                }
            }
        })
    }

    fn late(&self) -> StoreError {
        StoreError::Failed(format!(
            "the fleet database did not answer within {} ms",
            self.timeout.as_millis()
        ))
    }

    fn key_from_row(&self, row: &Row, with_use: bool) -> StoreResult<KeyRecord> {
        self.key_from_row_by(row, with_use, &|name| self.accounts.uid_of(name))
    }

    /// The record of `row`, its names made this host's uids by `uid_of`.
    fn key_from_row_by(
        &self,
        row: &Row,
        with_use: bool,
        uid_of: &dyn Fn(&str) -> Option<u32>,
    ) -> StoreResult<KeyRecord> {
        let hash: Vec<u8> = row.get(1);
        let owner: String = row.get(2);
        let created_by: String = row.get(3);
        let id: String = row.get(0);
        let last_used = match with_use {
            true => row.get::<_, Option<i64>>(14).map(|at| KeyUse {
                key_id: id.clone(),
                at,
                service: row.get(15),
                rhost: row.get(16),
                host: row.get(17),
            }),
            false => None,
        };
        let revoked = row.get::<_, Option<i64>>(10).map(|at| Revocation {
            at,
            by_uid: row
                .get::<_, Option<String>>(11)
                .and_then(|n| uid_of(&n))
                .unwrap_or(NO_LOCAL_UID),
            reason: row.get::<_, Option<String>>(13).unwrap_or_default(),
        });
        Ok(KeyRecord {
            hash: hash
                .try_into()
                .map_err(|_| StoreError::Failed(format!("key {id}: stored hash is invalid")))?,
            kind: KeyKind::LongLived,
            owner_uid: uid_of(&owner).unwrap_or(NO_LOCAL_UID),
            owner_name: owner,
            created_by_uid: uid_of(&created_by).unwrap_or(NO_LOCAL_UID),
            created_by_loginuid: row
                .try_get::<_, Option<String>>("created_by_login")
                .ok()
                .flatten()
                .and_then(|n| uid_of(&n)),
            name: row.get(5),
            services: row.get(6),
            hosts: row.get(7),
            sources: row.try_get::<_, Vec<String>>("sources").unwrap_or_default(),
            made_on: row.get(4),
            created: row.get(8),
            expires: row.get(9),
            last_used,
            revoked,
            binding: None,
            id,
        })
    }

    fn keys_from_rows(&self, rows: &[Row], with_use: bool) -> StoreResult<Vec<KeyRecord>> {
        rows.iter()
            .map(|r| self.key_from_row(r, with_use))
            .collect()
    }

    /// The name a uid's keys are stored under.
    fn owner_name(&self, uid: u32) -> StoreResult<String> {
        self.accounts
            .name_of(uid)
            .ok_or_else(|| StoreError::Failed(format!("uid {uid} has no account name here")))
    }

    fn actor_name(&self, uid: u32) -> String {
        self.accounts
            .name_of(uid)
            .unwrap_or_else(|| format!("uid {uid}"))
    }

    pub fn insert(&self, key: &KeyRecord, max_active: u32, now: i64) -> StoreResult<()> {
        let created_by = self.actor_name(key.created_by_uid);
        let created_by_login = key.created_by_loginuid.map(|uid| self.actor_name(uid));
        self.write(async |tx| {
            // Hosts add keys for one owner one at a time, so the count holds.
            tx.execute(
                "SELECT pg_advisory_xact_lock(hashtext('apikey owner ' || $1))",
                &[&key.owner_name],
            )
            .await
            .map_err(store_error)?;
            let active: i64 = tx
                .query_one(
                    "SELECT count(*) FROM apikey.keys WHERE owner = $1 AND revoked IS NULL \
                     AND (expires IS NULL OR expires > $2)",
                    &[&key.owner_name, &now],
                )
                .await
                .map_err(store_error)?
                .get(0);
            if active >= i64::from(max_active) {
                return Err(StoreError::TooManyKeys(active as u32));
            }
            insert_row(tx, key, &created_by, created_by_login.as_deref()).await
        })
        .map_err(|e| self.explain_denied(e, "make keys"))
    }

    pub fn by_hash(&self, hash: &[u8; 32]) -> StoreResult<Option<KeyRecord>> {
        self.runtime
            .block_on(self.find_by_hash(hash, false))
            .unwrap_or_else(|| Err(StoreError::Failed("a key's owner was not looked up".into())))
    }

    /// [`by_hash`](Self::by_hash) for an async worker: the same answer,
    /// or `None` where the row names an account the local files do not
    /// hold (its uid may take an NSS call: `by_hash` on a thread that may
    /// block then).
    pub async fn by_hash_async(&self, hash: &[u8; 32]) -> Option<StoreResult<Option<KeyRecord>>> {
        self.find_by_hash(hash, true).await
    }

    /// The key of `hash`, remembered for the grace, or from the grace when
    /// the database cannot answer. With `quick`, names become uids only
    /// from what the local files answer, and a name they do not hold gives
    /// `None` (nothing remembered); otherwise `Some` always.
    async fn find_by_hash(
        &self,
        hash: &[u8; 32],
        quick: bool,
    ) -> Option<StoreResult<Option<KeyRecord>>> {
        let row = self
            .read_async(
                |live| async move { live.client.query_opt(&live.by_hash, &[&&hash[..]]).await },
            )
            .await;
        let key = match row {
            Ok(None) => None,
            Ok(Some(row)) => {
                let missed = std::cell::Cell::new(false);
                let uid_of = |name: &str| match quick {
                    false => self.accounts.uid_of(name),
                    true => {
                        let uid = self.accounts.quick_uid_of(name);
                        missed.set(missed.get() || uid.is_none());
                        uid
                    }
                };
                let key = self.key_from_row_by(&row, false, &uid_of);
                if missed.get() {
                    return None;
                }
                match key {
                    Ok(key) => Some(key),
                    Err(e) => return Some(Err(e)),
                }
            }
            Err(e) => return Some(self.in_grace(e, |g, now, wall| g.by_hash(hash, now, wall))),
        };
        self.remember(key.as_ref());
        Some(Ok(key))
    }

    pub fn by_id(&self, id: &str) -> StoreResult<Option<KeyRecord>> {
        let sql = format!(
            "SELECT {KEY_COLUMNS}, {USE_COLUMNS}{} FROM apikey.keys k {LAST_USE} WHERE k.id = $1",
            later_columns()
        );
        let row = self.read(|live| async move { live.client.query_opt(&sql, &[&id]).await });
        match row {
            Ok(row) => {
                let key = row.map(|r| self.key_from_row(&r, true)).transpose()?;
                self.remember(key.as_ref());
                Ok(key)
            }
            Err(e) => self.in_grace(e, |g, now, wall| g.by_id(id, now, wall)),
        }
    }

    /// A key looked up online, for `offline_grace`: only while
    /// revocations are heard.
    fn remember(&self, key: Option<&KeyRecord>) {
        use std::sync::atomic::Ordering;
        if let Some(k) = key {
            if !self.offline_grace.is_zero() && self.heard.listening.load(Ordering::SeqCst) {
                locked(&self.heard.grace).remember(k, Instant::now());
            }
        }
    }

    /// A lookup the database could not answer: the key as verified within
    /// `offline_grace`, or the failure.
    fn in_grace(
        &self,
        e: StoreError,
        find: impl FnOnce(&grace::GraceCache, Instant, i64) -> Option<KeyRecord>,
    ) -> StoreResult<Option<KeyRecord>> {
        let StoreError::Failed(_) = e else {
            return Err(e);
        };
        let wall = apikey_proto::timefmt::now();
        match find(&locked(&self.heard.grace), Instant::now(), wall) {
            Some(key) => Ok(Some(key)),
            None => Err(e),
        }
    }

    pub fn list_active(&self, owner: Option<u32>) -> StoreResult<Vec<KeyRecord>> {
        let owner = owner.map(|uid| self.owner_name(uid)).transpose()?;
        let sql = format!(
            "SELECT {KEY_COLUMNS}, {USE_COLUMNS}{} FROM apikey.keys k {LAST_USE} \
             WHERE k.revoked IS NULL AND ($1::text IS NULL OR k.owner = $1) \
             ORDER BY k.owner, k.created, k.id",
            later_columns()
        );
        let rows = self.read(|live| async move { live.client.query(&sql, &[&owner]).await })?;
        self.keys_from_rows(&rows, true)
    }

    pub fn list_page(&self, q: &ListQuery) -> StoreResult<(Vec<(i64, KeyRecord)>, bool)> {
        let owner = q.owner.map(|uid| self.owner_name(uid)).transpose()?;
        let sql = format!(
            "SELECT {KEY_COLUMNS}, {USE_COLUMNS}, k.seq{} \
             FROM apikey.keys k {LAST_USE} \
             WHERE k.seq > $1 AND ($2::text IS NULL OR k.owner = $2) \
               AND CASE WHEN k.revoked IS NOT NULL THEN $3 \
                        WHEN k.expires IS NOT NULL AND k.expires <= $5 THEN $4 \
                        ELSE true END \
             ORDER BY k.seq LIMIT $6",
            later_columns()
        );
        let limit = i64::from(q.limit) + 1;
        let rows = self.read(|live| async move {
            live.client
                .query(
                    &sql,
                    &[&q.after, &owner, &q.revoked, &q.expired, &q.now, &limit],
                )
                .await
        })?;
        let mut page = rows
            .iter()
            .map(|r| Ok((r.get::<_, i64>(SEQ_COLUMN), self.key_from_row(r, true)?)))
            .collect::<StoreResult<Vec<_>>>()?;
        let more = page.len() > q.limit as usize;
        page.truncate(q.limit as usize);
        Ok((page, more))
    }

    pub fn revoke(&self, ids: &[String], by: RevokeBy<'_>) -> StoreResult<Vec<String>> {
        if ids.is_empty() {
            return Ok(vec![]);
        }
        self.revoke_where("k.id = ANY($4)", &ids, by)
    }

    pub fn revoke_owner(&self, owner: Option<u32>, by: RevokeBy<'_>) -> StoreResult<Vec<String>> {
        match owner {
            Some(uid) => {
                let name = self.owner_name(uid)?;
                self.revoke_where("k.owner = $4", &name, by)
            }
            None => self.revoke_where("$4::text IS NULL", &None::<String>, by),
        }
    }

    fn revoke_where<A: tokio_postgres::types::ToSql + Sync>(
        &self,
        clause: &str,
        arg: &A,
        by: RevokeBy<'_>,
    ) -> StoreResult<Vec<String>> {
        let by_name = self.actor_name(by.uid);
        let sql = format!(
            "UPDATE apikey.keys k SET revoked = $1, revoked_by = $2, revoke_reason = $3, \
             revoked_on = apikey.my_host() WHERE k.revoked IS NULL AND {clause} RETURNING k.id"
        );
        self.write(async |tx| {
            let rows = tx
                .query(&sql, &[&by.at, &by_name, &by.reason, arg])
                .await
                .map_err(store_error)?;
            Ok(rows.iter().map(|r| r.get(0)).collect())
        })
    }

    pub fn replace(&self, old_id: &str, new: &KeyRecord, by: RevokeBy<'_>) -> StoreResult<()> {
        let by_name = self.actor_name(by.uid);
        let created_by = self.actor_name(new.created_by_uid);
        let created_by_login = new.created_by_loginuid.map(|uid| self.actor_name(uid));
        self.write(async |tx| {
            let changed = tx
                .execute(
                    "UPDATE apikey.keys SET revoked = $1, revoked_by = $2, revoke_reason = $3, \
                     revoked_on = apikey.my_host() WHERE id = $4 AND revoked IS NULL",
                    &[&by.at, &by_name, &by.reason, &old_id],
                )
                .await
                .map_err(store_error)?;
            if changed != 1 {
                return Err(StoreError::NotActive);
            }
            insert_row(tx, new, &created_by, created_by_login.as_deref()).await
        })
        .map_err(|e| self.explain_denied(e, "make keys"))
    }

    /// This host's last uses, one row per key and host: another host's row
    /// is that host's to write (row-level security says so too).
    pub fn record_uses(&self, uses: &[KeyUse]) -> StoreResult<()> {
        if uses.is_empty() {
            return Ok(());
        }
        self.write(async |tx| {
            let stmt = tx
                .prepare(
                    "INSERT INTO apikey.key_uses (key_id, host, at, service, rhost) \
                     SELECT $1, apikey.my_host(), $2, $3, $4 \
                     WHERE EXISTS (SELECT 1 FROM apikey.keys WHERE id = $1) \
                     ON CONFLICT (key_id, host) DO UPDATE \
                     SET at = excluded.at, service = excluded.service, rhost = excluded.rhost \
                     WHERE apikey.key_uses.at <= excluded.at",
                )
                .await
                .map_err(store_error)?;
            for u in uses {
                tx.execute(&stmt, &[&u.key_id, &u.at, &u.service, &u.rhost])
                    .await
                    .map_err(store_error)?;
            }
            Ok(())
        })
    }

    /// This host's part of each key's use history (schema 4 on): its own
    /// rows, merged with what they hold and trimmed to the newest
    /// [`USE_HISTORY`] per key.
    pub fn record_use_pairs(&self, pairs: &[UsePair]) -> StoreResult<()> {
        if pairs.is_empty() || schema::known() < 4 {
            return Ok(());
        }
        self.write(async |tx| {
            let add = tx
                .prepare(
                    "INSERT INTO apikey.key_use_pairs \
                     (key_id, host, service, rhost, first_used, last_used) \
                     SELECT $1, apikey.my_host(), $2, $3, $4, $5 \
                     WHERE EXISTS (SELECT 1 FROM apikey.keys WHERE id = $1) \
                     ON CONFLICT (key_id, host, service, rhost) DO UPDATE \
                     SET first_used = least(apikey.key_use_pairs.first_used, excluded.first_used), \
                         last_used = greatest(apikey.key_use_pairs.last_used, excluded.last_used)",
                )
                .await
                .map_err(store_error)?;
            let trim = tx
                .prepare(
                    "DELETE FROM apikey.key_use_pairs \
                     WHERE key_id = $1 AND host = apikey.my_host() \
                       AND (service, rhost) NOT IN \
                           (SELECT service, rhost FROM apikey.key_use_pairs \
                            WHERE key_id = $1 AND host = apikey.my_host() \
                            ORDER BY last_used DESC LIMIT $2)",
                )
                .await
                .map_err(store_error)?;
            let mut keys: Vec<&str> = Vec::new();
            for p in pairs {
                tx.execute(&add, &[&p.key_id, &p.service, &p.rhost, &p.first, &p.last])
                    .await
                    .map_err(store_error)?;
                keys.push(&p.key_id);
            }
            keys.sort_unstable();
            keys.dedup();
            for k in keys {
                tx.execute(&trim, &[&k, &(USE_HISTORY as i64)])
                    .await
                    .map_err(store_error)?;
            }
            Ok(())
        })
    }

    /// The fleet's long-lived keys, active and expiring by `soon_until`,
    /// as [`Store::key_counts`](crate::store::Store::key_counts) counts
    /// them (the database holds no session keys).
    pub fn key_counts(
        &self,
        owner: Option<u32>,
        now: i64,
        soon_until: i64,
        cap: Option<i64>,
    ) -> StoreResult<KeyCounts> {
        let owner = owner.map(|uid| self.owner_name(uid)).transpose()?;
        let row = self.read(|live| async move {
            live.client
                .query_one(
                    "SELECT count(*) FILTER (WHERE e > $1), \
                            count(*) FILTER (WHERE e > $1 AND e <= $2) \
                     FROM (SELECT least(coalesce(expires, 9223372036854775807), \
                                        coalesce(created + $3::bigint, 9223372036854775807)) AS e \
                           FROM apikey.keys \
                           WHERE revoked IS NULL AND ($4::text IS NULL OR owner = $4)) k",
                    &[&now, &soon_until, &cap, &owner],
                )
                .await
        })?;
        Ok(KeyCounts {
            long_lived: row.get::<_, i64>(0) as u64,
            sessions: 0,
            expiring_soon: row.get::<_, i64>(1) as u64,
        })
    }

    /// When this host last wrote to the database (Unix seconds).
    pub fn last_write(&self) -> Option<i64> {
        Some(self.last_write.load(std::sync::atomic::Ordering::Relaxed)).filter(|t| *t > 0)
    }

    /// A key's use history over every host: each pair's first use on any
    /// host, its last, and the host of that last use.
    pub fn use_history(&self, key_id: &str) -> StoreResult<Vec<UsePair>> {
        if schema::known() < 4 {
            return Ok(Vec::new());
        }
        let key = key_id.to_string();
        let rows = self.read(|live| async move {
            live.client
                .query(
                    "SELECT service, rhost, min(first_used), max(last_used), \
                            (array_agg(host ORDER BY last_used DESC))[1] \
                     FROM apikey.key_use_pairs WHERE key_id = $1 \
                     GROUP BY service, rhost ORDER BY 4 DESC, 1, 2 LIMIT $2",
                    &[&key, &(USE_HISTORY as i64)],
                )
                .await
        })?;
        Ok(rows
            .iter()
            .map(|r| UsePair {
                key_id: key_id.to_string(),
                service: r.get(0),
                rhost: r.get(1),
                first: r.get(2),
                last: r.get(3),
                host: r.get(4),
            })
            .collect())
    }

    pub fn policy(&self) -> StoreResult<Policy> {
        if let Some(p) = self.policy_if_at_hand() {
            return Ok(p);
        }
        let rows = match self.read(|live| async move {
            live.client
                .query("SELECT name, value FROM apikey.settings", &[])
                .await
        }) {
            Ok(rows) => rows,
            Err(e) => {
                return match *locked(&self.heard.last_policy) {
                    Some((p, at)) if at.elapsed() < self.offline_grace => Ok(p),
                    _ => Err(e),
                }
            }
        };
        let policy = policy_from_settings(rows.iter().map(|r| (r.get::<_, String>(0), r.get(1))))?;
        *locked(&self.heard.policy) = Some((policy, Instant::now()));
        *locked(&self.heard.last_policy) = Some((policy, Instant::now()));
        Ok(policy)
    }

    /// The policy as last read, for at most [`POLICY_TTL`].
    pub fn policy_if_at_hand(&self) -> Option<Policy> {
        let cached = *self.heard.policy.try_lock().ok()?;
        cached
            .filter(|(_, at)| at.elapsed() < POLICY_TTL)
            .map(|(p, _)| p)
    }

    pub fn save_policy(&self, policy: &Policy) -> StoreResult<()> {
        *locked(&self.heard.policy) = None;
        let rows = policy_settings(policy);
        self.write(async |tx| {
            for (name, value) in &rows {
                tx.execute(
                    "INSERT INTO apikey.settings (name, value) VALUES ($1, $2) \
                     ON CONFLICT (name) DO UPDATE SET value = excluded.value",
                    &[name, value],
                )
                .await
                .map_err(store_error)?;
            }
            Ok(())
        })
        .map_err(|e| self.explain_denied(e, "change the site policy"))?;
        *locked(&self.heard.policy) = Some((*policy, Instant::now()));
        Ok(())
    }

    /// A refusal by the database's grants, told with the hosts that may.
    fn explain_denied(&self, e: StoreError, what: &str) -> StoreError {
        let StoreError::Denied(_) = e else { return e };
        let issuers = self
            .read(|live| async move {
                live.client
                    .query(
                        "SELECT name FROM apikey.hosts \
                         WHERE pg_has_role(role, 'apikey_issuer', 'MEMBER') ORDER BY name",
                        &[],
                    )
                    .await
            })
            .map(|rows| {
                rows.iter()
                    .map(|r| r.get::<_, String>(0))
                    .collect::<Vec<_>>()
            })
            .unwrap_or_default();
        StoreError::Denied(match issuers.is_empty() {
            true => format!("this host may not {what}, and no host of the fleet may"),
            false => format!(
                "this host may not {what}; keys are made on {}",
                issuers.join(", ")
            ),
        })
    }
}

impl PgKeys {
    /// Whether LISTEN is in place, and how many keys are remembered.
    #[cfg(test)]
    fn hearing(&self) -> (bool, usize) {
        (
            self.heard
                .listening
                .load(std::sync::atomic::Ordering::SeqCst),
            locked(&self.heard.grace).len(),
        )
    }
}

impl Heard {
    fn hear(&self, channel: &str, payload: &str) {
        match channel {
            "apikey_revoked" => locked(&self.grace).forget_id(payload),
            "apikey_policy" => *locked(&self.policy) = None,
            _ => {}
        }
    }
}

/// `created_by` and `created_by_login` are names: the maker, and the
/// login it acted for (schema 2 on; `None` where there was none).
async fn insert_row(
    tx: &tokio_postgres::Transaction<'_>,
    key: &KeyRecord,
    created_by: &str,
    created_by_login: Option<&str>,
) -> StoreResult<()> {
    if key.kind != KeyKind::LongLived {
        return Err(StoreError::Failed(
            "session keys stay in the host's own store".into(),
        ));
    }
    let with_login = schema::known() >= 2;
    let with_sources = schema::known() >= 3;
    if !with_sources && !key.sources.is_empty() {
        return Err(StoreError::Failed(
            "this apikeyd cannot store a key's networks (--from)".into(),
        ));
    }
    let (columns, value) = match (with_login, with_sources) {
        (true, true) => (", created_by_login, sources", ", $10, $11"),
        (true, false) => (", created_by_login", ", $10"),
        _ => ("", ""),
    };
    let sql = format!(
        "INSERT INTO apikey.keys (id, hash, owner, created_by, made_on, name, services, hosts, \
         created, expires{columns}) VALUES ($1, $2, $3, $4, apikey.my_host(), $5, $6, $7, $8, \
         $9{value})"
    );
    let hash = key.hash.as_slice();
    let mut args: Vec<&(dyn tokio_postgres::types::ToSql + Sync)> = vec![
        &key.id,
        &hash,
        &key.owner_name,
        &created_by,
        &key.name,
        &key.services,
        &key.hosts,
        &key.created,
        &key.expires,
    ];
    if with_login {
        args.push(&created_by_login);
    }
    if with_sources {
        args.push(&key.sources);
    }
    tx.execute(&sql, &args)
        .await
        .map(|_| ())
        .map_err(store_error)
}

const USE_COLUMNS: &str = "u.at, u.service, u.rhost, u.host";

/// The login path's one query (prepared on every lookup connection); the
/// benchmark times it alone, as the database's share of a Verify.
pub fn by_hash_sql() -> String {
    format!(
        "SELECT {KEY_COLUMNS}{} FROM apikey.keys k WHERE k.hash = $1",
        later_columns()
    )
}

/// The columns of later schemas, selected last (and read by name) where
/// this daemon knows them: the login of a key's maker (schema 2 on), the
/// networks it may be used from (schema 3 on).
fn later_columns() -> &'static str {
    match schema::known() {
        3.. => ", k.created_by_login, k.sources",
        2 => ", k.created_by_login",
        _ => "",
    }
}
const SEQ_COLUMN: usize = 18;

/// Errors of a call: refusals by the grants and row-level security are
/// `Denied`; everything else means the store cannot be used now.
fn store_error(e: tokio_postgres::Error) -> StoreError {
    use tokio_postgres::error::SqlState;
    match e.code() {
        // Grants and row-level security's WITH CHECK alike.
        Some(c) if *c == SqlState::INSUFFICIENT_PRIVILEGE => StoreError::Denied(describe(&e)),
        _ => StoreError::Failed(describe(&e)),
    }
}

fn unavailable(e: tokio_postgres::Error) -> StoreError {
    StoreError::Failed(reach_failure(&describe(&e)))
}

/// Why the database cannot be reached, with what to do when it is the
/// shipped unit's sandbox that keeps the daemon off the network.
pub(crate) fn reach_failure(why: &str) -> String {
    let sandboxed = [
        "Address family not supported",
        "Operation not permitted",
        "Network is unreachable",
    ]
    .iter()
    .any(|s| why.contains(s));
    match sandboxed {
        true => format!(
            "cannot reach the fleet database: {why} (the systemd unit allows no network \
             by default: install /usr/share/apikey/fleet/fleet-network.conf as a drop-in, \
             docs/fleet.md)"
        ),
        false => format!("cannot reach the fleet database: {why}"),
    }
}

/// The server's message where there is one, not just "db error".
pub(crate) fn describe(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => format!("{} ({})", db.message(), db.code().code()),
        None => match std::error::Error::source(e) {
            Some(cause) => format!("{e}: {cause}"),
            None => e.to_string(),
        },
    }
}

#[cfg(test)]
mod tests;

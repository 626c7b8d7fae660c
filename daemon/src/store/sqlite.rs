//! The embedded default backend: one SQLite file in WAL mode with
//! synchronous=FULL, so a write is on disk before the caller hears "done".
//! One connection writes; a second one serves reads, so a Verify never
//! waits behind a writer's fsync; a third serves only the one-row lookups
//! of a login (by hash, by id), so a Verify never waits behind a long
//! read either (listing a million keys takes seconds).

use super::migrations::MIGRATIONS;
use super::{
    KeyCounts, KeyKind, KeyRecord, KeyUse, ListQuery, Policy, Prune, Revocation, RevokeBy,
    SessionRecord, Store, StoreError, StoreResult, UsePair, USE_HISTORY,
};
use rusqlite::{params, Connection, OpenFlags, OptionalExtension, Row, TransactionBehavior};
use std::fs;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

pub struct SqliteStore {
    writer: Mutex<Connection>,
    /// `None` for an in-memory store, which has a single connection.
    reader: Option<Mutex<Connection>>,
    /// Key lookups by hash or id only (Verify, CheckKey).
    lookup: Option<Mutex<Connection>>,
    dir: Option<PathBuf>,
    /// The database file; `None` in memory.
    path: Option<PathBuf>,
    /// When a write transaction last committed (Unix seconds; 0: none yet).
    last_write: std::sync::atomic::AtomicI64,
    /// The policy as last read or saved. Verify needs it for every login,
    /// and only this process writes the store (SPEC), so the settings
    /// table cannot change behind it: a read transaction per login bought
    /// nothing. Held while the table is read or written, so a read racing
    /// a save cannot put the old policy back.
    policy: Mutex<Option<Policy>>,
    /// Room on the store's disk that only revocations may use.
    reserve: Option<Reserve>,
}

/// A file of preallocated blocks beside the store (`keys.db-reserve`).
/// When a revocation finds the disk full, the file is emptied and the
/// revocation tried again in the room it leaves; the room is taken back
/// once the disk has it again. A revocation that returned success must
/// be possible whoever filled the disk (issue: a leaked key kept working
/// while the disk was full).
struct Reserve {
    path: PathBuf,
    bytes: u64,
    /// False once released, until it is made again.
    held: std::sync::atomic::AtomicBool,
}

impl Reserve {
    /// 8 MiB, or an eighth of a small file system: room for the write-ahead
    /// log of revoking thousands of keys.
    fn for_dir(dir: &Path) -> Reserve {
        let size = nix::sys::statvfs::statvfs(dir)
            .map(|st| st.blocks().saturating_mul(st.fragment_size()))
            .unwrap_or(0);
        let mut path = dir.to_path_buf();
        path.push("keys.db-reserve");
        Reserve {
            path,
            bytes: (8u64 << 20).min(size / 8),
            held: std::sync::atomic::AtomicBool::new(false),
        }
    }

    /// Makes (or completes) the file; false when the disk has no room.
    fn take(&self) -> bool {
        use std::os::fd::AsRawFd;
        let file = match fs::OpenOptions::new()
            .create(true)
            .write(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&self.path)
        {
            Ok(f) => f,
            Err(_) => return false,
        };
        // Real blocks, not a sparse file: the point is that they are taken.
        let rc = unsafe { libc::fallocate(file.as_raw_fd(), 0, 0, self.bytes as libc::off_t) };
        let ok = rc == 0 && file.sync_all().is_ok();
        if !ok {
            let _ = file.set_len(0);
        }
        self.held.store(ok, std::sync::atomic::Ordering::SeqCst);
        ok
    }

    /// Gives the blocks back to the file system for the revocation at hand.
    fn release(&self) {
        if let Ok(file) = fs::OpenOptions::new()
            .write(true)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&self.path)
        {
            let _ = file.set_len(0);
            let _ = file.sync_all();
        }
        self.held.store(false, std::sync::atomic::Ordering::SeqCst);
    }
}

/// Why the store could not be opened; the daemon prints it and exits.
#[derive(Debug)]
pub struct OpenError {
    pub file: PathBuf,
    pub reason: String,
}

impl std::fmt::Display for OpenError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.file.display(), self.reason)
    }
}

impl std::error::Error for OpenError {}

const KEY_COLUMNS: &str = "id, hash, kind, owner_uid, owner_name, created_by_uid, \
    created_by_loginuid, name, services, created, expires, last_used, last_service, \
    last_rhost, revoked, revoked_by_uid, revoke_reason, session_boot_id, session_audit, \
    session_loginuid, session_handle, sources";

const SESSION_COLUMNS: &str = "handle, boot_id, audit_session, loginuid, caller_pid, uid, \
    user, service, rhost, tty, key_id, opened, closed, close_reason, auth";

impl SqliteStore {
    /// Opens (creating if needed) the store at `path`: the directory must
    /// not be writable by others, the file is created 0600, the schema is
    /// migrated and the file's integrity checked.
    pub fn open(path: &Path) -> Result<SqliteStore, OpenError> {
        let fail = |reason: String| OpenError {
            file: path.into(),
            reason,
        };
        let dir = path
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
            .ok_or_else(|| fail("the store must be a file path with a directory".into()))?;
        prepare_dir(dir).map_err(|reason| OpenError {
            file: dir.into(),
            reason,
        })?;
        match fs::symlink_metadata(path) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                create_new_store(path).map_err(|e| fail(format!("cannot create: {e}")))?
            }
            Err(e) => return Err(fail(e.to_string())),
            // A new store is made only where there is none: an empty file
            // is a store that lost its contents (truncated by mistake, a
            // broken copy), and starting afresh would silently forget
            // every key and revocation in it.
            Ok(meta) if meta.is_file() && meta.len() == 0 => {
                return Err(fail(
                    "the file is empty (0 bytes); a key store lost its contents here. \
                     Restore it from a backup (apikey backup), or move it away to start \
                     a new, empty store"
                        .into(),
                ))
            }
            Ok(meta) if meta.is_dir() => {
                return Err(fail("is a directory, not a key store file".into()))
            }
            Ok(meta) if !meta.is_file() => {
                return Err(fail(
                    "is not a regular file (a symlink or a device); the key store must be one"
                        .into(),
                ))
            }
            Ok(_) => {}
        }
        let meta = fs::symlink_metadata(path).map_err(|e| fail(e.to_string()))?;
        if meta.permissions().mode() & 0o077 != 0 {
            fs::set_permissions(path, fs::Permissions::from_mode(0o600))
                .map_err(|e| fail(format!("cannot make it 0600: {e}")))?;
        }
        let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let mut writer =
            Connection::open_with_flags(path, flags).map_err(|e| fail(describe(&e)))?;
        configure(&writer).map_err(fail)?;
        let quick: String = writer
            .query_row("PRAGMA quick_check", [], |r| r.get(0))
            .map_err(|e| fail(describe(&e)))?;
        if quick != "ok" {
            return Err(fail(format!("the database is corrupt ({quick})")));
        }
        migrate(&mut writer).map_err(fail)?;
        enable_incremental_vacuum(&writer, dir);
        let read_only = || -> Result<Connection, OpenError> {
            let conn = Connection::open_with_flags(path, flags).map_err(|e| fail(describe(&e)))?;
            configure(&conn).map_err(fail)?;
            conn.execute_batch("PRAGMA query_only = ON")
                .map_err(|e| fail(describe(&e)))?;
            Ok(conn)
        };
        let reader = read_only()?;
        let lookup = read_only()?;
        let reserve = Reserve::for_dir(dir);
        if !reserve.take() {
            eprintln!(
                "apikeyd: WARNING: no room for the revocation reserve {} ({} bytes); \
                 revocations may fail while the disk is full",
                reserve.path.display(),
                reserve.bytes
            );
        }
        Ok(SqliteStore {
            writer: Mutex::new(writer),
            reader: Some(Mutex::new(reader)),
            lookup: Some(Mutex::new(lookup)),
            dir: Some(dir.into()),
            path: Some(path.into()),
            last_write: Default::default(),
            policy: Mutex::new(None),
            reserve: Some(reserve),
        })
    }

    /// A private in-memory store for unit tests.
    pub fn open_in_memory() -> SqliteStore {
        let mut conn = Connection::open_in_memory().expect("in-memory SQLite");
        migrate(&mut conn).expect("migrations apply to an empty database");
        SqliteStore {
            writer: Mutex::new(conn),
            reader: None,
            lookup: None,
            dir: None,
            path: None,
            last_write: Default::default(),
            policy: Mutex::new(None),
            reserve: None,
        }
    }

    fn write(&self) -> MutexGuard<'_, Connection> {
        // A panic while holding the lock leaves SQLite consistent (the
        // transaction rolls back on drop), so a poisoned lock is usable.
        self.writer.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Runs `f` in an immediate write transaction, committed only if `f`
    /// succeeds; on any error it rolls back when dropped.
    fn in_write_tx<T>(
        &self,
        f: impl FnOnce(&rusqlite::Transaction<'_>) -> StoreResult<T>,
    ) -> StoreResult<T> {
        // One budget per write, the wait for the writer's lock included:
        // writes queued behind one that waits on another process's lock
        // do not each wait their own WRITE_WAIT after it.
        let asked = std::time::Instant::now();
        let mut conn = self.write();
        conn.busy_timeout(WRITE_WAIT.saturating_sub(asked.elapsed()))
            .map_err(map_err)?;
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(map_err)?;
        let value = f(&tx)?;
        tx.commit().map_err(map_err)?;
        self.last_write.store(
            apikey_proto::timefmt::now(),
            std::sync::atomic::Ordering::Relaxed,
        );
        Ok(value)
    }

    /// Adds `keys` in one transaction through one prepared statement: for
    /// seeding a store (benchmarks) and bulk imports, where a transaction
    /// per key would cost an fsync each. Unlike [`Store::insert`] there is
    /// no quota check. All or nothing: a duplicate id or hash fails the
    /// whole batch.
    pub fn insert_batch(&self, keys: &[KeyRecord]) -> StoreResult<()> {
        self.in_write_tx(|tx| {
            let mut stmt = tx.prepare_cached(&insert_sql()).map_err(map_err)?;
            for key in keys {
                execute_insert(&mut stmt, key).map_err(map_err)?;
            }
            Ok(())
        })
    }

    /// Rows in the sessions table, open or closed: lets tests check that a
    /// refused request wrote nothing.
    #[cfg(test)]
    pub(crate) fn session_rows(&self) -> i64 {
        self.read()
            .query_row("SELECT count(*) FROM sessions", [], |r| r.get(0))
            .expect("count sessions")
    }

    fn cached_policy(&self) -> MutexGuard<'_, Option<Policy>> {
        self.policy.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn read(&self) -> MutexGuard<'_, Connection> {
        match &self.reader {
            Some(r) => r.lock().unwrap_or_else(|p| p.into_inner()),
            None => self.write(),
        }
    }

    fn look_up(&self) -> MutexGuard<'_, Connection> {
        match &self.lookup {
            Some(r) => r.lock().unwrap_or_else(|p| p.into_inner()),
            None => self.write(),
        }
    }

    fn query_keys(
        &self,
        where_clause: &str,
        args: &[&dyn rusqlite::ToSql],
    ) -> StoreResult<Vec<KeyRecord>> {
        let conn = self.read();
        let sql = format!("SELECT {KEY_COLUMNS} FROM keys WHERE {where_clause}");
        let mut stmt = conn.prepare_cached(&sql).map_err(map_err)?;
        let rows = stmt.query_map(args, key_from_row).map_err(map_err)?;
        rows.collect::<Result<Vec<_>, _>>().map_err(map_err)
    }

    /// Runs a revocation's write; on a full disk, once more in the room
    /// the reserve gives back. The reserve is taken again after a write
    /// once the disk has room for it twice over.
    fn with_reserve<T>(&self, write: impl Fn() -> StoreResult<T>) -> StoreResult<T> {
        let Some(reserve) = &self.reserve else {
            return write();
        };
        let result = match write() {
            Err(StoreError::DiskFull) if reserve.held.load(std::sync::atomic::Ordering::SeqCst) => {
                eprintln!(
                    "apikeyd: the disk is full; using the revocation reserve {}",
                    reserve.path.display()
                );
                reserve.release();
                write()
            }
            other => other,
        };
        if result.is_ok()
            && !reserve.held.load(std::sync::atomic::Ordering::SeqCst)
            && self
                .free_space()
                .is_some_and(|free| free > 2 * reserve.bytes)
        {
            reserve.take();
        }
        result
    }

    fn revoke_where(
        &self,
        where_clause: &str,
        args: &[&dyn rusqlite::ToSql],
        by: RevokeBy<'_>,
    ) -> StoreResult<Vec<String>> {
        self.with_reserve(|| self.revoke_where_once(where_clause, args, by))
    }

    fn revoke_where_once(
        &self,
        where_clause: &str,
        args: &[&dyn rusqlite::ToSql],
        by: RevokeBy<'_>,
    ) -> StoreResult<Vec<String>> {
        self.in_write_tx(|tx| {
            let sql = format!(
                "UPDATE keys SET revoked = ?1, revoked_by_uid = ?2, revoke_reason = ?3 \
                 WHERE revoked IS NULL AND ({where_clause}) RETURNING id"
            );
            let mut stmt = tx.prepare_cached(&sql).map_err(map_err)?;
            let mut all: Vec<&dyn rusqlite::ToSql> = vec![&by.at, &by.uid, &by.reason];
            all.extend_from_slice(args);
            let rows = stmt
                .query_map(all.as_slice(), |r| r.get::<_, String>(0))
                .map_err(map_err)?;
            rows.collect::<Result<Vec<_>, _>>().map_err(map_err)
        })
    }
}

impl Store for SqliteStore {
    fn insert(&self, key: &KeyRecord, max_active: u32, now: i64) -> StoreResult<()> {
        self.in_write_tx(|tx| {
            let active: u32 = tx
                .prepare_cached(
                    "SELECT count(*) FROM keys WHERE owner_uid = ?1 AND revoked IS NULL \
                     AND (expires IS NULL OR expires > ?2)",
                )
                .and_then(|mut s| s.query_row(params![key.owner_uid, now], |r| r.get(0)))
                .map_err(map_err)?;
            if active >= max_active {
                return Err(StoreError::TooManyKeys(active));
            }
            insert_row(tx, key)
        })
    }

    fn by_hash(&self, hash: &[u8; 32]) -> StoreResult<Option<KeyRecord>> {
        let conn = self.look_up();
        let sql = format!("SELECT {KEY_COLUMNS} FROM keys WHERE hash = ?1");
        let mut stmt = conn.prepare_cached(&sql).map_err(map_err)?;
        stmt.query_row([&hash[..]], key_from_row)
            .optional()
            .map_err(map_err)
    }

    fn by_id(&self, id: &str) -> StoreResult<Option<KeyRecord>> {
        let conn = self.look_up();
        let sql = format!("SELECT {KEY_COLUMNS} FROM keys WHERE id = ?1");
        let mut stmt = conn.prepare_cached(&sql).map_err(map_err)?;
        stmt.query_row([id], key_from_row)
            .optional()
            .map_err(map_err)
    }

    fn list_active(&self, owner: Option<u32>) -> StoreResult<Vec<KeyRecord>> {
        match owner {
            Some(uid) => self.query_keys(
                "owner_uid = ?1 AND revoked IS NULL ORDER BY created, id",
                &[&uid],
            ),
            None => self.query_keys("revoked IS NULL ORDER BY owner_name, created, id", &[]),
        }
    }

    fn list_page(&self, q: &ListQuery) -> StoreResult<(Vec<(i64, KeyRecord)>, bool)> {
        let conn = self.read();
        // One owner's keys through the owner index (migration 5), not a
        // walk of every key on the site; everyone's in stored order.
        let owner = match q.owner {
            Some(_) => "owner_uid = ?2",
            None => "?2 IS NULL",
        };
        let sql = format!(
            "SELECT rowid, {KEY_COLUMNS} FROM keys \
             WHERE rowid > ?1 AND {owner} \
               AND (?3 OR kind = 'long') AND (?8 OR kind = 'session') \
               AND CASE WHEN revoked IS NOT NULL THEN ?4 \
                        WHEN expires IS NOT NULL AND expires <= ?6 THEN ?5 \
                        ELSE 1 END \
             ORDER BY rowid LIMIT ?7"
        );
        let mut stmt = conn.prepare_cached(&sql).map_err(map_err)?;
        // One more than a page: whether another page follows.
        let rows = stmt
            .query_map(
                params![
                    q.after,
                    q.owner,
                    q.sessions,
                    q.revoked,
                    q.expired,
                    q.now,
                    i64::from(q.limit) + 1,
                    q.long_lived
                ],
                |r| Ok((r.get::<_, i64>(0)?, key_from_row_at(r, 1)?)),
            )
            .map_err(map_err)?;
        let mut page: Vec<(i64, KeyRecord)> =
            rows.collect::<Result<Vec<_>, _>>().map_err(map_err)?;
        let more = page.len() > q.limit as usize;
        page.truncate(q.limit as usize);
        Ok((page, more))
    }

    fn revoke(&self, ids: &[String], by: RevokeBy<'_>) -> StoreResult<Vec<String>> {
        if ids.is_empty() {
            return Ok(vec![]);
        }
        // One placeholder per id; ids were validated as base62 by the caller.
        let marks = (0..ids.len())
            .map(|i| format!("?{}", i + 4))
            .collect::<Vec<_>>()
            .join(",");
        let args: Vec<&dyn rusqlite::ToSql> =
            ids.iter().map(|i| i as &dyn rusqlite::ToSql).collect();
        self.revoke_where(&format!("id IN ({marks})"), &args, by)
    }

    fn revoke_owner(&self, owner: Option<u32>, by: RevokeBy<'_>) -> StoreResult<Vec<String>> {
        match owner {
            Some(uid) => self.revoke_where("owner_uid = ?4", &[&uid], by),
            None => self.revoke_where("1", &[], by),
        }
    }

    fn replace(&self, old_id: &str, new: &KeyRecord, by: RevokeBy<'_>) -> StoreResult<()> {
        self.in_write_tx(|tx| {
            let changed = tx
                .execute(
                    "UPDATE keys SET revoked = ?1, revoked_by_uid = ?2, revoke_reason = ?3 \
                     WHERE id = ?4 AND revoked IS NULL",
                    params![by.at, by.uid, by.reason, old_id],
                )
                .map_err(map_err)?;
            if changed != 1 {
                return Err(StoreError::NotActive);
            }
            insert_row(tx, new)
        })
    }

    fn record_uses(&self, uses: &[KeyUse]) -> StoreResult<()> {
        if uses.is_empty() {
            return Ok(());
        }
        self.in_write_tx(|tx| {
            let mut stmt = tx
                .prepare_cached(
                    "UPDATE keys SET last_used = ?2, last_service = ?3, last_rhost = ?4 \
                     WHERE id = ?1 AND (last_used IS NULL OR last_used <= ?2)",
                )
                .map_err(map_err)?;
            for u in uses {
                stmt.execute(params![u.key_id, u.at, u.service, u.rhost])
                    .map_err(map_err)?;
            }
            Ok(())
        })
    }

    fn record_use_pairs(&self, pairs: &[UsePair]) -> StoreResult<()> {
        if pairs.is_empty() {
            return Ok(());
        }
        self.in_write_tx(|tx| {
            let mut add = tx
                .prepare_cached(
                    "INSERT INTO key_use_pairs (key_id, service, rhost, first_used, last_used) \
                     SELECT ?1, ?2, ?3, ?4, ?5 WHERE EXISTS (SELECT 1 FROM keys WHERE id = ?1) \
                     ON CONFLICT (key_id, service, rhost) DO UPDATE \
                     SET first_used = min(first_used, excluded.first_used), \
                         last_used = max(last_used, excluded.last_used)",
                )
                .map_err(map_err)?;
            let mut trim = tx
                .prepare_cached(
                    "DELETE FROM key_use_pairs WHERE key_id = ?1 AND rowid NOT IN \
                     (SELECT rowid FROM key_use_pairs WHERE key_id = ?1 \
                      ORDER BY last_used DESC, rowid DESC LIMIT ?2)",
                )
                .map_err(map_err)?;
            let mut keys: Vec<&str> = Vec::new();
            for p in pairs {
                add.execute(params![p.key_id, p.service, p.rhost, p.first, p.last])
                    .map_err(map_err)?;
                keys.push(&p.key_id);
            }
            keys.sort_unstable();
            keys.dedup();
            for k in keys {
                trim.execute(params![k, USE_HISTORY as i64])
                    .map_err(map_err)?;
            }
            Ok(())
        })
    }

    fn use_history(&self, key_id: &str) -> StoreResult<Vec<UsePair>> {
        let conn = self.read();
        let mut stmt = conn
            .prepare_cached(
                "SELECT service, rhost, first_used, last_used FROM key_use_pairs \
                 WHERE key_id = ?1 ORDER BY last_used DESC, rowid DESC LIMIT ?2",
            )
            .map_err(map_err)?;
        let rows = stmt
            .query_map(params![key_id, USE_HISTORY as i64], |r| {
                Ok(UsePair {
                    key_id: key_id.to_string(),
                    service: r.get(0)?,
                    rhost: r.get(1)?,
                    first: r.get(2)?,
                    last: r.get(3)?,
                    host: String::new(),
                })
            })
            .map_err(map_err)?;
        rows.collect::<Result<Vec<_>, _>>().map_err(map_err)
    }

    fn policy(&self) -> StoreResult<Policy> {
        let mut cached = self.cached_policy();
        if let Some(p) = *cached {
            return Ok(p);
        }
        let conn = self.read();
        let mut stmt = conn
            .prepare_cached("SELECT name, value FROM settings")
            .map_err(map_err)?;
        let rows = stmt
            .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))
            .map_err(map_err)?;
        let rows = rows.collect::<Result<Vec<_>, _>>().map_err(map_err)?;
        let policy = super::policy_from_settings(rows)?;
        *cached = Some(policy);
        Ok(policy)
    }

    fn policy_if_at_hand(&self) -> Option<Policy> {
        // A save holds this lock through its fsync.
        *self.policy.try_lock().ok()?
    }

    fn save_policy(&self, policy: &Policy) -> StoreResult<()> {
        let mut cached = self.cached_policy();
        // Whatever happens, the next read asks the table again.
        *cached = None;
        self.in_write_tx(|tx| {
            let mut stmt = tx
                .prepare_cached(
                    "INSERT INTO settings (name, value) VALUES (?1, ?2) \
                     ON CONFLICT(name) DO UPDATE SET value = excluded.value",
                )
                .map_err(map_err)?;
            let rows = super::policy_settings(policy);
            for (name, value) in rows {
                stmt.execute(params![name, value]).map_err(map_err)?;
            }
            Ok(())
        })?;
        *cached = Some(*policy);
        Ok(())
    }

    fn open_session(&self, r: &SessionRecord) -> StoreResult<()> {
        self.in_write_tx(|tx| {
            tx.prepare_cached(&format!(
                "INSERT INTO sessions ({SESSION_COLUMNS}) VALUES \
                 (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15)"
            ))
            .and_then(|mut st| {
                st.execute(params![
                    r.handle,
                    r.boot_id,
                    r.audit_session,
                    r.loginuid,
                    r.caller_pid,
                    r.uid,
                    r.user,
                    r.service,
                    r.rhost,
                    r.tty,
                    r.key_id,
                    r.opened,
                    r.closed,
                    r.close_reason,
                    r.auth,
                ])
            })
            .map(|_| ())
            .map_err(map_err)
        })
    }

    fn close_session(&self, handle: &str, at: i64, reason: &str) -> StoreResult<bool> {
        self.in_write_tx(|tx| {
            let changed = tx
                .prepare_cached(
                    "UPDATE sessions SET closed = ?2, close_reason = ?3 \
                     WHERE handle = ?1 AND closed IS NULL",
                )
                .and_then(|mut st| st.execute(params![handle, at, reason]))
                .map_err(map_err)?;
            Ok(changed == 1)
        })
    }

    fn session(&self, handle: &str) -> StoreResult<Option<SessionRecord>> {
        let conn = self.read();
        let sql = format!("SELECT {SESSION_COLUMNS} FROM sessions WHERE handle = ?1");
        let mut stmt = conn.prepare_cached(&sql).map_err(map_err)?;
        stmt.query_row([handle], session_from_row)
            .optional()
            .map_err(map_err)
    }

    fn sessions_of(&self, boot_id: &str, audit_session: u32) -> StoreResult<Vec<SessionRecord>> {
        let conn = self.read();
        let sql = format!(
            "SELECT {SESSION_COLUMNS} FROM sessions WHERE boot_id = ?1 AND audit_session = ?2 \
             ORDER BY opened, rowid"
        );
        let mut stmt = conn.prepare_cached(&sql).map_err(map_err)?;
        let rows = stmt
            .query_map(params![boot_id, audit_session], session_from_row)
            .map_err(map_err)?;
        rows.collect::<Result<Vec<_>, _>>().map_err(map_err)
    }

    fn active_session_keys(&self) -> StoreResult<Vec<KeyRecord>> {
        self.query_keys("kind = 'session' AND revoked IS NULL", &[])
    }

    fn revoke_bound_to(&self, handle: &str, by: RevokeBy<'_>) -> StoreResult<Vec<String>> {
        self.revoke_where("session_handle = ?4", &[&handle], by)
    }

    fn key_counts(
        &self,
        owner: Option<u32>,
        now: i64,
        soon_until: i64,
        cap: Option<i64>,
    ) -> StoreResult<KeyCounts> {
        let conn = self.read();
        let mut stmt = conn
            .prepare_cached(
                "SELECT coalesce(sum(kind = 'long' AND e > ?1), 0), \
                        coalesce(sum(kind = 'session' AND e > ?1), 0), \
                        coalesce(sum(kind = 'long' AND e > ?1 AND e <= ?2), 0) \
                 FROM (SELECT kind, \
                              min(coalesce(expires, 9223372036854775807), \
                                  CASE WHEN kind = 'long' AND ?3 IS NOT NULL \
                                       THEN created + ?3 ELSE 9223372036854775807 END) AS e \
                       FROM keys WHERE revoked IS NULL AND (?4 IS NULL OR owner_uid = ?4))",
            )
            .map_err(map_err)?;
        stmt.query_row(params![now, soon_until, cap, owner], |r| {
            Ok(KeyCounts {
                long_lived: r.get::<_, i64>(0)? as u64,
                sessions: r.get::<_, i64>(1)? as u64,
                expiring_soon: r.get::<_, i64>(2)? as u64,
            })
        })
        .map_err(map_err)
    }

    fn size_bytes(&self) -> Option<u64> {
        let path = self.path.as_deref()?;
        let mut wal = path.as_os_str().to_owned();
        wal.push("-wal");
        let len = |p: &Path| fs::metadata(p).map(|m| m.len()).unwrap_or(0);
        Some(len(path) + len(Path::new(&wal)))
    }

    fn last_write(&self) -> Option<i64> {
        Some(self.last_write.load(std::sync::atomic::Ordering::Relaxed)).filter(|t| *t > 0)
    }

    fn free_space(&self) -> Option<u64> {
        let st = nix::sys::statvfs::statvfs(self.dir.as_deref()?).ok()?;
        Some((st.blocks_available() as u64).saturating_mul(st.fragment_size() as u64))
    }

    fn prune(&self, what: &Prune) -> StoreResult<(u64, u64)> {
        // A JSON array of numbers, for json_each.
        let live = format!(
            "[{}]",
            what.live_sessions
                .iter()
                .map(u32::to_string)
                .collect::<Vec<_>>()
                .join(",")
        );
        let keys = self.delete_in_batches(
            "DELETE FROM keys WHERE id IN (SELECT id FROM keys \
             WHERE (revoked IS NOT NULL AND revoked < ?1) \
                OR (revoked IS NULL AND expires IS NOT NULL AND expires < ?1) \
             LIMIT ?2)",
            &[&what.ended_before],
        )?;
        let sessions = self.delete_in_batches(
            "DELETE FROM sessions WHERE handle IN (SELECT s.handle FROM sessions s \
             WHERE s.opened < ?3 \
               AND (s.boot_id != ?4 \
                    OR (s.audit_session IS NULL AND s.closed IS NOT NULL) \
                    OR s.audit_session NOT IN (SELECT value FROM json_each(?5))) \
               AND NOT EXISTS (SELECT 1 FROM keys k \
                               WHERE k.session_handle = s.handle AND k.revoked IS NULL) \
             LIMIT ?2)",
            &[
                &what.ended_before,
                &what.opened_before,
                &what.boot_id,
                &live,
            ],
        )?;
        if keys + sessions > 0 {
            // Free pages go back to the file system (stores made with
            // incremental auto-vacuum; see create_new_store).
            let conn = self.write();
            conn.execute_batch("PRAGMA incremental_vacuum")
                .map_err(map_err)?;
        }
        Ok((keys, sessions))
    }

    fn checkpoint(&self) -> StoreResult<()> {
        let conn = self.write();
        // TRUNCATE: the -wal file is left empty, so a copy of the main file
        // alone is the whole store. Busy (a reader in the way) is reported
        // in the result row, not as an error.
        let busy: i64 = conn
            .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| r.get(0))
            .map_err(map_err)?;
        if busy != 0 {
            return Err(StoreError::Failed(
                "the checkpoint was blocked by a reader".into(),
            ));
        }
        Ok(())
    }

    fn backup_into(&self, out: &mut fs::File) -> StoreResult<u64> {
        let dir = self
            .dir
            .as_deref()
            .ok_or_else(|| StoreError::Failed("an in-memory store has no file".into()))?;
        let name = apikey_proto::token::new_session_handle()
            .map_err(|e| StoreError::Failed(format!("no randomness: {e}")))?;
        // Made beside the store (the daemon's own directory), then copied
        // out: SQLite writes a database only to a file it can name.
        let tmp = dir.join(format!(".backup-{name}"));
        let made = self.backup_to(&tmp).and_then(|_| {
            let io = |e: std::io::Error| match e.raw_os_error() {
                Some(libc::ENOSPC) => StoreError::DiskFull,
                _ => StoreError::Failed(format!("cannot write the backup: {e}")),
            };
            let mut copy = fs::File::open(&tmp).map_err(io)?;
            let n = std::io::copy(&mut copy, out).map_err(io)?;
            out.sync_all().map_err(io)?;
            Ok(n)
        });
        let _ = fs::remove_file(&tmp);
        for suffix in ["-journal", "-wal", "-shm"] {
            let mut side = tmp.clone().into_os_string();
            side.push(suffix);
            let _ = fs::remove_file(side);
        }
        made
    }
}

impl SqliteStore {
    /// Runs `sql` (a DELETE of at most ?2 rows; `args` are ?1, ?3, ...)
    /// until it deletes fewer than a batch, each batch its own short
    /// transaction so that logins and revocations are not held up.
    fn delete_in_batches(&self, sql: &str, args: &[&dyn rusqlite::ToSql]) -> StoreResult<u64> {
        const BATCH: i64 = 500;
        let mut total = 0u64;
        loop {
            let n = self.in_write_tx(|tx| {
                let mut all: Vec<&dyn rusqlite::ToSql> = Vec::with_capacity(args.len() + 1);
                all.push(args[0]);
                all.push(&BATCH);
                all.extend_from_slice(&args[1..]);
                tx.prepare_cached(sql)
                    .and_then(|mut st| st.execute(all.as_slice()))
                    .map_err(map_err)
            })?;
            total += n as u64;
            if (n as i64) < BATCH {
                return Ok(total);
            }
        }
    }

    fn backup_to(&self, dest: &Path) -> StoreResult<u64> {
        // The read connection: a backup is one read transaction, so writes
        // go on meanwhile and the copy is the store as of its start.
        let source = self.read();
        let mut copy = Connection::open_with_flags(
            dest,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_CREATE,
        )
        .map_err(map_err)?;
        {
            let backup = rusqlite::backup::Backup::new(&source, &mut copy).map_err(map_err)?;
            // All pages in one step: a step-by-step copy restarts whenever
            // another connection writes between steps.
            match backup.step(-1).map_err(map_err)? {
                rusqlite::backup::StepResult::Done => {}
                other => {
                    return Err(StoreError::Failed(format!(
                        "the backup did not finish ({other:?})"
                    )))
                }
            }
        }
        drop(source);
        let check: String = copy
            .query_row("PRAGMA integrity_check", [], |r| r.get(0))
            .map_err(map_err)?;
        if check != "ok" {
            return Err(StoreError::Failed(format!(
                "the copy is not sound ({check})"
            )));
        }
        copy.close().map_err(|(_, e)| map_err(e))?;
        let f = fs::File::open(dest).map_err(|e| StoreError::Failed(e.to_string()))?;
        f.sync_all()
            .map_err(|e| StoreError::Failed(e.to_string()))?;
        Ok(f.metadata().map(|m| m.len()).unwrap_or(0))
    }
}

/// Stores made before pruning existed have no auto-vacuum: switched once,
/// by a VACUUM, when the disk has room for a second copy; otherwise said
/// and left for a later start (pruning then frees pages for reuse inside
/// the file without shrinking it).
fn enable_incremental_vacuum(conn: &Connection, dir: &Path) {
    let mode: i64 = conn
        .query_row("PRAGMA auto_vacuum", [], |r| r.get(0))
        .unwrap_or(2);
    if mode == 2 {
        return;
    }
    let size: i64 = conn
        .query_row(
            "SELECT page_count * page_size FROM pragma_page_count, pragma_page_size",
            [],
            |r| r.get(0),
        )
        .unwrap_or(i64::MAX);
    let free = nix::sys::statvfs::statvfs(dir)
        .map(|st| st.blocks_available().saturating_mul(st.fragment_size()))
        .unwrap_or(0);
    if free < (size as u64).saturating_mul(2) {
        eprintln!(
            "apikeyd: not enough room to switch the key store to incremental vacuum \
             ({size} bytes, {free} free); deleted rows' room stays inside the file"
        );
        return;
    }
    if let Err(e) = conn.execute_batch("PRAGMA auto_vacuum = INCREMENTAL; VACUUM") {
        eprintln!("apikeyd: could not switch the key store to incremental vacuum: {e}");
    }
}

/// Makes an empty store at `path` in one step: schema written and synced
/// in a file of its own (0600 from the first byte; SQLite gives the -wal
/// and -shm files the main file's mode), then renamed into place. A crash
/// part way leaves no file at `path`, never an empty one.
fn create_new_store(path: &Path) -> Result<(), String> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".new");
    let tmp = PathBuf::from(tmp);
    let _ = fs::remove_file(&tmp);
    fs::OpenOptions::new()
        .create_new(true)
        .write(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW)
        .open(&tmp)
        .map_err(|e| e.to_string())?;
    let made = (|| -> Result<(), String> {
        let mut conn = Connection::open(&tmp).map_err(|e| describe(&e))?;
        // A rollback journal, not WAL, while it is new: everything ends up
        // in the one file that is renamed. Incremental auto-vacuum, set
        // before the first table, lets pruning give room back.
        conn.execute_batch("PRAGMA synchronous = FULL; PRAGMA auto_vacuum = INCREMENTAL")
            .map_err(|e| describe(&e))?;
        migrate(&mut conn)?;
        conn.close().map_err(|(_, e)| describe(&e))?;
        fs::File::open(&tmp)
            .and_then(|f| f.sync_all())
            .map_err(|e| e.to_string())?;
        fs::rename(&tmp, path).map_err(|e| e.to_string())?;
        if let Some(dir) = path.parent() {
            fs::File::open(dir)
                .and_then(|d| d.sync_all())
                .map_err(|e| e.to_string())?;
        }
        Ok(())
    })();
    if made.is_err() {
        let _ = fs::remove_file(&tmp);
        let mut journal = tmp.into_os_string();
        journal.push("-journal");
        let _ = fs::remove_file(journal);
    }
    made
}

fn prepare_dir(dir: &Path) -> Result<(), String> {
    match fs::symlink_metadata(dir) {
        Ok(meta) => {
            if !meta.is_dir() {
                return Err("is not a directory".into());
            }
            let mode = meta.permissions().mode();
            if mode & 0o022 != 0 {
                return Err(format!(
                    "is writable by group or others (mode {:04o}); it must be 0700",
                    mode & 0o7777
                ));
            }
            Ok(())
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => fs::DirBuilder::new()
            .mode(0o700)
            .create(dir)
            .map_err(|e| format!("cannot create: {e}")),
        Err(e) => Err(e.to_string()),
    }
}

fn configure(conn: &Connection) -> Result<(), String> {
    conn.busy_timeout(std::time::Duration::from_secs(5))
        .map_err(|e| describe(&e))?;
    let mode: String = conn
        .query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))
        .map_err(|e| describe(&e))?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(format!(
            "cannot switch to WAL mode (journal mode is {mode})"
        ));
    }
    conn.execute_batch("PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON;")
        .map_err(|e| describe(&e))
}

fn migrate(conn: &mut Connection) -> Result<(), String> {
    let version: usize = conn
        .query_row("PRAGMA user_version", [], |r| r.get::<_, i64>(0))
        .map_err(|e| describe(&e))? as usize;
    if version > MIGRATIONS.len() {
        return Err(format!(
            "schema version {version} is newer than this apikeyd knows ({}); \
             refusing to touch it",
            MIGRATIONS.len()
        ));
    }
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(version) {
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Exclusive)
            .map_err(|e| describe(&e))?;
        tx.execute_batch(sql)
            .and_then(|_| tx.execute_batch(&format!("PRAGMA user_version = {}", i + 1)))
            .and_then(|_| tx.commit())
            .map_err(|e| format!("migration {} failed: {}", i + 1, describe(&e)))?;
    }
    Ok(())
}

fn insert_sql() -> String {
    format!(
        "INSERT INTO keys ({KEY_COLUMNS}) VALUES \
         (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, \
         ?18, ?19, ?20, ?21, ?22)"
    )
}

fn insert_row(tx: &rusqlite::Transaction<'_>, key: &KeyRecord) -> StoreResult<()> {
    tx.prepare_cached(&insert_sql())
        .and_then(|mut s| execute_insert(&mut s, key))
        .map_err(map_err)
}

fn execute_insert(s: &mut rusqlite::CachedStatement<'_>, key: &KeyRecord) -> rusqlite::Result<()> {
    let (last_used, last_service, last_rhost) = match &key.last_used {
        Some(u) => (Some(u.at), Some(u.service.as_str()), Some(u.rhost.as_str())),
        None => (None, None, None),
    };
    let (revoked, revoked_by, reason) = match &key.revoked {
        Some(r) => (Some(r.at), Some(r.by_uid), Some(r.reason.as_str())),
        None => (None, None, None),
    };
    let b = key.binding.as_ref();
    s.execute(params![
        key.id,
        &key.hash[..],
        key.kind.as_str(),
        key.owner_uid,
        key.owner_name,
        key.created_by_uid,
        key.created_by_loginuid,
        key.name,
        key.services.join(","),
        key.created,
        key.expires,
        last_used,
        last_service,
        last_rhost,
        revoked,
        revoked_by,
        reason,
        b.map(|b| b.boot_id.as_str()),
        b.map(|b| b.audit_session),
        b.map(|b| b.loginuid),
        b.and_then(|b| b.handle.as_deref()),
        key.sources.join(","),
    ])
    .map(|_| ())
}

/// A list stored as its items joined by commas (none of them holds one).
fn split_list(text: &str) -> Vec<String> {
    text.split(',')
        .filter(|s| !s.is_empty())
        .map(String::from)
        .collect()
}

fn key_from_row(row: &Row<'_>) -> rusqlite::Result<KeyRecord> {
    key_from_row_at(row, 0)
}

/// A key from KEY_COLUMNS starting at column `base`.
fn key_from_row_at(row: &Row<'_>, base: usize) -> rusqlite::Result<KeyRecord> {
    let hash: Vec<u8> = row.get(base + 1)?;
    let kind: String = row.get(base + 2)?;
    let services: String = row.get(base + 8)?;
    let bad = |what: &str| {
        rusqlite::Error::FromSqlConversionFailure(
            0,
            rusqlite::types::Type::Text,
            format!("stored {what} is invalid").into(),
        )
    };
    let last_used = match row.get::<_, Option<i64>>(base + 11)? {
        Some(at) => Some(KeyUse {
            key_id: row.get(base)?,
            at,
            service: row.get::<_, Option<String>>(base + 12)?.unwrap_or_default(),
            rhost: row.get::<_, Option<String>>(base + 13)?.unwrap_or_default(),
            host: String::new(),
        }),
        None => None,
    };
    let revoked = match row.get::<_, Option<i64>>(base + 14)? {
        Some(at) => Some(Revocation {
            at,
            by_uid: row.get::<_, Option<u32>>(base + 15)?.unwrap_or(0),
            reason: row.get::<_, Option<String>>(base + 16)?.unwrap_or_default(),
        }),
        None => None,
    };
    Ok(KeyRecord {
        id: row.get(base)?,
        hash: hash.try_into().map_err(|_| bad("hash"))?,
        kind: KeyKind::from_str(&kind).ok_or_else(|| bad("kind"))?,
        owner_uid: row.get(base + 3)?,
        owner_name: row.get(base + 4)?,
        created_by_uid: row.get(base + 5)?,
        created_by_loginuid: row.get(base + 6)?,
        name: row.get(base + 7)?,
        services: split_list(&services),
        hosts: vec![],
        sources: split_list(&row.get::<_, String>(base + 21)?),
        made_on: String::new(),
        created: row.get(base + 9)?,
        expires: row.get(base + 10)?,
        last_used,
        revoked,
        binding: match (
            row.get::<_, Option<String>>(base + 17)?,
            row.get::<_, Option<u32>>(base + 18)?,
        ) {
            (Some(boot_id), Some(audit_session)) => Some(super::SessionBinding {
                boot_id,
                audit_session,
                loginuid: row.get::<_, Option<u32>>(base + 19)?.unwrap_or(u32::MAX),
                handle: row.get(base + 20)?,
            }),
            _ => None,
        },
    })
}

fn session_from_row(row: &Row<'_>) -> rusqlite::Result<SessionRecord> {
    Ok(SessionRecord {
        handle: row.get(0)?,
        boot_id: row.get(1)?,
        audit_session: row.get(2)?,
        loginuid: row.get(3)?,
        caller_pid: row.get(4)?,
        uid: row.get(5)?,
        user: row.get(6)?,
        service: row.get(7)?,
        rhost: row.get(8)?,
        tty: row.get(9)?,
        key_id: row.get(10)?,
        opened: row.get(11)?,
        closed: row.get(12)?,
        close_reason: row.get(13)?,
        auth: row.get(14)?,
    })
}

/// How long a write may wait for another process that holds the store's
/// write lock (an administrator's sqlite3, a backup tool), its wait for
/// this daemon's own writer included.
const WRITE_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

fn map_err(e: rusqlite::Error) -> StoreError {
    match &e {
        rusqlite::Error::SqliteFailure(f, _) if f.code == rusqlite::ErrorCode::DiskFull => {
            StoreError::DiskFull
        }
        rusqlite::Error::SqliteFailure(f, _)
            if matches!(
                f.code,
                rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked
            ) =>
        {
            StoreError::Failed(format!(
                "another process holds the key store's write lock (waited {} s); \
                 nothing was changed",
                WRITE_WAIT.as_secs()
            ))
        }
        _ => StoreError::Failed(describe(&e)),
    }
}

fn describe(e: &rusqlite::Error) -> String {
    match e {
        rusqlite::Error::SqliteFailure(f, Some(msg)) => format!("{msg} ({:?})", f.code),
        rusqlite::Error::SqliteFailure(f, None) => format!("{f}"),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use apikey_proto::Expiry;

    use crate::store::contract_tests::key;

    #[test]
    fn the_store_contract_holds() {
        crate::store::contract_tests::all(&|| Box::new(SqliteStore::open_in_memory()), &|k| k);
    }

    #[test]
    fn a_batch_goes_in_whole_or_not_at_all() {
        let s = SqliteStore::open_in_memory();
        let batch: Vec<KeyRecord> = (0..3)
            .map(|i| key(&format!("b0000000000{i}"), 2000 + i, 5))
            .collect();
        s.insert_batch(&batch).unwrap();
        for k in &batch {
            assert_eq!(s.by_hash(&k.hash).unwrap().as_ref(), Some(k));
        }
        // No quota: the batch alone puts an owner over any limit.
        let many: Vec<KeyRecord> = (0..5)
            .map(|i| key(&format!("m0000000000{i}"), 3000, 5))
            .collect();
        s.insert_batch(&many).unwrap();
        assert_eq!(s.list_active(Some(3000)).unwrap().len(), 5);
        // A duplicate id at the end undoes the rows before it.
        let fresh = key("f00000000000", 4000, 5);
        let dup = key("b00000000000", 4000, 5);
        assert!(s.insert_batch(&[fresh.clone(), dup]).is_err());
        assert_eq!(s.by_hash(&fresh.hash).unwrap(), None);
        s.insert_batch(&[]).unwrap();
    }

    #[test]
    fn the_policy_is_read_once_and_follows_saves() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys.db");
        let s = SqliteStore::open(&path).unwrap();
        let stored = Policy {
            allow_user_keys: true,
            ..Policy::default()
        };
        s.save_policy(&stored).unwrap();
        drop(s);
        let s = SqliteStore::open(&path).unwrap();
        // Not read yet: a thread that must not wait is told to ask.
        assert_eq!(s.policy_if_at_hand(), None);
        assert_eq!(s.policy().unwrap(), stored);
        assert_eq!(s.policy_if_at_hand(), Some(stored));
        {
            // While a save holds the policy (through its fsync), neither.
            let _saving = s.cached_policy();
            assert_eq!(s.policy_if_at_hand(), None);
        }
        // The table is not read again: a change made behind the store's
        // back (which the daemon, its only writer, never makes) is unseen.
        s.write().execute("DELETE FROM settings", []).unwrap();
        assert_eq!(s.policy().unwrap(), stored);
        // A save is seen at once, and written through.
        let saved = Policy {
            expiry: Expiry::Days(7),
            ..stored
        };
        s.save_policy(&saved).unwrap();
        assert_eq!(s.policy().unwrap(), saved);
        drop(s);
        assert_eq!(SqliteStore::open(&path).unwrap().policy().unwrap(), saved);
    }

    #[test]
    fn a_failed_save_leaves_no_policy_behind() {
        let s = SqliteStore::open_in_memory();
        assert_eq!(s.policy().unwrap(), Policy::default());
        s.write()
            .execute_batch(
                "CREATE TRIGGER no_settings BEFORE INSERT ON settings \
                 BEGIN SELECT RAISE(ABORT, 'refused'); END",
            )
            .unwrap();
        let p = Policy {
            allow_user_keys: true,
            ..Policy::default()
        };
        assert!(s.save_policy(&p).is_err());
        assert_eq!(s.policy().unwrap(), Policy::default());
    }

    fn session(handle: &str, audit_session: Option<u32>) -> SessionRecord {
        SessionRecord {
            handle: handle.into(),
            boot_id: "0f6c5a8e-3b1d-4c2a-9e7f-1a2b3c4d5e6f".into(),
            audit_session,
            loginuid: audit_session.map(|_| 1000),
            caller_pid: 4242,
            uid: Some(1000),
            user: "alice".into(),
            service: "sshd".into(),
            rhost: "10.0.0.1".into(),
            tty: "ssh".into(),
            key_id: Some("k00000000001".into()),
            opened: 100,
            closed: None,
            close_reason: None,
            auth: Some("key".into()),
        }
    }

    #[test]
    fn sessions_round_trip_and_close_once() {
        let s = SqliteStore::open_in_memory();
        let open = session("h000000000000000000001", Some(7));
        s.open_session(&open).unwrap();
        assert_eq!(s.session(&open.handle).unwrap(), Some(open.clone()));
        assert_eq!(s.session("h000000000000000000002").unwrap(), None);
        assert!(s.close_session(&open.handle, 150, "pam-close").unwrap());
        // The first close wins; a second one changes nothing.
        assert!(!s.close_session(&open.handle, 160, "again").unwrap());
        assert!(!s.close_session("h000000000000000000002", 160, "x").unwrap());
        let closed = s.session(&open.handle).unwrap().unwrap();
        assert_eq!(closed.closed, Some(150));
        assert_eq!(closed.close_reason.as_deref(), Some("pam-close"));
        assert_eq!(
            SessionRecord {
                closed: None,
                close_reason: None,
                ..closed
            },
            open
        );
    }

    #[test]
    fn sessions_keep_unknown_ids_as_null() {
        let s = SqliteStore::open_in_memory();
        let mut r = session("h000000000000000000003", None);
        r.uid = None;
        r.key_id = None;
        r.auth = None;
        s.open_session(&r).unwrap();
        assert_eq!(s.session(&r.handle).unwrap(), Some(r.clone()));
        // A handle is unique: a second record under it is refused whole.
        assert!(s.open_session(&r).is_err());
    }

    #[test]
    fn sessions_are_indexed_by_boot_and_audit_session() {
        let s = SqliteStore::open_in_memory();
        let conn = s.read();
        let plan: String = conn
            .query_row(
                "EXPLAIN QUERY PLAN SELECT handle FROM sessions \
                 WHERE boot_id = 'b' AND audit_session = 3",
                [],
                |r| r.get(3),
            )
            .unwrap();
        assert!(plan.contains("sessions_audit"), "{plan}");
    }

    #[test]
    fn a_version_1_store_gains_sessions_and_keeps_its_keys() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys.db");
        {
            let conn = Connection::open(&path).unwrap();
            conn.execute_batch(MIGRATIONS[0]).unwrap();
            conn.execute_batch("PRAGMA user_version = 1").unwrap();
            // A key as version 1 wrote it.
            conn.execute(
                "INSERT INTO keys (id, hash, kind, owner_uid, owner_name, created_by_uid, \
                 name, services, created) VALUES ('k00000000001', ?1, 'long', 1000, \
                 'user1000', 1000, 'ci', 'sshd*', 0)",
                [&[7u8; 32][..]],
            )
            .unwrap();
        }
        let s = SqliteStore::open(&path).unwrap();
        let keys = s.list_active(None).unwrap();
        assert_eq!(keys.len(), 1);
        assert_eq!(keys[0].binding, None);
        s.open_session(&session("h000000000000000000004", Some(1)))
            .unwrap();
        let version: i64 = s
            .read()
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .unwrap();
        assert_eq!(version as usize, MIGRATIONS.len());
    }

    #[test]
    fn file_store_is_private_and_reopens() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub").join("keys.db");
        let s = SqliteStore::open(&path).unwrap();
        s.insert(&key("k00000000001", 1000, 0), 9, 0).unwrap();
        drop(s);
        let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&path), 0o600);
        assert_eq!(mode(path.parent().unwrap()), 0o700);
        let s = SqliteStore::open(&path).unwrap();
        assert_eq!(s.list_active(None).unwrap().len(), 1);
        assert!(s.free_space().unwrap() > 0);
    }

    #[test]
    fn open_refuses_corrupt_and_unsafe() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys.db");
        fs::write(&path, vec![0x42u8; 8192]).unwrap();
        let err = SqliteStore::open(&path).err().unwrap();
        assert!(err.to_string().contains("keys.db"), "{err}");
        let open_dir = dir.path().join("open");
        fs::create_dir(&open_dir).unwrap();
        fs::set_permissions(&open_dir, fs::Permissions::from_mode(0o777)).unwrap();
        let err = SqliteStore::open(&open_dir.join("keys.db")).err().unwrap();
        assert!(err.reason.contains("writable"), "{err}");
    }
}

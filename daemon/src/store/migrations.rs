//! Numbered schema migrations; `PRAGMA user_version` records how many ran.
//! Append only: a released migration is never edited.

pub const MIGRATIONS: &[&str] = &[
    // 1: keys and settings.
    r#"
    CREATE TABLE keys (
        id TEXT PRIMARY KEY,
        hash BLOB NOT NULL UNIQUE,
        kind TEXT NOT NULL,
        owner_uid INTEGER NOT NULL,
        owner_name TEXT NOT NULL,
        created_by_uid INTEGER NOT NULL,
        created_by_loginuid INTEGER,
        name TEXT NOT NULL,
        services TEXT NOT NULL,
        created INTEGER NOT NULL,
        expires INTEGER,
        last_used INTEGER,
        last_service TEXT,
        last_rhost TEXT,
        revoked INTEGER,
        revoked_by_uid INTEGER,
        revoke_reason TEXT
    ) STRICT;
    CREATE INDEX keys_owner ON keys(owner_uid) WHERE revoked IS NULL;
    CREATE TABLE settings (
        name TEXT PRIMARY KEY,
        value TEXT NOT NULL
    ) STRICT;
    "#,
    // 2: login sessions the PAM module registers. No foreign key on key_id:
    // the record of how a session was opened must not depend on what later
    // happens to the key's row.
    r#"
    CREATE TABLE sessions (
        handle TEXT PRIMARY KEY,
        boot_id TEXT NOT NULL,
        audit_session INTEGER,
        loginuid INTEGER,
        caller_pid INTEGER NOT NULL,
        uid INTEGER,
        user TEXT NOT NULL,
        service TEXT NOT NULL,
        rhost TEXT NOT NULL,
        tty TEXT NOT NULL,
        key_id TEXT,
        opened INTEGER NOT NULL,
        closed INTEGER,
        close_reason TEXT
    ) STRICT;
    CREATE INDEX sessions_audit ON sessions(boot_id, audit_session);
    "#,
    // 3: session keys carry their binding to a login session (S5): the
    // boot, the audit session and login uid of the caller that made them,
    // and the handle of the registered session they end with.
    r#"
    ALTER TABLE keys ADD COLUMN session_boot_id TEXT;
    ALTER TABLE keys ADD COLUMN session_audit INTEGER;
    ALTER TABLE keys ADD COLUMN session_loginuid INTEGER;
    ALTER TABLE keys ADD COLUMN session_handle TEXT;
    CREATE INDEX keys_session_handle ON keys(session_handle)
        WHERE session_handle IS NOT NULL AND revoked IS NULL;
    CREATE INDEX keys_active_sessions ON keys(kind) WHERE kind = 'session' AND revoked IS NULL;
    "#,
    // 4: how each session was authenticated, as the PAM module saw it (S6
    // needs positive evidence of a non-key login). Sessions registered
    // before this have NULL: no evidence either way.
    r#"
    ALTER TABLE sessions ADD COLUMN auth TEXT;
    "#,
    // 5: listings of one owner's keys, revoked and expired ones included,
    // page by page (rowid is part of every index, so the page order comes
    // with it).
    r#"
    CREATE INDEX keys_owner_all ON keys(owner_uid);
    "#,
    // 6: the networks logins with a key may come from (`--from`), as
    // canonical CIDR texts joined by commas; empty: anywhere. A daemon
    // that predates this refuses the store (it would not check them).
    r#"
    ALTER TABLE keys ADD COLUMN sources TEXT NOT NULL DEFAULT '';
    "#,
    // 7: each key's use history: the (service, remote host) pairs it was
    // used from, first and last, the newest ten kept (`apikey show`).
    r#"
    CREATE TABLE key_use_pairs (
        key_id TEXT NOT NULL REFERENCES keys(id) ON DELETE CASCADE,
        service TEXT NOT NULL,
        rhost TEXT NOT NULL,
        first_used INTEGER NOT NULL,
        last_used INTEGER NOT NULL,
        PRIMARY KEY (key_id, service, rhost)
    ) STRICT;
    "#,
];

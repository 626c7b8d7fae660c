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
];

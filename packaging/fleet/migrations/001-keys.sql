-- Schema version 1 of the fleet store. Run by apikeyd as apikey_owner,
-- inside one transaction, under the migration advisory lock.

-- Which host each login role is. Rows are added by the administrator
-- (apikey.add_host); a role with no row here can read nothing.
CREATE TABLE apikey.hosts (
    name text PRIMARY KEY CHECK (name ~ '^[A-Za-z0-9._-]{1,253}$'),
    role name NOT NULL UNIQUE
);

-- The host name of the connected role.
CREATE FUNCTION apikey.my_host() RETURNS text
    LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, apikey
    AS $$ SELECT name FROM apikey.hosts WHERE role = session_user $$;

CREATE FUNCTION apikey.add_host(host text, login_role name) RETURNS void
    LANGUAGE sql
    AS $$ INSERT INTO apikey.hosts (name, role) VALUES (host, login_role)
          ON CONFLICT (name) DO UPDATE SET role = excluded.role $$;

-- One row per key; never the token, only its SHA-256.
CREATE TABLE apikey.keys (
    seq bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    id text NOT NULL UNIQUE CHECK (id ~ '^[A-Za-z0-9]{1,64}$'),
    hash bytea NOT NULL UNIQUE CHECK (octet_length(hash) = 32),
    -- Keys belong to user names: uids may differ between hosts.
    owner text NOT NULL,
    created_by text NOT NULL,
    made_on text NOT NULL,
    name text NOT NULL,
    -- Service patterns; empty: every service the host allows.
    services text[] NOT NULL,
    -- Host names or globs; empty: every host.
    hosts text[] NOT NULL,
    created bigint NOT NULL,
    expires bigint,
    revoked bigint,
    revoked_by text,
    revoked_on text,
    revoke_reason text,
    CHECK ((revoked IS NULL) = (revoked_on IS NULL))
);
CREATE INDEX keys_owner_active ON apikey.keys (owner) WHERE revoked IS NULL;

-- Last use per key and host, written in batches by each host.
CREATE TABLE apikey.key_uses (
    key_id text NOT NULL REFERENCES apikey.keys (id) ON DELETE CASCADE,
    host text NOT NULL,
    at bigint NOT NULL,
    service text NOT NULL,
    rhost text NOT NULL,
    PRIMARY KEY (key_id, host)
);

-- The site policy, fleet-wide.
CREATE TABLE apikey.settings (
    name text PRIMARY KEY,
    value text NOT NULL
);

-- What each kind of host may do, enforced here and not in the daemon:
-- a root compromise of an ordinary host must not mint keys for others.
GRANT SELECT ON apikey.hosts, apikey.keys, apikey.key_uses, apikey.settings TO apikey_host;
GRANT EXECUTE ON FUNCTION apikey.my_host() TO apikey_host;
REVOKE EXECUTE ON FUNCTION apikey.add_host(text, name) FROM PUBLIC;
-- Revoking: the revocation columns only, and only from unrevoked to
-- revoked by this host (the policies below).
GRANT UPDATE (revoked, revoked_by, revoked_on, revoke_reason) ON apikey.keys TO apikey_host;
GRANT INSERT (key_id, host, at, service, rhost), UPDATE (at, service, rhost)
    ON apikey.key_uses TO apikey_host;
GRANT INSERT (id, hash, owner, created_by, made_on, name, services, hosts, created, expires)
    ON apikey.keys TO apikey_issuer;
GRANT INSERT, UPDATE ON apikey.settings TO apikey_issuer;

ALTER TABLE apikey.keys ENABLE ROW LEVEL SECURITY;
CREATE POLICY hosts_read ON apikey.keys FOR SELECT TO apikey_host
    USING (apikey.my_host() IS NOT NULL);
CREATE POLICY hosts_revoke ON apikey.keys FOR UPDATE TO apikey_host
    USING (revoked IS NULL)
    WITH CHECK (revoked IS NOT NULL AND revoked_on = apikey.my_host());
CREATE POLICY issuers_insert ON apikey.keys FOR INSERT TO apikey_issuer
    WITH CHECK (made_on = apikey.my_host() AND revoked IS NULL);

ALTER TABLE apikey.key_uses ENABLE ROW LEVEL SECURITY;
CREATE POLICY hosts_read ON apikey.key_uses FOR SELECT TO apikey_host
    USING (apikey.my_host() IS NOT NULL);
CREATE POLICY hosts_add_own ON apikey.key_uses FOR INSERT TO apikey_host
    WITH CHECK (host = apikey.my_host());
CREATE POLICY hosts_update_own ON apikey.key_uses FOR UPDATE TO apikey_host
    USING (host = apikey.my_host()) WITH CHECK (host = apikey.my_host());

ALTER TABLE apikey.settings ENABLE ROW LEVEL SECURITY;
CREATE POLICY hosts_read ON apikey.settings FOR SELECT TO apikey_host USING (true);
CREATE POLICY issuers_write ON apikey.settings FOR ALL TO apikey_issuer
    USING (true) WITH CHECK (true);

-- apikey fleet mode: the roles and the schema, run once by a superuser:
--   psql -d apikey -f /usr/share/apikey/fleet/roles.sql
-- Then each host gets a login role of its own (docs/fleet.md):
--   CREATE ROLE "apikeyd_web-1" LOGIN IN ROLE apikey_host;        -- verifies
--   CREATE ROLE "apikeyd_adm-1" LOGIN IN ROLE apikey_issuer;      -- also issues
--   SET ROLE apikey_owner;
--   SELECT apikey.add_host('web-1', 'apikeyd_web-1');
-- Safe to run again.

DO $$
BEGIN
    -- Owns the schema and runs its migrations; nobody logs in as it.
    CREATE ROLE apikey_owner NOLOGIN;
EXCEPTION WHEN duplicate_object THEN NULL;
END $$;
DO $$
BEGIN
    -- Every host: verify, record last use, revoke.
    CREATE ROLE apikey_host NOLOGIN;
EXCEPTION WHEN duplicate_object THEN NULL;
END $$;
DO $$
BEGIN
    -- Hosts that may also make keys and change the site policy.
    CREATE ROLE apikey_issuer NOLOGIN IN ROLE apikey_host;
EXCEPTION WHEN duplicate_object THEN NULL;
END $$;

CREATE SCHEMA IF NOT EXISTS apikey AUTHORIZATION apikey_owner;
REVOKE ALL ON SCHEMA apikey FROM PUBLIC;
GRANT USAGE ON SCHEMA apikey TO apikey_host;

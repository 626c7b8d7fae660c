-- Schema version 2: every host hears of revocations and policy changes
-- as they are committed (LISTEN apikey_revoked, apikey_policy), so that
-- keys it accepts while the database is away (offline_grace) never
-- include one revoked before, and a policy change is seen at once; and a
-- key records the login of whoever made it (an administrator under sudo
-- making a key for a service account is root acting for that login).
-- Only adds: daemons of version 1 keep working beside it.

ALTER TABLE apikey.keys ADD COLUMN created_by_login text;
GRANT INSERT (created_by_login) ON apikey.keys TO apikey_issuer;

CREATE FUNCTION apikey.notify_key_ended() RETURNS trigger
    LANGUAGE plpgsql
    AS $$
BEGIN
    PERFORM pg_notify('apikey_revoked', OLD.id);
    RETURN NULL;
END
$$;

CREATE TRIGGER keys_revoked AFTER UPDATE OF revoked ON apikey.keys
    FOR EACH ROW WHEN (OLD.revoked IS NULL AND NEW.revoked IS NOT NULL)
    EXECUTE FUNCTION apikey.notify_key_ended();

CREATE TRIGGER keys_deleted AFTER DELETE ON apikey.keys
    FOR EACH ROW EXECUTE FUNCTION apikey.notify_key_ended();

CREATE FUNCTION apikey.notify_policy() RETURNS trigger
    LANGUAGE plpgsql
    AS $$
BEGIN
    PERFORM pg_notify('apikey_policy', '');
    RETURN NULL;
END
$$;

CREATE TRIGGER settings_changed AFTER INSERT OR UPDATE OR DELETE ON apikey.settings
    FOR EACH STATEMENT EXECUTE FUNCTION apikey.notify_policy();

-- Schema version 3: the networks logins with a key may come from
-- (`apikey generate --from`). A daemon that predates this would not check
-- them, so it must not see such a key at all: a key with sources is
-- visible only to a connection that says it knows schema 3 or later (the
-- startup option apikey.knows, which apikeyd sets). An older daemon
-- refuses those keys as unknown, failing closed, and keeps serving every
-- other key: daemons of versions 1 and 2 keep working beside it.

ALTER TABLE apikey.keys ADD COLUMN sources text[] NOT NULL DEFAULT '{}';
GRANT INSERT (sources) ON apikey.keys TO apikey_issuer;

ALTER POLICY hosts_read ON apikey.keys
    USING (apikey.my_host() IS NOT NULL
           AND (cardinality(sources) = 0
                OR coalesce(nullif(current_setting('apikey.knows', true), ''), '0')::integer
                   >= 3));

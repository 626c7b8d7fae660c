-- Schema version 4: each key's use history (`apikey show`): the (service,
-- remote host) pairs it was used from, first and last, per host. Each host
-- writes and trims its own rows (the newest ten per key), as it does its
-- last uses; a listing merges the hosts' rows. Daemons that predate this
-- write none and keep working beside it.

CREATE TABLE apikey.key_use_pairs (
    key_id text NOT NULL REFERENCES apikey.keys (id) ON DELETE CASCADE,
    host text NOT NULL,
    service text NOT NULL,
    rhost text NOT NULL,
    first_used bigint NOT NULL,
    last_used bigint NOT NULL,
    PRIMARY KEY (key_id, host, service, rhost)
);

GRANT SELECT ON apikey.key_use_pairs TO apikey_host;
GRANT INSERT (key_id, host, service, rhost, first_used, last_used),
      UPDATE (first_used, last_used), DELETE
    ON apikey.key_use_pairs TO apikey_host;

ALTER TABLE apikey.key_use_pairs ENABLE ROW LEVEL SECURITY;
CREATE POLICY hosts_read ON apikey.key_use_pairs FOR SELECT TO apikey_host
    USING (apikey.my_host() IS NOT NULL);
CREATE POLICY hosts_add_own ON apikey.key_use_pairs FOR INSERT TO apikey_host
    WITH CHECK (host = apikey.my_host());
CREATE POLICY hosts_update_own ON apikey.key_use_pairs FOR UPDATE TO apikey_host
    USING (host = apikey.my_host()) WITH CHECK (host = apikey.my_host());
CREATE POLICY hosts_trim_own ON apikey.key_use_pairs FOR DELETE TO apikey_host
    USING (host = apikey.my_host());

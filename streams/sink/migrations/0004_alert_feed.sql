-- The alert feed: every alert gets a store sequence when it is inserted. Inserts take the feed lock
-- (streams/sink/store.py), so sequences become visible in increasing order: a reader that has seen
-- sequence N has seen every alert stored before it, whatever the alerts' event times.
CREATE SEQUENCE alerts_seq AS bigint;
ALTER TABLE alerts ADD COLUMN seq bigint;
UPDATE alerts SET seq = numbered.n
FROM (SELECT alert_id, row_number() OVER (ORDER BY stored_at, alert_id) AS n FROM alerts) AS numbered
WHERE alerts.alert_id = numbered.alert_id;
SELECT setval('alerts_seq', COALESCE((SELECT max(seq) FROM alerts), 0) + 1, false);
ALTER TABLE alerts ALTER COLUMN seq SET DEFAULT nextval('alerts_seq');
ALTER TABLE alerts ALTER COLUMN seq SET NOT NULL;
ALTER SEQUENCE alerts_seq OWNED BY alerts.seq;

-- Everything after a sequence (ops), and an RM's (or a team's) alerts after it.
CREATE UNIQUE INDEX alerts_feed ON alerts (seq);
CREATE INDEX alerts_rm_feed ON alerts (rm_id, seq);

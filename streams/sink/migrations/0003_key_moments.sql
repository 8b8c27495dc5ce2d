-- Priority and titles of every alert; the snoozes people gave, as the audit trail and the outbox to the workers.

-- priority: 0-100, the order of an RM's work. Alerts stored before it existed get the shipped rules
-- file's points (severity + tier + type, capped at 100); alerts from older workers get the points of
-- the sink's rules file as they are stored.
ALTER TABLE alerts ADD COLUMN priority smallint;
UPDATE alerts SET priority = LEAST(100,
    CASE severity WHEN 'critical' THEN 70 WHEN 'warning' THEN 40 ELSE 10 END
    + CASE tier WHEN 'private' THEN 25 WHEN 'diamond' THEN 20 WHEN 'platinum' THEN 15 WHEN 'gold' THEN 5 ELSE 0 END
    + CASE WHEN type IN ('complaint', 'complaint_unanswered', 'aum_drain') THEN 5 ELSE 0 END);
ALTER TABLE alerts ALTER COLUMN priority SET NOT NULL;
ALTER TABLE alerts ADD CONSTRAINT alerts_priority_range CHECK (priority BETWEEN 0 AND 100);

-- titles: {"en": ..., "zh-CN": ...}; NULL for alerts of workers that did not write them (title is in English).
ALTER TABLE alerts ADD COLUMN titles jsonb;

-- The RM's inbox: open alerts by priority, then newest.
CREATE INDEX alerts_rm_open_priority ON alerts (rm_id, priority DESC, occurred_at DESC, alert_id DESC)
    WHERE status = 'open';
-- Everything by priority (a manager's or ops' view).
CREATE INDEX alerts_priority ON alerts (priority DESC, occurred_at DESC, alert_id DESC);

-- The client card: consent and birthday (MM-DD; the year is never kept).
ALTER TABLE client_snapshots ADD COLUMN contact_preference text NOT NULL DEFAULT 'any'
    CHECK (contact_preference IN ('any', 'service_only'));
ALTER TABLE client_snapshots ADD COLUMN birthday text CHECK (birthday ~ '^[0-9]{2}-[0-9]{2}$');

-- Every snooze and unsnooze: who, in which role, why. Append-only, but for the one-time stamp of when
-- the control event reached the controls topic (the row is also the outbox: the sink publishes rows
-- not yet stamped, oldest first, until the broker has them).
CREATE TABLE client_controls (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    event_id     text COLLATE "C" NOT NULL UNIQUE,
    client_id    text COLLATE "C" NOT NULL,
    kind         text NOT NULL CHECK (kind IN ('snooze', 'unsnooze')),
    alert_type   text NOT NULL,
    occurred_at  timestamptz NOT NULL,
    until        timestamptz,
    actor        text NOT NULL,
    actor_role   text NOT NULL,
    reason       text,
    event        text NOT NULL,
    published_at timestamptz,
    CHECK (kind = 'unsnooze' OR (until IS NOT NULL AND reason IS NOT NULL))
);
CREATE INDEX client_controls_client ON client_controls (client_id, id);
CREATE INDEX client_controls_unpublished ON client_controls (id) WHERE published_at IS NULL;

CREATE FUNCTION client_controls_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'UPDATE' AND OLD.published_at IS NULL AND NEW.published_at IS NOT NULL
       AND (to_jsonb(NEW) - 'published_at') = (to_jsonb(OLD) - 'published_at') THEN
        RETURN NEW;
    END IF;
    RAISE EXCEPTION 'client_controls is append-only (% refused)', TG_OP;
END;
$$;
CREATE TRIGGER client_controls_no_change BEFORE UPDATE OR DELETE ON client_controls
    FOR EACH ROW EXECUTE FUNCTION client_controls_append_only();
CREATE TRIGGER client_controls_no_truncate BEFORE TRUNCATE ON client_controls
    FOR EACH STATEMENT EXECUTE FUNCTION client_controls_append_only();

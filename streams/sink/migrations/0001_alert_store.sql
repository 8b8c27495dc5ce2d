-- Alerts as published on rm.alerts.v1, with their lifecycle status.
CREATE TABLE alerts (
    alert_id         text COLLATE "C" PRIMARY KEY,
    type             text NOT NULL,
    severity         text NOT NULL CHECK (severity IN ('info', 'warning', 'critical')),
    client_id        text NOT NULL,
    rm_id            text,
    tier             text,
    occurred_at      timestamptz NOT NULL,
    detected_at      timestamptz NOT NULL,
    title            text NOT NULL,
    facts            jsonb NOT NULL,
    rule_version     text NOT NULL,
    source_event_ids text[] NOT NULL,
    status           text NOT NULL DEFAULT 'open'
                     CHECK (status IN ('open', 'acknowledged', 'resolved', 'dismissed')),
    stored_at        timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now()
);

-- Open alerts of an RM, newest first (the RM's inbox).
CREATE INDEX alerts_rm_open ON alerts (rm_id, occurred_at DESC, alert_id DESC) WHERE status = 'open';
-- Any status of an RM (or of a manager's team), newest first.
CREATE INDEX alerts_rm ON alerts (rm_id, occurred_at DESC, alert_id DESC);
-- Alerts of a client, newest first.
CREATE INDEX alerts_client ON alerts (client_id, occurred_at DESC, alert_id DESC);
-- Everything, newest first (ops).
CREATE INDEX alerts_newest ON alerts (occurred_at DESC, alert_id DESC);

-- Append-only audit: every status change (and the creation) of every alert.
CREATE TABLE alert_events (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    alert_id    text COLLATE "C" NOT NULL REFERENCES alerts (alert_id),
    at          timestamptz NOT NULL DEFAULT now(),
    actor       text NOT NULL,
    actor_role  text NOT NULL,
    from_status text,
    to_status   text NOT NULL,
    note        text
);
CREATE INDEX alert_events_alert ON alert_events (alert_id, id);

CREATE FUNCTION alert_events_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'alert_events is append-only (% refused)', TG_OP;
END;
$$;
CREATE TRIGGER alert_events_no_change BEFORE UPDATE OR DELETE ON alert_events
    FOR EACH ROW EXECUTE FUNCTION alert_events_append_only();
CREATE TRIGGER alert_events_no_truncate BEFORE TRUNCATE ON alert_events
    FOR EACH STATEMENT EXECUTE FUNCTION alert_events_append_only();

-- Latest picture of each client, from the compacted snapshots topic.
CREATE TABLE client_snapshots (
    client_id       text COLLATE "C" PRIMARY KEY,
    tier            text,
    aum             numeric NOT NULL,
    rm_id           text,
    segment         text,
    last_activity   timestamptz,
    last_rm_contact timestamptz,
    dormant         boolean NOT NULL DEFAULT false,
    closed          boolean NOT NULL DEFAULT false,
    as_of           timestamptz,
    updated_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX client_snapshots_rm ON client_snapshots (rm_id);

-- The workbench: what closing an alert recorded, who it is assigned to, its SLA and its escalation.

ALTER TABLE alerts
    -- occurred_at + the type's SLA, computed by the sink from its rules file when it stored the alert.
    ADD COLUMN due_by timestamptz,
    -- The outcome of a resolve, or the reason of a dismiss (handlers/lifecycle.py).
    ADD COLUMN outcome text CHECK (outcome IN ('contacted', 'retained', 'sold', 'no_action_needed',
                                               'false_positive', 'not_relevant', 'duplicate', 'unreachable')),
    -- When it first left `open` (acknowledged, or dismissed straight away): the SLA is met by then or missed.
    ADD COLUMN acknowledged_at timestamptz,
    ADD COLUMN closed_at timestamptz,
    -- Set once, by the sweep that escalated it; escalation_sent_at once its push is on the broker.
    ADD COLUMN escalated_at timestamptz,
    ADD COLUMN escalation_sent_at timestamptz;

-- Alerts stored before: when they left `open` and when they were closed, from their audit trail.
-- due_by stays null here; the sink fills it in at start with the SLAs of its rules file.
UPDATE alerts a SET acknowledged_at = e.at
FROM (SELECT alert_id, min(at) AS at FROM alert_events WHERE from_status = 'open' GROUP BY alert_id) e
WHERE e.alert_id = a.alert_id;
UPDATE alerts a SET closed_at = e.at
FROM (SELECT alert_id, min(at) AS at FROM alert_events WHERE to_status IN ('resolved', 'dismissed') GROUP BY alert_id) e
WHERE e.alert_id = a.alert_id;

-- What each audit record says happened (null on records from before: read from the statuses),
-- the outcome or reason it recorded, and for an assignment the RM before and after.
ALTER TABLE alert_events
    ADD COLUMN action text CHECK (action IN ('created', 'ack', 'resolve', 'dismiss', 'assign', 'escalated')),
    ADD COLUMN outcome text,
    ADD COLUMN assigned_from text,
    ADD COLUMN assigned_to text;

-- An RM's inbox (open and acknowledged), by priority then newest.
CREATE INDEX alerts_inbox ON alerts (rm_id, priority DESC, occurred_at DESC, alert_id DESC)
    WHERE status IN ('open', 'acknowledged');
-- The same work across RMs (a manager's team with the unassigned, ops): read in order, no sort.
CREATE INDEX alerts_inbox_all ON alerts (priority DESC, occurred_at DESC, alert_id DESC)
    WHERE status IN ('open', 'acknowledged');
-- The escalation sweep: open alerts not yet escalated, by due time.
CREATE INDEX alerts_escalation_due ON alerts (due_by) WHERE status = 'open' AND escalated_at IS NULL;
-- Overdue lists (open past due_by), per RM.
CREATE INDEX alerts_open_due ON alerts (rm_id, due_by) WHERE status = 'open';
-- The overdue count by type at each sweep (an index-only scan of the open alerts).
CREATE INDEX alerts_open_type_due ON alerts (type, due_by) WHERE status = 'open';
-- Escalations whose push is not on the broker yet.
CREATE INDEX alerts_escalation_unsent ON alerts (escalated_at)
    WHERE escalated_at IS NOT NULL AND escalation_sent_at IS NULL;
-- The rule report: alerts of a period by type.
CREATE INDEX alerts_type_time ON alerts (type, occurred_at);
-- Filling in due_by after the upgrade.
CREATE INDEX alerts_due_missing ON alerts (alert_id) WHERE due_by IS NULL;

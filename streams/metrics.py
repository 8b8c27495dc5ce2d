"""Prometheus metrics. Labels never carry a client or account id.

Names follow the Prometheus conventions: the `clientpulse_` prefix, base units
(seconds, messages), and `_total` on counters (prometheus-client appends it to
the names below). docs/operations.md explains each series.
"""

from __future__ import annotations

from bisect import bisect_left
from collections import Counter as Tally
from collections.abc import Iterable, Mapping

from prometheus_client import Counter, Gauge, Histogram, disable_created_metrics

# One `*_created` sample per counter and histogram only clutters the scrape: the
# counters' resets are visible to rate() anyway.
disable_created_metrics()

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)
LAG_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600, 86400)

# ---------------------------------------------------------------- worker
EVENTS_CONSUMED = Counter("clientpulse_events_consumed", "Input messages consumed", ["topic"])
EVENTS_REJECTED = Counter(
    "clientpulse_events_rejected", "Input messages sent to the dead-letter topic", ["topic", "reason"]
)
EVENTS_DUPLICATE = Counter("clientpulse_events_duplicate", "Events ignored as repeats of an event id", ["topic"])
PROCESSING_SECONDS = Histogram(
    "clientpulse_event_processing_seconds", "Time to process one batch of input messages", buckets=LATENCY_BUCKETS
)
BATCH_SIZE = Histogram(
    "clientpulse_batch_size_messages", "Messages per processed batch", buckets=(1, 10, 50, 100, 250, 500, 1000, 5000)
)
EVENT_LAG_SECONDS = Histogram(
    "clientpulse_event_lag_seconds", "Processing time minus the event's occurred_at", buckets=LAG_BUCKETS
)
ALERTS_EMITTED = Counter("clientpulse_alerts_emitted", "Alerts published", ["type", "severity"])
ALERTS_SUPPRESSED = Counter(
    "clientpulse_alerts_suppressed", "Alerts not sent, by reason: cooldown, consent, snoozed", ["type", "reason"]
)
CLIENTS = Gauge("clientpulse_clients", "Clients in the state held by this worker, by tier", ["tier"])
CONSUMER_LAG = Gauge(
    "clientpulse_consumer_lag_messages",
    "Messages in an owned input partition after the offset this worker has committed",
    ["topic", "partition"],
)
WORKER_INFO = Gauge(
    "clientpulse_worker_info",
    "This worker's application id, mode (live, or shadow: candidate rules whose alerts reach no RM) and alerts topic",
    ["app_id", "mode", "alerts_topic"],
)
CLOCK_SWEEPS = Counter("clientpulse_clock_sweeps", "Clock ticks processed")
STATE_WRITES = Counter("clientpulse_state_writes", "Client state records written to the changelog")
CLIENTS_ERASED = Counter(
    "clientpulse_clients_erased", "Clients whose state was erased by a tombstone on the clients topic"
)
CHANGELOG_SPLIT_KEYS = Counter(
    "clientpulse_changelog_split_keys",
    "Clients found in more than one changelog partition at recovery (input once produced with another partitioner)",
)

# ------------------------------------------------------------------ notifier
NOTIFIER_REKEYED = Counter("clientpulse_notifier_rekeyed", "Alerts re-keyed by RM onto the notifier's input topic")
NOTIFICATIONS_PUSHED = Counter(
    "clientpulse_notifications_pushed", "Alerts pushed to rm.notifications.v1 at once", ["reason"]
)
NOTIFICATIONS_HELD = Counter("clientpulse_notifications_held", "Alerts held for the RM's next digest", ["reason"])
DIGESTS_SENT = Counter("clientpulse_digests_sent", "Digests published to rm.digests.v1", ["reason"])
DIGESTED_ALERTS = Counter("clientpulse_digested_alerts", "Alerts sent in a digest")
NOTIFICATIONS_DUPLICATE = Counter(
    "clientpulse_notifications_duplicate", "Alerts the notifier had already decided (re-deliveries), ignored"
)
NOTIFICATIONS_STALE = Counter(
    "clientpulse_notifications_stale",
    "Alerts more than notify.remember_days older than their RM's latest alert, not notified (they cannot be told "
    "from a re-delivery)",
)
NOTIFICATIONS_WAITING = Gauge(
    "clientpulse_notifications_waiting", "Alerts held for a digest on the partitions this notifier owns"
)
NOTIFIER_BATCH_SECONDS = Histogram(
    "clientpulse_notifier_batch_seconds", "Time to process one batch of the notifier's input", buckets=LATENCY_BUCKETS
)

# ------------------------------------------------------------------ deliver
DELIVERIES = Counter(
    "clientpulse_deliveries",
    "Pushes and digests per endpoint: delivered, dead_lettered, skipped_duplicate, no_route",
    ["target", "kind", "outcome"],
)
DELIVERY_ATTEMPTS = Counter(
    "clientpulse_delivery_attempts", "HTTP attempts per endpoint and what came of each", ["target", "result"]
)
DELIVERY_SECONDS = Histogram(
    "clientpulse_delivery_seconds", "Time of one delivery attempt (request and answer)", buckets=LATENCY_BUCKETS
)

# ------------------------------------------------------------------ sink
STORE_WRITES = Counter("clientpulse_alert_store_writes", "Alerts written to PostgreSQL (new or already stored)")
STORE_NEW = Counter("clientpulse_alert_store_inserted", "Alerts inserted that were not stored before")
STORE_WRITE_SECONDS = Histogram(
    "clientpulse_alert_store_write_seconds", "Time of one batch write to PostgreSQL", buckets=LATENCY_BUCKETS
)
STORE_UP = Gauge("clientpulse_alert_store_up", "1 when the last database write succeeded")
STORE_FAILURES = Counter("clientpulse_alert_store_failures", "Failed database writes (retried)")
API_STREAMS = Gauge("clientpulse_api_streams", "Open alert streams (GET /api/alerts/stream)")

ALERTS_OVERDUE = Gauge(
    "clientpulse_alerts_overdue",
    "Open alerts past their due_by, by type (the whole store: every sink reports the same; use max, not sum)",
    ["type"],
)
ALERTS_ESCALATED = Counter(
    "clientpulse_alerts_escalated", "Overdue alerts escalated to managers (pushes sent), by type", ["type"]
)
ESCALATION_SWEEP_SECONDS = Histogram(
    "clientpulse_escalation_sweep_seconds", "Time of one escalation sweep over the store", buckets=LATENCY_BUCKETS
)
ESCALATION_FAILURES = Counter("clientpulse_escalation_failures", "Escalation sweeps that failed (retried)")

# ------------------------------------------------------------------ RM API: identity and HTTP
AUTH_FAILURES = Counter(
    "clientpulse_api_auth_failures",
    "Failed authentications (bearer tokens, sign-ins, single sign-on callbacks), by reason",
    ["reason"],
)
AUTH_RATE_LIMITED = Counter(
    "clientpulse_api_rate_limited", "Requests refused with 429 before any credential check", ["limit"]
)
SIGNINS = Counter("clientpulse_api_signins", "Browser sessions started", ["method"])
SIGNOUTS = Counter("clientpulse_api_signouts", "Browser sessions ended by signing out")
CSRF_REFUSED = Counter(
    "clientpulse_api_csrf_refused", "Cookie-authenticated state changes refused for a bad CSRF token"
)
MALFORMED_REQUESTS = Counter(
    "clientpulse_api_malformed_requests",
    "Connections answered 400/408 before routing (bad HTTP, slow headers)",
    ["kind"],
)
CONFIG_RELOADS = Counter(
    "clientpulse_api_config_reloads", "Reloads of the token and org files, by file and result", ["file", "result"]
)

CONTROL_EVENTS_PUBLISHED = Counter(
    "clientpulse_control_events_published",
    "Snoozes and unsnoozes given through the RM API, published to the controls topic",
    ["kind"],
)
CONTROL_EVENTS_UNPUBLISHED = Gauge(
    "clientpulse_control_events_unpublished",
    "Snoozes recorded in the alert store whose control event the broker has not taken yet",
)

# ------------------------------------------------------------------ both
BUILD_INFO = Gauge("clientpulse_build_info", "Build and rules version", ["version", "rule_version"])


def report_consumer_lag(lags: Mapping[tuple[str, int], int]) -> None:
    """Replace every consumer-lag series with `lags` ((topic, partition) -> messages).

    Partitions this process no longer owns disappear instead of keeping their last
    value, so a sum over workers never counts a partition twice after a rebalance.
    Runs synchronously on the event loop, so a scrape never sees the gauge half-written.
    """
    CONSUMER_LAG.clear()
    for (topic, partition), lag in lags.items():
        CONSUMER_LAG.labels(topic=topic, partition=str(partition)).set(max(0, lag))


def observe_all(histogram: Histogram, values: Iterable[float]) -> None:
    """Observe many values at once: one increment per bucket instead of a locked loop per value.

    Equivalent to calling `observe` for each value (a test compares the two);
    a histogram without the expected internals is observed value by value.
    """
    bounds = getattr(histogram, "_upper_bounds", None)
    buckets = getattr(histogram, "_buckets", None)
    total = getattr(histogram, "_sum", None)
    if bounds is None or buckets is None or total is None:
        for value in values:
            histogram.observe(value)
        return
    tally: Tally[int] = Tally()
    amount = 0.0
    observed = False
    for value in values:
        observed = True
        amount += value
        if value == value:  # NaN falls in no bucket, as with observe()
            tally[bisect_left(bounds, value)] += 1
    if not observed:
        return
    total.inc(amount)
    for index, count in tally.items():
        buckets[index].inc(count)

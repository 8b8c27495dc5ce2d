"""Topic names (defaults; a configurable prefix goes in front of each) and what each input topic carries."""

from __future__ import annotations

from typing import Literal

TRANSACTIONS = "bank.transactions.v1"
INTERACTIONS = "bank.interactions.v1"
CLIENTS = "bank.clients.v1"
"""Compacted: reference data, latest wins per client; a null value erases the client."""
CONTROLS = "clientpulse.controls.v1"
"""Snoozes and their ends, written by the RM API: an input of the workers like the three above."""
ALERTS = "rm.alerts.v1"
SHADOW_ALERTS = "rm.alerts.shadow.v1"
"""A shadow worker's alerts (candidate rules on live input): read by nothing but a comparison."""
DEADLETTER = "bank.deadletter.v1"
SNAPSHOTS = "clientpulse.snapshots.v1"
"""Compacted: the latest picture of each client, for the alert store's client table."""
REDRIVEN = "clientpulse.redriven.v1"
"""Compacted: which dead letters `clientpulse redrive` published again (keyed by their dead-letter position)."""
NOTIFICATIONS = "rm.notifications.v1"
"""Pushes for RMs (key rm_id, or `unassigned`) from the notifier, and the sink's escalations to managers
(key: the manager)."""
DIGESTS = "rm.digests.v1"
"""One digest per RM and due time of the alerts held for it (key rm_id)."""
ALERTS_BY_RM_SUFFIX = "alerts-by-rm.v1"
"""The notifier's input is `<app id>.alerts-by-rm.v1`: alerts re-keyed by RM, and its clock ticks (no key)."""
TICKS_SUFFIX = "ticks.v1"
"""The clock-tick topic is `<app id>.ticks.v1`: each application (live, shadow) ticks its own partitions."""

EventKind = Literal["transactions", "interactions", "clients", "controls"]
INPUT_TOPICS: dict[str, EventKind] = {
    TRANSACTIONS: "transactions",
    INTERACTIONS: "interactions",
    CLIENTS: "clients",
    CONTROLS: "controls",
}
"""The input topics, co-partitioned by client_id, and the kind of event each carries."""

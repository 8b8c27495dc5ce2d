"""Service levels: when an alert is due, and whether an open one is due soon or overdue.

`due_by` = occurred_at + the type's SLA from the rules file (docs/rules.md,
"Service levels"). The sink computes it when it stores an alert, with the
rules file it runs with, so a changed SLA applies to alerts stored after the
change and never rewrites the due time of one already stored. An alert is
judged by the SLA only while it is `open`: acknowledging it meets the SLA.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Literal

from handlers.ruleset import Ruleset

SlaState = Literal["ok", "due_soon", "overdue", "met", "missed"]


def due_by(rules: Ruleset, alert_type: str, occurred_at: datetime) -> datetime:
    return occurred_at + timedelta(microseconds=rules.sla.get(alert_type, rules.sla_default))


def sla_hours(rules: Ruleset, alert_type: str) -> float:
    return rules.sla.get(alert_type, rules.sla_default) / 3_600_000_000


def sla_state(
    rules: Ruleset,
    *,
    status: str,
    occurred_at: datetime,
    due: datetime | None,
    now: datetime,
    handled_at: datetime | None = None,
) -> SlaState:
    """`overdue` or `due_soon` for an open alert; `met` or `missed` once it left `open` (at `handled_at`)."""
    if due is None:
        return "ok"
    if status != "open":
        return "met" if handled_at is None or handled_at <= due else "missed"
    if now >= due:
        return "overdue"
    left = due - now
    total = due - occurred_at
    if total.total_seconds() > 0 and left.total_seconds() < total.total_seconds() * float(rules.sla_due_soon):
        return "due_soon"
    return "ok"

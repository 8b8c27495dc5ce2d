"""The rule report: per alert type, how many alerts a day, how fast RMs take them up, how many were useful.

Shares are fractions (0-1) or null when nothing could be counted yet:
- `acknowledged_within_sla`: among the alerts whose SLA is decided (they left
  `open`, or their due_by has passed), those that left `open` by due_by;
- `median_seconds_to_acknowledge`: from occurred_at to leaving `open`;
- `useful_share`: among the closed alerts, those resolved with an outcome
  other than `no_action_needed` (handlers/lifecycle.py).
The same figures feed the API, the workbench page and `clientpulse report`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import date, datetime, timedelta
from typing import Any


def _share(part: int, whole: int) -> float | None:
    return round(part / whole, 4) if whole else None


def report_days(since: datetime, until: datetime) -> list[date]:
    """Every UTC day the period touches, in order."""
    first, last = since.date(), (until - timedelta(microseconds=1)).date()
    return [first + timedelta(days=i) for i in range((last - first).days + 1)] if last >= first else []


def build_report(
    since: datetime,
    until: datetime,
    per_day: Iterable[Mapping[str, Any]],
    per_type: Iterable[Mapping[str, Any]],
) -> dict[str, Any]:
    days = report_days(since, until)
    counts: dict[str, dict[str, int]] = {}
    for row in per_day:
        counts.setdefault(row["type"], {})[row["day"].isoformat()] = int(row["n"])
    types = []
    for row in per_type:
        alert_type = row["type"]
        by_day = counts.get(alert_type, {})
        median = row["median_ack_seconds"]
        types.append(
            {
                "type": alert_type,
                "alerts": int(row["alerts"]),
                "per_day": [{"day": d.isoformat(), "alerts": by_day.get(d.isoformat(), 0)} for d in days],
                "alerts_per_day": round(int(row["alerts"]) / len(days), 2) if days else 0.0,
                "sla_decided": int(row["sla_decided"]),
                "acknowledged_within_sla": _share(int(row["sla_met"]), int(row["sla_decided"])),
                "median_seconds_to_acknowledge": round(float(median), 1) if median is not None else None,
                "closed": int(row["closed"]),
                "useful": int(row["useful"]),
                "useful_share": _share(int(row["useful"]), int(row["closed"])),
            }
        )
    return {
        "since": since.isoformat(),
        "until": until.isoformat(),
        "days": [d.isoformat() for d in days],
        "types": types,
    }

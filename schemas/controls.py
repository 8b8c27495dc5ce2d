"""Control events: what people tell the rules about one client (docs/events.md, "ControlEvent").

The RM API writes them to `clientpulse.controls.v1`, keyed and partitioned by
client like the other inputs, so the workers and a replay apply them to the
client's state in order. A control event that fails these checks is a dead
letter with the reason, exactly like a bad input event.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated, Any

from pydantic import Field, StringConstraints, ValidationInfo, field_validator

from schemas.alerts import ALERT_TYPES, NEVER_SNOOZED
from schemas.events import Event, ShortText, Timestamp, _Event
from schemas.limits import MAX_SNOOZE_DAYS, MAX_TEXT_LENGTH
from schemas.values import ControlKind

MAX_SNOOZE = timedelta(days=MAX_SNOOZE_DAYS)
Reason = Annotated[str, StringConstraints(strip_whitespace=True, max_length=MAX_TEXT_LENGTH)]


def snooze_problem(alert_type: str) -> str | None:
    """Why `alert_type` cannot be snoozed, or None (the API asks the same question)."""
    if alert_type not in ALERT_TYPES:
        return f"{alert_type!r} is not an alert type"
    if alert_type in NEVER_SNOOZED:
        return f"{alert_type} alerts are never snoozed"
    return None


class ControlEvent(_Event):
    """A snooze of one alert type for one client until a time, or its end (docs/rules.md, "Snoozes")."""

    kind: ControlKind
    alert_type: str
    until: Timestamp | None = Field(None, validate_default=True)
    """The snooze covers alerts with occurred_at in [occurred_at, until); ignored for an unsnooze."""
    actor: ShortText
    """Who asked for it (the API's principal), for the audit trail."""
    reason: Reason | None = Field(None, validate_default=True)
    """Required for a snooze, optional for an unsnooze."""

    @field_validator("alert_type")
    @classmethod
    def _snoozable(cls, value: str) -> str:
        problem = snooze_problem(value)
        if problem is not None:
            raise ValueError(problem)
        return value

    @field_validator("until")
    @classmethod
    def _window(cls, value: Any, info: ValidationInfo) -> Any:
        if info.data.get("kind") != "snooze":
            return value
        occurred = info.data.get("occurred_at")
        if value is None:
            raise ValueError("required for a snooze")
        if occurred is not None:
            if value <= occurred:
                raise ValueError("must be after occurred_at")
            if value - occurred > MAX_SNOOZE:
                raise ValueError(f"at most {MAX_SNOOZE_DAYS} days after occurred_at")
        return value

    @field_validator("reason")
    @classmethod
    def _reason(cls, value: str | None, info: ValidationInfo) -> str | None:
        if not value:
            if info.data.get("kind") == "snooze":
                raise ValueError("required for a snooze (why the alerts may wait)")
            return None
        return value


InputEvent = Event | ControlEvent
"""Whatever a worker applies to a client's state."""

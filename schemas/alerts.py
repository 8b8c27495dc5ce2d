"""What clientpulse publishes: alerts for RMs and dead letters for bad input (docs/events.md, "Alert", "DeadLetter")."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import AfterValidator, AwareDatetime, BaseModel, ConfigDict, Field, field_serializer

from schemas.limits import MAX_YEAR, MIN_YEAR
from schemas.values import Locale, Severity, Tier

AlertType = Literal[
    "tier_upgrade",
    "tier_downgrade",
    "large_outflow",
    "outflow_velocity",
    "aum_drain",
    "dormancy",
    "reactivation",
    "complaint",
    "large_inflow",
    "new_client_first_txn",
    "product_maturity",
    "no_rm_contact",
    "birthday",
    "complaint_unanswered",
    "low_satisfaction",
]
ALERT_TYPES: tuple[str, ...] = AlertType.__args__  # type: ignore[attr-defined]

OPPORTUNITY_TYPES: frozenset[str] = frozenset({"large_inflow", "tier_upgrade", "birthday"})
"""Marketing contact: not raised for a client who declined it (docs/rules.md, "Consent"). The list is exhaustive."""

NEVER_SNOOZED: frozenset[str] = frozenset({"complaint", "complaint_unanswered"})
"""Types no snooze applies to (nor to any critical alert): a complaint always reaches the RM."""

SNOOZABLE_TYPES: tuple[str, ...] = tuple(t for t in ALERT_TYPES if t not in NEVER_SNOOZED)


def _plausible_year(value: datetime) -> datetime:
    # The same bounds as the events': an alert time outside them is a producer bug, and years 1 and 9999
    # sit at the edge of what PostgreSQL and Python can convert between offsets.
    if not MIN_YEAR <= value.year <= MAX_YEAR:
        raise ValueError(f"year must be between {MIN_YEAR} and {MAX_YEAR}")
    return value


AlertTime = Annotated[AwareDatetime, AfterValidator(_plausible_year)]


class Alert(BaseModel):
    """One thing an RM should look at; `alert_id` makes re-deliveries the same alert."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    alert_id: str = Field(min_length=1, max_length=64)
    type: AlertType
    severity: Severity
    priority: int | None = Field(None, ge=0, le=100)
    """0-100, the order of an RM's work (docs/rules.md, "Priority"); absent only in alerts of older workers."""
    client_id: str = Field(min_length=1, max_length=64)
    rm_id: str | None
    tier: Tier | None
    occurred_at: AlertTime
    detected_at: AlertTime
    title: str
    """The title in the rules file's `locale`."""
    titles: dict[Locale, str] | None = None
    """The title in every language (docs/rules.md, "Titles"); absent only in alerts of older workers."""
    facts: dict[str, str]
    rule_version: str
    source_event_ids: list[str]

    @field_serializer("occurred_at", "detected_at")
    def _rfc3339(self, value: datetime) -> str:
        return value.isoformat()


class RecordHeader(BaseModel):
    """One Kafka record header: its name, and its value as base64 (header values are bytes, or null)."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    key: str
    value_base64: str | None


class DeadLetter(BaseModel):
    """An input message that could not be applied, kept with the reason.

    Everything needed to publish the record again as it was is kept: the key
    and the value as text when they are clean UTF-8 text, else base64, and the
    record's headers.
    """

    model_config = ConfigDict(extra="ignore", frozen=True)

    topic: str
    partition: int
    offset: int
    key: str | None
    key_encoding: Literal["utf-8", "base64"] = "utf-8"
    raw: str
    raw_encoding: Literal["utf-8", "base64"] = "utf-8"
    raw_truncated: bool = False
    error: str
    reason: str
    received_at: datetime
    headers: list[RecordHeader] = Field(default_factory=list)

"""What clientpulse publishes: alerts for RMs and dead letters for bad input (docs/events.md, "Alert", "DeadLetter")."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, field_serializer

from schemas.values import Severity, Tier

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
]
ALERT_TYPES: tuple[str, ...] = AlertType.__args__  # type: ignore[attr-defined]


class Alert(BaseModel):
    """One thing an RM should look at; `alert_id` makes re-deliveries the same alert."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    alert_id: str = Field(min_length=1, max_length=64)
    type: AlertType
    severity: Severity
    client_id: str = Field(min_length=1, max_length=64)
    rm_id: str | None
    tier: Tier | None
    occurred_at: AwareDatetime
    detected_at: AwareDatetime
    title: str
    facts: dict[str, str]
    rule_version: str
    source_event_ids: list[str]

    @field_serializer("occurred_at", "detected_at")
    def _rfc3339(self, value: datetime) -> str:
        return value.isoformat()


class DeadLetter(BaseModel):
    """An input message that could not be applied, kept with the reason."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    topic: str
    partition: int
    offset: int
    key: str | None
    raw: str
    raw_encoding: Literal["utf-8", "base64"] = "utf-8"
    raw_truncated: bool = False
    error: str
    reason: str
    received_at: datetime

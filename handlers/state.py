"""One compact state object per client, written once per batch (one changelog record)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import orjson


@dataclass(slots=True)
class ClientState:
    """Everything the rules remember about a client. Money in cents, times in epoch µs."""

    client_id: str
    accounts: dict[str, int] = field(default_factory=dict)
    aum: int = 0
    tier: str | None = None
    tier_since: int | None = None
    rm_id: str | None = None
    segment: str | None = None
    onboarded_at: int | None = None
    first_txn_alerted: bool = False
    last_activity: int | None = None
    last_rm_contact: int | None = None
    dormant_base: int | None = None
    """The quiet period (its start) a dormancy alert was sent for; None when active."""
    rm_contact_alerted_due: int | None = None
    maturities: list[list[Any]] = field(default_factory=list)
    """Pending [due, product_id, maturity_date, amount, currency, event_id], sorted by due."""
    maturities_fired: list[list[Any]] = field(default_factory=list)
    """[due, product_id] already alerted, kept until the maturity is well past."""
    debits: list[list[int]] = field(default_factory=list)
    """Customer debits [time, cents, external] within the longest outflow window."""
    aum_marks: list[list[int]] = field(default_factory=list)
    """[time, aum] with falling AUM: the running maximum over the drain window."""
    cooldowns: dict[str, list[int]] = field(default_factory=dict)
    """Alert type -> [time, severity rank] of the last alert sent."""
    seen: dict[str, int] = field(default_factory=dict)
    """Event id -> occurred time, for dropping re-deliveries."""
    watermark: int = 0
    """Latest occurred_at among this client's events."""
    closed: bool = False

    def to_bytes(self) -> bytes:
        return orjson.dumps(self)

    @classmethod
    def from_bytes(cls, raw: bytes) -> ClientState:
        return cls(**orjson.loads(raw))

    def snapshot(self) -> dict[str, Any]:
        """The picture an RM may see: no account numbers."""
        return {
            "client_id": self.client_id,
            "tier": self.tier,
            "aum_cents": self.aum,
            "rm_id": self.rm_id,
            "segment": self.segment,
            "last_activity": self.last_activity,
            "last_rm_contact": self.last_rm_contact,
            "dormant": self.dormant_base is not None,
            "closed": self.closed,
        }

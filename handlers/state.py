"""One compact state object per client, written once per batch (one changelog record).

The stored form is a MessagePack array of the fields in declaration order, not
a map of field names: less than half the bytes, which is most of a worker's
memory with a million clients. New fields therefore go at the end, with a
default: older records then decode with the default, and older code ignores
the extra trailing items. Records in the earlier map form still decode.
"""

from __future__ import annotations

from typing import Any

import msgspec
from msgspec import field

from handlers.money import cents_to_str
from handlers.timeutil import iso


# gc=False: a state holds only plain dicts, lists and scalars, never a reference cycle,
# so the collector need not track the hundred thousand states a worker keeps decoded.
class ClientState(msgspec.Struct, array_like=True, gc=False):
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
    """[until, aum]: past AUM levels with the time each ended, falling AUM (the drain-window maximum)."""
    cooldowns: dict[str, list[int]] = field(default_factory=dict)
    """Alert type -> [time, severity rank] of the last alert sent."""
    seen: dict[str, int] = field(default_factory=dict)
    """Event id -> occurred time, for dropping re-deliveries."""
    watermark: int = 0
    """Latest occurred_at among this client's events."""
    closed: bool = False

    def to_bytes(self) -> bytes:
        return _ENCODER.encode(self)

    @classmethod
    def from_bytes(cls, raw: bytes) -> ClientState:
        if raw[:1] in _MAP_MARKERS:
            return cls(**_LEGACY_DECODER.decode(raw))
        return _DECODER.decode(raw)

    def snapshot(self) -> dict[str, Any]:
        """The picture an RM may see (no account numbers): money as text, times as RFC 3339."""
        return {
            "client_id": self.client_id,
            "tier": self.tier,
            "aum": cents_to_str(self.aum),
            "rm_id": self.rm_id,
            "segment": self.segment,
            "last_activity": iso(self.last_activity) if self.last_activity is not None else None,
            "last_rm_contact": iso(self.last_rm_contact) if self.last_rm_contact is not None else None,
            "dormant": self.dormant_base is not None,
            "closed": self.closed,
            "as_of": iso(self.watermark) if self.watermark else None,
        }


_ENCODER = msgspec.msgpack.Encoder()
_DECODER = msgspec.msgpack.Decoder(ClientState)
_LEGACY_DECODER = msgspec.msgpack.Decoder(dict[str, Any])
_MAP_MARKERS = frozenset(bytes([b]) for b in (*range(0x80, 0x90), 0xDE, 0xDF))

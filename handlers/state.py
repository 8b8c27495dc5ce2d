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


# Array-like structs: stored as bare MessagePack arrays (no field names), so records written
# when these were plain lists decode unchanged. gc=False: they hold only scalars.
class Maturity(msgspec.Struct, array_like=True, gc=False):
    """A pending product maturity; its alert is due at `due`."""

    due: int
    product_id: str
    maturity_date: str
    amount: str | None
    currency: str | None
    event_id: str


class FiredMaturity(msgspec.Struct, array_like=True, gc=False):
    """A maturity already alerted, remembered so a repeated announcement does not alert again."""

    due: int
    product_id: str


class Debit(msgspec.Struct, array_like=True, gc=False, order=True):
    """A customer debit inside the longest outflow window; ordered by time (then amount)."""

    at: int
    cents: int
    external: int
    """1 when the money went to another bank (an integer: that is how earlier records stored it)."""


class AumMark(msgspec.Struct, array_like=True, gc=False):
    """AUM `aum` was held until `until`: one step of the falling staircase of past AUM levels."""

    until: int
    aum: int


class Cooldown(msgspec.Struct, array_like=True, gc=False):
    """The last alert of a type that was sent: when, and how severe (SEVERITY_RANK)."""

    at: int
    rank: int


class FollowUp(msgspec.Struct, array_like=True, gc=False):
    """A complaint waiting for RM contact; complaint_unanswered is due at `due`."""

    due: int
    complained_at: int
    event_id: str
    high: bool
    """The complaint was of high severity (its follow-up is due sooner and is critical)."""


class Snooze(msgspec.Struct, array_like=True, gc=False):
    """Alerts of one type with occurred_at in [at, until) are not sent (docs/rules.md, "Snoozes")."""

    at: int
    until: int


# gc=False: a state holds only dicts, lists, scalars and the structs above, never a reference
# cycle, so the collector need not track the hundred thousand states a worker keeps decoded.
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
    maturities: list[Maturity] = field(default_factory=list)
    """Pending maturities, sorted by due time."""
    maturities_fired: list[FiredMaturity] = field(default_factory=list)
    """Maturities already alerted, kept until they are well past."""
    debits: list[Debit] = field(default_factory=list)
    """Customer debits within the longest outflow window, in time order."""
    aum_marks: list[AumMark] = field(default_factory=list)
    """Past AUM levels with the time each ended, falling AUM (for the drain window's maximum)."""
    cooldowns: dict[str, Cooldown] = field(default_factory=dict)
    """Alert type -> the last alert of that type sent."""
    seen: dict[str, int] = field(default_factory=dict)
    """Event id -> occurred time, for dropping re-deliveries."""
    watermark: int = 0
    """Latest occurred_at among this client's events."""
    closed: bool = False
    # ---- fields added later: written only when one of them is set (see `to_bytes`)
    birthday: str | None = None
    """`MM-DD`: the birth date without its year, which is never kept."""
    birthday_due: int | None = None
    """When the next birthday alert is due (00:00 bank time, the notice before the birthday)."""
    service_only: bool = False
    """The client declined marketing contact: opportunity alerts are not sent."""
    follow_ups: list[FollowUp] = field(default_factory=list)
    """Complaints waiting for RM contact, sorted by due time."""
    snoozes: dict[str, Snooze] = field(default_factory=dict)
    """Alert type -> its snooze (the latest given; an unsnooze ends it)."""

    def to_bytes(self) -> bytes:
        raw = _ENCODER.encode(self)
        if (
            self.birthday is None
            and self.birthday_due is None
            and not self.service_only
            and not self.follow_ups
            and not self.snoozes
        ):
            # Most clients never use the later fields: store them in the first form, without
            # those trailing defaults (bytes per client are a worker's memory with a million).
            return _FIRST_FORM_HEADER + raw[3 : -len(_UNSET_LATER_FIELDS)]
        return raw

    @classmethod
    def from_bytes(cls, raw: bytes) -> ClientState:
        if raw[:1] in _MAP_MARKERS:
            return cls(**msgspec.structs.asdict(_MAP_FORM_DECODER.decode(raw)))
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
            "contact_preference": "service_only" if self.service_only else "any",
            "birthday": self.birthday,
            "as_of": iso(self.watermark) if self.watermark else None,
        }


_ENCODER = msgspec.msgpack.Encoder()
_DECODER = msgspec.msgpack.Decoder(ClientState)

FIRST_FORM_FIELDS = 21
"""Fields of the stored form before birthdays, consent, complaint follow-ups and snoozes were added."""
_FIELDS = len(ClientState.__struct_fields__)
_UNSET_LATER_FIELDS = _ENCODER.encode(ClientState(""))[-(_FIELDS - FIRST_FORM_FIELDS) :]
"""The encoding of the later fields at their defaults: one byte each."""
_FIRST_FORM_HEADER = b"\xdc" + FIRST_FORM_FIELDS.to_bytes(2, "big")
"""A MessagePack array16 header: both forms have 16 or more items."""
assert _ENCODER.encode(ClientState(""))[:3] == b"\xdc" + _FIELDS.to_bytes(2, "big")
assert _UNSET_LATER_FIELDS == b"\xc0\xc0\xc2\x90\x80"


def _map_form(cls: type[msgspec.Struct]) -> type[msgspec.Struct]:
    """The earlier stored form of `cls`: the same fields, as a map of field names."""
    fields: list[Any] = []
    for f in msgspec.structs.fields(cls):
        if f.default is not msgspec.NODEFAULT:
            fields.append((f.name, f.type, f.default))
        elif f.default_factory is not msgspec.NODEFAULT:
            fields.append((f.name, f.type, msgspec.field(default_factory=f.default_factory)))
        else:
            fields.append((f.name, f.type))
    return msgspec.defstruct(f"{cls.__name__}MapForm", fields)


_MAP_FORM_DECODER = msgspec.msgpack.Decoder(_map_form(ClientState))
_MAP_MARKERS = frozenset(bytes([b]) for b in (*range(0x80, 0x90), 0xDE, 0xDF))

"""A fast path for decoding well-formed events; the pydantic models stay the contract.

msgspec decodes a message into a mirror of the pydantic model about five
times faster. The mirror is deliberately at least as strict as the contract:
whatever it is unsure of (an unusual timestamp layout, a very long amount)
falls back to the pydantic model, which then decides and explains. A property
test checks that every message the fast path accepts is accepted by pydantic
with equal values. Accepted events are built without re-validation, so the
rules always receive the contract's own types.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import date, datetime, time
from decimal import Decimal
from typing import Annotated, Any

import msgspec

from handlers.timeutil import to_us
from handlers.trusted import construct as _construct
from schemas.events import ClientEvent, Counterparty, InteractionEvent, Product, TransactionEvent, month_day
from schemas.limits import MAX_AMOUNT_DIGITS, MAX_DECIMAL_PLACES, MAX_TEXT_LENGTH, MAX_YEAR, MIN_YEAR
from schemas.values import (
    ClientEventKind,
    ComplaintSeverity,
    ContactPreference,
    CounterpartyBank,
    Direction,
    InteractionChannel,
    InteractionInitiator,
    InteractionKind,
    Segment,
    TransactionChannel,
    TransactionInitiator,
    TransactionKind,
)

_RFC3339 = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d{1,6})?(?:Z|[+-]\d{2}:\d{2})\Z")
_MAX_WHOLE_DIGITS = MAX_AMOUNT_DIGITS - MAX_DECIMAL_PLACES

EventId = Annotated[str, msgspec.Meta(min_length=1, max_length=128)]
ClientId = Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
Text = Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_TEXT_LENGTH)]
Ccy = Annotated[str, msgspec.Meta(pattern=r"^[A-Z]{3}\Z")]
Amount = str | int | float


class _Unsure(Exception):
    """The fast path will not decide; the contract model will."""


class _Counterparty(msgspec.Struct):
    bank: CounterpartyBank
    name: Text | None = None


class _Tx(msgspec.Struct):
    event_id: EventId
    client_id: ClientId
    occurred_at: str
    account_id: Text
    amount: Amount
    currency: Ccy
    direction: Direction
    kind: TransactionKind
    channel: TransactionChannel
    initiated_by: TransactionInitiator
    balance_after: Amount | None = None
    counterparty: _Counterparty | None = None


class _Interaction(msgspec.Struct):
    event_id: EventId
    client_id: ClientId
    occurred_at: str
    kind: InteractionKind
    channel: InteractionChannel
    initiated_by: InteractionInitiator
    rm_id: Text | None = None
    severity: ComplaintSeverity | None = None
    satisfaction: Annotated[int, msgspec.Meta(ge=1, le=5)] | None = None


class _Product(msgspec.Struct):
    product_id: Text
    maturity_date: str
    amount: Amount | None = None
    currency: Ccy | None = None


class _Client(msgspec.Struct):
    event_id: EventId
    client_id: ClientId
    occurred_at: str
    kind: ClientEventKind
    rm_id: Text | msgspec.UnsetType | None = msgspec.UNSET
    segment: Segment | None = None
    product: _Product | None = None
    birth_date: str | msgspec.UnsetType | None = msgspec.UNSET
    contact_preference: ContactPreference | msgspec.UnsetType | None = msgspec.UNSET


_DECODERS: dict[str, msgspec.json.Decoder[Any]] = {
    "transactions": msgspec.json.Decoder(_Tx),
    "interactions": msgspec.json.Decoder(_Interaction),
    "clients": msgspec.json.Decoder(_Client),
}


def _time(text: str) -> datetime:
    if not _RFC3339.match(text):
        raise _Unsure
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise _Unsure from None
    if not MIN_YEAR <= value.year <= MAX_YEAR:
        raise _Unsure
    return value


def stamp_us(text: str) -> int | None:
    """The occurred_at (µs) an event with this `occurred_at` text has when it is valid, or None if unsure.

    Exact where it answers: the contract model reads such text (RFC 3339,
    years in range) to the same instant. Times written as
    `YYYY-MM-DDTHH:MM:SS+00:00` (as most producers and the dumps write them)
    are read from the digits, with the day taken from a cache of days already
    read the long way.
    """
    if len(text) == 25 and text.endswith("+00:00") and text[10] == "T" and text[13] == ":" and text[16] == ":":
        midnight = _MIDNIGHTS.get(text[:10])
        clock = text[11:13] + text[14:16] + text[17:19]
        if midnight is not None and clock.isascii() and clock.isdigit():
            hour, minute, second = int(clock[:2]), int(clock[2:4]), int(clock[4:])
            if hour < 24 and minute < 60 and second < 60:
                return midnight + ((hour * 60 + minute) * 60 + second) * 1_000_000
    try:
        value = _time(text)
    except _Unsure:
        return None
    if len(text) == 25 and text.endswith("+00:00"):
        if len(_MIDNIGHTS) >= _MAX_MIDNIGHTS:
            _MIDNIGHTS.clear()
        _MIDNIGHTS[text[:10]] = to_us(datetime.combine(value.date(), time(), value.tzinfo))
    return to_us(value)


class _Stamp(msgspec.Struct):
    occurred_at: str | None = None


_STAMP = msgspec.json.Decoder(_Stamp)


def stamp_text(value: bytes) -> str | None:
    """The occurred_at text of a message that is a JSON object, if it has one as a string."""
    if value[:1] != b"{":
        return None
    try:
        return _STAMP.decode(value).occurred_at
    except (msgspec.DecodeError, msgspec.ValidationError, RecursionError):
        return None


def message_time(value: bytes | None) -> int | None:
    """The occurred_at (µs) of a message as its text reads, where `stamp_us` is sure of it; else None."""
    if value is None:
        return None
    text = stamp_text(value)
    return None if text is None else stamp_us(text)


_MIDNIGHTS: dict[str, int] = {}
"""`YYYY-MM-DD` -> µs at midnight UTC, for days `_time` has read."""
_MAX_MIDNIGHTS = 100_000


def _money(value: Amount, positive: bool) -> Decimal:
    if isinstance(value, bool):
        raise _Unsure
    if isinstance(value, float):
        value = repr(value)  # pydantic reads a JSON float through its shortest text form
    if isinstance(value, str) and (not value or len(value) > 40 or value != value.strip()):
        raise _Unsure
    try:
        amount = Decimal(value)
    except ArithmeticError:
        raise _Unsure from None
    if not amount.is_finite() or (positive and amount <= 0):
        raise _Unsure
    sign_digits_exp = amount.as_tuple()
    exponent = sign_digits_exp.exponent
    assert isinstance(exponent, int)
    whole = len(sign_digits_exp.digits) + exponent
    if exponent < -MAX_DECIMAL_PLACES or whole > _MAX_WHOLE_DIGITS:
        raise _Unsure
    return amount


def _transaction(m: _Tx) -> TransactionEvent:
    cp = m.counterparty
    values = {
        "event_id": m.event_id,
        "client_id": m.client_id,
        "occurred_at": _time(m.occurred_at),
        "account_id": m.account_id,
        "amount": _money(m.amount, True),
        "currency": m.currency,
        "direction": m.direction,
        "kind": m.kind,
        "channel": m.channel,
        "initiated_by": m.initiated_by,
        "balance_after": None if m.balance_after is None else _money(m.balance_after, False),
        "counterparty": None if cp is None else _construct(Counterparty, {"bank": cp.bank, "name": cp.name}),
    }
    return _construct(TransactionEvent, values)


def _interaction(m: _Interaction) -> InteractionEvent:
    values = {
        "event_id": m.event_id,
        "client_id": m.client_id,
        "occurred_at": _time(m.occurred_at),
        "kind": m.kind,
        "channel": m.channel,
        "initiated_by": m.initiated_by,
        "rm_id": m.rm_id,
        "severity": m.severity,
        "satisfaction": m.satisfaction,
    }
    return _construct(InteractionEvent, values)


def _client(m: _Client) -> ClientEvent:
    product = None
    if m.product is not None:
        p = m.product
        if len(p.maturity_date) != 10:
            raise _Unsure
        try:
            maturity = date.fromisoformat(p.maturity_date)
        except ValueError:
            raise _Unsure from None
        product = _construct(
            Product,
            {
                "product_id": p.product_id,
                "maturity_date": maturity,
                "amount": None if p.amount is None else _money(p.amount, True),
                "currency": p.currency,
            },
        )
    elif m.kind == "product_maturing":
        raise _Unsure
    fields: dict[str, Any] = {
        "event_id": m.event_id,
        "client_id": m.client_id,
        "occurred_at": _time(m.occurred_at),
        "kind": m.kind,
        "segment": m.segment,
        "product": product,
    }
    given = {"event_id", "client_id", "occurred_at", "kind"}
    if m.rm_id is not msgspec.UNSET:
        fields["rm_id"] = m.rm_id
        given.add("rm_id")
    else:
        fields["rm_id"] = None
    if m.segment is not None:
        given.add("segment")
    if product is not None:
        given.add("product")
    fields["birth_date"] = None
    if m.birth_date is not msgspec.UNSET:
        given.add("birth_date")
        if m.birth_date is not None:
            try:
                fields["birth_date"] = month_day(m.birth_date)
            except ValueError:
                raise _Unsure from None
    fields["contact_preference"] = None
    if m.contact_preference is not msgspec.UNSET:
        given.add("contact_preference")
        fields["contact_preference"] = m.contact_preference
    return _construct(ClientEvent, fields, given)


_BUILD = {"transactions": _transaction, "interactions": _interaction, "clients": _client}


def _check_transaction(m: _Tx) -> str | None:
    _money(m.amount, True)
    if m.balance_after is not None:
        _money(m.balance_after, False)
    return m.currency


def _check_interaction(m: _Interaction) -> str | None:
    return None


def _check_client(m: _Client) -> str | None:
    if m.product is not None:
        p = m.product
        if len(p.maturity_date) != 10:
            raise _Unsure
        try:
            date.fromisoformat(p.maturity_date)
        except ValueError:
            raise _Unsure from None
        if p.amount is not None:
            _money(p.amount, True)
    elif m.kind == "product_maturing":
        raise _Unsure
    if isinstance(m.birth_date, str):
        try:
            month_day(m.birth_date)
        except ValueError:
            raise _Unsure from None
    return None


_CHECK: dict[str, Callable[[Any], str | None]] = {
    "transactions": _check_transaction,
    "interactions": _check_interaction,
    "clients": _check_client,
}


def fast_check(kind: str, raw: bytes) -> tuple[str, int, str | None] | None:
    """(client_id, occurred_at in µs, transaction currency) if `fast_decode` would return an event, else None.

    The same checks without building the event (about half the cost): a
    sharded replay asks this of other shards' records that may move its clock.
    A test holds it to `fast_decode`'s answer.
    """
    if kind not in _DECODERS:
        return None
    if raw.startswith(b"\xef\xbb\xbf"):
        raw = raw[3:]
    try:
        mirror = _DECODERS[kind].decode(raw)
        currency = _CHECK[kind](mirror)
        return mirror.client_id, to_us(_time(mirror.occurred_at)), currency
    except (msgspec.DecodeError, msgspec.ValidationError, _Unsure, RecursionError):
        return None


def fast_decode(kind: str, raw: bytes) -> TransactionEvent | InteractionEvent | ClientEvent | None:
    """The event if the fast path is sure it is valid; None means: ask the contract model (always for controls)."""
    if kind not in _DECODERS:
        return None
    if raw.startswith(b"\xef\xbb\xbf"):
        raw = raw[3:]  # a UTF-8 byte-order mark before the JSON is ignored, as the contract model's caller does
    try:
        mirror = _DECODERS[kind].decode(raw)
        return _BUILD[kind](mirror)  # type: ignore[operator, no-any-return]
    except (msgspec.DecodeError, msgspec.ValidationError, _Unsure, RecursionError):
        # RecursionError: msgspec skips unknown fields recursively, so deeply nested
        # JSON (a few KiB of brackets) exhausts the stack; the contract model decides.
        return None

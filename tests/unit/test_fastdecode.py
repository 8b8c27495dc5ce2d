"""The fast decoder never accepts what the contract models reject, and agrees on every value."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel, ValidationError

from handlers.fastdecode import fast_check, fast_decode, stamp_us
from handlers.timeutil import to_us
from handlers.trusted import construct
from schemas.events import ClientEvent, Counterparty, InteractionEvent, TransactionEvent

MODELS = {"transactions": TransactionEvent, "interactions": InteractionEvent, "clients": ClientEvent}

texts = st.one_of(
    st.text(max_size=6),
    st.sampled_from(["", "c-1", "x" * 64, "x" * 65, "x" * 128, "x" * 129, "x" * 257, "USD", "usd", "USD\n", " USD"]),
)
times = st.one_of(
    st.sampled_from(
        [
            "2026-03-01T10:00:00+08:00",
            "2026-03-01T10:00:00Z",
            "2026-03-01T10:00:00.123456-05:00",
            "2026-03-01T10:00:00.1234567+00:00",
            "2026-03-01T10:00:00",
            "2026-03-01 10:00:00+00:00",
            "2026-03-01",
            "9999-01-01T00:00:00Z",
            "1969-12-31T23:59:59Z",
            "2026-02-30T10:00:00Z",
            "2026-03-01T24:00:00Z",
            "2026-03-01T10:00:00+24:00",
            "20260301T100000+0800",
        ]
    ),
    st.integers(),
    st.none(),
)
amounts = st.one_of(
    st.sampled_from(
        ["1", "0", "-1", "0.01", "0.001", "1e3", "1E-9", "NaN", "inf", "1" * 17, "1" * 16, " 5", "5 ", "", "+5"]
    ),
    st.decimals(allow_nan=True, allow_infinity=True).map(str),
    st.floats(allow_nan=False, allow_infinity=False),
    st.integers(min_value=-(10**20), max_value=10**20),
    st.booleans(),
    st.none(),
)


def maybe(strategy: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.one_of(st.just(...), strategy)  # ... means: leave the field out


def _obj(**fields: st.SearchStrategy[Any]) -> st.SearchStrategy[dict[str, Any]]:
    return st.fixed_dictionaries({k: maybe(v) for k, v in fields.items()}).map(
        lambda d: {k: v for k, v in d.items() if v is not ...}
    )


common = {"event_id": texts, "client_id": texts, "occurred_at": times}
transactions = _obj(
    **common,
    account_id=texts,
    amount=amounts,
    currency=texts,
    direction=st.sampled_from(["credit", "debit", "Debit", 1]),
    kind=st.sampled_from(["card", "salary", "refund"]),
    channel=st.sampled_from(["pos", "batch", "web"]),
    initiated_by=st.sampled_from(["customer", "bank", "rm"]),
    balance_after=amounts,
    counterparty=st.one_of(st.none(), _obj(bank=st.sampled_from(["internal", "external", "x"]), name=texts), texts),
)
interactions = _obj(
    **common,
    kind=st.sampled_from(["call", "complaint", "email"]),
    channel=st.sampled_from(["phone", "onsite", "atm"]),
    initiated_by=st.sampled_from(["customer", "rm", "bank"]),
    rm_id=st.one_of(st.none(), texts),
    severity=st.sampled_from(["low", "high", "critical", None]),
    satisfaction=st.one_of(st.integers(-1, 7), st.floats(0, 6), st.sampled_from(["3", True, None])),
)
clients = _obj(
    **common,
    kind=st.sampled_from(["onboarded", "rm_assigned", "product_maturing", "closed", "merged"]),
    rm_id=st.one_of(st.none(), texts),
    segment=st.sampled_from(["retail", "corporate", "vip", None]),
    product=st.one_of(
        st.none(),
        _obj(
            product_id=texts,
            maturity_date=st.sampled_from(["2026-04-01", "2026-4-1", "2026-02-30", "20260401", 20260401, None]),
            amount=amounts,
            currency=texts,
        ),
    ),
    birth_date=st.sampled_from(
        [
            *("1980-03-20", "1992-02-29", "1991-02-29", "--02-29", "--13-01", "1899-01-01", "2999-12-31"),
            *("80-03-20", "1980-3-20", "", "1980-03-20T00:00:00", 19800320, None),
        ]
    ),
    contact_preference=st.sampled_from(["any", "service_only", "none", "ANY", None, 1]),
)


def _check(kind: str, value: dict[str, Any]) -> bool:
    raw = json.dumps(value).encode()
    fast = fast_decode(kind, raw)
    checked = fast_check(kind, raw)
    if fast is None:
        assert checked is None, "fast_check accepts what fast_decode defers"
        return False
    currency = fast.currency if isinstance(fast, TransactionEvent) else None
    assert checked == (fast.client_id, to_us(fast.occurred_at), currency)
    contract = MODELS[kind].model_validate_json(raw)  # raises if the fast path accepted too much
    assert fast == contract
    assert fast.model_dump() == contract.model_dump()
    if kind == "clients":
        for name in ("rm_id", "birth_date", "contact_preference"):  # given (null included) or left out matters
            assert (name in fast.model_fields_set) == (name in contract.model_fields_set), name
    return True


SETTINGS = settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@SETTINGS
@given(transactions)
def test_transactions_agree(value: dict[str, Any]) -> None:
    _check("transactions", value)


@SETTINGS
@given(interactions)
def test_interactions_agree(value: dict[str, Any]) -> None:
    _check("interactions", value)


@SETTINGS
@given(clients)
def test_clients_agree(value: dict[str, Any]) -> None:
    _check("clients", value)


def test_ordinary_events_take_the_fast_path() -> None:
    tx = {
        "event_id": "e-1",
        "client_id": "c-1",
        "occurred_at": "2026-03-01T10:00:00+08:00",
        "account_id": "a-1",
        "amount": "120.50",
        "currency": "USD",
        "direction": "debit",
        "kind": "card",
        "channel": "pos",
        "initiated_by": "customer",
        "counterparty": {"bank": "external"},
        "unknown": {"nested": [1, 2]},
    }
    assert _check("transactions", tx)
    assert _check("transactions", {**tx, "amount": 99.99, "balance_after": "-10"})
    ix = {
        "event_id": "i",
        "client_id": "c",
        "occurred_at": "2026-03-01T10:00:00Z",
        "kind": "call",
        "channel": "phone",
        "initiated_by": "rm",
        "rm_id": "rm-1",
        "satisfaction": 4,
    }
    assert _check("interactions", ix)
    ce = {
        "event_id": "k",
        "client_id": "c",
        "occurred_at": "2026-03-01T10:00:00Z",
        "kind": "product_maturing",
        "product": {"product_id": "td", "maturity_date": "2026-04-01", "amount": "5000", "currency": "CNY"},
    }
    assert _check("clients", ce)
    assert _check("clients", {**ce, "kind": "rm_assigned", "rm_id": None, "product": None})
    profile = {**ce, "kind": "profile_updated", "product": None, "birth_date": "1980-03-20"}
    assert _check("clients", {**profile, "contact_preference": "service_only"})
    assert _check("clients", {**profile, "birth_date": None, "contact_preference": None})


def test_control_events_always_take_the_contract_model() -> None:
    assert fast_decode("controls", b'{"event_id": "s"}') is None


def test_trusted_construction_builds_what_validation_builds() -> None:
    # construct() calls object.__new__ directly, which is right only while BaseModel has no __new__ of its own.
    assert BaseModel.__new__ is object.__new__
    values = {"bank": "external", "name": "Other Bank"}
    built = construct(Counterparty, dict(values))
    assert type(built) is Counterparty
    assert built == Counterparty.model_validate(values)
    assert built.model_fields_set == {"bank", "name"} and built.model_dump() == values


_VALID_TX = {
    "event_id": "e-1",
    "client_id": "c-1",
    "account_id": "acct-1",
    "amount": "5",
    "currency": "CNY",
    "direction": "debit",
    "kind": "transfer",
    "channel": "online",
    "initiated_by": "customer",
}
_STAMPS = [
    "2026-03-01T09:30:00+00:00",
    "2026-03-01T23:59:59+00:00",
    "2024-02-29T12:00:00+00:00",
    "2026-03-01T09:30:00.250+00:00",
    "2026-03-01T09:30:00Z",
    "2026-03-01T17:30:00+08:00",
    "2026-02-29T00:00:00+00:00",
    "2026-13-01T00:00:00+00:00",
    "2026-03-01T24:00:00+00:00",
    "2026-03-01T09:60:00+00:00",
    "2026-03-01T09:30:60+00:00",
    "2026-03-01T0\u0663:30:00+00:00",
    "2026-03-01T+9:30:00+00:00",
    "2026-03-01T 9:30:00+00:00",
    "2026-03-01 09:30:00+00:00",
    "0001-03-01T09:30:00+00:00",
]


@pytest.mark.parametrize("text", _STAMPS)
def test_a_time_read_from_its_text_is_the_contract_models_reading(text: str) -> None:
    """stamp_us answers only where the contract model reads the same instant, the second time from its day cache."""
    base = {**_VALID_TX, "occurred_at": text}
    try:
        expected: int | None = to_us(TransactionEvent.model_validate_json(json.dumps(base)).occurred_at)
    except ValidationError:
        expected = None
    for _ in range(2):
        got = stamp_us(text)
        assert got is None or got == expected, "an answer is the contract model's"
    assert (stamp_us(text) is None) == (expected is None or " " in text), "only an unusual spelling is left unsure"


@given(st.datetimes(min_value=datetime(1990, 1, 1), max_value=datetime(2090, 1, 1), timezones=st.just(UTC)))
def test_every_time_written_as_the_dumps_write_it_is_read_from_its_digits(moment: datetime) -> None:
    text = moment.replace(microsecond=0).isoformat()
    assert stamp_us(text) == stamp_us(text) == to_us(moment.replace(microsecond=0))

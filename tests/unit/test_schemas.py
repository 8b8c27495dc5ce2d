"""Every field rule of the event contract, good and bad values, through the real decoder."""

from __future__ import annotations

import base64
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import orjson
import pytest

from handlers.decode import Rejection, dead_letter, decode
from handlers.ruleset import Ruleset
from schemas.alerts import Alert
from schemas.events import ClientEvent, InteractionEvent, TransactionEvent
from schemas.limits import MAX_MESSAGE_BYTES


def tx(**overrides: Any) -> dict[str, Any]:
    value: dict[str, Any] = {
        "event_id": "e-1",
        "client_id": "c-1",
        "occurred_at": "2026-03-01T10:00:00+08:00",
        "account_id": "acct-1",
        "amount": "100.50",
        "currency": "CNY",
        "direction": "debit",
        "kind": "card",
        "channel": "pos",
        "initiated_by": "customer",
    }
    value.update(overrides)
    return {k: v for k, v in value.items() if v is not _MISSING}


def interaction(**overrides: Any) -> dict[str, Any]:
    value: dict[str, Any] = {
        "event_id": "i-1",
        "client_id": "c-1",
        "occurred_at": "2026-03-01T10:00:00Z",
        "kind": "call",
        "channel": "phone",
        "initiated_by": "rm",
    }
    value.update(overrides)
    return {k: v for k, v in value.items() if v is not _MISSING}


def client(**overrides: Any) -> dict[str, Any]:
    value: dict[str, Any] = {
        "event_id": "k-1",
        "client_id": "c-1",
        "occurred_at": "2026-03-01T10:00:00-05:00",
        "kind": "onboarded",
    }
    value.update(overrides)
    return {k: v for k, v in value.items() if v is not _MISSING}


_MISSING = object()


def decode_value(kind: str, value: Any, rules: Ruleset, key: bytes | None = b"c-1") -> Any:
    return decode(kind, key, orjson.dumps(value), rules)  # type: ignore[arg-type]


# ----------------------------------------------------------------- common fields
@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("event_id", ""),
        ("event_id", "x" * 129),
        ("event_id", 17),
        ("event_id", _MISSING),
        ("client_id", ""),
        ("client_id", "c" * 65),
        ("client_id", _MISSING),
        ("occurred_at", "2026-03-01T10:00:00"),  # no offset
        ("occurred_at", "2026-03-01"),
        ("occurred_at", 1772359200),  # unix seconds are not RFC 3339
        ("occurred_at", "yesterday"),
        ("occurred_at", "9999-12-31T23:59:59+00:00"),
        ("occurred_at", _MISSING),
    ],
)
def test_common_fields_rejected(field: str, value: Any, rules: Ruleset) -> None:
    result = decode_value("transactions", tx(**{field: value}), rules, key=b"c-1" if field != "client_id" else None)
    assert isinstance(result, Rejection)
    if value is not _MISSING and field != "client_id":
        assert result.reason == "schema"
        assert field in result.error


def test_common_fields_boundaries_accepted(rules: Ruleset) -> None:
    long_id = "e" * 128
    cid = "c" * 64
    result = decode_value("transactions", tx(event_id=long_id, client_id=cid), rules, key=cid.encode())
    assert isinstance(result, TransactionEvent)
    assert result.event_id == long_id
    assert result.occurred_at.utcoffset() is not None
    assert result.occurred_at.astimezone(UTC) == datetime(2026, 3, 1, 2, 0, tzinfo=UTC)


def test_zulu_and_negative_offsets_accepted(rules: Ruleset) -> None:
    assert isinstance(decode_value("interactions", interaction(), rules), InteractionEvent)
    parsed = decode_value("clients", client(), rules)
    assert isinstance(parsed, ClientEvent)
    assert parsed.occurred_at.astimezone(UTC).hour == 15


# ------------------------------------------------------------------ transactions
@pytest.mark.parametrize(
    ("amount", "expected"),
    [("100.50", Decimal("100.50")), (100.5, Decimal("100.5")), (7, Decimal(7)), ("0.01", Decimal("0.01"))],
)
def test_amount_as_string_or_number_is_decimal(amount: Any, expected: Decimal, rules: Ruleset) -> None:
    result = decode_value("transactions", tx(amount=amount), rules)
    assert isinstance(result, TransactionEvent)
    assert isinstance(result.amount, Decimal)
    assert result.amount == expected


@pytest.mark.parametrize(
    "amount", ["0", 0, "-5", -1, "NaN", "Infinity", "abc", True, None, "1e400", "1" * 30, "0.000000001", [1]]
)
def test_amount_must_be_positive_finite_decimal(amount: Any, rules: Ruleset) -> None:
    result = decode_value("transactions", tx(amount=amount), rules)
    assert isinstance(result, Rejection)
    assert "amount" in result.error


@pytest.mark.parametrize(
    ("field", "good", "bad"),
    [
        ("direction", ["credit", "debit"], ["Credit", "in", ""]),
        (
            "kind",
            ["deposit", "withdrawal", "transfer", "payment", "salary", "interest", "fee", "card", "other"],
            ["refund", ""],
        ),
        ("channel", ["branch", "atm", "mobile", "online", "phone", "pos", "batch"], ["fax", "web"]),
        ("initiated_by", ["customer", "bank"], ["rm", "system"]),
        ("currency", ["CNY", "USD", "EUR", "HKD"], ["usd", "US", "USDT", 840]),
    ],
)
def test_transaction_enums(field: str, good: list[Any], bad: list[Any], rules: Ruleset) -> None:
    for value in good:
        assert isinstance(decode_value("transactions", tx(**{field: value}), rules), TransactionEvent), value
    for value in bad:
        result = decode_value("transactions", tx(**{field: value}), rules)
        assert isinstance(result, Rejection), value
        assert field in result.error


def test_currency_without_a_rate_is_rejected(rules: Ruleset) -> None:
    result = decode_value("transactions", tx(currency="XAU"), rules)
    assert isinstance(result, Rejection)
    assert result.reason == "unknown_currency"
    assert "XAU" in result.error


def test_optional_transaction_fields(rules: Ruleset) -> None:
    result = decode_value(
        "transactions",
        tx(balance_after="-250.00", counterparty={"bank": "external", "name": "Other Bank"}),
        rules,
    )
    assert isinstance(result, TransactionEvent)
    assert result.balance_after == Decimal("-250.00")  # an overdraft is a valid balance
    assert result.counterparty is not None and result.counterparty.bank == "external"
    for bad in ({"bank": "foreign"}, {"name": "x"}, "external"):
        rejected = decode_value("transactions", tx(counterparty=bad), rules)
        assert isinstance(rejected, Rejection)
        assert "counterparty" in rejected.error
    assert isinstance(decode_value("transactions", tx(balance_after="NaN"), rules), Rejection)


def test_unknown_fields_are_ignored(rules: Ruleset) -> None:
    result = decode_value("transactions", tx(merchant={"mcc": 5411}, channel_detail="x"), rules)
    assert isinstance(result, TransactionEvent)
    assert not hasattr(result, "merchant")


# ------------------------------------------------------------------ interactions
@pytest.mark.parametrize(
    ("field", "good", "bad"),
    [
        (
            "kind",
            ["visit", "call", "message", "meeting", "complaint", "feedback", "inquiry", "product_purchase"],
            ["email", ""],
        ),
        ("channel", ["branch", "phone", "mobile", "online", "onsite"], ["atm", "pos"]),
        ("initiated_by", ["customer", "rm"], ["bank"]),
        ("severity", ["low", "medium", "high"], ["critical", 3]),
        ("satisfaction", [1, 3, 5], [0, 6, "4", 2.5]),
    ],
)
def test_interaction_fields(field: str, good: list[Any], bad: list[Any], rules: Ruleset) -> None:
    for value in good:
        assert isinstance(decode_value("interactions", interaction(**{field: value}), rules), InteractionEvent), value
    for value in bad:
        result = decode_value("interactions", interaction(**{field: value}), rules)
        assert isinstance(result, Rejection), value
        assert field in result.error


# ----------------------------------------------------------------------- clients
def test_client_event_fields(rules: Ruleset) -> None:
    for kind in ("onboarded", "profile_updated", "rm_assigned", "closed"):
        assert isinstance(decode_value("clients", client(kind=kind), rules), ClientEvent)
    maturing = decode_value(
        "clients",
        client(
            kind="product_maturing",
            product={"product_id": "td-1", "maturity_date": "2026-04-01", "amount": "50000", "currency": "CNY"},
            segment="corporate",
            rm_id="rm-1",
        ),
        rules,
    )
    assert isinstance(maturing, ClientEvent)
    assert maturing.product is not None and str(maturing.product.maturity_date) == "2026-04-01"
    for bad in (
        client(kind="merged"),
        client(segment="private"),
        client(kind="product_maturing"),  # a maturing product must name the product
        client(kind="product_maturing", product={"product_id": "td-1", "maturity_date": "01/04/2026"}),
        client(kind="product_maturing", product={"product_id": "td-1", "maturity_date": 20260401}),
        client(kind="product_maturing", product={"maturity_date": "2026-04-01"}),
    ):
        assert isinstance(decode_value("clients", bad, rules), Rejection), bad


# ------------------------------------------------------------- message handling
@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"", "empty"),
        (b"{not json", "invalid_json"),
        (b"\xff\xfe\x00garbage", "invalid_json"),
        (b"[1, 2, 3]", "schema"),
        (b'"a string"', "schema"),
        (b"[" * 5000 + b"]" * 5000, "invalid_json"),
        (b'{"event_id": "' + b"x" * MAX_MESSAGE_BYTES + b'"}', "too_large"),
    ],
)
def test_malformed_messages_have_a_reason(raw: bytes, reason: str, rules: Ruleset) -> None:
    result = decode("transactions", b"c-1", raw, rules)
    assert isinstance(result, Rejection)
    assert result.reason == reason
    assert result.error


def test_key_must_match_client_id(rules: Ruleset) -> None:
    wrong = decode_value("transactions", tx(), rules, key=b"c-2")
    assert isinstance(wrong, Rejection) and wrong.reason == "key_mismatch"
    missing = decode_value("transactions", tx(), rules, key=None)
    assert isinstance(missing, Rejection) and missing.reason == "key_mismatch"


def test_dead_letter_keeps_the_original_bytes() -> None:
    at = datetime(2026, 3, 1, tzinfo=UTC)
    text = dead_letter("t", 3, 42, b"c-1", b'{"bad": 1}', Rejection("schema", "event_id: missing"), at)
    assert (text.topic, text.partition, text.offset, text.key) == ("t", 3, 42, "c-1")
    assert text.raw == '{"bad": 1}' and text.raw_encoding == "utf-8"
    assert text.error == "event_id: missing" and text.received_at == at
    binary = dead_letter("t", 0, 1, None, b"\xff\x00\x01", Rejection("invalid_json", "x"), at)
    assert binary.raw_encoding == "base64"
    assert base64.b64decode(binary.raw) == b"\xff\x00\x01"
    assert binary.key is None
    huge = dead_letter("t", 0, 1, b"k", b"a" * 100_000, Rejection("too_large", "x"), at)
    assert huge.raw_truncated and len(huge.raw) < 100_000


def test_deep_nesting_in_an_unknown_field_is_a_dead_letter(rules: Ruleset) -> None:
    """msgspec raised RecursionError on ~5,000 nested brackets in an unknown field, crashing the worker."""
    raw = orjson.dumps({**tx(), "x": 0})[:-2] + b"[" * 5000 + b"]" * 5000 + b"}"
    assert len(raw) < MAX_MESSAGE_BYTES
    result = decode("transactions", b"c-1", raw, rules)
    assert isinstance(result, Rejection) and result.reason == "invalid_json", result


def test_the_sink_dead_letters_alerts_outside_the_plausible_years() -> None:
    from streams.sink.service import parse_message

    def alert(at: str) -> bytes:
        return orjson.dumps(
            {
                "alert_id": "a-1",
                "type": "complaint",
                "severity": "warning",
                "client_id": "c-1",
                "rm_id": None,
                "tier": None,
                "occurred_at": at,
                "detected_at": "2026-03-01T10:00:00+00:00",
                "title": "t",
                "facts": {},
                "rule_version": "v",
                "source_event_ids": [],
            }
        )

    assert isinstance(parse_message(Alert, alert("2999-12-31T23:59:59+00:00")), Alert)
    for at in ("9999-12-31T23:59:59.999999+00:00", "0001-01-01T00:00:00+00:00", "1969-12-31T23:59:59+00:00"):
        rejected = parse_message(Alert, alert(at))
        assert isinstance(rejected, Rejection) and rejected.reason == "schema" and "year" in rejected.error, at

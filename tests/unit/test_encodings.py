"""What real producers put around the JSON: byte-order marks, Schema Registry framing, other encodings, headers."""

from __future__ import annotations

import base64
import struct
from datetime import UTC, datetime
from typing import Any

import orjson
import pytest

from handlers.decode import Rejection, dead_letter, decode
from handlers.fastdecode import fast_decode
from handlers.ruleset import Ruleset
from schemas.alerts import DeadLetter
from schemas.events import TransactionEvent

AT = datetime(2026, 3, 1, tzinfo=UTC)
BOM = b"\xef\xbb\xbf"


def tx() -> dict[str, Any]:
    return {
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


def test_a_utf8_bom_before_the_json_is_ignored_by_the_fast_path(rules: Ruleset) -> None:
    event = fast_decode("transactions", BOM + orjson.dumps(tx()))
    assert isinstance(event, TransactionEvent) and event.event_id == "e-1"


def test_a_utf8_bom_before_the_json_is_ignored_by_the_contract_path(rules: Ruleset) -> None:
    # A space instead of the T is a form the fast path leaves to the pydantic model: the message goes the slow way.
    raw = BOM + orjson.dumps({**tx(), "occurred_at": "2026-03-01 10:00:00+08:00"})
    assert fast_decode("transactions", raw[3:]) is None, "this message must take the pydantic path"
    event = decode("transactions", b"c-1", raw, rules)
    assert isinstance(event, TransactionEvent) and event.occurred_at.hour == 10


def test_a_bom_alone_is_an_empty_message(rules: Ruleset) -> None:
    rejected = decode("transactions", b"c-1", BOM, rules)
    assert isinstance(rejected, Rejection) and rejected.reason == "empty"


def test_a_bom_in_the_middle_is_still_invalid_json(rules: Ruleset) -> None:
    rejected = decode("transactions", b"c-1", b" " + BOM + orjson.dumps(tx()), rules)
    assert isinstance(rejected, Rejection) and rejected.reason == "invalid_json"


def test_schema_registry_framing_is_its_own_reason_naming_the_schema_id(rules: Ruleset) -> None:
    raw = b"\x00" + struct.pack(">I", 1042) + orjson.dumps(tx())
    rejected = decode("transactions", b"c-1", raw, rules)
    assert isinstance(rejected, Rejection)
    assert rejected.reason == "schema_registry_framing"
    assert "Schema Registry" in rejected.error and "schema id 1042" in rejected.error
    letter = dead_letter("bank.transactions.v1", 0, 7, b"c-1", raw, rejected, AT)
    assert letter.raw_encoding == "base64" and base64.b64decode(letter.raw) == raw


def test_a_short_message_starting_with_zero_is_not_called_framing(rules: Ruleset) -> None:
    rejected = decode("transactions", b"c-1", b"\x00{}", rules)
    assert isinstance(rejected, Rejection) and rejected.reason == "invalid_json"


@pytest.mark.parametrize(
    "raw",
    [
        pytest.param(b'{"a": "\xff\xfe"}', id="invalid-utf8"),
        pytest.param('{"event_id": "e-1"}'.encode("utf-16-le"), id="utf16le-without-bom"),
        pytest.param('{"event_id": "e-1"}'.encode("utf-16-be"), id="utf16be-without-bom"),
        pytest.param(b'{"a": 1}\x00', id="nul"),
        pytest.param(b'{"a": "\x1b[31m"}', id="escape-control"),
        pytest.param(b'{"a": "\x7f"}', id="del"),
        pytest.param('{"a": "\u0085"}'.encode(), id="c1-control"),
    ],
)
def test_anything_but_clean_utf8_text_is_kept_base64(rules: Ruleset, raw: bytes) -> None:
    rejected = decode("transactions", b"c-1", raw, rules)
    assert isinstance(rejected, Rejection)
    letter = dead_letter("t", 0, 1, b"c-1", raw, rejected, AT)
    assert letter.raw_encoding == "base64"
    assert base64.b64decode(letter.raw) == raw
    assert "\x00" not in letter.model_dump_json()


@pytest.mark.parametrize(
    "raw",
    [b'{"a":\t1,\r\n"b": 2', '{"name": "张三 Zoë"'.encode(), BOM + b'{"x"'],
    ids=["tab-cr-lf", "chinese-and-accents", "bom-kept"],
)
def test_clean_utf8_text_is_kept_as_text(raw: bytes) -> None:
    letter = dead_letter("t", 0, 1, b"c-1", raw, Rejection("invalid_json", "x"), AT)
    assert letter.raw_encoding == "utf-8"
    assert letter.raw.encode("utf-8") == raw


def test_a_key_that_is_not_clean_text_is_kept_base64() -> None:
    letter = dead_letter("t", 0, 1, b"\xff\x00k", b"{}", Rejection("schema", "x"), AT)
    assert letter.key_encoding == "base64" and base64.b64decode(letter.key or "") == b"\xff\x00k"
    plain = dead_letter("t", 0, 1, "客户-1".encode(), b"{}", Rejection("schema", "x"), AT)
    assert plain.key_encoding == "utf-8" and plain.key == "客户-1"


def test_dead_letters_keep_the_record_headers_base64() -> None:
    headers = [("trace-id", b"abc"), ("bin", b"\x00\xff"), ("nothing", None), ("trace-id", b"second")]
    letter = dead_letter("t", 0, 1, b"c-1", b"x", Rejection("invalid_json", "x"), AT, headers)
    dumped = orjson.loads(letter.model_dump_json())
    assert dumped["headers"] == [
        {"key": "trace-id", "value_base64": base64.b64encode(b"abc").decode()},
        {"key": "bin", "value_base64": base64.b64encode(b"\x00\xff").decode()},
        {"key": "nothing", "value_base64": None},
        {"key": "trace-id", "value_base64": base64.b64encode(b"second").decode()},
    ]
    assert DeadLetter.model_validate_json(letter.model_dump_json()) == letter


def test_headers_given_as_a_mapping_are_kept_too() -> None:
    letter = dead_letter("t", 0, 1, b"c-1", b"x", Rejection("invalid_json", "x"), AT, {"h": b"v"})
    assert [(h.key, h.value_base64) for h in letter.headers] == [("h", base64.b64encode(b"v").decode())]


def test_a_record_without_headers_has_an_empty_list_and_old_dead_letters_still_parse() -> None:
    letter = dead_letter("t", 0, 1, b"c-1", b"x", Rejection("invalid_json", "x"), AT)
    assert letter.headers == []
    old = DeadLetter.model_validate_json(
        '{"topic": "t", "partition": 0, "offset": 1, "key": "c-1", "raw": "x", "error": "e", "reason": "schema",'
        ' "received_at": "2026-03-01T00:00:00+00:00"}'
    )
    assert old.headers == [] and old.key_encoding == "utf-8"

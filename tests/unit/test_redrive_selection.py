"""Which dead letters `clientpulse redrive` chooses, and the record each becomes again."""

from __future__ import annotations

import base64
from datetime import UTC, datetime, timedelta

import orjson

from handlers.decode import Rejection, dead_letter
from handlers.redrive import Record, Selection, Skip, ledger_key, record_of
from schemas.alerts import DeadLetter

AT = datetime(2026, 3, 1, 12, tzinfo=UTC)
EVENT = orjson.dumps({"event_id": "e-1", "client_id": "c-1", "amount": "5"})


def letter(
    raw: bytes = EVENT,
    key: bytes | None = b"c-1",
    reason: str = "invalid_json",
    topic: str = "p.bank.transactions.v1",
    at: datetime = AT,
    headers: list[tuple[str, bytes | None]] | None = None,
) -> DeadLetter:
    return dead_letter(topic, 2, 40, key, raw, Rejection(reason, "x"), at, headers)


def test_an_empty_selection_takes_everything_and_filters_combine() -> None:
    assert Selection().matches(letter())
    by_reason = Selection(reasons=frozenset({"schema", "key_mismatch"}))
    assert by_reason.matches(letter(reason="schema")) and not by_reason.matches(letter())
    by_topic = Selection(topics=frozenset({"bank.transactions.v1"}))
    assert by_topic.matches(letter(), prefix="p.") and not by_topic.matches(letter(topic="p.bank.clients.v1"), "p.")
    assert Selection(topics=frozenset({"p.bank.transactions.v1"})).matches(letter(), prefix="p.")
    window = Selection(since=AT, until=AT + timedelta(hours=1))
    assert window.matches(letter()) and window.matches(letter(at=AT + timedelta(minutes=59)))
    assert not window.matches(letter(at=AT - timedelta(seconds=1)))
    assert not window.matches(letter(at=AT + timedelta(hours=1))), "until is exclusive"
    both = Selection(reasons=frozenset({"schema"}), since=AT)
    assert not both.matches(letter(reason="invalid_json")) and not both.matches(
        letter(reason="schema", at=AT - timedelta(1))
    )


def test_the_record_is_the_original_bytes_and_headers() -> None:
    raw = b'{"client_id": "c-9", "x": "\x00"}\xff'  # kept base64
    headers: list[tuple[str, bytes | None]] = [("a", b"\x00\x01"), ("b", None), ("a", b"2")]
    record = record_of(letter(raw=raw, key=b"c-9", headers=headers))
    assert isinstance(record, Record)
    assert record.value == raw and record.headers == headers and record.topic == "p.bank.transactions.v1"
    assert record.key == b"c-9" and not record.rekeyed


def test_a_record_keyed_wrongly_is_keyed_by_its_client_this_time() -> None:
    record = record_of(letter(key=b"\xffwrong", reason="key_mismatch"))
    assert isinstance(record, Record)
    assert record.key == b"c-1" and record.original_key == b"\xffwrong" and record.rekeyed
    missing = record_of(letter(key=None, reason="key_mismatch"))
    assert isinstance(missing, Record) and missing.key == b"c-1"
    with_bom = record_of(letter(raw=b"\xef\xbb\xbf" + EVENT, key=None))
    assert isinstance(with_bom, Record) and with_bom.key == b"c-1"


def test_a_value_without_a_client_keeps_its_original_key() -> None:
    record = record_of(letter(raw=b"{not json", key=b"k-7"))
    assert isinstance(record, Record) and record.key == b"k-7"
    listed = record_of(letter(raw=b"[1, 2]", key=None))
    assert isinstance(listed, Record) and listed.key is None


def test_truncated_or_empty_letters_are_skipped_with_the_reason() -> None:
    assert record_of(letter(raw=b"a" * 100_000)) == Skip("truncated")
    assert record_of(letter(raw=b"", reason="empty")) == Skip("empty")


def test_base64_values_round_trip_exactly() -> None:
    raw = bytes(range(256))
    dl = letter(raw=raw)
    assert dl.raw_encoding == "base64" and base64.b64decode(dl.raw) == raw
    record = record_of(DeadLetter.model_validate_json(dl.model_dump_json()))
    assert isinstance(record, Record) and record.value == raw


def test_ledger_keys_name_the_dead_letters_own_position() -> None:
    assert ledger_key(3, 1042) == b"3:1042" and ledger_key(3, 1042) != ledger_key(31, 42)

"""Page cursors: signed, bound to the caller, round-trip at the edges of the time range."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from handlers.access import Principal
from streams.api.cursors import CursorError, decode_cursor, encode_cursor

KEY = b"k" * 32
ALICE = Principal("alice", "rm", "rm-a")


@pytest.mark.parametrize(
    "at",
    [
        datetime(2026, 3, 1, 10, tzinfo=UTC),
        datetime.max.replace(tzinfo=UTC),  # what PostgreSQL's +infinity comes back as
        datetime.min.replace(tzinfo=UTC),
    ],
)
def test_cursors_round_trip(at: datetime) -> None:
    cursor = encode_cursor(KEY, ALICE, (at, "alert-1"))
    assert decode_cursor(KEY, ALICE, cursor) == (at, "alert-1")


def test_a_cursor_is_refused_for_another_caller_another_key_or_any_edit() -> None:
    cursor = encode_cursor(KEY, ALICE, (datetime(2026, 3, 1, tzinfo=UTC), "alert-1"))
    for caller in (Principal("bob", "rm", "rm-a"), Principal("alice", "manager")):
        with pytest.raises(CursorError):
            decode_cursor(KEY, caller, cursor)
    with pytest.raises(CursorError):
        decode_cursor(b"x" * 32, ALICE, cursor)
    payload, _, signature = cursor.partition(".")
    for edited in (
        payload[:-1] + ("A" if payload[-1] != "A" else "B") + "." + signature,
        payload + "." + signature[:-2],
        payload,
        "",
        "." + signature,
        cursor + "é",
    ):
        with pytest.raises(CursorError):
            decode_cursor(KEY, ALICE, edited)


def test_a_by_priority_cursor_carries_the_priority() -> None:
    at = datetime(2026, 3, 1, 10, tzinfo=UTC)
    cursor = encode_cursor(KEY, ALICE, (85, at, "alert-1"))
    assert decode_cursor(KEY, ALICE, cursor) == (85, at, "alert-1")
    assert decode_cursor(KEY, ALICE, encode_cursor(KEY, ALICE, (at, "alert-1"))) == (at, "alert-1")

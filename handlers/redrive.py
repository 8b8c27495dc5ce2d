"""Which dead letters to re-drive, and the record each one becomes again (pure: `streams/tools/redrive.py` sends).

A dead letter keeps what is needed to publish its record again byte for byte:
the key and the value as text or base64, and the headers. The record goes back
to its original topic, keyed by the client (the UTF-8 bytes of the value's
`client_id` when the value is a JSON object that has one, so that a record the
producer keyed wrongly is keyed right this time; else the original key), on the
partition Kafka's default partitioner (murmur2) gives that key.
"""

from __future__ import annotations

import base64
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

import orjson

from handlers.decode import UTF8_BOM
from schemas.alerts import DeadLetter


@dataclass(frozen=True)
class Selection:
    """Filters; an empty one selects every dead letter."""

    reasons: frozenset[str] = frozenset()
    topics: frozenset[str] = frozenset()
    """Original topics, full names or names without the topic prefix."""
    since: datetime | None = None
    """received_at >= since"""
    until: datetime | None = None
    """received_at < until"""

    def matches(self, letter: DeadLetter, prefix: str = "") -> bool:
        if self.reasons and letter.reason not in self.reasons:
            return False
        if self.topics and letter.topic not in self.topics and letter.topic.removeprefix(prefix) not in self.topics:
            return False
        if self.since is not None and letter.received_at < self.since:
            return False
        return self.until is None or letter.received_at < self.until


@dataclass(frozen=True)
class Record:
    """A dead letter's record as it will be published again."""

    topic: str
    key: bytes | None
    value: bytes
    headers: list[tuple[str, bytes | None]] = field(default_factory=list)
    original_key: bytes | None = None

    @property
    def rekeyed(self) -> bool:
        return self.key != self.original_key


@dataclass(frozen=True)
class Skip:
    """A dead letter that cannot be re-driven as it was, and why."""

    reason: str


def ledger_key(partition: int, offset: int) -> bytes:
    """A dead letter's identity in the redrive ledger: its own partition and offset in the dead-letter topic."""
    return f"{partition}:{offset}".encode()


def _decode(text: str, encoding: str) -> bytes:
    return base64.b64decode(text, validate=True) if encoding == "base64" else text.encode("utf-8")


def _client_key(value: bytes) -> bytes | None:
    body = value[3:] if value.startswith(UTF8_BOM) else value
    try:
        parsed = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    client_id = parsed.get("client_id") if isinstance(parsed, dict) else None
    if isinstance(client_id, str) and 0 < len(client_id) <= 64:
        return client_id.encode("utf-8")
    return None


def record_of(letter: DeadLetter) -> Record | Skip:
    """The record to publish again, or why not (its bytes were truncated, or there is no value)."""
    if letter.raw_truncated:
        return Skip("truncated")
    value = _decode(letter.raw, letter.raw_encoding)
    if not value:
        return Skip("empty")
    original = None if letter.key is None else _decode(letter.key, letter.key_encoding)
    headers = [
        (h.key, None if h.value_base64 is None else base64.b64decode(h.value_base64, validate=True))
        for h in letter.headers
    ]
    return Record(letter.topic, _client_key(value) or original, value, headers, original)


def summary_line(counts: Sequence[tuple[str, int]]) -> str:
    return ", ".join(f"{label} {n}" for label, n in counts)

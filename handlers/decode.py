"""Bytes off a topic -> a validated event, or the reason it must become a dead letter."""

from __future__ import annotations

import base64
import functools
from dataclasses import dataclass
from datetime import datetime

from pydantic import ValidationError

from handlers.fastdecode import fast_decode
from handlers.ruleset import Ruleset
from schemas.alerts import DeadLetter
from schemas.errors import error_texts
from schemas.events import ClientEvent, Event, InteractionEvent, TransactionEvent
from schemas.limits import MAX_MESSAGE_BYTES, MAX_RAW_IN_DEADLETTER
from schemas.topics import INPUT_TOPICS, EventKind

MODELS: dict[EventKind, type[TransactionEvent] | type[InteractionEvent] | type[ClientEvent]] = {
    "transactions": TransactionEvent,
    "interactions": InteractionEvent,
    "clients": ClientEvent,
}
_MAX_ERRORS = 3


@dataclass(frozen=True, slots=True)
class Rejection:
    reason: str
    """Short machine code (metric label): empty, too_large, invalid_json, schema, key_mismatch, unknown_currency,
    undecodable (a parser failed on the message)."""
    error: str
    """Which field and why, for people."""


@functools.lru_cache(maxsize=256)
def kind_of_topic(topic: str) -> EventKind | None:
    """Map a (possibly prefixed) topic name to its event kind (asked once per message, so cached)."""
    for suffix, kind in INPUT_TOPICS.items():
        if topic.endswith(suffix):
            return kind
    return None


def _describe(exc: ValidationError) -> Rejection:
    errors = exc.errors(include_url=False, include_input=False)
    invalid_json = next((e["msg"] for e in errors if e["type"] == "json_invalid"), None)
    if invalid_json is not None:
        return Rejection("invalid_json", f"not valid JSON: {invalid_json}")
    return Rejection("schema", "; ".join(error_texts(exc, limit=_MAX_ERRORS)))


def decode(kind: EventKind, key: bytes | None, raw: bytes | None, rules: Ruleset) -> Event | Rejection:
    if not raw:
        return Rejection("empty", "message has no value")
    if len(raw) > MAX_MESSAGE_BYTES:
        return Rejection("too_large", f"message is {len(raw)} bytes, the limit is {MAX_MESSAGE_BYTES}")
    try:
        event = fast_decode(kind, raw)
        if event is None:
            event = MODELS[kind].model_validate_json(raw)
    except ValidationError as exc:
        return _describe(exc)
    except Exception as exc:
        # Whatever input breaks a parser is a dead letter: an exception here would stop the partition.
        return Rejection("undecodable", f"the decoder failed on this message ({type(exc).__name__})")
    if key is not None and key != event.client_id.encode():
        return Rejection("key_mismatch", "key: does not match client_id (events must be keyed by client_id)")
    if key is None:
        return Rejection("key_mismatch", "key: missing (events must be keyed by client_id)")
    if isinstance(event, TransactionEvent) and event.currency not in rules.fx:
        return Rejection("unknown_currency", f"currency: no FX rate for {event.currency} in the rules file")
    return event


def dead_letter(
    topic: str,
    partition: int,
    offset: int,
    key: bytes | None,
    raw: bytes | None,
    rejection: Rejection,
    received_at: datetime,
) -> DeadLetter:
    """Keep the original bytes as text, or base64 when they are not UTF-8 (bounded in size)."""
    body = raw or b""
    truncated = len(body) > MAX_RAW_IN_DEADLETTER
    if truncated:
        body = body[:MAX_RAW_IN_DEADLETTER]
    try:
        text, encoding = body.decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        text, encoding = base64.b64encode(body).decode("ascii"), "base64"
    key_text = None if key is None else key.decode("utf-8", errors="replace")
    return DeadLetter(
        topic=topic,
        partition=partition,
        offset=offset,
        key=key_text,
        raw=text,
        raw_encoding=encoding,  # type: ignore[arg-type]
        raw_truncated=truncated,
        error=rejection.error,
        reason=rejection.reason,
        received_at=received_at,
    )

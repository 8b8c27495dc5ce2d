"""Bytes off a topic -> a validated event, or the reason it must become a dead letter."""

from __future__ import annotations

import base64
import functools
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime

import orjson
from pydantic import BaseModel, ValidationError

from handlers.fastdecode import fast_check, fast_decode
from handlers.ruleset import Ruleset
from handlers.timeutil import to_us
from schemas.alerts import DeadLetter, RecordHeader
from schemas.controls import ControlEvent, InputEvent
from schemas.errors import error_texts
from schemas.events import ClientEvent, InteractionEvent, TransactionEvent
from schemas.limits import MAX_MESSAGE_BYTES, MAX_RAW_IN_DEADLETTER
from schemas.topics import INPUT_TOPICS, EventKind

MODELS: dict[EventKind, type[BaseModel]] = {
    "transactions": TransactionEvent,
    "interactions": InteractionEvent,
    "clients": ClientEvent,
    "controls": ControlEvent,
}
_MAX_ERRORS = 3

UTF8_BOM = b"\xef\xbb\xbf"
"""Jackson and .NET accept (and some producers write) a byte-order mark before the JSON."""
SCHEMA_REGISTRY_MAGIC = 0
"""Confluent's wire format: a zero byte and a big-endian 4-byte schema id, then the serialized payload."""
_UNCLEAN = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")
"""Control characters other than tab, LF and CR (C0, DEL, C1): text holding them is not kept as text."""

Headers = Iterable[tuple[str, bytes | None]] | Mapping[str, bytes | None]
"""A record's headers as the Kafka clients give them: (name, value) pairs."""


@dataclass(frozen=True, slots=True)
class Rejection:
    reason: str
    """Short machine code (metric label): empty, too_large, invalid_json, schema, key_mismatch, unknown_currency,
    schema_registry_framing, undecodable (a parser failed on the message)."""
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


def framing_rejection(raw: bytes) -> Rejection | None:
    """Schema Registry framing before the payload, said as such (it would otherwise be a puzzling invalid_json)."""
    if len(raw) < 5 or raw[0] != SCHEMA_REGISTRY_MAGIC:
        return None
    schema_id = int.from_bytes(raw[1:5], "big")
    return Rejection(
        "schema_registry_framing",
        f"Schema Registry framing: a zero byte and schema id {schema_id} precede the payload; "
        "clientpulse reads plain UTF-8 JSON: produce with a plain string or bytes serializer, not a registry one",
    )


def _unwrapped(raw: bytes | None) -> bytes | Rejection:
    """The message's JSON bytes (a byte-order mark dropped), or why it is no message at all."""
    if not raw:
        return Rejection("empty", "message has no value")
    if len(raw) > MAX_MESSAGE_BYTES:
        return Rejection("too_large", f"message is {len(raw)} bytes, the limit is {MAX_MESSAGE_BYTES}")
    if raw[0] == SCHEMA_REGISTRY_MAGIC:
        framed = framing_rejection(raw)
        if framed is not None:
            return framed
    elif raw.startswith(UTF8_BOM):
        raw = raw[3:]
        if not raw:
            return Rejection("empty", "message has only a byte-order mark")
    return raw


def decode(kind: EventKind, key: bytes | None, raw: bytes | None, rules: Ruleset) -> InputEvent | Rejection:
    body = _unwrapped(raw)
    if isinstance(body, Rejection):
        return body
    try:
        fast: InputEvent | None = fast_decode(kind, body)
        event: InputEvent = fast if fast is not None else MODELS[kind].model_validate_json(body)  # type: ignore[assignment]
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


def decoded_time(kind: EventKind, key: bytes | None, raw: bytes | None, rules: Ruleset) -> int | None:
    """occurred_at (µs) of the event `decode` would return, or None where it returns a rejection.

    Cheaper than `decode` for the well-formed messages the fast path takes
    (their checks without building the event); the others are decoded.
    """
    body = _unwrapped(raw)
    if isinstance(body, Rejection):
        return None
    try:
        checked = fast_check(kind, body)
    except Exception:
        checked = None  # `decode` says what breaks a parser
    if checked is None:
        event = decode(kind, key, raw, rules)
        return None if isinstance(event, Rejection) else to_us(event.occurred_at)
    client_id, occurred, currency = checked
    if key is None or key != client_id.encode():
        return None
    if currency is not None and currency not in rules.fx:
        return None
    return occurred


def clean_text(data: bytes) -> str | None:
    """`data` as text if it is valid UTF-8 without control characters (tab, CR and LF allowed), else None."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return None
    return None if _UNCLEAN.search(text) else text


def _header_items(headers: Headers | None) -> list[RecordHeader]:
    if not headers:
        return []
    pairs = headers.items() if isinstance(headers, Mapping) else headers
    return [
        RecordHeader(
            key=name if isinstance(name, str) else bytes(name).decode("utf-8", errors="replace"),
            value_base64=None if value is None else base64.b64encode(value).decode("ascii"),
        )
        for name, value in pairs
    ]


def dead_letter(
    topic: str,
    partition: int,
    offset: int,
    key: bytes | None,
    raw: bytes | None,
    rejection: Rejection,
    received_at: datetime,
    headers: Headers | None = None,
) -> DeadLetter:
    """Keep the original bytes as text, or base64 when they are not clean UTF-8 text (bounded in size); never a
    birth year.

    Key and headers are kept too, so that `clientpulse redrive` can publish the record again byte for byte
    (with a birth date's year cut out).
    """
    body = redact_birth_year(raw or b"")
    truncated = len(body) > MAX_RAW_IN_DEADLETTER
    if truncated:
        body = body[:MAX_RAW_IN_DEADLETTER]
    text = clean_text(body)
    if text is not None:
        encoding = "utf-8"
    else:
        text, encoding = base64.b64encode(body).decode("ascii"), "base64"
    key_text: str | None = None
    key_encoding = "utf-8"
    if key is not None:
        key_text = clean_text(key)
        if key_text is None:
            key_text, key_encoding = base64.b64encode(key).decode("ascii"), "base64"
    return DeadLetter(
        topic=topic,
        partition=partition,
        offset=offset,
        key=key_text,
        key_encoding=key_encoding,  # type: ignore[arg-type]
        raw=text,
        raw_encoding=encoding,  # type: ignore[arg-type]
        raw_truncated=truncated,
        error=rejection.error,
        reason=rejection.reason,
        received_at=received_at,
        headers=_header_items(headers),
    )


_DATED = re.compile(r"[0-9]{1,4}-[0-9]{2}-[0-9]{2}\Z")
_BIRTH_DATE = re.compile(rb'("birth_date"\s*:\s*")[0-9]{1,4}(-[0-9]{2}-[0-9]{2}")')


def redact_birth_year(raw: bytes) -> bytes:
    """A message as kept in a dead letter: a birth date's year replaced as in `--MM-DD` (a form events accept).

    The year is personal data that clientpulse never keeps or publishes; the
    month and day are enough to re-drive the message.
    """
    if b"birth" not in raw and b"\\u" not in raw:
        return raw
    raw = _BIRTH_DATE.sub(rb"\1-\2", raw)
    if b"\\u" in raw:
        # The key or the value may be spelt with escapes: redact what a JSON parser would read.
        try:
            value = orjson.loads(raw)
        except orjson.JSONDecodeError:
            return raw
        birth_date = value.get("birth_date") if isinstance(value, dict) else None
        if isinstance(birth_date, str) and _DATED.match(birth_date):
            value["birth_date"] = "--" + birth_date[-5:]
            return orjson.dumps(value)
    return raw

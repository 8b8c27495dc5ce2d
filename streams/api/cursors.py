"""Page cursors: the position a page ended at, signed (HMAC-SHA256) for the caller it was given to.

A cursor is `<position>.<signature>`, both base64url. The signature covers the
position and the caller's name and role, with a key every sink replica shares,
so a cursor works on any replica for the caller it was issued to and is refused
for anyone else, and any edit of it is refused. Scope still applies to every
page: a cursor only says where to continue.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from datetime import UTC, datetime

import orjson

from handlers.access import Principal
from streams.sink.store import Position

MAX_CURSOR_LENGTH = 512
_SIGNATURE_BYTES = 16


class CursorError(ValueError):
    pass


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _signature(key: bytes, caller: Principal, payload: str) -> bytes:
    message = f"cursor\x00{caller.role}\x00{caller.name}\x00{payload}".encode()
    return hmac.new(key, message, hashlib.sha256).digest()[:_SIGNATURE_BYTES]


def encode_cursor(key: bytes, caller: Principal, position: Position) -> str:
    """A newest-first position is `[at, alert_id]`, a by-priority one `[priority, at, alert_id]`."""
    *priority, at, alert_id = position
    payload = _b64(orjson.dumps([*priority, at.astimezone(UTC).isoformat(), alert_id]))
    return f"{payload}.{_b64(_signature(key, caller, payload))}"


def decode_cursor(key: bytes, caller: Principal, cursor: str) -> Position:
    """The position a cursor of this caller points at; CursorError for anything else."""
    refused = CursorError("cursor: not a cursor this API gave you (pass next_cursor back unchanged)")
    if not cursor or len(cursor) > MAX_CURSOR_LENGTH or not cursor.isascii():
        raise refused
    payload, dot, signature = cursor.partition(".")
    try:
        given = _unb64(signature)
        if not dot or not hmac.compare_digest(given, _signature(key, caller, payload)):
            raise refused
        *priority, when, alert_id = orjson.loads(_unb64(payload))
        if not isinstance(when, str) or not isinstance(alert_id, str) or not alert_id:
            raise refused
        parsed = datetime.fromisoformat(when)
        if parsed.tzinfo is None:
            raise refused
        at = parsed.astimezone(UTC)
        if not priority:
            return at, alert_id
        if len(priority) != 1 or type(priority[0]) is not int or not 0 <= priority[0] <= 100:
            raise refused
        return priority[0], at, alert_id
    except (ValueError, TypeError, OverflowError, binascii.Error):
        raise refused from None


def encode_position(key: bytes, caller: Principal, position: tuple[int, datetime, str], purpose: str) -> str:
    """A signed cursor for another ordering than the API's (the workbench inbox: priority, time, id)."""
    priority, at, alert_id = position
    payload = _b64(orjson.dumps([purpose, priority, at.astimezone(UTC).isoformat(), alert_id]))
    return f"{payload}.{_b64(_signature(key, caller, payload))}"


def decode_position(key: bytes, caller: Principal, cursor: str, purpose: str) -> tuple[int, datetime, str]:
    refused = CursorError("cursor: not a cursor this page gave you")
    if not cursor or len(cursor) > MAX_CURSOR_LENGTH or not cursor.isascii():
        raise refused
    payload, dot, signature = cursor.partition(".")
    try:
        if not dot or not hmac.compare_digest(_unb64(signature), _signature(key, caller, payload)):
            raise refused
        kind, priority, when, alert_id = orjson.loads(_unb64(payload))
        if kind != purpose or not isinstance(priority, int) or not isinstance(when, str) or not alert_id:
            raise refused
        at = datetime.fromisoformat(when)
        if at.tzinfo is None:
            raise refused
        return priority, at.astimezone(UTC), str(alert_id)
    except (ValueError, TypeError, OverflowError, binascii.Error):
        raise refused from None

"""The RM API: alerts, client pages and snoozes over HTTP, per-principal visibility, health and metrics.

Visibility is enforced in the store queries; an alert or client outside the
caller's scope is answered with 404, exactly like one that does not exist.
Every /api answer is JSON, errors included; every response carries the
security headers (streams/api/server.py) and client data is never cached.
"""

from __future__ import annotations

import logging
import re
import uuid
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg  # type: ignore[import-untyped]
import orjson
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import ValidationError

from handlers.lifecycle import STATUSES, ClosingError, check_closing
from handlers.report import build_report
from schemas.alerts import ALERT_TYPES
from schemas.controls import MAX_SNOOZE, ControlEvent, snooze_problem
from schemas.errors import error_texts
from schemas.limits import MAX_SNOOZE_DAYS, MAX_TEXT_LENGTH
from schemas.values import SEVERITIES
from streams import metrics
from streams.api.auth import Principal, Principals
from streams.api.bodies import BodyError, read_body
from streams.api.cursors import CursorError, decode_cursor, encode_cursor
from streams.api.feed import FeedWaker, stream
from streams.api.i18n import lang_of
from streams.api.identity import SAFE_METHODS, AuthFailure, Gatekeeper, Identity, Teams
from streams.api.oidc import OidcClient
from streams.api.pages import Pages
from streams.api.server import SECURITY_HEADERS, SERVER_NAME
from streams.api.workbench import Workbench
from streams.settings import Settings
from streams.sink.controls import ControlPublisher
from streams.sink.store import (
    SORTS,
    AlertFilter,
    AlertStore,
    InvalidTransition,
    NotFound,
    OutsideScope,
    Sort,
    StoreUnavailable,
)

log = logging.getLogger(__name__)

SinkStatus = Callable[[], Mapping[str, Any]]
STORE_KEY = web.AppKey("store", AlertStore)
GATE_KEY = web.AppKey("gatekeeper", Gatekeeper)
SINK_STATUS_KEY: web.AppKey[SinkStatus] = web.AppKey("sink_status")
CONTROLS_KEY = web.AppKey("controls", ControlPublisher)
FEED_KEY = web.AppKey("feed", FeedWaker)
# aiohttp >= 3.12 has typed request keys; older versions take a plain string.
PRINCIPAL_KEY: Any = web.RequestKey("principal", Principal) if hasattr(web, "RequestKey") else "principal"

DEFAULT_LIMIT = 50
MAX_LIMIT = 200
CLIENT_RECENT_ALERTS = 20
MAX_ID_LENGTH = 64
MAX_NOTE_LENGTH = 2000
MAX_BODY_BYTES = 16 * 1024
UNASSIGNED = "unassigned"
LIST_PARAMS = frozenset(
    {"rm_id", "status", "type", "severity", "since", "limit", "cursor", "client_id", "sort", "after", "overdue"}
)
MAX_SEQ = 2**63 - 1
REPORT_PARAMS = frozenset({"since", "until"})
REPORT_DEFAULT_DAYS = 30
REPORT_MAX_DAYS = 366
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_ITEM_LIST = re.compile(r"^[a-z_]+(?:,[a-z_]+)*$")
_NOTE_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_SPACE_OFFSET = re.compile(r" (\d{2}:?\d{2})$")
_DB_DOWN = (
    StoreUnavailable,
    OSError,
    TimeoutError,
    asyncpg.InterfaceError,
    asyncpg.PostgresConnectionError,
    asyncpg.OperatorInterventionError,
    asyncpg.InsufficientResourcesError,
)


class ApiError(Exception):
    def __init__(self, http_status: int, code: str, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.http_status, self.code, self.message, self.extra = http_status, code, message, extra


def _json(data: Any, status: int = 200, headers: Mapping[str, str] | None = None) -> web.Response:
    return web.Response(
        body=orjson.dumps(data), status=status, content_type="application/json", headers=dict(headers or {})
    )


def _error(
    http_status: int, code: str, message: str, headers: Mapping[str, str] | None = None, **extra: Any
) -> web.Response:
    all_headers = dict(headers or {})
    if http_status == 401:
        all_headers["WWW-Authenticate"] = 'Bearer realm="clientpulse"'
    return _json({"error": code, "message": message, **extra}, http_status, all_headers)


_HTTP_CODES = {
    400: "bad_request",
    404: "not_found",
    405: "method_not_allowed",
    408: "request_timeout",
    413: "body_too_large",
}


@web.middleware
async def _errors(request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]) -> Any:
    """Every error is JSON; a database outage is 503; nothing a caller sends can make a 500."""
    try:
        return await handler(request)
    except ApiError as exc:
        return _error(exc.http_status, exc.code, exc.message, **exc.extra)
    except AuthFailure as exc:
        headers = {"Retry-After": str(exc.retry_after)} if exc.retry_after is not None else None
        return _error(exc.status, exc.code, exc.message, headers)
    except BodyError as exc:
        response = _error(exc.status, exc.code, exc.message)
        if exc.status == 408:
            response.force_close()
        return response
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        code = _HTTP_CODES.get(exc.status, "http_error")
        if isinstance(exc, web.HTTPMethodNotAllowed):
            allowed = sorted(exc.allowed_methods)
            return _error(exc.status, code, exc.reason, {"Allow": ", ".join(allowed)}, allowed=allowed)
        return _error(exc.status, code, exc.reason)
    except asyncpg.DataError as exc:
        # Inputs are validated before any query; this is the safety net for a value PostgreSQL still refuses.
        log.warning("value refused by the database in %s %s: %s", request.method, request.path, exc)
        return _error(400, "bad_request", "a value in the request is out of range")
    except _DB_DOWN as exc:
        log.warning("database unavailable for %s %s: %s", request.method, request.path, exc)
        return _error(503, "unavailable", "the alert store is unavailable; retry later")
    except Exception:
        log.exception("unexpected error in %s %s", request.method, request.path)
        return _error(500, "internal", "unexpected error")


@web.middleware
async def _auth(request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]) -> Any:
    if not request.path.startswith("/api/"):
        return await handler(request)
    identity: Identity | None = await request.app[GATE_KEY].identify(request)
    if identity is None:
        raise ApiError(401, "unauthenticated", "sign in, or send an `Authorization: Bearer <token>` header")
    if request.method not in SAFE_METHODS and not Gatekeeper.csrf_matches(
        identity, request.headers.get("X-CSRF-Token")
    ):
        metrics.CSRF_REFUSED.inc()
        raise ApiError(403, "csrf_failed", "a signed-in browser must send its page's token in X-CSRF-Token")
    request[PRINCIPAL_KEY] = identity.principal
    return await handler(request)


async def _security_headers(request: web.Request, response: web.StreamResponse) -> None:
    """On every response: the security headers, a Server header without versions, no caching of client data."""
    response.headers["Server"] = SERVER_NAME
    for name, value in SECURITY_HEADERS.items():
        response.headers.setdefault(name, value)
    response.headers.setdefault("Cache-Control", "no-store")


def _principal(request: web.Request) -> Principal:
    principal: Principal = request[PRINCIPAL_KEY]
    return principal


def _store(request: web.Request) -> AlertStore:
    return request.app[STORE_KEY]


def _check_id(value: str, what: str) -> str:
    if not value or len(value) > MAX_ID_LENGTH or _CONTROL.search(value):
        raise ApiError(400, "bad_request", f"{what}: must be 1-{MAX_ID_LENGTH} characters without control characters")
    return value


def _single(request: web.Request, name: str) -> str | None:
    values = request.query.getall(name, [])
    if len(values) > 1:
        raise ApiError(400, "bad_request", f"{name}: give it once")
    return values[0] if values else None


def _multi(request: web.Request, name: str, allowed: tuple[str, ...]) -> tuple[str, ...]:
    out: list[str] = []
    for raw in request.query.getall(name, []):
        if not _ITEM_LIST.match(raw):
            raise ApiError(400, "bad_request", f"{name}: a comma-separated list of {', '.join(allowed)}")
        for item in raw.split(","):
            if item not in allowed:
                raise ApiError(400, "bad_request", f"{name}: {item!r} is not one of {', '.join(allowed)}")
            if item not in out:
                out.append(item)
    return tuple(out)


def _parse_time(name: str, text: str) -> datetime:
    """An RFC 3339 time with an offset (a body field), in UTC."""
    try:
        value = datetime.fromisoformat(text.strip())
    except ValueError:
        raise ApiError(400, "bad_request", f"{name}: not an RFC 3339 time: {text[:40]!r}") from None
    if value.tzinfo is None:
        raise ApiError(400, "bad_request", f"{name}: needs an offset, e.g. 2026-03-01T00:00:00+08:00")
    try:
        return value.astimezone(UTC)
    except OverflowError:
        raise ApiError(400, "bad_request", f"{name}: out of range") from None


def _parse_since(text: str, name: str = "since") -> datetime:
    # An unencoded `+` in a query string arrives as a space: accept it back.
    text = _SPACE_OFFSET.sub(r"+\1", text.strip())
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise ApiError(400, "bad_request", f"{name}: not an RFC 3339 time: {text!r}") from None
    if value.tzinfo is None:
        raise ApiError(400, "bad_request", f"{name}: needs an offset, e.g. 2026-03-01T00:00:00Z (encode + as %2B)")
    try:
        return value.astimezone(UTC)
    except OverflowError:
        # Before year 1 or after 9999 in UTC: earlier, or later, than anything that can be stored.
        return datetime.min.replace(tzinfo=UTC) if value.year == 1 else datetime.max.replace(tzinfo=UTC)


def _parse_limit(text: str | None) -> int:
    if text is None:
        return DEFAULT_LIMIT
    if not (text.isascii() and text.isdigit() and len(text) <= 3) or not 1 <= int(text) <= MAX_LIMIT:
        raise ApiError(400, "bad_request", f"limit: an integer from 1 to {MAX_LIMIT}")
    return int(text)


def _parse_after(text: str | None, what: str = "after") -> int | None:
    if text is None:
        return None
    if not (text.isascii() and text.isdigit() and len(text) <= 19) or int(text) > MAX_SEQ:
        raise ApiError(400, "bad_request", f"{what}: a store sequence, an integer from 0 (the `seq` of an alert)")
    return int(text)


async def list_alerts(request: web.Request) -> web.Response:
    unknown = sorted(set(request.query) - LIST_PARAMS)
    if unknown:
        raise ApiError(400, "bad_request", f"unknown query parameter(s): {', '.join(unknown)}")
    after_seq = _parse_after(_single(request, "after"))
    rm_id = _single(request, "rm_id")
    client_id = _single(request, "client_id")
    since = _single(request, "since")
    cursor = _single(request, "cursor")
    sort_given = _single(request, "sort") or "newest"
    if sort_given not in SORTS:
        raise ApiError(400, "bad_request", f"sort: one of {', '.join(SORTS)}")
    sort: Sort = "priority" if sort_given == "priority" else "newest"
    overdue = _single(request, "overdue")
    if overdue not in (None, "true", "false"):
        raise ApiError(400, "bad_request", "overdue: true or false")
    flt = AlertFilter(
        rm_id=None if rm_id in (None, UNASSIGNED) else _check_id(rm_id or "", "rm_id"),
        unassigned=rm_id == UNASSIGNED,
        statuses=_multi(request, "status", STATUSES),
        types=_multi(request, "type", ALERT_TYPES),
        severities=_multi(request, "severity", SEVERITIES),
        since=_parse_since(since) if since is not None else None,
        client_id=_check_id(client_id, "client_id") if client_id is not None else None,
        overdue_at=datetime.now(UTC) if overdue == "true" else None,
    )
    limit = _parse_limit(_single(request, "limit"))
    principal = _principal(request)
    if after_seq is not None:
        if cursor is not None:
            raise ApiError(400, "bad_request", "after and cursor: give one (after reads in store order, cursor pages)")
        alerts = await _store(request).feed(principal.scope, flt, after=after_seq, limit=limit)
        return _json({"alerts": alerts, "next_cursor": None, "next_after": alerts[-1]["seq"] if alerts else after_seq})
    key = await request.app[GATE_KEY].secret("cursor")
    try:
        after = decode_cursor(key, principal, cursor) if cursor is not None else None
    except CursorError as exc:
        raise ApiError(400, "bad_request", str(exc)) from None
    if after is not None and len(after) != (3 if sort == "priority" else 2):
        raise ApiError(400, "bad_request", f"cursor: a cursor of another sort order (this page is sort={sort})")
    page = await _store(request).list_alerts(principal.scope, flt, limit=limit, after=after, sort=sort)
    next_cursor = encode_cursor(key, principal, page.next_after) if page.next_after is not None else None
    return _json({"alerts": page.alerts, "next_cursor": next_cursor})


async def stream_alerts(request: web.Request) -> web.StreamResponse:
    """Server-Sent Events of the caller's new alerts; `after` or `Last-Event-ID` resumes after a sequence."""
    unknown = sorted(set(request.query) - {"after"})
    if unknown:
        raise ApiError(400, "bad_request", f"unknown query parameter(s): {', '.join(unknown)}")
    after = _parse_after(_single(request, "after"))
    if after is None:
        after = _parse_after(request.headers.get("Last-Event-ID"), "Last-Event-ID")
    result: web.StreamResponse = await stream(
        request, _store(request), request.app[FEED_KEY], _principal(request).scope, after
    )
    return result


async def get_alert(request: web.Request) -> web.Response:
    alert_id = _check_id(request.match_info["alert_id"], "alert_id")
    alert = await _store(request).get_alert(alert_id, _principal(request).scope)
    if alert is None:
        raise ApiError(404, "not_found", f"no alert {alert_id}")
    return _json(alert)


_BODY_FIELDS = {
    "ack": ("note",),
    "resolve": ("outcome", "note"),
    "dismiss": ("reason", "note"),
    "assign": ("rm_id", "note"),
}


async def _read_action_body(request: web.Request, action: str) -> dict[str, str | None]:
    """The JSON body of an action: only its own fields, strings, the note cleaned (docs/api.md, "Lifecycle")."""
    raw = await read_body(request, MAX_BODY_BYTES, request.app[GATE_KEY].settings.api_body_timeout)
    body: Any = {}
    if raw.strip():
        try:
            body = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            raise ApiError(400, "bad_request", f"body: not valid JSON ({exc})") from None
    fields = _BODY_FIELDS[action]
    if not isinstance(body, dict):
        raise ApiError(400, "bad_request", f"body: expected a JSON object with {', '.join(fields)}")
    extra = sorted(set(body) - set(fields))
    if extra:
        raise ApiError(
            400, "bad_request", f"body: unknown field(s) {', '.join(extra)}; {action} accepts {', '.join(fields)}"
        )
    out: dict[str, str | None] = {}
    for name in fields:
        value = body.get(name)
        if value is not None and not isinstance(value, str):
            raise ApiError(400, "bad_request", f"{name}: must be a string")
        out[name] = value
    out["note"] = clean_note(out.get("note"))
    return out


def clean_note(note: str | None) -> str | None:
    """A note within bounds, white space trimmed; an empty note is no note. ApiError otherwise."""
    if note is None:
        return None
    if len(note) > MAX_NOTE_LENGTH:
        raise ApiError(400, "bad_request", f"note: at most {MAX_NOTE_LENGTH} characters")
    if _NOTE_CONTROL.search(note):
        raise ApiError(400, "bad_request", "note: control characters are not allowed")
    return note.strip() or None


async def act(
    store: AlertStore, principal: Principal, alert_id: str, action: str, fields: Mapping[str, str | None]
) -> dict[str, Any]:
    """One lifecycle action or assignment for the API and the workbench alike; ApiError for every refusal."""
    if not principal.can_act:
        # ops see everything, so a 403 here reveals nothing they could not read.
        raise ApiError(403, "forbidden", f"{principal.role} tokens are read-only")
    note = fields.get("note")
    try:
        if action == "assign":
            rm_id = fields.get("rm_id")
            if not rm_id:
                raise ApiError(400, "bad_request", "rm_id: required (the RM to give the alert to)")
            _check_id(rm_id, "rm_id")
            if principal.role != "manager":
                raise ApiError(403, "forbidden", "only managers assign alerts")
            return await store.assign(
                alert_id, rm_id, scope=principal.scope, actor=principal.name, actor_role=principal.role, note=note
            )
        outcome = check_closing(action, fields.get("outcome") or fields.get("reason"), note)
        return await store.transition(
            alert_id,
            action,
            scope=principal.scope,
            actor=principal.name,
            actor_role=principal.role,
            note=note,
            outcome=outcome,
        )
    except ClosingError as exc:
        raise ApiError(400, "bad_request", str(exc)) from None
    except OutsideScope:
        raise ApiError(403, "forbidden", f"rm_id: {fields.get('rm_id')} is not an RM of your team") from None
    except NotFound:
        raise ApiError(404, "not_found", f"no alert {alert_id}") from None
    except InvalidTransition as exc:
        raise ApiError(409, "invalid_transition", str(exc), status=exc.status) from None


def _action(name: str) -> Callable[[web.Request], Awaitable[web.Response]]:
    if name not in _BODY_FIELDS:  # pragma: no cover - wiring mistake
        raise ValueError(name)

    async def handler(request: web.Request) -> web.Response:
        alert_id = _check_id(request.match_info["alert_id"], "alert_id")
        fields = await _read_action_body(request, name)
        return _json(await act(_store(request), _principal(request), alert_id, name, fields))

    return handler


async def _visible_client(request: web.Request, client_id: str) -> tuple[dict[str, Any] | None, list[dict[str, Any]]]:
    """The client's snapshot and recent visible alerts; 404 when the caller may not see the client."""
    scope = _principal(request).scope
    store = _store(request)
    snapshot = await store.get_client(client_id)
    page = await store.list_alerts(scope, AlertFilter(client_id=client_id), limit=CLIENT_RECENT_ALERTS)
    # The snapshot's RM decides; without a snapshot yet, visible alerts of the client do.
    visible = scope.allows(snapshot["rm_id"]) if snapshot is not None else bool(page.alerts)
    if not visible:
        raise ApiError(404, "not_found", f"no client {client_id}")
    return snapshot, page.alerts


async def get_client(request: web.Request) -> web.Response:
    client_id = _check_id(request.match_info["client_id"], "client_id")
    snapshot, alerts = await _visible_client(request, client_id)
    snoozes, trail = await _store(request).snoozes(client_id)
    return _json({"client": snapshot, "recent_alerts": alerts, "snoozes": snoozes, "snooze_history": trail})


async def _read_object(request: web.Request, fields: frozenset[str], example: str) -> dict[str, Any]:
    raw = await read_body(request, MAX_BODY_BYTES, request.app[GATE_KEY].settings.api_body_timeout)
    body: Any = {}
    if raw.strip():
        try:
            body = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            raise ApiError(400, "bad_request", f"body: not valid JSON ({exc})") from None
    if not isinstance(body, dict):
        raise ApiError(400, "bad_request", f"body: expected a JSON object like {example}")
    extra = sorted(set(body) - fields)
    if extra:
        raise ApiError(
            400, "bad_request", f"body: unknown field(s) {', '.join(extra)}; accepted: {', '.join(sorted(fields))}"
        )
    return body


def _reason(value: Any, required: bool) -> str | None:
    if value is not None and not isinstance(value, str):
        raise ApiError(400, "bad_request", "reason: must be a string")
    if value is not None and len(value) > MAX_TEXT_LENGTH:
        raise ApiError(400, "bad_request", f"reason: at most {MAX_TEXT_LENGTH} characters")
    if value is not None and _CONTROL.search(value):
        raise ApiError(400, "bad_request", "reason: one line without control characters")
    reason = value.strip() if value is not None else ""
    if value is not None and not reason:
        raise ApiError(400, "bad_request", "reason: not only white space (leave it out, or say why)")
    if required and not reason:
        raise ApiError(400, "bad_request", "reason: required (why this client's alerts may wait)")
    return reason or None


def _snoozable(value: Any) -> str:
    if not isinstance(value, str) or not value:
        raise ApiError(400, "bad_request", "type: the alert type to snooze, e.g. large_outflow")
    problem = snooze_problem(value)
    if problem is not None:
        raise ApiError(400, "bad_request", f"type: {problem}")
    return value


def _controls(request: web.Request, principal: Principal) -> ControlPublisher:
    if not principal.can_act:
        raise ApiError(403, "forbidden", f"{principal.role} tokens are read-only")
    publisher = request.app.get(CONTROLS_KEY)
    if publisher is None:
        raise ApiError(503, "unavailable", "snoozes need the sink's connection to the broker, which is not set up")
    return publisher


async def record_control(
    store: AlertStore, publisher: ControlPublisher, principal: Principal, values: dict[str, Any]
) -> tuple[dict[str, Any] | None, bool]:
    """Record the control event (the audit trail), then publish it: (the record, whether the broker has it)."""
    raw = orjson.dumps(values)
    try:
        event = ControlEvent.model_validate_json(raw)
    except ValidationError as exc:  # the checks above mirror these; this keeps the two from drifting apart
        raise ApiError(400, "bad_request", "; ".join(error_texts(exc, limit=3))) from None
    await store.record_control(event, raw, principal.role)
    published = await publisher.publish(event.client_id)
    return await store.control(event.event_id), published


async def _apply_control(request: web.Request, publisher: ControlPublisher, values: dict[str, Any]) -> web.Response:
    """Record and publish: 201 (200 for an unsnooze) once the broker has it, 202 when it is recorded and will be
    published when the broker takes it."""
    record, published = await record_control(_store(request), publisher, _principal(request), values)
    status = (201 if values["kind"] == "snooze" else 200) if published else 202
    return _json({"snooze": record, "published": published}, status)


def snooze_values(
    principal: Principal, client_id: str, alert_type: Any, until: datetime, reason: Any
) -> dict[str, Any]:
    """The control event of a snooze, checked as the API checks it (ApiError naming the field otherwise)."""
    alert_type = _snoozable(alert_type)
    reason = _reason(reason, required=True)
    now = datetime.now(UTC)
    if until <= now:
        raise ApiError(400, "bad_request", "until: must be in the future")
    if until - now > MAX_SNOOZE:
        raise ApiError(400, "bad_request", f"until: at most {MAX_SNOOZE_DAYS} days ahead")
    return {
        "event_id": uuid.uuid4().hex,
        "client_id": client_id,
        "occurred_at": now.isoformat(),
        "kind": "snooze",
        "alert_type": alert_type,
        "until": until.isoformat(),
        "actor": principal.name,
        "reason": reason,
    }


class ControlSnoozes:
    """The workbench's snoozes: the API's checks, audit trail and control events, for the page's form."""

    def __init__(self, store: AlertStore, publisher: ControlPublisher) -> None:
        self.store = store
        self.publisher = publisher

    async def snooze(self, principal: Principal, client_id: str, alert_type: str, until: datetime, reason: str) -> None:
        try:
            await record_control(
                self.store, self.publisher, principal, snooze_values(principal, client_id, alert_type, until, reason)
            )
        except ApiError as exc:
            raise ValueError(exc.message) from None

    async def active(self, client_id: str) -> list[dict[str, Any]]:
        return (await self.store.snoozes(client_id))[0]

    async def history(self, client_id: str) -> list[dict[str, Any]]:
        return (await self.store.snoozes(client_id))[1]


async def add_snooze(request: web.Request) -> web.Response:
    client_id = _check_id(request.match_info["client_id"], "client_id")
    principal = _principal(request)
    body = await _read_object(
        request, frozenset({"type", "until", "reason"}), '{"type": "large_outflow", "until": "...", "reason": "..."}'
    )
    _snoozable(body.get("type"))
    if not isinstance(body.get("until"), str):
        raise ApiError(400, "bad_request", "until: required, an RFC 3339 time with an offset")
    until = _parse_time("until", body["until"])
    _reason(body.get("reason"), required=True)
    await _visible_client(request, client_id)
    publisher = _controls(request, principal)
    return await _apply_control(
        request, publisher, snooze_values(principal, client_id, body.get("type"), until, body.get("reason"))
    )


async def end_snooze(request: web.Request) -> web.Response:
    client_id = _check_id(request.match_info["client_id"], "client_id")
    principal = _principal(request)
    alert_type = _snoozable(request.match_info["alert_type"])
    body = await _read_object(request, frozenset({"reason"}), '{"reason": "..."}')
    reason = _reason(body.get("reason"), required=False)
    await _visible_client(request, client_id)
    publisher = _controls(request, principal)
    if await _store(request).active_snooze(client_id, alert_type) is None:
        raise ApiError(404, "not_found", f"no snooze of {alert_type} in force for client {client_id}")
    values: dict[str, Any] = {
        "event_id": uuid.uuid4().hex,
        "client_id": client_id,
        "occurred_at": datetime.now(UTC).isoformat(),
        "kind": "unsnooze",
        "alert_type": alert_type,
        "actor": principal.name,
    }
    if reason is not None:
        values["reason"] = reason
    return await _apply_control(request, publisher, values)


REPORT_EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)
REPORT_LATEST = datetime(3000, 1, 1, tzinfo=UTC)
"""Alert times lie in 1970-2999: a period is clamped to them."""


def report_period(since_text: str | None, until_text: str | None) -> tuple[datetime, datetime]:
    """[since, until) of a report: the last 30 days by default, at most 366 days (an earlier since is moved
    up to 366 days before until), clamped to the years alert times may have; since after until is empty."""
    until = _parse_since(until_text, "until") if until_text is not None else datetime.now(UTC)
    until = min(max(until, REPORT_EARLIEST), REPORT_LATEST)
    since = _parse_since(since_text) if since_text is not None else until - timedelta(days=REPORT_DEFAULT_DAYS)
    since = min(max(since, until - timedelta(days=REPORT_MAX_DAYS), REPORT_EARLIEST), until)
    return since, until


async def rule_report(store: AlertStore, principal: Principal, since: datetime, until: datetime) -> dict[str, Any]:
    rows = await store.report_rows(principal.scope, since, until)
    return build_report(since, until, rows["per_day"], rows["per_type"])


async def get_report(request: web.Request) -> web.Response:
    unknown = sorted(set(request.query) - REPORT_PARAMS)
    if unknown:
        raise ApiError(400, "bad_request", f"unknown query parameter(s): {', '.join(unknown)}")
    since, until = report_period(_single(request, "since"), _single(request, "until"))
    return _json(await rule_report(_store(request), _principal(request), since, until))


async def healthz(request: web.Request) -> web.Response:
    """Liveness: 503 only when the sink loop has died; a database outage shows as `degraded`."""
    status_fn = request.app.get(SINK_STATUS_KEY)
    store = request.app[STORE_KEY]
    if status_fn is None:
        return _json({"status": "ok", "store": "up" if store.connected else "down"})
    sink = dict(status_fn())
    body: dict[str, Any] = {
        "status": "ok" if sink.get("healthy") else "degraded",
        "store": "up" if sink.get("healthy") else "down",
    }
    body["sink"] = sink
    if sink.get("failed"):
        body["status"] = "failed"
        return _json(body, 503)
    return _json(body)


async def readyz(request: web.Request) -> web.Response:
    """Readiness: the database answers now and the schema is in place."""
    store = request.app[STORE_KEY]
    if store.migrated and await store.ping(timeout=2.0):
        return _json({"status": "ready"})
    return _json({"status": "unavailable", "message": "the alert store database is unreachable"}, 503)


async def metrics_page(request: web.Request) -> web.Response:
    return web.Response(body=generate_latest(), headers={"Content-Type": CONTENT_TYPE_LATEST})


def create_api(
    store: AlertStore,
    principals: Principals | None,
    *,
    settings: Settings | None = None,
    teams: Teams | None = None,
    oidc: OidcClient | None = None,
    sink_status: SinkStatus | None = None,
    with_rm_api: bool = True,
    controls: ControlPublisher | None = None,
) -> web.Application:
    """The HTTP app. Without principals (or OIDC) every /api request is 401.

    `with_rm_api=False` serves only the ops routes (health, readiness, metrics).
    """
    settings = settings if settings is not None else Settings()
    app = web.Application(middlewares=[_errors, _auth], client_max_size=MAX_BODY_BYTES * 4)
    app.on_response_prepare.append(_security_headers)
    app[STORE_KEY] = store
    gate = Gatekeeper(store, principals if principals is not None else Principals([]), teams or Teams(), settings, oidc)
    app[GATE_KEY] = gate
    if sink_status is not None:
        app[SINK_STATUS_KEY] = sink_status
    if controls is not None:
        app[CONTROLS_KEY] = controls
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics_page)
    if with_rm_api:
        waker = app[FEED_KEY] = FeedWaker(store)

        async def close_streams(app: web.Application) -> None:
            await waker.close()

        app.on_shutdown.append(close_streams)
        app.router.add_get("/api/alerts", list_alerts)
        app.router.add_get("/api/alerts/stream", stream_alerts)
        app.router.add_get("/api/alerts/{alert_id}", get_alert)
        app.router.add_post("/api/alerts/{alert_id}/ack", _action("ack"))
        app.router.add_post("/api/alerts/{alert_id}/resolve", _action("resolve"))
        app.router.add_post("/api/alerts/{alert_id}/dismiss", _action("dismiss"))
        app.router.add_post("/api/alerts/{alert_id}/assign", _action("assign"))
        app.router.add_get("/api/report", get_report)
        app.router.add_get("/api/clients/{client_id}", get_client)
        app.router.add_post("/api/clients/{client_id}/snoozes", add_snooze)
        app.router.add_delete("/api/clients/{client_id}/snoozes/{alert_type}", end_snooze)
        Pages(gate, oidc, default_lang=lang_of(getattr(store.rules.source, "locale", None))).routes(app)
        Workbench(
            gate,
            store,
            store.rules,
            act=act,
            report=rule_report,
            snoozes=ControlSnoozes(store, controls) if controls is not None else None,
            poll_seconds=settings.workbench_poll_seconds,
            stream_url="/api/alerts/stream",
        ).routes(app)
    return app


def gatekeeper(app: web.Application) -> Gatekeeper:
    """The app's identity service: `await gatekeeper(request.app).identify(request)` in a page handler
    gives the principal (bearer or session) and the CSRF token to embed."""
    return app[GATE_KEY]

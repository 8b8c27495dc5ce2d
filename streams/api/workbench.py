"""The RM workbench: inbox, alert page, client page, the manager's views and the rule report, as HTML.

Pages are rendered on the server with Jinja2 (autoescaping on: every value
from an event, an alert or a person is text, never markup) and work without
JavaScript; /static/workbench.js only adds live inbox updates and keyboard
shortcuts. Forms post to the workbench's own routes with the session's CSRF
token in a hidden field, run the same checks as the API (streams/api/app.py,
`act`) and answer with a redirect back to the page (post/redirect/get).
Everything a page shows goes through the caller's scope, like the API.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from typing import Any, Protocol
from urllib.parse import parse_qs, quote, urlencode

import jinja2
from aiohttp import web
from markupsafe import Markup

from handlers.access import Principal
from handlers.lifecycle import DISMISS_REASONS, NOTE_REQUIRED, RESOLVE_OUTCOMES
from handlers.ruleset import Ruleset
from handlers.sla import sla_state
from handlers.worklist import INBOX_STATUSES
from schemas.alerts import ALERT_TYPES, SNOOZABLE_TYPES
from schemas.values import SEVERITY_RANK
from streams import metrics
from streams.api.bodies import read_body
from streams.api.charts import bar_chart, per_day_chart
from streams.api.cursors import CursorError, decode_position, encode_position
from streams.api.explain import explain, money, when
from streams.api.i18n import HTML_LANG, LANGS, lang_of, name, title_for, word
from streams.api.identity import AuthFailure, Gatekeeper, Identity
from streams.sink.store import AlertStore, InboxPosition

log = logging.getLogger("clientpulse.api.workbench")

PAGE_SIZE = 50
TIMELINE_ALERTS = 100
MANAGER_LIST = 50
MAX_FORM_BYTES = 8192
SEVERITIES: tuple[str, ...] = tuple(reversed(tuple(SEVERITY_RANK)))
REPORT_DAYS = (30, 90, 365)
UNASSIGNED = "unassigned"


class Snoozes(Protocol):
    """Where a snooze goes and where active ones come from (the control topic and the store)."""

    async def snooze(
        self, principal: Principal, client_id: str, alert_type: str, until: datetime, reason: str
    ) -> None: ...

    async def active(self, client_id: str) -> list[dict[str, Any]]: ...

    async def history(self, client_id: str) -> list[dict[str, Any]]: ...


class FormError(Exception):
    """A form that cannot be acted on; the message is shown on the page it came from."""


@dataclass(frozen=True, slots=True)
class View:
    """What every page knows about its request."""

    identity: Identity
    lang: str
    now: datetime
    path: str

    @property
    def principal(self) -> Principal:
        return self.identity.principal


def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("streams.api", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["urlpart"] = lambda value: quote(str(value), safe="")
    env.filters["when"] = when
    return env


class Workbench:
    def __init__(
        self,
        gate: Gatekeeper,
        store: AlertStore,
        rules: Ruleset,
        *,
        act: Callable[[AlertStore, Principal, str, str, Mapping[str, str | None]], Awaitable[dict[str, Any]]],
        report: Callable[[AlertStore, Principal, datetime, datetime], Awaitable[dict[str, Any]]],
        snoozes: Snoozes | None = None,
        poll_seconds: float = 10.0,
        stream_url: str | None = None,
    ) -> None:
        self.poll_ms = int(poll_seconds * 1000)
        self.stream_url = stream_url
        """Server-sent events of new alerts of the caller's scope, when the API has them; else the page polls."""
        self.gate = gate
        self.store = store
        self.rules = rules
        self.act = act
        self.report_of = report
        self.snoozes = snoozes
        self.default_lang = lang_of(getattr(rules.source, "locale", None))
        self.zone = rules.timezone
        """Times are shown in the bank's time zone (the rules file's `timezone`), with their offset."""
        self.env = _environment()
        self.env.filters["when"] = lambda value: when(value, self.zone)

    def routes(self, app: web.Application) -> None:
        app.router.add_get("/", self.root)
        app.router.add_get("/inbox", self.inbox)
        app.router.add_get("/inbox/rows", self.inbox_rows)
        app.router.add_get("/alerts/{alert_id}", self.alert_page)
        app.router.add_post("/alerts/{alert_id}/{action}", self.alert_action)
        app.router.add_get("/clients/{client_id}", self.client_page)
        app.router.add_post("/clients/{client_id}/snoozes", self.client_snooze)
        app.router.add_get("/manager", self.manager)
        app.router.add_get("/report", self.report)

    # ------------------------------------------------------------------ plumbing
    def _lang(self, request: web.Request) -> str:
        for candidate in (request.query.get("lang"), request.cookies.get("lang")):
            if candidate in LANGS:
                return str(candidate)
        return self.default_lang

    async def _view(self, request: web.Request) -> View:
        try:
            identity = await self.gate.identify(request)
        except AuthFailure:
            identity = None
        if identity is None:
            raise web.HTTPSeeOther("/signin")
        return View(identity, self._lang(request), datetime.now(UTC), request.path)

    def _render(
        self, request: web.Request, view: View, template: str, status: int = 200, **context: Any
    ) -> web.Response:
        lang = view.lang
        query = {k: v for k, v in request.query.items() if k != "lang"}
        other = "zh" if lang == "en" else "en"
        page = self.env.get_template(template).render(
            lang=lang,
            html_lang=HTML_LANG[lang],
            t=lambda key, **values: word(lang, key, **values),
            n=lambda kind, value: name(lang, kind, value),
            title_of=lambda alert: title_for(alert, lang),
            badge=lambda alert: self._sla(alert, view.now),
            user=view.principal,
            csrf=view.identity.csrf_token or "",
            can_act=view.principal.can_act,
            switch_url=f"{request.path}?{urlencode({**query, 'lang': other})}",
            nav=view.path,
            **context,
        )
        response = web.Response(text=page, status=status, content_type="text/html", charset="utf-8")
        if "lang" in request.query and request.query["lang"] in LANGS:
            response.set_cookie("lang", lang, max_age=365 * 86400, path="/", samesite="Lax")
        return response

    def _sla(self, alert: Mapping[str, Any], now: datetime) -> str:
        due = alert.get("due_by")
        return sla_state(
            self.rules,
            status=str(alert["status"]),
            occurred_at=datetime.fromisoformat(alert["occurred_at"]),
            due=datetime.fromisoformat(due) if due else None,
            now=now,
            handled_at=datetime.fromisoformat(alert["acknowledged_at"]) if alert.get("acknowledged_at") else None,
        )

    async def _form(self, request: web.Request, view: View) -> dict[str, str]:
        raw = await read_body(request, MAX_FORM_BYTES, self.gate.settings.api_body_timeout)
        try:
            parsed = parse_qs(raw.decode("utf-8"), keep_blank_values=True, max_num_fields=20)
        except (UnicodeDecodeError, ValueError):
            parsed = {}
        form = {k: v[0] for k, v in parsed.items() if len(v) == 1}
        submitted = request.headers.get("X-CSRF-Token") or form.get("csrf_token")
        if not Gatekeeper.csrf_matches(view.identity, submitted):
            metrics.CSRF_REFUSED.inc()
            raise web.HTTPForbidden(
                text=self.env.get_template("message.html").render(
                    lang=view.lang,
                    html_lang=HTML_LANG[view.lang],
                    heading=word(view.lang, "error_title"),
                    message=word(view.lang, "csrf_failed"),
                ),
                content_type="text/html",
            )
        return form

    def _not_found(self, request: web.Request, view: View) -> web.Response:
        return self._render(
            request,
            view,
            "message.html",
            404,
            heading=word(view.lang, "error_title"),
            message=word(view.lang, "not_found"),
        )

    # ------------------------------------------------------------------ pages
    async def root(self, request: web.Request) -> web.StreamResponse:
        try:
            identity = await self.gate.identify(request)
        except AuthFailure:
            identity = None
        if identity is None:
            raise web.HTTPSeeOther("/signin")
        raise web.HTTPSeeOther("/manager" if identity.principal.role == "manager" else "/inbox")

    def _inbox_filters(self, request: web.Request, view: View) -> dict[str, Any]:
        def pick(key: str, allowed: Sequence[str]) -> str | None:
            value = request.query.get(key) or None
            return value if value in allowed else None

        principal = view.principal
        rm = request.query.get("rm") or None
        if principal.role == "rm" or (rm is not None and rm != UNASSIGNED and not principal.scope.allows(rm)):
            rm = None
        if rm is not None and (len(rm) > 64 or not rm.isprintable()):
            rm = None
        return {
            "type": pick("type", ALERT_TYPES),
            "severity": pick("severity", SEVERITIES),
            "status": pick("status", INBOX_STATUSES),
            "rm": rm,
        }

    async def _inbox_page(
        self, request: web.Request, view: View
    ) -> tuple[dict[str, Any], list[dict[str, Any]], str | None]:
        filters = self._inbox_filters(request, view)
        key = await self.gate.secret("cursor")
        after: InboxPosition | None = None
        cursor = request.query.get("after")
        if cursor:
            try:
                position = decode_position(key, view.principal, cursor, "inbox")
                after = (int(position[0]), position[1], position[2])  # type: ignore[misc]
            except (CursorError, ValueError, TypeError, IndexError):
                after = None
        rm = filters["rm"]
        alerts, more = await self.store.inbox(
            view.principal.scope,
            rm_ids=[rm] if rm not in (None, UNASSIGNED) else None,
            unassigned=rm == UNASSIGNED,
            statuses=(filters["status"],) if filters["status"] else INBOX_STATUSES,
            types=(filters["type"],) if filters["type"] else (),
            severities=(filters["severity"],) if filters["severity"] else (),
            limit=PAGE_SIZE,
            after=after,
        )
        next_url = None
        if more is not None:
            query = {k: v for k, v in {**filters, "after": encode_position(key, view.principal, more, "inbox")}.items()}
            next_url = "/inbox?" + urlencode({k: v for k, v in query.items() if v})
        return filters, alerts, next_url

    async def inbox(self, request: web.Request) -> web.StreamResponse:
        view = await self._view(request)
        filters, alerts, next_url = await self._inbox_page(request, view)
        rows_query = urlencode({k: v for k, v in filters.items() if v})
        rm = filters["rm"]
        if rm == UNASSIGNED:
            heading = word(view.lang, "inbox_unassigned")
        elif rm is not None:
            heading = word(view.lang, "inbox_of", rm=rm)
        elif view.principal.role == "rm":
            heading = word(view.lang, "my_inbox")
        else:
            heading = word(view.lang, "inbox_all")
        return self._render(
            request,
            view,
            "inbox.html",
            heading=heading,
            alerts=alerts,
            filters=filters,
            types=ALERT_TYPES,
            severities=SEVERITIES,
            statuses=INBOX_STATUSES,
            next_url=next_url,
            live=not request.query.get("after"),
            rows_url=f"/inbox/rows?{rows_query}" if rows_query else "/inbox/rows",
            poll_ms=self.poll_ms,
            stream_url=self.stream_url,
        )

    async def inbox_rows(self, request: web.Request) -> web.StreamResponse:
        """The first page's rows alone, for the inbox's live refresh."""
        view = await self._view(request)
        _, alerts, _ = await self._inbox_page(request, view)
        return self._render(request, view, "inbox_rows.html", alerts=alerts)

    async def _client_card(self, client_id: str) -> dict[str, Any] | None:
        snapshot = await self.store.get_client(client_id)
        if snapshot is None:
            return None
        card = dict(snapshot)
        card["aum_text"] = money(snapshot.get("aum"), self.rules.base_currency)
        return card

    async def _snoozes(self, client_id: str) -> list[dict[str, Any]]:
        return await self.snoozes.active(client_id) if self.snoozes is not None else []

    async def alert_page(self, request: web.Request) -> web.StreamResponse:
        view = await self._view(request)
        alert_id = request.match_info["alert_id"]
        alert = await self.store.get_alert(alert_id, view.principal.scope) if len(alert_id) <= 64 else None
        if alert is None:
            return self._not_found(request, view)
        card = await self._client_card(alert["client_id"])
        if card is not None and not view.principal.scope.allows(card.get("rm_id")):
            # The alert is the caller's, the client is another RM's now: show the alert, not the client.
            card = None
        return self._render(
            request,
            view,
            "alert.html",
            alert=alert,
            sentence=explain(alert, view.lang, self.rules.base_currency, self.zone),
            card=card,
            snoozes=await self._snoozes(alert["client_id"]),
            snoozable=self.snoozes is not None,
            outcomes=RESOLVE_OUTCOMES,
            reasons=DISMISS_REASONS,
            note_required=sorted(NOTE_REQUIRED),
            team=sorted(view.principal.team) if view.principal.role == "manager" else [],
            done=request.query.get("done"),
            error=request.query.get("error"),
            types=SNOOZABLE_TYPES,
            snooze_default=self._snooze_default(view),
        )

    async def alert_action(self, request: web.Request) -> web.StreamResponse:
        view = await self._view(request)
        alert_id = request.match_info["alert_id"]
        action = request.match_info["action"]
        if action not in ("ack", "resolve", "dismiss", "assign"):
            raise web.HTTPNotFound()
        form = await self._form(request, view)
        fields: dict[str, str | None] = {
            "note": form.get("note") or None,
            "outcome": form.get("outcome") or None,
            "reason": form.get("reason") or None,
            "rm_id": form.get("rm_id") or None,
        }
        back = form["next"] if form.get("next") in ("/manager", "/inbox") else f"/alerts/{quote(alert_id, safe='')}"
        from streams.api.app import ApiError, clean_note  # the API's own checks, word for word

        try:
            fields["note"] = clean_note(fields["note"])
            await self.act(self.store, view.principal, alert_id, action, fields)
        except ApiError as exc:
            if exc.http_status == 404:
                return self._not_found(request, view)
            raise web.HTTPSeeOther(_with_query(back, error=exc.message)) from None
        raise web.HTTPSeeOther(_with_query(back, done=action))

    async def client_page(self, request: web.Request) -> web.StreamResponse:
        view = await self._view(request)
        client_id = request.match_info["client_id"]
        if len(client_id) > 64:
            return self._not_found(request, view)
        scope = view.principal.scope
        card = await self._client_card(client_id)
        alerts, more = await self.store.client_timeline(client_id, scope, limit=TIMELINE_ALERTS)
        visible = scope.allows(card.get("rm_id")) if card is not None else bool(alerts)
        if not visible:
            return self._not_found(request, view)
        snoozes = await self._snoozes(client_id)
        history = await self.snoozes.history(client_id) if self.snoozes is not None else []
        return self._render(
            request,
            view,
            "client.html",
            client_id=client_id,
            card=card,
            entries=_timeline(alerts, history),
            more=more,
            limit=TIMELINE_ALERTS,
            snoozes=snoozes,
            snoozable=self.snoozes is not None,
            types=SNOOZABLE_TYPES,
            done=request.query.get("done"),
            error=request.query.get("error"),
            snooze_default=self._snooze_default(view),
        )

    def _snooze_default(self, view: View) -> str:
        """A week from today, as a date of the bank's calendar."""
        return (view.now.astimezone(self.zone) + timedelta(days=7)).strftime("%Y-%m-%d")

    async def client_snooze(self, request: web.Request) -> web.StreamResponse:
        view = await self._view(request)
        client_id = request.match_info["client_id"]
        form = await self._form(request, view)
        back = f"/clients/{quote(client_id, safe='')}"
        if form.get("next", "").startswith("/alerts/"):
            back = form["next"].split("?", 1)[0]
        if self.snoozes is None:
            raise web.HTTPSeeOther(_with_query(back, error=word(view.lang, "snooze_unavailable")))
        if not view.principal.can_act:
            raise web.HTTPSeeOther(_with_query(back, error=word(view.lang, "read_only")))
        card = await self.store.get_client(client_id)
        if card is None or not view.principal.scope.allows(card.get("rm_id")):
            return self._not_found(request, view)
        try:
            until = _parse_until(form.get("until", ""), self.zone)
            reason = (form.get("reason") or "").strip()
            await self.snoozes.snooze(view.principal, client_id, form.get("alert_type", ""), until, reason)
        except (FormError, ValueError) as exc:
            raise web.HTTPSeeOther(_with_query(back, error=str(exc))) from None
        raise web.HTTPSeeOther(_with_query(back, done="snooze"))

    async def manager(self, request: web.Request) -> web.StreamResponse:
        view = await self._view(request)
        principal = view.principal
        if principal.role == "rm":
            raise web.HTTPSeeOther("/inbox")
        scope = principal.scope
        team = sorted(principal.team)
        counts = await self.store.team_counts(scope, team, view.now) if team else {}
        unassigned, _ = await self.store.inbox(scope, unassigned=True, limit=MANAGER_LIST)
        overdue = await self.store.overdue(scope, view.now, limit=MANAGER_LIST)
        return self._render(
            request,
            view,
            "manager.html",
            team=team,
            counts=counts,
            unassigned_counts=counts.get(None),
            unassigned=unassigned,
            overdue=overdue,
            done=request.query.get("done"),
            error=request.query.get("error"),
            overdue_for=lambda alert: _hours_since(alert.get("due_by"), view.now),
        )

    async def report(self, request: web.Request) -> web.StreamResponse:
        view = await self._view(request)
        try:
            days = int(request.query.get("days", "30"))
        except ValueError:
            days = 30
        days = days if days in REPORT_DAYS else 30
        until = view.now.replace(minute=0, second=0, microsecond=0) + timedelta(hours=1)
        since = until - timedelta(days=days)
        report = await self.report_of(self.store, view.principal, since, until)
        labels = {t["type"]: name(view.lang, "type", t["type"]) for t in report["types"]}
        return self._render(
            request,
            view,
            "report.html",
            report=report,
            days=days,
            choices=REPORT_DAYS,
            since=when(since.isoformat(), self.zone),
            until=when(until.isoformat(), self.zone),
            chart_days=Markup(per_day_chart(report, labels, word(view.lang, "chart_per_day"))),
            chart_useful=Markup(
                bar_chart(
                    [(labels[t["type"]], t["useful_share"]) for t in report["types"]],
                    word(view.lang, "chart_useful"),
                    percent=True,
                )
            ),
            chart_ack=Markup(
                bar_chart(
                    [
                        (
                            labels[t["type"]],
                            t["median_seconds_to_acknowledge"] / 3600
                            if t["median_seconds_to_acknowledge"] is not None
                            else None,
                        )
                        for t in report["types"]
                    ],
                    word(view.lang, "chart_ack"),
                    unit=word(view.lang, "hours", n="").strip(),
                )
            ),
            duration=lambda seconds: _duration(view.lang, seconds),
        )


def _with_query(path: str, **values: str) -> str:
    return f"{path}?{urlencode(values)}"


def _parse_until(text: str, zone: tzinfo) -> datetime:
    """A date (the end of that day in the bank's time zone) or a time with an offset."""
    text = text.strip()
    try:
        if len(text) == 10:
            day = date.fromisoformat(text) + timedelta(days=1)
            return datetime.combine(day, time(0), tzinfo=zone)
        value = datetime.fromisoformat(text)
    except ValueError:
        raise FormError(f"until: not a date: {text!r}") from None
    return value if value.tzinfo is not None else value.replace(tzinfo=zone)


def _hours_since(iso: str | None, now: datetime) -> float:
    if not iso:
        return 0.0
    return max(0.0, (now - datetime.fromisoformat(iso)).total_seconds() / 3600)


def _duration(lang: str, seconds: float | None) -> str:
    if seconds is None:
        return "\u2013"
    if seconds < 3600:
        return word(lang, "minutes", n=f"{seconds / 60:.0f}")
    return word(lang, "hours", n=f"{seconds / 3600:.1f}")


def _timeline(alerts: list[dict[str, Any]], snoozes: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Every alert (as raised) and every change of it, and every snooze, newest first."""
    entries: list[dict[str, Any]] = []
    for alert in alerts:
        entries.append({"at": alert["occurred_at"], "kind": "raised", "alert": alert, "event": None})
        for event in alert.get("events", []):
            if event["action"] == "created":
                continue
            entries.append({"at": event["at"], "kind": event["action"], "alert": alert, "event": event})
    for snooze in snoozes:
        entries.append({"at": snooze["at"], "kind": snooze.get("kind", "snooze"), "alert": None, "event": snooze})
    entries.sort(key=lambda e: datetime.fromisoformat(e["at"]), reverse=True)
    return entries

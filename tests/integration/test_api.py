"""The RM API over HTTP on a real PostgreSQL: authentication, per-RM isolation, lifecycle, pagination (newest first
and by priority), bad input."""

from __future__ import annotations

import json
import random
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any
from urllib.parse import quote

import pytest
from aiohttp import ClientResponse
from aiohttp.test_utils import TestClient

from schemas.snapshot import ClientSnapshot
from streams.api.app import create_api
from streams.api.auth import Principals, Scope, TokenEntry, hash_token
from streams.sink.store import AlertStore
from tests.integration.api_support import ApiTestServer, api_settings
from tests.integration.test_store import T0, make_alert

pytestmark = pytest.mark.db


@dataclass
class World:
    """One test's RMs, clients and tokens (unique ids: the database is shared by the session)."""

    client: TestClient[Any, Any]
    store: AlertStore
    rm_a: str
    rm_b: str
    rm_c: str
    tokens: dict[str, str]

    def auth(self, who: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[who]}"}

    async def get(self, who: str, path: str, **params: Any) -> ClientResponse:
        return await self.client.get(path, headers=self.auth(who), params=params or None)

    async def post(self, who: str, path: str, body: Any = None, raw: bytes | None = None) -> ClientResponse:
        if raw is not None:
            return await self.client.post(path, headers=self.auth(who), data=raw)
        return await self.client.post(path, headers=self.auth(who), json=body)


@pytest.fixture
async def world(database_url: str) -> AsyncIterator[World]:
    tag = uuid.uuid4().hex[:6]
    rm_a, rm_b, rm_c = f"rm-a-{tag}", f"rm-b-{tag}", f"rm-c-{tag}"
    tokens = {name: f"token-{name}-{uuid.uuid4().hex}" for name in ("alice", "bob", "maria", "olga")}
    entries = [
        TokenEntry(name="alice", role="rm", rm_id=rm_a, hash=hash_token(tokens["alice"], log2_n=10)),
        TokenEntry(name="bob", role="rm", rm_id=rm_b, hash=hash_token(tokens["bob"], log2_n=10)),
        TokenEntry(name="maria", role="manager", team=[rm_a, rm_b], hash=hash_token(tokens["maria"], log2_n=10)),
        TokenEntry(name="olga", role="ops", hash=hash_token(tokens["olga"], log2_n=10)),
    ]
    store = AlertStore(database_url)
    await store.connect()
    await store.migrate()
    app = create_api(store, Principals(entries), settings=api_settings())
    client: TestClient[Any, Any] = TestClient(ApiTestServer(app))
    await client.start_server()
    try:
        yield World(client, store, rm_a, rm_b, rm_c, tokens)
    finally:
        await client.close()
        await store.close()


async def _ok(resp: ClientResponse, status: int = 200) -> Any:
    body = await resp.json()
    assert resp.status == status, body
    return body


async def test_missing_or_wrong_tokens_get_401(world: World) -> None:
    alert = make_alert(rm_id=world.rm_a)
    await world.store.insert_alerts([alert])
    for headers in ({}, {"Authorization": "Bearer nope"}, {"Authorization": "Basic abc"}, {"Authorization": "Bearer"}):
        for path in ("/api/alerts", f"/api/alerts/{alert.alert_id}", "/api/clients/c-1"):
            resp = await world.client.get(path, headers=headers)
            body = await _ok(resp, 401)
            assert body["error"] == "unauthenticated" and body["message"]
            assert resp.headers["WWW-Authenticate"].startswith("Bearer")
        resp = await world.client.post(f"/api/alerts/{alert.alert_id}/ack", headers=headers)
        await _ok(resp, 401)
    stored = await world.store.get_alert(alert.alert_id, Scope(None, True))
    assert stored is not None and stored["status"] == "open"
    # Health, readiness and metrics need no token.
    assert (await world.client.get("/healthz")).status == 200
    assert (await world.client.get("/readyz")).status == 200
    metrics = await world.client.get("/metrics")
    assert metrics.status == 200
    assert "clientpulse_alert_store_up" in await metrics.text()


async def test_an_rm_cannot_list_read_or_act_on_another_rms_alerts(world: World) -> None:
    mine = make_alert(rm_id=world.rm_a, client_id=f"ca-{world.rm_a}")
    theirs = make_alert(rm_id=world.rm_b, client_id=f"cb-{world.rm_b}")
    nobody = make_alert(rm_id=None)
    await world.store.insert_alerts([mine, theirs, nobody])
    await world.store.upsert_snapshots(
        [
            ClientSnapshot(client_id=mine.client_id, aum="1.00", rm_id=world.rm_a),  # type: ignore[arg-type]
            ClientSnapshot(client_id=theirs.client_id, aum="2.00", rm_id=world.rm_b),  # type: ignore[arg-type]
        ]
    )

    listed = await _ok(await world.get("alice", "/api/alerts", limit="200"))
    ids = {a["alert_id"] for a in listed["alerts"]}
    assert ids == {mine.alert_id}
    assert (await _ok(await world.get("alice", "/api/alerts", rm_id=world.rm_b)))["alerts"] == []
    assert (await _ok(await world.get("alice", "/api/alerts", rm_id="unassigned")))["alerts"] == []
    assert (await _ok(await world.get("alice", "/api/alerts", client_id=theirs.client_id)))["alerts"] == []

    for alert in (theirs, nobody):
        body = await _ok(await world.get("alice", f"/api/alerts/{alert.alert_id}"), 404)
        assert body["error"] == "not_found"
        for action, payload in (
            ("ack", None),
            ("resolve", {"outcome": "contacted"}),
            ("dismiss", {"reason": "not_relevant", "note": "not mine"}),
        ):
            await _ok(await world.post("alice", f"/api/alerts/{alert.alert_id}/{action}", payload), 404)
        # Assigning is a manager's: refused by role for any alert, so the answer says nothing about this one.
        forbidden = await _ok(await world.post("alice", f"/api/alerts/{alert.alert_id}/assign", {"rm_id": "x"}), 403)
        assert forbidden["message"] == "only managers assign alerts"
    # The answer for another RM's alert is exactly the answer for an alert that does not exist.
    missing = await _ok(await world.get("alice", "/api/alerts/does-not-exist"), 404)
    hidden = await _ok(await world.get("alice", f"/api/alerts/{theirs.alert_id}"), 404)
    assert missing.keys() == hidden.keys()

    await _ok(await world.get("alice", f"/api/clients/{theirs.client_id}"), 404)
    page = await _ok(await world.get("alice", f"/api/clients/{mine.client_id}"))
    assert page["client"]["rm_id"] == world.rm_a
    assert [a["alert_id"] for a in page["recent_alerts"]] == [mine.alert_id]

    untouched = await _ok(await world.get("bob", f"/api/alerts/{theirs.alert_id}"))
    assert untouched["status"] == "open" and len(untouched["events"]) == 1
    assert {a["alert_id"] for a in (await _ok(await world.get("bob", "/api/alerts")))["alerts"]} == {theirs.alert_id}


async def test_managers_see_their_team_and_the_unassigned_and_ops_see_all_read_only(world: World) -> None:
    a, b, c, none = (
        make_alert(rm_id=world.rm_a),
        make_alert(rm_id=world.rm_b),
        make_alert(rm_id=world.rm_c),
        make_alert(rm_id=None),
    )
    await world.store.insert_alerts([a, b, c, none])

    team = await _ok(await world.get("maria", "/api/alerts", limit="200"))
    team_ids = {x["alert_id"] for x in team["alerts"]}
    assert {a.alert_id, b.alert_id, none.alert_id} <= team_ids and c.alert_id not in team_ids
    await _ok(await world.get("maria", f"/api/alerts/{c.alert_id}"), 404)
    await _ok(await world.post("maria", f"/api/alerts/{c.alert_id}/ack"), 404)
    unassigned = await _ok(await world.get("maria", "/api/alerts", rm_id="unassigned", limit="200"))
    assert none.alert_id in {x["alert_id"] for x in unassigned["alerts"]}
    assert all(x["rm_id"] is None for x in unassigned["alerts"])
    acked = await _ok(await world.post("maria", f"/api/alerts/{b.alert_id}/ack", {"note": "on it"}))
    assert acked["events"][-1] == {**acked["events"][-1], "actor": "maria", "actor_role": "manager", "note": "on it"}
    await _ok(
        await world.post("maria", f"/api/alerts/{none.alert_id}/dismiss", {"reason": "duplicate", "note": "test"})
    )

    everything = await _ok(await world.get("olga", "/api/alerts", rm_id=world.rm_c))
    assert [x["alert_id"] for x in everything["alerts"]] == [c.alert_id]
    assert (await _ok(await world.get("olga", f"/api/alerts/{a.alert_id}")))["status"] == "open"
    for action, payload in (
        ("ack", {"note": "x"}),
        ("resolve", {"outcome": "sold"}),
        ("dismiss", {"reason": "duplicate"}),
        ("assign", {"rm_id": world.rm_a}),
    ):
        body = await _ok(await world.post("olga", f"/api/alerts/{a.alert_id}/{action}", payload), 403)
        assert "read-only" in body["message"]
    assert (await _ok(await world.get("olga", f"/api/alerts/{a.alert_id}")))["status"] == "open"


async def test_lifecycle_over_http(world: World) -> None:
    first, second = make_alert(rm_id=world.rm_a), make_alert(rm_id=world.rm_a)
    await world.store.insert_alerts([first, second])
    path = f"/api/alerts/{first.alert_id}"

    conflict = await _ok(await world.post("alice", f"{path}/resolve", {"outcome": "contacted"}), 409)
    assert conflict["error"] == "invalid_transition" and conflict["status"] == "open"
    assert "cannot resolve an alert that is open" in conflict["message"]

    assert (await _ok(await world.post("alice", f"{path}/ack")))["status"] == "acknowledged"
    again = await _ok(await world.post("alice", f"{path}/ack"), 409)
    assert again["status"] == "acknowledged"
    no_outcome = await _ok(await world.post("alice", f"{path}/resolve", {"note": "client called back"}), 400)
    assert "contacted, retained, sold, no_action_needed" in no_outcome["message"]
    await _ok(await world.post("alice", f"{path}/resolve", {"outcome": "won"}), 400)
    resolved = await _ok(
        await world.post("alice", f"{path}/resolve", {"outcome": "retained", "note": "client called back"})
    )
    assert resolved["status"] == "resolved" and resolved["outcome"] == "retained"
    assert resolved["acknowledged_at"] is not None and resolved["closed_at"] is not None
    await _ok(await world.post("alice", f"{path}/dismiss", {"reason": "duplicate", "note": "late"}), 409)

    trail = (await _ok(await world.get("alice", path)))["events"]
    assert [(e["from"], e["to"], e["actor"]) for e in trail] == [
        (None, "open", "clientpulse"),
        ("open", "acknowledged", "alice"),
        ("acknowledged", "resolved", "alice"),
    ]
    assert trail[-1]["note"] == "client called back" and trail[-1]["outcome"] == "retained"
    assert [e["action"] for e in trail] == ["created", "ack", "resolve"]

    other = f"/api/alerts/{second.alert_id}"
    missing_reason = await _ok(await world.post("alice", f"{other}/dismiss"), 400)
    assert "false_positive, not_relevant, duplicate, unreachable" in missing_reason["message"]
    # A false positive needs a note saying why; white space is no note.
    for note in (None, "   "):
        body = {"reason": "false_positive", **({"note": note} if note is not None else {})}
        assert "note" in (await _ok(await world.post("alice", f"{other}/dismiss", body), 400))["message"]
    await _ok(await world.post("alice", f"{other}/dismiss", {"reason": "duplicate", "extra": 1}), 400)
    dismissed = await _ok(
        await world.post("alice", f"{other}/dismiss", {"reason": "false_positive", "note": "already handled by phone"})
    )
    assert dismissed["status"] == "dismissed" and dismissed["events"][-1]["note"] == "already handled by phone"
    assert dismissed["outcome"] == "false_positive" and dismissed["events"][-1]["outcome"] == "false_positive"

    by_status = await _ok(await world.get("alice", "/api/alerts", status="resolved,dismissed"))
    assert {x["alert_id"] for x in by_status["alerts"]} == {first.alert_id, second.alert_id}
    assert (await _ok(await world.get("alice", "/api/alerts", status="open")))["alerts"] == []


async def test_pagination_has_no_duplicates_or_gaps_while_alerts_arrive(world: World) -> None:
    # 30 alerts, three per minute (ties broken by alert_id).
    original = [make_alert(f"{world.rm_a}-{i:03d}", rm_id=world.rm_a, minute=i // 3) for i in range(30)]
    await world.store.insert_alerts(original)
    seen: list[dict[str, Any]] = []
    late_old: list[str] = []
    fresh: list[str] = []
    cursor: str | None = None
    pages = 0
    while True:
        params = {"rm_id": world.rm_a, "limit": "7", **({"cursor": cursor} if cursor else {})}
        page = await _ok(await world.get("alice", "/api/alerts", **params))
        seen.extend(page["alerts"])
        pages += 1
        # Between pages: a newer alert, an older one, and one tied with the last seen time.
        newer = make_alert(rm_id=world.rm_a, minute=1000 + pages)
        older = make_alert(rm_id=world.rm_a, minute=-100 - pages)
        await world.store.insert_alerts([newer, older])
        fresh.append(newer.alert_id)
        late_old.append(older.alert_id)
        cursor = page["next_cursor"]
        if cursor is None:
            break
        assert pages < 50
    ids = [x["alert_id"] for x in seen]
    assert len(ids) == len(set(ids)), "an alert was listed twice"
    assert {a.alert_id for a in original} <= set(ids), "an alert present from the start was skipped"
    assert not set(fresh) & set(ids)  # newer than the first page: the caller refreshes the top to see them
    assert set(late_old[:-1]) <= set(ids)  # older than the cursor: they show up on a later page
    keys = [(x["occurred_at"], x["alert_id"]) for x in seen]
    assert keys == sorted(keys, reverse=True)
    assert pages >= 5


async def test_the_inbox_by_priority_then_newest_in_keyset_pages(world: World) -> None:
    severities = {100: "critical", 85: "critical", 55: "warning", 25: "info", 10: "info"}
    alerts = [
        make_alert(f"{world.rm_a}-p{i:02d}", rm_id=world.rm_a, minute=i).model_copy(
            update={"priority": priority, "severity": severities[priority]}
        )
        for i, priority in enumerate([10, 100, 55, 85, 10, 55, 25, 100, 85, 55, 10, 25])
    ]
    await world.store.insert_alerts(alerts)
    seen: list[dict[str, Any]] = []
    cursor: str | None = None
    while True:
        params = {"rm_id": world.rm_a, "sort": "priority", "limit": "5", **({"cursor": cursor} if cursor else {})}
        page = await _ok(await world.get("alice", "/api/alerts", **params))
        seen += page["alerts"]
        cursor = page["next_cursor"]
        if cursor is None:
            break
        newest_cursor = cursor
    keys = [(a["priority"], a["occurred_at"], a["alert_id"]) for a in seen]
    assert len(keys) == len(alerts) == len({k[2] for k in keys})
    assert keys == sorted(keys, reverse=True), "highest priority first, then newest"
    assert [k[0] for k in keys[:2]] == [100, 100] and keys[0][1] > keys[1][1]

    # A cursor continues only the order it was given for.
    body = await _ok(await world.get("alice", "/api/alerts", rm_id=world.rm_a, cursor=newest_cursor), 400)
    assert "sort order" in body["message"]
    newest = await _ok(await world.get("alice", "/api/alerts", rm_id=world.rm_a, limit="5"))
    body = await _ok(
        await world.get("alice", "/api/alerts", rm_id=world.rm_a, sort="priority", cursor=newest["next_cursor"]), 400
    )
    assert "sort order" in body["message"]

    critical = await _ok(await world.get("alice", "/api/alerts", rm_id=world.rm_a, severity="critical", limit="200"))
    assert sorted(a["priority"] for a in critical["alerts"]) == [85, 85, 100, 100]
    both = await _ok(await world.get("alice", "/api/alerts", rm_id=world.rm_a, severity="info,warning", limit="200"))
    assert len(both["alerts"]) == 8 and {a["severity"] for a in both["alerts"]} == {"info", "warning"}
    assert all(set(a["titles"]) == {"en", "zh-CN"} for a in seen)


async def test_client_page_shows_snapshot_and_recent_alerts(world: World) -> None:
    client_id = f"c-{world.rm_a}"
    older, newer = (
        make_alert(rm_id=world.rm_a, client_id=client_id),
        make_alert(rm_id=world.rm_a, client_id=client_id, minute=5),
    )
    await world.store.insert_alerts([older, newer])
    # Before any snapshot the client's visible alerts still open the page.
    early = await _ok(await world.get("alice", f"/api/clients/{client_id}"))
    assert early["client"] is None and len(early["recent_alerts"]) == 2
    await _ok(await world.get("bob", f"/api/clients/{client_id}"), 404)

    snapshot = ClientSnapshot.model_validate(
        {
            "client_id": client_id,
            "tier": "platinum",
            "aum": "750000.00",
            "rm_id": world.rm_b,  # reassigned to B since the alerts
            "segment": "retail",
            "last_activity": (T0 + timedelta(days=1)).isoformat(),
            "last_rm_contact": None,
            "dormant": False,
            "closed": False,
            "as_of": (T0 + timedelta(days=1)).isoformat(),
        }
    )
    await world.store.upsert_snapshots([snapshot])
    page = await _ok(await world.get("bob", f"/api/clients/{client_id}"))
    assert page["client"]["aum"] == "750000.00" and page["client"]["tier"] == "platinum"
    assert page["recent_alerts"] == []  # the alerts stay with the RM they were raised for
    await _ok(await world.get("alice", f"/api/clients/{client_id}"), 404)
    ops = await _ok(await world.get("olga", f"/api/clients/{client_id}"))
    assert [a["alert_id"] for a in ops["recent_alerts"]] == [newer.alert_id, older.alert_id]
    await _ok(await world.get("olga", "/api/clients/c-nobody-knows"), 404)


@pytest.mark.parametrize(
    ("query", "fragment"),
    [
        ({"status": "closed"}, "status"),
        ({"type": "weather"}, "type"),
        ({"limit": "0"}, "limit"),
        ({"limit": "201"}, "limit"),
        ({"limit": "ten"}, "limit"),
        ({"since": "yesterday"}, "since"),
        ({"since": "2026-03-01T00:00:00"}, "offset"),
        ({"limit": "\u00b2"}, "limit"),
        ({"limit": "0000000000001"}, "limit"),
        ({"cursor": "!!!"}, "cursor"),
        ({"cursor": "WyJ4Il0"}, "cursor"),  # valid base64 of a wrong shape
        ({"cursor": "WyIyMDI2LTAzLTAxVDEwOjAwOjAwKzAwOjAwIiwiYS0xIl0"}, "cursor"),  # an unsigned position
        ({"cursor": ""}, "cursor"),
        ({"colour": "red"}, "unknown query parameter"),
        ({"sort": "oldest"}, "sort"),
        ({"sort": "priority", "cursor": "x.y"}, "cursor"),
        ({"severity": "fatal"}, "severity"),
        ({"severity": "Critical"}, "severity"),
        ({"rm_id": "x" * 65}, "rm_id"),
        ({"client_id": "a\x01b"}, "client_id"),
    ],
)
async def test_bad_list_queries_get_400(world: World, query: dict[str, str], fragment: str) -> None:
    body = await _ok(await world.get("olga", "/api/alerts", **query), 400)
    assert body["error"] == "bad_request" and fragment in body["message"]


async def test_since_accepts_offsets_even_with_an_unencoded_plus(world: World) -> None:
    alert = make_alert(rm_id=world.rm_a, minute=60)
    await world.store.insert_alerts([alert])
    for raw in ("2026-03-01T11:00:00Z", "2026-03-01T19:00:00%2B08:00", "2026-03-01T11:00:00+00:00"):
        resp = await world.client.get(f"/api/alerts?rm_id={world.rm_a}&since={raw}", headers=world.auth("alice"))
        assert [a["alert_id"] for a in (await _ok(resp))["alerts"]] == [alert.alert_id], raw
    resp = await world.client.get(f"/api/alerts?rm_id={world.rm_a}&rm_id=x", headers=world.auth("alice"))
    assert "once" in (await _ok(resp, 400))["message"]


@pytest.mark.parametrize(
    ("raw", "fragment"),
    [
        (b"{not json", "not valid JSON"),
        (b"[1, 2]", "JSON object"),
        (b'"note"', "JSON object"),
        (b'{"note": 5}', "string"),
        (b'{"note": "x", "reason": "y"}', "unknown field"),
        (b'{"note": "' + b"x" * 2001 + b'"}', "at most"),
        (b'{"note": "a\\u0000b"}', "control characters"),
        (b"\xff\xfe", "not valid JSON"),
    ],
)
async def test_malformed_bodies_get_400(world: World, raw: bytes, fragment: str) -> None:
    alert = make_alert(rm_id=world.rm_a)
    await world.store.insert_alerts([alert])
    body = await _ok(await world.post("alice", f"/api/alerts/{alert.alert_id}/ack", raw=raw), 400)
    assert fragment in body["message"]
    assert (await _ok(await world.get("alice", f"/api/alerts/{alert.alert_id}")))["status"] == "open"


@pytest.mark.parametrize(
    "path",
    [
        "/api/alerts/" + "x" * 65,
        "/api/alerts/a%00b",
        "/api/alerts/a%01b/ack",
        "/api/clients/" + "c" * 65,
        "/api/clients/%7F",
    ],
)
async def test_malformed_ids_get_400(world: World, path: str) -> None:
    if path.endswith("/ack"):
        resp = await world.client.post(path, headers=world.auth("alice"))
    else:
        resp = await world.client.get(path, headers=world.auth("alice"))
    body = await _ok(resp, 400)
    assert body["error"] == "bad_request" and "control characters" in body["message"]


async def test_unknown_routes_methods_and_huge_bodies_are_json_errors(world: World) -> None:
    body = await _ok(await world.get("alice", "/api/nothing-here"), 404)
    assert body["error"] == "not_found"
    resp = await world.client.delete("/api/alerts/x", headers=world.auth("alice"))
    assert (await _ok(resp, 405))["error"] == "method_not_allowed"
    alert = make_alert(rm_id=world.rm_a)
    await world.store.insert_alerts([alert])
    huge = b'{"note": "' + b"x" * 100_000 + b'"}'
    resp = await world.post("alice", f"/api/alerts/{alert.alert_id}/ack", raw=huge)
    assert resp.status == 413
    assert (await resp.json())["error"] == "body_too_large"


async def test_database_unreachable_is_503_not_500() -> None:
    down = AlertStore("postgresql://postgres@127.0.0.1:1/none", connect_timeout=1)
    token = f"tok-{uuid.uuid4().hex}"
    principals = Principals([TokenEntry(name="olga", role="ops", hash=hash_token(token, log2_n=10))])
    async with TestClient(ApiTestServer(create_api(down, principals, settings=api_settings()))) as client:
        ready = await client.get("/readyz")
        assert ready.status == 503 and (await ready.json())["status"] == "unavailable"
        resp = await client.get("/api/alerts", headers={"Authorization": f"Bearer {token}"})
        assert resp.status == 503 and (await resp.json())["error"] == "unavailable"
        health = await client.get("/healthz")
        assert (await health.json())["store"] == "down"


async def test_random_input_never_gets_a_500(world: World) -> None:
    rnd = random.Random(20260301)
    alphabet = [chr(i) for i in range(0, 0x3000, 7)] + ["\ud800", "%", "&", "=", "+", "/", "?", "#", "\\", '"']
    keys = ["rm_id", "status", "type", "severity", "sort", "since", "limit", "cursor", "client_id", "overdue"]
    for _ in range(100):
        text = "".join(rnd.choice(alphabet) for _ in range(rnd.randint(0, 80)))
        quoted = quote(text, safe="", errors="surrogatepass")
        body = rnd.choice(
            [
                text.encode("utf-8", "surrogatepass"),
                json.dumps({"note": text}).encode(),
                json.dumps({"outcome": text, "reason": text, "rm_id": text}).encode(),
            ]
        )
        who = rnd.choice(["alice", "maria", "olga"])
        for method, url, data in (
            ("GET", f"/api/alerts?{rnd.choice(keys)}={quoted}", None),
            ("GET", f"/api/alerts/{quoted}", None),
            ("GET", f"/api/clients/{quoted}", None),
            ("POST", f"/api/alerts/{quoted}/{rnd.choice(['ack', 'resolve', 'dismiss', 'assign'])}", body),
            ("GET", f"/api/report?{rnd.choice(['since', 'until', 'x'])}={quoted}", None),
        ):
            resp = await world.client.request(method, url, headers=world.auth(who), data=data)
            assert resp.status < 500, (method, url, data, await resp.text())
            payload = await resp.json()
            if resp.status >= 400:
                assert payload["error"] and payload["message"]


async def test_managers_assign_unassigned_alerts_to_their_team_and_the_rm_then_owns_them(world: World) -> None:
    orphan, team_alert, closed = make_alert(rm_id=None), make_alert(rm_id=world.rm_a), make_alert(rm_id=None)
    await world.store.insert_alerts([orphan, team_alert, closed])
    await _ok(await world.get("bob", f"/api/alerts/{orphan.alert_id}"), 404)
    # Only managers assign, only to their own team, only visible alerts that are not closed.
    await _ok(await world.post("alice", f"/api/alerts/{team_alert.alert_id}/assign", {"rm_id": world.rm_a}), 403)
    outside = await _ok(await world.post("maria", f"/api/alerts/{orphan.alert_id}/assign", {"rm_id": world.rm_c}), 403)
    assert "not an RM of your team" in outside["message"]
    await _ok(await world.post("maria", f"/api/alerts/{orphan.alert_id}/assign", {}), 400)
    await _ok(await world.post("maria", f"/api/alerts/{closed.alert_id}/dismiss", {"reason": "duplicate"}))
    refused = await _ok(await world.post("maria", f"/api/alerts/{closed.alert_id}/assign", {"rm_id": world.rm_b}), 409)
    assert refused["status"] == "dismissed"

    given = await _ok(
        await world.post("maria", f"/api/alerts/{orphan.alert_id}/assign", {"rm_id": world.rm_b, "note": "yours"})
    )
    assert given["rm_id"] == world.rm_b and given["status"] == "open"
    last = given["events"][-1]
    assert (last["action"], last["actor"], last["assigned_from"], last["assigned_to"], last["note"]) == (
        "assign",
        "maria",
        None,
        world.rm_b,
        "yours",
    )
    mine = await _ok(await world.get("bob", "/api/alerts", limit="200"))
    assert orphan.alert_id in {a["alert_id"] for a in mine["alerts"]}
    assert (await _ok(await world.post("bob", f"/api/alerts/{orphan.alert_id}/ack")))["status"] == "acknowledged"
    # Reassigning within the team moves it again; the trail keeps both moves.
    moved = await _ok(await world.post("maria", f"/api/alerts/{orphan.alert_id}/assign", {"rm_id": world.rm_a}))
    assert [(e["assigned_from"], e["assigned_to"]) for e in moved["events"] if e["action"] == "assign"] == [
        (None, world.rm_b),
        (world.rm_b, world.rm_a),
    ]
    await _ok(await world.get("bob", f"/api/alerts/{orphan.alert_id}"), 404)


async def test_overdue_and_severity_filters_and_the_rule_report(world: World) -> None:
    # T0 is long past: every open alert of these types is overdue; a closed one is not.
    late, handled = make_alert(rm_id=world.rm_a), make_alert(rm_id=world.rm_a, type_="complaint")
    await world.store.insert_alerts([late, handled])
    await _ok(await world.post("alice", f"/api/alerts/{handled.alert_id}/ack"))
    overdue = await _ok(await world.get("alice", "/api/alerts", overdue="true", limit="200"))
    assert [a["alert_id"] for a in overdue["alerts"]] == [late.alert_id]
    assert overdue["alerts"][0]["due_by"] == (T0 + timedelta(hours=24)).isoformat()
    await _ok(await world.get("alice", "/api/alerts", overdue="yes"), 400)
    assert (await _ok(await world.get("alice", "/api/alerts", severity="info")))["alerts"] == []
    await _ok(await world.get("alice", "/api/alerts", severity="urgent"), 400)

    await _ok(await world.post("alice", f"/api/alerts/{handled.alert_id}/resolve", {"outcome": "contacted"}))
    report = await _ok(
        await world.get("alice", "/api/report", since="2026-03-01T00:00:00Z", until="2026-03-02T00:00:00Z")
    )
    assert report["days"] == ["2026-03-01"]
    by_type = {t["type"]: t for t in report["types"]}
    assert set(by_type) == {"large_outflow", "complaint"}
    assert by_type["complaint"]["closed"] == 1 and by_type["complaint"]["useful_share"] == 1.0
    assert by_type["large_outflow"]["acknowledged_within_sla"] == 0.0  # due 24 h after T0, still open
    assert by_type["complaint"]["acknowledged_within_sla"] == 0.0  # acknowledged today, long after due_by
    assert by_type["large_outflow"]["per_day"] == [{"day": "2026-03-01", "alerts": 1}]
    # Bob sees none of alice's alerts in his report.
    assert (await _ok(await world.get("bob", "/api/report", since="2026-03-01T00:00:00Z")))["types"] == []
    # A period the other way round is empty; one longer than 366 days is cut to the last 366.
    empty = await _ok(
        await world.get("alice", "/api/report", since="2026-03-02T00:00:00Z", until="2026-03-01T00:00:00Z")
    )
    assert empty["days"] == [] and empty["types"] == []
    long = await _ok(
        await world.get("alice", "/api/report", since="2020-01-01T00:00:00Z", until="2026-03-02T00:00:00Z")
    )
    assert long["since"] == "2025-03-01T00:00:00+00:00" and len(long["days"]) == 366
    await _ok(await world.get("alice", "/api/report", since="yesterday"), 400)
    await _ok(await world.get("alice", "/api/report", days="7"), 400)

"""Snoozes over the RM API on a real PostgreSQL (docs/api.md, "Snoozes"): who may snooze what, the checks, the
audit trail with actor, role and reason, and the outbox while no broker takes the control events.

The API here has no broker to publish to (its bootstrap address refuses
connections): every snooze is recorded and answered 202, waiting to be
published. tests/integration/test_snoozes_stream.py publishes them to a real
broker and a real worker.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg  # type: ignore[import-untyped]
import pytest
from aiohttp import ClientResponse
from aiohttp.test_utils import TestClient

from schemas.controls import ControlEvent
from schemas.snapshot import ClientSnapshot
from streams.api.app import create_api
from streams.api.auth import Principals, TokenEntry, hash_token
from streams.sink.controls import ControlPublisher
from streams.sink.store import AlertStore
from tests.integration.api_support import ApiTestServer, api_settings

pytestmark = pytest.mark.db


@dataclass
class Desk:
    client: TestClient[Any, Any]
    store: AlertStore
    client_id: str
    tokens: dict[str, str]

    def auth(self, who: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[who]}"}

    async def snooze(self, who: str, body: Any, client_id: str | None = None) -> ClientResponse:
        path = f"/api/clients/{client_id or self.client_id}/snoozes"
        return await self.client.post(path, headers=self.auth(who), json=body)

    async def unsnooze(self, who: str, alert_type: str, body: Any = None) -> ClientResponse:
        path = f"/api/clients/{self.client_id}/snoozes/{alert_type}"
        return await self.client.delete(path, headers=self.auth(who), json=body)

    async def page(self, who: str) -> dict[str, Any]:
        resp = await self.client.get(f"/api/clients/{self.client_id}", headers=self.auth(who))
        assert resp.status == 200, await resp.text()
        return dict(await resp.json())


@pytest.fixture
async def desk(database_url: str) -> AsyncIterator[Desk]:
    tag = uuid.uuid4().hex[:6]
    rm_a, rm_b = f"rm-a-{tag}", f"rm-b-{tag}"
    tokens = {name: f"token-{name}-{uuid.uuid4().hex}" for name in ("alice", "bob", "maria", "olga")}
    entries = [
        TokenEntry(name="alice", role="rm", rm_id=rm_a, hash=hash_token(tokens["alice"], log2_n=10)),
        TokenEntry(name="bob", role="rm", rm_id=rm_b, hash=hash_token(tokens["bob"], log2_n=10)),
        TokenEntry(name="maria", role="manager", team=[rm_a], hash=hash_token(tokens["maria"], log2_n=10)),
        TokenEntry(name="olga", role="ops", hash=hash_token(tokens["olga"], log2_n=10)),
    ]
    store = AlertStore(database_url)
    await store.connect()
    await store.migrate()
    client_id = f"c-{tag}"
    await store.upsert_snapshots([ClientSnapshot(client_id=client_id, aum="1.00", rm_id=rm_a)])  # type: ignore[arg-type]
    settings = api_settings(kafka_bootstrap="127.0.0.1:1")  # nothing listens there
    publisher = ControlPublisher(settings, store, retry_seconds=3600)
    await publisher.start()
    app = create_api(store, Principals(entries), settings=settings, controls=publisher)
    client: TestClient[Any, Any] = TestClient(ApiTestServer(app))
    await client.start_server()
    try:
        yield Desk(client, store, client_id, tokens)
    finally:
        await client.close()
        await publisher.stop()
        await store.close()


async def _ok(resp: ClientResponse, status: int) -> Any:
    body = await resp.json()
    assert resp.status == status, body
    return body


def _until(days: float) -> str:
    return (datetime.now(UTC) + timedelta(days=days)).isoformat()


async def test_a_snooze_is_recorded_with_actor_role_and_reason_and_waits_for_the_broker(desk: Desk) -> None:
    body = await _ok(
        await desk.snooze("alice", {"type": "large_outflow", "until": _until(7), "reason": "  planned transfer  "}),
        202,
    )
    assert body["published"] is False
    record = body["snooze"]
    assert record["kind"] == "snooze" and record["alert_type"] == "large_outflow"
    assert (record["actor"], record["actor_role"], record["reason"]) == ("alice", "rm", "planned transfer")
    assert record["published_at"] is None
    assert datetime.fromisoformat(record["until"]) > datetime.now(UTC) + timedelta(days=6)

    await _ok(await desk.snooze("maria", {"type": "dormancy", "until": _until(30), "reason": "client abroad"}), 202)
    page = await desk.page("alice")
    assert [(s["alert_type"], s["actor"], s["actor_role"]) for s in page["snoozes"]] == [
        ("large_outflow", "alice", "rm"),
        ("dormancy", "maria", "manager"),
    ]
    assert [s["kind"] for s in page["snooze_history"]] == ["snooze", "snooze"]

    ended = await _ok(await desk.unsnooze("maria", "large_outflow", {"reason": "transfer done"}), 202)
    assert (ended["snooze"]["kind"], ended["snooze"]["reason"], ended["snooze"]["until"]) == (
        "unsnooze",
        "transfer done",
        None,
    )
    page = await desk.page("maria")
    assert [s["alert_type"] for s in page["snoozes"]] == ["dormancy"]
    assert [(s["kind"], s["alert_type"]) for s in page["snooze_history"]] == [
        ("unsnooze", "large_outflow"),
        ("snooze", "dormancy"),
        ("snooze", "large_outflow"),
    ]
    await _ok(await desk.unsnooze("alice", "large_outflow"), 404)  # none in force any more
    await _ok(await desk.unsnooze("alice", "low_satisfaction"), 404)

    # The outbox: three control events, valid for the workers, in the order they were given.
    async with desk.store._require().acquire() as conn:
        rows = await conn.fetch(
            "SELECT event, published_at FROM client_controls WHERE client_id = $1 ORDER BY id", desk.client_id
        )
    events = [ControlEvent.model_validate_json(r["event"]) for r in rows]
    assert [(e.kind, e.alert_type, e.actor) for e in events] == [
        ("snooze", "large_outflow", "alice"),
        ("snooze", "dormancy", "maria"),
        ("unsnooze", "large_outflow", "maria"),
    ]
    assert all(r["published_at"] is None for r in rows)
    assert await desk.store.unpublished_controls() >= 3


async def test_who_may_snooze(desk: Desk) -> None:
    snooze = {"type": "large_inflow", "until": _until(3), "reason": "client asked for quiet"}
    await _ok(await desk.snooze("bob", snooze), 404)  # another RM's client: as if it did not exist
    await _ok(await desk.unsnooze("bob", "large_inflow"), 404)
    body = await _ok(await desk.snooze("olga", snooze), 403)
    assert body["error"] == "forbidden"
    await _ok(await desk.snooze("alice", snooze, client_id="c-nobody"), 404)
    await _ok(await desk.snooze("alice", snooze), 202)
    assert [s["alert_type"] for s in (await desk.page("olga"))["snoozes"]] == ["large_inflow"]


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        ({"type": "complaint", "until": "+3", "reason": "x"}, "complaint alerts are never snoozed"),
        ({"type": "complaint_unanswered", "until": "+3", "reason": "x"}, "never snoozed"),
        ({"type": "weather", "until": "+3", "reason": "x"}, "'weather' is not an alert type"),
        ({"until": "+3", "reason": "x"}, "type"),
        ({"type": "large_outflow", "until": "+181", "reason": "x"}, "at most 180 days"),
        ({"type": "large_outflow", "until": "-1", "reason": "x"}, "in the future"),
        ({"type": "large_outflow", "until": "2027-01-01T00:00:00", "reason": "x"}, "offset"),
        ({"type": "large_outflow", "until": "next week", "reason": "x"}, "until"),
        ({"type": "large_outflow", "reason": "x"}, "until"),
        ({"type": "large_outflow", "until": "+3"}, "reason: required"),
        ({"type": "large_outflow", "until": "+3", "reason": "   "}, "reason"),
        ({"type": "large_outflow", "until": "+3", "reason": "x" * 257}, "at most 256"),
        ({"type": "large_outflow", "until": "+3", "reason": "two\nlines"}, "one line"),
        ({"type": "large_outflow", "until": "+3", "reason": "x", "kind": "snooze"}, "unknown field"),
        ([1, 2], "JSON object"),
    ],
)
async def test_bad_snoozes_get_400(desk: Desk, body: Any, fragment: str) -> None:
    if isinstance(body, dict) and isinstance(body.get("until"), str) and body["until"][0] in "+-":
        body = {**body, "until": _until(float(body["until"]))}
    answer = await _ok(await desk.snooze("alice", body), 400)
    assert answer["error"] == "bad_request" and fragment in answer["message"], answer
    assert (await desk.page("alice"))["snooze_history"] == []


async def test_180_days_ahead_is_the_longest(desk: Desk) -> None:
    until = (datetime.now(UTC) + timedelta(days=180) - timedelta(minutes=1)).isoformat()
    await _ok(await desk.snooze("alice", {"type": "large_outflow", "until": until, "reason": "long project"}), 202)


async def test_the_trail_is_append_only(desk: Desk) -> None:
    await _ok(await desk.snooze("alice", {"type": "large_outflow", "until": _until(1), "reason": "r"}), 202)
    async with desk.store._require().acquire() as conn:
        for sql in (
            "UPDATE client_controls SET reason = 'changed' WHERE client_id = $1",
            "DELETE FROM client_controls WHERE client_id = $1",
        ):
            with pytest.raises(asyncpg.RaiseError, match="append-only"):
                await conn.execute(sql, desk.client_id)
        # only the one-time stamp of its publication may be set, once
        await conn.execute("UPDATE client_controls SET published_at = now() WHERE client_id = $1", desk.client_id)
        with pytest.raises(asyncpg.RaiseError, match="append-only"):
            await conn.execute("UPDATE client_controls SET published_at = now() WHERE client_id = $1", desk.client_id)

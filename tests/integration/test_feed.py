"""The reliable alert feed on a real PostgreSQL: store sequences, `GET /api/alerts?after=`, and the SSE stream."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest
from aiohttp import ClientResponse

from handlers.access import Scope
from streams.sink.store import AlertFilter, AlertStore
from tests.integration import test_api
from tests.integration.test_api import World, _ok
from tests.integration.test_store import make_alert

world = test_api.world
"""The API on a real database with RMs a and b, manager maria (both) and ops olga (test_api.py)."""

pytestmark = pytest.mark.db


async def test_after_returns_what_was_stored_after_a_sequence_whatever_the_event_times(world: World) -> None:
    first = make_alert(rm_id=world.rm_a, minute=600)
    late = make_alert(rm_id=world.rm_a, minute=-60 * 24 * 365)  # dated a year earlier, stored later
    clock = make_alert(rm_id=world.rm_a, minute=-5)
    other = make_alert(rm_id=world.rm_b)
    await world.store.insert_alerts([first])
    await world.store.insert_alerts([late, other])
    await world.store.insert_alerts([clock, first])  # `first` again: stored once, keeps its sequence

    everything = await _ok(await world.get("alice", "/api/alerts", after="0", limit="200"))
    ids = [a["alert_id"] for a in everything["alerts"]]
    assert ids == [first.alert_id, late.alert_id, clock.alert_id], "store order, only the caller's scope"
    seqs = [a["seq"] for a in everything["alerts"]]
    assert seqs == sorted(seqs) and len(set(seqs)) == 3 and everything["next_after"] == seqs[-1]

    rest = await _ok(await world.get("alice", "/api/alerts", after=str(seqs[0])))
    assert [a["alert_id"] for a in rest["alerts"]] == [late.alert_id, clock.alert_id]
    paged = await _ok(await world.get("alice", "/api/alerts", after=str(seqs[0]), limit="1"))
    assert [a["alert_id"] for a in paged["alerts"]] == [late.alert_id] and paged["next_after"] == seqs[1]
    caught_up = await _ok(await world.get("alice", "/api/alerts", after=str(seqs[-1])))
    assert caught_up == {"alerts": [], "next_cursor": None, "next_after": seqs[-1]}
    typed = await _ok(await world.get("alice", "/api/alerts", after="0", status="open", type="large_outflow"))
    assert len(typed["alerts"]) == 3

    # The event-time filter misses the late alert; the feed does not.
    since = await _ok(await world.get("alice", "/api/alerts", since=first.occurred_at.isoformat()))
    assert late.alert_id not in {a["alert_id"] for a in since["alerts"]}
    assert all("seq" in a for a in since["alerts"])

    for bad in ({"after": "-1"}, {"after": "x"}, {"after": "9" * 20}, {"after": "1", "cursor": "abc"}):
        body = await _ok(await world.get("alice", "/api/alerts", **bad), 400)
        assert "after" in body["message"]


async def test_sequences_never_become_visible_out_of_order_under_concurrent_writers(world: World) -> None:
    """Two stores (two sinks) insert at once while a reader follows `after`: it sees each alert once, in order."""
    second = AlertStore(world.store.dsn)
    await second.connect()
    ops = Scope(None, True)
    rm = f"{world.rm_c}-race"
    written: list[str] = []

    async def writer(store: AlertStore, tag: str) -> None:
        for batch in range(25):
            alerts = [make_alert(rm_id=rm, client_id=f"{tag}-{batch}-{i}") for i in range(4)]
            written.extend(a.alert_id for a in alerts)
            await store.insert_alerts(alerts)

    start = await world.store.latest_seq()
    seen: list[dict[str, Any]] = []
    writers = asyncio.gather(writer(world.store, "a"), writer(second, "b"))
    deadline = asyncio.get_running_loop().time() + 30
    try:
        position = start
        while not writers.done() or len(seen) < len(written):
            assert asyncio.get_running_loop().time() < deadline, f"the reader saw {len(seen)} of {len(written)}"
            page = await world.store.feed(ops, AlertFilter(rm_id=rm), after=position, limit=7)
            seen += page
            position = page[-1]["seq"] if page else position
            if not page:
                await asyncio.sleep(0.005)
            assert len(seen) <= 200
        await writers
    finally:
        await second.close()
    assert sorted(a["alert_id"] for a in seen) == sorted(written), "none missed, none twice"
    assert [a["seq"] for a in seen] == sorted(a["seq"] for a in seen)


# --------------------------------------------------------------------------- Server-Sent Events
class Events:
    """An open `GET /api/alerts/stream`, read event by event."""

    def __init__(self, resp: ClientResponse) -> None:
        self.resp = resp

    async def next(self, timeout: float = 15.0) -> tuple[int, dict[str, Any]]:
        fields: dict[str, str] = {}
        async with asyncio.timeout(timeout):
            while True:
                line = (await self.resp.content.readline()).decode().rstrip("\n")
                if line.startswith(":"):
                    continue
                if not line:
                    if "data" in fields:
                        assert fields["event"] == "alert"
                        return int(fields["id"]), orjson.loads(fields["data"])
                    fields.clear()
                    continue
                name, _, value = line.partition(": ")
                fields[name] = value


@contextlib.asynccontextmanager
async def events(world: World, who: str, **kwargs: Any) -> AsyncIterator[Events]:
    headers = {**world.auth(who), **kwargs.pop("headers", {})}
    resp = await world.client.get("/api/alerts/stream", headers=headers, params=kwargs or None)
    assert resp.status == 200, await resp.text()
    assert resp.headers["Content-Type"].startswith("text/event-stream")
    try:
        yield Events(resp)
    finally:
        resp.close()


async def test_the_stream_pushes_new_alerts_of_the_callers_scope_and_resumes_after_last_event_id(world: World) -> None:
    async with events(world, "alice") as alice, events(world, "maria") as maria:
        await asyncio.sleep(0.3)  # both streams are past their first (empty) look
        theirs = make_alert(rm_id=world.rm_b)
        mine = make_alert(rm_id=world.rm_a)
        await world.store.insert_alerts([theirs])
        await world.store.insert_alerts([mine])
        seq, alert = await alice.next()
        assert alert["alert_id"] == mine.alert_id and alert["seq"] == seq, "another RM's alert is not sent"
        got = [await maria.next(), await maria.next()]
        assert [a["alert_id"] for _, a in got] == [theirs.alert_id, mine.alert_id], "a manager's team, in order"

    later = make_alert(rm_id=world.rm_a)
    await world.store.insert_alerts([later])
    async with events(world, "alice", headers={"Last-Event-ID": str(seq)}) as resumed:
        again, alert = await resumed.next()
        assert alert["alert_id"] == later.alert_id and again > seq, "resumed after the last event seen"
    async with events(world, "alice", after="0") as replayed:
        first = [(await replayed.next())[1]["alert_id"] for _ in range(2)]
        assert first == [mine.alert_id, later.alert_id]


async def test_the_stream_needs_a_token_and_a_valid_position(world: World) -> None:
    assert (await world.client.get("/api/alerts/stream")).status == 401
    body = await _ok(await world.get("alice", "/api/alerts/stream", after="soon"), 400)
    assert "after" in body["message"]
    resp = await world.client.get("/api/alerts/stream", headers={**world.auth("alice"), "Last-Event-ID": "x"})
    assert resp.status == 400

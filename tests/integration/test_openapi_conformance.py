"""docs/openapi.yaml against the real API on a real PostgreSQL: schemathesis generates valid and invalid
requests for every operation and runs all its checks on each answer (status codes, content types,
headers, bodies, accepting what the document allows and refusing what it does not). The alert stream
never ends, so it is left out here; tests/integration/test_feed.py holds it to the document."""

from __future__ import annotations

import asyncio
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import hypothesis
import pytest
import schemathesis

from handlers.access import Principal
from schemas.snapshot import ClientSnapshot
from streams.api.app import create_api
from streams.api.auth import Principals, TokenEntry, hash_token
from streams.api.cursors import encode_cursor
from streams.api.server import ApiRunner
from streams.sink.store import AlertStore
from streams.tools.embedded import free_port
from tests.integration.api_support import api_settings
from tests.integration.test_store import make_alert
from tests.support import ROOT

pytestmark = pytest.mark.db

schema = schemathesis.openapi.from_path(ROOT / "docs" / "openapi.yaml")


@dataclass
class LiveApi:
    base_url: str
    headers: dict[str, str]
    cursor: str
    priority_cursor: str
    """A cursor of the by-priority order (sort=priority)."""


@pytest.fixture(scope="module")
def live_api(database_url: str) -> Iterator[LiveApi]:
    """The API in a thread of its own (schemathesis calls it synchronously), on a loopback port."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    port = free_port()
    token = f"tok-maria-{uuid.uuid4().hex}"
    tag = uuid.uuid4().hex[:6]
    team = [f"rm-a-{tag}", f"rm-b-{tag}"]
    maria = TokenEntry(name="maria", role="manager", team=team, hash=hash_token(token, log2_n=10))
    store = AlertStore(database_url)

    async def start() -> tuple[ApiRunner, str, str]:
        await store.connect()
        await store.migrate()
        await store.insert_alerts([make_alert(rm_id=rm, client_id=f"c-{rm}", minute=i) for i, rm in enumerate(team)])
        await store.upsert_snapshots([ClientSnapshot(client_id=f"c-{team[0]}", aum="1.00", rm_id=team[0])])  # type: ignore[arg-type]
        app = create_api(store, Principals([maria]), settings=api_settings())
        runner = ApiRunner(app, header_timeout=10)
        await runner.setup()
        from aiohttp import web

        await web.TCPSite(runner, "127.0.0.1", port).start()
        key = await store.api_secret("cursor")
        caller = Principal("maria", "manager", team=frozenset(team))
        cursor = encode_cursor(key, caller, (datetime.now(UTC), "z"))
        return runner, cursor, encode_cursor(key, caller, (100, datetime.now(UTC), "z"))

    runner, cursor, priority_cursor = asyncio.run_coroutine_threadsafe(start(), loop).result(60)
    try:
        yield LiveApi(f"http://127.0.0.1:{port}", {"Authorization": f"Bearer {token}"}, cursor, priority_cursor)
    finally:

        async def stop() -> None:
            await runner.cleanup()
            await store.close()

        asyncio.run_coroutine_threadsafe(stop(), loop).result(60)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)


@schema.exclude(operation_id="streamAlerts").parametrize()
@hypothesis.settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=list(hypothesis.HealthCheck),
    derandomize=True,
)
def test_the_api_does_what_its_openapi_document_says(case: Any, live_api: LiveApi) -> None:
    if case.query and "cursor" in case.query and case.meta is not None and case.meta.generation.mode.is_positive:
        # Any cursor the document allows is well formed, but only one this API signed is accepted.
        case.query["cursor"] = live_api.priority_cursor if case.query.get("sort") == "priority" else live_api.cursor
    both = case.query and "after" in case.query and "cursor" in case.query
    if both and case.meta is not None and case.meta.generation.mode.is_positive:
        del case.query["cursor"]  # the document says: after or cursor, not both
    positive = case.meta is not None and case.meta.generation.mode.is_positive
    if positive and isinstance(case.body, dict) and "until" in case.body and case.path.endswith("/snoozes"):
        # The document says "in the future and at most 180 days ahead", which a schema cannot express.
        case.body["until"] = (datetime.now(UTC) + timedelta(days=7)).isoformat()
    case.call_and_validate(base_url=live_api.base_url, headers=live_api.headers, allow_redirects=False)

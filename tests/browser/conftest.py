"""Browser tests: the workbench served for real (the sink's HTTP runner on a loopback port, a real PostgreSQL)
and driven by the distribution's Chromium through Playwright. No browser is ever downloaded: `make test`
installs Debian's chromium when /usr/bin/chromium is missing."""

from __future__ import annotations

import asyncio
import os
import threading
import uuid
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import pytest
from aiohttp import web

from schemas.alerts import Alert
from schemas.snapshot import ClientSnapshot
from streams.api.app import create_api
from streams.api.auth import Principals, TokenEntry, hash_token
from streams.api.server import ApiRunner
from streams.sink.controls import ControlPublisher
from streams.sink.store import AlertStore
from streams.tools.embedded import free_port
from streams.topics import ensure_topics
from tests.integration.api_support import GENEROUS
from tests.support import make_settings, unique_prefix

CHROMIUM = os.environ.get("CLIENTPULSE_CHROMIUM", "/usr/bin/chromium")
T = TypeVar("T")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/browser/" in str(item.fspath):
            item.add_marker(pytest.mark.browser)


@dataclass
class Bench:
    """The served workbench and what a test needs to drive it: tokens, the store, a way to run store calls."""

    url: str
    store: AlertStore
    tokens: dict[str, str]
    rms: dict[str, str]
    team: list[str]
    loop: asyncio.AbstractEventLoop
    tag: str
    extra: dict[str, Any] = field(default_factory=dict)

    def run(self, make: Callable[[], Awaitable[T]]) -> T:
        return asyncio.run_coroutine_threadsafe(make(), self.loop).result(60)  # type: ignore[arg-type]

    def insert(self, *alerts: Alert) -> None:
        self.run(lambda: self.store.insert_alerts(list(alerts)))

    def snapshot(self, **fields: Any) -> None:
        self.run(lambda: self.store.upsert_snapshots([ClientSnapshot.model_validate(fields)]))


@pytest.fixture(scope="session")
def chromium() -> str:
    if not Path(CHROMIUM).exists():
        pytest.fail(
            f"{CHROMIUM} is missing: `make test` installs Debian's chromium (apt-get install chromium); "
            "or set CLIENTPULSE_CHROMIUM to a Chromium binary"
        )
    return CHROMIUM


@pytest.fixture(scope="module")
def bench(database_url: str, broker: str) -> Iterator[Bench]:
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    tag = uuid.uuid4().hex[:6]
    rms = {"alice": f"rm-a-{tag}", "bob": f"rm-b-{tag}"}
    team = sorted(rms.values())
    tokens = {who: f"tok-{who}-{uuid.uuid4().hex}" for who in ("alice", "bob", "maria", "olga")}
    entries = [
        TokenEntry(name="alice", role="rm", rm_id=rms["alice"], hash=hash_token(tokens["alice"], log2_n=10)),
        TokenEntry(name="bob", role="rm", rm_id=rms["bob"], hash=hash_token(tokens["bob"], log2_n=10)),
        TokenEntry(name="maria", role="manager", team=team, hash=hash_token(tokens["maria"], log2_n=10)),
        TokenEntry(name="olga", role="ops", hash=hash_token(tokens["olga"], log2_n=10)),
    ]
    store = AlertStore(database_url)
    port = free_port()
    settings = make_settings(broker, unique_prefix(), **GENEROUS, workbench_poll_seconds=0.5)
    controls = ControlPublisher(settings, store)

    async def start() -> ApiRunner:
        await store.connect()
        await store.migrate()
        await ensure_topics(settings)
        await controls.start()
        app = create_api(store, Principals(entries), settings=settings, controls=controls)
        runner = ApiRunner(app, header_timeout=10)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        return runner

    runner = asyncio.run_coroutine_threadsafe(start(), loop).result(60)
    try:
        yield Bench(f"http://127.0.0.1:{port}", store, tokens, rms, team, loop, tag, {"settings": settings})
    finally:

        async def stop() -> None:
            await runner.cleanup()
            await controls.stop()
            await store.close()

        asyncio.run_coroutine_threadsafe(stop(), loop).result(60)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)


@pytest.fixture(scope="module")
def browser(chromium: str) -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        launched = pw.chromium.launch(
            executable_path=chromium, headless=True, args=["--no-sandbox", "--disable-background-networking"]
        )
        try:
            yield launched
        finally:
            launched.close()

"""The alert feed as Server-Sent Events: `GET /api/alerts/stream` pushes the caller's new alerts as they are stored.

Every alert has a store sequence (assigned at insert, increasing in commit
order). A stream sends each visible alert stored after the caller's position
as an event whose `id` is its sequence, so a client that reconnects with
`Last-Event-ID` (browsers do it by themselves) misses nothing and gets nothing
twice. The store NOTIFYs a channel when it stores alerts; one listening
connection per process wakes every open stream, and streams also look every
few seconds in case a notification was lost (a reconnect of the listener).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

import asyncpg  # type: ignore[import-untyped]
import orjson
from aiohttp import web

from handlers.access import Scope
from streams import metrics
from streams.sink.store import FEED_CHANNEL, AlertFilter, AlertStore

log = logging.getLogger(__name__)

FEED_PAGE = 200
"""Alerts read per query while a stream catches up."""
POLL_SECONDS = 2.0
"""A stream looks for new alerts at least this often, notified or not."""
KEEPALIVE_SECONDS = 15.0
"""A comment line after this long without events keeps proxies from closing an idle stream."""
MAX_STREAMS = 1000
"""Open streams per process; beyond, 503 with Retry-After."""
LISTEN_RETRY_SECONDS = 30.0
"""After the listening connection failed, wait this long before trying again (streams poll meanwhile)."""
RETRY_MS = 3000
"""The reconnection delay a browser's EventSource is told to use."""


class FeedWaker:
    """One LISTEN connection for the process; `wait` returns when alerts were stored or after `timeout`."""

    def __init__(self, store: AlertStore) -> None:
        self.store = store
        self.streams = 0
        self.closing = asyncio.Event()
        self.generation = 0
        """Counts the notifications: a stream that saw generation G and finds another knows to look again."""
        self._waiters: set[asyncio.Event] = set()
        self._conn: asyncpg.Connection | None = None
        self._lock = asyncio.Lock()

    async def _listen(self) -> None:
        async with self._lock:
            if self._conn is not None and not self._conn.is_closed():
                return
            try:
                self._conn = await asyncpg.connect(self.store.dsn, timeout=5)
                await self._conn.add_listener(FEED_CHANNEL, self._notified)
            except (OSError, asyncpg.PostgresError, TimeoutError) as exc:
                log.warning(
                    "alert feed: cannot listen for new alerts (%s); streams poll every %.0fs", exc, POLL_SECONDS
                )
                self._conn = None

    def _notified(self, *_args: Any) -> None:
        self.generation += 1
        for waiter in self._waiters:
            waiter.set()

    async def wait(self, seen: int, timeout: float) -> None:
        """Until a notification after generation `seen` (at once if one came already), or `timeout`."""
        await self._listen()
        if self.generation != seen or self.closing.is_set():
            return
        waiter = asyncio.Event()
        self._waiters.add(waiter)
        try:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(waiter.wait(), timeout)
        finally:
            self._waiters.discard(waiter)

    async def close(self) -> None:
        self.closing.set()
        for waiter in self._waiters:
            waiter.set()
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(Exception):
                await conn.close(timeout=2)


def _event(alert: dict[str, Any]) -> bytes:
    return b"id: %d\nevent: alert\ndata: %s\n\n" % (alert["seq"], orjson.dumps(alert))


async def stream(request: web.Request, store: AlertStore, waker: FeedWaker, scope: Scope, after: int | None) -> Any:
    """Serve one stream until the client goes away or the server stops."""
    if waker.streams >= MAX_STREAMS:
        return web.json_response(
            {"error": "unavailable", "message": f"too many open streams (at most {MAX_STREAMS}); retry later"},
            status=503,
            headers={"Retry-After": "5"},
        )
    position = after if after is not None else await store.latest_seq()
    response = web.StreamResponse(
        headers={"Content-Type": "text/event-stream", "Cache-Control": "no-store", "X-Accel-Buffering": "no"}
    )
    await response.prepare(request)
    waker.streams += 1
    metrics.API_STREAMS.set(waker.streams)
    idle = 0.0
    try:
        await response.write(b"retry: %d\n\n" % RETRY_MS)
        while not waker.closing.is_set():
            seen = waker.generation
            alerts = await store.feed(scope, AlertFilter(), after=position, limit=FEED_PAGE)
            if alerts:
                await response.write(b"".join(_event(a) for a in alerts))
                position = alerts[-1]["seq"]
                idle = 0.0
                if len(alerts) == FEED_PAGE:
                    continue
            elif idle >= KEEPALIVE_SECONDS:
                await response.write(b": keepalive\n\n")
                idle = 0.0
            started = asyncio.get_running_loop().time()
            await waker.wait(seen, POLL_SECONDS)
            idle += asyncio.get_running_loop().time() - started
    except (ConnectionResetError, asyncio.CancelledError):
        pass  # the client went away
    except Exception as exc:  # the response has started: end the stream; the client resumes with Last-Event-ID
        log.warning("alert stream ended at sequence %d: %s: %s", position, type(exc).__name__, exc)
    finally:
        waker.streams -= 1
        metrics.API_STREAMS.set(waker.streams)
    return response

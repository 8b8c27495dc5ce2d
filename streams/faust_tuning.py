"""Two adjustments to Faust's Kafka transport, installed by the worker at start.

**Eager dispatch of fetched messages.** Faust hands every fetched message to its topic callback through
`Service.wait_first(callback(message), suspend_flow.wait())`, which wraps four
awaitables in tasks and an `asyncio.wait` per message: most of the framework's
cost per message. In the usual case the callback finishes without ever
suspending (it decodes the message and puts it on a queue with room), so we run
it eagerly, as Python 3.12's eager task factory would, and only fall back to the
full race when it does suspend (flow control, a full buffer). Semantics are
unchanged: the race exists so that a suspended callback cannot block a
rebalance, and a callback that never suspends cannot block one either.

**A bounded fetch wait.** Faust fixes the consumer's fetch wait at 1.5 s; a
broker that holds a fetch for the whole wait (as the embedded one does) adds
that much latency to every alert. The worker sets it from
CLIENTPULSE_FETCH_MAX_WAIT_MS.

Both depend on faust-streaming internals; pyproject pins the 0.15 series.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any

from faust.transport.drivers import aiokafka as faust_aiokafka
from mode.services import WaitResults


async def resume(coro: Coroutine[Any, Any, Any], yielded: Any) -> Any:
    """Finish a coroutine that was started by hand and suspended on `yielded`."""
    try:
        while True:
            if yielded is None:
                await asyncio.sleep(0)  # a bare yield: give the loop one turn
            else:
                # Wait for the future the coroutine is blocked on; its result or
                # error is read by the coroutine itself when it resumes.
                yielded._asyncio_future_blocking = False
                await asyncio.wait([yielded])
            yielded = coro.send(None)
    except StopIteration as stop:
        return stop.value
    except asyncio.CancelledError:
        if isinstance(yielded, asyncio.Future):
            yielded.cancel()
        coro.close()
        raise


def _close(coros: tuple[Any, ...]) -> None:
    for coro in coros:
        if asyncio.iscoroutine(coro):
            coro.close()


class EagerConsumer(faust_aiokafka.Consumer):
    async def wait_first(self, *coros: Any, timeout: Any = None) -> WaitResults:
        first = coros[0] if coros else None
        if timeout is None and asyncio.iscoroutine(first):
            try:
                yielded = first.send(None)
            except StopIteration as stop:
                _close(coros[1:])
                return WaitResults([first], [stop.value], False)
            except BaseException:
                _close(coros[1:])
                raise
            coros = (resume(first, yielded), *coros[1:])
        return await super().wait_first(*coros, timeout=timeout)


_create_worker_consumer = faust_aiokafka.AIOKafkaConsumerThread._create_worker_consumer
_fetch_max_wait_ms: int | None = None


def _create_worker_consumer_with_fetch_wait(self: faust_aiokafka.AIOKafkaConsumerThread, transport: Any) -> Any:
    consumer = _create_worker_consumer(self, transport)
    if _fetch_max_wait_ms is not None:
        consumer._fetch_max_wait_ms = _fetch_max_wait_ms
    return consumer


def install(fetch_max_wait_ms: int) -> None:
    """Use the eager consumer and the given fetch wait (idempotent)."""
    global _fetch_max_wait_ms
    _fetch_max_wait_ms = fetch_max_wait_ms
    faust_aiokafka.Transport.Consumer = EagerConsumer
    faust_aiokafka.AIOKafkaConsumerThread._create_worker_consumer = (  # type: ignore[method-assign]
        _create_worker_consumer_with_fetch_wait
    )

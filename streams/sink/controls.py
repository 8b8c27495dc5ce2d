"""Control events from the RM API to the workers: recorded first, then published, nothing lost in between.

A snooze is kept in PostgreSQL (its audit record, which is also the outbox)
before its control event is sent to `clientpulse.controls.v1`. The API tries
to publish at once; what the broker did not take (it was down, or the sink
stopped in between) is published by a background loop, oldest first, so each
client's snoozes reach the workers in the order they were given. A control
event sent twice is one event to the workers: they drop a repeated event id.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from aiokafka import AIOKafkaProducer  # type: ignore[import-untyped]
from aiokafka.errors import KafkaError  # type: ignore[import-untyped]

from streams import metrics
from streams.kafka_client import client_kwargs
from streams.settings import Settings
from streams.sink.store import AlertStore

log = logging.getLogger(__name__)

SEND_TIMEOUT = 10.0
"""How long a request waits for the broker before answering that the snooze is recorded but not yet applied."""
RETRY_SECONDS = 5.0


class ControlPublisher:
    """Publishes the recorded control events; `start` before use, `stop` at the end.

    The producer connects on first use, and again after a failure: while the
    broker is unreachable, snoozes are still recorded (and wait in the outbox).
    """

    def __init__(self, settings: Settings, store: AlertStore, *, retry_seconds: float = RETRY_SECONDS) -> None:
        self.settings = settings
        self.store = store
        self.retry_seconds = retry_seconds
        self._producer: AIOKafkaProducer | None = None
        self._loop: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._loop = asyncio.create_task(self._publish_forever(), name="clientpulse.controls")

    async def _connected(self) -> AIOKafkaProducer:
        if self._producer is not None:
            return self._producer
        # Kafka's default partitioner (murmur2 of the key, aiokafka's default): each record lands on its
        # client's partition, as the workers check.
        producer = AIOKafkaProducer(
            **client_kwargs(self.settings),
            acks="all",
            request_timeout_ms=int(SEND_TIMEOUT * 1000),
            linger_ms=1,
        )
        try:
            async with asyncio.timeout(SEND_TIMEOUT):
                await producer.start()
        except BaseException:
            await producer.stop()
            raise
        self._producer = producer
        return producer

    async def stop(self) -> None:
        if self._loop is not None:
            self._loop.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._loop
        if self._producer is not None:
            await self._producer.stop()
        self._producer = self._loop = None

    async def _send(self, records: list[tuple[str, str, bytes]]) -> None:
        producer = await self._connected()
        topic = self.settings.controls_topic
        async with asyncio.timeout(SEND_TIMEOUT):
            futures = [await producer.send(topic, value, key=client_id.encode()) for client_id, _, value in records]
            await asyncio.gather(*futures)
        for _, kind, _ in records:
            metrics.CONTROL_EVENTS_PUBLISHED.labels(kind=kind).inc()

    async def publish(self, client_id: str) -> bool:
        """Publish the client's recorded control events now; False when the broker did not take them (yet)."""
        try:
            await self.store.publish_controls(self._send, client_id)
        except (KafkaError, OSError, TimeoutError) as exc:
            log.warning("control events not published yet (%s: %s); the sink retries", type(exc).__name__, exc)
            return False
        return True

    async def _publish_forever(self) -> None:
        while True:
            await asyncio.sleep(self.retry_seconds)
            if not self.store.migrated:
                continue  # the sink is still connecting to the database
            try:
                sent = await self.store.publish_controls(self._send)
                if sent:
                    log.info("published %d control events recorded earlier", sent)
                metrics.CONTROL_EVENTS_UNPUBLISHED.set(await self.store.unpublished_controls())
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the broker or the database is down: next round
                log.warning("control events not published (%s: %s); retrying", type(exc).__name__, exc)

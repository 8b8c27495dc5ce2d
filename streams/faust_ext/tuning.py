"""Adjustments to Faust's Kafka transport, installed by the worker at start.

**A bounded fetch wait.** Faust fixes the consumer's fetch wait at 1.5 s; a
broker that holds a fetch for the whole wait (as the embedded one does) adds
that much latency to every alert. The worker sets it from
CLIENTPULSE_FETCH_MAX_WAIT_MS.

**End offsets that table recovery can trust.** Faust recovers a table by
reading its changelog up to the end offset that ListOffsets reports. Some
Kafka-compatible brokers (the embedded Tansu among them) answer with the offset
after the *first* record of the last record batch, and the worker writes each
partition's states as one batch: recovery stopped short and a restarted or
rebalanced worker went on from stale client state although the input offsets of
the lost updates were committed. A Fetch response's high watermark is right on
those brokers, so each listed end offset is checked by fetching from just
before it (on Kafka the two agree; the check costs one small fetch per recovery).

Both depend on faust-streaming internals; pyproject pins the 0.15 series.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Mapping
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition  # type: ignore[import-untyped]
from faust.tables.recovery import Recovery
from faust.transport.drivers import aiokafka as faust_aiokafka
from faust.types import TP

log = logging.getLogger("clientpulse.worker")


_create_worker_consumer = faust_aiokafka.AIOKafkaConsumerThread._create_worker_consumer
_fetch_max_wait_ms: int | None = None


def _create_worker_consumer_with_fetch_wait(self: faust_aiokafka.AIOKafkaConsumerThread, transport: Any) -> Any:
    consumer = _create_worker_consumer(self, transport)
    if _fetch_max_wait_ms is not None:
        consumer._fetch_max_wait_ms = _fetch_max_wait_ms
    return consumer


async def fetched_end_offsets(
    bootstrap: list[str] | str, listed: Mapping[TP, int | None], timeout: float = 5.0
) -> dict[TP, int | None]:
    """`listed` end offsets, each raised to the high watermark a fetch from just before it reports."""
    ends = dict(listed)
    probes = {TopicPartition(tp.topic, tp.partition): tp for tp, end in listed.items() if end}
    if not probes:
        return ends
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, group_id=None)
    await consumer.start()
    try:
        consumer.assign(list(probes))
        for probe, tp in probes.items():
            consumer.seek(probe, int(listed[tp] or 1) - 1)
        pending = set(probes)
        deadline = asyncio.get_running_loop().time() + timeout
        while pending and asyncio.get_running_loop().time() < deadline:
            await consumer.getmany(*pending, timeout_ms=200, max_records=1)
            for probe in list(pending):
                highwater = consumer.highwater(probe)
                if highwater is not None:
                    tp = probes[probe]
                    ends[tp] = max(int(listed[tp] or 0), int(highwater))
                    pending.discard(probe)
        if pending:
            log.warning("no high watermark fetched for %s; using the listed end offsets", sorted(pending))
    finally:
        await consumer.stop()
    return ends


_build_highwaters = Recovery._build_highwaters


async def _build_highwaters_checked(
    self: Recovery, consumer: Any, tps: set[TP], destination: Counter[TP], title: str
) -> None:
    """Recovery's end offsets (kept as the last offset to read), each checked by a fetch."""
    await _build_highwaters(self, consumer, tps, destination, title)
    listed = {tp: destination[tp] + 1 for tp in tps if destination.get(tp) is not None and destination[tp] >= 0}
    if not listed:
        return
    ends = await fetched_end_offsets(faust_aiokafka.server_list(self.app.conf.broker, 9092), listed)
    corrected = {tp: end for tp, end in ends.items() if end is not None and end != listed[tp]}
    for tp, end in corrected.items():
        destination[tp] = end - 1
    if corrected:
        log.info(
            "%s changelog end offsets corrected by fetch: %s",
            title,
            ", ".join(f"{tp.topic}[{tp.partition}] {listed[tp]} -> {end}" for tp, end in sorted(corrected.items())),
        )


def install(fetch_max_wait_ms: int) -> None:
    """Use the given fetch wait and checked end offsets (idempotent)."""
    global _fetch_max_wait_ms
    _fetch_max_wait_ms = fetch_max_wait_ms
    faust_aiokafka.AIOKafkaConsumerThread._create_worker_consumer = (  # type: ignore[method-assign]
        _create_worker_consumer_with_fetch_wait
    )
    Recovery._build_highwaters = _build_highwaters_checked  # type: ignore[method-assign]

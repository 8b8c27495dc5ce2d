"""The alerts an alerts topic holds for a period: what a live-against-shadow comparison reads.

A shadow worker (docs/operations.md, "Shadow run") publishes the alerts of
candidate rules on the live input to a topic of its own. Comparing it with
the live alerts topic needs, from each, every alert whose `occurred_at` lies
in the period, once each, in an order that does not depend on how the
partitions were read.

Where to start: a record's timestamp is when a worker published it, never
before the alert's event was read, so an alert that occurred at or after
`since` is on or after the first record stamped `since` (Kafka's
ListOffsets by time, aiokafka's `offsets_for_times`). Event producers' clocks
may run ahead of the worker's, so the look-up goes back `margin` further. A
partition with no record stamped that late is read from its beginning:
correctness never depends on the time index, only the amount read does.
A shadow that replays the input's history stamps it all with its own start,
so its topic is usually read whole.

Where to stop: each partition's end when reading began. The listed end
offsets are checked by a fetch first (`EndOffsetProbe`, as table recovery
does), because some Kafka-compatible brokers, the embedded one among them,
list an end offset short of the last record batch. Records after `until` are
read too: an alert published late (a worker that was down, a late event)
still occurred in the period.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition  # type: ignore[import-untyped]

from streams.faust_ext.recovery import EndOffsetProbe
from streams.kafka_client import client_kwargs, kafka_security
from streams.settings import ConfigError, Settings

log = logging.getLogger("clientpulse.alert_topics")

MARGIN = timedelta(hours=1)
"""How far before `since` the time look-up starts: room for event producers' clocks ahead of the worker's."""
FETCH_RECORDS = 5000
READ_TIMEOUT = 300.0
"""Longest a read may go without reaching the ends it set out for (a broker that stopped answering)."""


def read_alerts(
    settings: Settings, topic: str, since: datetime, until: datetime, margin: timedelta = MARGIN
) -> list[dict[str, Any]]:
    """The alerts of `topic` with `since <= occurred_at < until`, once per alert_id, by (occurred_at, alert_id).

    Each is the alert as published (JSON object). `since` and `until` need a
    time zone. For callers already in an event loop: `alerts_between`.
    """
    return asyncio.run(alerts_between(settings, topic, since, until, margin))


async def alerts_between(
    settings: Settings, topic: str, since: datetime, until: datetime, margin: timedelta = MARGIN
) -> list[dict[str, Any]]:
    """`read_alerts` as a coroutine."""
    _check_period(since, until)
    records = await _records_from(settings, topic, since - margin)
    return select_alerts((r.value for r in records), since, until, topic)


def select_alerts(
    values: Iterable[bytes | None], since: datetime, until: datetime, where: str = "alerts"
) -> list[dict[str, Any]]:
    """The alerts among `values` (records in partition order) that occurred in [since, until), once each, sorted.

    A re-delivered alert (same alert_id) counts once, as first read; the order
    is (occurred_at, alert_id), whatever the order of the partitions.
    """
    _check_period(since, until)
    kept: dict[str, tuple[datetime, dict[str, Any]]] = {}
    skipped = 0
    for raw in values:
        alert = _alert(raw)
        if alert is None:
            skipped += 1
            continue
        occurred, value = alert
        if since <= occurred < until:
            kept.setdefault(value["alert_id"], (occurred, value))
    if skipped:
        log.warning("%s: %d records are not alerts (no alert_id, or no occurred_at with an offset)", where, skipped)
    return [value for _, value in sorted(kept.values(), key=lambda item: (item[0], item[1]["alert_id"]))]


def _check_period(since: datetime, until: datetime) -> None:
    if since.tzinfo is None or until.tzinfo is None:
        raise ValueError("since and until need a time zone (an offset)")
    if until <= since:
        raise ValueError(f"until ({until.isoformat()}) must be later than since ({since.isoformat()})")


def _alert(raw: bytes | None) -> tuple[datetime, dict[str, Any]] | None:
    if raw is None:
        return None
    try:
        value = orjson.loads(raw)
        if not isinstance(value, dict) or not isinstance(value.get("alert_id"), str):
            return None
        occurred = datetime.fromisoformat(value["occurred_at"])
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
        return None
    if occurred.tzinfo is None:
        return None
    return occurred, value


async def _records_from(settings: Settings, topic: str, start: datetime) -> list[ConsumerRecord]:
    """Every record of `topic` from the first stamped at or after `start` (per partition) to the end it had."""
    consumer = AIOKafkaConsumer(**client_kwargs(settings), enable_auto_commit=False, group_id=None)
    await consumer.start()
    try:
        await consumer.topics()  # the metadata of every topic, so that the partitions are known
        partitions = consumer.partitions_for_topic(topic)
        if not partitions:
            raise ConfigError(f"clientpulse: topic {topic} does not exist (no worker has published alerts there)")
        tps = [TopicPartition(topic, p) for p in sorted(partitions)]
        consumer.assign(tps)
        ends = await _true_ends(settings, await consumer.end_offsets(tps))
        starts = await _start_offsets(consumer, tps, start)
        pending = set()
        for tp in tps:
            if starts[tp] is None:
                await consumer.seek_to_beginning(tp)
            else:
                consumer.seek(tp, starts[tp])
            if await consumer.position(tp) < ends[tp]:
                pending.add(tp)
            else:
                consumer.pause(tp)
        records: list[ConsumerRecord] = []
        loop = asyncio.get_running_loop()
        deadline = loop.time() + READ_TIMEOUT
        while pending:
            batch = await consumer.getmany(*pending, timeout_ms=500, max_records=FETCH_RECORDS)
            for tp, part in batch.items():
                records.extend(r for r in part if r.offset < ends[tp])
            for tp in list(pending):
                if await consumer.position(tp) >= ends[tp]:
                    pending.discard(tp)
                    consumer.pause(tp)
            if pending and loop.time() > deadline:
                raise TimeoutError(f"{topic}: not read to its end after {READ_TIMEOUT:g}s ({len(pending)} partitions)")
        return records
    finally:
        await consumer.stop()


async def _true_ends(settings: Settings, listed: dict[TopicPartition, int]) -> dict[TopicPartition, int]:
    """Each partition's end offset, the listed one checked by a fetch from just before it."""
    probe = EndOffsetProbe(settings.kafka_bootstrap, kafka_security(settings).aiokafka_kwargs())
    fetched = await probe.fetched_end_offsets(dict(listed))
    return {tp: int(fetched.get(tp) or listed[tp] or 0) for tp in listed}


async def _start_offsets(
    consumer: AIOKafkaConsumer, tps: list[TopicPartition], start: datetime
) -> dict[TopicPartition, int | None]:
    """The first offset stamped at or after `start` in each partition; None: read it from the beginning."""
    stamp = max(0, int(start.timestamp() * 1000))
    try:
        found = await consumer.offsets_for_times(dict.fromkeys(tps, stamp))
    except Exception as exc:  # a broker without the time index: reading more is always right
        log.info("no offsets by time (%r); reading from the beginning", exc)
        return dict.fromkeys(tps)
    return {tp: (None if found.get(tp) is None else int(found[tp].offset)) for tp in tps}

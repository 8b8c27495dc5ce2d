"""`clientpulse redrive`: publish chosen dead letters again to their original topics, each once.

Reads the dead-letter topic from its start to its end, keeps the letters the
filters choose (reason, original topic, time received), and publishes each
one's record again (handlers/redrive.py: the original bytes and headers, keyed
by the client, on the partition murmur2 gives the key, as aiokafka's and the
Java client's default partitioner does).

Each dead letter is re-driven once: after a batch's records are acknowledged,
their dead letters' positions (partition:offset in the dead-letter topic) are
written to the compacted ledger topic `clientpulse.redriven.v1`, created with
the other topics, and every run skips what the ledger holds. A run stopped
between the two writes can publish that batch's records once more on the next
run; the worker ignores such a repeat by its event_id (as any redelivery).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition  # type: ignore[import-untyped]
from aiokafka.admin import AIOKafkaAdminClient  # type: ignore[import-untyped]
from aiokafka.partitioner import DefaultPartitioner  # type: ignore[import-untyped]
from pydantic import ValidationError

from handlers.redrive import Record, Selection, Skip, ledger_key, record_of
from schemas.alerts import DeadLetter
from streams.kafka_client import client_kwargs
from streams.settings import Settings, load_settings
from streams.topics import ensure_topics

BATCH = 500
PROGRESS_SECONDS = 2.0
IDLE_SECONDS = 10.0
"""Reading stops when a topic gave nothing for this long (a broker whose end offsets cannot be trusted)."""


@dataclass
class Report:
    read: int = 0
    selected: int = 0
    ready: int = 0
    """Selected and neither re-driven before nor impossible to re-drive."""
    published: int = 0
    skipped: Counter[str] = field(default_factory=Counter)

    def line(self, dry_run: bool) -> str:
        verb = "would publish" if dry_run else "published"
        done = self.ready if dry_run else self.published
        parts = [f"read {self.read} dead letters", f"selected {self.selected}", f"{verb} {done}"]
        if self.skipped:
            parts.append("skipped " + ", ".join(f"{n} {why}" for why, n in sorted(self.skipped.items())))
        return "redrive: " + "; ".join(parts)


async def read_to_end(settings: Settings, topic: str) -> list[ConsumerRecord]:
    """Every record of `topic`, from the start to the end it had when reading began."""
    consumer = AIOKafkaConsumer(**client_kwargs(settings), enable_auto_commit=False, group_id=None)
    await consumer.start()
    try:
        await consumer.topics()  # metadata of every topic, so that the partitions are known
        partitions = consumer.partitions_for_topic(topic) or set()
        tps = [TopicPartition(topic, p) for p in sorted(partitions)]
        if not tps:
            return []
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        # Listed end offsets may be low on some Kafka-compatible brokers; every fetch's high watermark
        # (right on those too) raises them. Done when each partition's position reached both.
        ends: dict[TopicPartition, int] = dict(await consumer.end_offsets(tps))
        out: list[ConsumerRecord] = []
        idle_since = time.monotonic()
        while True:
            batch = await consumer.getmany(*tps, timeout_ms=300, max_records=5000)
            for records in batch.values():
                out.extend(records)
            if batch:
                idle_since = time.monotonic()
            finished = True
            for tp in tps:
                highwater = consumer.highwater(tp)
                if highwater is None or await consumer.position(tp) < max(ends[tp], highwater):
                    finished = False
            if finished or time.monotonic() - idle_since > IDLE_SECONDS:
                return out
    finally:
        await consumer.stop()


async def existing_topics(settings: Settings) -> set[str]:
    admin = AIOKafkaAdminClient(**client_kwargs(settings))
    await admin.start()
    try:
        return set(await admin.list_topics())
    finally:
        await admin.close()


def _describe(position: tuple[int, int], letter: DeadLetter, record: Record, partition: int) -> str:
    key = "(none)" if record.key is None else record.key.decode("utf-8", errors="replace")
    was = ""
    if record.rekeyed:
        was = " (was " + ("(none)" if record.original_key is None else record.original_key.decode(errors="replace"))
        was += ")"
    return (
        f"would re-drive dead letter {position[0]}:{position[1]} -> {record.topic}[{partition}] key {key}{was}; "
        f"reason {letter.reason}, received {letter.received_at.isoformat()}, {len(record.headers)} headers"
    )


async def redrive(
    settings: Settings, selection: Selection, dry_run: bool, say: Callable[[str], None] = print
) -> Report:
    await ensure_topics(settings)
    report = Report()
    done = {r.key for r in await read_to_end(settings, settings.redriven_topic)}
    topics = await existing_topics(settings)
    chosen: list[tuple[tuple[int, int], DeadLetter, Record]] = []
    for message in await read_to_end(settings, settings.deadletter_topic):
        report.read += 1
        try:
            letter = DeadLetter.model_validate_json(message.value or b"")
        except ValidationError:
            report.skipped["not a dead letter"] += 1
            continue
        if not selection.matches(letter, settings.topic_prefix):
            continue
        report.selected += 1
        position = (message.partition, message.offset)
        if ledger_key(*position) in done:
            report.skipped["already re-driven"] += 1
            continue
        record = record_of(letter)
        if isinstance(record, Skip):
            report.skipped[record.reason] += 1
            continue
        if record.topic not in topics:
            report.skipped["topic does not exist"] += 1
            continue
        chosen.append((position, letter, record))
    report.ready = len(chosen)

    producer = AIOKafkaProducer(**client_kwargs(settings), acks="all", enable_idempotence=False)
    await producer.start()
    try:
        partitioner = DefaultPartitioner()
        partitions: dict[str, list[int]] = {}
        for _, _, record in chosen:
            if record.topic not in partitions:
                partitions[record.topic] = sorted(await producer.partitions_for(record.topic))
        last_progress = time.monotonic()
        for start in range(0, len(chosen), BATCH):
            batch = chosen[start : start + BATCH]
            placed = [
                (p, letter, r, partitioner(r.key, partitions[r.topic], partitions[r.topic])) for p, letter, r in batch
            ]
            if dry_run:
                for position, letter, record, partition in placed:
                    say(_describe(position, letter, record, partition))
                continue
            sends = [
                await producer.send(r.topic, r.value, key=r.key, partition=partition, headers=r.headers or None)
                for _, _, r, partition in placed
            ]
            results = await asyncio.gather(*sends)
            now = datetime.now(UTC).isoformat()
            ledger = [
                await producer.send(
                    settings.redriven_topic,
                    orjson.dumps(
                        {
                            "redriven_at": now,
                            "reason": letter.reason,
                            "from": {"topic": letter.topic, "partition": letter.partition, "offset": letter.offset},
                            "to": {"topic": meta.topic, "partition": meta.partition, "offset": meta.offset},
                        }
                    ),
                    key=ledger_key(*position),
                )
                for (position, letter, _, _), meta in zip(placed, results, strict=True)
            ]
            await asyncio.gather(*ledger)
            report.published += len(placed)
            if time.monotonic() - last_progress >= PROGRESS_SECONDS:
                say(f"redrive: published {report.published} of {len(chosen)}")
                last_progress = time.monotonic()
    finally:
        await producer.stop()
    return report


def run_redrive(args: argparse.Namespace) -> int:
    settings = load_settings()
    if args.since and args.until and args.until <= args.since:
        print("clientpulse: redrive: --until must be later than --since", file=sys.stderr)
        return 2
    selection = Selection(
        reasons=frozenset(args.reason or ()),
        topics=frozenset(args.topic or ()),
        since=args.since,
        until=args.until,
    )
    report = asyncio.run(redrive(settings, selection, args.dry_run))
    print(report.line(args.dry_run), flush=True)
    return 0

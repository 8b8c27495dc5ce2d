"""A worker that starts on a backlog gives the backtest's alerts.

The contract (docs/rules.md, "The clock"): an event-time worker's clock is the
low watermark of the topics it is still reading, and the records it reads are
applied in time order across topics, those read ahead of another topic held
back. A worker that starts when every input topic is already full (a new
deployment, a replay into fresh topics, a worker that was down for a day) is
where this matters: each topic partition is fetched at its own pace, and the
sparse topics (clients, interactions, controls) reach the end of the history
long before the transactions do. Applied as fetched, the clients of the busy
topic would look quiet and raise dormancies, reactivations and overdue
contacts the time-ordered history never raises.

Here the whole history is on the broker before the worker starts, the sparse
topics produced first, and the worker's alerts must equal the backtest's in
every field but detected_at (the same comparison as test_equivalence).
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from pathlib import Path

import pytest
from aiokafka import AIOKafkaProducer  # type: ignore[import-untyped]

from handlers.replay import Replay
from handlers.ruleset import Ruleset
from schemas.topics import CLIENTS, CONTROLS, INTERACTIONS, TRANSACTIONS
from streams.settings import Settings
from streams.tools.synthetic import history
from streams.topics import ensure_topics
from tests.integration.test_equivalence import (
    DETECTED_AT,
    START,
    UNTIL,
    _at,
    alerts_after_ticks,
    comparable,
    difference,
    encode_lines,
    tick_every_partition,
)
from tests.support import encode_records, make_settings, new_worker, produce, unique_prefix

pytestmark = pytest.mark.broker

DRAIN_TIMEOUT = 120.0


async def tick(settings: Settings) -> dict[int, int]:
    """Every partition's clock to UNTIL, as the equivalence test ends: the dues left all come out."""
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap, acks="all")
    await producer.start()
    try:
        return await tick_every_partition(producer, settings.ticks_topic, settings.partitions)
    finally:
        await producer.stop()


def test_a_worker_draining_a_backlog_gives_the_backtest_alerts(broker: str, rules: Ruleset, tmp_path: Path) -> None:
    records = list(history(12_000, 300, seed=23, start=START, controls=True))
    assert records == sorted(records, key=_at)
    per_topic = Counter(topic for topic, _key, _value in records)
    assert per_topic[TRANSACTIONS] > 3 * max(per_topic[CLIENTS], per_topic[INTERACTIONS], per_topic[CONTROLS])

    replay = Replay(rules, detected_at=DETECTED_AT)
    backtest = list(replay.run_lines(encode_lines(records), UNTIL))
    expected = {comparable(a) for a in backtest}
    assert len(expected) == len(backtest)
    assert {"dormancy", "no_rm_contact", "large_outflow"} <= {a.type for a in backtest}

    prefix = unique_prefix()
    settings = make_settings(broker, prefix, tick_seconds=3600)
    asyncio.run(ensure_topics(settings))
    sparse_first = sorted(records, key=lambda r: r[0] == TRANSACTIONS)  # stable: each topic keeps its order
    asyncio.run(produce(broker, encode_records(prefix, sparse_first)))

    worker = new_worker(settings, tmp_path, CLIENTPULSE_CLOCK="event").start()
    try:
        worker.wait_ready()
        started = time.monotonic()
        status = worker.wait_status(lambda s: s["processed"] >= len(records), DRAIN_TIMEOUT)
        drained = time.monotonic() - started
        assert status["processed"] == len(records), status
        ticks = asyncio.run(tick(settings))
        streamed = alerts_after_ticks(broker, settings, ticks)
    finally:
        worker.stop()

    got = {comparable(v) for v in streamed}
    assert got == expected, f"drained {len(records)} records in {drained:.1f}s; " + difference(expected, got)
    assert len(streamed) == len(expected), "each alert published once"

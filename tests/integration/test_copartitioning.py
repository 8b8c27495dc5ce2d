"""Co-partitioning is checked, never assumed: misplaced input is a dead letter, a split state is settled."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import orjson
import pytest
from aiokafka import AIOKafkaProducer  # type: ignore[import-untyped]
from aiokafka.partitioner import murmur2  # type: ignore[import-untyped]

from handlers.state import ClientState
from handlers.timeutil import to_us
from streams.topics import ensure_topics
from tests.support import make_settings, new_worker, read_to_end, unique_prefix, wait_group_committed

pytestmark = pytest.mark.broker

T0 = datetime(2026, 5, 4, 9, tzinfo=UTC)


def home(key: bytes, partitions: int) -> int:
    return (murmur2(key) & 0x7FFFFFFF) % partitions


def _debit(client: str, event_id: str, amount: str) -> bytes:
    return orjson.dumps(
        {
            "event_id": event_id,
            "client_id": client,
            "occurred_at": T0.isoformat(),
            "account_id": f"acct-{client}",
            "amount": amount,
            "currency": "CNY",
            "direction": "debit",
            "kind": "transfer",
            "channel": "online",
            "initiated_by": "customer",
        }
    )


async def _send(bootstrap: str, records: list[tuple[str, bytes, bytes, int | None]]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        for topic, key, value, partition in records:
            await producer.send(topic, value, key=key, partition=partition)
        await producer.flush()
    finally:
        await producer.stop()


def _metric(text: str, line_start: str) -> float:
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(line_start))


async def test_a_record_on_another_partition_than_its_keys_is_a_dead_letter(broker: str, tmp_path: Path) -> None:
    settings = make_settings(broker, unique_prefix(), clock="event")
    await ensure_topics(settings)
    worker = new_worker(settings, tmp_path).start()
    try:
        worker.wait_ready()
        key = b"c-misplaced"
        wrong = (home(key, settings.partitions) + 1) % settings.partitions
        await _send(
            broker,
            [
                (settings.transactions_topic, key, _debit("c-misplaced", "m-1", "900000"), wrong),
                (settings.transactions_topic, key, _debit("c-misplaced", "m-2", "900000"), None),
            ],
        )
        await wait_group_committed(broker, settings, 2)
        letters = [orjson.loads(r.value) for r in await read_to_end(broker, settings.deadletter_topic)]
        [letter] = letters
        assert letter["reason"] == "wrong_partition" and letter["partition"] == wrong
        assert "partitioner=murmur2_random" in letter["error"]
        alerts = [orjson.loads(r.value) for r in await read_to_end(broker, settings.alerts_topic)]
        assert {a["source_event_ids"][0] for a in alerts} == {"m-2"}  # only the well-placed one is applied
        metrics = worker.metrics()
        assert _metric(metrics, 'clientpulse_events_rejected_total{reason="wrong_partition"') == 1
        assert "wrong_partition" in worker.tail(200)  # the rate-limited warning
    finally:
        worker.stop()


@pytest.mark.parametrize("shift", [1, 2, 3])
async def test_a_client_state_in_two_changelog_partitions_is_reported_and_its_home_one_kept(
    broker: str, tmp_path: Path, shift: int
) -> None:
    """Whichever partition recovery happens to read last (the stray one lies before or after the home one)."""
    settings = make_settings(broker, unique_prefix(), clock="event")
    await ensure_topics(settings)
    key = b"c-split"
    right = home(key, settings.partitions)
    stray = (right + shift) % settings.partitions
    seen = to_us(T0)
    at_home = ClientState("c-split", rm_id="rm-home", tier="gold", aum=20_000_000, watermark=seen)
    strayed = ClientState("c-split", rm_id="rm-stray", tier="gold", aum=20_000_000, watermark=seen)
    changelog = f"{settings.app_id}-client-state-changelog"
    # The home partition's record first, the stray one after it: "the last one read wins" would keep the stray.
    await _send(broker, [(changelog, key, at_home.to_bytes(), right), (changelog, key, strayed.to_bytes(), stray)])

    worker = new_worker(settings, tmp_path).start()
    try:
        worker.wait_ready()
        await _send(broker, [(settings.transactions_topic, key, _debit("c-split", "s-1", "150000"), None)])
        await wait_group_committed(broker, settings, 1)
        alerts = [orjson.loads(r.value) for r in await read_to_end(broker, settings.alerts_topic)]
        assert alerts and {a["rm_id"] for a in alerts} == {"rm-home"}
        assert _metric(worker.metrics(), "clientpulse_changelog_split_keys_total") == 1
        assert "more than one changelog partition" in worker.tail(200)
    finally:
        worker.stop()

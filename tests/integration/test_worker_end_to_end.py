"""The worker on the real broker: events in, alerts and dead letters out."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiokafka import AIOKafkaConsumer  # type: ignore[import-untyped]
from aiokafka.partitioner import DefaultPartitioner  # type: ignore[import-untyped]

from streams.topics import ensure_topics
from tests.support import (
    encode_records,
    make_settings,
    new_worker,
    produce,
    read_to_end,
    unique_prefix,
    wait_group_committed,
)

pytestmark = pytest.mark.broker


def _tx(event_id: str, client: str, amount: str, direction: str = "debit", bank: str = "external") -> dict[str, object]:
    return {
        "event_id": event_id,
        "client_id": client,
        "occurred_at": "2026-03-01T10:00:00+00:00",
        "account_id": "acct-1",
        "amount": amount,
        "currency": "CNY",
        "direction": direction,
        "kind": "transfer",
        "channel": "online",
        "initiated_by": "customer",
        "counterparty": {"bank": bank},
    }


def test_events_become_alerts_and_bad_input_becomes_dead_letters(broker: str, tmp_path: Path) -> None:
    prefix = unique_prefix()
    settings = make_settings(broker, prefix)
    asyncio.run(ensure_topics(settings))
    worker = new_worker(settings, tmp_path).start()
    try:
        worker.wait_ready()
        records = [
            (
                "bank.clients.v1",
                "c-1",
                {
                    "event_id": "o-1",
                    "client_id": "c-1",
                    "occurred_at": "2026-02-01T00:00:00+00:00",
                    "kind": "onboarded",
                    "rm_id": "rm-7",
                },
            ),
            ("bank.transactions.v1", "c-1", _tx("e-1", "c-1", "700000", "credit", "internal")),
            ("bank.transactions.v1", "c-1", _tx("e-2", "c-1", "600000")),
            (
                "bank.interactions.v1",
                "c-2",
                {
                    "event_id": "i-1",
                    "client_id": "c-2",
                    "occurred_at": "2026-03-01T11:00:00+08:00",
                    "kind": "complaint",
                    "channel": "branch",
                    "initiated_by": "customer",
                    "severity": "high",
                },
            ),
            ("bank.transactions.v1", "c-3", b"{not json"),
            ("bank.transactions.v1", "c-3", _tx("e-3", "c-3", "-5")),
        ]
        sent = asyncio.run(produce(broker, encode_records(prefix, records)))
        # Once every input offset is committed, the alert and dead-letter topics hold all this input caused.
        asyncio.run(wait_group_committed(broker, settings, sent))

        alerts = [orjson.loads(r.value) for r in asyncio.run(read_to_end(broker, settings.alerts_topic))]
        assert len({a["alert_id"] for a in alerts}) == len(alerts), "each alert published once"
        by_type = {a["type"]: a for a in alerts if a["type"] in ("large_outflow", "complaint")}
        assert [a["type"] for a in alerts].count("large_outflow") == 1
        outflow = by_type["large_outflow"]
        assert outflow["client_id"] == "c-1"
        assert outflow["rm_id"] == "rm-7"
        assert outflow["severity"] == "critical"  # external counterparty
        assert outflow["facts"] == {"amount": "600000.00", "limit": "500000.00", "counterparty_bank": "external"}
        assert outflow["source_event_ids"] == ["e-2"]
        assert by_type["complaint"]["severity"] == "critical"
        assert by_type["complaint"]["rm_id"] is None

        letters = [orjson.loads(r.value) for r in asyncio.run(read_to_end(broker, settings.deadletter_topic))]
        assert len(letters) == 2
        reasons = {d["reason"]: d for d in letters}
        assert reasons["invalid_json"]["raw"] == "{not json"
        assert reasons["invalid_json"]["key"] == "c-3"
        assert reasons["invalid_json"]["topic"] == settings.transactions_topic
        assert "amount" in reasons["schema"]["error"]
        assert '"-5"' in reasons["schema"]["raw"]
        assert worker.proc is not None and worker.proc.poll() is None, "worker must survive bad input"
    finally:
        worker.stop()


async def _read_keyed(
    bootstrap: str, topic: str, keys: set[str], timeout: float = 60.0
) -> list[tuple[int, bytes, Any]]:
    """(partition, key, JSON value) of a topic's records, from the start, until every key was seen or timeout."""
    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest", enable_auto_commit=False, group_id=None
    )
    await consumer.start()
    out: list[tuple[int, bytes, Any]] = []
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline and {k.decode() for _, k, _ in out} < keys:
            for tp, msgs in (await consumer.getmany(timeout_ms=500)).items():
                out.extend((tp.partition, m.key, orjson.loads(m.value)) for m in msgs)
    finally:
        await consumer.stop()
    return out


def test_alerts_and_snapshots_land_on_the_partition_their_client_key_chooses(broker: str, tmp_path: Path) -> None:
    """The worker sends alerts and snapshots in per-partition batches; they must go where a keyed send would."""
    prefix = unique_prefix()
    settings = make_settings(broker, prefix, snapshot_seconds=1.0)
    asyncio.run(ensure_topics(settings))
    worker = new_worker(settings, tmp_path).start()
    clients = [f"c-{n:03d}" for n in range(24)]
    try:
        worker.wait_ready()
        records = [
            ("bank.transactions.v1", client, _tx(f"e-{client}", client, "600000")) for client in clients
        ]  # each one a large outflow alert
        asyncio.run(produce(broker, encode_records(prefix, records)))
        alerts = asyncio.run(_read_keyed(broker, settings.alerts_topic, set(clients)))
        snapshots = asyncio.run(_read_keyed(broker, settings.snapshots_topic, set(clients)))
    finally:
        worker.stop()

    partitions = list(range(settings.partitions))
    keyed = DefaultPartitioner()
    assert {key.decode() for _, key, _ in alerts} == set(clients)
    assert {key.decode() for _, key, _ in snapshots} == set(clients)
    for partition, key, value in alerts + snapshots:
        assert value["client_id"] == key.decode()
        assert partition == keyed(key, partitions, partitions), key
    assert {p for p, _, _ in alerts} == set(partitions), "24 clients spread over every partition"
    assert {v["client_id"] for _, _, v in alerts if v["type"] == "large_outflow"} == set(clients)

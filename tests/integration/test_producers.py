"""The bank's own Kafka clients: librdkafka (confluent-kafka) and aiokafka producers, every codec, both partitioners.

One real `clientpulse worker` serves the module. Each case onboards clients
with an RM on bank.clients.v1 and sends each a large outflow on
bank.transactions.v1; the alert must carry the RM, which it does only when
both records reached the same partition (the client's state lives there).
"""

from __future__ import annotations

import asyncio
import time
import zlib
from collections.abc import Iterator
from typing import Any

import orjson
import pytest
from aiokafka.partitioner import murmur2  # type: ignore[import-untyped]
from confluent_kafka import Producer

from streams.settings import Settings
from streams.topics import ensure_topics
from tests.support import WorkerProcess, consume, make_settings, new_worker, produce, unique_prefix

pytestmark = pytest.mark.broker

CODECS = ["gzip", "snappy", "lz4", "zstd"]


@pytest.fixture(scope="module")
def worker(broker: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[WorkerProcess]:
    prefix = unique_prefix()
    settings = make_settings(broker, prefix)
    asyncio.run(ensure_topics(settings))
    process = new_worker(settings, tmp_path_factory.mktemp("producers")).start()
    try:
        process.wait_ready()
        yield process
    finally:
        process.stop()


def onboarding(client: str, rm: str) -> dict[str, Any]:
    return {
        "event_id": f"o-{client}",
        "client_id": client,
        "occurred_at": "2026-02-01T00:00:00+00:00",
        "kind": "onboarded",
        "rm_id": rm,
    }


def outflow(client: str) -> dict[str, Any]:
    return {
        "event_id": f"e-{client}",
        "client_id": client,
        "occurred_at": "2026-03-01T10:00:00+00:00",
        "account_id": "acct-1",
        "amount": "600000",
        "currency": "CNY",
        "direction": "debit",
        "kind": "transfer",
        "channel": "online",
        "initiated_by": "customer",
        "counterparty": {"bank": "internal"},
    }


def records_for(settings: Settings, clients: list[str]) -> tuple[list[tuple[str, bytes, bytes]], ...]:
    """Reference data first (all clients), then the transactions."""
    reference = [(settings.clients_topic, c.encode(), orjson.dumps(onboarding(c, f"rm-{c}"))) for c in clients]
    transactions = [(settings.transactions_topic, c.encode(), orjson.dumps(outflow(c))) for c in clients]
    return reference, transactions


def librdkafka_produce(
    bootstrap: str, records: list[tuple[str, bytes, bytes]], **config: Any
) -> list[tuple[bytes, int]]:
    """Produce with confluent-kafka (librdkafka); returns (key, partition) as acknowledged by the broker."""
    producer = Producer(
        {"bootstrap.servers": bootstrap, "linger.ms": 20, "acks": "all", "enable.idempotence": False, **config}
    )
    placed: list[tuple[bytes, int]] = []
    errors: list[Any] = []

    def delivered(err: Any, msg: Any) -> None:
        if err is not None:
            errors.append(err)
        else:
            placed.append((msg.key(), msg.partition()))

    for topic, key, value in records:
        producer.produce(topic, value, key=key, on_delivery=delivered)
    remaining = producer.flush(30)
    assert remaining == 0 and not errors, f"librdkafka did not deliver: {errors}"
    return placed


def processed(worker: WorkerProcess) -> int:
    status = worker.status()
    return int(status["processed"]) if status else 0


def wait_processed(worker: WorkerProcess, at_least: int, timeout: float = 30.0) -> None:
    """Reference data must be applied before the transactions (the worker reads topics independently)."""
    deadline = time.monotonic() + timeout
    while processed(worker) < at_least:
        assert time.monotonic() < deadline, f"worker processed {processed(worker)} of {at_least}:\n{worker.tail()}"
        time.sleep(0.1)


def wait_for_outflow_alerts(settings: Settings, clients: list[str]) -> dict[str, dict[str, Any]]:
    wanted = set(clients)

    def done(values: list[dict[str, Any]]) -> bool:
        return wanted <= {v["client_id"] for v in values if v["type"] == "large_outflow"}

    alerts = asyncio.run(consume(settings.kafka_bootstrap, settings.alerts_topic, done, timeout=60))
    return {a["client_id"]: a for a in alerts if a["type"] == "large_outflow" and a["client_id"] in wanted}


@pytest.mark.parametrize("codec", CODECS)
def test_compressed_batches_from_librdkafka_and_aiokafka_become_the_expected_alerts(
    worker: WorkerProcess, codec: str
) -> None:
    settings = worker.settings
    rdkafka_clients = [f"{codec}-rd-{n}" for n in range(6)]
    aiokafka_clients = [f"{codec}-aio-{n}" for n in range(6)]

    librdkafka = {"compression.type": codec, "partitioner": "murmur2_random"}
    rd_reference, rd_transactions = records_for(settings, rdkafka_clients)
    aio_reference, aio_transactions = records_for(settings, aiokafka_clients)
    before = processed(worker)
    librdkafka_produce(settings.kafka_bootstrap, rd_reference, **librdkafka)
    asyncio.run(produce(settings.kafka_bootstrap, aio_reference, compression_type=codec))
    wait_processed(worker, before + len(rd_reference) + len(aio_reference))
    librdkafka_produce(settings.kafka_bootstrap, rd_transactions, **librdkafka)
    asyncio.run(produce(settings.kafka_bootstrap, aio_transactions, compression_type=codec))

    alerts = wait_for_outflow_alerts(settings, rdkafka_clients + aiokafka_clients)
    assert set(alerts) == set(rdkafka_clients + aiokafka_clients), (
        f"{codec}: no alert for {set(alerts) ^ set(rdkafka_clients + aiokafka_clients)}"
    )
    for client, alert in alerts.items():
        assert alert["rm_id"] == f"rm-{client}", f"{codec}: {client}'s alert lost its RM"
        assert alert["severity"] == "critical" and alert["facts"]["amount"] == "600000.00"  # twice the limit
    assert worker.proc is not None and worker.proc.poll() is None, f"{codec} batches must not stop the worker"


def murmur2_partition(key: bytes, partitions: int) -> int:
    return (murmur2(key) & 0x7FFFFFFF) % partitions


def crc32_partition(key: bytes, partitions: int) -> int:
    """librdkafka's default `consistent_random` partitioner for a non-empty key."""
    return zlib.crc32(key) % partitions


def test_librdkafka_with_murmur2_random_lands_where_clientpulse_expects(worker: WorkerProcess) -> None:
    settings = worker.settings
    clients = [f"m2-{n}" for n in range(16)]
    reference, transactions = records_for(settings, clients)
    before = processed(worker)
    asyncio.run(produce(settings.kafka_bootstrap, reference))  # reference data from a Java-default producer
    wait_processed(worker, before + len(reference))
    placed = librdkafka_produce(settings.kafka_bootstrap, transactions, partitioner="murmur2_random")
    for key, partition in placed:
        assert partition == murmur2_partition(key, settings.partitions), key
    alerts = wait_for_outflow_alerts(settings, clients)
    assert {c: a["rm_id"] for c, a in alerts.items()} == {c: f"rm-{c}" for c in clients}


def misplaced_clients(partitions: int, n: int) -> list[str]:
    """Clients whose key librdkafka's default partitioner sends elsewhere than murmur2 does."""
    out = []
    i = 0
    while len(out) < n:
        client = f"crc-{i}"
        key = client.encode()
        if crc32_partition(key, partitions) != murmur2_partition(key, partitions):
            out.append(client)
        i += 1
    return out


def test_librdkafka_default_partitioner_records_become_wrong_partition_dead_letters(worker: WorkerProcess) -> None:
    settings = worker.settings
    clients = misplaced_clients(settings.partitions, 4)
    reference, transactions = records_for(settings, clients)
    before = processed(worker)
    asyncio.run(produce(settings.kafka_bootstrap, reference))
    wait_processed(worker, before + len(reference))
    placed = librdkafka_produce(settings.kafka_bootstrap, transactions)  # the default: consistent_random
    misplaced = {k.decode(): p for k, p in placed if p != murmur2_partition(k, settings.partitions)}
    assert set(misplaced) == set(clients), "the default partitioner put these keys elsewhere than murmur2"

    def all_there(values: list[dict[str, Any]]) -> bool:
        return set(clients) <= {v.get("key") for v in values if v.get("reason") == "wrong_partition"}

    deadline = time.monotonic() + 20
    letters: list[dict[str, Any]] = []
    while time.monotonic() < deadline and not all_there(letters):
        letters = asyncio.run(consume(settings.kafka_bootstrap, settings.deadletter_topic, all_there, timeout=5))
    wrong = {d["key"]: d for d in letters if d.get("reason") == "wrong_partition"}
    assert set(wrong) >= set(clients)
    for client in clients:
        assert wrong[client]["partition"] == misplaced[client]
        assert "partitioner=murmur2_random" in wrong[client]["error"]

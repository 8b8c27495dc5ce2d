"""Real producers' bytes reach the dead-letter topic as they were, and `clientpulse redrive` publishes them again.

One real worker serves the module. The first test sends records with headers,
a byte-order mark, Schema Registry framing and UTF-16; the second re-drives
dead letters through the real `clientpulse redrive` command.
"""

from __future__ import annotations

import asyncio
import base64
import os
import struct
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import orjson
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer  # type: ignore[import-untyped]
from aiokafka.partitioner import murmur2  # type: ignore[import-untyped]

from streams.settings import Settings
from streams.topics import ensure_topics
from tests.support import (
    ROOT,
    WorkerProcess,
    consume,
    die_with_parent,
    make_settings,
    new_worker,
    settings_env,
    unique_prefix,
)

pytestmark = pytest.mark.broker

BOM = b"\xef\xbb\xbf"


@pytest.fixture(scope="module")
def worker(broker: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[WorkerProcess]:
    settings = make_settings(broker, unique_prefix())
    asyncio.run(ensure_topics(settings))
    process = new_worker(settings, tmp_path_factory.mktemp("redrive")).start()
    try:
        process.wait_ready()
        yield process
    finally:
        process.stop()


def outflow(event_id: str, client: str) -> dict[str, Any]:
    return {
        "event_id": event_id,
        "client_id": client,
        "occurred_at": "2026-03-01T10:00:00+00:00",
        "account_id": "acct-1",
        "amount": "600000",
        "currency": "CNY",
        "direction": "debit",
        "kind": "transfer",
        "channel": "online",
        "initiated_by": "customer",
    }


async def send(
    settings: Settings, records: list[tuple[str, bytes | None, bytes, list[tuple[str, bytes]] | None]]
) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap, acks="all")
    await producer.start()
    try:
        for topic, key, value, headers in records:
            await producer.send_and_wait(topic, value, key=key, headers=headers)
    finally:
        await producer.stop()


async def raw_records(settings: Settings, topic: str, idle: float = 2.0, timeout: float = 20.0) -> list[Any]:
    """Every record of a topic as the broker holds it (partition, offset, key, value bytes, headers)."""
    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=settings.kafka_bootstrap, auto_offset_reset="earliest", group_id=None
    )
    await consumer.start()
    out: list[Any] = []
    deadline = time.monotonic() + timeout
    last_new = time.monotonic()
    try:
        while time.monotonic() < deadline and time.monotonic() - last_new < idle:
            for records in (await consumer.getmany(timeout_ms=300)).values():
                out.extend(records)
                last_new = time.monotonic()
    finally:
        await consumer.stop()
    return out


def positions(records: list[Any]) -> set[tuple[int, int]]:
    return {(r.partition, r.offset) for r in records}


def letters_where(settings: Settings, check: Any, timeout: float = 30.0) -> list[dict[str, Any]]:
    return asyncio.run(consume(settings.kafka_bootstrap, settings.deadletter_topic, check, timeout=timeout))


def test_headers_bom_framing_and_utf16_reach_the_dead_letter_topic_as_specified(worker: WorkerProcess) -> None:
    settings = worker.settings
    framed = b"\x00" + struct.pack(">I", 77) + orjson.dumps(outflow("enc-2", "enc-c2"))
    utf16 = orjson.dumps(outflow("enc-3", "enc-c3")).decode().encode("utf-16-le")
    headers = [("traceparent", b"00-abc-01"), ("binary", b"\x00\xff\x10")]
    asyncio.run(
        send(
            settings,
            [
                (settings.transactions_topic, b"enc-c1", BOM + orjson.dumps(outflow("enc-1", "enc-c1")), headers),
                (settings.transactions_topic, b"enc-c2", framed, headers),
                (settings.transactions_topic, b"enc-c3", utf16, None),
            ],
        )
    )
    letters = letters_where(settings, lambda vs: {"enc-c2", "enc-c3"} <= {v["key"] for v in vs})
    by_key = {d["key"]: d for d in letters}
    assert "enc-c1" not in by_key, "a BOM before the JSON is ignored"
    framing = by_key["enc-c2"]
    assert framing["reason"] == "schema_registry_framing" and "schema id 77" in framing["error"]
    assert framing["raw_encoding"] == "base64" and base64.b64decode(framing["raw"]) == framed
    assert framing["headers"] == [
        {"key": "traceparent", "value_base64": base64.b64encode(b"00-abc-01").decode()},
        {"key": "binary", "value_base64": base64.b64encode(b"\x00\xff\x10").decode()},
    ]
    wide = by_key["enc-c3"]
    assert wide["raw_encoding"] == "base64" and base64.b64decode(wide["raw"]) == utf16 and wide["headers"] == []
    alerts = asyncio.run(
        consume(settings.kafka_bootstrap, settings.alerts_topic, lambda vs: any(v["client_id"] == "enc-c1" for v in vs))
    )
    assert any(a["client_id"] == "enc-c1" and a["type"] == "large_outflow" for a in alerts)


def redrive(settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        [sys.executable, "-m", "streams.cli", "redrive", *args],
        cwd=ROOT,
        env={**os.environ, **settings_env(settings)},
        capture_output=True,
        text=True,
        timeout=120,
        preexec_fn=die_with_parent,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return done


def test_redrive_publishes_chosen_dead_letters_again_keyed_right_with_their_bytes_and_headers_once(
    worker: WorkerProcess,
) -> None:
    settings = worker.settings
    rekey = orjson.dumps(outflow("rd-1", "rd-c1"))  # keyed wrongly (bytes that are not even UTF-8)
    nul = orjson.dumps(outflow("rd-2", "rd-c2")) + b"\x00"  # kept base64; fails again, byte for byte
    headers = [("traceparent", b"00-rd-01"), ("binary", b"\xff\x00")]
    since = datetime.now(UTC).isoformat()  # the module's other dead letters are older
    asyncio.run(
        send(
            settings,
            [
                (settings.transactions_topic, b"\xffwrong", rekey, headers),
                (settings.transactions_topic, b"rd-c2", nul, headers),
                (settings.interactions_topic, b"rd-c3", b"{not json", None),  # left out by --topic
            ],
        )
    )
    letters_where(settings, lambda vs: {"rd-c2", "rd-c3"} <= {v["key"] for v in vs} and len(vs) >= 3)
    cutoff = datetime.now(UTC).isoformat()
    chosen = ["--reason", "key_mismatch", "--reason", "invalid_json", "--topic", "bank.transactions.v1"]
    chosen += ["--since", since, "--until", cutoff]
    before = positions(asyncio.run(raw_records(settings, settings.transactions_topic)))

    dry = redrive(settings, *chosen, "--dry-run")
    assert "would publish 2" in dry.stdout, dry.stdout
    assert "key rd-c1 (was " in dry.stdout and "2 headers" in dry.stdout
    assert positions(asyncio.run(raw_records(settings, settings.transactions_topic))) == before, (
        "a dry run publishes nothing"
    )

    real = redrive(settings, *chosen)
    assert "published 2" in real.stdout, real.stdout
    new = [
        r
        for r in asyncio.run(raw_records(settings, settings.transactions_topic))
        if (r.partition, r.offset) not in before
    ]
    redriven = {r.key: r for r in new}
    assert set(redriven) == {b"rd-c1", b"rd-c2"} and len(new) == 2, [(r.key, r.partition) for r in new]
    for key, value in ((b"rd-c1", rekey), (b"rd-c2", nul)):
        record = redriven[key]
        assert record.value == value, "the original bytes, not their text or base64"
        assert list(record.headers) == headers
        assert record.partition == (murmur2(key) & 0x7FFFFFFF) % settings.partitions, "murmur2, as aiokafka and Java"
    alerts = asyncio.run(
        consume(settings.kafka_bootstrap, settings.alerts_topic, lambda vs: any(v["client_id"] == "rd-c1" for v in vs))
    )
    assert any(a["client_id"] == "rd-c1" and a["type"] == "large_outflow" for a in alerts), "re-keyed, it applies"

    once = redrive(settings, *chosen)
    assert "published 0" in once.stdout and "2 already re-driven" in once.stdout, once.stdout
    nothing = redrive(settings, "--since", "2999-01-01", "--dry-run")
    assert "selected 0" in nothing.stdout, nothing.stdout

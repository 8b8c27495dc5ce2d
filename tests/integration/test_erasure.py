"""A tombstone on bank.clients.v1 erases the client: state, changelog, due clock rules, snapshot row; alerts stay."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg  # type: ignore[import-untyped]
import orjson
import pytest
from aiokafka import AIOKafkaProducer  # type: ignore[import-untyped]

from streams.sink.service import AlertSink
from streams.sink.store import AlertStore
from streams.topics import ensure_topics
from tests.integration.test_sink import running, wait_until
from tests.support import consume_records, encode_records, make_settings, new_worker, produce, unique_prefix

pytestmark = [pytest.mark.broker, pytest.mark.db]

T0 = datetime(2026, 5, 4, 9, tzinfo=UTC)


def _onboard(client: str, rm: str) -> dict[str, Any]:
    return {
        "event_id": f"on-{client}",
        "client_id": client,
        "occurred_at": T0.isoformat(),
        "kind": "onboarded",
        "rm_id": rm,
    }


def _deposit(client: str, event_id: str, amount: str, at: datetime) -> dict[str, Any]:
    return {
        "event_id": event_id,
        "client_id": client,
        "occurred_at": at.isoformat(),
        "account_id": f"acct-{client}",
        "amount": amount,
        "currency": "CNY",
        "direction": "credit",
        "kind": "deposit",
        "channel": "branch",
        "initiated_by": "customer",
        "counterparty": {"bank": "external"},
    }


async def _tick(bootstrap: str, topic: str, partitions: int, now: datetime) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        for partition in range(partitions):
            await producer.send(topic, orjson.dumps({"now": now.isoformat()}), key=b"tick", partition=partition)
        await producer.flush()
    finally:
        await producer.stop()


async def _snapshot_row(database_url: str, client_id: str) -> bool:
    conn = await asyncpg.connect(database_url)
    try:
        return bool(await conn.fetchval("SELECT count(*) FROM client_snapshots WHERE client_id = $1", client_id))
    finally:
        await conn.close()


async def test_a_tombstone_erases_the_client_everywhere_but_the_alerts(
    broker: str, database_url: str, tmp_path: Path
) -> None:
    settings = make_settings(
        broker, unique_prefix(), clock="event", database_url=database_url, snapshot_seconds=0.5, tick_seconds=3600
    )
    await ensure_topics(settings)
    worker = new_worker(settings, tmp_path).start()
    sink = AlertSink(settings, AlertStore(database_url))
    try:
        worker.wait_ready()
        await produce(
            broker,
            encode_records(
                settings.topic_prefix,
                [
                    ("bank.clients.v1", "c-gone", _onboard("c-gone", "rm-1")),
                    ("bank.clients.v1", "c-kept", _onboard("c-kept", "rm-1")),
                    ("bank.transactions.v1", "c-gone", _deposit("c-gone", "d-1", "90000", T0 + timedelta(hours=1))),
                    ("bank.transactions.v1", "c-kept", _deposit("c-kept", "d-2", "90000", T0 + timedelta(hours=1))),
                ],
            ),
        )
        async with running(sink):

            async def migrated() -> bool:
                return sink.store.migrated

            await wait_until(migrated, 30, "the sink to migrate the store")
            for client in ("c-gone", "c-kept"):
                await wait_until(lambda c=client: _snapshot_row(database_url, c), 60, f"the snapshot of {client}")
            await produce(broker, [(settings.clients_topic, b"c-gone", None)])

            changelog = f"{settings.app_id}-client-state-changelog"
            records = await consume_records(
                broker, changelog, lambda rs: any(r.key == b"c-gone" and r.value is None for r in rs)
            )
            assert any(r.key == b"c-gone" and r.value is None for r in records), "the changelog has a tombstone"
            snapshots = await consume_records(
                broker, settings.snapshots_topic, lambda rs: any(r.key == b"c-gone" and r.value is None for r in rs)
            )
            assert any(r.key == b"c-gone" and r.value is None for r in snapshots), "the snapshot is tombstoned"

            async def row_gone() -> bool:
                return not await _snapshot_row(database_url, "c-gone")

            await wait_until(row_gone, 30, "the sink to delete the erased client's snapshot row")
            assert await _snapshot_row(database_url, "c-kept")

        # A restarted worker recovers no state of the erased client: only the kept client's dormancy is
        # due, and when the clock passes both clients' dormancy only the kept one is alerted.
        worker.stop()
        worker = new_worker(settings, tmp_path, name="worker-2").start()
        worker.wait_ready()
        # Its first batch (one more client's onboarding) indexes what it recovered.
        await produce(
            broker, encode_records(settings.topic_prefix, [("bank.clients.v1", "c-new", _onboard("c-new", "rm-2"))])
        )
        status = worker.wait_status(lambda s: s["processed"] >= 1)
        assert sum(status["due_index"].values()) == 2  # c-kept and c-new; nothing of c-gone
        await _tick(broker, settings.ticks_topic, settings.partitions, T0 + timedelta(days=400))

        def dormant(rs: list[Any]) -> set[str]:
            return {v["client_id"] for r in rs if (v := orjson.loads(r.value))["type"] == "dormancy"}

        alerts = await consume_records(broker, settings.alerts_topic, lambda rs: {"c-kept", "c-new"} <= dormant(rs))
        assert "c-gone" not in dormant(alerts)
        # The alerts of the erased client stay, as the bank's record.
        assert any(orjson.loads(r.value)["client_id"] == "c-gone" for r in alerts)
        assert "clientpulse_changelog_split_keys_total 0.0" in worker.metrics()
    finally:
        worker.stop()

"""Snoozes end to end (docs/rules.md, "Snoozes"; docs/api.md, "Snoozes"): a snooze sent through the RM API
reaches a real worker over the real broker and suppresses the next matching alert; `unsnooze` ends it.

A worker on the wall clock, and the RM API (a real HTTP server on PostgreSQL,
publishing to the session broker). By the shipped rules a customer debit of
120,000 from a gold client (single limit 100,000; critical only at 200,000 or to
another bank) is a large_outflow warning. Each step waits until the worker
group has committed everything sent so far: a worker commits a batch only once
its alerts are on the broker.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiohttp.test_utils import TestClient

from schemas.snapshot import ClientSnapshot
from streams.api.app import create_api
from streams.api.auth import Principals, TokenEntry, hash_token
from streams.sink.controls import ControlPublisher
from streams.sink.store import AlertStore
from streams.topics import ensure_topics
from streams.worker.partitioning import KeyPartitions
from tests.integration.api_support import ApiTestServer, api_settings
from tests.support import (
    encode_records,
    make_settings,
    new_worker,
    produce,
    read_to_end,
    unique_prefix,
    wait_group_committed,
)

pytestmark = [pytest.mark.broker, pytest.mark.db]


def _tx(client: str, event_id: str, amount: str, direction: str, at: datetime) -> dict[str, Any]:
    return {
        "event_id": event_id,
        "client_id": client,
        "occurred_at": at.isoformat(),
        "account_id": f"acct-{event_id}",
        "amount": amount,
        "currency": "CNY",
        "direction": direction,
        "kind": "transfer",
        "channel": "online",
        "initiated_by": "customer",
        "counterparty": {"bank": "internal"},
    }


@pytest.fixture
async def store(database_url: str) -> AsyncIterator[AlertStore]:
    s = AlertStore(database_url)
    await s.connect()
    await s.migrate()
    try:
        yield s
    finally:
        await s.close()


async def test_a_snooze_through_the_api_holds_back_the_next_alert_and_unsnooze_ends_it(
    broker: str, store: AlertStore, tmp_path: Path
) -> None:
    settings = make_settings(broker, unique_prefix())
    await ensure_topics(settings)
    worker = new_worker(settings, tmp_path).start()
    tag = uuid.uuid4().hex[:6]
    client_id, rm = f"c-snz-{tag}", f"rm-{tag}"
    token = f"token-{uuid.uuid4().hex}"
    principals = Principals([TokenEntry(name="alice", role="rm", rm_id=rm, hash=hash_token(token, log2_n=10))])
    await store.upsert_snapshots([ClientSnapshot(client_id=client_id, aum="300000.00", rm_id=rm)])  # type: ignore[arg-type]
    publisher = ControlPublisher(settings, store)
    await publisher.start()
    api = create_api(store, principals, settings=api_settings(), controls=publisher)
    http: TestClient[Any, Any] = TestClient(ApiTestServer(api))
    await http.start_server()
    auth = {"Authorization": f"Bearer {token}"}
    sent = 0

    async def send(*records: tuple[str, str, dict[str, Any]]) -> None:
        nonlocal sent
        sent += await produce(broker, encode_records(settings.topic_prefix, records))
        await wait_group_committed(broker, settings, sent)

    try:
        await asyncio.to_thread(worker.wait_ready)
        now = datetime.now(UTC)
        onboard = {
            "event_id": f"on-{tag}",
            "client_id": client_id,
            "occurred_at": (now - timedelta(hours=1)).isoformat(),
        }
        await send(
            ("bank.clients.v1", client_id, {**onboard, "kind": "onboarded", "rm_id": rm}),
            (
                "bank.transactions.v1",
                client_id,
                _tx(client_id, f"d-{tag}", "300000", "credit", now - timedelta(hours=1)),
            ),
        )

        until = (datetime.now(UTC) + timedelta(days=1)).isoformat()
        resp = await http.post(
            f"/api/clients/{client_id}/snoozes",
            headers=auth,
            json={"type": "large_outflow", "until": until, "reason": "moving funds for a house, as agreed"},
        )
        body = await resp.json()
        assert resp.status == 201 and body["published"] is True and body["snooze"]["published_at"], body
        sent += 1  # the control event, on the controls topic
        await wait_group_committed(broker, settings, sent)
        controls = await read_to_end(broker, settings.controls_topic)
        [control] = [r for r in controls if r.key == client_id.encode()]
        assert control.partition == KeyPartitions().of(client_id.encode(), settings.partitions)
        event = orjson.loads(control.value)
        assert (event["kind"], event["alert_type"], event["actor"]) == ("snooze", "large_outflow", "alice")

        await send(
            ("bank.transactions.v1", client_id, _tx(client_id, f"o1-{tag}", "120000", "debit", datetime.now(UTC)))
        )

        resp = await http.delete(
            f"/api/clients/{client_id}/snoozes/large_outflow", headers=auth, json={"reason": "done"}
        )
        assert resp.status == 200, await resp.text()
        sent += 1
        await wait_group_committed(broker, settings, sent)
        await send(
            ("bank.transactions.v1", client_id, _tx(client_id, f"o2-{tag}", "120000", "debit", datetime.now(UTC)))
        )

        alerts = [orjson.loads(r.value) for r in await read_to_end(broker, settings.alerts_topic)]
        outflows = [a for a in alerts if a["client_id"] == client_id and a["type"] == "large_outflow"]
        assert [a["source_event_ids"] for a in outflows] == [[f"o2-{tag}"]], "the snoozed outflow was held back"
        assert outflows[0]["severity"] == "warning" and outflows[0]["priority"] == 45  # warning 40 + gold 5
        metrics = worker.metrics()
        assert 'clientpulse_alerts_suppressed_total{reason="snoozed",type="large_outflow"} 1.0' in metrics

        page = await (await http.get(f"/api/clients/{client_id}", headers=auth)).json()
        assert page["snoozes"] == []
        assert [(s["kind"], s["actor"], s["reason"]) for s in page["snooze_history"]] == [
            ("unsnooze", "alice", "done"),
            ("snooze", "alice", "moving funds for a house, as agreed"),
        ]
        assert all(s["published_at"] for s in page["snooze_history"])
    finally:
        await http.close()
        await publisher.stop()
        worker.stop()

"""SLAs and escalation on a real PostgreSQL and a real broker: due_by from the rules file, each overdue open alert
escalated once (audit `escalated` by `system`) however many sinks sweep and however often they restart, one push
per manager on rm.notifications.v1, and the overdue gauge by type."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
from aiokafka import AIOKafkaProducer  # type: ignore[import-untyped]
from prometheus_client import REGISTRY

from handlers.access import Scope
from schemas.notifications import EscalationPush
from streams.settings import Settings
from streams.sink.escalation import Escalator
from streams.sink.store import AlertStore
from streams.tools.embedded import free_port, terminate_group
from streams.topics import ensure_topics
from tests.integration.test_store import T0, make_alert
from tests.support import ROOT, die_with_parent, make_settings, produce, read_to_end, settings_env, unique_prefix

pytestmark = [pytest.mark.db, pytest.mark.broker]

ALL = Scope(None, True)
NOW = T0 + timedelta(days=4)
"""Every alert of T0 is overdue by now (SLAs of 24 h and 72 h)."""


@pytest.fixture
async def stores(database_url: str) -> AsyncIterator[list[AlertStore]]:
    """Two stores with their own pools: two sinks on one database."""
    out = [AlertStore(database_url), AlertStore(database_url)]
    for s in out:
        await s.connect()
        await s.migrate()
    try:
        yield out
    finally:
        for s in out:
            await s.close()


async def _clear_overdue(store: AlertStore) -> None:
    """Earlier tests' overdue alerts share this database: close them so this test's sweeps see its own only."""
    for alert in await store.overdue(ALL, NOW + timedelta(days=3650), limit=100_000):
        await store.transition(alert["alert_id"], "dismiss", scope=ALL, actor="t", actor_role="ops", note=None)
    while await store.escalate_due(NOW + timedelta(days=3650)):
        pass

    async def discard(_: list[dict[str, Any]]) -> None:
        return None

    while await store.send_escalations(discard):
        pass


def _gauge(alert_type: str) -> float | None:
    return REGISTRY.get_sample_value("clientpulse_alerts_overdue", {"type": alert_type})


async def test_overdue_open_alerts_are_escalated_once_by_concurrent_and_restarted_sinks(
    stores: list[AlertStore], broker: str
) -> None:
    first, second = stores
    await _clear_overdue(first)
    tag = uuid.uuid4().hex[:6]
    rm_a, rm_b, rm_x = f"rm-a-{tag}", f"rm-b-{tag}", f"rm-x-{tag}"
    overdue = [make_alert(rm_id=rm_a, minute=i) for i in range(30)] + [make_alert(rm_id=rm_b, type_="dormancy")]
    nobody = make_alert(rm_id=None, type_="complaint")
    orphan_rm = make_alert(rm_id=rm_x)
    acked = make_alert(rm_id=rm_a)
    not_yet = make_alert(rm_id=rm_a, type_="dormancy", minute=60 * 24 * 3)  # due 72 h later, after NOW
    await first.insert_alerts([*overdue, nobody, orphan_rm, acked, not_yet])
    await first.transition(acked.alert_id, "ack", scope=ALL, actor="alice", actor_role="rm", note=None)
    stored = await first.get_alert(not_yet.alert_id, ALL)
    assert stored is not None and stored["due_by"] == (not_yet.occurred_at + timedelta(hours=72)).isoformat()

    prefix = unique_prefix()
    settings: Settings = make_settings(broker, prefix, escalation_seconds=0.2)
    await ensure_topics(settings)
    managers = {rm_a: ["maria", "wei"], rm_b: ["maria"]}
    producer = AIOKafkaProducer(bootstrap_servers=broker, acks="all")
    await producer.start()
    try:
        sinks = [Escalator(settings, s, lambda: managers, clock=lambda: NOW) for s in (first, second, first)]
        # Two sinks at once, then a restarted one: every overdue open alert is escalated by exactly one sweep.
        results = await asyncio.gather(sinks[0].sweep(producer), sinks[1].sweep(producer))
        again = await sinks[2].sweep(producer)
    finally:
        await producer.stop()
    escalated = {a.alert_id for a in [*overdue, nobody, orphan_rm]}
    assert sum(n for n, _ in results) == len(escalated) and again == (0, 0)

    for alert in [*overdue, nobody, orphan_rm]:
        got = await first.get_alert(alert.alert_id, ALL)
        assert got is not None and got["status"] == "open" and got["escalated_at"] == NOW.isoformat()
        marks = [e for e in got["events"] if e["action"] == "escalated"]
        assert [(e["actor"], e["actor_role"], e["from"], e["to"]) for e in marks] == [
            ("system", "system", "open", "open")
        ]
    for alert in (acked, not_yet):
        got = await first.get_alert(alert.alert_id, ALL)
        assert got is not None and got["escalated_at"] is None
        assert not [e for e in got["events"] if e["action"] == "escalated"]

    records = await read_to_end(broker, settings.notifications_topic)
    pushes = [(r.key.decode(), EscalationPush.model_validate_json(r.value)) for r in records]
    assert all(key == push.key for key, push in pushes)
    by_alert: dict[str, list[str | None]] = {}
    for _, push in pushes:
        by_alert.setdefault(push.alert_id, []).append(push.manager)
    # One push per manager of the RM; none known (no RM, or an RM in no team): one for `unassigned`.
    assert {a.alert_id: sorted(by_alert[a.alert_id], key=str) for a in overdue} == {
        **{a.alert_id: ["maria", "wei"] for a in overdue[:30]},
        overdue[30].alert_id: ["maria"],
    }
    assert by_alert[nobody.alert_id] == [None] and by_alert[orphan_rm.alert_id] == [None]
    assert set(by_alert) == escalated
    sample = next(p for _, p in pushes if p.alert_id == nobody.alert_id)
    assert sample.key == "unassigned" and sample.due_by == nobody.occurred_at + timedelta(hours=24)
    assert orjson.loads(next(r.value for r in records))["kind"] == "escalation"

    assert _gauge("large_outflow") == 31 and _gauge("dormancy") == 1 and _gauge("complaint") == 1
    # Acknowledging an overdue alert takes it off the overdue count at the next sweep.
    await first.transition(overdue[0].alert_id, "ack", scope=ALL, actor="alice", actor_role="rm", note=None)
    producer = AIOKafkaProducer(bootstrap_servers=broker, acks="all")
    await producer.start()
    try:
        assert await sinks[1].sweep(producer) == (0, 0)
    finally:
        await producer.stop()
    assert _gauge("large_outflow") == 30


async def test_a_push_not_recorded_as_sent_goes_out_again_with_the_same_id(stores: list[AlertStore]) -> None:
    store = stores[0]
    await _clear_overdue(store)
    alert = make_alert(rm_id=f"rm-{uuid.uuid4().hex[:6]}")
    await store.insert_alerts([alert])
    assert await store.escalate_due(NOW) == 1
    sent: list[list[str]] = []

    async def crash(batch: list[dict[str, Any]]) -> None:
        sent.append([a["alert_id"] for a in batch])
        raise ConnectionError("broker gone after sending")

    with pytest.raises(ConnectionError):
        await store.send_escalations(crash)

    async def ok(batch: list[dict[str, Any]]) -> None:
        sent.append([a["alert_id"] for a in batch])

    assert await store.send_escalations(ok) == 1
    assert await store.send_escalations(ok) == 0
    assert sent == [[alert.alert_id], [alert.alert_id]]


async def test_due_by_is_filled_in_for_alerts_stored_before_slas(stores: list[AlertStore], database_url: str) -> None:
    import asyncpg  # type: ignore[import-untyped]

    store = stores[0]
    alert = make_alert(type_="complaint")
    await store.insert_alerts([alert])
    conn = await asyncpg.connect(database_url)
    try:
        await conn.execute("UPDATE alerts SET due_by = NULL WHERE alert_id = $1", alert.alert_id)
    finally:
        await conn.close()
    assert await store.fill_due_by() >= 1
    got = await store.get_alert(alert.alert_id, ALL)
    assert got is not None and got["due_by"] == (alert.occurred_at + timedelta(hours=24)).isoformat()
    assert datetime.fromisoformat(got["due_by"]) < datetime.now(UTC)


async def _start_sink(env: dict[str, str], log_path: Path, port: int) -> subprocess.Popen[bytes]:
    log = open(log_path, "ab")  # noqa: SIM115 - owned by the child
    proc = subprocess.Popen(
        [sys.executable, "-m", "streams.cli", "sink"],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
        preexec_fn=die_with_parent,
    )
    log.close()
    deadline = time.monotonic() + 60
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as http:
        while True:
            assert proc.poll() is None, log_path.read_text()
            with contextlib.suppress(aiohttp.ClientError, TimeoutError):
                async with http.get(f"http://127.0.0.1:{port}/readyz") as resp:
                    if resp.status == 200:
                        return proc
            assert time.monotonic() < deadline, f"sink not ready:\n{log_path.read_text()}"
            await asyncio.sleep(0.2)


async def _sweeps(port: int) -> float:
    async with aiohttp.ClientSession() as http, http.get(f"http://127.0.0.1:{port}/metrics") as resp:
        text = await resp.text()
    match = re.search(r"^clientpulse_escalation_sweep_seconds_count (\S+)$", text, re.M)
    return float(match[1]) if match else 0.0


async def test_the_sink_process_escalates_on_its_timer_and_not_again_after_a_restart(
    broker: str, database_url: str, tmp_path: Path
) -> None:
    settings = make_settings(broker, unique_prefix(), database_url=database_url, sink_batch_size=50)
    await ensure_topics(settings)
    tag = uuid.uuid4().hex[:6]
    rm = f"rm-{tag}"
    org = tmp_path / "org.yaml"
    org.write_text(f"managers:\n  wei.{tag}: [{rm}]\n")
    late = make_alert(rm_id=rm, client_id=f"c-{tag}")  # occurred 2026-03-01: long past its 24 h SLA
    await produce(broker, [(settings.alerts_topic, late.client_id.encode(), late.model_dump_json().encode())])
    port = free_port()
    env = {
        **os.environ,
        **settings_env(settings),
        "CLIENTPULSE_API_HOST": "127.0.0.1",
        "CLIENTPULSE_API_PORT": str(port),
        "CLIENTPULSE_ORG_FILE": str(org),
        "CLIENTPULSE_ESCALATION_SECONDS": "0.3",
    }
    log_path = tmp_path / "sink.log"
    store = AlertStore(database_url)
    await store.connect()
    try:
        proc = await _start_sink(env, log_path, port)
        try:
            deadline = time.monotonic() + 60
            while True:
                got = await store.get_alert(late.alert_id, ALL)
                if got is not None and got["escalated_at"] is not None:
                    break
                assert time.monotonic() < deadline, log_path.read_text()
                await asyncio.sleep(0.2)
            marks = [e for e in got["events"] if e["action"] == "escalated"]
            assert [(e["actor"], e["actor_role"]) for e in marks] == [("system", "system")]
            pushes = await read_to_end(broker, settings.notifications_topic)
            deadline = time.monotonic() + 30
            while not any(late.alert_id.encode() in r.value for r in pushes):
                assert time.monotonic() < deadline, "no escalation push"
                await asyncio.sleep(0.2)
                pushes = await read_to_end(broker, settings.notifications_topic)
        finally:
            terminate_group(proc, timeout=15)
        proc = await _start_sink(env, log_path, port)
        try:
            # Two full sweeps after the restart: nothing new to escalate, nothing sent again.
            deadline = time.monotonic() + 30
            while await _sweeps(port) < 2:
                assert time.monotonic() < deadline, log_path.read_text()
                await asyncio.sleep(0.2)
        finally:
            terminate_group(proc, timeout=15)
        again = await read_to_end(broker, settings.notifications_topic)
        # (The database is shared: the sink escalated other tests' overdue alerts too. Ours went out once.)
        ours = [(r.key.decode(), p.alert_id) for r in again if (p := EscalationPush.model_validate_json(r.value))]
        assert [x for x in ours if x[1] == late.alert_id] == [(f"wei.{tag}", late.alert_id)]
        got = await store.get_alert(late.alert_id, ALL)
        assert got is not None and len([e for e in got["events"] if e["action"] == "escalated"]) == 1
    finally:
        await store.close()

"""The sink on the real broker and PostgreSQL: stored once, committed after the write, nothing lost in an outage."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import aiohttp
import asyncpg  # type: ignore[import-untyped]
import orjson
import pytest
from aiohttp.test_utils import TestClient, TestServer
from aiokafka import AIOKafkaConsumer, TopicPartition  # type: ignore[import-untyped]
from prometheus_client import REGISTRY

from handlers.access import Scope
from handlers.ruleset import Ruleset, load_rules
from handlers.state import ClientState
from schemas.alerts import Alert
from streams.api.app import create_api
from streams.api.auth import hash_token
from streams.settings import Settings
from streams.sink.service import AlertSink
from streams.sink.store import AlertStore
from streams.tools.embedded import free_port, terminate_group
from streams.topics import ensure_topics
from tests.integration.test_store import make_alert
from tests.support import ROOT, die_with_parent, make_settings, produce, read_to_end, settings_env, unique_prefix

pytestmark = [pytest.mark.broker, pytest.mark.db]


class TcpProxy:
    """A TCP relay to PostgreSQL that the test can cut (stop) and restore (start) on the same port."""

    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self.port = free_port()
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", self.port, reuse_address=True)

    async def stop(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.close()
        for writer in list(self._writers):
            writer.transport.abort()
        self._writers.clear()
        if server is not None:
            await server.wait_closed()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.transport.abort()
            return
        self._writers |= {writer, up_writer}

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            with contextlib.suppress(OSError, asyncio.IncompleteReadError):
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            dst.transport.abort()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))
        self._writers -= {writer, up_writer}


def _via_proxy(database_url: str, port: int) -> str:
    parts = urlsplit(database_url)
    userinfo = parts.netloc.rpartition("@")[0]
    netloc = f"{userinfo}@127.0.0.1:{port}" if userinfo else f"127.0.0.1:{port}"
    return urlunsplit(parts._replace(netloc=netloc))


async def wait_until(check: Callable[[], Awaitable[bool]], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if await check():
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


async def stored_count(database_url: str, alert_ids: list[str]) -> int:
    conn = await asyncpg.connect(database_url)
    try:
        return int(await conn.fetchval("SELECT count(*) FROM alerts WHERE alert_id = ANY($1)", alert_ids))
    finally:
        await conn.close()


@contextlib.asynccontextmanager
async def offsets_of(bootstrap: str, group: str, partitions: int) -> AsyncIterator[Callable[[str], Awaitable[int]]]:
    """`committed(topic)`: the sum of the group's committed offsets there (how many messages it acknowledged)."""
    probe = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False)
    await probe.start()  # not subscribed: it never joins the group, it only reads its offsets

    async def committed(topic: str) -> int:
        total = 0
        for p in range(partitions):
            total += await probe.committed(TopicPartition(topic, p)) or 0
        return total

    try:
        yield committed
    finally:
        await probe.stop()


def alert_records(settings: Settings, alerts: list[Alert]) -> list[tuple[str, bytes | None, bytes | None]]:
    return [(settings.alerts_topic, a.client_id.encode(), a.model_dump_json().encode()) for a in alerts]


def sink_settings(broker: str, database_url: str, **overrides: Any) -> Settings:
    return make_settings(
        broker,
        unique_prefix(),
        database_url=database_url,
        sink_backoff_max=0.5,
        sink_batch_size=50,
        **overrides,
    )


@contextlib.asynccontextmanager
async def running(sink: AlertSink) -> AsyncIterator[asyncio.Task[None]]:
    task = asyncio.create_task(sink.run())
    try:
        yield task
    finally:
        sink.stop()
        try:
            await asyncio.wait_for(task, 15)
        finally:
            await sink.store.close()


def _metric(name: str) -> float:
    return REGISTRY.get_sample_value(name) or 0.0


async def test_sink_stores_each_alert_once_and_dead_letters_what_it_cannot_store(
    broker: str, database_url: str
) -> None:
    settings = sink_settings(broker, database_url)
    await ensure_topics(settings)
    alerts = [make_alert(rm_id=f"rm-{i % 3}", client_id=f"c-{i}") for i in range(20)]
    snap_1 = ClientState("c-1", aum=12_345_678, tier="platinum", rm_id="rm-1", segment="retail").snapshot()
    snap_2_old = ClientState("c-2", aum=100, tier="mass", rm_id="rm-2").snapshot()
    snap_2_new = ClientState("c-2", aum=9_000_000, tier="gold", rm_id="rm-9", watermark=1_772_000_000_000_000)
    records = alert_records(settings, alerts)
    records += alert_records(settings, alerts[:5])  # a re-delivery
    records += [
        (settings.alerts_topic, b"c-x", b"{not json"),
        (settings.alerts_topic, b"c-y", orjson.dumps({"alert_id": "a-broken", "type": "large_outflow"})),
        (settings.snapshots_topic, b"c-1", orjson.dumps(snap_1)),
        (settings.snapshots_topic, b"c-2", orjson.dumps(snap_2_old)),
        (settings.snapshots_topic, b"c-2", orjson.dumps(snap_2_new.snapshot())),
    ]
    await produce(broker, records)
    new_before = _metric("clientpulse_alert_store_inserted_total")
    ids = [a.alert_id for a in alerts]

    sink = AlertSink(settings, AlertStore(database_url))
    async with running(sink), offsets_of(broker, sink.group_id, settings.partitions) as committed:

        async def done() -> bool:
            return await committed(settings.alerts_topic) == 27

        await wait_until(done, 30, "the sink to commit every alert message")
        assert await stored_count(database_url, ids) == 20
        assert sink.status()["alerts_new"] == 20
        assert sink.status()["alerts_written"] == 25
        assert sink.status()["healthy"] is True
        assert _metric("clientpulse_alert_store_inserted_total") - new_before == 20
        assert await committed(settings.snapshots_topic) == 3
        client_2 = await sink.store.get_client("c-2")
        assert client_2 is not None
        assert (client_2["aum"], client_2["tier"], client_2["rm_id"]) == ("90000.00", "gold", "rm-9")
        client_1 = await sink.store.get_client("c-1")
        assert client_1 is not None and client_1["aum"] == "123456.78"

    # The sink sends a batch's dead letters before committing it: all of them are on the topic now.
    letters = [orjson.loads(r.value) for r in await read_to_end(broker, settings.deadletter_topic)]
    assert sorted(d["reason"] for d in letters) == ["invalid_json", "schema"]
    assert {d["raw"] for d in letters} >= {"{not json"}

    # A second consumer group replays the whole topic: every alert is already stored.
    replay = AlertSink(settings.model_copy(update={"app_id": settings.app_id + "-replay"}), AlertStore(database_url))
    async with running(replay), offsets_of(broker, replay.group_id, settings.partitions) as replay_committed:

        async def replayed() -> bool:
            return await replay_committed(settings.alerts_topic) == 27

        await wait_until(replayed, 30, "the replay to finish")
        assert replay.status()["alerts_written"] == 25
        assert replay.status()["alerts_new"] == 0
    conn = await asyncpg.connect(database_url)
    try:
        creations = await conn.fetchval(
            "SELECT count(*) FROM alert_events WHERE alert_id = ANY($1) AND from_status IS NULL", ids
        )
    finally:
        await conn.close()
    assert creations == 20


async def test_no_alert_is_lost_across_a_database_outage(broker: str, database_url: str) -> None:
    target = urlsplit(database_url)
    proxy = TcpProxy(target.hostname or "127.0.0.1", target.port or 5432)
    proxied = _via_proxy(database_url, proxy.port)
    settings = sink_settings(broker, proxied)
    await ensure_topics(settings)
    store = AlertStore(proxied, connect_timeout=1, command_timeout=3)
    sink = AlertSink(settings, store, backoff_initial=0.05)
    failures = _metric("clientpulse_alert_store_failures_total")
    client: TestClient[Any, Any] = TestClient(TestServer(create_api(store, None, sink_status=sink.status)))
    await client.start_server()
    try:
        async with running(sink), offsets_of(broker, sink.group_id, settings.partitions) as committed:
            # The database is unreachable from the start: the sink waits, unhealthy, and says so.
            # Two failed connection attempts prove it has tried; a sink that reported itself
            # healthy or started consuming without its database fails the assertions after.
            async def tried_twice(floor: float = failures + 2) -> bool:
                return _metric("clientpulse_alert_store_failures_total") >= floor

            await wait_until(tried_twice, 15, "the sink to try to connect twice")
            assert sink.healthy is False and sink.consuming is False and sink.status()["last_error"]
            health = await (await client.get("/healthz")).json()
            assert (health["status"], health["store"]) == ("degraded", "down")
            assert (await client.get("/readyz")).status == 503
            assert _metric("clientpulse_alert_store_up") == 0

            await proxy.start()

            async def consuming() -> bool:
                return sink.healthy and sink.consuming

            await wait_until(consuming, 15, "the sink to connect once the database is reachable")
            before = [make_alert() for _ in range(10)]
            await produce(broker, alert_records(settings, before))

            async def first_batch_committed() -> bool:
                return await committed(settings.alerts_topic) == 10

            await wait_until(first_batch_committed, 30, "the first batch to be stored and committed")
            assert await stored_count(database_url, [a.alert_id for a in before]) == 10

            await proxy.stop()
            during = [make_alert() for _ in range(10)]
            await produce(broker, alert_records(settings, during))

            async def unhealthy() -> bool:
                return not sink.healthy

            await wait_until(unhealthy, 15, "the sink to notice the outage")
            health = await (await client.get("/healthz")).json()
            assert (health["status"], health["store"]) == ("degraded", "down")
            assert health["sink"]["last_error"]
            assert (await client.get("/readyz")).status == 503
            assert _metric("clientpulse_alert_store_up") == 0
            # Still retrying, with backoff: the sink has the second batch in hand (it was idle before
            # it: only a write counts as a failure) and fails to store it, again and again.
            failures = _metric("clientpulse_alert_store_failures_total")

            async def retried(floor: float = failures + 2) -> bool:
                return _metric("clientpulse_alert_store_failures_total") >= floor

            await wait_until(retried, 15, "the sink to retry its write twice")
            # Nothing of the second batch is stored, and none of it is committed.
            assert await stored_count(database_url, [a.alert_id for a in during]) == 0
            assert await committed(settings.alerts_topic) == 10

            await proxy.start()

            async def all_committed() -> bool:
                return await committed(settings.alerts_topic) == 20

            await wait_until(all_committed, 30, "every alert of the outage to be stored and committed")
            assert await stored_count(database_url, [a.alert_id for a in during]) == 10
            assert sink.healthy is True
            assert _metric("clientpulse_alert_store_up") == 1
            assert (await client.get("/readyz")).status == 200
            health = await (await client.get("/healthz")).json()
            assert (health["status"], health["store"]) == ("ok", "up")
    finally:
        await client.close()
        await proxy.stop()


async def test_clientpulse_sink_process_serves_the_rm_api(broker: str, database_url: str, tmp_path: Path) -> None:
    settings = sink_settings(broker, database_url)
    await ensure_topics(settings)
    port = free_port()
    token, ops_token = f"rm-token-{uuid.uuid4().hex}", f"ops-token-{uuid.uuid4().hex}"
    rm_id = f"rm-{uuid.uuid4().hex[:6]}"
    tokens_file = tmp_path / "tokens.yaml"
    tokens_file.write_text(
        f"tokens:\n  - name: alice\n    role: rm\n    rm_id: {rm_id}\n    hash: '{hash_token(token, log2_n=10)}'\n"
    )
    env = {
        **os.environ,
        **settings_env(settings),
        "CLIENTPULSE_API_HOST": "127.0.0.1",
        "CLIENTPULSE_API_PORT": str(port),
        "CLIENTPULSE_API_TOKENS_FILE": str(tokens_file),
        "CLIENTPULSE_API_TOKENS": json.dumps(
            [{"name": "olga", "role": "ops", "hash": hash_token(ops_token, log2_n=10)}]
        ),
    }
    log = open(tmp_path / "sink.log", "wb")  # noqa: SIM115
    proc = subprocess.Popen(
        [sys.executable, "-m", "streams.cli", "sink"],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
        preexec_fn=die_with_parent,
    )
    base = f"http://127.0.0.1:{port}"
    mine = [make_alert(rm_id=rm_id, client_id=f"c-{rm_id}", minute=i) for i in range(3)]
    other = make_alert(rm_id="rm-someone-else")
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as http:

            async def ready() -> bool:
                assert proc.poll() is None, (tmp_path / "sink.log").read_text()
                with contextlib.suppress(aiohttp.ClientError):
                    async with http.get(f"{base}/readyz") as resp:
                        return resp.status == 200
                return False

            await wait_until(ready, 30, "the sink process to be ready")
            await produce(broker, alert_records(settings, [*mine, other]))
            auth = {"Authorization": f"Bearer {token}"}

            async def listed() -> bool:
                async with http.get(f"{base}/api/alerts", headers=auth) as resp:
                    return len((await resp.json())["alerts"]) == 3

            await wait_until(listed, 30, "the alerts to reach the API")
            async with http.get(f"{base}/api/alerts/{other.alert_id}", headers=auth) as resp:
                assert resp.status == 404
            async with http.post(f"{base}/api/alerts/{mine[0].alert_id}/ack", headers=auth) as resp:
                assert resp.status == 200 and (await resp.json())["status"] == "acknowledged"
            async with http.get(
                f"{base}/api/alerts/{other.alert_id}", headers={"Authorization": f"Bearer {ops_token}"}
            ) as resp:
                assert resp.status == 200
            async with http.get(f"{base}/api/alerts", headers={"Authorization": "Bearer wrong"}) as resp:
                assert resp.status == 401
            async with http.get(f"{base}/metrics") as resp:
                text = await resp.text()
                assert "clientpulse_alert_store_up 1.0" in text
                rule_version = load_rules(settings.rules_path).rule_version
                assert f'clientpulse_build_info{{rule_version="{rule_version}",version="' in text
    finally:
        terminate_group(proc, timeout=15)
        log.close()
    assert proc.returncode == 0, (tmp_path / "sink.log").read_text()


async def test_alerts_of_an_older_worker_get_their_priority_from_the_sinks_rules(
    broker: str, database_url: str, rules: Ruleset
) -> None:
    """An alert published before priority and titles existed is stored with the priority the sink's rules file
    gives it (warning 40 + diamond 20 + aum_drain 5 by the shipped tables) and its English title only."""
    settings = sink_settings(broker, database_url)
    await ensure_topics(settings)
    current = make_alert(client_id="c-new-worker")
    older = current.model_dump(mode="json", exclude={"priority", "titles"})
    older.update(alert_id=uuid.uuid4().hex, client_id="c-old-worker", type="aum_drain", severity="warning")
    older["tier"] = "diamond"
    await produce(
        broker,
        [
            (settings.alerts_topic, b"c-old-worker", orjson.dumps(older)),
            *alert_records(settings, [current]),
        ],
    )
    sink = AlertSink(settings, AlertStore(database_url), rules=rules)
    async with running(sink), offsets_of(broker, sink.group_id, settings.partitions) as committed:

        async def done() -> bool:
            return await committed(settings.alerts_topic) == 2

        await wait_until(done, 30, "the sink to store both alerts")
        everyone = Scope(None, True)
        stored = await sink.store.get_alert(older["alert_id"], everyone)
        assert stored is not None
        assert (stored["priority"], stored["titles"]) == (65, {"en": older["title"]})
        fresh = await sink.store.get_alert(current.alert_id, everyone)
        assert fresh is not None and (fresh["priority"], fresh["titles"]) == (current.priority, current.titles)

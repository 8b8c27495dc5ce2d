"""Nothing lost, nothing doubled: crashes, rebalances, a database outage and a failing batch, on the real services.

Every test here feeds a known synthetic history to real `clientpulse worker`
processes (event clock) on the session broker, with a real `clientpulse sink`
storing alerts in PostgreSQL, and compares the end result with the backtest of
the same history (handlers.replay, `until` = the final tick):

- the alert store holds exactly the backtest's alerts (alert_id and every
  field but detected_at): none missing, none extra, each created once (one
  'open' row in the append-only audit per alert);
- the last state record of every client in the state table's changelog equals
  the backtest's final ClientState, field for field (recently seen ids too).

Why the history is cut into single-topic segments: the worker fetches each
topic partition independently, so events of one partition on different topics
may be taken in another order than the file's, and the partition clock (its
largest occurred_at) may run ahead of an event taken late (see
test_equivalence.py). Here each segment is a stretch of event time whose
events come from ONE input topic (the others' events of that stretch are left
out of the history), each segment is produced alone, and the next waits until
the worker group has committed every message so far. Inside a segment each
partition's events then arrive in time order, as in the file, whatever the
crashes and rebalances do. The assertion stays exact.

Redelivery after a SIGKILL covers what was processed since the last offset
commit (at most about a second: `broker_commit_interval`). The duplicate memory
is 7 days of event time, so the feed rate is chosen to keep a second of
events well under 7 days of this compressed history (as it is, by far, in a
live bank).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import asyncpg  # type: ignore[import-untyped]
import orjson
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition  # type: ignore[import-untyped]
from prometheus_client.parser import text_string_to_metric_families

from handlers.replay import Replay
from handlers.ruleset import Ruleset
from handlers.state import ClientState
from schemas.alerts import Alert
from streams.settings import Settings
from streams.tools.embedded import free_port, terminate_group
from streams.tools.synthetic import CLIENTS, INTERACTIONS, TRANSACTIONS, Record, history
from streams.topics import ensure_topics
from tests.integration.test_sink import TcpProxy, _via_proxy
from tests.support import (
    ROOT,
    GroupOffsets,
    WorkerProcess,
    die_with_parent,
    end_offsets,
    make_settings,
    new_worker,
    read_to_end,
    settings_env,
    unique_prefix,
)
from tests.unit.test_disorder import disorder

pytestmark = [pytest.mark.broker, pytest.mark.db]

START = datetime(2026, 1, 1, tzinfo=UTC)
DETECTED_AT = datetime(2030, 1, 1, tzinfo=UTC)
CYCLE = (TRANSACTIONS, TRANSACTIONS, INTERACTIONS, TRANSACTIONS, CLIENTS)
"""The input topic of each successive segment."""

Comparable = tuple[Any, ...]


# --------------------------------------------------------------------------- the history and its backtest
@dataclass
class Segment:
    topic: str
    records: list[Record]


@dataclass
class Plan:
    tag: str
    segments: list[Segment]
    until: datetime

    @property
    def records(self) -> list[Record]:
        return [r for s in self.segments for r in s.records]


def _retag(record: Record, tag: str) -> Record:
    topic, key, value = record
    return topic, tag + key, {**value, "client_id": tag + key}


def make_plan(tag: str, *, events: int, clients: int, seed: int, span_days: int, segment_days: int) -> Plan:
    """Onboarding (reference data, then the opening deposits), then single-topic segments of `segment_days`."""
    records = [_retag(r, tag) for r in history(events, clients, seed=seed, start=START, span_days=span_days)]
    start = START.isoformat()
    onboarding = [r for r in records if r[2]["occurred_at"] == start]
    segments = [
        Segment(CLIENTS, [r for r in onboarding if r[0] == CLIENTS]),
        Segment(TRANSACTIONS, [r for r in onboarding if r[0] == TRANSACTIONS]),
    ]
    by_segment: dict[int, list[Record]] = {}
    for record in records[len(onboarding) :]:
        number = (datetime.fromisoformat(str(record[2]["occurred_at"])) - START) // timedelta(days=segment_days)
        if record[0] == CYCLE[number % len(CYCLE)]:
            by_segment.setdefault(number, []).append(record)
    segments += [Segment(CYCLE[n % len(CYCLE)], by_segment[n]) for n in sorted(by_segment)]
    return Plan(tag, segments, START + timedelta(days=span_days + 400))


@dataclass
class Expected:
    alerts: dict[str, Comparable]
    states: dict[str, ClientState]


def backtest(plan: Plan, rules: Ruleset) -> Expected:
    lines = [orjson.dumps({"topic": t, "key": k, "value": v}) for t, k, v in plan.records]
    replay = Replay(rules, detected_at=DETECTED_AT)
    alerts = [comparable(a) for a in replay.run_lines(lines, plan.until)]
    by_id = {a[0]: a for a in alerts}
    assert len(by_id) == len(alerts), "alert ids are unique"
    return Expected(by_id, replay.states)


def comparable(alert: Alert | dict[str, Any]) -> Comparable:
    """Every field of an alert but detected_at, in one canonical form for the topic, the store and the backtest."""
    data = alert.model_dump(mode="json") if isinstance(alert, Alert) else alert
    occurred = data["occurred_at"]
    occurred = occurred if isinstance(occurred, datetime) else datetime.fromisoformat(occurred)
    facts = data["facts"] if isinstance(data["facts"], dict) else orjson.loads(data["facts"])
    return (
        data["alert_id"],
        data["type"],
        data["severity"],
        data["client_id"],
        occurred.astimezone(UTC).isoformat(),
        tuple(sorted(facts.items())),
        data["rm_id"],
        data["tier"],
        data["title"],
        data["rule_version"],
        tuple(data["source_event_ids"]),
    )


# --------------------------------------------------------------------------- the running system
@dataclass
class Rig:
    """Workers, a sink process and a producer on one topic prefix; everything is stopped by `close()`."""

    broker: str
    database_url: str
    tmp_path: Path
    settings: Settings
    tag: str
    workers: list[WorkerProcess] = field(default_factory=list)
    sink: subprocess.Popen[bytes] | None = None
    sink_port: int = 0
    produced: dict[TopicPartition, int] = field(default_factory=dict)
    """For each input and tick partition written to: the offset after the last record sent there."""
    producer: AIOKafkaProducer | None = None
    probe: AIOKafkaConsumer | None = None
    started: int = 0

    @classmethod
    async def create(cls, broker: str, database_url: str, tmp_path: Path, sink_db_url: str | None = None) -> Rig:
        prefix = unique_prefix()
        settings = make_settings(
            broker, prefix, database_url=sink_db_url or database_url, sink_backoff_max=0.5, sink_batch_size=200
        )
        await ensure_topics(settings)
        rig = cls(broker, database_url, tmp_path, settings, tag=prefix.replace(".", "-"))
        rig.producer = AIOKafkaProducer(bootstrap_servers=broker, acks="all", linger_ms=2)
        await rig.producer.start()
        rig.probe = AIOKafkaConsumer(bootstrap_servers=broker, group_id=settings.app_id, enable_auto_commit=False)
        await rig.probe.start()
        return rig

    async def close(self) -> None:
        await asyncio.gather(*(asyncio.to_thread(w.stop) for w in self.workers))
        if self.sink is not None:
            await asyncio.to_thread(terminate_group, self.sink, 15)
        if self.producer is not None:
            await self.producer.stop()
        if self.probe is not None:
            await self.probe.stop()

    def logs(self) -> str:
        return "\n".join(f"--- {w.log_path.name}\n{w.tail(25)}" for w in self.workers[-3:])

    # ---------------------------------------------------------------- processes
    def start_worker(self) -> WorkerProcess:
        self.started += 1
        worker = new_worker(self.settings, self.tmp_path, f"worker-{self.started}", CLIENTPULSE_CLOCK="event")
        self.workers.append(worker.start())
        return worker

    def live_workers(self) -> list[WorkerProcess]:
        return [w for w in self.workers if w.proc is not None and w.proc.poll() is None]

    async def start_sink(self) -> None:
        self.sink_port = free_port()
        env = {
            **os.environ,
            **settings_env(self.settings),
            "CLIENTPULSE_API_HOST": "127.0.0.1",
            "CLIENTPULSE_API_PORT": str(self.sink_port),
        }
        log = open(self.tmp_path / "sink.log", "ab")  # noqa: SIM115
        self.sink = subprocess.Popen(
            [sys.executable, "-m", "streams.cli", "sink", "--no-api"],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=die_with_parent,
        )
        log.close()

        async def ready() -> bool:
            return (await self.sink_http("/readyz"))[0] == 200

        await self.until(ready, 30, "the sink to be ready")

    async def sink_http(self, path: str) -> tuple[int, dict[str, Any]]:
        """GET on the sink's health server, from a thread (the database proxy may live on this event loop)."""
        return await asyncio.to_thread(self._sink_http, path)

    def _sink_http(self, path: str) -> tuple[int, dict[str, Any]]:
        assert self.sink is not None and self.sink.poll() is None, (self.tmp_path / "sink.log").read_text()[-3000:]
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.sink_port}{path}", timeout=3) as resp:
                return resp.status, orjson.loads(resp.read())
        except urllib.error.HTTPError as exc:
            return exc.code, orjson.loads(exc.read())
        except OSError:
            return 0, {}

    async def until(self, check: Callable[[], Any], timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            result = check()
            if asyncio.iscoroutine(result):
                result = await result
            if result:
                return
            await asyncio.sleep(0.2)
        raise AssertionError(f"timed out after {timeout}s waiting for {what}\n{self.logs()}")

    async def wait_ready(self, worker: WorkerProcess) -> None:
        await asyncio.to_thread(worker.wait_ready, 60)

    # ---------------------------------------------------------------- traffic
    async def feed(
        self,
        records: list[Record],
        rate: float,
        actions: dict[int, Callable[[], Awaitable[None]]] | None = None,
    ) -> None:
        """Produce `records` in order at about `rate` per second, running `actions[i]` before record i."""
        assert self.producer is not None
        actions = actions or {}
        started = time.monotonic()
        futures = []
        for i, (topic, key, value) in enumerate(records):
            if i in actions:
                await actions[i]()
            futures.append(await self.producer.send(self.settings.topic(topic), orjson.dumps(value), key=key.encode()))
            ahead = started + (i + 1) / rate - time.monotonic()
            if ahead > 0:
                await asyncio.sleep(ahead)
        for future in futures:
            metadata = await future
            self.produced[TopicPartition(metadata.topic, metadata.partition)] = metadata.offset + 1

    async def committed(self, topic: str) -> int:
        assert self.probe is not None
        total = 0
        for partition in range(self.settings.partitions):
            total += await self.probe.committed(TopicPartition(topic, partition)) or 0
        return total

    async def wait_committed(self, timeout: float = 60) -> None:
        """Until the worker group has committed every message sent so far, ticks included.

        A worker commits a batch's offsets only after its alerts, dead letters
        and state records are on the broker, so from then on those topics hold
        everything this input caused.
        """

        async def done() -> bool:
            assert self.live_workers(), f"no worker is running\n{self.logs()}"
            assert self.probe is not None
            for tp, end in self.produced.items():
                if (await self.probe.committed(tp) or 0) < end:
                    return False
            return True

        try:
            await self.until(done, timeout, "the workers to commit")
        except AssertionError as exc:
            assert self.probe is not None
            behind = {}
            for tp, end in sorted(self.produced.items()):
                behind[f"{tp.topic}/{tp.partition}"] = (await self.probe.committed(tp), end)
            statuses = [await asyncio.to_thread(w.status) for w in self.live_workers()]
            raise AssertionError(f"committed vs produced {behind}; workers {statuses}\n{exc}") from None

    async def tick(self, now: datetime) -> None:
        """Advance every partition's event clock to `now` (`wait_committed` then waits for the sweep too)."""
        assert self.producer is not None
        value = orjson.dumps({"now": now.isoformat()})
        futures = [
            await self.producer.send(self.settings.ticks_topic, value, key=b"tick", partition=partition)
            for partition in range(self.settings.partitions)
        ]
        for future in futures:
            metadata = await future
            self.produced[TopicPartition(metadata.topic, metadata.partition)] = metadata.offset + 1

    # ---------------------------------------------------------------- results
    async def stored(self) -> list[dict[str, Any]]:
        conn = await asyncpg.connect(self.database_url)
        try:
            rows = await conn.fetch("SELECT * FROM alerts WHERE starts_with(client_id, $1)", self.tag)
            creations = await conn.fetch(
                "SELECT e.alert_id, count(*) AS n FROM alert_events e JOIN alerts a USING (alert_id)"
                " WHERE starts_with(a.client_id, $1) AND e.from_status IS NULL GROUP BY e.alert_id",
                self.tag,
            )
        finally:
            await conn.close()
        counts = {r["alert_id"]: r["n"] for r in creations}
        return [{**dict(r), "creations": counts.get(r["alert_id"], 0)} for r in rows]

    async def sink_caught_up(self) -> bool:
        """Whether the sink has committed every alert published so far (it commits only what it stored)."""
        ends = await end_offsets(self.broker, self.settings.alerts_topic)
        async with GroupOffsets(self.broker, f"{self.settings.app_id}-sink") as sink:
            return await sink.reached(self.settings.alerts_topic, ends)

    async def sink_committed(self) -> dict[int, int]:
        async with GroupOffsets(self.broker, f"{self.settings.app_id}-sink") as sink:
            return await sink.of(self.settings.alerts_topic, range(self.settings.partitions))

    async def wait_stored(self, timeout: float = 60) -> list[dict[str, Any]]:
        """The stored alerts once the workers have committed all input and the sink every alert they published.

        Nothing can be on its way then: an alert missing from the store was
        never published, and an extra one would be in the store already.
        """
        await self.wait_committed()
        await self.until(self.sink_caught_up, timeout, "the sink to commit every published alert")
        return await self.stored()

    async def changelog_states(self) -> dict[str, ClientState]:
        """The last record of every client in the state table's changelog."""
        records = await read_to_end(self.broker, f"{self.settings.app_id}-client-state-changelog")
        return {r.key.decode(): ClientState.from_bytes(r.value) for r in records}

    async def published(self) -> list[dict[str, Any]]:
        """Every alert message on rm.alerts.v1 (a re-published alert appears more than once)."""
        return [orjson.loads(r.value) for r in await read_to_end(self.broker, self.settings.alerts_topic)]

    async def sink_metric(self, name: str) -> float:
        """A sample of the sink process's /metrics (0 when absent)."""

        def scrape() -> str:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.sink_port}/metrics", timeout=3) as resp:
                return str(resp.read().decode())

        for family in text_string_to_metric_families(await asyncio.to_thread(scrape)):
            for sample in family.samples:
                if sample.name == name and not sample.labels:
                    return float(sample.value)
        return 0.0


@contextlib.asynccontextmanager
async def rig_for(broker: str, database_url: str, tmp_path: Path, sink_db_url: str | None = None) -> AsyncIterator[Rig]:
    rig = await Rig.create(broker, database_url, tmp_path, sink_db_url)
    try:
        yield rig
    finally:
        await rig.close()


async def check_result(rig: Rig, expected: Expected, context: str) -> None:
    """The store holds exactly the backtest's alerts, each created once; every client's state is the backtest's."""
    rows = await rig.wait_stored()
    got = {r["alert_id"]: comparable(r) for r in rows}
    missing = sorted(set(expected.alerts) - set(got))
    extra = sorted(set(got) - set(expected.alerts))
    changed = sorted(i for i in set(got) & set(expected.alerts) if got[i] != expected.alerts[i])
    assert not missing and not extra and not changed, (
        f"{context}: {len(missing)} alerts missing {Counter(expected.alerts[i][1] for i in missing)}, "
        f"{len(extra)} extra, {len(changed)} different:\n"
        + "\n".join(f"- {expected.alerts[i]}" for i in missing[:5])
        + "\n"
        + "\n".join(f"+ {got[i]}" for i in extra[:5])
        + "\n"
        + "\n".join(f"~ {expected.alerts[i]}\n  {got[i]}" for i in changed[:3])
    )
    assert len(rows) == len(expected.alerts)
    assert {r["creations"] for r in rows} == {1}, "each alert was created once in the audit trail"

    states = await rig.changelog_states()  # complete: every input offset is committed (wait_stored)
    differ = sorted(c for c in set(states) | set(expected.states) if states.get(c) != expected.states.get(c))
    assert not differ, f"{context}: {len(differ)} client states differ, e.g. {differ[:3]}:\n" + "\n".join(
        f"worker:   {states.get(c)}\nbacktest: {expected.states.get(c)}" for c in differ[:2]
    )


def chaos_seed() -> int:
    return int(os.environ.get("CLIENTPULSE_CHAOS_SEED", random.randrange(2**31)))


# --------------------------------------------------------------------------- 1. crashes
@pytest.mark.slow
async def test_sigkilled_workers_lose_and_double_nothing(
    broker: str, database_url: str, rules: Ruleset, tmp_path: Path
) -> None:
    seed = chaos_seed()
    rng = random.Random(seed)
    context = f"CLIENTPULSE_CHAOS_SEED={seed}"
    async with rig_for(broker, database_url, tmp_path) as rig:
        plan = make_plan(rig.tag, events=1500, clients=100, seed=seed % 1000, span_days=60, segment_days=5)
        expected = backtest(plan, rules)
        await rig.start_sink()
        await rig.wait_ready(rig.start_worker())
        kills: list[tuple[int, int]] = []

        async def crash_and_restart() -> None:
            (victim,) = rig.live_workers()
            await asyncio.to_thread(victim.kill)  # SIGKILL, mid-stream: no commit, no flush, no goodbye
            rig.start_worker()

        kill_segments = set(rng.sample([n for n, s in enumerate(plan.segments) if len(s.records) >= 20], 3))
        for number, segment in enumerate(plan.segments):
            actions: dict[int, Callable[[], Awaitable[None]]] = {}
            if number in kill_segments:
                at = rng.randrange(len(segment.records) // 5, len(segment.records) * 4 // 5)
                actions[at] = crash_and_restart
                kills.append((number, at))
            await rig.feed(segment.records, rate=60, actions=actions)
            await rig.wait_committed()
        await rig.tick(plan.until)
        await check_result(rig, expected, f"{context}, kills at (segment, record) {kills}")
        assert len(kills) >= 3 and rig.started == len(kills) + 1
        published = await rig.published()
        assert {v["alert_id"] for v in published} == set(expected.alerts)


# --------------------------------------------------------------------------- 2. rebalances (and 4. disorder)
async def partitions_of(worker: WorkerProcess) -> set[int]:
    status = await asyncio.to_thread(worker.status)
    return set(status["partitions"]) if status and status.get("ready") else set()


async def wait_shared(rig: Rig, workers: list[WorkerProcess], what: str) -> None:
    """Until `workers` are ready and own all partitions between them, each some."""

    async def shared() -> bool:
        owned = [await partitions_of(w) for w in workers]
        union = set().union(*owned)
        return all(owned) and union == set(range(rig.settings.partitions)) and sum(map(len, owned)) == len(union)

    await rig.until(shared, 90, what)


@pytest.mark.slow
async def test_rebalances_while_events_flow_lose_and_double_nothing(
    broker: str, database_url: str, rules: Ruleset, tmp_path: Path
) -> None:
    """Two workers share the partitions; one stops, later another starts, while events flow.

    The events flow slightly out of order with 10% re-delivered (the disorder of
    tests/unit/test_disorder.py: bounded, across clients, never past a client's
    due time), and the result must still be the backtest of the clean history.
    """
    seed = chaos_seed()
    rng = random.Random(seed)
    async with rig_for(broker, database_url, tmp_path) as rig:
        plan = make_plan(rig.tag, events=1200, clients=80, seed=seed % 1000, span_days=60, segment_days=5)
        expected = backtest(plan, rules)
        arrivals = disorder(rules, plan.records, window=timedelta(hours=6), seed=seed)
        segment_of = [n for n, segment in enumerate(plan.segments) for _ in segment.records]
        fed: list[list[Record]] = [[] for _ in plan.segments]
        for arrival in arrivals:
            fed[segment_of[arrival.index]].append(arrival.record)  # a copy travels with its original's segment
        copies = sum(a.copy for a in arrivals)
        assert copies > 0.07 * len(plan.records)
        await rig.start_sink()
        first, second = rig.start_worker(), rig.start_worker()
        await wait_shared(rig, [first, second], "two workers to share the partitions")

        stopping: list[asyncio.Task[None]] = []

        async def stop_first() -> None:
            stopping.append(asyncio.create_task(asyncio.to_thread(first.stop)))  # events keep flowing meanwhile

        async def start_third() -> None:
            rig.start_worker()

        stop_at, start_at = sorted(rng.sample([n for n, r in enumerate(fed) if len(r) >= 20], 2))
        for number, records in enumerate(fed):
            actions: dict[int, Callable[[], Awaitable[None]]] = {}
            if number == stop_at:
                actions[rng.randrange(len(records) // 5, len(records) * 4 // 5)] = stop_first
            if number == start_at:
                actions[rng.randrange(len(records) // 5, len(records) * 4 // 5)] = start_third
            await rig.feed(records, rate=60, actions=actions)
            await rig.wait_committed(timeout=90)
        await asyncio.gather(*stopping)
        third = rig.workers[-1]
        await wait_shared(rig, [second, third], "the second and third workers to share the partitions")
        await rig.tick(plan.until)
        await check_result(
            rig, expected, f"CLIENTPULSE_CHAOS_SEED={seed}, stop in segment {stop_at}, start in {start_at}"
        )
        assert first.proc is not None and first.proc.returncode == 0, "the first worker stopped cleanly"


# --------------------------------------------------------------------------- 3. the database goes away
async def test_alerts_of_a_database_outage_are_stored_once_when_it_returns(
    broker: str, database_url: str, rules: Ruleset, tmp_path: Path
) -> None:
    """PostgreSQL unreachable mid-stream: the sink says so, stores nothing, then stores every alert once.

    tests/integration/test_sink.py covers the sink alone (in process, every
    health transition); this runs the `clientpulse sink` process behind a TCP
    proxy that is cut while a live worker keeps producing alerts.
    """
    target = urlsplit(database_url)
    proxy = TcpProxy(target.hostname or "127.0.0.1", target.port or 5432)
    await proxy.start()
    try:
        async with rig_for(broker, database_url, tmp_path, sink_db_url=_via_proxy(database_url, proxy.port)) as rig:
            plan = make_plan(rig.tag, events=800, clients=60, seed=5, span_days=40, segment_days=5)
            expected = backtest(plan, rules)
            await rig.start_sink()
            await rig.wait_ready(rig.start_worker())
            outage = next(
                n for n, s in enumerate(plan.segments) if n >= len(plan.segments) // 3 and len(s.records) > 30
            )

            async def cut() -> None:
                await proxy.stop()

            for number, segment in enumerate(plan.segments):
                actions: dict[int, Callable[[], Awaitable[None]]] = {}
                if number == outage:
                    actions[len(segment.records) // 3] = cut
                await rig.feed(segment.records, rate=100, actions=actions)
                await rig.wait_committed()
                if number != outage:
                    continue

                async def degraded() -> bool:
                    status, body = await rig.sink_http("/healthz")
                    return status == 200 and body.get("status") == "degraded" and body.get("store") == "down"

                await rig.until(degraded, 20, "the sink to report the outage")
                assert (await rig.sink_http("/readyz"))[0] == 503
                assert (await rig.sink_http("/healthz"))[1]["sink"]["last_error"]
                before = len(await rig.stored())
                published = {a["alert_id"] for a in await rig.published()}
                assert len(published) > before, "alerts wait in rm.alerts.v1 for the database"
                # Proof that the sink has the waiting alerts in hand and fails to store them: its
                # store failures keep rising. A sink that skipped or committed a failed batch would
                # move its committed offsets here; one that lost alerts fails check_result below.
                committed = await rig.sink_committed()
                failures = await rig.sink_metric("clientpulse_alert_store_failures_total")

                async def retried(floor: float = failures + 2) -> bool:
                    return await rig.sink_metric("clientpulse_alert_store_failures_total") >= floor

                await rig.until(retried, 20, "the sink to retry its write twice more")
                assert len(await rig.stored()) == before, "nothing is stored while the database is away"
                assert await rig.sink_committed() == committed, "nothing is committed while the database is away"
                await proxy.start()

                async def healthy() -> bool:
                    status, body = await rig.sink_http("/healthz")
                    return status == 200 and body.get("status") == "ok"

                await rig.until(healthy, 30, "the sink to recover")
                assert (await rig.sink_http("/readyz"))[0] == 200
            await rig.tick(plan.until)
            await check_result(rig, expected, "database outage")
    finally:
        await proxy.stop()


# --------------------------------------------------------------------------- recovery reads the whole changelog
def _opening(tag: str, i: int) -> Record:
    client = f"{tag}c-{i:03d}"
    value = {
        "event_id": f"open-{i}",
        "client_id": client,
        "occurred_at": (START + timedelta(minutes=i)).isoformat(),
        "account_id": "acct-1",
        "amount": "700000.00",
        "currency": "CNY",
        "direction": "credit",
        "kind": "deposit",
        "channel": "branch",
        "initiated_by": "customer",
        "counterparty": {"bank": "internal"},
    }
    return TRANSACTIONS, client, value


def _outflow(tag: str, i: int) -> Record:
    topic, client, value = _opening(tag, i)
    later = START + timedelta(days=1, minutes=i)
    return (
        topic,
        client,
        {
            **value,
            "event_id": f"out-{i}",
            "occurred_at": later.isoformat(),
            "amount": "600000.00",
            "direction": "debit",
            "kind": "transfer",
            "counterparty": {"bank": "external"},
        },
    )


async def test_a_restarted_worker_recovers_every_clients_latest_state(
    broker: str, database_url: str, rules: Ruleset, tmp_path: Path
) -> None:
    """Many clients' states written in one batch, then a new worker: each outflow is judged at platinum.

    A worker that recovered only part of the changelog would judge some outflows
    from an empty state (tier mass, limit 50,000) instead of the deposit's
    platinum (limit 500,000).
    """
    async with rig_for(broker, database_url, tmp_path) as rig:
        clients = 60
        first = rig.start_worker()
        await rig.wait_ready(first)
        await rig.feed([_opening(rig.tag, i) for i in range(clients)], rate=10_000)
        await rig.wait_committed()
        await asyncio.to_thread(first.stop)
        second = rig.start_worker()
        await rig.wait_ready(second)
        await rig.feed([_outflow(rig.tag, i) for i in range(clients)], rate=10_000)
        await rig.wait_committed()
        alerts = [a for a in await rig.published() if a["type"] == "large_outflow"]
        assert len(alerts) == clients
        limits = Counter(a["facts"]["limit"] for a in alerts)
        assert limits == {"500000.00": clients}, f"outflows judged without the recovered state: {limits}"


# --------------------------------------------------------------------------- a batch that fails
FAULTY_WORKER = """
import sys

from handlers import engine
from streams.cli import main

_apply = engine.apply


def apply(rules, state, event, *args):
    if event.event_id == "boom":
        raise RuntimeError("injected failure applying event boom")
    return _apply(rules, state, event, *args)


engine.apply = apply
sys.exit(main(["worker"]))
"""


async def test_a_batch_that_fails_is_not_committed_and_is_processed_by_the_next_worker(
    broker: str, database_url: str, rules: Ruleset, tmp_path: Path
) -> None:
    """An exception while processing stops the worker without committing the batch; nothing of it is lost."""
    async with rig_for(broker, database_url, tmp_path) as rig:
        records = [_opening(rig.tag, 0)]
        for n, event_id in enumerate(("before", "boom", "after")):
            topic, client, value = _outflow(rig.tag, 0)
            when = START + timedelta(days=1, hours=2 * n)
            records.append((topic, client, {**value, "event_id": event_id, "occurred_at": when.isoformat()}))
        lines = [orjson.dumps({"topic": t, "key": k, "value": v}) for t, k, v in records]
        replay = Replay(rules, detected_at=DETECTED_AT)
        expected = {comparable(a) for a in replay.run_lines(lines)}
        assert {a[1] for a in expected} >= {"large_outflow"} and len(expected) >= 3

        script = tmp_path / "faulty_worker.py"
        script.write_text(FAULTY_WORKER)
        faulty = new_worker(rig.settings, tmp_path, "faulty", CLIENTPULSE_CLOCK="event")
        log = open(faulty.log_path, "ab")  # noqa: SIM115
        faulty.proc = subprocess.Popen(
            [sys.executable, str(script)],
            cwd=ROOT,
            env={**os.environ, **settings_env(faulty.settings), **faulty.extra_env, "PYTHONPATH": str(ROOT)},
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=die_with_parent,
        )
        log.close()
        rig.workers.append(faulty)
        await rig.wait_ready(faulty)
        await rig.feed(records, rate=10_000)
        try:
            code = await asyncio.to_thread(faulty.proc.wait, 30)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"the worker went on after a failed batch:\n{faulty.tail()}") from None
        assert code != 0 and "injected failure" in faulty.log_path.read_text()
        assert await rig.committed(rig.settings.transactions_topic) < len(records), "the failed batch was committed"

        rig.start_worker()
        await rig.wait_committed()
        got = {comparable(a) for a in await rig.published()}
        assert got == expected, f"missing {expected - got}, extra {got - expected}"
        states = await rig.changelog_states()
        assert states == replay.states

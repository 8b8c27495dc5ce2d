"""The notifier on the real broker: the same pushes and digests as the backtest, and none lost or doubled by SIGKILL.

Both tests compare what `clientpulse notifier` publishes on rm.notifications.v1
and rm.digests.v1 with the decisions of `handlers.notify` over the same alert
sequence (docs/rules.md, "Notifications"), field for field, per RM and in order.

The decisions of one RM depend on the order of that RM's alerts. Here every RM
has one client, so all of an RM's alerts come from one partition of
rm.alerts.v1 in the order they were raised; alerts without an RM (pushed,
never held) are compared as a set. Results are read once the notifier group
has committed its input to the end: it commits a batch only after the batch's
pushes and digests are on the broker, so the output topics are then complete.
"""

from __future__ import annotations

import asyncio
import os
import random
import subprocess
import sys
import time
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
import yaml
from aiokafka import AIOKafkaProducer  # type: ignore[import-untyped]
from prometheus_client.parser import text_string_to_metric_families

from handlers.notify import UNASSIGNED, NotifyReplay
from handlers.replay import Replay
from handlers.ruleset import Ruleset, load_rules
from handlers.timeutil import to_us
from schemas.alerts import Alert
from streams.settings import DEFAULT_RULES, Settings
from streams.tools.synthetic import CLIENTS, Record, history
from streams.topics import ensure_topics
from tests.integration.test_equivalence import (
    DETECTED_AT,
    UNTIL,
    Phases,
    Step,
    feed_worker,
    may_interfere,
    wait_ticks_committed,
    write_replay_file,
)
from tests.support import (
    ROOT,
    GroupOffsets,
    WorkerProcess,
    end_offsets,
    make_settings,
    new_worker,
    read_to_end,
    unique_prefix,
)

pytestmark = pytest.mark.broker

START = datetime(2026, 1, 1, tzinfo=UTC)
TIMEOUT = 90.0


def notify_rules(tmp_path: Path, budget: int) -> Path:
    """The shipped rules with a small push budget, so that budget edges come often."""
    data = yaml.safe_load(DEFAULT_RULES.read_text("utf-8"))
    data["notify"]["daily_push_budget"] = budget
    path = tmp_path / "rules.yaml"
    path.write_text(yaml.safe_dump(data), "utf-8")
    return path


def public(record: dict[str, Any]) -> dict[str, Any]:
    """A published push or digest reduced to the backtest's line (docs/events.md)."""
    if record["kind"] == "push":
        return {k: record[k] for k in ("kind", "rm_id", "alert_id", "priority", "at")}
    return {k: record[k] for k in ("kind", "rm_id", "due_at", "alert_ids", "counts")}


def by_rm(records: list[dict[str, Any]]) -> tuple[dict[str, list[Any]], list[Any]]:
    """Each RM's pushes and digests in order (two lists), and the unassigned pushes as a sorted list."""
    out: dict[str, list[Any]] = defaultdict(lambda: [[], []])
    unassigned = []
    for record in records:
        if record["rm_id"] is None:
            unassigned.append(orjson.dumps(record).decode())
        else:
            out[record["rm_id"]][0 if record["kind"] == "push" else 1].append(record)
    return dict(out), sorted(unassigned)


async def published(broker: str, settings: Settings) -> list[dict[str, Any]]:
    pushes = await read_to_end(broker, settings.notifications_topic)
    digests = await read_to_end(broker, settings.digests_topic)
    return [orjson.loads(r.value) for r in (*pushes, *digests)]


async def wait_committed(broker: str, group: str, topic: str, ends: dict[int, int], timeout: float = TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    async with GroupOffsets(broker, group) as offsets:
        while not await offsets.reached(topic, ends):
            committed = await offsets.of(topic, ends)
            assert time.monotonic() < deadline, f"{group} committed {committed} of {ends} on {topic}"
            await asyncio.sleep(0.1)


async def tick_notifier(broker: str, settings: Settings, now: datetime) -> dict[int, int]:
    """A tick {"now": ...} (no key) on every input partition of the notifier; the offsets after them."""
    producer = AIOKafkaProducer(bootstrap_servers=broker, acks="all")
    await producer.start()
    try:
        value = orjson.dumps({"now": now.isoformat()})
        futures = [
            await producer.send(settings.alerts_by_rm_topic, value, key=None, partition=p)
            for p in range(settings.partitions)
        ]
        return {m.partition: m.offset + 1 for m in [await f for f in futures]}
    finally:
        await producer.stop()


async def wait_decided(broker: str, settings: Settings) -> None:
    """Once every alert is on rm.alerts.v1: until the notifier has re-keyed and decided all of them."""
    alerts_end = await end_offsets(broker, settings.alerts_topic)
    await wait_committed(broker, settings.notifier_app_id, settings.alerts_topic, alerts_end)
    rekeyed_end = await end_offsets(broker, settings.alerts_by_rm_topic)
    await wait_committed(broker, settings.notifier_app_id, settings.alerts_by_rm_topic, rekeyed_end)


async def settle_notifier(broker: str, settings: Settings, until: datetime) -> None:
    """Once every alert is on rm.alerts.v1: wait until they are decided, tick to `until`, wait for the digests."""
    await wait_decided(broker, settings)
    ticks = await tick_notifier(broker, settings, until)
    await wait_committed(broker, settings.notifier_app_id, settings.alerts_by_rm_topic, ticks)


def group_story(logs: list[Path], topic: str) -> str:
    """What each process's log says about its group membership: joins, assignments of `topic`, errors."""
    words = ("Joined group", "Traceback", "ERROR", "raised")
    out: list[str] = []
    for path in logs:
        out.append(f"-- {path.name}")
        lines = path.read_text(errors="replace").splitlines() if path.exists() else []
        for line in lines:
            if (topic in line and "|" in line) or any(w in line for w in words):
                out.append(line[:200])
    return "\n".join(out)


# --------------------------------------------------------------------------- the stream and the backtest
def one_rm_per_client(records: list[Record]) -> list[Record]:
    """Each client its own RM (every sixth none), and no RM changes: one RM's alerts come from one partition."""
    out: list[Record] = []
    for topic, key, value in records:
        if topic == CLIENTS and value.get("kind") == "rm_assigned":
            continue
        if topic == CLIENTS and value.get("kind") == "onboarded":
            value = {**value, "rm_id": None if int(key[2:]) % 6 == 0 else f"rm-{key}"}
        out.append((topic, key, value))
    return out


class AlertOrderPhases(Phases):
    """test_equivalence's phases, also cut where a worker could swap two alerting records of one client."""

    def run(self, records: list[Record], until: datetime) -> None:
        current: list[Step] = []
        for record in records:
            step = self._feed(record)
            if any(may_interfere(e, step) or _reorders_alerts(e, step) for e in current):
                current = []
            if not current:
                self.phases.append([])
            current.append(step)
            self.phases[-1].append(record)
        self.alerts += self.replay.finish(until)


def _reorders_alerts(a: Step, b: Step) -> bool:
    return a.client == b.client and a.topic != b.topic and (a.alerted or b.alerted)


def test_the_notifier_sends_what_the_backtest_says(broker: str, tmp_path: Path) -> None:
    rules_path = notify_rules(tmp_path, budget=1)
    rules = load_rules(rules_path)
    records = one_rm_per_client(list(history(1200, 24, seed=3, start=START, span_days=12)))
    until = UNTIL  # where feed_worker ticks the worker to
    events = tmp_path / "events.jsonl"
    write_replay_file(events, records)

    # `clientpulse backtest --notifications`: the expected pushes and digests
    lines_file = tmp_path / "notifications.jsonl"
    subprocess.run(
        [
            *(sys.executable, "-m", "streams.cli", "backtest", str(events), "--rules", str(rules_path)),
            *(
                "--out",
                str(tmp_path / "alerts.jsonl"),
                "--notifications",
                str(lines_file),
                "--until",
                until.isoformat(),
            ),
        ],
        cwd=ROOT,
        check=True,
        capture_output=True,
    )
    expected = [orjson.loads(line) for line in lines_file.read_bytes().splitlines()]
    replay = NotifyReplay(rules)
    backtest_alerts = list(Replay(rules, detected_at=DETECTED_AT).run_lines(events.read_bytes().splitlines(), until))
    for a in backtest_alerts:
        replay.feed([a])
    replay.finish(to_us(until))
    counts = replay.counts
    assert counts.held["budget"] and counts.held["quiet_hours"] and counts.pushed["within_budget"], counts
    assert counts.pushed["unassigned"] and counts.pushed["critical"] and counts.digested > 20, counts
    assert len(expected) == sum(counts.pushed.values()) + sum(counts.digests.values())

    plan = AlertOrderPhases(rules)
    plan.run(records, until)
    assert {a.alert_id for a in plan.alerts} == {a.alert_id for a in backtest_alerts}

    prefix = unique_prefix()
    settings = make_settings(broker, prefix, tick_seconds=3600, rules_path=rules_path)
    asyncio.run(ensure_topics(settings))
    worker = new_worker(settings, tmp_path, CLIENTPULSE_CLOCK="event").start()
    notifier = new_worker(settings, tmp_path, "notifier", "notifier", CLIENTPULSE_CLOCK="event").start()
    try:
        worker.wait_ready()
        notifier.wait_ready()
        ticks = asyncio.run(feed_worker(broker, worker, prefix, plan.phases, settings.ticks_topic))
        asyncio.run(wait_ticks_committed(broker, settings.app_id, settings.ticks_topic, ticks))
        asyncio.run(settle_notifier(broker, settings, until))
        got = [public(r) for r in asyncio.run(published(broker, settings))]
        status = notifier.status()
        scraped = notifier.metrics()
    finally:
        notifier.stop()
        worker.stop()

    assert len(got) == len(expected), f"{len(got)} published, {len(expected)} expected; notifier {status}"
    assert by_rm(got) == by_rm(expected)
    assert status is not None and status["waiting"] == 0 and status["stale"] == counts.stale
    assert status["decided"] == len(backtest_alerts) - counts.stale
    families = {f.name: f for f in text_string_to_metric_families(scraped)}
    pushed = {s.labels["reason"]: s.value for s in families["clientpulse_notifications_pushed"].samples}
    held = {s.labels["reason"]: s.value for s in families["clientpulse_notifications_held"].samples}
    assert pushed == {r: float(n) for r, n in counts.pushed.items()} and held == {
        r: float(n) for r, n in counts.held.items()
    }
    label_values = {v for f in families.values() for sample in f.samples for v in sample.labels.values()}
    assert not {v for v in label_values if v.startswith(("rm-", "c-"))}, "no RM or client id as a label"


# --------------------------------------------------------------------------- crashes
def alert_sequence(rms: int, n: int, seed: int) -> list[Alert]:
    """Alerts of `rms` RMs (one client each) and some without an RM over three days; a tenth re-delivered soon after.

    Three days of event time: a re-delivery after a SIGKILL (up to the seconds since the last commit, which a
    rebalance can stretch) must stay well within the notifier's memory of decided ids (7 days of an RM's event
    time), as it does, by far, in a live bank.
    """
    rng = random.Random(seed)
    alerts: list[Alert] = []
    at = START
    for i in range(n):
        at += timedelta(minutes=rng.randrange(1, 12))
        rm = rng.randrange(rms + 1)
        client = f"c-{rm:03d}"
        alerts.append(
            Alert(
                alert_id=f"crash-{i:05d}",
                type=rng.choice(["large_outflow", "complaint", "tier_upgrade", "dormancy"]),
                severity=rng.choice(["info", "warning", "warning", "critical"]),
                client_id=client,
                rm_id=None if rm == rms else f"rm-{rm:03d}",
                tier="gold",
                occurred_at=at,
                detected_at=DETECTED_AT,
                title=f"alert {i}",
                facts={},
                rule_version="crash",
                source_event_ids=[],
                priority=rng.randrange(101),
            )
        )
    for _ in range(n // 10):
        i = rng.randrange(len(alerts) - 1)
        again = alerts[i]
        # a re-delivery of the same client's alert, a few of that client's alerts later
        later = [j for j in range(i + 1, len(alerts)) if alerts[j].client_id == again.client_id][:3]
        alerts.insert((later[-1] if later else len(alerts) - 1) + 1, again)
    return alerts


@pytest.mark.slow
def test_a_sigkilled_notifier_loses_and_doubles_no_decision(broker: str, tmp_path: Path) -> None:
    rules_path = notify_rules(tmp_path, budget=2)
    rules: Ruleset = load_rules(rules_path)
    seed = int(os.environ.get("CLIENTPULSE_CHAOS_SEED", random.randrange(2**31)))
    alerts = alert_sequence(rms=8, n=700, seed=seed)
    until = START + timedelta(days=10)
    replay = NotifyReplay(rules)
    expected = [o.record(full=False) for a in alerts for o in replay.feed([a])]
    expected += [o.record(full=False) for o in replay.finish(to_us(until))]
    assert replay.counts.duplicates >= 60 and replay.counts.digested > 50 and replay.counts.stale == 0

    prefix = unique_prefix()
    settings = make_settings(broker, prefix, rules_path=rules_path)
    asyncio.run(ensure_topics(settings))
    notifiers: list[WorkerProcess] = []

    def start() -> WorkerProcess:
        n = new_worker(settings, tmp_path, f"notifier-{len(notifiers)}", "notifier", CLIENTPULSE_CLOCK="event")
        notifiers.append(n.start())
        return n

    async def feed() -> list[int]:
        rng = random.Random(seed)
        kills = sorted(rng.sample(range(100, len(alerts) - 100), 3))
        producer = AIOKafkaProducer(bootstrap_servers=broker, acks="all", linger_ms=1)
        await producer.start()
        try:
            for i, a in enumerate(alerts):
                if i in kills:
                    await producer.flush()
                    await asyncio.to_thread(notifiers[-1].kill)  # SIGKILL: no commit, no flush
                    start()
                await producer.send(settings.alerts_topic, a.model_dump_json().encode(), key=a.client_id.encode())
                await asyncio.sleep(0.008)
            await producer.flush()
        finally:
            await producer.stop()
        return kills

    try:
        start().wait_ready()
        kills = asyncio.run(feed())
        # Everything decided, then one more SIGKILL: the digests still due exist only in the recovered states.
        try:
            asyncio.run(wait_decided(broker, settings))
        except AssertionError as exc:
            story = group_story([n.log_path for n in notifiers], settings.alerts_topic)
            raise AssertionError(f"seed {seed}, SIGKILL before alerts {kills}: {exc}\n{story}") from None
        notifiers[-1].kill()
        start().wait_ready(TIMEOUT)
        asyncio.run(settle_notifier(broker, settings, until))
        records = asyncio.run(published(broker, settings))
    finally:
        for n in notifiers:
            n.stop()

    context = f"seed {seed}, SIGKILL before alerts {kills}"
    first: dict[tuple[str, str], bytes] = {}
    distinct = []
    for record in records:
        identity = (record["kind"], record["alert_id"] if record["kind"] == "push" else record["digest_id"])
        raw = orjson.dumps(record)
        if identity in first:
            assert first[identity] == raw, f"{context}: {identity} published twice with different content"
            continue
        first[identity] = raw
        distinct.append(public(record))
    got_rms, want_rms = by_rm(distinct), by_rm(expected)
    if got_rms != want_rms:
        (tmp_path / "diff.json").write_bytes(orjson.dumps({"got": got_rms, "want": want_rms, "records": records}))
    assert got_rms == want_rms, context
    decided = [r["alert_id"] for r in distinct if r["kind"] == "push"]
    decided += [i for r in distinct if r["kind"] == "digest" for i in r["alert_ids"]]
    assert sorted(decided) == sorted({a.alert_id for a in alerts}), f"{context}: each alert pushed or digested once"
    assert UNASSIGNED not in by_rm(distinct)[0]


def test_a_notifier_input_with_another_partition_count_stops_the_notifier(broker: str, tmp_path: Path) -> None:
    """An RM's alerts, ticks and state share a partition number: a mismatched topic is exit 2, named, untouched."""
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic  # type: ignore[import-untyped]

    from tests.support import settings_env

    settings = make_settings(broker, unique_prefix())

    async def precreate() -> None:
        admin = AIOKafkaAdminClient(bootstrap_servers=broker)
        await admin.start()
        try:
            await admin.create_topics([NewTopic(settings.alerts_by_rm_topic, 2, 1)])
        finally:
            await admin.close()

    asyncio.run(precreate())
    proc = subprocess.run(
        [sys.executable, "-m", "streams.cli", "notifier"],
        cwd=ROOT,
        env={**os.environ, **settings_env(settings)},
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
    )
    assert proc.returncode == 2, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert f"{settings.alerts_by_rm_topic} has 2" in proc.stderr and "CLIENTPULSE_PARTITIONS is 4" in proc.stderr
    assert asyncio.run(end_offsets(broker, settings.alerts_by_rm_topic)).keys() == {0, 1}, "left as it was"

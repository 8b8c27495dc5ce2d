"""The same event file through the Faust worker and through backtest gives the same alerts.

The contract (docs/rules.md, "The clock" and "Stream and backtest agree";
docs/events.md, "Replay file"): a replay applies the same rules the workers run,
so a time-sorted history gives the same alerts either way.


A synthetic, time-sorted history is written as a replay file and run through
handlers.replay.Replay (the backtest driver) with `until` = T. It holds every
input the rules read: birth dates, consent given and withdrawn, satisfaction
scores, complaints followed up in time, late or never, and snoozes and
unsnoozes on the controls topic (the synthetic bank's own, and some placed
where they hold back an alert the history raises). The same records
go to a real worker (event clock) on the session broker, then a tick
{"now": T} to every partition of the ticks topic. The two sets of alerts must
be equal in every field but detected_at. The worker's alerts are read once its
consumer group has committed those ticks: it commits a batch only after the
batch's alerts are on the broker, so the alert topic is then complete, and an
alert published twice, or one too many, shows as surely as a missing one.

Why the records are produced in phases: the worker fetches each topic
partition independently, so within one partition it may take, say, a client's
transactions before the interaction that precedes them in the file, and its
clock (the partition's largest occurred_at) can run ahead of an event taken
late. The engine's answer then legitimately differs (a complaint sees another
tier, a contact comes after its overdue alert). The file order is only
reproducible if no such reordering can change anything, so the records are
cut into phases in which it cannot (see `Phases`), each phase is produced
alone, and the next one waits until the worker's /status shows it has
processed everything so far. Each topic's own order is kept by Kafka, so a
phase may hold any number of records of one topic, and records of different
topics unless a swap between them could matter. No record is dropped or
altered and the assertion is exact.
"""

from __future__ import annotations

import asyncio
import copy
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiokafka import AIOKafkaProducer  # type: ignore[import-untyped]

from handlers import engine
from handlers.replay import Replay
from handlers.ruleset import Ruleset
from handlers.timeutil import to_us
from schemas.alerts import NEVER_SNOOZED, Alert
from schemas.topics import CONTROLS
from streams.settings import Settings
from streams.tools.synthetic import CLIENTS, TRANSACTIONS, Record, history
from streams.topics import ensure_topics
from tests.support import (
    GroupOffsets,
    WorkerProcess,
    encode_records,
    make_settings,
    new_worker,
    read_to_end,
    unique_prefix,
)

pytestmark = pytest.mark.broker

START = datetime(2026, 1, 1, tzinfo=UTC)
UNTIL = START + timedelta(days=400)
"""Well after the 200 days of history: every dormancy, overdue contact and maturity comes due."""

DETECTED_AT = datetime(2030, 1, 1, tzinfo=UTC)
RM_ONLY = frozenset({"rm_assigned", "profile_updated"})
"""Client events that change nothing but the RM (and segment) the next alerts carry, unless they also carry a
birth date or a contact preference."""
PERSONAL = ("birth_date", "contact_preference")

PHASE_TIMEOUT = 60.0
ALERTS_TIMEOUT = 90.0

Comparable = tuple[Any, ...]


def comparable(alert: Alert | dict[str, Any]) -> Comparable:
    data = alert.model_dump(mode="json") if isinstance(alert, Alert) else alert
    return (
        data["alert_id"],
        data["type"],
        data["severity"],
        data["priority"],
        data["client_id"],
        datetime.fromisoformat(data["occurred_at"]).isoformat(),
        tuple(sorted(data["facts"].items())),
        data["rm_id"],
        data["tier"],
        data["title"],
        tuple(sorted(data["titles"].items())),
    )


@dataclass(frozen=True)
class Step:
    """One record as the file-order replay applied it, with what a reordering could disturb."""

    topic: str
    client: str
    at: int
    dues: tuple[int, ...]
    """The client's next clock due, before (clock advanced to `at`) and after the record."""
    kind: str | None
    tier_changed: bool
    alerted: bool
    """The record raised alerts for its client (clock alerts fired on the way included)."""
    dormant: bool


def may_interfere(a: Step, b: Step) -> bool:
    """Could the worker taking `b` before the earlier `a` change an alert? (Conservative: yes when unsure.)

    Records of the same topic and partition are never swapped. Otherwise:
    - taking `b` first moves the partition clock to b.at, so `a`'s client fires
      its clock rules due in (a.at, b.at] before `a` instead of after it;
    - for one client: reference data other than an RM change (onboarding,
      maturities, closing, a birth date, consent) feeds other rules; an RM
      change is carried by every alert of the other record; a snooze or
      unsnooze decides whether the other record's alert is held back; a
      complaint reads the tier a transaction may change; the first activity of
      a dormant client is its reactivation.
    Interactions otherwise only move last activity and last RM contact forward
    (a maximum, whatever the order), which only clock rules read (first case),
    and a transaction's windows are relative to its own occurred_at.
    """
    if a.topic == b.topic:
        return False
    if any(a.at < due <= b.at for due in a.dues):
        return True
    if a.client != b.client:
        return False
    if CONTROLS in (a.topic, b.topic):
        return True
    kinds = {a.kind, b.kind}
    if CLIENTS in (a.topic, b.topic):
        client_step, other = (a, b) if a.topic == CLIENTS else (b, a)
        return client_step.kind not in RM_ONLY or other.alerted
    if "complaint" in kinds:
        return a.tier_changed or b.tier_changed
    return a.dormant or b.dormant


@dataclass
class Phases:
    """Runs the file-order replay and cuts the records where the worker could reorder them harmfully."""

    rules: Ruleset
    replay: Replay = field(init=False)
    phases: list[list[Record]] = field(default_factory=list)
    alerts: list[Alert] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.replay = Replay(self.rules, detected_at=DETECTED_AT)

    def run(self, records: list[Record], until: datetime) -> None:
        current: list[Step] = []
        for record in records:
            step = self._feed(record)
            if any(may_interfere(earlier, step) for earlier in current):
                current = []
            if not current:
                self.phases.append([])
            current.append(step)
            self.phases[-1].append(record)
        self.alerts += self.replay.finish(until)

    def _feed(self, record: Record) -> Step:
        topic, key, value = record
        at = to_us(datetime.fromisoformat(str(value["occurred_at"])))
        state = self.replay.states.get(key)
        dues: list[int | None] = []
        tier_before, dormant = None, False
        if state is not None:
            ahead = copy.deepcopy(state)
            engine.advance(self.rules, ahead, max(at, self.replay.watermark), DETECTED_AT)
            dues.append(engine.next_due(self.rules, ahead))
            tier_before, dormant = state.tier, ahead.dormant_base is not None
        raised = self.replay.feed_raw(topic, key.encode(), orjson.dumps(value))
        self.alerts += raised
        after = self.replay.states[key]
        dues.append(engine.next_due(self.rules, after))
        kind = value.get("kind") if topic != TRANSACTIONS else None
        if topic == CLIENTS and any(field in value for field in PERSONAL):
            kind = "personal"  # not an RM change only
        return Step(
            topic=topic,
            client=key,
            at=at,
            dues=tuple(d for d in dues if d is not None),
            kind=str(kind) if kind is not None else None,
            tier_changed=topic == TRANSACTIONS and after.tier != tier_before,
            alerted=any(a.client_id == key for a in raised),
            dormant=dormant,
        )


def difference(expected: set[Comparable], got: set[Comparable]) -> str:
    """The alerts only the backtest raised and those only the worker did: counts by type, the first ten of each."""
    missing, extra = expected - got, got - expected
    return (
        f"{len(missing)} alerts only in the backtest {dict(Counter(m[1] for m in missing))}, "
        f"{len(extra)} only in the worker {dict(Counter(e[1] for e in extra))}:\n"
        + "\n".join(f"- {m}" for m in sorted(missing)[:10])
        + "\n"
        + "\n".join(f"+ {e}" for e in sorted(extra)[:10])
    )


def write_replay_file(path: Path, records: list[Record]) -> None:
    path.write_bytes(b"".join(orjson.dumps({"topic": t, "key": k, "value": v}) + b"\n" for t, k, v in records))


async def feed_worker(
    bootstrap: str, worker: WorkerProcess, prefix: str, phases: list[list[Record]], ticks_topic: str
) -> dict[int, int]:
    """Produce each phase alone and wait until the worker has processed it; then tick every partition to UNTIL.

    Returns, per partition of the ticks topic, the offset after that tick.
    """
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=1)
    await producer.start()
    try:
        sent = 0
        for number, phase in enumerate(phases, start=1):
            for topic, key, value in encode_records(prefix, phase):
                await producer.send(topic, value, key=key)
            await producer.flush()
            sent += len(phase)
            deadline = time.monotonic() + PHASE_TIMEOUT
            while True:
                status = await asyncio.to_thread(worker.status)
                if status is not None and status["processed"] >= sent:
                    assert status["processed"] == sent, f"worker processed more than was sent: {status}"
                    break
                if time.monotonic() > deadline:
                    raise AssertionError(f"phase {number}: worker at {status} of {sent}\n{worker.tail()}")
                await asyncio.sleep(0.02)
        return await tick_every_partition(producer, ticks_topic, worker.settings.partitions)
    finally:
        await producer.stop()


async def tick_every_partition(producer: AIOKafkaProducer, ticks_topic: str, partitions: int) -> dict[int, int]:
    """A tick {"now": UNTIL} to every partition of the ticks topic; the offset after each."""
    tick = orjson.dumps({"now": UNTIL.isoformat()})
    futures = [await producer.send(ticks_topic, tick, key=b"tick", partition=p) for p in range(partitions)]
    return {m.partition: m.offset + 1 for m in [await f for f in futures]}


async def wait_ticks_committed(bootstrap: str, group: str, ticks_topic: str, ends: dict[int, int]) -> None:
    """Until the worker group has committed every partition's final tick: the last sweep's alerts are published."""
    deadline = time.monotonic() + ALERTS_TIMEOUT
    async with GroupOffsets(bootstrap, group) as offsets:
        while not await offsets.reached(ticks_topic, ends):
            committed = await offsets.of(ticks_topic, ends)
            assert time.monotonic() < deadline, f"ticks committed {committed}, sent up to {ends}"
            await asyncio.sleep(0.1)


def alerts_after_ticks(bootstrap: str, settings: Settings, ticks: dict[int, int]) -> list[dict[str, Any]]:
    """Every alert the worker published, read once it has committed the final ticks (the topic is then complete)."""
    asyncio.run(wait_ticks_committed(bootstrap, settings.app_id, settings.ticks_topic, ticks))
    return [orjson.loads(r.value) for r in asyncio.run(read_to_end(bootstrap, settings.alerts_topic))]


def _at(record: Record) -> datetime:
    return datetime.fromisoformat(str(record[2]["occurred_at"]))


def with_snoozes(rules: Ruleset, records: list[Record], count: int = 8) -> list[Record]:
    """`records` with a snooze before some of the alerts they raise (one of each snoozable type, not critical),
    each covering its alert, and every other one ended by an unsnooze half a day later."""
    alerts = list(Replay(rules, detected_at=DETECTED_AT).run_lines(encode_lines(records), UNTIL))
    index_of = {str(r[2]["event_id"]): i for i, r in enumerate(records)}
    chosen: dict[str, Alert] = {}  # one of each type, after the first week
    for alert in alerts:
        snoozable = alert.type not in NEVER_SNOOZED and alert.severity != "critical"
        later = alert.occurred_at >= START + timedelta(days=7)
        if snoozable and later and alert.source_event_ids and alert.type not in chosen and len(chosen) < count:
            chosen[alert.type] = alert
    inserts: list[tuple[int, Record]] = []
    for number, alert in enumerate(chosen.values()):
        position = index_of[alert.source_event_ids[0]]
        at = _at(records[position])
        snooze = {
            "event_id": f"eq-snooze-{number}",
            "client_id": alert.client_id,
            "occurred_at": at.isoformat(),
            "kind": "snooze",
            "alert_type": alert.type,
            "until": (at + timedelta(days=2)).isoformat(),
            "actor": "rm-eq",
            "reason": "the client told us",
        }
        inserts.append((position, (CONTROLS, alert.client_id, snooze)))
        if number % 2:
            later = next(
                (i for i in range(position, len(records)) if _at(records[i]) >= at + timedelta(hours=12)), None
            )
            if later is not None:
                ends = {
                    "event_id": f"eq-unsnooze-{number}",
                    "client_id": alert.client_id,
                    "occurred_at": _at(records[later]).isoformat(),
                    "kind": "unsnooze",
                    "alert_type": alert.type,
                    "actor": "rm-eq",
                }
                inserts.append((later, (CONTROLS, alert.client_id, ends)))
    out = list(records)
    for position, record in sorted(inserts, key=lambda p: p[0], reverse=True):
        out.insert(position, record)
    return out


def encode_lines(records: list[Record]) -> list[bytes]:
    return [orjson.dumps({"topic": t, "key": k, "value": v}) for t, k, v in records]


def test_worker_and_backtest_give_the_same_alerts(broker: str, rules: Ruleset, tmp_path: Path) -> None:
    records = with_snoozes(rules, list(history(3000, 60, seed=11, start=START, controls=True)))
    assert records == sorted(records, key=_at)
    events = tmp_path / "events.jsonl"
    write_replay_file(events, records)

    # backtest: the replay file, in file order, clock at the watermark, then until
    replay = Replay(rules, detected_at=DETECTED_AT)
    backtest = list(replay.run_lines(events.read_bytes().splitlines(), UNTIL))
    expected = {comparable(a) for a in backtest}
    assert len(expected) == len(backtest), "alert ids are unique"
    by_type = {a.type for a in backtest}
    assert by_type >= {"tier_upgrade", "large_outflow", "dormancy", "no_rm_contact", "complaint", "aum_drain"}
    assert by_type >= {"birthday", "complaint_unanswered", "low_satisfaction"}
    held = {reason for (_type, reason) in replay.summary.suppressed}
    assert {"snoozed", "consent"} <= held, replay.summary.suppressed
    assert replay.summary.events_by_topic[CONTROLS] >= 8 and not replay.summary.dead_letters

    plan = Phases(rules)
    plan.run(records, UNTIL)
    assert {comparable(a) for a in plan.alerts} == expected, "the phase planner replays exactly the backtest"
    assert sum(len(p) for p in plan.phases) == len(records)

    prefix = unique_prefix()
    settings = make_settings(broker, prefix, tick_seconds=3600)
    asyncio.run(ensure_topics(settings))
    worker = new_worker(settings, tmp_path, CLIENTPULSE_CLOCK="event").start()
    try:
        worker.wait_ready()
        started = time.monotonic()
        ticks = asyncio.run(feed_worker(broker, worker, prefix, plan.phases, settings.ticks_topic))
        fed = time.monotonic() - started
        streamed = alerts_after_ticks(broker, settings, ticks)
    finally:
        worker.stop()

    got = {comparable(v) for v in streamed}
    assert got == expected, f"{len(plan.phases)} phases fed in {fed:.1f}s; " + difference(expected, got)
    assert len(streamed) == len(expected), "each alert published once"
    assert {v["rule_version"] for v in streamed} == {rules.rule_version}

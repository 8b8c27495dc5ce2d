"""A shadow run on the real broker: a history, a shadow worker with candidate rules, then the live worker.

`shadow_run` (a module-scoped fixture for any test module that imports it)
produces `history()` to the input topics, starts a shadow worker with the
shipped rules' large-outflow limits doubled, lets it read everything, records
what the live topics held meanwhile (`ShadowRun.before_live`), then starts the
live worker with the shipped rules and waits until it has read everything too.
Both keep running until the module's tests are done, so a test may compare
the two alert topics as they stand or feed both more input.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
import yaml
from aiokafka.admin import AIOKafkaAdminClient  # type: ignore[import-untyped]

from handlers.ruleset import load_rules
from streams.settings import DEFAULT_RULES, Settings
from streams.topics import ensure_topics
from tests.support import (
    GroupOffsets,
    WorkerProcess,
    encode_records,
    make_settings,
    new_worker,
    produce,
    read_to_end,
    unique_prefix,
    wait_group_committed,
)
from tests.unit.builders import tx

NOW = datetime.now(UTC).replace(microsecond=0)
BASE = NOW - timedelta(hours=3)
"""The history happened in the last three hours (recent, so a real Kafka's retention keeps it)."""
SINCE, UNTIL = BASE - timedelta(hours=1), NOW + timedelta(hours=1)
"""A period holding the whole history."""

BETWEEN = {"c-mid-1": "60000", "c-mid-2": "75000", "c-mid-3": "99000"}
"""Mass clients' debits at or above the shipped limit (50,000) and below the doubled one (100,000)."""
ABOVE = {"c-high": "150000"}
"""Above both limits."""
BELOW = {"c-low": "30000"}


def doubled_outflow_limits(path: Path, source: Path = DEFAULT_RULES) -> Path:
    """A candidate rules file: `source` with every tier's large-outflow limit (tiers.single_limits) doubled."""
    data = yaml.safe_load(source.read_text("utf-8"))
    data["tiers"]["single_limits"] = {tier: int(limit) * 2 for tier, limit in data["tiers"]["single_limits"].items()}
    data["version"] = f"{data['version']}-candidate"
    path.write_text(yaml.safe_dump(data, sort_keys=False), "utf-8")
    load_rules(path)  # a candidate the worker would refuse is no use to a test
    return path


def shadow_of(live: Settings, rules: Path, **overrides: Any) -> Settings:
    """The settings of a shadow beside `live`: the same broker, prefix and live app id, shadow mode, `rules`."""
    return live.model_copy(update={"shadow": True, "rules_path": rules, **overrides})


def _at(minutes: int) -> str:
    return (BASE + timedelta(minutes=minutes)).isoformat()


def history() -> list[tuple[str, str, Any]]:
    """Each client's first transaction (a 20,000 deposit: it is classified mass), then one debit; one bad record."""
    records: list[tuple[str, str, Any]] = []
    for n, (client, amount) in enumerate({**BETWEEN, **ABOVE, **BELOW}.items()):
        records.append(
            (
                "bank.transactions.v1",
                client,
                tx(_at(n), "20000", "credit", client=client, bank="internal", event_id=f"d-{client}"),
            )
        )
        records.append(
            (
                "bank.transactions.v1",
                client,
                tx(_at(30 + n), amount, client=client, bank="external", event_id=f"w-{client}"),
            )
        )
    records.append(("bank.transactions.v1", "c-bad", b"{not json"))
    return records


@dataclass
class BeforeLive:
    """What the broker held once the shadow had read the whole history and before the live worker started."""

    live_topics: dict[str, int]
    """Records on the live alerts, snapshot and dead-letter topics."""
    live_group_committed: int
    """Input offsets committed by the live workers' group."""
    topics: set[str]
    shadow_status: dict[str, Any]
    shadow_metrics: str


@dataclass
class ShadowRun:
    live: Settings
    shadow: Settings
    live_worker: WorkerProcess
    shadow_worker: WorkerProcess
    sent: int
    before_live: BeforeLive
    candidate: Path
    extra: dict[str, Any] = field(default_factory=dict)


def sweeps(metrics_text: str) -> float:
    found = re.search(r"^clientpulse_clock_sweeps_total (\S+)$", metrics_text, re.M)
    return float(found.group(1)) if found else 0.0


async def _topics(bootstrap: str) -> set[str]:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        return set(await admin.list_topics())
    finally:
        await admin.close()


async def _committed(bootstrap: str, settings: Settings, group: str) -> int:
    async with GroupOffsets(bootstrap, group) as offsets:
        return sum([sum((await offsets.of(t, range(settings.partitions))).values()) for t in settings.input_topics])


def _count(bootstrap: str, topic: str) -> int:
    return len(asyncio.run(read_to_end(bootstrap, topic)))


def start_shadow_run(broker: str, tmp_path: Path) -> ShadowRun:
    prefix = unique_prefix()
    # Ticks and snapshots every fraction of a second: a shadow that published snapshots would have by the check.
    live = make_settings(broker, prefix, tick_seconds=0.2, snapshot_seconds=0.5)
    candidate = doubled_outflow_limits(tmp_path / "candidate.yaml")
    shadow = shadow_of(live, candidate)
    asyncio.run(ensure_topics(live))
    sent = asyncio.run(produce(broker, encode_records(prefix, history())))

    # The shadow first, alone: it reads the history from the start (its new group's earliest offsets).
    shadow_worker = new_worker(shadow, tmp_path, "shadow").start()
    live_worker = new_worker(live, tmp_path, "live")
    try:
        shadow_worker.wait_ready()
        asyncio.run(wait_group_committed(broker, shadow, sent))
        # Then at least a second of its clock ticks: time for two snapshot intervals, had it a snapshot timer.
        ticked = sweeps(shadow_worker.metrics())
        shadow_worker.wait_status(lambda _: sweeps(shadow_worker.metrics()) >= ticked + 5 * live.partitions)
        before = BeforeLive(
            live_topics={
                t: _count(broker, t) for t in (live.alerts_topic, live.snapshots_topic, live.deadletter_topic)
            },
            live_group_committed=asyncio.run(_committed(broker, live, live.app_id)),
            topics=asyncio.run(_topics(broker)),
            shadow_status=shadow_worker.wait_ready(),
            shadow_metrics=shadow_worker.metrics(),
        )
        # Now the live worker beside it, reading the same history.
        live_worker.start().wait_ready()
        asyncio.run(wait_group_committed(broker, live, sent))
    except BaseException:
        shadow_worker.stop()
        live_worker.stop()
        raise
    return ShadowRun(live, shadow, live_worker, shadow_worker, sent, before, candidate)


@pytest.fixture(scope="module")
def shadow_run(broker: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ShadowRun]:
    run = start_shadow_run(broker, tmp_path_factory.mktemp("shadow-run"))
    try:
        yield run
    finally:
        run.shadow_worker.stop()
        run.live_worker.stop()


def values(bootstrap: str, topic: str) -> list[dict[str, Any]]:
    """Every record of `topic` as JSON, to its end."""
    return [orjson.loads(r.value) for r in asyncio.run(read_to_end(bootstrap, topic)) if r.value is not None]

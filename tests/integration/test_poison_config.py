"""Poison configuration: a bad rules file or setting stops the process at start, names the problem, consumes nothing.

Every case starts a real `clientpulse worker` (or `clientpulse sink`) against
topics that already hold events that would raise alerts. Each must exit with
code 2 within seconds, with a message on stderr naming the environment
variable or the rules key (no traceback), and afterwards the worker group has
no committed offset, no alert was published and no state table was created.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import orjson
import pytest
import yaml
from aiokafka import AIOKafkaConsumer, TopicPartition  # type: ignore[import-untyped]
from aiokafka.admin import AIOKafkaAdminClient  # type: ignore[import-untyped]

from streams.settings import DEFAULT_RULES, Settings
from streams.tools.embedded import free_port
from streams.topics import ensure_topics
from tests.support import (
    ROOT,
    die_with_parent,
    encode_records,
    make_settings,
    new_worker,
    produce,
    read_to_end,
    settings_env,
    unique_prefix,
    wait_group_committed,
)

pytestmark = pytest.mark.broker


@dataclass(frozen=True)
class Case:
    name: str
    command: str
    env: dict[str, str]
    """Overrides of the (valid) test settings."""
    says: tuple[str, ...]
    """Every one of these appears on stderr."""
    unset: tuple[str, ...] = ()
    """Variables removed from the environment."""


def rules_variant(tmp_path: Path, name: str, change: dict[str, object] | str) -> str:
    """A rules file: the shipped one with `change` applied (dotted key -> value, None deletes), or raw text."""
    path = tmp_path / f"{name}.yaml"
    if isinstance(change, str):
        path.write_text(change)
        return str(path)
    data = yaml.safe_load(DEFAULT_RULES.read_text())
    for dotted, value in change.items():
        *parents, last = dotted.split(".")
        node = data
        for part in parents:
            node = node[part]
        if value is None:
            del node[last]
        else:
            node[last] = value
    path.write_text(yaml.safe_dump(data))
    return str(path)


def cases(tmp_path: Path) -> list[Case]:
    rules = "CLIENTPULSE_RULES"
    return [
        Case(
            "typo in a rules key",
            "worker",
            {rules: rules_variant(tmp_path, "typo", {"cooldown_hour": {"large_outflow": 1}})},
            ("cooldown_hour", "Extra inputs are not permitted"),
        ),
        Case(
            "negative tier floor",
            "worker",
            {rules: rules_variant(tmp_path, "floor", {"tiers.floors.gold": -5})},
            ("tiers.floors.gold",),
        ),
        Case(
            "floors out of order",
            "worker",
            {rules: rules_variant(tmp_path, "order", {"tiers.floors.platinum": 10})},
            ("floors must rise",),
        ),
        Case(
            "base currency rate not 1",
            "worker",
            {rules: rules_variant(tmp_path, "fx", {"fx_rates.CNY": 2})},
            ("fx_rates.CNY",),
        ),
        Case(
            "missing section",
            "worker",
            {rules: rules_variant(tmp_path, "missing", {"dormancy": None})},
            ("dormancy", "Field required"),
        ),
        Case(
            "unknown alert type in cooldowns",
            "worker",
            {rules: rules_variant(tmp_path, "cooldown", {"cooldown_hours.big_outflow": 1})},
            ("cooldown_hours", "big_outflow"),
        ),
        Case("not YAML", "worker", {rules: rules_variant(tmp_path, "yaml", "tiers: [unclosed\n")}, ("not valid YAML",)),
        Case("no rules file", "worker", {rules: str(tmp_path / "absent.yaml")}, ("absent.yaml", "cannot read")),
        Case("partitions zero", "worker", {"CLIENTPULSE_PARTITIONS": "0"}, ("CLIENTPULSE_PARTITIONS",)),
        Case("unknown clock", "worker", {"CLIENTPULSE_CLOCK": "sundial"}, ("CLIENTPULSE_CLOCK", "sundial")),
        Case("batch size text", "worker", {"CLIENTPULSE_BATCH_SIZE": "lots"}, ("CLIENTPULSE_BATCH_SIZE",)),
        Case("web port out of range", "worker", {"CLIENTPULSE_WEB_PORT": "70000"}, ("CLIENTPULSE_WEB_PORT",)),
        Case("empty bootstrap", "worker", {"KAFKA_BOOTSTRAP": ""}, ("KAFKA_BOOTSTRAP",)),
        Case("bad topic prefix", "worker", {"CLIENTPULSE_TOPIC_PREFIX": "bad prefix!"}, ("CLIENTPULSE_TOPIC_PREFIX",)),
        Case(
            "two bad settings at once",
            "worker",
            {"CLIENTPULSE_SESSION_TIMEOUT": "-1", "CLIENTPULSE_TICK_SECONDS": "0"},
            ("CLIENTPULSE_SESSION_TIMEOUT", "CLIENTPULSE_TICK_SECONDS"),
        ),
        Case("sink without a database", "sink --no-api", {}, ("DATABASE_URL",), unset=("DATABASE_URL",)),
        Case(
            "sink with unreadable tokens",
            "sink",
            {"DATABASE_URL": "postgresql://127.0.0.1:1/none", "CLIENTPULSE_API_TOKENS": "{not json"},
            ("CLIENTPULSE_API_TOKENS",),
        ),
    ]


def alerting_events(settings: Settings) -> list[tuple[str, bytes | None, bytes | None]]:
    value = {
        "event_id": "i-1",
        "client_id": "c-1",
        "occurred_at": "2026-03-01T10:00:00+00:00",
        "kind": "complaint",
        "channel": "branch",
        "initiated_by": "customer",
        "severity": "high",
    }
    return encode_records(settings.topic_prefix, [("bank.interactions.v1", "c-1", value)])


async def group_offsets(bootstrap: str, settings: Settings) -> dict[tuple[str, int], int]:
    probe = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=settings.app_id, enable_auto_commit=False)
    await probe.start()
    try:
        found = {}
        for topic in settings.input_topics:
            for partition in range(settings.partitions):
                offset = await probe.committed(TopicPartition(topic, partition))
                if offset is not None:
                    found[(topic, partition)] = offset
        return found
    finally:
        await probe.stop()


async def messages_in(bootstrap: str, topic: str) -> int:
    """How many records `topic` holds (every process that could write it has exited)."""
    return len(await read_to_end(bootstrap, topic))


async def topic_names(bootstrap: str) -> set[str]:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        return set(await admin.list_topics())
    finally:
        await admin.close()


def test_bad_configuration_stops_at_start_naming_the_problem(broker: str, tmp_path: Path) -> None:
    prefix = unique_prefix()
    settings = make_settings(broker, prefix, database_url="postgresql://127.0.0.1:1/none")
    asyncio.run(ensure_topics(settings))
    asyncio.run(produce(broker, alerting_events(settings)))
    base_env = {**os.environ, **settings_env(settings), "CLIENTPULSE_WEB_PORT": str(free_port())}
    base_env["CLIENTPULSE_API_PORT"] = str(free_port())
    runs: list[tuple[Case, subprocess.Popen[bytes], float]] = []
    try:
        for case in cases(tmp_path):
            env = {k: v for k, v in {**base_env, **case.env}.items() if k not in case.unset}
            command = [sys.executable, "-m", "streams.cli", *case.command.split()]
            proc = subprocess.Popen(
                command,
                cwd=ROOT,
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                start_new_session=True,
                preexec_fn=die_with_parent,
            )
            runs.append((case, proc, time.monotonic()))
        problems = []
        for case, proc, _started in runs:
            try:
                out, err = proc.communicate(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
                out, err = proc.communicate()
                problems.append(f"{case.name}: still running after 60 s")
                continue
            text = err.decode(errors="replace")
            if proc.returncode != 2:
                problems.append(f"{case.name}: exit code {proc.returncode}\n{text[-800:]}")
            missing = [s for s in case.says if s not in text]
            if missing:
                problems.append(f"{case.name}: stderr does not name {missing}:\n{text[-800:]}")
            if "Traceback" in text or "Traceback" in out.decode(errors="replace"):
                problems.append(f"{case.name}: a traceback instead of a message:\n{text[-800:]}")
        assert not problems, "\n\n".join(problems)
    finally:
        for _, proc, _ in runs:
            if proc.poll() is None:
                proc.kill()
                proc.wait(5)

    assert asyncio.run(group_offsets(broker, settings)) == {}, "a poisoned worker committed offsets"
    assert asyncio.run(messages_in(broker, settings.alerts_topic)) == 0, "a poisoned worker published alerts"
    assert asyncio.run(messages_in(broker, settings.deadletter_topic)) == 0
    assert f"{settings.app_id}-client-state-changelog" not in asyncio.run(topic_names(broker))


def test_the_same_events_are_processed_once_the_configuration_is_fixed(broker: str, tmp_path: Path) -> None:
    """The control: with valid settings the same worker takes the same events and alerts (so the test can fail)."""
    prefix = unique_prefix()
    settings = make_settings(broker, prefix)
    asyncio.run(ensure_topics(settings))
    asyncio.run(produce(broker, alerting_events(settings)))
    worker = new_worker(settings, tmp_path).start()
    try:
        worker.wait_ready()
        asyncio.run(wait_group_committed(broker, settings, 1))
        alerts = [orjson.loads(r.value) for r in asyncio.run(read_to_end(broker, settings.alerts_topic))]
    finally:
        worker.stop()
    assert [(a["type"], a["client_id"]) for a in alerts] == [("complaint", "c-1")]
    assert asyncio.run(group_offsets(broker, settings)) != {}

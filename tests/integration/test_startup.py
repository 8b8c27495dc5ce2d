"""Start-up checks on the real broker: differing partition counts and an unreachable broker stop each process
with one line and exit 2."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from aiokafka.admin import AIOKafkaAdminClient, NewTopic  # type: ignore[import-untyped]

from streams.settings import Settings
from streams.tools.embedded import free_port
from tests.support import ROOT, die_with_parent, make_settings, settings_env, unique_prefix


def run(settings: Settings, *command: str, timeout: float = 90, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "streams.cli", *command],
        cwd=ROOT,
        env={**os.environ, **settings_env(settings), **env},
        capture_output=True,
        text=True,
        timeout=timeout,
        preexec_fn=die_with_parent,
    )


def error_lines(done: subprocess.CompletedProcess[str]) -> list[str]:
    return [line for line in done.stderr.splitlines() if line.startswith("clientpulse:")]


async def create_topic(bootstrap: str, name: str, partitions: int) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(name, partitions, 1)])
    finally:
        await admin.close()


async def partition_counts(bootstrap: str, names: list[str]) -> dict[str, int]:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        described = await admin.describe_topics([n for n in names if n in existing])
    finally:
        await admin.close()
    return {t["topic"]: len(t["partitions"]) for t in described}


@pytest.mark.broker
@pytest.mark.parametrize("odd", ["bank.transactions.v1", "changelog"])
def test_differing_partition_counts_stop_topics_and_the_worker(broker: str, tmp_path: Path, odd: str) -> None:
    prefix = unique_prefix()
    settings = make_settings(broker, prefix, data_dir=tmp_path / "data")
    name = settings.transactions_topic if odd != "changelog" else f"{settings.app_id}-client-state-changelog"
    asyncio.run(create_topic(broker, name, 2))  # the others get 4 (CLIENTPULSE_PARTITIONS)
    for command in (["topics"], ["worker"]):
        done = run(settings, *command)
        assert done.returncode == 2, f"{command}: {done.stderr[-2000:]}"
        (line,) = error_lines(done)
        assert "Traceback" not in done.stderr
        assert f"{name} has 2" in line and "CLIENTPULSE_PARTITIONS is 4" in line, line
    counts = asyncio.run(partition_counts(broker, [name, settings.interactions_topic]))
    assert counts[name] == 2, "an existing topic is never changed"
    assert settings.interactions_topic not in counts, "nothing is created when the counts differ"


@pytest.mark.parametrize(
    "command", [["worker"], ["sink", "--no-api"], ["topics"], ["simulate", "--duration", "1"], ["redrive"]]
)
def test_an_unreachable_broker_gives_one_line_and_exit_2_after_a_bounded_wait(
    tmp_path: Path, command: list[str]
) -> None:
    closed = f"127.0.0.1:{free_port()}"
    settings = make_settings(
        closed,
        unique_prefix(),
        kafka_connect_timeout=2.0,
        database_url="postgresql://postgres@127.0.0.1:5432/unused",
        api_tokens="tokens: []",
        data_dir=tmp_path / "data",
    )
    started = time.monotonic()
    done = run(settings, *command, timeout=60)
    took = time.monotonic() - started
    assert done.returncode == 2, done.stderr[-2000:]
    (line,) = error_lines(done)
    assert "Traceback" not in done.stderr and "Unable connect" not in done.stderr
    assert f"cannot reach Kafka at {closed}" in line and "KAFKA_CONNECT_TIMEOUT" in line and "refused" in line
    assert 2.0 <= took < 30, f"{command} took {took:.1f}s"

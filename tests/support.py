"""Shared helpers for integration tests: real broker, real database, real worker processes."""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition  # type: ignore[import-untyped]
from pydantic import SecretStr

from streams.kafka_client import client_kwargs
from streams.settings import Settings
from streams.tools.embedded import free_port, terminate_group

ROOT = Path(__file__).resolve().parent.parent


def die_with_parent() -> None:
    """In the child: be killed when the test process dies, so no worker outlives a test run."""
    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


PR_SET_PDEATHSIG = 1


def unique_prefix() -> str:
    return f"t{uuid.uuid4().hex[:8]}."


def make_settings(bootstrap: str, prefix: str, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "kafka_bootstrap": bootstrap,
        "topic_prefix": prefix,
        "app_id": f"{prefix}clientpulse".replace(".", "-"),
        "partitions": 4,
        "session_timeout": 6.0,
        "recovery_check": False,
        "end_offset_probe": not os.environ.get("CLIENTPULSE_TEST_BOOTSTRAP"),
    }
    values.update(overrides)
    return Settings(**values)


def settings_env(settings: Settings) -> dict[str, str]:
    """Environment that makes a child process load exactly these settings."""
    from streams.settings import ENV_NAMES

    env = {}
    for name, value in settings.model_dump().items():
        if value is None:
            continue
        if isinstance(value, SecretStr):
            value = value.get_secret_value()
        env[ENV_NAMES[name]] = str(value).lower() if isinstance(value, bool) else str(value)
    return env


Target = str | Settings
"""Where a helper connects: a plaintext bootstrap address, or settings (with their security) to connect with."""


def kafka_kwargs(target: Target) -> dict[str, Any]:
    """The client arguments for `target`, built as every clientpulse process builds them."""
    if isinstance(target, Settings):
        return client_kwargs(target)
    return {"bootstrap_servers": target}


@dataclass
class WorkerProcess:
    """A `clientpulse worker` (or `notifier`) child process with its own web port."""

    settings: Settings
    log_path: Path
    extra_env: dict[str, str] = field(default_factory=dict)
    proc: subprocess.Popen[bytes] | None = None
    command: str = "worker"

    @property
    def web(self) -> str:
        return f"http://127.0.0.1:{self.settings.web_port}"

    def start(self) -> WorkerProcess:
        env = {**os.environ, **settings_env(self.settings), **self.extra_env}
        log = open(self.log_path, "ab")  # noqa: SIM115
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "streams.cli", self.command],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=die_with_parent,
        )
        return self

    def status(self) -> dict[str, Any] | None:
        try:
            with urllib.request.urlopen(f"{self.web}/status", timeout=2) as resp:
                return dict(json.loads(resp.read()))
        except OSError:
            return None

    def wait_ready(self, timeout: float = 60.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise AssertionError(f"worker exited with {self.proc.returncode}:\n{self.tail()}")
            status = self.status()
            if status and status.get("ready"):
                return status
            time.sleep(0.3)
        raise AssertionError(f"worker not ready after {timeout}s:\n{self.tail()}")

    def wait_status(self, condition: Callable[[dict[str, Any]], bool], timeout: float = 60.0) -> dict[str, Any]:
        """The worker's /status once `condition` holds for it."""
        deadline = time.monotonic() + timeout
        status: dict[str, Any] | None = None
        while time.monotonic() < deadline:
            status = self.status()
            if status and condition(status):
                return status
            time.sleep(0.2)
        raise AssertionError(f"worker status never met the condition; last {status}:\n{self.tail()}")

    def metrics(self) -> str:
        with urllib.request.urlopen(f"{self.web}/metrics", timeout=5) as resp:
            return str(resp.read().decode())

    def tail(self, lines: int = 60) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, 9)
            self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is not None:
            terminate_group(self.proc, timeout=15)


def new_worker(
    settings: Settings, tmp_path: Path, name: str = "worker", command: str = "worker", **env: str
) -> WorkerProcess:
    worker_settings = settings.model_copy(update={"web_port": free_port(), "data_dir": tmp_path / f"{name}-data"})
    return WorkerProcess(worker_settings, tmp_path / f"{name}.log", dict(env), command=command)


async def produce(
    bootstrap: Target, records: Iterable[tuple[str, bytes | None, bytes | None]], **producer_options: Any
) -> int:
    """Send (topic, key, value) in order and wait until the broker has them all."""
    options: dict[str, Any] = {"acks": "all", "linger_ms": 2, **producer_options}
    producer = AIOKafkaProducer(**kafka_kwargs(bootstrap), **options)
    await producer.start()
    n = 0
    try:
        for topic, key, value in records:
            await producer.send(topic, value, key=key)
            n += 1
        await producer.flush()
    finally:
        await producer.stop()
    return n


def encode_records(
    prefix: str, records: Iterable[tuple[str, str, Any]]
) -> list[tuple[str, bytes | None, bytes | None]]:
    """(topic, key, dict) as in a replay file -> bytes for the broker, with the topic prefix."""
    out: list[tuple[str, bytes | None, bytes | None]] = []
    for topic, key, value in records:
        raw = value if isinstance(value, bytes) else orjson.dumps(value)
        out.append((prefix + topic, key.encode() if key is not None else None, raw))
    return out


async def consume(
    bootstrap: Target,
    topic: str,
    until: Callable[[list[dict[str, Any]]], bool],
    timeout: float = 60.0,
) -> list[dict[str, Any]]:
    """Read a topic from the start, JSON-decoding values, until `until(values)` holds or timeout."""
    consumer = AIOKafkaConsumer(
        topic,
        **kafka_kwargs(bootstrap),
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        group_id=None,
    )
    await consumer.start()
    values: list[dict[str, Any]] = []
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline and not until(values):
            batch = await consumer.getmany(timeout_ms=500)
            for msgs in batch.values():
                values.extend(orjson.loads(m.value) for m in msgs if m.value is not None)
    finally:
        await consumer.stop()
    return values


async def read_to_end(bootstrap: Target, topic: str, timeout: float = 60.0, **options: Any) -> list[ConsumerRecord]:
    """Every record of `topic` from its start up to its end: the high watermark a fetch reports per partition.

    Read this way, "nothing more" is a fact rather than a guess: once whatever
    writes the topic is known to be done (its input offsets committed, say), a
    record missing here was never written, and an extra one would be here. The
    end is the fetch's high watermark because some Kafka-compatible brokers (the
    embedded one among them) answer ListOffsets inexactly.
    """
    consumer = AIOKafkaConsumer(**kafka_kwargs(bootstrap), enable_auto_commit=False, group_id=None, **options)
    await consumer.start()
    records: list[ConsumerRecord] = []
    try:
        await consumer.topics()  # loads the metadata: partitions_for_topic reads it
        partitions = consumer.partitions_for_topic(topic)
        assert partitions, f"topic {topic} does not exist"
        tps = [TopicPartition(topic, p) for p in sorted(partitions)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        deadline = time.monotonic() + timeout
        while True:
            for batch in (await consumer.getmany(*tps, timeout_ms=200)).values():
                records.extend(batch)
            ends = {tp: consumer.highwater(tp) for tp in tps}
            positions = {tp: await consumer.position(tp) for tp in tps}
            if all(end is not None and positions[tp] >= end for tp, end in ends.items()):
                return records
            if time.monotonic() > deadline:
                raise AssertionError(f"{topic}: not read to its end after {timeout}s (ends {ends})")
    finally:
        await consumer.stop()


async def end_offsets(bootstrap: str, topic: str) -> dict[int, int]:
    """Each partition's end offset, as a fetch's high watermark reports it (see `read_to_end`)."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, group_id=None)
    await consumer.start()
    try:
        await consumer.topics()
        partitions = consumer.partitions_for_topic(topic)
        assert partitions, f"topic {topic} does not exist"
        tps = [TopicPartition(topic, p) for p in sorted(partitions)]
        consumer.assign(tps)
        await consumer.seek_to_end(*tps)
        deadline = time.monotonic() + 30
        while any(consumer.highwater(tp) is None for tp in tps):
            assert time.monotonic() < deadline, f"{topic}: no high watermark fetched"
            await consumer.getmany(*tps, timeout_ms=200, max_records=1)
        return {tp.partition: int(consumer.highwater(tp)) for tp in tps}
    finally:
        await consumer.stop()


class GroupOffsets:
    """A consumer group's committed offsets, read without joining the group (the probe subscribes to nothing)."""

    def __init__(self, bootstrap: str, group: str) -> None:
        self._probe = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False)

    async def __aenter__(self) -> GroupOffsets:
        await self._probe.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._probe.stop()

    async def of(self, topic: str, partitions: Iterable[int]) -> dict[int, int]:
        """The next offset the group will read on each partition (0 where it committed nothing)."""
        return {p: await self._probe.committed(TopicPartition(topic, p)) or 0 for p in partitions}

    async def reached(self, topic: str, ends: dict[int, int]) -> bool:
        """Whether the group has committed up to `ends` (partition -> offset) on `topic`."""
        committed = await self.of(topic, ends)
        return all(committed[p] >= end for p, end in ends.items())


async def wait_group_committed(bootstrap: str, settings: Settings, count: int, timeout: float = 60.0) -> None:
    """Until the worker group has committed `count` messages over the input topics (all they hold, in a test).

    A worker commits a batch only once the batch's alerts, dead letters and
    state records are on the broker: from then on those topics are complete.
    The group is the one these settings' worker joins (a shadow's is its own).
    """
    deadline = time.monotonic() + timeout
    async with GroupOffsets(bootstrap, settings.worker_app_id) as offsets:
        while True:
            committed = {
                t: sum((await offsets.of(t, range(settings.partitions))).values()) for t in settings.input_topics
            }
            if sum(committed.values()) >= count:
                return
            assert time.monotonic() < deadline, f"the workers committed {committed} of {count} messages"
            await asyncio.sleep(0.1)


async def consume_records(
    bootstrap: str,
    topic: str,
    until: Callable[[list[Any]], bool],
    timeout: float = 60.0,
) -> list[Any]:
    """Read a topic from the start as aiokafka records (tombstones included) until `until(records)` or timeout."""
    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest", enable_auto_commit=False, group_id=None
    )
    await consumer.start()
    records: list[Any] = []
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline and not until(records):
            batch = await consumer.getmany(timeout_ms=500)
            for msgs in batch.values():
                records.extend(msgs)
    finally:
        await consumer.stop()
    return records

"""`clientpulse bench`: throughput and latency measured in one run, on one broker.

1. limit: raw aiokafka consume + JSON decode of the loaded input topics;
2. backtest: the same events as a replay file through `clientpulse backtest`'s path (no Kafka), in one
   process and sharded over two;
3. stream: one worker draining the backlog with every rule and the state changelog;
4. latency: event -> alert at a steady offered load;
5. resources: worker peak RSS, and state recovery time after a restart;
6. notifier: the stream's alerts through re-key, decision and output, and the latency
   it adds at the offered load (alert on rm.alerts.v1 -> push on rm.notifications.v1).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition  # type: ignore[import-untyped]

from handlers.ruleset import load_rules
from schemas.topics import INTERACTIONS
from streams.gc_tuning import tune_gc
from streams.kafka_client import client_kwargs
from streams.settings import ENV_NAMES, Settings, load_settings
from streams.tools.embedded import EmbeddedBroker, free_port, python_cmd, terminate_group
from streams.tools.sharding import replay_file
from streams.tools.synthetic import SyntheticBank, history
from streams.topics import ensure_topics

RESULTS_DIR = Path("bench/results")


@dataclass
class Figures:
    events: int = 0
    clients: int = 0
    limit_msgs_per_s: float = 0.0
    backtest_events_per_s: float = 0.0
    backtest_2_workers_events_per_s: float = 0.0
    stream_events_per_s: float = 0.0
    stream_time_to_ready_s: float = 0.0
    latency_offered_per_s: float = 0.0
    latency_p50_ms: float = 0.0
    latency_p95_ms: float = 0.0
    latency_p99_ms: float = 0.0
    latency_samples: int = 0
    worker_peak_rss_mib: float = 0.0
    recovery_s: float = 0.0
    recovery_records: int = 0
    restart_to_ready_s: float = 0.0
    alerts_backtest: int = 0
    notifier_alerts: int = 0
    notifier_alerts_per_s: float = 0.0
    notifier_latency_p50_ms: float = 0.0
    notifier_latency_p99_ms: float = 0.0
    notifier_latency_samples: int = 0
    notes: list[str] = field(default_factory=list)

    def table(self) -> str:
        ratio_s = self.stream_events_per_s / self.limit_msgs_per_s if self.limit_msgs_per_s else 0.0
        ratio_b = self.backtest_events_per_s / self.limit_msgs_per_s if self.limit_msgs_per_s else 0.0
        one = self.backtest_events_per_s
        scaling = self.backtest_2_workers_events_per_s / one if one else 0.0
        rows = [
            ("events / clients", f"{self.events:,} / {self.clients:,}"),
            ("limit: raw consume + decode", f"{self.limit_msgs_per_s:,.0f} msg/s"),
            ("backtest, one process", f"{self.backtest_events_per_s:,.0f} events/s  ({ratio_b:.2f} of limit)"),
            (
                "backtest, --workers 2",
                f"{self.backtest_2_workers_events_per_s:,.0f} events/s  ({scaling:.2f} times one process)",
            ),
            ("stream, one worker", f"{self.stream_events_per_s:,.0f} events/s  ({ratio_s:.2f} of limit)"),
            ("worker time to ready", f"{self.stream_time_to_ready_s:.1f} s"),
            (
                f"latency at {self.latency_offered_per_s:,.0f}/s",
                f"p50 {self.latency_p50_ms:.0f} ms, p95 {self.latency_p95_ms:.0f} ms, "
                f"p99 {self.latency_p99_ms:.0f} ms ({self.latency_samples} alerts)",
            ),
            ("worker peak RSS", f"{self.worker_peak_rss_mib:,.0f} MiB"),
            (
                "notifier, one process",
                f"{self.notifier_alerts_per_s:,.0f} alerts/s re-keyed, decided and published "
                f"({self.notifier_alerts:,} alerts)",
            ),
            (
                f"notifier added latency at {self.latency_offered_per_s:,.0f}/s",
                f"p50 {self.notifier_latency_p50_ms:.0f} ms, p99 {self.notifier_latency_p99_ms:.0f} ms "
                f"(alert -> push, {self.notifier_latency_samples} pushes)",
            ),
            (
                "state recovery after restart",
                f"{self.recovery_s:.1f} s for {self.recovery_records:,} changelog records "
                f"(ready {self.restart_to_ready_s:.1f} s after start, with the group rejoin)",
            ),
        ]
        width = max(len(k) for k, _ in rows)
        return "\n".join(f"{k:<{width}}  {v}" for k, v in rows)


def _records(events: int, clients: int) -> list[tuple[str, bytes, bytes]]:
    return [
        (topic, key.encode(), orjson.dumps(value))
        for topic, key, value in history(events, clients, seed=42, run_id="b")
    ]


async def _produce(settings: Settings, prefix: str, records: list[tuple[str, bytes, bytes]]) -> float:
    producer = AIOKafkaProducer(
        **client_kwargs(settings), acks=1, linger_ms=20, max_batch_size=512 * 1024, compression_type=None
    )
    await producer.start()
    started = time.perf_counter()
    try:
        pending = []
        for topic, key, value in records:
            pending.append(await producer.send(prefix + topic, value, key=key))
            if len(pending) >= 5000:
                await asyncio.gather(*pending)
                pending.clear()
        await asyncio.gather(*pending)
    finally:
        await producer.stop()
    return len(records) / (time.perf_counter() - started)


async def _raw_consume(settings: Settings, topics: list[str], expected: int) -> float:
    consumer = AIOKafkaConsumer(
        *topics,
        **client_kwargs(settings),
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        group_id=None,
        max_partition_fetch_bytes=4 * 1024 * 1024,
        fetch_max_bytes=32 * 1024 * 1024,
    )
    await consumer.start()
    seen = 0
    started = 0.0
    try:
        while seen < expected:
            batch = await consumer.getmany(timeout_ms=1000, max_records=10_000)
            if not batch:
                continue
            if not started:
                started = time.perf_counter()
            for messages in batch.values():
                for message in messages:
                    orjson.loads(message.value)
                    seen += 1
    finally:
        await consumer.stop()
    return seen / (time.perf_counter() - started)


def _backtest(records: list[tuple[str, bytes, bytes]], workdir: Path) -> tuple[float, float, int]:
    """Events/s of the replay of a dump of `records` in one process and in two, as `clientpulse backtest` runs it.

    The clock runs from opening the file to the last alert as JSON; both runs
    must give the same alerts.
    """
    tune_gc()  # as `clientpulse backtest` runs
    path = workdir / "history.jsonl"
    with path.open("wb") as out:
        for topic, key, value in records:
            line = {"topic": topic, "key": key.decode(), "value": orjson.Fragment(value)}
            out.write(orjson.dumps(line, option=orjson.OPT_APPEND_NEWLINE))
    rules = load_rules(load_settings().rules_path)
    detected_at = datetime.now(UTC)
    rates: list[float] = []
    outcomes: list[list[bytes]] = []
    # The bench holds the whole history in memory; a backtest process holds none of it: keep the collector
    # from walking it, so that the figures are the command's.
    gc.collect()
    gc.freeze()
    try:
        for workers in (1, 2):
            started = time.perf_counter()
            outcome = replay_file(path, rules, workers=workers, detected_at=detected_at)
            rates.append(len(records) / (time.perf_counter() - started))
            outcomes.append(outcome.alerts)
            del outcome
            gc.freeze()  # the alerts kept for the check, too
    finally:
        gc.unfreeze()
    if outcomes[0] != outcomes[1]:
        raise RuntimeError("the backtest over two processes gave other alerts than one process")
    path.unlink()
    return rates[0], rates[1], len(outcomes[0])


def _status(port: int) -> dict[str, Any]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/status", timeout=2) as resp:
            return dict(json.loads(resp.read()))
    except OSError:
        return {}


def _peak_rss_mib(pid: int) -> float:
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return 0.0


class _Worker:
    def __init__(self, env: dict[str, str], log: Path, command: str = "worker") -> None:
        self.port = free_port()
        self.env = {**env, "CLIENTPULSE_WEB_PORT": str(self.port)}
        if command != "worker":
            self.env[ENV_NAMES["data_dir"]] = f"{env.get(ENV_NAMES['data_dir'], 'data')}-{command}"
        self.command = command
        self.log = log
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> float:
        started = time.perf_counter()
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(
                python_cmd(self.command), env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        while not _status(self.port).get("ready"):
            if self.proc.poll() is not None:
                raise RuntimeError(f"worker exited with {self.proc.returncode}; see {self.log}")
            time.sleep(0.1)
        return time.perf_counter() - started

    def processed(self) -> int:
        return int(_status(self.port).get("processed", 0))

    def stop(self) -> None:
        if self.proc is not None:
            terminate_group(self.proc, timeout=20)


def _drain(worker: _Worker, expected: int, timeout: float) -> float:
    """Events/s from the start of the worker's first batch to the end of its last, by the worker's own clock."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = _status(worker.port)
        done = int(status.get("processed", 0))
        if done >= expected:
            span = float(status["busy_until"]) - float(status["busy_from"])
            return done / span if span > 0 else float("nan")
        time.sleep(0.05)
    raise RuntimeError(f"worker processed {worker.processed()} of {expected} within {timeout:.0f}s")


async def _end_total(settings: Settings, topic: str) -> int:
    """Records in `topic`: the sum of its partitions' high watermarks, as a fetch reports them."""
    consumer = AIOKafkaConsumer(**client_kwargs(settings), enable_auto_commit=False, group_id=None)
    await consumer.start()
    try:
        await consumer.topics()
        tps = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())]
        consumer.assign(tps)
        await consumer.seek_to_end(*tps)
        while any(consumer.highwater(tp) is None for tp in tps):
            await consumer.getmany(*tps, timeout_ms=200, max_records=1)
        return sum(int(consumer.highwater(tp)) for tp in tps)
    finally:
        await consumer.stop()


def _all_decided(notifier: _Worker, alerts: int, timeout: float) -> dict[str, Any]:
    """The notifier's status once it has re-keyed `alerts` alerts and decided every one it re-keyed
    (or found it a duplicate or stale)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = _status(notifier.port)
        seen = sum(int(status.get(k, 0)) for k in ("decided", "duplicates", "stale"))
        if int(status.get("rekeyed", 0)) >= alerts and seen >= int(status.get("rekeyed", 0)):
            return status
        time.sleep(0.05)
    raise RuntimeError(f"notifier decided {_status(notifier.port).get('decided')} of {alerts} within {timeout:.0f}s")


def _notify_all(notifier: _Worker, alerts: int, timeout: float) -> float:
    """Alerts/s of a notifier taking `alerts` alerts from the start, by its own clock (first to last batch)."""
    status = _all_decided(notifier, alerts, timeout)
    span = float(status["busy_until"]) - float(status["busy_from"])
    return alerts / span if span > 0 else float("nan")


async def _latency(settings: Settings, rate: float, seconds: float) -> tuple[list[float], list[float]]:
    """Offered load with a complaint (always an alert) every 20 events: event -> alert, and alert -> push.

    The complaints are of high severity: critical, so the notifier pushes every one at once.
    """
    bank = SyntheticBank(clients=2000, seed=9, run_id=f"lat{int(time.time())}")
    producer = AIOKafkaProducer(**client_kwargs(settings), acks=1, linger_ms=0)
    consumer = AIOKafkaConsumer(
        settings.alerts_topic,
        settings.notifications_topic,
        **client_kwargs(settings),
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        group_id=None,
        fetch_max_wait_ms=10,  # the measuring side must not add its own fetch wait
    )
    await producer.start()
    await consumer.start()
    sent_at: dict[str, float] = {}
    alert_at: dict[str, float] = {}
    latencies: list[float] = []
    added: list[float] = []
    stop = asyncio.Event()

    async def collect() -> None:
        while not stop.is_set() or len(latencies) < len(sent_at):
            batch = await consumer.getmany(timeout_ms=20)
            now = time.perf_counter()
            for messages in batch.values():
                for message in messages:
                    record = orjson.loads(message.value)
                    if message.topic == settings.notifications_topic:
                        at = alert_at.get(record.get("alert_id", ""))
                        if at is not None:
                            added.append(now - at)
                        continue
                    for source in record.get("source_event_ids", ()):
                        at = sent_at.get(source)
                        if at is not None and record["type"] == "complaint":
                            latencies.append(now - at)
                            alert_at[record["alert_id"]] = now
            if stop.is_set() and not batch:
                break

    collector = asyncio.create_task(collect())
    try:
        interval = 1.0 / rate
        started = time.perf_counter()
        n = 0
        while time.perf_counter() - started < seconds:
            at = datetime.now(UTC)
            value: dict[str, object]
            if n % 20 == 0:
                client = bank.clients[n % len(bank.clients)]
                value = {
                    "event_id": f"{bank.run_id}-c{n}",
                    "client_id": client.client_id,
                    "occurred_at": at.isoformat(),
                    "kind": "complaint",
                    "channel": "branch",
                    "initiated_by": "customer",
                    "severity": "high",
                }
                topic, key = INTERACTIONS, client.client_id
                sent_at[str(value["event_id"])] = time.perf_counter()
            else:
                topic, key, value = bank.event(at)
            await producer.send(settings.topic(topic), orjson.dumps(value), key=key.encode())
            n += 1
            delay = started + n * interval - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
        await producer.flush()
        await asyncio.sleep(3)
    finally:
        stop.set()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(collector, 10)
        await consumer.stop()
        await producer.stop()
    return latencies, added


def run_bench(args: argparse.Namespace) -> int:
    quick = bool(args.quick)
    events = args.events or (20_000 if quick else 500_000)
    clients = args.clients or (4_000 if quick else 100_000)
    figures = Figures(events=events, clients=clients)
    workdir = Path(tempfile.mkdtemp(prefix="clientpulse-bench-"))
    broker: EmbeddedBroker | None = None
    env = dict(os.environ)
    if not env.get("KAFKA_BOOTSTRAP"):
        broker = EmbeddedBroker(log_path=workdir / "broker.log").start()
        env.update(
            KAFKA_BOOTSTRAP=broker.bootstrap, CLIENTPULSE_RECOVERY_CHECK="false", CLIENTPULSE_END_OFFSET_PROBE="true"
        )
        env.setdefault("CLIENTPULSE_SESSION_TIMEOUT", "6")
    prefix = f"bench{int(time.time())}."
    env.update(
        {
            ENV_NAMES["topic_prefix"]: prefix,
            ENV_NAMES["app_id"]: prefix.rstrip(".") + "-worker",
            ENV_NAMES["clock"]: "event",
            ENV_NAMES["data_dir"]: str(workdir / "data"),
            ENV_NAMES["tick_seconds"]: "1",
        }
    )
    os.environ.update({k: v for k, v in env.items() if k.startswith(("KAFKA_", "CLIENTPULSE_"))})
    settings = load_settings()
    worker: _Worker | None = None
    try:
        print(f"generating {events:,} events over {clients:,} clients ...", flush=True)
        records = _records(events, clients)
        figures.events = len(records)
        asyncio.run(ensure_topics(settings))
        rate = asyncio.run(_produce(settings, prefix, records))
        print(f"loaded the input topics at {rate:,.0f} msg/s", flush=True)

        figures.limit_msgs_per_s = asyncio.run(_raw_consume(settings, list(settings.input_topics), len(records)))
        print(f"limit     {figures.limit_msgs_per_s:,.0f} msg/s", flush=True)
        one, two, figures.alerts_backtest = _backtest(records, workdir)
        figures.backtest_events_per_s, figures.backtest_2_workers_events_per_s = one, two
        print(f"backtest  {one:,.0f} events/s, {two:,.0f} with --workers 2", flush=True)

        worker = _Worker(env, workdir / "worker.log")
        figures.stream_time_to_ready_s = worker.start()
        figures.stream_events_per_s = _drain(worker, len(records), timeout=max(120.0, len(records) / 500))
        print(f"stream    {figures.stream_events_per_s:,.0f} events/s", flush=True)

        assert worker.proc is not None
        figures.worker_peak_rss_mib = _peak_rss_mib(worker.proc.pid)
        figures.notifier_alerts = asyncio.run(_end_total(settings, settings.alerts_topic))
        notifier = _Worker(env, workdir / "notifier.log", "notifier")
        notifier.start()
        try:
            figures.notifier_alerts_per_s = _notify_all(
                notifier, figures.notifier_alerts, timeout=max(120.0, figures.notifier_alerts / 200)
            )
        finally:
            notifier.stop()
        print(f"notifier  {figures.notifier_alerts_per_s:,.0f} alerts/s", flush=True)
        worker.stop()
        restarted = _Worker(env, workdir / "worker-restart.log")
        # A restart rejoins the group; the embedded broker keeps old members until the session times out,
        # so time to ready is reported apart from the recovery itself (the worker's own measure).
        figures.restart_to_ready_s = restarted.start()
        recovery = _status(restarted.port).get("recovery") or {}
        figures.recovery_s = float(recovery.get("seconds") or 0.0)
        figures.recovery_records = int(recovery.get("records") or 0)
        restarted.stop()

        # Latency is measured live: a fresh worker on fresh topics with the wall clock, as in production.
        live_prefix = f"live{int(time.time())}."
        live_env = {
            **env,
            ENV_NAMES["topic_prefix"]: live_prefix,
            ENV_NAMES["app_id"]: live_prefix.rstrip(".") + "-worker",
            ENV_NAMES["clock"]: "wall",
        }
        live_settings = settings.model_copy(update={"topic_prefix": live_prefix, "clock": "wall"})
        asyncio.run(ensure_topics(live_settings))
        worker = _Worker(live_env, workdir / "worker-live.log")
        worker.start()
        seconds = 5.0 if quick else 20.0
        latencies, _ = asyncio.run(_latency(live_settings, args.rate, seconds))
        # Then the notifier's part, beside the same worker once it has taken the alerts above. Measured
        # together, the notifier's share of the two cores showed in the worker's latency.
        live_notifier = _Worker(live_env, workdir / "notifier-live.log", "notifier")
        live_notifier.start()
        try:
            backlog = asyncio.run(_end_total(live_settings, live_settings.alerts_topic))
            _all_decided(live_notifier, backlog, timeout=120.0)
            _, added = asyncio.run(_latency(live_settings, args.rate, seconds))
        finally:
            live_notifier.stop()
        figures.notifier_latency_samples = len(added)
        if len(added) >= 2:
            ms = sorted(x * 1000 for x in added)
            q = statistics.quantiles(ms, n=100, method="inclusive")
            figures.notifier_latency_p50_ms, figures.notifier_latency_p99_ms = q[49], q[98]
        figures.latency_offered_per_s = args.rate
        figures.latency_samples = len(latencies)
        if len(latencies) >= 2:
            ms = sorted(x * 1000 for x in latencies)
            q = statistics.quantiles(ms, n=100, method="inclusive")
            figures.latency_p50_ms, figures.latency_p95_ms, figures.latency_p99_ms = q[49], q[94], q[98]
    finally:
        if worker is not None:
            worker.stop()
        if broker is not None:
            broker.stop()

    print()
    print(figures.table())
    out = args.out or RESULTS_DIR / f"{datetime.now(UTC):%Y%m%dT%H%M%SZ}{'-quick' if quick else ''}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "when": datetime.now(UTC).isoformat(),
        "machine": {"cpus": os.cpu_count(), "python": sys.version.split()[0], "platform": platform.platform()},
        "quick": quick,
        **figures.__dict__,
    }
    out.write_text(json.dumps(payload, indent=2))
    print(f"\nresults written to {out}")
    return 0

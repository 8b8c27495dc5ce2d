"""`clientpulse simulate`: a synthetic bank produced at a steady rate, or dumped as a replay file."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson
from aiokafka import AIOKafkaProducer  # type: ignore[import-untyped]

from streams.kafka_client import client_kwargs
from streams.settings import Settings, load_settings
from streams.tools.synthetic import SyntheticBank, history
from streams.topics import ensure_topics


def dump_history(path: Path, events: int, clients: int, seed: int) -> int:
    """Write a replay file (docs/events.md, "Replay file"); returns the number of lines."""
    n = 0
    with open(path, "wb") as out:
        for topic, key, value in history(events, clients, seed=seed):
            out.write(orjson.dumps({"topic": topic, "key": key, "value": value}) + b"\n")
            n += 1
    return n


async def produce_live(
    settings: Settings,
    clients: int,
    rate: float,
    duration: float | None,
    seed: int,
    stop: asyncio.Event,
    on_sent: Callable[[int], None] | None = None,
    settle_seconds: float = 0.0,
    history_days: float = 0.0,
    unassigned_every: int = 0,
) -> int:
    """Onboard the bank, then send events stamped with the wall clock at `rate` per second.

    With `history_days`, the bank is onboarded that many days ago and its recent
    past (ten events a client, stamped over those days) is sent at once first: a
    worker on the wall clock then also shows what takes days to come due
    (birthdays, complaints nobody called back, quiet clients).
    """
    await ensure_topics(settings)
    producer = AIOKafkaProducer(**client_kwargs(settings), acks="all", linger_ms=5)
    await producer.start()
    run_id = f"sim{int(time.time())}"
    bank = SyntheticBank(
        clients=clients, rms=max(1, clients // 15), seed=seed, run_id=run_id, unassigned_every=unassigned_every
    )
    sent = 0

    async def send(topic: str, key: str, value: dict[str, object]) -> None:
        nonlocal sent
        await producer.send(settings.topic(topic), orjson.dumps(value), key=key.encode())
        sent += 1
        if on_sent:
            on_sent(sent)

    try:
        start = datetime.now(UTC) - timedelta(days=history_days)
        for record in bank.onboarding(start):
            await send(*record)
        await producer.flush()
        if settle_seconds:
            # Reference data first: give the worker time to take the onboarding in.
            await asyncio.sleep(settle_seconds)
        if history_days:
            past = clients * 10
            step = timedelta(days=history_days) / past
            for n in range(1, past + 1):
                at = (start + step * n).replace(microsecond=0)
                for record in bank.due(at):
                    await send(*record)
                await send(*bank.event(at))
            await producer.flush()
        started = time.monotonic()
        interval = 1.0 / rate if rate > 0 else 0.0
        due = started
        while not stop.is_set():
            if duration is not None and time.monotonic() - started >= duration:
                break
            now = datetime.now(UTC)
            for record in bank.due(now):  # RMs calling back after complaints
                await send(*record)
            await send(*bank.event(now))
            due += interval
            delay = due - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            elif sent % 200 == 0:
                await asyncio.sleep(0)
        await producer.flush()
    finally:
        await producer.stop()
    return sent


def run_simulate(args: argparse.Namespace) -> int:
    if args.dump:
        n = dump_history(args.dump, args.events, args.clients, args.seed)
        print(f"wrote {n} lines to {args.dump}")
        return 0
    settings = load_settings()

    async def main() -> int:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError):
                loop.add_signal_handler(sig, stop.set)
        return await produce_live(
            settings, args.clients, args.rate, args.duration, args.seed, stop, history_days=args.history_days
        )

    sent = asyncio.run(main())
    print(f"sent {sent} events")
    return 0

"""A replay file through the rules over several processes, with the alerts in the order one process raises them.

Rules are per client, so a history can be split by client (handlers.replay's
`shard_of`: CRC-32 of the key modulo the shard count). Each worker process
runs `Replay` as one shard: it reads the whole file, applies its own clients'
records and lets every other record move its clock, so its batches, sweeps and
final clock are those of one process. The parent merges the shards' alerts by
their `OrderKey`; the result is the single process's alert sequence, byte for
byte (given one `detected_at` for all).

`replay_file` is the library entry point (the `backtest` and `compare`
commands use it); `ReplayRun` streams the same result for a caller that writes
alerts as they come.
"""

from __future__ import annotations

import gc
import hashlib
import heapq
import multiprocessing
import queue
import threading
import traceback
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from multiprocessing.connection import Connection
from operator import itemgetter
from pathlib import Path
from typing import Any, BinaryIO

from handlers.alerting import alert_json
from handlers.replay import OrderKey, Replay, ReplaySummary, Shard, UntilBeforeEvents
from handlers.ruleset import Ruleset
from handlers.timeutil import to_us
from schemas.alerts import Alert
from streams.gc_tuning import tune_gc

CHUNK = 1000
"""Alerts a worker process sends to the parent at a time."""
MAX_WORKERS = 256


@dataclass
class ReplayOutcome:
    """A whole replay: its alerts in order, the summary, and where the clock ended."""

    alerts: list[bytes]
    """Each alert as JSON (what `clientpulse backtest --out` writes per line, without the newline), in the order
    one process raises them."""
    summary: ReplaySummary
    clock: int
    """The final clock, µs since the epoch: the largest occurred_at, or `until` when that is later."""
    events_clock: int
    """Where the events alone took the clock (before `until`)."""


class ShardSpecError(ValueError):
    """A `K/N` shard text that does not name a shard."""


def parse_shard(text: str) -> Shard:
    """`K/N`: shard K of N, K counted from 0 (as a Kubernetes indexed Job's JOB_COMPLETION_INDEX is)."""
    index_text, slash, count_text = text.partition("/")
    if not slash:
        raise ShardSpecError(f"{text!r} is not K/N (shard K of N, K from 0), e.g. 0/4")
    try:
        index, count = int(index_text), int(count_text)
    except ValueError:
        raise ShardSpecError(f"{text!r}: K and N must be whole numbers, e.g. 0/4") from None
    if not 1 <= count <= MAX_WORKERS:
        raise ShardSpecError(f"{text!r}: N must be from 1 to {MAX_WORKERS}")
    if not 0 <= index < count:
        raise ShardSpecError(f"{text!r}: K counts from 0, so shard K of {count} is 0 to {count - 1}")
    return Shard(index, count)


def checked_lines(source: Iterable[bytes], replay: Replay, until_us: int | None) -> Iterator[bytes]:
    """The file's lines, refusing `until` as soon as the events' clock has passed it (no use reading on)."""
    for line in source:
        if until_us is not None and replay.watermark > until_us:
            raise UntilBeforeEvents(replay.watermark)
        yield line


class FingerprintedLines:
    """A file's lines, hashing its bytes as they are read: shards of one history must have read the same file."""

    def __init__(self, source: BinaryIO) -> None:
        self.source = source
        self.sha256 = hashlib.sha256()
        self.size = 0

    def __iter__(self) -> Iterator[bytes]:
        digest = self.sha256
        for line in self.source:
            digest.update(line)
            self.size += len(line)
            yield line

    def fingerprint(self) -> dict[str, Any]:
        return {"bytes": self.size, "sha256": self.sha256.hexdigest()}


@dataclass
class _ShardResult:
    summary: ReplaySummary
    clock: int
    events_clock: int


@dataclass
class ReplayRun:
    """One replay of a file over `workers` processes; iterate it for the alerts (JSON bytes) in order.

    After the iteration: `summary` (merged: counters summed), `clock` (the
    global one) and `events_clock`. Raises UntilBeforeEvents, as `Replay`
    does, when `until` is before the events.
    """

    events: Path
    rules: Ruleset
    workers: int
    until: datetime | None
    detected_at: datetime
    summary: ReplaySummary = field(default_factory=ReplaySummary)
    clock: int = 0
    events_clock: int = 0

    def __iter__(self) -> Iterator[bytes]:
        for raw, _alert in self.alerts():
            yield raw

    def alerts(self) -> Iterator[tuple[bytes, Alert | None]]:
        """(JSON bytes, the Alert when this process built it) of each alert, in order."""
        if not 1 <= self.workers <= MAX_WORKERS:
            raise ValueError(f"workers must be from 1 to {MAX_WORKERS}")
        if self.workers == 1:
            yield from self._alone()
        else:
            for raw in self._sharded():
                yield raw, None

    def _alone(self) -> Iterator[tuple[bytes, Alert | None]]:
        replay = Replay(self.rules, detected_at=self.detected_at)
        until_us = None if self.until is None else to_us(self.until)
        with open(self.events, "rb") as source:
            for alert in replay.run_lines(checked_lines(source, replay, until_us), self.until):
                yield alert_json(alert), alert
        self.summary, self.clock, self.events_clock = replay.summary, replay.watermark, replay.events_clock

    def _sharded(self) -> Iterator[bytes]:
        context = multiprocessing.get_context("fork" if "fork" in multiprocessing.get_all_start_methods() else None)
        pipes = [context.Pipe(duplex=False) for _ in range(self.workers)]
        processes = [
            context.Process(
                target=_shard_main,
                args=(sender, self.events, self.rules, Shard(k, self.workers), self.until, self.detected_at),
                name=f"clientpulse-backtest-shard-{k}",
                daemon=True,
            )
            for k, (_receiver, sender) in enumerate(pipes)
        ]
        for process in processes:
            process.start()
        for _receiver, sender in pipes:
            sender.close()  # the child holds its end; EOF then means it is gone
        results: list[_ShardResult | None] = [None] * self.workers
        failures: list[BaseException] = []
        streams = [_Stream(receiver, k) for k, (receiver, _sender) in enumerate(pipes)]
        try:
            for _order, raw in heapq.merge(*(s.items() for s in streams), key=itemgetter(0)):
                yield raw
            for stream in streams:
                results[stream.index] = stream.result
        except BaseException as exc:
            failures.append(exc)
            raise
        finally:
            for stream in streams:
                stream.close()
            for process in processes:
                if failures:
                    process.terminate()
                process.join()
        done = [r for r in results if r is not None]
        assert len(done) == self.workers
        summary = ReplaySummary()
        for result in done:
            summary.merge(result.summary)
        self.summary = summary
        self.clock = max(r.clock for r in done)
        self.events_clock = max(r.events_clock for r in done)


class _Stream:
    """One shard's (order, alert bytes) as its process sends them; a thread drains the pipe.

    Draining at once keeps a shard that is ahead from waiting for the parent
    to need its alerts (the merge takes from whichever shard is behind).
    """

    def __init__(self, receiver: Connection, index: int) -> None:
        self.index = index
        self.receiver = receiver
        self.result: _ShardResult | None = None
        self.chunks: queue.SimpleQueue[tuple[str, Any]] = queue.SimpleQueue()
        self.thread = threading.Thread(target=self._drain, name=f"shard-{index}-reader", daemon=True)
        self.thread.start()

    def _drain(self) -> None:
        while True:
            try:
                message = self.receiver.recv()
            except (EOFError, OSError):
                self.chunks.put(("gone", None))
                return
            self.chunks.put(message)
            if message[0] != "alerts":
                return

    def items(self) -> Iterator[tuple[OrderKey, bytes]]:
        while True:
            kind, payload = self.chunks.get()
            if kind == "alerts":
                yield from payload
            elif kind == "done":
                summary, clock, events_clock = payload
                self.result = _ShardResult(ReplaySummary.from_json(summary), clock, events_clock)
                return
            elif kind == "until":
                raise UntilBeforeEvents(payload)
            elif kind == "error":
                raise RuntimeError(f"backtest shard {self.index} failed:\n{payload}")
            else:
                raise RuntimeError(f"backtest shard {self.index} ended without a result (killed, or out of memory?)")

    def close(self) -> None:
        self.receiver.close()


def _shard_main(
    conn: Connection, events: Path, rules: Ruleset, shard: Shard, until: datetime | None, detected_at: datetime
) -> None:
    """A worker process: replay one shard and send its alerts with their order keys, then its summary."""
    tune_gc()
    # What the parent held when it forked stays alive here untouched: the collector need not walk it again
    # and again (each walk also copies the pages it touches).
    gc.freeze()
    replay = Replay(rules, detected_at=detected_at, shard=shard)
    until_us = None if until is None else to_us(until)
    chunk: list[tuple[OrderKey, bytes]] = []
    try:
        with open(events, "rb") as source:
            for order, alert in replay.run_ordered(checked_lines(source, replay, until_us), until):
                chunk.append((order, alert_json(alert)))
                if len(chunk) >= CHUNK:
                    conn.send(("alerts", chunk))
                    chunk = []
        conn.send(("alerts", chunk))
        conn.send(("done", (replay.summary.to_json(), replay.watermark, replay.events_clock)))
    except UntilBeforeEvents as exc:
        conn.send(("until", exc.watermark))
    except BaseException:
        conn.send(("error", traceback.format_exc()))
    finally:
        conn.close()


def replay_file(
    events: Path,
    rules: Ruleset,
    *,
    workers: int = 1,
    until: datetime | None = None,
    detected_at: datetime,
) -> ReplayOutcome:
    """Replay a file (docs/events.md, "Replay file") over `workers` processes; the alerts are held in memory.

    The same alerts in the same order for any `workers` (with this one
    `detected_at`). Raises UntilBeforeEvents when `until` is before the
    events, OSError when the file cannot be read.
    """
    run = ReplayRun(events, rules, workers, until, detected_at)
    alerts = list(run)
    return ReplayOutcome(alerts, run.summary, run.clock, run.events_clock)

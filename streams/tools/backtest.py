"""`clientpulse backtest`: the replay driver of handlers.replay over files, in one process, N, or as shard K of N."""

from __future__ import annotations

import sys
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, BinaryIO

import orjson

from handlers.alerting import alert_json
from handlers.jsonbytes import dumps
from handlers.notify import NotifyReplay
from handlers.replay import Replay, ReplaySummary, Shard, UntilBeforeEvents
from handlers.ruleset import RulesError, Ruleset, load_rules
from handlers.timeutil import iso, to_us
from schemas.alerts import Alert
from streams.gc_tuning import tune_gc
from streams.settings import load_settings
from streams.tools.sharding import FingerprintedLines, ReplayRun, checked_lines

SHARD_FORMAT = "clientpulse-backtest-shard/1"
"""The `kind` of a shard's summary file, which `clientpulse backtest-merge` reads."""


def shard_stem(shard: Shard) -> str:
    """Files of shard K of N are named shard-K-of-N.*: a set of shards is complete at a glance."""
    return f"shard-{shard.index}-of-{shard.count}"


def load_rules_or_say(rules_path: Path | None) -> Ruleset | None:
    try:
        return load_rules(rules_path or load_settings().rules_path)
    except RulesError as exc:
        print(f"clientpulse: {exc}", file=sys.stderr)
        return None


def run_backtest(
    events: Path,
    rules_path: Path | None,
    out: Path | None,
    until: datetime | None,
    summary_path: Path | None = None,
    notifications: Path | None = None,
    *,
    workers: int = 1,
    detected_at: datetime | None = None,
    shard: Shard | None = None,
    out_dir: Path | None = None,
) -> int:
    rules = load_rules_or_say(rules_path)
    if rules is None:
        return 2
    if not events.is_file():
        print(f"clientpulse: cannot read {events}: no such file", file=sys.stderr)
        return 2
    tune_gc()
    detected = detected_at or datetime.now(UTC)
    if shard is not None:
        assert out_dir is not None
        return _run_shard(events, rules, shard, out_dir, until, detected)
    run = ReplayRun(events, rules, workers, until, detected)
    outputs = ReplayOutputs(rules, out, notifications)
    refused: UntilBeforeEvents | None = None
    try:
        for raw, alert in run.alerts():
            outputs.alert(raw, alert)
        outputs.finish(run.clock)
    except UntilBeforeEvents as exc:
        refused = exc
    except OSError as exc:
        print(f"clientpulse: cannot read {events}: {exc.strerror}", file=sys.stderr)
        return 2
    finally:
        outputs.close()
    if refused is not None:
        outputs.discard()
        assert until is not None
        say_until_refused(until, refused)
        return 2
    report(rules, run.summary, run.clock, run.events_clock, outputs.notifier, workers)
    if summary_path:
        write_summary(summary_path, rules, run.summary, run.clock, run.events_clock, detected, workers)
    return 0


class ReplayOutputs:
    """Where a replay's results go: the alerts to a file or stdout, and, if asked, the notifier's pushes and digests.

    The notifier takes one alert at a time, in the order the replay raises
    them: what the notifier's partition log would hold. A refused or broken
    run calls `discard`: a partial result is no result.
    """

    def __init__(self, rules: Ruleset, out: Path | None, notifications: Path | None) -> None:
        self.out, self.notifications = out, notifications
        self.notifier = NotifyReplay(rules) if notifications is not None else None
        self._sink: BinaryIO = open(out, "wb") if out else sys.stdout.buffer  # noqa: SIM115
        self._notified = open(notifications, "wb") if notifications is not None else None  # noqa: SIM115

    def alert(self, raw: bytes, alert: Alert | None = None) -> None:
        """One alert as its JSON bytes (and its model when the caller has it, to spare decoding them again)."""
        self._sink.write(raw + b"\n")
        if self.notifier is not None and self._notified is not None:
            model = alert if alert is not None else Alert.model_validate_json(raw)
            for output in self.notifier.feed([model]):
                self._notified.write(dumps(output.record(full=False)) + b"\n")

    def finish(self, clock: int) -> None:
        """The digests due by the replay's final clock."""
        if self.notifier is not None and self._notified is not None:
            for output in self.notifier.finish(clock):
                self._notified.write(dumps(output.record(full=False)) + b"\n")

    def close(self) -> None:
        if self.out:
            self._sink.close()
        else:
            self._sink.flush()
        if self._notified is not None:
            self._notified.close()

    def discard(self) -> None:
        for partial in (self.out, self.notifications):
            if partial:
                partial.unlink(missing_ok=True)


def say_until_refused(until: datetime, refused: UntilBeforeEvents) -> None:
    print(
        f"clientpulse: --until {until.isoformat()} is before the events: their clock already reached "
        f"{iso(refused.watermark)} (the clock never goes back); give a later --until or leave it out",
        file=sys.stderr,
    )


def report(
    rules: Ruleset,
    summary: ReplaySummary,
    clock: int,
    events_clock: int,
    notifier: NotifyReplay | None,
    workers: int = 1,
) -> None:
    """The summary on stderr (the alerts may be on stdout)."""
    moved = ""
    if events_clock and clock > events_clock:
        moved = f" (moved by --until from the last event's {iso(events_clock)})"
    over = f"; {workers} processes" if workers > 1 else ""
    print(f"rules {rules.rule_version}; clock ended at {iso(clock) if clock else '-'}{moved}{over}", file=sys.stderr)
    print(summary.render(), file=sys.stderr)
    if notifier is not None:
        c = notifier.counts
        print(
            f"notifications: {sum(c.pushed.values())} pushed "
            f"({', '.join(f'{r} {n}' for r, n in sorted(c.pushed.items())) or '-'}), "
            f"{sum(c.held.values())} held ({', '.join(f'{r} {n}' for r, n in sorted(c.held.items())) or '-'}), "
            f"{sum(c.digests.values())} digests of {c.digested} alerts, "
            f"{sum(len(s.held) for s in notifier.states.values())} still waiting for a digest",
            file=sys.stderr,
        )


def write_summary(
    path: Path,
    rules: Ruleset,
    summary: ReplaySummary,
    clock: int,
    events_clock: int,
    detected_at: datetime,
    workers: int = 1,
    extra: dict[str, Any] | None = None,
) -> None:
    path.write_bytes(
        orjson.dumps(
            {
                **summary.to_json(),
                "rule_version": rules.rule_version,
                "clock": iso(clock) if clock else None,
                "events_clock": iso(events_clock) if events_clock else None,
                "detected_at": detected_at.isoformat(),
                "workers": workers,
                **(extra or {}),
            },
            option=orjson.OPT_INDENT_2,
        )
    )


def _run_shard(
    events: Path, rules: Ruleset, shard: Shard, out_dir: Path, until: datetime | None, detected_at: datetime
) -> int:
    """Shard K of N alone: its alerts, their order keys and its summary into `out_dir`, for backtest-merge."""
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = shard_stem(shard)
    alerts_path, order_path, summary_path = (
        out_dir / f"{stem}.{suffix}" for suffix in ("alerts.jsonl", "order.jsonl", "summary.json")
    )
    summary_path.unlink(missing_ok=True)  # the summary is written last: its presence means the shard is complete
    replay = Replay(rules, detected_at=detected_at, shard=shard)
    until_us = None if until is None else to_us(until)
    try:
        with open(events, "rb") as source, open(alerts_path, "wb") as alerts, open(order_path, "wb") as order:
            lines = FingerprintedLines(source)
            for key, alert in replay.run_ordered(checked_lines(lines, replay, until_us), until):
                alerts.write(alert_json(alert) + b"\n")
                order.write(orjson.dumps(key) + b"\n")
    except UntilBeforeEvents as exc:
        alerts_path.unlink(missing_ok=True)
        order_path.unlink(missing_ok=True)
        assert until is not None
        say_until_refused(until, exc)
        return 2
    except OSError as exc:
        print(f"clientpulse: cannot read {events}: {exc.strerror}", file=sys.stderr)
        return 2
    document = {
        "kind": SHARD_FORMAT,
        "shard": {"index": shard.index, "count": shard.count},
        "rule_version": rules.rule_version,
        "detected_at": detected_at.isoformat(),
        "until": until.isoformat() if until is not None else None,
        "events": {"name": events.name, **lines.fingerprint()},
        "clock_us": replay.watermark,
        "events_clock_us": replay.events_clock,
        "alerts_file": alerts_path.name,
        "order_file": order_path.name,
        "summary": replay.summary.to_json(),
    }
    summary_path.write_bytes(orjson.dumps(document, option=orjson.OPT_INDENT_2))
    clock = replay.watermark
    print(
        f"rules {rules.rule_version}; shard {shard.index} of {shard.count} (K from 0): "
        f"{replay.summary.alerts} alerts; clock ended at {iso(clock) if clock else '-'}; "
        f"written to {out_dir}/{stem}.*",
        file=sys.stderr,
    )
    return 0


def read_jsonl(path: Path) -> Iterator[bytes]:
    with open(path, "rb") as source:
        for line in source:
            if line.strip():
                yield line.rstrip(b"\n")


def pairs(orders: Iterable[bytes], alerts: Iterable[bytes]) -> Iterator[tuple[tuple[Any, ...], bytes]]:
    """(order key, alert JSON) of a shard's two files, line by line."""
    for order, alert in zip(orders, alerts, strict=True):
        yield tuple(orjson.loads(order)), alert

"""`clientpulse backtest`: the replay driver of handlers.replay over files."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import orjson

from handlers.alerting import alert_json
from handlers.jsonbytes import dumps
from handlers.notify import NotifyReplay
from handlers.replay import Replay, UntilBeforeEvents
from handlers.ruleset import RulesError, load_rules
from handlers.timeutil import iso, to_us
from streams.gc_tuning import tune_gc
from streams.settings import load_settings


def run_backtest(
    events: Path,
    rules_path: Path | None,
    out: Path | None,
    until: datetime | None,
    summary_path: Path | None = None,
    notifications: Path | None = None,
) -> int:
    try:
        rules = load_rules(rules_path or load_settings().rules_path)
    except RulesError as exc:
        print(f"clientpulse: {exc}", file=sys.stderr)
        return 2
    try:
        source = open(events, "rb")  # noqa: SIM115
    except OSError as exc:
        print(f"clientpulse: cannot read {events}: {exc.strerror}", file=sys.stderr)
        return 2
    tune_gc()
    replay = Replay(rules)
    until_us = None if until is None else to_us(until)

    def lines() -> Iterator[bytes]:
        """The file's lines, refusing --until as soon as the events' clock has passed it."""
        for line in source:
            if until_us is not None and replay.watermark > until_us:
                raise UntilBeforeEvents(replay.watermark)
            yield line

    notifier = NotifyReplay(rules) if notifications is not None else None
    notified = open(notifications, "wb") if notifications is not None else None  # noqa: SIM115
    sink = open(out, "wb") if out else sys.stdout.buffer  # noqa: SIM115
    refused: UntilBeforeEvents | None = None
    try:
        with source:
            for alert in replay.run_lines(lines(), until):
                sink.write(alert_json(alert) + b"\n")
                if notifier is not None and notified is not None:
                    # One alert at a time, in the order the replay raises them: what the notifier's
                    # partition log would hold.
                    for output in notifier.feed([alert]):
                        notified.write(dumps(output.record(full=False)) + b"\n")
        if notifier is not None and notified is not None:
            for output in notifier.finish(replay.watermark):
                notified.write(dumps(output.record(full=False)) + b"\n")
    except UntilBeforeEvents as exc:
        refused = exc
    finally:
        if out:
            sink.close()
        else:
            sink.flush()
        if notified is not None:
            notified.close()
    if refused is not None:
        for partial in (out, notifications):
            if partial:
                partial.unlink(missing_ok=True)  # a partial result is no result
        assert until is not None
        print(
            f"clientpulse: --until {until.isoformat()} is before the events: their clock already reached "
            f"{iso(refused.watermark)} (the clock never goes back); give a later --until or leave it out",
            file=sys.stderr,
        )
        return 2
    summary = replay.summary
    clock, events_clock = replay.watermark, replay.events_clock
    moved = ""
    if events_clock and clock > events_clock:
        moved = f" (moved by --until from the last event's {iso(events_clock)})"
    print(f"rules {rules.rule_version}; clock ended at {iso(clock) if clock else '-'}{moved}", file=sys.stderr)
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
    if summary_path:
        summary_path.write_bytes(
            orjson.dumps(
                {
                    "events_by_topic": dict(summary.events_by_topic),
                    "alerts_by_type": {f"{t}/{s}": n for (t, s), n in summary.alerts_by_type.items()},
                    "alerts": summary.alerts,
                    "suppressed": {f"{t}/{r}": n for (t, r), n in summary.suppressed.items()},
                    "duplicates": summary.duplicates,
                    "dead_letters": dict(summary.dead_letters),
                    "bad_lines": summary.bad_lines,
                },
                option=orjson.OPT_INDENT_2,
            )
        )
    return 0

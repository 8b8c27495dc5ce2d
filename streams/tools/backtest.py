"""`clientpulse backtest`: the replay driver of handlers.replay over files."""

from __future__ import annotations

import sys
from datetime import datetime
from pathlib import Path

import orjson

from handlers.alerting import alert_json
from handlers.replay import Replay
from handlers.ruleset import RulesError, load_rules
from handlers.timeutil import iso
from streams.gc_tuning import tune_gc
from streams.settings import load_settings


def run_backtest(
    events: Path, rules_path: Path | None, out: Path | None, until: datetime | None, summary_path: Path | None = None
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
    sink = open(out, "wb") if out else sys.stdout.buffer  # noqa: SIM115
    try:
        with source:
            for alert in replay.run_lines(source, until):
                sink.write(alert_json(alert) + b"\n")
    finally:
        if out:
            sink.close()
        else:
            sink.flush()
    summary = replay.summary
    print(
        f"rules {rules.rule_version}; clock ended at watermark {iso(replay.watermark) if replay.watermark else '-'}",
        file=sys.stderr,
    )
    print(summary.render(), file=sys.stderr)
    if summary_path:
        summary_path.write_bytes(
            orjson.dumps(
                {
                    "events_by_topic": dict(summary.events_by_topic),
                    "alerts_by_type": {f"{t}/{s}": n for (t, s), n in summary.alerts_by_type.items()},
                    "alerts": summary.alerts,
                    "suppressed": dict(summary.suppressed),
                    "duplicates": summary.duplicates,
                    "dead_letters": dict(summary.dead_letters),
                    "bad_lines": summary.bad_lines,
                },
                option=orjson.OPT_INDENT_2,
            )
        )
    return 0

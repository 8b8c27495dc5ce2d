"""`clientpulse report` and `clientpulse export-labels`: the rule report and the stored outcomes, from the store.

Both read the alert store (DATABASE_URL) with every alert in view, like ops.
export-labels writes one JSON object per closed alert, oldest first: the input
`clientpulse compare --labels` reads to say which alerts a rules change would
no longer raise, useful or not.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, BinaryIO

import orjson

from handlers.access import Principal
from handlers.lifecycle import is_useful
from handlers.report import build_report
from streams.settings import ENV_NAMES, ConfigError, load_settings
from streams.sink.store import AlertStore

ALL = Principal("clientpulse", "ops")


def _store() -> AlertStore:
    settings = load_settings()
    if not settings.database_url:
        raise ConfigError(f"clientpulse: {ENV_NAMES['database_url']} must be set (the alert store to read)")
    return AlertStore(settings.database_url, min_size=1, max_size=2)


def _hours(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds / 3600:.1f} h"


def _pct(share: float | None) -> str:
    return "-" if share is None else f"{share * 100:.0f}%"


def format_report(report: dict[str, Any]) -> str:
    rows = [("type", "alerts", "per day", "ack within SLA", "median to ack", "useful (of closed)")]
    for t in report["types"]:
        rows.append(
            (
                t["type"],
                str(t["alerts"]),
                f"{t['alerts_per_day']:.2f}",
                _pct(t["acknowledged_within_sla"]),
                _hours(t["median_seconds_to_acknowledge"]),
                f"{_pct(t['useful_share'])} ({t['useful']}/{t['closed']})",
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = [f"rule report {report['since']} .. {report['until']}"]
    for r in rows:
        lines.append(
            "  ".join(
                cell.ljust(w) if i == 0 else cell.rjust(w) for i, (cell, w) in enumerate(zip(r, widths, strict=True))
            )
        )
    if len(rows) == 1:
        lines.append("(no alerts in this period)")
    return "\n".join(lines)


async def _report(since: datetime, until: datetime) -> dict[str, Any]:
    store = _store()
    await store.connect()
    try:
        rows = await store.report_rows(ALL.scope, since, until)
    finally:
        await store.close()
    return build_report(since, until, rows["per_day"], rows["per_type"])


def run_report(args: argparse.Namespace) -> int:
    until = args.until or datetime.now(UTC)
    since = args.since or until - timedelta(days=args.days)
    if since >= until:
        print("clientpulse report: --since must be before --until", file=sys.stderr)
        return 2
    report = asyncio.run(_report(since, until))
    if args.json is not None:
        args.json.write_bytes(orjson.dumps(report, option=orjson.OPT_INDENT_2))
    print(format_report(report))
    return 0


async def _export(out: BinaryIO, since: datetime | None) -> int:
    store = _store()
    await store.connect()
    n = 0
    try:
        async for chunk in store.export_labels(since):
            for label in chunk:
                label["useful"] = is_useful(label["status"], label["outcome"])
                out.write(orjson.dumps(label) + b"\n")
                n += 1
    finally:
        await store.close()
    return n


def run_export_labels(args: argparse.Namespace) -> int:
    if args.out is None:
        n = asyncio.run(_export(sys.stdout.buffer, args.since))
    else:
        path: Path = args.out
        with open(path, "wb") as out:
            n = asyncio.run(_export(out, args.since))
    print(f"exported {n} label(s)", file=sys.stderr)
    return 0

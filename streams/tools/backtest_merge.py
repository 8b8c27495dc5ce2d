"""`clientpulse backtest-merge`: the outputs of `backtest --shard K/N` jobs as one backtest's result.

It reads each shard's summary (shard-K-of-N.summary.json, written last, so
its presence means the shard finished), refuses a set that is incomplete or
was not run on the same history, rules, `--detected-at` and `--until`, and
merges the shards' alerts by their order keys into the sequence one process
raises; the notifications are computed from that sequence.
"""

from __future__ import annotations

import heapq
import sys
from dataclasses import dataclass
from datetime import datetime
from operator import itemgetter
from pathlib import Path
from typing import Any

import orjson

from handlers.replay import ReplaySummary
from streams.tools.backtest import (
    SHARD_FORMAT,
    ReplayOutputs,
    load_rules_or_say,
    pairs,
    read_jsonl,
    report,
    write_summary,
)

AGREED = ("rule_version", "detected_at", "until", "events")
"""What every shard of one backtest must share, and how each is named in a refusal."""
_NAMES = {
    "rule_version": "rules version (--rules)",
    "detected_at": "--detected-at",
    "until": "--until",
    "events": "history file (size and SHA-256)",
}


class MergeRefused(Exception):
    """The shards given are not the complete, consistent set of one backtest."""


@dataclass
class ShardOutput:
    path: Path
    """The shard's summary file."""
    document: dict[str, Any]

    @property
    def index(self) -> int:
        return int(self.document["shard"]["index"])

    @property
    def count(self) -> int:
        return int(self.document["shard"]["count"])

    def file(self, name: str) -> Path:
        return self.path.parent / str(self.document[name])


def find_shards(places: list[Path]) -> list[ShardOutput]:
    """Every shard summary in the folders (or summary files) given."""
    files: list[Path] = []
    for place in places:
        if place.is_dir():
            files += sorted(place.glob("shard-*-of-*.summary.json"))
        elif place.is_file():
            files.append(place)
        else:
            raise MergeRefused(f"{place}: no such folder or file")
    if not files:
        raise MergeRefused(f"no shard summaries (shard-K-of-N.summary.json) in {', '.join(map(str, places))}")
    shards = []
    for path in files:
        try:
            document = orjson.loads(path.read_bytes())
        except (OSError, orjson.JSONDecodeError) as exc:
            raise MergeRefused(f"{path}: not a readable shard summary ({exc})") from None
        if not isinstance(document, dict) or document.get("kind") != SHARD_FORMAT:
            raise MergeRefused(f"{path}: not a shard summary of `clientpulse backtest --shard` ({SHARD_FORMAT})")
        shards.append(ShardOutput(path, document))
    return shards


def check_complete(shards: list[ShardOutput]) -> list[ShardOutput]:
    """The shards 0..N-1 of one backtest, in order, or why not."""
    counts = sorted({s.count for s in shards})
    if len(counts) > 1:
        listing = ", ".join(f"{s.path.name} (N={s.count})" for s in shards)
        raise MergeRefused(f"the shards are of different shard counts {counts}: {listing}; merge one run's shards")
    (count,) = counts
    by_index: dict[int, ShardOutput] = {}
    for shard in shards:
        if shard.index in by_index:
            twice = f"{by_index[shard.index].path}, {shard.path}"
            raise MergeRefused(f"shard {shard.index} of {count} given twice: {twice}")
        by_index[shard.index] = shard
    missing = [k for k in range(count) if k not in by_index]
    if missing:
        raise MergeRefused(
            f"incomplete: shard{'s' if len(missing) > 1 else ''} {', '.join(map(str, missing))} of {count} "
            f"missing (K from 0 to {count - 1}; a shard's summary is written when it finishes)"
        )
    ordered = [by_index[k] for k in range(count)]
    first = ordered[0]
    for name in AGREED:
        for shard in ordered[1:]:
            if shard.document.get(name) != first.document.get(name):
                raise MergeRefused(
                    f"shards {first.index} and {shard.index} were not run alike: different {_NAMES[name]}: "
                    f"{_show(first.document.get(name))} against {_show(shard.document.get(name))}"
                )
    for shard in ordered:
        for name in ("alerts_file", "order_file"):
            if not shard.file(name).is_file():
                raise MergeRefused(f"shard {shard.index}: {shard.file(name)} is missing")
    return ordered


def _show(value: Any) -> str:
    if isinstance(value, dict):
        return f"{value.get('name')} ({value.get('bytes')} bytes, sha256 {str(value.get('sha256'))[:12]}…)"
    return repr(value)


def run_backtest_merge(
    places: list[Path],
    out: Path | None,
    summary_path: Path | None,
    notifications: Path | None,
    rules_path: Path | None,
) -> int:
    try:
        shards = check_complete(find_shards(places))
    except MergeRefused as exc:
        print(f"clientpulse: backtest-merge refused: {exc}", file=sys.stderr)
        return 2
    first = shards[0].document
    rules = load_rules_or_say(rules_path)
    if rules is None:
        return 2
    if rules.rule_version != first["rule_version"]:
        print(
            f"clientpulse: backtest-merge refused: the shards ran rules {first['rule_version']}, --rules gives "
            f"{rules.rule_version}; the summary and notifications need the shards' rules file",
            file=sys.stderr,
        )
        return 2
    streams = [pairs(read_jsonl(s.file("order_file")), read_jsonl(s.file("alerts_file"))) for s in shards]
    clock = max(int(s.document["clock_us"]) for s in shards)
    events_clock = max(int(s.document["events_clock_us"]) for s in shards)
    written = 0
    outputs = ReplayOutputs(rules, out, notifications)
    try:
        for _order, raw in heapq.merge(*streams, key=itemgetter(0)):
            outputs.alert(raw)
            written += 1
        outputs.finish(clock)
    except ValueError:  # zip(strict=True): an alerts file and its order file disagree
        written = -1
    finally:
        outputs.close()
    summary = ReplaySummary()
    for shard in shards:
        summary.merge(ReplaySummary.from_json(shard.document["summary"]))
    if written != summary.alerts:
        outputs.discard()
        held = "alerts files and order files of different lengths" if written < 0 else f"{written} alerts"
        print(
            f"clientpulse: backtest-merge refused: the shards' files hold {held}, their summaries count "
            f"{summary.alerts}; a file was changed or cut short",
            file=sys.stderr,
        )
        return 2
    report(rules, summary, clock, events_clock, outputs.notifier, len(shards))
    if summary_path:
        write_summary(
            summary_path,
            rules,
            summary,
            clock,
            events_clock,
            datetime.fromisoformat(first["detected_at"]),
            len(shards),
            {"events": first["events"], "until": first["until"]},
        )
    return 0

"""Offline replay of a topic dump through the batch processor the workers run (docs/events.md, "Replay file").

The clock of a replay is the watermark: the largest occurred_at seen so far,
and at the end the `until` time if given.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime

import orjson

from handlers.batch import BatchProcessor, Record
from handlers.decode import kind_of_topic
from handlers.ruleset import Ruleset
from handlers.state import ClientState
from handlers.timeutil import to_us
from schemas.alerts import Alert

MAX_REPORTED_PROBLEMS = 100
REPLAY_PARTITION = 0
"""A replay keeps one clock for all its records, as if they came from one partition."""
DEFAULT_BATCH = 1000
_SWEEP = {REPLAY_PARTITION: 0}


@dataclass
class ReplaySummary:
    events_by_topic: Counter[str] = field(default_factory=Counter)
    alerts_by_type: Counter[tuple[str, str]] = field(default_factory=Counter)
    dead_letters: Counter[str] = field(default_factory=Counter)
    suppressed: Counter[tuple[str, str]] = field(default_factory=Counter)
    """(alert type, reason) -> alerts not sent: cooldown, consent, snoozed."""
    duplicates: int = 0
    erased: int = 0
    bad_lines: int = 0
    problems: list[str] = field(default_factory=list)
    """The first problems found, each with its line number."""

    def problem(self, line_no: int, text: str) -> None:
        if len(self.problems) < MAX_REPORTED_PROBLEMS:
            self.problems.append(f"line {line_no}: {text}")

    @property
    def alerts(self) -> int:
        return sum(self.alerts_by_type.values())

    def render(self) -> str:
        out = ["events by topic:"]
        out += [f"  {topic:<32} {n:>10}" for topic, n in sorted(self.events_by_topic.items())]
        out.append("alerts by type and severity:")
        out += [f"  {t:<24} {s:<9} {n:>10}" for (t, s), n in sorted(self.alerts_by_type.items())]
        out.append(f"  {'total':<34} {self.alerts:>10}")
        out.append(f"suppressed:             {sum(self.suppressed.values())}")
        out += [f"  {t:<24} {r:<9} {n:>10}" for (t, r), n in sorted(self.suppressed.items())]
        out.append(f"duplicates ignored:     {self.duplicates}")
        out.append(f"clients erased:         {self.erased}")
        out.append(f"dead letters:           {sum(self.dead_letters.values())}")
        out += [f"  {r:<24} {n:>10}" for r, n in sorted(self.dead_letters.items())]
        out.append(f"unreadable lines:       {self.bad_lines}")
        if self.problems:
            out.append("first problems:")
            out += [f"  {p}" for p in self.problems]
        return "\n".join(out)


class UntilBeforeEvents(Exception):
    """The clock cannot be moved to `until`: the events already took it further (it never goes back)."""

    def __init__(self, watermark: int) -> None:
        super().__init__(watermark)
        self.watermark = watermark


class Replay:
    """Feeds a replay's records through the batch processor the workers use, all on one partition.

    Records go to the processor `sweep_every` at a time, and each batch ends
    with a sweep of the clock rules due by the clock (the watermark); a client's
    own due rules fire before each of its events anyway, so the spacing changes
    only the order in which alerts come out, never which alerts.
    """

    def __init__(self, rules: Ruleset, sweep_every: int = DEFAULT_BATCH, detected_at: datetime | None = None) -> None:
        self.rules = rules
        self.sweep_every = max(1, sweep_every)
        self.detected_at = detected_at or datetime.now(UTC)
        self.states: dict[str, ClientState] = {}
        self.processor = BatchProcessor(rules, clock="event")
        self.summary = ReplaySummary()
        self.events_clock = 0
        """The clock the events alone took the replay to (set by run_lines before the final sweep)."""

    @property
    def watermark(self) -> int:
        """The replay's clock: the largest occurred_at so far (or the `until` it was finished at)."""
        return self.processor.clocks.get(REPLAY_PARTITION, 0)

    def _run(self, records: list[Record], until: int | None = None) -> list[Alert]:
        if until is not None:
            result = self.processor.finish(until, self.states.get, self.detected_at)
        else:
            result = self.processor.process(
                records, self.states.get, wall_now=0, received_at=self.detected_at, ticks=_SWEEP
            )
        summary, counts = self.summary, result.counts
        summary.events_by_topic.update(counts.consumed)
        for (_topic, reason), n in counts.rejected.items():
            summary.dead_letters[reason] += n
        summary.duplicates += sum(counts.duplicates.values())
        summary.alerts_by_type.update(counts.alerts)
        summary.suppressed.update(counts.suppressed)
        summary.erased += counts.erased
        for _key, letter in result.dead_letters:
            summary.problem(letter.offset, f"dead letter ({letter.reason}): {letter.error}")
        for client_id, entry in result.touched.items():
            self.states[client_id] = entry.state
        for client_id in result.erased:
            self.states.pop(client_id, None)
        return result.alerts

    def feed_raw(self, topic: str, key: bytes | None, raw: bytes | None, line_no: int = 0) -> list[Alert]:
        """One record as its own batch (then the clock is swept)."""
        if kind_of_topic(topic) is None:
            self.summary.bad_lines += 1
            self.summary.problem(line_no, f"unknown topic {topic!r}")
            return []
        return self._run([Record(topic, REPLAY_PARTITION, line_no, key, raw)])

    def finish(self, until: datetime | None = None) -> list[Alert]:
        """Sweep at the end: the clock moves to `until` if that is later than the watermark."""
        return self._run([], until=max(self.watermark, to_us(until)) if until is not None else self.watermark)

    def run_lines(self, lines: Iterable[bytes | str], until: datetime | None = None) -> Iterator[Alert]:
        """Replay JSON lines of {"topic", "key", "value"}; bad lines are counted, never fatal."""
        batch: list[Record] = []
        for line_no, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            parsed = parse_line(line)
            if isinstance(parsed, str):
                self.summary.bad_lines += 1
                self.summary.problem(line_no, parsed)
                continue
            topic, key, raw = parsed
            if kind_of_topic(topic) is None:
                self.summary.bad_lines += 1
                self.summary.problem(line_no, f"unknown topic {topic!r}")
                continue
            batch.append(Record(topic, REPLAY_PARTITION, line_no, key, raw))
            if len(batch) >= self.sweep_every:
                yield from self._run(batch)
                batch = []
        if batch:
            yield from self._run(batch)
        self.events_clock = self.watermark
        if until is not None and to_us(until) < self.events_clock:
            raise UntilBeforeEvents(self.events_clock)
        yield from self.finish(until)


def parse_line(line: bytes | str) -> tuple[str, bytes | None, bytes | None] | str:
    """(topic, key, value bytes) of one dump line, or what is wrong with it."""
    try:
        record = orjson.loads(line)
    except orjson.JSONDecodeError as exc:
        return f"not valid JSON: {exc}"
    if not isinstance(record, dict):
        return "a line must be a JSON object"
    topic = record.get("topic")
    if not isinstance(topic, str):
        return 'missing "topic"'
    key = record.get("key")
    if key is not None and not isinstance(key, str):
        return '"key" must be a string or null'
    value = record.get("value")
    if isinstance(value, str):
        raw: bytes | None = value.encode()
    elif value is None:
        raw = None
    else:
        raw = orjson.dumps(value)
    return topic, (key.encode() if key is not None else None), raw

"""Offline replay of a topic dump through the very rule functions the workers run (SPEC §6).

The clock of a replay is the watermark: the largest occurred_at seen so far,
and at the end the `until` time if given.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime

import orjson

from handlers import engine
from handlers.alerting import Outcome
from handlers.decode import Rejection, decode, kind_of_topic
from handlers.due_index import DueIndex
from handlers.ruleset import Ruleset
from handlers.state import ClientState
from handlers.timeutil import to_us
from schemas.alerts import Alert

MAX_REPORTED_PROBLEMS = 100


@dataclass
class ReplaySummary:
    events_by_topic: Counter[str] = field(default_factory=Counter)
    alerts_by_type: Counter[tuple[str, str]] = field(default_factory=Counter)
    dead_letters: Counter[str] = field(default_factory=Counter)
    suppressed: Counter[str] = field(default_factory=Counter)
    duplicates: int = 0
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
        out.append(f"suppressed by cooldown: {sum(self.suppressed.values())}")
        out += [f"  {t:<24} {n:>10}" for t, n in sorted(self.suppressed.items())]
        out.append(f"duplicates ignored:     {self.duplicates}")
        out.append(f"dead letters:           {sum(self.dead_letters.values())}")
        out += [f"  {r:<24} {n:>10}" for r, n in sorted(self.dead_letters.items())]
        out.append(f"unreadable lines:       {self.bad_lines}")
        if self.problems:
            out.append("first problems:")
            out += [f"  {p}" for p in self.problems]
        return "\n".join(out)


class Replay:
    """Feeds events in order; `sweep_every` spaces the clock sweeps (results do not depend on it)."""

    def __init__(self, rules: Ruleset, sweep_every: int = 1, detected_at: datetime | None = None) -> None:
        self.rules = rules
        self.sweep_every = max(1, sweep_every)
        self.detected_at = detected_at or datetime.now(UTC)
        self.states: dict[str, ClientState] = {}
        self.index = DueIndex()
        self.watermark = 0
        self.summary = ReplaySummary()
        self._since_sweep = 0

    def _collect(self, outcome: Outcome) -> list[Alert]:
        for alert in outcome.alerts:
            self.summary.alerts_by_type[(alert.type, alert.severity)] += 1
        for alert_type in outcome.suppressed:
            self.summary.suppressed[alert_type] += 1
        return outcome.alerts

    def sweep(self, now: int) -> list[Alert]:
        alerts: list[Alert] = []
        for client_id in self.index.pop_due(now):
            state = self.states[client_id]
            alerts += self._collect(engine.advance(self.rules, state, now, self.detected_at))
            self.index.note(client_id, engine.next_due(self.rules, state))
        return alerts

    def feed_raw(self, topic: str, key: bytes | None, raw: bytes | None, line_no: int = 0) -> list[Alert]:
        kind = kind_of_topic(topic)
        if kind is None:
            self.summary.bad_lines += 1
            self.summary.problem(line_no, f"unknown topic {topic!r}")
            return []
        self.summary.events_by_topic[topic] += 1
        decoded = decode(kind, key, raw, self.rules)
        if isinstance(decoded, Rejection):
            self.summary.dead_letters[decoded.reason] += 1
            self.summary.problem(line_no, f"dead letter ({decoded.reason}): {decoded.error}")
            return []
        occurred = to_us(decoded.occurred_at)
        if occurred > self.watermark:
            self.watermark = occurred
        alerts: list[Alert] = []
        self._since_sweep += 1
        if self._since_sweep >= self.sweep_every:
            self._since_sweep = 0
            alerts += self.sweep(self.watermark)
        client_id = decoded.client_id
        state = self.states.get(client_id)
        if state is None:
            state = self.states[client_id] = ClientState(client_id)
        outcome = engine.apply(self.rules, state, decoded, self.watermark, self.detected_at)
        if outcome.duplicate:
            self.summary.duplicates += 1
        alerts += self._collect(outcome)
        self.index.note(client_id, engine.next_due(self.rules, state))
        return alerts

    def finish(self, until: datetime | None = None) -> list[Alert]:
        now = self.watermark
        if until is not None:
            now = max(now, to_us(until))
        return self.sweep(now)

    def run_lines(self, lines: Iterable[bytes | str], until: datetime | None = None) -> Iterator[Alert]:
        """Replay JSON lines of {"topic", "key", "value"}; bad lines are counted, never fatal."""
        for line_no, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            parsed = parse_line(line)
            if isinstance(parsed, str):
                self.summary.bad_lines += 1
                self.summary.problem(line_no, parsed)
                continue
            yield from self.feed_raw(*parsed, line_no=line_no)
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

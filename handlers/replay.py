"""Offline replay of a topic dump through the batch processor the workers run (docs/events.md, "Replay file").

The clock of a replay is the watermark: the largest occurred_at seen so far,
and at the end the `until` time if given.

A replay can also run as one shard of N (docs/events.md, "Replay file"): rules
are per client, so a shard applies only the records whose key hashes to it
(`shard_of`), yet it reads every line, so that its clock, its batches and its
sweeps are those of the whole file. Every alert carries an `OrderKey`, its
place in the sequence one process raises; merging the shards' alerts by that
key gives that sequence exactly.
"""

from __future__ import annotations

import heapq
import zlib
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from operator import itemgetter
from typing import Any

import msgspec
import orjson

from handlers.batch import BatchProcessor, BatchResult, Record
from handlers.decode import decoded_time, kind_of_topic
from handlers.due_index import DueIndex
from handlers.fastdecode import stamp_text, stamp_us
from handlers.ruleset import Ruleset
from handlers.state import ClientState
from handlers.timeutil import to_us
from schemas.alerts import Alert
from schemas.topics import EventKind

MAX_REPORTED_PROBLEMS = 100
REPLAY_PARTITION = 0
"""A replay keeps one clock for all its records, as if they came from one partition."""
DEFAULT_BATCH = 1000
_SWEEP = {REPLAY_PARTITION: 0}

OrderKey = tuple[int, int, int, str]
"""Where one process raises an alert: (line, 0, 0, "") for an alert of the record on that line (its client's
clock alerts first, then the event's); (line, 1, due, client) for the sweep after the batch that ended on that
line, where the sweep takes clients by their due time, then client id. Alerts with one key keep their order."""


def shard_of(key: bytes | None, count: int) -> int:
    """The shard of a record: CRC-32 of its key bytes modulo the shard count; keyless records go to shard 0.

    CRC-32 (zlib's) is the same on every machine and Python version, unlike
    `hash()`, so shards run as separate jobs agree on who owns which client.
    """
    return 0 if key is None or count <= 1 else zlib.crc32(key) % count


@dataclass(frozen=True, slots=True)
class Shard:
    """Shard `index` (from 0) of `count`."""

    index: int
    count: int

    def __post_init__(self) -> None:
        if not 0 <= self.index < self.count:
            raise ValueError(f"shard {self.index} of {self.count}: the index must be from 0 to {self.count - 1}")


WHOLE = Shard(0, 1)


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
    located: list[tuple[int, str]] = field(default_factory=list)
    """Problems found, with their line numbers: at least the `MAX_REPORTED_PROBLEMS` of the lowest lines."""

    def problem(self, line_no: int, text: str) -> None:
        located = self.located
        located.append((line_no, text))
        if len(located) >= 4 * MAX_REPORTED_PROBLEMS:
            located.sort()
            del located[MAX_REPORTED_PROBLEMS:]

    @property
    def problems(self) -> list[str]:
        """The first problems of the file, by line number."""
        return [f"line {n}: {text}" for n, text in sorted(self.located)[:MAX_REPORTED_PROBLEMS]]

    @property
    def alerts(self) -> int:
        return sum(self.alerts_by_type.values())

    def merge(self, other: ReplaySummary) -> None:
        """Add another shard's counts (shards count disjoint records and lines)."""
        self.events_by_topic.update(other.events_by_topic)
        self.alerts_by_type.update(other.alerts_by_type)
        self.dead_letters.update(other.dead_letters)
        self.suppressed.update(other.suppressed)
        self.duplicates += other.duplicates
        self.erased += other.erased
        self.bad_lines += other.bad_lines
        for line_no, text in other.located:
            self.problem(line_no, text)

    def to_json(self) -> dict[str, Any]:
        """The summary as `--summary` writes it (pairs as "type/severity", "type/reason")."""
        return {
            "events_by_topic": dict(self.events_by_topic),
            "alerts_by_type": {f"{t}/{s}": n for (t, s), n in self.alerts_by_type.items()},
            "alerts": self.alerts,
            "suppressed": {f"{t}/{r}": n for (t, r), n in self.suppressed.items()},
            "duplicates": self.duplicates,
            "erased": self.erased,
            "dead_letters": dict(self.dead_letters),
            "bad_lines": self.bad_lines,
            "problems": [[n, text] for n, text in sorted(self.located)[:MAX_REPORTED_PROBLEMS]],
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ReplaySummary:
        """Read back what `to_json` wrote (a shard's summary, to merge)."""

        def pairs(counts: Mapping[str, int]) -> Counter[tuple[str, str]]:
            return Counter({tuple(k.split("/", 1)): int(n) for k, n in counts.items()})  # type: ignore[misc]

        return cls(
            events_by_topic=Counter({str(k): int(n) for k, n in data["events_by_topic"].items()}),
            alerts_by_type=pairs(data["alerts_by_type"]),
            dead_letters=Counter({str(k): int(n) for k, n in data["dead_letters"].items()}),
            suppressed=pairs(data["suppressed"]),
            duplicates=int(data["duplicates"]),
            erased=int(data["erased"]),
            bad_lines=int(data["bad_lines"]),
            located=[(int(n), str(text)) for n, text in data["problems"]],
        )

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
        problems = self.problems
        if problems:
            out.append("first problems:")
            out += [f"  {p}" for p in problems]
        return "\n".join(out)


class UntilBeforeEvents(Exception):
    """The clock cannot be moved to `until`: the events already took it further (it never goes back)."""

    def __init__(self, watermark: int) -> None:
        super().__init__(watermark)
        self.watermark = watermark


class _SweepIndex(DueIndex):
    """The due index, remembering at what due time each client of the last sweep came up (for its OrderKey)."""

    __slots__ = ("popped",)

    def __init__(self) -> None:
        super().__init__()
        self.popped: dict[str, int] = {}

    def pop_due(self, now: int) -> list[str]:
        popped = self.popped
        popped.clear()
        due_of = self._due
        out: list[str] = []
        while (top := self._settled_top()) is not None and top[0] <= now:
            heapq.heappop(self._heap)
            due, client_id = top
            del due_of[client_id]
            popped[client_id] = due
            out.append(client_id)
        return out


@dataclass(slots=True)
class _Foreign:
    """A record of another shard: it only moves the clock, if it would decode."""

    kind: EventKind
    key: bytes | None
    value: bytes | None
    """The message bytes (None for a tombstone)."""
    at: int | None = None
    """Its occurred_at (µs) as the text reads, if it decodes; None where the text alone does not tell."""


class Replay:
    """Feeds a replay's records through the batch processor the workers use, all on one partition.

    Records go to the processor `sweep_every` at a time, and each batch ends
    with a sweep of the clock rules due by the clock (the watermark); a client's
    own due rules fire before each of its events anyway, so the spacing changes
    only the order in which alerts come out, never which alerts.

    With a `shard`, only the records of that shard are applied; the others
    still count towards the batches and move the clock as they would in one
    process. Lines that are no record (unreadable, unknown topic) are counted
    by shard 0.
    """

    def __init__(
        self,
        rules: Ruleset,
        sweep_every: int = DEFAULT_BATCH,
        detected_at: datetime | None = None,
        shard: Shard = WHOLE,
    ) -> None:
        self.rules = rules
        self.sweep_every = max(1, sweep_every)
        self.detected_at = detected_at or datetime.now(UTC)
        self.shard = shard
        self.states: dict[str, ClientState] = {}
        self.processor = BatchProcessor(rules, clock="event")
        self.index = _SweepIndex()
        self.processor.indexes[REPLAY_PARTITION] = self.index
        self.summary = ReplaySummary()
        self._held: list[_Foreign] = []
        """Other shards' records read since the clock was last brought up to date (`_catch_up`)."""
        self._last_stamp: tuple[str | None, int | None] = (None, None)
        self.events_clock = 0
        """The clock the events alone took the replay to (set by run_lines before the final sweep)."""

    @property
    def watermark(self) -> int:
        """The replay's clock: the largest occurred_at so far (or the `until` it was finished at)."""
        return self.processor.clocks.get(REPLAY_PARTITION, 0)

    def _run(
        self,
        records: Iterable[Record],
        until: int | None = None,
        into: BatchResult | None = None,
        catch_up: Callable[[int], None] | None = None,
    ) -> list[Alert]:
        if until is not None:
            result = self.processor.finish(until, self.states.get, self.detected_at)
        else:
            result = self.processor.process(
                records,
                self.states.get,
                wall_now=0,
                received_at=self.detected_at,
                ticks=_SWEEP,
                into=into,
                catch_up=catch_up,
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
        """One record as its own batch (then the clock is swept); for a whole replay, not a shard."""
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
        for _order, alert in self.run_ordered(lines, until):
            yield alert

    def run_ordered(
        self, lines: Iterable[bytes | str], until: datetime | None = None
    ) -> Iterator[tuple[OrderKey, Alert]]:
        """`run_lines` with each alert's place in the sequence one process over the whole file raises."""
        shard, count = self.shard.index, self.shard.count
        counts_lines = shard == 0
        summary = self.summary
        batch: list[Record | _Foreign] = []
        line_no = 0
        for line_no, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            parsed = parse_envelope(line)
            if isinstance(parsed, str):
                if counts_lines:
                    summary.bad_lines += 1
                    summary.problem(line_no, parsed)
                continue
            topic, key, value = parsed
            kind = kind_of_topic(topic)
            if kind is None:
                if counts_lines:
                    summary.bad_lines += 1
                    summary.problem(line_no, f"unknown topic {topic!r}")
                continue
            if count == 1 or shard_of(key, count) == shard:
                batch.append(Record(topic, REPLAY_PARTITION, line_no, key, value))
            else:
                batch.append(self._foreign(kind, key, value))
            if len(batch) >= self.sweep_every:
                yield from self._run_batch(batch, line_no)
                batch = []
        if batch:
            yield from self._run_batch(batch, line_no)
        self.events_clock = self.watermark
        if until is not None and to_us(until) < self.events_clock:
            raise UntilBeforeEvents(self.events_clock)
        end = line_no + 1
        index = self.index
        for alert in self.finish(until):
            yield (end, 1, index.popped[alert.client_id], alert.client_id), alert

    def _run_batch(self, batch: list[Record | _Foreign], last_line: int) -> Iterator[tuple[OrderKey, Alert]]:
        """One batch: its records' alerts by line, then the sweep's by due time and client."""
        result = BatchResult()
        ends: list[tuple[int, int]] = []
        """(line, alerts raised so far) after each record applied."""

        def records() -> Iterator[Record]:
            alerts = result.alerts
            held = self._held
            for item in batch:
                if type(item) is Record:
                    yield item
                    ends.append((item.offset, len(alerts)))
                else:
                    assert isinstance(item, _Foreign)
                    if item.value is not None:  # a tombstone or an empty message is never an event
                        held.append(item)
            self._catch_up(0)  # the sweep's clock

        alerts = self._run(records(), into=result, catch_up=self._catch_up if self.shard.count > 1 else None)
        start = 0
        for line, end in ends:
            for i in range(start, end):
                yield (line, 0, 0, ""), alerts[i]
            start = end
        popped = self.index.popped
        for i in range(start, len(alerts)):
            alert = alerts[i]
            yield (last_line, 1, popped[alert.client_id], alert.client_id), alert

    def _foreign(self, kind: EventKind, key: bytes | None, value: bytes | None) -> _Foreign:
        """Another shard's record, with the time its occurred_at text reads (one text is often read many times)."""
        text = None if value is None else stamp_text(value)
        last_text, at = self._last_stamp
        if text != last_text:
            at = None if text is None else stamp_us(text)
            self._last_stamp = (text, at)
        return _Foreign(kind, key, value, at)

    def _catch_up(self, occurred: int) -> None:
        """Move the clock to the latest of the held records, other shards' ones, that decodes, if beyond `occurred`.

        The processor asks this before each event of this shard, with the
        event's time, and the batch before its sweep: the clock is then where
        one process would have it. Only a held record later than both the
        clock and `occurred` can matter, and of those only the latest that
        decodes: they are decoded, latest first, until one does, as the shard
        that owns them decodes them.
        """
        held = self._held
        if not held:
            return
        clocks = self.processor.clocks
        best = floor = max(occurred, clocks.get(REPLAY_PARTITION, 0))
        later: list[tuple[int, _Foreign]] = []
        rules = self.rules
        for item in held:
            at = item.at
            if at is None:  # the text does not tell: decode it
                decoded = decoded_time(item.kind, item.key, item.value, rules)
                if decoded is not None and decoded > best:
                    best = decoded
            elif at > floor:
                later.append((at, item))
        held.clear()
        later.sort(key=itemgetter(0), reverse=True)
        for at, item in later:
            if at <= best:
                break
            decoded = decoded_time(item.kind, item.key, item.value, rules)
            if decoded is not None:
                best = max(best, decoded)
                break
        if best > floor:
            clocks[REPLAY_PARTITION] = best


class _Envelope(msgspec.Struct):
    """A dump line as the fast path reads it: the value's JSON is kept as it is written, not parsed."""

    topic: str
    key: str | None = None
    value: msgspec.Raw = msgspec.Raw(b"null")


_ENVELOPE = msgspec.json.Decoder(_Envelope)
_STRING = msgspec.json.Decoder(str)


def parse_envelope(line: bytes | str) -> tuple[str, bytes | None, bytes | None] | str:
    """(topic, key bytes, value bytes) of one dump line, or what is wrong with it.

    The value is the message: a JSON string gives its text, `null` (or no
    value) a tombstone, anything else the bytes it is written with on the line,
    as a producer would have sent them. Lines the fast reader refuses are read
    again by `_parse_slowly`, which says what is wrong in the words of a JSON
    parser.
    """
    try:
        envelope = _ENVELOPE.decode(line)
    except (msgspec.DecodeError, msgspec.ValidationError, RecursionError):
        return _parse_slowly(line)
    key = envelope.key
    raw = bytes(envelope.value)
    first = raw[:1]
    if first == b'"':
        value: bytes | None = _STRING.decode(raw).encode()
    elif first == b"n":
        value = None
    else:
        value = raw
    return envelope.topic, (key.encode() if key is not None else None), value


def _parse_slowly(line: bytes | str) -> tuple[str, bytes | None, bytes | None] | str:
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
        message: bytes | None = value.encode()
    else:
        message = None if value is None else orjson.dumps(value)
    return topic, (key.encode() if key is not None else None), message

"""What reaches each RM: critical alerts and a daily budget pushed at once, the rest in a digest.

The decisions of docs/rules.md ("Notifications") as a pure function of one
RM's alert sequence, the clock and the rules file. The notifier stage
(streams/notifier) and `clientpulse backtest --notifications` both run
`NotifyProcessor`, so they agree by construction.

Per RM and local day (the bank's time zone, the day of the alert's
occurred_at): a critical alert is pushed at once; any other alert is pushed
while the RM's pushes of that day are below the budget and the alert's local
time is outside the quiet hours, and held otherwise. Held alerts go into the
RM's next digest, due at the first `digest_at` strictly after the first held
alert (and after the previous digest). Alerts without an RM are pushed to the
`unassigned` key, never held. An alert id already decided is a re-delivery
and changes nothing; so is an alert more than `remember_days` older than the
RM's latest (its id would have been forgotten: it cannot be told from one).

The clock: the caller's ticks (`{"now": ...}` records on the notifier's input,
in the same partition log as the alerts, so a replay after a crash sees them
in the same order) and, with the event clock, each RM's own latest alert time.
Before an RM's alert is decided its digest fires if due; a tick fires every
due digest of its partition.
"""

from __future__ import annotations

import hashlib
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any, Literal

import msgspec
import orjson
from msgspec import field as struct_field
from pydantic import ValidationError

from handlers.due_index import DueIndex
from handlers.jsonbytes import dumps
from handlers.ruleset import Ruleset
from handlers.timeutil import US_PER_DAY, iso, to_us
from schemas.alerts import Alert
from schemas.errors import error_texts

UNASSIGNED = "unassigned"
"""The key (and state) of alerts without an RM: pushed to the managers' triage, never held."""

Clock = Literal["wall", "event"]


class Held(msgspec.Struct, array_like=True, gc=False):
    """An alert waiting for the RM's digest: what the digest orders by and what a message shows."""

    alert_id: str
    type: str
    severity: str
    priority: int
    at: int
    client_id: str
    title: str
    titles: dict[str, str] | None = None

    def sort_key(self) -> tuple[int, int, str]:
        return (-self.priority, self.at, self.alert_id)

    def as_json(self) -> dict[str, Any]:
        return {
            "alert_id": self.alert_id,
            "type": self.type,
            "severity": self.severity,
            "priority": self.priority,
            "occurred_at": iso(self.at),
            "client_id": self.client_id,
            "title": self.title,
            "titles": self.titles,
        }


class RmState(msgspec.Struct, array_like=True, gc=False):
    """Everything the notifier remembers about one RM (times in epoch µs). New fields go at the end."""

    key: str
    clock: int = 0
    """The latest occurred_at among this RM's alerts: the event clock, and the base of what is forgotten."""
    pushes: dict[int, int] = struct_field(default_factory=dict)
    """Local day (proleptic ordinal) -> pushes that day."""
    held: list[Held] = struct_field(default_factory=list)
    due: int | None = None
    """When the digest of `held` is due (None while nothing is held)."""
    last_due: int | None = None
    """The due time of the last digest sent: the next one is due strictly after it."""
    seen: dict[str, int] = struct_field(default_factory=dict)
    """Alert id -> the RM's clock when it was decided, in decision order (re-deliveries are ignored)."""

    def to_bytes(self) -> bytes:
        return _ENCODER.encode(self)

    @classmethod
    def from_bytes(cls, raw: bytes) -> RmState:
        return _DECODER.decode(raw)


_ENCODER = msgspec.msgpack.Encoder()
_DECODER = msgspec.msgpack.Decoder(RmState)


# ---------------------------------------------------------------------- decisions
@dataclass(frozen=True, slots=True)
class Push:
    rm_id: str | None
    alert: Alert
    at: int
    reason: Literal["critical", "within_budget", "unassigned"]
    priority: int

    def record(self, *, full: bool = True) -> dict[str, Any]:
        """As published on rm.notifications.v1 (`full`), or the replay's line (docs/events.md)."""
        out: dict[str, Any] = {
            "kind": "push",
            "rm_id": self.rm_id,
            "alert_id": self.alert.alert_id,
            "priority": self.priority,
            "at": iso(self.at),
        }
        if full:
            out["reason"] = self.reason
            out["alert"] = self.alert.model_dump(mode="json")
        return out


@dataclass(frozen=True, slots=True)
class Digest:
    rm_id: str
    due_at: int
    items: list[Held]
    """Highest priority first, then occurred_at, then alert_id."""
    trigger: Literal["tick", "alert"]

    @property
    def digest_id(self) -> str:
        text = "\x1f".join([self.rm_id, str(self.due_at), *(h.alert_id for h in self.items)])
        return hashlib.sha256(text.encode()).hexdigest()[:32]

    @property
    def counts(self) -> dict[str, int]:
        return dict(sorted(Counter(h.type for h in self.items).items()))

    def record(self, *, full: bool = True) -> dict[str, Any]:
        out: dict[str, Any] = {
            "kind": "digest",
            "rm_id": self.rm_id,
            "due_at": iso(self.due_at),
            "alert_ids": [h.alert_id for h in self.items],
            "counts": self.counts,
        }
        if full:
            out["digest_id"] = self.digest_id
            out["alerts"] = [h.as_json() for h in self.items]
        return out


Output = Push | Digest


@dataclass(slots=True)
class Decision:
    """What deciding one alert did: a digest that came due first, the push, or the reason it is held."""

    digest: Digest | None = None
    push: Push | None = None
    held: Literal["quiet_hours", "budget"] | None = None
    duplicate: bool = False
    stale: bool = False
    """Older than `remember_days` before the RM's latest alert: it cannot be told from a re-delivery."""


class Notifier:
    """The decisions over one RM's state, in place; reads no clock, does no I/O."""

    def __init__(self, rules: Ruleset, clock: Clock) -> None:
        notify = rules.notify
        self.tz = rules.timezone
        self.event_clock = clock == "event"
        self.budget = notify.daily_push_budget
        quiet = notify.quiet_hours
        self.quiet = None if quiet is None else (_minutes(quiet.start), _minutes(quiet.end))
        self.digest_at = notify.digest_at
        self.remember = notify.remember_days * US_PER_DAY
        self.remember_days = notify.remember_days
        self.priorities = rules.priorities

    def priority(self, alert: Alert) -> int:
        """The alert's priority; an older producer's alert without one gets the rules file's points."""
        if alert.priority is not None:
            return alert.priority
        return self.priorities.get((alert.type, alert.severity, alert.tier), 0)

    # ------------------------------------------------------------------ local time
    def local(self, us: int) -> datetime:
        return datetime.fromtimestamp(us / 1_000_000, UTC).astimezone(self.tz)

    def local_day(self, us: int) -> int:
        return self.local(us).date().toordinal()

    def in_quiet_hours(self, us: int) -> bool:
        if self.quiet is None:
            return False
        local = self.local(us)
        minute = local.hour * 60 + local.minute
        start, end = self.quiet
        if start < end:
            return start <= minute < end
        return minute >= start or minute < end

    def next_digest(self, after: int) -> int:
        """The first `digest_at` (local) strictly after `after`."""
        local = self.local(after)
        day: date = local.date()
        while True:
            candidate = to_us(datetime.combine(day, self.digest_at, tzinfo=self.tz))
            if candidate > after:
                return candidate
            day += timedelta(days=1)

    # ------------------------------------------------------------------ decisions
    def decide(self, state: RmState, alert: Alert, tick_clock: int) -> Decision:
        """Fire the RM's digest if due by the clock, then push or hold `alert` (or ignore a re-delivery)."""
        decision = Decision()
        alert_id = alert.alert_id
        if alert_id in state.seen:
            decision.duplicate = True
            return decision
        at = to_us(alert.occurred_at)
        if at < state.clock - self.remember:
            # Its id would have been forgotten by now: a re-read of old input must not notify the RM again.
            decision.stale = True
            return decision
        if at > state.clock:
            state.clock = at
        now = max(tick_clock, state.clock) if self.event_clock else tick_clock
        if state.due is not None and state.due <= now:
            decision.digest = self.fire(state, "alert")
        rm_id = alert.rm_id if alert.rm_id != UNASSIGNED else None
        priority = self.priority(alert)
        if rm_id is None:
            decision.push = Push(None, alert, at, "unassigned", priority)
        else:
            day = self.local_day(at)
            pushed = state.pushes.get(day)
            if pushed is None:
                # A day already forgotten (only at a summer-time edge of the window) counts as spent.
                pushed = self.budget if day < self.local_day(state.clock) - self.remember_days else 0
            if alert.severity == "critical":
                decision.push = Push(rm_id, alert, at, "critical", priority)
            elif self.in_quiet_hours(at):
                decision.held = "quiet_hours"
            elif pushed >= self.budget:
                decision.held = "budget"
            else:
                decision.push = Push(rm_id, alert, at, "within_budget", priority)
            if decision.push is not None:
                state.pushes[day] = pushed + 1
            else:
                self._hold(state, alert, at, priority)
        state.seen[alert_id] = state.clock
        self._forget(state)
        return decision

    def tick(self, state: RmState, now: int) -> Digest | None:
        """The RM's digest if the clock `now` has reached its due time."""
        if state.due is not None and state.due <= now:
            return self.fire(state, "tick")
        return None

    def fire(self, state: RmState, trigger: Literal["tick", "alert"]) -> Digest:
        assert state.due is not None
        digest = Digest(state.key, state.due, sorted(state.held, key=Held.sort_key), trigger)
        state.last_due = state.due
        state.due = None
        state.held = []
        return digest

    def _hold(self, state: RmState, alert: Alert, at: int, priority: int) -> None:
        if not state.held:
            base = at if state.last_due is None or at > state.last_due else state.last_due
            state.due = self.next_digest(base)
        a = alert
        titles = {str(k): v for k, v in a.titles.items()} if a.titles is not None else None
        state.held.append(Held(a.alert_id, a.type, a.severity, priority, at, a.client_id, a.title, titles))

    def _forget(self, state: RmState) -> None:
        """Decided ids older than `remember_days` of the RM's clock, and the push counts of days before them."""
        horizon = state.clock - self.remember
        seen = state.seen
        if seen and next(iter(seen.values())) < horizon:
            stale = []
            for alert_id, decided in seen.items():
                if decided >= horizon:
                    break
                stale.append(alert_id)
            for alert_id in stale:
                del seen[alert_id]
        oldest_day = self.local_day(state.clock) - self.remember_days
        for day in [d for d in state.pushes if d < oldest_day]:
            del state.pushes[day]


def _minutes(value: Any) -> int:
    return int(value.hour) * 60 + int(value.minute)


# ---------------------------------------------------------------------- input records
@dataclass(frozen=True, slots=True)
class Tick:
    """A clock tick on a partition: `now` (µs) moves its clock, None only sweeps."""

    now: int | None


@dataclass(frozen=True, slots=True)
class Rejected:
    reason: str
    error: str


def decode_alert(raw: bytes | None) -> Alert | Rejected:
    """An alert as published on rm.alerts.v1, or why it cannot be notified."""
    if not raw:
        return Rejected("empty", "message has no value")
    try:
        return Alert.model_validate_json(raw)
    except ValidationError as exc:
        if any(e["type"] == "json_invalid" for e in exc.errors(include_url=False, include_input=False)):
            return Rejected("invalid_json", "not valid JSON")
        return Rejected("schema", "; ".join(error_texts(exc, limit=3)))


def decode_tick(raw: bytes | None) -> Tick | Rejected:
    """A tick: `{}` or `{"now": RFC 3339 with an offset}`."""
    try:
        data = orjson.loads(raw or b"{}")
        if not isinstance(data, dict):
            raise ValueError("not an object")
        if "now" not in data:
            return Tick(None)
        now = datetime.fromisoformat(data["now"])
        if now.tzinfo is None:
            raise ValueError("no offset")
        return Tick(to_us(now))
    except (orjson.JSONDecodeError, ValueError, TypeError):
        return Rejected("bad_tick", 'a tick must be {} or {"now": "<RFC 3339 time with an offset>"}')


def rm_key(alert_rm_id: str | None) -> str:
    """The key an alert is re-keyed by: its RM, or `unassigned`."""
    return alert_rm_id if alert_rm_id else UNASSIGNED


# ---------------------------------------------------------------------- batches
@dataclass(slots=True)
class Input:
    """One record of the notifier's input partition: an alert keyed by RM, or a tick (no key)."""

    partition: int
    key: str | None
    item: Alert | Tick | Rejected


@dataclass(slots=True)
class TouchedRm:
    state: RmState
    partition: int


@dataclass(slots=True)
class NotifyCounts:
    pushed: Counter[str] = field(default_factory=Counter)
    held: Counter[str] = field(default_factory=Counter)
    digests: Counter[str] = field(default_factory=Counter)
    digested: int = 0
    duplicates: int = 0
    stale: int = 0
    rejected: Counter[str] = field(default_factory=Counter)
    alerts: int = 0
    ticks: int = 0


@dataclass(slots=True)
class NotifyResult:
    outputs: list[tuple[int, Output]] = field(default_factory=list)
    """(index of the input record that caused it, the push or digest), in decision order."""
    touched: dict[str, TouchedRm] = field(default_factory=dict)
    rejected: list[tuple[int, Rejected]] = field(default_factory=list)
    clocks_moved: set[int] = field(default_factory=set)
    counts: NotifyCounts = field(default_factory=NotifyCounts)


StateLoader = Any
"""Callable[[str], RmState | None]: an RM's stored state, or None."""


class NotifyProcessor:
    """Applies batches of the notifier's input; holds each partition's digest index, tick clock and held count."""

    def __init__(self, rules: Ruleset, *, clock: Clock) -> None:
        self.notifier = Notifier(rules, clock)
        self.indexes: defaultdict[int, DueIndex] = defaultdict(DueIndex)
        self.clocks: dict[int, int] = {}
        """The latest tick time of each partition."""
        self.held: defaultdict[int, int] = defaultdict(int)
        """Alerts waiting for a digest, per partition."""

    def process(self, inputs: Iterable[Input], load: StateLoader) -> NotifyResult:
        result = NotifyResult()
        counts = result.counts
        touched = result.touched
        notifier = self.notifier
        for index, record in enumerate(inputs):
            item, partition = record.item, record.partition
            if isinstance(item, Rejected):
                counts.rejected[item.reason] += 1
                result.rejected.append((index, item))
            elif isinstance(item, Tick):
                counts.ticks += 1
                now = self.clocks.get(partition, 0)
                if item.now is not None and item.now > now:
                    self.clocks[partition] = now = item.now
                    result.clocks_moved.add(partition)
                for key in self.indexes[partition].pop_due(now):
                    entry = touched.get(key) or self._touch(result, key, partition, load)
                    digest = notifier.tick(entry.state, now)
                    if digest is not None:
                        self._digested(result, index, digest)
            else:
                counts.alerts += 1
                key = record.key or rm_key(item.rm_id)
                entry = touched.get(key) or self._touch(result, key, partition, load)
                decision = notifier.decide(entry.state, item, self.clocks.get(partition, 0))
                if decision.duplicate or decision.stale:
                    if decision.duplicate:
                        counts.duplicates += 1
                    else:
                        counts.stale += 1
                    continue
                if decision.digest is not None:
                    self._digested(result, index, decision.digest)
                if decision.push is not None:
                    counts.pushed[decision.push.reason] += 1
                    result.outputs.append((index, decision.push))
                else:
                    counts.held[decision.held or "budget"] += 1
        for key, entry in touched.items():
            self.indexes[entry.partition].note(key, entry.state.due)
        return result

    def _digested(self, result: NotifyResult, index: int, digest: Digest) -> None:
        result.counts.digests[digest.trigger] += 1
        result.counts.digested += len(digest.items)
        result.outputs.append((index, digest))

    def _touch(self, result: NotifyResult, key: str, partition: int, load: StateLoader) -> TouchedRm:
        state = load(key) or RmState(key)
        self.held[partition] -= len(state.held)
        entry = result.touched[key] = TouchedRm(state, partition)
        return entry

    def settle(self, result: NotifyResult) -> None:
        """Count the batch's RMs' held alerts again (after the caller wrote their states)."""
        for entry in result.touched.values():
            self.held[entry.partition] += len(entry.state.held)

    def held_total(self) -> int:
        return sum(self.held.values())

    def recovered(self, partition: int, states: Iterable[RmState], *, kept: bool) -> None:
        """Index the states recovered for a partition (a partition kept through a rebalance only adds keys)."""
        index = self.indexes[partition]
        for state in states:
            index.note(state.key, state.due)
            if not kept:
                self.held[partition] += len(state.held)

    def keep_partitions(self, assigned: set[int]) -> None:
        for table in (self.indexes, self.held):
            for partition in [p for p in table if p not in assigned]:
                del table[partition]


def encode_output(output: Output) -> tuple[bytes, bytes]:
    """(key, value) of a push or digest as published (key: the RM, or `unassigned`)."""
    key = output.rm_id if output.rm_id is not None else UNASSIGNED
    return key.encode(), dumps(output.record())


# ---------------------------------------------------------------------- replays
class NotifyReplay:
    """The notifier over a replay's alert sequence: one partition, the event clock, a tick at the end."""

    def __init__(self, rules: Ruleset) -> None:
        self.processor = NotifyProcessor(rules, clock="event")
        self.states: dict[str, RmState] = {}
        self.counts = NotifyCounts()

    def feed(self, alerts: Iterable[Alert]) -> list[Output]:
        return self._run([Input(0, rm_key(a.rm_id), a) for a in alerts])

    def finish(self, now: int) -> list[Output]:
        """Move the clock to `now` (the replay's final clock) and send every digest due by then."""
        return self._run([Input(0, None, Tick(now))])

    def _run(self, inputs: list[Input]) -> list[Output]:
        result = self.processor.process(inputs, self.states.get)
        for key, entry in result.touched.items():
            self.states[key] = entry.state
        self.processor.settle(result)
        c, r = self.counts, result.counts
        c.pushed.update(r.pushed)
        c.held.update(r.held)
        c.digests.update(r.digests)
        c.digested += r.digested
        c.duplicates += r.duplicates
        c.stale += r.stale
        c.alerts += r.alerts
        return [output for _, output in result.outputs]

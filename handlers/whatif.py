"""What a rules change would do: two sides' alerts over the same history, side by side.

A side is the alerts one rules file raises over a history (a replay), or the
alerts one topic carried over a period (the live rules and a shadow worker's),
in the order they were raised, with what the notifier made of them. Alerts
are matched by `alert_id`: it is a hash of the client, the type and the
trigger, never of a threshold, so the same trigger is the same alert under
either rules file, and an alert raised under both can still differ in
severity, tier or facts (a "changed" alert).

Everything here is pure: `side()` turns alerts into a side (running the
notifier's own decisions, `NotifyReplay`, over them) and `compare()` turns two
sides and the optional labels (stored outcomes) into a `Comparison` that holds
every figure the text, JSON and HTML reports show. Days are local days in the
bank's time zone, like the notifier's budget days.
"""

from __future__ import annotations

import dataclasses
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, tzinfo
from typing import Any

from handlers.lifecycle import FINAL, is_useful
from handlers.notify import UNASSIGNED, Digest, NotifyCounts, NotifyReplay, Output, Push
from handlers.ruleset import Ruleset
from handlers.timeutil import from_us, to_us
from schemas.alerts import Alert

NO_TIER = "none"
"""The group of alerts without a tier (a client with no transaction yet)."""
DEFAULT_EXAMPLES = 5
"""Examples kept per alert type and kind (only in A, only in B, changed)."""


# ---------------------------------------------------------------------- sides
@dataclass(frozen=True, slots=True)
class Notified:
    """What the notifier made of one side's alerts: its pushes and digests in order, and its tallies."""

    outputs: list[Output]
    counts: NotifyCounts
    waiting: int
    """Alerts held at the end of the period, still waiting for a digest that was not due yet."""


@dataclass(frozen=True, slots=True)
class Side:
    rule_version: str
    alerts: Sequence[Alert]
    """In the order they were raised (the notifier's decisions depend on it)."""
    notified: Notified


def as_alert(alert: Alert | Mapping[str, Any]) -> Alert:
    """An alert as the model, from the model or a decoded JSON object (a topic's record, a backtest line)."""
    return alert if isinstance(alert, Alert) else Alert.model_validate(alert)


def notify(alerts: Iterable[Alert], rules: Ruleset, clock_end: datetime | None = None) -> Notified:
    """The pushes and digests the notifier would send for this alert sequence, as `backtest --notifications`.

    One alert at a time, in order (what the notifier's partition log holds),
    then a tick at `clock_end` (a replay's final clock, `--until` included; by
    default the latest alert's time) fires every digest due by then.
    """
    replay = NotifyReplay(rules)
    outputs: list[Output] = []
    latest = 0
    for alert in alerts:
        latest = max(latest, to_us(alert.occurred_at))
        outputs += replay.feed([alert])
    end = to_us(clock_end) if clock_end is not None else latest
    outputs += replay.finish(max(end, latest))
    waiting = sum(len(state.held) for state in replay.states.values())
    return Notified(outputs, replay.counts, waiting)


def side(
    alerts: Iterable[Alert | Mapping[str, Any]],
    rules: Ruleset,
    *,
    clock_end: datetime | None = None,
    rule_version: str | None = None,
) -> Side:
    """One side ready to compare: its alerts (models or JSON objects), in order, and their notifications.

    `rules` gives the notifier's budget, quiet hours and digest time (each
    side's own file); `rule_version` defaults to the rules file's.
    """
    models = [as_alert(a) for a in alerts]
    return Side(rule_version or rules.rule_version, models, notify(models, rules, clock_end))


# ---------------------------------------------------------------------- labels
@dataclass(frozen=True, slots=True)
class Label:
    """The stored outcome of one closed alert (a line of `clientpulse export-labels`)."""

    alert_id: str
    type: str
    status: str
    outcome: str | None

    @property
    def useful(self) -> bool:
        return is_useful(self.status, self.outcome)

    @property
    def known(self) -> bool:
        """Closed, so known to be useful or known not to be."""
        return self.status in FINAL

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> Label:
        """From an exported line; ValueError names the field that is missing or wrong."""
        values: dict[str, Any] = {}
        for name in ("alert_id", "type", "status"):
            value = record.get(name)
            if not isinstance(value, str) or not value:
                raise ValueError(f'"{name}" must be a non-empty string')
            values[name] = value
        outcome = record.get("outcome")
        if outcome is not None and not isinstance(outcome, str):
            raise ValueError('"outcome" must be a string or null')
        return cls(values["alert_id"], values["type"], values["status"], outcome)


@dataclass(slots=True)
class LabelRow:
    """Per alert type: what the labelled alerts become under B.

    `useful_lost` and `not_useful_dropped` are the labelled alerts A raises
    and B would no longer raise; `outside` the labelled alerts neither side
    raises (outside the history, or from rules neither side runs).
    """

    type: str
    labelled: int = 0
    useful: int = 0
    not_useful: int = 0
    in_a: int = 0
    in_b: int = 0
    useful_lost: int = 0
    not_useful_dropped: int = 0
    useful_kept: int = 0
    not_useful_kept: int = 0
    only_in_b: int = 0
    outside: int = 0

    def add(self, other: LabelRow) -> None:
        for name in LABEL_COUNTS:
            setattr(self, name, getattr(self, name) + getattr(other, name))

    def as_json(self) -> dict[str, Any]:
        return {"type": self.type, **{name: getattr(self, name) for name in LABEL_COUNTS}}


LABEL_COUNTS = tuple(f.name for f in dataclasses.fields(LabelRow) if f.name != "type")


@dataclass(slots=True)
class LabelSummary:
    rows: list[LabelRow]
    total: LabelRow
    open: int = 0
    """Labels of alerts not closed (neither useful nor not useful yet): not counted in the rows."""

    def as_json(self) -> dict[str, Any]:
        return {"by_type": [r.as_json() for r in self.rows], "total": self.total.as_json(), "open": self.open}


def _labels(labels: Iterable[Label], a_ids: Mapping[str, Alert], b_ids: Mapping[str, Alert]) -> LabelSummary:
    latest: dict[str, Label] = {}
    for label in labels:
        latest[label.alert_id] = label  # a later line for the same alert wins
    rows: dict[str, LabelRow] = {}
    open_ = 0
    for label in latest.values():
        if not label.known:
            open_ += 1
            continue
        row = rows.get(label.type) or rows.setdefault(label.type, LabelRow(label.type))
        in_a, in_b, useful = label.alert_id in a_ids, label.alert_id in b_ids, label.useful
        row.labelled += 1
        row.useful += useful
        row.not_useful += not useful
        row.in_a += in_a
        row.in_b += in_b
        if in_a and not in_b:
            if useful:
                row.useful_lost += 1
            else:
                row.not_useful_dropped += 1
        elif in_a and in_b:
            if useful:
                row.useful_kept += 1
            else:
                row.not_useful_kept += 1
        elif in_b:
            row.only_in_b += 1
        else:
            row.outside += 1
    total = LabelRow("total")
    ordered = sorted(rows.values(), key=lambda r: r.type)
    for row in ordered:
        total.add(row)
    return LabelSummary(ordered, total, open_)


# ---------------------------------------------------------------------- figures
@dataclass(slots=True)
class GroupRow:
    """One type, severity, tier or RM: alerts under each side and how they match.

    `both` counts alerts raised under both sides and in this group under
    both; an alert raised under both that changed group (a critical outflow
    under A that is a warning under B) is `moved_out` of one and `moved_in`
    to the other.
    """

    key: str
    a: int = 0
    b: int = 0
    both: int = 0
    only_a: int = 0
    only_b: int = 0

    @property
    def moved_out(self) -> int:
        return self.a - self.both - self.only_a

    @property
    def moved_in(self) -> int:
        return self.b - self.both - self.only_b

    @property
    def change(self) -> float | None:
        """(B - A) / A, None when A has none."""
        return (self.b - self.a) / self.a if self.a else None

    def as_json(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "a": self.a,
            "b": self.b,
            "both": self.both,
            "only_in_a": self.only_a,
            "only_in_b": self.only_b,
            "moved_out": self.moved_out,
            "moved_in": self.moved_in,
            "change": None if self.change is None else round(self.change, 4),
        }


@dataclass(frozen=True, slots=True)
class Load:
    """Per RM and local day: the mean over every RM-day of the period, and the busiest RM-day."""

    mean: float
    active_mean: float
    """The mean over the RM-days that had at least one."""
    max: int
    busiest_rm: str | None
    busiest_day: date | None
    active_rm_days: int
    rm_days: int
    """RMs x days of the period: the mean's denominator, the same for both sides."""
    spread: dict[int, int] = field(default_factory=dict)
    """n -> the RM-days with exactly n (n >= 1), ascending: how the load is spread."""

    def as_json(self) -> dict[str, Any]:
        return {
            "mean": round(self.mean, 4),
            "max": self.max,
            "active_mean": round(self.active_mean, 4),
            "busiest": {
                "rm_id": self.busiest_rm,
                "day": self.busiest_day.isoformat() if self.busiest_day else None,
                "n": self.max,
            },
            "active_rm_days": self.active_rm_days,
            "rm_days": self.rm_days,
            "spread": {str(n): days for n, days in self.spread.items()},
        }


def _load(counts: Mapping[tuple[str, date], int], rm_days: int) -> Load:
    total = sum(counts.values())
    if not counts:
        return Load(0.0, 0.0, 0, None, None, 0, rm_days)
    # The busiest RM-day; ties go to the earlier day, then the RM id, so a report never flickers.
    (rm, day), peak = min(counts.items(), key=lambda kv: (-kv[1], kv[0][1], kv[0][0]))
    spread = dict(sorted(Counter(counts.values()).items()))
    mean = total / rm_days if rm_days else 0.0
    return Load(mean, total / len(counts), peak, rm, day, len(counts), rm_days, spread)


@dataclass(frozen=True, slots=True)
class NotifySummary:
    pushed: int
    pushed_by_reason: dict[str, int]
    """critical, within_budget, unassigned."""
    held: int
    held_by_reason: dict[str, int]
    """quiet_hours, budget."""
    digests: int
    digested: int
    waiting: int
    stale: int
    """Alerts more than `remember_days` older than their RM's latest when they came: never notified."""
    duplicates: int
    """Alerts whose id was already decided (a re-delivery)."""
    per_day: dict[str, list[int]]
    """"pushes" and "digests" per day of the comparison's days (a push's alert time, a digest's due time)."""
    pushes_per_rm_day: Load

    def as_json(self) -> dict[str, Any]:
        return {
            "pushed": self.pushed,
            "pushed_by_reason": self.pushed_by_reason,
            "held": self.held,
            "held_by_reason": self.held_by_reason,
            "digests": self.digests,
            "digested": self.digested,
            "waiting": self.waiting,
            "stale": self.stale,
            "duplicates": self.duplicates,
            "pushes_per_rm_day": self.pushes_per_rm_day.as_json(),
        }


@dataclass(frozen=True, slots=True)
class SideSummary:
    rule_version: str
    alerts: int
    by_type: dict[str, int]
    by_severity: dict[str, int]
    by_tier: dict[str, int]
    per_day: dict[str, list[int]]
    """Alert type -> alerts per day of the comparison's days; "total" too."""
    load: Load
    unassigned: int
    """Alerts without an RM (not in the per RM-day load)."""
    notifications: NotifySummary

    def as_json(self) -> dict[str, Any]:
        return {
            "rule_version": self.rule_version,
            "alerts": self.alerts,
            "by_type": self.by_type,
            "by_severity": self.by_severity,
            "by_tier": self.by_tier,
            "unassigned": self.unassigned,
            "notifications": self.notifications.as_json(),
        }


@dataclass(frozen=True, slots=True)
class Example:
    """One alert as a report shows it, with its stored outcome when the labels have one."""

    alert: Alert
    label: Label | None = None

    def as_json(self) -> dict[str, Any]:
        a = self.alert
        return {
            "alert_id": a.alert_id,
            "type": a.type,
            "severity": a.severity,
            "tier": a.tier,
            "priority": a.priority,
            "client_id": a.client_id,
            "rm_id": a.rm_id,
            "occurred_at": a.occurred_at.isoformat(),
            "title": a.title,
            "titles": a.titles,
            "facts": a.facts,
            "label": None if self.label is None else {"status": self.label.status, "outcome": self.label.outcome},
        }


@dataclass(frozen=True, slots=True)
class Changed:
    """An alert raised under both sides that differs: its version under A and under B."""

    a: Example
    b: Example
    fields: tuple[str, ...]

    def as_json(self) -> dict[str, Any]:
        return {"fields": list(self.fields), "a": self.a.as_json(), "b": self.b.as_json()}


@dataclass(frozen=True, slots=True)
class Comparison:
    a: SideSummary
    b: SideSummary
    days: list[date]
    timezone: str
    both: int
    only_in_a: int
    only_in_b: int
    by_type: list[GroupRow]
    by_severity: list[GroupRow]
    by_tier: list[GroupRow]
    by_rm: list[GroupRow]
    """Every RM (and `unassigned`), the largest change first."""
    changed: int
    changed_by_type: dict[str, int]
    severity_moves: dict[tuple[str, str], int]
    """(severity under A, under B) -> alerts raised under both whose severity differs."""
    only_a_examples: list[Example]
    only_b_examples: list[Example]
    changed_examples: list[Changed]
    labels: LabelSummary | None = None
    rms: int = 0
    extra: dict[str, Any] = field(default_factory=dict)
    """What a caller adds for its report (the history read, the period of the topics)."""

    def as_json(self) -> dict[str, Any]:
        """The machine-readable report (docs/whatif.md lists its keys)."""
        return {
            "a": self.a.as_json(),
            "b": self.b.as_json(),
            "both": self.both,
            "only_in_a": self.only_in_a,
            "only_in_b": self.only_in_b,
            "changed": self.changed,
            "per_rm_day": {"a": self.a.load.as_json(), "b": self.b.load.as_json()},
            "timezone": self.timezone,
            "days": [d.isoformat() for d in self.days],
            "per_day": {"a": self.a.per_day, "b": self.b.per_day},
            "notifications_per_day": {"a": self.a.notifications.per_day, "b": self.b.notifications.per_day},
            "by_type": [r.as_json() for r in self.by_type],
            "by_severity": [r.as_json() for r in self.by_severity],
            "by_tier": [r.as_json() for r in self.by_tier],
            "by_rm": [r.as_json() for r in self.by_rm],
            "changed_by_type": self.changed_by_type,
            "severity_moves": [{"a": a, "b": b, "n": n} for (a, b), n in sorted(self.severity_moves.items())],
            "examples": {
                "only_in_a": [e.as_json() for e in self.only_a_examples],
                "only_in_b": [e.as_json() for e in self.only_b_examples],
                "changed": [c.as_json() for c in self.changed_examples],
            },
            "labels": None if self.labels is None else self.labels.as_json(),
            **self.extra,
        }


# ---------------------------------------------------------------------- the comparison
SEVERITY_ORDER = ("critical", "warning", "info")
TIER_ORDER = ("private", "diamond", "platinum", "gold", "mass", NO_TIER)
COMPARED_FIELDS = ("severity", "tier", "priority", "facts", "title")
"""What may differ between the two versions of one alert (type, client and trigger are its id)."""


def _tier(alert: Alert) -> str:
    return alert.tier or NO_TIER


def _rm(alert: Alert) -> str:
    return alert.rm_id or UNASSIGNED


def _groups(
    key: Callable[[Alert], str],
    a_ids: Mapping[str, Alert],
    b_ids: Mapping[str, Alert],
    order: Sequence[str] = (),
) -> list[GroupRow]:
    rows: dict[str, GroupRow] = {k: GroupRow(k) for k in order}

    def row(k: str) -> GroupRow:
        return rows.get(k) or rows.setdefault(k, GroupRow(k))

    for alert_id, alert in a_ids.items():
        r = row(key(alert))
        r.a += 1
        other = b_ids.get(alert_id)
        if other is None:
            r.only_a += 1
        elif key(other) == r.key:
            r.both += 1
    for alert_id, alert in b_ids.items():
        r = row(key(alert))
        r.b += 1
        if alert_id not in a_ids:
            r.only_b += 1
    kept = [r for r in rows.values() if r.a or r.b]
    if order:
        rank = {k: i for i, k in enumerate(order)}
        return sorted(kept, key=lambda r: (rank.get(r.key, len(rank)), r.key))
    return sorted(kept, key=lambda r: r.key)


def _examples(alerts: Iterable[Alert], per_type: int, labels: Mapping[str, Label]) -> list[Example]:
    """Up to `per_type` of each type: the highest priority first, then the earliest (a digest's order)."""
    by_type: defaultdict[str, list[Alert]] = defaultdict(list)
    for alert in alerts:
        by_type[alert.type].append(alert)
    out = []
    for type_ in sorted(by_type):
        chosen = sorted(by_type[type_], key=lambda a: (-(a.priority or 0), a.occurred_at, a.alert_id))[:per_type]
        out += [Example(a, labels.get(a.alert_id)) for a in chosen]
    return out


def _differences(a: Alert, b: Alert) -> tuple[str, ...]:
    return tuple(name for name in COMPARED_FIELDS if getattr(a, name) != getattr(b, name))


def _days(first: date | None, last: date | None) -> list[date]:
    if first is None or last is None or last < first:
        return []
    return [first + timedelta(days=i) for i in range((last - first).days + 1)]


def _local_day(alert: Alert, tz: tzinfo) -> date:
    return alert.occurred_at.astimezone(tz).date()


def _us_day(us: int, tz: tzinfo) -> date:
    return from_us(us).astimezone(tz).date()


def _per_day(alerts: Iterable[Alert], days: Sequence[date], tz: tzinfo, types: Iterable[str]) -> dict[str, list[int]]:
    index = {d: i for i, d in enumerate(days)}
    out = {t: [0] * len(days) for t in ["total", *types]}
    for alert in alerts:
        i = index[_local_day(alert, tz)]
        out[alert.type][i] += 1
        out["total"][i] += 1
    return out


def _notify_summary(notified: Notified, days: Sequence[date], tz: tzinfo, rms: int) -> NotifySummary:
    index = {d: i for i, d in enumerate(days)}
    per_day = {"pushes": [0] * len(days), "digests": [0] * len(days)}
    pushes: Counter[tuple[str, date]] = Counter()
    for output in notified.outputs:
        if isinstance(output, Push):
            day = _us_day(output.at, tz)
            if day in index:
                per_day["pushes"][index[day]] += 1
            if output.rm_id is not None:
                pushes[(output.rm_id, day)] += 1
        elif isinstance(output, Digest):
            day = _us_day(output.due_at, tz)
            if day in index:
                per_day["digests"][index[day]] += 1
    c = notified.counts
    return NotifySummary(
        pushed=sum(c.pushed.values()),
        pushed_by_reason=dict(sorted(c.pushed.items())),
        held=sum(c.held.values()),
        held_by_reason=dict(sorted(c.held.items())),
        digests=sum(c.digests.values()),
        digested=c.digested,
        waiting=notified.waiting,
        stale=c.stale,
        duplicates=c.duplicates,
        per_day=per_day,
        pushes_per_rm_day=_load(pushes, rms * len(days)),
    )


def compare(
    a: Side,
    b: Side,
    *,
    timezone: tzinfo,
    labels: Iterable[Label] | None = None,
    period: tuple[date, date] | None = None,
    examples: int = DEFAULT_EXAMPLES,
) -> Comparison:
    """Everything the reports show about B against A.

    `timezone` is the bank's (the days of the per-day series and of the RM
    load); `period` the first and last local day to report (the days of the
    alerts by default; widened to every alert's day). The mean per RM-day
    divides by every RM seen under either side times every day of the period,
    so A's and B's means share a denominator.
    """
    a_ids = {x.alert_id: x for x in a.alerts}
    b_ids = {x.alert_id: x for x in b.alerts}
    label_list = list(labels) if labels is not None else None
    by_label = {label.alert_id: label for label in label_list or ()}

    # The days of the alerts, and of the digests they lead to (the last ones are due the morning after).
    alert_days = [_local_day(x, timezone) for x in (*a_ids.values(), *b_ids.values())]
    alert_days += [_us_day(o.due_at, timezone) for s in (a, b) for o in s.notified.outputs if isinstance(o, Digest)]
    first = min([*alert_days, *([period[0]] if period else [])], default=None)
    last = max([*alert_days, *([period[1]] if period else [])], default=None)
    days = _days(first, last)
    rm_ids = {x.rm_id for x in (*a_ids.values(), *b_ids.values()) if x.rm_id}
    rms = len(rm_ids)
    types = sorted({x.type for x in (*a_ids.values(), *b_ids.values())})

    def summary(s: Side, ids: Mapping[str, Alert]) -> SideSummary:
        loads: Counter[tuple[str, date]] = Counter((x.rm_id, _local_day(x, timezone)) for x in ids.values() if x.rm_id)
        return SideSummary(
            rule_version=s.rule_version,
            alerts=len(ids),
            by_type=dict(sorted(Counter(x.type for x in ids.values()).items())),
            by_severity=dict(Counter(x.severity for x in ids.values()).most_common()),
            by_tier=dict(Counter(_tier(x) for x in ids.values()).most_common()),
            per_day=_per_day(ids.values(), days, timezone, types),
            load=_load(loads, rms * len(days)),
            unassigned=sum(1 for x in ids.values() if not x.rm_id),
            notifications=_notify_summary(s.notified, days, timezone, rms),
        )

    changed: list[Changed] = []
    for alert_id, old in a_ids.items():
        new = b_ids.get(alert_id)
        if new is not None:
            fields = _differences(old, new)
            if fields:
                changed.append(
                    Changed(Example(old, by_label.get(alert_id)), Example(new, by_label.get(alert_id)), fields)
                )
    severity_moves = Counter((c.a.alert.severity, c.b.alert.severity) for c in changed if "severity" in c.fields)
    changed_examples: list[Changed] = []
    kept: Counter[str] = Counter()
    for c in sorted(changed, key=lambda c: (c.a.alert.type, -(c.a.alert.priority or 0), c.a.alert.occurred_at)):
        if kept[c.a.alert.type] < examples:
            kept[c.a.alert.type] += 1
            changed_examples.append(c)

    by_rm = _groups(_rm, a_ids, b_ids)
    by_rm.sort(key=lambda r: (-abs(r.b - r.a), r.key))
    both = sum(1 for alert_id in a_ids if alert_id in b_ids)
    return Comparison(
        a=summary(a, a_ids),
        b=summary(b, b_ids),
        days=days,
        timezone=str(timezone),
        both=both,
        only_in_a=len(a_ids) - both,
        only_in_b=len(b_ids) - both,
        by_type=_groups(lambda x: x.type, a_ids, b_ids),
        by_severity=_groups(lambda x: x.severity, a_ids, b_ids, SEVERITY_ORDER),
        by_tier=_groups(_tier, a_ids, b_ids, TIER_ORDER),
        by_rm=by_rm,
        changed=len(changed),
        changed_by_type=dict(sorted(Counter(c.a.alert.type for c in changed).items())),
        severity_moves=dict(sorted(severity_moves.items())),
        only_a_examples=_examples((x for i, x in a_ids.items() if i not in b_ids), examples, by_label),
        only_b_examples=_examples((x for i, x in b_ids.items() if i not in a_ids), examples, by_label),
        changed_examples=changed_examples,
        labels=None if label_list is None else _labels(label_list, a_ids, b_ids),
        rms=rms,
    )

"""The notifier's decisions (docs/rules.md, "Notifications"): budget, quiet hours, digests, unassigned, re-deliveries.

The rules are tests/rules/thresholds.yaml in Asia/Shanghai (UTC+8 all year): a
budget of 3 pushes per RM per local day, quiet hours 21:00-08:00 local, the
digest at 08:00 local, ids remembered for 5 days.
"""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from handlers.notify import (
    UNASSIGNED,
    Digest,
    Input,
    Notifier,
    NotifyProcessor,
    NotifyReplay,
    Push,
    RmState,
    Tick,
    decode_alert,
    decode_tick,
)
from handlers.ruleset import Ruleset
from handlers.timeutil import to_us
from schemas.alerts import Alert
from schemas.rules import RulesFile

SHANGHAI = timedelta(hours=8)
_ids = itertools.count(1)


def local(day: int, hour: int, minute: int = 0, second: int = 0, microsecond: int = 0) -> datetime:
    """A Shanghai wall time on 2026-03-<day> (as an aware UTC datetime)."""
    return datetime(2026, 3, day, hour, minute, second, microsecond, tzinfo=UTC) - SHANGHAI


def alert(
    when: datetime,
    severity: str = "warning",
    *,
    rm: str | None = "rm-1",
    priority: int = 40,
    alert_type: str = "large_outflow",
    alert_id: str | None = None,
) -> Alert:
    return Alert(
        alert_id=alert_id or f"a{next(_ids):05d}",
        type=alert_type,  # type: ignore[arg-type]
        severity=severity,  # type: ignore[arg-type]
        client_id="c-1",
        rm_id=rm,
        tier="gold",
        occurred_at=when,
        detected_at=when,
        title="t",
        facts={},
        rule_version="v",
        source_event_ids=[],
        priority=priority,
    )


@pytest.fixture(scope="module")
def rules(rules: Ruleset) -> Ruleset:
    """The test rules in Asia/Shanghai (UTC+8 all year, no summer time), where the local times here are written."""
    return rules_with(rules, timezone="Asia/Shanghai")


def rules_with(rules: Ruleset, **changes: Any) -> Ruleset:
    data = rules.source.model_dump(mode="json")
    data["notify"] = {**data["notify"], **changes.pop("notify", {})}
    data.update(changes)
    return Ruleset.compile(RulesFile.model_validate(data))


class Desk:
    """One RM's state through the notifier, with the clock of its ticks."""

    def __init__(self, rules: Ruleset, clock: str = "event", key: str = "rm-1") -> None:
        self.notifier = Notifier(rules, clock)  # type: ignore[arg-type]
        self.state = RmState(key)
        self.tick_clock = 0

    def send(self, a: Alert) -> str:
        """'push', 'held:<reason>' or 'duplicate' (a digest fired first is kept in self.digests)."""
        decision = self.notifier.decide(self.state, a, self.tick_clock)
        self.fired = decision.digest
        if decision.duplicate:
            return "duplicate"
        return "push" if decision.push is not None else f"held:{decision.held}"

    def tick(self, when: datetime) -> Digest | None:
        self.tick_clock = max(self.tick_clock, to_us(when))
        return self.notifier.tick(self.state, self.tick_clock)


# ---------------------------------------------------------------------------- budget and quiet hours
def test_the_budget_edge_third_push_goes_fourth_is_held(rules: Ruleset) -> None:
    desk = Desk(rules)
    assert [desk.send(alert(local(2, 9 + h))) for h in range(3)] == ["push"] * 3
    assert desk.send(alert(local(2, 13))) == "held:budget"
    assert desk.send(alert(local(2, 14), "critical")) == "push", "critical is pushed whatever the budget"


def test_critical_pushes_count_against_the_budget(rules: Ruleset) -> None:
    desk = Desk(rules)
    assert desk.send(alert(local(2, 9), "critical")) == "push"
    assert desk.send(alert(local(2, 10))) == "push"
    assert desk.send(alert(local(2, 11))) == "push"
    assert desk.send(alert(local(2, 12))) == "held:budget", "1 critical + 2 others = the budget of 3"


def test_a_budget_of_zero_pushes_only_critical(rules: Ruleset) -> None:
    desk = Desk(rules_with(rules, notify={"daily_push_budget": 0}))
    assert desk.send(alert(local(2, 10), "info")) == "held:budget"
    assert desk.send(alert(local(2, 10), "critical")) == "push"


@pytest.mark.parametrize(
    ("when", "expected"),
    [
        (local(2, 20, 59, 59, 999_999), "push"),
        (local(2, 21), "held:quiet_hours"),  # start included
        (local(3, 0), "held:quiet_hours"),
        (local(3, 7, 59, 59, 999_999), "held:quiet_hours"),
        (local(3, 8), "push"),  # end excluded
    ],
    ids=["20:59:59.999999", "21:00", "00:00", "07:59:59.999999", "08:00"],
)
def test_quiet_hours_edges(rules: Ruleset, when: datetime, expected: str) -> None:
    assert Desk(rules).send(alert(when)) == expected


def test_critical_is_pushed_in_the_quiet_hours(rules: Ruleset) -> None:
    assert Desk(rules).send(alert(local(2, 23), "critical")) == "push"


def test_quiet_hours_inside_one_day_and_none(rules: Ruleset) -> None:
    lunch = Desk(rules_with(rules, notify={"quiet_hours": {"start": "12:00", "end": "14:00"}}))
    assert [lunch.send(alert(local(2, h))) for h in (11, 12, 13)] == ["push", "held:quiet_hours", "held:quiet_hours"]
    assert lunch.send(alert(local(2, 14))) == "push"
    never = Desk(rules_with(rules, notify={"quiet_hours": None, "daily_push_budget": 10}))
    assert never.send(alert(local(2, 23))) == "push"


def test_the_budget_is_per_local_day(rules: Ruleset) -> None:
    """Shanghai midnight is 16:00 UTC: the budget of the 3rd is spent, the 4th starts afresh at 00:00 local."""
    desk = Desk(rules_with(rules, notify={"quiet_hours": None}))
    assert [desk.send(alert(local(3, 20, m))) for m in range(4)] == ["push"] * 3 + ["held:budget"]
    assert desk.send(alert(local(3, 23, 59, 59))) == "held:budget"
    assert desk.send(alert(local(4, 0))) == "push"
    assert local(4, 0) == datetime(2026, 3, 3, 16, tzinfo=UTC)


def test_the_budget_and_quiet_hours_use_the_alerts_own_time_not_the_order(rules: Ruleset) -> None:
    desk = Desk(rules)
    assert [desk.send(alert(local(3, 10 + h))) for h in range(3)] == ["push"] * 3
    assert desk.send(alert(local(2, 15))) == "push", "a late alert counts against its own day's budget"
    assert desk.send(alert(local(2, 22))) == "held:quiet_hours", "and its own local time"


# ---------------------------------------------------------------------------- digests
def test_digest_due_across_midnight_at_the_next_digest_time(rules: Ruleset) -> None:
    desk = Desk(rules)
    assert desk.send(alert(local(2, 23, 30))) == "held:quiet_hours"
    assert desk.state.due == to_us(local(3, 8))
    assert desk.send(alert(local(3, 0, 30))) == "held:quiet_hours"
    assert desk.state.due == to_us(local(3, 8)), "the first held alert sets the due time"


@pytest.mark.parametrize(
    ("held_at", "due"),
    [
        (local(3, 7), local(3, 8)),
        (local(3, 7, 59, 59), local(3, 8)),
        (local(2, 21), local(3, 8)),
        (local(2, 16), local(3, 8)),
    ],
    ids=["07:00", "07:59:59", "21:00", "16:00 (budget)"],
)
def test_digest_due_is_the_first_digest_time_strictly_after(rules: Ruleset, held_at: datetime, due: datetime) -> None:
    desk = Desk(rules_with(rules, notify={"daily_push_budget": 0}))
    desk.send(alert(held_at))
    assert desk.state.due == to_us(due)


def test_an_alert_held_at_exactly_the_digest_time_waits_a_day(rules: Ruleset) -> None:
    desk = Desk(rules_with(rules, notify={"daily_push_budget": 0}))
    assert desk.send(alert(local(3, 8))) == "held:budget"
    assert desk.state.due == to_us(local(4, 8))


def test_digest_times_in_a_zone_without_and_with_summer_time(rules: Ruleset) -> None:
    """Asia/Shanghai keeps UTC+8 all year; Europe/London's 08:00 moves from 08:00Z to 07:00Z in summer."""
    for month in (1, 7):
        shanghai = Notifier(rules, "event")
        evening = datetime(2026, month, 10, 15, tzinfo=UTC)  # 23:00 in Shanghai
        assert shanghai.next_digest(to_us(evening)) == to_us(datetime(2026, month, 11, 0, tzinfo=UTC))
    london = Notifier(rules_with(rules, timezone="Europe/London"), "event")
    assert london.next_digest(to_us(datetime(2026, 1, 10, 22, tzinfo=UTC))) == to_us(
        datetime(2026, 1, 11, 8, tzinfo=UTC)
    )
    assert london.next_digest(to_us(datetime(2026, 7, 10, 22, tzinfo=UTC))) == to_us(
        datetime(2026, 7, 11, 7, tzinfo=UTC)
    )
    # the night the clocks go forward (29 March 2026, 01:00 -> 02:00): 08:00 BST is 07:00Z
    assert london.next_digest(to_us(datetime(2026, 3, 28, 23, tzinfo=UTC))) == to_us(
        datetime(2026, 3, 29, 7, tzinfo=UTC)
    )


def test_a_tick_at_the_due_time_sends_the_digest_in_priority_order(rules: Ruleset) -> None:
    desk = Desk(rules)
    held = [
        alert(local(2, 22), priority=40, alert_id="b-low-late", alert_type="complaint"),
        alert(local(2, 21, 30), priority=80, alert_id="z-high"),
        alert(local(2, 21, 30), priority=40, alert_id="d-tie"),
        alert(local(2, 21, 30), priority=40, alert_id="c-tie"),
        alert(local(2, 23), priority=95, alert_id="a-top", alert_type="aum_drain"),
    ]
    assert {desk.send(a) for a in held} == {"held:quiet_hours"}
    assert desk.tick(local(3, 7, 59, 59, 999_999)) is None
    digest = desk.tick(local(3, 8))
    assert digest is not None
    assert [h.alert_id for h in digest.items] == ["a-top", "z-high", "c-tie", "d-tie", "b-low-late"]
    assert digest.counts == {"aum_drain": 1, "complaint": 1, "large_outflow": 3}
    record = digest.record(full=False)
    assert record == {
        "kind": "digest",
        "rm_id": "rm-1",
        "due_at": "2026-03-03T00:00:00+00:00",
        "alert_ids": ["a-top", "z-high", "c-tie", "d-tie", "b-low-late"],
        "counts": {"aum_drain": 1, "complaint": 1, "large_outflow": 3},
    }
    assert desk.tick(local(4, 8)) is None, "a digest is never empty"
    assert desk.state.held == [] and desk.state.due is None


def test_with_the_event_clock_the_rms_next_alert_sends_the_due_digest_first(rules: Ruleset) -> None:
    desk = Desk(rules)
    desk.send(alert(local(2, 23), alert_id="night"))
    assert desk.send(alert(local(3, 9), alert_id="morning")) == "push"
    assert desk.fired is not None and [h.alert_id for h in desk.fired.items] == ["night"]
    assert desk.fired.trigger == "alert"


def test_with_the_wall_clock_only_ticks_send_digests(rules: Ruleset) -> None:
    desk = Desk(rules, clock="wall")
    desk.tick(local(2, 23, 0, 5))
    desk.send(alert(local(2, 23), alert_id="night"))
    assert desk.send(alert(local(3, 9), alert_id="morning")) == "push"
    assert desk.fired is None, "the alert's time is not the wall clock"
    digest = desk.tick(local(3, 8, 0, 5))
    assert digest is not None and [h.alert_id for h in digest.items] == ["night"]


def test_an_alert_held_after_its_digest_went_out_waits_for_the_next(rules: Ruleset) -> None:
    desk = Desk(rules)
    desk.send(alert(local(2, 23), alert_id="first"))
    assert desk.tick(local(3, 8, 1)) is not None
    assert desk.send(alert(local(3, 7, 30), alert_id="late")) == "held:quiet_hours"
    assert desk.state.due == to_us(local(4, 8)), "dated before the due time, arriving after: the next digest"


# ---------------------------------------------------------------------------- unassigned and re-deliveries
def test_unassigned_alerts_are_always_pushed_with_a_null_rm(rules: Ruleset) -> None:
    desk = Desk(rules, key=UNASSIGNED)
    for hour in (9, 10, 11, 12, 13, 22, 23):
        assert desk.send(alert(local(2, hour), "info", rm=None)) == "push"
    assert desk.state.held == [] and desk.state.pushes == {}
    processor = NotifyProcessor(rules, clock="event")
    result = processor.process([Input(0, None, alert(local(2, 23), rm=None))], {}.get)
    ((_, push),) = result.outputs
    assert isinstance(push, Push) and push.rm_id is None and push.record()["rm_id"] is None
    assert set(result.touched) == {UNASSIGNED}


def test_a_redelivered_alert_is_never_pushed_or_digested_twice(rules: Ruleset) -> None:
    desk = Desk(rules)
    pushed, night = alert(local(2, 10)), alert(local(2, 22))
    assert desk.send(pushed) == "push"
    assert desk.send(night) == "held:quiet_hours"
    assert desk.send(pushed) == "duplicate" and desk.send(night) == "duplicate"
    assert desk.state.pushes == {local(2, 10).astimezone(desk.notifier.tz).date().toordinal(): 1}
    digest = desk.tick(local(3, 8))
    assert digest is not None and len(digest.items) == 1
    assert desk.send(night) == "duplicate", "digested: still a re-delivery"
    assert desk.tick(local(4, 8)) is None


def test_decided_ids_are_forgotten_after_remember_days_of_the_rms_clock(rules: Ruleset) -> None:
    desk = Desk(rules_with(rules, notify={"quiet_hours": None, "daily_push_budget": 100}))
    first = alert(local(2, 10))
    desk.send(first)
    desk.send(alert(local(7, 9, 59)))  # 4 days 23:59 later: remembered
    assert first.alert_id in desk.state.seen
    desk.send(alert(local(7, 10, 0, 1)))
    assert first.alert_id not in desk.state.seen
    assert min(desk.state.pushes) >= local(2, 10).astimezone(desk.notifier.tz).date().toordinal()


def test_an_alert_older_than_remember_days_is_not_notified_again(rules: Ruleset) -> None:
    """Its id would have been forgotten: a re-read of old input (or a very late alert) notifies nobody."""
    desk = Desk(rules_with(rules, notify={"quiet_hours": None}))
    old = alert(local(2, 10))
    assert desk.send(old) == "push"
    desk.send(alert(local(8, 10)))  # 6 days later: `old` is forgotten
    assert old.alert_id not in desk.state.seen
    assert desk.notifier.decide(desk.state, old, 0).stale
    assert desk.notifier.decide(desk.state, alert(local(2, 12), "critical"), 0).stale, "critical ones too"
    edge = alert(local(3, 10))  # exactly remember_days (5) before the latest: still decided
    assert desk.send(edge) == "push"


# ---------------------------------------------------------------------------- records, state, inputs
def test_push_records_carry_the_alert(rules: Ruleset) -> None:
    a = alert(local(2, 10), priority=55)
    ((_, push),) = NotifyProcessor(rules, clock="event").process([Input(0, "rm-1", a)], {}.get).outputs
    assert push.record(full=False) == {
        "kind": "push",
        "rm_id": "rm-1",
        "alert_id": a.alert_id,
        "priority": 55,
        "at": "2026-03-02T02:00:00+00:00",
    }
    full = push.record()
    assert full["reason"] == "within_budget" and full["alert"]["alert_id"] == a.alert_id


def test_the_state_round_trips_through_its_bytes(rules: Ruleset) -> None:
    desk = Desk(rules)
    for hour in (9, 10, 11, 12, 22):
        desk.send(alert(local(2, hour)))
    again = RmState.from_bytes(desk.state.to_bytes())
    assert again == desk.state and len(again.held) == 2


def test_inputs_are_decoded_or_rejected() -> None:
    a = alert(local(2, 10))
    assert decode_alert(a.model_dump_json().encode()) == a
    assert decode_alert(b"{").reason == "invalid_json"  # type: ignore[union-attr]
    assert decode_alert(b'{"alert_id": 1}').reason == "schema"  # type: ignore[union-attr]
    assert decode_alert(None).reason == "empty"  # type: ignore[union-attr]
    assert decode_tick(b"{}") == Tick(None)
    assert decode_tick(b'{"now": "2026-03-02T00:00:00+08:00"}') == Tick(to_us(datetime(2026, 3, 1, 16, tzinfo=UTC)))
    assert decode_tick(b'{"now": "2026-03-02T00:00:00"}').reason == "bad_tick"  # type: ignore[union-attr]


def test_a_tick_sweeps_every_due_rm_of_its_partition(rules: Ruleset) -> None:
    processor = NotifyProcessor(rules, clock="wall")
    states: dict[str, RmState] = {}
    inputs = [Input(0, f"rm-{i}", alert(local(2, 22), rm=f"rm-{i}")) for i in range(3)]
    first = processor.process(inputs, states.get)
    states.update({k: e.state for k, e in first.touched.items()})
    processor.settle(first)
    assert processor.held_total() == 3
    swept = processor.process([Input(0, None, Tick(to_us(local(3, 8))))], states.get)
    processor.settle(swept)
    assert sorted(o.rm_id for _, o in swept.outputs) == ["rm-0", "rm-1", "rm-2"]
    assert swept.counts.digests == {"tick": 3} and processor.held_total() == 0


# ---------------------------------------------------------------------------- properties
# Within remember_days (5): a re-delivery comes before its id is forgotten (the forgetting has its own tests).
times = st.integers(min_value=0, max_value=5 * 24 * 60 - 1).map(lambda m: local(2, 0) + timedelta(minutes=m))
alerts_strategy = st.lists(
    st.tuples(
        times,
        st.sampled_from(["info", "warning", "critical"]),
        st.sampled_from(["rm-1", "rm-2", None]),
        st.integers(0, 100),
    ),
    min_size=1,
    max_size=60,
)


def _sequence(raw: list[tuple[datetime, str, str | None, int]]) -> list[Alert]:
    return [alert(w, sev, rm=rm, priority=p, alert_id=f"p{i:03d}") for i, (w, sev, rm, p) in enumerate(raw)]


def _run(rules: Ruleset, alerts: list[Alert], cuts: list[int], until: datetime) -> list[dict[str, Any]]:
    replay = NotifyReplay(rules)
    out = []
    bounds = [0, *sorted(set(cuts)), len(alerts)]
    for start, end in itertools.pairwise(bounds):
        out += replay.feed(alerts[start:end])
    out += replay.finish(to_us(until))
    return [o.record(full=False) for o in out]


@settings(max_examples=150, deadline=None)
@given(alerts_strategy, st.lists(st.integers(0, 60), max_size=5), st.data())
def test_every_alert_is_pushed_or_digested_exactly_once_whatever_the_batches_and_redeliveries(
    rules: Ruleset, raw: list[tuple[datetime, str, str | None, int]], cuts: list[int], data: st.DataObject
) -> None:
    alerts = _sequence(raw)
    until = local(9, 0)
    clean = _run(rules, alerts, [], until)
    assert _run(rules, alerts, cuts, until) == clean, "batch boundaries change nothing"
    # Re-deliveries: copies of earlier alerts inserted later change nothing.
    redelivered = list(alerts)
    for _ in range(data.draw(st.integers(0, 5))):
        copy = alerts[data.draw(st.integers(0, len(alerts) - 1))]
        first = redelivered.index(copy)  # a copy comes after the alert it repeats
        redelivered.insert(data.draw(st.integers(first + 1, len(redelivered))), copy)
    assert _run(rules, redelivered, [], until) == clean
    pushed = [r["alert_id"] for r in clean if r["kind"] == "push"]
    digested = [i for r in clean if r["kind"] == "digest" for i in r["alert_ids"]]
    assert sorted(pushed + digested) == sorted(a.alert_id for a in alerts), "each exactly once by the end"
    by_id = {a.alert_id: a for a in alerts}
    notifier = Notifier(rules, "event")
    per_day: dict[tuple[str | None, int], int] = {}
    for alert_id in pushed:
        a = by_id[alert_id]
        if a.rm_id is None:
            continue
        day = notifier.local_day(to_us(a.occurred_at))
        per_day[(a.rm_id, day)] = per_day.get((a.rm_id, day), 0) + (a.severity != "critical")
        if a.severity != "critical":
            assert not notifier.in_quiet_hours(to_us(a.occurred_at))
    assert all(n <= rules.notify.daily_push_budget for n in per_day.values())
    for record in clean:
        if record["kind"] == "digest":
            assert record["rm_id"] is not None
            keys = [(-by_id[i].priority, by_id[i].occurred_at, i) for i in record["alert_ids"]]
            assert keys == sorted(keys) and record["alert_ids"]
            assert sum(record["counts"].values()) == len(record["alert_ids"])
        else:
            assert (record["rm_id"] is None) == (by_id[record["alert_id"]].rm_id is None)

"""Properties of a replay (docs/rules.md, "The clock" and "Suppression and duplicates"): re-deliveries change
nothing, sweep spacing changes nothing, snoozes and consent change nothing but what they hold back.

Histories are drawn from a small world (two clients, amounts around the tier
floors and limits of tests/rules/thresholds.yaml, time steps from seconds to
beyond its dormancy period, the odd late event) so that the rules actually fire:
tiers move, outflows trip, clients go quiet.
"""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, Phase, find, given, settings
from hypothesis import strategies as st

from handlers.replay import Replay
from schemas.alerts import OPPORTUNITY_TYPES, SNOOZABLE_TYPES
from tests.unit.builders import RULES, T0, Value, client_event, interaction, maturing, record, snooze, tx, unsnooze

DETECTED_AT = datetime(2030, 1, 1, tzinfo=UTC)
DEDUPE = timedelta(microseconds=RULES.dedupe)
"""10 days in tests/rules/thresholds.yaml."""

CLIENTS = ("c-1", "c-2")
# Around the floors (10,000 / 100,000 / 1,000,000 / 5,000,000) and limits (10,000 / 20,000 / 100,000 / ...).
AMOUNTS = ("800", "8000", "9999.99", "10000", "20000", "60000", "99999.99", "150000", "1100000", "5500000")
# Up to and beyond the windows (5 and 20 days), RM contact (20 to 60 days) and dormancy (50 and 100 days).
LONG_STEPS = (0, 1, 3600, 86_400, 4 * 86_400, 19 * 86_400, 55 * 86_400, 105 * 86_400, -3600, -2 * 86_400)
SHORT_STEPS = (0, 1, 60, 3600, 6 * 3600)

PROPERTY = settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@st.composite
def events(draw: st.DrawFn, when: datetime, event_id: str) -> Value:
    client = draw(st.sampled_from(CLIENTS))
    kind = draw(st.sampled_from(("debit", "debit", "credit", "credit", "bank", "interaction", "client")))
    common: dict[str, Any] = {"client": client, "event_id": event_id}
    if kind in ("debit", "credit"):
        balance = draw(st.sampled_from((None, None, None, None, "0", "90000", "1200000")))
        return tx(
            when,
            draw(st.sampled_from(AMOUNTS)),
            kind,
            bank=draw(st.sampled_from((None, "internal", "external", "external"))),
            currency=draw(st.sampled_from(("CNY", "CNY", "USD"))),
            account=draw(st.sampled_from(("acct-1", "acct-2"))),
            balance_after=balance,
            **common,
        )
    if kind == "bank":
        direction = draw(st.sampled_from(("credit", "debit")))
        return tx(when, draw(st.sampled_from(AMOUNTS)), direction, by="bank", kind="fee", **common)
    if kind == "interaction":
        choice = draw(st.sampled_from(("complaint", "rm_call", "inquiry", "visit")))
        satisfaction = draw(st.sampled_from((None, None, 1, 3, 5)))  # 3 or less is low in the test rules
        if choice == "complaint":
            severity = draw(st.sampled_from((None, "low", "high")))
            return interaction(when, "complaint", severity=severity, satisfaction=satisfaction, **common)
        if choice == "rm_call":
            return interaction(when, "call", by="rm", rm_id="rm-1", **common)
        if choice == "visit":
            return interaction(when, "visit", rm_id="rm-2", channel="branch", **common)
        return interaction(when, "inquiry", satisfaction=satisfaction, **common)
    choice = draw(st.sampled_from(("onboarded", "onboarded", "rm_assigned", "maturing", "closed")))
    if choice == "maturing":
        days = draw(st.sampled_from((5, 12, 40)))  # the notice is 10 days: already due, soon, later
        maturity = (when + timedelta(days=days)).date().isoformat()
        return maturing(when, draw(st.sampled_from(("td-1", "td-2"))), maturity, **common)
    if choice == "rm_assigned":
        return client_event(when, "rm_assigned", rm_id=draw(st.sampled_from(("rm-1", "rm-2", None))), **common)
    if choice == "onboarded":
        birth = draw(st.sampled_from((None, "1970-03-03", "1988-02-29", "1990-12-31")))
        extra = {"birth_date": birth} if birth is not None else {}
        return client_event(when, "onboarded", rm_id="rm-1", **extra, **common)
    return client_event(when, "closed", **common)


@st.composite
def histories(draw: st.DrawFn, steps: tuple[int, ...] = LONG_STEPS, max_size: int = 24) -> list[Value]:
    size = draw(st.integers(1, max_size))
    when = T0
    out: list[Value] = []
    for i in range(size):
        when += timedelta(seconds=draw(st.sampled_from(steps)))
        out.append(draw(events(when, f"e-{i}")))
    return out


def occurred(value: Value) -> datetime:
    return datetime.fromisoformat(str(value["occurred_at"]))


def lines(history: list[Value]) -> list[bytes]:
    return [orjson.dumps({"topic": t, "key": k, "value": v}) for t, k, v in map(record, history)]


def alerts_of(history: list[Value], sweep_every: int = 1) -> Counter[bytes]:
    """The alerts of a replay, until well after the last event, as a multiset (detected_at left out)."""
    until = max(occurred(v) for v in history) + timedelta(days=400)
    replay = Replay(RULES, sweep_every=sweep_every, detected_at=DETECTED_AT)
    found = replay.run_lines(lines(history), until)
    return Counter(orjson.dumps(a.model_dump(mode="json", exclude={"detected_at"})) for a in found)


def redeliver(history: list[Value], picks: list[tuple[int, int]]) -> list[Value]:
    """Insert copies of events `delay` positions after the original, while it is at most DEDUPE old."""
    inserts: list[tuple[int, Value]] = []
    for index, delay in picks:
        source = index % len(history)
        position = min(source + delay, len(history) - 1)
        watermark = max(occurred(v) for v in history[: position + 1])
        if watermark - occurred(history[source]) <= DEDUPE:
            inserts.append((position + 1, history[source]))
    out = list(history)
    for position, value in sorted(inserts, key=lambda p: p[0], reverse=True):
        out.insert(position, value)
    return out


@PROPERTY
@given(history=histories(), picks=st.lists(st.tuples(st.integers(0, 50), st.integers(0, 4)), max_size=12))
def test_redelivered_events_interleaved_change_no_alert(history: list[Value], picks: list[tuple[int, int]]) -> None:
    assert alerts_of(redeliver(history, picks)) == alerts_of(history)


@PROPERTY
@given(history=histories(steps=SHORT_STEPS))
def test_a_history_delivered_twice_gives_the_alerts_of_once(history: list[Value]) -> None:
    # every event of the second pass is within the 10 days the ids are remembered
    assert max(map(occurred, history)) - min(map(occurred, history)) <= DEDUPE
    assert alerts_of(history + history) == alerts_of(history)


@PROPERTY
@given(history=histories(), sweep_every=st.integers(2, 30))
def test_alerts_do_not_depend_on_sweep_spacing(history: list[Value], sweep_every: int) -> None:
    assert alerts_of(history, sweep_every) == alerts_of(history, 1)


def held_back(
    history: list[Value], picks: list[tuple[int, int, int, int]], consent: bool
) -> tuple[list[Value], set[str]]:
    """`history` with snoozes and unsnoozes (or consent changes) of client c-1 inserted, and the types they touch.

    Each inserted event is stamped with c-1's own latest event time, so that
    neither the replay's clock nor c-1's own latest time moves: what changes is
    only what they hold back.
    """
    alert_type = SNOOZABLE_TYPES[picks[0][0] % len(SNOOZABLE_TYPES)] if picks else "large_outflow"
    inserts: dict[int, list[Value]] = {}
    for number, (position, choice, days, hours) in enumerate(picks):
        own = [occurred(v) for v in history[: position % (len(history) + 1)] if v["client_id"] == "c-1"]
        if not own:
            continue
        when = max(own)
        event_id = f"held-{number}"
        if consent:
            preference = ("service_only", "any", None)[choice % 3]
            value = client_event(when, "profile_updated", event_id=event_id, contact_preference=preference)
        elif choice % 3:
            value = snooze(when, alert_type, when + timedelta(days=days % 180, hours=1 + hours), event_id=event_id)
        else:
            value = unsnooze(when, alert_type, event_id=event_id)
        inserts.setdefault(position % (len(history) + 1), []).append(value)
    out: list[Value] = []
    for index in range(len(history) + 1):
        out += inserts.get(index, [])
        if index < len(history):
            out.append(history[index])
    return out, (set(OPPORTUNITY_TYPES) if consent else {alert_type})


def others(alerts: Counter[bytes], touched: set[str]) -> Counter[bytes]:
    """The alerts of other clients, and of c-1's other types."""
    kept: Counter[bytes] = Counter()
    for raw, n in alerts.items():
        alert = orjson.loads(raw)
        if alert["client_id"] != "c-1" or alert["type"] not in touched:
            kept[raw] = n
    return kept


PICKS = st.lists(st.tuples(st.integers(0, 30), st.integers(0, 2), st.integers(0, 200), st.integers(0, 48)), max_size=6)
"""(insertion position, what to insert, snooze length in days and hours) of each held-back event."""


@PROPERTY
@given(history=histories(), picks=PICKS, consent=st.booleans())
def test_snoozes_and_consent_change_no_alert_of_another_client_or_type(
    history: list[Value], picks: list[tuple[int, int, int, int]], consent: bool
) -> None:
    changed, touched = held_back(history, picks, consent)
    assert others(alerts_of(changed), touched) == others(alerts_of(history), touched)


@pytest.mark.parametrize("consent", [False, True], ids=["snoozes", "consent"])
def test_the_histories_above_do_hold_alerts_back(consent: bool) -> None:
    """The property is not vacuous: among the histories drawn are some where alerts are held back."""

    def holds_back(drawn: tuple[list[Value], list[tuple[int, int, int, int]]]) -> bool:
        history, picks = drawn
        changed, _touched = held_back(history, picks, consent)
        return sum(alerts_of(changed).values()) < sum(alerts_of(history).values())

    quick = settings(max_examples=400, deadline=None, phases=[Phase.generate], database=None)  # no shrinking
    find(st.tuples(histories(), PICKS), holds_back, settings=quick)

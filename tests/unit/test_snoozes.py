"""Snoozes (docs/rules.md, "Snoozes"): control events on clientpulse.controls.v1 hold back one type for one client.

Thresholds of tests/rules/thresholds.yaml: a customer debit of 10,000 or more
from a mass client is a large_outflow, a warning, critical at 30,000 or to
another bank, with a 2 h cooldown; large_inflow from 10,000 with a 6 h
cooldown; dormancy after 100 days. A snooze lasts at most 180 days (a limit of
the contract, not of the rules file).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import orjson
import pytest

from handlers.replay import Replay
from handlers.ruleset import Ruleset
from tests.unit.builders import (
    DETECTED_AT,
    Desk,
    at,
    deposit,
    interaction,
    of_type,
    record,
    snooze,
    tx,
    types,
    unsnooze,
)

US = timedelta(microseconds=1)
UNTIL = at(days=2)


def outflow(when: datetime, amount: str = "12000", **kw: object) -> dict[str, object]:
    return tx(when, amount, bank="internal", **kw)  # type: ignore[arg-type]


def funded(rules: Ruleset) -> Desk:
    desk = Desk(rules)
    desk.send(deposit(at(days=-1), "5000"))  # mass
    return desk


@pytest.mark.parametrize(
    ("when", "held"),
    [(at() - US, False), (at(), True), (UNTIL - US, True), (UNTIL, False)],
    ids=["before-the-snooze", "at-its-start", "just-before-until", "at-until"],
)
def test_the_window_is_from_the_snoozes_own_time_up_to_until(rules: Ruleset, when: datetime, held: bool) -> None:
    desk = funded(rules)
    desk.send(snooze(at(), "large_outflow", UNTIL))
    alerts = desk.send(outflow(when))  # an event dated before the snooze can arrive after it
    assert len(of_type(alerts, "large_outflow")) == (0 if held else 1)
    assert desk.suppressions == ([("large_outflow", "snoozed")] if held else [])


def test_critical_alerts_are_never_snoozed(rules: Ruleset) -> None:
    desk = funded(rules)
    desk.send(snooze(at(), "large_outflow", UNTIL))
    big = of_type(desk.send(outflow(at(hours=1), "40000")), "large_outflow")  # 4x the limit
    external = of_type(desk.send(tx(at(hours=4), "12000", bank="external")), "large_outflow")
    assert [a.severity for a in big + external] == ["critical", "critical"]
    assert desk.suppressions == []


def test_only_that_type_of_that_client(rules: Ruleset) -> None:
    desk = funded(rules)
    desk.send(deposit(at(days=-1), "5000", client="c-2"))
    desk.send(snooze(at(), "large_outflow", UNTIL))
    alerts = desk.send(
        outflow(at(hours=1), client="c-2"),
        tx(at(hours=2), "15000", "credit", bank="external"),  # large_inflow of c-1: not snoozed
        interaction(at(hours=3), "complaint"),
    )
    assert sorted((a.client_id, a.type) for a in alerts) == [
        ("c-1", "complaint"),
        ("c-1", "large_inflow"),
        ("c-1", "tier_upgrade"),
        ("c-2", "large_outflow"),
    ]


def test_unsnooze_ends_it_at_its_own_time(rules: Ruleset) -> None:
    desk = funded(rules)
    desk.send(snooze(at(), "large_outflow", UNTIL), unsnooze(at(hours=5), "large_outflow"))
    assert types(desk.send(outflow(at(hours=5)))) == ["large_outflow"]
    # an outflow dated inside the snooze that arrives late stays held back: the snooze held until the unsnooze
    assert desk.send(outflow(at(hours=4))) == []
    assert desk.suppressions == [("large_outflow", "snoozed")]


def test_an_unsnooze_before_the_snooze_began_removes_it(rules: Ruleset) -> None:
    desk = funded(rules)
    desk.send(snooze(at(hours=2), "large_outflow", UNTIL), unsnooze(at(hours=1), "large_outflow"))
    assert "large_outflow" not in desk.state().snoozes
    assert types(desk.send(outflow(at(hours=3)))) == ["large_outflow"]


def test_a_later_snooze_replaces_the_earlier_one(rules: Ruleset) -> None:
    desk = funded(rules)
    desk.send(snooze(at(), "large_outflow", at(days=10)), snooze(at(hours=1), "large_outflow", at(hours=6)))
    assert desk.send(outflow(at(hours=5))) == []
    assert types(desk.send(outflow(at(hours=1) - US))) == ["large_outflow"], "the first one's start counts no more"
    assert of_type(desk.send(outflow(at(hours=8))), "large_outflow"), "the second snooze ended at 6 h"


def test_a_snoozed_alert_starts_no_cooldown(rules: Ruleset) -> None:
    desk = funded(rules)
    desk.send(snooze(at(), "large_inflow", UNTIL))
    assert of_type(desk.send(tx(at(hours=1), "15000", "credit", bank="external")), "large_inflow") == []
    desk.send(unsnooze(at(hours=2), "large_inflow"))
    assert types(desk.send(tx(at(hours=3), "25000", "credit", bank="external"))) == ["large_inflow"]


def test_clock_rules_are_snoozed_by_their_due_time(rules: Ruleset) -> None:
    desk = funded(rules)  # quiet since day -1: dormancy due at day 99
    desk.send(snooze(at(days=90), "dormancy", at(days=100)))
    assert of_type(desk.advance(at(days=150)), "dormancy") == []
    assert desk.suppressions == [("dormancy", "snoozed")]
    assert types(desk.send(deposit(at(days=151), "1"))) == ["reactivation"], "still dormant, only not told"


def test_a_snooze_of_180_days_is_the_longest(rules: Ruleset) -> None:
    desk = funded(rules)
    desk.send(snooze(at(), "large_outflow", at(days=180)))
    assert of_type(desk.send(outflow(at(days=180) - US)), "large_outflow") == []
    assert ("large_outflow", "snoozed") in desk.suppressions


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        (snooze(at(), "complaint", UNTIL), "alert_type: Value error, complaint alerts are never snoozed"),
        (snooze(at(), "complaint_unanswered", UNTIL), "complaint_unanswered alerts are never snoozed"),
        (snooze(at(), "large_outflw", UNTIL), "alert_type: Value error, 'large_outflw' is not an alert type"),
        (snooze(at(), "large_outflow", UNTIL, reason=None), "reason: Value error, required for a snooze"),
        (snooze(at(), "large_outflow", UNTIL, reason="  "), "reason: Value error, required for a snooze"),
        (snooze(at(), "large_outflow", at()), "until: Value error, must be after occurred_at"),
        (snooze(at(), "large_outflow", at() - US), "until: Value error, must be after occurred_at"),
        (snooze(at(), "large_outflow", at(days=180) + US), "until: Value error, at most 180 days after occurred_at"),
        (snooze(at(), "large_outflow", "2026-03-04T00:00:00"), "until: Input should have timezone info"),
        (unsnooze(at(), "complaint"), "complaint alerts are never snoozed"),
        ({**snooze(at(), "large_outflow", UNTIL), "kind": "pause"}, "kind: Input should be 'snooze' or 'unsnooze'"),
        ({**snooze(at(), "large_outflow", UNTIL), "actor": ""}, "actor: String should have at least 1 character"),
    ],
)
def test_bad_control_events_are_dead_letters_with_the_reason(rules: Ruleset, value: object, problem: str) -> None:
    desk = funded(rules)
    found = desk.reject(value)  # type: ignore[arg-type]
    assert found.startswith("schema: ") and problem in found, found
    assert desk.state().snoozes == {}


def test_an_unsnooze_needs_no_reason_and_ignores_until(rules: Ruleset) -> None:
    desk = funded(rules)
    desk.send(snooze(at(), "large_outflow", UNTIL))
    desk.send({**unsnooze(at(hours=1), "large_outflow"), "until": at().isoformat()})
    assert types(desk.send(outflow(at(hours=2)))) == ["large_outflow"]


def test_snoozes_replay_identically_and_are_client_state(rules: Ruleset) -> None:
    history = [
        deposit(at(days=-1), "5000"),
        snooze(at(), "large_outflow", UNTIL),
        outflow(at(hours=1)),
        unsnooze(at(hours=2), "large_outflow"),
        outflow(at(hours=3)),
    ]
    lines = [orjson.dumps({"topic": t, "key": k, "value": v}) for t, k, v in map(record, history)]
    runs = []
    for sweep_every in (1, 3):
        replay = Replay(rules, sweep_every=sweep_every, detected_at=DETECTED_AT)
        runs.append([a.model_dump() for a in replay.run_lines(lines, datetime(2026, 3, 10, tzinfo=UTC))])
        assert dict(replay.summary.suppressed) == {("large_outflow", "snoozed"): 1}
        assert replay.summary.events_by_topic["clientpulse.controls.v1"] == 2
        state = replay.states["c-1"]
        assert state.from_bytes(state.to_bytes()) == state
    assert runs[0] == runs[1] and [a["type"] for a in runs[0]] == ["large_outflow"]

"""Dormancy (docs/rules.md, "Dormancy" and "The clock"): dormancy, reactivation, and due times crossing the clock.

Thresholds of tests/rules/thresholds.yaml: no customer activity for 100 days
(50 for private) is dormancy; warning, critical for diamond and private.
"""

from __future__ import annotations

from datetime import timedelta

import orjson
import pytest

from handlers.replay import Replay
from handlers.ruleset import Ruleset
from tests.unit.builders import (
    Desk,
    at,
    client_event,
    deposit,
    interaction,
    of_type,
    one,
    record,
    tx,
    types,
)

US = timedelta(microseconds=1)


def test_dormancy_due_100_days_after_last_activity(rules: Ruleset) -> None:
    desk = Desk(rules)
    desk.send(deposit(at(), "1000"))
    assert desk.advance(at(days=100) - US) == []
    alert = one(desk.advance(at(days=100)), "dormancy")
    assert alert.severity == "warning"
    assert alert.occurred_at == at(days=100)
    assert alert.facts == {
        "quiet_since": at().isoformat(),
        "counted_from": "last activity",
        "period_days": "100",
        "due_at": at(days=100).isoformat(),
    }
    assert alert.source_event_ids == []
    assert desk.advance(at(days=400)) == [], "one alert per quiet period"


@pytest.mark.parametrize(
    ("aum", "days", "severity"),
    [
        ("1000", 100, "warning"),  # mass
        ("50000", 100, "warning"),  # gold
        ("200000", 100, "warning"),  # platinum
        ("2000000", 100, "critical"),  # diamond
        ("6000000", 50, "critical"),  # private
    ],
)
def test_dormancy_period_and_severity_by_tier(rules: Ruleset, aum: str, days: int, severity: str) -> None:
    desk = Desk(rules)
    desk.send(deposit(at(), aum))
    dormancy = [a for a in desk.advance(at(days=days) - US) if a.type == "dormancy"]
    assert dormancy == []
    alert = one(desk.advance(at(days=days)), "dormancy")
    assert alert.severity == severity
    assert alert.facts["period_days"] == str(days)


def test_dormancy_counts_from_onboarding_without_any_activity(rules: Ruleset) -> None:
    desk = Desk(rules)
    desk.send(client_event(at(), "onboarded", rm_id="rm-1"))
    assert desk.advance(at(days=100) - US) == []
    alert = one(desk.advance(at(days=100)), "dormancy")
    assert alert.facts["counted_from"] == "onboarding"
    assert alert.facts["quiet_since"] == at().isoformat()
    assert alert.rm_id == "rm-1"
    assert alert.tier is None


def test_bank_postings_and_rm_contacts_are_not_activity(rules: Ruleset) -> None:
    desk = Desk(rules)
    desk.send(deposit(at(), "1000"))
    desk.send(tx(at(days=60), "12.50", "credit", by="bank", kind="interest"))
    desk.send(interaction(at(days=80), "call", by="rm", rm_id="rm-1"))
    assert desk.advance(at(days=100) - US) == []
    assert types(desk.advance(at(days=100))) == ["dormancy"]


def test_customer_interaction_is_activity(rules: Ruleset) -> None:
    desk = Desk(rules)
    desk.send(deposit(at(), "1000"), interaction(at(days=60), "inquiry"))
    assert desk.advance(at(days=160) - US) == []
    assert types(desk.advance(at(days=160))) == ["dormancy"]


def test_dormant_client_reactivating(rules: Ruleset) -> None:
    desk = Desk(rules)
    desk.send(deposit(at(), "1000"))
    desk.advance(at(days=110))
    alert = one(desk.send(deposit(at(days=120), "10", event_id="back")), "reactivation")
    assert alert.severity == "info"
    assert alert.occurred_at == at(days=120)
    assert alert.facts == {"quiet_since": at().isoformat(), "quiet_days": "120"}
    assert alert.source_event_ids == ["back"]
    assert desk.send(deposit(at(days=121), "10")) == [], "only the first activity after the alert"
    # a new quiet period starts at the last activity, with a new alert
    assert desk.advance(at(days=221) - US) == []
    assert one(desk.advance(at(days=221)), "dormancy").facts["quiet_since"] == at(days=121).isoformat()


def test_reactivation_by_interaction(rules: Ruleset) -> None:
    desk = Desk(rules)
    desk.send(deposit(at(), "1000"))
    desk.advance(at(days=101))
    assert types(desk.send(interaction(at(days=102), "message"))) == ["reactivation"]


def test_no_reactivation_without_a_dormancy_alert(rules: Ruleset) -> None:
    desk = Desk(rules)
    desk.send(deposit(at(), "1000"))
    assert desk.send(deposit(at(days=100) - US, "10")) == []


def test_event_past_the_due_time_fires_the_due_alert_first(rules: Ruleset) -> None:
    # The clock crosses the due time with the client's own late-coming activity:
    # the dormancy alert still says day 100, then the activity reactivates the client.
    desk = Desk(rules)
    desk.send(deposit(at(), "1000"))
    alerts = desk.send(deposit(at(days=150), "10"))
    assert [(a.type, a.occurred_at) for a in alerts] == [
        ("dormancy", at(days=100)),
        ("reactivation", at(days=150)),
    ]


def test_bank_posting_past_the_due_time_does_not_reactivate(rules: Ruleset) -> None:
    desk = Desk(rules)
    desk.send(deposit(at(), "1000"))
    alerts = desk.send(tx(at(days=150), "1", "credit", by="bank", kind="interest"))
    assert [(a.type, a.occurred_at) for a in alerts] == [("dormancy", at(days=100))]


def test_closed_client_is_not_watched(rules: Ruleset) -> None:
    desk = Desk(rules)
    desk.send(deposit(at(), "1000"), client_event(at(days=10), "closed"))
    assert desk.advance(at(days=400)) == []


def _lines(*values: dict[str, object]) -> list[bytes]:
    return [orjson.dumps({"topic": t, "key": k, "value": v}) for t, k, v in map(record, values)]


def test_replay_clock_is_the_watermark_of_all_clients(rules: Ruleset) -> None:
    """Another client's events move the replay clock past c-1's due time: the alert says the due time."""
    lines = _lines(
        deposit(at(), "1000", client="c-1"),
        deposit(at(days=50), "1000", client="c-2"),
        deposit(at(days=120), "1000", client="c-2"),
    )
    replay = Replay(rules)
    alerts = list(replay.run_lines(lines))
    assert [(a.client_id, a.type, a.occurred_at) for a in alerts] == [("c-1", "dormancy", at(days=100))]


def test_replay_until_advances_the_clock_at_the_end(rules: Ruleset) -> None:
    lines = _lines(deposit(at(), "1000"), client_event(at(), "onboarded"))
    assert list(Replay(rules).run_lines(lines, until=at(days=100) - US)) == []
    alerts = list(Replay(rules).run_lines(lines, until=at(days=190)))
    assert [(a.type, a.occurred_at) for a in alerts] == [("dormancy", at(days=100))]


@pytest.mark.parametrize("sweep_every", [1, 2, 1000])
def test_due_alert_is_the_same_however_late_the_sweep(rules: Ruleset, sweep_every: int) -> None:
    lines = _lines(
        deposit(at(), "1000", client="c-1"),
        *(deposit(at(days=d), "1", client="c-2") for d in range(90, 120, 3)),
    )
    alerts = list(Replay(rules, sweep_every=sweep_every).run_lines(lines))
    found = of_type(alerts, "dormancy")
    assert [(a.client_id, a.occurred_at) for a in found] == [("c-1", at(days=100))]

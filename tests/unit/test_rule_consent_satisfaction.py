"""Low satisfaction and consent (docs/rules.md, "Low satisfaction", "Consent").

Thresholds of tests/rules/thresholds.yaml: low_satisfaction for a score of 3 or
less, with a 10 h cooldown; large_inflow compares with the single limit of the
tier before it (mass 10,000, gold 20,000) and has a 6 h cooldown; gold starts
at 10,000, platinum at 100,000; the thank-you call is due 12 h after the first
transaction; a maturity alert comes 10 days before the maturity date; dormancy
after 100 days.
"""

from __future__ import annotations

from datetime import timedelta

import pytest

from handlers.ruleset import Ruleset
from schemas.alerts import Alert
from tests.unit.builders import Desk, at, client_event, deposit, interaction, maturing, of_type, one, tx, types

US = timedelta(microseconds=1)

# ------------------------------------------------------------------ low_satisfaction


@pytest.mark.parametrize(("score", "fires"), [(1, True), (3, True), (4, False), (5, False)])
def test_a_score_at_or_below_the_threshold(rules: Ruleset, score: int, fires: bool) -> None:
    desk = Desk(rules)
    alerts = desk.send(interaction(at(), "call", by="rm", channel="phone", satisfaction=score, event_id="i-1"))
    if not fires:
        assert of_type(alerts, "low_satisfaction") == []
        return
    alert = one(alerts, "low_satisfaction")
    assert alert.severity == "warning" and alert.occurred_at == at() and alert.source_event_ids == ["i-1"]
    assert alert.facts == {"satisfaction": str(score), "kind": "call", "channel": "phone", "alert_at_most": "3"}
    assert alert.titles == {
        "en": f"Low satisfaction ({score}/5) after call via phone",
        "zh-CN": f"客户满意度低（{score}/5）：电话沟通，渠道：电话",
    }


def test_a_complaint_with_a_low_score_raises_both(rules: Ruleset) -> None:
    alerts = Desk(rules).send(interaction(at(), "complaint", severity="low", channel="branch", satisfaction=1))
    assert types(alerts) == ["complaint", "low_satisfaction"]


def test_cooldown_10_hours(rules: Ruleset) -> None:
    desk = Desk(rules)
    times = [at(), at(hours=10) - US, at(hours=10)]
    found = [
        of_type(desk.send(interaction(t, "visit", satisfaction=2, channel="branch")), "low_satisfaction") for t in times
    ]
    assert [len(f) for f in found] == [1, 0, 1]
    assert desk.suppressions == [("low_satisfaction", "cooldown")]


# ------------------------------------------------------------------ consent


def service_only(desk: Desk, aum: str = "1000") -> list[Alert]:
    return desk.send(
        client_event(at(days=-2), "onboarded", rm_id="rm-1", contact_preference="service_only"),
        deposit(at(days=-2), aum),
    )


def test_opportunity_alerts_are_held_back_and_counted(rules: Ruleset) -> None:
    desk = Desk(rules)
    service_only(desk)
    alerts = desk.send(tx(at(), "15000", "credit", bank="external"))  # an inflow over 10,000 that makes it gold
    assert not of_type(alerts, "large_inflow") and not of_type(alerts, "tier_upgrade")
    assert desk.state().tier == "gold", "the tier moves all the same"
    assert sorted(desk.suppressions) == [("large_inflow", "consent"), ("tier_upgrade", "consent")]


def test_service_alerts_are_raised_as_before(rules: Ruleset) -> None:
    desk = Desk(rules)
    alerts = service_only(desk, "150000")  # platinum
    alerts += desk.send(
        tx(at(), "120000", bank="external"),  # large_outflow, aum_drain; and down to mass: tier_downgrade
        interaction(at(hours=1), "complaint", severity="low"),
        interaction(at(hours=2), "inquiry", satisfaction=1),
        maturing(at(hours=3), "td-1", "2026-04-01"),
    )
    alerts += desk.advance(at(days=200))
    raised = set(types(alerts))
    assert {"new_client_first_txn", "large_outflow", "aum_drain", "tier_downgrade", "complaint"} <= raised
    assert {"complaint_unanswered", "low_satisfaction", "product_maturity", "dormancy"} <= raised
    assert desk.suppressions == []


def test_latest_wins_null_clears_and_left_out_keeps(rules: Ruleset) -> None:
    desk = Desk(rules)
    service_only(desk)
    desk.send(client_event(at(), "profile_updated", segment="retail"))  # no contact_preference: still declined
    assert desk.state().service_only
    assert not desk.send(tx(at(hours=1), "12000", "credit", bank="external"))  # to gold, silently
    desk.send(client_event(at(hours=2), "profile_updated", contact_preference=None))  # cleared: any
    assert not desk.state().service_only
    assert types(desk.send(tx(at(hours=3), "30000", "credit", bank="external"))) == ["large_inflow"]
    desk.send(client_event(at(hours=4), "profile_updated", contact_preference="service_only"))
    assert desk.send(tx(at(days=1), "20000", "credit", bank="external")) == []
    desk.send(client_event(at(days=2), "profile_updated", contact_preference="any"))
    # 63,000 + 40,000: platinum
    assert sorted(types(desk.send(tx(at(days=3), "40000", "credit", bank="external")))) == [
        "large_inflow",
        "tier_upgrade",
    ]
    held = [("tier_upgrade", "consent"), ("large_inflow", "consent"), ("large_inflow", "consent")]
    assert desk.suppressions == held


def test_a_consent_hold_starts_no_cooldown(rules: Ruleset) -> None:
    desk = Desk(rules)
    service_only(desk, "15000")  # gold: limit 20,000
    assert desk.send(tx(at(), "20000", "credit", bank="external")) == []
    desk.send(client_event(at(hours=1), "profile_updated", contact_preference="any"))
    # within 6 h of the held-back inflow: raised, since that one started no cooldown
    assert types(desk.send(tx(at(hours=2), "20000", "credit", bank="external"))) == ["large_inflow"]
    assert desk.suppressions == [("large_inflow", "consent")]


@pytest.mark.parametrize("value", ["none", "marketing", "ANY", 1])
def test_unknown_preferences_are_dead_letters(rules: Ruleset, value: object) -> None:
    problem = Desk(rules).reject(client_event(at(), "profile_updated", contact_preference=value))
    assert problem.startswith("schema: contact_preference"), problem

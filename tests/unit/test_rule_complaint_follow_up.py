"""Complaint follow-up (docs/rules.md, "Complaint follow-up"): complaint_unanswered when no RM contact comes in time.

Thresholds of tests/rules/thresholds.yaml: the RM must make contact within
36 hours of a complaint, 6 hours of a high-severity one; platinum starts at AUM
100,000. RM contact is an interaction initiated by the RM, or a visit, call or
meeting that names an `rm_id`.
"""

from __future__ import annotations

from datetime import timedelta

import pytest

from handlers.ruleset import Ruleset, parse_rules
from tests.unit.builders import (
    THRESHOLDS,
    Desk,
    at,
    client_event,
    deposit,
    interaction,
    of_type,
    one,
    snooze,
    types,
)

US = timedelta(microseconds=1)
DUE = at(hours=36)
DUE_HIGH = at(hours=6)


def complained(desk: Desk, severity: str | None = "low", event_id: str = "cmp-1", **kw: object) -> None:
    desk.send(interaction(at(), "complaint", severity=severity, channel="branch", event_id=event_id, **kw))


def unanswered(desk: Desk, until: object) -> list[str]:
    return [a.severity for a in of_type(desk.advance(until), "complaint_unanswered")]  # type: ignore[arg-type]


def test_due_36_hours_after_a_complaint(rules: Ruleset) -> None:
    desk = Desk(rules)
    desk.send(deposit(at(days=-1), "20000"))  # gold
    complained(desk)
    assert unanswered(desk, DUE - US) == []
    alert = one(desk.advance(DUE), "complaint_unanswered")
    assert alert.severity == "warning" and alert.occurred_at == DUE and alert.tier == "gold"
    assert alert.facts == {
        "complaint_event_id": "cmp-1",
        "complained_at": at().isoformat(),
        "follow_up_hours": "36",
        "due_at": DUE.isoformat(),
    }
    assert alert.source_event_ids == ["cmp-1"]
    assert alert.titles == {"en": "Complaint not followed up within 36 hours", "zh-CN": "客户投诉 36 小时内未获回访"}
    assert unanswered(desk, at(days=30)) == [], "one per complaint"


def test_high_severity_is_due_in_6_hours_and_critical(rules: Ruleset) -> None:
    desk = Desk(rules)
    complained(desk, "high")
    assert unanswered(desk, DUE_HIGH - US) == []
    alert = one(desk.advance(DUE_HIGH), "complaint_unanswered")
    assert alert.severity == "critical" and alert.facts["follow_up_hours"] == "6"


def test_critical_for_a_client_at_platinum_or_above_at_the_due_time(rules: Ruleset) -> None:
    desk = Desk(rules)
    desk.send(deposit(at(days=-1), "20000"))
    complained(desk)
    desk.send(deposit(at(hours=1), "90000"))  # platinum after the complaint, before the due time
    assert unanswered(desk, DUE) == ["critical"]


@pytest.mark.parametrize(
    ("contact_at", "cancels"),
    [(DUE - US, True), (DUE, False), (at(), True), (at() - US, False)],
    ids=["just-before-due", "at-due", "at-complaint", "before-complaint"],
)
def test_rm_contact_before_the_due_time_cancels(rules: Ruleset, contact_at: object, cancels: bool) -> None:
    desk = Desk(rules)
    complained(desk)
    alerts = desk.send(interaction(contact_at, "call", by="rm", rm_id="rm-1"))  # type: ignore[arg-type]
    alerts += desk.advance(at(days=10))
    assert len(of_type(alerts, "complaint_unanswered")) == (0 if cancels else 1)


@pytest.mark.parametrize(
    ("kind", "by", "rm_id", "counts"),
    [
        ("call", "rm", None, True),
        ("message", "rm", None, True),
        ("visit", "customer", "rm-1", True),
        ("meeting", "customer", "rm-1", True),
        ("visit", "customer", None, False),
        ("inquiry", "customer", "rm-1", False),
        ("feedback", "customer", None, False),
    ],
)
def test_what_counts_as_rm_contact(rules: Ruleset, kind: str, by: str, rm_id: str | None, counts: bool) -> None:
    desk = Desk(rules)
    complained(desk)
    desk.send(interaction(at(hours=1), kind, by=by, rm_id=rm_id, channel="branch"))
    assert unanswered(desk, at(days=10)) == ([] if counts else ["warning"])


def test_a_complaint_the_rm_logged_is_not_its_own_follow_up(rules: Ruleset) -> None:
    desk = Desk(rules)
    complained(desk, event_id="first")
    # logged by the RM: RM contact, which answers the first complaint but not itself
    desk.send(interaction(at(hours=2), "complaint", by="rm", rm_id="rm-1", severity="low", event_id="second"))
    found = of_type(desk.advance(at(days=10)), "complaint_unanswered")
    assert [a.facts["complaint_event_id"] for a in found] == ["second"]


def test_one_contact_answers_every_earlier_complaint(rules: Ruleset) -> None:
    desk = Desk(rules)
    complained(desk, event_id="a")
    desk.send(interaction(at(hours=1), "complaint", severity="high", event_id="b"))
    desk.send(interaction(at(hours=2), "call", by="rm"))
    desk.send(interaction(at(hours=3), "complaint", severity="low", event_id="c"))  # after the contact
    found = of_type(desk.advance(at(days=10)), "complaint_unanswered")
    assert [a.facts["complaint_event_id"] for a in found] == ["c"]


def test_every_unanswered_complaint_is_its_own_alert(rules: Ruleset) -> None:
    desk = Desk(rules)
    complained(desk, event_id="a")
    desk.send(interaction(at(minutes=1), "complaint", event_id="b"))
    found = of_type(desk.advance(at(days=10)), "complaint_unanswered")
    assert [a.facts["complaint_event_id"] for a in found] == ["a", "b"]
    assert len({a.alert_id for a in found}) == 2


def test_never_held_back_by_cooldown_consent_snooze_or_closing(rules: Ruleset) -> None:
    strict = parse_rules(THRESHOLDS.read_text().replace("  complaint: 0", "  complaint: 0\n  complaint_unanswered: 48"))
    assert strict.source.cooldown_hours["complaint_unanswered"] == 48
    desk = Desk(strict)
    desk.send(client_event(at(days=-1), "onboarded", contact_preference="service_only"))
    complained(desk, event_id="a")
    desk.send(interaction(at(minutes=1), "complaint", event_id="b"))
    desk.send(client_event(at(minutes=2), "closed"))
    alerts = desk.advance(at(days=10))
    assert types(alerts) == ["complaint_unanswered", "complaint_unanswered"]
    assert desk.suppressed == []
    problem = Desk(rules).reject(snooze(at(), "complaint_unanswered", at(days=1)))
    assert "complaint_unanswered alerts are never snoozed" in problem

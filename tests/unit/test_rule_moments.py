"""Key moments (docs/rules.md, "Key moments"): complaint, large_inflow, new_client_first_txn, maturity, RM contact.

Thresholds of tests/rules/thresholds.yaml: tier floors gold 10,000, platinum
100,000, diamond 1,000,000, private 5,000,000 CNY; single limits mass 10,000 and
gold 20,000 (large_inflow compares with them); large_inflow cooldown 6 h; the
thank-you call is due 12 h after the first transaction; a maturity alert 10 days
before the maturity date; no RM contact for 60 days at platinum, 40 at diamond,
20 at private.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from handlers.ruleset import Ruleset, parse_rules
from tests.unit.builders import (
    THRESHOLDS,
    Desk,
    at,
    client_event,
    deposit,
    interaction,
    maturing,
    of_type,
    one,
    tx,
    types,
)

US = timedelta(microseconds=1)

# ------------------------------------------------------------------ complaint


@pytest.mark.parametrize(
    ("aum", "severity", "expected"),
    [
        (None, None, "warning"),  # not yet classified
        (None, "high", "critical"),
        ("1000", "low", "warning"),  # mass
        ("1000", "medium", "warning"),
        ("1000", "high", "critical"),
        ("50000", "medium", "warning"),  # gold
        ("100000", "low", "critical"),  # platinum
        ("1000000", None, "critical"),  # diamond
        ("5000000", "low", "critical"),  # private
    ],
)
def test_complaint_severity(rules: Ruleset, aum: str | None, severity: str | None, expected: str) -> None:
    desk = Desk(rules)
    if aum is not None:
        desk.send(deposit(at(days=-1), aum))
    alert = one(
        desk.send(interaction(at(), "complaint", severity=severity, channel="branch", event_id="c1")), "complaint"
    )
    assert alert.severity == expected
    assert alert.facts["severity"] == (severity or "unspecified")
    assert alert.facts["channel"] == "branch"
    assert alert.source_event_ids == ["c1"]
    assert alert.occurred_at == at()


def test_complaints_are_never_suppressed(rules: Ruleset) -> None:
    # even a rules file asking for a complaint cooldown cannot suppress one
    text = THRESHOLDS.read_text().replace("  complaint: 0", "  complaint: 24")
    assert "complaint: 24" in text
    strict = parse_rules(text)
    for ruleset in (rules, strict):
        desk = Desk(ruleset)
        alerts = desk.send(*(interaction(at(minutes=m), "complaint", severity="low") for m in range(3)))
        assert types(alerts) == ["complaint"] * 3
        assert desk.suppressed == []


# ---------------------------------------------------------------- large_inflow


@pytest.mark.parametrize(
    ("amount", "bank", "by", "fires"),
    [
        ("9999.99", "external", "customer", False),  # mass limit 10,000
        ("10000.00", "external", "customer", True),
        ("10000.01", "external", "customer", True),
        ("900000", "internal", "customer", False),  # from inside the bank
        ("900000", None, "customer", False),  # no counterparty: not known to be another bank
        ("900000", "external", "bank", False),  # bank posting
    ],
)
def test_large_inflow(rules: Ruleset, amount: str, bank: str | None, by: str, fires: bool) -> None:
    desk = Desk(rules)
    desk.send(deposit(at(days=-1), "1000"))
    alerts = desk.send(tx(at(), amount, "credit", bank=bank, by=by, event_id="in"))
    found = of_type(alerts, "large_inflow")
    if not fires:
        assert found == []
        return
    assert len(found) == 1
    assert found[0].severity == "info"
    assert found[0].facts == {"amount": amount, "limit": "10000.00", "counterparty_bank": "external"}
    assert found[0].source_event_ids == ["in"]


def test_large_inflow_uses_the_limit_of_the_tier_before(rules: Ruleset) -> None:
    desk = Desk(rules)
    desk.send(deposit(at(days=-1), "1000"))
    # 12,000 makes the client gold (limit 20,000), but it arrived while mass (limit 10,000)
    alerts = desk.send(tx(at(), "12000", "credit", bank="external"))
    assert sorted(types(alerts)) == ["large_inflow", "tier_upgrade"]
    assert one(alerts, "large_inflow").facts["limit"] == "10000.00"


def test_large_inflow_cooldown_6h(rules: Ruleset) -> None:
    desk = Desk(rules)
    desk.send(deposit(at(days=-1), "20000"))  # gold: limit 20,000, and still gold after 80,000
    first = desk.send(tx(at(), "20000", "credit", bank="external"))
    inside = desk.send(tx(at(hours=6) - US, "20000", "credit", bank="external"))
    after = desk.send(tx(at(hours=6), "20000", "credit", bank="external"))
    assert len(of_type(first, "large_inflow")) == 1
    assert of_type(inside, "large_inflow") == []
    assert len(of_type(after, "large_inflow")) == 1
    assert desk.suppressed == ["large_inflow"]


# ------------------------------------------------------- new_client_first_txn


def test_first_customer_transaction_after_onboarding(rules: Ruleset) -> None:
    desk = Desk(rules)
    desk.send(client_event(at(), "onboarded", rm_id="rm-7"))
    assert desk.send(tx(at(hours=1), "5", "credit", by="bank", kind="interest")) == []
    assert desk.send(interaction(at(hours=2), "inquiry")) == []
    when = at(days=3, hours=4, minutes=5)
    alert = one(desk.send(deposit(when, "100", event_id="first")), "new_client_first_txn")
    assert alert.severity == "info"
    assert alert.occurred_at == when
    assert alert.facts == {"onboarded_at": at().isoformat(), "due_by": (when + timedelta(hours=12)).isoformat()}
    assert alert.facts["due_by"] == "2026-03-06T01:05:00+00:00"
    assert alert.rm_id == "rm-7"
    assert alert.source_event_ids == ["first"]
    assert of_type(desk.send(deposit(at(days=4), "100")), "new_client_first_txn") == []


def test_no_first_transaction_alert_without_onboarding(rules: Ruleset) -> None:
    desk = Desk(rules)
    assert desk.send(deposit(at(), "100"), tx(at(hours=1), "10")) == []


# ----------------------------------------------------------- product_maturity


def test_product_maturity_due_ten_days_before_maturity_midnight_utc(rules: Ruleset) -> None:
    desk = Desk(rules)
    desk.send(maturing(at(), "td-1", "2026-04-01", event_id="m1"))
    due = datetime(2026, 3, 22, tzinfo=UTC)
    assert desk.advance(due - US) == []
    alert = one(desk.advance(due), "product_maturity")
    assert alert.severity == "info"
    assert alert.occurred_at == due
    assert alert.facts == {
        "product_id": "td-1",
        "maturity_date": "2026-04-01",
        "due_at": "2026-03-22T00:00:00+00:00",
        "amount": "100000",
        "currency": "CNY",
    }
    assert alert.source_event_ids == ["m1"]
    assert alert.rm_id is None
    # the same maturity announced again after its alert is not a new alert
    assert desk.send(maturing(at(days=30), "td-1", "2026-04-01")) == []
    assert desk.advance(datetime(2026, 6, 1, tzinfo=UTC)) == []


def test_product_maturity_rescheduled_before_it_fires(rules: Ruleset) -> None:
    desk = Desk(rules)
    desk.send(maturing(at(), "td-1", "2026-04-01"), maturing(at(days=1), "td-1", "2026-05-10"))
    alerts = desk.advance(datetime(2026, 6, 1, tzinfo=UTC))
    assert [(a.type, a.occurred_at) for a in alerts] == [("product_maturity", datetime(2026, 4, 30, tzinfo=UTC))]


def test_maturities_of_two_products_fire_in_due_order(rules: Ruleset) -> None:
    desk = Desk(rules)
    desk.send(maturing(at(), "td-2", "2026-05-01"), maturing(at(), "td-1", "2026-04-01"))
    alerts = desk.advance(datetime(2026, 6, 1, tzinfo=UTC))
    assert [a.facts["product_id"] for a in alerts] == ["td-1", "td-2"]


# -------------------------------------------------------------- no_rm_contact


@pytest.mark.parametrize(("aum", "days"), [("100000", 60), ("1000000", 40), ("5000000", 20)])
def test_no_rm_contact_from_tier_entry(rules: Ruleset, aum: str, days: int) -> None:
    desk = Desk(rules)
    desk.send(deposit(at(), aum))
    assert of_type(desk.advance(at(days=days) - US), "no_rm_contact") == []
    alert = one(desk.advance(at(days=days)), "no_rm_contact")
    assert alert.severity == "warning"
    assert alert.occurred_at == at(days=days)
    assert alert.facts == {
        "period_days": str(days),
        "tier_since": at().isoformat(),
        "last_rm_contact": "never",
        "due_at": at(days=days).isoformat(),
    }


@pytest.mark.parametrize("aum", ["1000", "99999.99"])
def test_no_rm_contact_not_watched_below_platinum(rules: Ruleset, aum: str) -> None:
    desk = Desk(rules)
    desk.send(deposit(at(), aum))
    assert of_type(desk.advance(at(days=400)), "no_rm_contact") == []


def test_no_rm_contact_counts_from_the_last_contact(rules: Ruleset) -> None:
    desk = Desk(rules)
    desk.send(deposit(at(), "100000"), interaction(at(days=30), "call", by="rm", rm_id="rm-1"))
    assert of_type(desk.advance(at(days=90) - US), "no_rm_contact") == []
    alert = one(desk.advance(at(days=90)), "no_rm_contact")
    assert alert.facts["last_rm_contact"] == at(days=30).isoformat()


def test_no_rm_contact_counts_from_tier_entry_when_later_than_the_contact(rules: Ruleset) -> None:
    desk = Desk(rules)
    desk.send(deposit(at(days=-20), "1000"), interaction(at(days=-10), "visit", by="rm", rm_id="rm-1"))
    desk.send(deposit(at(), "110000"))  # enters platinum
    assert of_type(desk.advance(at(days=60) - US), "no_rm_contact") == []
    assert one(desk.advance(at(days=60)), "no_rm_contact").facts["tier_since"] == at().isoformat()


def test_no_rm_contact_restarts_on_entering_a_higher_tier(rules: Ruleset) -> None:
    desk = Desk(rules)
    # platinum from day 0 (due at day 60), diamond from day 30: due at day 70, then every 40 days
    desk.send(deposit(at(), "150000"), deposit(at(days=30), "900000"))
    alerts = desk.advance(at(days=130))
    assert [a.occurred_at for a in of_type(alerts, "no_rm_contact")] == [at(days=70), at(days=110)]


def test_no_rm_contact_one_alert_per_overdue_period(rules: Ruleset) -> None:
    desk = Desk(rules)
    desk.send(deposit(at(), "100000"))
    alerts = of_type(desk.advance(at(days=130)), "no_rm_contact")
    assert [a.occurred_at for a in alerts] == [at(days=60), at(days=120)]
    assert desk.advance(at(days=130)) == []
    # a contact after the alert starts a new period
    desk.send(interaction(at(days=131), "meeting", by="rm", rm_id="rm-1"))
    assert [a.occurred_at for a in of_type(desk.advance(at(days=191)), "no_rm_contact")] == [at(days=191)]


@pytest.mark.parametrize(
    ("kind", "by", "rm_id", "contact"),
    [
        ("message", "rm", None, True),  # any RM-initiated interaction
        ("complaint", "rm", None, True),
        ("visit", "customer", "rm-1", True),  # a visit, call or meeting naming the RM
        ("call", "customer", "rm-1", True),
        ("meeting", "customer", "rm-1", True),
        ("call", "customer", None, False),
        ("inquiry", "customer", "rm-1", False),
        ("message", "customer", "rm-1", False),
    ],
)
def test_what_counts_as_rm_contact(rules: Ruleset, kind: str, by: str, rm_id: str | None, contact: bool) -> None:
    desk = Desk(rules)
    desk.send(deposit(at(), "100000"), interaction(at(days=30), kind, by=by, rm_id=rm_id))
    due = at(days=90) if contact else at(days=60)
    assert of_type(desk.advance(due - US), "no_rm_contact") == []
    assert one(desk.advance(due), "no_rm_contact").occurred_at == due

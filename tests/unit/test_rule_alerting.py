"""Client state, suppression and alerts (docs/rules.md): balances and FX, bank postings, duplicates, cooldowns,
and what every alert carries.

Thresholds of tests/rules/thresholds.yaml: 1 USD = 8.00 CNY, 1 EUR = 9.50,
1 HKD = 0.75; single limits mass 10,000, gold 20,000, platinum 100,000,
private 1,000,000 CNY (3x is critical); large_outflow cooldown 2 h; event ids
remembered for 10 days of event time.
"""

from __future__ import annotations

from datetime import timedelta

import pytest

from handlers.ruleset import Ruleset, parse_rules
from schemas.alerts import Alert
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

# ------------------------------------------------------------ balances and FX


@pytest.mark.parametrize(
    ("amount", "currency", "cents"),
    [
        ("1000.00", "USD", 800_000),  # 8.00
        ("1000.00", "EUR", 950_000),  # 9.50
        ("1000.00", "HKD", 75_000),  # 0.75
        ("0.01", "HKD", 1),  # 0.0075 rounds half-even to 0.01
        ("0.06", "HKD", 4),  # 0.045 rounds half-even to 0.04
        ("0.005", "CNY", 0),  # 0.005 rounds half-even to 0.00
        ("0.015", "CNY", 2),  # 0.015 rounds half-even to 0.02
        ("1000", "CNY", 100_000),
    ],
)
def test_amounts_convert_to_base_currency_cents(rules: Ruleset, amount: str, currency: str, cents: int) -> None:
    desk = Desk(rules)
    desk.send(deposit(at(), amount, currency=currency))
    assert desk.state().aum == cents


@pytest.mark.parametrize(
    ("usd", "cny"),
    [
        ("1249.99", None),  # x 8.00 = 9,999.92
        ("1249.99935", None),  # 9,999.9948 -> 9,999.99
        ("1249.999375", "10000.00"),  # 9,999.995 -> 10,000.00 (half-even): at the limit once in cents
        ("1250.01", "10000.08"),
    ],
)
def test_fx_amount_is_compared_in_base_currency(rules: Ruleset, usd: str, cny: str | None) -> None:
    desk = Desk(rules)
    desk.send(deposit(at(days=-1), "1000"))  # mass: limit 10,000 CNY
    found = of_type(desk.send(tx(at(), usd, currency="USD", bank="internal")), "large_outflow")
    if cny is None:
        assert found == []
        return
    assert [(a.facts["amount"], a.facts["limit"]) for a in found] == [(cny, "10000.00")]
    assert found[0].title == f"Outflow of {int(cny[:-3]):,}{cny[-3:]} CNY"


def test_balance_after_sets_the_account_balance_converted(rules: Ruleset) -> None:
    desk = Desk(rules)
    desk.send(deposit(at(), "1000", account="acct-1"))
    alerts = desk.send(deposit(at(hours=1), "100", account="acct-2", currency="USD", balance_after="10000"))
    # acct-2 holds USD 10,000 = CNY 80,000 whatever the arithmetic says; AUM 81,000 -> gold
    assert desk.state().accounts == {"acct-1": 100_000, "acct-2": 8_000_000}
    assert one(alerts, "tier_upgrade").facts["aum"] == "81000.00"
    desk.send(tx(at(hours=2), "100", account="acct-1", balance_after="5000"))
    assert desk.state().accounts["acct-1"] == 500_000
    assert desk.state().aum == 8_500_000


def test_debit_and_credit_arithmetic_without_balance_after(rules: Ruleset) -> None:
    desk = Desk(rules)
    desk.send(deposit(at(), "100.10"), tx(at(hours=1), "30.05"), tx(at(hours=2), "100", by="bank", kind="fee"))
    assert desk.state().aum == 10_010 - 3_005 - 10_000


def test_bank_postings_move_balances_but_are_not_activity_or_outflow(rules: Ruleset) -> None:
    desk = Desk(rules)
    desk.send(client_event(at(), "onboarded"))
    alerts = desk.send(tx(at(days=1), "2000000", "credit", by="bank", kind="interest", bank="external"))
    assert alerts == []  # first classification: silent; no inflow, no first transaction
    assert desk.state().tier == "diamond"
    assert desk.state().last_activity is None
    alerts = desk.send(tx(at(days=2), "1500000", "debit", by="bank", kind="fee", bank="external"))
    assert types(alerts) == ["tier_downgrade"]  # 500,000 left: platinum
    # dormancy (100 days) still counts from onboarding (no customer activity yet)
    assert one(desk.advance(at(days=100)), "dormancy").facts["counted_from"] == "onboarding"


# ----------------------------------------------------------------- duplicates


def test_repeated_event_id_is_ignored(rules: Ruleset) -> None:
    desk = Desk(rules)
    desk.send(deposit(at(days=-1), "250000"))  # platinum: limit 100,000; drain at 40% of 250,000
    debit = tx(at(), "100000", bank="external", event_id="e-1")
    first = desk.send(debit)
    assert sorted(types(first)) == ["aum_drain", "large_outflow"]
    aum = desk.state().aum
    assert desk.send(debit) == []
    assert desk.state().aum == aum, "not re-applied"
    assert desk.duplicates == 1


def test_duplicate_is_recognised_after_other_events_and_days(rules: Ruleset) -> None:
    desk = Desk(rules)
    complaint = interaction(at(), "complaint", event_id="i-9")
    assert types(desk.send(complaint)) == ["complaint"]
    desk.send(deposit(at(days=3), "10"), deposit(at(days=10), "10"))  # exactly 10 days of event time later
    assert desk.send(complaint) == []
    assert desk.duplicates == 1


def test_same_event_id_of_another_client_is_not_a_duplicate(rules: Ruleset) -> None:
    desk = Desk(rules)
    alerts = desk.send(
        interaction(at(), "complaint", client="c-1", event_id="x"),
        interaction(at(), "complaint", client="c-2", event_id="x"),
    )
    assert [a.client_id for a in alerts] == ["c-1", "c-2"]
    assert desk.duplicates == 0


# ------------------------------------------------------------------ cooldowns


def test_cooldown_suppresses_the_same_severity_within_two_hours(rules: Ruleset) -> None:
    desk = Desk(rules)
    desk.send(deposit(at(days=-1), "20000000"))  # private; limit 1,000,000
    big = "1000000"
    first = desk.send(tx(at(), big, bank="internal"))
    inside = desk.send(tx(at(hours=2) - US, big, bank="internal"))
    after = desk.send(tx(at(hours=2), big, bank="internal"))
    assert [a.severity for a in of_type(first + inside + after, "large_outflow")] == ["warning", "warning"]
    assert of_type(inside, "large_outflow") == []
    assert desk.suppressed.count("large_outflow") == 1


def test_cooldown_lets_a_higher_severity_through(rules: Ruleset) -> None:
    desk = Desk(rules)
    desk.send(deposit(at(days=-1), "20000000"))  # private; limit 1,000,000
    sent = []
    for minutes, bank in [(0, "internal"), (10, "external"), (20, "internal"), (30, "external"), (130, "external")]:
        sent += [
            (minutes, a.severity)
            for a in of_type(desk.send(tx(at(minutes=minutes), "1000000", bank=bank)), "large_outflow")
        ]
    # warning; critical escalates; warning and critical inside the two hours after the critical are suppressed;
    # a critical two hours after the last one sent goes out
    assert sent == [(0, "warning"), (10, "critical"), (130, "critical")]
    assert desk.suppressed.count("large_outflow") == 2


def test_cooldowns_are_per_client_and_type(rules: Ruleset) -> None:
    desk = Desk(rules)
    desk.send(deposit(at(days=-1), "90000", client="c-1"), deposit(at(days=-1), "90000", client="c-2"))  # gold
    alerts = desk.send(
        tx(at(), "20000", bank="internal", client="c-1"),
        tx(at(minutes=1), "20000", bank="internal", client="c-2"),
        tx(at(minutes=2), "20000", "credit", bank="external", client="c-1"),
    )
    assert [(a.client_id, a.type) for a in alerts] == [
        ("c-1", "large_outflow"),
        ("c-2", "large_outflow"),
        ("c-1", "large_inflow"),
    ]


def test_a_suppressed_alert_does_not_extend_the_cooldown(rules: Ruleset) -> None:
    desk = Desk(rules)
    desk.send(deposit(at(days=-1), "20000000"))
    times = [at(), at(minutes=100), at(minutes=120)]  # the one at 100 minutes is suppressed
    found = [of_type(desk.send(tx(t, "1000000", bank="internal")), "large_outflow") for t in times]
    assert [len(f) for f in found] == [1, 0, 1]


# ---------------------------------------------------------- what alerts carry


def _rich_history(desk: Desk) -> list[Alert]:
    alerts = desk.send(
        client_event(at(), "onboarded", rm_id="rm-7", event_id="k-1"),
        deposit(at(hours=1), "150000", event_id="t-1"),  # platinum
        maturing(at(hours=2), "td-1", "2026-05-01", event_id="k-2"),
        tx(at(days=1), "100000", bank="external", event_id="t-2"),  # to gold
        interaction(at(days=2), "complaint", severity="high", event_id="i-1"),
        tx(at(days=3), "100000", "credit", bank="external", event_id="t-3"),  # back to platinum
    )
    return alerts + desk.advance(at(days=200))


def test_alert_ids_are_deterministic_and_facts_are_text(rules: Ruleset) -> None:
    first = _rich_history(Desk(rules))
    second = _rich_history(Desk(rules))
    assert sorted(types(first)) == sorted(
        [
            "new_client_first_txn",
            "large_outflow",
            "aum_drain",
            "tier_downgrade",
            "complaint",
            "complaint_unanswered",  # high severity: no RM contact within 6 hours
            "large_inflow",
            "tier_upgrade",
            "product_maturity",
            "no_rm_contact",  # days 63, 123 and 183: 60 days from re-entering platinum
            "no_rm_contact",
            "no_rm_contact",
            "dormancy",
        ]
    )
    assert [a.model_dump(exclude={"detected_at"}) for a in first] == [
        a.model_dump(exclude={"detected_at"}) for a in second
    ]
    assert len({a.alert_id for a in first}) == len(first)
    for alert in first:
        assert all(isinstance(v, str) for v in alert.facts.values()), alert
        assert alert.rule_version == rules.rule_version
        assert alert.rm_id == "rm-7"
        assert alert.titles is not None and alert.title == alert.titles["en"]
        assert all("acct" not in title for title in alert.titles.values())
        assert Alert.model_validate_json(alert.model_dump_json()) == alert


def test_alert_id_depends_on_client_type_and_trigger(rules: Ruleset) -> None:
    def complaint_id(client: str, event_id: str) -> str:
        desk = Desk(rules)
        return one(desk.send(interaction(at(), "complaint", client=client, event_id=event_id)), "complaint").alert_id

    assert complaint_id("c-1", "e-1") == complaint_id("c-1", "e-1")
    assert complaint_id("c-1", "e-1") != complaint_id("c-1", "e-2")
    assert complaint_id("c-1", "e-1") != complaint_id("c-2", "e-1")
    # one event, two alert types: two ids
    desk = Desk(rules)
    desk.send(deposit(at(days=-1), "250000"))
    alerts = desk.send(tx(at(), "100000", bank="external", event_id="e-1"))  # large_outflow and aum_drain
    assert len({a.alert_id for a in alerts}) == len(alerts) == 2


def test_clock_alert_id_is_that_of_its_due_time_not_of_the_sweep(rules: Ruleset) -> None:
    early, late = Desk(rules), Desk(rules)
    for desk in (early, late):
        desk.send(deposit(at(), "1000"))
    on_time = one(early.advance(at(days=100)), "dormancy")
    much_later = one(late.advance(at(days=300)), "dormancy")
    assert on_time.model_dump(exclude={"detected_at"}) == much_later.model_dump(exclude={"detected_at"})
    # another quiet period is another alert
    early.send(deposit(at(days=101), "1"))
    assert one(early.advance(at(days=201)), "dormancy").alert_id != on_time.alert_id


def test_rule_version_follows_the_rules_content(rules: Ruleset) -> None:
    text = THRESHOLDS.read_text()
    assert parse_rules(text).rule_version == rules.rule_version
    changed = parse_rules(text.replace("large_outflow: 2", "large_outflow: 3"))
    assert changed.rule_version != rules.rule_version
    assert rules.rule_version.startswith("test-thresholds+")
    desk = Desk(changed)
    assert desk.send(interaction(at(), "complaint"))[0].rule_version == changed.rule_version


def test_rm_id_is_null_until_assigned_and_follows_reassignment(rules: Ruleset) -> None:
    desk = Desk(rules)
    assert desk.send(interaction(at(), "complaint"))[0].rm_id is None
    desk.send(client_event(at(minutes=1), "rm_assigned", rm_id="rm-1"))
    assert desk.send(interaction(at(minutes=2), "complaint"))[0].rm_id == "rm-1"
    desk.send(client_event(at(minutes=3), "profile_updated", segment="corporate"))
    assert desk.send(interaction(at(minutes=4), "complaint"))[0].rm_id == "rm-1", "a profile update keeps the RM"
    desk.send(client_event(at(minutes=5), "rm_assigned", rm_id=None))
    assert desk.send(interaction(at(minutes=6), "complaint"))[0].rm_id is None, "explicit unassignment"

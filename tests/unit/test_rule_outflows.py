"""Outflows (docs/rules.md, "Outflows"): large_outflow, outflow_velocity and aum_drain, thresholds and window edges.

Thresholds of tests/rules/thresholds.yaml: single limits mass 10,000, gold
20,000, platinum 100,000, diamond 300,000, private 1,000,000 CNY; a large
outflow is critical at 3x the limit or to another bank; velocity sums customer
debits over 5 days, warning at 3x the limit and critical at 5x; the drain watches
platinum and above, external customer debits over 20 days against 40% of the
highest AUM of those days. Cooldowns: large_outflow 2 h, outflow_velocity 12 h,
aum_drain 5 days.
"""

from __future__ import annotations

from datetime import timedelta

import pytest

from handlers.ruleset import Ruleset
from tests.unit.builders import Desk, at, deposit, interaction, of_type, one, tx, types


def client_with(rules: Ruleset, aum: str) -> Desk:
    """A client holding `aum` CNY, classified silently by its first deposit."""
    desk = Desk(rules)
    assert desk.send(deposit(at(days=-1), aum)) == []
    return desk


# ---------------------------------------------------------------- large_outflow


@pytest.mark.parametrize(
    ("amount", "bank", "severity"),
    [
        ("19999.99", "internal", None),  # gold single limit is 20,000
        ("20000.00", "internal", "warning"),
        ("20000.01", "internal", "warning"),
        ("59999.99", "internal", "warning"),
        ("60000.00", "internal", "critical"),  # 3x the limit
        ("19999.99", "external", None),
        ("20000.00", "external", "critical"),  # to another bank
    ],
)
def test_large_outflow_thresholds(rules: Ruleset, amount: str, bank: str, severity: str | None) -> None:
    desk = client_with(rules, "90000")
    alerts = desk.send(tx(at(), amount, bank=bank, event_id="big"))
    found = of_type(alerts, "large_outflow")
    if severity is None:
        assert found == []
        return
    assert len(found) == 1
    alert = found[0]
    assert alert.severity == severity
    assert alert.facts == {"amount": amount, "limit": "20000.00", "counterparty_bank": bank}
    assert alert.tier == "gold"
    assert alert.source_event_ids == ["big"]
    assert alert.occurred_at == at()


def test_large_outflow_without_counterparty_is_not_external(rules: Ruleset) -> None:
    desk = client_with(rules, "90000")
    alert = one(desk.send(tx(at(), "20000")), "large_outflow")
    assert alert.severity == "warning"
    assert alert.facts["counterparty_bank"] == "internal"


def test_limit_is_that_of_the_tier_before_the_event(rules: Ruleset) -> None:
    # platinum (limit 100,000) until this debit takes AUM to 70,000, which is gold (limit 20,000)
    desk = client_with(rules, "110000")
    alerts = desk.send(tx(at(), "40000", bank="internal"))
    assert types(alerts) == ["tier_downgrade"]
    # and the other way: the limit of a mass client applies to the debit of its first big day
    desk = client_with(rules, "9000")
    alert = one(desk.send(tx(at(), "10000", bank="internal")), "large_outflow")
    assert alert.facts["limit"] == "10000.00"
    assert alert.tier == "mass"


@pytest.mark.parametrize(
    ("aum", "limit"),
    # AUM chosen so that both debits leave the client in its tier
    [("1000", "10000"), ("90000", "20000"), ("900000", "100000"), ("4000000", "300000"), ("20000000", "1000000")],
)
def test_single_limit_per_tier(rules: Ruleset, aum: str, limit: str) -> None:
    desk = client_with(rules, aum)
    below = f"{int(limit) - 1}.99"
    assert of_type(desk.send(tx(at(), below, bank="internal")), "large_outflow") == []
    alert = one(desk.send(tx(at(hours=2), limit, bank="internal")), "large_outflow")
    assert alert.facts["limit"] == f"{limit}.00"


def test_bank_initiated_debits_are_not_outflows(rules: Ruleset) -> None:
    desk = client_with(rules, "90000")
    alerts = desk.send(*(tx(at(hours=h), "28000", by="bank", kind="fee", bank="external") for h in range(3)))
    assert types(alerts) == ["tier_downgrade"]  # the balance moved (6,000 left), no outflow rule fired
    assert desk.state().aum == 600_000
    assert desk.state().debits == []


# ------------------------------------------------------------- outflow_velocity


def test_velocity_warning_exactly_at_three_times_the_limit(rules: Ruleset) -> None:
    desk = client_with(rules, "900000")  # platinum: limit 100,000, warning at 300,000
    quiet = desk.send(
        tx(at(), "75000", bank="internal"),
        tx(at(days=1), "75000", bank="internal"),
        tx(at(days=2), "75000", bank="internal"),
        tx(at(days=3), "74999.99", bank="internal"),
    )
    assert quiet == []  # 299,999.99 in 5 days
    alert = one(desk.send(tx(at(days=4), "0.01", bank="internal", event_id="last")), "outflow_velocity")
    assert alert.severity == "warning"
    assert alert.facts == {
        "window_sum": "300000.00",
        "limit": "100000.00",
        "warning_at": "300000.00",
        "critical_at": "500000.00",
        "window_days": "5",
    }
    assert alert.source_event_ids == ["last"]
    assert alert.occurred_at == at(days=4)


@pytest.mark.parametrize(
    ("offset", "fires"),
    [
        (timedelta(days=5), False),  # the debit at t - 5d is outside (t - 5d, t]
        (timedelta(days=5) - timedelta(microseconds=1), True),
    ],
)
def test_velocity_window_edges(rules: Ruleset, offset: timedelta, fires: bool) -> None:
    desk = client_with(rules, "900000")
    desk.send(*(tx(at(days=d), "99999.99", bank="internal") for d in range(3)))
    alerts = desk.send(tx(at() + offset, "0.03", bank="internal"))
    found = of_type(alerts, "outflow_velocity")
    if fires:
        assert [a.facts["window_sum"] for a in found] == ["300000.00"]
    else:
        assert found == []  # 200,000.01


def test_velocity_escalates_to_critical_at_five_times_the_limit(rules: Ruleset) -> None:
    desk = client_with(rules, "900000")
    alerts = desk.send(*(tx(at(hours=h), "99999.99", bank="internal") for h in range(5)))
    alerts += desk.send(tx(at(hours=5), "0.05", bank="internal"))
    found = of_type(alerts, "outflow_velocity")
    assert [(a.severity, a.facts["window_sum"]) for a in found] == [
        ("warning", "399999.96"),  # at 299,999.97 nothing yet
        ("critical", "500000.00"),  # the warning at 499,999.95 was inside the 12 h cooldown
    ]
    assert desk.suppressed == ["outflow_velocity"]


def test_velocity_counts_customer_debits_only(rules: Ruleset) -> None:
    desk = client_with(rules, "900000")
    alerts = desk.send(
        tx(at(), "99999.99", bank="internal"),
        tx(at(hours=1), "150000", by="bank", kind="fee"),  # would make 349,999.98 with the two others
        tx(at(hours=2), "99999.99", bank="internal"),
        deposit(at(hours=3), "10"),
    )
    assert of_type(alerts, "outflow_velocity") == []


# -------------------------------------------------------------------- aum_drain


@pytest.mark.parametrize(("amount", "fires"), [("79999.99", False), ("80000.00", True)])
def test_drain_at_forty_percent_of_aum(rules: Ruleset, amount: str, fires: bool) -> None:
    desk = client_with(rules, "200000")  # platinum
    alerts = desk.send(tx(at(), amount, bank="external"))
    if not fires:
        assert alerts == []
        return
    alert = one(alerts, "aum_drain")
    assert alert.severity == "critical"
    assert alert.facts == {
        "external_outflows": "80000.00",
        "peak_aum": "200000.00",
        "fraction": "0.40",
        "threshold": "80000.00",
        "window_days": "20",
    }
    assert alert.tier == "platinum"


def test_drain_is_for_the_watched_tiers_only(rules: Ruleset) -> None:
    desk = client_with(rules, "40000")  # gold: half of it leaves, but the drain watches platinum and above
    assert desk.send(tx(at(), "19999.99", bank="external")) == []


def test_drain_counts_external_debits_only(rules: Ruleset) -> None:
    desk = client_with(rules, "300000")
    alerts = desk.send(
        tx(at(), "60000", bank="internal"),
        tx(at(hours=1), "60000", by="bank", kind="fee", bank="external"),
        tx(at(hours=2), "15000", bank="external"),
    )
    assert alerts == []  # 15,000 external < 120,000 (40% of 300,000); the three together would be 135,000


def test_drain_compares_with_the_highest_aum_of_the_window(rules: Ruleset) -> None:
    desk = client_with(rules, "500000")
    # 180,000 external is 44% of the 410,000 held before the second debit but 36% of the 500,000 held 8 days ago
    alerts = desk.send(tx(at(days=5), "90000", bank="external"), tx(at(days=8), "90000", bank="external"))
    assert of_type(alerts, "aum_drain") == []


def test_drain_peak_forgets_levels_that_ended_before_the_window(rules: Ruleset) -> None:
    desk = client_with(rules, "500000")  # held from day -1 to day 10
    desk.send(tx(at(days=10), "350000", bank="internal"))  # 150,000 from day 10 to day 20
    desk.send(deposit(at(days=20), "50000"))  # 200,000 from day 20
    # window (day 15, day 35]: the levels held in it were 150,000 and 200,000, not 500,000
    alert = one(desk.send(tx(at(days=35), "80000", bank="external")), "aum_drain")
    assert alert.facts["peak_aum"] == "200000.00"
    assert alert.facts["threshold"] == "80000.00"
    assert alert.facts["external_outflows"] == "80000.00"


@pytest.mark.parametrize(
    ("offset", "fires"),
    [
        (timedelta(days=20), False),  # first debit excluded: 40,000 vs 40% of 190,000
        (timedelta(days=20) - timedelta(microseconds=1), True),  # 100,000 vs 40% of 250,000
    ],
)
def test_drain_window_edges(rules: Ruleset, offset: timedelta, fires: bool) -> None:
    desk = client_with(rules, "250000")
    assert desk.send(tx(at(), "60000", bank="external")) == []
    alerts = desk.send(tx(at() + offset, "40000", bank="external"))
    found = of_type(alerts, "aum_drain")
    if fires:
        assert [(a.facts["external_outflows"], a.facts["peak_aum"]) for a in found] == [("100000.00", "250000.00")]
    else:
        assert found == []


def test_drain_window_of_a_late_transaction_keeps_its_debits(rules: Ruleset) -> None:
    # Across topics a transaction may arrive after an interaction stamped later:
    # its 20-day window must still hold the debits inside it.
    desk = client_with(rules, "250000")
    desk.send(tx(at(days=1), "60000", bank="external"))
    desk.send(interaction(at(days=30), "inquiry"))
    alert = one(desk.send(tx(at(days=20), "40000", bank="external")), "aum_drain")
    assert alert.facts["external_outflows"] == "100000.00"
    assert alert.facts["peak_aum"] == "250000.00"


def test_drain_cooldown_is_five_days(rules: Ruleset) -> None:
    desk = client_with(rules, "900000")  # platinum
    first = desk.send(tx(at(), "360000", bank="external"))
    assert types(of_type(first, "aum_drain")) == ["aum_drain"]
    again = desk.send(tx(at(days=5) - timedelta(microseconds=1), "10000", bank="external"))
    assert of_type(again, "aum_drain") == []
    later = desk.send(tx(at(days=5), "10000", bank="external"))
    assert types(of_type(later, "aum_drain")) == ["aum_drain"]

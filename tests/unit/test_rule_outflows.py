"""SPEC §4.2: large_outflow, outflow_velocity and aum_drain, thresholds and window edges."""

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
        ("99999.99", "internal", None),  # gold single limit is 100,000
        ("100000.00", "internal", "warning"),
        ("100000.01", "internal", "warning"),
        ("199999.99", "internal", "warning"),
        ("200000.00", "internal", "critical"),  # 2x the limit
        ("99999.99", "external", None),
        ("100000.00", "external", "critical"),  # to another bank
    ],
)
def test_large_outflow_thresholds(rules: Ruleset, amount: str, bank: str, severity: str | None) -> None:
    desk = client_with(rules, "400000")
    alerts = desk.send(tx(at(), amount, bank=bank, event_id="big"))
    found = of_type(alerts, "large_outflow")
    if severity is None:
        assert found == []
        return
    assert len(found) == 1
    alert = found[0]
    assert alert.severity == severity
    assert alert.facts == {"amount": amount, "limit": "100000.00", "counterparty_bank": bank}
    assert alert.tier == "gold"
    assert alert.source_event_ids == ["big"]
    assert alert.occurred_at == at()


def test_large_outflow_without_counterparty_is_not_external(rules: Ruleset) -> None:
    desk = client_with(rules, "400000")
    alert = one(desk.send(tx(at(), "100000")), "large_outflow")
    assert alert.severity == "warning"
    assert alert.facts["counterparty_bank"] == "internal"


def test_limit_is_that_of_the_tier_before_the_event(rules: Ruleset) -> None:
    # platinum (limit 500,000) until this debit takes AUM to 420,000, which is gold (limit 100,000)
    desk = client_with(rules, "520000")
    alerts = desk.send(tx(at(), "100000", bank="internal"))
    assert types(alerts) == ["tier_downgrade"]
    # and the other way: the limit of a mass client applies to the debit of its first big day
    desk = client_with(rules, "45000")
    alert = one(desk.send(tx(at(), "50000", bank="internal")), "large_outflow")
    assert alert.facts["limit"] == "50000.00"
    assert alert.tier == "mass"


@pytest.mark.parametrize(
    ("aum", "limit"),
    # AUM chosen so that both debits leave the client in its tier
    [("1000", "50000"), ("400000", "100000"), ("1900000", "500000"), ("5900000", "1000000"), ("20000000", "2000000")],
)
def test_single_limit_per_tier(rules: Ruleset, aum: str, limit: str) -> None:
    desk = client_with(rules, aum)
    below = f"{int(limit) - 1}.99"
    assert of_type(desk.send(tx(at(), below, bank="internal")), "large_outflow") == []
    alert = one(desk.send(tx(at(hours=2), limit, bank="internal")), "large_outflow")
    assert alert.facts["limit"] == f"{limit}.00"


def test_bank_initiated_debits_are_not_outflows(rules: Ruleset) -> None:
    desk = client_with(rules, "400000")
    alerts = desk.send(*(tx(at(hours=h), "120000", by="bank", kind="fee", bank="external") for h in range(3)))
    assert types(alerts) == ["tier_downgrade"]  # the balance moved (40,000 left), no outflow rule fired
    assert desk.state().aum == 4_000_000
    assert desk.state().debits == []


# ------------------------------------------------------------- outflow_velocity


def test_velocity_warning_exactly_at_twice_the_limit(rules: Ruleset) -> None:
    desk = client_with(rules, "450000")  # gold: limit 100,000, warning at 200,000
    quiet = desk.send(
        tx(at(), "50000", bank="internal"),
        tx(at(days=1), "50000", bank="internal"),
        tx(at(days=2), "50000", bank="internal"),
        tx(at(days=3), "49999.99", bank="internal"),
    )
    assert quiet == []  # 199,999.99 in 7 days
    alert = one(desk.send(tx(at(days=4), "0.01", bank="internal", event_id="last")), "outflow_velocity")
    assert alert.severity == "warning"
    assert alert.facts == {
        "window_sum": "200000.00",
        "limit": "100000.00",
        "warning_at": "200000.00",
        "critical_at": "400000.00",
        "window_days": "7",
    }
    assert alert.source_event_ids == ["last"]
    assert alert.occurred_at == at(days=4)


@pytest.mark.parametrize(
    ("offset", "fires"),
    [
        (timedelta(days=7), False),  # the debit at t - 7d is outside (t - 7d, t]
        (timedelta(days=7) - timedelta(microseconds=1), True),
    ],
)
def test_velocity_window_edges(rules: Ruleset, offset: timedelta, fires: bool) -> None:
    desk = client_with(rules, "450000")
    desk.send(tx(at(), "99999.99", bank="internal"), tx(at(days=1), "99999.99", bank="internal"))
    alerts = desk.send(tx(at() + offset, "0.02", bank="internal"))
    found = of_type(alerts, "outflow_velocity")
    if fires:
        assert [a.facts["window_sum"] for a in found] == ["200000.00"]
    else:
        assert found == []  # 100,000.01


def test_velocity_escalates_to_critical_at_four_times_the_limit(rules: Ruleset) -> None:
    desk = client_with(rules, "450000")
    alerts = desk.send(*(tx(at(hours=h), "99999.99", bank="internal") for h in range(4)))
    alerts += desk.send(tx(at(hours=4), "0.04", bank="internal"))
    found = of_type(alerts, "outflow_velocity")
    assert [(a.severity, a.facts["window_sum"]) for a in found] == [
        ("warning", "299999.97"),  # at 199,999.98 nothing yet
        ("critical", "400000.00"),  # the warning at 399,999.96 was inside the 24 h cooldown
    ]
    assert desk.suppressed == ["outflow_velocity"]


def test_velocity_counts_customer_debits_only(rules: Ruleset) -> None:
    desk = client_with(rules, "450000")
    alerts = desk.send(
        tx(at(), "99999.99", bank="internal"),
        tx(at(hours=1), "150000", by="bank", kind="fee"),
        tx(at(hours=2), "99999.99", bank="internal"),
        deposit(at(hours=3), "10"),
    )
    assert of_type(alerts, "outflow_velocity") == []


# -------------------------------------------------------------------- aum_drain


@pytest.mark.parametrize(("amount", "fires"), [("29999.99", False), ("30000.00", True)])
def test_drain_at_thirty_percent_of_aum(rules: Ruleset, amount: str, fires: bool) -> None:
    desk = client_with(rules, "100000")  # gold
    alerts = desk.send(tx(at(), amount, bank="external"))
    if not fires:
        assert alerts == []
        return
    alert = one(alerts, "aum_drain")
    assert alert.severity == "critical"
    assert alert.facts == {
        "external_outflows": "30000.00",
        "peak_aum": "100000.00",
        "fraction": "0.30",
        "threshold": "30000.00",
        "window_days": "30",
    }
    assert alert.tier == "gold"


def test_drain_is_for_gold_and_above(rules: Ruleset) -> None:
    desk = client_with(rules, "40000")  # mass
    assert desk.send(tx(at(), "20000", bank="external")) == []


def test_drain_counts_external_debits_only(rules: Ruleset) -> None:
    desk = client_with(rules, "100000")
    alerts = desk.send(
        tx(at(), "20000", bank="internal"),
        tx(at(hours=1), "20000", by="bank", kind="fee", bank="external"),
        tx(at(hours=2), "15000", bank="external"),
    )
    assert alerts == []  # 15,000 external < 30,000


def test_drain_compares_with_the_highest_aum_of_the_window(rules: Ruleset) -> None:
    desk = client_with(rules, "200000")
    # 55,000 external is 36.7% of the current 150,000 but 27.5% of the 200,000 held 10 days ago
    alerts = desk.send(tx(at(days=5), "50000", bank="external"), tx(at(days=10), "5000", bank="external"))
    assert of_type(alerts, "aum_drain") == []


def test_drain_peak_forgets_levels_that_ended_before_the_window(rules: Ruleset) -> None:
    desk = client_with(rules, "200000")  # held from day -1 to day 10
    desk.send(tx(at(days=10), "150000", bank="internal"))  # 50,000 from day 10 to day 20
    desk.send(deposit(at(days=20), "30000"))  # 80,000 from day 20
    # window (day 15, day 45]: the levels held in it were 50,000 and 80,000, not 200,000
    alert = one(desk.send(tx(at(days=45), "30000", bank="external")), "aum_drain")
    assert alert.facts["peak_aum"] == "80000.00"
    assert alert.facts["threshold"] == "24000.00"
    assert alert.facts["external_outflows"] == "30000.00"


@pytest.mark.parametrize(
    ("offset", "fires"),
    [
        (timedelta(days=30), False),  # first debit excluded: 30,000 vs 30% of 240,000
        (timedelta(days=30) - timedelta(microseconds=1), True),  # 90,000 vs 30% of 300,000
    ],
)
def test_drain_window_edges(rules: Ruleset, offset: timedelta, fires: bool) -> None:
    desk = client_with(rules, "300000")
    assert desk.send(tx(at(), "60000", bank="external")) == []
    alerts = desk.send(tx(at() + offset, "30000", bank="external"))
    found = of_type(alerts, "aum_drain")
    if fires:
        assert [(a.facts["external_outflows"], a.facts["peak_aum"]) for a in found] == [("90000.00", "300000.00")]
    else:
        assert found == []


def test_drain_window_of_a_late_transaction_keeps_its_debits(rules: Ruleset) -> None:
    # Across topics a transaction may arrive after an interaction stamped later:
    # its 30-day window must still hold the debits inside it.
    desk = client_with(rules, "300000")
    desk.send(tx(at(days=1), "40000", bank="external"))
    desk.send(interaction(at(days=40), "inquiry"))
    alert = one(desk.send(tx(at(days=30), "50000", bank="external")), "aum_drain")
    assert alert.facts["external_outflows"] == "90000.00"
    assert alert.facts["peak_aum"] == "300000.00"


def test_drain_cooldown_is_seven_days(rules: Ruleset) -> None:
    desk = client_with(rules, "1000000")  # platinum
    first = desk.send(tx(at(), "300000", bank="external"))
    assert types(of_type(first, "aum_drain")) == ["aum_drain"]
    again = desk.send(tx(at(days=7) - timedelta(microseconds=1), "10000", bank="external"))
    assert of_type(again, "aum_drain") == []
    later = desk.send(tx(at(days=7), "10000", bank="external"))
    assert types(of_type(later, "aum_drain")) == ["aum_drain"]

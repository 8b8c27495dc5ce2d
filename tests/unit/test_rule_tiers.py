"""Tiers (docs/rules.md, "Tiers"): the ladder, first classification, upgrades (skipping included) and hysteresis.

Thresholds of tests/rules/thresholds.yaml: floors gold 10,000, platinum
100,000, diamond 1,000,000, private 5,000,000 CNY; a tier is left downwards only
below floor x (1 - 0.20). Downgrades from diamond and private are critical.
"""

from __future__ import annotations

import pytest

from handlers.ruleset import Ruleset
from tests.unit.builders import Desk, at, deposit, one, tx


def fee(day: float, amount: str) -> dict[str, object]:
    """A bank-initiated debit: moves AUM without any outflow rule looking at it."""
    return tx(at(days=day), amount, "debit", by="bank", kind="fee")


def test_first_classification_is_silent_and_enters_the_tier(rules: Ruleset) -> None:
    desk = Desk(rules)
    assert desk.send(deposit(at(), "150000")) == []
    state = desk.state()
    assert state.tier == "platinum"
    assert state.aum == 15_000_000
    assert state.tier_since == desk.clock


@pytest.mark.parametrize(
    ("second", "expected"),
    [
        ("8999.99", None),  # AUM 9,999.99: just below the gold floor of 10,000
        ("9000.00", "10000.00"),  # exactly at the floor
        ("9000.01", "10000.01"),  # just above
    ],
)
def test_upgrade_at_the_floor(rules: Ruleset, second: str, expected: str | None) -> None:
    desk = Desk(rules)
    desk.send(deposit(at(), "1000"))
    assert desk.state().tier == "mass"
    alerts = desk.send(deposit(at(hours=1), second))
    if expected is None:
        assert alerts == []
        assert desk.state().tier == "mass"
        return
    alert = one(alerts, "tier_upgrade")
    assert alert.severity == "info"
    assert alert.facts == {"from": "mass", "to": "gold", "aum": expected, "floor": "10000.00"}
    assert alert.tier == "gold"
    assert alert.occurred_at == at(hours=1)
    assert desk.state().tier == "gold"


def test_skipping_tiers_is_one_alert_to_the_final_tier(rules: Ruleset) -> None:
    desk = Desk(rules)
    desk.send(deposit(at(), "1000"))
    alerts = desk.send(deposit(at(days=1), "5000000"))
    assert [(a.type, a.facts["from"], a.facts["to"]) for a in alerts] == [("tier_upgrade", "mass", "private")]
    assert alerts[0].facts["aum"] == "5001000.00"
    assert alerts[0].facts["floor"] == "5000000.00"


@pytest.mark.parametrize(
    ("fees", "expected"),
    [
        # platinum floor 100,000; it is left only below 80,000 (floor x 0.8)
        (["10000"], None),  # 90,000: below the floor, inside the band
        (["20000"], None),  # 80,000.00 exactly: not below
        (["20000.01"], "79999.99"),  # just below the band
        (["10000", "5000", "5000.01"], "79999.99"),  # drifting down through the band
    ],
)
def test_downgrade_only_below_the_hysteresis_band(rules: Ruleset, fees: list[str], expected: str | None) -> None:
    desk = Desk(rules)
    desk.send(deposit(at(), "100000"))
    assert desk.state().tier == "platinum"
    alerts = []
    for i, amount in enumerate(fees, start=1):
        alerts += desk.send(fee(i, amount))
    if expected is None:
        assert alerts == []
        assert desk.state().tier == "platinum"
        return
    alert = one(alerts, "tier_downgrade")
    assert alert.severity == "warning"
    assert alert.facts["from"] == "platinum"
    assert alert.facts["to"] == "gold"
    assert alert.facts["aum"] == expected
    assert alert.facts["floor"] == "100000.00"
    assert alert.facts["downgrade_below"] == "80000.00"
    assert alert.tier == "gold"


def test_no_flapping_at_the_boundary(rules: Ruleset) -> None:
    desk = Desk(rules)
    desk.send(deposit(at(), "100000"))
    alerts = []
    for day in range(1, 11):
        alerts += desk.send(fee(day, "1000"))  # 99,000 .. 90,000
        alerts += desk.send(deposit(at(days=day, hours=1), "1000"))  # back to 100,000
    assert alerts == []
    assert desk.state().tier == "platinum"


@pytest.mark.parametrize(
    ("start", "drop", "from_tier", "to_tier", "severity"),
    [
        ("12000", "4000.01", "gold", "mass", "warning"),  # 7,999.99 < 8,000
        ("100000", "25000", "platinum", "gold", "warning"),  # 75,000
        ("1000000", "200000.01", "diamond", "platinum", "critical"),  # 799,999.99 < 800,000
        ("5000000", "1000000.01", "private", "diamond", "critical"),  # 3,999,999.99 < 4,000,000
        ("5000000", "4950000", "private", "gold", "critical"),  # 50,000: skips down to the tier it falls in
        ("1000000", "995000", "diamond", "mass", "critical"),  # 5,000
    ],
)
def test_downgrade_lands_in_the_tier_aum_falls_in(
    rules: Ruleset, start: str, drop: str, from_tier: str, to_tier: str, severity: str
) -> None:
    desk = Desk(rules)
    desk.send(deposit(at(), start))
    assert desk.state().tier == from_tier
    alerts = desk.send(fee(1, drop))
    assert [(a.type, a.severity, a.facts["from"], a.facts["to"]) for a in alerts] == [
        ("tier_downgrade", severity, from_tier, to_tier)
    ]
    assert desk.state().tier == to_tier


def test_back_up_after_a_downgrade_is_an_upgrade(rules: Ruleset) -> None:
    desk = Desk(rules)
    desk.send(deposit(at(), "100000"))
    desk.send(fee(1, "25000"))
    alerts = desk.send(deposit(at(days=2), "25000"))
    assert [(a.type, a.facts["from"], a.facts["to"]) for a in alerts] == [("tier_upgrade", "gold", "platinum")]
    assert desk.state().tier_since == desk.clock

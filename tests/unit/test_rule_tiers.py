"""SPEC §4.1: the tier ladder, first classification, upgrades (skipping included) and hysteresis."""

from __future__ import annotations

import pytest

from handlers.ruleset import Ruleset
from tests.unit.builders import Desk, at, deposit, one, tx


def fee(day: float, amount: str) -> dict[str, object]:
    """A bank-initiated debit: moves AUM without any outflow rule looking at it."""
    return tx(at(days=day), amount, "debit", by="bank", kind="fee")


def test_first_classification_is_silent_and_enters_the_tier(rules: Ruleset) -> None:
    desk = Desk(rules)
    assert desk.send(deposit(at(), "650000")) == []
    state = desk.state()
    assert state.tier == "platinum"
    assert state.aum == 65_000_000
    assert state.tier_since == desk.clock


@pytest.mark.parametrize(
    ("second", "expected"),
    [
        ("48999.99", None),  # AUM 49,999.99: just below the gold floor
        ("49000.00", "50000.00"),  # exactly at the floor
        ("49000.01", "50000.01"),  # just above
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
    assert alert.facts == {"from": "mass", "to": "gold", "aum": expected, "floor": "50000.00"}
    assert alert.tier == "gold"
    assert alert.occurred_at == at(hours=1)
    assert desk.state().tier == "gold"


def test_skipping_tiers_is_one_alert_to_the_final_tier(rules: Ruleset) -> None:
    desk = Desk(rules)
    desk.send(deposit(at(), "1000"))
    alerts = desk.send(deposit(at(days=1), "6000000"))
    assert [(a.type, a.facts["from"], a.facts["to"]) for a in alerts] == [("tier_upgrade", "mass", "private")]
    assert alerts[0].facts["aum"] == "6001000.00"
    assert alerts[0].facts["floor"] == "6000000.00"


@pytest.mark.parametrize(
    ("fees", "expected"),
    [
        # platinum floor 500,000; it is left only below 450,000 (floor x 0.9)
        (["20000"], None),  # 480,000: below the floor, inside the band
        (["50000"], None),  # 450,000.00 exactly: not below
        (["50000.01"], "449999.99"),  # just below the band
        (["20000", "20000", "10000.01"], "449999.99"),  # drifting down through the band
    ],
)
def test_downgrade_only_below_the_hysteresis_band(rules: Ruleset, fees: list[str], expected: str | None) -> None:
    desk = Desk(rules)
    desk.send(deposit(at(), "500000"))
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
    assert alert.facts["floor"] == "500000.00"
    assert alert.facts["downgrade_below"] == "450000.00"
    assert alert.tier == "gold"


def test_no_flapping_at_the_boundary(rules: Ruleset) -> None:
    desk = Desk(rules)
    desk.send(deposit(at(), "500000"))
    alerts = []
    for day in range(1, 11):
        alerts += desk.send(fee(day, "1000"))  # 499,000 .. 490,000
        alerts += desk.send(deposit(at(days=day, hours=1), "1000"))  # back to 500,000
    assert alerts == []
    assert desk.state().tier == "platinum"


@pytest.mark.parametrize(
    ("start", "drop", "from_tier", "to_tier", "severity"),
    [
        ("60000", "15000.01", "gold", "mass", "warning"),  # 44,999.99 < 45,000
        ("500000", "60000", "platinum", "gold", "warning"),  # 440,000
        ("2000000", "200000.01", "diamond", "platinum", "critical"),  # 1,799,999.99 < 1,800,000
        ("6000000", "600000.01", "private", "diamond", "critical"),  # 5,399,999.99 < 5,400,000
        ("6000000", "5900000", "private", "gold", "critical"),  # 100,000: skips down to the tier it falls in
        ("2000000", "1960000", "diamond", "mass", "critical"),  # 40,000
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
    desk.send(deposit(at(), "500000"))
    desk.send(fee(1, "60000"))
    alerts = desk.send(deposit(at(days=2), "60000"))
    assert [(a.type, a.facts["from"], a.facts["to"]) for a in alerts] == [("tier_upgrade", "gold", "platinum")]
    assert desk.state().tier_since == desk.clock

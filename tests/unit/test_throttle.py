"""Failure budgets: per address and global, refilled over time, refusals spend nothing."""

from __future__ import annotations

import pytest

from handlers.throttle import FailureBudget


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _budget(clock: Clock, **overrides: float) -> FailureBudget:
    values: dict[str, float] = {
        "per_address_burst": 3,
        "per_address_per_second": 0.5,
        "global_burst": 5,
        "global_per_second": 1.0,
    }
    values.update(overrides)
    return FailureBudget(clock=clock, max_addresses=100, **values)  # type: ignore[arg-type]


def test_an_address_is_refused_after_its_burst_and_recovers_at_its_rate() -> None:
    clock = Clock()
    budget = _budget(clock)
    for _ in range(3):
        assert budget.check("10.0.0.1") is None
        budget.spend("10.0.0.1")
    refusal = budget.check("10.0.0.1")
    assert refusal is not None and refusal.limit == "address"
    assert refusal.retry_after == pytest.approx(2.0)  # one attempt back at 0.5/s
    assert budget.check("10.0.0.2") is None  # another address is not affected
    clock.now += 2.0
    assert budget.check("10.0.0.1") is None


def test_the_global_budget_stops_many_addresses_and_refusals_spend_nothing() -> None:
    clock = Clock()
    budget = _budget(clock)
    for i in range(5):
        budget.spend(f"10.0.1.{i}")
    refusal = budget.check("10.0.9.9")
    assert refusal is not None and refusal.limit == "global" and refusal.retry_after == pytest.approx(1.0)
    clock.now += 1.0
    assert budget.check("10.0.9.9") is None


def test_a_refused_address_does_not_drain_the_global_budget() -> None:
    clock = Clock()
    budget = _budget(clock, global_burst=4)
    for _ in range(3):
        budget.spend("attacker")
    for _ in range(1000):  # refused before any check: nothing spent
        assert budget.check("attacker") is not None
    assert budget.check("someone-else") is None


def test_the_address_table_is_bounded() -> None:
    clock = Clock()
    budget = FailureBudget(
        per_address_burst=1,
        per_address_per_second=0.001,
        global_burst=10**6,
        global_per_second=10**6,
        max_addresses=10,
        clock=clock,
    )
    for i in range(50):
        budget.spend(f"a{i}")
    assert len(budget._addresses) == 10
    assert budget.check("a49") is not None and budget.check("a0") is None

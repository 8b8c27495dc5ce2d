"""The shipped rules file holds the documented defaults (docs/rules.md), every one of them.

This is the only unit test that reads rules/default.yaml for its values: the
rule tests run tests/rules/thresholds.yaml and state their thresholds, so a
change of a business default fails here, and here only, until docs/rules.md and
this test agree with it.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from handlers.ruleset import load_rules
from streams.settings import DEFAULT_RULES

US_PER_HOUR = 3600 * 10**6
US_PER_DAY = 24 * US_PER_HOUR

DOCUMENTED_DEFAULTS: dict[str, Any] = {
    "version": "2026.1",
    "base_currency": "CNY",
    "fx_rates": {"CNY": 1, "USD": "7.10", "EUR": "7.70", "HKD": "0.91", "GBP": "9.00", "JPY": "0.048", "SGD": "5.30"},
    "tiers": {
        "floors": {"mass": 0, "gold": 50_000, "platinum": 500_000, "diamond": 2_000_000, "private": 6_000_000},
        "downgrade_buffer": "0.10",
        "single_limits": {
            "mass": 50_000,
            "gold": 100_000,
            "platinum": 500_000,
            "diamond": 1_000_000,
            "private": 2_000_000,
        },
    },
    "outflows": {
        "velocity_window_days": 7,
        "velocity_warning_multiple": 2,
        "velocity_critical_multiple": 4,
        "large_critical_multiple": 2,
        "drain_window_days": 30,
        "drain_fraction": "0.30",
        "drain_min_tier": "gold",
    },
    "dormancy": {"days": {"mass": 180, "gold": 180, "platinum": 180, "diamond": 180, "private": 90}},
    "rm_contact": {"days": {"platinum": 90, "diamond": 60, "private": 30}},
    "maturity": {"notice_days": 7},
    "first_transaction": {"call_within_hours": 24},
    "cooldown_hours": {
        "large_outflow": 1,
        "outflow_velocity": 24,
        "aum_drain": 168,
        "large_inflow": 24,
        "low_satisfaction": 24,
        "complaint": 0,
    },
    "dedupe_days": 7,
    "notify": {
        "daily_push_budget": 15,
        "quiet_hours": {"start": "21:00", "end": "08:00"},
        "digest_at": "08:00",
        "remember_days": 7,
    },
    "timezone": "Asia/Shanghai",
    "locale": "en",
    "birthday": {"min_tier": "platinum", "notice_days": 3},
    "complaint": {"follow_up_hours": 24, "high_severity_follow_up_hours": 4},
    "satisfaction": {"alert_at_most": 2},
    "priority": {
        "severity": {"critical": 70, "warning": 40, "info": 10},
        "tier": {"private": 25, "diamond": 20, "platinum": 15, "gold": 5, "mass": 0},
        "type": {"complaint": 5, "complaint_unanswered": 5, "aum_drain": 5},
    },
    "sla_hours": {
        "complaint": 24,
        "complaint_unanswered": 4,
        "new_client_first_txn": 24,
        "large_outflow": 24,
        "aum_drain": 24,
    },
    "sla_default_hours": 72,
    "sla_due_soon_fraction": "0.25",
}


def _exact(value: Any) -> Any:
    """Numbers as Decimal, so 7.1 and "7.10" compare equal and 7.1 and 7.2 do not."""
    if isinstance(value, dict):
        return {k: _exact(v) for k, v in value.items()}
    if isinstance(value, str):
        try:
            return Decimal(value)
        except ArithmeticError:
            return value
    if isinstance(value, int | float):
        return Decimal(str(value))
    return value


def test_the_shipped_file_is_exactly_the_documented_defaults() -> None:
    shipped = load_rules(DEFAULT_RULES).source.model_dump(mode="json")
    assert _exact(shipped) == _exact(DOCUMENTED_DEFAULTS)


def test_the_defaults_compile_to_the_units_the_rules_compare() -> None:
    rules = load_rules(DEFAULT_RULES)
    assert rules.rule_version.startswith("2026.1+")
    assert rules.floors == {
        "mass": 0,
        "gold": 5_000_000,
        "platinum": 50_000_000,
        "diamond": 200_000_000,
        "private": 600_000_000,
    }  # cents
    assert rules.downgrade_below["platinum"] == 45_000_000
    assert rules.limits["platinum"] == 50_000_000 and rules.limits["private"] == 200_000_000
    assert rules.cooldowns["large_outflow"] == US_PER_HOUR
    assert rules.cooldowns["aum_drain"] == 7 * US_PER_DAY
    assert rules.cooldowns["complaint"] == 0
    assert rules.cooldowns["tier_upgrade"] == 0, "types without a cooldown in the file have none"
    assert rules.dormancy["private"] == 90 * US_PER_DAY and rules.dormancy["gold"] == 180 * US_PER_DAY
    assert set(rules.rm_contact) == {"platinum", "diamond", "private"}
    assert rules.dedupe == 7 * US_PER_DAY
    assert rules.cooldowns["low_satisfaction"] == 24 * US_PER_HOUR
    assert rules.cooldowns["complaint_unanswered"] == 0, "complaint follow-ups are never held back"
    assert rules.timezone.key == "Asia/Shanghai" and rules.title_index == 0
    assert rules.follow_up == 24 * US_PER_HOUR and rules.follow_up_high == 4 * US_PER_HOUR
    assert rules.birthday_notice_days == 3 and rules.satisfaction_at_most == 2

    assert rules.sla["complaint"] == 24 * US_PER_HOUR and rules.sla["large_outflow"] == 24 * US_PER_HOUR
    assert rules.sla["new_client_first_txn"] == 24 * US_PER_HOUR and rules.sla["aum_drain"] == 24 * US_PER_HOUR
    assert rules.sla["complaint_unanswered"] == 4 * US_PER_HOUR
    assert rules.sla["dormancy"] == 72 * US_PER_HOUR and rules.sla["tier_upgrade"] == 72 * US_PER_HOUR


def test_the_default_priorities() -> None:
    """critical 70 / warning 40 / info 10, + private 25 / diamond 20 / platinum 15 / gold 5, + 5 for complaints
    and drains, capped at 100."""
    priority = load_rules(DEFAULT_RULES).priorities
    assert priority[("complaint", "critical", "private")] == 100
    assert priority[("aum_drain", "critical", "diamond")] == 95
    assert priority[("complaint_unanswered", "warning", "gold")] == 50
    assert priority[("large_outflow", "warning", "platinum")] == 55
    assert priority[("birthday", "info", "platinum")] == 25
    assert priority[("tier_upgrade", "info", None)] == 10, "a null tier scores 0"
    assert priority[("dormancy", "info", "mass")] == 10
    assert max(priority.values()) == 100 and min(priority.values()) == 10

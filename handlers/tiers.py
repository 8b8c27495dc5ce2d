"""Tier ladder with hysteresis (docs/rules.md, "Tiers"): up at once, down only well below the floor."""

from __future__ import annotations

from handlers import titles
from handlers.alerting import AlertContext
from handlers.money import cents_to_str
from handlers.ruleset import TIER_RANK

CRITICAL_DOWNGRADE_FROM = frozenset({"diamond", "private"})


def reclassify(ctx: AlertContext, occurred_us: int, event_id: str) -> None:
    """Re-tier after AUM changed; the first classification is silent."""
    rules, state = ctx.rules, ctx.state
    target = rules.tier_for(state.aum)
    current = state.tier
    if current is None:
        state.tier, state.tier_since = target, occurred_us
        return
    if TIER_RANK[target] > TIER_RANK[current]:
        state.tier, state.tier_since = target, occurred_us
        floor = rules.floors[target]
        ctx.raise_alert(
            "tier_upgrade",
            "info",
            occurred_us,
            event_id,
            titles.tier_upgrade(current, target, state.aum, rules.base_currency),
            {"from": current, "to": target, "aum": cents_to_str(state.aum), "floor": cents_to_str(floor)},
            [event_id],
        )
        return
    threshold = rules.downgrade_below[current]
    if TIER_RANK[target] < TIER_RANK[current] and state.aum < threshold:
        state.tier, state.tier_since = target, occurred_us
        severity = "critical" if current in CRITICAL_DOWNGRADE_FROM else "warning"
        ctx.raise_alert(
            "tier_downgrade",
            severity,
            occurred_us,
            event_id,
            titles.tier_downgrade(current, target, state.aum, rules.base_currency),
            {
                "from": current,
                "to": target,
                "aum": cents_to_str(state.aum),
                "floor": cents_to_str(rules.floors[current]),
                "downgrade_below": f"{threshold / 100:.2f}",
            },
            [event_id],
        )

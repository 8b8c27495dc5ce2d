"""Money leaving (docs/rules.md, "Outflows"): one large debit, fast outflows, and the drain to another bank."""

from __future__ import annotations

import bisect

from handlers import titles
from handlers.alerting import AlertContext
from handlers.money import cents_to_str
from handlers.ruleset import TIER_RANK
from handlers.state import AumMark, ClientState, Debit


def record_debit(state: ClientState, occurred_us: int, cents: int, external: bool) -> None:
    bisect.insort(state.debits, Debit(occurred_us, cents, int(external)))


def prune_debits(state: ClientState, cutoff: int) -> None:
    """Forget debits at or before `cutoff`; they are outside every window."""
    debits = state.debits
    i = 0
    while i < len(debits) and debits[i].at <= cutoff:
        i += 1
    if i:
        del debits[:i]


def window_sum(state: ClientState, start: int, end: int, external_only: bool) -> int:
    """Sum of debits with start < time <= end."""
    total = 0
    for debit in state.debits:
        if start < debit.at <= end and (debit.external or not external_only):
            total += debit.cents
    return total


def add_aum_mark(state: ClientState, occurred_us: int, drain_window: int, previous_aum: int) -> None:
    """Remember that AUM `previous_aum` was held until `occurred_us`, when it changed.

    `aum_marks` holds past AUM levels with falling AUM: enough to answer "highest
    AUM held since t", since a level counts while its end is after t.
    """
    marks = state.aum_marks
    until = max(occurred_us, marks[-1].until) if marks else occurred_us
    while marks and marks[-1].aum <= previous_aum:
        marks.pop()
    marks.append(AumMark(until, previous_aum))
    cutoff = occurred_us - drain_window
    while marks and marks[0].until <= cutoff:
        del marks[0]


def highest_aum(state: ClientState, start: int) -> int:
    """Highest AUM held at any time in (start, now], the current AUM included."""
    for mark in state.aum_marks:
        if mark.until > start:
            # marks fall, so the first level still held after `start` is the highest past one
            return max(state.aum, mark.aum)
    return state.aum


def check_debit(
    ctx: AlertContext,
    tier_before: str,
    occurred_us: int,
    cents: int,
    external: bool,
    event_id: str,
    aum_before_peak: int,
) -> None:
    """Run the three outflow rules for one customer debit already recorded in the state."""
    rules, state = ctx.rules, ctx.state
    ccy = rules.base_currency
    limit = rules.limits[tier_before]
    if cents >= limit:
        critical = external or cents * 100 >= limit * rules.large_critical
        ctx.raise_alert(
            "large_outflow",
            "critical" if critical else "warning",
            occurred_us,
            event_id,
            titles.large_outflow(cents, external, ccy),
            {
                "amount": cents_to_str(cents),
                "limit": cents_to_str(limit),
                "counterparty_bank": "external" if external else "internal",
            },
            [event_id],
            tier=tier_before,
        )

    velocity = window_sum(state, occurred_us - rules.velocity_window, occurred_us, external_only=False)
    if velocity * 100 >= limit * rules.velocity_warning:
        critical = velocity * 100 >= limit * rules.velocity_critical
        days = rules.velocity_window // 86_400_000_000
        ctx.raise_alert(
            "outflow_velocity",
            "critical" if critical else "warning",
            occurred_us,
            event_id,
            titles.outflow_velocity(velocity, days, ccy),
            {
                "window_sum": cents_to_str(velocity),
                "limit": cents_to_str(limit),
                "warning_at": cents_to_str(limit * rules.velocity_warning // 100),
                "critical_at": cents_to_str(limit * rules.velocity_critical // 100),
                "window_days": str(days),
            },
            [event_id],
            tier=tier_before,
        )

    if external and TIER_RANK[tier_before] >= rules.drain_min_rank:
        drained = window_sum(state, occurred_us - rules.drain_window, occurred_us, external_only=True)
        peak = aum_before_peak
        threshold = peak * rules.drain_fraction
        if peak > 0 and drained >= threshold:
            days = rules.drain_window // 86_400_000_000
            share = f"{drained * 100 / peak:.1f}"
            ctx.raise_alert(
                "aum_drain",
                "critical",
                occurred_us,
                event_id,
                titles.aum_drain(drained, share, days, ccy),
                {
                    "external_outflows": cents_to_str(drained),
                    "peak_aum": cents_to_str(peak),
                    "fraction": str(rules.drain_fraction),
                    "threshold": f"{threshold / 100:.2f}",
                    "window_days": str(days),
                },
                [event_id],
                tier=tier_before,
            )

"""Rules that fire on the absence of events (docs/rules.md: "The clock", "Dormancy", "Key moments", "Birthday",
"Complaint follow-up").

Each rule exposes its due time computed from the state alone; `advance` fires
what is due up to `now` in due-time order. The alert's occurred_at is the due
time, so when the sweep runs changes only how soon an alert is seen.
"""

from __future__ import annotations

from handlers import moments, titles
from handlers.alerting import AlertContext
from handlers.ruleset import Ruleset
from handlers.state import ClientState, FiredMaturity
from handlers.timeutil import US_PER_DAY, iso

CRITICAL_DORMANCY_TIERS = frozenset({"diamond", "private"})
_NEVER = 1 << 62


def dormancy_due(rules: Ruleset, state: ClientState) -> int | None:
    if state.closed:
        return None
    base = state.last_activity if state.last_activity is not None else state.onboarded_at
    if base is None or state.dormant_base == base:
        return None
    return base + rules.dormancy[state.tier or "mass"]


def rm_contact_due(rules: Ruleset, state: ClientState) -> int | None:
    if state.closed or state.tier is None:
        return None
    period = rules.rm_contact.get(state.tier)
    if period is None or state.tier_since is None:
        return None
    anchor = state.tier_since
    if state.last_rm_contact is not None and state.last_rm_contact > anchor:
        anchor = state.last_rm_contact
    if state.rm_contact_alerted_due is not None and state.rm_contact_alerted_due > anchor:
        anchor = state.rm_contact_alerted_due
    return anchor + period


def maturity_due(state: ClientState) -> int | None:
    if state.closed or not state.maturities:
        return None
    return state.maturities[0].due


def birthday_due(state: ClientState) -> int | None:
    return None if state.closed else state.birthday_due


def follow_up_due(state: ClientState) -> int | None:
    """Complaints are followed up even for a closed client: the bank still owes an answer."""
    return state.follow_ups[0].due if state.follow_ups else None


def next_due(rules: Ruleset, state: ClientState) -> int | None:
    """Earliest time at which a clock rule of this client fires, if any."""
    best = _NEVER
    dormancy = dormancy_due(rules, state)
    if dormancy is not None:
        best = dormancy
    contact = rm_contact_due(rules, state)
    if contact is not None and contact < best:
        best = contact
    maturity = maturity_due(state)
    if maturity is not None and maturity < best:
        best = maturity
    follow_up = follow_up_due(state)
    if follow_up is not None and follow_up < best:
        best = follow_up
    birthday = birthday_due(state)
    if birthday is not None and birthday < best:
        best = birthday
    return None if best == _NEVER else best


def advance(ctx: AlertContext, now: int) -> None:
    """Fire every clock rule due at or before `now`, earliest first."""
    rules, state = ctx.rules, ctx.state
    while True:
        # Earliest due rule at or before `now`; on a tie dormancy, contact, maturity, follow-up, birthday.
        # (Spelled out rather than looped: this runs before every event.)
        due, fire = now + 1, None
        dormancy = dormancy_due(rules, state)
        if dormancy is not None and dormancy < due:
            due, fire = dormancy, _fire_dormancy
        contact = rm_contact_due(rules, state)
        if contact is not None and contact < due:
            due, fire = contact, _fire_rm_contact
        maturity = maturity_due(state)
        if maturity is not None and maturity < due:
            due, fire = maturity, _fire_maturity
        if state.follow_ups:
            follow_up = state.follow_ups[0].due
            if follow_up < due:
                due, fire = follow_up, moments.fire_follow_up
        birthday = birthday_due(state)
        if birthday is not None and birthday < due:
            due, fire = birthday, moments.fire_birthday
        if fire is None:
            return
        fire(ctx, due)


def _fire_dormancy(ctx: AlertContext, due: int) -> None:
    rules, state = ctx.rules, ctx.state
    base = state.last_activity if state.last_activity is not None else state.onboarded_at
    assert base is not None
    state.dormant_base = base
    tier = state.tier or "mass"
    days = rules.dormancy[tier] // US_PER_DAY
    since = "last activity" if state.last_activity is not None else "onboarding"
    due_at = iso(due)
    ctx.raise_alert(
        "dormancy",
        "critical" if tier in CRITICAL_DORMANCY_TIERS else "warning",
        due,
        due_at,
        titles.dormancy(days),
        {"quiet_since": iso(base), "counted_from": since, "period_days": str(days), "due_at": due_at},
        [],
    )


def _fire_rm_contact(ctx: AlertContext, due: int) -> None:
    rules, state = ctx.rules, ctx.state
    state.rm_contact_alerted_due = due
    assert state.tier is not None
    days = rules.rm_contact[state.tier] // US_PER_DAY
    due_at = iso(due)
    facts = {
        "period_days": str(days),
        "tier_since": iso(state.tier_since or 0),
        "last_rm_contact": iso(state.last_rm_contact) if state.last_rm_contact is not None else "never",
        "due_at": due_at,
    }
    ctx.raise_alert("no_rm_contact", "warning", due, due_at, titles.no_rm_contact(days), facts, [])


def _fire_maturity(ctx: AlertContext, due: int) -> None:
    state = ctx.state
    maturity = state.maturities.pop(0)
    product_id, maturity_date, amount, currency = (
        maturity.product_id,
        maturity.maturity_date,
        maturity.amount,
        maturity.currency,
    )
    state.maturities_fired.append(FiredMaturity(due, product_id))
    facts = {"product_id": str(product_id), "maturity_date": str(maturity_date), "due_at": iso(due)}
    if amount is not None:
        facts["amount"] = str(amount)
        if currency is not None:
            facts["currency"] = str(currency)
    ctx.raise_alert(
        "product_maturity",
        "info",
        due,
        f"{product_id}@{iso(due)}",
        titles.product_maturity(str(product_id), str(maturity_date)),
        facts,
        [maturity.event_id],
    )

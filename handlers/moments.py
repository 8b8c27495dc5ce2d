"""Key moments of key-account care (docs/rules.md, "Key moments"; reactivation under "Dormancy")."""

from __future__ import annotations

from handlers.alerting import AlertContext
from handlers.money import cents_to_display, cents_to_str
from handlers.ruleset import TIER_RANK
from handlers.timeutil import US_PER_DAY, iso
from schemas.events import InteractionEvent

_PLATINUM = TIER_RANK["platinum"]


def on_customer_activity(ctx: AlertContext, occurred: int, event_id: str) -> None:
    """Record activity; the first one after a dormancy alert is a reactivation."""
    state = ctx.state
    if state.dormant_base is not None:
        quiet_since = state.dormant_base
        state.dormant_base = None
        days = max(0, occurred - quiet_since) // US_PER_DAY
        ctx.raise_alert(
            "reactivation",
            "info",
            occurred,
            event_id,
            f"Active again after {days} quiet days",
            {"quiet_since": iso(quiet_since), "quiet_days": str(days)},
            [event_id],
        )
    if state.last_activity is None or occurred > state.last_activity:
        state.last_activity = occurred


def check_first_transaction(ctx: AlertContext, occurred: int, event_id: str) -> None:
    state = ctx.state
    if state.onboarded_at is None or state.first_txn_alerted:
        return
    state.first_txn_alerted = True
    due_by = iso(occurred + ctx.rules.first_txn_call)
    ctx.raise_alert(
        "new_client_first_txn",
        "info",
        occurred,
        event_id,
        f"First transaction of a new client: thank-you call due by {due_by[:16].replace('T', ' ')} UTC",
        {"onboarded_at": iso(state.onboarded_at), "due_by": due_by},
        [event_id],
    )


def check_large_inflow(ctx: AlertContext, tier_before: str, occurred: int, cents: int, event_id: str) -> None:
    limit = ctx.rules.limits[tier_before]
    if cents < limit:
        return
    ctx.raise_alert(
        "large_inflow",
        "info",
        occurred,
        event_id,
        f"Inflow of {cents_to_display(cents)} {ctx.rules.base_currency} from another bank",
        {"amount": cents_to_str(cents), "limit": cents_to_str(limit), "counterparty_bank": "external"},
        [event_id],
        tier=tier_before,
    )


def complaint(ctx: AlertContext, event: InteractionEvent, occurred: int) -> None:
    tier = ctx.state.tier
    high_tier = tier is not None and TIER_RANK[tier] >= _PLATINUM
    critical = event.severity == "high" or high_tier
    severity_text = f" ({event.severity} severity)" if event.severity else ""
    facts = {"severity": event.severity or "unspecified", "channel": event.channel, "tier": tier or "unclassified"}
    if event.satisfaction is not None:
        facts["satisfaction"] = str(event.satisfaction)
    ctx.raise_alert(
        "complaint",
        "critical" if critical else "warning",
        occurred,
        event.event_id,
        f"Complaint{severity_text} via {event.channel}",
        facts,
        [event.event_id],
    )

"""Key moments of key-account care (docs/rules.md, "Key moments", "Birthday", "Complaint follow-up", "Low
satisfaction"; reactivation under "Dormancy")."""

from __future__ import annotations

import bisect
import calendar
from datetime import date, datetime, time, timedelta

from handlers import titles
from handlers.alerting import AlertContext
from handlers.money import cents_to_str
from handlers.ruleset import TIER_RANK, Ruleset
from handlers.state import ClientState, FollowUp
from handlers.timeutil import US_PER_DAY, from_us, iso, to_us
from schemas.events import InteractionEvent

PLATINUM = TIER_RANK["platinum"]


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
            titles.reactivation(days),
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
        titles.new_client_first_txn(occurred + ctx.rules.first_txn_call, ctx.rules.timezone),
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
        titles.large_inflow(cents, ctx.rules.base_currency),
        {"amount": cents_to_str(cents), "limit": cents_to_str(limit), "counterparty_bank": "external"},
        [event_id],
        tier=tier_before,
    )


def complaint(ctx: AlertContext, event: InteractionEvent, occurred: int) -> None:
    """The complaint alert, and its follow-up: complaint_unanswered is due unless an RM makes contact in time."""
    state = ctx.state
    tier = state.tier
    high_tier = tier is not None and TIER_RANK[tier] >= PLATINUM
    high = event.severity == "high"
    facts = {"severity": event.severity or "unspecified", "channel": event.channel, "tier": tier or "unclassified"}
    if event.satisfaction is not None:
        facts["satisfaction"] = str(event.satisfaction)
    ctx.raise_alert(
        "complaint",
        "critical" if high or high_tier else "warning",
        occurred,
        event.event_id,
        titles.complaint(event.severity, event.channel),
        facts,
        [event.event_id],
    )
    due = occurred + (ctx.rules.follow_up_high if high else ctx.rules.follow_up)
    bisect.insort(state.follow_ups, FollowUp(due, occurred, event.event_id, high), key=lambda f: f.due)


def followed_up(state: ClientState, contact: int) -> None:
    """RM contact at `contact` answers every complaint made at or before it whose follow-up is still due after it."""
    state.follow_ups = [f for f in state.follow_ups if not f.complained_at <= contact < f.due]


def low_satisfaction(ctx: AlertContext, event: InteractionEvent, occurred: int) -> None:
    score = event.satisfaction
    if score is None or score > ctx.rules.satisfaction_at_most:
        return
    ctx.raise_alert(
        "low_satisfaction",
        "warning",
        occurred,
        event.event_id,
        titles.low_satisfaction(score, event.kind, event.channel),
        {
            "satisfaction": str(score),
            "kind": event.kind,
            "channel": event.channel,
            "alert_at_most": str(ctx.rules.satisfaction_at_most),
        },
        [event.event_id],
    )


def set_birthday(rules: Ruleset, state: ClientState, month_day: str | None, occurred: int) -> None:
    """A new or changed birthday is first due strictly after the event that gave it (no catch-up)."""
    if month_day == state.birthday:
        return  # re-sent reference data keeps the schedule
    state.birthday = month_day
    state.birthday_due = None if month_day is None else next_birthday_due(rules, month_day, occurred)


def next_birthday_due(rules: Ruleset, month_day: str, after: int) -> int:
    """The first 00:00 in the bank's time zone, `notice_days` before a birthday, strictly after `after`.

    29 February counts as 28 February in years without it.
    """
    zone = rules.timezone
    month, day = int(month_day[:2]), int(month_day[3:])
    notice = timedelta(days=rules.birthday_notice_days)
    year = from_us(after).astimezone(zone).year - 1  # the notice may reach back over a new year
    while True:
        leap_day_moved = month == 2 and day == 29 and not calendar.isleap(year)
        birthday = date(year, month, 28 if leap_day_moved else day)
        due = to_us(datetime.combine(birthday - notice, time(0), tzinfo=zone))
        if due > after:
            return due
        year += 1


def fire_birthday(ctx: AlertContext, due: int) -> None:
    """Due: greet a client at the tier the rule asks for (the tier at the due time); then schedule next year."""
    rules, state = ctx.rules, ctx.state
    month_day = state.birthday
    assert month_day is not None
    state.birthday_due = next_birthday_due(rules, month_day, due)
    tier = state.tier
    if tier is None or TIER_RANK[tier] < rules.birthday_min_rank:
        return
    days = rules.birthday_notice_days
    ctx.raise_alert(
        "birthday",
        "info",
        due,
        iso(due),
        titles.birthday(month_day, days),
        {"birthday": month_day, "tier": tier, "notice_days": str(days), "due_at": iso(due)},
        [],
    )


def fire_follow_up(ctx: AlertContext, due: int) -> None:
    """Due: the complaint got no RM contact in time. Critical for a high-severity complaint or a platinum+ client."""
    state = ctx.state
    follow_up = state.follow_ups.pop(0)
    tier = state.tier
    critical = follow_up.high or (tier is not None and TIER_RANK[tier] >= PLATINUM)
    waited = follow_up.due - follow_up.complained_at
    ctx.raise_alert(
        "complaint_unanswered",
        "critical" if critical else "warning",
        due,
        follow_up.event_id,
        titles.complaint_unanswered(waited),
        {
            "complaint_event_id": follow_up.event_id,
            "complained_at": iso(follow_up.complained_at),
            "follow_up_hours": titles.hours_text(waited),
            "due_at": iso(due),
        },
        [follow_up.event_id],
    )

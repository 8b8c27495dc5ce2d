"""The functional core: apply one event, or advance the clock, on one client's state.

The stream worker, the backtest and the tests all call these same functions.
They take the caller's state object and update it in place (one object per
client, no copies on the hot path); they read no clock and do no I/O: the
caller passes `now` (wall clock live, watermark in a replay) and `detected_at`.
"""

from __future__ import annotations

import bisect
from datetime import datetime

from handlers import clock_rules, moments, outflows, tiers
from handlers.alerting import AlertContext, Outcome
from handlers.money import to_cents
from handlers.ruleset import Ruleset
from handlers.state import ClientState, Maturity, Snooze
from handlers.timeutil import midnight_us, to_us
from schemas.controls import ControlEvent, InputEvent
from schemas.events import ClientEvent, InteractionEvent, TransactionEvent

RM_CONTACT_KINDS = frozenset({"visit", "call", "meeting"})
MATURITY_MEMORY_DAYS = 60


def apply(
    rules: Ruleset, state: ClientState, event: InputEvent, occurred: int, now: int, detected_at: datetime
) -> Outcome:
    """Fire what is due up to `now`, then apply `event` (its occurred_at in µs: `occurred`); a repeated event id
    changes nothing."""
    outcome = Outcome()
    if event.event_id in state.seen:
        outcome.duplicate = True
        return outcome
    ctx = AlertContext(rules, state, detected_at, outcome)
    clock_rules.advance(ctx, now)
    _remember(rules, state, event.event_id, occurred)
    if isinstance(event, TransactionEvent):
        _apply_transaction(ctx, event, occurred)
    elif isinstance(event, InteractionEvent):
        _apply_interaction(ctx, event, occurred)
    elif isinstance(event, ClientEvent):
        _apply_client(ctx, event, occurred)
    else:
        _apply_control(ctx, event, occurred)
    return outcome


def advance(rules: Ruleset, state: ClientState, now: int, detected_at: datetime) -> Outcome:
    """Fire every clock rule of this client due at or before `now`."""
    outcome = Outcome()
    clock_rules.advance(AlertContext(rules, state, detected_at, outcome), now)
    return outcome


def next_due(rules: Ruleset, state: ClientState) -> int | None:
    return clock_rules.next_due(rules, state)


def _remember(rules: Ruleset, state: ClientState, event_id: str, occurred: int) -> None:
    if occurred > state.watermark:
        state.watermark = occurred
    seen = state.seen
    seen[event_id] = occurred
    cutoff = state.watermark - rules.dedupe
    # Ids arrive roughly in time order, so expired ones sit at the front.
    while seen:
        first = next(iter(seen))
        if seen[first] >= cutoff:
            break
        del seen[first]


def _apply_transaction(ctx: AlertContext, event: TransactionEvent, occurred: int) -> None:
    rules, state = ctx.rules, ctx.state
    rate = rules.fx[event.currency]
    cents = to_cents(event.amount, rate)
    customer = event.initiated_by == "customer"
    external = event.counterparty is not None and event.counterparty.bank == "external"
    tier_before = state.tier or "mass"
    peak_before = 0

    if customer:
        moments.on_customer_activity(ctx, occurred, event.event_id)

    # Balances move for every posting, bank-initiated ones included.
    old = state.accounts.get(event.account_id, 0)
    if event.balance_after is not None:
        new = to_cents(event.balance_after, rate)
    else:
        new = old + cents if event.direction == "credit" else old - cents
    state.accounts[event.account_id] = new
    if customer and event.direction == "debit":
        peak_before = outflows.highest_aum(state, occurred - rules.drain_window)
    previous_aum = state.aum
    state.aum += new - old
    outflows.add_aum_mark(state, occurred, rules.drain_window, previous_aum)
    tiers.reclassify(ctx, occurred, event.event_id)

    if customer:
        moments.check_first_transaction(ctx, occurred, event.event_id)
        if event.direction == "debit":
            outflows.record_debit(state, occurred, cents, external)
            # Relative to this debit, not the client's watermark: a transaction that arrives
            # after a later-stamped event of the client still sees its whole window.
            outflows.prune_debits(state, occurred - rules.history_window)
            outflows.check_debit(ctx, tier_before, occurred, cents, external, event.event_id, peak_before)
        elif external:
            moments.check_large_inflow(ctx, tier_before, occurred, cents, event.event_id)


def _apply_interaction(ctx: AlertContext, event: InteractionEvent, occurred: int) -> None:
    state = ctx.state
    if event.initiated_by == "customer":
        moments.on_customer_activity(ctx, occurred, event.event_id)
    rm_contact = event.initiated_by == "rm" or (event.kind in RM_CONTACT_KINDS and event.rm_id is not None)
    if rm_contact:
        if state.last_rm_contact is None or occurred > state.last_rm_contact:
            state.last_rm_contact = occurred
        if state.follow_ups:
            moments.followed_up(state, occurred)  # before this event's own complaint is added
    if event.kind == "complaint":
        moments.complaint(ctx, event, occurred)
    if event.satisfaction is not None:
        moments.low_satisfaction(ctx, event, occurred)


def _apply_client(ctx: AlertContext, event: ClientEvent, occurred: int) -> None:
    rules, state = ctx.rules, ctx.state
    given = event.model_fields_set
    if "rm_id" in given and (event.rm_id is not None or event.kind == "rm_assigned"):
        state.rm_id = event.rm_id
    if event.segment is not None:
        state.segment = event.segment
    if "birth_date" in given:
        moments.set_birthday(rules, state, event.birth_date, occurred)
    if "contact_preference" in given:
        state.service_only = event.contact_preference == "service_only"
    if event.kind == "onboarded":
        state.onboarded_at = occurred
        if state.closed and state.birthday is not None:
            # Reopened: birthdays passed while closed are not caught up.
            state.birthday_due = moments.next_birthday_due(rules, state.birthday, occurred)
        state.closed = False
    elif event.kind == "closed":
        state.closed = True
    elif event.kind == "product_maturing" and event.product is not None:
        product = event.product
        due = midnight_us(product.maturity_date) - rules.maturity_notice
        pid = product.product_id
        if any(m.due == due and m.product_id == pid for m in state.maturities_fired):
            return
        state.maturities = [m for m in state.maturities if m.product_id != pid]
        entry = Maturity(
            due,
            pid,
            product.maturity_date.isoformat(),
            str(product.amount) if product.amount is not None else None,
            product.currency,
            event.event_id,
        )
        bisect.insort(state.maturities, entry, key=lambda m: m.due)
        forget_before = state.watermark - MATURITY_MEMORY_DAYS * 86_400_000_000
        state.maturities_fired = [m for m in state.maturities_fired if m.due >= forget_before]


def _apply_control(ctx: AlertContext, event: ControlEvent, occurred: int) -> None:
    """A snooze replaces the type's earlier one; an unsnooze ends it at its own occurred_at."""
    snoozes = ctx.state.snoozes
    alert_type = event.alert_type
    if event.kind == "snooze":
        assert event.until is not None  # validated: a snooze has an until after occurred_at
        snoozes[alert_type] = Snooze(occurred, to_us(event.until))
    else:
        current = snoozes.get(alert_type)
        if current is not None:
            if occurred <= current.at:
                del snoozes[alert_type]
            elif occurred < current.until:
                snoozes[alert_type] = Snooze(current.at, occurred)
    # Snoozes long over (by the dedupe window, which bounds how late an event may still come) are forgotten.
    cutoff = ctx.state.watermark - ctx.rules.dedupe
    for stale in [t for t, s in snoozes.items() if s.until <= cutoff]:
        del snoozes[stale]

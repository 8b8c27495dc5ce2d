"""Small builders for rule tests: the test rules, wire-format events (docs/events.md) and a desk that applies them.

`RULES` is tests/rules/thresholds.yaml, not the shipped file: the rule tests
state the thresholds they check, and those stay put when a business default
changes. Events are plain dicts in the wire format, validated through the
contract models before the engine sees them, so a test cannot feed the rules
something a producer could not send. `Desk` drives the batch processor the
way a replay does: the clock is the largest occurred_at seen so far, and
`advance` moves it further.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson

from handlers.batch import BatchProcessor, BatchResult
from handlers.batch import Record as InputRecord
from handlers.ruleset import Ruleset, load_rules
from handlers.state import ClientState
from handlers.timeutil import to_us
from schemas.alerts import Alert
from schemas.controls import ControlEvent, InputEvent
from schemas.events import ClientEvent, InteractionEvent, TransactionEvent
from schemas.topics import CLIENTS, CONTROLS, INTERACTIONS, TRANSACTIONS

THRESHOLDS = Path(__file__).resolve().parents[1] / "rules" / "thresholds.yaml"
RULES = load_rules(THRESHOLDS)
"""The rules every unit test of the rules runs (the `rules` fixture in this folder)."""

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
"""A Monday morning; tests place events relative to it."""

DETECTED_AT = datetime(2030, 1, 1, tzinfo=UTC)

Value = dict[str, Any]
Record = tuple[str, str, Value]
"""(topic, key, value) as in a replay file."""

_ids = itertools.count(1)


def at(days: float = 0, hours: float = 0, minutes: float = 0, seconds: float = 0, microseconds: int = 0) -> datetime:
    return T0 + timedelta(days=days, hours=hours, minutes=minutes, seconds=seconds, microseconds=microseconds)


def _stamp(when: datetime | str) -> str:
    return when if isinstance(when, str) else when.isoformat()


def _event_id(prefix: str, event_id: str | None) -> str:
    return event_id if event_id is not None else f"{prefix}-{next(_ids)}"


def tx(
    when: datetime | str,
    amount: str,
    direction: str = "debit",
    *,
    client: str = "c-1",
    account: str = "acct-1",
    currency: str = "CNY",
    by: str = "customer",
    bank: str | None = None,
    kind: str | None = None,
    channel: str | None = None,
    balance_after: str | None = None,
    event_id: str | None = None,
) -> Value:
    """A transaction; `bank` is the counterparty's bank ("internal"/"external"), omitted when None."""
    value: Value = {
        "event_id": _event_id("t", event_id),
        "client_id": client,
        "occurred_at": _stamp(when),
        "account_id": account,
        "amount": amount,
        "currency": currency,
        "direction": direction,
        "kind": kind or ("interest" if by == "bank" else "transfer"),
        "channel": channel or ("batch" if by == "bank" else "online"),
        "initiated_by": by,
    }
    if bank is not None:
        value["counterparty"] = {"bank": bank}
    if balance_after is not None:
        value["balance_after"] = balance_after
    return value


def deposit(when: datetime | str, amount: str, **kw: Any) -> Value:
    """A customer credit from inside the bank (no inflow alert)."""
    kw.setdefault("bank", "internal")
    return tx(when, amount, "credit", **kw)


def interaction(
    when: datetime | str,
    kind: str = "inquiry",
    *,
    client: str = "c-1",
    by: str = "customer",
    channel: str = "phone",
    rm_id: str | None = None,
    severity: str | None = None,
    satisfaction: int | None = None,
    event_id: str | None = None,
) -> Value:
    value: Value = {
        "event_id": _event_id("i", event_id),
        "client_id": client,
        "occurred_at": _stamp(when),
        "kind": kind,
        "channel": channel,
        "initiated_by": by,
    }
    for name, field in (("rm_id", rm_id), ("severity", severity), ("satisfaction", satisfaction)):
        if field is not None:
            value[name] = field
    return value


def client_event(
    when: datetime | str,
    kind: str = "onboarded",
    *,
    client: str = "c-1",
    event_id: str | None = None,
    **fields: Any,
) -> Value:
    """A reference-data event; extra fields (rm_id, segment, product) are passed as given."""
    return {
        "event_id": _event_id("k", event_id),
        "client_id": client,
        "occurred_at": _stamp(when),
        "kind": kind,
        **fields,
    }


def maturing(when: datetime | str, product_id: str, maturity_date: str, **kw: Any) -> Value:
    product: Value = {"product_id": product_id, "maturity_date": maturity_date, "amount": "100000", "currency": "CNY"}
    return client_event(when, "product_maturing", product=product, **kw)


def snooze(
    when: datetime | str,
    alert_type: str,
    until: datetime | str,
    *,
    reason: str | None = "client is moving funds as planned",
    client: str = "c-1",
    actor: str = "alice",
    event_id: str | None = None,
) -> Value:
    """A control event as the RM API writes it; `reason` None leaves it out."""
    value: Value = {
        "event_id": _event_id("s", event_id),
        "client_id": client,
        "occurred_at": _stamp(when),
        "kind": "snooze",
        "alert_type": alert_type,
        "until": _stamp(until),
        "actor": actor,
    }
    if reason is not None:
        value["reason"] = reason
    return value


def unsnooze(
    when: datetime | str, alert_type: str, *, client: str = "c-1", actor: str = "alice", event_id: str | None = None
) -> Value:
    return {
        "event_id": _event_id("u", event_id),
        "client_id": client,
        "occurred_at": _stamp(when),
        "kind": "unsnooze",
        "alert_type": alert_type,
        "actor": actor,
    }


def topic_of(value: Value) -> str:
    if "alert_type" in value:
        return CONTROLS
    if "account_id" in value:
        return TRANSACTIONS
    if "channel" in value:
        return INTERACTIONS
    return CLIENTS


def record(value: Value) -> Record:
    return topic_of(value), str(value["client_id"]), value


def to_event(value: Value) -> InputEvent:
    """Validate through the contract model of the value's topic."""
    topic = topic_of(value)
    if topic == CONTROLS:
        return ControlEvent.model_validate(value)
    if topic == TRANSACTIONS:
        return TransactionEvent.model_validate(value)
    if topic == INTERACTIONS:
        return InteractionEvent.model_validate(value)
    return ClientEvent.model_validate(value)


class Desk:
    """Clients' states driven through the batch processor as a replay drives it: one record per batch,
    the clock at max(occurred_at so far); `advance` moves it further and sweeps."""

    def __init__(self, rules: Ruleset) -> None:
        self.rules = rules
        self.states: dict[str, ClientState] = {}
        self.processor = BatchProcessor(rules, clock="event")
        self.duplicates = 0
        self.suppressed: list[str] = []
        """The type of each alert held back, whatever the reason."""
        self.suppressions: list[tuple[str, str]] = []
        """(type, reason) of each alert held back: cooldown, consent or snoozed."""
        self._offsets = itertools.count()

    @property
    def clock(self) -> int:
        return self.processor.clocks.get(0, 0)

    def state(self, client: str = "c-1") -> ClientState:
        if client not in self.states:
            self.states[client] = ClientState(client)
        return self.states[client]

    def _collect(self, result: BatchResult) -> list[Alert]:
        assert not result.dead_letters, [letter.error for _, letter in result.dead_letters]
        for client_id, entry in result.touched.items():
            self.states[client_id] = entry.state
        for client_id in result.erased:
            self.states.pop(client_id, None)
        self.duplicates += sum(result.counts.duplicates.values())
        held = list(result.counts.suppressed.elements())
        self.suppressions += held
        self.suppressed += [alert_type for alert_type, _reason in held]
        return result.alerts

    def send(self, *values: Value) -> list[Alert]:
        """Apply the events in order; the alerts they raised (clock rules fired on the way included)."""
        alerts: list[Alert] = []
        for value in values:
            alerts += self._collect(self._process(value))
        return alerts

    def reject(self, value: Value) -> str:
        """Send an event that must become a dead letter; its `reason: error`."""
        result = self._process(value)
        assert len(result.dead_letters) == 1 and not result.alerts, result
        letter = result.dead_letters[0][1]
        return f"{letter.reason}: {letter.error}"

    def _process(self, value: Value) -> BatchResult:
        topic, key, body = record(value)
        rec = InputRecord(topic, 0, next(self._offsets), key.encode(), orjson.dumps(body))
        return self.processor.process([rec], self.states.get, wall_now=0, received_at=DETECTED_AT)

    def advance(self, until: datetime) -> list[Alert]:
        """Move the clock to `until` and fire what is due, for every client."""
        return self._collect(self.processor.finish(to_us(until), self.states.get, DETECTED_AT))


def of_type(alerts: Iterable[Alert], alert_type: str) -> list[Alert]:
    return [a for a in alerts if a.type == alert_type]


def one(alerts: Iterable[Alert], alert_type: str) -> Alert:
    """The single alert of that type; fails naming what was there instead."""
    alerts = list(alerts)
    found = of_type(alerts, alert_type)
    assert len(found) == 1, f"expected one {alert_type}, got {[(a.type, a.severity) for a in alerts]}"
    return found[0]


def types(alerts: Iterable[Alert]) -> list[str]:
    return [a.type for a in alerts]

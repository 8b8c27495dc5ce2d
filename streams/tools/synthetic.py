"""A synthetic bank: clients with RMs, salaries, card spend, transfers, and the odd alarm.

Deterministic for a given seed, so a benchmark or a test can regenerate the
same history. Values are plain dicts in the wire format of docs/events.md.

The key moments have their inputs at rates a retail bank sees: most
individual clients have a birth date on file (corporate ones none), about one
client in twelve declined marketing contact, some interactions carry a
satisfaction score (mostly good ones), and an RM calls back after most
complaints, in time or late, while some are never followed up. With
`controls`, RMs also snooze an alert type for a client now and then, and
sometimes end the snooze early: the control events the RM API would write.
"""

from __future__ import annotations

import heapq
import itertools
import random
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

from schemas.topics import CLIENTS, CONTROLS, INTERACTIONS, TRANSACTIONS

Record = tuple[str, str, dict[str, object]]
"""(topic without prefix, key, value)."""


BIRTH_DATE_ON_FILE = 0.85
"""Share of individual (retail) clients whose birth date core banking has."""
SERVICE_ONLY = 0.08
"""Share of clients who declined marketing contact."""
SCORES = (1, 2, 3, 4, 5)
SCORE_WEIGHTS = (5, 7, 13, 30, 45)
"""Satisfaction scores, mostly good."""
SNOOZED_TYPES = ("large_inflow", "outflow_velocity", "large_outflow", "no_rm_contact", "low_satisfaction", "dormancy")
SNOOZE_REASONS = (
    "client is moving funds for a property purchase, as agreed",
    "planned transfer to the client's company account",
    "client abroad until the end of the month",
    "discussed with the client last week",
)


@dataclass
class _Client:
    client_id: str
    account_id: str
    rm_id: str
    wealth: Decimal
    currency: str
    birth_date: str | None
    service_only: bool


class SyntheticBank:
    def __init__(
        self,
        clients: int = 300,
        rms: int = 20,
        seed: int = 7,
        run_id: str = "sim",
        controls: bool = False,
        unassigned_every: int = 0,
    ) -> None:
        self.rng = random.Random(seed)
        self.run_id = run_id
        self.unassigned_every = unassigned_every
        """Every n-th client has no RM (0: none), for the managers' triage; the random draws stay the same."""
        self.counter = 0
        self.controls = controls
        self.rms = [f"rm-{i:03d}" for i in range(1, rms + 1)]
        self.clients = [self._make_client(i) for i in range(clients)]
        self._scheduled: list[tuple[datetime, int, Record]] = []
        self._order = itertools.count()
        """Events that follow an earlier one (an RM's call back, the end of a snooze), by the time they happen."""

    def _make_client(self, i: int) -> _Client:
        rng = self.rng
        roll = rng.random()
        if roll < 0.70:
            wealth = rng.uniform(2_000, 45_000)
        elif roll < 0.90:
            wealth = rng.uniform(50_000, 480_000)
        elif roll < 0.97:
            wealth = rng.uniform(500_000, 1_900_000)
        elif roll < 0.995:
            wealth = rng.uniform(2_000_000, 5_800_000)
        else:
            wealth = rng.uniform(6_000_000, 20_000_000)
        currency = "CNY" if rng.random() < 0.9 else rng.choice(["USD", "HKD", "EUR"])
        individual = wealth <= 5_000_000
        birth_date = None
        if individual and rng.random() < BIRTH_DATE_ON_FILE:
            birth_date = (date(1940, 1, 1) + timedelta(days=rng.randrange(60 * 365))).isoformat()
        rm_id = rng.choice(self.rms)
        if self.unassigned_every and i % self.unassigned_every == self.unassigned_every - 1:
            rm_id = ""
        return _Client(
            client_id=f"c-{i:06d}",
            account_id=f"acct-{i:06d}-01",
            rm_id=rm_id,
            wealth=Decimal(f"{wealth:.2f}"),
            currency=currency,
            birth_date=birth_date,
            service_only=rng.random() < SERVICE_ONLY,
        )

    def _event_id(self) -> str:
        self.counter += 1
        return f"{self.run_id}-{self.counter:09d}"

    def _tx(
        self,
        c: _Client,
        at: datetime,
        amount: Decimal,
        direction: str,
        kind: str,
        channel: str,
        initiated_by: str,
        external: bool | None = None,
        balance_after: Decimal | None = None,
    ) -> Record:
        value: dict[str, object] = {
            "event_id": self._event_id(),
            "client_id": c.client_id,
            "occurred_at": at.isoformat(),
            "account_id": c.account_id,
            "amount": f"{amount:.2f}",
            "currency": "CNY" if kind in ("salary", "fee", "interest") else c.currency,
            "direction": direction,
            "kind": kind,
            "channel": channel,
            "initiated_by": initiated_by,
        }
        if external is not None:
            value["counterparty"] = {"bank": "external" if external else "internal"}
        if balance_after is not None:
            value["balance_after"] = f"{balance_after:.2f}"
        return TRANSACTIONS, c.client_id, value

    def _interaction(
        self, c: _Client, at: datetime, kind: str, channel: str, initiated_by: str, **extra: object
    ) -> Record:
        value: dict[str, object] = {
            "event_id": self._event_id(),
            "client_id": c.client_id,
            "occurred_at": at.isoformat(),
            "kind": kind,
            "channel": channel,
            "initiated_by": initiated_by,
            **extra,
        }
        return INTERACTIONS, c.client_id, value

    def _score(self) -> int:
        return self.rng.choices(SCORES, SCORE_WEIGHTS)[0]

    def _later(self, at: datetime, record: Record) -> None:
        heapq.heappush(self._scheduled, (at, next(self._order), record))

    def due(self, at: datetime) -> Iterator[Record]:
        """The scheduled events (call backs, ends of snoozes) that happen at or before `at`, in time order."""
        while self._scheduled and self._scheduled[0][0] <= at:
            yield heapq.heappop(self._scheduled)[2]

    def onboarding(self, at: datetime) -> Iterator[Record]:
        """Onboard every client with its RM, birth date and consent, then an opening deposit that sets its wealth."""
        for c in self.clients:
            value: dict[str, object] = {
                "event_id": self._event_id(),
                "client_id": c.client_id,
                "occurred_at": at.isoformat(),
                "kind": "onboarded",
                "rm_id": c.rm_id or None,
                "segment": "corporate" if c.wealth > 5_000_000 else "retail",
            }
            if c.birth_date is not None:
                value["birth_date"] = c.birth_date
            if c.service_only:
                value["contact_preference"] = "service_only"
            yield CLIENTS, c.client_id, value
        for c in self.clients:
            yield self._tx(c, at, c.wealth, "credit", "deposit", "branch", "customer", external=False)
            if self.rng.random() < 0.05:
                maturity = (at + timedelta(days=self.rng.randint(8, 90))).date().isoformat()
                yield (
                    CLIENTS,
                    c.client_id,
                    {
                        "event_id": self._event_id(),
                        "client_id": c.client_id,
                        "occurred_at": at.isoformat(),
                        "kind": "product_maturing",
                        "product": {
                            "product_id": f"td-{c.client_id}",
                            "maturity_date": maturity,
                            "amount": f"{c.wealth / 4:.2f}",
                            "currency": "CNY",
                        },
                    },
                )

    def _complaint(self, c: _Client, at: datetime) -> Record:
        """A complaint; most get an RM's call back, in time (4 h for high severity, else a day) or late."""
        rng = self.rng
        severity = rng.choice(["low", "medium", "high"])
        extra: dict[str, object] = {"severity": severity}
        if rng.random() < 0.5:
            extra["satisfaction"] = rng.choice((1, 1, 2, 2, 3))
        complaint = self._interaction(c, at, "complaint", "branch", "customer", **extra)
        window = timedelta(hours=4 if severity == "high" else 24)
        roll = rng.random()
        if roll < 0.85:
            later = window * rng.uniform(0.05, 0.9) if roll < 0.70 else window + timedelta(hours=rng.uniform(1, 48))
            when = (at + later).replace(microsecond=0)
            self._later(when, self._interaction(c, when, "call", "phone", "rm", rm_id=c.rm_id or None))
        return complaint

    def _consent_change(self, c: _Client, at: datetime) -> Record:
        c.service_only = not c.service_only
        value = self._client_event(c, at, "profile_updated")
        value["contact_preference"] = "service_only" if c.service_only else "any"
        return CLIENTS, c.client_id, value

    def _birth_date_update(self, c: _Client, at: datetime) -> Record:
        """A birth date recorded late (or corrected) for an individual client."""
        if c.wealth <= 5_000_000:
            c.birth_date = (date(1940, 1, 1) + timedelta(days=self.rng.randrange(60 * 365))).isoformat()
        value = self._client_event(c, at, "profile_updated")
        value["birth_date"] = c.birth_date
        return CLIENTS, c.client_id, value

    def _snooze(self, c: _Client, at: datetime) -> Record:
        """An RM snoozes one type for a client for a few days to two months; a third end it early."""
        rng = self.rng
        alert_type = rng.choice(SNOOZED_TYPES)
        until = (at + timedelta(days=rng.uniform(3, 60))).replace(microsecond=0)
        if rng.random() < 0.3:
            ends = (at + (until - at) * rng.uniform(0.1, 0.9)).replace(microsecond=0)
            self._later(ends, self._control(c, ends, "unsnooze", alert_type))
        return self._control(c, at, "snooze", alert_type, until=until.isoformat(), reason=rng.choice(SNOOZE_REASONS))

    def _control(self, c: _Client, at: datetime, kind: str, alert_type: str, **extra: object) -> Record:
        value: dict[str, object] = {
            "event_id": self._event_id(),
            "client_id": c.client_id,
            "occurred_at": at.isoformat(),
            "kind": kind,
            "alert_type": alert_type,
            "actor": c.rm_id or "branch-manager",
            **extra,
        }
        return CONTROLS, c.client_id, value

    def _client_event(self, c: _Client, at: datetime, kind: str) -> dict[str, object]:
        return {"event_id": self._event_id(), "client_id": c.client_id, "occurred_at": at.isoformat(), "kind": kind}

    def event(self, at: datetime) -> Record:
        """One event of ordinary banking life for a random client."""
        rng = self.rng
        c = rng.choice(self.clients)
        roll = rng.random()
        scale = max(Decimal(1), c.wealth / 50_000)
        if roll < 0.40:
            amount = Decimal(f"{rng.uniform(10, 800) * float(min(scale, Decimal(20))):.2f}")
            return self._tx(c, at, amount, "debit", "card", "pos", "customer")
        if roll < 0.52:
            return self._tx(c, at, Decimal(f"{rng.uniform(8_000, 40_000):.2f}"), "credit", "salary", "batch", "bank")
        if roll < 0.62:
            amount = Decimal(f"{rng.uniform(100, 5_000) * float(min(scale, Decimal(50))):.2f}")
            return self._tx(c, at, amount, "debit", "transfer", "mobile", "customer", external=rng.random() < 0.4)
        if roll < 0.68:
            return self._tx(c, at, Decimal(f"{rng.uniform(500, 20_000):.2f}"), "credit", "deposit", "atm", "customer")
        if roll < 0.72:
            return self._tx(c, at, Decimal(f"{rng.uniform(1, 50):.2f}"), "debit", "fee", "batch", "bank")
        if roll < 0.75:
            return self._tx(c, at, Decimal(f"{rng.uniform(1, 500):.2f}"), "credit", "interest", "batch", "bank")
        if roll < 0.83:
            extra: dict[str, object] = {"rm_id": c.rm_id or None}
            if rng.random() < 0.25:
                extra["satisfaction"] = self._score()
            return self._interaction(c, at, rng.choice(["call", "visit", "meeting"]), "phone", "rm", **extra)
        if roll < 0.92:
            kind = rng.choice(["message", "inquiry", "feedback"])
            extra = {"satisfaction": self._score()} if kind == "feedback" and rng.random() < 0.6 else {}
            return self._interaction(c, at, kind, "mobile", "customer", **extra)
        if roll < 0.935:
            return self._complaint(c, at)
        if roll < 0.96:
            amount = c.wealth * Decimal(f"{rng.uniform(0.3, 0.9):.2f}") + 50_000
            return self._tx(c, at, amount, "debit", "transfer", "online", "customer", external=rng.random() < 0.6)
        if roll < 0.98:
            amount = Decimal(f"{rng.uniform(60_000, 2_500_000):.2f}")
            return self._tx(c, at, amount, "credit", "transfer", "online", "customer", external=True)
        if roll < 0.99:
            return self._interaction(c, at, "product_purchase", "branch", "customer")
        if roll < 0.993:
            return self._consent_change(c, at)
        if roll < 0.994:
            return self._birth_date_update(c, at)
        if self.controls and roll < 0.997:
            return self._snooze(c, at)
        return (
            CLIENTS,
            c.client_id,
            {
                "event_id": self._event_id(),
                "client_id": c.client_id,
                "occurred_at": at.isoformat(),
                "kind": "rm_assigned",
                "rm_id": rng.choice(self.rms),
            },
        )


def history(
    events: int,
    clients: int,
    seed: int = 7,
    start: datetime | None = None,
    span_days: int = 200,
    run_id: str = "hist",
    controls: bool = False,
) -> Iterator[Record]:
    """A time-ordered history: onboarding, then `events` events spread over `span_days`, and what they set off.

    The RMs' call backs after complaints (and, with `controls`, the ends of
    snoozes) come at their own times, between the other events.
    """
    bank = SyntheticBank(clients=clients, rms=max(1, clients // 50), seed=seed, run_id=run_id, controls=controls)
    start = start or datetime(2026, 1, 1, tzinfo=UTC)
    yield from bank.onboarding(start)
    step = timedelta(days=span_days) / max(1, events)
    at = start
    for _ in range(events):
        at += step
        when = at.replace(microsecond=0) if step >= timedelta(seconds=1) else at
        yield from bank.due(when)
        yield bank.event(when)

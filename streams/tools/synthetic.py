"""A synthetic bank: clients with RMs, salaries, card spend, transfers, and the odd alarm.

Deterministic for a given seed, so a benchmark or a test can regenerate the
same history. Values are plain dicts in the wire format of docs/events.md.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from schemas.topics import CLIENTS, INTERACTIONS, TRANSACTIONS

Record = tuple[str, str, dict[str, object]]
"""(topic without prefix, key, value)."""


@dataclass
class _Client:
    client_id: str
    account_id: str
    rm_id: str
    wealth: Decimal
    currency: str


class SyntheticBank:
    def __init__(self, clients: int = 300, rms: int = 20, seed: int = 7, run_id: str = "sim") -> None:
        self.rng = random.Random(seed)
        self.run_id = run_id
        self.counter = 0
        self.rms = [f"rm-{i:03d}" for i in range(1, rms + 1)]
        self.clients = [self._make_client(i) for i in range(clients)]

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
        return _Client(
            client_id=f"c-{i:06d}",
            account_id=f"acct-{i:06d}-01",
            rm_id=rng.choice(self.rms),
            wealth=Decimal(f"{wealth:.2f}"),
            currency=currency,
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

    def onboarding(self, at: datetime) -> Iterator[Record]:
        """Onboard every client with its RM, then an opening deposit that sets its wealth."""
        for c in self.clients:
            yield (
                CLIENTS,
                c.client_id,
                {
                    "event_id": self._event_id(),
                    "client_id": c.client_id,
                    "occurred_at": at.isoformat(),
                    "kind": "onboarded",
                    "rm_id": c.rm_id,
                    "segment": "corporate" if c.wealth > 5_000_000 else "retail",
                },
            )
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
            return self._interaction(c, at, rng.choice(["call", "visit", "meeting"]), "phone", "rm", rm_id=c.rm_id)
        if roll < 0.92:
            return self._interaction(c, at, rng.choice(["message", "inquiry", "feedback"]), "mobile", "customer")
        if roll < 0.935:
            return self._interaction(
                c, at, "complaint", "branch", "customer", severity=rng.choice(["low", "medium", "high"])
            )
        if roll < 0.96:
            amount = c.wealth * Decimal(f"{rng.uniform(0.3, 0.9):.2f}") + 50_000
            return self._tx(c, at, amount, "debit", "transfer", "online", "customer", external=rng.random() < 0.6)
        if roll < 0.98:
            amount = Decimal(f"{rng.uniform(60_000, 2_500_000):.2f}")
            return self._tx(c, at, amount, "credit", "transfer", "online", "customer", external=True)
        if roll < 0.99:
            return self._interaction(c, at, "product_purchase", "branch", "customer")
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
    events: int, clients: int, seed: int = 7, start: datetime | None = None, span_days: int = 200, run_id: str = "hist"
) -> Iterator[Record]:
    """A time-ordered history: onboarding, then `events` events spread over `span_days`."""
    bank = SyntheticBank(clients=clients, rms=max(1, clients // 50), seed=seed, run_id=run_id)
    start = start or datetime(2026, 1, 1, tzinfo=UTC)
    yield from bank.onboarding(start)
    step = timedelta(days=span_days) / max(1, events)
    at = start
    for _ in range(events):
        at += step
        yield bank.event(at.replace(microsecond=0) if step >= timedelta(seconds=1) else at)

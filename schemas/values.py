"""The closed value lists of the contract, defined once: the models, the fast decoder and the rules use these."""

from __future__ import annotations

from typing import Literal, get_args

Tier = Literal["mass", "gold", "platinum", "diamond", "private"]
TIERS: tuple[Tier, ...] = get_args(Tier)
"""From the lowest to the highest."""

Severity = Literal["info", "warning", "critical"]
SEVERITY_RANK: dict[str, int] = {s: i for i, s in enumerate(get_args(Severity))}

Direction = Literal["credit", "debit"]
TransactionKind = Literal["deposit", "withdrawal", "transfer", "payment", "salary", "interest", "fee", "card", "other"]
TransactionChannel = Literal["branch", "atm", "mobile", "online", "phone", "pos", "batch"]
TransactionInitiator = Literal["customer", "bank"]
CounterpartyBank = Literal["internal", "external"]

InteractionKind = Literal["visit", "call", "message", "meeting", "complaint", "feedback", "inquiry", "product_purchase"]
InteractionChannel = Literal["branch", "phone", "mobile", "online", "onsite"]
InteractionInitiator = Literal["customer", "rm"]
ComplaintSeverity = Literal["low", "medium", "high"]

ClientEventKind = Literal["onboarded", "profile_updated", "rm_assigned", "product_maturing", "closed"]
Segment = Literal["retail", "corporate"]

"""The closed value lists of the contract, defined once: the models, the fast decoder and the rules use these."""

from __future__ import annotations

from typing import Literal, get_args

Tier = Literal["mass", "gold", "platinum", "diamond", "private"]
TIERS: tuple[Tier, ...] = get_args(Tier)
"""From the lowest to the highest."""

Severity = Literal["info", "warning", "critical"]
SEVERITIES: tuple[Severity, ...] = get_args(Severity)
SEVERITY_RANK: dict[str, int] = {s: i for i, s in enumerate(SEVERITIES)}

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

ContactPreference = Literal["any", "service_only"]
"""`service_only`: the client declined marketing contact (docs/rules.md, "Consent")."""

ControlKind = Literal["snooze", "unsnooze"]

SuppressionReason = Literal["cooldown", "consent", "snoozed"]
SUPPRESSION_REASONS: tuple[str, ...] = get_args(SuppressionReason)
"""Why an alert was not sent (the `reason` label of clientpulse_alerts_suppressed_total)."""

Locale = Literal["en", "zh-CN"]
LOCALES: tuple[str, ...] = get_args(Locale)
"""The languages every alert title is written in."""

"""The validated rules file: every threshold, window, cooldown, tier floor and FX rate."""

from __future__ import annotations

import hashlib
import itertools
import json
import re
import zoneinfo
from datetime import time
from decimal import Decimal
from typing import Annotated

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, PlainSerializer, field_validator, model_validator

from schemas.alerts import ALERT_TYPES
from schemas.values import SEVERITIES, TIERS, Locale, Severity, Tier

NonNegative = Annotated[Decimal, Field(ge=0, allow_inf_nan=False)]
Positive = Annotated[Decimal, Field(gt=0, allow_inf_nan=False)]
Fraction = Annotated[Decimal, Field(ge=0, lt=1, allow_inf_nan=False)]
Hours = Annotated[Decimal, Field(ge=0, allow_inf_nan=False)]
Days = Annotated[Decimal, Field(gt=0, allow_inf_nan=False)]


class _Strict(BaseModel):
    # A typo in a rules file must fail loudly instead of silently using a default.
    model_config = ConfigDict(extra="forbid", frozen=True)


class TierRules(_Strict):
    floors: dict[Tier, NonNegative]
    downgrade_buffer: Fraction = Decimal("0.10")
    single_limits: dict[Tier, Positive]

    @model_validator(mode="after")
    def _complete_and_ascending(self) -> TierRules:
        for name in ("floors", "single_limits"):
            table = getattr(self, name)
            missing = [t for t in TIERS if t not in table]
            if missing:
                raise ValueError(f"{name} is missing tiers: {', '.join(missing)}")
        floors = [self.floors[t] for t in TIERS]
        if floors[0] != 0:
            raise ValueError("floors.mass must be 0 so every client has a tier")
        if any(a >= b for a, b in itertools.pairwise(floors)):
            raise ValueError("floors must rise strictly from mass to private")
        return self


class OutflowRules(_Strict):
    velocity_window_days: Days = Decimal(7)
    velocity_warning_multiple: Positive = Decimal(2)
    velocity_critical_multiple: Positive = Decimal(4)
    large_critical_multiple: Positive = Decimal(2)
    drain_window_days: Days = Decimal(30)
    drain_fraction: Annotated[Decimal, Field(gt=0, le=1)] = Decimal("0.30")
    drain_min_tier: Tier = "gold"


class DormancyRules(_Strict):
    days: dict[Tier, Days]


class RmContactRules(_Strict):
    days: dict[Tier, Days]
    """Tiers absent here are not watched for overdue contact."""


class MaturityRules(_Strict):
    notice_days: Days = Decimal(7)


class FirstTxnRules(_Strict):
    call_within_hours: Hours = Decimal(24)


class BirthdayRules(_Strict):
    min_tier: Tier = "platinum"
    notice_days: Annotated[int, Field(ge=0, le=60, strict=True)] = 3
    """Due at 00:00 bank time this many days before the birthday (0: on the day)."""


class ComplaintRules(_Strict):
    follow_up_hours: Annotated[Decimal, Field(gt=0, le=24 * 30, allow_inf_nan=False)] = Decimal(24)
    high_severity_follow_up_hours: Annotated[Decimal, Field(gt=0, le=24 * 30, allow_inf_nan=False)] = Decimal(4)


class SatisfactionRules(_Strict):
    alert_at_most: Annotated[int, Field(ge=1, le=5, strict=True)] = 2
    """A satisfaction score (1-5) at or below this raises low_satisfaction."""


Points = Annotated[int, Field(ge=0, le=100, strict=True)]


class PriorityRules(_Strict):
    """priority = severity points + tier points + type points, capped at 100."""

    severity: dict[Severity, Points] = {"critical": 70, "warning": 40, "info": 10}
    tier: dict[Tier, Points] = {"private": 25, "diamond": 20, "platinum": 15, "gold": 5, "mass": 0}
    type: dict[str, Points] = {"complaint": 5, "complaint_unanswered": 5, "aum_drain": 5}
    """Types not named here score 0."""

    @model_validator(mode="after")
    def _complete(self) -> PriorityRules:
        severities = [s for s in SEVERITIES if s not in self.severity]
        if severities:
            raise ValueError(f"severity is missing: {', '.join(severities)}")
        tiers = [t for t in TIERS if t not in self.tier]
        if tiers:
            raise ValueError(f"tier is missing tiers: {', '.join(tiers)}")
        unknown = sorted(set(self.type) - set(ALERT_TYPES))
        if unknown:
            raise ValueError(f"type names unknown alert types: {', '.join(unknown)}")
        return self


_CLOCK_TIME = re.compile(r"^([01][0-9]|2[0-3]):([0-5][0-9])$")


def _clock_time(value: object) -> object:
    # YAML reads an unquoted 21:00 as the number 1260 (sexagesimal); only "HH:MM" text is accepted.
    if isinstance(value, time):
        return value
    if not isinstance(value, str) or not _CLOCK_TIME.match(value):
        raise ValueError('must be a local time "HH:MM" (quoted in YAML), e.g. "21:00"')
    hours, minutes = value.split(":")
    return time(int(hours), int(minutes))


def _hhmm(value: time) -> str:
    return value.strftime("%H:%M")


ClockTime = Annotated[time, BeforeValidator(_clock_time), PlainSerializer(_hhmm, return_type=str, when_used="json")]


class QuietHours(_Strict):
    start: ClockTime
    """Included: an alert at exactly this local time is in the quiet hours."""
    end: ClockTime
    """Excluded: an alert at exactly this local time is not."""

    @model_validator(mode="after")
    def _differ(self) -> QuietHours:
        if self.start == self.end:
            raise ValueError("start and end must differ (set quiet_hours to null for none)")
        return self


class NotifyRules(_Strict):
    daily_push_budget: Annotated[int, Field(ge=0, le=10_000)] = 15
    """Pushes per RM per local day (critical ones included) before other alerts are held."""
    quiet_hours: QuietHours | None = QuietHours(start=time(21), end=time(8))
    digest_at: ClockTime = time(8)
    remember_days: Annotated[int, Field(ge=1, le=90)] = 7
    """How long, in the RM's own event time, decided alert ids and daily push counts are kept."""


DEFAULT_SLA_HOURS: dict[str, Decimal] = {
    "complaint": Decimal(24),
    "complaint_unanswered": Decimal(4),
    "new_client_first_txn": Decimal(24),
    "large_outflow": Decimal(24),
    "aum_drain": Decimal(24),
}
"""Hours an alert of the type may stay open (docs/rules.md, "Service levels"); other types get sla_default_hours."""

SlaHours = Annotated[Decimal, Field(gt=0, le=24 * 366, allow_inf_nan=False)]


class RulesFile(_Strict):
    version: str = Field(min_length=1, max_length=64)
    base_currency: str = Field(pattern=r"^[A-Z]{3}$")
    fx_rates: dict[Annotated[str, Field(pattern=r"^[A-Z]{3}$")], Positive]
    """Units of base currency per one unit of the keyed currency."""
    tiers: TierRules
    outflows: OutflowRules = OutflowRules()
    dormancy: DormancyRules
    rm_contact: RmContactRules
    maturity: MaturityRules = MaturityRules()
    first_transaction: FirstTxnRules = FirstTxnRules()
    cooldown_hours: dict[str, Hours] = {}
    dedupe_days: Days = Decimal(7)
    timezone: str = "Asia/Shanghai"
    """The bank's time zone (IANA name): local midnights of the birthday rule."""
    locale: Locale = "en"
    """The language of each alert's `title` (`titles` carries every language)."""
    birthday: BirthdayRules = BirthdayRules()
    complaint: ComplaintRules = ComplaintRules()
    satisfaction: SatisfactionRules = SatisfactionRules()
    priority: PriorityRules = PriorityRules()
    notify: NotifyRules = NotifyRules()
    """What reaches each RM: budget, quiet hours, digests (docs/rules.md, "Notifications")."""

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            zoneinfo.ZoneInfo(value)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError, OSError):
            raise ValueError(f"unknown time zone {value!r} (an IANA name such as Asia/Shanghai)") from None
        return value

    sla_hours: dict[str, SlaHours] = DEFAULT_SLA_HOURS
    """Hours from an alert's occurred_at until it is due (`due_by`); an alert still open then is escalated."""
    sla_default_hours: SlaHours = Decimal(72)
    """The SLA of every type sla_hours does not name."""
    sla_due_soon_fraction: Annotated[Decimal, Field(gt=0, lt=1, allow_inf_nan=False)] = Decimal("0.25")
    """An open alert is "due soon" once less than this share of its SLA is left."""

    @model_validator(mode="after")
    def _consistent(self) -> RulesFile:
        if self.fx_rates.get(self.base_currency, Decimal(1)) != 1:
            raise ValueError(f"fx_rates.{self.base_currency} must be 1 (it is the base currency)")
        unknown = sorted(set(self.cooldown_hours) - set(ALERT_TYPES))
        if unknown:
            raise ValueError(f"cooldown_hours names unknown alert types: {', '.join(unknown)}")
        unknown = sorted(set(self.sla_hours) - set(ALERT_TYPES))
        if unknown:
            raise ValueError(f"sla_hours names unknown alert types: {', '.join(unknown)}")
        missing = [t for t in TIERS if t not in self.dormancy.days]
        if missing:
            raise ValueError(f"dormancy.days is missing tiers: {', '.join(missing)}")
        return self

    def content_hash(self) -> str:
        canonical = json.dumps(self.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()[:12]

    @property
    def rule_version(self) -> str:
        return f"{self.version}+{self.content_hash()}"

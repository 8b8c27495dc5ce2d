"""The rules file compiled into the integers the rule functions compare against."""

from __future__ import annotations

import zoneinfo
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

import yaml
from pydantic import ValidationError

from handlers.timeutil import US_PER_DAY, US_PER_HOUR
from schemas.alerts import ALERT_TYPES, NEVER_SNOOZED
from schemas.errors import error_texts
from schemas.rules import NotifyRules, PriorityRules, RulesFile
from schemas.values import LOCALES, SEVERITIES, TIERS

TIER_RANK: dict[str, int] = {t: i for i, t in enumerate(TIERS)}


class RulesError(Exception):
    """The rules file cannot be used; the message names the key and the problem."""


def _days(value: Decimal) -> int:
    return int(value * US_PER_DAY)


def _hours(value: Decimal) -> int:
    return int(value * US_PER_HOUR)


def _cents(value: Decimal) -> int:
    return int(value * 100)


@dataclass(frozen=True, slots=True)
class Ruleset:
    source: RulesFile
    rule_version: str
    base_currency: str
    fx: dict[str, Decimal]
    floors: dict[str, int]
    """Tier floors in cents."""
    ladder: tuple[tuple[str, int], ...]
    """(tier, floor) from the highest tier down, for classification."""
    downgrade_below: dict[str, Decimal]
    """Cents: a tier is left downwards only when AUM < floor x (1 - downgrade_buffer)."""
    limits: dict[str, int]
    velocity_window: int
    velocity_warning: int
    velocity_critical: int
    large_critical: int
    drain_window: int
    drain_fraction: Decimal
    drain_min_rank: int
    dormancy: dict[str, int]
    rm_contact: dict[str, int]
    maturity_notice: int
    first_txn_call: int
    cooldowns: dict[str, int]
    dedupe: int
    timezone: zoneinfo.ZoneInfo
    title_index: int
    """Which of an alert's titles (in LOCALES order) is its `title`."""
    birthday_min_rank: int
    birthday_notice_days: int
    follow_up: int
    follow_up_high: int
    satisfaction_at_most: int
    priorities: dict[tuple[str, str, str | None], int]
    """(type, severity, tier or None) -> priority: every combination, looked up once per alert."""
    notify: NotifyRules
    sla: dict[str, int]
    """Microseconds from occurred_at to due_by, for every alert type."""
    sla_default: int
    """For a type this rules file does not know (an alert from a newer worker)."""
    sla_due_soon: Decimal

    @property
    def history_window(self) -> int:
        """How far back per-client debit history must reach."""
        return max(self.velocity_window, self.drain_window)

    @classmethod
    def compile(cls, rules: RulesFile) -> Ruleset:
        floors: dict[str, int] = {t: _cents(rules.tiers.floors[t]) for t in TIERS}
        cooldowns = {t: 0 for t in ALERT_TYPES}
        cooldowns.update({t: _hours(h) for t, h in rules.cooldown_hours.items()})
        for never in NEVER_SNOOZED:
            cooldowns[never] = 0  # complaints and their follow-ups are never suppressed
        o = rules.outflows
        return cls(
            source=rules,
            rule_version=rules.rule_version,
            base_currency=rules.base_currency,
            fx={**rules.fx_rates, rules.base_currency: Decimal(1)},
            floors=floors,
            ladder=tuple((t, floors[t]) for t in reversed(TIERS)),
            downgrade_below={t: floors[t] * (1 - rules.tiers.downgrade_buffer) for t in TIERS},
            limits={t: _cents(rules.tiers.single_limits[t]) for t in TIERS},
            velocity_window=_days(o.velocity_window_days),
            velocity_warning=int(o.velocity_warning_multiple * 100),
            velocity_critical=int(o.velocity_critical_multiple * 100),
            large_critical=int(o.large_critical_multiple * 100),
            drain_window=_days(o.drain_window_days),
            drain_fraction=o.drain_fraction,
            drain_min_rank=TIER_RANK[o.drain_min_tier],
            dormancy={t: _days(d) for t, d in rules.dormancy.days.items()},
            rm_contact={t: _days(d) for t, d in rules.rm_contact.days.items()},
            maturity_notice=_days(rules.maturity.notice_days),
            first_txn_call=_hours(rules.first_transaction.call_within_hours),
            cooldowns=cooldowns,
            dedupe=_days(rules.dedupe_days),
            timezone=zoneinfo.ZoneInfo(rules.timezone),
            title_index=LOCALES.index(rules.locale),
            birthday_min_rank=TIER_RANK[rules.birthday.min_tier],
            birthday_notice_days=rules.birthday.notice_days,
            follow_up=_hours(rules.complaint.follow_up_hours),
            follow_up_high=_hours(rules.complaint.high_severity_follow_up_hours),
            satisfaction_at_most=rules.satisfaction.alert_at_most,
            priorities=priority_table(rules.priority),
            notify=rules.notify,
            sla={t: _hours(rules.sla_hours.get(t, rules.sla_default_hours)) for t in ALERT_TYPES},
            sla_default=_hours(rules.sla_default_hours),
            sla_due_soon=rules.sla_due_soon_fraction,
        )

    def tier_for(self, aum: int) -> str:
        for tier, floor in self.ladder:
            if aum >= floor:
                return tier
        return TIERS[0]


def priority_table(tables: PriorityRules) -> dict[tuple[str, str, str | None], int]:
    """Severity points + tier points (a null tier scores 0) + type points, capped at 100, for every combination."""
    return {
        (alert_type, severity, tier): min(
            100,
            tables.severity[severity] + (tables.tier[tier] if tier is not None else 0) + tables.type.get(alert_type, 0),
        )
        for alert_type in ALERT_TYPES
        for severity in SEVERITIES
        for tier in (*TIERS, None)
    }


def parse_rules(text: str, origin: str = "rules file") -> Ruleset:
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise RulesError(f"{origin}: not valid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise RulesError(f"{origin}: must be a mapping of settings at the top level")
    try:
        rules = RulesFile.model_validate(data)
    except ValidationError as exc:
        lines = error_texts(exc, whole="(top level)")
        raise RulesError(f"{origin}: invalid rules\n" + "\n".join(f"  {line}" for line in lines)) from None
    return Ruleset.compile(rules)


def load_rules(path: Path | str) -> Ruleset:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise RulesError(f"{path}: cannot read rules file: {exc.strerror or exc}") from None
    return parse_rules(text, str(path))

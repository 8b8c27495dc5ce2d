"""The rules file is validated at load; every error names its key.

The file mutated here is tests/rules/thresholds.yaml; the shipped file's values
are checked in test_shipped_rules.py.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from handlers.ruleset import RulesError, load_rules, parse_rules
from tests.unit.builders import THRESHOLDS


def thresholds_text() -> str:
    return THRESHOLDS.read_text()


def mutate(change: dict[str, object]) -> str:
    data = yaml.safe_load(thresholds_text())
    for dotted, value in change.items():
        *path, last = dotted.split(".")
        node = data
        for part in path:
            node = node[part]
        if value is None:
            del node[last]
        else:
            node[last] = value
    return yaml.safe_dump(data)


def test_rule_version_follows_content() -> None:
    a = parse_rules(thresholds_text())
    b = parse_rules(thresholds_text())
    c = parse_rules(mutate({"tiers.downgrade_buffer": "0.25"}))
    assert a.rule_version == b.rule_version
    assert a.rule_version != c.rule_version
    assert a.rule_version.startswith("test-thresholds+")


@pytest.mark.parametrize(
    ("change", "names"),
    [
        ({"tiers.floors.gold": -1}, "tiers.floors.gold"),
        ({"tiers.floors.platinum": 10}, "floors must rise"),
        ({"tiers.single_limits.private": None}, "single_limits is missing tiers: private"),
        ({"fx_rates.USD": "0"}, "fx_rates.USD"),
        ({"fx_rates.CNY": "2"}, "fx_rates.CNY must be 1"),
        ({"cooldown_hours.large_outflw": 1}, "large_outflw"),
        ({"outflows.drain_fraction": "1.5"}, "outflows.drain_fraction"),
        ({"dormancy.days.private": None}, "dormancy.days is missing tiers: private"),
        ({"tiers.downgrade_buffer": "abc"}, "tiers.downgrade_buffer"),
        ({"thresholds": 1}, "thresholds: Extra inputs are not permitted"),
        ({"version": None}, "version: Field required"),
        ({"timezone": "Asia/Shangai"}, "timezone: Value error, unknown time zone 'Asia/Shangai'"),
        ({"timezone": "Asia"}, "timezone: Value error, unknown time zone 'Asia'"),
        ({"timezone": "../../etc/passwd"}, "timezone: Value error, unknown time zone"),
        ({"locale": "zh"}, "locale: Input should be 'en' or 'zh-CN'"),
        ({"birthday.min_tier": "vip"}, "birthday.min_tier"),
        ({"birthday.notice_days": -1}, "birthday.notice_days"),
        ({"birthday.notice_days": "3"}, "birthday.notice_days"),
        ({"birthday.notice_dayz": 3}, "birthday.notice_dayz: Extra inputs are not permitted"),
        ({"complaint.follow_up_hours": 0}, "complaint.follow_up_hours"),
        ({"complaint.high_severity_follow_up_hours": -4}, "complaint.high_severity_follow_up_hours"),
        ({"satisfaction.alert_at_most": 6}, "satisfaction.alert_at_most"),
        ({"priority.severity.info": None}, "priority: Value error, severity is missing: info"),
        ({"priority.tier.mass": None}, "priority: Value error, tier is missing tiers: mass"),
        ({"priority.type.complaints": 5}, "type names unknown alert types: complaints"),
        ({"priority.tier.gold": 101}, "priority.tier.gold"),
        ({"cooldown_hours.low_satisfactoin": 24}, "low_satisfactoin"),
        (
            {"notify.quiet_hours": {"start": 1260, "end": "08:00"}},
            'notify.quiet_hours.start: Value error, must be a local time "HH:MM"',
        ),
        ({"notify.quiet_hours": {"start": "08:00", "end": "08:00"}}, "start and end must differ"),
        ({"notify.digest_at": "8am"}, "notify.digest_at"),
        ({"notify.daily_push_budget": -1}, "notify.daily_push_budget"),
        ({"notify.budget": 3}, "notify.budget: Extra inputs are not permitted"),
    ],
)
def test_invalid_rules_name_the_key(change: dict[str, object], names: str) -> None:
    with pytest.raises(RulesError) as err:
        parse_rules(mutate(change), "rules.yaml")
    assert names in str(err.value)
    assert str(err.value).startswith("rules.yaml")


def test_unreadable_or_malformed_files(tmp_path: Path) -> None:
    with pytest.raises(RulesError, match="cannot read rules file"):
        load_rules(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("version: [unclosed")
    with pytest.raises(RulesError, match="not valid YAML"):
        load_rules(bad)
    bad.write_text("- a list")
    with pytest.raises(RulesError, match="mapping"):
        load_rules(bad)


def test_the_keys_added_later_have_defaults() -> None:
    """A rules file written before birthdays, consent, priority and snoozes still loads, with the shipped values."""
    old = mutate({key: None for key in ("timezone", "locale", "birthday", "complaint", "satisfaction", "priority")})
    rules = parse_rules(old)
    assert rules.timezone.key == "Asia/Shanghai" and rules.title_index == 0
    assert rules.birthday_notice_days == 3 and rules.satisfaction_at_most == 2
    assert rules.priorities[("complaint", "critical", "private")] == 100


def test_an_unquoted_yaml_time_is_refused_not_misread() -> None:
    """YAML reads 21:00 unquoted as the number 1260 (base 60): the file must say "21:00"."""
    text = thresholds_text().replace('start: "21:00"', "start: 21:00")
    assert "start: 21:00" in text
    with pytest.raises(RulesError, match="quoted in YAML"):
        parse_rules(text)

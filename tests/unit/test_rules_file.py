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

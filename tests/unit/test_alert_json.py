"""Alerts are published as `Alert.model_dump_json` would write them, byte for byte."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta, timezone

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from handlers.alerting import alert_json
from handlers.replay import Replay
from handlers.trusted import construct
from schemas.alerts import ALERT_TYPES, Alert
from streams.tools.synthetic import history
from tests.unit.builders import RULES


def test_every_alert_of_a_synthetic_history() -> None:
    replay = Replay(RULES, detected_at=datetime(2026, 11, 30, 9, 1, 2, 345_678, tzinfo=UTC))
    alerts = []
    for topic, key, value in history(6_000, 300, seed=3):
        alerts += replay.feed_raw(topic, key.encode(), orjson.dumps(value))
    alerts += replay.finish()
    types = Counter(a.type for a in alerts)
    assert len(types) >= 8, types  # the history exercises most rules
    assert {"complaint_unanswered", "low_satisfaction"} <= set(types), types
    for alert in alerts:
        assert alert_json(alert) == alert.model_dump_json().encode()


text = st.text(st.characters(blacklist_categories=["Cs"]), max_size=40)
# Alert times are bounded like event times (schemas/limits.py): the worker never makes others.
moments = st.datetimes(
    min_value=datetime(1970, 1, 2),
    max_value=datetime(2999, 12, 30),
    timezones=st.sampled_from([UTC, timezone(timedelta(hours=5, minutes=30)), timezone(timedelta(hours=-8))]),
)


@settings(max_examples=300, deadline=None)
@given(
    alert_type=st.sampled_from(ALERT_TYPES),
    severity=st.sampled_from(["info", "warning", "critical"]),
    rm_id=st.none() | text,
    tier=st.none() | st.sampled_from(["mass", "gold", "platinum", "diamond", "private"]),
    occurred_at=moments,
    detected_at=moments,
    priority=st.none() | st.integers(0, 100),
    title=text,
    titles=st.none() | st.fixed_dictionaries({"en": text, "zh-CN": text}),
    facts=st.dictionaries(text, text, max_size=4),
    sources=st.lists(text, max_size=3),
)
def test_any_text_and_time(
    alert_type: str,
    severity: str,
    rm_id: str | None,
    tier: str | None,
    occurred_at: datetime,
    detected_at: datetime,
    priority: int | None,
    title: str,
    titles: dict[str, str] | None,
    facts: dict[str, str],
    sources: list[str],
) -> None:
    values = {
        "alert_id": "0" * 32,
        "type": alert_type,
        "severity": severity,
        "priority": priority,
        "client_id": "c-1",
        "rm_id": rm_id,
        "tier": tier,
        "occurred_at": occurred_at,
        "detected_at": detected_at,
        "title": title,
        "titles": titles,
        "facts": facts,
        "rule_version": "r-1",
        "source_event_ids": sources,
    }
    built = construct(Alert, values)
    assert alert_json(built) == built.model_dump_json().encode()
    validated = Alert.model_validate(values)
    assert alert_json(validated) == validated.model_dump_json().encode()

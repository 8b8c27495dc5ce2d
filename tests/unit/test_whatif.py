"""The comparison of two sides' alerts (handlers/whatif.py): matching by id, groups, RM-day load, labels, JSON."""

from __future__ import annotations

import itertools
from datetime import UTC, date, datetime, timedelta
from typing import Any

import orjson
import pytest

from handlers.notify import Digest, NotifyReplay, Push
from handlers.ruleset import Ruleset
from handlers.timeutil import to_us
from handlers.whatif import Label, compare, notify, side
from schemas.alerts import Alert
from schemas.rules import RulesFile

SHANGHAI = timedelta(hours=8)
_ids = itertools.count(1)


def local(day: int, hour: int, minute: int = 0) -> datetime:
    """A Shanghai wall time on 2026-03-<day>, as an aware UTC datetime."""
    return datetime(2026, 3, day, hour, minute, tzinfo=UTC) - SHANGHAI


def alert(
    when: datetime,
    *,
    alert_id: str | None = None,
    type_: str = "large_outflow",
    severity: str = "warning",
    tier: str | None = "gold",
    rm: str | None = "rm-1",
    priority: int = 45,
    facts: dict[str, str] | None = None,
    client: str = "c-1",
) -> Alert:
    return Alert.model_validate(
        {
            "alert_id": alert_id or f"a{next(_ids):05d}",
            "type": type_,
            "severity": severity,
            "priority": priority,
            "client_id": client,
            "rm_id": rm,
            "tier": tier,
            "occurred_at": when.isoformat(),
            "detected_at": when.isoformat(),
            "title": f"{type_} of {client}",
            "titles": {"en": f"{type_} of {client}", "zh-CN": f"{client} 的 {type_}"},
            "facts": facts if facts is not None else {"amount": "60000.00", "limit": "50000.00"},
            "rule_version": "v",
            "source_event_ids": [],
        }
    )


def variant(base: Alert, **changes: Any) -> Alert:
    """The same alert (same id) as another rules file raises it: severity, facts ... changed."""
    return base.model_copy(update=changes)


@pytest.fixture(scope="module")
def shanghai(rules: Ruleset) -> Ruleset:
    """The test rules in Asia/Shanghai (UTC+8 all year): budget 3 pushes per RM-day, quiet 21:00-08:00, digest 08:00."""
    data = rules.source.model_dump(mode="json")
    data["timezone"] = "Asia/Shanghai"
    return Ruleset.compile(RulesFile.model_validate(data))


def test_alerts_are_matched_by_id_and_counted_per_type_severity_tier_and_rm(shanghai: Ruleset) -> None:
    kept = alert(local(2, 10), alert_id="kept", severity="critical", facts={"limit": "50000.00"})
    same = alert(local(2, 11), alert_id="same", type_="complaint", tier="platinum", rm="rm-2")
    dropped = [alert(local(3, 10 + i), alert_id=f"drop{i}") for i in range(3)]
    new = alert(local(4, 10), alert_id="new", type_="outflow_velocity", tier=None, rm=None)
    a = side([kept, same, *dropped], shanghai)
    b = side([variant(kept, severity="warning", facts={"limit": "100000.00"}), same, new], shanghai, rule_version="B")
    c = compare(a, b, timezone=shanghai.timezone)

    assert (c.a.alerts, c.b.alerts, c.both, c.only_in_a, c.only_in_b) == (5, 3, 2, 3, 1)
    assert (c.a.rule_version, c.b.rule_version) == (shanghai.rule_version, "B")
    rows = {r.key: (r.a, r.b, r.both, r.only_a, r.only_b) for r in c.by_type}
    assert rows == {"large_outflow": (4, 1, 1, 3, 0), "complaint": (1, 1, 1, 0, 0), "outflow_velocity": (0, 1, 0, 0, 1)}
    assert c.by_type[0].key == "complaint", "types in code order"
    # The outflow raised under both moved from critical (A) to warning (B): counted under its own severity on each side.
    severity = {r.key: r for r in c.by_severity}
    assert [r.key for r in c.by_severity] == ["critical", "warning"], "most severe first, empty groups left out"
    assert (severity["critical"].a, severity["critical"].b, severity["critical"].moved_out) == (1, 0, 1)
    assert (severity["warning"].a, severity["warning"].b, severity["warning"].both) == (4, 3, 1)
    assert (severity["warning"].moved_in, severity["warning"].only_b) == (1, 1)
    assert c.severity_moves == {("critical", "warning"): 1}
    assert c.changed == 1 and c.changed_by_type == {"large_outflow": 1}
    assert c.changed_examples[0].fields == ("severity", "facts")
    tiers = {r.key: (r.a, r.b) for r in c.by_tier}
    assert tiers == {"platinum": (1, 1), "gold": (4, 1), "none": (0, 1)}
    # RMs: the largest change first; alerts without an RM are the `unassigned` group.
    assert [(r.key, r.a, r.b) for r in c.by_rm] == [("rm-1", 4, 1), ("unassigned", 0, 1), ("rm-2", 1, 1)]
    assert c.by_type[1].change == pytest.approx(-0.75) and c.by_type[2].change is None


def test_per_rm_day_load_uses_local_days_and_every_rm_day_of_the_period(shanghai: Ruleset) -> None:
    # 2026-03-01 20:00 UTC is 03-02 04:00 in Shanghai: the RM's second day, not its first.
    late_utc = datetime(2026, 3, 1, 20, 0, tzinfo=UTC)
    a_alerts = [
        alert(local(1, 9)),
        alert(local(1, 10)),
        alert(local(1, 11)),
        alert(late_utc),
        alert(local(1, 12), rm="rm-2"),
        alert(local(1, 13), rm=None),  # no RM: not in the load
    ]
    b_alerts = [a_alerts[0], a_alerts[3], a_alerts[4], alert(local(2, 9), rm="rm-2"), alert(local(2, 10), rm="rm-2")]
    c = compare(side(a_alerts, shanghai), side(b_alerts, shanghai), timezone=shanghai.timezone)
    assert c.days == [date(2026, 3, 1), date(2026, 3, 2)] and c.rms == 2
    la, lb = c.a.load, c.b.load
    assert la.rm_days == lb.rm_days == 4, "2 RMs x 2 days, the same denominator for both sides"
    assert la.mean == pytest.approx(5 / 4) and la.active_mean == pytest.approx(5 / 3)
    assert (la.max, la.busiest_rm, la.busiest_day) == (3, "rm-1", date(2026, 3, 1))
    assert la.spread == {1: 2, 3: 1}
    assert lb.mean == pytest.approx(5 / 4) and lb.active_mean == pytest.approx(5 / 4)
    # B's busiest RM-day is rm-2 on the 2nd (two); ties would go to the earlier day.
    assert (lb.max, lb.busiest_rm, lb.busiest_day) == (2, "rm-2", date(2026, 3, 2))
    assert c.a.unassigned == 1 and c.b.unassigned == 0
    assert c.a.per_day["total"] == [5, 1] and c.b.per_day["large_outflow"] == [2, 3]
    # A given period widens the days (and the denominator): a quiet day counts as a day of zero alerts.
    wide = compare(
        side(a_alerts, shanghai),
        side(b_alerts, shanghai),
        timezone=shanghai.timezone,
        period=(date(2026, 2, 28), date(2026, 3, 2)),
    )
    assert wide.days[0] == date(2026, 2, 28) and wide.a.load.rm_days == 6
    assert wide.a.load.mean == pytest.approx(5 / 6) and wide.a.per_day["total"] == [0, 5, 1]


def test_notifications_are_the_replays_and_the_clock_end_fires_the_last_digest(shanghai: Ruleset) -> None:
    # Four daytime warnings (budget 3: the fourth is held) and one in the quiet hours (held); both wait for
    # the next 08:00 digest, which only a clock moved past it sends.
    alerts = [alert(local(2, 9 + h)) for h in range(4)] + [alert(local(2, 22))]
    without_end = notify(alerts, shanghai)
    assert (sum(without_end.counts.pushed.values()), sum(without_end.counts.held.values())) == (3, 2)
    assert without_end.waiting == 2 and not [o for o in without_end.outputs if isinstance(o, Digest)]
    with_end = notify(alerts, shanghai, clock_end=local(3, 9))
    digests = [o for o in with_end.outputs if isinstance(o, Digest)]
    assert with_end.waiting == 0 and len(digests) == 1 and len(digests[0].items) == 2
    # The same decisions as `backtest --notifications`: NotifyReplay fed one alert at a time, then the clock.
    replay = NotifyReplay(shanghai)
    expected = [o for a in alerts for o in replay.feed([a])] + replay.finish(to_us(local(3, 9)))
    assert [o.record(full=False) for o in with_end.outputs] == [o.record(full=False) for o in expected]

    c = compare(
        side(alerts, shanghai, clock_end=local(3, 9)),
        side(alerts[:2], shanghai, clock_end=local(3, 9)),
        timezone=shanghai.timezone,
    )
    na, nb = c.a.notifications, c.b.notifications
    assert (na.pushed, na.held, na.digests, na.digested, na.waiting) == (3, 2, 1, 2, 0)
    assert na.held_by_reason == {"budget": 1, "quiet_hours": 1}
    assert (nb.pushed, nb.held, nb.digests) == (2, 0, 0)
    assert c.days == [date(2026, 3, 2), date(2026, 3, 3)], "the digest's morning is a day of the report"
    assert na.per_day == {"pushes": [3, 0], "digests": [0, 1]}
    assert (na.pushes_per_rm_day.max, na.pushes_per_rm_day.mean) == (3, pytest.approx(3 / 2))
    assert [o.alert.alert_id for o in with_end.outputs if isinstance(o, Push)] == [a.alert_id for a in alerts[:3]]


def test_a_side_takes_json_objects_as_a_topic_carries_them_and_a_redelivery_counts_once(shanghai: Ruleset) -> None:
    alerts = [alert(local(2, 9)), alert(local(2, 10), severity="critical")]
    as_json = [a.model_dump(mode="json") for a in alerts]
    from_models, from_json = side(alerts, shanghai), side([*as_json, as_json[0]], shanghai, rule_version="shadow")
    assert from_json.alerts[:2] == from_models.alerts
    c = compare(from_models, from_json, timezone=shanghai.timezone)
    assert (c.a.alerts, c.b.alerts, c.both, c.only_in_a, c.only_in_b, c.changed) == (2, 2, 2, 0, 0, 0)
    assert c.b.notifications.pushed == c.a.notifications.pushed == 2, "the re-delivered alert is not pushed again"


def test_labels_say_which_useful_alerts_b_loses_and_which_not_useful_ones_it_drops(shanghai: Ruleset) -> None:
    lost, dropped_fp, dropped_noop, kept_useful, kept_useless, fresh = (
        alert(local(2, 9 + i), alert_id=name)
        for i, name in enumerate(("lost", "fp", "noop", "kept", "useless", "fresh"))
    )
    complaint = alert(local(2, 16), alert_id="complaint", type_="complaint")
    a = side([lost, dropped_fp, dropped_noop, kept_useful, kept_useless, complaint], shanghai)
    b = side([kept_useful, kept_useless, fresh], shanghai)

    def label(alert_id: str, status: str, outcome: str | None, type_: str = "large_outflow") -> Label:
        return Label.from_record(
            {"alert_id": alert_id, "type": type_, "status": status, "outcome": outcome, "useful": "ignored"}
        )

    labels = [
        label("lost", "resolved", "sold"),
        label("lost", "resolved", "retained"),  # a later line for the same alert: one label
        label("fp", "dismissed", "false_positive"),
        label("noop", "resolved", "no_action_needed"),
        label("kept", "resolved", "contacted"),
        label("useless", "dismissed", "not_relevant"),
        label("fresh", "resolved", "contacted"),
        label("elsewhere", "dismissed", "duplicate"),
        label("complaint", "resolved", "contacted", "complaint"),
        label("open-one", "acknowledged", None),
    ]
    c = compare(a, b, timezone=shanghai.timezone, labels=labels)
    assert c.labels is not None
    rows = {r.type: r for r in c.labels.rows}
    outflow = rows["large_outflow"]
    assert (outflow.labelled, outflow.useful, outflow.not_useful) == (7, 3, 4)
    assert (outflow.useful_lost, outflow.not_useful_dropped) == (1, 2)
    assert (outflow.useful_kept, outflow.not_useful_kept, outflow.only_in_b, outflow.outside) == (1, 1, 1, 1)
    assert (rows["complaint"].useful_lost, rows["complaint"].in_a) == (1, 1)
    assert (c.labels.total.useful_lost, c.labels.total.not_useful_dropped, c.labels.open) == (2, 2, 1)
    # The examples only in A carry the stored outcome.
    outcomes = {e.alert.alert_id: e.label.outcome if e.label else None for e in c.only_a_examples}
    assert outcomes == {
        "lost": "retained",
        "fp": "false_positive",
        "noop": "no_action_needed",
        "complaint": "contacted",
    }
    assert c.as_json()["labels"]["total"]["useful_lost"] == 2
    for bad, problem in (
        ({"type": "x", "status": "resolved"}, '"alert_id"'),
        ({"alert_id": "a", "type": "x"}, "status"),
    ):
        with pytest.raises(ValueError, match=problem):
            Label.from_record(bad)
    with pytest.raises(ValueError, match="outcome"):
        Label.from_record({"alert_id": "a", "type": "x", "status": "resolved", "outcome": 3})


def test_examples_are_capped_per_type_highest_priority_first(shanghai: Ruleset) -> None:
    a = [alert(local(2, 9, i), priority=40 + i) for i in range(8)] + [alert(local(2, 10), type_="complaint")]
    c = compare(side(a, shanghai), side([], shanghai), timezone=shanghai.timezone, examples=3)
    assert [(e.alert.type, e.alert.priority) for e in c.only_a_examples] == [
        ("complaint", 45),
        ("large_outflow", 47),
        ("large_outflow", 46),
        ("large_outflow", 45),
    ]
    assert c.only_b_examples == [] and c.b.load.max == 0 and c.b.load.busiest_rm is None


def test_the_json_report_has_the_documented_shape(shanghai: Ruleset) -> None:
    a = [alert(local(2, 9), alert_id="x"), alert(local(2, 10), alert_id="y", type_="complaint")]
    b = [alert(local(2, 9), alert_id="x"), alert(local(3, 9), alert_id="z", rm="rm-2")]
    c = compare(side(a, shanghai), side(b, shanghai, rule_version="B"), timezone=shanghai.timezone)
    c.extra["history"] = {"events": "e.jsonl"}
    data = c.as_json()
    assert data["a"] == {
        **data["a"],
        "rule_version": shanghai.rule_version,
        "alerts": 2,
        "by_type": {"complaint": 1, "large_outflow": 1},
    }
    assert (data["b"]["rule_version"], data["b"]["alerts"], data["b"]["by_type"]) == ("B", 2, {"large_outflow": 2})
    assert (data["both"], data["only_in_a"], data["only_in_b"]) == (1, 1, 1)
    assert set(data["per_rm_day"]) == {"a", "b"}
    assert data["per_rm_day"]["a"] == {**data["per_rm_day"]["a"], "mean": 0.5, "max": 2}
    assert data["per_rm_day"]["b"] == {**data["per_rm_day"]["b"], "mean": 0.5, "max": 1}
    assert data["history"] == {"events": "e.jsonl"} and data["labels"] is None
    assert data["days"] == ["2026-03-02", "2026-03-03"] and data["timezone"] == "Asia/Shanghai"
    assert [e["alert_id"] for e in data["examples"]["only_in_a"]] == ["y"]
    assert orjson.loads(orjson.dumps(data)) == data, "plain JSON values only"

"""A shadow worker beside the live one on the real broker: same input, its own group, its own alerts, nothing else."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from handlers.ruleset import load_rules
from streams.settings import DEFAULT_RULES
from streams.tools.alert_topics import read_alerts
from tests.integration.shadow_support import ABOVE, BETWEEN, SINCE, UNTIL, ShadowRun, values

pytestmark = pytest.mark.broker


def metric(text: str, name: str, **labels: str) -> float | None:
    """The value of one series in a scrape, None when it is not there."""
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and sample.labels == labels:
                return float(sample.value)
    return None


def _large_outflows(alerts: list[dict[str, object]]) -> dict[object, dict[str, object]]:
    return {a["client_id"]: a for a in alerts if a["type"] == "large_outflow"}


def test_the_shadow_raises_fewer_large_outflows_under_doubled_limits(shadow_run: ShadowRun) -> None:
    run = shadow_run
    live = read_alerts(run.live, run.live.alerts_topic, SINCE, UNTIL)
    shadow = read_alerts(run.live, run.live.shadow_alerts_topic, SINCE, UNTIL)
    live_outflows, shadow_outflows = _large_outflows(live), _large_outflows(shadow)
    assert set(live_outflows) == set(BETWEEN) | set(ABOVE)
    assert set(shadow_outflows) == set(ABOVE), "only the debits above the doubled limit"
    assert 0 < len(shadow_outflows) < len(live_outflows)
    (client,) = ABOVE
    same, candidate = live_outflows[client], shadow_outflows[client]
    assert same["alert_id"] == candidate["alert_id"], "the same trigger is the same alert: compared by alert_id"
    assert (same["facts"]["limit"], candidate["facts"]["limit"]) == ("50000.00", "100000.00")  # type: ignore[index]
    versions = load_rules(DEFAULT_RULES).rule_version, load_rules(run.candidate).rule_version
    assert {a["rule_version"] for a in live} == {versions[0]}, "nothing of the shadow's in the live alerts"
    assert {a["rule_version"] for a in shadow} == {versions[1]}


def test_the_shadow_wrote_nothing_the_live_deployment_reads(shadow_run: ShadowRun) -> None:
    run, before = shadow_run, shadow_run.before_live
    # While the shadow ran alone, with everything read and more than a snapshot interval since:
    assert before.live_topics == {run.live.alerts_topic: 0, run.live.snapshots_topic: 0, run.live.deadletter_topic: 0}
    assert before.shadow_status["mode"] == "shadow" and before.shadow_status["processed"] == run.sent
    # The bad record was counted, not dead-lettered: the live workers write that dead letter.
    rejected = {"topic": run.live.transactions_topic, "reason": "invalid_json"}
    assert metric(before.shadow_metrics, "clientpulse_events_rejected_total", **rejected) == 1
    # Once the live worker had read the same history too, one dead letter: the live worker's.
    letters = values(run.live.kafka_bootstrap, run.live.deadletter_topic)
    assert [(d["key"], d["reason"]) for d in letters] == [("c-bad", "invalid_json")]
    assert Counter(a["type"] for a in values(run.live.kafka_bootstrap, run.live.alerts_topic))["large_outflow"] == 4


def test_the_shadow_used_a_consumer_group_and_topics_of_its_own(shadow_run: ShadowRun) -> None:
    run, before = shadow_run, shadow_run.before_live
    shadow_id, live_id = run.shadow.worker_app_id, run.live.app_id
    assert shadow_id == f"{live_id}-shadow"
    assert before.shadow_status["app_id"] == shadow_id
    assert before.live_group_committed == 0, "the shadow committed nothing for the live workers' group"
    assert f"{shadow_id}-client-state-changelog" in before.topics
    assert run.shadow.ticks_topic in before.topics and run.shadow.ticks_topic != run.live.ticks_topic
    assert f"{live_id}-client-state-changelog" not in before.topics, "no live changelog before the live worker"
    labels = {"app_id": shadow_id, "mode": "shadow", "alerts_topic": run.live.shadow_alerts_topic}
    assert metric(before.shadow_metrics, "clientpulse_worker_info", **labels) == 1
    live_labels = {"app_id": live_id, "mode": "live", "alerts_topic": run.live.alerts_topic}
    assert metric(run.live_worker.metrics(), "clientpulse_worker_info", **live_labels) == 1


def test_compare_live_vs_shadow_reports_the_doubled_limits(
    shadow_run: ShadowRun, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import orjson

    from streams import cli, settings

    run = shadow_run
    monkeypatch.setattr(settings, "load_settings", lambda: run.live)
    report, page = tmp_path / "live-vs-shadow.json", tmp_path / "live-vs-shadow.html"
    period = ["--since", SINCE.isoformat(), "--until", UNTIL.isoformat()]
    rules = ["--rules", str(DEFAULT_RULES), "--rules", str(run.candidate)]
    assert cli.main(["compare", "--live-vs-shadow", *period, *rules, "--json", str(report), "--html", str(page)]) == 0
    text = capsys.readouterr().out
    data = orjson.loads(report.read_bytes())
    live = read_alerts(run.live, run.live.alerts_topic, SINCE, UNTIL)
    shadow = read_alerts(run.live, run.live.shadow_alerts_topic, SINCE, UNTIL)
    assert data["a"]["alerts"] == len(live) and data["b"]["alerts"] == len(shadow)
    assert data["a"]["by_type"]["large_outflow"] == len(BETWEEN) + len(ABOVE)
    assert data["b"]["by_type"]["large_outflow"] == len(ABOVE)
    live_ids, shadow_ids = {a["alert_id"] for a in live}, {a["alert_id"] for a in shadow}
    assert (data["both"], data["only_in_a"], data["only_in_b"]) == (
        len(live_ids & shadow_ids),
        len(live_ids - shadow_ids),
        len(shadow_ids - live_ids),
    )
    lost = {a["client_id"] for a in live if a["alert_id"] not in shadow_ids and a["type"] == "large_outflow"}
    assert lost == set(BETWEEN), "the outflows between the two limits are the ones the candidate drops"
    assert data["b"]["rule_version"] == load_rules(run.candidate).rule_version
    assert run.live.shadow_alerts_topic in text and "<svg" in page.read_text(encoding="utf-8")
    # Without a period the command says what is missing.
    assert cli.main(["compare", "--live-vs-shadow", "--since", SINCE.isoformat()]) == 2
    assert "--since and --until" in capsys.readouterr().err
    assert cli.main(["compare", "--live-vs-shadow", *period, "--examples", "-1"]) == 2
    assert "--examples must be 0 or more" in capsys.readouterr().err
    assert cli.main(["compare", "--rules", str(DEFAULT_RULES), "--rules", str(run.candidate)]) == 2
    assert "give the history" in capsys.readouterr().err

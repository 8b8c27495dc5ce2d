"""`clientpulse compare` as a user runs it: its figures are those of two `clientpulse backtest` runs on the same
history, and the labels `clientpulse export-labels` writes from a real store say what B would lose."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import uuid
import zoneinfo
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import pytest
import yaml

from handlers.access import Scope
from schemas.alerts import Alert
from streams.settings import DEFAULT_RULES
from streams.sink.store import AlertStore
from streams.tools.synthetic import history
from tests.support import ROOT
from tests.unit.test_replay import dump

SHANGHAI = zoneinfo.ZoneInfo("Asia/Shanghai")  # the shipped rules' time zone


def cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "streams.cli", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        env=env,
    )


def doubled_limits(path: Path) -> Path:
    """The shipped rules with every tier's single limit doubled (what large_outflow, velocity and inflow compare)."""
    data = yaml.safe_load(Path(DEFAULT_RULES).read_text("utf-8"))
    data["version"] = "doubled-limits"
    data["tiers"]["single_limits"] = {tier: 2 * int(n) for tier, n in data["tiers"]["single_limits"].items()}
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    return path


@dataclass
class Backtest:
    alerts: list[Alert]
    notifications: list[dict[str, Any]]


@dataclass
class Run:
    events: Path
    rules_b: Path
    a: Backtest
    b: Backtest
    compare: subprocess.CompletedProcess[str]
    report: dict[str, Any]
    html: Path


def backtest(events: Path, rules: Path, out: Path) -> Backtest:
    alerts, notes = out / "alerts.jsonl", out / "notifications.jsonl"
    out.mkdir()
    proc = cli("backtest", str(events), "--rules", str(rules), "--out", str(alerts), "--notifications", str(notes))
    assert proc.returncode == 0, proc.stderr
    return Backtest(
        [Alert.model_validate_json(line) for line in alerts.read_bytes().splitlines()],
        [orjson.loads(line) for line in notes.read_bytes().splitlines()],
    )


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Run:
    tmp = tmp_path_factory.mktemp("compare")
    events = tmp / "events.jsonl"
    events.write_bytes(b"\n".join(dump(list(history(6000, 150, seed=23, run_id=f"cmp{uuid.uuid4().hex[:6]}")))))
    rules_b = doubled_limits(tmp / "doubled.yaml")
    a, b = backtest(events, Path(DEFAULT_RULES), tmp / "a"), backtest(events, rules_b, tmp / "b")
    report, html = tmp / "compare.json", tmp / "compare.html"
    proc = cli(
        "compare", str(events), "--rules", str(DEFAULT_RULES), "--rules", str(rules_b), "--json", str(report),
        "--html", str(html),
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    return Run(events, rules_b, a, b, proc, orjson.loads(report.read_bytes()), html)


def test_compare_counts_are_those_of_two_backtests_of_the_same_history(run: Run) -> None:
    report, a, b = run.report, run.a, run.b
    a_ids, b_ids = {x.alert_id for x in a.alerts}, {x.alert_id for x in b.alerts}
    assert (report["a"]["alerts"], report["b"]["alerts"]) == (len(a.alerts), len(b.alerts))
    assert report["a"]["by_type"] == dict(Counter(x.type for x in a.alerts))
    assert report["b"]["by_type"] == dict(Counter(x.type for x in b.alerts))
    assert (report["a"]["rule_version"], report["b"]["rule_version"]) == (
        a.alerts[0].rule_version,
        b.alerts[0].rule_version,
    )
    assert report["both"] == len(a_ids & b_ids)
    assert (report["only_in_a"], report["only_in_b"]) == (len(a_ids - b_ids), len(b_ids - a_ids))
    # The rules differ visibly: doubled limits raise far fewer large outflows.
    assert report["b"]["by_type"]["large_outflow"] < report["a"]["by_type"]["large_outflow"] / 1.5
    assert report["only_in_a"] > 50
    # Alerts per RM and local day, counted here from the backtests' output.
    for key, side in (("a", a), ("b", b)):
        loads = Counter((x.rm_id, x.occurred_at.astimezone(SHANGHAI).date()) for x in side.alerts if x.rm_id)
        rms = {x.rm_id for x in [*a.alerts, *b.alerts] if x.rm_id}
        got = report["per_rm_day"][key]
        assert got["max"] == max(loads.values())
        assert got["mean"] == pytest.approx(sum(loads.values()) / (len(rms) * len(report["days"])), abs=1e-4)
        assert got["busiest"]["n"] == got["max"]
        # The pushes and digests are the lines `backtest --notifications` writes.
        pushes = [n for n in side.notifications if n["kind"] == "push"]
        digests = [n for n in side.notifications if n["kind"] == "digest"]
        notified = report[key]["notifications"]
        assert (notified["pushed"], notified["digests"]) == (len(pushes), len(digests))
        assert notified["digested"] == sum(len(d["alert_ids"]) for d in digests)
        # Every alert is pushed, held, or (raised by a sweep after the RM's later alerts) too late to notify.
        assert notified["pushed"] + notified["held"] + notified["stale"] == len(side.alerts)
    assert report["days"][0] <= min(x.occurred_at.astimezone(SHANGHAI).date().isoformat() for x in a.alerts)
    # The text report, for a person: the same figures in tables.
    out = run.compare.stdout
    outflow = next(line for line in out.splitlines() if line.strip().startswith("Large outflow"))
    la, lb = report["a"]["by_type"]["large_outflow"], report["b"]["by_type"]["large_outflow"]
    assert outflow.split()[2:4] == [f"{la:,}", f"{lb:,}"]
    assert "Notifications (what the notifier would send)" in out and "Load per RM and day" in out
    assert run.html.read_text("utf-8").startswith("<!DOCTYPE html>")


def test_compare_refuses_what_it_cannot_do(run: Run, tmp_path: Path) -> None:
    one = cli("compare", str(run.events), "--rules", str(DEFAULT_RULES))
    assert one.returncode == 2 and "exactly two rules files" in one.stderr
    past = cli("compare", str(run.events), "--rules", str(DEFAULT_RULES), "--rules", str(run.rules_b), "--until",
               "2000-01-01")  # fmt: skip
    assert past.returncode == 2 and "is before the events" in past.stderr
    bad = tmp_path / "labels.jsonl"
    bad.write_text('{"alert_id": "x", "type": "complaint", "status": "resolved"}\n[1]\n', encoding="utf-8")
    labels = cli("compare", str(run.events), "--rules", str(DEFAULT_RULES), "--rules", str(run.rules_b), "--labels",
                 str(bad))  # fmt: skip
    assert labels.returncode == 2 and "labels.jsonl line 2: a line must be a JSON object" in labels.stderr
    missing = cli("compare", str(tmp_path / "none.jsonl"), "--rules", str(DEFAULT_RULES), "--rules", str(run.rules_b))
    assert missing.returncode == 2 and "cannot read" in missing.stderr


ALL = Scope(None, True)


@pytest.mark.db
def test_labels_exported_from_the_store_say_which_useful_alerts_b_would_lose(
    run: Run, database_url: str, tmp_path: Path
) -> None:
    """A's alerts stored and closed by RMs, exported by `clientpulse export-labels`, read by `compare --labels`."""
    b_ids = {x.alert_id for x in run.b.alerts}
    lost = [x for x in run.a.alerts if x.type == "large_outflow" and x.alert_id not in b_ids][:5]
    kept = [x for x in run.a.alerts if x.type == "complaint" and x.alert_id in b_ids][:3]
    assert len(lost) == 5 and len(kept) == 3
    closing = [
        (lost[0], "resolve", "retained"),
        (lost[1], "resolve", "sold"),
        (lost[2], "resolve", "no_action_needed"),
        (lost[3], "dismiss", "false_positive"),
        (kept[0], "resolve", "contacted"),
        (kept[1], "dismiss", "not_relevant"),
    ]
    still_open = lost[4]

    async def seed() -> None:
        store = AlertStore(database_url)
        await store.connect()
        await store.migrate()
        try:
            await store.insert_alerts([*lost, *kept])
            for alert, action, outcome in closing:
                if action == "resolve":
                    await store.transition(alert.alert_id, "ack", scope=ALL, actor="amy", actor_role="rm", note=None)
                await store.transition(
                    alert.alert_id, action, scope=ALL, actor="amy", actor_role="rm", note="why", outcome=outcome
                )
            await store.transition(still_open.alert_id, "ack", scope=ALL, actor="amy", actor_role="rm", note=None)
        finally:
            await store.close()

    asyncio.run(seed())
    labels = tmp_path / "labels.jsonl"
    exported = cli("export-labels", "--out", str(labels), env={**os.environ, "DATABASE_URL": database_url})
    assert exported.returncode == 0, exported.stderr
    exported_ids = {orjson.loads(line)["alert_id"] for line in labels.read_bytes().splitlines()}
    assert {x.alert_id for x, _, _ in closing} <= exported_ids and still_open.alert_id not in exported_ids

    report_file = tmp_path / "compare.json"
    proc = cli(
        "compare", str(run.events), "--rules", str(DEFAULT_RULES), "--rules", str(run.rules_b), "--labels",
        str(labels), "--json", str(report_file),
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    rows = {r["type"]: r for r in orjson.loads(report_file.read_bytes())["labels"]["by_type"]}
    # Other tests' closed alerts in the same store are not in this history: they only count as "in neither".
    outflow, complaint = rows["large_outflow"], rows["complaint"]
    assert (outflow["useful_lost"], outflow["not_useful_dropped"]) == (2, 2)
    assert (outflow["useful_kept"], outflow["not_useful_kept"]) == (0, 0)
    assert (complaint["useful_kept"], complaint["not_useful_kept"], complaint["useful_lost"]) == (1, 1, 0)
    assert outflow["in_a"] == 4 and outflow["labelled"] >= 4
    lines = proc.stdout.split("Known outcomes (labels)", 1)[1].splitlines()
    row = next(line for line in lines if line.strip().startswith("Large outflow"))
    assert row.split()[4:6] == ["2", "2"], "labelled, raised by A, then useful lost and not useful dropped"


def test_compare_over_two_processes_reports_what_one_does(run: Run, tmp_path: Path) -> None:
    report = tmp_path / "workers.json"
    proc = cli(
        "compare", str(run.events), "--rules", str(DEFAULT_RULES), "--rules", str(run.rules_b), "--json", str(report),
        "--workers", "2",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    sharded = orjson.loads(report.read_bytes())
    for key in ("a", "b", "both", "only_in_a", "only_in_b", "per_rm_day"):
        assert sharded[key] == run.report[key], key

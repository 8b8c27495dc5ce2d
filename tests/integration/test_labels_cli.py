"""`clientpulse report` and `clientpulse export-labels` as a user runs them, against a real PostgreSQL."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import uuid
from pathlib import Path

import orjson
import pytest

from handlers.access import Scope
from streams.sink.store import AlertStore
from tests.integration.test_store import make_alert
from tests.support import ROOT

pytestmark = pytest.mark.db

ALL = Scope(None, True)


def _run(database_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "DATABASE_URL": database_url}
    return subprocess.run(
        [sys.executable, "-m", "streams.cli", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )


def test_export_labels_writes_each_closed_alert_with_its_outcome_and_report_prints_the_figures(
    database_url: str, tmp_path: Path
) -> None:
    tag = uuid.uuid4().hex[:8]
    sold, dropped, still_open = (
        make_alert(f"{tag}-sold", rm_id="rm-1", minute=1),
        make_alert(f"{tag}-fp", rm_id="rm-2", minute=2, type_="complaint"),
        make_alert(f"{tag}-open", rm_id="rm-1", minute=3),
    )

    async def seed() -> None:
        store = AlertStore(database_url)
        await store.connect()
        await store.migrate()
        try:
            await store.insert_alerts([sold, dropped, still_open])
            await store.transition(sold.alert_id, "ack", scope=ALL, actor="amy", actor_role="rm", note=None)
            await store.transition(
                sold.alert_id, "resolve", scope=ALL, actor="amy", actor_role="rm", note=None, outcome="sold"
            )
            await store.transition(
                dropped.alert_id, "dismiss", scope=ALL, actor="li", actor_role="rm", note="x", outcome="false_positive"
            )
        finally:
            await store.close()

    asyncio.run(seed())
    out = tmp_path / "labels.jsonl"
    proc = _run(database_url, "export-labels", "--out", str(out), "--since", "2026-03-01T10:01:00+00:00")
    assert proc.returncode == 0, proc.stderr
    labels = {row["alert_id"]: row for row in map(orjson.loads, out.read_bytes().splitlines())}
    mine = {k: v for k, v in labels.items() if k.startswith(tag)}
    assert set(mine) == {sold.alert_id, dropped.alert_id}
    assert mine[sold.alert_id] == {
        **mine[sold.alert_id],
        "type": "large_outflow",
        "tier": "platinum",
        "rm_id": "rm-1",
        "status": "resolved",
        "outcome": "sold",
        "useful": True,
        "occurred_at": "2026-03-01T10:01:00+00:00",
        "due_by": "2026-03-02T10:01:00+00:00",
    }
    assert mine[sold.alert_id]["acknowledged_at"] <= mine[sold.alert_id]["closed_at"]
    assert (mine[dropped.alert_id]["outcome"], mine[dropped.alert_id]["useful"]) == ("false_positive", False)
    assert "exported" in proc.stderr

    report_file = tmp_path / "report.json"
    proc = _run(
        database_url,
        "report",
        "--since",
        "2026-03-01T00:00:00+00:00",
        "--until",
        "2026-03-02T00:00:00+00:00",
        "--json",
        str(report_file),
    )
    assert proc.returncode == 0, proc.stderr
    assert "ack within SLA" in proc.stdout and "complaint" in proc.stdout
    report = orjson.loads(report_file.read_bytes())
    assert report["days"] == ["2026-03-01"] and {t["type"] for t in report["types"]} >= {"complaint", "large_outflow"}
    # Without a database to read, one line naming the setting.
    env_less = subprocess.run(
        [sys.executable, "-m", "streams.cli", "report"],
        cwd=ROOT,
        env={k: v for k, v in os.environ.items() if k != "DATABASE_URL"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert env_less.returncode == 2 and "DATABASE_URL must be set" in env_less.stderr

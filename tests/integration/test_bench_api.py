"""`clientpulse bench-api` end to end on a tiny store (no timing is asserted; figures: docs/performance.md)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support import ROOT, die_with_parent

pytestmark = [pytest.mark.db, pytest.mark.slow]


def test_bench_api_loads_signs_users_in_and_reports_every_figure(database_url: str, tmp_path: Path) -> None:
    out = tmp_path / "api.json"
    proc = subprocess.run(
        [
            sys.executable, "-m", "streams.cli", "bench-api", "--alerts", "3000", "--rms", "10", "--clients", "300",
            "--users", "4", "--seconds", "3", "--think", "0.2", "--fresh-due", "25",
            "--database", "clientpulse_bench_api_smoke", "--out", str(out),
        ],
        cwd=ROOT,
        env={**os.environ, "DATABASE_URL": database_url},
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
        preexec_fn=die_with_parent,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    figures = json.loads(out.read_text())
    assert figures["alerts"] == 3025 and figures["audit_records"] > figures["alerts"]
    assert figures["errors"] == 0
    for page in ("inbox", "alert", "client"):
        assert figures["requests"][page] > 0 and figures["p95_ms"][page] > 0, page
    assert figures["sweep_escalated"] == 25 and figures["sweep_pushes"] == 25
    assert {"inbox", "timeline", "escalation"} <= set(figures["plans"])
    assert "Index" in figures["plans"]["inbox"]

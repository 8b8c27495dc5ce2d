"""`clientpulse bench --quick` runs end to end and reports every figure (no timing is asserted)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support import ROOT, die_with_parent

pytestmark = [pytest.mark.broker, pytest.mark.slow]


def test_quick_bench_reports_every_figure(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    env = {k: v for k, v in os.environ.items() if k != "KAFKA_BOOTSTRAP"}  # its own embedded broker
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "streams.cli",
            "bench",
            "--quick",
            "--events",
            "1500",
            "--clients",
            "150",
            "--rate",
            "200",
            "--out",
            str(out),
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
        preexec_fn=die_with_parent,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    figures = json.loads(out.read_text())
    assert figures["events"] > 1500 and figures["clients"] == 150
    for name in (
        "limit_msgs_per_s",
        "backtest_events_per_s",
        "backtest_2_workers_events_per_s",
        "stream_events_per_s",
        "worker_peak_rss_mib",
        "recovery_s",
        "recovery_records",
        "restart_to_ready_s",
        "stream_time_to_ready_s",
    ):
        assert figures[name] > 0, name
    assert figures["recovery_records"] >= figures["clients"], "every client's state is read back"
    assert figures["restart_to_ready_s"] >= figures["recovery_s"]
    assert figures["latency_samples"] > 10
    assert 0 < figures["latency_p50_ms"] <= figures["latency_p95_ms"] <= figures["latency_p99_ms"]
    assert figures["alerts_backtest"] > 0
    assert figures["notifier_alerts"] > 0 and figures["notifier_alerts_per_s"] > 0
    assert figures["notifier_latency_samples"] > 10
    assert 0 < figures["notifier_latency_p50_ms"] <= figures["notifier_latency_p99_ms"]
    assert "notifier, one process" in proc.stdout
    assert figures["machine"]["cpus"] == os.cpu_count()
    assert "stream, one worker" in proc.stdout
    assert "backtest, --workers 2" in proc.stdout

"""`clientpulse backtest --workers N`, `--shard K/N` and `backtest-merge` as a user runs them (child processes).

Every way of splitting the history must write the very bytes one process
writes: the alerts (one --detected-at for all), the notifications and the
summary's counts. tests/sharding_history.py holds the history: every alert
type, clock rules and --until included, and the lines a shard could get wrong.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import orjson
import pytest

from tests import sharding_history
from tests.support import ROOT

RULES = ROOT / "tests" / "rules" / "thresholds.yaml"
DETECTED_AT = "2030-01-01T00:00:00+00:00"
UNTIL = sharding_history.UNTIL.isoformat()


def clientpulse(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "streams.cli", *map(str, args)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def backtest(events: Path, out: Path, *more: str | Path, rules: Path = RULES) -> subprocess.CompletedProcess[str]:
    return clientpulse(
        "backtest", events, "--rules", rules, "--detected-at", DETECTED_AT, "--until", UNTIL, "--out", out, *more
    )


def counts(summary: Path) -> dict[str, Any]:
    data = orjson.loads(summary.read_bytes())
    return {k: v for k, v in data.items() if k not in ("workers", "events", "until")}


@pytest.fixture(scope="module")
def events(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("history") / "events.jsonl"
    path.write_bytes(b"\n".join(sharding_history.lines()) + b"\n")
    return path


@pytest.fixture(scope="module")
def one(events: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The single process's alerts, notifications and summary."""
    folder = tmp_path_factory.mktemp("one")
    files = {name: folder / name for name in ("alerts", "notifications", "summary")}
    proc = backtest(events, files["alerts"], "--notifications", files["notifications"], "--summary", files["summary"])
    assert proc.returncode == 0, proc.stderr
    types = {orjson.loads(line)["type"] for line in files["alerts"].read_bytes().splitlines()}
    assert {"dormancy", "birthday", "product_maturity", "no_rm_contact", "complaint_unanswered"} <= types
    assert b'"digest"' in files["notifications"].read_bytes()
    return files


@pytest.mark.parametrize("workers", [2, 3])
def test_workers_write_the_single_process_bytes(
    events: Path, one: dict[str, Path], tmp_path: Path, workers: int
) -> None:
    alerts, notifications, summary = tmp_path / "alerts", tmp_path / "notifications", tmp_path / "summary"
    proc = backtest(events, alerts, "--workers", str(workers), "--notifications", notifications, "--summary", summary)
    assert proc.returncode == 0, proc.stderr
    assert alerts.read_bytes() == one["alerts"].read_bytes(), "same alerts in the same order"
    assert notifications.read_bytes() == one["notifications"].read_bytes()
    assert counts(summary) == counts(one["summary"])
    assert f"{workers} processes" in proc.stderr and "unreadable lines:       2" in proc.stderr


def test_shards_run_alone_and_merged_write_the_single_process_bytes(
    events: Path, one: dict[str, Path], tmp_path: Path
) -> None:
    shards = tmp_path / "shards"
    common = ("--rules", RULES, "--detected-at", DETECTED_AT, "--until", UNTIL, "--out-dir", shards)
    for k in range(3):
        proc = clientpulse("backtest", events, "--shard", f"{k}/3", *common)
        assert proc.returncode == 0, proc.stderr
    parts = [line for part in shards.glob("*.alerts.jsonl") for line in part.read_bytes().splitlines(keepends=True)]
    union = b"".join(sorted(parts))
    assert union == b"".join(sorted(one["alerts"].read_bytes().splitlines(keepends=True))), "the union is the whole"

    alerts, notifications, summary = tmp_path / "alerts", tmp_path / "notifications", tmp_path / "summary"
    merge = clientpulse(
        "backtest-merge",
        shards,
        "--rules",
        RULES,
        "--out",
        alerts,
        "--notifications",
        notifications,
        "--summary",
        summary,
    )
    assert merge.returncode == 0, merge.stderr
    assert alerts.read_bytes() == one["alerts"].read_bytes()
    assert notifications.read_bytes() == one["notifications"].read_bytes()
    assert counts(summary) == counts(one["summary"])


def test_merge_refuses_an_incomplete_or_mixed_set(events: Path, tmp_path: Path) -> None:
    def shard(folder: Path, spec: str, *more: str | Path) -> None:
        proc = clientpulse(
            "backtest", events, "--shard", spec, "--out-dir", folder, "--detected-at", DETECTED_AT, *more
        )
        assert proc.returncode == 0, proc.stderr

    def refused(*folders: Path) -> str:
        proc = clientpulse("backtest-merge", *folders, "--rules", RULES, "--out", tmp_path / "merged")
        assert proc.returncode == 2, proc.stderr
        assert not (tmp_path / "merged").exists()
        return proc.stderr

    a, b, c, d = (tmp_path / name for name in "abcd")
    shard(a, "0/2", "--rules", RULES)
    assert "shard 1 of 2 missing" in refused(a)
    shard(b, "1/3", "--rules", RULES)
    assert "different shard counts [2, 3]" in refused(a, b)
    shard(c, "1/2")  # the shipped rules
    assert "different rules version" in refused(a, c)
    proc = clientpulse("backtest", events, "--shard", "1/2", "--out-dir", d, "--rules", RULES)  # detected now
    assert proc.returncode == 0, proc.stderr
    assert "different --detected-at" in refused(a, d)
    shard(d, "1/2", "--rules", RULES, "--until", UNTIL)
    assert "different --until" in refused(a, d)
    assert "given twice" in refused(a, a)


def test_shard_and_workers_arguments_are_checked(events: Path, tmp_path: Path) -> None:
    for args, says in [
        (("--shard", "2/2", "--out-dir", tmp_path), "K counts from 0, so shard K of 2 is 0 to 1"),
        (("--shard", "0/2"), "needs --out-dir"),
        (("--shard", "0/2", "--out-dir", tmp_path, "--out", tmp_path / "x"), "takes no --out"),
        (("--workers", "0"), "give 1 to"),
        (("--out-dir", tmp_path), "--out-dir is for --shard"),
    ]:
        proc = clientpulse("backtest", events, *args)
        assert proc.returncode == 2 and says in proc.stderr, (args, proc.stderr)


def test_an_until_before_the_events_is_refused_by_workers_leaving_nothing(events: Path, tmp_path: Path) -> None:
    out = tmp_path / "alerts"
    proc = clientpulse("backtest", events, "--workers", "2", "--until", "2026-02-01", "--out", out)
    assert proc.returncode == 2
    assert "--until 2026-02-01T00:00:00+00:00 is before the events" in proc.stderr
    assert not out.exists()

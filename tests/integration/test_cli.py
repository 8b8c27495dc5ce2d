"""The `clientpulse` command as a user runs it: a child process, its exit code and what it prints."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import orjson

from handlers.replay import Replay
from handlers.ruleset import Ruleset
from schemas.alerts import Alert
from streams.api.auth import parse_hash
from streams.tools.synthetic import history
from tests.support import ROOT
from tests.unit.test_replay import UNTIL, comparable, dump


def test_cli_token_subcommand() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "streams.cli", "token"],
        input=b"cli-token-0123456789abcdef",
        capture_output=True,
        cwd=ROOT,
        timeout=30,
    )
    assert proc.returncode == 0, proc.stderr
    assert parse_hash(proc.stdout.decode().strip()).matches("cli-token-0123456789abcdef")


def test_backtest_command(tmp_path: Path, rules: Ruleset) -> None:
    events = tmp_path / "events.jsonl"
    events.write_bytes(b"\n".join(dump(list(history(800, 40, seed=5)))) + b"\n")
    out = tmp_path / "alerts.jsonl"
    summary = tmp_path / "summary.json"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "streams.cli",
            "backtest",
            str(events),
            "--out",
            str(out),
            "--until",
            "2026-12-31T00:00:00+00:00",
            "--summary",
            str(summary),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    written = [Alert.model_validate_json(line) for line in out.read_bytes().splitlines()]
    expected = list(Replay(rules).run_lines(events.read_bytes().splitlines(), UNTIL))
    assert [comparable(a) for a in written] == [comparable(a) for a in expected]
    assert orjson.loads(summary.read_bytes())["alerts"] == len(written)
    assert "alerts by type and severity" in proc.stderr

    assert "clock ended at 2026-12-31T00:00:00+00:00 (moved by --until" in proc.stderr


def backtest(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "streams.cli", "backtest", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_backtest_until_takes_a_date_or_a_time_hints_forms_that_work_and_refuses_the_past(tmp_path: Path) -> None:
    events = tmp_path / "events.jsonl"
    events.write_bytes(b"\n".join(dump(list(history(300, 20, seed=5)))) + b"\n")
    out = tmp_path / "alerts.jsonl"

    as_date = backtest(str(events), "--out", str(out), "--until", "2026-12-31")
    assert as_date.returncode == 0, as_date.stderr
    assert "clock ended at 2026-12-31T00:00:00+00:00" in as_date.stderr

    for wrong in ("tomorrow", "2026-12-31T00:00", "31/12/2026"):
        bad = backtest(str(events), "--until", wrong)
        assert bad.returncode == 2, bad.stderr
        hinted = re.findall(r"\b\d{4}-\d{2}-\d{2}(?:T[\d:]+[+-]\d{2}:\d{2})?\b", bad.stderr.split(wrong, 1)[-1])
        assert hinted, f"{wrong}: no form hinted in {bad.stderr!r}"
        for form in hinted:  # every form the hint offers works
            assert backtest(str(events), "--out", str(out), "--until", form).returncode == 0, form
    naive = backtest(str(events), "--until", "2026-12-31T00:00")
    assert "2026-12-31T00:00:00+00:00" in naive.stderr

    before = backtest(str(events), "--out", str(out), "--until", "2000-01-01")
    assert before.returncode == 2
    assert "--until 2000-01-01T00:00:00+00:00 is before the events" in before.stderr
    assert not out.exists(), "a refused backtest leaves no partial result"

"""The `clientpulse` command as a user runs it: a child process, its exit code and what it prints."""

from __future__ import annotations

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

    bad = subprocess.run(
        [sys.executable, "-m", "streams.cli", "backtest", str(events), "--until", "tomorrow"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert bad.returncode == 2 and "RFC 3339" in bad.stderr

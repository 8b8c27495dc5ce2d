"""`clientpulse demo` on a first run: which database it uses, said in one line, and failures that say what to set."""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
from pathlib import Path

import asyncpg  # type: ignore[import-untyped]
import pytest

from streams.tools import demo as demo_module
from streams.tools.demo import Demo, DemoError
from streams.tools.embedded import LOCAL_POSTGRES, free_port
from tests.support import ROOT, die_with_parent

ARGS = argparse.Namespace(duration=None, clients=10, rate=5.0)


async def database_exists(name: str) -> bool:
    conn = await asyncpg.connect(LOCAL_POSTGRES, timeout=3)
    try:
        return bool(await conn.fetchval("SELECT count(*) FROM pg_database WHERE datname = $1", name))
    finally:
        await conn.close()


def local_postgres_answers() -> bool:
    async def check() -> bool:
        try:
            conn = await asyncpg.connect(LOCAL_POSTGRES, timeout=3)
        except (OSError, TimeoutError, asyncpg.PostgresError):
            return False
        await conn.close()
        return True

    return asyncio.run(check())


def test_database_url_wins(monkeypatch: pytest.MonkeyPatch) -> None:
    demo = Demo(ARGS)
    demo.env["DATABASE_URL"] = "postgresql://bank-db/clientpulse"
    assert demo.choose_database() == "DATABASE_URL"
    assert demo.local_database is None and demo.database is None


def test_a_reachable_local_postgresql_gets_a_fresh_database_dropped_at_the_end() -> None:
    if not local_postgres_answers():
        pytest.skip("no PostgreSQL on 127.0.0.1:5432 here")
    demo = Demo(ARGS)
    demo.env.pop("DATABASE_URL", None)
    line = demo.choose_database()
    assert line.startswith("PostgreSQL on 127.0.0.1:5432, fresh database clientpulse_demo_"), line
    name = demo.local_database
    assert name is not None and demo.env["DATABASE_URL"].endswith(f"/{name}")
    assert asyncio.run(database_exists(name))
    demo.stop_all()
    assert not asyncio.run(database_exists(name)), "the demo's database is dropped when it stops"


def test_no_database_at_all_ends_in_one_line_naming_database_url(monkeypatch: pytest.MonkeyPatch) -> None:
    def initdb_fails(self: object) -> object:
        raise RuntimeError("initdb: error: could not create directory\nTraceback (most recent call last):\n  ...")

    monkeypatch.setattr(demo_module.EmbeddedPostgres, "start", initdb_fails)
    demo = Demo(ARGS, local_postgres=f"postgresql://postgres@127.0.0.1:{free_port()}/postgres")
    demo.env.pop("DATABASE_URL", None)
    with pytest.raises(DemoError) as info:
        demo.choose_database()
    message = str(info.value)
    assert "\n" not in message and message.endswith("set DATABASE_URL")
    assert "initdb: error: could not create directory" in message


def demo_run(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    environment = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "KAFKA_BOOTSTRAP"}}
    return subprocess.run(
        [sys.executable, "-m", "streams.cli", "demo", *args],
        cwd=ROOT,
        env={**environment, **env},
        capture_output=True,
        text=True,
        timeout=180,
        preexec_fn=die_with_parent,
    )


def test_an_unreachable_broker_ends_the_demo_in_one_line(tmp_path: Path) -> None:
    done = demo_run(
        "--duration",
        "1",
        KAFKA_BOOTSTRAP=f"127.0.0.1:{free_port()}",
        KAFKA_CONNECT_TIMEOUT="2",
        DATABASE_URL="postgresql://postgres@127.0.0.1:5432/postgres",
    )
    assert done.returncode == 2, done.stderr
    errors = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(errors) == 1 and "cannot reach Kafka" in errors[0] and "KAFKA_BOOTSTRAP" in errors[0], errors


@pytest.mark.broker
def test_the_demo_runs_on_the_local_postgresql_and_says_so() -> None:
    if not local_postgres_answers():
        pytest.skip("no PostgreSQL on 127.0.0.1:5432 here")
    done = demo_run("--duration", "4", "--clients", "20", "--rate", "20")
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    lines = done.stdout.splitlines()
    (database,) = [line for line in lines if line.startswith("database")]
    assert "PostgreSQL on 127.0.0.1:5432, fresh database clientpulse_demo_" in database
    name = database.split("fresh database ", 1)[1].split()[0]
    assert not asyncio.run(database_exists(name)), "dropped at the end"
    assert any(line.startswith("-- done:") for line in lines), lines[-5:]

"""Session-wide real services: one Tansu broker, one fresh PostgreSQL database."""

from __future__ import annotations

import asyncio
import contextlib
import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from handlers.ruleset import Ruleset, load_rules
from streams.settings import DEFAULT_RULES
from streams.tools.embedded import EmbeddedBroker, EmbeddedPostgres

LOCAL_PG = "postgresql://postgres@127.0.0.1:5432/postgres"


@pytest.fixture(scope="session")
def rules() -> Ruleset:
    return load_rules(DEFAULT_RULES)


@pytest.fixture(scope="session")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Bootstrap address: CLIENTPULSE_TEST_BOOTSTRAP if set, else an embedded Tansu for this session."""
    external = os.environ.get("CLIENTPULSE_TEST_BOOTSTRAP")
    if external:
        yield external
        return
    log = tmp_path_factory.mktemp("broker") / "tansu.log"
    embedded = EmbeddedBroker(log_path=log).start()
    try:
        yield embedded.bootstrap
    finally:
        embedded.stop()


async def _try_create_database(admin_url: str, name: str) -> bool:
    import asyncpg  # type: ignore[import-untyped]

    try:
        conn = await asyncpg.connect(admin_url, timeout=3)
    except (TimeoutError, OSError, asyncpg.PostgresError):
        return False
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    return True


async def _drop_database(admin_url: str, name: str) -> None:
    import asyncpg

    with contextlib.suppress(OSError, asyncpg.PostgresError):
        conn = await asyncpg.connect(admin_url, timeout=3)
        try:
            await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await conn.close()


@pytest.fixture(scope="session")
def database_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """DATABASE_URL if set; else a fresh database on 127.0.0.1:5432; else a private pgserver."""
    if os.environ.get("DATABASE_URL"):
        yield os.environ["DATABASE_URL"]
        return
    name = f"clientpulse_test_{uuid.uuid4().hex[:10]}"
    if asyncio.run(_try_create_database(LOCAL_PG, name)):
        try:
            yield f"postgresql://postgres@127.0.0.1:5432/{name}"
        finally:
            asyncio.run(_drop_database(LOCAL_PG, name))
        return
    server = EmbeddedPostgres(data_dir=Path(tmp_path_factory.mktemp("pg")) / "data").start()
    try:
        yield server.url
    finally:
        server.stop()

"""Session-wide real services: one Tansu broker, one fresh PostgreSQL database."""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from handlers.ruleset import Ruleset, load_rules
from streams.settings import DEFAULT_RULES
from streams.tools.embedded import LOCAL_POSTGRES, EmbeddedBroker, EmbeddedPostgres, create_database, drop_database


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


@pytest.fixture(scope="session")
def database_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """DATABASE_URL if set; else a fresh database on 127.0.0.1:5432; else a private pgserver."""
    if os.environ.get("DATABASE_URL"):
        yield os.environ["DATABASE_URL"]
        return
    name = f"clientpulse_test_{uuid.uuid4().hex[:10]}"
    url = asyncio.run(create_database(LOCAL_POSTGRES, name))
    if url is not None:
        try:
            yield url
        finally:
            asyncio.run(drop_database(LOCAL_POSTGRES, name))
        return
    server = EmbeddedPostgres(data_dir=Path(tmp_path_factory.mktemp("pg")) / "data").start()
    try:
        yield server.url
    finally:
        server.stop()

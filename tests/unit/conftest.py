"""Unit tests need no broker, no database and no child process: this folder refuses all three."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from typing import Any

import pytest

_REAL_SERVICES = frozenset({"broker", "database_url"})


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        wanted = _REAL_SERVICES.intersection(getattr(item, "fixturenames", ()))
        if wanted and "tests/unit/" in str(item.fspath):
            raise pytest.UsageError(f"{item.nodeid} asks for {', '.join(sorted(wanted))}: move it to tests/integration")


@pytest.fixture(autouse=True)
def _no_child_processes(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("unit tests start no processes: move this test to tests/integration")

    monkeypatch.setattr(subprocess.Popen, "__init__", refuse)
    yield

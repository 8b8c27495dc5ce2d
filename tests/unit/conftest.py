"""Unit tests need no broker, no database, no network and no child process: this folder refuses all of them."""

from __future__ import annotations

import socket
import subprocess
from collections.abc import Iterator
from typing import Any

import pytest

from handlers.ruleset import Ruleset
from tests.unit.builders import RULES

_REAL_SERVICES = frozenset({"broker", "database_url"})
_NETWORK = (socket.AF_INET, socket.AF_INET6)


@pytest.fixture(scope="session")
def rules() -> Ruleset:
    """tests/rules/thresholds.yaml: unit tests state the thresholds they check (the shipped file has its own test)."""
    return RULES


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        wanted = _REAL_SERVICES.intersection(getattr(item, "fixturenames", ()))
        if wanted and "tests/unit/" in str(item.fspath):
            raise pytest.UsageError(f"{item.nodeid} asks for {', '.join(sorted(wanted))}: move it to tests/integration")


@pytest.fixture(autouse=True)
def _no_child_processes_or_network(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("unit tests start no processes: move this test to tests/integration")

    connect, connect_ex = socket.socket.connect, socket.socket.connect_ex

    def guarded(method: Any) -> Any:
        def call(self: socket.socket, address: Any) -> Any:
            if self.family in _NETWORK:
                raise AssertionError(f"unit tests open no connections ({address}): move this test to tests/integration")
            return method(self, address)

        return call

    monkeypatch.setattr(subprocess.Popen, "__init__", refuse)
    monkeypatch.setattr(socket.socket, "connect", guarded(connect))
    monkeypatch.setattr(socket.socket, "connect_ex", guarded(connect_ex))
    yield

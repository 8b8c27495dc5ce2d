"""The Faust, mode and aiokafka code that streams/faust_ext copies or overrides has not changed under it."""

from __future__ import annotations

import ast
import re
from importlib import metadata
from pathlib import Path

import pytest

import streams.faust_ext.inbox
import streams.faust_ext.producer
import streams.faust_ext.recovery
import streams.faust_ext.tables  # noqa: F401  (imported at collection: importing Faust runs `file` once)
from streams.faust_ext import upstream

ROOT = Path(__file__).resolve().parents[2]
PINNED = ("faust-streaming", "mode-streaming", "aiokafka")


@pytest.mark.parametrize("name", sorted(upstream.UPSTREAM))
def test_upstream_function_is_unchanged(name: str) -> None:
    assert upstream.fingerprint(name) == upstream.UPSTREAM[name], (
        f"{name} changed upstream: read it against streams/faust_ext (see INTERNALS.md there), adapt our code, "
        "then record the new fingerprint (python -m streams.faust_ext.upstream)"
    )


def test_a_changed_function_is_named() -> None:
    recorded = dict(upstream.UPSTREAM)
    try:
        upstream.UPSTREAM["faust.transport.consumer:Consumer.getmany"] = "0" * 16
        assert list(upstream.changed()) == ["faust.transport.consumer:Consumer.getmany"]
    finally:
        upstream.UPSTREAM.clear()
        upstream.UPSTREAM.update(recorded)


def test_the_dependencies_it_reads_are_pinned_to_the_installed_versions() -> None:
    text = (ROOT / "pyproject.toml").read_text("utf-8")
    for package in PINNED:
        match = re.search(rf'"{package}==([^"]+)"', text)
        assert match, f"{package} must be pinned to an exact version in pyproject.toml"
        assert metadata.version(package) == match[1]


def test_only_faust_ext_touches_the_internals() -> None:
    fenced = ("faust.transport", "faust.tables", "faust.stores", "mode.utils", "aiokafka.producer", "aiokafka.consumer")
    offenders = []
    for path in (ROOT / "streams").rglob("*.py"):
        if "faust_ext" in path.parts:
            continue
        for node in ast.walk(ast.parse(path.read_text("utf-8"))):
            names = [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            offenders += [f"{path.relative_to(ROOT)}: {n}" for n in names if n.startswith(fenced)]
    assert offenders == []

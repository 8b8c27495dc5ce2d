"""JSON documents kept in memory take about their own length."""

from __future__ import annotations

import tracemalloc

import orjson

from handlers.jsonbytes import dumps

DOC = {"alert_id": "0" * 32, "type": "dormancy", "title": "No customer activity for 90 days", "facts": {"a": "b"}}


def test_same_bytes_as_orjson() -> None:
    assert dumps(DOC) == orjson.dumps(DOC)
    assert dumps([]) == b"[]"


def test_each_document_takes_about_its_length() -> None:
    size = len(dumps(DOC))
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        kept = [dumps(DOC) for _ in range(1000)]
        used = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert len(kept) == 1000
    assert used < 1000 * (size + 100), f"{used / 1000:.0f} bytes per {size}-byte document"

"""The due index answers exactly what a scan of every client's due time would."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from handlers.due_index import DueIndex

CLIENTS = [f"c-{i}" for i in range(6)]

operations = st.lists(
    st.one_of(
        st.tuples(st.just("note"), st.sampled_from(CLIENTS), st.one_of(st.none(), st.integers(0, 60))),
        st.tuples(st.just("pop"), st.integers(0, 60)),
        st.tuples(st.just("peek")),
    ),
    max_size=80,
)


@settings(max_examples=400, deadline=None)
@given(operations)
def test_matches_a_scan_of_every_client(ops: list[tuple[Any, ...]]) -> None:
    index, model = DueIndex(), dict[str, int]()
    for op in ops:
        if op[0] == "note":
            _, client, due = op
            index.note(client, due)
            if due is None:
                model.pop(client, None)
            else:
                model[client] = due
        elif op[0] == "pop":
            now = op[1]
            expected = sorted((d, c) for c, d in model.items() if d <= now)
            assert index.pop_due(now) == [c for _, c in expected]
            for _, client in expected:
                del model[client]
        else:
            assert index.peek() == (min(model.values()) if model else None)
        assert len(index) == len(model)
        assert index._due == model


def test_moving_a_due_time_later_does_not_grow_the_heap() -> None:
    index = DueIndex()
    for step in range(10_000):
        index.note("busy", 1_000 + step)
    assert len(index._heap) == 1
    assert index.pop_due(5_000) == []  # its first entry is pushed back to the current due time
    assert index.pop_due(10_999) == ["busy"]
    assert len(index) == 0 and index.peek() is None


def test_heap_stays_bounded_when_due_times_move_earlier() -> None:
    index = DueIndex()
    for step in range(10_000):
        index.note("c-1", 100_000 - step)
        index.note("c-2", 100_000 - step)
    assert len(index._heap) <= 2 * len(index) + 1024
    assert index.pop_due(91_000) == ["c-1", "c-2"]

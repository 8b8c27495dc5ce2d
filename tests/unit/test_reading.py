"""Which input topics a worker is still reading on each partition: what may hold its event-time clock back."""

from __future__ import annotations

from dataclasses import dataclass

from streams.worker.reading import HighWater, ReadingTracker

TX, IX = "tx", "ix"
BOTH = [(TX, 0), (IX, 0)]


@dataclass
class Msg:
    topic: str
    partition: int
    offset: int


def _highwaters(ends: dict[tuple[str, int], int]) -> HighWater:
    return lambda topic, partition: ends.get((topic, partition))


def test_a_topic_partition_is_being_read_while_it_has_records_the_worker_has_not_seen() -> None:
    tracker = ReadingTracker()
    ends = {(TX, 0): 100, (IX, 0): 3, (TX, 1): 8}
    reading = tracker.batch([Msg(TX, 0, 5), Msg(IX, 0, 2), Msg(TX, 1, 7)], [*BOTH, (TX, 1)], _highwaters(ends), 0.0)
    # Interactions and partition 1 are read to their high watermarks: only the transactions of 0 have more.
    assert reading == {0: {TX}}


def test_a_topic_partition_behind_its_high_watermark_is_being_read_until_it_has_been_idle_a_while() -> None:
    tracker = ReadingTracker(idle_seconds=10.0)
    ends = {(TX, 0): 100, (IX, 0): 3}
    tracker.batch([Msg(TX, 0, 10), Msg(IX, 0, 2)], BOTH, _highwaters(ends), now=0.0)
    assert tracker.batch([Msg(IX, 0, 3)], BOTH, _highwaters({**ends, (IX, 0): 5}), now=1.0) == {0: {TX, IX}}
    assert tracker.batch([], BOTH, _highwaters(ends), now=9.5) == {0: {TX}}
    # Nothing from the transactions for longer than the idle time: caught up as far as the clock is concerned.
    assert tracker.batch([Msg(IX, 0, 4)], BOTH, _highwaters(ends), now=10.5) == {}


def test_an_assigned_partition_that_has_brought_nothing_yet_is_being_read_unless_it_is_empty_or_idle() -> None:
    tracker = ReadingTracker(idle_seconds=10.0)
    assert tracker.batch([], [(TX, 0)], _highwaters({}), now=0.0) == {0: {TX}}  # no fetch has answered yet
    assert tracker.batch([], [(TX, 0)], _highwaters({(TX, 0): 0}), now=1.0) == {}  # an empty partition
    assert tracker.batch([], [(TX, 0)], _highwaters({(TX, 0): 500}), now=2.0) == {0: {TX}}
    assert tracker.batch([], [(TX, 0)], _highwaters({(TX, 0): 500}), now=10.5) == {}


def test_a_rebalance_forgets_what_was_read() -> None:
    tracker = ReadingTracker(idle_seconds=10.0)
    tracker.batch([Msg(TX, 0, 9)], [(TX, 0)], _highwaters({(TX, 0): 10}), now=0.0)
    tracker.clear()
    # Offset 10 was read before, but after a rebalance reading resumes where the group committed.
    assert tracker.batch([], [(TX, 0)], _highwaters({(TX, 0): 10}), now=20.0) == {0: {TX}}

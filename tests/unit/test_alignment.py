"""An event-time worker applies its topics' records in time order, holding back those ahead of a topic behind."""

from __future__ import annotations

from dataclasses import dataclass

import orjson

from streams.worker.alignment import Aligner
from tests.unit.builders import at

TX, IX, CL = "bank.transactions.v1", "bank.interactions.v1", "bank.clients.v1"


@dataclass
class Msg:
    topic: str
    partition: int
    offset: int
    value: bytes | None

    def __repr__(self) -> str:
        return f"{self.topic}@{self.offset}"


def _msgs(topic: str, days: list[float | None], partition: int = 0, first: int = 0) -> list[Msg]:
    """One message per day given (None: a tombstone), offsets from `first`."""
    out = []
    for n, day in enumerate(days):
        value = None if day is None else orjson.dumps({"occurred_at": at(days=day).isoformat()})
        out.append(Msg(topic, partition, first + n, value))
    return out


def test_records_are_released_in_time_order_across_topics_and_those_ahead_of_the_topic_behind_are_held() -> None:
    aligner: Aligner[Msg] = Aligner()
    busy, sparse = _msgs(TX, [1, 2, 3]), _msgs(IX, [2.5, 10, 20])
    released = aligner.release(busy + sparse, {0: {TX, IX}})
    # The transactions have been read to day 3: the interaction of day 2.5 goes between theirs, the rest waits.
    assert released == [busy[0], busy[1], sparse[0], busy[2]]
    assert list(aligner.held()) == sparse[1:] and aligner.count == 2
    more = _msgs(TX, [9, 12], first=3)
    assert aligner.release(more, {0: {TX, IX}}) == [more[0], sparse[1], more[1]]
    # The transactions caught up: nothing holds the last interaction back.
    assert aligner.release([], {0: {IX}}) == [sparse[2]] and aligner.count == 0


def test_a_topic_being_read_that_has_brought_nothing_yet_holds_everything_on_its_partition() -> None:
    aligner: Aligner[Msg] = Aligner()
    sparse = _msgs(IX, [5, 6])
    other_partition = _msgs(IX, [7], partition=1)
    assert aligner.release(sparse + other_partition, {0: {TX, IX}, 1: {IX}}) == other_partition
    busy = _msgs(TX, [5.5])
    assert aligner.release(busy, {0: {TX, IX}}) == [sparse[0], busy[0]]


def test_a_topic_partition_is_released_only_from_its_front_in_offset_order() -> None:
    aligner: Aligner[Msg] = Aligner()
    # Offset 1 is late (day 1) behind a record of day 9: it waits for day 9 to be released, so offsets stay in order.
    sparse = _msgs(IX, [0.5, 9, 1, None])
    busy = _msgs(TX, [2])
    assert aligner.release(sparse + busy, {0: {TX, IX}}) == [sparse[0], busy[0]]
    released = aligner.release(_msgs(TX, [10], first=1), {0: {TX, IX}})
    # The tombstone sorts with the record before it.
    assert [m for m in released if m.topic == IX] == sparse[1:]


def test_past_the_limit_the_earliest_held_are_released_in_time_order_until_half_is_left() -> None:
    aligner: Aligner[Msg] = Aligner(max_held=4)
    sparse, other = _msgs(IX, [5, 6, 7]), _msgs(IX, [5.5, 8], partition=1)
    released = aligner.release(sparse + other, {0: {TX, IX}, 1: {TX, IX}})
    # Held past the limit of 4: the records up to day 6 go, in time order on each partition; two are left.
    assert [m for m in released if m.partition == 0] == sparse[:2]
    assert [m for m in released if m.partition == 1] == other[:1]
    assert sorted(map(repr, aligner.held())) == sorted(map(repr, [sparse[2], other[1]])) and aligner.count == 2


def test_clearing_drops_what_is_held() -> None:
    aligner: Aligner[Msg] = Aligner()
    aligner.release(_msgs(IX, [5]), {0: {TX, IX}})
    aligner.clear()
    assert aligner.count == 0 and aligner.release([], {0: {IX}}) == []


def test_at_the_same_instant_the_clients_topic_goes_first() -> None:
    aligner: Aligner[Msg] = Aligner()
    deposit, onboarding = _msgs(TX, [0]), _msgs(CL, [0])
    assert aligner.release(deposit + onboarding, {}) == onboarding + deposit

"""Records of several input topics applied in time order: an event-time worker waits for the topic behind.

A worker fetches each topic partition at its own pace, a few megabytes at a
time, and a topic with few records a day covers months in a fetch where the
busy one covers days. Applied in the order they arrive, a client's
interaction of June would be applied before its transactions of April, and the
interaction fires the client's due rules up to June first: a dormancy the
April transactions would have prevented, then a reactivation. A replay of the
same history, in time order, raises neither.

An event-time worker therefore aligns its input (`Aligner`): on each
partition, a record is applied once every topic still being read there
(streams/worker/reading.py) has been read up to its time, and the records
released are applied in time order across the partition's topics (each
topic's own records stay in offset order; at the same instant the clients
topic goes first, then controls, interactions and transactions, so that an
onboarding and the opening deposit stamped with it are applied in that order). The others are held for a later
batch. They are not acked while held, and a topic partition is only ever
released from its front, so the committed offsets never pass a held record:
a crash or a rebalance reads them again. The time of a record is its
occurred_at as its text reads (handlers.fastdecode.message_time); a record
without one (a tombstone, a message that will be a dead letter) goes with the
record before it.

Holding is bounded (a topic that stays far behind must not make the worker hold
a whole log in memory): past `max_held` records, the earliest held are released
as if every topic had been read up to their time, until half the limit is left,
still in time order; only those can then come before a record of the topic
behind.
"""

from __future__ import annotations

import heapq
from collections import deque
from collections.abc import Collection, Iterator, Mapping, Sequence
from typing import Generic, TypeVar

from handlers.batch import RecordLike
from handlers.decode import kind_of_topic
from handlers.fastdecode import message_time
from schemas.topics import EventKind

MAX_HELD = 200_000


M = TypeVar("M", bound=RecordLike)


class Aligner(Generic[M]):
    """The records in hand per topic partition, released in time order as the topics behind catch up."""

    def __init__(self, max_held: int = MAX_HELD) -> None:
        self.max_held = max_held
        self._held: dict[tuple[str, int], deque[tuple[int, M]]] = {}
        """(topic, partition) -> its records in hand, in offset order, each with the time it sorts by."""
        self._latest: dict[tuple[str, int], int] = {}
        """(topic, partition) -> the latest time read there (in hand or applied)."""
        self.count = 0
        """Records held now."""

    def release(self, messages: Sequence[M], reading: Mapping[int, Collection[str]]) -> list[M]:
        """Take in `messages` (a batch, in the order fetched) and give back those to apply now, in that order."""
        held, latest = self._held, self._latest
        for msg in messages:
            tp = (msg.topic, msg.partition)
            queue = held.get(tp)
            if queue is None:
                queue = held[tp] = deque()
            last = latest.get(tp, 0)
            at = message_time(msg.value)
            if at is None or at < last:
                at = last if at is None else at
            else:
                latest[tp] = at
            queue.append((at, msg))
        self.count += len(messages)
        forced = self._forced_horizon() if self.count > self.max_held else None
        out: list[M] = []
        by_partition: dict[int, list[tuple[str, int]]] = {}
        for tp, queue in held.items():
            if queue:
                by_partition.setdefault(tp[1], []).append(tp)
        for partition, tps in by_partition.items():
            tps.sort(key=_tie_rank)
            horizon = self._horizon(partition, reading.get(partition, ()))
            if forced is not None and horizon is not None and horizon < forced:
                horizon = forced
            fronts = [self._front(held[tp], horizon) for tp in tps]
            out.extend(msg for _at, msg in heapq.merge(*fronts, key=_time))
        self.count -= len(out)
        return out

    def _horizon(self, partition: int, topics: Collection[str]) -> int | None:
        """The time up to which every topic still being read on the partition has been read (None: no limit)."""
        latest = self._latest
        horizon: int | None = None
        for topic in topics:
            at = latest.get((topic, partition))
            if at is None:
                return -1  # a topic being read that has not brought a record yet: wait for it
            if horizon is None or at < horizon:
                horizon = at
        return horizon

    @staticmethod
    def _front(queue: deque[tuple[int, M]], horizon: int | None) -> list[tuple[int, M]]:
        if horizon is None:
            front = list(queue)
            queue.clear()
            return front
        front = []
        while queue and queue[0][0] <= horizon:
            front.append(queue.popleft())
        return front

    def _forced_horizon(self) -> int:
        """The time up to which releasing everything held leaves no more than half the limit held."""
        times = sorted(at for queue in self._held.values() for at, _msg in queue)
        return times[len(times) - self.max_held // 2 - 1]

    def held(self) -> Iterator[M]:
        for queue in self._held.values():
            for _at, msg in queue:
                yield msg

    def clear(self) -> None:
        """Drop what is held (a rebalance: the records are read again from the committed offsets)."""
        self._held.clear()
        self._latest.clear()
        self.count = 0


def _time(item: tuple[int, RecordLike]) -> int:
    return item[0]


_TIE_ORDER: dict[EventKind | None, int] = {"clients": 0, "controls": 1, "interactions": 2, "transactions": 3}


def _tie_rank(tp: tuple[str, int]) -> int:
    return _TIE_ORDER.get(kind_of_topic(tp[0]), len(_TIE_ORDER))

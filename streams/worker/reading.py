"""Which input topics of each partition are still being read: what holds an event-time clock back.

A worker fetches every topic partition at its own pace. Draining a backlog,
a topic with few records per day (clients, interactions) reaches days that
the busy one (transactions) has not reached yet; a clock that took the
latest time of any topic would then pass due times of clients whose events
are still unread, and fire dormancies and reactivations that a replay of the
same history does not. The batch processor therefore holds a partition's clock
at the earliest of the latest times read on the topics still being read there
(handlers/batch.py, `reading`), and holds back the records read ahead of them
(streams/worker/alignment.py); this module says which those are.

An input topic partition the worker is assigned counts as being read while
the offset after the last record read is below the high watermark of the last
fetch (it has records the worker has not seen, which may be older than those
of the other topics), or, before it has brought a record, while that high
watermark is unknown or above 0. One that has brought nothing for
`IDLE_SECONDS` (since it was assigned, if it never has) counts as caught up
whatever its high watermark says: a transaction marker at the end of a log
(whose offset no record carries), a stale high watermark, or a partition a
restarted worker had already read to its end cannot hold the clock for long.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from handlers.batch import RecordLike

HighWater = Callable[[str, int], int | None]
"""The high watermark of (topic, partition) at the last fetch, None before one answered."""

IDLE_SECONDS = 10.0


class ReadingTracker:
    """Follows the offsets read per input topic partition, batch by batch."""

    def __init__(self, idle_seconds: float = IDLE_SECONDS) -> None:
        self.idle_seconds = idle_seconds
        self._next: dict[tuple[str, int], int] = {}
        """(topic, partition) -> the offset after the last one read."""
        self._brought: dict[tuple[str, int], float] = {}
        """(topic, partition) -> when (monotonic seconds) its last records came."""

    def batch(
        self,
        messages: Iterable[RecordLike],
        assigned: Iterable[tuple[str, int]],
        highwater: HighWater,
        now: float,
    ) -> dict[int, set[str]]:
        """The topics being read on each partition while `messages` (one batch, in order) are applied.

        `assigned` are the input (topic, partition) pairs the worker owns; `now` is a monotonic time in seconds.
        """
        nexts, brought = self._next, self._brought
        in_batch: set[tuple[str, int]] = set()
        for msg in messages:
            tp = (msg.topic, msg.partition)
            in_batch.add(tp)
            nexts[tp] = msg.offset + 1
        reading: dict[int, set[str]] = {}
        for tp in in_batch:
            brought[tp] = now
        idle_from = now - self.idle_seconds
        for tp in assigned:
            if brought.setdefault(tp, now) < idle_from:
                continue
            end = highwater(*tp)
            read = nexts.get(tp)
            if (end is None and read is None) or (end is not None and (0 if read is None else read) < end):
                reading.setdefault(tp[1], set()).add(tp[0])
        return reading

    def clear(self) -> None:
        """Forget the offsets (a rebalance: reading resumes at the committed offsets)."""
        self._next.clear()
        self._brought.clear()

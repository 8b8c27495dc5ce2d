"""Which clients have a clock rule due, found without scanning every client on every tick."""

from __future__ import annotations

import heapq


class DueIndex:
    """A heap of (due, client) behind a dict of each client's current due time.

    `note` is called with a client's next due time after every change of its
    state, and nearly every event moves the dormancy due time *later*. Such a
    move only updates the dict: the client's older, earlier heap entry stays
    and, when it comes up, is pushed back at the current due time. So a busy
    client costs one dict write per event instead of a heap push, and the heap
    holds about one entry per client. Invariant: every client in the dict has
    a heap entry at or before its due time.
    """

    __slots__ = ("_due", "_heap")

    def __init__(self) -> None:
        self._heap: list[tuple[int, str]] = []
        self._due: dict[str, int] = {}

    def __len__(self) -> int:
        return len(self._due)

    def note(self, client_id: str, due: int | None) -> None:
        due_of = self._due
        current = due_of.get(client_id)
        if due is None:
            if current is not None:
                del due_of[client_id]
            return
        due_of[client_id] = due
        if current is None or due < current:
            heapq.heappush(self._heap, (due, client_id))
            if len(self._heap) > 2 * len(due_of) + 1024:
                self._compact()

    def pop_due(self, now: int) -> list[str]:
        """Clients due at or before `now`, earliest first; they leave the index until noted again."""
        out: list[str] = []
        while (top := self._settled_top()) is not None and top[0] <= now:
            heapq.heappop(self._heap)
            del self._due[top[1]]
            out.append(top[1])
        return out

    def peek(self) -> int | None:
        """The earliest due time in the index."""
        top = self._settled_top()
        return None if top is None else top[0]

    def _settled_top(self) -> tuple[int, str] | None:
        """The heap's first entry once it is some client's current due time."""
        heap, due_of = self._heap, self._due
        while heap:
            due, client = heap[0]
            current = due_of.get(client)
            if current == due:
                return heap[0]
            if current is None or current < due:
                heapq.heappop(heap)  # stale: the client left, or an earlier entry of it exists
            else:
                heapq.heapreplace(heap, (current, client))  # moved later since it was queued
        return None

    def clear(self) -> None:
        self._heap.clear()
        self._due.clear()

    def _compact(self) -> None:
        self._heap = [(d, c) for c, d in self._due.items()]
        heapq.heapify(self._heap)

"""Which clients have a clock rule due, found without scanning every client on every tick."""

from __future__ import annotations

import heapq


class DueIndex:
    """A heap of (due, client) with lazy deletion: stale entries are skipped when popped.

    `note` is called with each client's current next due time after its state
    changed; `pop_due` returns the clients whose latest noted due time has passed.
    """

    __slots__ = ("_due", "_heap")

    def __init__(self) -> None:
        self._heap: list[tuple[int, str]] = []
        self._due: dict[str, int] = {}

    def __len__(self) -> int:
        return len(self._due)

    def note(self, client_id: str, due: int | None) -> None:
        current = self._due.get(client_id)
        if due == current:
            return
        if due is None:
            del self._due[client_id]
            return
        self._due[client_id] = due
        heapq.heappush(self._heap, (due, client_id))
        if len(self._heap) > 2 * len(self._due) + 1024:
            self._compact()

    def pop_due(self, now: int) -> list[str]:
        heap, due_of = self._heap, self._due
        out: list[str] = []
        while heap and heap[0][0] <= now:
            due, client = heapq.heappop(heap)
            if due_of.get(client) == due:
                del due_of[client]
                out.append(client)
        return out

    def peek(self) -> int | None:
        heap, due_of = self._heap, self._due
        while heap and due_of.get(heap[0][1]) != heap[0][0]:
            heapq.heappop(heap)
        return heap[0][0] if heap else None

    def clear(self) -> None:
        self._heap.clear()
        self._due.clear()

    def _compact(self) -> None:
        self._heap = [(d, c) for c, d in self._due.items()]
        heapq.heapify(self._heap)

"""The client-state and clock tables: written by the worker itself, once per client per batch.

Faust derives a changelog record's partition from the *current* event, which
in a batch is only the last one; the worker sends each record to the
partition its client's records came from instead, and puts the value straight
into the table's local store (bypassing Faust's per-key sensor hooks). The
store also remembers each key's partition (Faust's memory store drops the
keys of revoked partitions after a rebalance by it).

During recovery each changelog batch is shown to `on_recovering` before it is
applied, with the partitions the keys were last seen on, so the worker can
rebuild its due index and notice a client whose state is in two partitions.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import faust
from faust.types import EventT

RecoveredRecord = tuple[int, bytes, bytes | None, int | None, bytes | None]
"""(changelog partition, key, value, and the partition and value the key had before this record)."""


class WorkerTable(faust.Table):
    """A bytes-to-bytes table whose writes and recovery the worker drives."""

    on_recovering: Callable[[list[RecoveredRecord]], None] | None = None

    def apply_changelog_batch(self, batch: Iterable[EventT]) -> None:
        events = list(batch)
        if self.on_recovering is not None:
            partitions, local = self._key_partitions, self._local
            pending: dict[bytes, bytes | None] = {}
            """Values of this batch not yet applied: later records of the batch compare with them."""
            seen: list[RecoveredRecord] = []
            for event in events:
                key = event.key
                if isinstance(key, bytes):
                    partition, value = event.message.partition, event.value
                    before = pending[key] if key in pending else local.get(key)
                    seen.append((partition, key, value, partitions.get(key), before))
                    partitions[key] = partition
                    pending[key] = value
            self.on_recovering(seen)
        super().apply_changelog_batch(events)

    @property
    def _local(self) -> Any:
        return self.data.data  # type: ignore[attr-defined]  # the memory store's dict

    @property
    def _key_partitions(self) -> Any:
        return self.data._key_partition  # type: ignore[attr-defined]  # key -> partition, the memory store's

    def get_raw(self, key: bytes) -> bytes | None:
        value: bytes | None = self._local.get(key)
        return value

    def put_raw(self, key: bytes, value: bytes, partition: int) -> None:
        self._local[key] = value
        self._key_partitions[key] = partition

    def delete_raw(self, key: bytes) -> None:
        self._local.pop(key, None)
        self._key_partitions.pop(key, None)

    def changelog_name(self) -> str:
        return self.changelog_topic.get_topic_name()


def worker_table(app: faust.App, name: str, partitions: int, help_text: str) -> WorkerTable:
    table = WorkerTable(
        app,
        name=name,
        beacon=app.tables.beacon,
        partitions=partitions,
        key_type=bytes,
        value_type=bytes,
        help=help_text,
    )
    app.tables.add(table)
    return table

"""The partition of a keyed record, chosen as the producer would, without hashing each key anew."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence

Partitioner = Callable[[bytes | None, list[int], list[int]], int]
Record = tuple[bytes | None, bytes]


class KeyPartitions:
    """Groups records by the partition the producer's partitioner gives their key, remembering the answers.

    The worker sends alerts and snapshots one batch per partition, so it picks
    each record's partition itself, exactly as a keyed send would. Kafka's
    partitioner hashes the key with murmur2, which aiokafka computes in pure
    Python (about 5 µs a key); during a backlog the same client keys come back
    every few seconds. A key's partition depends only on the key and the
    topic's partitions, so answers are kept per partition layout, at most
    `max_keys` of them (then forgotten all at once). A record without a key
    goes where the partitioner says each time (it may choose at random).
    """

    def __init__(self, max_keys: int = 100_000) -> None:
        self.max_keys = max_keys
        self._memos: dict[tuple[int, ...], dict[bytes, int]] = {}

    def group(
        self, choose: Partitioner, records: Iterable[Record], partitions: Sequence[int]
    ) -> dict[int, list[Record]]:
        layout = list(partitions)
        memo = self._memos.setdefault(tuple(layout), {})
        if len(memo) >= self.max_keys:
            memo.clear()
        by_partition: dict[int, list[Record]] = defaultdict(list)
        for key, value in records:
            if key is None:
                partition = choose(None, layout, layout)
            else:
                found = memo.get(key)
                partition = memo[key] = choose(key, layout, layout) if found is None else found
            by_partition[partition].append((key, value))
        return by_partition

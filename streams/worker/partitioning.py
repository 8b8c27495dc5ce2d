"""The partition of a keyed record under Kafka's default partitioner, remembered instead of hashed anew.

Kafka's default partitioner (the Java client's, aiokafka's) puts a key on
partition murmur2(key) mod the topic's partition count. The worker needs that
answer twice per record: to check that an input record sits where its key
belongs (a client must have one state, on one partition), and to send each
alert and snapshot, one batch per partition, exactly where a keyed send would.
aiokafka computes murmur2 in pure Python (about 5 µs a key), and during a
backlog the same client keys come back every few seconds, so answers are kept
per partition count, at most `max_keys` of them (then forgotten all at once).
"""

from __future__ import annotations

import random
from collections import defaultdict
from collections.abc import Iterable

from aiokafka.partitioner import murmur2  # type: ignore[import-untyped]

Record = tuple[bytes | None, bytes | None]


class KeyPartitions:
    def __init__(self, max_keys: int = 100_000) -> None:
        self.max_keys = max_keys
        self._memos: dict[int, dict[bytes, int]] = {}

    def of(self, key: bytes, count: int) -> int:
        """The partition of `key` on a topic of `count` partitions."""
        memo = self._memos.get(count)
        if memo is None:
            memo = self._memos[count] = {}
        partition = memo.get(key)
        if partition is None:
            if len(memo) >= self.max_keys:
                memo.clear()
            partition = memo[key] = (murmur2(key) & 0x7FFFFFFF) % count
        return partition

    def group(self, records: Iterable[Record], count: int) -> dict[int, list[Record]]:
        """Records by the partition a keyed send would choose; a record without a key goes anywhere."""
        by_partition: dict[int, list[Record]] = defaultdict(list)
        of = self.of
        for key, value in records:
            partition = random.randrange(count) if key is None else of(key, count)
            by_partition[partition].append((key, value))
        return by_partition

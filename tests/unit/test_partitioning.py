"""Partitions are Kafka's default partitioner's, whether computed or remembered."""

from __future__ import annotations

from aiokafka.partitioner import DefaultPartitioner  # type: ignore[import-untyped]
from hypothesis import given, settings
from hypothesis import strategies as st

from streams.worker.partitioning import KeyPartitions

CHOOSE = DefaultPartitioner()


@settings(max_examples=200, deadline=None)
@given(
    keys=st.lists(st.none() | st.binary(max_size=40) | st.sampled_from([b"c-1", b"c-2", b"c-000042"]), max_size=60),
    partition_count=st.integers(1, 12),
    max_keys=st.integers(1, 8),
)
def test_same_partition_as_the_producers_partitioner(
    keys: list[bytes | None], partition_count: int, max_keys: int
) -> None:
    partitions = list(range(partition_count))
    memo = KeyPartitions(max_keys=max_keys)
    records = [(key, str(i).encode()) for i, key in enumerate(keys)]
    for _ in range(2):  # the second time from memory
        grouped = memo.group(records, partition_count)
        assert sorted(v for rs in grouped.values() for _, v in rs if v) == sorted(v for _, v in records if v)
        for partition, chosen in grouped.items():
            assert partition in partitions
            for key, _ in chosen:
                if key is not None:
                    assert CHOOSE(key, partitions, partitions) == partition
                    assert memo.of(key, partition_count) == partition

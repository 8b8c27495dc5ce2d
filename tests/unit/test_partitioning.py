"""Records are grouped by the partition a keyed send would choose, remembered or not."""

from __future__ import annotations

from aiokafka.partitioner import DefaultPartitioner
from hypothesis import given, settings
from hypothesis import strategies as st

from streams.faust_ext.partitioning import KeyPartitions

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
    grouping = KeyPartitions(max_keys=max_keys)
    records = [(key, str(i).encode()) for i, key in enumerate(keys)]
    for _ in range(2):  # the second time from memory
        grouped = grouping.group(CHOOSE, records, partitions)
        assert sorted(v for rs in grouped.values() for _, v in rs) == sorted(v for _, v in records)
        for partition, chosen in grouped.items():
            assert partition in partitions
            for key, _ in chosen:
                if key is not None:
                    assert partition == CHOOSE(key, partitions, partitions)


def test_remembers_per_partition_layout_and_forgets_when_full() -> None:
    calls: list[tuple[bytes | None, int]] = []

    def choose(key: bytes | None, all_partitions: list[int], available: list[int]) -> int:
        calls.append((key, len(all_partitions)))
        return all_partitions[-1]

    grouping = KeyPartitions(max_keys=3)
    records = [(b"a", b"1"), (b"b", b"2"), (b"a", b"3")]
    assert grouping.group(choose, records, [0, 1]) == {1: records}
    assert grouping.group(choose, records, [0, 1]) == {1: records}
    assert calls == [(b"a", 2), (b"b", 2)]
    assert grouping.group(choose, records, [0, 1, 2]) == {2: records}  # another layout asks again
    assert calls[2:] == [(b"a", 3), (b"b", 3)]
    grouping.group(choose, [(b"c", b""), (b"d", b"")], [0, 1])
    assert len(grouping._memos[(0, 1)]) == 4  # bounded per call: full now, so the next call starts afresh
    grouping.group(choose, [(b"a", b"")], [0, 1])
    assert grouping._memos[(0, 1)] == {b"a": 1}

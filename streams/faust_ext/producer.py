"""Sending a batch's records one producer batch per partition, on the producer Faust already runs.

Faust's producer sends (and tracks a future for) one record at a time; over a
backlog of a hundred thousand clients that alone took a quarter of the worker.
aiokafka's producer builds whole batches (`create_batch`, `send_batch`), but
Faust keeps it behind `_ensure_producer`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from typing import Any

import faust

from streams.worker.partitioning import KeyPartitions

Record = tuple[bytes | None, bytes | None]


class BatchSender:
    """Keyed batches to the partitions their keys choose, and per-partition batches as given."""

    def __init__(self, app: faust.App, partitions: KeyPartitions) -> None:
        self.app = app
        self.partitions = partitions

    @property
    def _producer(self) -> Any:
        return self.app.producer._ensure_producer()  # type: ignore[attr-defined]  # aiokafka's, behind Faust's

    async def partition_count(self, topic: str) -> int:
        return len(await self._producer.partitions_for(topic))

    async def send_keyed(self, topic: str, records: Sequence[Record]) -> list[asyncio.Future[Any]]:
        """Send records where a keyed send would (Kafka's default partitioner); futures done when acknowledged."""
        if not records:
            return []
        by_partition = self.partitions.group(records, await self.partition_count(topic))
        return await self.send_batches(topic, by_partition)

    async def send_batches(self, topic: str, records: Mapping[int, Sequence[Record]]) -> list[asyncio.Future[Any]]:
        """Hand records to the producer one batch per partition; futures done when acknowledged."""
        producer = self._producer
        futures = []
        for partition, items in records.items():
            batch = producer.create_batch()
            for key, value in items:
                if batch.append(key=key, value=value, timestamp=None) is None:
                    futures.append(await producer.send_batch(batch, topic, partition=partition))
                    batch = producer.create_batch()
                    if batch.append(key=key, value=value, timestamp=None) is None:
                        size = 0 if value is None else len(value)
                        raise ValueError(f"a {size}-byte record does not fit in a producer batch")
            futures.append(await producer.send_batch(batch, topic, partition=partition))
        return futures

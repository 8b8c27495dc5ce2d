"""Table recovery in whole fetches.

Faust restores a table by passing each changelog record through the same
per-message dispatch as stream input (a four-task race, the conductor, a
queue) and then through a loop that waits on the queue with a timeout task
and recounts the remaining offsets of every partition, per record. Here that
read about 4,000 records/s: minutes for a worker's share of a large bank.

`InboxConsumer` (streams/faust_ext/inbox.py) hands the changelog records of a fetch to
the recovery queue as one list of events, and `FetchRecovery` applies such a
list with Faust's own per-record bookkeeping (offsets, buffers, the table's
batch apply), but checks for the end of recovery once per list. Everything
else (which partitions, from and to which offsets, standbys, the signals to
resume streams) stays Faust's.

**End offsets that recovery can trust.** Faust reads a changelog up to the end
offset that ListOffsets reports. Some Kafka-compatible brokers (the embedded
Tansu among them) answer with the offset after the *first* record of the last
record batch, and the worker writes each partition's states as one batch:
recovery stopped short and a restarted worker went on from stale client state
although the input offsets of the lost updates were committed. A Fetch
response's high watermark is right on those brokers, so with an
`EndOffsetProbe` (configured for such brokers only; on Kafka the two agree)
each listed end offset is checked by fetching from just before it.

Depends on faust-streaming internals (INTERNALS.md); pyproject pins the exact version.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from time import monotonic
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition  # type: ignore[import-untyped]
from faust.tables.manager import TableManager
from faust.tables.recovery import Recovery
from faust.types import TP, EventT
from faust.utils.tracing import finish_span
from mode import Service

logger = logging.getLogger("faust.tables.recovery")
log = logging.getLogger("clientpulse.worker")


@dataclass(frozen=True)
class EndOffsetProbe:
    """How to reach the brokers for the end-offset check: addresses and the client's connection settings."""

    bootstrap: str
    client_options: Mapping[str, Any] = field(default_factory=dict)
    timeout: float = 5.0

    async def fetched_end_offsets(self, listed: Mapping[TP, int | None]) -> dict[TP, int | None]:
        """`listed` end offsets, each raised to the high watermark a fetch from just before it reports."""
        ends = dict(listed)
        probes = {TopicPartition(tp.topic, tp.partition): tp for tp, end in listed.items() if end}
        if not probes:
            return ends
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self.bootstrap, enable_auto_commit=False, group_id=None, **self.client_options
        )
        await consumer.start()
        try:
            consumer.assign(list(probes))
            for probe, tp in probes.items():
                consumer.seek(probe, int(listed[tp] or 1) - 1)
            pending = set(probes)
            loop = asyncio.get_running_loop()
            deadline = loop.time() + self.timeout
            while pending and loop.time() < deadline:
                await consumer.getmany(*pending, timeout_ms=200, max_records=1)
                for probe in list(pending):
                    highwater = consumer.highwater(probe)
                    if highwater is not None:
                        tp = probes[probe]
                        ends[tp] = max(int(listed[tp] or 0), int(highwater))
                        pending.discard(probe)
            if pending:
                log.warning("no high watermark fetched for %s; using the listed end offsets", sorted(pending))
        finally:
            await consumer.stop()
        return ends


class FetchRecovery(Recovery):
    """Faust's recovery, taking the changelog queue's items as lists of events."""

    last_seconds: float | None = None
    """How long the last recovery took (end offsets, seeks, reading and applying), and what it applied."""
    last_records: int = 0
    _records: int = 0

    async def _build_highwaters(self, consumer: Any, tps: set[TP], destination: Counter[TP], title: str) -> None:
        """Faust's end offsets (kept as the last offset to read), each checked by a fetch when a probe is set."""
        await super()._build_highwaters(consumer, tps, destination, title)
        probe: EndOffsetProbe | None = getattr(self.app, "end_offset_probe", None)
        if probe is None:
            return
        listed = {tp: destination[tp] + 1 for tp in tps if destination.get(tp) is not None and destination[tp] >= 0}
        if not listed:
            return
        ends = await probe.fetched_end_offsets(listed)
        corrected = {tp: end for tp, end in ends.items() if end is not None and end != listed[tp]}
        for tp, end in corrected.items():
            destination[tp] = end - 1
        if corrected:
            log.info(
                "%s changelog end offsets corrected by fetch: %s",
                title,
                ", ".join(f"{tp.topic}[{tp.partition}] {listed[tp]} -> {end}" for tp, end in sorted(corrected.items())),
            )

    def _set_recovery_started(self) -> None:
        super()._set_recovery_started()
        self._records = 0

    def _set_recovery_ended(self) -> None:
        started = self._recovery_started_at
        super()._set_recovery_ended()
        if started is not None and self._recovery_ended_at is not None:
            self.last_seconds = self._recovery_ended_at - started
            self.last_records = self._records

    @Service.task
    async def _slurp_changelogs(self) -> None:  # pragma: no cover - exercised by the broker tests
        # Follows faust.tables.recovery.Recovery._slurp_changelogs (faust-streaming 0.15).
        changelog_queue = self.tables.changelog_queue
        timeout_count = 0
        while not self.should_stop:
            try:
                self.signal_recovery_end.clear()
                try:
                    item = await asyncio.wait_for(changelog_queue.get(), timeout=5.0)
                except TimeoutError:
                    timeout_count += 1
                    if self.should_stop:
                        return
                    await self._end_if_recovered(timeout=True, timeout_count=timeout_count)
                    continue
                timeout_count = 0
                events = list(item) if isinstance(item, list) else [item]
                while not changelog_queue.empty():
                    more = changelog_queue.get_nowait()
                    events.extend(more if isinstance(more, list) else [more])
                await self._apply(events)
                await self._end_if_recovered()
                standby_ready = self._standbys_span is None and self.tables.standbys_ready
                if not standby_ready and not self.standby_remaining_total():
                    logger.debug("Completed standby partition fetch")
                    if self._standbys_span:
                        finish_span(self._standbys_span)
                        self._standbys_span = None
                    self.tables.on_standbys_ready()
            except Exception as ex:
                logger.warning(f"Error in recovery {ex}")

    async def _apply(self, events: list[EventT]) -> None:
        """Buffer each event not yet seen for its table, applying a buffer when it is full."""
        now = started = monotonic()
        applied = 0
        tp_to_table = self.tp_to_table
        buffers = self.buffers
        buffer_sizes = self.buffer_sizes
        for event in events:
            message = event.message
            tp: TP = message.tp
            offset = message.offset
            table = tp_to_table.get(tp)
            if tp in self.active_tps and table is not None:
                offsets = self.active_offsets
                bufsize = buffer_sizes.get(tp)
                if bufsize is None:
                    bufsize = buffer_sizes[tp] = table.recovery_buffer_size
                self._active_events_received_at[tp] = now
            elif tp in self.standby_tps and table is not None:
                offsets = self.standby_offsets
                bufsize = buffer_sizes.get(tp)
                if bufsize is None:
                    bufsize = buffer_sizes[tp] = table.standby_buffer_size
                    self._standby_events_received_at[tp] = now
            else:
                logger.warning(f"recovery unknown topic {tp} offset {offset}")
                continue
            seen = offsets.get(tp, None)
            if seen is None or offset > seen:
                offsets[tp] = offset
                applied += 1
                buffer = buffers[table]
                buffer.append(event)
                await table.on_changelog_event(event)
                if len(buffer) >= bufsize:
                    table.apply_changelog_batch(buffer)
                    buffer.clear()
                    self._last_flush_at = now
        self._records += applied
        if applied:
            # Faust estimates the time left from per-record processing times.
            done = self._last_active_event_processed_at = monotonic()
            times = self._processing_times
            times.append((done - started) / applied)
            while len(times) > self.num_samples_required_for_estimate:
                times.popleft()

    async def _end_if_recovered(self, timeout: bool = False, timeout_count: int = 0) -> None:
        if timeout and self.app.in_transaction and timeout_count > 1:
            await self._detect_aborted_tx()
        if self.in_recovery and not self.need_recovery():
            self.flush_buffers()
            self._set_recovery_ended()
            if self._actives_span is not None:
                self._actives_span.set_tag("Actives-Ready", True)
            logger.debug("Setting recovery end")
            self.signal_recovery_end.set()

    async def _detect_aborted_tx(self) -> None:
        offsets = self.active_offsets
        for tp, highwater in self.active_highwaters.items():
            if highwater is not None and offsets[tp] is not None and offsets[tp] < highwater:
                position = await self.app.consumer.position(tp)
                if position is not None and position >= highwater:
                    logger.info(f"Aborted tx until highwater for {tp}")
                    offsets[tp] = highwater


class FetchTableManager(TableManager):
    """Faust's table manager with `FetchRecovery`, and a recovery queue of a few whole fetches."""

    max_fetches = 4

    @property
    def changelog_queue(self) -> Any:
        if self._changelog_queue is None:
            self._changelog_queue = self.app.FlowControlQueue(maxsize=self.max_fetches, clear_on_resume=True)
        return self._changelog_queue

    @property
    def recovery(self) -> Recovery:
        if self._recovery is None:
            self._recovery = FetchRecovery(self.app, self, beacon=self.beacon, loop=self.loop)
        return self._recovery

    def changelog_channels(self) -> dict[str, Any]:
        """The channel (with the table's serializers) of each changelog topic, by topic name."""
        return {table.changelog_topic.get_topic_name(): channel for table, channel in self._channels.items()}

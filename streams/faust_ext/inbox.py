"""Whole fetches for the agent: the worker's topics bypass Faust's per-message dispatch.

Faust hands every fetched message to its stream one at a time: a task race
(`wait_first`: four tasks and an `asyncio.wait`) to put it on the topic's
queue, then the stream's iterator with its sensors and context variables to
take it off again. Here that costs about 200 µs per message, more than the
rules themselves. The worker needs none of it: it processes batches and
writes its state and changelog itself.

`InboxConsumer` therefore puts the messages of the inbox's topics, a whole
fetch at a time, on one bounded queue (`Inbox`); table changelogs read during
recovery go the same way to the recovery queue (streams/faust_ext/recovery.py), and any
other topic takes Faust's own path. What Faust guarantees per message is kept
per message:

- Faust's delivery order: each partition's messages in offset order, one
  message of each topic, and of each partition within a topic, in turn; the
  same read-offset and gap bookkeeping, the same commit-every check;
- a message is *tracked* when the agent takes it and *acked* when its batch is
  done, so commits cover processed messages only, and a rebalance
  (`stream_wait_empty`) waits for the batch in hand;
- the queue is flow-controlled like Faust's: a rebalance suspends it and clears
  it, a put blocked on a full queue gives way to the rebalance, and the agent
  drops messages of an older consumer generation (they are fetched again from
  the committed offsets).

The consumer also bounds the fetch wait: Faust fixes it at 1.5 s, and a
broker that holds a fetch for the whole wait (as the embedded one does) adds
that much latency to every alert.

Depends on faust-streaming internals (INTERNALS.md); pyproject pins the exact version.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Iterable
from itertools import zip_longest
from typing import Any, cast

import faust
from faust.transport.consumer import CONSUMER_FETCHING
from faust.transport.drivers import aiokafka as faust_aiokafka
from faust.types import TP, Message
from mode.utils.queues import FlowControlEvent, FlowControlQueue

from streams.faust_ext.recovery import EndOffsetProbe, FetchTableManager

_NOTHING: Any = object()


def round_robin(lists: list[list[Any]]) -> list[Any]:
    """One item of each list in turn (Faust's delivery order across topics and partitions)."""
    if len(lists) <= 1:
        return lists[0] if lists else []
    return [item for row in zip_longest(*lists, fillvalue=_NOTHING) for item in row if item is not _NOTHING]


class Inbox:
    """The bounded queue of fetched message lists for the inbox topics."""

    def __init__(self, topics: Iterable[str], flow_control: FlowControlEvent, max_fetches: int = 4) -> None:
        self.topics = frozenset(topics)
        self.queue: FlowControlQueue[list[Message]] = FlowControlQueue(
            maxsize=max_fetches, flow_control=flow_control, clear_on_resume=True
        )

    async def take(self, app: faust.App, max_messages: int, timeout: float | None = None) -> list[Message]:
        """Wait for the next fetch, add those already waiting (up to `max_messages`) and track them.

        Messages of an older consumer generation, or taken while a rebalance has
        flow suspended, are dropped: they are fetched again from the committed offsets.
        With a `timeout` (seconds), no fetch within it gives an empty list.
        """
        queue = self.queue
        while True:
            try:
                messages = list(await asyncio.wait_for(queue.get(), timeout))
            except TimeoutError:
                return []
            while len(messages) < max_messages and not queue.empty():
                messages.extend(queue.get_nowait())
            if not app.flow_control.is_active():
                continue
            generation = app.consumer_generation_id
            fresh = [m for m in messages if m.generation_id == generation]
            if fresh:
                track = app.consumer.track_message
                for message in fresh:
                    message.tracked = True
                    track(message)
                return fresh

    @staticmethod
    def ack(app: faust.App, messages: Iterable[Message]) -> None:
        """Mark processed messages acked: their offsets may now be committed."""
        ack = app.consumer.ack
        for message in messages:
            ack(message)


def hold(messages: Iterable[Message]) -> None:
    """Set tracked messages aside to be processed by a later batch (`ack_held` then acks them).

    Marked acked without telling the consumer, as `withhold` does: a
    rebalance or a stop does not wait for them, and their offsets are not
    committable until they are acked. Dropped, they are read again from the
    committed offsets.
    """
    withhold(messages)


def ack_held(app: faust.App, messages: Iterable[Message]) -> None:
    """Ack messages processed now, some of which a batch before had set aside (`hold`)."""
    ack = app.consumer.ack
    for message in messages:
        message.acked = False
        ack(message)


def withhold(messages: Iterable[Message]) -> None:
    """Keep the offsets of a batch that failed or was cancelled from ever being committed (at-least-once).

    The messages are marked acked without telling the consumer: their offsets
    never become committable (the consumer's acked set never has them), and a
    stopping worker does not wait for them (it waits for tracked messages not
    marked acked). The batch is read again after a restart or a rebalance.
    """
    for message in messages:
        message.acked = True


def committed_offset(app: faust.App, tp: TP) -> int | None:
    """The next offset to consume that this worker committed for `tp` since the last rebalance, if any."""
    offset = app.monitor.tp_committed_offsets.get(tp)
    return None if offset is None else int(offset)


class FetchWaitConsumerThread(faust_aiokafka.AIOKafkaConsumerThread):
    """Faust's consumer thread with the fetch wait of the app's `fetch_max_wait_ms`."""

    def _create_worker_consumer(self, transport: Any) -> Any:
        consumer = super()._create_worker_consumer(transport)
        wait = getattr(self.app, "fetch_max_wait_ms", None)
        if wait is not None:
            consumer._fetch_max_wait_ms = wait  # aiokafka reads it for every fetch request
        return consumer


class InboxConsumer(faust_aiokafka.Consumer):
    """Faust's aiokafka consumer with the inbox topics delivered in whole fetches."""

    inbox: Inbox | None = None

    def _new_consumer_thread(self) -> faust_aiokafka.AIOKafkaConsumerThread:
        return FetchWaitConsumerThread(self, loop=self.loop, beacon=self.beacon)

    async def _drain_messages(self, fetcher: Any) -> None:  # pragma: no cover - exercised by the broker tests
        # Follows faust.transport.consumer.Consumer._drain_messages and .getmany
        # (faust-streaming 0.15); the inbox topics skip the per-message callback.
        inbox = self.inbox
        inbox_topics = inbox.topics if inbox is not None else frozenset()
        callback = self.callback
        consumer_should_stop = self._stopped.is_set
        fetcher_should_stop = fetcher._stopped.is_set
        get_read_offset = self._read_offset.__getitem__
        set_read_offset = self._read_offset.__setitem__
        set_flag = self.diag.set_flag
        unset_flag = self.diag.unset_flag
        acks_enabled_for = self.app.topics.acks_enabled_for
        to_message = self._to_message
        track_end_offset = self.app.monitor.track_tp_end_offset

        try:
            while not (consumer_should_stop() or fetcher_should_stop()):
                set_flag(CONSUMER_FETCHING)
                records, active = await self._wait_next_records(1.0)
                await self.sleep(0)
                if records is None or self.should_stop:
                    unset_flag(CONSUMER_FETCHING)
                    continue
                if not self.flow_active:
                    # A rebalance is under way: go back to the committed offsets (it may race the
                    # assignment; the rebalance seeks again).
                    try:
                        await self.perform_seek()
                    except Exception as exc:
                        self.log.warning("exception performing seek when flow not active %r", exc)
                    unset_flag(CONSUMER_FETCHING)
                    continue
                generation = self.app.consumer_generation_id
                buffered = self._buffered_partitions
                tables = self.app.tables if isinstance(self.app.tables, FetchTableManager) else None
                changelogs = tables.changelog_channels() if tables is not None else {}
                by_topic: dict[str, list[list[Message]]] = defaultdict(list)
                recovered: list[Any] = []
                since_yield = 0
                for tp, tp_records in records.items():
                    if not self.flow_active or self.app.consumer_generation_id != generation:
                        break
                    if not (active is None or tp in active or tp in buffered):
                        continue
                    track_end_offset(tp, self.highwater(tp))
                    topic = tp.topic
                    to_inbox = topic in inbox_topics
                    channel = changelogs.get(topic)
                    gaps_matter = acks_enabled_for(topic)
                    kept: list[Message] = []
                    r_offset = get_read_offset(tp)
                    for record in tp_records:
                        offset = record.offset
                        if r_offset is not None and offset < r_offset:
                            continue
                        if gaps_matter and r_offset and offset - r_offset > 1:
                            await self._add_gap(tp, r_offset + 1, offset)
                        message = to_message(tp, record)
                        if to_inbox:
                            kept.append(message)
                        elif channel is not None:
                            recovered.append(await channel.decode(message, propagate=True))
                        else:
                            since_yield += 1
                            if since_yield > 100:
                                await asyncio.sleep(0)
                                since_yield = 0
                            await self._commit_if_due()
                            await self.wait_first(callback(message), self.suspend_flow.wait())
                        r_offset = offset
                        set_read_offset(tp, offset)
                    if kept:
                        by_topic[topic].append(kept)
                fetched = round_robin([round_robin(lists) for lists in by_topic.values()])
                if recovered and tables is not None:
                    await self._hand_over(tables.changelog_queue, recovered)
                if fetched and inbox is not None:
                    await self._commit_if_due()
                    await self._hand_over(inbox.queue, fetched)
                unset_flag(CONSUMER_FETCHING)
        except self.consumer_stopped_errors:
            if self.transport.app.should_stop:
                self.log.info("Broker stopped consumer, shutting down...")
                return
            raise
        except asyncio.CancelledError:
            if self.transport.app.should_stop:
                self.log.info("Consumer shutting down for user cancel.")
                return
            raise
        except Exception as exc:
            self.log.exception("Drain messages raised: %r", exc)
            raise
        finally:
            unset_flag(CONSUMER_FETCHING)

    async def _commit_if_due(self) -> None:
        """Faust's commit-every: commit once `broker_commit_every` messages were acked since the last one."""
        if self._commit_every is not None and self._n_acked >= self._commit_every:
            self._n_acked = 0
            await self.commit()

    async def _hand_over(self, queue: Any, items: list[Any]) -> None:
        """Queue one fetch; waiting for room gives way to a rebalance (which drops the fetch)."""
        if queue.full() or not self.app.flow_control.is_active():
            await self.wait_first(queue.put(items), self.suspend_flow.wait())
        else:
            queue.put_nowait(items)


class InboxApp(faust.App):
    """A Faust app whose consumer delivers `inbox`'s topics, and table changelogs, in whole fetches.

    `fetch_max_wait_ms` bounds the consumer's fetch wait; `end_offset_probe`
    (for brokers whose ListOffsets answers are not exact, such as the
    embedded one) makes table recovery check each changelog's end by a fetch.
    """

    inbox: Inbox | None = None

    def __init__(
        self,
        *args: Any,
        fetch_max_wait_ms: int | None = None,
        end_offset_probe: EndOffsetProbe | None = None,
        **kwargs: Any,
    ) -> None:
        kwargs.setdefault("TableManager", FetchTableManager)
        self.fetch_max_wait_ms = fetch_max_wait_ms
        self.end_offset_probe = end_offset_probe
        super().__init__(*args, **kwargs)

    def _new_consumer(self) -> Any:
        consumer = InboxConsumer(
            self.transport,
            callback=self.topics.on_message,
            on_partitions_revoked=self._on_partitions_revoked,
            on_partitions_assigned=self._on_partitions_assigned,
            beacon=self.beacon,
            loop=cast(Any, self.transport).loop,
        )
        consumer.inbox = self.inbox
        return consumer

"""The Faust worker: input topics -> decode/validate -> rules -> state table + alerts.

One agent owns the client state. It consumes the three input topics and the
clock-tick topic (all co-partitioned by client), takes them in batches of whole
fetches (streams/faust_ext/inbox.py), applies the rule functions of `handlers.engine`,
publishes alerts and dead letters, waits for the broker to acknowledge them,
and only then writes each touched client's state once to the table (one
changelog record per client per batch). Offsets are committed after the
batch, so a crash replays the batch: the state either already holds its event
ids (and drops them as repeats) or it does not (and re-applies them, producing
alerts with the same ids). Nothing is lost.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter, OrderedDict, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import faust
import mode
import orjson
from faust.types import TP, EventT, Message
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from handlers import engine
from handlers.alerting import Outcome, alert_json
from handlers.decode import Rejection, dead_letter, decode, kind_of_topic
from handlers.due_index import DueIndex
from handlers.jsonbytes import dumps as json_bytes
from handlers.ruleset import Ruleset
from handlers.state import ClientState
from handlers.timeutil import to_us, wall_us
from schemas.values import TIERS
from streams import metrics
from streams.faust_ext import tuning as faust_tuning
from streams.faust_ext.inbox import Inbox, InboxApp
from streams.faust_ext.partitioning import KeyPartitions
from streams.faust_ext.recovery import FetchRecovery
from streams.settings import Settings

log = logging.getLogger("clientpulse.worker")

STATE_TABLE = "client-state"
SNAPSHOT_CHUNK = 1000
CLOCK_TABLE = "partition-clock"


class PartitionedTable(faust.Table):
    """A table written once per client per batch, straight to its store and changelog.

    Faust derives a changelog partition from the *current* event, which in a
    batch is only the last one; the batch writer sends each record to the
    partition its events came from instead. Recovery tells us which keys came
    back, so the due index can be rebuilt.
    """

    on_recovered_keys: Any = None

    def apply_changelog_batch(self, batch: Iterable[EventT]) -> None:
        events = list(batch)
        super().apply_changelog_batch(events)
        if self.on_recovered_keys is not None:
            self.on_recovered_keys(events)


@dataclass(slots=True)
class _Touched:
    state: ClientState
    partition: int
    tier_before: str | None


@dataclass(slots=True)
class _BatchCounts:
    """Metric increments gathered per batch: one labelled update per series, not per event."""

    consumed: Counter[str] = field(default_factory=Counter)
    rejected: Counter[tuple[str, str]] = field(default_factory=Counter)
    duplicates: Counter[str] = field(default_factory=Counter)
    alerts: Counter[tuple[str, str]] = field(default_factory=Counter)
    suppressed: Counter[str] = field(default_factory=Counter)

    def collect(self, outcome: Outcome, out: list[tuple[bytes, bytes]]) -> None:
        for alert in outcome.alerts:
            self.alerts[(alert.type, alert.severity)] += 1
            out.append((alert.client_id.encode(), alert_json(alert)))
        for alert_type in outcome.suppressed:
            self.suppressed[alert_type] += 1

    def publish(self) -> None:
        for topic, n in self.consumed.items():
            metrics.EVENTS_CONSUMED.labels(topic=topic).inc(n)
        for (topic, reason), n in self.rejected.items():
            metrics.EVENTS_REJECTED.labels(topic=topic, reason=reason).inc(n)
        for topic, n in self.duplicates.items():
            metrics.EVENTS_DUPLICATE.labels(topic=topic).inc(n)
        for (alert_type, severity), n in self.alerts.items():
            metrics.ALERTS_EMITTED.labels(type=alert_type, severity=severity).inc(n)
        for alert_type, n in self.suppressed.items():
            metrics.ALERTS_SUPPRESSED.labels(type=alert_type).inc(n)


def _as_bytes(value: Any) -> bytes | None:
    if value is None or isinstance(value, bytes):
        return value
    return str(value).encode()


@dataclass
class PartitionClocks:
    """Per-partition event-time watermark (clock mode "event")."""

    marks: dict[int, int] = field(default_factory=dict)
    dirty: set[int] = field(default_factory=set)

    def observe(self, partition: int, occurred: int) -> int:
        current = self.marks.get(partition, 0)
        if occurred > current:
            self.marks[partition] = occurred
            self.dirty.add(partition)
            return occurred
        return current


class Pipeline:
    """Holds the Faust app, its topics and tables, and processes batches."""

    def __init__(self, settings: Settings, rules: Ruleset) -> None:
        self.settings = settings
        self.rules = rules
        self.app = self._create_app()
        self.input_topic = self._raw_topic(*settings.input_topics, settings.ticks_topic)
        self.inbox = Inbox((*settings.input_topics, settings.ticks_topic), self.app.flow_control)
        self.app.inbox = self.inbox
        self.ticks_topic = self._raw_topic(settings.ticks_topic)
        self.states = self._table(STATE_TABLE, "Per-client rule state")
        self.clock_table = self._table(CLOCK_TABLE, "Per-partition event-time watermark")
        self.states.on_recovered_keys = self._on_recovered_states
        self.clock_table.on_recovered_keys = self._on_recovered_clock
        self.indexes: dict[int, DueIndex] = defaultdict(DueIndex)
        self._recovered: dict[int, set[bytes]] = defaultdict(set)
        self._cache: OrderedDict[str, ClientState] = OrderedDict()
        """Decoded states of recently active clients, in use order; the store keeps the bytes."""
        self._key_partitions = KeyPartitions()
        self.clocks = PartitionClocks()
        self.tier_counts: dict[int, Counter[str]] = defaultdict(Counter)
        self.processed = 0
        self.busy_from: float | None = None
        """Wall time the first batch with input started, and the last one ended: the throughput span."""
        self.busy_until: float | None = None
        self.ready = False
        self._snapshot_due: set[str] = set()
        # A batch that fails stops the worker (exit 1) instead of restarting the agent in place:
        # the batch is not committed (see _agent) and is read again by the next worker.
        self.app.agent(self.input_topic, name="clientpulse.process", supervisor_strategy=mode.CrashingSupervisor)(
            self._agent
        )
        self.app.timer(settings.tick_seconds, name="clientpulse.tick")(self._tick)
        self.app.timer(15.0, name="clientpulse.lag")(self._report_lag)
        self.app.timer(settings.snapshot_seconds, name="clientpulse.snapshots")(self._publish_snapshots)
        self.app.on_rebalance_complete.connect(self._on_rebalance_complete)
        self.app.on_partitions_revoked.connect(self._on_partitions_revoked)
        self._add_views()

    # ----------------------------------------------------------------- set-up
    def _create_app(self) -> InboxApp:
        s = self.settings
        faust_tuning.install(s.fetch_max_wait_ms)
        brokers = [f"kafka://{b.strip()}" for b in s.kafka_bootstrap.split(",") if b.strip()]
        return InboxApp(
            s.app_id,
            broker=brokers,
            store=f"{s.store}://",
            datadir=str(s.data_dir),
            topic_partitions=s.partitions,
            topic_replication_factor=s.replication_factor,
            topic_disable_leader=True,
            table_standby_replicas=0,
            broker_session_timeout=s.session_timeout,
            broker_heartbeat_interval=max(0.5, min(3.0, s.session_timeout / 4)),
            # Delivery is at least once (RELIABILITY.md): a batch's alerts and dead letters are acknowledged
            # by all in-sync replicas (acks=-1) before its state is written; the producer is flushed before
            # input offsets are committed; offsets are committed only for processed batches (every second or
            # 10,000 messages), never for a failed one (_agent). Messages not committed come again after a
            # crash or rebalance: repeats of applied event ids are counted and ignored, re-sent alerts keep
            # their alert_id and are stored once.
            processing_guarantee="at_least_once",
            producer_acks=-1,
            broker_commit_interval=1.0,
            broker_commit_every=10_000,
            stream_wait_empty=True,
            consumer_auto_offset_reset="earliest",
            producer_linger_ms=1,
            producer_max_batch_size=256 * 1024,
            stream_buffer_maxsize=max(4096, s.batch_size * 4),
            broker_max_poll_records=max(500, s.batch_size),
            recovery_consistency_check=s.recovery_check,
            web_enabled=True,
            web_port=s.web_port,
            web_bind=s.web_host,
            web_host=s.web_host,
            web_transport="tcp://",
            loghandlers=[],
        )

    def _raw_topic(self, *names: str) -> faust.TopicT:
        """Bytes in, bytes out: decoding is ours (handlers.decode), so bad input never crashes Faust."""
        return self.app.topic(*names, key_type=bytes, value_type=bytes, key_serializer="raw", value_serializer="raw")

    def _table(self, name: str, help_text: str) -> PartitionedTable:
        table = PartitionedTable(
            self.app,
            name=name,
            beacon=self.app.tables.beacon,
            partitions=self.settings.partitions,
            key_type=bytes,
            value_type=bytes,
            help=help_text,
        )
        self.app.tables.add(table)
        return table

    # ------------------------------------------------------------ recovery
    def _on_recovered_states(self, events: Sequence[EventT]) -> None:
        for event in events:
            key = event.key
            if isinstance(key, bytes):
                self._recovered[event.message.partition].add(key)

    def _on_recovered_clock(self, events: Sequence[EventT]) -> None:
        for event in events:
            if event.value:
                self.clocks.marks[event.message.partition] = int(event.value)

    async def _on_partitions_revoked(self, *args: Any, **kwargs: Any) -> None:
        self.ready = False  # /readyz says 503 until the new assignment is recovered

    async def _on_rebalance_complete(self, *args: Any, **kwargs: Any) -> None:
        """Forget the due index and tier counts of partitions this worker no longer owns."""
        assigned = {tp.partition for tp in self.app.consumer.assignment() if tp.topic == self.settings.ticks_topic}
        for partition in list(self.indexes):
            if partition not in assigned:
                del self.indexes[partition]
        for partition in list(self.tier_counts):
            if partition not in assigned:
                del self.tier_counts[partition]
        self._cache.clear()
        self._publish_tier_gauge()
        self.ready = True

    def _after_recovery(self) -> None:
        """Rebuild the due index and tier counts of each recovered partition (once per recovery)."""
        recovered, self._recovered = self._recovered, defaultdict(set)
        self._cache.clear()
        for partition, keys in recovered.items():
            # A partition kept through a rebalance is recovered only from where its last recovery
            # stopped (the keys written since): add those to its index, keep its incremental counts.
            kept = partition in self.tier_counts
            index = self.indexes[partition]
            tiers = self.tier_counts[partition]
            for key in keys:
                state = self._stored_state(key)
                if state is not None:
                    index.note(state.client_id, engine.next_due(self.rules, state))
                    if state.tier and not kept:
                        tiers[state.tier] += 1
        log.info("due index rebuilt for %d recovered partitions", len(recovered))
        self._publish_tier_gauge()

    def _publish_tier_gauge(self) -> None:
        """clientpulse_clients{tier}: the clients of the partitions this worker owns."""
        totals: Counter[str] = Counter()
        for counts in self.tier_counts.values():
            totals.update(counts)
        for tier in TIERS:
            metrics.CLIENTS.labels(tier=tier).set(totals.get(tier, 0))

    # ---------------------------------------------------------------- stream
    async def _agent(self, stream: Any) -> None:
        """Process the inbox's fetches in batches; the agent's stream only subscribes Faust to the topics."""
        app, inbox, batch_size = self.app, self.inbox, self.settings.batch_size
        while True:
            messages = await inbox.take(app, batch_size)
            try:
                await self.process_batch(messages)
            except BaseException:
                _withhold(messages)
                raise
            inbox.ack(app, messages)

    async def process_batch(self, messages: Sequence[Message]) -> None:
        try:
            await self._process_batch(messages)
        except BaseException:
            # Cached states may hold changes that never reached the changelog.
            self._cache.clear()
            raise

    async def _process_batch(self, messages: Sequence[Message]) -> None:
        started = time.perf_counter()
        started_at = time.time()
        if self._recovered:
            self._after_recovery()
        received_at = datetime.now(UTC)
        touched: dict[str, _Touched] = {}
        ticks: dict[int, int] = {}
        alerts: list[tuple[bytes, bytes]] = []
        letters: list[tuple[bytes | None, bytes]] = []
        counts = _BatchCounts()
        ticks_topic = self.settings.ticks_topic
        clock_is_event = self.settings.clock == "event"
        lag_now = time.time()
        rules = self.rules
        lags: list[float] = []

        for msg in messages:
            topic = msg.topic
            partition = msg.partition
            if topic == ticks_topic:
                ticks[partition] = max(ticks.get(partition, 0), _tick_time(msg.value))
                continue
            counts.consumed[topic] += 1
            key = _as_bytes(msg.key)
            raw = _as_bytes(msg.value)
            kind = kind_of_topic(topic)
            decoded = decode(kind, key, raw, rules) if kind else Rejection("unknown_topic", "unknown topic")
            if isinstance(decoded, Rejection):
                counts.rejected[(topic, decoded.reason)] += 1
                letter = dead_letter(topic, partition, msg.offset, key, raw, decoded, received_at)
                letters.append((key, letter.model_dump_json().encode()))
                continue
            occurred = to_us(decoded.occurred_at)
            now = self.clocks.observe(partition, occurred) if clock_is_event else wall_us()
            client_id = decoded.client_id
            entry = touched.get(client_id)
            if entry is None:
                entry = touched[client_id] = self._load(client_id, partition)
            outcome = engine.apply(rules, entry.state, decoded, now, received_at)
            if outcome.duplicate:
                counts.duplicates[topic] += 1
            else:
                lags.append(max(0.0, lag_now - occurred / 1_000_000))
            counts.collect(outcome, alerts)

        for partition, tick_now in ticks.items():
            metrics.CLOCK_SWEEPS.inc()
            if clock_is_event:
                now = self.clocks.observe(partition, tick_now) if tick_now else self.clocks.marks.get(partition, 0)
            else:
                now = wall_us()
            for client_id in self.indexes[partition].pop_due(now):
                entry = touched.get(client_id)
                if entry is None:
                    entry = touched[client_id] = self._load(client_id, partition)
                counts.collect(engine.advance(rules, entry.state, now, received_at), alerts)

        metrics.observe_all(metrics.EVENT_LAG_SECONDS, lags)
        await self._publish(alerts, letters)
        await self._write_states(touched)
        counts.publish()
        consumed = sum(counts.consumed.values())
        if consumed:
            self.processed += consumed
            if self.busy_from is None:
                self.busy_from = started_at
            self.busy_until = time.time()
        metrics.BATCH_SIZE.observe(len(messages))
        metrics.PROCESSING_SECONDS.observe(time.perf_counter() - started)

    def _load(self, client_id: str, partition: int) -> _Touched:
        state = self._cache.pop(client_id, None)
        if state is None:
            state = self._stored_state(client_id.encode()) or ClientState(client_id)
        return _Touched(state, partition, state.tier)

    def _stored_state(self, key: bytes) -> ClientState | None:
        raw = self._store.get(key)
        return ClientState.from_bytes(raw) if raw else None

    @property
    def _store(self) -> Any:
        """The table's local store, read without Faust's per-key sensor hooks."""
        return self.states.data

    async def _publish(self, alerts: list[tuple[bytes, bytes]], letters: list[tuple[bytes | None, bytes]]) -> None:
        """Send alerts and dead letters and wait until the broker has them, before any state write."""
        if not alerts and not letters:
            return
        futures = await self._send_keyed(self.settings.alerts_topic, alerts)
        futures += await self._send_keyed(self.settings.deadletter_topic, letters)
        await asyncio.gather(*futures)

    async def _write_states(self, touched: dict[str, _Touched]) -> None:
        """One changelog record per touched client, to the partition its events came from.

        The producer is flushed before Faust commits the input offsets, so a
        committed offset always has its state in the changelog.
        """
        store = self._store
        rules = self.rules
        cache = self._cache
        by_partition: dict[int, list[tuple[bytes, bytes]]] = defaultdict(list)
        tiers_changed = False
        for entry in touched.values():
            state = entry.state
            key = state.client_id.encode()
            value = state.to_bytes()
            store[key] = value
            cache[state.client_id] = state
            by_partition[entry.partition].append((key, value))
            self._snapshot_due.add(state.client_id)
            self.indexes[entry.partition].note(state.client_id, engine.next_due(rules, state))
            if state.tier != entry.tier_before:
                self._count_tier(entry.partition, entry.tier_before, state.tier)
                tiers_changed = True
        if tiers_changed:
            self._publish_tier_gauge()
        while len(cache) > self.settings.state_cache_size:
            cache.popitem(last=False)  # least recently used first (O(1); a dict's front slowly fills with holes)
        await self._send_batches(self.states.changelog_topic.get_topic_name(), by_partition)
        metrics.STATE_WRITES.inc(len(touched))
        if self.clocks.dirty:
            clock_store = self.clock_table.data
            clocks: dict[int, list[tuple[bytes, bytes]]] = {}
            for partition in self.clocks.dirty:
                key, value = str(partition).encode(), str(self.clocks.marks[partition]).encode()
                clock_store[key] = value
                clocks[partition] = [(key, value)]
            await self._send_batches(self.clock_table.changelog_topic.get_topic_name(), clocks)
            self.clocks.dirty.clear()

    @property
    def _producer(self) -> Any:
        return self.app.producer._ensure_producer()  # type: ignore[attr-defined]  # aiokafka's, behind Faust's

    async def _send_keyed(self, topic: str, records: Sequence[tuple[bytes | None, bytes]]) -> list[Any]:
        """Send records to the partitions their keys choose (as a keyed send would), in batches.

        Returns the batches' futures, done when the broker acknowledges them.
        """
        if not records:
            return []
        producer = self._producer
        partitions = sorted(await producer.partitions_for(topic))
        by_partition = self._key_partitions.group(producer._partitioner, records, partitions)
        return await self._send_batches(topic, by_partition)

    async def _send_batches(self, topic: str, records: Mapping[int, Sequence[tuple[bytes | None, bytes]]]) -> list[Any]:
        """Hand records to the producer one batch per partition (not one future per record).

        Returns the batches' futures, done when the broker acknowledges them.
        """
        producer = self._producer
        futures = []
        for partition, items in records.items():
            batch = producer.create_batch()
            for key, value in items:
                if batch.append(key=key, value=value, timestamp=None) is None:
                    futures.append(await producer.send_batch(batch, topic, partition=partition))
                    batch = producer.create_batch()
                    if batch.append(key=key, value=value, timestamp=None) is None:
                        raise ValueError(f"a {len(value)}-byte record does not fit in a producer batch")
            futures.append(await producer.send_batch(batch, topic, partition=partition))
        return futures

    def _count_tier(self, partition: int, before: str | None, after: str | None) -> None:
        counts = self.tier_counts[partition]
        if before is not None:
            counts[before] -= 1
        if after is not None:
            counts[after] += 1

    # ------------------------------------------------------------------ web
    def _add_views(self) -> None:
        app = self.app

        async def metrics_view(web: Any, request: Any) -> Any:
            return web.bytes(generate_latest(), content_type=CONTENT_TYPE_LATEST.split(";")[0])

        async def healthz(web: Any, request: Any) -> Any:
            return web.json({"status": "ok"})

        async def readyz(web: Any, request: Any) -> Any:
            status = 200 if self.ready else 503
            return web.json({"ready": self.ready}, status=status)

        async def status_view(web: Any, request: Any) -> Any:
            return web.json(self.status())

        app.page("/metrics")(metrics_view)
        app.page("/healthz")(healthz)
        app.page("/readyz")(readyz)
        app.page("/status")(status_view)

    def status(self) -> dict[str, Any]:
        """Counts for operators and the demo's progress line (no client data)."""
        assigned = sorted(
            tp.partition for tp in self.app.consumer.assignment() if tp.topic == self.settings.ticks_topic
        )
        return {
            "ready": self.ready,
            "processed": self.processed,
            "busy_from": self.busy_from,
            "busy_until": self.busy_until,
            "recovery": self._recovery_status(),
            "partitions": assigned,
            "clients_by_tier": dict(sum(self.tier_counts.values(), Counter())),
            "due_index": {str(p): len(i) for p, i in self.indexes.items()},
            "clock": self.settings.clock,
            "rule_version": self.rules.rule_version,
        }

    def _recovery_status(self) -> dict[str, Any]:
        recovery = getattr(self.app.tables, "recovery", None)
        if not isinstance(recovery, FetchRecovery):
            return {}
        return {"seconds": recovery.last_seconds, "records": recovery.last_records}

    # ----------------------------------------------------------------- timers
    async def _tick(self) -> None:
        """Emit a clock tick to every partition this worker owns; the agent sweeps on receipt."""
        if not self.ready:
            return
        tps = [tp for tp in self.app.consumer.assignment() if tp.topic == self.settings.ticks_topic]
        for tp in tps:
            await self.ticks_topic.send(key=b"tick", value=b"{}", partition=tp.partition)

    async def _publish_snapshots(self) -> None:
        """At most one snapshot per client per interval, whatever its event rate."""
        due, self._snapshot_due = list(self._snapshot_due), set()
        cache = self._cache
        for start in range(0, len(due), SNAPSHOT_CHUNK):
            records: list[tuple[bytes | None, bytes]] = []
            for client_id in due[start : start + SNAPSHOT_CHUNK]:
                key = client_id.encode()
                state = cache.get(client_id) or self._stored_state(key)
                if state is not None:
                    records.append((key, json_bytes(state.snapshot())))
            await self._send_keyed(self.settings.snapshots_topic, records)
            await asyncio.sleep(0)  # let batches run between chunks: snapshots must not add latency

    async def _report_lag(self) -> None:
        """Set clientpulse_consumer_lag_messages for every input partition this worker owns.

        Lag = log end offset - the offset this worker committed. The end offset is the
        larger of the high watermark of the last fetch and a ListOffsets answer: the first
        goes stale while a partition is paused, the second is wrong on some Kafka-compatible
        brokers. Before this worker's first commit in the current generation the consumer's
        position (where the group's committed offset left it) stands in. Only public Faust
        APIs are used; a failure skips one report and never stops the worker.
        """
        consumer = self.app.consumer
        inputs = set(self.settings.input_topics)
        lags: dict[tuple[str, int], int] = {}
        try:
            tps = sorted(tp for tp in consumer.assignment() if tp.topic in inputs)
            listed = await consumer.highwaters(*tps) if tps else {}
            for tp in tps:
                ends = [o for o in (consumer.highwater(tp), listed.get(tp)) if o is not None]
                consumed = _committed(self.app, tp)
                if consumed is None:
                    consumed = await asyncio.wait_for(consumer.position(tp), timeout=5.0)
                if ends and consumed is not None:
                    lags[(tp.topic, tp.partition)] = max(0, max(ends) - consumed)
        except Exception as exc:  # a metric must never take the worker down; the next timer run retries
            log.warning("consumer lag not reported: %r", exc)
            return
        metrics.report_consumer_lag(lags)


def _committed(app: faust.App, tp: TP) -> int | None:
    """The next offset to consume that this worker committed for `tp`, if it committed since the last rebalance.

    Faust's monitor keeps these (`tp_committed_offsets`, cleared at every rebalance).
    """
    offset = app.monitor.tp_committed_offsets.get(tp)
    return None if offset is None else int(offset)


def _withhold(messages: Sequence[Message]) -> None:
    """Keep the offsets of a batch that failed or was cancelled from being committed (at-least-once).

    The messages are marked acked without telling the consumer, so their
    offsets never become committable, and a stopping worker does not wait for
    them (it waits for tracked messages that are not marked acked): the batch
    is read again after a restart or a rebalance.
    """
    for message in messages:
        message.acked = True


def _tick_time(value: Any) -> int:
    """A tick may carry {"now": RFC 3339} to advance an event-time clock; else 0."""
    if not value:
        return 0
    try:
        data = orjson.loads(value)
        return to_us(datetime.fromisoformat(data["now"])) if isinstance(data, dict) and "now" in data else 0
    except (orjson.JSONDecodeError, ValueError, TypeError, KeyError):
        log.warning("ignoring malformed clock tick")
        return 0

"""The stream worker: Faust wiring around the batch processor of `handlers.batch`.

One agent owns the client state. It takes the input topics and the clock-tick
topic (all co-partitioned by client) in batches of whole fetches
(streams/faust_ext/inbox.py), hands each batch to the batch processor that the
backtest uses too, and then runs the batch's checkpoint (`_checkpoint`):

1. publish the alerts, dead letters and snapshot tombstones, and wait until
   the broker has acknowledged them;
2. write each touched client's state once to the table and its changelog
   (erased clients as tombstones), and each moved partition clock;
3. ack the batch's messages: Faust flushes the producer (the changelog
   records) and only then commits their offsets.

A crash anywhere before 3 replays the batch: the state either already holds
its event ids (and drops them as repeats) or it does not (and re-applies
them, producing alerts with the same ids). Nothing is lost.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter, OrderedDict, defaultdict
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import mode
import orjson
from faust.types import TP, Message
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from handlers.alerting import alert_json
from handlers.batch import BatchProcessor, BatchResult
from handlers.jsonbytes import dumps as json_bytes
from handlers.ruleset import Ruleset
from handlers.state import ClientState
from handlers.timeutil import to_us
from schemas.values import TIERS
from streams import kafka_client, metrics
from streams.faust_ext.inbox import Inbox, InboxApp, ack_held, committed_offset, hold, withhold
from streams.faust_ext.producer import BatchSender
from streams.faust_ext.recovery import EndOffsetProbe, FetchRecovery
from streams.faust_ext.tables import RecoveredRecord, WorkerTable, worker_table
from streams.settings import Settings, check_shadow
from streams.worker.alignment import Aligner
from streams.worker.partitioning import KeyPartitions
from streams.worker.reading import ReadingTracker

log = logging.getLogger("clientpulse.worker")

STATE_TABLE = "client-state"
CLOCK_TABLE = "partition-clock"
HELD_WAKE_SECONDS = 1.0
SNAPSHOT_CHUNK = 1000
MAX_SPLIT_EXAMPLES = 5


class StateCache:
    """Decoded states of recently active clients in use order, in front of the table's bytes."""

    def __init__(self, table: WorkerTable, size: int) -> None:
        self.table = table
        self.size = size
        self._states: OrderedDict[str, ClientState] = OrderedDict()

    def load(self, client_id: str) -> ClientState | None:
        state = self._states.pop(client_id, None)
        return state if state is not None else self.stored(client_id.encode())

    def stored(self, key: bytes) -> ClientState | None:
        raw = self.table.get_raw(key)
        return ClientState.from_bytes(raw) if raw else None

    def peek(self, client_id: str) -> ClientState | None:
        return self._states.get(client_id) or self.stored(client_id.encode())

    def keep(self, state: ClientState) -> None:
        self._states[state.client_id] = state

    def forget(self, client_id: str) -> None:
        self._states.pop(client_id, None)

    def trim(self) -> None:
        states = self._states
        while len(states) > self.size:
            states.popitem(last=False)  # least recently used first (O(1); a dict's front slowly fills with holes)

    def clear(self) -> None:
        self._states.clear()


class Pipeline:
    """Holds the Faust app, its topics and tables, and runs the batches through the processor."""

    def __init__(self, settings: Settings, rules: Ruleset) -> None:
        check_shadow(settings)
        self.settings = settings
        self.shadow = settings.shadow
        """A shadow publishes its alerts to its own topic and nothing else: no dead letters, no snapshots."""
        self.rules = rules
        self.app = self._create_app()
        self.inbox = Inbox((*settings.input_topics, settings.ticks_topic), self.app.flow_control)
        self.app.inbox = self.inbox
        input_topic = self.app.topic(
            *settings.input_topics,
            settings.ticks_topic,
            key_type=bytes,
            value_type=bytes,
            key_serializer="raw",
            value_serializer="raw",
        )
        self.states = worker_table(self.app, STATE_TABLE, settings.partitions, "Per-client rule state")
        self.clock_table = worker_table(self.app, CLOCK_TABLE, settings.partitions, "Per-partition event-time clock")
        self.states.on_recovering = self._on_recovering_states
        self.clock_table.on_recovering = self._on_recovering_clocks
        self.partitions = KeyPartitions()
        self.sender = BatchSender(self.app, self.partitions)
        self._partition_counts: dict[str, int] = {}
        self.processor = BatchProcessor(rules, clock=settings.clock, home_partition=self._home_partition)
        self.reading = ReadingTracker()
        self.aligner: Aligner[Message] = Aligner()
        self._held_generation: int | None = None
        self._input_topics = frozenset(settings.input_topics)
        self.cache = StateCache(self.states, settings.state_cache_size)
        self._recovered: dict[int, set[bytes]] = defaultdict(set)
        self._split: dict[bytes, dict[int, bytes | None]] = {}
        """Keys recovered from more than one changelog partition: the latest value from each."""
        self._snapshot_due: set[str] = set()
        self.processed = 0
        self.suppressed: Counter[str] = Counter()
        """Alerts held back since start, by reason (cooldown, consent, snoozed)."""
        self.busy_from: float | None = None
        """Wall time the first batch with input started, and the last one ended: the throughput span."""
        self.busy_until: float | None = None
        self.ready = False
        # A batch that fails stops the worker (exit 1) instead of restarting the agent in place:
        # the batch is withheld (see _agent) and read again by the next worker.
        self.app.agent(input_topic, name="clientpulse.process", supervisor_strategy=mode.CrashingSupervisor)(
            self._agent
        )
        self.app.timer(settings.tick_seconds, name="clientpulse.tick")(self._tick)
        self.app.timer(15.0, name="clientpulse.lag")(self._report_lag)
        if not self.shadow:
            self.app.timer(settings.snapshot_seconds, name="clientpulse.snapshots")(self._publish_snapshots)
        self.app.on_rebalance_complete.connect(self._on_rebalance_complete)
        self.app.on_partitions_revoked.connect(self._on_partitions_revoked)
        self._add_views()

    # ----------------------------------------------------------------- set-up
    def _create_app(self) -> InboxApp:
        s = self.settings
        brokers = [f"kafka://{b.strip()}" for b in s.kafka_bootstrap.split(",") if b.strip()]
        security = kafka_client.kafka_security(s).aiokafka_kwargs()
        probe = EndOffsetProbe(s.kafka_bootstrap, security) if s.end_offset_probe else None
        return InboxApp(
            s.worker_app_id,
            fetch_max_wait_ms=s.fetch_max_wait_ms,
            end_offset_probe=probe,
            broker=brokers,
            broker_credentials=kafka_client.faust_credentials(s),
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
            # Where a new group starts: live, at the start of every input; a shadow where it was told to
            # (CLIENTPULSE_SHADOW_START). A group with committed offsets goes on from them either way.
            consumer_auto_offset_reset=s.shadow_start if self.shadow else "earliest",
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

    def _home_partition(self, topic: str, key: bytes) -> int:
        return self.partitions.of(key, self._partition_counts[topic])

    async def _learn_partition_counts(self) -> None:
        for topic in self.settings.input_topics:
            if topic not in self._partition_counts:
                self._partition_counts[topic] = await self.sender.partition_count(topic)

    # ------------------------------------------------------------ recovery
    def _on_recovering_states(self, records: list[RecoveredRecord]) -> None:
        recovered, split = self._recovered, self._split
        for partition, key, value, previous, before in records:
            recovered[partition].add(key)
            if previous is not None and previous != partition:
                versions = split.setdefault(key, {})
                versions.setdefault(previous, before)
                versions[partition] = value
            elif key in split:
                split[key][partition] = value

    def _on_recovering_clocks(self, records: list[RecoveredRecord]) -> None:
        for partition, _key, value, _previous, _before in records:
            if value:
                self.processor.clocks[partition] = int(value)

    async def _on_partitions_revoked(self, *args: Any, **kwargs: Any) -> None:
        self.ready = False  # /readyz says 503 until the new assignment is recovered

    async def _on_rebalance_complete(self, *args: Any, **kwargs: Any) -> None:
        """Forget what was derived from the partitions this worker no longer owns."""
        self.processor.keep_partitions(self._assigned())
        self.reading.clear()
        self.aligner.clear()
        self.cache.clear()
        self._publish_tier_gauge()
        self.ready = True

    def _reading(self, inputs: Sequence[Message]) -> dict[int, set[str]]:
        """The input topics still being read on each partition (streams/worker/reading.py)."""
        topics = self._input_topics
        assigned = [(tp.topic, tp.partition) for tp in self.app.consumer.assignment() if tp.topic in topics]
        return self.reading.batch(inputs, assigned, self._highwater, time.monotonic())

    def _highwater(self, topic: str, partition: int) -> int | None:
        end = self.app.consumer.highwater(TP(topic, partition))
        return None if end is None else int(end)

    def _assigned(self) -> set[int]:
        return {tp.partition for tp in self.app.consumer.assignment() if tp.topic == self.settings.ticks_topic}

    def _after_recovery(self) -> None:
        """Index the states of each recovered partition (once per recovery)."""
        recovered, self._recovered = self._recovered, defaultdict(set)
        self.cache.clear()
        if self._split:
            self._settle_split_keys()
        for partition, keys in recovered.items():
            # A partition kept through a rebalance is recovered only from where its last recovery
            # stopped (the keys written since): add those to its index, keep its incremental counts.
            kept = partition in self.processor.tiers
            states = (state for key in keys if (state := self.cache.stored(key)) is not None)
            self.processor.recovered(partition, states, kept=kept)
        log.info("due index rebuilt for %d recovered partitions", len(recovered))
        self._publish_tier_gauge()

    def _settle_split_keys(self) -> None:
        """A client with state in two changelog partitions: keep its home partition's, and say so."""
        split, self._split = self._split, {}
        count = self.settings.partitions
        examples: list[str] = []
        for key, versions in split.items():
            home = self.partitions.of(key, count)
            value = versions.get(home)
            if value:
                self.states.put_raw(key, value, home)
            elif home in versions:
                self.states.delete_raw(key)
            if len(examples) < MAX_SPLIT_EXAMPLES:
                examples.append(f"{key.decode('utf-8', 'replace')} on {sorted(versions)} (home {home})")
        metrics.CHANGELOG_SPLIT_KEYS.inc(len(split))
        log.warning(
            "%d clients have state in more than one changelog partition (input once produced with a "
            "partitioner other than Kafka's default murmur2); kept the state of each one's home partition "
            "where recovered: %s",
            len(split),
            "; ".join(examples),
        )

    def _publish_tier_gauge(self) -> None:
        """clientpulse_clients{tier}: the clients of the partitions this worker owns."""
        for tier, n in self.processor.tier_totals().items():
            metrics.CLIENTS.labels(tier=tier).set(n)

    # ---------------------------------------------------------------- stream
    async def _agent(self, stream: Any) -> None:
        """Process the inbox's fetches in batches; the agent's stream only subscribes Faust to the topics."""
        app, inbox, batch_size = self.app, self.inbox, self.settings.batch_size
        while True:
            # Records held back wait for a topic behind; a quiet spell must still release them.
            messages = await inbox.take(app, batch_size, timeout=HELD_WAKE_SECONDS if self.aligner.count else None)
            try:
                processed = await self.process_batch(messages)
            except BaseException:
                withhold(messages)
                withhold(self.aligner.held())
                self.aligner.clear()
                raise
            ack_held(app, processed)

    async def process_batch(self, messages: Sequence[Message]) -> list[Message]:
        """Process a batch; the messages processed (an event-time worker may hold some back for a later batch,
        or process some a batch before held back)."""
        try:
            return await self._process_batch(messages)
        except BaseException:
            # Cached states may hold changes that never reached the changelog.
            self.cache.clear()
            raise

    async def _process_batch(self, messages: Sequence[Message]) -> list[Message]:
        started = time.perf_counter()
        started_at = time.time()
        if self._recovered or self._split:
            self._after_recovery()
        await self._learn_partition_counts()
        ticks_topic = self.settings.ticks_topic
        ticks: dict[int, int] = {}
        inputs: list[Message] = []
        for msg in messages:
            if msg.topic == ticks_topic:
                ticks[msg.partition] = max(ticks.get(msg.partition, 0), _tick_time(msg.value))
            else:
                inputs.append(msg)
        received_at = datetime.now(UTC)
        processed = list(messages)
        reading = None
        if self.settings.clock == "event":
            reading = self._reading(inputs)
            generation = self.app.consumer_generation_id
            if self._held_generation != generation:  # held records of an older assignment are read again
                self.aligner.clear()
                self._held_generation = generation
            fresh = inputs
            inputs = self.aligner.release(fresh, reading)
            released = {id(msg) for msg in inputs}
            hold(msg for msg in fresh if id(msg) not in released)  # those held before are marked already
            processed = [msg for msg in messages if msg.topic == ticks_topic] + inputs
        result = self.processor.process(
            inputs, self.cache.load, wall_now=to_us(received_at), received_at=received_at, ticks=ticks, reading=reading
        )
        lag_now = time.time()
        metrics.observe_all(metrics.EVENT_LAG_SECONDS, (max(0.0, lag_now - t / 1e6) for t in result.event_times))
        await self._checkpoint(result)
        self._count(result)
        consumed = len(inputs)
        if consumed:
            self.processed += consumed
            if self.busy_from is None:
                self.busy_from = started_at
            self.busy_until = time.time()
        metrics.BATCH_SIZE.observe(len(messages))
        metrics.PROCESSING_SECONDS.observe(time.perf_counter() - started)
        return processed

    async def _checkpoint(self, result: BatchResult) -> None:
        """The batch's outcomes, in the order that makes a crash at any point lose nothing.

        1. alerts, dead letters and snapshot tombstones, acknowledged by the broker;
        2. the changelog: each touched client's state, each erasure, each moved clock;
        3. (the caller acks the messages; Faust flushes the producer before committing their offsets).

        A shadow publishes only its alerts, to its own topic: the live workers write the dead letters
        and tombstones of the same input (the shadow counts its rejections in its metrics).
        """
        s = self.settings
        alerts = [(a.client_id.encode(), alert_json(a)) for a in result.alerts]
        futures = await self.sender.send_keyed(s.worker_alerts_topic, alerts)
        if not self.shadow:
            letters = [(key, letter.model_dump_json().encode()) for key, letter in result.dead_letters]
            erased = [(client_id.encode(), None) for client_id in result.erased]
            futures += await self.sender.send_keyed(s.deadletter_topic, letters)
            futures += await self.sender.send_keyed(s.snapshots_topic, erased)
        if futures:
            await asyncio.gather(*futures)

        states = self.states
        cache = self.cache
        snapshots = not self.shadow
        changelog: dict[int, list[tuple[bytes | None, bytes | None]]] = defaultdict(list)
        for client_id, partition in result.erased.items():
            key = client_id.encode()
            states.delete_raw(key)
            cache.forget(client_id)
            self._snapshot_due.discard(client_id)
            changelog[partition].append((key, None))
        for client_id, entry in result.touched.items():
            key = client_id.encode()
            value = entry.state.to_bytes()
            states.put_raw(key, value, entry.partition)
            cache.keep(entry.state)
            changelog[entry.partition].append((key, value))
            if snapshots:
                self._snapshot_due.add(client_id)
        cache.trim()
        await self.sender.send_batches(states.changelog_name(), changelog)
        if result.clocks_moved:
            clocks: dict[int, list[tuple[bytes | None, bytes | None]]] = {}
            for partition in result.clocks_moved:
                key, value = str(partition).encode(), str(self.processor.clocks[partition]).encode()
                self.clock_table.put_raw(key, value, partition)
                clocks[partition] = [(key, value)]
            await self.sender.send_batches(self.clock_table.changelog_name(), clocks)

    def _count(self, result: BatchResult) -> None:
        """One labelled metric update per series of the batch, not per event."""
        counts = result.counts
        for topic, n in counts.consumed.items():
            metrics.EVENTS_CONSUMED.labels(topic=topic).inc(n)
        for (topic, reason), n in counts.rejected.items():
            metrics.EVENTS_REJECTED.labels(topic=topic, reason=reason).inc(n)
            if reason == "wrong_partition":
                _warn_misplaced(topic, n)
        for topic, n in counts.duplicates.items():
            metrics.EVENTS_DUPLICATE.labels(topic=topic).inc(n)
        for (alert_type, severity), n in counts.alerts.items():
            metrics.ALERTS_EMITTED.labels(type=alert_type, severity=severity).inc(n)
        for (alert_type, reason), n in counts.suppressed.items():
            metrics.ALERTS_SUPPRESSED.labels(type=alert_type, reason=reason).inc(n)
            self.suppressed[reason] += n
        if counts.erased:
            metrics.CLIENTS_ERASED.inc(counts.erased)
        if counts.sweeps:
            metrics.CLOCK_SWEEPS.inc(counts.sweeps)
        metrics.STATE_WRITES.inc(len(result.touched) + len(result.erased))
        self.processor.settle(result)
        self._publish_tier_gauge()

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
        totals = self.processor.tier_totals()
        return {
            "ready": self.ready,
            "mode": "shadow" if self.shadow else "live",
            "app_id": self.settings.worker_app_id,
            "alerts_topic": self.settings.worker_alerts_topic,
            "processed": self.processed,
            "suppressed": dict(self.suppressed),
            "busy_from": self.busy_from,
            "busy_until": self.busy_until,
            "recovery": self._recovery_status(),
            "partitions": sorted(self._assigned()),
            "clients_by_tier": {tier: totals[tier] for tier in TIERS if totals[tier]},
            "due_index": {str(p): len(i) for p, i in self.processor.indexes.items()},
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
        """Send a clock tick to every partition this worker owns; the agent sweeps on receipt."""
        if not self.ready:
            return
        ticks = {partition: [(b"tick", b"{}")] for partition in self._assigned()}
        await self.sender.send_batches(self.settings.ticks_topic, ticks)

    async def _publish_snapshots(self) -> None:
        """At most one snapshot per client per interval, whatever its event rate."""
        due, self._snapshot_due = list(self._snapshot_due), set()
        for start in range(0, len(due), SNAPSHOT_CHUNK):
            records: list[tuple[bytes | None, bytes | None]] = []
            for client_id in due[start : start + SNAPSHOT_CHUNK]:
                state = self.cache.peek(client_id)
                if state is not None:
                    records.append((client_id.encode(), json_bytes(state.snapshot())))
            await self.sender.send_keyed(self.settings.snapshots_topic, records)
            await asyncio.sleep(0)  # let batches run between chunks: snapshots must not add latency

    async def _report_lag(self) -> None:
        """Set clientpulse_consumer_lag_messages for every input partition this worker owns.

        Lag = log end offset - the offset this worker committed. The end offset is the
        larger of the high watermark of the last fetch and a ListOffsets answer: the first
        goes stale while a partition is paused, the second is wrong on some Kafka-compatible
        brokers. Before this worker's first commit in the current generation the consumer's
        position (where the group's committed offset left it) stands in. A failure skips
        one report and never stops the worker.
        """
        consumer = self.app.consumer
        inputs = set(self.settings.input_topics)
        lags: dict[tuple[str, int], int] = {}
        try:
            tps: list[TP] = sorted(tp for tp in consumer.assignment() if tp.topic in inputs)
            listed = await consumer.highwaters(*tps) if tps else {}
            for tp in tps:
                ends = [o for o in (consumer.highwater(tp), listed.get(tp)) if o is not None]
                consumed = committed_offset(self.app, tp)
                if consumed is None:
                    consumed = await asyncio.wait_for(consumer.position(tp), timeout=5.0)
                if ends and consumed is not None:
                    lags[(tp.topic, tp.partition)] = max(0, max(ends) - consumed)
        except Exception as exc:  # a metric must never take the worker down; the next timer run retries
            log.warning("consumer lag not reported: %r", exc)
            return
        metrics.report_consumer_lag(lags)


_MISPLACED_WARNING_SECONDS = 60.0
_last_misplaced_warning: dict[str, float] = {}


def _warn_misplaced(topic: str, n: int) -> None:
    """At most one warning a minute per topic: a misconfigured producer would otherwise flood the log."""
    now = time.monotonic()
    if now - _last_misplaced_warning.get(topic, -_MISPLACED_WARNING_SECONDS) >= _MISPLACED_WARNING_SECONDS:
        _last_misplaced_warning[topic] = now
        log.warning(
            "%d records on %s are not on the partition Kafka's default partitioner gives their key: dead-lettered "
            "as wrong_partition; the producer must use murmur2 (librdkafka, confluent-kafka, kcat: "
            "partitioner=murmur2_random)",
            n,
            topic,
        )


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

"""The notifier: Faust wiring around the decisions of `handlers.notify`.

One agent takes two topics in batches of whole fetches (streams/faust_ext/inbox.py):

- `rm.alerts.v1` (keyed by client): each valid alert is re-keyed by its RM (or
  `unassigned`) onto `<app id>.alerts-by-rm.v1`, so one RM's alerts meet on one
  partition whatever partition their clients are on;
- `<app id>.alerts-by-rm.v1`: alerts keyed by RM, and clock ticks (no key)
  that this notifier's timer sends to the partitions it owns. Each partition is
  one ordered log of an RM's alerts and the clock, so the decisions are a
  function of it.

Each batch ends with the same ordered checkpoint as the worker's:

1. publish the re-keyed alerts, the pushes (rm.notifications.v1), the digests
   (rm.digests.v1) and dead letters, and wait until the broker acknowledged them;
2. write each touched RM's state once to the table and its changelog, and each
   moved partition clock;
3. ack the batch's messages: Faust flushes the producer, then commits their offsets.

A crash before 3 replays the batch from the state before it: the same alerts
and ticks in the same order give the same pushes and digests, published again
with the same content (at least once; `clientpulse deliver` sends each with its
idempotency key). Alerts re-keyed twice are re-deliveries, ignored by the state.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import defaultdict
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import mode
from faust.types import Message
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from handlers.decode import Rejection, dead_letter
from handlers.jsonbytes import dumps as json_bytes
from handlers.notify import (
    Input,
    NotifyProcessor,
    NotifyResult,
    Push,
    Rejected,
    RmState,
    decode_alert,
    decode_tick,
    encode_output,
    rm_key,
)
from handlers.ruleset import Ruleset
from handlers.timeutil import iso, wall_us
from streams import kafka_client, metrics
from streams.faust_ext.inbox import Inbox, InboxApp, withhold
from streams.faust_ext.producer import BatchSender
from streams.faust_ext.recovery import EndOffsetProbe
from streams.faust_ext.tables import RecoveredRecord, worker_table
from streams.settings import Settings
from streams.worker.partitioning import KeyPartitions

log = logging.getLogger("clientpulse.notifier")

STATE_TABLE = "rm-state"
CLOCK_TABLE = "partition-clock"

Record = tuple[bytes | None, bytes | None]


class NotifierPipeline:
    """The Faust app of `clientpulse notifier`: its topics, tables, agent, timer and web pages."""

    def __init__(self, settings: Settings, rules: Ruleset) -> None:
        self.settings = settings
        self.rules = rules
        self.app = self._create_app()
        topics = (settings.alerts_topic, settings.alerts_by_rm_topic)
        self.inbox = Inbox(topics, self.app.flow_control)
        self.app.inbox = self.inbox
        source = self.app.topic(*topics, key_type=bytes, value_type=bytes, key_serializer="raw", value_serializer="raw")
        self.states = worker_table(self.app, STATE_TABLE, settings.partitions, "Per-RM notification state")
        self.clock_table = worker_table(self.app, CLOCK_TABLE, settings.partitions, "Per-partition notifier clock")
        self.states.on_recovering = self._on_recovering_states
        self.clock_table.on_recovering = self._on_recovering_clocks
        self.sender = BatchSender(self.app, KeyPartitions())
        self.processor = NotifyProcessor(rules, clock=settings.clock)
        self._recovered: dict[int, set[bytes]] = defaultdict(set)
        self.rekeyed = 0
        self.decided = 0
        self.duplicates = 0
        self.stale = 0
        self.pushed = 0
        self.digests = 0
        self.busy_from: float | None = None
        self.busy_until: float | None = None
        self.ready = False
        self.app.agent(source, name="clientpulse.notify", supervisor_strategy=mode.CrashingSupervisor)(self._agent)
        if settings.clock == "wall":
            self.app.timer(settings.tick_seconds, name="clientpulse.notify-tick")(self._tick)
        self.app.on_rebalance_complete.connect(self._on_rebalance_complete)
        self.app.on_partitions_revoked.connect(self._on_partitions_revoked)
        self._add_views()

    def _create_app(self) -> InboxApp:
        # The worker's Faust options (streams/worker/pipeline.py, where each is explained), under the
        # notifier's own application id: its consumer group and changelogs are its own.
        s = self.settings
        brokers = [f"kafka://{b.strip()}" for b in s.kafka_bootstrap.split(",") if b.strip()]
        security = kafka_client.kafka_security(s).aiokafka_kwargs()
        probe = EndOffsetProbe(s.kafka_bootstrap, security) if s.end_offset_probe else None
        return InboxApp(
            s.notifier_app_id,
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
            processing_guarantee="at_least_once",
            producer_acks=-1,
            broker_commit_interval=1.0,
            broker_commit_every=10_000,
            stream_wait_empty=True,
            consumer_auto_offset_reset="earliest",
            producer_linger_ms=1,
            # A digest lists every alert held for the RM: room for about 5,000 in one record.
            producer_max_batch_size=1024 * 1024,
            producer_max_request_size=1024 * 1024,
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

    # ------------------------------------------------------------ recovery
    def _on_recovering_states(self, records: list[RecoveredRecord]) -> None:
        for partition, key, _value, _previous, _before in records:
            self._recovered[partition].add(key)

    def _on_recovering_clocks(self, records: list[RecoveredRecord]) -> None:
        for partition, _key, value, _previous, _before in records:
            if value:
                self.processor.clocks[partition] = int(value)

    async def _on_partitions_revoked(self, *args: Any, **kwargs: Any) -> None:
        self.ready = False

    async def _on_rebalance_complete(self, *args: Any, **kwargs: Any) -> None:
        self.processor.keep_partitions(self._assigned())
        metrics.NOTIFICATIONS_WAITING.set(self.processor.held_total())
        self.ready = True

    def _assigned(self) -> set[int]:
        return {tp.partition for tp in self.app.consumer.assignment() if tp.topic == self.settings.alerts_by_rm_topic}

    def _after_recovery(self) -> None:
        recovered, self._recovered = self._recovered, defaultdict(set)
        for partition, keys in recovered.items():
            kept = partition in self.processor.indexes
            states = (state for key in keys if (state := self.load(key.decode())) is not None)
            self.processor.recovered(partition, states, kept=kept)
        metrics.NOTIFICATIONS_WAITING.set(self.processor.held_total())
        log.info("digest index rebuilt for %d recovered partitions", len(recovered))

    def load(self, key: str) -> RmState | None:
        raw = self.states.get_raw(key.encode())
        return RmState.from_bytes(raw) if raw else None

    # ---------------------------------------------------------------- stream
    async def _agent(self, stream: Any) -> None:
        app, inbox, batch_size = self.app, self.inbox, self.settings.batch_size
        while True:
            messages = await inbox.take(app, batch_size)
            try:
                await self.process_batch(messages)
            except BaseException:
                withhold(messages)
                raise
            inbox.ack(app, messages)

    async def process_batch(self, messages: Sequence[Message]) -> None:
        started = time.perf_counter()
        started_at = time.time()
        if self._recovered:
            self._after_recovery()
        s = self.settings
        received_at = datetime.now(UTC)
        forwards: list[Record] = []
        letters: list[Record] = []
        inputs: list[Input] = []
        sources: list[Message] = []
        for msg in messages:
            if msg.topic == s.alerts_topic:
                decoded = decode_alert(msg.value)
                if isinstance(decoded, Rejected):
                    letters.append(self._letter(msg, decoded, received_at))
                else:
                    forwards.append((rm_key(decoded.rm_id).encode(), msg.value))
            elif msg.key is None:
                inputs.append(Input(msg.partition, None, decode_tick(msg.value)))
                sources.append(msg)
            else:
                key = msg.key.decode("utf-8", "replace")
                inputs.append(Input(msg.partition, key, decode_alert(msg.value)))
                sources.append(msg)
        result = self.processor.process(inputs, self.load)
        for index, rejected in result.rejected:
            letters.append(self._letter(sources[index], rejected, received_at))
        await self._checkpoint(result, forwards, letters)
        self._count(result, len(forwards), letters)
        if inputs or forwards:
            if self.busy_from is None:
                self.busy_from = started_at
            self.busy_until = time.time()
        metrics.NOTIFIER_BATCH_SECONDS.observe(time.perf_counter() - started)

    def _letter(self, msg: Message, rejected: Rejected, received_at: datetime) -> Record:
        metrics.EVENTS_REJECTED.labels(topic=msg.topic, reason=rejected.reason).inc()
        rejection = Rejection(rejected.reason, rejected.error)
        letter = dead_letter(msg.topic, msg.partition, msg.offset, msg.key, msg.value, rejection, received_at)
        return msg.key, letter.model_dump_json().encode()

    async def _checkpoint(self, result: NotifyResult, forwards: list[Record], letters: list[Record]) -> None:
        s = self.settings
        pushes: list[Record] = []
        digests: list[Record] = []
        for _index, output in result.outputs:
            (pushes if isinstance(output, Push) else digests).append(encode_output(output))
        futures = await self.sender.send_keyed(s.alerts_by_rm_topic, forwards)
        futures += await self.sender.send_keyed(s.notifications_topic, pushes)
        futures += await self.sender.send_keyed(s.digests_topic, digests)
        futures += await self.sender.send_keyed(s.deadletter_topic, letters)
        if futures:
            await asyncio.gather(*futures)

        changelog: dict[int, list[Record]] = defaultdict(list)
        for key, entry in result.touched.items():
            raw_key, value = key.encode(), entry.state.to_bytes()
            self.states.put_raw(raw_key, value, entry.partition)
            changelog[entry.partition].append((raw_key, value))
        await self.sender.send_batches(self.states.changelog_name(), changelog)
        if result.clocks_moved:
            clocks: dict[int, list[Record]] = {}
            for partition in result.clocks_moved:
                clock_key, clock = str(partition).encode(), str(self.processor.clocks[partition]).encode()
                self.clock_table.put_raw(clock_key, clock, partition)
                clocks[partition] = [(clock_key, clock)]
            await self.sender.send_batches(self.clock_table.changelog_name(), clocks)
        self.processor.settle(result)

    def _count(self, result: NotifyResult, rekeyed: int, letters: list[Record]) -> None:
        counts = result.counts
        if rekeyed:
            metrics.NOTIFIER_REKEYED.inc(rekeyed)
            self.rekeyed += rekeyed
        for reason, n in counts.pushed.items():
            metrics.NOTIFICATIONS_PUSHED.labels(reason=reason).inc(n)
            self.pushed += n
        for reason, n in counts.held.items():
            metrics.NOTIFICATIONS_HELD.labels(reason=reason).inc(n)
        for reason, n in counts.digests.items():
            metrics.DIGESTS_SENT.labels(reason=reason).inc(n)
            self.digests += n
        if counts.digested:
            metrics.DIGESTED_ALERTS.inc(counts.digested)
        if counts.duplicates:
            metrics.NOTIFICATIONS_DUPLICATE.inc(counts.duplicates)
        if counts.stale:
            metrics.NOTIFICATIONS_STALE.inc(counts.stale)
        self.decided += counts.alerts - counts.duplicates - counts.stale
        self.duplicates += counts.duplicates
        self.stale += counts.stale
        metrics.NOTIFICATIONS_WAITING.set(self.processor.held_total())

    # ----------------------------------------------------------------- timers
    async def _tick(self) -> None:
        """Send the wall clock to every input partition this notifier owns; the agent sends due digests."""
        if not self.ready:
            return
        value = json_bytes({"now": iso(wall_us())})
        ticks: dict[int, list[Record]] = {partition: [(None, value)] for partition in self._assigned()}
        await self.sender.send_batches(self.settings.alerts_by_rm_topic, ticks)

    # ------------------------------------------------------------------ web
    def _add_views(self) -> None:
        app = self.app

        async def metrics_view(web: Any, request: Any) -> Any:
            return web.bytes(generate_latest(), content_type=CONTENT_TYPE_LATEST.split(";")[0])

        async def healthz(web: Any, request: Any) -> Any:
            return web.json({"status": "ok"})

        async def readyz(web: Any, request: Any) -> Any:
            return web.json({"ready": self.ready}, status=200 if self.ready else 503)

        async def status_view(web: Any, request: Any) -> Any:
            return web.json(self.status())

        app.page("/metrics")(metrics_view)
        app.page("/healthz")(healthz)
        app.page("/readyz")(readyz)
        app.page("/status")(status_view)

    def status(self) -> dict[str, Any]:
        """Counts for operators, the demo and the bench (no client data)."""
        return {
            "ready": self.ready,
            "rekeyed": self.rekeyed,
            "decided": self.decided,
            "duplicates": self.duplicates,
            "stale": self.stale,
            "pushed": self.pushed,
            "digests": self.digests,
            "waiting": self.processor.held_total(),
            "busy_from": self.busy_from,
            "busy_until": self.busy_until,
            "partitions": sorted(self._assigned()),
            "clock": self.settings.clock,
            "rule_version": self.rules.rule_version,
        }

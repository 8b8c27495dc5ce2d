"""The alert sink: rm.alerts.v1 and the client snapshots into PostgreSQL, then the RM API in the same process.

Offsets are committed only after the batch is in the database. While the
database is down the same batch is retried with backoff and nothing further
is consumed, so an outage delays alerts but never loses one.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import time
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime
from typing import Any, TypeVar

from aiohttp import web
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition  # type: ignore[import-untyped]
from aiokafka.errors import KafkaError  # type: ignore[import-untyped]
from pydantic import BaseModel, ValidationError

from handlers.decode import Rejection, dead_letter
from handlers.ruleset import Ruleset, load_rules
from schemas.alerts import Alert
from schemas.errors import error_texts
from schemas.limits import MAX_MESSAGE_BYTES
from schemas.snapshot import ClientSnapshot
from streams import __version__, metrics
from streams.api.app import create_api
from streams.api.auth import Principals
from streams.api.identity import Teams
from streams.api.oidc import OidcClient, OidcConfig
from streams.api.reload import ConfigFiles, read_teams, read_token_entries
from streams.api.server import ApiRunner
from streams.kafka_client import client_kwargs
from streams.settings import ENV_NAMES, ConfigError, Settings
from streams.sink.controls import ControlPublisher
from streams.sink.escalation import Escalator, managers_by_rm
from streams.sink.store import AlertStore, MigrationError
from streams.topics import ensure_topics

log = logging.getLogger("clientpulse.sink")

T = TypeVar("T")
M = TypeVar("M", bound=BaseModel)

BACKOFF_INITIAL = 0.1
IDLE_CHECK_SECONDS = 5.0
"""With no traffic, check the database this often so the health report stays true."""


class _Stopping(Exception):
    """Raised out of a retry loop when the sink is asked to stop: the batch stays uncommitted."""


def _has_nul(value: Any) -> bool:
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, Mapping):
        return any(_has_nul(k) or _has_nul(v) for k, v in value.items())
    if isinstance(value, list | tuple):
        return any(_has_nul(v) for v in value)
    return False


def parse_message(model: type[M], raw: bytes | None) -> M | Rejection:
    """A stored-to-be message, or why it becomes a dead letter (PostgreSQL text cannot hold NUL)."""
    if not raw:
        return Rejection("empty", "message has no value")
    if len(raw) > MAX_MESSAGE_BYTES:
        return Rejection("too_large", f"message is {len(raw)} bytes, the limit is {MAX_MESSAGE_BYTES}")
    try:
        parsed = model.model_validate_json(raw)
    except ValidationError as exc:
        if any(e["type"] == "json_invalid" for e in exc.errors(include_url=False, include_input=False)):
            return Rejection("invalid_json", "not valid JSON")
        return Rejection("schema", "; ".join(error_texts(exc, limit=3)))
    if _has_nul(parsed.model_dump(mode="json")):
        return Rejection("schema", "a text field contains a NUL character")
    return parsed


class AlertSink:
    """Consumes alerts and snapshots (group `<app_id>-sink`) and stores them; `status()` is its health."""

    def __init__(
        self,
        settings: Settings,
        store: AlertStore,
        *,
        backoff_initial: float = BACKOFF_INITIAL,
        rules: Ruleset | None = None,
        escalator: Escalator | None = None,
    ) -> None:
        self.settings = settings
        self.store = store
        self.rules = rules if rules is not None else load_rules(settings.rules_path)
        """Its priority tables give alerts of workers older than the priority field theirs."""
        self.escalator = escalator
        self.backoff_initial = backoff_initial
        self.backoff_max = settings.sink_backoff_max
        self.group_id = f"{settings.app_id}-sink"
        self.healthy = False
        self.failed = False
        self.consuming = False
        self.last_error: str | None = None
        self.down_since: float | None = None
        self.alerts_written = 0
        self.alerts_new = 0
        self.snapshots_written = 0
        self.dead_letters = 0
        self._last_db_ok = 0.0
        self._stopping = asyncio.Event()

    def status(self) -> dict[str, Any]:
        return {
            "healthy": self.healthy,
            "failed": self.failed,
            "consuming": self.consuming,
            "last_error": self.last_error,
            "down_for_seconds": round(time.monotonic() - self.down_since, 1) if self.down_since else None,
            "alerts_written": self.alerts_written,
            "alerts_new": self.alerts_new,
            "snapshots_written": self.snapshots_written,
            "dead_letters": self.dead_letters,
        }

    def stop(self) -> None:
        self._stopping.set()

    # ------------------------------------------------------------------ health
    def _db_up(self) -> None:
        if not self.healthy:
            log.info("alert store reachable again" if self.down_since else "alert store connected")
        self.healthy = True
        self.down_since = None
        self.last_error = None
        self._last_db_ok = time.monotonic()
        metrics.STORE_UP.set(1)

    def _db_down(self, what: str, exc: BaseException) -> None:
        if self.healthy or self.down_since is None:
            self.down_since = time.monotonic()
        self.healthy = False
        self.last_error = f"{what}: {type(exc).__name__}: {exc}"[:500]
        metrics.STORE_UP.set(0)

    async def _sleep(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), seconds)
        if self._stopping.is_set():
            raise _Stopping

    async def _retry(self, what: str, op: Callable[[], Awaitable[T]], *, database: bool) -> T:
        """Run `op` until it succeeds, backing off exponentially; only a stop request ends it otherwise."""
        delay = self.backoff_initial
        while True:
            if self._stopping.is_set():
                raise _Stopping
            try:
                result = await op()
            except (asyncio.CancelledError, MigrationError):
                raise
            except Exception as exc:
                if database:
                    metrics.STORE_FAILURES.inc()
                    self._db_down(what, exc)
                log.warning("%s failed (%s: %s); retrying in %.1fs", what, type(exc).__name__, exc, delay)
                await self._sleep(delay)
                delay = min(delay * 2, self.backoff_max)
                continue
            if database:
                self._db_up()
            return result

    async def _connect(self) -> None:
        async def connect() -> None:
            await self.store.connect()
            applied = await self.store.migrate()
            if applied:
                log.info("schema migrations applied: %s", ", ".join(applied))
            filled = await self.store.fill_due_by()
            if filled:
                log.info("due_by given to %d alert(s) stored before SLAs existed", filled)

        await self._retry("connecting to the alert store", connect, database=True)

    # ------------------------------------------------------------------ the loop
    async def run(self) -> None:
        """Until stop(): connect (retrying), then consume, store, commit. Raises only on a fatal error."""
        try:
            await self._connect()
            consumer = AIOKafkaConsumer(
                self.settings.alerts_topic,
                self.settings.snapshots_topic,
                **client_kwargs(self.settings),
                group_id=self.group_id,
                client_id=self.group_id,
                enable_auto_commit=False,
                auto_offset_reset="earliest",
                session_timeout_ms=int(self.settings.session_timeout * 1000),
                heartbeat_interval_ms=int(min(3000, max(500, self.settings.session_timeout * 1000 / 6))),
                max_poll_records=self.settings.sink_batch_size,
            )
            producer = AIOKafkaProducer(**client_kwargs(self.settings), acks="all")
            await consumer.start()
            try:
                await producer.start()
                escalating = (
                    asyncio.create_task(self.escalator.run(producer, self._stopping))
                    if self.escalator is not None
                    else None
                )
                try:
                    self.consuming = True
                    await self._consume(consumer, producer)
                finally:
                    self.consuming = False
                    if escalating is not None:
                        escalating.cancel()
                        with contextlib.suppress(asyncio.CancelledError):
                            await escalating
                    await producer.stop()
            finally:
                await consumer.stop()
        except _Stopping:
            log.info("sink stopping; the batch in hand (if any) stays uncommitted and will be read again")
        except asyncio.CancelledError:
            raise
        except BaseException:
            self.failed = True
            raise

    async def _consume(self, consumer: AIOKafkaConsumer, producer: AIOKafkaProducer) -> None:
        while not self._stopping.is_set():
            batch: dict[TopicPartition, list[ConsumerRecord]] = await consumer.getmany(
                timeout_ms=500, max_records=self.settings.sink_batch_size
            )
            if not batch:
                await self._idle_check()
                continue
            offsets = await self._handle(batch, producer)
            try:
                await consumer.commit(offsets)
            except KafkaError as exc:
                # Typically a rebalance: the records come again and are stored once (ON CONFLICT).
                log.warning("offset commit failed (%s); the batch may be re-read, which is harmless", exc)

    async def _idle_check(self) -> None:
        if time.monotonic() - self._last_db_ok < IDLE_CHECK_SECONDS and self.healthy:
            return
        if await self.store.ping(timeout=2.0):
            self._db_up()
        else:
            self._db_down("health check", ConnectionError("database did not answer"))

    async def _handle(
        self, batch: dict[TopicPartition, list[ConsumerRecord]], producer: AIOKafkaProducer
    ) -> dict[TopicPartition, int]:
        """Store one fetched batch and dead-letter what cannot be stored; return the offsets to commit."""
        alerts: list[Alert] = []
        snapshots: list[ClientSnapshot | str] = []
        """Snapshots to store, and the ids of clients erased (a tombstone), in topic order."""
        letters: list[tuple[bytes | None, bytes]] = []
        offsets: dict[TopicPartition, int] = {}
        now = datetime.now(UTC)
        for tp, records in batch.items():
            is_alerts = tp.topic == self.settings.alerts_topic
            for record in records:
                offsets[tp] = record.offset + 1
                if not is_alerts and record.value is None:
                    # The worker erased the client (a tombstone on the clients topic): its row goes too.
                    if record.key:
                        snapshots.append(record.key.decode("utf-8", errors="replace"))
                    continue
                parsed = parse_message(Alert if is_alerts else ClientSnapshot, record.value)
                if isinstance(parsed, Alert):
                    if parsed.priority is None:
                        parsed = parsed.model_copy(
                            update={"priority": self.rules.priorities[(parsed.type, parsed.severity, parsed.tier)]}
                        )
                    alerts.append(parsed)
                elif isinstance(parsed, ClientSnapshot):
                    snapshots.append(parsed)
                elif isinstance(parsed, Rejection):
                    metrics.EVENTS_REJECTED.labels(topic=tp.topic, reason=parsed.reason).inc()
                    letter = dead_letter(
                        tp.topic, tp.partition, record.offset, record.key, record.value, parsed, now, record.headers
                    )
                    letters.append((record.key, letter.model_dump_json().encode()))

        async def write() -> int:
            started = time.perf_counter()
            new = await self.store.insert_alerts(alerts)
            written = await self.store.upsert_snapshots(snapshots)
            metrics.STORE_WRITE_SECONDS.observe(time.perf_counter() - started)
            self.snapshots_written += written
            return new

        if alerts or snapshots:
            new = await self._retry("writing to the alert store", write, database=True)
            metrics.STORE_WRITES.inc(len(alerts))
            metrics.STORE_NEW.inc(new)
            self.alerts_written += len(alerts)
            self.alerts_new += new
        if letters:
            await self._retry("sending dead letters", lambda: self._send_letters(producer, letters), database=False)
            self.dead_letters += len(letters)
        return offsets

    async def _send_letters(self, producer: AIOKafkaProducer, letters: list[tuple[bytes | None, bytes]]) -> None:
        futures = [await producer.send(self.settings.deadletter_topic, value, key=key) for key, value in letters]
        await asyncio.gather(*futures)


# ---------------------------------------------------------------------- process entry point
def load_principals(settings: Settings) -> Principals:
    """Tokens from CLIENTPULSE_API_TOKENS_FILE and/or CLIENTPULSE_API_TOKENS; bad config stops the start."""
    entries = read_token_entries(settings)
    principals = Principals(entries)
    if not entries and not settings.oidc_issuer:
        log.warning(
            "no API tokens configured (%s / %s) and no single sign-on (%s): every /api request will be refused",
            ENV_NAMES["api_tokens_file"],
            ENV_NAMES["api_tokens"],
            ENV_NAMES["oidc_issuer"],
        )
    if principals.without_fingerprint:
        log.warning(
            "%d API token hash(es) have no fingerprint: every unknown token is checked against them with scrypt; "
            "re-hash those tokens with `clientpulse token`",
            principals.without_fingerprint,
        )
    return principals


async def serve(settings: Settings, principals: Principals | None, with_api: bool, rules: Ruleset | None = None) -> int:
    """Sink plus HTTP (the RM API, or with_api=False only health and metrics) until SIGTERM/SIGINT."""
    if not settings.database_url:
        raise ConfigError(f"clientpulse: {ENV_NAMES['database_url']} must be set for the sink")
    oidc_config = OidcConfig.from_settings(settings) if with_api else None
    teams = Teams(read_teams(settings))
    await ensure_topics(settings)
    store = AlertStore(settings.database_url, rules=rules)
    known = principals or Principals([])
    escalator = Escalator(settings, store, lambda: managers_by_rm(known.all(), teams.teams))
    sink = AlertSink(settings, store, rules=rules, escalator=escalator)
    metrics.STORE_UP.set(0)
    oidc = OidcClient(oidc_config) if oidc_config is not None else None
    controls = ControlPublisher(settings, store) if with_api else None
    if controls is not None:
        await controls.start()
    app = create_api(
        store,
        principals,
        settings=settings,
        teams=teams,
        oidc=oidc,
        sink_status=sink.status,
        with_rm_api=with_api,
        controls=controls,
    )
    runner = ApiRunner(app, header_timeout=settings.api_header_timeout)
    await runner.setup()
    site = web.TCPSite(runner, settings.api_host, settings.api_port)
    await site.start()
    files = ConfigFiles(settings, known, teams)
    if with_api:
        files.start()
    log.info(
        "sink %s: %s -> PostgreSQL; HTTP on %s:%d (%s)",
        sink.group_id,
        settings.alerts_topic,
        settings.api_host,
        settings.api_port,
        "RM API, health, metrics" if with_api else "health and metrics only",
    )
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, sink.stop)
    try:
        await sink.run()
    except MigrationError as exc:
        log.error("cannot migrate the alert store: %s", exc)
        return 1
    except Exception:
        log.exception("sink failed")
        return 1
    finally:
        await files.stop()
        await runner.cleanup()
        if controls is not None:
            await controls.stop()
        if oidc is not None:
            await oidc.close()
        await store.close()
    log.info("sink stopped")
    return 0


def run_sink(settings: Settings, rules: Ruleset, with_api: bool) -> int:
    principals = load_principals(settings) if with_api else None
    if not settings.database_url:
        raise ConfigError(f"clientpulse: {ENV_NAMES['database_url']} must be set for the sink")
    if with_api:
        OidcConfig.from_settings(settings)  # a bad single sign-on setting stops the start here, naming it
        read_teams(settings)
    metrics.BUILD_INFO.labels(version=__version__, rule_version=rules.rule_version).set(1)
    return asyncio.run(serve(settings, principals, with_api, rules))

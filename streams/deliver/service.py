"""`clientpulse deliver`: rm.notifications.v1 and rm.digests.v1 to the bank's messaging, at least once.

Each record goes to the endpoints its RM is routed to (one URL, or a routes
file). An attempt that times out, cannot connect, or is answered 5xx, 408 or
429 (or a robot's rate-limit errcode) is retried with a doubling wait
(`Retry-After` honoured); after `CLIENTPULSE_DELIVER_ATTEMPTS` attempts, or at
once for a refusal (another 4xx, a robot's other errcodes), the record becomes
a dead letter with the last answer. Offsets are committed only when every
record of a batch is delivered or dead-lettered, so a crash sends again what
was in hand: each request carries the record's idempotency key (the alert or
digest id). One RM's records go out in order; different RMs' in parallel.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import time
from collections import OrderedDict, defaultdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import aiohttp
import orjson
import yaml
from aiohttp import web
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition  # type: ignore[import-untyped]
from aiokafka.errors import KafkaError  # type: ignore[import-untyped]
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import ValidationError

from handlers import delivery
from handlers.decode import Rejection, dead_letter
from handlers.delivery import Answer, Endpoint, Router
from handlers.notify import UNASSIGNED
from handlers.ruleset import Ruleset
from schemas.delivery import RoutesFile, Target
from schemas.errors import error_texts
from streams import __version__, metrics
from streams.kafka_client import client_kwargs
from streams.settings import ENV_NAMES, ConfigError, Settings
from streams.topics import ensure_topics

log = logging.getLogger("clientpulse.deliver")

DELIVERED_MEMORY = 100_000
"""Idempotency keys delivered by this process, remembered so a re-published record is not sent again."""


# ---------------------------------------------------------------------- configuration
def _read_secret(where: str, env: str | None, file: str | None) -> bytes | None:
    if env:
        value = os.environ.get(env)
        if not value:
            raise ConfigError(f"clientpulse: {where}: environment variable {env} is not set")
        return value.encode()
    if file:
        try:
            return Path(file).read_text("utf-8").strip().encode()
        except OSError as exc:
            raise ConfigError(f"clientpulse: {where}: cannot read {file}: {exc.strerror}") from None
    return None


def _endpoint(name: str, target: Target, where: str) -> Endpoint:
    url = target.url or (_read_secret(f"{where} {name}", target.url_env, target.url_file) or b"").decode()
    if not url.startswith(("http://", "https://")):
        raise ConfigError(f"clientpulse: {where} {name}: the URL must start with http:// or https://")
    secret = _read_secret(f"{where} {name}", target.secret_env, target.secret_file)
    if target.format == "dingtalk" and secret is not None and not secret.startswith(b"SEC"):
        log.warning("%s %s: a DingTalk signing secret usually starts with SEC", where, name)
    return Endpoint(name, url, target.format, secret)


def load_router(settings: Settings) -> Router:
    """One URL (CLIENTPULSE_DELIVER_URL) or the routes file; a bad one stops the start naming what is wrong."""
    if settings.deliver_routes_file is not None:
        where = f"{ENV_NAMES['deliver_routes_file']} ({settings.deliver_routes_file})"
        try:
            data = yaml.safe_load(settings.deliver_routes_file.read_text("utf-8"))
        except OSError as exc:
            raise ConfigError(f"clientpulse: {where}: cannot read: {exc.strerror}") from None
        except yaml.YAMLError as exc:
            raise ConfigError(f"clientpulse: {where}: not valid YAML: {exc}") from None
        try:
            routes = RoutesFile.model_validate(data)
        except ValidationError as exc:
            lines = error_texts(exc, whole="(top level)")
            raise ConfigError(f"clientpulse: {where}: invalid\n" + "\n".join(f"  {line}" for line in lines)) from None
        endpoints = {name: _endpoint(name, t, where) for name, t in routes.targets.items()}
        by_rm: dict[str, list[Endpoint]] = defaultdict(list)
        for route in routes.routes:
            for rm in route.rm_ids:
                for target in route.targets:
                    if endpoints[target] not in by_rm[rm]:
                        by_rm[rm].append(endpoints[target])
        return Router(dict(by_rm), [endpoints[t] for t in routes.default])
    if settings.deliver_url:
        secret = settings.deliver_secret.encode() if settings.deliver_secret else None
        if settings.deliver_secret_file is not None:
            secret = _read_secret(ENV_NAMES["deliver_secret_file"], None, str(settings.deliver_secret_file))
        return Router({}, [Endpoint("default", settings.deliver_url, settings.deliver_format, secret)])
    raise ConfigError(
        f"clientpulse: set {ENV_NAMES['deliver_url']} (one webhook) or {ENV_NAMES['deliver_routes_file']} "
        "(per-RM or per-team routing) for `clientpulse deliver`"
    )


# ---------------------------------------------------------------------- the service
class _Stopping(Exception):
    pass


class Deliverer:
    """Consumes pushes and digests (group `<app_id>-deliver`) and delivers them; `status()` is its health."""

    def __init__(self, settings: Settings, router: Router, tz: ZoneInfo) -> None:
        self.settings = settings
        self.router = router
        self.tz = tz
        self.group_id = f"{settings.app_id}-deliver"
        self.consuming = False
        self.delivered = 0
        self.dead_letters = 0
        self.skipped = 0
        self.last_error: str | None = None
        self._done: OrderedDict[tuple[str, str], None] = OrderedDict()
        self._stopping = asyncio.Event()
        self._slots = asyncio.Semaphore(settings.deliver_concurrency)

    def status(self) -> dict[str, Any]:
        return {
            "consuming": self.consuming,
            "delivered": self.delivered,
            "dead_letters": self.dead_letters,
            "skipped_duplicates": self.skipped,
            "last_error": self.last_error,
            "endpoints": {e.name: e.format for e in self.router.all},
        }

    def stop(self) -> None:
        self._stopping.set()

    async def run(self) -> None:
        s = self.settings
        consumer = AIOKafkaConsumer(
            s.notifications_topic,
            s.digests_topic,
            **client_kwargs(s),
            group_id=self.group_id,
            client_id=self.group_id,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            session_timeout_ms=int(s.session_timeout * 1000),
            heartbeat_interval_ms=int(min(3000, max(500, s.session_timeout * 1000 / 6))),
            max_poll_records=s.sink_batch_size,
            # A batch may wait out its retries: give it longer than the longest retry budget.
            max_poll_interval_ms=int(1000 * max(300.0, self._longest_attempts() * 2)),
        )
        producer = AIOKafkaProducer(**client_kwargs(s), acks="all")
        timeout = aiohttp.ClientTimeout(total=s.deliver_timeout)
        headers = {"User-Agent": f"clientpulse/{__version__}"}
        await consumer.start()
        try:
            await producer.start()
            try:
                async with aiohttp.ClientSession(timeout=timeout, headers=headers) as http:
                    self.consuming = True
                    await self._consume(consumer, producer, http)
            finally:
                self.consuming = False
                await producer.stop()
        except _Stopping:
            log.info("deliver stopping; the batch in hand (if any) stays uncommitted and is sent again")
        finally:
            await consumer.stop()

    def _longest_attempts(self) -> float:
        s = self.settings
        waits = sum(
            delivery.backoff(a, s.deliver_backoff_initial, s.deliver_backoff_max) for a in range(1, s.deliver_attempts)
        )
        return waits + s.deliver_attempts * s.deliver_timeout

    async def _consume(
        self, consumer: AIOKafkaConsumer, producer: AIOKafkaProducer, http: aiohttp.ClientSession
    ) -> None:
        while not self._stopping.is_set():
            batch: dict[TopicPartition, list[ConsumerRecord]] = await consumer.getmany(
                timeout_ms=500, max_records=self.settings.sink_batch_size
            )
            if not batch:
                continue
            by_key: dict[bytes | None, list[ConsumerRecord]] = defaultdict(list)
            offsets: dict[TopicPartition, int] = {}
            for tp, records in batch.items():
                for record in records:
                    by_key[record.key].append(record)
                    offsets[tp] = record.offset + 1
            letters: list[tuple[bytes | None, bytes]] = []
            await asyncio.gather(*(self._deliver_in_order(records, http, letters) for records in by_key.values()))
            if letters:
                futures = [await producer.send(self.settings.deadletter_topic, v, key=k) for k, v in letters]
                await asyncio.gather(*futures)
                self.dead_letters += len(letters)
            if self._stopping.is_set():
                raise _Stopping
            try:
                await consumer.commit(offsets)
            except KafkaError as exc:
                log.warning("offset commit failed (%s); the batch may be sent again with its idempotency keys", exc)

    async def _deliver_in_order(
        self, records: list[ConsumerRecord], http: aiohttp.ClientSession, letters: list[tuple[bytes | None, bytes]]
    ) -> None:
        async with self._slots:
            for record in records:
                await self._deliver(record, http, letters)

    async def _deliver(
        self, record: ConsumerRecord, http: aiohttp.ClientSession, letters: list[tuple[bytes | None, bytes]]
    ) -> None:
        now = datetime.now(UTC)
        try:
            value = orjson.loads(record.value or b"")
            record_id = delivery.record_id(value)
        except (orjson.JSONDecodeError, KeyError, TypeError):
            self._letter(record, "invalid_notification", "not a push or digest of the notifier", now, letters)
            return
        key = delivery.recipient(value) or UNASSIGNED
        endpoints = self.router.endpoints(key)
        kind = str(value.get("kind"))
        if not endpoints:
            metrics.DELIVERIES.labels(target="none", kind=kind, outcome="no_route").inc()
            self._letter(record, "no_route", f"no route and no default target for RM {key}", now, letters)
            return
        results = await asyncio.gather(*(self._attempts(value, record_id, e, http) for e in endpoints))
        for endpoint, (answer, attempts, seconds) in zip(endpoints, results, strict=True):
            if answer is None:
                continue  # already delivered by this process
            outcome = "delivered" if answer.outcome == "ok" else "dead_lettered"
            metrics.DELIVERIES.labels(target=endpoint.name, kind=kind, outcome=outcome).inc()
            if answer.outcome == "ok":
                self.delivered += 1
                continue
            self.last_error = f"{endpoint.name}: {answer.detail}"[:500]
            reason = "delivery_refused" if answer.outcome == "refused" else "delivery_failed"
            error = (
                f"delivery of {kind} {record_id} to {endpoint.name} ({endpoint.format}) "
                f"{'refused' if answer.outcome == 'refused' else 'failed'} after {attempts} attempt(s) "
                f"over {seconds:.1f}s; last answer: {answer.detail}"
            )
            log.warning("%s", error)
            self._letter(record, reason, error, now, letters)

    def _letter(
        self, record: ConsumerRecord, reason: str, error: str, now: datetime, letters: list[tuple[bytes | None, bytes]]
    ) -> None:
        metrics.EVENTS_REJECTED.labels(topic=record.topic, reason=reason).inc()
        letter = dead_letter(
            record.topic, record.partition, record.offset, record.key, record.value, Rejection(reason, error), now
        )
        letters.append((record.key, letter.model_dump_json().encode()))

    async def _attempts(
        self, record: dict[str, Any], record_id: str, endpoint: Endpoint, http: aiohttp.ClientSession
    ) -> tuple[Answer | None, int, float]:
        """Attempts until delivered, refused, or the budget is spent: (last answer, attempts, seconds)."""
        done_key = (endpoint.name, record_id)
        if done_key in self._done:
            self.skipped += 1
            metrics.DELIVERIES.labels(target=endpoint.name, kind=record["kind"], outcome="skipped_duplicate").inc()
            return None, 0, 0.0
        s = self.settings
        started = time.monotonic()
        attempt = 0
        while True:
            attempt += 1
            answer = await self._attempt(record, endpoint, http)
            metrics.DELIVERY_ATTEMPTS.labels(target=endpoint.name, result=answer.result).inc()
            if answer.outcome == "ok":
                self._done[done_key] = None
                if len(self._done) > DELIVERED_MEMORY:
                    self._done.popitem(last=False)
                return answer, attempt, time.monotonic() - started
            if answer.outcome == "refused" or attempt >= s.deliver_attempts:
                return answer, attempt, time.monotonic() - started
            wait = delivery.backoff(attempt, s.deliver_backoff_initial, s.deliver_backoff_max)
            if answer.retry_after is not None:
                wait = min(max(wait, answer.retry_after), s.deliver_backoff_max)
            log.info("%s to %s: %s; attempt %d in %.1fs", record_id, endpoint.name, answer.detail, attempt + 1, wait)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), wait)
            if self._stopping.is_set():
                raise _Stopping

    async def _attempt(self, record: dict[str, Any], endpoint: Endpoint, http: aiohttp.ClientSession) -> Answer:
        s = self.settings
        url, payload, headers = delivery.request(record, endpoint, s.workbench_url, self.tz, int(time.time()))
        started = time.perf_counter()
        try:
            async with http.post(url, data=payload, headers=headers) as resp:
                text = await resp.text(errors="replace")
                return delivery.answer(endpoint.format, resp.status, text, resp.headers.get("Retry-After"))
        except TimeoutError:
            return delivery.failure("timeout", f"no answer within {s.deliver_timeout}s")
        except aiohttp.ClientError as exc:
            return delivery.failure("connection_error", f"{type(exc).__name__}: {exc}")
        finally:
            metrics.DELIVERY_SECONDS.observe(time.perf_counter() - started)


# ---------------------------------------------------------------------- process entry point
def health_app(deliverer: Deliverer) -> web.Application:
    async def healthz(request: web.Request) -> web.Response:
        return web.json_response({"status": "ok", **deliverer.status()})

    async def readyz(request: web.Request) -> web.Response:
        return web.json_response({"ready": deliverer.consuming}, status=200 if deliverer.consuming else 503)

    async def metrics_page(request: web.Request) -> web.Response:
        return web.Response(body=generate_latest(), headers={"Content-Type": CONTENT_TYPE_LATEST})

    app = web.Application()
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/status", healthz)
    app.router.add_get("/metrics", metrics_page)
    return app


async def serve(settings: Settings, router: Router, tz: ZoneInfo) -> int:
    await ensure_topics(settings)
    deliverer = Deliverer(settings, router, tz)
    runner = web.AppRunner(health_app(deliverer), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, settings.web_host, settings.web_port).start()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, deliverer.stop)
    log.info(
        "deliver %s: %s, %s -> %s; HTTP on %s:%d",
        deliverer.group_id,
        settings.notifications_topic,
        settings.digests_topic,
        ", ".join(f"{e.name} ({e.format})" for e in router.all) or "no endpoint",
        settings.web_host,
        settings.web_port,
    )
    try:
        await deliverer.run()
    except Exception:
        log.exception("deliver failed")
        return 1
    finally:
        await runner.cleanup()
    return 0


def run_deliver(settings: Settings, rules: Ruleset) -> int:
    router = load_router(settings)
    unsigned = [e.name for e in router.all if e.format == "generic" and e.secret is None]
    if unsigned:
        log.warning("generic endpoints without a signing secret (requests are not signed): %s", ", ".join(unsigned))
    metrics.BUILD_INFO.labels(version=__version__, rule_version=rules.rule_version).set(1)
    return asyncio.run(serve(settings, router, rules.timezone))

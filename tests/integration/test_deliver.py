"""`clientpulse deliver` against a real HTTP server started here: one that fails, times out and recovers.

The records are real notifier output (handlers.notify) on the session broker.
Each test waits until the deliver group has committed the records: it commits
a batch only when every record in it is delivered or dead-lettered, so what the
server saw and the dead-letter topic are then complete.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import os
import subprocess
import sys
import time
import urllib.request
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote_plus, urlsplit

import orjson
import pytest
from aiohttp import web
from aiokafka import AIOKafkaProducer  # type: ignore[import-untyped]

from handlers.notify import Digest, NotifyReplay, Push, encode_output
from handlers.ruleset import Ruleset
from handlers.timeutil import to_us
from schemas.alerts import Alert
from streams.deliver.service import Deliverer, load_router
from streams.settings import Settings
from streams.tools.embedded import free_port, terminate_group
from streams.topics import ensure_topics
from tests.support import (
    ROOT,
    GroupOffsets,
    die_with_parent,
    end_offsets,
    make_settings,
    read_to_end,
    settings_env,
    unique_prefix,
)

pytestmark = pytest.mark.broker

NIGHT = datetime(2026, 3, 2, 15, tzinfo=UTC)  # 23:00 in Shanghai
SECRET = "s3cret-shared-with-the-bank"
WORKBENCH = "https://clientpulse.bank.example"


def _alert(n: int, rm: str | None, severity: str, when: datetime, priority: int) -> Alert:
    return Alert(
        alert_id=f"dl-{n:04d}",
        type="complaint" if n % 2 else "large_outflow",
        severity=severity,  # type: ignore[arg-type]
        client_id=f"c-{n}",
        rm_id=rm,
        tier="platinum",
        occurred_at=when,
        detected_at=when,
        title=f"Alert number {n}",
        facts={},
        rule_version="v",
        source_event_ids=[],
        priority=priority,
        titles={"en": f"Alert number {n}", "zh-CN": f"提醒 {n}"},
    )


def notifier_output(rules: Ruleset, rm: str | None = "rm-1", base: int = 0) -> tuple[list[Push], list[Digest]]:
    """A critical push and, from three alerts held overnight, one digest: real output of the notifier."""
    replay = NotifyReplay(rules)
    outputs = replay.feed(
        [
            _alert(base + 1, rm, "critical", NIGHT, 95),
            _alert(base + 2, rm, "warning", NIGHT + timedelta(minutes=5), 55),
            _alert(base + 3, rm, "info", NIGHT + timedelta(minutes=6), 25),
            _alert(base + 4, rm, "warning", NIGHT + timedelta(minutes=7), 60),
        ]
    )
    outputs += replay.finish(to_us(NIGHT + timedelta(days=1)))
    pushes = [o for o in outputs if isinstance(o, Push)]
    digests = [o for o in outputs if isinstance(o, Digest)]
    return pushes, digests


# --------------------------------------------------------------------------- the HTTP server
@dataclass
class Seen:
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: bytes
    at: float

    @property
    def json(self) -> Any:
        return orjson.loads(self.body)


@dataclass
class Hooks:
    """A real HTTP server; `script[path]` is the answers to give in turn (the last one repeats)."""

    script: dict[str, list[Callable[[web.Request], Awaitable[web.Response]]]] = field(default_factory=dict)
    seen: list[Seen] = field(default_factory=list)
    port: int = field(default_factory=free_port)
    _counts: dict[str, int] = field(default_factory=dict)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    async def handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        self.seen.append(Seen(request.path, parse_qs(request.query_string), dict(request.headers), body, time.time()))
        answers = self.script.get(request.path) or [ok]
        n = self._counts.get(request.path, 0)
        self._counts[request.path] = n + 1
        return await answers[min(n, len(answers) - 1)](request)

    def at(self, path: str) -> list[Seen]:
        return [s for s in self.seen if s.path == path]


async def ok(request: web.Request) -> web.Response:
    return web.json_response({"errcode": 0, "errmsg": "ok"})


def status(code: int, text: str = "") -> Callable[[web.Request], Awaitable[web.Response]]:
    async def answer(request: web.Request) -> web.Response:
        return web.Response(status=code, text=text)

    return answer


def errcode(code: int) -> Callable[[web.Request], Awaitable[web.Response]]:
    async def answer(request: web.Request) -> web.Response:
        return web.json_response({"errcode": code, "errmsg": "robot says no"})

    return answer


async def hang(request: web.Request) -> web.Response:
    await asyncio.sleep(5)
    return web.json_response({})


@pytest.fixture
async def hooks() -> AsyncIterator[Hooks]:
    server = Hooks()
    app = web.Application()
    app.router.add_post("/{tail:.*}", server.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", server.port).start()
    try:
        yield server
    finally:
        await runner.cleanup()


# --------------------------------------------------------------------------- helpers
async def publish(settings: Settings, outputs: list[Push | Digest]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap, acks="all")
    await producer.start()
    try:
        for output in outputs:
            key, value = encode_output(output)
            topic = settings.notifications_topic if isinstance(output, Push) else settings.digests_topic
            await producer.send_and_wait(topic, value, key=key)
    finally:
        await producer.stop()


async def delivered(settings: Settings, timeout: float = 60.0) -> None:
    """Until the deliver group has committed both topics to their ends."""
    deadline = time.monotonic() + timeout
    async with GroupOffsets(settings.kafka_bootstrap, f"{settings.app_id}-deliver") as offsets:
        for topic in (settings.notifications_topic, settings.digests_topic):
            ends = await end_offsets(settings.kafka_bootstrap, topic)
            while not await offsets.reached(topic, ends):
                assert time.monotonic() < deadline, f"deliver committed {await offsets.of(topic, ends)} of {ends}"
                await asyncio.sleep(0.1)


async def run_until_delivered(settings: Settings, rules: Ruleset) -> Deliverer:
    deliverer = Deliverer(settings, load_router(settings), rules.timezone)
    task = asyncio.create_task(deliverer.run())
    try:
        await delivered(settings)
    finally:
        deliverer.stop()
        await asyncio.wait_for(task, 30)
    return deliverer


async def dead_letters(settings: Settings) -> list[dict[str, Any]]:
    return [orjson.loads(r.value) for r in await read_to_end(settings.kafka_bootstrap, settings.deadletter_topic)]


def deliver_settings(broker: str, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "workbench_url": WORKBENCH,
        "deliver_timeout": 0.5,
        "deliver_attempts": 4,
        "deliver_backoff_initial": 0.05,
        "deliver_backoff_max": 0.2,
    }
    values.update(overrides)
    return make_settings(broker, unique_prefix(), **values)


def check_signature(seen: Seen) -> None:
    timestamp = seen.headers["X-Clientpulse-Timestamp"]
    assert abs(int(timestamp) - seen.at) < 60
    mac = hmac.new(SECRET.encode(), timestamp.encode() + b"." + seen.body, hashlib.sha256).hexdigest()
    assert seen.headers["X-Clientpulse-Signature"] == f"sha256={mac}"


# --------------------------------------------------------------------------- tests
async def test_a_webhook_that_fails_times_out_and_recovers_gets_each_record_signed(
    broker: str, rules: Ruleset, hooks: Hooks
) -> None:
    settings = deliver_settings(broker, deliver_url=hooks.url("/hook"), deliver_secret=SECRET)
    await ensure_topics(settings)
    (push,), (digest,) = notifier_output(rules)
    hooks.script["/hook"] = [status(503, "busy"), hang, ok]
    await publish(settings, [push, digest])
    deliverer = await run_until_delivered(settings, rules)

    attempts = hooks.at("/hook")
    pushes = [s for s in attempts if s.json["kind"] == "push"]
    digests = [s for s in attempts if s.json["kind"] == "digest"]
    assert len(attempts) == 4 and deliverer.delivered == 2, [(s.json["kind"], s.at) for s in attempts]
    assert {s.headers["Idempotency-Key"] for s in attempts} == {push.alert.alert_id, digest.digest_id}
    for seen in attempts:
        check_signature(seen)
    body = pushes[-1].json
    assert body["priority"] == 95 and body["severity"] == "critical" and body["reason"] == "critical"
    assert body["titles"] == {"en": "Alert number 1", "zh-CN": "提醒 1"}
    assert body["link"] == f"{WORKBENCH}/alerts/{push.alert.alert_id}"
    digest_body = digests[-1].json
    assert [a["alert_id"] for a in digest_body["alerts"]] == ["dl-0004", "dl-0002", "dl-0003"]
    assert digest_body["count"] == 3 and digest_body["rm_id"] == "rm-1"
    assert all(a["link"].startswith(f"{WORKBENCH}/alerts/") and a["titles"]["zh-CN"] for a in digest_body["alerts"])
    first_three = sorted(s.at for s in attempts)[:3]
    assert first_three[2] - first_three[1] >= 0.5, "the third attempt came after the second one timed out"
    mine = [
        d for d in await dead_letters(settings) if d["topic"] in (settings.notifications_topic, settings.digests_topic)
    ]
    assert mine == []


async def test_after_the_retry_budget_or_a_refusal_a_record_becomes_a_dead_letter_with_the_answer(
    broker: str, rules: Ruleset, hooks: Hooks
) -> None:
    settings = deliver_settings(broker, deliver_url=hooks.url("/down"), deliver_attempts=3)
    await ensure_topics(settings)
    (push,), (digest,) = notifier_output(rules)
    hooks.script["/down"] = [status(500, "upstream down")]
    await publish(settings, [push])
    await run_until_delivered(settings, rules)
    assert len(hooks.at("/down")) == 3

    hooks.script["/down"] = [status(400, "unknown field")]
    hooks.seen.clear()
    await publish(settings, [digest])
    await run_until_delivered(settings, rules)
    assert len(hooks.at("/down")) == 1, "a refusal is not retried"

    letters = {d["reason"]: d for d in await dead_letters(settings)}
    failed, refused = letters["delivery_failed"], letters["delivery_refused"]
    assert failed["topic"] == settings.notifications_topic and failed["key"] == "rm-1"
    assert "after 3 attempt(s)" in failed["error"] and "HTTP 500: upstream down" in failed["error"]
    assert orjson.loads(failed["raw"])["alert_id"] == push.alert.alert_id, "the record itself, for a redrive"
    assert refused["topic"] == settings.digests_topic and "HTTP 400: unknown field" in refused["error"]


async def test_routes_send_wecom_and_dingtalk_robot_messages(
    broker: str, rules: Ruleset, hooks: Hooks, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ding_secret = "SECabc123"
    monkeypatch.setenv("TEST_DING_SECRET", ding_secret)
    monkeypatch.setenv("TEST_HUB_SECRET", SECRET)
    routes = tmp_path / "routes.yaml"
    routes.write_text(
        f"""
targets:
  east-wecom: {{url: "{hooks.url("/wecom")}?key=robot-key", format: wecom}}
  west-ding: {{url: "{hooks.url("/ding")}?access_token=tok", format: dingtalk, secret_env: TEST_DING_SECRET}}
  hub: {{url: "{hooks.url("/hub")}", secret_env: TEST_HUB_SECRET}}
routes:
  - {{name: east, rm_ids: [rm-1], targets: [east-wecom]}}
  - {{name: west, rm_ids: [rm-2], targets: [west-ding, hub]}}
default: [hub]
""",
        "utf-8",
    )
    settings = deliver_settings(broker, deliver_routes_file=routes)
    await ensure_topics(settings)
    east_push, east_digest = notifier_output(rules, "rm-1", 0)
    west_push, _ = notifier_output(rules, "rm-2", 10)
    triage, _ = notifier_output(rules, None, 20)
    hooks.script["/wecom"] = [errcode(45009), ok]  # rate limited once: retried
    await publish(settings, [*east_push, *east_digest, *west_push, *triage[:1]])
    await run_until_delivered(settings, rules)

    wecom = hooks.at("/wecom")
    assert len(wecom) == 3 and [s.query["key"] for s in wecom] == [["robot-key"]] * 3
    assert {s.json["msgtype"] for s in wecom} == {"markdown"}
    contents = [s.json["markdown"]["content"] for s in wecom]
    assert any("P95" in c and "提醒 1 / Alert number 1" in c and f"{WORKBENCH}/alerts/dl-0001" in c for c in contents)
    assert any("每日摘要 Daily digest" in c and "P60" in c for c in contents)
    assert all(len(c.encode()) <= 4096 for c in contents)

    (ding,) = hooks.at("/ding")
    timestamp, sign = ding.query["timestamp"][0], ding.query["sign"][0]
    expected = base64.b64encode(
        hmac.new(ding_secret.encode(), f"{timestamp}\n{ding_secret}".encode(), hashlib.sha256).digest()
    ).decode()
    assert unquote_plus(sign) == expected or sign == expected
    assert abs(int(timestamp) / 1000 - ding.at) < 60 and ding.query["access_token"] == ["tok"]
    assert ding.json["msgtype"] == "markdown" and "P95" in ding.json["markdown"]["title"]

    hub = hooks.at("/hub")
    assert sorted(s.json["rm_id"] or "unassigned" for s in hub) == ["rm-2", "unassigned"], "west fans out; the rest"
    for seen in hub:
        check_signature(seen)
    assert await dead_letters(settings) == []


async def test_the_deliver_process_serves_health_and_delivers(
    broker: str, rules: Ruleset, hooks: Hooks, tmp_path: Path
) -> None:
    settings = deliver_settings(broker, deliver_url=hooks.url("/proc"), web_port=free_port())
    await ensure_topics(settings)
    log = open(tmp_path / "deliver.log", "ab")  # noqa: SIM115
    proc = subprocess.Popen(
        [sys.executable, "-m", "streams.cli", "deliver"],
        cwd=ROOT,
        env={**os.environ, **settings_env(settings)},
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
        preexec_fn=die_with_parent,
    )
    try:
        (push,), _ = notifier_output(rules)
        await publish(settings, [push])
        await delivered(settings)
        (seen,) = hooks.at("/proc")
        assert seen.json["alert_id"] == push.alert.alert_id

        def get(path: str) -> tuple[int, bytes]:
            with urllib.request.urlopen(f"http://127.0.0.1:{settings.web_port}{path}", timeout=3) as resp:
                return resp.status, resp.read()

        assert (await asyncio.to_thread(get, "/readyz"))[0] == 200
        text = (await asyncio.to_thread(get, "/metrics"))[1].decode()
        assert 'clientpulse_deliveries_total{kind="push",outcome="delivered",target="default"} 1.0' in text
    finally:
        await asyncio.to_thread(terminate_group, proc, 15)
        log.close()
    assert proc.returncode == 0, (tmp_path / "deliver.log").read_text()[-2000:]
    assert urlsplit(hooks.url("/proc")).port == hooks.port

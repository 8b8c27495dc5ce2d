"""TLS end to end: a worker and a sink talk to the broker only through a TLS-terminating proxy.

A dedicated Tansu broker listens in plaintext on a private port and advertises
the address of a stunnel proxy in front of it (Debian's stunnel4, installed by
the Makefile when missing), so that every connection a client opens after the
bootstrap goes through TLS as well. The certificates are made by the test.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import asyncpg  # type: ignore[import-untyped]
import pytest
from aiokafka.admin import AIOKafkaAdminClient  # type: ignore[import-untyped]

from streams.kafka_client import client_kwargs
from streams.settings import Settings
from streams.tools.embedded import EmbeddedBroker, free_port, terminate_group
from streams.topics import ensure_topics
from tests.support import (
    ROOT,
    consume,
    die_with_parent,
    encode_records,
    make_settings,
    new_worker,
    produce,
    settings_env,
    unique_prefix,
)
from tests.tls import Authority, TlsProxy

pytestmark = [pytest.mark.broker, pytest.mark.db]


@dataclass
class TlsBroker:
    bootstrap: str
    ca_file: Path
    wrong_ca_file: Path
    plaintext_port: int


@pytest.fixture(scope="module")
def tls_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TlsBroker]:
    workdir = tmp_path_factory.mktemp("tls")
    authority = Authority("clientpulse test CA")
    cert, key = authority.issue(workdir, "broker")
    ca_file = authority.write_ca(workdir / "ca.pem")
    wrong_ca_file = Authority("some other CA").write_ca(workdir / "wrong-ca.pem")
    proxy_port = free_port()
    broker = EmbeddedBroker(log_path=workdir / "tansu.log", advertised=f"127.0.0.1:{proxy_port}").start()
    proxy = TlsProxy(broker.port, cert, key, workdir, port=proxy_port)
    try:
        proxy.start()
        yield TlsBroker(f"127.0.0.1:{proxy_port}", ca_file, wrong_ca_file, broker.port)
    finally:
        proxy.stop()
        broker.stop()


def tls_settings(tls_broker: TlsBroker, prefix: str, **overrides: object) -> Settings:
    return make_settings(
        tls_broker.bootstrap,
        prefix,
        kafka_security_protocol="SSL",
        kafka_ssl_ca_file=tls_broker.ca_file,
        **overrides,
    )


def _tx(event_id: str, client: str, amount: str) -> dict[str, object]:
    return {
        "event_id": event_id,
        "client_id": client,
        "occurred_at": "2026-03-01T10:00:00+00:00",
        "account_id": "acct-1",
        "amount": amount,
        "currency": "CNY",
        "direction": "debit",
        "kind": "transfer",
        "channel": "online",
        "initiated_by": "customer",
        "counterparty": {"bank": "external"},
    }


async def _advertised_ports(settings: Settings) -> set[int]:
    admin = AIOKafkaAdminClient(**client_kwargs(settings))
    await admin.start()
    try:
        cluster = await admin.describe_cluster()
    finally:
        await admin.close()
    return {int(b["port"]) for b in cluster["brokers"]}


async def _stored_alert_types(database_url: str, client_id: str, timeout: float = 60.0) -> set[str]:
    conn = await asyncpg.connect(database_url)
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            rows = await conn.fetch("SELECT type FROM alerts WHERE client_id = $1", client_id)
            if rows:
                return {r["type"] for r in rows}
            await asyncio.sleep(0.3)
    finally:
        await conn.close()
    return set()


def _start_sink(settings: Settings, tmp_path: Path) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    env = {
        **os.environ,
        **settings_env(settings),
        "CLIENTPULSE_API_HOST": "127.0.0.1",
        "CLIENTPULSE_API_PORT": str(port),
    }
    log = open(tmp_path / "sink.log", "ab")  # noqa: SIM115
    proc = subprocess.Popen(
        [sys.executable, "-m", "streams.cli", "sink", "--no-api"],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
        preexec_fn=die_with_parent,
    )
    log.close()
    return proc, port


def _wait_ready(port: int, proc: subprocess.Popen[bytes], log: Path, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, log.read_text()[-3000:]
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as resp:
                if resp.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.3)
    raise AssertionError(f"sink not ready after {timeout}s:\n{log.read_text()[-3000:]}")


def test_worker_and_sink_work_through_tls(tls_broker: TlsBroker, database_url: str, tmp_path: Path) -> None:
    prefix = unique_prefix()
    settings = tls_settings(tls_broker, prefix, database_url=database_url)
    assert asyncio.run(_advertised_ports(settings)) == {int(tls_broker.bootstrap.rsplit(":", 1)[1])}, (
        "clients must be sent back to the TLS proxy, never to the plaintext listener"
    )
    asyncio.run(ensure_topics(settings))
    worker = new_worker(settings, tmp_path).start()
    sink, sink_port = _start_sink(settings, tmp_path)
    client = f"{prefix}c-1"
    try:
        worker.wait_ready()
        _wait_ready(sink_port, sink, tmp_path / "sink.log")
        records = [("bank.transactions.v1", client, _tx(f"{prefix}e-1", client, "600000"))]
        asyncio.run(produce(settings, encode_records(prefix, records)))
        alerts = asyncio.run(
            consume(settings, settings.alerts_topic, lambda vs: any(v["client_id"] == client for v in vs))
        )
        assert {a["type"] for a in alerts if a["client_id"] == client} >= {"large_outflow"}
        assert "large_outflow" in asyncio.run(_stored_alert_types(database_url, client))
        assert worker.proc is not None and worker.proc.poll() is None
    finally:
        worker.stop()
        terminate_group(sink, timeout=15)


@pytest.mark.parametrize("command", [["worker"], ["sink", "--no-api"], ["topics"], ["simulate", "--duration", "1"]])
def test_a_wrong_ca_stops_every_process_at_start_in_one_line(
    tls_broker: TlsBroker, tmp_path: Path, command: list[str]
) -> None:
    settings = make_settings(
        tls_broker.bootstrap,
        unique_prefix(),
        kafka_security_protocol="SSL",
        kafka_ssl_ca_file=tls_broker.wrong_ca_file,
        database_url="postgresql://postgres@127.0.0.1:5432/unused",
        api_tokens="tokens: []",
    )
    env = {**os.environ, **settings_env(settings)}
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "streams.cli", *command],
        cwd=ROOT,
        env=env,
        capture_output=True,
        timeout=60,
        preexec_fn=die_with_parent,
    )
    assert done.returncode == 2, done.stderr.decode()
    lines = [line for line in done.stderr.decode().splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("clientpulse:")]
    assert len(errors) == 1 and "Traceback" not in done.stderr.decode(), lines
    assert "certificate verify failed" in errors[0] and "KAFKA_SSL_CA_FILE" in errors[0]
    assert str(tls_broker.wrong_ca_file) in errors[0]
    assert time.monotonic() - started < settings.kafka_connect_timeout, "a wrong CA fails at once, without retries"

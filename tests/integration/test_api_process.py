"""The `clientpulse sink` process under attack: a flood of guessed tokens, slow clients, malformed requests
carrying a token, and a token file changed under it (reloaded on SIGHUP). One process for the module."""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import signal
import socket
import string
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest

from streams.api.auth import hash_token
from streams.tools.embedded import free_port, terminate_group
from streams.topics import ensure_topics
from tests.integration.test_sink import sink_settings
from tests.support import ROOT, die_with_parent, settings_env

pytestmark = [pytest.mark.db, pytest.mark.broker]

HEADER_TIMEOUT = 2.0
BODY_TIMEOUT = 2.0


@dataclass
class Sink:
    proc: subprocess.Popen[bytes]
    base: str
    port: int
    log_path: Path
    tokens_file: Path
    fresh_token: str
    rm_id: str

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


def _token_file(path: Path, rm_id: str, tokens: dict[str, str]) -> None:
    # The default scrypt cost, as in production: each check is tens of milliseconds.
    lines = ["tokens:"]
    for name, token in tokens.items():
        lines += [f"  - name: {name}", "    role: rm", f"    rm_id: {rm_id}", f"    hash: '{hash_token(token)}'"]
    path.write_text("\n".join(lines) + "\n")


@pytest.fixture(scope="module")
async def sink(broker: str, database_url: str, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Sink]:
    tmp = tmp_path_factory.mktemp("api-process")
    settings = sink_settings(broker, database_url)
    await ensure_topics(settings)
    port = free_port()
    rm_id = f"rm-{uuid.uuid4().hex[:6]}"
    fresh = f"fresh-{uuid.uuid4().hex}"
    tokens_file = tmp / "tokens.yaml"
    _token_file(tokens_file, rm_id, {"fresh": fresh, **{f"other{i}": f"other-{uuid.uuid4().hex}" for i in range(4)}})
    env = {
        **os.environ,
        **settings_env(settings),
        "CLIENTPULSE_API_HOST": "0.0.0.0",
        "CLIENTPULSE_API_PORT": str(port),
        "CLIENTPULSE_API_TOKENS_FILE": str(tokens_file),
        "CLIENTPULSE_API_HEADER_TIMEOUT": str(HEADER_TIMEOUT),
        "CLIENTPULSE_API_BODY_TIMEOUT": str(BODY_TIMEOUT),
        "CLIENTPULSE_API_RELOAD_SECONDS": "3600",  # only SIGHUP reloads here
    }
    log_path = tmp / "sink.log"
    log = open(log_path, "wb")  # noqa: SIM115
    proc = subprocess.Popen(
        [sys.executable, "-m", "streams.cli", "sink"],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
        preexec_fn=die_with_parent,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as http:
            while True:
                assert proc.poll() is None, log_path.read_text()
                with contextlib.suppress(aiohttp.ClientError, TimeoutError):
                    async with http.get(f"{base}/readyz") as resp:
                        if resp.status == 200:
                            break
                assert time.monotonic() < deadline, f"sink not ready:\n{log_path.read_text()}"
                await asyncio.sleep(0.2)
        yield Sink(proc, base, port, log_path, tokens_file, fresh, rm_id)
    finally:
        terminate_group(proc, timeout=15)
        log.close()


def _guess(rnd: random.Random) -> str:
    return "".join(rnd.choice(string.ascii_letters + string.digits + "-_") for _ in range(43))


async def test_a_fresh_valid_token_is_answered_within_2s_while_100_connections_send_random_tokens(sink: Sink) -> None:
    stop = asyncio.Event()
    statuses: dict[int, int] = {}

    async def flood(seed: int) -> None:
        rnd = random.Random(seed)
        async with aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=1), timeout=aiohttp.ClientTimeout(total=30)
        ) as http:
            while not stop.is_set():
                headers = {"Authorization": f"Bearer {_guess(rnd)}"}
                async with http.get(f"{sink.base}/api/alerts", headers=headers) as resp:
                    await resp.read()
                    statuses[resp.status] = statuses.get(resp.status, 0) + 1

    attackers = [asyncio.create_task(flood(i)) for i in range(100)]
    try:
        deadline = time.monotonic() + 30
        while sum(statuses.values()) < 1000:  # the flood is in full swing
            assert time.monotonic() < deadline, statuses
            await asyncio.sleep(0.05)
        # The person signs in from another address (their own machine), the first use of the token since start.
        connector = aiohttp.TCPConnector(local_addr=("127.0.0.2", 0))
        async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=30)) as http:
            started = time.monotonic()
            headers = {"Authorization": f"Bearer {sink.fresh_token}"}
            async with http.get(f"{sink.base}/api/alerts", headers=headers) as resp:
                status = resp.status
            elapsed = time.monotonic() - started
    finally:
        stop.set()
        await asyncio.gather(*attackers, return_exceptions=True)
    assert status == 200
    assert elapsed < 2.0, f"the valid token took {elapsed:.2f}s under the flood"
    assert set(statuses) <= {401, 429} and statuses.get(429, 0) > statuses.get(401, 0), statuses
    async with aiohttp.ClientSession() as http, http.get(f"{sink.base}/metrics") as resp:
        text = await resp.text()
    assert 'clientpulse_api_rate_limited_total{limit="address"}' in text
    assert 'clientpulse_api_auth_failures_total{reason="unknown_token"}' in text


def _connect(port: int) -> socket.socket:
    return socket.create_connection(("127.0.0.1", port), timeout=15)


def _read_all(sock: socket.socket) -> bytes:
    chunks = []
    with contextlib.suppress(ConnectionResetError):
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


def _slow_headers(port: int) -> tuple[bytes, float]:
    with _connect(port) as sock:
        started = time.monotonic()
        sock.sendall(b"GET /api/alerts HTTP/1.1\r\n")
        with contextlib.suppress(OSError):
            for i in range(40):  # one header line a second: it would take 40 s to finish
                time.sleep(1.0)
                sock.sendall(f"X-Slow-{i}: {i}\r\n".encode())
        answer = _read_all(sock)
        return answer, time.monotonic() - started


async def test_a_client_sending_headers_slowly_is_cut_off(sink: Sink) -> None:
    answer, elapsed = await asyncio.to_thread(_slow_headers, sink.port)
    assert answer.split(b" ", 2)[1] == b"408", answer
    assert b'"error":"request_timeout"' in answer
    assert elapsed < HEADER_TIMEOUT + 5


async def test_a_body_that_does_not_arrive_is_a_408(sink: Sink) -> None:
    async with aiohttp.ClientSession() as http:
        headers = {"Authorization": f"Bearer {sink.fresh_token}"}
        async with http.get(f"{sink.base}/api/alerts", headers=headers) as resp:
            assert resp.status == 200
    token = sink.fresh_token

    def slow() -> tuple[bytes, float]:
        with _connect(sink.port) as sock:
            started = time.monotonic()
            sock.sendall(
                f"POST /api/alerts/x/ack HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n"
                'Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{"note": '.encode()
            )
            return _read_all(sock), time.monotonic() - started

    answer, elapsed = await asyncio.to_thread(slow)
    assert answer.split(b" ", 2)[1] == b"408", answer
    assert elapsed < BODY_TIMEOUT + 5


async def test_a_malformed_request_with_a_token_logs_one_short_line_without_it(sink: Sink) -> None:
    secret = f"nul-secret-{uuid.uuid4().hex}"
    marker = "malformed HTTP request from"
    before = sink.log().count(marker)

    def send() -> bytes:
        with _connect(sink.port) as sock:
            sock.sendall(
                f"GET /api/alerts HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {secret}\x00x\r\n"
                f"Cookie: cp_session={secret}\r\n\r\n".encode()
            )
            return _read_all(sock)

    answer = await asyncio.to_thread(send)
    assert answer.split(b" ", 2)[1] == b"400" and b"application/json" in answer
    deadline = time.monotonic() + 10
    while sink.log().count(marker) == before:
        assert time.monotonic() < deadline, "no log line for the malformed request"
        await asyncio.sleep(0.05)
    text = sink.log()
    assert secret not in text
    assert text.count(marker) == before + 1
    assert "Traceback" not in text
    line = next(ln for ln in text.splitlines() if marker in ln)
    assert len(line) < 300


async def test_the_token_file_is_reloaded_on_sighup_without_a_restart(sink: Sink) -> None:
    newcomer = f"newcomer-{uuid.uuid4().hex}"
    _token_file(sink.tokens_file, sink.rm_id, {"fresh": sink.fresh_token, "newcomer": newcomer})
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(local_addr=("127.0.0.3", 0))) as http:

        async def status() -> int:
            async with http.get(f"{sink.base}/api/alerts", headers={"Authorization": f"Bearer {newcomer}"}) as r:
                return r.status

        assert await status() == 401  # not reloaded yet: the file is polled only hourly in this test
        os.kill(sink.proc.pid, signal.SIGHUP)
        deadline = time.monotonic() + 15
        while await status() != 200:
            assert time.monotonic() < deadline, sink.log()
            await asyncio.sleep(0.2)
    assert sink.proc.poll() is None
    assert "token configuration reloaded (SIGHUP)" in sink.log()

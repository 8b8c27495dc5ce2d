"""The RM API under attack, on a real PostgreSQL and a real loopback socket: sign-in page and sessions,
CSRF, rate limits, cursors bound to the caller, the row-lock oracle, times at the edges, security headers."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import socket
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg  # type: ignore[import-untyped]
import pytest
import yaml
from prometheus_client import REGISTRY

from handlers.access import Scope
from streams.api.app import create_api
from streams.api.auth import Principals, TokenEntry, hash_token
from streams.api.identity import Teams
from streams.api.reload import ConfigFiles, read_token_entries
from streams.sink.store import AlertStore
from tests.integration.api_support import ApiTestServer, api_settings
from tests.integration.test_store import make_alert

pytestmark = pytest.mark.db


@dataclass
class Api:
    url: str
    store: AlertStore
    tokens: dict[str, str]
    rm_a: str
    rm_b: str
    server: ApiTestServer

    def auth(self, who: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[who]}"}


def _entries(tokens: dict[str, str], rm_a: str, rm_b: str) -> list[TokenEntry]:
    return [
        TokenEntry(name="alice", role="rm", rm_id=rm_a, hash=hash_token(tokens["alice"], log2_n=10)),
        TokenEntry(name="bob", role="rm", rm_id=rm_b, hash=hash_token(tokens["bob"], log2_n=10)),
        TokenEntry(name="maria", role="manager", team=[rm_a, rm_b], hash=hash_token(tokens["maria"], log2_n=10)),
    ]


async def _start(database_url: str, **settings: Any) -> Api:
    tag = uuid.uuid4().hex[:6]
    rm_a, rm_b = f"rm-a-{tag}", f"rm-b-{tag}"
    tokens = {n: f"tok-{n}-{uuid.uuid4().hex}" for n in ("alice", "bob", "maria")}
    store = AlertStore(database_url)
    await store.connect()
    await store.migrate()
    app = create_api(store, Principals(_entries(tokens, rm_a, rm_b)), settings=api_settings(**settings), teams=Teams())
    server = ApiTestServer(app)
    await server.start_server()
    return Api(str(server.make_url("")).rstrip("/"), store, tokens, rm_a, rm_b, server)


@pytest.fixture
async def api(database_url: str) -> AsyncIterator[Api]:
    a = await _start(database_url)
    try:
        yield a
    finally:
        await a.server.close()
        await a.store.close()


def _count(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


# ---------------------------------------------------------------------- sign-in page and sessions
async def test_the_sign_in_page_has_one_secret_field_one_button_and_both_languages(api: Api) -> None:
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{api.url}/signin") as resp:
            page = await resp.text()
            assert resp.status == 200 and resp.content_type == "text/html"
            csp = resp.headers["Content-Security-Policy"]
        assert "script-src 'self'" in csp and "frame-ancestors 'none'" in csp and "unsafe-inline" not in csp
        assert len(re.findall(r"<input(?![^>]*type=\"hidden\")", page)) == 1
        assert len(re.findall(r'<input[^>]*type="password"', page)) == 1
        assert len(re.findall(r"<button", page)) == 1
        assert "<script" not in page and 'href="/static/signin.css"' in page
        assert "Sign in with" not in page  # no single sign-on configured here
        assert "Access token" in page
        async with http.get(f"{api.url}/signin", headers={"Accept-Language": "zh-CN,zh;q=0.9,en;q=0.5"}) as resp:
            assert "访问令牌" in await resp.text()
        async with http.get(f"{api.url}/signin?lang=zh") as resp:
            assert "登录" in await resp.text() and "lang=zh" in resp.headers.getall("Set-Cookie", [""])[-1] + "".join(
                resp.headers.getall("Set-Cookie", [])
            )
        async with http.get(f"{api.url}/static/signin.css") as resp:
            assert resp.status == 200 and resp.content_type == "text/css"
        async with http.get(f"{api.url}/static/../app.py") as resp:
            assert resp.status == 404


async def _token_sign_in(http: aiohttp.ClientSession, api: Api, token: str) -> aiohttp.ClientResponse:
    async with http.get(f"{api.url}/signin") as resp:
        page = await resp.text()
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', page)
    assert csrf is not None
    return await http.post(f"{api.url}/signin", data={"csrf_token": csrf[1], "token": token}, allow_redirects=False)


async def test_a_pasted_api_token_starts_a_session_that_csrf_protects_and_sign_out_ends(api: Api) -> None:
    mine = make_alert(rm_id=api.rm_a)
    await api.store.insert_alerts([mine])
    jar = aiohttp.CookieJar(unsafe=True)
    async with aiohttp.ClientSession(cookie_jar=jar) as http:
        wrong = await _token_sign_in(http, api, "tok-not-configured-0000")
        assert wrong.status == 401 and "not accepted" in await wrong.text()
        signed = await _token_sign_in(http, api, api.tokens["alice"])
        assert signed.status == 303 and signed.headers["Location"] == "/"
        cookie = next(c for c in signed.headers.getall("Set-Cookie") if c.startswith("cp_session="))
        assert "HttpOnly" in cookie and "SameSite=Lax" in cookie and "Path=/" in cookie
        assert "Secure" not in cookie  # CLIENTPULSE_SESSION_COOKIE_SECURE=false here
        session_id = cookie.split(";", 1)[0].split("=", 1)[1]
        rows = await _session_rows(api)
        assert session_id.encode() not in b"".join(bytes(r["id_hash"]) for r in rows)  # only a hash is stored

        async with http.get(f"{api.url}/", allow_redirects=False) as resp:
            assert resp.status == 303 and resp.headers["Location"] == "/inbox"
        async with http.get(f"{api.url}/inbox") as resp:
            page = await resp.text()
            assert resp.headers["Cache-Control"] == "no-store"
        csrf = re.search(r'<meta name="csrf-token" content="([^"]+)">', page)
        assert csrf is not None
        async with http.get(f"{api.url}/api/alerts/{mine.alert_id}") as resp:
            assert resp.status == 200
        path = f"{api.url}/api/alerts/{mine.alert_id}/ack"
        before = _count("clientpulse_api_csrf_refused_total")
        async with http.post(path) as resp:
            assert resp.status == 403 and (await resp.json())["error"] == "csrf_failed"
        assert _count("clientpulse_api_csrf_refused_total") == before + 1
        async with http.post(path, headers={"X-CSRF-Token": csrf[1]}) as resp:
            assert resp.status == 200 and (await resp.json())["events"][-1]["actor"] == "alice"
        async with http.post(f"{api.url}/signout", data={"csrf_token": csrf[1]}, allow_redirects=False) as resp:
            assert resp.status == 303
        async with http.get(f"{api.url}/api/alerts/{mine.alert_id}") as resp:
            assert resp.status == 401
        # Even with the old cookie sent again by hand, the session is gone.
        async with aiohttp.ClientSession() as replay:
            headers = {"Cookie": f"cp_session={session_id}"}
            async with replay.get(f"{api.url}/api/alerts", headers=headers) as resp:
                assert resp.status == 401


async def _session_rows(api: Api) -> list[Any]:
    conn = await asyncpg.connect(api.store.dsn)
    try:
        return list(await conn.fetch("SELECT id_hash, last_seen_at, expires_at FROM web_sessions"))
    finally:
        await conn.close()


async def test_sign_in_without_the_pages_token_is_refused(api: Api) -> None:
    # Another site posting a token of its own into this browser ("login CSRF") has no form token.
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
        resp = await http.post(f"{api.url}/signin", data={"token": api.tokens["alice"]}, allow_redirects=False)
        assert resp.status == 403 and "cp_session=" not in "".join(resp.headers.getall("Set-Cookie", []))


@pytest.mark.parametrize("column", ["last_seen_at", "expires_at"])
async def test_idle_and_absolute_timeouts_end_a_session(api: Api, column: str) -> None:
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
        assert (await _token_sign_in(http, api, api.tokens["bob"])).status == 303
        async with http.get(f"{api.url}/api/alerts") as resp:
            assert resp.status == 200
        # Time passes: the session was last used longer ago than the idle timeout, or outlived its lifetime.
        conn = await asyncpg.connect(api.store.dsn)
        try:
            shifted = "now() - interval '31 minutes'" if column == "last_seen_at" else "now() - interval '1 second'"
            await conn.execute(f"UPDATE web_sessions SET {column} = {shifted} WHERE principal->>'name' = 'bob'")
        finally:
            await conn.close()
        async with http.get(f"{api.url}/api/alerts") as resp:
            assert resp.status == 401
        async with http.get(f"{api.url}/", allow_redirects=False) as resp:
            assert resp.headers["Location"] == "/signin"


async def test_a_removed_token_ends_its_sessions_and_files_reload_on_change_and_sighup(
    database_url: str, tmp_path: Path
) -> None:
    tokens_file = tmp_path / "tokens.yaml"
    rm = f"rm-{uuid.uuid4().hex[:6]}"
    old, new = f"tok-old-{uuid.uuid4().hex}", f"tok-new-{uuid.uuid4().hex}"

    def write(entries: list[TokenEntry]) -> None:
        tokens_file.write_text(yaml.safe_dump({"tokens": [e.model_dump(exclude_none=True) for e in entries]}))

    write([TokenEntry(name="rita", role="rm", rm_id=rm, hash=hash_token(old, log2_n=10))])
    settings = api_settings(api_tokens_file=tokens_file, api_reload_seconds=0.2)
    store = AlertStore(database_url)
    await store.connect()
    await store.migrate()
    principals = Principals(read_token_entries(settings))
    server = ApiTestServer(create_api(store, principals, settings=settings))
    await server.start_server()
    files = ConfigFiles(settings, principals, Teams())
    files.start()
    url = str(server.make_url("/api/alerts"))
    try:
        async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
            api = Api(str(server.make_url("")).rstrip("/"), store, {}, rm, rm, server)
            assert (await _token_sign_in(http, api, old)).status == 303
            async with http.get(url) as resp:
                assert resp.status == 200
            async with aiohttp.ClientSession() as bare:

                async def status(token: str) -> int:
                    async with bare.get(url, headers={"Authorization": f"Bearer {token}"}) as resp:
                        return resp.status

                assert await status(old) == 200 and await status(new) == 401
                # Rotate the token in the file: no restart, the watcher sees the change.
                write([TokenEntry(name="rita2", role="rm", rm_id=rm, hash=hash_token(new, log2_n=10))])
                deadline = time.monotonic() + 10
                while await status(new) != 200:
                    assert time.monotonic() < deadline, "the changed token file was not reloaded"
                    await asyncio.sleep(0.1)
                assert await status(old) == 401
            async with http.get(url) as resp:
                assert resp.status == 401  # the session of the removed token ended with it

            # A broken file is refused and the one in force stays; SIGHUP rereads at once.
            errors = _count("clientpulse_api_config_reloads_total", file="tokens", result="error")
            tokens_file.write_text("tokens: [{name: x}]")
            files.reload("test")
            assert _count("clientpulse_api_config_reloads_total", file="tokens", result="error") == errors + 1
            async with aiohttp.ClientSession() as bare, bare.get(url, headers={"Authorization": f"Bearer {new}"}) as r:
                assert r.status == 200
            write([TokenEntry(name="rita", role="rm", rm_id=rm, hash=hash_token(old, log2_n=10))])
            oks = _count("clientpulse_api_config_reloads_total", file="tokens", result="ok")
            os.kill(os.getpid(), signal.SIGHUP)
            deadline = time.monotonic() + 10
            while _count("clientpulse_api_config_reloads_total", file="tokens", result="ok") <= oks:
                assert time.monotonic() < deadline
                await asyncio.sleep(0.05)
            assert principals.by_name("rita") is not None and principals.by_name("rita2") is None
    finally:
        await files.stop()
        await server.close()
        await store.close()


# ---------------------------------------------------------------------- rate limits
async def test_failed_authentications_are_rate_limited_per_address_without_locking_out_known_tokens(
    database_url: str,
) -> None:
    api = await _start(database_url, auth_failure_burst=5, auth_failure_per_minute=6)
    try:
        async with aiohttp.ClientSession() as http:
            known = await http.get(f"{api.url}/api/alerts", headers=api.auth("alice"))
            assert known.status == 200
            before = _count("clientpulse_api_rate_limited_total", limit="address")
            statuses = []
            for i in range(8):
                async with http.get(f"{api.url}/api/alerts", headers={"Authorization": f"Bearer guess-{i}"}) as r:
                    statuses.append(r.status)
                    if r.status == 429:
                        assert int(r.headers["Retry-After"]) >= 1
                        assert (await r.json())["error"] == "rate_limited"
            assert statuses == [401] * 5 + [429] * 3
            assert _count("clientpulse_api_rate_limited_total", limit="address") == before + 3
            # A token this process verified before still works from the same address (people behind one proxy).
            async with http.get(f"{api.url}/api/alerts", headers=api.auth("alice")) as r:
                assert r.status == 200
            # A fresh token from the refused address waits for the budget like any other attempt.
            async with http.get(f"{api.url}/api/alerts", headers=api.auth("bob")) as r:
                assert r.status == 429
            # Another address (127.0.0.2 on the loopback) is not affected.
            connector = aiohttp.TCPConnector(local_addr=("127.0.0.2", 0))
            async with (
                aiohttp.ClientSession(connector=connector) as other,
                other.get(f"{api.url}/api/alerts", headers=api.auth("bob")) as r,
            ):
                assert r.status == 200
    finally:
        await api.server.close()
        await api.store.close()


async def test_the_global_budget_refuses_every_address_once_spent(database_url: str) -> None:
    api = await _start(
        database_url, auth_failure_burst=100, auth_global_failure_burst=3, auth_global_failure_per_minute=1
    )
    try:
        statuses = []
        for i in range(5):
            connector = aiohttp.TCPConnector(local_addr=(f"127.0.0.{10 + i}", 0))
            headers = {"Authorization": f"Bearer x-{i}"}
            async with (
                aiohttp.ClientSession(connector=connector) as http,
                http.get(f"{api.url}/api/alerts", headers=headers) as r,
            ):
                statuses.append(r.status)
        assert statuses == [401, 401, 401, 429, 429]
    finally:
        await api.server.close()
        await api.store.close()


# ---------------------------------------------------------------------- cursors, locks, times
async def test_cursors_are_bound_to_the_caller(api: Api) -> None:
    alerts = [make_alert(rm_id=api.rm_a, minute=i) for i in range(3)]
    await api.store.insert_alerts(alerts)
    async with aiohttp.ClientSession() as http:
        params = {"rm_id": api.rm_a, "limit": "1"}
        async with http.get(f"{api.url}/api/alerts", params=params, headers=api.auth("alice")) as r:
            cursor = (await r.json())["next_cursor"]
        assert cursor
        async with http.get(
            f"{api.url}/api/alerts", params={**params, "cursor": cursor}, headers=api.auth("alice")
        ) as r:
            assert r.status == 200 and len((await r.json())["alerts"]) == 1
        # maria may see rm_a's alerts, but this cursor was given to alice.
        async with http.get(
            f"{api.url}/api/alerts", params={**params, "cursor": cursor}, headers=api.auth("maria")
        ) as r:
            body = await r.json()
            assert r.status == 400 and "cursor" in body["message"]


async def test_acting_on_another_rms_alert_takes_no_row_lock_and_waits_for_none(api: Api) -> None:
    theirs = make_alert(rm_id=api.rm_b)
    await api.store.insert_alerts([theirs])
    holder = await asyncpg.connect(api.store.dsn)
    try:
        tx = holder.transaction()
        await tx.start()
        await holder.execute("SELECT 1 FROM alerts WHERE alert_id = $1 FOR UPDATE", theirs.alert_id)
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as http:
            # With bob's row locked, alice's ack would block until the lock is released if it tried to lock.
            started = time.monotonic()
            async with http.post(f"{api.url}/api/alerts/{theirs.alert_id}/ack", headers=api.auth("alice")) as r:
                assert r.status == 404
            assert time.monotonic() - started < 5
            # And while alice's requests run, no lock on bob's row is hers: bob still acts at once afterwards.
        await tx.rollback()
        async with aiohttp.ClientSession() as http:
            tasks = [
                http.post(f"{api.url}/api/alerts/{theirs.alert_id}/ack", headers=api.auth("alice")) for _ in range(20)
            ]
            answers = await asyncio.gather(*tasks)
            assert {a.status for a in answers} == {404}
            async with http.post(f"{api.url}/api/alerts/{theirs.alert_id}/ack", headers=api.auth("bob")) as r:
                assert r.status == 200
    finally:
        await holder.close()


async def test_times_at_the_edges_come_back_with_their_offset_and_page_past(api: Api) -> None:
    rm = api.rm_a
    conn = await asyncpg.connect(api.store.dsn)
    try:
        # Stored before alert times were bounded (asyncpg writes these as +/-infinity); their priority as
        # migration 0003 gave it (warning 40 + complaint 5).
        for alert_id, at in (
            (f"{rm}-max", "9999-12-31T23:59:59.999999+00:00"),
            (f"{rm}-min", "0001-01-01T00:00:00+00:00"),
            (f"{rm}-now", "2026-03-01T10:00:00+00:00"),
        ):
            await conn.execute(
                "INSERT INTO alerts (alert_id, type, severity, priority, client_id, rm_id, tier, occurred_at,"
                " detected_at, title, facts, rule_version, source_event_ids)"
                " VALUES ($1, 'complaint', 'warning', 45, 'c-edge', $2, NULL, $3, $3, 't', '{}', 'v', '{}')",
                alert_id,
                rm,
                datetime.fromisoformat(at),
            )
    finally:
        await conn.close()
    seen: list[dict[str, Any]] = []
    cursor = None
    async with aiohttp.ClientSession() as http:
        for _ in range(5):
            params = {"rm_id": rm, "limit": "1", **({"cursor": cursor} if cursor else {})}
            async with http.get(f"{api.url}/api/alerts", params=params, headers=api.auth("alice")) as r:
                body = await r.json()
                assert r.status == 200, body
            seen.extend(body["alerts"])
            cursor = body["next_cursor"]
            if cursor is None:
                break
        async with http.get(f"{api.url}/api/alerts/{rm}-max", headers=api.auth("alice")) as r:
            single = await r.json()
    assert [a["alert_id"] for a in seen] == [f"{rm}-max", f"{rm}-now", f"{rm}-min"]
    assert seen[0]["occurred_at"] == "9999-12-31T23:59:59.999999+00:00"
    assert seen[-1]["occurred_at"] == "0001-01-01T00:00:00+00:00"
    assert single["detected_at"] == "9999-12-31T23:59:59.999999+00:00"
    for alert in seen:
        for field in ("occurred_at", "detected_at", "stored_at", "updated_at"):
            assert datetime.fromisoformat(alert[field]).tzinfo is not None, (alert["alert_id"], field)
    assert datetime.fromisoformat(seen[1]["occurred_at"]) == datetime(2026, 3, 1, 10, tzinfo=UTC)
    assert (await api.store.get_alert(f"{rm}-min", Scope(None, True))) is not None


# ---------------------------------------------------------------------- headers and errors
async def test_every_response_has_the_security_headers_and_no_versions(api: Api) -> None:
    alert = make_alert(rm_id=api.rm_a)
    await api.store.insert_alerts([alert])
    async with aiohttp.ClientSession() as http:
        for method, path, headers in (
            ("GET", f"/api/alerts/{alert.alert_id}", api.auth("alice")),
            ("GET", "/api/alerts", {}),
            ("GET", "/healthz", {}),
            ("GET", "/signin", {}),
            ("GET", "/nowhere", {}),
            ("DELETE", "/api/alerts", api.auth("alice")),
        ):
            async with http.request(method, f"{api.url}{path}", headers=headers) as r:
                h = r.headers
                assert h["X-Content-Type-Options"] == "nosniff", path
                assert h["X-Frame-Options"] == "DENY" and "frame-ancestors 'none'" in h["Content-Security-Policy"]
                assert h["Server"] == "clientpulse", h["Server"]
                if path.startswith("/api"):
                    assert h["Cache-Control"] == "no-store"
                    assert r.content_type == "application/json"
        async with http.delete(f"{api.url}/api/alerts/{alert.alert_id}", headers=api.auth("alice")) as r:
            assert r.status == 405 and set(r.headers["Allow"].split(", ")) == {"GET", "HEAD"}
            assert (await r.json())["error"] == "method_not_allowed"
        async with http.get(f"{api.url}/api/alerts/{alert.alert_id}/ack", headers=api.auth("alice")) as r:
            assert r.status == 405 and r.headers["Allow"] == "POST"


def _raw(url: str, payload: bytes) -> bytes:
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(payload)
        chunks = []
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                break
            chunks.append(chunk)
    return b"".join(chunks)


async def test_a_request_the_parser_refuses_is_answered_in_json_without_echoing_it(api: Api) -> None:
    secret = "tok-leaked-" + uuid.uuid4().hex
    raw = await asyncio.to_thread(
        _raw,
        api.url,
        f"GET /api/alerts HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {secret}\x00tail\r\n\r\n".encode(),
    )
    head, _, body = raw.partition(b"\r\n\r\n")
    assert head.split(b" ", 2)[1] == b"400"
    assert b"Content-Type: application/json" in head and b"X-Content-Type-Options: nosniff" in head
    assert b"Server: clientpulse\r\n" in head
    assert secret.encode() not in raw and b'"error":"bad_request"' in body

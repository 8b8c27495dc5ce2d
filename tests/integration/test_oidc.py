"""Single sign-on and JWT bearer tokens against a real OpenID Connect provider (oidc-provider, Node.js)."""

from __future__ import annotations

import asyncio
import base64
import json
import re
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from prometheus_client import REGISTRY

from streams.api.app import create_api
from streams.api.auth import Principals
from streams.api.identity import Teams
from streams.api.oidc import OidcClient, OidcConfig
from streams.sink.store import AlertStore
from streams.tools.embedded import free_port
from tests.integration.api_support import ApiTestServer, api_settings
from tests.integration.oidc_support import API_AUDIENCE, Provider, access_token, provider_login, write_keys
from tests.integration.test_store import make_alert

pytestmark = pytest.mark.db


@dataclass
class Sso:
    provider: Provider
    api: str
    store: AlertStore
    keys_dir: Path
    cli_client: dict[str, Any]
    rm_a: str
    rm_b: str


def _failures(reason: str) -> float:
    return REGISTRY.get_sample_value("clientpulse_api_auth_failures_total", {"reason": reason}) or 0.0


@pytest.fixture
async def sso(database_url: str, tmp_path: Path) -> AsyncIterator[Sso]:
    tag = uuid.uuid4().hex[:6]
    rm_a, rm_b = f"rm-a-{tag}", f"rm-b-{tag}"
    api_port = free_port()
    api = f"http://127.0.0.1:{api_port}"
    web_client = {
        "client_id": "clientpulse",
        "client_secret": "web-secret-" + uuid.uuid4().hex,
        "redirect_uris": [f"{api}/signin/oidc/callback"],
    }
    cli_client = {
        "client_id": "rm-cli",
        "client_secret": "cli-secret-" + uuid.uuid4().hex,
        "redirect_uris": ["http://127.0.0.1:9/cli-callback"],
    }
    accounts = {
        "alice": {"clientpulse_role": "rm", "rm_id": rm_a},
        "maria": {"clientpulse_role": "manager"},  # no team claim: the org file decides
        "visitor": {},  # signed in at the provider, no clientpulse role
    }
    write_keys(tmp_path / "keys-1.json", "key-1")
    provider = Provider(tmp_path, [web_client, cli_client], accounts, access_ttl=300).start(tmp_path / "keys-1.json")
    settings = api_settings(
        oidc_issuer=provider.issuer,
        oidc_client_id=web_client["client_id"],
        oidc_client_secret=web_client["client_secret"],
        oidc_redirect_url=web_client["redirect_uris"][0],
        oidc_scopes="openid profile clientpulse",
        oidc_provider_name="Bank SSO",
        oidc_api_audience=API_AUDIENCE,
        oidc_clock_skew=0,
        oidc_jwks_min_refresh_seconds=0,
    )
    config = OidcConfig.from_settings(settings)
    assert config is not None
    oidc = OidcClient(config)
    store = AlertStore(database_url)
    await store.connect()
    await store.migrate()
    teams = Teams({"maria": frozenset({rm_b})})
    app = create_api(store, Principals([]), settings=settings, teams=teams, oidc=oidc)
    server = ApiTestServer(app, port=api_port)
    await server.start_server()
    try:
        yield Sso(provider, api, store, tmp_path, cli_client, rm_a, rm_b)
    finally:
        await server.close()
        await oidc.close()
        await store.close()
        provider.stop()


async def _browser_sign_in(sso: Sso, http: aiohttp.ClientSession, account: str) -> aiohttp.ClientResponse:
    async with http.get(f"{sso.api}/signin") as page:
        text = await page.text()
        assert page.status == 200
    link = re.search(r'<a class="sso" href="([^"]+)">Sign in with Bank SSO</a>', text)
    assert link is not None, text
    async with http.get(f"{sso.api}{link[1]}", allow_redirects=False) as start:
        assert start.status == 302
        authorize = start.headers["Location"]
    assert authorize.startswith(f"{sso.provider.issuer}/auth?")
    assert "code_challenge_method=S256" in authorize and "nonce=" in authorize
    back = await provider_login(http, authorize, account)
    assert back.startswith(f"{sso.api}/signin/oidc/callback?")
    return await http.get(back, allow_redirects=False)


async def test_browser_signs_in_through_the_provider_and_acts_with_its_session(sso: Sso) -> None:
    mine, theirs = make_alert(rm_id=sso.rm_a), make_alert(rm_id=sso.rm_b)
    await sso.store.insert_alerts([mine, theirs])
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
        callback = await _browser_sign_in(sso, http, "alice")
        assert callback.status == 303 and callback.headers["Location"] == "/"
        cookie = callback.headers["Set-Cookie"]
        assert "cp_session=" in cookie and "HttpOnly" in cookie and "SameSite=Lax" in cookie

        async with http.get(f"{sso.api}/api/alerts", params={"limit": "200"}) as resp:
            listed = await resp.json()
            assert resp.status == 200, listed
        assert {a["alert_id"] for a in listed["alerts"]} == {mine.alert_id}

        ack = f"{sso.api}/api/alerts/{mine.alert_id}/ack"
        async with http.post(ack, json={"note": "called"}) as resp:
            assert resp.status == 403 and (await resp.json())["error"] == "csrf_failed"
        async with http.get(f"{sso.api}/inbox") as resp:
            page = await resp.text()
        csrf = re.search(r'<meta name="csrf-token" content="([^"]+)">', page)
        assert csrf is not None and "Signed in as alice (rm)" in page
        async with http.post(ack, json={"note": "called"}, headers={"X-CSRF-Token": csrf[1] + "x"}) as resp:
            assert resp.status == 403
        async with http.post(ack, json={"note": "called"}, headers={"X-CSRF-Token": csrf[1]}) as resp:
            acked = await resp.json()
            assert resp.status == 200, acked
        assert acked["events"][-1]["actor"] == "alice" and acked["events"][-1]["actor_role"] == "rm"

        # Sign-out needs the page's token too, then ends the session for good.
        async with http.post(f"{sso.api}/signout", data={"csrf_token": "forged"}, allow_redirects=False) as resp:
            assert resp.status == 403
        async with http.post(f"{sso.api}/signout", data={"csrf_token": csrf[1]}, allow_redirects=False) as resp:
            assert resp.status == 303 and resp.headers["Location"] == "/signin"
        async with http.get(f"{sso.api}/api/alerts") as resp:
            assert resp.status == 401


async def test_a_manager_without_a_team_claim_gets_the_org_files_team(sso: Sso) -> None:
    theirs = make_alert(rm_id=sso.rm_b)
    other = make_alert(rm_id=sso.rm_a)
    await sso.store.insert_alerts([theirs, other])
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
        assert (await _browser_sign_in(sso, http, "maria")).status == 303
        async with http.get(f"{sso.api}/api/alerts", params={"limit": "200"}) as resp:
            ids = {a["alert_id"] for a in (await resp.json())["alerts"]}
        assert theirs.alert_id in ids and other.alert_id not in ids


async def test_someone_without_a_clientpulse_role_is_not_signed_in(sso: Sso) -> None:
    before = _failures("claims")
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
        callback = await _browser_sign_in(sso, http, "visitor")
        assert callback.status == 403
        assert "no clientpulse role" in await callback.text()
        assert "cp_session=" not in callback.headers.get("Set-Cookie", "")
    assert _failures("claims") == before + 1


async def test_a_callback_replayed_or_from_another_browser_is_refused(sso: Sso) -> None:
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
        async with http.get(f"{sso.api}/signin/oidc", allow_redirects=False) as start:
            authorize = start.headers["Location"]
        back = await provider_login(http, authorize, "alice")
    # The victim's browser never started this sign-in: no binding cookie, so no session.
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as other:
        resp = await other.get(back, allow_redirects=False)
        assert resp.status == 401 and "cp_session=" not in resp.headers.get("Set-Cookie", "")
    # The attempt is used up: the same answer cannot be replayed either.
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as again:
        assert (await again.get(back, allow_redirects=False)).status == 401


def _tamper(token: str) -> str:
    header, payload, signature = token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    claims["rm_id"] = "rm-someone-else"
    forged = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    return f"{header}.{forged}.{signature}"


async def test_provider_access_tokens_work_as_bearer_tokens_and_forgeries_do_not(sso: Sso) -> None:
    mine = make_alert(rm_id=sso.rm_a)
    await sso.store.insert_alerts([mine])
    token = await access_token(sso.provider, sso.cli_client, "alice")
    async with aiohttp.ClientSession() as http:

        async def get(bearer: str) -> tuple[int, Any]:
            async with http.get(
                f"{sso.api}/api/alerts/{mine.alert_id}", headers={"Authorization": f"Bearer {bearer}"}
            ) as r:
                return r.status, await r.json()

        status, body = await get(token)
        assert status == 200 and body["alert_id"] == mine.alert_id

        before = _failures("bad_signature")
        status, body = await get(_tamper(token))
        assert status == 401 and body["error"] == "unauthenticated"
        assert _failures("bad_signature") == before + 1

        before = _failures("wrong_audience")
        elsewhere = await access_token(sso.provider, sso.cli_client, "alice", resource="https://other.test/api")
        assert (await get(elsewhere))[0] == 401
        assert _failures("wrong_audience") == before + 1

        # The provider rotates its signing key: new tokens verify after one key refetch, old ones no longer do.
        write_keys(sso.keys_dir / "keys-2.json", "key-2")
        sso.provider.restart(sso.keys_dir / "keys-2.json")
        rotated = await access_token(sso.provider, sso.cli_client, "alice")
        assert jwt_kid(rotated) == "key-2"
        assert (await get(rotated))[0] == 200
        before = _failures("unknown_key")
        assert (await get(token))[0] == 401
        assert _failures("unknown_key") == before + 1

        # Expiry: a token that lived its lifetime (no clock skew allowed here) is refused as expired.
        sso.provider.access_ttl = 4
        sso.provider.restart(sso.keys_dir / "keys-2.json")
        short = await access_token(sso.provider, sso.cli_client, "alice")
        assert (await get(short))[0] == 200
        before = _failures("expired")
        deadline = time.monotonic() + 20
        while (await get(short))[0] == 200:
            assert time.monotonic() < deadline, "the token never expired"
            await asyncio.sleep(0.25)
        assert _failures("expired") == before + 1


def jwt_kid(token: str) -> str:
    header = token.split(".", 1)[0]
    return str(json.loads(base64.urlsafe_b64decode(header + "=" * (-len(header) % 4)))["kid"])

"""A real OpenID Connect provider for the tests: oidc-provider (npm, tests/oidc) run by Node.js.

`make` installs it (npm ci in tests/oidc); when node_modules is missing the
tests install it the same way. Sign-in goes through the provider's own
development login and consent forms, as a browser would.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import os
import re
import secrets
import shutil
import subprocess
import time
import urllib.request
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urljoin, urlsplit

import aiohttp
import jwt
from cryptography.hazmat.primitives.asymmetric import rsa

from streams.tools.embedded import free_port, terminate_group
from tests.support import ROOT, die_with_parent

OIDC_DIR = ROOT / "tests" / "oidc"
API_AUDIENCE = "https://clientpulse.test/api"


def ensure_installed() -> None:
    """node_modules of tests/oidc, from its committed package-lock.json."""
    if (OIDC_DIR / "node_modules" / "oidc-provider").is_dir():
        return
    npm = shutil.which("npm")
    if npm is None or shutil.which("node") is None:
        raise RuntimeError("the OpenID Connect tests need Node.js 20+ and npm (apt-get install nodejs npm)")
    subprocess.run([npm, "ci", "--no-audit", "--no-fund"], cwd=OIDC_DIR, check=True, timeout=600)


def write_keys(path: Path, kid: str) -> None:
    """A fresh RSA signing key as a private JWK set, the form oidc-provider takes."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    jwk: dict[str, Any] = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(key))
    jwk.update(kid=kid, use="sig", alg="RS256")
    path.write_text(json.dumps({"keys": [jwk]}))


@dataclass
class Provider:
    """oidc-provider on a loopback port; `restart(keys)` brings it back with other signing keys."""

    workdir: Path
    clients: list[dict[str, Any]]
    accounts: dict[str, dict[str, Any]]
    access_ttl: int = 300
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None

    @property
    def issuer(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, keys_file: Path) -> Provider:
        ensure_installed()
        env = {
            **os.environ,
            "OIDC_PORT": str(self.port),
            "OIDC_JWKS_FILE": str(keys_file),
            "OIDC_CLIENTS": json.dumps(self.clients),
            "OIDC_ACCOUNTS": json.dumps(self.accounts),
            "OIDC_API": API_AUDIENCE,
            "OIDC_ACCESS_TTL": str(self.access_ttl),
            "NODE_ENV": "development",
        }
        log = open(self.workdir / "oidc-provider.log", "ab")  # noqa: SIM115
        self.proc = subprocess.Popen(
            ["node", "provider.mjs"],
            cwd=OIDC_DIR,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=die_with_parent,
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"oidc-provider exited: {(self.workdir / 'oidc-provider.log').read_text()}")
            url = f"{self.issuer}/.well-known/openid-configuration"
            with contextlib.suppress(OSError), urllib.request.urlopen(url, timeout=2) as resp:
                if resp.status == 200:
                    return self
            time.sleep(0.1)
        raise AssertionError("oidc-provider did not start within 30 s")

    def stop(self) -> None:
        if self.proc is not None:
            terminate_group(self.proc, timeout=10)
            self.proc = None

    def restart(self, keys_file: Path) -> None:
        self.stop()
        self.start(keys_file)


class _Forms(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.forms: list[dict[str, Any]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "form":
            self.forms.append({"action": a.get("action") or "", "fields": {}})
        elif tag == "input" and self.forms and a.get("name"):
            self.forms[-1]["fields"][a["name"]] = a.get("value") or ""


def _forms(text: str) -> list[dict[str, Any]]:
    parser = _Forms()
    parser.feed(text)
    return parser.forms


async def provider_login(http: aiohttp.ClientSession, authorize_url: str, account: str) -> str:
    """Follow the provider's login and consent pages as `account`; return the redirect back to the client."""
    url = authorize_url
    for _ in range(12):
        async with http.get(url, allow_redirects=False) as resp:
            if resp.status in (302, 303):
                url = urljoin(url, resp.headers["Location"])
                if not url.startswith(authorize_url.split("/auth", 1)[0]):
                    return url  # back to the client
                continue
            text = await resp.text()
            assert resp.status == 200, text
        form = _forms(text)[0]
        fields = dict(form["fields"])
        if fields.get("prompt") == "login":
            fields.update(login=account, password="any")
        async with http.post(urljoin(url, form["action"]), data=fields, allow_redirects=False) as resp:
            assert resp.status in (302, 303), await resp.text()
            url = urljoin(url, resp.headers["Location"])
            if not url.startswith(authorize_url.split("/auth", 1)[0]):
                return url
    raise AssertionError("the provider's sign-in did not come back to the client")


async def access_token(provider: Provider, client: dict[str, Any], account: str, resource: str = API_AUDIENCE) -> str:
    """An API client's access token for `account` (code flow with PKCE against the provider)."""
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    redirect = client["redirect_uris"][0]
    query = {
        "response_type": "code",
        "client_id": client["client_id"],
        "redirect_uri": redirect,
        "scope": "openid profile clientpulse",
        "state": secrets.token_urlsafe(16),
        "nonce": secrets.token_urlsafe(16),
        "code_challenge": challenge,
        "code_challenge_method": "S256",
        "resource": resource,
    }
    jar = aiohttp.CookieJar(unsafe=True)
    async with aiohttp.ClientSession(cookie_jar=jar) as http:
        back = await provider_login(http, f"{provider.issuer}/auth?{urlencode(query)}", account)
        code = parse_qs(urlsplit(back).query)["code"][0]
        async with http.post(
            f"{provider.issuer}/token",
            data={
                "grant_type": "authorization_code",
                "code": code,
                "redirect_uri": redirect,
                "code_verifier": verifier,
                "resource": resource,
            },
            headers={
                "Authorization": "Basic "
                + base64.b64encode(f"{client['client_id']}:{client['client_secret']}".encode()).decode()
            },
        ) as resp:
            body = await resp.json()
            assert resp.status == 200, body
    token = str(body["access_token"])
    assert re.match(r"^eyJ[\w-]+\.[\w-]+\.[\w-]+$", token), "the provider did not issue a JWT access token"
    return token

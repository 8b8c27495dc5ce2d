"""Who is making a request: a bearer token (API token or the provider's JWT) or a browser session.

`Gatekeeper.identify(request)` is the one call every route and page uses; it
also gives the CSRF token a page embeds for its state-changing requests.

Failed authentications spend the caller's budget (per client address and
global, handlers/throttle.py); an empty budget is a 429 before any check.
Tokens and sessions that are already known good never touch the budget, so a
flood from one address does not lock out the people behind the same proxy.
API token checks that need scrypt wait in a bounded queue (two at a time);
tokens that cannot match any configured hash never get there (auth.py).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import logging
import math
import re
import secrets
from dataclasses import dataclass
from typing import Any, Literal

from aiohttp import web

from handlers.access import Principal, with_org_team
from handlers.throttle import FailureBudget
from streams import metrics
from streams.api.auth import Principals, bearer_token
from streams.api.oidc import OidcClient, ProviderUnavailable, TokenRejected, looks_like_jwt
from streams.settings import Settings
from streams.sink.store import AlertStore

log = logging.getLogger("clientpulse.api.identity")

SCRYPT_SLOTS = 2
SIGNIN_COOKIE_SECONDS = 600
_SESSION_ID = re.compile(r"^[A-Za-z0-9_-]{43}$")
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


class AuthFailure(Exception):
    """Authentication refused: `status` 401 (bad credentials), 429 (budget empty, or checks queue full), 503."""

    def __init__(self, status: int, code: str, message: str, *, retry_after: int | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.retry_after = status, code, message, retry_after


@dataclass(frozen=True, slots=True)
class Identity:
    principal: Principal
    via: Literal["bearer", "session"]
    csrf_token: str | None
    """For a session: the token its pages embed (`<meta name="csrf-token">`) and send back in an
    `X-CSRF-Token` header or a `csrf_token` form field. None for bearer requests, which need none."""


class Teams:
    """The org file's manager -> RM ids, swapped whole at a reload."""

    def __init__(self, teams: dict[str, frozenset[str]] | None = None) -> None:
        self.teams: dict[str, frozenset[str]] = teams or {}

    def replace(self, teams: dict[str, frozenset[str]]) -> None:
        self.teams = teams


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _hash_id(value: str) -> bytes:
    return hashlib.sha256(value.encode("ascii")).digest()


_IDENTITY_KEY: Any = web.RequestKey("identity", object) if hasattr(web, "RequestKey") else "identity"


class Gatekeeper:
    """Credentials -> principal, sessions, CSRF tokens; one per HTTP app."""

    def __init__(
        self,
        store: AlertStore,
        principals: Principals,
        teams: Teams,
        settings: Settings,
        oidc: OidcClient | None = None,
    ) -> None:
        self.store = store
        self.principals = principals
        self.teams = teams
        self.oidc = oidc
        self.settings = settings
        self.budget = FailureBudget(
            per_address_burst=settings.auth_failure_burst,
            per_address_per_second=settings.auth_failure_per_minute / 60,
            global_burst=settings.auth_global_failure_burst,
            global_per_second=settings.auth_global_failure_per_minute / 60,
        )
        self._slots = asyncio.Semaphore(SCRYPT_SLOTS)
        self._waiting = 0
        self._secrets: dict[str, bytes] = {}
        secure = settings.session_cookie_secure
        self.session_cookie = "__Host-cp_session" if secure else "cp_session"
        self.signin_cookie = "__Host-cp_signin" if secure else "cp_signin"

    # ------------------------------------------------------------------ shared secrets
    async def secret(self, name: str) -> bytes:
        """A key all replicas share (kept in PostgreSQL): `csrf`, `cursor`."""
        key = self._secrets.get(name)
        if key is None:
            key = self._secrets[name] = await self.store.api_secret(name)
        return key

    # ------------------------------------------------------------------ addresses and budgets
    def client_address(self, request: web.Request) -> str:
        hops = self.settings.api_trusted_proxies
        if hops:
            forwarded = [h.strip() for h in ",".join(request.headers.getall("X-Forwarded-For", [])).split(",")]
            forwarded = [h for h in forwarded if h]
            if len(forwarded) >= hops:
                return forwarded[-hops][:64]
        return request.remote or "unknown"

    def check_budget(self, address: str) -> None:
        refusal = self.budget.check(address)
        if refusal is not None:
            metrics.AUTH_RATE_LIMITED.labels(limit=refusal.limit).inc()
            raise AuthFailure(
                429,
                "rate_limited",
                "too many failed authentications; retry later",
                retry_after=max(1, math.ceil(refusal.retry_after)),
            )

    def _fail(self, address: str, reason: str, message: str) -> AuthFailure:
        self.budget.spend(address)
        metrics.AUTH_FAILURES.labels(reason=reason).inc()
        log.info("authentication failed from %s: %s", address, reason)
        return AuthFailure(401, "unauthenticated", message)

    async def _scrypt(self, token: str) -> Principal | None:
        if self._waiting >= self.settings.auth_queue_size:
            metrics.AUTH_RATE_LIMITED.labels(limit="queue").inc()
            raise AuthFailure(429, "rate_limited", "too many token checks at once; retry shortly", retry_after=1)
        self._waiting += 1
        try:
            async with self._slots:
                return await asyncio.get_running_loop().run_in_executor(None, self.principals.authenticate, token)
        finally:
            self._waiting -= 1

    def resolve(self, principal: Principal) -> Principal:
        return with_org_team(principal, self.teams.teams)

    # ------------------------------------------------------------------ credentials
    async def check_secret(self, request: web.Request, secret: str) -> Principal:
        """The principal of a bearer token or a pasted sign-in token; AuthFailure otherwise."""
        known = self.principals.cached(secret)
        if known is not None:
            return self.resolve(known)
        address = self.client_address(request)
        self.check_budget(address)
        if self.oidc is not None and self.oidc.config.api_audience is not None and looks_like_jwt(secret):
            try:
                principal = await self.oidc.access_token_principal(secret)
            except TokenRejected as exc:
                raise self._fail(address, exc.reason, f"token refused: {exc}") from None
            except ProviderUnavailable as exc:
                log.warning("identity provider unavailable: %s", exc)
                raise AuthFailure(503, "unavailable", "the identity provider is unavailable; retry later") from None
            return self.resolve(principal)
        if not self.principals.candidates(secret):
            raise self._fail(address, "unknown_token", "unknown token")
        found = await self._scrypt(secret)
        if found is None:
            raise self._fail(address, "unknown_token", "unknown token")
        return self.resolve(found)

    async def identify(self, request: web.Request) -> Identity | None:
        """The request's identity: bearer token first, else the session cookie; None with neither.

        Raises AuthFailure for a bad bearer token. A session that ended is simply no identity.
        """
        if _IDENTITY_KEY in request:
            cached: Identity | None = request[_IDENTITY_KEY]
            return cached
        identity: Identity | None = None
        header = request.headers.get("Authorization")
        if header is not None:
            token = bearer_token(header)
            if token is None:
                address = self.client_address(request)
                self.check_budget(address)
                raise self._fail(address, "malformed", "malformed `Authorization: Bearer <token>` header")
            identity = Identity(await self.check_secret(request, token), "bearer", None)
        else:
            session_id = request.cookies.get(self.session_cookie)
            if session_id is not None and _SESSION_ID.match(session_id):
                principal = await self._session_principal(session_id)
                if principal is not None:
                    identity = Identity(principal, "session", await self._csrf_for("session", session_id))
        request[_IDENTITY_KEY] = identity
        return identity

    # ------------------------------------------------------------------ sessions
    async def _session_principal(self, session_id: str) -> Principal | None:
        idle = self.settings.session_idle_seconds
        found = await self.store.get_session(_hash_id(session_id), idle_seconds=idle, touch_after=min(60.0, idle / 10))
        if found is None:
            return None
        source, data = found
        if source == "token":
            # Re-read from the token file as it is now: a removed token ends its sessions, a changed team applies.
            current = self.principals.by_name(str(data.get("name")))
            return self.resolve(current) if current is not None else None
        team = data.get("team") or []
        return self.resolve(Principal(data["name"], data["role"], data.get("rm_id"), frozenset(team)))

    async def start_session(self, response: web.StreamResponse, principal: Principal, source: str) -> None:
        session_id = secrets.token_urlsafe(32)
        data: dict[str, Any] = {"name": principal.name}
        if source == "oidc":
            data.update(role=principal.role, rm_id=principal.rm_id, team=sorted(principal.team))
        await self.store.create_session(
            _hash_id(session_id),
            source,
            data,
            absolute_seconds=self.settings.session_absolute_seconds,
            idle_seconds=self.settings.session_idle_seconds,
        )
        self._set_cookie(response, self.session_cookie, session_id, max_age=int(self.settings.session_absolute_seconds))
        response.del_cookie(self.signin_cookie, path="/")
        metrics.SIGNINS.labels(method=source).inc()

    async def end_session(self, request: web.Request, response: web.StreamResponse) -> None:
        session_id = request.cookies.get(self.session_cookie)
        valid = session_id is not None and _SESSION_ID.match(session_id) is not None
        if valid and await self.store.delete_session(_hash_id(str(session_id))):
            metrics.SIGNOUTS.inc()
        response.del_cookie(self.session_cookie, path="/", secure=self.settings.session_cookie_secure)

    def _set_cookie(self, response: web.StreamResponse, name: str, value: str, *, max_age: int) -> None:
        response.set_cookie(
            name,
            value,
            max_age=max_age,
            path="/",
            secure=self.settings.session_cookie_secure,
            httponly=True,
            samesite="Lax",
        )

    # ------------------------------------------------------------------ CSRF
    async def _csrf_for(self, purpose: str, value: str) -> str:
        key = await self.secret("csrf")
        return _b64(hmac.new(key, f"{purpose}\x00{value}".encode(), hashlib.sha256).digest())

    @staticmethod
    def csrf_matches(identity: Identity, submitted: str | None) -> bool:
        if identity.via == "bearer":
            return True
        expected = identity.csrf_token
        return bool(expected and submitted and hmac.compare_digest(expected.encode(), submitted.encode("utf-8")))

    async def signin_binding(self, request: web.Request, response: web.StreamResponse) -> tuple[str, str]:
        """(browser value, form CSRF token) of the sign-in page, setting the binding cookie when it is new."""
        value = request.cookies.get(self.signin_cookie)
        if value is None or _SESSION_ID.match(value) is None:
            value = secrets.token_urlsafe(32)
            self._set_cookie(response, self.signin_cookie, value, max_age=SIGNIN_COOKIE_SECONDS)
        return value, await self._csrf_for("signin", value)

    async def signin_form_ok(self, request: web.Request, submitted: str | None) -> bool:
        value = request.cookies.get(self.signin_cookie)
        if value is None or _SESSION_ID.match(value) is None or not submitted:
            return False
        expected = await self._csrf_for("signin", value)
        return hmac.compare_digest(expected.encode(), submitted.encode("utf-8"))

    @staticmethod
    def browser_hash(value: str) -> bytes:
        return _hash_id(value)

    @staticmethod
    def state_hash(state: str) -> bytes:
        return hashlib.sha256(state.encode("utf-8")).digest()

"""OpenID Connect: the bank's identity provider signs people in (authorization code with PKCE) and issues
the JWT access tokens API clients may send as bearer tokens.

PyJWT (with `cryptography`) checks signatures and the registered claims; this
module only fetches the provider's metadata and keys, keeps them, and maps
claims to a principal. Keys are refetched when a token names a key id not seen
before (the provider rotated its keys), at most once per
CLIENTPULSE_OIDC_JWKS_MIN_REFRESH_SECONDS so forged key ids cannot make us
hammer the provider.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import logging
import re
import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, cast
from urllib.parse import quote, urlencode

import aiohttp
import jwt

from handlers.access import Principal, Role
from streams.settings import ENV_NAMES, ConfigError, Settings

log = logging.getLogger("clientpulse.api.oidc")

ROLES: tuple[Role, ...] = ("rm", "manager", "ops")
_ID = re.compile(r"^[^\x00-\x1f\x7f]{1,64}$")
_NAME = re.compile(r"^[^\x00-\x1f\x7f]{1,256}$")
_FORBIDDEN_ALGORITHMS = {"none", "HS256", "HS384", "HS512"}
HTTP_TIMEOUT = 10.0


class TokenRejected(Exception):
    """A token or a sign-in that does not hold; `reason` is a metric label (a small fixed set)."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason


class ProviderUnavailable(Exception):
    """The identity provider could not be reached or answered nonsense."""


@dataclass(frozen=True, slots=True)
class ClaimsMap:
    name_claim: str
    role_claim: str
    role_map: Mapping[str, Role]
    rm_id_claim: str
    team_claim: str

    def principal(self, claims: Mapping[str, Any]) -> Principal:
        """Who the claims say this is; TokenRejected("claims") when they do not make a usable principal."""
        name = claims.get(self.name_claim) or claims.get("sub")
        if not isinstance(name, str) or _NAME.match(name) is None:
            raise TokenRejected("claims", f"no usable `{self.name_claim}` or `sub` claim")
        raw = claims.get(self.role_claim)
        values = [raw] if isinstance(raw, str) else raw if isinstance(raw, list) else []
        roles = {self.role_map[v] for v in values if isinstance(v, str) and v in self.role_map}
        if len(roles) != 1:
            what = "no" if not roles else "more than one"
            raise TokenRejected("claims", f"{what} clientpulse role in claim `{self.role_claim}`")
        role = roles.pop()
        rm_id: str | None = None
        team: frozenset[str] = frozenset()
        if role == "rm":
            value = claims.get(self.rm_id_claim)
            if not isinstance(value, str) or _ID.match(value) is None:
                raise TokenRejected("claims", f"an rm needs an RM id in claim `{self.rm_id_claim}`")
            rm_id = value
        elif role == "manager":
            value = claims.get(self.team_claim)
            if isinstance(value, str):
                value = [value]
            if isinstance(value, list):
                if len(value) > 1000 or not all(isinstance(v, str) and _ID.match(v) for v in value):
                    raise TokenRejected("claims", f"claim `{self.team_claim}` is not a list of RM ids")
                team = frozenset(value)
        return Principal(name, role, rm_id, team)


def parse_role_map(text: str) -> dict[str, Role]:
    out: dict[str, Role] = {}
    for pair in text.split(","):
        if not pair.strip():
            continue
        value, sep, role = pair.rpartition("=")
        role = role.strip()
        if not sep or not value.strip() or role not in ROLES:
            raise ValueError(f"{pair.strip()!r} is not `claim-value=role` with a role of {', '.join(ROLES)}")
        out[value.strip()] = cast(Role, role)
    if not out:
        raise ValueError("maps no claim value to a role")
    return out


@dataclass(frozen=True, slots=True)
class OidcConfig:
    issuer: str
    client_id: str
    client_secret: str
    redirect_url: str
    scopes: str
    provider_name: str
    api_audience: str | None
    clock_skew: float
    algorithms: tuple[str, ...]
    jwks_min_refresh: float
    claims: ClaimsMap

    @classmethod
    def from_settings(cls, settings: Settings) -> OidcConfig | None:
        """None when no issuer is configured; ConfigError naming the variable for anything unusable."""
        if not settings.oidc_issuer:
            for name in ("oidc_client_id", "oidc_client_secret", "oidc_redirect_url", "oidc_api_audience"):
                if getattr(settings, name):
                    raise ConfigError(f"clientpulse: {ENV_NAMES[name]} is set but {ENV_NAMES['oidc_issuer']} is not")
            return None
        missing = [
            ENV_NAMES[n]
            for n in ("oidc_client_id", "oidc_client_secret", "oidc_redirect_url")
            if not getattr(settings, n)
        ]
        if missing:
            raise ConfigError(f"clientpulse: {ENV_NAMES['oidc_issuer']} is set, so {', '.join(missing)} must be too")
        issuer = settings.oidc_issuer.rstrip("/")
        if not issuer.startswith(("https://", "http://127.0.0.1", "http://localhost")):
            raise ConfigError(f"clientpulse: {ENV_NAMES['oidc_issuer']}: must be an https:// URL")
        redirect = cast(str, settings.oidc_redirect_url)
        if not redirect.startswith(("https://", "http://")) or not redirect.endswith("/signin/oidc/callback"):
            raise ConfigError(
                f"clientpulse: {ENV_NAMES['oidc_redirect_url']}: must be the full URL of /signin/oidc/callback"
            )
        if "openid" not in settings.oidc_scopes.split():
            raise ConfigError(f"clientpulse: {ENV_NAMES['oidc_scopes']}: must include `openid`")
        algorithms = tuple(a.strip() for a in settings.oidc_algorithms.split(",") if a.strip())
        bad = [a for a in algorithms if a in _FORBIDDEN_ALGORITHMS or a not in jwt.algorithms.get_default_algorithms()]
        if not algorithms or bad:
            raise ConfigError(
                f"clientpulse: {ENV_NAMES['oidc_algorithms']}: not accepted: {', '.join(bad) or '(none)'}"
            )
        try:
            role_map = parse_role_map(settings.oidc_role_map)
        except ValueError as exc:
            raise ConfigError(f"clientpulse: {ENV_NAMES['oidc_role_map']}: {exc}") from None
        return cls(
            issuer=issuer,
            client_id=cast(str, settings.oidc_client_id),
            client_secret=cast(str, settings.oidc_client_secret),
            redirect_url=redirect,
            scopes=settings.oidc_scopes,
            provider_name=settings.oidc_provider_name,
            api_audience=settings.oidc_api_audience,
            clock_skew=settings.oidc_clock_skew,
            algorithms=algorithms,
            jwks_min_refresh=settings.oidc_jwks_min_refresh_seconds,
            claims=ClaimsMap(
                settings.oidc_name_claim,
                settings.oidc_role_claim,
                role_map,
                settings.oidc_rm_id_claim,
                settings.oidc_team_claim,
            ),
        )


def pkce_pair() -> tuple[str, str]:
    """(code_verifier, S256 code_challenge)."""
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode("ascii")).digest()).rstrip(b"=").decode()
    return verifier, challenge


def looks_like_jwt(token: str) -> bool:
    """Three base64url parts whose first is a JSON object: cheap, decides which check a bearer token gets."""
    return token.count(".") == 2 and token.startswith("eyJ")


class OidcClient:
    """The provider as seen from here: metadata, keys, code exchange and token checks."""

    def __init__(self, config: OidcConfig) -> None:
        self.config = config
        self._http: aiohttp.ClientSession | None = None
        self._metadata: dict[str, Any] | None = None
        self._keys: dict[str, jwt.PyJWK] = {}
        self._keys_at = float("-inf")
        self._lock = asyncio.Lock()

    async def close(self) -> None:
        if self._http is not None:
            await self._http.close()
            self._http = None

    def _session(self) -> aiohttp.ClientSession:
        if self._http is None:
            self._http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=HTTP_TIMEOUT))
        return self._http

    async def _get_json(self, url: str) -> dict[str, Any]:
        try:
            async with self._session().get(url, headers={"Accept": "application/json"}) as resp:
                if resp.status != 200:
                    raise ProviderUnavailable(f"{url} answered {resp.status}")
                body = await resp.json(content_type=None)
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            raise ProviderUnavailable(f"{url}: {type(exc).__name__}: {exc}") from None
        if not isinstance(body, dict):
            raise ProviderUnavailable(f"{url} did not answer a JSON object")
        return body

    async def metadata(self) -> dict[str, Any]:
        """The discovery document, fetched once (and again after a failure)."""
        if self._metadata is None:
            doc = await self._get_json(f"{self.config.issuer}/.well-known/openid-configuration")
            if str(doc.get("issuer", "")).rstrip("/") != self.config.issuer:
                raise ProviderUnavailable(f"discovery names issuer {doc.get('issuer')!r}, not {self.config.issuer!r}")
            for field in ("authorization_endpoint", "token_endpoint", "jwks_uri"):
                if not isinstance(doc.get(field), str):
                    raise ProviderUnavailable(f"discovery has no {field}")
            methods = doc.get("code_challenge_methods_supported")
            if isinstance(methods, list) and "S256" not in methods:
                raise ProviderUnavailable("the provider does not support PKCE with S256")
            self._metadata = doc
        return self._metadata

    async def _refresh_keys(self) -> None:
        doc = await self._get_json((await self.metadata())["jwks_uri"])
        try:
            keyset = jwt.PyJWKSet.from_dict(doc)
        except jwt.PyJWTError as exc:
            raise ProviderUnavailable(f"unusable key set: {exc}") from None
        self._keys = {k.key_id: k for k in keyset.keys if k.key_id and k.public_key_use in (None, "sig")}
        self._keys_at = time.monotonic()
        log.info("identity provider keys loaded: %s", ", ".join(sorted(self._keys)) or "(none)")

    async def _key(self, kid: str) -> jwt.PyJWK:
        key = self._keys.get(kid)
        if key is not None:
            return key
        async with self._lock:
            key = self._keys.get(kid)
            if key is None and time.monotonic() - self._keys_at >= self.config.jwks_min_refresh:
                await self._refresh_keys()
                key = self._keys.get(kid)
        if key is None:
            raise TokenRejected("unknown_key", "signed with a key the provider does not publish")
        return key

    async def verify(self, token: str, *, audience: str, nonce: str | None = None) -> dict[str, Any]:
        """The claims of a token signed by the provider for `audience`, or TokenRejected with the reason."""
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise TokenRejected("malformed", "not a JWT") from None
        alg, kid = header.get("alg"), header.get("kid")
        if alg not in self.config.algorithms:
            raise TokenRejected("bad_signature", f"algorithm {alg!r} is not accepted")
        if not isinstance(kid, str) or not kid:
            raise TokenRejected("unknown_key", "no key id")
        key = await self._key(kid)
        declared = getattr(key, "_jwk_data", {}).get("alg")
        if declared and declared != alg:
            raise TokenRejected("bad_signature", "algorithm does not match the key")
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                key=key.key,
                algorithms=[alg],
                audience=audience,
                issuer=self.config.issuer,
                leeway=self.config.clock_skew,
                options={"require": ["exp", "iat", "iss", "aud", "sub"]},
            )
        except jwt.ExpiredSignatureError:
            raise TokenRejected("expired", "the token has expired") from None
        except jwt.InvalidAudienceError:
            raise TokenRejected("wrong_audience", "the token is for another audience") from None
        except jwt.InvalidIssuerError:
            raise TokenRejected("wrong_issuer", "the token is from another issuer") from None
        except jwt.ImmatureSignatureError:
            raise TokenRejected("not_yet_valid", "the token is not valid yet") from None
        except jwt.InvalidSignatureError:
            raise TokenRejected("bad_signature", "the signature does not verify") from None
        except jwt.MissingRequiredClaimError as exc:
            raise TokenRejected("claims", f"missing claim {exc.claim}") from None
        except jwt.PyJWTError:
            raise TokenRejected("malformed", "not a valid JWT") from None
        if isinstance(claims.get("aud"), list) and len(claims["aud"]) > 1 and claims.get("azp") != audience:
            raise TokenRejected("wrong_audience", "several audiences and `azp` is not this client")
        if nonce is not None and not secrets.compare_digest(str(claims.get("nonce", "")), nonce):
            raise TokenRejected("nonce", "the sign-in answer does not belong to this sign-in")
        return claims

    async def access_token_principal(self, token: str) -> Principal:
        """A bearer JWT access token -> its principal (CLIENTPULSE_OIDC_API_AUDIENCE must be set)."""
        if self.config.api_audience is None:
            raise TokenRejected("unknown_token", "JWT access tokens are not accepted here")
        claims = await self.verify(token, audience=self.config.api_audience)
        return self.config.claims.principal(claims)

    def _basic(self) -> str:
        # client_secret_basic: id and secret form-encoded, then HTTP Basic (RFC 6749, 2.3.1).
        pair = f"{quote(self.config.client_id, safe='')}:{quote(self.config.client_secret, safe='')}"
        return "Basic " + base64.b64encode(pair.encode()).decode("ascii")

    async def authorization_url(self, state: str, nonce: str, code_challenge: str) -> str:
        endpoint = (await self.metadata())["authorization_endpoint"]
        query = urlencode(
            {
                "response_type": "code",
                "client_id": self.config.client_id,
                "redirect_uri": self.config.redirect_url,
                "scope": self.config.scopes,
                "state": state,
                "nonce": nonce,
                "code_challenge": code_challenge,
                "code_challenge_method": "S256",
            }
        )
        return f"{endpoint}{'&' if '?' in endpoint else '?'}{query}"

    async def sign_in(self, code: str, code_verifier: str, nonce: str) -> Principal:
        """Redeem an authorization code and check the ID token it brings; its claims make the principal."""
        endpoint = (await self.metadata())["token_endpoint"]
        form = {
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": self.config.redirect_url,
            "code_verifier": code_verifier,
        }
        try:
            async with self._session().post(endpoint, data=form, headers={"Authorization": self._basic()}) as resp:
                body = await resp.json(content_type=None)
                status = resp.status
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            raise ProviderUnavailable(f"token endpoint: {type(exc).__name__}: {exc}") from None
        if status != 200 or not isinstance(body, dict) or not isinstance(body.get("id_token"), str):
            error = body.get("error") if isinstance(body, dict) else None
            raise TokenRejected("code_refused", f"the provider refused the sign-in code ({error or status})")
        claims = await self.verify(body["id_token"], audience=self.config.client_id, nonce=nonce)
        return self.config.claims.principal(claims)

"""Token checks that a real provider never produces on purpose: alg none, HMAC with the public key, wrong nonce,
claims that make no principal. The keys are set directly; no provider is contacted."""

from __future__ import annotations

import json
import time
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from handlers.access import Principal
from streams.api.oidc import ClaimsMap, OidcClient, OidcConfig, TokenRejected, parse_role_map
from streams.settings import ConfigError, Settings

ISSUER = "https://idp.bank.test"
KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
CLAIMS = ClaimsMap(
    "preferred_username", "groups", {"cp-rm": "rm", "cp-mgr": "manager", "cp-ops": "ops"}, "rm_id", "team"
)


def _client() -> OidcClient:
    config = OidcConfig(
        issuer=ISSUER,
        client_id="clientpulse",
        client_secret="s",
        redirect_url="https://cp.bank.test/signin/oidc/callback",
        scopes="openid",
        provider_name="Bank",
        api_audience="https://cp.bank.test/api",
        clock_skew=30,
        algorithms=("RS256",),
        jwks_min_refresh=3600,
        claims=CLAIMS,
    )
    client = OidcClient(config)
    jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(KEY.public_key()))
    client._keys = {"k1": jwt.PyJWK({**jwk, "kid": "k1", "use": "sig"})}
    client._keys_at = time.monotonic()
    return client


def _token(**overrides: Any) -> str:
    now = int(time.time())
    claims = {"iss": ISSUER, "aud": "clientpulse", "sub": "u1", "iat": now, "exp": now + 300, "nonce": "n-1"}
    claims.update(overrides)
    return jwt.encode({k: v for k, v in claims.items() if v is not None}, KEY, algorithm="RS256", headers={"kid": "k1"})


async def test_a_good_id_token_verifies_and_its_nonce_must_match() -> None:
    client = _client()
    claims = await client.verify(_token(), audience="clientpulse", nonce="n-1")
    assert claims["sub"] == "u1"
    with pytest.raises(TokenRejected) as info:
        await client.verify(_token(), audience="clientpulse", nonce="n-2")
    assert info.value.reason == "nonce"


@pytest.mark.parametrize(
    ("overrides", "reason"),
    [
        ({"exp": int(time.time()) - 120}, "expired"),
        ({"iss": "https://evil.test"}, "wrong_issuer"),
        ({"aud": "someone-else"}, "wrong_audience"),
        ({"aud": ["clientpulse", "other"], "azp": "other"}, "wrong_audience"),
        ({"iat": None}, "claims"),
        # A day ahead: the parameters are made when the tests are collected, minutes before this one runs.
        ({"nbf": int(time.time()) + 86400}, "not_yet_valid"),
    ],
)
async def test_registered_claims_are_checked(overrides: dict[str, Any], reason: str) -> None:
    with pytest.raises(TokenRejected) as info:
        await _client().verify(_token(**overrides), audience="clientpulse")
    assert info.value.reason == reason


async def test_expiry_allows_the_configured_clock_skew() -> None:
    claims = await _client().verify(_token(exp=int(time.time()) - 10), audience="clientpulse")
    assert claims["sub"] == "u1"


async def test_unsigned_and_hmac_confused_tokens_are_refused() -> None:
    client = _client()
    unsigned = jwt.encode(
        {"iss": ISSUER, "aud": "clientpulse", "sub": "u1"}, None, algorithm="none", headers={"kid": "k1"}
    )
    with pytest.raises(TokenRejected) as info:
        await client.verify(unsigned, audience="clientpulse")
    assert info.value.reason == "bad_signature"
    hs = jwt.encode(
        {"iss": ISSUER, "aud": "clientpulse", "sub": "u1"}, "s" * 32, algorithm="HS256", headers={"kid": "k1"}
    )
    with pytest.raises(TokenRejected) as info:
        await client.verify(hs, audience="clientpulse")
    assert info.value.reason == "bad_signature"


@pytest.mark.parametrize(
    ("claims", "principal"),
    [
        (
            {"preferred_username": "alice", "groups": ["staff", "cp-rm"], "rm_id": "rm-7"},
            Principal("alice", "rm", "rm-7"),
        ),
        ({"sub": "u9", "groups": "cp-ops"}, Principal("u9", "ops")),
        (
            {"preferred_username": "maria", "groups": ["cp-mgr"], "team": ["rm-1", "rm-2"]},
            Principal("maria", "manager", team=frozenset({"rm-1", "rm-2"})),
        ),
        ({"preferred_username": "mgr", "groups": ["cp-mgr"]}, Principal("mgr", "manager")),
    ],
)
def test_claims_map_to_principals(claims: dict[str, Any], principal: Principal) -> None:
    assert CLAIMS.principal(claims) == principal


@pytest.mark.parametrize(
    "claims",
    [
        {"preferred_username": "x", "groups": ["staff"]},
        {"preferred_username": "x", "groups": ["cp-rm", "cp-ops"]},
        {"preferred_username": "x", "groups": ["cp-rm"]},
        {"preferred_username": "x", "groups": ["cp-rm"], "rm_id": "bad\x01id"},
        {"preferred_username": "x", "groups": ["cp-mgr"], "team": [1, 2]},
        {"groups": ["cp-ops"]},
    ],
)
def test_claims_without_a_usable_principal_are_refused(claims: dict[str, Any]) -> None:
    with pytest.raises(TokenRejected) as info:
        CLAIMS.principal(claims)
    assert info.value.reason == "claims"


def test_settings_name_what_is_missing_or_wrong() -> None:
    assert OidcConfig.from_settings(Settings()) is None
    with pytest.raises(ConfigError, match="CLIENTPULSE_OIDC_CLIENT_ID"):
        OidcConfig.from_settings(Settings(oidc_issuer=ISSUER))
    base = {
        "oidc_issuer": ISSUER,
        "oidc_client_id": "c",
        "oidc_client_secret": "s",
        "oidc_redirect_url": "https://cp/signin/oidc/callback",
    }
    assert OidcConfig.from_settings(Settings(**base)) is not None
    for key, value, env in [
        ("oidc_algorithms", "HS256", "CLIENTPULSE_OIDC_ALGORITHMS"),
        ("oidc_algorithms", "none", "CLIENTPULSE_OIDC_ALGORITHMS"),
        ("oidc_role_map", "a=admin", "CLIENTPULSE_OIDC_ROLE_MAP"),
        ("oidc_redirect_url", "https://cp/elsewhere", "CLIENTPULSE_OIDC_REDIRECT_URL"),
        ("oidc_scopes", "profile", "CLIENTPULSE_OIDC_SCOPES"),
        ("oidc_issuer", "http://idp.bank.test", "CLIENTPULSE_OIDC_ISSUER"),
    ]:
        with pytest.raises(ConfigError, match=env):
            OidcConfig.from_settings(Settings(**{**base, key: value}))
    with pytest.raises(ConfigError, match="CLIENTPULSE_OIDC_ISSUER"):
        OidcConfig.from_settings(Settings(oidc_client_id="c"))
    assert parse_role_map("cp-rm=rm, cp=x=manager") == {"cp-rm": "rm", "cp=x": "manager"}

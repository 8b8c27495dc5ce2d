"""API tokens and who they belong to: salted scrypt hashes only, never a token in plain text.

A token maps to a principal with a role: an `rm` sees the alerts assigned to
its RM id, a `manager` those of a team of RMs plus the unassigned ones, `ops`
sees everything but may not change anything.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
import secrets
import sys
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, TextIO

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from handlers.access import Principal, Role, Scope  # noqa: F401  (part of this module's interface)
from schemas.errors import error_texts

SCHEME = "scrypt"
DEFAULT_LOG2_N = 14
"""2**14 with r=8 is 16 MiB and tens of milliseconds per check: slow for guessing, fine with the cache."""
_R = 8
_P = 1
_SALT_BYTES = 16
_KEY_BYTES = 32
_MIN_LOG2_N, _MAX_LOG2_N = 10, 17
"""Bounds on the cost a configured hash may ask for, so a config typo cannot stall every request."""
MAX_TOKEN_LENGTH = 512
_HASH_RE = re.compile(
    r"^\$scrypt\$ln=(?P<ln>\d{1,2}),r=(?P<r>\d{1,2}),p=(?P<p>\d{1,2})\$(?P<salt>[A-Za-z0-9+/]+={0,2})\$(?P<key>[A-Za-z0-9+/]+={0,2})$"
)
ID_PATTERN = r"^[^\x00-\x1f\x7f]+$"


class AuthConfigError(ValueError):
    """The token configuration is unusable; the message says which entry and why."""


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _derive(token: str, salt: bytes, log2_n: int, r: int, p: int) -> bytes:
    n = 1 << log2_n
    return hashlib.scrypt(
        token.encode("utf-8"), salt=salt, n=n, r=r, p=p, dklen=_KEY_BYTES, maxmem=256 * r * (n + p + 2)
    )


def hash_token(token: str, *, log2_n: int = DEFAULT_LOG2_N, salt: bytes | None = None) -> str:
    """A salted scrypt hash in PHC string form: `$scrypt$ln=14,r=8,p=1$<salt>$<key>`."""
    if not token:
        raise ValueError("empty token")
    if len(token) > MAX_TOKEN_LENGTH:
        raise ValueError(f"token longer than {MAX_TOKEN_LENGTH} characters")
    if not _MIN_LOG2_N <= log2_n <= _MAX_LOG2_N:
        raise ValueError(f"log2_n must be within {_MIN_LOG2_N}..{_MAX_LOG2_N}")
    salt = salt if salt is not None else secrets.token_bytes(_SALT_BYTES)
    key = _derive(token, salt, log2_n, _R, _P)
    return f"$scrypt$ln={log2_n},r={_R},p={_P}${_b64(salt)}${_b64(key)}"


@dataclass(frozen=True, slots=True)
class ParsedHash:
    log2_n: int
    r: int
    p: int
    salt: bytes
    key: bytes

    def matches(self, token: str) -> bool:
        candidate = _derive(token, self.salt, self.log2_n, self.r, self.p)
        return hmac.compare_digest(candidate, self.key)


def parse_hash(text: str) -> ParsedHash:
    match = _HASH_RE.match(text.strip())
    if match is None:
        raise ValueError("not a token hash of the form $scrypt$ln=14,r=8,p=1$<salt>$<key> (see `clientpulse token`)")
    log2_n, r, p = int(match["ln"]), int(match["r"]), int(match["p"])
    if not _MIN_LOG2_N <= log2_n <= _MAX_LOG2_N or not 1 <= r <= 16 or not 1 <= p <= 4:
        raise ValueError(f"scrypt cost out of bounds (ln {_MIN_LOG2_N}..{_MAX_LOG2_N}, r 1..16, p 1..4)")
    try:
        salt, key = base64.b64decode(match["salt"], validate=True), base64.b64decode(match["key"], validate=True)
    except binascii.Error as exc:
        raise ValueError(f"bad base64 in token hash: {exc}") from None
    if len(salt) < 8 or len(key) < 16:
        raise ValueError("token hash salt or key too short")
    return ParsedHash(log2_n, r, p, salt, key)


class TokenEntry(BaseModel):
    """One configured token: its hash and the principal it stands for."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1, max_length=64, pattern=ID_PATTERN)
    hash: str
    role: Role
    rm_id: str | None = Field(None, min_length=1, max_length=64, pattern=ID_PATTERN)
    team: list[str] = Field(default_factory=list, max_length=1000)

    @model_validator(mode="before")
    @classmethod
    def _no_plain_tokens(cls, data: Any) -> Any:
        if isinstance(data, dict) and ("token" in data or "secret" in data):
            raise ValueError("plain-text tokens are not accepted: configure `hash` (from `clientpulse token`)")
        return data

    @model_validator(mode="after")
    def _role_fields(self) -> TokenEntry:
        parse_hash(self.hash)
        if self.role == "rm" and not self.rm_id:
            raise ValueError("an rm token needs rm_id")
        if self.role != "rm" and self.rm_id:
            raise ValueError(f"rm_id is only for rm tokens (this one is {self.role})")
        if self.role != "manager" and self.team:
            raise ValueError(f"team is only for manager tokens (this one is {self.role})")
        for rm in self.team:
            if not rm or len(rm) > 64 or re.match(ID_PATTERN, rm) is None:
                raise ValueError(f"team: bad RM id {rm!r}")
        return self

    def principal(self) -> Principal:
        return Principal(self.name, self.role, self.rm_id, frozenset(self.team))


class Principals:
    """Bearer token -> principal. Verified tokens are remembered by a keyed digest, so scrypt runs once each."""

    def __init__(self, entries: Iterable[TokenEntry]) -> None:
        self._entries: list[tuple[ParsedHash, Principal]] = [(parse_hash(e.hash), e.principal()) for e in entries]
        self._cache_key = secrets.token_bytes(32)
        self._cache: dict[bytes, Principal] = {}
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._entries)

    def _digest(self, token: str) -> bytes:
        return hmac.new(self._cache_key, token.encode("utf-8"), hashlib.sha256).digest()

    def cached(self, token: str) -> Principal | None:
        """The principal of a token verified before (cheap; no scrypt)."""
        if not token or len(token) > MAX_TOKEN_LENGTH:
            return None
        return self._cache.get(self._digest(token))

    def authenticate(self, token: str) -> Principal | None:
        """The principal of a token, or None. CPU-bound on a cache miss: call it off the event loop."""
        if not token or len(token) > MAX_TOKEN_LENGTH:
            return None
        digest = self._digest(token)
        hit = self._cache.get(digest)
        if hit is not None:
            return hit
        found: Principal | None = None
        for parsed, principal in self._entries:
            # Check every entry, whatever matched, so timing does not say how far down the list it is.
            if parsed.matches(token) and found is None:
                found = principal
        if found is not None:
            with self._lock:
                self._cache[digest] = found
        return found


def parse_token_config(text: str, source: str = "token configuration") -> list[TokenEntry]:
    """YAML or JSON: a list of entries, or `{tokens: [...]}`. Names must be unique."""
    try:
        data = yaml.safe_load(text) if text.strip() else []
    except yaml.YAMLError as exc:
        raise AuthConfigError(f"{source}: not valid YAML/JSON: {exc}") from None
    if isinstance(data, dict):
        data = data.get("tokens")
    if data is None:
        data = []
    if not isinstance(data, list):
        raise AuthConfigError(f"{source}: expected a list of tokens (or a mapping with `tokens:`)")
    entries: list[TokenEntry] = []
    names: set[str] = set()
    for i, item in enumerate(data):
        try:
            entry = TokenEntry.model_validate(item)
        except ValidationError as exc:
            detail = "; ".join(error_texts(exc, whole="entry"))
            raise AuthConfigError(f"{source}: token #{i + 1}: {detail}") from None
        if entry.name in names:
            raise AuthConfigError(f"{source}: token #{i + 1}: duplicate name {entry.name!r}")
        names.add(entry.name)
        entries.append(entry)
    return entries


def bearer_token(header: str | None) -> str | None:
    """The token of an `Authorization: Bearer <token>` header, else None."""
    if not header:
        return None
    scheme, _, token = header.strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token or " " in token:
        return None
    return token


def token_command(stdin: TextIO | None = None, stdout: TextIO | None = None, stderr: TextIO | None = None) -> int:
    """`clientpulse token`: read a token on stdin, print its hash for the token configuration."""
    stdin, stdout, stderr = stdin or sys.stdin, stdout or sys.stdout, stderr or sys.stderr
    lines: Sequence[str] = stdin.read().splitlines()
    token = lines[0].strip() if lines else ""
    if not token:
        print('clientpulse token: give the token on stdin, e.g. `printf %s "$TOKEN" | clientpulse token`', file=stderr)
        return 2
    if len(lines) > 1 and any(line.strip() for line in lines[1:]):
        print("clientpulse token: one token per call (got several lines)", file=stderr)
        return 2
    try:
        print(hash_token(token), file=stdout)
    except ValueError as exc:
        print(f"clientpulse token: {exc}", file=stderr)
        return 2
    if len(token) < 20:
        print(
            "clientpulse token: warning: short token; use e.g. 32 random bytes (secrets.token_urlsafe(32))", file=stderr
        )
    return 0

"""API tokens and who they belong to: salted scrypt hashes only, never a token in plain text.

A token maps to a principal with a role: an `rm` sees the alerts assigned to
its RM id, a `manager` those of a team of RMs plus the unassigned ones, `ops`
sees everything but may not change anything.

scrypt is slow on purpose, which makes every unknown token expensive. Two
cheap filters run first so that guessed tokens never reach it: a token must be
1-512 visible ASCII characters, and each hash made by `clientpulse token`
carries a 16-bit fingerprint of its token, keyed with that hash's own salt
(`fp=` in the PHC string). A random token matches a given fingerprint once in
65,536 tries, so it is refused after one HMAC per configured token instead of
one scrypt per configured token. The fingerprint says almost nothing about a
random 256-bit token; it does make guessing a weak one offline cheaper, which
is one more reason tokens must be random (the command warns on short ones).
Hashes without a fingerprint (older files) still work, at full cost.
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
    r"^\$scrypt\$ln=(?P<ln>\d{1,2}),r=(?P<r>\d{1,2}),p=(?P<p>\d{1,2})(?:,fp=(?P<fp>[0-9a-f]{4}))?"
    r"\$(?P<salt>[A-Za-z0-9+/]+={0,2})\$(?P<key>[A-Za-z0-9+/]+={0,2})$"
)
_VISIBLE_ASCII = re.compile(rf"^[\x21-\x7e]{{1,{MAX_TOKEN_LENGTH}}}$")
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


def plausible_token(token: str) -> bool:
    """Could this be a configured token at all (1-512 visible ASCII characters)? Costs no hashing."""
    return _VISIBLE_ASCII.match(token) is not None


def _fingerprint(token: str, salt: bytes) -> str:
    return hmac.new(salt, token.encode("utf-8"), hashlib.sha256).hexdigest()[:4]


def hash_token(token: str, *, log2_n: int = DEFAULT_LOG2_N, salt: bytes | None = None) -> str:
    """A salted scrypt hash in PHC string form, with the token's fingerprint.

    `$scrypt$ln=14,r=8,p=1,fp=<4 hex>$<salt>$<key>`
    """
    if not token:
        raise ValueError("empty token")
    if len(token) > MAX_TOKEN_LENGTH:
        raise ValueError(f"token longer than {MAX_TOKEN_LENGTH} characters")
    if not plausible_token(token):
        raise ValueError("a token is visible ASCII only (no spaces, no control or non-ASCII characters)")
    if not _MIN_LOG2_N <= log2_n <= _MAX_LOG2_N:
        raise ValueError(f"log2_n must be within {_MIN_LOG2_N}..{_MAX_LOG2_N}")
    salt = salt if salt is not None else secrets.token_bytes(_SALT_BYTES)
    key = _derive(token, salt, log2_n, _R, _P)
    return f"$scrypt$ln={log2_n},r={_R},p={_P},fp={_fingerprint(token, salt)}${_b64(salt)}${_b64(key)}"


@dataclass(frozen=True, slots=True)
class ParsedHash:
    log2_n: int
    r: int
    p: int
    salt: bytes
    key: bytes
    fingerprint: str | None = None

    def may_match(self, token: str) -> bool:
        """False when the token certainly does not match (one HMAC); True means: run scrypt to know."""
        return self.fingerprint is None or hmac.compare_digest(_fingerprint(token, self.salt), self.fingerprint)

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
    return ParsedHash(log2_n, r, p, salt, key, match["fp"])


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
    """Bearer token -> principal, for the tokens configured now (`replace` swaps them in at a reload).

    Verified tokens are remembered by a keyed digest, so scrypt runs once per token; a reload forgets them,
    so a removed token stops working at once.
    """

    def __init__(self, entries: Iterable[TokenEntry]) -> None:
        self._cache_key = secrets.token_bytes(32)
        self._lock = threading.Lock()
        self._entries: list[tuple[ParsedHash, Principal]] = []
        self._by_name: dict[str, Principal] = {}
        self._cache: dict[bytes, Principal] = {}
        self.replace(entries)

    def replace(self, entries: Iterable[TokenEntry]) -> None:
        parsed = [(parse_hash(e.hash), e.principal()) for e in entries]
        with self._lock:
            self._entries = parsed
            self._by_name = {p.name: p for _, p in parsed}
            self._cache = {}

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def without_fingerprint(self) -> int:
        """Configured hashes that every unknown token must be checked against with scrypt."""
        return sum(1 for parsed, _ in self._entries if parsed.fingerprint is None)

    def all(self) -> list[Principal]:
        """Every configured principal, as configured now."""
        return list(self._by_name.values())

    def by_name(self, name: str) -> Principal | None:
        """The principal of the token entry called `name`, as configured now."""
        return self._by_name.get(name)

    def _digest(self, token: str) -> bytes:
        return hmac.new(self._cache_key, token.encode("utf-8"), hashlib.sha256).digest()

    def cached(self, token: str) -> Principal | None:
        """The principal of a token verified before (cheap; no scrypt)."""
        if not plausible_token(token):
            return None
        return self._cache.get(self._digest(token))

    def candidates(self, token: str) -> list[tuple[ParsedHash, Principal]]:
        """The entries a token may match: empty means refused without any scrypt."""
        if not plausible_token(token):
            return []
        return [(parsed, principal) for parsed, principal in self._entries if parsed.may_match(token)]

    def authenticate(self, token: str) -> Principal | None:
        """The principal of a token, or None. CPU-bound on a cache miss: call it off the event loop."""
        if not plausible_token(token):
            return None
        digest = self._digest(token)
        hit = self._cache.get(digest)
        if hit is not None:
            return hit
        entries = self._entries
        found: Principal | None = None
        for parsed, principal in self.candidates(token):
            # Check every candidate, whatever matched, so timing does not say how far down the list it is.
            if parsed.matches(token) and found is None:
                found = principal
        if found is not None:
            with self._lock:
                if self._entries is entries:  # not replaced meanwhile by a reload that removed it
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


def parse_org_file(text: str, source: str = "org file") -> dict[str, frozenset[str]]:
    """`managers: {name: [rm ids]}`: the RMs of each manager, by the manager's name."""
    try:
        data = yaml.safe_load(text) if text.strip() else {}
    except yaml.YAMLError as exc:
        raise AuthConfigError(f"{source}: not valid YAML/JSON: {exc}") from None
    if data is None:
        data = {}
    if not isinstance(data, dict) or set(data) - {"managers"}:
        raise AuthConfigError(f"{source}: expected a mapping with only `managers:` (name -> list of RM ids)")
    managers = data.get("managers") or {}
    if not isinstance(managers, dict):
        raise AuthConfigError(f"{source}: managers: expected a mapping of manager name -> list of RM ids")
    teams: dict[str, frozenset[str]] = {}
    for name, rms in managers.items():
        if not isinstance(name, str) or not name or len(name) > 256 or re.match(ID_PATTERN, name) is None:
            raise AuthConfigError(f"{source}: managers: bad manager name {name!r}")
        if not isinstance(rms, list) or len(rms) > 1000:
            raise AuthConfigError(f"{source}: managers.{name}: expected a list of at most 1000 RM ids")
        for rm in rms:
            if not isinstance(rm, str) or not rm or len(rm) > 64 or re.match(ID_PATTERN, rm) is None:
                raise AuthConfigError(f"{source}: managers.{name}: bad RM id {rm!r}")
        teams[name] = frozenset(rms)
    return teams


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

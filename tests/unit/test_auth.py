"""Token hashing, the token configuration and what each role may see."""

from __future__ import annotations

import hashlib
import io
import json
import random
import re
import string

import pytest

from handlers.access import with_org_team
from streams.api.auth import (
    AuthConfigError,
    Principal,
    Principals,
    Scope,
    TokenEntry,
    bearer_token,
    hash_token,
    parse_hash,
    parse_org_file,
    parse_token_config,
    plausible_token,
    token_command,
)

FAST = 10  # the smallest accepted scrypt cost keeps these tests quick


def test_hash_is_salted_and_verifies_only_its_token() -> None:
    a = hash_token("secret-token-1", log2_n=FAST)
    b = hash_token("secret-token-1", log2_n=FAST)
    assert a != b  # per-token salt
    assert a.startswith("$scrypt$ln=10,r=8,p=1,fp=")
    assert "secret-token-1" not in a
    assert parse_hash(a).matches("secret-token-1")
    assert parse_hash(b).matches("secret-token-1")
    assert not parse_hash(a).matches("secret-token-2")
    assert not parse_hash(a).matches("secret-token-")


def test_default_cost_is_the_documented_one() -> None:
    assert hash_token("x" * 32).startswith("$scrypt$ln=14,r=8,p=1,fp=")


@pytest.mark.parametrize(
    "text",
    [
        "plain-token",
        "$scrypt$ln=14,r=8,p=1$c2FsdA==",
        "$scrypt$ln=30,r=8,p=1$c2FsdHNhbHRzYWx0$a2V5a2V5a2V5a2V5a2V5a2V5",  # absurd cost
        "$scrypt$ln=14,r=8,p=1$!!$!!",
        "$pbkdf2$x",
    ],
)
def test_malformed_hashes_are_refused(text: str) -> None:
    with pytest.raises(ValueError):
        parse_hash(text)


def test_hash_token_refuses_empty_and_oversized_tokens() -> None:
    with pytest.raises(ValueError):
        hash_token("")
    with pytest.raises(ValueError):
        hash_token("x" * 600)


def _config(**tokens: str) -> str:
    return json.dumps(
        {
            "tokens": [
                {"name": "alice", "role": "rm", "rm_id": "rm-a", "hash": hash_token(tokens["alice"], log2_n=FAST)},
                {
                    "name": "maria",
                    "role": "manager",
                    "team": ["rm-a", "rm-b"],
                    "hash": hash_token(tokens["maria"], log2_n=FAST),
                },
                {"name": "olga", "role": "ops", "hash": hash_token(tokens["olga"], log2_n=FAST)},
            ]
        }
    )


def test_tokens_map_to_principals_and_unknown_tokens_to_none() -> None:
    principals = Principals(parse_token_config(_config(alice="tok-a", maria="tok-m", olga="tok-o")))
    assert len(principals) == 3
    alice = principals.authenticate("tok-a")
    assert alice == Principal("alice", "rm", "rm-a", frozenset())
    assert principals.cached("tok-a") == alice  # the second check skips scrypt
    maria = principals.authenticate("tok-m")
    assert maria is not None and maria.role == "manager" and maria.team == frozenset({"rm-a", "rm-b"})
    assert principals.authenticate("tok-o") == Principal("olga", "ops")
    assert principals.authenticate("tok-x") is None
    assert principals.cached("tok-x") is None
    assert principals.authenticate("") is None
    assert principals.authenticate("t" * 10_000) is None


def test_yaml_list_form_is_accepted() -> None:
    text = f"- name: bob\n  role: rm\n  rm_id: rm-b\n  hash: '{hash_token('tok-b', log2_n=FAST)}'\n"
    entries = parse_token_config(text, "file")
    assert [e.name for e in entries] == ["bob"]
    assert Principals(entries).authenticate("tok-b") == Principal("bob", "rm", "rm-b")


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ({"name": "a", "role": "rm", "rm_id": "rm-a", "token": "plain"}, "plain-text tokens are not accepted"),
        ({"name": "a", "role": "rm", "rm_id": "rm-a", "hash": "plain"}, "not a token hash"),
        ({"name": "a", "role": "rm", "hash": "HASH"}, "an rm token needs rm_id"),
        ({"name": "a", "role": "ops", "rm_id": "rm-a", "hash": "HASH"}, "rm_id is only for rm tokens"),
        ({"name": "a", "role": "rm", "rm_id": "rm-a", "team": ["rm-b"], "hash": "HASH"}, "team is only for manager"),
        ({"name": "a", "role": "admin", "hash": "HASH"}, "role"),
        ({"name": "a", "role": "ops", "hash": "HASH", "extra": 1}, "extra"),
    ],
)
def test_bad_entries_name_the_entry_and_the_problem(entry: dict[str, object], message: str) -> None:
    if entry.get("hash") == "HASH":
        entry["hash"] = hash_token("t", log2_n=FAST)
    with pytest.raises(AuthConfigError) as info:
        parse_token_config(json.dumps([entry]), "CLIENTPULSE_API_TOKENS")
    assert "CLIENTPULSE_API_TOKENS: token #1" in str(info.value)
    assert message in str(info.value)


def test_duplicate_names_and_bad_documents_are_refused() -> None:
    h = hash_token("t", log2_n=FAST)
    with pytest.raises(AuthConfigError, match="duplicate name"):
        parse_token_config(json.dumps([{"name": "a", "role": "ops", "hash": h}] * 2))
    with pytest.raises(AuthConfigError, match="not valid YAML"):
        parse_token_config("tokens: [")
    with pytest.raises(AuthConfigError, match="expected a list"):
        parse_token_config("42")
    assert parse_token_config("") == []


def test_scopes_of_the_roles() -> None:
    rm = Principal("alice", "rm", "rm-a").scope
    assert rm.allows("rm-a") and not rm.allows("rm-b") and not rm.allows(None)
    manager = Principal("maria", "manager", team=frozenset({"rm-a", "rm-b"})).scope
    assert manager.allows("rm-a") and manager.allows("rm-b") and manager.allows(None) and not manager.allows("rm-c")
    ops = Principal("olga", "ops").scope
    assert ops == Scope(None, True) and ops.allows("rm-z") and ops.allows(None)
    assert Principal("olga", "ops").can_act is False
    assert Principal("alice", "rm", "rm-a").can_act and Principal("maria", "manager").can_act


@pytest.mark.parametrize(
    ("header", "token"),
    [
        ("Bearer abc", "abc"),
        ("bearer  abc ", "abc"),
        (None, None),
        ("", None),
        ("Basic abc", None),
        ("Bearer", None),
        ("Bearer a b", None),
    ],
)
def test_bearer_header_parsing(header: str | None, token: str | None) -> None:
    assert bearer_token(header) == token


def test_token_command_prints_a_hash_of_stdin() -> None:
    out, err = io.StringIO(), io.StringIO()
    assert token_command(io.StringIO("a-long-enough-random-token-value\n"), out, err) == 0
    printed = out.getvalue().strip()
    assert parse_hash(printed).matches("a-long-enough-random-token-value")
    assert err.getvalue() == ""
    assert token_command(io.StringIO(""), io.StringIO(), err) == 2
    assert "stdin" in err.getvalue()
    assert token_command(io.StringIO("a\nb\n"), io.StringIO(), io.StringIO()) == 2


def _rms(**tokens: str) -> str:
    return json.dumps(
        [{"name": n, "role": "rm", "rm_id": f"rm-{n}", "hash": hash_token(t, log2_n=FAST)} for n, t in tokens.items()]
    )


def test_a_fingerprint_rules_out_other_tokens_before_any_scrypt(monkeypatch: pytest.MonkeyPatch) -> None:
    entries = parse_token_config(_rms(alice="tok-alice-0123456789", bob="tok-bob-0123456789"))
    principals = Principals(entries)
    assert principals.without_fingerprint == 0
    assert [p.name for _, p in principals.candidates("tok-alice-0123456789")] == ["alice"]
    scrypt_calls = 0
    real = hashlib.scrypt

    def counting(*args: object, **kwargs: object) -> bytes:
        nonlocal scrypt_calls
        scrypt_calls += 1
        return real(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(hashlib, "scrypt", counting)
    rnd = random.Random(7)
    guesses = ["".join(rnd.choice(string.ascii_letters) for _ in range(40)) for _ in range(2000)]
    refused_cheaply = sum(1 for g in guesses if not principals.candidates(g))
    assert refused_cheaply >= 1990  # 2 entries x 2000 guesses / 65536 leaves a couple at most
    assert scrypt_calls == 0
    assert principals.authenticate("tok-alice-0123456789") == Principal("alice", "rm", "rm-alice")
    assert scrypt_calls == 1  # only the entry whose fingerprint matched


@pytest.mark.parametrize("token", ["", "a b", "tok\x00en", "ä-token-0123456789", "x" * 513, "tab\tbed"])
def test_implausible_tokens_are_refused_without_hashing(token: str) -> None:
    principals = Principals(parse_token_config(_rms(alice="tok-alice-0123456789")))
    assert not plausible_token(token)
    assert principals.candidates(token) == []
    assert principals.authenticate(token) is None


def test_hashes_without_a_fingerprint_still_verify() -> None:
    with_fp = hash_token("tok-legacy-0123456789", log2_n=FAST)
    legacy = re.sub(r",fp=[0-9a-f]{4}", "", with_fp)
    principals = Principals([TokenEntry(name="old", role="ops", hash=legacy)])
    assert principals.without_fingerprint == 1
    assert len(principals.candidates("anything-at-all")) == 1  # no fingerprint: scrypt must decide
    assert principals.authenticate("tok-legacy-0123456789") == Principal("old", "ops")
    assert principals.authenticate("anything-at-all") is None


def test_replacing_the_entries_forgets_verified_tokens() -> None:
    principals = Principals(parse_token_config(_rms(alice="tok-alice-0123456789")))
    assert principals.authenticate("tok-alice-0123456789") is not None
    assert principals.cached("tok-alice-0123456789") is not None
    principals.replace(parse_token_config(_rms(bob="tok-bob-0123456789")))
    assert principals.cached("tok-alice-0123456789") is None
    assert principals.authenticate("tok-alice-0123456789") is None
    assert principals.by_name("alice") is None and principals.by_name("bob") == Principal("bob", "rm", "rm-bob")


def test_org_file_gives_managers_without_a_team_their_rms() -> None:
    teams = parse_org_file("managers:\n  maria: [rm-1, rm-2]\n  empty: []\n")
    assert teams == {"maria": frozenset({"rm-1", "rm-2"}), "empty": frozenset()}
    assert with_org_team(Principal("maria", "manager"), teams).team == {"rm-1", "rm-2"}
    assert with_org_team(Principal("maria", "manager", team=frozenset({"rm-9"})), teams).team == {"rm-9"}
    assert with_org_team(Principal("alice", "rm", "rm-1"), teams) == Principal("alice", "rm", "rm-1")
    assert with_org_team(Principal("nobody", "manager"), teams).scope.rm_ids == frozenset()


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("managers: [a, b]", "mapping"),
        ("teams: {}", "only `managers:`"),
        ("managers:\n  maria: rm-1", "list"),
        ('managers:\n  maria: ["a\\x01"]', "bad RM id"),
        ("managers: {maria: [1]}", "bad RM id"),
        ("{not yaml", "not valid YAML"),
    ],
)
def test_bad_org_files_name_the_problem(text: str, message: str) -> None:
    with pytest.raises(AuthConfigError, match=message):
        parse_org_file(text, "org.yaml")

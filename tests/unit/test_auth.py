"""Token hashing, the token configuration and what each role may see."""

from __future__ import annotations

import io
import json

import pytest

from streams.api.auth import (
    AuthConfigError,
    Principal,
    Principals,
    Scope,
    bearer_token,
    hash_token,
    parse_hash,
    parse_token_config,
    token_command,
)

FAST = 10  # the smallest accepted scrypt cost keeps these tests quick


def test_hash_is_salted_and_verifies_only_its_token() -> None:
    a = hash_token("secret-token-1", log2_n=FAST)
    b = hash_token("secret-token-1", log2_n=FAST)
    assert a != b  # per-token salt
    assert a.startswith("$scrypt$ln=10,r=8,p=1$")
    assert "secret-token-1" not in a
    assert parse_hash(a).matches("secret-token-1")
    assert parse_hash(b).matches("secret-token-1")
    assert not parse_hash(a).matches("secret-token-2")
    assert not parse_hash(a).matches("secret-token-")


def test_default_cost_is_the_documented_one() -> None:
    assert hash_token("x" * 32).startswith("$scrypt$ln=14,r=8,p=1$")


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

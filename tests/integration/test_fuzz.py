"""Hostile input on the real broker: the worker stays up, every bad message is a dead letter, every good one counts.

More than 10,000 messages go to the three input topics of one worker:
hand-made hostile cases (non-JSON, wrong types, huge numbers, zero and
negative amounts, NaN and Infinity, 10 MB strings, deeply nested JSON, unknown
currencies, times without an offset or in year 9999, missing keys, a key that
is not the client_id), events mutated and JSON made up by hypothesis, random
bytes, and a few thousand valid events. The expected fate of each message
comes from the contract decoder (`handlers.decode.decode`); for the hand-made
cases the test also checks that it is the fate their construction implies.

Limits the project enforces (schemas/limits.py, docs/events.md):
- MAX_MESSAGE_BYTES = 64 KiB: a larger input message is a dead letter
  `too_large` without being parsed; the dead letter keeps its first 16 KiB
  (MAX_RAW_IN_DEADLETTER) and says `raw_truncated`. A 10 MB message needs a
  producer `max_request_size` above 10 MB and a broker that accepts it
  (Kafka's default `message.max.bytes` is 1 MiB, so in production such a
  message is refused at the producer); here the broker accepts it and the
  worker dead-letters it.
- Free text 256 characters, event_id 128, client_id 64, amounts 24 digits with
  at most 8 decimals, years 1970-2999: beyond, a dead letter `schema`.
- JSON nesting: up to 200 levels is accepted; deeper may be a dead letter
  `invalid_json` (the parsers' depth limits), never a crash.
"""

from __future__ import annotations

import asyncio
import base64
import random
import time
import urllib.request
from collections import Counter, defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiokafka import AIOKafkaProducer  # type: ignore[import-untyped]
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from handlers.batch import BatchProcessor, Record
from handlers.ruleset import Ruleset
from handlers.state import ClientState
from schemas.limits import MAX_MESSAGE_BYTES, MAX_RAW_IN_DEADLETTER
from streams.settings import Settings
from streams.tools.synthetic import CLIENTS, INTERACTIONS, TRANSACTIONS
from streams.topics import ensure_topics
from tests.support import WorkerProcess, make_settings, new_worker, read_to_end, unique_prefix

TOPICS = (TRANSACTIONS, INTERACTIONS, CLIENTS)
NOW = datetime(2026, 11, 23, tzinfo=UTC)
TEN_MB = 10 * 1024 * 1024
WARM_UP = 1500
"""Messages processed before the first memory reading (imports, caches and buffers settle)."""
RSS_GROWTH_LIMIT_KB = 64 * 1024
"""VmRSS may grow this much while the rest (30 MB of 10 MB messages among them) goes through."""
MIN_MESSAGES = 10_000


@dataclass(frozen=True)
class Message:
    topic: str
    """Unprefixed input topic."""
    key: bytes | None
    value: bytes | None
    label: str
    expect: str | None = None
    """What the construction implies: "ok", a rejection reason, "rejected" (any reason), or None (no claim)."""


def fate(message: Message, rules: Ruleset) -> str:
    """What the worker's batch processor makes of the message alone: "ok", "erased" or the rejection reason."""
    record = Record(message.topic, 0, 0, message.key, message.value)
    result = BatchProcessor(rules, clock="event").process([record], lambda _: None, wall_now=0, received_at=NOW)
    if result.dead_letters:
        return result.dead_letters[0][1].reason
    return "erased" if result.erased else "ok"


# --------------------------------------------------------------------------- valid events
def valid_value(topic: str, client: str, event_id: str, rng: random.Random) -> dict[str, Any]:
    when = f"2026-05-0{rng.randint(1, 3)}T{rng.randint(0, 23):02d}:{rng.randint(0, 59):02d}:00+0{rng.randint(0, 8)}:00"
    common: dict[str, Any] = {"event_id": event_id, "client_id": client, "occurred_at": when}
    if topic == TRANSACTIONS:
        return {
            **common,
            "account_id": f"acct-{rng.randint(1, 3)}",
            "amount": f"{rng.uniform(0.01, 3_000_000):.2f}",
            "currency": rng.choice(["CNY", "USD", "EUR", "HKD"]),
            "direction": rng.choice(["credit", "debit"]),
            "kind": rng.choice(["deposit", "withdrawal", "transfer", "payment", "card"]),
            "channel": rng.choice(["branch", "atm", "mobile", "online"]),
            "initiated_by": rng.choice(["customer", "bank"]),
            "counterparty": {"bank": rng.choice(["internal", "external"])},
        }
    if topic == INTERACTIONS:
        return {
            **common,
            "kind": rng.choice(["visit", "call", "complaint", "inquiry"]),
            "channel": rng.choice(["branch", "phone", "mobile"]),
            "initiated_by": rng.choice(["customer", "rm"]),
            "severity": rng.choice(["low", "medium", "high"]),
        }
    return {**common, "kind": rng.choice(["onboarded", "rm_assigned", "profile_updated"]), "rm_id": "rm-1"}


def valid_messages(rng: random.Random, count: int, clients: int) -> list[Message]:
    out = []
    for i in range(count):
        topic = rng.choice(TOPICS)
        client = f"fuzz-ok-{rng.randrange(clients)}"
        value = valid_value(topic, client, f"ok-{i}", rng)
        out.append(Message(topic, client.encode(), orjson.dumps(value), "valid", "ok"))
    return out


# --------------------------------------------------------------------------- hand-made hostile cases
def _with(template: dict[str, Any], **changes: Any) -> dict[str, Any]:
    return {**template, **changes}


def _raw_amount(template: dict[str, Any], literal: bytes) -> bytes:
    raw = orjson.dumps(_with(template, amount="__AMOUNT__"))
    return raw.replace(b'"__AMOUNT__"', literal)


def hostile_messages(rng: random.Random) -> list[Message]:
    out: list[Message] = []
    n = 0

    def add(topic: str, value: bytes | None, label: str, expect: str, key: bytes | None = b"") -> None:
        nonlocal n
        n += 1
        out.append(Message(topic, key if key != b"" else f"fuzz-bad-{n % 50}".encode(), value, label, expect))

    def tx(**changes: Any) -> dict[str, Any]:
        return _with(valid_value(TRANSACTIONS, f"fuzz-bad-{(n + 1) % 50}", f"bad-{n + 1}", rng), **changes)

    for topic in TOPICS:
        for raw in (b"{not json", b"{", b"}", b'{"event_id": "x",', b"\x00\x01\x02", b"null", b"[]", b"123", b'"x"'):
            add(topic, raw, "not_json_object", "rejected")
        add(topic, b"", "empty", "empty")
        add(topic, None, "tombstone", "erased" if topic == CLIENTS else "empty")
        add(topic, base64.b64encode(rng.randbytes(300)), "base64_garbage", "invalid_json")
    # wrong types, every field of a transaction
    for field_name in tx():
        wrongs: list[Any] = [True, [], ["x"], {"a": 1}, ""]
        wrongs += ["abc", "1,000.00"] if field_name == "amount" else [12345, -1.5]
        wrongs += [] if field_name == "counterparty" else [None]
        for wrong in wrongs:
            add(TRANSACTIONS, orjson.dumps(tx(**{field_name: wrong})), f"wrong_type:{field_name}", "rejected")
    # huge, zero and negative numbers
    for literal in (b"1e400", b"-1e400", b"1" + b"0" * 400, b"9" * 30, b"1e-400", b"0.000000001", b'"1e30"'):
        add(TRANSACTIONS, _raw_amount(tx(), literal), "huge_or_tiny_number", "schema")
    for amount in ("0", "0.00", "-0.01", "-1", "-1e9", 0, -5, -0.0):
        add(TRANSACTIONS, orjson.dumps(tx(amount=amount)), "zero_or_negative_amount", "schema")
    add(TRANSACTIONS, orjson.dumps(tx(balance_after="1" + "0" * 40)), "huge_balance", "schema")
    # NaN and Infinity, as JSON literals and as text
    for literal in (b"NaN", b"Infinity", b"-Infinity", b'"NaN"', b'"Infinity"', b'"inf"', b'"-inf"', b'"sNaN"'):
        add(TRANSACTIONS, _raw_amount(tx(), literal), "nan_or_infinity", "schema")
    # 10 MB strings (beyond MAX_MESSAGE_BYTES: not even parsed)
    add(TRANSACTIONS, orjson.dumps(tx(account_id="a" * TEN_MB)), "10MB_string", "too_large")
    add(
        INTERACTIONS,
        orjson.dumps(_with(valid_value(INTERACTIONS, "fuzz-bad-1", "big-2", rng), x="é" * (TEN_MB // 2))),
        "10MB_string",
        "too_large",
    )
    add(CLIENTS, b'{"event_id": "' + b"\xff" * TEN_MB + b'"}', "10MB_binary", "too_large")
    add(TRANSACTIONS, orjson.dumps(tx(note="n" * (MAX_MESSAGE_BYTES + 1))), "just_over_the_limit", "too_large")
    add(TRANSACTIONS, orjson.dumps(tx(account_id="a" * 257)), "long_text", "schema")
    add(TRANSACTIONS, orjson.dumps(tx(event_id="e" * 129)), "long_event_id", "schema")
    # deeply nested JSON, in an unknown field (ignored when it parses) and as the whole message
    for depth in (5_000, 20_000, 32_000):
        nested = b"[" * depth + b"]" * depth
        add(TRANSACTIONS, orjson.dumps(tx(x=0))[:-2] + nested + b"}", f"nested_{depth}", "invalid_json")
        add(CLIENTS, b'{"a":' * depth + b"1" + b"}" * depth, f"nested_object_{depth}", "rejected")
    add(TRANSACTIONS, orjson.dumps(tx(x=0))[:-2] + b"[" * 200 + b"]" * 200 + b"}", "nested_200", "ok")
    # unknown currencies
    for currency in ("XYZ", "BTC", "usd", "US", "USDT", "ÜSD", "", 840):
        expect = "unknown_currency" if currency in ("XYZ", "BTC") else "schema"
        add(TRANSACTIONS, orjson.dumps(tx(currency=currency)), "unknown_currency", expect)
    # times: no offset, year 9999, not a time at all
    for when in (
        "2026-03-01T10:00:00",
        "2026-03-01 10:00:00",
        "9999-12-31T23:59:59+00:00",
        "9999-12-31T23:59:59Z",
        "0001-01-01T00:00:00+00:00",
        "1969-12-31T23:59:59+00:00",
        "2026-02-30T10:00:00+00:00",
        "2026-03-01T25:00:00+00:00",
        "2026-03-01T10:00:00+25:00",
        "now",
        "",
        1_772_000_000,
    ):
        add(TRANSACTIONS, orjson.dumps(tx(occurred_at=when)), "bad_time", "schema")
    # missing keys, each required one
    template = {
        TRANSACTIONS: tx(),
        INTERACTIONS: valid_value(INTERACTIONS, "fuzz-bad-2", "bad-i", rng),
        CLIENTS: valid_value(CLIENTS, "fuzz-bad-3", "bad-c", rng),
    }
    optional = {"counterparty", "severity", "rm_id"}
    for topic, value in template.items():
        for missing in value:
            if missing not in optional:
                reduced = {k: v for k, v in value.items() if k != missing}
                add(topic, orjson.dumps(reduced), f"missing:{missing}", "schema", key=str(value["client_id"]).encode())
        add(topic, orjson.dumps({}), "empty_object", "schema")
        # the key is not the client_id, or there is none
        add(topic, orjson.dumps(value), "wrong_key", "key_mismatch", key=b"someone-else")
        add(topic, orjson.dumps(value), "no_key", "key_mismatch", key=None)
    add(CLIENTS, orjson.dumps(_with(template[CLIENTS], kind="product_maturing")), "maturing_without_product", "schema")
    add(
        TRANSACTIONS, b"\xef\xbb\xbf" + orjson.dumps(tx()), "utf8_bom", "ok"
    )  # a byte-order mark before the JSON is ignored
    add(
        TRANSACTIONS,
        orjson.dumps(tx()).replace(b'"debit"', b'"d\xffbit"').replace(b'"credit"', b'"cr\xffdit"'),
        "invalid_utf8",
        "rejected",
    )
    return out


def random_byte_messages(rng: random.Random, count: int) -> list[Message]:
    out = []
    for _ in range(count):
        size = rng.choice([0, 1, 2, 8, 64, 512, 4096])
        key = rng.randbytes(rng.randint(0, 16)) if rng.random() < 0.7 else None
        out.append(Message(rng.choice(TOPICS), key, rng.randbytes(size), "random_bytes", "rejected"))
    return out


# --------------------------------------------------------------------------- hypothesis
JSON_SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**64 - 1)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=40)
)
JSON_VALUES = st.recursive(
    JSON_SCALARS, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
)
HOSTILE_VALUES = st.sampled_from(
    [
        *("", "x" * 300, -1, 0, "0", "-0.01", "NaN", "Infinity", "9" * 40, "1e400", "XYZ", "\u0000", "\u202e", True),
        *("2026-03-01T10:00:00", "9999-12-31T00:00:00+00:00", "2026-03-01T10:00:00+14:00", [], {}, None),
    ]
)


@st.composite
def mutated_events(draw: st.DrawFn) -> Message:
    topic = draw(st.sampled_from(TOPICS))
    client = draw(st.sampled_from(["fuzz-hyp-1", "fuzz-hyp-2", "fuzz-hyp-3"]))
    value: dict[str, Any] = valid_value(topic, client, f"hyp-{draw(st.integers(0, 10**9))}", random.Random(0))
    for name in draw(st.lists(st.sampled_from(sorted(value)), max_size=3, unique=True)):
        choice = draw(st.integers(0, 2))
        if choice == 0:
            del value[name]
        else:
            value[name] = draw(HOSTILE_VALUES if choice == 1 else JSON_VALUES)
    if draw(st.booleans()):
        value[draw(st.text(max_size=12))] = draw(JSON_VALUES)
    key = draw(st.sampled_from([client.encode(), b"fuzz-hyp-1", None, b""]))
    return Message(topic, key, orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS), "hypothesis_mutated")


@st.composite
def made_up_json(draw: st.DrawFn) -> Message:
    topic = draw(st.sampled_from(TOPICS))
    value = orjson.dumps(draw(JSON_VALUES), option=orjson.OPT_NON_STR_KEYS)
    key = draw(st.one_of(st.none(), st.binary(max_size=12)))
    return Message(topic, key, value, "hypothesis_json")


def hypothesis_messages(count: int) -> list[Message]:
    """Messages drawn by hypothesis (derandomised, so every run sends the same ones)."""
    found: list[Message] = []

    @settings(
        max_examples=count // 10,
        database=None,
        derandomize=True,
        deadline=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(st.lists(mutated_events() | made_up_json(), min_size=10, max_size=10))
    def collect(messages: list[Message]) -> None:
        found.extend(messages)

    collect()
    return found


# --------------------------------------------------------------------------- the run
async def send_all(bootstrap: str, prefix: str, messages: list[Message]) -> list[tuple[str, int, int]]:
    """Produce every message, in order; return (topic, partition, offset) of each."""
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, acks="all", linger_ms=5, max_request_size=TEN_MB + 1024 * 1024
    )
    await producer.start()
    try:
        futures = [await producer.send(prefix + m.topic, m.value, key=m.key) for m in messages]
        placed = []
        for future in futures:
            metadata = await future
            placed.append((metadata.topic, metadata.partition, metadata.offset))
        return placed
    finally:
        await producer.stop()


def vm_rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def wait_processed(worker: WorkerProcess, count: int, timeout: float) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    status = None
    while time.monotonic() < deadline:
        assert worker.proc is not None and worker.proc.poll() is None, f"worker died:\n{worker.tail()}"
        status = worker.status()
        if status is not None and status["processed"] >= count:
            return status
        time.sleep(0.2)
    raise AssertionError(f"worker processed {status} of {count} messages\n{worker.tail()}")


def metric_total(text: str, name: str) -> dict[str, float]:
    """Sum of `name` samples by their topic label."""
    out: dict[str, float] = defaultdict(float)
    for line in text.splitlines():
        if line.startswith(name + "{"):
            labels, value = line[len(name) + 1 :].rsplit("} ", 1)
            topic = next(p.split("=", 1)[1].strip('"') for p in labels.split(",") if p.startswith("topic="))
            out[topic] += float(value)
    return dict(out)


@pytest.mark.broker
@pytest.mark.slow
def test_hostile_input_is_dead_lettered_and_the_worker_stays_up(broker: str, rules: Ruleset, tmp_path: Path) -> None:
    rng = random.Random(20261123)
    hostile = hostile_messages(rng)
    messages = valid_messages(rng, 3000, clients=120) + hostile + random_byte_messages(rng, 3600)
    messages += hypothesis_messages(MIN_MESSAGES - len(messages) + 100)
    rng.shuffle(messages)
    assert len(messages) >= MIN_MESSAGES
    fates = [fate(m, rules) for m in messages]
    wrong = [
        (m.label, m.expect, f)
        for m, f in zip(messages, fates, strict=True)
        if m.expect is not None and m.expect != f and not (m.expect == "rejected" and f != "ok")
    ]
    assert not wrong, f"the decoder disagrees with how these were built: {Counter(wrong).most_common(20)}"
    by_label = Counter(m.label.split(":")[0] for m in messages)
    assert by_label["hypothesis_mutated"] > 1000 and by_label["hypothesis_json"] > 1000, by_label

    prefix = unique_prefix()
    settings_ = make_settings(broker, prefix)
    asyncio.run(ensure_topics(settings_))
    worker = new_worker(settings_, tmp_path).start()
    try:
        worker.wait_ready()
        warm_up, rest = messages[:WARM_UP], messages[WARM_UP:]
        placed = asyncio.run(send_all(broker, prefix, warm_up))
        wait_processed(worker, len(warm_up), timeout=60)
        assert worker.proc is not None
        rss_before = vm_rss_kb(worker.proc.pid)
        placed += asyncio.run(send_all(broker, prefix, rest))
        status = wait_processed(worker, len(messages), timeout=120)
        rss_after = vm_rss_kb(worker.proc.pid)
        assert status["processed"] == len(messages)
        with urllib.request.urlopen(f"{worker.web}/healthz", timeout=5) as resp:
            assert resp.status == 200
        metrics_text = worker.metrics()
        assert worker.proc.poll() is None, "the worker stays up"
        check_dead_letters(broker, settings_, messages, fates, placed)
        check_good_events_applied(broker, settings_, messages, fates, metrics_text)
    finally:
        worker.stop()
    growth = rss_after - rss_before
    assert growth < RSS_GROWTH_LIMIT_KB, f"VmRSS grew {growth} kB ({rss_before} -> {rss_after} kB)"


def original_key(letter: dict[str, Any]) -> bytes | None:
    key = letter["key"]
    if key is None:
        return None
    return key.encode() if letter["key_encoding"] == "utf-8" else base64.b64decode(key)


def check_dead_letters(
    broker: str, settings_: Settings, messages: list[Message], fates: list[str], placed: list[tuple[str, int, int]]
) -> None:
    bad = {where: (m, f) for m, f, where in zip(messages, fates, placed, strict=True) if f not in ("ok", "erased")}
    # The worker has processed every message (wait_processed), and it counts a batch only once its
    # dead letters are on the broker: the topic is complete, so any extra or missing letter shows.
    records = asyncio.run(read_to_end(broker, settings_.deadletter_topic, timeout=90, fetch_max_bytes=64 * 2**20))
    letters = [orjson.loads(r.value) for r in records]
    got = Counter((d["topic"], d["partition"], d["offset"]) for d in letters)
    missing = [(bad[w][0].label, bad[w][1], bad[w][0].key, (bad[w][0].value or b"")[:60]) for w in set(bad) - set(got)]
    assert sum(got.values()) == len(bad), f"{sum(got.values())} dead letters for {len(bad)} bad messages: {missing[:5]}"
    assert set(got) == set(bad), "dead letters name exactly the bad messages"
    assert max(got.values()) == 1, "each bad message is dead-lettered once"
    for letter in letters:
        message, reason = bad[(letter["topic"], letter["partition"], letter["offset"])]
        assert letter["reason"] == reason, (message.label, letter)
        assert letter["error"], letter
        raw = message.value or b""
        assert letter["raw_truncated"] == (len(raw) > MAX_RAW_IN_DEADLETTER)
        kept = letter["raw"].encode() if letter["raw_encoding"] == "utf-8" else base64.b64decode(letter["raw"])
        assert kept == raw[:MAX_RAW_IN_DEADLETTER], message.label
        assert original_key(letter) == message.key, message.label  # the key exactly, as text or base64
    reasons = Counter(d["reason"] for d in letters)
    assert {"invalid_json", "schema", "too_large", "key_mismatch", "unknown_currency", "empty"} <= set(reasons)


def check_good_events_applied(
    broker: str, settings_: Settings, messages: list[Message], fates: list[str], metrics_text: str
) -> None:
    good = [m for m, f in zip(messages, fates, strict=True) if f == "ok"]
    consumed = metric_total(metrics_text, "clientpulse_events_consumed_total")
    rejected = metric_total(metrics_text, "clientpulse_events_rejected_total")
    for topic in TOPICS:
        sent = sum(1 for m in messages if m.topic == topic)
        ok = sum(1 for m in good if m.topic == topic)
        assert consumed.get(settings_.topic(topic)) == sent, (topic, consumed)
        erased = sum(1 for m, f in zip(messages, fates, strict=True) if m.topic == topic and f == "erased")
        applied = consumed[settings_.topic(topic)] - rejected.get(settings_.topic(topic), 0)
        assert applied == ok + erased, (topic, rejected)
    # Each valid event made it into its client's state (its id is among the recently seen).
    changelog = f"{settings_.app_id}-client-state-changelog"
    records = asyncio.run(read_to_end(broker, changelog, timeout=30))
    states: dict[str, ClientState] = {}
    for r in records:  # latest wins; an erased client's tombstone removes it
        if r.value is None:
            states.pop(r.key.decode(), None)
        else:
            states[r.key.decode()] = ClientState.from_bytes(r.value)
    expected_ids: dict[str, set[str]] = defaultdict(set)
    for message in good:
        if message.label != "valid":
            continue  # made up by hypothesis: times far apart may leave the 7-day memory of recent ids
        value = orjson.loads(message.value or b"{}")
        expected_ids[value["client_id"]].add(value["event_id"])
    missing = {c: ids - set(states[c].seen) for c, ids in expected_ids.items() if c in states}
    assert set(expected_ids) <= set(states), set(expected_ids) - set(states)
    assert not any(missing.values()), {c: sorted(m)[:5] for c, m in missing.items() if m}

"""A small replay file on which a sharded replay could go wrong in every way it can (unit and integration tests).

The synthetic bank's history (with snoozes) under tests/rules/thresholds.yaml
raises every alert type, clock rules included. Into it go the lines that a
shard must handle as one process does: an unreadable line, an unknown topic,
a keyless record, a tombstone, an event that arrives after later ones, events
that arrive before their time (behind dead letters dated later still; one as a
JSON string, with a time only the contract model reads), and a dead letter dated long after every event: were
another shard to let it move its clock, that shard would sweep dormancies and
birthdays too early.
"""

from __future__ import annotations

from datetime import UTC, datetime

import orjson

from schemas.topics import CLIENTS, TRANSACTIONS
from streams.tools.synthetic import history

UNTIL = datetime(2027, 2, 1, tzinfo=UTC)
LATE_DEAD_LETTER_AT = "2026-12-24T00:00:00+00:00"
"""After the last event (July 2026), before UNTIL."""


def lines(events: int = 1500, clients: int = 60) -> list[bytes]:
    out = [
        orjson.dumps({"topic": topic, "key": key, "value": value})
        for topic, key, value in history(events, clients, seed=11, controls=True)
    ]
    late_bad = {
        "event_id": "late-bad-1",
        "client_id": "c-000007",
        "occurred_at": LATE_DEAD_LETTER_AT,
        "account_id": "acct-000007-01",
        "amount": "-5",  # not > 0: a dead letter
        "currency": "CNY",
        "direction": "debit",
        "kind": "transfer",
        "channel": "online",
        "initiated_by": "customer",
    }
    early = orjson.loads(out[len(out) // 3])["value"]
    late_copy = {**early, "event_id": "arrives-late-1"}  # an event dated a third into the file, read at two thirds
    out.insert(len(out) // 4, orjson.dumps({"topic": TRANSACTIONS, "key": "c-000007", "value": late_bad}))
    out.insert(
        2 * len(out) // 3, orjson.dumps({"topic": TRANSACTIONS, "key": late_copy["client_id"], "value": late_copy})
    )
    out.insert(40, b"{not json")
    out.insert(60, orjson.dumps({"topic": "bank.unknown.v1", "key": "c-000001", "value": {}}))
    out.insert(
        80,
        orjson.dumps({"topic": TRANSACTIONS, "key": None, "value": {**late_bad, "event_id": "keyless", "amount": "5"}}),
    )
    out.insert(len(out) // 2, orjson.dumps({"topic": CLIENTS, "key": "c-000003", "value": None}))
    # Read at 45 % of the file, dated at 55 % and 90 %: the clock jumps ahead; the dead letters beside them must not.
    for at, event_id, as_text in ((0.55, "arrives-early-1", False), (0.9, "arrives-early-2", True)):
        ahead = orjson.loads(out[int(len(out) * at)])
        value = {**ahead["value"], "event_id": event_id}
        if as_text:
            value["occurred_at"] = value["occurred_at"].replace("T", " ")
        bad = {**late_bad, "event_id": f"{event_id}-bad", "client_id": ahead["key"]}
        position = int(len(out) * 0.45)
        out.insert(position, orjson.dumps({**ahead, "value": orjson.dumps(value).decode() if as_text else value}))
        out.insert(position, orjson.dumps({"topic": TRANSACTIONS, "key": ahead["key"], "value": bad}))
    return out

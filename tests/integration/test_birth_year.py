"""The birth year is never stored, published or logged (docs/rules.md, "Birthday"), by a real worker process.

A platinum client onboarded with a birth date (born 1957), another client whose
profile update is a dead letter but carries a birth date, and a clock tick past
the birthday, through a worker on the event clock. The year is then searched
for, as a number standing alone, in every record the worker wrote (the state
changelog, alerts, snapshots, dead letters) and in its log, while the month and
day are where they belong: in the state, the birthday alert and the snapshot.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest

from handlers.state import ClientState
from streams.topics import ensure_topics
from tests.integration.test_erasure import _tick
from tests.support import (
    consume_records,
    encode_records,
    make_settings,
    new_worker,
    produce,
    read_to_end,
    unique_prefix,
    wait_group_committed,
)

pytestmark = pytest.mark.broker

YEAR = re.compile(rb"(?<![0-9])1957(?![0-9])")
T0 = datetime(2026, 3, 2, 9, tzinfo=UTC)


def _records() -> list[tuple[str, str, Any]]:
    onboarded = {
        "event_id": "by-on",
        "client_id": "c-born",
        "occurred_at": T0.isoformat(),
        "kind": "onboarded",
        "rm_id": "rm-1",
        "birth_date": "1957-06-18",
    }
    deposit = {
        "event_id": "by-dep",
        "client_id": "c-born",
        "occurred_at": T0.isoformat(),
        "account_id": "acct-born",
        "amount": "800000.00",
        "currency": "CNY",
        "direction": "credit",
        "kind": "deposit",
        "channel": "branch",
        "initiated_by": "customer",
    }
    # a kind no producer may send: a dead letter, whose raw message keeps the birth date without its year
    merged = {**onboarded, "event_id": "by-bad", "client_id": "c-bad", "kind": "merged"}
    return [
        ("bank.clients.v1", "c-born", onboarded),
        ("bank.transactions.v1", "c-born", deposit),
        ("bank.clients.v1", "c-bad", merged),
    ]


async def test_the_year_is_nowhere_the_month_and_day_are_kept(broker: str, tmp_path: Path) -> None:
    settings = make_settings(broker, unique_prefix(), clock="event", snapshot_seconds=0.5, tick_seconds=3600)
    await ensure_topics(settings)
    worker = new_worker(settings, tmp_path).start()
    try:
        worker.wait_ready()
        await produce(broker, encode_records(settings.topic_prefix, _records()))
        await wait_group_committed(broker, settings, 3)
        # Birthday 18 June: due at 00:00 Shanghai time three days before, 2026-06-14T16:00Z.
        await _tick(broker, settings.ticks_topic, settings.partitions, datetime(2026, 7, 1, tzinfo=UTC))

        def birthday(records: list[Any]) -> list[dict[str, Any]]:
            return [a for r in records if (a := orjson.loads(r.value))["type"] == "birthday"]

        alerts = await consume_records(broker, settings.alerts_topic, lambda rs: bool(birthday(rs)))
        [greeting] = birthday(alerts)
        assert greeting["client_id"] == "c-born" and greeting["facts"]["birthday"] == "06-18"
        assert greeting["occurred_at"] == "2026-06-14T16:00:00+00:00"
        snapshots = await consume_records(
            broker,
            settings.snapshots_topic,
            lambda rs: any(r.value and orjson.loads(r.value)["birthday"] == "06-18" for r in rs),
        )
        assert any(r.value and orjson.loads(r.value)["birthday"] == "06-18" for r in snapshots)
        [letter] = [orjson.loads(r.value) for r in await read_to_end(broker, settings.deadletter_topic)]
        assert letter["key"] == "c-bad" and '"birth_date":"--06-18"' in letter["raw"]
        changelog = await read_to_end(broker, f"{settings.app_id}-client-state-changelog")
        states = [ClientState.from_bytes(r.value) for r in changelog if r.key == b"c-born" and r.value]
        assert states and states[-1].birthday == "06-18"
    finally:
        worker.stop()

    written = {
        "alerts": await read_to_end(broker, settings.alerts_topic),
        "snapshots": await read_to_end(broker, settings.snapshots_topic),
        "dead letters": await read_to_end(broker, settings.deadletter_topic),
        "state changelog": changelog,
    }
    for topic, records in written.items():
        assert records, topic
        for record in records:
            assert not YEAR.search(record.key or b"") and not YEAR.search(record.value or b""), (topic, record)
    log = worker.log_path.read_bytes()
    assert b" starting: broker " in log  # the worker's own log, not an empty file
    assert not YEAR.search(log), [line for line in log.splitlines() if YEAR.search(line)][:5]

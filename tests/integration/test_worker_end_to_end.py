"""The worker on the real broker: events in, alerts and dead letters out."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from streams.topics import ensure_topics
from tests.support import consume, encode_records, make_settings, new_worker, produce, unique_prefix

pytestmark = pytest.mark.broker


def _tx(event_id: str, client: str, amount: str, direction: str = "debit", bank: str = "external") -> dict[str, object]:
    return {
        "event_id": event_id,
        "client_id": client,
        "occurred_at": "2026-03-01T10:00:00+00:00",
        "account_id": "acct-1",
        "amount": amount,
        "currency": "CNY",
        "direction": direction,
        "kind": "transfer",
        "channel": "online",
        "initiated_by": "customer",
        "counterparty": {"bank": bank},
    }


def test_events_become_alerts_and_bad_input_becomes_dead_letters(broker: str, tmp_path: Path) -> None:
    prefix = unique_prefix()
    settings = make_settings(broker, prefix)
    asyncio.run(ensure_topics(settings))
    worker = new_worker(settings, tmp_path).start()
    try:
        worker.wait_ready()
        records = [
            (
                "bank.clients.v1",
                "c-1",
                {
                    "event_id": "o-1",
                    "client_id": "c-1",
                    "occurred_at": "2026-02-01T00:00:00+00:00",
                    "kind": "onboarded",
                    "rm_id": "rm-7",
                },
            ),
            ("bank.transactions.v1", "c-1", _tx("e-1", "c-1", "700000", "credit", "internal")),
            ("bank.transactions.v1", "c-1", _tx("e-2", "c-1", "600000")),
            (
                "bank.interactions.v1",
                "c-2",
                {
                    "event_id": "i-1",
                    "client_id": "c-2",
                    "occurred_at": "2026-03-01T11:00:00+08:00",
                    "kind": "complaint",
                    "channel": "branch",
                    "initiated_by": "customer",
                    "severity": "high",
                },
            ),
            ("bank.transactions.v1", "c-3", b"{not json"),
            ("bank.transactions.v1", "c-3", _tx("e-3", "c-3", "-5")),
        ]
        asyncio.run(produce(broker, encode_records(prefix, records)))

        alerts = asyncio.run(
            consume(broker, settings.alerts_topic, lambda vs: {"large_outflow", "complaint"} <= {v["type"] for v in vs})
        )
        by_type = {a["type"]: a for a in alerts}
        outflow = by_type["large_outflow"]
        assert outflow["client_id"] == "c-1"
        assert outflow["rm_id"] == "rm-7"
        assert outflow["severity"] == "critical"  # external counterparty
        assert outflow["facts"] == {"amount": "600000.00", "limit": "500000.00", "counterparty_bank": "external"}
        assert outflow["source_event_ids"] == ["e-2"]
        assert by_type["complaint"]["severity"] == "critical"
        assert by_type["complaint"]["rm_id"] is None

        letters = asyncio.run(consume(broker, settings.deadletter_topic, lambda vs: len(vs) >= 2))
        assert len(letters) == 2
        reasons = {d["reason"]: d for d in letters}
        assert reasons["invalid_json"]["raw"] == "{not json"
        assert reasons["invalid_json"]["key"] == "c-3"
        assert reasons["invalid_json"]["topic"] == settings.transactions_topic
        assert "amount" in reasons["schema"]["error"]
        assert '"-5"' in reasons["schema"]["raw"]
        assert worker.proc is not None and worker.proc.poll() is None, "worker must survive bad input"
    finally:
        worker.stop()

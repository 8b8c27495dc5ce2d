"""A real worker on the real broker: known traffic in, exact Prometheus series out of /metrics."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson
import pytest
from prometheus_client.parser import text_string_to_metric_families

from handlers.ruleset import Ruleset
from streams.topics import ensure_topics
from tests.support import (
    WorkerProcess,
    encode_records,
    make_settings,
    new_worker,
    produce,
    unique_prefix,
    wait_group_committed,
)

pytestmark = pytest.mark.broker

CLIENT_A = "cli-metrics-a"
CLIENT_B = "cli-metrics-b"
CLIENT_C = "cli-metrics-c"
ACCOUNT_A = "acct-9f1"
ACCOUNT_B = "acct-9f2"
PARTITIONS = 4

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def parse(text: str) -> Samples:
    """Every sample of a scrape: (name, labels) -> value."""
    out: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return out


def series(samples: Samples, name: str) -> dict[frozenset[tuple[str, str]], float]:
    return {labels: value for (n, labels), value in samples.items() if n == name}


def value(samples: Samples, name: str, **labels: str) -> float | None:
    return samples.get((name, frozenset(labels.items())))


def _traffic(now: datetime) -> list[tuple[str, str, object]]:
    """2 client events, 6 valid transactions (one repeated), 1 complaint, 2 invalid transactions.

    Events happened about two hours ago, so every event-lag observation falls in (3600, 86400].
    By the default rules: client A's first transaction (new_client_first_txn/info), a debit of
    120,000 at gold (large_outflow/warning), a second debit 1 minute later (its large_outflow
    suppressed by the 1 h cooldown; 230,000 in 7 days is outflow_velocity/warning), and B's
    high-severity complaint (complaint/critical). C declined marketing contact: its first
    transaction, 60,000 from another bank, is a thank-you call (new_client_first_txn/info) but its
    large_inflow (over the mass limit of 50,000) is held back for consent. A and C end in gold, B in mass.
    """
    base = now.replace(microsecond=0) - timedelta(hours=2)

    def at(minutes: int) -> str:
        return (base + timedelta(minutes=minutes)).isoformat()

    def tx(event_id: str, client: str, account: str, minutes: int, amount: str, direction: str) -> dict[str, object]:
        return {
            "event_id": event_id,
            "client_id": client,
            "occurred_at": at(minutes),
            "account_id": account,
            "amount": amount,
            "currency": "CNY",
            "direction": direction,
            "kind": "transfer",
            "channel": "online",
            "initiated_by": "customer",
            "counterparty": {"bank": "internal"},
        }

    onboarded = {"event_id": "m-on", "client_id": CLIENT_A, "occurred_at": at(0), "kind": "onboarded", "rm_id": "rm-1"}
    complaint = {
        "event_id": "m-6",
        "client_id": CLIENT_B,
        "occurred_at": at(6),
        "kind": "complaint",
        "channel": "branch",
        "initiated_by": "customer",
        "severity": "high",
    }
    declined = {
        "event_id": "m-on-c",
        "client_id": CLIENT_C,
        "occurred_at": at(0),
        "kind": "onboarded",
        "contact_preference": "service_only",
    }
    inflow = {**tx("m-8", CLIENT_C, "acct-9f3", 8, "60000", "credit"), "counterparty": {"bank": "external"}}
    return [
        ("bank.clients.v1", CLIENT_A, onboarded),
        ("bank.clients.v1", CLIENT_C, declined),
        ("bank.transactions.v1", CLIENT_C, inflow),
        ("bank.transactions.v1", CLIENT_A, tx("m-1", CLIENT_A, ACCOUNT_A, 1, "300000", "credit")),
        ("bank.transactions.v1", CLIENT_A, tx("m-2", CLIENT_A, ACCOUNT_A, 2, "120000", "debit")),
        ("bank.transactions.v1", CLIENT_A, tx("m-2", CLIENT_A, ACCOUNT_A, 2, "120000", "debit")),  # duplicate
        ("bank.transactions.v1", CLIENT_A, tx("m-3", CLIENT_A, ACCOUNT_A, 3, "110000", "debit")),
        ("bank.transactions.v1", CLIENT_B, tx("m-4", CLIENT_B, ACCOUNT_B, 4, "1000", "credit")),
        ("bank.transactions.v1", CLIENT_B, tx("m-5", CLIENT_B, ACCOUNT_B, 5, "200", "debit")),
        ("bank.interactions.v1", CLIENT_B, complaint),
        ("bank.transactions.v1", CLIENT_B, b"{not json"),  # invalid_json
        ("bank.transactions.v1", CLIENT_B, orjson.dumps(tx("m-7", CLIENT_B, ACCOUNT_B, 7, "-5", "debit"))),  # schema
    ]


def scrape_until(worker: WorkerProcess, done: Callable[[Samples], bool], timeout: float, what: str) -> Samples:
    """Scrapes until `done(samples)`; fails after `timeout` naming `what` it waited for."""
    deadline = time.monotonic() + timeout
    samples = parse(worker.metrics())
    while not done(samples):
        assert worker.proc is not None and worker.proc.poll() is None, worker.tail()
        assert time.monotonic() < deadline, f"timed out after {timeout}s waiting for {what}\n{worker.tail()}"
        time.sleep(0.3)
        samples = parse(worker.metrics())
    return samples


def test_metrics_count_known_traffic_exactly(broker: str, tmp_path: Path, rules: Ruleset) -> None:
    prefix = unique_prefix()
    settings = make_settings(broker, prefix, partitions=PARTITIONS)
    asyncio.run(ensure_topics(settings))
    tx_topic, ix_topic, cl_topic, _controls = settings.input_topics
    worker = new_worker(settings, tmp_path).start()
    try:
        worker.wait_ready()
        traffic = _traffic(datetime.now(UTC))
        # Reference data first: a worker may take another topic's records of a client before them.
        reference = [r for r in traffic if r[0] == "bank.clients.v1"]
        asyncio.run(produce(broker, encode_records(prefix, reference)))
        asyncio.run(wait_group_committed(broker, settings, len(reference)))
        asyncio.run(produce(broker, encode_records(prefix, [r for r in traffic if r[0] != "bank.clients.v1"])))

        def complete(s: Samples) -> bool:
            # A batch's counts are published together, after its alerts and dead letters are on
            # the broker: once all 12 messages count as consumed, every other series is final, so
            # the exact values below hold no more and no less than this traffic caused.
            consumed = sum(series(s, "clientpulse_events_consumed_total").values())
            lag = series(s, "clientpulse_consumer_lag_messages")
            return consumed >= 12 and len(lag) >= len(settings.input_topics) * PARTITIONS

        # The lag timer first runs 15 s after the worker starts; everything else is there sooner.
        s = scrape_until(worker, complete, timeout=35, what="12 messages consumed and a lag series per partition")

        assert series(s, "clientpulse_events_consumed_total") == {
            frozenset({("topic", tx_topic)}): 9,
            frozenset({("topic", ix_topic)}): 1,
            frozenset({("topic", cl_topic)}): 2,
        }, worker.tail()
        assert series(s, "clientpulse_events_rejected_total") == {
            frozenset({("topic", tx_topic), ("reason", "invalid_json")}): 1,
            frozenset({("topic", tx_topic), ("reason", "schema")}): 1,
        }
        assert series(s, "clientpulse_events_duplicate_total") == {frozenset({("topic", tx_topic)}): 1}
        assert series(s, "clientpulse_alerts_emitted_total") == {
            frozenset({("type", "new_client_first_txn"), ("severity", "info")}): 2,
            frozenset({("type", "large_outflow"), ("severity", "warning")}): 1,
            frozenset({("type", "outflow_velocity"), ("severity", "warning")}): 1,
            frozenset({("type", "complaint"), ("severity", "critical")}): 1,
        }
        assert series(s, "clientpulse_alerts_suppressed_total") == {
            frozenset({("type", "large_outflow"), ("reason", "cooldown")}): 1,
            frozenset({("type", "large_inflow"), ("reason", "consent")}): 1,
        }
        assert value(s, "clientpulse_clients", tier="gold") == 2
        assert value(s, "clientpulse_clients", tier="mass") == 1

        # One lag observation per applied event (9: not the repeat, not the dead letters),
        # each about two hours: over the 3600 s bucket, within the 86400 s one.
        assert value(s, "clientpulse_event_lag_seconds_count") == 9
        assert value(s, "clientpulse_event_lag_seconds_bucket", le="3600.0") == 0
        assert value(s, "clientpulse_event_lag_seconds_bucket", le="86400.0") == 9
        assert 9 * 6600 < (value(s, "clientpulse_event_lag_seconds_sum") or 0) < 9 * 7300

        batches = value(s, "clientpulse_event_processing_seconds_count") or 0
        assert batches >= 1
        assert value(s, "clientpulse_event_processing_seconds_bucket", le="+Inf") == batches
        assert (value(s, "clientpulse_event_processing_seconds_sum") or 0) > 0

        assert series(s, "clientpulse_build_info") == {
            frozenset({("version", "0.1.0"), ("rule_version", rules.rule_version)}): 1
        }

        # Every input partition this worker owns has a lag series. The test broker reports
        # partition end offsets inexactly, so only presence and sign are checked here.
        lag = series(s, "clientpulse_consumer_lag_messages")
        expected_tps = {(topic, str(p)) for topic in settings.input_topics for p in range(PARTITIONS)}
        assert {(dict(labels)["topic"], dict(labels)["partition"]) for labels in lag} == expected_tps
        assert all(v >= 0 for v in lag.values())

        text = worker.metrics()
        assert "_created" not in text, "created-timestamp series should be disabled"
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                for label_value in sample.labels.values():
                    for secret in (CLIENT_A, CLIENT_B, CLIENT_C, ACCOUNT_A, ACCOUNT_B, "m-2"):
                        assert secret not in label_value, f"{sample.name} carries {secret!r} in a label"
    finally:
        worker.stop()

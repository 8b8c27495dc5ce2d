"""Shadow mode's settings: a shadow gets an id and topics of its own and refuses any of the live deployment's."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest
from aiokafka import TopicPartition  # type: ignore[import-untyped]
from aiokafka.errors import UnsupportedVersionError  # type: ignore[import-untyped]
from aiokafka.structs import OffsetAndTimestamp  # type: ignore[import-untyped]

from handlers.batch import BatchProcessor, BatchResult, Record
from handlers.ruleset import Ruleset
from handlers.state import ClientState
from handlers.timeutil import to_us
from schemas.topics import CLIENTS, TRANSACTIONS
from streams.cli import main
from streams.settings import ConfigError, Settings, check_shadow, load_settings, shadow_conflicts
from streams.tools.alert_topics import _start_offsets, select_alerts
from streams.topics import copartitioned_topics, partition_mismatch, topic_specs
from streams.worker.pipeline import Pipeline
from tests.unit.builders import DETECTED_AT, at, deposit, record, tx


def shadow(**values: Any) -> Settings:
    return Settings(shadow=True, **values)


# ----------------------------------------------------------------- its own id and topics
def test_a_shadow_is_named_after_the_live_app_id_unless_given_an_id() -> None:
    assert shadow().worker_app_id == "clientpulse-shadow"
    assert shadow(app_id="bank-cp").worker_app_id == "bank-cp-shadow"
    assert shadow(app_id="bank-cp", shadow_app_id="candidate-b").worker_app_id == "candidate-b"
    live = Settings(app_id="bank-cp", shadow_app_id="candidate-b")
    assert live.worker_app_id == "bank-cp", "the shadow id means nothing to a live worker"


def test_a_shadow_ticks_recovers_and_publishes_on_topics_of_its_own() -> None:
    live, candidate = Settings(topic_prefix="stg."), shadow(topic_prefix="stg.")
    assert live.ticks_topic == "stg.clientpulse.ticks.v1"
    assert candidate.ticks_topic == "stg.clientpulse-shadow.ticks.v1"
    assert live.worker_alerts_topic == live.alerts_topic == "stg.rm.alerts.v1"
    assert candidate.worker_alerts_topic == candidate.shadow_alerts_topic == "stg.rm.alerts.shadow.v1"
    assert shadow(shadow_alerts_topic_name="rm.alerts.try-b.v1").worker_alerts_topic == "rm.alerts.try-b.v1"
    assert candidate.input_topics == live.input_topics, "the same input"
    own = copartitioned_topics(candidate)
    assert own[-3:] == [
        "stg.clientpulse-shadow.ticks.v1",
        "clientpulse-shadow-client-state-changelog",
        "clientpulse-shadow-partition-clock-changelog",
    ]
    assert not set(own[-3:]) & set(copartitioned_topics(live))
    assert not shadow_conflicts(candidate)


def test_the_partition_check_names_the_shadows_own_changelog() -> None:
    candidate = shadow(partitions=8)
    counts = {topic: 8 for topic in candidate.input_topics} | {"clientpulse-shadow-client-state-changelog": 4}
    problem = partition_mismatch(candidate, counts)
    assert problem is not None and "clientpulse-shadow-client-state-changelog has 4" in problem
    assert partition_mismatch(candidate, {**counts, "clientpulse-client-state-changelog": 4} | {
        "clientpulse-shadow-client-state-changelog": 8
    }) is None, "the live changelog is not the shadow's business"  # fmt: skip


def test_topics_creates_the_shadow_alerts_topic_like_the_alerts_topic() -> None:
    settings = Settings(topic_prefix="stg.", partitions=12)
    specs = {spec.name: spec for spec in topic_specs(settings)}
    shadow_spec, alerts_spec = specs["stg.rm.alerts.shadow.v1"], specs["stg.rm.alerts.v1"]
    assert shadow_spec.partitions == alerts_spec.partitions == 12
    assert shadow_spec.config == alerts_spec.config


# ----------------------------------------------------------------- refusals
def test_a_shadow_with_the_live_app_id_is_refused_naming_the_setting() -> None:
    with pytest.raises(ConfigError) as info:
        check_shadow(shadow(app_id="bank-cp", shadow_app_id="bank-cp"))
    text = str(info.value)
    assert "CLIENTPULSE_SHADOW_APP_ID" in text and "bank-cp" in text and "live workers' group" in text


@pytest.mark.parametrize("group", ["bank-cp-notifier", "bank-cp-sink", "bank-cp-deliver"])
def test_a_shadow_in_a_group_of_another_live_process_is_refused(group: str) -> None:
    (problem,) = shadow_conflicts(shadow(app_id="bank-cp", shadow_app_id=group))
    assert group in problem and "CLIENTPULSE_SHADOW_APP_ID" in problem


def test_a_shadow_publishing_to_the_live_alerts_topic_is_refused() -> None:
    with pytest.raises(ConfigError) as info:
        check_shadow(shadow(topic_prefix="stg.", shadow_alerts_topic_name="rm.alerts.v1"))
    text = str(info.value)
    assert "CLIENTPULSE_SHADOW_ALERTS_TOPIC" in text and "stg.rm.alerts.v1" in text and "alerts topic" in text


def test_every_topic_of_the_live_deployment_is_refused_as_the_shadow_alerts_topic() -> None:
    live = Settings(topic_prefix="stg.")
    names = [live.deadletter_topic, live.snapshots_topic, live.redriven_topic, live.notifications_topic]
    names += [live.digests_topic, live.alerts_by_rm_topic, live.ticks_topic, *live.input_topics]
    for name in names:
        candidate = shadow(topic_prefix="stg.", shadow_alerts_topic_name=name.removeprefix("stg."))
        assert shadow_conflicts(candidate), f"{name} allowed"


def test_both_problems_are_told_at_once_and_a_live_worker_is_never_checked() -> None:
    assert len(shadow_conflicts(shadow(shadow_app_id="clientpulse", shadow_alerts_topic_name="rm.alerts.v1"))) == 2
    check_shadow(Settings(shadow_app_id="clientpulse", shadow_alerts_topic_name="rm.alerts.v1"))


# ----------------------------------------------------------------- environment and command line
def test_shadow_mode_comes_from_the_environment_or_the_command_option(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CLIENTPULSE_APP_ID", "bank-cp")
    assert load_settings().worker_app_id == "bank-cp"
    assert load_settings(shadow=True).worker_app_id == "bank-cp-shadow"
    monkeypatch.setenv("CLIENTPULSE_SHADOW", "true")
    monkeypatch.setenv("CLIENTPULSE_SHADOW_START", "latest")
    settings = load_settings()
    assert settings.shadow and settings.shadow_start == "latest" and settings.worker_app_id == "bank-cp-shadow"
    monkeypatch.setenv("CLIENTPULSE_SHADOW_START", "now")
    with pytest.raises(ConfigError, match="CLIENTPULSE_SHADOW_START"):
        load_settings()


def test_worker_shadow_with_the_live_id_exits_2_before_it_connects(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # A connection attempt would fail this test (unit tests open none): the refusal must come first.
    monkeypatch.setenv("CLIENTPULSE_APP_ID", "bank-cp")
    monkeypatch.setenv("CLIENTPULSE_SHADOW_APP_ID", "bank-cp")
    assert main(["worker", "--shadow"]) == 2
    assert "CLIENTPULSE_SHADOW_APP_ID" in capsys.readouterr().err


@pytest.mark.parametrize("command", [["notifier"], ["deliver"], ["sink"]])
def test_only_the_worker_has_a_shadow_mode(
    command: list[str], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("CLIENTPULSE_SHADOW", "true")
    assert main(command) == 2
    err = capsys.readouterr().err
    assert "CLIENTPULSE_SHADOW" in err and command[0] in err


# ----------------------------------------------------------------- choosing the alerts of a period
T0 = datetime(2026, 3, 1, 10, tzinfo=UTC)


def alert(alert_id: str, at: datetime, **extra: Any) -> bytes:
    return orjson.dumps({"alert_id": alert_id, "type": "large_outflow", "occurred_at": at.isoformat(), **extra})


def test_the_alerts_of_a_period_once_each_in_time_then_id_order() -> None:
    values = [
        alert("b", T0 + timedelta(minutes=5), detected_at="first"),
        alert("early", T0 - timedelta(microseconds=1)),
        orjson.dumps({"alert_id": "zoned", "occurred_at": "2026-03-01T18:30:00+08:00"}),  # 10:30 UTC
        alert("a", T0 + timedelta(minutes=5)),
        alert("at-since", T0),
        alert("b", T0 + timedelta(minutes=5), detected_at="again"),  # re-delivered: counts once, as first read
        alert("at-until", T0 + timedelta(hours=1)),
    ]
    until = T0 + timedelta(hours=1)
    chosen = select_alerts(values, T0, until)
    assert [a["alert_id"] for a in chosen] == ["at-since", "a", "b", "zoned"]
    assert chosen[2]["detected_at"] == "first"
    backwards = select_alerts(list(reversed(values)), T0, until)
    assert [a["alert_id"] for a in backwards] == ["at-since", "a", "b", "zoned"], "the order is not the reading's"
    assert backwards[2]["detected_at"] == "again"


def test_records_that_are_not_alerts_are_left_out() -> None:
    values = [None, b"{not json", b"[1]", orjson.dumps({"alert_id": 7, "occurred_at": T0.isoformat()})]
    values += [orjson.dumps({"alert_id": "naive", "occurred_at": "2026-03-01T10:30:00"}), alert("ok", T0)]
    assert [a["alert_id"] for a in select_alerts(values, T0, T0 + timedelta(hours=1))] == ["ok"]


def test_a_period_needs_offsets_and_an_end_after_its_start() -> None:
    with pytest.raises(ValueError, match="time zone"):
        select_alerts([], datetime(2026, 3, 1), T0)
    with pytest.raises(ValueError, match="later than"):
        select_alerts([], T0, T0)


# ----------------------------------------------------------------- what the worker writes
class RecordingSender:
    """Stands in for the worker's batch sender: remembers each topic written, sends nothing."""

    def __init__(self) -> None:
        self.written: dict[str, int] = {}

    async def send_keyed(self, topic: str, records: Sequence[Any]) -> list[asyncio.Future[Any]]:
        return self._note(topic, len(records))

    async def send_batches(self, topic: str, records: Mapping[int, Sequence[Any]]) -> list[asyncio.Future[Any]]:
        return self._note(topic, sum(len(r) for r in records.values()))

    def _note(self, topic: str, n: int) -> list[asyncio.Future[Any]]:
        if n:
            self.written[topic] = self.written.get(topic, 0) + n
        return []


def _batch_with_everything(rules: Ruleset) -> BatchResult:
    """One batch with an alert, a dead letter, an erasure and a touched state."""
    values = [deposit(at(), "5000", client="c-1"), tx(at(minutes=1), "20000", client="c-1", event_id="t-big")]
    records = [
        Record(topic, 0, n, key.encode(), orjson.dumps(body))
        for n, (topic, key, body) in enumerate(map(record, values))
    ]
    records += [Record(TRANSACTIONS, 0, 2, b"c-2", b"{not json"), Record(CLIENTS, 0, 3, b"c-3", None)]
    stored = {"c-3": ClientState(client_id="c-3")}
    processor = BatchProcessor(rules, clock="wall")
    result = processor.process(records, stored.get, wall_now=to_us(at(minutes=2)), received_at=DETECTED_AT)
    assert result.alerts and result.dead_letters and result.erased and result.touched
    return result


@pytest.mark.parametrize("mode", ["live", "shadow"])
def test_a_shadow_writes_only_its_alerts_and_its_own_changelog(rules: Ruleset, mode: str) -> None:
    settings = Settings(topic_prefix="stg.", shadow=mode == "shadow")
    pipeline = Pipeline(settings, rules)
    sender = RecordingSender()
    pipeline.sender = sender  # type: ignore[assignment]
    asyncio.run(pipeline._checkpoint(_batch_with_everything(rules)))
    app_id = settings.worker_app_id
    changelog = {f"{app_id}-client-state-changelog"}
    if mode == "live":
        assert (
            set(sender.written)
            == {"stg.rm.alerts.v1", "stg.bank.deadletter.v1", "stg.clientpulse.snapshots.v1"} | changelog
        )
        assert pipeline._snapshot_due, "touched clients get a snapshot"
    else:
        assert set(sender.written) == {"stg.rm.alerts.shadow.v1"} | changelog
        assert not pipeline._snapshot_due, "a shadow keeps no snapshot work"
    assert pipeline.app.conf.id == app_id


def test_a_shadow_app_is_its_own_group_starting_where_it_was_told(rules: Ruleset) -> None:
    assert Pipeline(Settings(), rules).app.conf.consumer_auto_offset_reset == "earliest"
    candidate = Pipeline(Settings(shadow=True, shadow_start="latest"), rules)
    assert candidate.app.conf.id == "clientpulse-shadow"
    assert candidate.app.conf.consumer_auto_offset_reset == "latest"
    assert candidate.states.changelog_name() == "clientpulse-shadow-client-state-changelog"
    with pytest.raises(ConfigError, match="CLIENTPULSE_SHADOW_APP_ID"):
        Pipeline(Settings(shadow=True, shadow_app_id="clientpulse"), rules)


class TimeIndex:
    """A consumer's `offsets_for_times` as a broker answers it: an offset, nothing (no record so late), or an error."""

    def __init__(self, answers: dict[int, int | None] | Exception) -> None:
        self.answers = answers
        self.asked: dict[Any, int] = {}

    async def offsets_for_times(self, stamps: dict[Any, int]) -> dict[Any, Any]:
        self.asked = stamps
        if isinstance(self.answers, Exception):
            raise self.answers
        return {
            tp: None if self.answers[tp.partition] is None else OffsetAndTimestamp(self.answers[tp.partition], 0)
            for tp in stamps
        }


def test_reading_starts_at_the_time_index_answer_else_at_the_beginning() -> None:
    tps = [TopicPartition("rm.alerts.shadow.v1", p) for p in range(3)]
    index = TimeIndex({0: 17, 1: None, 2: 0})
    starts = asyncio.run(_start_offsets(index, tps, T0))  # type: ignore[arg-type]
    assert starts == {tps[0]: 17, tps[1]: None, tps[2]: 0}
    assert set(index.asked.values()) == {int(T0.timestamp() * 1000)}
    failing = TimeIndex(UnsupportedVersionError())
    assert asyncio.run(_start_offsets(failing, tps, T0)) == dict.fromkeys(tps)  # type: ignore[arg-type]
